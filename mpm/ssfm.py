"""The time-conditioned cross-attention decoder of MPMv2's set-to-set flow matching (SSFM, "Full-Diffusion" in arXiv
v1/v2 of arXiv:2409.12589; mattcleigh/jetssl src/models/sdm.py with the mltools Transformer(use_decoder=True)).

It denoises the whole set of dropped particles jointly: self-attention among the dropped particles of a jet,
cross-attention to the projected encoder outputs of the kept particles (and registers), and a SwiGLU feed-forward.
The diffusion time enters every residual branch through adaptive LayerNorm, as in DiT (arXiv:2212.09748, the time
injection arXiv:2409.12589 names; mltools transformers.py Residual): a LayerNorm without affine parameters, modulated
as LN(x) (1 + scale) + shift, and the branch output multiplied by a gate, with (scale, shift, gate) =
Linear(SiLU(time embedding)) per branch (default Linear init, not DiT's zero init).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks.transformer import Attention, SwiGLU, zero_padded


def cosine_encoding(t: torch.Tensor, dim: int = 32) -> torch.Tensor:
    """t (B,) in [0, 1] -> (B, dim) cos(pi t e^k), k = 0 ... dim-1 (mltools modules.py CosineEncodingLayer, default
    "exp" scheme, cosines only), the time embedding of jetssl src/models/sdm.py (time_dim 32)."""
    freqs = torch.exp(torch.arange(dim, dtype=torch.float32, device=t.device))
    return torch.cos(math.pi * t.float()[:, None] * freqs[None])


class CrossAttention(nn.Module):
    """Multi-head attention of the queries x (B,N,D) to the keys/values kv (B,K,D) through SDPA. The in-projection is
    one (3D, D) weight split into the query and key/value parts, Xavier-uniform with zero bias, as the mltools
    Attention used for cross-attention."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)

    def forward(self, x, mask, kv, kv_mask):
        B, N, D = x.shape
        w_q, w_kv = self.in_proj.weight.split([D, 2 * D])
        b_q, b_kv = self.in_proj.bias.split([D, 2 * D])
        kv = zero_padded(kv, kv_mask)  # garbage (even inf/NaN) in unused key rows never reaches a query
        q = F.linear(x, w_q, b_q).view(B, N, self.num_heads, -1).transpose(1, 2)
        k, v = F.linear(kv, w_kv, b_kv).view(B, kv.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        allowed = kv_mask[:, None, None, :].expand(B, 1, N, kv.shape[1])
        has_key = allowed.any(dim=-1, keepdim=True)  # a jet with no key at all (no register, everything dropped)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | ~has_key)
        out = out.masked_fill(~has_key, 0.0).transpose(1, 2).reshape(B, N, D)
        return zero_padded(self.proj(out), mask)


class AdaLNResidual(nn.Module):
    """x + fn(LN(x) (1 + scale) + shift) * gate, (scale, shift, gate) = Linear(SiLU(c)) (mltools Residual with
    ctxt_dim > 0)."""

    def __init__(self, fn: nn.Module, dim: int, time_dim: int):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 3 * dim))

    def forward(self, x, c, *args):
        scale, shift, gate = self.modulation(c)[:, None].chunk(3, dim=-1)
        return x + self.fn(self.norm(x) * (1 + scale) + shift, *args) * gate


class SSFMDecoderBlock(nn.Module):
    """Self-attention among the dropped particles, cross-attention to the encoder outputs, SwiGLU; each an
    AdaLNResidual on the time embedding (mltools transformers.py DecoderBlock)."""

    def __init__(self, dim: int, num_heads: int, ff_hidden: int, time_dim: int):
        super().__init__()
        attn = Attention(dim, num_heads)
        nn.init.xavier_uniform_(attn.qkv.weight)  # as the mltools Attention in-projection
        nn.init.zeros_(attn.qkv.bias)
        self.self_attn = AdaLNResidual(attn, dim, time_dim)
        self.cross_attn = AdaLNResidual(CrossAttention(dim, num_heads), dim, time_dim)
        self.ff = AdaLNResidual(SwiGLU(dim, ff_hidden), dim, time_dim)

    def forward(self, x, mask, c, kv, kv_mask):
        x = zero_padded(x, mask)
        x = self.self_attn(x, c, mask)
        x = self.cross_attn(x, c, mask, kv, kv_mask)
        return zero_padded(self.ff(x, c), mask)


class SSFMDecoder(nn.Module):
    """forward(x_t (B,N,F), mask (B,N) True = dropped particle, c (B,time_dim), kv (B,K,dim), kv_mask (B,K)) ->
    velocity (B,N,F), zero outside `mask`. Input and output linear layers map the F = 7 + 8 particle features
    (continuous x_c and one-hot ID) to the decoder width (do_input_linear / do_output_linear in jetssl
    configs/model/sdm.yaml); no registers and no final LayerNorm unless final_norm."""

    def __init__(self, num_features: int, dim: int, depth: int, num_heads: int, ff_hidden: int, time_dim: int,
                 final_norm: bool = False):
        super().__init__()
        self.embed = nn.Linear(num_features, dim)
        self.blocks = nn.ModuleList(SSFMDecoderBlock(dim, num_heads, ff_hidden, time_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()
        self.out = nn.Linear(dim, num_features)

    def forward(self, x_t, mask, c, kv, kv_mask):
        x = self.embed(x_t)
        for block in self.blocks:
            x = block(x, mask, c, kv, kv_mask)
        return zero_padded(self.out(self.norm(x)), mask)
