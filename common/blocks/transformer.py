"""Transformer blocks shared by MPM, OmniJet-alpha and HEP-JEPA.

Every attention goes through torch.nn.functional.scaled_dot_product_attention (SDPA) with a boolean key-padding
mask (True = real particle). Padded particles never change a real particle's output:
  * padded keys are masked out of every softmax,
  * padded rows are zeroed (masked_fill, so even inf/NaN garbage is removed) before every encoder block,
  * a query row with no allowed key at all (a padded row of an empty jet) attends to every key instead of producing
    NaN; its output is zeroed afterwards.
Blocks without positional input are permutation-equivariant.

Contents
  Attention     multi-head self-attention, optional additive bias (B,H,N,N), causal mode, KV cache
  EncoderBlock  styles "preln" (ViT), "normformer" (MPMv1 backbone, OmniJet VQ-VAE), "swiglu" (MPMv2, LayerScale)
  Encoder       stack of EncoderBlocks with optional register tokens (Darcet et al. 2023) and final LayerNorm
  GPTBlock, GPT post-LN causal decoder of OmniJet-alpha (omnijet_alpha gpt_model.py) with KVCache for sampling
  PairEmbed     Particle Transformer pairwise interaction embedding (arXiv:2202.03772), BatchNorm over real pairs only
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STYLES = ("preln", "normformer", "swiglu")


def _activation(name: str) -> nn.Module:
    acts = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(acts)}")
    return acts[name]()


def zero_padded(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Set padded rows of x (B,N,D) to exactly zero (masked_fill also removes inf/NaN garbage)."""
    if mask is None:
        return x
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


# --------------------------------------------------------------------------------------------------------------------
# KV cache for incremental (autoregressive) decoding
# --------------------------------------------------------------------------------------------------------------------
class LayerKV:
    """Keys, values and key mask of the tokens one attention layer has already seen."""

    def __init__(self):
        self.k = None  # (B,H,T,hd)
        self.v = None
        self.key_mask = None  # (B,T) bool

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k, v, key_mask):
        if self.k is None:
            self.k, self.v, self.key_mask = k, v, key_mask
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
            self.key_mask = torch.cat([self.key_mask, key_mask], dim=1)
        return self.k, self.v, self.key_mask


class KVCache:
    """One LayerKV per decoder layer; `len(cache)` is the number of tokens already decoded."""

    def __init__(self, num_layers: int):
        self.layers = [LayerKV() for _ in range(num_layers)]

    def __getitem__(self, i: int) -> LayerKV:
        return self.layers[i]

    def __len__(self) -> int:
        return self.layers[0].length


