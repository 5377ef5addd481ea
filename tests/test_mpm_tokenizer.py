"""MPM tokenisers: the VQ-VAE learns (reconstruction falls, codebook stays used), k-means labels, save/load."""
from __future__ import annotations

import pytest
import torch

from common.data.batch import JetBatch
from common.training.checkpoint import save_checkpoint

from mpm.vqvae import VQVAE, KMeansTokenizer, VQVAETraining, load_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def jets(B=24, N=12, F=3, seed=0):
    """Per-jet structure (an offset shared by the particles) plus per-particle spread, padded."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(4, N + 1, (B,), generator=g)
    mask = torch.arange(N)[None] < n[:, None]
    x = torch.randn(B, 1, F, generator=g) + 0.5 * torch.randn(B, N, F, generator=g)
    return JetBatch(x * mask[..., None], mask, torch.zeros(B, N, 4), torch.zeros(B, 6), torch.zeros(B, dtype=torch.long))


def tiny_vqvae(**kw):
    torch.manual_seed(0)
    args = dict(dim=32, depth=1, num_heads=4, ff_hidden=64, num_codes=32, code_dim=4, vq={"replace_freq": 10})
    args.update(kw)
    return VQVAE(3, **args)


def test_vqvae_reconstruction_falls_and_codebook_is_used():
    vq = tiny_vqvae()
    model = VQVAETraining(vq).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    recon, util = [], []
    for step in range(80):
        b = jets(seed=step % 4)
        loss, m = model(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        recon.append(float(m["recon"]))
        util.append(float(m["utilisation"]))
    first, last = sum(recon[:5]) / 5, sum(recon[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert min(util[-10:]) >= 0.25  # dead-code replacement keeps a good part of the codebook alive
    # the frozen tokeniser labels every real particle with a valid code; padding gets 0
    vq.eval()
    b = jets(seed=9)
    codes = vq.tokenize(b.x, b.mask)
    assert codes.shape == b.mask.shape and codes.dtype == torch.long
    assert (codes[~b.mask] == 0).all() and codes.max() < vq.num_codes
    assert len(torch.unique(codes[b.mask])) > 4


def test_vqvae_padding_does_not_change_codes():
    vq = tiny_vqvae().eval()
    b = jets(seed=3)
    noisy = b.x + 5.0 * (~b.mask).unsqueeze(-1)
    assert torch.equal(vq.tokenize(b.x, b.mask), vq.tokenize(noisy, b.mask))


def test_raw_codebook_quirk_switch():
    vq = tiny_vqvae(target_codebook="raw").eval()
    b = jets(seed=4)
    with torch.no_grad():
        vq.quantizer.affine_scale.fill_(0.3)  # make the affine map non-trivial
        z = vq.encode(b.x, b.mask)
        raw = torch.cdist(z, vq.quantizer.weight[None]).argmin(-1).masked_fill(~b.mask, 0)
    assert torch.equal(vq.tokenize(b.x, b.mask), raw)


def test_kmeans_tokenizer_is_nearest_centroid_and_roundtrips(tmp_path):
    cents = torch.tensor([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0], [-5.0, 0.0, 5.0]])
    tok = KMeansTokenizer(cents)
    b = jets(seed=5)
    x = b.x.clone()
    x[..., :] = cents[1]  # every particle right on centroid 1 ...
    x[:, 0] = cents[2]    # ... except the leading one, on centroid 2
    codes = tok.tokenize(x, b.mask)
    assert (codes[:, 0] == 2).all() and (codes[:, 1:][b.mask[:, 1:]] == 1).all() and (codes[~b.mask] == 0).all()
    save_checkpoint(tmp_path / "tokenizer.pt", {"kind": "kmeans", "config": {}, "state": {"centroids": cents,
                                                                                         "n_clusters": 3}})
    again = load_tokenizer(tmp_path)
    assert torch.equal(again.tokenize(x, b.mask), codes) and again.num_codes == 3


def test_vqvae_tokenizer_file_roundtrip(tmp_path):
    from common.training.config import load_config

    from mpm.vqvae import build_vqvae

    cfg = load_config("mpm/configs/smoke/tokenizer_v1.yaml", ["vqvae.dim=16", "vqvae.num_heads=2", "vqvae.ff_hidden=16",
                                                               "vqvae.num_codes=16"])
    vq = build_vqvae(cfg)
    model = VQVAETraining(vq).train()
    model(jets(seed=6))  # k-means init of the codebook, norm statistics
    save_checkpoint(tmp_path / "tokenizer.pt", {"kind": "vqvae", "config": cfg, "state": vq.state_dict()})
    tok = load_tokenizer(tmp_path / "tokenizer.pt")
    vq.eval()
    b = jets(seed=7)
    assert torch.equal(tok.tokenize(b.x, b.mask), vq.tokenize(b.x, b.mask))
    assert not any(p.requires_grad for p in tok.parameters())
