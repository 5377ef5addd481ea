"""OmniJet-alpha fidelity to the official code (uhh-pd-ml/omnijet_alpha, package gabbro): tokenisation precision,
validation subsets, the VQ-VAE block, N-subjettiness, the class-attention head and training precision."""
import numpy as np
import pytest
import torch

from tests.test_omnijet_pipeline import _data_cfg, _tiny_model_cfg, write_fake_jetclass

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return write_fake_jetclass(tmp_path_factory.mktemp("oj_fid"), 60)


def test_finetune_backbone_sees_the_pretraining_tokens_under_bf16_autocast(fake_root):
    """The harness runs the backbone under bf16 autocast; the tokens it builds must still be the fp32 tokens that
    omnijet.tokenize_dataset wrote for pretraining (the frozen tokeniser runs with autocast off)."""
    from common.data import make_loader
    from common.transformer import GPT
    from omnijet.model import OmniJetBackbone
    from omnijet.tokenize_dataset import tokenize_split
    from omnijet.vqvae import build_tokenizer

    data = _data_cfg(fake_root)
    torch.manual_seed(0)
    tok = build_tokenizer(_tiny_model_cfg(num_codes=512))
    batch = next(iter(make_loader(data, "train", 64, shuffle=False)))
    tok.train()
    tok(batch.x, batch.mask)  # k-means initialisation: a dense codebook, where bf16 latents change codes
    tok.eval()
    ref = tokenize_split(tok, data, "val", 16, None, "cpu")
    backbone = OmniJetBackbone(GPT(16, 1, 2, 32, tok.num_codes + 2), tok)
    got = []
    for b in make_loader(data, "val", 16, shuffle=False):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tokens, seq_mask = backbone.tokenize(b.x, b.mask)
        assert torch.equal(seq_mask.sum(1), b.mask.sum(1) + 2)
        got.append(tokens.numpy())
    got = np.concatenate(got)
    assert got.shape == ref["tokens"].shape
    assert np.array_equal(got, ref["tokens"].astype(np.int64))
