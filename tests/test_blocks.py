"""Transformer blocks: padding invariance, permutation equivariance, KV cache, pair embedding."""
import pytest
import torch

from common.blocks.transformer import GPT, Attention, Encoder, EncoderBlock, KVCache, PairEmbed

torch.manual_seed(0)
B, N, D, H = 3, 7, 16, 4
STYLES = ["preln", "normformer", "swiglu"]


def _mask():
    # jets with 7, 4 and 1 real particles (real first, as in JetBatch)
    n_real = torch.tensor([7, 4, 1])
    return torch.arange(N)[None, :] < n_real[:, None]


def _garbage_like(x, mask, scale=1e3):
    """Same real entries, random garbage (including inf) at padded rows."""
    g = x.clone()
    pad = ~mask
    g[pad] = torch.randn_like(g[pad]) * scale
    if pad.any():
        idx = pad.nonzero()[0]
        g[idx[0], idx[1], 0] = float("inf")
    return g


def _randomise(module):
    """Normformer zero-inits its output projections; give every parameter a random value for the tests."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


def _bias(mask):
    bias = torch.randn(B, H, N, N)
    pair = mask[:, None, :, None] & mask[:, None, None, :]
    return bias.masked_fill(~pair, 0.0)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("registers", [0, 2])
@pytest.mark.parametrize("with_bias", [False, True])
def test_padding_never_changes_real_outputs(style, registers, with_bias):
    enc = _randomise(Encoder(D, 2, H, 32, style=style, num_registers=registers)).eval()
    mask = _mask()
    x = torch.randn(B, N, D)
    bias = _bias(mask) if with_bias else None
    h, m = enc(x, mask, bias)
    assert h.shape == (B, registers + N, D) and m.shape == (B, registers + N)
    assert m[:, :registers].all()
    # garbage in padded features and in padded pairs of the bias
    xg = _garbage_like(x, mask)
    bias_g = None
    if with_bias:
        pair = mask[:, None, :, None] & mask[:, None, None, :]
        bias_g = torch.where(pair.expand_as(bias), bias, torch.randn_like(bias) * 1e3)
    hg, _ = enc(xg, mask, bias_g)
    assert torch.isfinite(hg).all()
    torch.testing.assert_close(hg[m], h[m], rtol=1e-5, atol=1e-5)
    assert (hg[~m] == 0).all() and (h[~m] == 0).all()
    # the real outputs also equal those of the same jets without any padding column at all
    for b in range(B):
        n = int(mask[b].sum())
        hb, _ = enc(x[b:b + 1, :n], mask[b:b + 1, :n], None if bias is None else bias[b:b + 1, :, :n, :n])
        torch.testing.assert_close(hb[0], h[b, :registers + n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("style", STYLES)
def test_permutation_equivariance(style):
    enc = _randomise(Encoder(D, 2, H, 32, style=style, num_registers=3)).eval()
    x = torch.randn(2, N, D)
    mask = torch.ones(2, N, dtype=torch.bool)
    mask[1, 5:] = False
    bias = torch.randn(2, H, N, N)
    perm = torch.randperm(N)
    h, _ = enc(x, mask, bias)
    hp, _ = enc(x[:, perm], mask[:, perm], bias[:, :, perm][:, :, :, perm])
    torch.testing.assert_close(hp[:, 3:], h[:, 3:][:, perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hp[:, :3], h[:, :3], rtol=1e-5, atol=1e-5)  # registers see a set


def test_normformer_block_is_identity_at_init_and_swiglu_layerscale():
    x = torch.randn(B, N, D)
    mask = _mask()
    blk = EncoderBlock(D, H, 32, style="normformer")
    torch.testing.assert_close(blk(x, mask)[mask], x[mask])
    sw = EncoderBlock(D, H, 32, style="swiglu")
    assert torch.allclose(sw.ls1.gamma, torch.full((D,), 1e-3))
    assert (sw(x, mask) - x)[mask].abs().max() < 0.1  # LayerScale 1e-3 keeps the block close to identity


def test_empty_jet_gives_no_nan_and_gradients_flow():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    enc = Encoder(D, 1, H, 32, style="preln", num_registers=0)
    x = torch.randn(2, N, D, generator=g).requires_grad_()
    mask = torch.zeros(2, N, dtype=torch.bool)
    mask[0, :3] = True  # second jet is empty
    h, _ = enc(x, mask)
    assert torch.isfinite(h).all() and (h[1] == 0).all()
    # a fixed random projection: the plain sum of a final LayerNorm output has zero gradient whatever the input
    (h @ torch.randn(D, generator=g)).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[0, 3:] == 0).all() and (x.grad[1] == 0).all()
    assert (x.grad[0, :3].abs().sum(-1) > 1e-3).all()  # every real particle receives a gradient


def test_attention_causal_matches_reference():
    att = Attention(D, H).eval()
    x = torch.randn(B, N, D)
    out = att(x, causal=True)
    # manual softmax attention
    q, k, v = att.qkv(x).view(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-1, -2) / (D // H) ** 0.5
    logits = logits.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("-inf"))
    ref = att.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_gpt_kv_cache_equals_full_recomputation():
    gpt = GPT(D, 3, H, 64, vocab_size=11).eval()
    tokens = torch.randint(0, 11, (B, 9))
    full = gpt(tokens, torch.ones(B, 9, dtype=torch.bool))
    cache = gpt.new_cache()
    assert isinstance(cache, KVCache)
    h0 = gpt.forward_incremental(tokens[:, :4], cache)
    steps = [gpt.step(tokens[:, t], cache) for t in range(4, 9)]
    assert len(cache) == 9
    inc = torch.cat([h0, torch.stack(steps, 1)], 1)
    torch.testing.assert_close(inc, full, rtol=1e-5, atol=1e-5)


def test_gpt_is_causal_and_ignores_padding():
    gpt = GPT(D, 2, H, 64, vocab_size=11).eval()
    tokens = torch.randint(0, 11, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    h = gpt(tokens, mask)
    t2 = tokens.clone()
    t2[:, 6:] = (t2[:, 6:] + 3) % 11  # change the future / the padding
    h2 = gpt(t2, mask)
    torch.testing.assert_close(h2[:, :6], h[:, :6])
    torch.testing.assert_close(h2[1, :5], h[1, :5])
    assert not torch.allclose(h2[0, 6:], h[0, 6:])


def test_pair_embed_padding_and_symmetry():
    torch.manual_seed(1)
    pe = PairEmbed(H)
    mask = _mask()
    feats = torch.randn(B, 4, N, N)
    feats = 0.5 * (feats + feats.transpose(-1, -2))
    pair = mask[:, None, :, None] & mask[:, None, None, :]
    feats = feats.masked_fill(~pair, 0.0)
    out = pe.train()(feats, mask)
    assert out.shape == (B, H, N, N)
    assert (out.masked_select(~pair.expand_as(out)) == 0).all()
    torch.testing.assert_close(out, out.transpose(-1, -2))
    # garbage in padded pairs changes neither the real outputs nor the BatchNorm statistics
    torch.manual_seed(1)
    pe_a, pe_b = PairEmbed(H), PairEmbed(H)
    pe_b.load_state_dict(pe_a.state_dict())
    garbage = torch.where(pair.expand_as(feats), feats, torch.randn_like(feats) * 100)
    oa, ob = pe_a.train()(feats, mask), pe_b.train()(garbage, mask)
    torch.testing.assert_close(oa, ob)
    torch.testing.assert_close(pe_a.input_bn.running_mean, pe_b.input_bn.running_mean)
    torch.testing.assert_close(pe_a.bns[-1].running_var, pe_b.bns[-1].running_var)
    # eval mode: outputs for a jet do not depend on the other jets in the batch
    pe_a.eval()
    torch.testing.assert_close(pe_a(feats, mask)[1:2], pe_a(feats[1:2], mask[1:2]))


def test_masked_batchnorm_equals_batchnorm_on_real_pairs():
    from common.blocks.transformer import MaskedBatchNorm1d
    x = torch.randn(3, 5, 10)
    valid = torch.rand(3, 10) > 0.4
    mbn, bn = MaskedBatchNorm1d(5), torch.nn.BatchNorm1d(5)
    y = mbn(x, valid)
    ref = bn(x.permute(0, 2, 1)[valid])  # (n_valid, C)
    torch.testing.assert_close(y.permute(0, 2, 1)[valid], ref)
    torch.testing.assert_close(mbn.running_mean, bn.running_mean)
    torch.testing.assert_close(mbn.running_var, bn.running_var)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    enc = _randomise(Encoder(D, 3, H, 32, style="preln", dropout=0.1))
    x, mask = torch.randn(B, N, D), _mask()
    enc.eval()
    torch.testing.assert_close(enc(x, mask)[0], enc(x, mask)[0])
    enc.train()
    assert not torch.allclose(enc(x, mask)[0], enc(x, mask)[0])
    h, _ = enc(_garbage_like(x, mask), mask)
    assert torch.isfinite(h).all() and (h[~mask] == 0).all()


def test_attention_zeroes_padded_queries_without_nan():
    att = Attention(D, H).eval()
    mask = _mask()
    mask[2] = False  # an empty jet
    out = att(_garbage_like(torch.randn(B, N, D), mask, scale=1.0), mask)
    assert torch.isfinite(out).all() and (out[~mask] == 0).all() and (out[mask] != 0).any()
    keep = att(torch.randn(B, N, D), mask, zero_padded_queries=False)
    assert (keep[~mask] != 0).any()


def _encoder_as_before(enc, x, mask, attn_bias=None, pos=None):
    """Encoder.forward as it was before the redundant masking went: every block zeroes its input's padded rows and its
    attention zeroes the padded keys and values."""
    from common.blocks.transformer import zero_padded
    x = zero_padded(x, mask)
    if enc.num_registers:
        R = enc.num_registers
        x = torch.cat([enc.registers.expand(x.shape[0], -1, -1), x], dim=1)
        mask = torch.cat([torch.ones(x.shape[0], R, dtype=torch.bool), mask], dim=1)
        attn_bias = None if attn_bias is None else torch.nn.functional.pad(attn_bias, (R, 0, R, 0))
        pos = None if pos is None else torch.nn.functional.pad(pos, (0, 0, R, 0))
    for blk in enc.blocks:
        if pos is not None:
            x = x + pos
        x = zero_padded(x, mask)
        x = x + blk.drop(blk.ls1(blk.attn(blk.norm1(x), mask, attn_bias, finite_padding=False)))
        x = x + blk.drop(blk.ls2(blk.mlp(blk.norm2(x))))
        x = zero_padded(x, mask)
    return zero_padded(enc.norm(x), mask), mask


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("registers", [0, 2])
@pytest.mark.parametrize("extra", [None, "bias", "pos"])
def test_encoder_outputs_and_gradients_are_bit_identical_to_the_masking_of_before(style, registers, extra):
    """Each block no longer re-zeroes an input that is zero at padded rows, nor the padded keys and values of finite
    rows (the attention mask gives them weight 0): outputs and every gradient are the same bits, garbage included."""
    torch.manual_seed(3)
    enc = _randomise(Encoder(D, 3, H, 32, style=style, num_registers=registers, dropout=0.1)).train()
    mask = _mask()
    x = _garbage_like(torch.randn(B, N, D), mask)
    bias = _bias(mask) if extra == "bias" else None
    pos = torch.randn(B, N, D) if extra == "pos" else None
    results = []
    for fn in (lambda: enc(x, mask, bias, pos=pos), lambda: _encoder_as_before(enc, x, mask, bias, pos)):
        enc.zero_grad()
        torch.manual_seed(5)                                     # the same dropout draws
        h, m = fn()
        (h * torch.linspace(-1, 1, h.numel()).reshape(h.shape)).sum().backward()
        results.append((h.detach(), {k: p.grad.clone() for k, p in enc.named_parameters() if p.grad is not None}))
    (h1, g1), (h2, g2) = results
    assert torch.isfinite(h1).all() and torch.equal(h1, h2)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[k], g2[k]) for k in g1)
