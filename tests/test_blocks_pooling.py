"""Pooling and heads: padding invariance, permutation invariance, masked reductions."""
import pytest
import torch

from common.blocks.pooling import ClassAttentionPooling, build_head, masked_max, masked_mean, masked_sum

B, T, D = 3, 6, 8


def _data():
    torch.manual_seed(0)
    h = torch.randn(B, T, D)
    mask = torch.arange(T)[None] < torch.tensor([6, 3, 1])[:, None]
    return h, mask


def test_masked_reductions():
    h, mask = _data()
    torch.testing.assert_close(masked_sum(h, mask)[1], h[1, :3].sum(0))
    torch.testing.assert_close(masked_mean(h, mask)[1], h[1, :3].mean(0))
    torch.testing.assert_close(masked_max(h, mask)[2], h[2, 0])
    empty = torch.zeros(1, T, dtype=torch.bool)
    assert (masked_mean(h[:1], empty) == 0).all() and (masked_max(h[:1], empty) == 0).all()


@pytest.mark.parametrize("kind", ["linear_mean", "weighted_mean", "sum", "class_attention", "mean_max",
                                  "class_attention_oj"])
def test_heads_ignore_padding_and_order(kind):
    h, mask = _data()
    kw = {"hidden": 8, "num_heads": 2} if kind.startswith("class_attention") else {}
    head = build_head(kind, D, 5, **kw).eval()
    out = head(h, mask)
    assert out.shape == (B, 5) and torch.isfinite(out).all()
    g = h.clone()
    g[~mask] = torch.randn_like(g[~mask]) * 1e3
    torch.testing.assert_close(head(g, mask), out, rtol=1e-5, atol=1e-5)
    perm = torch.randperm(T)
    torch.testing.assert_close(head(h[:, perm], mask[:, perm]), out, rtol=1e-5, atol=1e-5)


def test_class_attention_pooling_learns_and_handles_empty_jets():
    pool = ClassAttentionPooling(D, 2, depth=2)
    h, mask = _data()
    mask[2] = False
    out = pool(h, mask)
    assert out.shape == (B, D) and torch.isfinite(out).all()
    (out * torch.randn(generator=torch.Generator().manual_seed(0), size=out.shape)).sum().backward()
    assert pool.global_token.grad.abs().sum() > 0


def test_build_head_errors():
    with pytest.raises(ValueError, match="unknown head kind"):
        build_head("nope", D, 2)
    with pytest.raises(TypeError, match="sum"):
        build_head("sum", D, 2, bogus=1)


def test_head_formulas():
    h, mask = _data()
    s = build_head("sum", D, 2, hidden=4)
    ref = s.out(torch.stack([torch.relu(s.node(h[b, mask[b]])).sum(0) for b in range(B)]))
    torch.testing.assert_close(s(h, mask), ref)
    w = build_head("weighted_mean", D, 2, hidden=4)
    assert w.node.bias is None
    ref = w.out(torch.stack([w.node(h[b, mask[b]]).mean(0) for b in range(B)]))
    torch.testing.assert_close(w(h, mask), ref)


def test_omnijet_class_attention_head_is_ojs_classifier_normformer():
    """gabbro/models/backbone.py ClassifierNormformer: per block c <- MHA(query c, keys = values =
    LN([c, h] * mask)) over [c, real tokens], LN weight zero-initialised; N(0,1) class token; final MLP. Compared
    with a hand-built copy on torch's nn.MultiheadAttention."""
    torch.manual_seed(1)
    head = build_head("class_attention_oj", D, 2, hidden=D, num_heads=2, depth=2, dropout=0.1)
    block = head.blocks[0]
    assert (block.norm.weight == 0).all() and (block.attn.q.bias == 0).all() and (block.attn.kv.bias == 0).all()
    big = build_head("class_attention_oj", 256, 2)
    assert 0.9 < big.class_token.std().item() < 1.1  # N(0, 1), not a small init
    for p in head.parameters():  # a trained-like head (the zero init would hide the keys)
        torch.nn.init.normal_(p, std=0.5)
    head.eval()
    h, mask = _data()
    c = head.class_token.expand(B, -1, -1)
    kv_mask = torch.cat([torch.ones(B, 1, dtype=torch.bool), mask], dim=1)
    for blk in head.blocks:
        mha = torch.nn.MultiheadAttention(D, 2, batch_first=True).eval()
        mha.in_proj_weight.data.copy_(torch.cat([blk.attn.q.weight, blk.attn.kv.weight]))
        mha.in_proj_bias.data.copy_(torch.cat([blk.attn.q.bias, blk.attn.kv.bias]))
        mha.out_proj.weight.data.copy_(blk.attn.proj.weight)
        mha.out_proj.bias.data.copy_(blk.attn.proj.bias)
        x = blk.norm(torch.cat([c, h], dim=1) * kv_mask.unsqueeze(-1))
        c = mha(c, x, x, key_padding_mask=~kv_mask)[0]
    torch.testing.assert_close(head(h, mask), head.mlp(c[:, 0]), rtol=1e-5, atol=1e-5)


