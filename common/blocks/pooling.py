"""Pooling of per-token outputs into one jet vector, and the classification heads built on it.

Every head has forward(h (B,T,D), mask (B,T) bool) -> logits (B,C) and ignores padded tokens completely.
  linear_mean      masked mean -> Linear
  weighted_mean    MPMv1 "learnable weighted average": per-node Linear(D, hidden, no bias) -> masked mean -> Linear
                   (arXiv:2401.13537; rodem-hep/mpm FineTuner, MPMv1 fine-tuning head)
  sum              OmniJet-alpha summation head: Linear(sum_t mask_t ReLU(Linear(h_t)))  (omnijet_alpha backbone.py)
  class_attention  MPMv2: Linear(D, hidden) -> ClassAttentionPooling (2 layers) -> Linear, trunc-normal std 0.01
                   (mattcleigh/mltools transformers.py ClassAttentionPooling as mattcleigh/jetssl
                   configs/model/class_head/ca.yaml builds it: no norm on keys/values, no final norm, SwiGLU MLP,
                   dropout only on attention probabilities and the SwiGLU hidden layer, N(0, 1) global token).
                   Only MPMv2 uses it (MPMv1: weighted_mean, HEP-JEPA: mean_max, OmniJet: class_attention_oj / sum)
  mean_max         Point-JEPA: [masked mean, masked max] -> MLP with BatchNorm (Point-JEPA fine-tuning head)
  class_attention_oj  OmniJet-alpha's "ClassifierNormformer" (gabbro/models/backbone.py): a class token through 3
                   cross-attention blocks over LN([class token, tokens]) that return only the attention output (no
                   residual, no MLP), then an MLP
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_sum(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over real tokens: (B,T,D), (B,T) -> (B,D)."""
    return h.masked_fill(~mask.unsqueeze(-1), 0.0).sum(dim=1)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: (B,T,D), (B,T) -> (B,D); an empty jet gives zeros."""
    n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)
    return masked_sum(h, mask) / n


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over real tokens: (B,T,D), (B,T) -> (B,D); an empty jet gives zeros."""
    out = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    return torch.where(mask.any(dim=1, keepdim=True), out, torch.zeros_like(out))


class CrossAttention(nn.Module):
    """Queries q (B,Q,D) attend to keys/values kv (B,T,D) with a key-padding mask, through SDPA."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, Q, D = q.shape
        T = kv.shape[1]
        q = self.q(q).view(B, Q, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(kv).view(B, T, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        has_key = mask.any(dim=1)
        allowed = (mask | ~has_key[:, None])[:, None, None, :]  # an empty jet attends to everything, then zeroed
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(B, Q, D) * has_key[:, None, None].to(q.dtype)
        return self.proj(out)


class SwiGLU(nn.Module):
    """Gated feed-forward network: Linear(D, 2H) -> SiLU(x1) * x2 -> Dropout -> Linear(H, D)
    (mattcleigh/mltools transformers.py SwiGLUNet; dropout only on the hidden layer)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.lin1 = nn.Linear(dim, 2 * hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x1, x2 = self.lin1(x).chunk(2, dim=-1)
        return self.lin2(self.drop(F.silu(x1) * x2))


def init_fused_in_projection(attn: CrossAttention) -> None:
    """Initialise q / kv as one fused (3D, D) in-projection with xavier_uniform_ and zero biases (torch's
    nn.MultiheadAttention, mltools' Attention)."""
    dim = attn.q.in_features
    bound = (6.0 / (dim + 3 * dim)) ** 0.5
    for lin in (attn.q, attn.kv):
        nn.init.uniform_(lin.weight, -bound, bound)
        nn.init.zeros_(lin.bias)


class ClassAttentionLayer(nn.Module):
    """Class-attention (CaiT, Touvron et al. 2021) as mltools' ClassAttentionPooling runs its EncoderBlocks (the
    version mattcleigh/jetssl pins at the paper commit, layerscale off): only the global token is updated,
    c += CrossAttn(LN(c), h) with the tokens h un-normalised, c += SwiGLU(LN(c)); dropout on the attention
    probabilities and inside the SwiGLU, none on the residual branches. The q / kv projections are initialised as
    mltools' Attention (Xavier over the fused (3D, D) in-projection, zero biases)."""

    def __init__(self, dim: int, num_heads: int, ff_mult: int = 1, dropout: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads, dropout)
        init_fused_in_projection(self.attn)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwiGLU(dim, ff_mult * dim, dropout)

    def forward(self, c, h, mask):
        c = c + self.attn(self.norm_q(c), h, mask)
        return c + self.mlp(self.norm2(c))


class ClassAttentionPooling(nn.Module):
    """A learnable global token (drawn from N(0, 1)) cross-attends to all real tokens through `depth`
    class-attention layers; no final norm (mltools ClassAttentionPooling with do_final_norm false, as
    mattcleigh/jetssl configs/model/class_head/ca.yaml builds it). forward(h (B,T,D), mask (B,T)) -> (B,D)."""

    def __init__(self, dim: int, num_heads: int, depth: int = 2, ff_mult: int = 1, dropout: float = 0.0):
        super().__init__()
        self.global_token = nn.Parameter(torch.randn(1, 1, dim))
        self.layers = nn.ModuleList(ClassAttentionLayer(dim, num_heads, ff_mult, dropout) for _ in range(depth))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c = self.global_token.expand(h.shape[0], -1, -1).to(h.dtype)
        for layer in self.layers:
            c = layer(c, h, mask)
        return c[:, 0]


# --------------------------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------------------------
class LinearMeanHead(nn.Module):
    def __init__(self, in_dim: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(in_dim, n_classes)

    def forward(self, h, mask):
        return self.out(self.drop(masked_mean(h, mask)))


class WeightedMeanHead(nn.Module):
    """MPMv1: per-node Linear(in_dim, hidden, no bias) -> masked mean -> Linear(hidden, n_classes)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 512):
        super().__init__()
        self.node = nn.Linear(in_dim, hidden, bias=False)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, h, mask):
        return self.out(masked_mean(self.node(h), mask))


class SumHead(nn.Module):
    """OmniJet-alpha summation head: Linear(hidden, C)(sum_t mask_t ReLU(Linear(D, hidden)(h_t)))."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or in_dim
        self.node = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, h, mask):
        return self.out(masked_sum(F.relu(self.node(h)), mask))


class ClassAttentionHead(nn.Module):
    """MPMv2: Linear(in_dim, hidden) -> ClassAttentionPooling -> Linear(hidden, C) (trunc-normal init, std 0.01)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 128, num_heads: int = 4, depth: int = 2,
                 ff_mult: int = 1, dropout: float = 0.2):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.pool = ClassAttentionPooling(hidden, num_heads, depth, ff_mult, dropout)
        self.out = nn.Linear(hidden, n_classes)
        nn.init.trunc_normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, h, mask):
        return self.out(self.pool(self.inp(h), mask))


class MeanMaxHead(nn.Module):
    """Point-JEPA fine-tuning head: [masked mean, masked max] -> Linear(2D, hidden, no bias), BN, ReLU, Dropout,
    Linear(hidden, hidden), BN, ReLU, Dropout, Linear(hidden, C)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_classes))

    def forward(self, h, mask):
        return self.mlp(torch.cat([masked_mean(h, mask), masked_max(h, mask)], dim=-1))


