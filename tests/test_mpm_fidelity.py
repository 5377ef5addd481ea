"""MPMv1 / MPMv2 model details checked against the official code (rodem-hep/mpm, mattcleigh/jetssl)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mpm.heads import CFMTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_cfm_loss_is_mean_over_features():
    """jetssl VectorDiffuser.get_loss: (v - (x1 - x0)).square().mean() over particles and all 7 features."""
    torch.manual_seed(0)
    task = CFMTask(dim=8, num_features=7, context_dim=4, hidden=8, depth=1, time_dim=4)
    d, x = torch.randn(5, 8), torch.randn(5, 7)
    torch.manual_seed(1)
    loss, _ = task(d, x)
    torch.manual_seed(1)
    t = torch.sigmoid(torch.randn(5))
    eps = torch.randn(5, 7)
    v = task.velocity((1 - t[:, None]) * x + t[:, None] * eps, t, task.context(d))
    expected = ((v - (eps - x)) ** 2).mean()
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, ((v - (eps - x)) ** 2).sum(-1).mean())


class _CountTokenizer(torch.nn.Module):
    """Code of every particle = number of particles in the set it was tokenised with (a set-dependent tokeniser)."""
    num_codes = 16

    def tokenize(self, x, mask):
        return (mask.sum(1, keepdim=True).expand_as(mask) * mask).long()


def _v2_token_targets(targets_from):
    from mpm.mpmv2 import MPMv2, MPMv2Encoder
    from tests.test_mpm_models import fake_batch

    torch.manual_seed(0)
    enc = MPMv2Encoder(7, 8, dim=16, depth=1, num_heads=2, ff_hidden=32, num_registers=2)
    model = MPMv2(enc, task="vqvae", tokenizer=_CountTokenizer(), dec_dim=8, dec_depth=1, dec_heads=2,
                  dec_ff_hidden=16, max_particles=12, targets_from=targets_from)
    seen = {}
    model.task.register_forward_hook(lambda mod, args, out: seen.update(codes=args[2]))
    batch = fake_batch(F=7)
    dropped = torch.zeros_like(batch.mask)
    dropped[:, :2] = True                      # two dropped particles in every jet
    model.loss(batch, dropped=dropped)
    return seen["codes"], batch.mask.sum(1)


def test_mpmv2_token_targets_from_dropped_set():
    """jetssl VQVAETask: vae(csts, null_mask) tokenises the dropped particles alone (a set of 2 here)."""
    codes, _ = _v2_token_targets("dropped")
    assert codes.tolist() == [2] * 12
    codes_full, n = _v2_token_targets("full")
    assert codes_full.tolist() == n.repeat_interleave(2).tolist()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_vqvae_reconstruction_reduction_over_features(reduction):
    """rodem-hep/mpm jet_vq_vae.py: L1 summed over a particle's 3 features, then averaged per jet (V1);
    jetssl vae.py: Huber averaged over the features (V2, reduction "mean")."""
    from mpm.masking import masked_jet_mean
    from mpm.vqvae import VQVAE
    from tests.test_mpm_tokenizer import jets

    torch.manual_seed(0)
    vq = VQVAE(3, dim=16, depth=1, num_heads=2, ff_hidden=16, num_codes=8, code_dim=4, normalise=False,
               recon_reduction=reduction, vq={"kmeans_init": False, "replace_freq": 0}).eval()
    b = jets(B=4)
    _, metrics = vq.loss(b.x, b.mask)
    recon, _ = vq(b.x, b.mask)
    per_feature = (recon - b.x).abs()
    per_particle = per_feature.sum(-1) if reduction == "sum" else per_feature.mean(-1)
    assert torch.allclose(metrics["recon"], masked_jet_mean(per_particle, b.mask))


def test_tokenizer_configs_reduce_like_the_official_code():
    from common.training.config import load_config

    for profile in ("", "mini/", "smoke/"):
        assert load_config(f"mpm/configs/{profile}tokenizer_v1.yaml")["vqvae"]["recon_reduction"] == "sum"
        assert load_config(f"mpm/configs/{profile}tokenizer_v2.yaml")["vqvae"]["recon_reduction"] == "mean"


def _dropouts(module):
    return sorted({m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)})


def test_normformer_block_separates_attention_dropout():
    """rodem-hep/mpm backbone configs: mha_config.drp 0.1, no dropout in the dense layers or residuals."""
    from common.blocks.transformer import EncoderBlock

    block = EncoderBlock(8, 2, 16, style="normformer", attn_dropout=0.3, dropout=0.0)
    assert block.attn.dropout == 0.3 and _dropouts(block) == [0.0]
    same = EncoderBlock(8, 2, 16, style="normformer", dropout=0.2)     # attn_dropout=None: one rate for both
    assert same.attn.dropout == 0.2 and _dropouts(same) == [0.2]


def test_mpmv1_paper_configs_use_attention_dropout_only():
    from common.training.config import load_config

    from mpm.build import build_backbone
    from mpm.vqvae import build_vqvae

    cfg = load_config("mpm/configs/mpmv1.yaml", ["model.dim=16", "model.depth=1", "model.num_heads=2",
                                                 "model.ff_hidden=16", "model.embed_hidden=16"])
    bb = build_backbone(cfg)
    assert {blk.attn.dropout for blk in bb.encoder.blocks} == {0.1} and _dropouts(bb) == [0.0]
    tcfg = load_config("mpm/configs/tokenizer_v1.yaml", ["vqvae.dim=16", "vqvae.depth=1", "vqvae.num_heads=2",
                                                         "vqvae.ff_hidden=16"])
    vq = build_vqvae(tcfg)
    assert {blk.attn.dropout for blk in vq.encoder.blocks + vq.decoder.blocks} == {0.1} and _dropouts(vq) == [0.0]


def test_mpmv1_backbone_pe_is_a_raw_input_table_before_the_normalisation():
    """rodem-hep/mpm bert.py (order_inputs): pos_encoding = zeros(1, n_nodes, node_dim) added to the masked raw
    inputs, then node_norm; the fine-tuning forward does not use it."""
    from mpm.mpmv1 import MPMv1, MPMv1Backbone
    from tests.test_mpm_models import fake_batch

    torch.manual_seed(0)
    bb = MPMv1Backbone(3, dim=16, depth=1, num_heads=2, ff_hidden=32, num_particles=12, positional="backbone_input",
                       attn_dropout=0.0)
    model = MPMv1(bb, target="regression", positional="backbone_input", head_hidden=16).eval()
    assert bb.input_pos is None and model.raw_pos.shape == (12, 3) and not model.raw_pos.any()
    with torch.no_grad():
        model.raw_pos.normal_()
    seen = {}
    bb.norm.register_forward_hook(lambda mod, args, out: seen.update(x=args[0]))
    batch = fake_batch()
    masked = torch.zeros_like(batch.mask)
    masked[:, 1] = True
    model.loss(batch, masked=masked)
    corrupted = torch.where(masked[..., None], model.mask_token, batch.x)
    assert torch.allclose(seen["x"], corrupted + model.raw_pos)
    bb(batch)                                         # fine-tuning forward: no table
    assert torch.allclose(seen["x"], batch.x)
    old = MPMv1Backbone(3, dim=16, num_particles=12, positional="backbone_input", backbone_pe="embedding")
    assert old.input_pos.shape == (12, 16)


def test_tokenizer_v2_uses_the_cosine_ema_quantiser():
    """jetssl configs/model/vqvae.yaml: use_cosine_sim, kmeans_init, kmeans_iters 50, threshold_ema_dead_code 2."""
    from common.training.config import load_config

    from mpm.vqvae import build_vqvae

    for profile in ("", "mini/", "smoke/"):
        cfg = load_config(f"mpm/configs/{profile}tokenizer_v2.yaml")
        q = build_vqvae(cfg).quantizer
        assert (q.distance, q.codebook_update, q.kmeans_iters, q.dead_code_threshold) == ("cosine", "ema", 50, 2.0)
        assert (q.affine_lr, q.sync_nu, q.replace_freq, q.ema_decay) == (0.0, 0.0, 0, 0.8)
        v1 = build_vqvae(load_config(f"mpm/configs/{profile}tokenizer_v1.yaml")).quantizer
        assert (v1.distance, v1.codebook_update) == ("euclidean", "gradient")


def test_mpmv2_decoder_has_no_final_norm():
    """jetssl configs/model/decoder_config/small.yaml: do_final_norm: False."""
    from common.training.config import load_config

    from mpm.build import build_model

    for profile in ("", "mini/", "smoke/"):
        cfg = load_config(f"mpm/configs/{profile}mpmv2_regression.yaml", ["model.dim=16", "model.depth=1",
                          "model.num_heads=2", "model.ff_hidden=16", "model.decoder.dim=8", "model.decoder.depth=1",
                          "model.decoder.num_heads=2", "model.decoder.ff_hidden=8"])
        assert isinstance(build_model(cfg).decoder.norm, torch.nn.Identity)


class _Entry:
    """An in-memory stand-in of a cache entry (common.data.cache.CacheEntry): empty() and read() of padded jets."""

    def __init__(self, arrays):
        self.arrays, self.n = arrays, len(arrays["label"])

    def __len__(self):
        return self.n

    def empty(self, b):
        return {k: np.zeros((b,) + v.shape[1:], v.dtype) for k, v in self.arrays.items()}

    def read(self, rows, out):
        for k, v in out.items():
            v[...] = self.arrays[k][rows]
        return out


def test_mpmv2_neutral_ip_noise_is_redrawn_per_batch():
    """jetssl src/datamodules/preprocessing.py: neutral IPs (ids 0, 2) replaced by fresh N(0, 1) at every load."""
    import numpy as np

    from common.data.datasets import JetDataset
    from common.data.features import FEATURE_SETS

    B, N = 6, 4
    rng = np.random.default_rng(0)
    pid = np.tile(np.array([0, 1, 2, 3]), (B, 1))                  # photon, h-, h0, h+
    mask = np.ones((B, N), bool)
    mask[:, -1] = False                                             # the h+ slot is padding
    arrays = {"x": rng.standard_normal((B, N, 7)).astype(np.float32), "mask": mask, "pid": pid,
              "p4": np.zeros((B, N, 4), np.float32), "jet": np.zeros((B, 6), np.float32),
              "label": np.zeros(B, np.int64)}
    ds = JetDataset([_Entry(arrays)], np.arange(1), features=FEATURE_SETS["mpmv2"])
    a, b, again = ds[[0, 1]].x[0], ds[[0, 2]].x[0], ds[[0, 1]].x[0]
    cached = torch.from_numpy(arrays["x"][0])
    for p in (0, 2):                                                # neutrals: new noise in another batch
        assert not torch.allclose(a[p, 3:], b[p, 3:]) and not torch.allclose(a[p, 3:], cached[p, 3:])
    assert torch.equal(a, again)                                    # same batch: same noise (exact resume)
    assert torch.equal(a[1], cached[1]) and torch.equal(a[3], cached[3])    # charged and padding untouched
    assert torch.equal(a[:, :3], cached[:, :3])                     # kinematics untouched
    # N(0, 1): 200,000 impact-parameter values of 50,000 neutrals (standard errors 0.0022 on the mean, 0.0016 on
    # the std)
    n = 25_000
    big = {"x": np.zeros((n, 2, 7), np.float32), "mask": np.ones((n, 2), bool), "pid": np.tile([0, 2], (n, 1)),
           "p4": np.zeros((n, 2, 4), np.float32), "jet": np.zeros((n, 6), np.float32), "label": np.zeros(n, np.int64)}
    ip = FEATURE_SETS["mpmv2"].per_batch(big, np.arange(n))["x"][..., 3:7]
    assert abs(ip.mean()) < 0.008 and abs(ip.std() - 1) < 0.006
    assert abs(np.corrcoef(ip.reshape(-1, 4).T)[np.triu_indices(4, 1)]).max() < 0.02     # independent columns


def test_mpmv1_regression_loss_sums_the_squared_error_over_features():
    """rodem-hep/mpm bert.py RegressBert.get_loss: MSELoss(reduction="none")(output, nodes).sum(-1), then the mean
    over the masked particles of each jet and over the jets."""
    from tests.test_mpm_models import fake_batch, tiny_v1

    model = tiny_v1().eval()
    batch = fake_batch()
    masked = torch.zeros_like(batch.mask)
    masked[:, :2] = True
    targets = model.targets(batch, batch.x)
    out = {}
    model.head.register_forward_hook(lambda mod, args, o: out.update(o=o))
    loss, _ = model.loss(batch, masked=masked, targets=targets)
    per_particle = ((out["o"] - targets) ** 2).sum(-1)
    expected = per_particle[:, :2].mean()                       # two masked particles in every jet
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, expected / 3)               # the old mean over the 3 features


@pytest.mark.parametrize("average", ["jet", "particle"])
def test_vqvae_loss_average_per_jet_v1_or_per_particle_v2(average):
    """rodem-hep/mpm jet_vq_vae.py: reconstruction and VQ loss averaged per jet, then over the jets (V1);
    jetssl vae.py: huber_loss(dec_outs[mask], csts[mask]) and quantizer(enc_outs[mask]) over every real particle."""
    from mpm.masking import masked_jet_mean
    from mpm.vqvae import VQVAE
    from tests.test_mpm_tokenizer import jets

    torch.manual_seed(0)
    vq = VQVAE(3, dim=16, depth=1, num_heads=2, ff_hidden=16, num_codes=8, code_dim=4, normalise=False,
               recon_loss="huber", recon_reduction="mean", loss_average=average,
               vq={"kmeans_init": False, "replace_freq": 0}).eval()
    b = jets(B=4)
    assert b.mask.sum(1).unique().numel() > 1                   # jets of different sizes: the two averages differ
    _, metrics = vq.loss(b.x, b.mask)
    recon, out = vq(b.x, b.mask)
    per_particle = torch.nn.functional.huber_loss(recon, b.x, reduction="none").mean(-1)
    z_e = vq.encode(b.x, b.mask)
    zq = vq.quantizer.lookup(out.codes)
    d = ((z_e - zq) ** 2).mean(-1)
    if average == "jet":
        want_rec, want_vq = masked_jet_mean(per_particle, b.mask), masked_jet_mean(d, b.mask)
    else:
        want_rec, want_vq = per_particle[b.mask].mean(), d[b.mask].mean()
    assert torch.allclose(metrics["recon"], want_rec) and torch.allclose(metrics["vq"], want_vq)
    other = per_particle[b.mask].mean() if average == "jet" else masked_jet_mean(per_particle, b.mask)
    assert not torch.allclose(metrics["recon"], other)


def test_tokenizer_configs_average_like_the_official_code():
    from common.training.config import load_config

    for profile in ("", "mini/", "smoke/"):
        assert load_config(f"mpm/configs/{profile}tokenizer_v1.yaml")["vqvae"]["loss_average"] == "jet"
        assert load_config(f"mpm/configs/{profile}tokenizer_v2.yaml")["vqvae"]["loss_average"] == "particle"


def test_cwola_redraws_the_neutral_ip_noise_per_batch(monkeypatch, tmp_path):
    """jetssl src/datamodules/preprocessing.py draws the neutral-IP N(0, 1) noise at every load; the CWoLa loaders
    run the feature set's per-batch step as common.data.datasets.JetDataset does (they were fed the cached noise once)."""
    import numpy as np

    from common.training.config import load_config
    from common.training.distributed import Dist

    import mpm.cwola as cwola

    n, n_part, rng = 40, 4, np.random.default_rng(0)
    pid = np.tile(np.array([0, 1, 2, 3]), (n, 1))                  # photon, h-, h0, h+
    arrays = {"x": rng.standard_normal((n, n_part, 7)).astype(np.float32), "mask": np.ones((n, n_part), bool),
              "pid": pid, "p4": np.zeros((n, n_part, 4), np.float32), "jet": np.zeros((n, 6), np.float32),
              "label": (np.arange(n) % 4 == 0).astype(np.int64)}
    monkeypatch.setattr(cwola, "_load_split", lambda data_cfg, s, k: arrays)
    monkeypatch.setattr(cwola, "load_arrays", lambda data_cfg, s, max_jets=None: arrays)
    seen = {}

    class Stop(Exception):
        pass

    def fake_finetune(cfg, build, load, d, dist, *, loader_fn, **kw):
        loader = loader_fn(cfg["data"], "train", 8, shuffle=True, seed=0)
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            seen[epoch] = {tuple(j[1].tolist()): j[0, 3:] for b in loader for j in b.x}   # charged row -> photon IPs
        seen["test"] = next(iter(loader_fn(cfg["data"], "test", 1000, shuffle=False)))
        raise Stop

    monkeypatch.setattr(cwola, "run_finetune", fake_finetune)
    cfg = load_config("mpm/configs/smoke/cwola_v2.yaml", ["cwola.n_background=20", "cwola.n_signal=[4]",
                                                          "cwola.val_fraction=0.5", "finetune.mode=scratch"])
    with pytest.raises(Stop):
        cwola.run_cwola(cfg, tmp_path, Dist())
    test = seen["test"]
    cached = torch.from_numpy(arrays["x"])
    for p in (0, 2):                                                # neutrals: fresh noise
        assert not torch.allclose(test.x[:, p, 3:], cached[:, p, 3:])
    assert torch.equal(test.x[:, 1], cached[:, 1]) and torch.equal(test.x[:, :, :3], cached[:, :, :3])
    assert seen[0].keys() == seen[1].keys() and len(seen[0]) == 24  # the same 24 jets, reshuffled into batches
    assert sum(not torch.equal(seen[0][k], seen[1][k]) for k in seen[0]) > 20    # new noise in the new batches


def test_raw_target_codebook_needs_the_euclidean_quantiser():
    """target_codebook raw = rodem-hep/mpm's labelling by Euclidean distance to the un-affined codebook rows; with the
    cosine quantiser (jetssl) it would pick codes that are not the quantiser's nearest ones."""
    from mpm.vqvae import VQVAE

    kw = dict(dim=16, depth=1, num_heads=2, ff_hidden=16, num_codes=8, code_dim=4, target_codebook="raw")
    with pytest.raises(ValueError, match="vqvae.target_codebook=raw needs vqvae.vq.distance=euclidean"):
        VQVAE(3, vq={"distance": "cosine", "codebook_update": "ema", "affine_lr": 0.0, "replace_freq": 0}, **kw)
    with pytest.raises(ValueError, match="vqvae.target_codebook=raw"):
        VQVAE(3, vq={"distance": "cosine"}, **kw)
    assert VQVAE(3, vq={"distance": "euclidean"}, **kw).target_codebook == "raw"
