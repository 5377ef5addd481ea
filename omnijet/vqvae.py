"""OmniJet-alpha tokenisers: the conditional VQ-VAE and the two baselines of the token-quality study.

All three map the `omnijet` particle features x = (log pT - 1.8, 3 eta_rel, 3 phi_rel) (OJ gabbro/data/loading.py
read_jetclass_file; feature_dict of the configs) of a padded jet
to one integer code per particle and back (the OmniJet paper's "tokenisation", arXiv:2403.05618 Sec. 3; the name
MPM's tokenisers use too):

    tokenize(x, mask) -> codes (B, N) long          decode(codes, mask) -> x_reco (B, N, 3)

- ConditionalVQVAE (the paper's tokeniser, OJ gabbro/models/vqvae.py "VQVAENormFormer"): Linear(3 -> 128),
  4 NormformerBlockOJ, Linear(128 -> 4), vector quantiser (8192 codes), Linear(4 -> 128), 4 NormformerBlockOJ,
  Linear(128 -> 3). Encoder and decoder see the whole jet, so a particle's token depends on its context
  ("conditional" tokens).
- MLPVQVAE (the "unconditional" baseline, `VQVAEMLP`, OJ experiment_tokenization_mlp.yaml): the same quantiser between
  per-particle MLPs.
- BinnedTokenizer (Finke et al. arXiv:2303.07364 style baseline): a regular grid in the three features; no training.

Loss (OJ gabbro/models/vqvae.py): MSE(x_reco, x) + alpha * VQ loss with alpha = 10. The original averages both terms
over padded positions too (they are zero on both sides); `exclude_padding` switches that off.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from common.blocks.transformer import Attention, EncoderBlock, zero_padded
from common.blocks.vq import VectorQuantizer
from common.training.checkpoint import load_trained
from common.training.config import load_config


def _vq_from_cfg(latent_dim: int, vq_cfg: dict) -> VectorQuantizer:
    """The vqtorch-style quantiser (minyoungg/vqtorch VectorQuant; Huh et al. 2023) (beta split, affine codebook,
    sync-nu STE, k-means init, LRU reset)."""
    return VectorQuantizer(
        vq_cfg["num_codes"],
        latent_dim,
        beta=vq_cfg["beta"],
        affine_lr=vq_cfg["affine_lr"],
        sync_nu=vq_cfg["sync_nu"],
        kmeans_init=vq_cfg["kmeans_init"],
        replace_freq=vq_cfg["replace_freq"],
    )


def masked_mse(x_reco: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, exclude_padding: bool) -> torch.Tensor:
    """Reconstruction loss of OJ gabbro/models/vqvae.py: the mean over all B x N x F entries (original) or over real
    particles only."""
    sq = (x_reco - x).pow(2)
    if not exclude_padding:
        return sq.mean()
    m = mask.unsqueeze(-1).to(sq.dtype)
    return (sq * m).sum() / (m.sum() * sq.shape[-1]).clamp_min(1.0)


class _VQVAEBase(nn.Module):
    """Shared encode / quantise / decode logic; subclasses define `_encode(x, mask)` and `_decode(z, mask)`."""

    def __init__(self, latent_dim: int, vq_cfg: dict, alpha: float, exclude_padding: bool):
        super().__init__()
        self.vq = _vq_from_cfg(latent_dim, vq_cfg)
        self.alpha = alpha
        self.exclude_padding = exclude_padding

    @property
    def num_codes(self) -> int:
        return self.vq.num_codes

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict:
        z = self._encode(x, mask)
        # The original quantises padded (zero) latents too and lets them enter k-means init and the VQ loss (OJ
        # gabbro/models/vqvae.py).
        vq = self.vq(z, mask if self.exclude_padding else None)
        x_reco = self._decode(vq.z_q, mask)
        reco = masked_mse(x_reco, x, mask, self.exclude_padding)
        codes = vq.codes.masked_fill(~mask, 0)
        return dict(
            x_reco=x_reco,
            codes=codes,
            loss=reco + self.alpha * vq.loss,  # OJ gabbro/models/vqvae.py: MSE + alpha * VQ loss
            reco_loss=reco.detach(),
            vq_loss=vq.loss.detach(),
            utilisation=torch.as_tensor(float(vq.utilisation)),
        )

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Code index per particle, 0 at padding (the mask tells them apart)."""
        z = self._encode(x, mask)
        return self.vq(z, mask).codes.masked_fill(~mask, 0)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Particles from codes (OJ `reconstruct_ak_tokens`): affine codebook rows -> decoder, zero at padding."""
        z_q = self.vq.lookup(codes.clamp(0, self.num_codes - 1))
        return self._decode(z_q, mask) * mask.unsqueeze(-1).to(z_q.dtype)


class NormformerBlockOJ(nn.Module):
    """The block of OJ's VQ-VAE (uhh-pd-ml/omnijet_alpha gabbro/models/vqvae.py `NormformerBlock`):

        x = LN2(MHA(LN1(x))) + x;   x = MLP(x) + x,   MLP = LN -> Linear -> SiLU -> Dropout -> Linear

    LN1's weight and the last MLP Linear are zero-initialised; dropout on the attention probabilities and after the
    SiLU only (none on the residual branches). The attention is initialised as torch's nn.MultiheadAttention (Xavier
    fused QKV, zero biases), which OJ uses."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mlp_dim), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim))
        nn.init.xavier_uniform_(self.attn.qkv.weight)
        for p in (self.attn.qkv.bias, self.attn.proj.bias, self.mlp[-1].weight, self.mlp[-1].bias, self.norm1.weight):
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = zero_padded(x, mask)
        x = self.norm2(self.attn(self.norm1(x), mask)) + x
        return self.mlp(x) + x