class OmniJetCrossBlock(nn.Module):
    """One cross-attention block of OmniJet-alpha's class-attention head (uhh-pd-ml/omnijet_alpha
    gabbro/models/backbone.py `NormformerCrossBlock`): the class token c is the query; keys and values are
    LN([c, h_1 .. h_T]) over the real tokens and c itself, with the LayerNorm weight zero-initialised; the block
    returns the attention output only (no residual, no MLP). The projections are initialised as torch's
    nn.MultiheadAttention (Xavier over the fused (3D, D) in-projection, zero biases), dropout on the attention
    probabilities."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        nn.init.zeros_(self.norm.weight)
        self.attn = CrossAttention(dim, num_heads, dropout)
        init_fused_in_projection(self.attn)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, c: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kv = self.norm(torch.cat([c, h.masked_fill(~mask.unsqueeze(-1), 0.0)], dim=1))
        kv_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return self.attn(c, kv, kv_mask)


class OmniJetClassAttentionHead(nn.Module):
    """OmniJet-alpha class-attention head (uhh-pd-ml/omnijet_alpha gabbro/models/backbone.py `ClassifierNormformer`,
    class_head_type "class_attention"): a class token drawn from N(0, 1) goes through `depth` OmniJetCrossBlocks,
    then MLP D -> hidden -> hidden -> C with SiLU and dropout (OJ: hidden = D = 256, 2 heads, 3 blocks, dropout
    0.1)."""

    def __init__(self, in_dim: int, n_classes: int, num_heads: int = 2, depth: int = 3, hidden: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        self.class_token = nn.Parameter(torch.randn(1, 1, in_dim))
        self.blocks = nn.ModuleList(OmniJetCrossBlock(in_dim, num_heads, dropout) for _ in range(depth))
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, h, mask):
        c = self.class_token.expand(h.shape[0], -1, -1).to(h.dtype)
        for block in self.blocks:
            c = block(c, h, mask)
        return self.mlp(c[:, 0])


HEADS = {"linear_mean": LinearMeanHead, "weighted_mean": WeightedMeanHead, "sum": SumHead,
         "class_attention": ClassAttentionHead, "mean_max": MeanMaxHead,
         "class_attention_oj": OmniJetClassAttentionHead}


def build_head(kind: str, in_dim: int, n_classes: int, **kw) -> nn.Module:
    """Head by name (see the module docstring); extra keyword arguments go to its constructor."""
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; expected one of {sorted(HEADS)}")
    try:
        return HEADS[kind](in_dim, n_classes, **kw)
    except TypeError as e:
        raise TypeError(f"head {kind!r}: bad arguments {sorted(kw)} ({e})") from None
