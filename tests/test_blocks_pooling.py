"""Pooling and heads: padding invariance, permutation invariance, masked reductions."""
import pytest
import torch

from common.pooling import ClassAttentionPooling, build_head, masked_max, masked_mean, masked_sum

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
    # not out.sum(): the final LayerNorm output sums to its bias whatever the input, so that gradient is zero
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