def _hand_class_attention(pool, h, mask):
    """mltools ClassAttentionPooling (the version mattcleigh/jetssl pins; ca.yaml: layerscale off, no final norm),
    one jet at a time: per layer g += attn_out(softmax(q k^T / sqrt(d)) v) with q = LN(g) W_q, (k, v) = h W_kv over
    the real tokens (h not normalised), then g += lin2(silu(x1) * x2) with (x1, x2) = lin1(LN(g)); output g."""
    outs = []
    for b in range(h.shape[0]):
        g, x = pool.global_token[0], h[b, mask[b]]
        for layer in pool.layers:
            a = layer.attn
            nh, hd = a.num_heads, a.head_dim
            q = a.q(torch.nn.functional.layer_norm(g, g.shape[-1:], layer.norm_q.weight, layer.norm_q.bias))
            k, v = a.kv(x).chunk(2, dim=-1)
            heads = []
            for i in range(nh):
                sl = slice(i * hd, (i + 1) * hd)
                w = torch.softmax(q[:, sl] @ k[:, sl].T / hd ** 0.5, dim=-1)
                heads.append(w @ v[:, sl])
            g = g + a.proj(torch.cat(heads, dim=-1))
            x1, x2 = layer.mlp.lin1(torch.nn.functional.layer_norm(g, g.shape[-1:], layer.norm2.weight,
                                                                   layer.norm2.bias)).chunk(2, dim=-1)
            g = g + layer.mlp.lin2(torch.nn.functional.silu(x1) * x2)
        outs.append(g[0])
    return torch.stack(outs)


def test_class_attention_pooling_is_mltools_as_jetssl_pins_it():
    """MPMv2 head (mattcleigh/jetssl a8c4f6b configs/model/class_head/ca.yaml -> mltools ClassAttentionPooling):
    no LayerNorm on keys/values, no final norm, SwiGLU MLP (Linear(D, 2 ff_mult D)), no residual dropout, N(0, 1)
    global token, Xavier fused in-projection with zero biases; the forward equals a hand computation. The kit's
    earlier variant (kv LayerNorm, final LayerNorm, SiLU MLP, residual dropout, 1e-3 randn token) fails this."""
    torch.manual_seed(3)
    pool = ClassAttentionPooling(D, 2, depth=2, ff_mult=1, dropout=0.2)
    names = {n for n, _ in pool.named_modules()}
    assert not any("norm_kv" in n or n == "norm" for n in names)
    layer = pool.layers[0]
    assert layer.mlp.lin1.out_features == 2 * D and layer.mlp.lin2.in_features == D
    assert sum(isinstance(m, torch.nn.Dropout) for m in layer.modules()) == 1  # the SwiGLU's hidden dropout only
    assert (layer.attn.q.bias == 0).all() and (layer.attn.kv.bias == 0).all()
    assert 0.85 < ClassAttentionPooling(512, 4).global_token.std().item() < 1.15
    pool.eval()
    h, mask = _data()
    torch.testing.assert_close(pool(h, mask), _hand_class_attention(pool, h, mask), rtol=1e-5, atol=1e-5)
    head = build_head("class_attention", D, 3, hidden=8, num_heads=2).eval()
    torch.testing.assert_close(head(h, mask), head.out(_hand_class_attention(head.pool, head.inp(h), mask)),
                               rtol=1e-5, atol=1e-5)