# --------------------------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention through SDPA.

    out_norm: an extra LayerNorm on the concatenated heads before the output projection (Normformer, MPMv1: arXiv:2401.13537).
    qkv_bias: bias of the fused QKV projection (OmniJet's GPT has none).
    """

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, out_norm: bool = False,
                 qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.out_norm = nn.LayerNorm(dim) if out_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, attn_bias: torch.Tensor | None = None,
                causal: bool = False, kv_cache: LayerKV | None = None,
                zero_padded_queries: bool = True, finite_padding: bool = False) -> torch.Tensor:
        """x (B,N,D); mask (B,N) bool True = real token; attn_bias (B,H,N,N) added to the logits (ParT);
        causal: query i sees keys <= i; kv_cache: a LayerKV holding earlier tokens (x are then the new tokens,
        positions len(cache) ... len(cache)+N-1) which is extended in place. Outputs of padded query rows are zeroed
        unless zero_padded_queries=False (the GPT keeps them, see GPT). finite_padding: the caller guarantees finite
        padded rows of x (EncoderBlock: a LayerNorm of zeroed rows), so padded keys and values need no zeroing: the
        mask gives them weight exactly 0 (bit-identical outputs and gradients, tests/test_blocks.py)."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if mask is not None and not finite_padding:  # garbage (inf/NaN) in padded rows must never reach a real query
            pad = ~mask[:, None, :, None]
            k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
        offset, q_mask = 0, mask
        if kv_cache is not None:
            offset = kv_cache.length
            new_mask = mask if mask is not None else torch.ones(B, N, dtype=torch.bool, device=x.device)
            k, v, mask = kv_cache.append(k, v, new_mask)
        T = k.shape[2]

        attn_mask = None
        if mask is not None or attn_bias is not None or (causal and (offset or N != T)):
            # without causality every query row allows the same keys: one (B, 1, 1, T) row, broadcast by the attention
            allowed = torch.ones(B, 1, N if causal else 1, T, dtype=torch.bool, device=x.device)
            if mask is not None:
                allowed = allowed & mask[:, None, None, :]
            if causal:
                q_pos = torch.arange(offset, offset + N, device=x.device)
                k_pos = torch.arange(T, device=x.device)
                allowed = allowed & (k_pos[None, :] <= q_pos[:, None])
            # a row with no allowed key (padded query of an empty jet) attends to everything instead of giving NaN
            allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
            if attn_bias is None:
                attn_mask = allowed
            else:
                attn_mask = attn_bias.to(q.dtype).masked_fill(~allowed, float("-inf"))
            causal_flag = False
        else:
            causal_flag = causal

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal_flag,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = self.proj(self.out_norm(out.transpose(1, 2).reshape(B, N, D)))
        return zero_padded(out, q_mask) if zero_padded_queries else out


# --------------------------------------------------------------------------------------------------------------------
# Encoder blocks
# --------------------------------------------------------------------------------------------------------------------
class LayerScale(nn.Module):
    """Per-channel learnable residual scale (Touvron et al. 2021, CaiT); MPMv2 uses init 1e-3 (jetssl
    encoder_config/small.yaml)."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x):
        return x * self.gamma


class SwiGLU(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020): W2 (SiLU(x W) * x V)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.drop = nn.Dropout(dropout)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(self.drop(F.silu(a) * b))


class EncoderBlock(nn.Module):
    """One bidirectional transformer block, forward(x, mask, attn_bias=None) -> x.

    style "preln":      x += Attn(LN(x)); x += MLP(LN(x)), MLP = Linear -> act -> Linear           (ViT / I-JEPA)
    style "normformer": x += Attn(LN(x)) with an LN before the output projection;
                        x += MLP(LN(x)), MLP = Linear -> act -> LN -> Linear;
                        both output projections zero-initialised, so a fresh block is the identity
                        (MPMv1, arXiv:2401.13537; OmniJet-alpha, arXiv:2403.05618, also uses a Normformer block)
    style "swiglu":     pre-LN, SwiGLU MLP, LayerScale on both residuals (MPMv2, arXiv:2409.12589)

    layerscale_init: None -> style default (1e-3 for "swiglu", off otherwise); a float > 0 -> LayerScale with that init;
    0 -> off. act: MLP activation (default "gelu" for preln, "silu" for normformer; MPMv1 used "leaky_relu").
    dropout: dropout on the MLP hidden layer and on both residual branches; attn_dropout: attention-probability
    dropout (None -> `dropout`; MPMv1 uses attention dropout only: rodem-hep/mpm configs/model/encoder/*.yaml set
    mha_config.drp and no dense-layer dropout).
    """

    def __init__(self, dim: int, num_heads: int, ff_hidden: int, *, style: str = "preln",
                 layerscale_init: float | None = None, dropout: float = 0.0, act: str | None = None,
                 attn_dropout: float | None = None):
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"unknown EncoderBlock style {style!r}; expected one of {STYLES}")
        self.style = style
        if layerscale_init is None:
            layerscale_init = 1e-3 if style == "swiglu" else 0.0
        self.norm1 = nn.LayerNorm(dim)
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.attn = Attention(dim, num_heads, dropout=attn_dropout, out_norm=(style == "normformer"))
        self.norm2 = nn.LayerNorm(dim)
        if style == "swiglu":
            self.mlp = SwiGLU(dim, ff_hidden, dropout)
        else:
            act = act or ("silu" if style == "normformer" else "gelu")
            layers = [nn.Linear(dim, ff_hidden), _activation(act)]
            if style == "normformer":
                layers.append(nn.LayerNorm(ff_hidden))
            layers += [nn.Dropout(dropout), nn.Linear(ff_hidden, dim)]
            self.mlp = nn.Sequential(*layers)
        if style == "swiglu":  # fused QKV with Xavier init (MPMv2, arXiv:2409.12589)
            nn.init.xavier_uniform_(self.attn.qkv.weight)
        if style == "normformer":  # zero-initialised output projections (MPMv1, arXiv:2401.13537)
            for lin in (self.attn.proj, self.mlp[-1]):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.ls1 = LayerScale(dim, layerscale_init) if layerscale_init else nn.Identity()
        self.ls2 = LayerScale(dim, layerscale_init) if layerscale_init else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, attn_bias: torch.Tensor | None = None,
                zero_padded_input: bool = False):
        """zero_padded_input: x is exactly zero at padded rows already (Encoder: its input and every block's output)."""
        if not zero_padded_input:
            x = zero_padded(x, mask)
        x = x + self.drop(self.ls1(self.attn(self.norm1(x), mask, attn_bias, finite_padding=True)))
        x = x + self.drop(self.ls2(self.mlp(self.norm2(x))))
        return zero_padded(x, mask)


class Encoder(nn.Module):
    """Stack of EncoderBlocks; forward(x (B,N,D), mask (B,N), attn_bias (B,H,N,N) | None) -> (h (B,R+N,D), mask).

    num_registers R learnable tokens (init N(0,1)*1e-3, MPMv2: arXiv:2409.12589) are prepended; they are real (mask True) and get a
    zero attention bias. Padded outputs are zeroed. pos (B,N,D) | None: added to the (non-register) tokens before every block (Point-JEPA
    `add_pos_at_every_layer`, pointjepa/modules/transformer.py).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, ff_hidden: int, *, style: str = "preln",
                 num_registers: int = 0, final_norm: bool = True, layerscale_init: float | None = None,
                 dropout: float = 0.0, act: str | None = None, attn_dropout: float | None = None):
        super().__init__()
        self.dim, self.num_heads, self.num_registers = dim, num_heads, num_registers
        self.registers = nn.Parameter(torch.randn(1, num_registers, dim) * 1e-3) if num_registers else None
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, num_heads, ff_hidden, style=style, layerscale_init=layerscale_init, dropout=dropout,
                         act=act, attn_dropout=attn_dropout)
            for i in range(depth))
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, attn_bias: torch.Tensor | None = None,
                pos: torch.Tensor | None = None):
        B = x.shape[0]
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        x = zero_padded(x, mask)
        if self.num_registers:
            R = self.num_registers
            x = torch.cat([self.registers.expand(B, -1, -1).to(x.dtype), x], dim=1)
            mask = torch.cat([torch.ones(B, R, dtype=torch.bool, device=mask.device), mask], dim=1)
            if attn_bias is not None:
                attn_bias = F.pad(attn_bias, (R, 0, R, 0))  # zero bias for register rows and columns
            if pos is not None:
                pos = F.pad(pos, (0, 0, R, 0))  # registers get no positional embedding
        for block in self.blocks:
            if pos is not None:
                x = x + pos.to(x.dtype)
            x = block(x, mask, attn_bias, zero_padded_input=pos is None)  # zeroed above / by the previous block
        return zero_padded(self.norm(x), mask), mask


# --------------------------------------------------------------------------------------------------------------------
# GPT decoder (OmniJet-alpha 4.1)
# --------------------------------------------------------------------------------------------------------------------
class GPTBlock(nn.Module):
    """Post-LN causal block: x = LN1(x + MHA(x)); x = LN2(x + FF(x)), FF = Linear -> ReLU -> Linear (omnijet_alpha
    gabbro/models/gpt_model.py).
    Q, K, V have no bias; the output projection has one. `dropout` is the attention-probability dropout."""

    def __init__(self, dim: int, num_heads: int, ff_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout=dropout, qkv_bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_hidden), nn.ReLU(), nn.Linear(ff_hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x, mask=None, kv_cache: LayerKV | None = None):
        x = self.norm1(x + self.attn(x, mask, causal=True, kv_cache=kv_cache, zero_padded_queries=False))
        return self.norm2(x + self.ff(x))


class GPT(nn.Module):
    """Token embedding + causal GPTBlocks, no positional embedding (order comes from the causal mask only).

    forward(tokens (B,T) long, mask (B,T) bool | None) -> hidden (B,T,D). Padded keys are masked; padded query rows
    still attend causally to the real tokens before them (so a loss over padded positions, as in the original, is
    well defined); they never influence real positions. The next-token head lives in the method code.

    Incremental decoding (sampling):
        cache = gpt.new_cache()
        h = gpt.forward_incremental(prefix, cache)       # (B,T0,D), fills the cache
        h = gpt.forward_incremental(next_tok[:, None], cache)   # (B,1,D), one token at a time
    equals gpt(full_sequence)[:, -1] up to float rounding. `step(token (B,), cache) -> (B,D)` is the one-token form.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, ff_hidden: int, vocab_size: int, *,
                 dropout: float = 0.0):
        super().__init__()
        self.dim, self.depth, self.vocab_size = dim, depth, vocab_size
        self.embed = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(GPTBlock(dim, num_heads, ff_hidden, dropout) for _ in range(depth))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return x

    def new_cache(self) -> KVCache:
        return KVCache(self.depth)

    def forward_incremental(self, tokens: torch.Tensor, cache: KVCache, mask: torch.Tensor | None = None):
        """Hidden states of the new tokens (B,t) given everything in `cache`, which is extended in place."""
        x = self.embed(tokens)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, kv_cache=cache[i])
        return x

    def step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One decoding step: token (B,) -> hidden (B,D) of that position."""
        return self.forward_incremental(token[:, None], cache)[:, 0]


# --------------------------------------------------------------------------------------------------------------------
# Particle Transformer pairwise interaction embedding (arXiv:2202.03772; weaver ParticleTransformer.py)
# --------------------------------------------------------------------------------------------------------------------
class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B,C,P) whose batch statistics use only valid positions (valid (B,P) bool).

    Padded pairs therefore never change the normalisation of real pairs. Running statistics follow torch's
    convention (biased variance to normalise, unbiased variance in the running average)."""

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x.float()  # statistics in fp32, also under bf16 autocast (as torch's BatchNorm)
        if self.training:
            w = valid.unsqueeze(1).to(x.dtype)  # (B,1,P)
            n = w.sum().clamp(min=1.0)
            xz = x.masked_fill(~valid.unsqueeze(1), 0.0)
            mean = xz.sum(dim=(0, 2)) / n
            var = (((xz - mean[None, :, None]) * w) ** 2).sum(dim=(0, 2)) / n
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp(min=1.0))
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y.masked_fill(~valid.unsqueeze(1), 0.0)


def tril_indices(n: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.tril_indices(n, n) (lower triangle with the diagonal, row-major), built from arange so that it also
    exports to ONNX (which has no tril_indices operator)."""
    r = torch.arange(n, device=device)
    i, j = r[:, None].expand(n, n).reshape(-1), r[None, :].expand(n, n).reshape(-1)
    keep = j <= i
    return i[keep], j[keep]


class PairEmbed(nn.Module):
    """ParT pair embedding: BN(4) -> [Conv1d 1x1 -> BN -> GELU] x (hidden..., num_heads) on the pairwise features
    U = [ln kT, ln z, ln Delta, ln m^2] (common.blocks.pairwise.pairwise_features).

    forward(pair_feats (B,4,N,N), mask (B,N)) -> bias (B,H,N,N), zero wherever either particle is padding.
    As in ParT only the lower triangle (diagonal included) is embedded and mirrored; BatchNorm statistics use real
    pairs only. pre_activation=True drops the last BN+GELU (ParT `use_pre_activation_pair`; its example config: False).
    """

    def __init__(self, num_heads: int, pair_dim: int = 4, hidden=(64, 64, 64), pre_activation: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.input_bn = MaskedBatchNorm1d(pair_dim)
        dims = [pair_dim, *hidden, num_heads]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, 1) for a, b in zip(dims[:-1], dims[1:]))
        n_act = len(self.convs) - (1 if pre_activation else 0)
        self.bns = nn.ModuleList(MaskedBatchNorm1d(d) for d in dims[1:1 + n_act])
        self.act = nn.GELU()

    def forward(self, pair_feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, C, N, _ = pair_feats.shape
        i, j = tril_indices(N, pair_feats.device)
        x = pair_feats[:, :, i, j]  # (B,C,P)
        valid = mask[:, i] & mask[:, j]  # (B,P)
        x = self.input_bn(x.masked_fill(~valid.unsqueeze(1), 0.0), valid)
        for k, conv in enumerate(self.convs):
            x = conv(x)
            if k < len(self.bns):
                x = self.act(self.bns[k](x, valid))
        x = x.masked_fill(~valid.unsqueeze(1), 0.0)
        out = x.new_zeros(B, self.num_heads, N, N)
        out[:, :, i, j] = x
        out[:, :, j, i] = x
        return out