BLOCKS = ("normformer_oj", "normformer_mpmv1")


def _block(kind: str, dim: int, num_heads: int, ff_hidden: int, dropout: float) -> nn.Module:
    if kind == "normformer_oj":
        return NormformerBlockOJ(dim, num_heads, ff_hidden, dropout)
    if kind == "normformer_mpmv1":
        return EncoderBlock(dim, num_heads, ff_hidden, style="normformer", dropout=dropout)
    raise ValueError(f"config: model.block = {kind!r}; expected one of {', '.join(BLOCKS)}")


class _NormformerStack(nn.Module):
    """Linear in -> depth x Normformer block -> Linear out, padded rows zeroed (OJ gabbro/models/vqvae.py; no
    positional encoding)."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, depth: int, num_heads: int, ff_hidden: int, dropout: float,
                 block: str = "normformer_oj"):
        super().__init__()
        self.inp = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(_block(block, dim, num_heads, ff_hidden, dropout) for _ in range(depth))
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        h = self.inp(x) * m
        for block in self.blocks:
            h = block(h, mask) * m
        return self.out(h) * m


class ConditionalVQVAE(_VQVAEBase):
    """The paper's tokeniser (arXiv:2403.05618; OJ VQVAENormFormer): transformer encoder and decoder, so tokens carry
    jet context."""

    def __init__(self, input_dim: int, hidden_dim: int, latent_dim: int, depth: int, num_heads: int, dropout: float,
                 vq_cfg: dict, alpha: float = 10.0, exclude_padding: bool = False, block: str = "normformer_oj"):
        super().__init__(latent_dim, vq_cfg, alpha, exclude_padding)
        self.encoder = _NormformerStack(input_dim, hidden_dim, latent_dim, depth, num_heads, hidden_dim, dropout, block)
        self.decoder = _NormformerStack(latent_dim, hidden_dim, input_dim, depth, num_heads, hidden_dim, dropout, block)

    def _encode(self, x, mask):
        return self.encoder(x, mask)

    def _decode(self, z, mask):
        return self.decoder(z, mask)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPVQVAE(_VQVAEBase):
    """Unconditional baseline (OJ `VQVAEMLP`): each particle is encoded on its own, layers [128, 128, 128].

    encode_padding=True is OJ's VQVAEMLP (uhh-pd-ml/omnijet_alpha gabbro/models/vqvae.py: the mask is not used):
    padded (zero) rows are encoded, quantised and decoded like particles, and their reconstruction of 0 enters the
    loss; False zeroes the latents and reconstructions of padded rows."""

    def __init__(self, input_dim: int, hidden_layers: list[int], latent_dim: int, vq_cfg: dict,
                 alpha: float = 10.0, exclude_padding: bool = False, encode_padding: bool = True):
        super().__init__(latent_dim, vq_cfg, alpha, exclude_padding)
        self.encoder = _mlp([input_dim, *hidden_layers, latent_dim])
        self.decoder = _mlp([latent_dim, *hidden_layers, input_dim])
        self.encode_padding = encode_padding

    def _encode(self, x, mask):
        z = self.encoder(x)
        return z if self.encode_padding else z * mask.unsqueeze(-1).to(x.dtype)

    def _decode(self, z, mask):
        x = self.decoder(z)
        return x if self.encode_padding else x * mask.unsqueeze(-1).to(z.dtype)


class BinnedTokenizer(nn.Module):
    """Regular-grid baseline (Finke et al. arXiv:2303.07364 style): each feature is replaced by its bin centre (OJ
    `apply_binning`, values clipped
    to the outer edges); code = flat index of the (pT, eta, phi) cell. No trainable parameters."""

    def __init__(self, ranges: list[list[float]], n_bins: list[int]):
        super().__init__()
        if len(ranges) != len(n_bins):
            raise ValueError(f"binned tokenizer: {len(ranges)} ranges but {len(n_bins)} bin counts")
        self.register_buffer("lo", torch.tensor([r[0] for r in ranges], dtype=torch.float32))
        self.register_buffer("hi", torch.tensor([r[1] for r in ranges], dtype=torch.float32))
        self.register_buffer("n", torch.tensor(n_bins, dtype=torch.long))
        strides = [1] * len(n_bins)
        for i in range(len(n_bins) - 2, -1, -1):
            strides[i] = strides[i + 1] * n_bins[i + 1]
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.long))

    @property
    def num_codes(self) -> int:
        return int(torch.prod(self.n))

    def tokenize(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        width = (self.hi - self.lo) / self.n
        idx = torch.floor((x - self.lo) / width).long()
        idx = torch.minimum(idx.clamp_min(0), self.n - 1)
        return (idx * self.strides).sum(-1).masked_fill(~mask, 0)

    def decode(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        idx = (codes.unsqueeze(-1) // self.strides) % self.n
        width = (self.hi - self.lo) / self.n
        x = self.lo + (idx.to(torch.float32) + 0.5) * width
        return x * mask.unsqueeze(-1).to(x.dtype)


def build_tokenizer(model_cfg: dict) -> nn.Module:
    """Tokeniser from the `model:` section of a tokenizer config (kind: conditional | mlp | binned)."""
    kind = model_cfg["kind"]
    if kind == "conditional":
        return ConditionalVQVAE(
            model_cfg["input_dim"], model_cfg["hidden_dim"], model_cfg["latent_dim"], model_cfg["depth"],
            model_cfg["num_heads"], model_cfg["dropout"], model_cfg["vq"], model_cfg["alpha"],
            model_cfg["exclude_padding"],
            model_cfg.get("block", "normformer_mpmv1"),  # run directories written before the key used the MPMv1 block
        )
    if kind == "mlp":
        return MLPVQVAE(
            model_cfg["input_dim"], list(model_cfg["mlp_layers"]), model_cfg["latent_dim"], model_cfg["vq"],
            model_cfg["alpha"], model_cfg["exclude_padding"],
            model_cfg.get("mlp_encode_padding", False),  # run directories written before the key zeroed padding
        )
    if kind == "binned":
        return BinnedTokenizer(model_cfg["bin_ranges"], model_cfg["bin_counts"])
    raise ValueError(f"model.kind must be conditional | mlp | binned, got {kind!r}")


def load_tokenizer(run_dir, device="cpu") -> nn.Module:
    """A trained tokeniser from its omnijet.train_tokenizer run directory (config.yaml + checkpoint.pt), in eval
    mode."""
    run_dir = Path(run_dir)
    model = build_tokenizer(load_config(run_dir / "config.yaml")["model"])
    ckpt_path = run_dir / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: no tokeniser checkpoint (run omnijet.train_tokenizer first)")
    model.load_state_dict(load_trained(ckpt_path, "tokeniser")["model"])
    return model.to(device).eval()
