"""VQ-VAE tokenisers whose codes are the MPM targets (arXiv:2401.13537, arXiv:2409.12589).

MPMv1: transformer encoder -> Linear to the code space (512 codes of dimension 16) -> vector quantiser -> Linear ->
transformer decoder -> per-particle reconstruction. Quantisation is per particle, but the code of a particle depends
on its jet through attention. Loss = L1 reconstruction (normalised features, summed over the features of a particle
and averaged per jet over real particles, as VqVae._shared_step in rodem-hep/mpm src/models/jet_vq_vae.py)
+ alpha * VQ loss (also averaged per jet, then over the jets, as there: `loss_average="jet"`), with alpha = 10 and
the quantiser's beta = 0.9 (arXiv:2401.13537). The quantiser (affine codebook, k-means init, dead-code replacement)
is common.blocks.vq.VectorQuantizer.

MPMv2 uses the same class with 8 registers, 3 layers of dim 128, 32-d codes, a Huber reconstruction loss and no
extra normalisation (its inputs are already quantile-normalised by the data layer); its Huber loss is the mean over
the features and over every real particle of the batch (huber_loss(dec_outs[mask], csts[mask]) in mattcleigh/jetssl
src/models/vae.py, as is its VQ loss of quantizer(enc_outs[mask])): `recon_reduction="mean"`,
`loss_average="particle"`; its quantiser is the cosine-similarity, EMA-updated one of common.blocks.vq (distance="cosine",
codebook_update="ema").

`KMeansTokenizer` wraps common.blocks.kmeans.KMeans behind the same `tokenize(x, mask)` interface (MPMv1: 512 centroids on
raw features; MPMv2: 16384 centroids on the 7 continuous features).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks.kmeans import nearest
from common.blocks.transformer import Encoder
from common.blocks.vq import VectorQuantizer
from common.data.features import get_feature_set
from common.training.checkpoint import load_trained

from mpm.masking import masked_jet_mean
from mpm.normalise import IterativeNorm


class VQVAE(nn.Module):
    def __init__(self, in_dim: int, *, dim: int = 256, depth: int = 4, num_heads: int = 8, ff_hidden: int = 512,
                 num_registers: int = 0, style: str = "normformer", dropout: float = 0.0,
                 attn_dropout: float | None = None, num_codes: int = 512,
                 code_dim: int = 16, beta: float = 0.9, alpha: float = 10.0, recon_loss: str = "l1",
                 normalise: bool = True, norm_max_n: float = 1e6, target_codebook: str = "affine",
                 vq: dict | None = None, recon_reduction: str = "sum", loss_average: str = "jet"):
        super().__init__()
        if loss_average not in ("jet", "particle"):
            raise ValueError(f"VQVAE loss_average must be jet | particle, got {loss_average!r}")
        if "loss_average" in (vq or {}):
            raise ValueError("set the VQ-VAE loss averaging with vqvae.loss_average, not vqvae.vq.loss_average")
        self.loss_average = loss_average
        if recon_loss not in ("l1", "huber", "mse"):
            raise ValueError(f"VQVAE recon_loss must be l1 | huber | mse, got {recon_loss!r}")
        if recon_reduction not in ("sum", "mean"):
            raise ValueError(f"VQVAE recon_reduction must be sum | mean, got {recon_reduction!r}")
        self.recon_reduction = recon_reduction
        if target_codebook not in ("affine", "raw"):
            raise ValueError(f"VQVAE target_codebook must be affine | raw, got {target_codebook!r}")
        self.in_dim, self.alpha, self.recon_loss, self.target_codebook = in_dim, alpha, recon_loss, target_codebook
        self.norm = IterativeNorm(in_dim, norm_max_n) if normalise else None
        self.enc_in = nn.Linear(in_dim, dim)
        self.encoder = Encoder(dim, depth, num_heads, ff_hidden, style=style, num_registers=num_registers,
                               dropout=dropout, attn_dropout=attn_dropout,
                               act="leaky_relu" if style == "normformer" else None)
        self.to_code = nn.Linear(dim, code_dim)
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, loss_average=loss_average, **(vq or {}))
        if target_codebook == "raw" and self.quantizer.distance != "euclidean":
            # "raw" labels by Euclidean distance to the un-affined rows (the V1 code's labelling); under the cosine
            # quantiser that is neither its nearest code nor the V1 labelling
            raise ValueError("vqvae.target_codebook=raw needs vqvae.vq.distance=euclidean (the cosine quantiser "
                             "labels with its own codebook: use target_codebook=affine)")
        self.from_code = nn.Linear(code_dim, dim)
        self.decoder = Encoder(dim, depth, num_heads, ff_hidden, style=style, num_registers=num_registers,
                               dropout=dropout, attn_dropout=attn_dropout,
                               act="leaky_relu" if style == "normformer" else None)
        self.dec_out = nn.Linear(dim, in_dim)
        self.num_registers = num_registers

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def normalised(self, x, mask):
        return self.norm(x, mask) if self.norm is not None else x.masked_fill(~mask.unsqueeze(-1), 0.0)

    def encode(self, x, mask):
        """Raw features (B,N,F) -> pre-quantisation latents z_e (B,N,code_dim)."""
        h, _ = self.encoder(self.enc_in(self.normalised(x, mask)), mask)
        return self.to_code(h[:, self.num_registers:])

    def decode(self, z_q, mask):
        h, _ = self.decoder(self.from_code(z_q), mask)
        return self.dec_out(h[:, self.num_registers:])

    def forward(self, x, mask):
        z_e = self.encode(x, mask)
        vq = self.quantizer(z_e, mask)
        recon = self.decode(vq.z_q, mask)
        return recon, vq

    def loss(self, x, mask):
        """Reconstruction in (normalised) input space + alpha * VQ loss (rodem-hep/mpm src/models/jet_vq_vae.py)."""
        if self.training and self.norm is not None:
            self.norm.update(x, mask)
        target = self.normalised(x, mask).detach()
        recon, vq = self(x, mask)
        fn = {"l1": F.l1_loss, "huber": F.huber_loss, "mse": F.mse_loss}[self.recon_loss]
        per_feature = fn(recon, target, reduction="none")
        per_particle = per_feature.sum(-1) if self.recon_reduction == "sum" else per_feature.mean(-1)
        if self.loss_average == "jet":
            rec = masked_jet_mean(per_particle, mask)
        else:
            rec = per_particle[mask].mean() if mask.any() else per_particle.sum() * 0.0
        total = rec + self.alpha * vq.loss
        return total, {"recon": rec.detach(), "vq": vq.loss.detach(), "utilisation": torch.as_tensor(vq.utilisation),
                       "perplexity": torch.as_tensor(vq.perplexity)}

    # ---- tokeniser interface used by the MPM models (frozen, eval mode) ----------------------------------------------
    @torch.no_grad()
    def tokenize(self, x, mask) -> torch.Tensor:
        """Code index of every particle (B,N) long, 0 at padding. target_codebook "raw" reproduces the MPMv1 code's
        choice of labelling with the un-affined codebook weights (rodem-hep/mpm src/models/jet_vq_vae.py); "affine"
        uses the quantiser's own
        nearest code."""
        z_e = self.encode(x, mask)
        if self.target_codebook == "raw":
            codebook = self.quantizer.weight  # pre-affine rows
            codes = torch.cdist(z_e.float(), codebook.float()[None]).argmin(dim=-1)
        else:
            codes = self.quantizer(z_e, mask).codes
        return codes.masked_fill(~mask, 0)

    @torch.no_grad()
    def quantise(self, x, mask) -> torch.Tensor:
        """Quantised latents z_q (B,N,code_dim): the "VQ-VAE quantised" inputs of the MPMv1 pretraining table."""
        codes = self.quantizer(self.encode(x, mask), mask).codes
        return self.quantizer.lookup(codes).masked_fill(~mask.unsqueeze(-1), 0.0)


class KMeansTokenizer(nn.Module):
    """Nearest-centroid labels of a fitted common.blocks.kmeans.KMeans on per-particle features (rodem-hep/mpm
    src/models/labellers.py). The centroids
    are a buffer, so they follow the model to its device and into its checkpoints."""

    def __init__(self, centroids: torch.Tensor):
        super().__init__()
        self.register_buffer("centroids", centroids.float().clone())

    @classmethod
    def from_kmeans(cls, km) -> "KMeansTokenizer":
        return cls(km.centroids)

    @property
    def num_codes(self) -> int:
        return self.centroids.shape[0]

    @torch.no_grad()
    def tokenize(self, x, mask) -> torch.Tensor:
        codes = torch.zeros(mask.shape, dtype=torch.long, device=x.device)
        if mask.any():
            codes[mask] = nearest(x[mask].float(), self.centroids)[0]
        return codes

    def quantise(self, x, mask):
        raise NotImplementedError("quantised inputs need a VQ-VAE tokeniser (tokenizer.kind: vqvae)")


# ---------------------------------------------------------------------------------------------------------------------
# builder, training wrapper and loader of a trained tokeniser (mpm.train_tokenizer writes tokenizer.pt)

def num_features(data_cfg: dict) -> int:
    """Per-particle input features of a data config (its feature set)."""
    return len(get_feature_set(data_cfg["features"]).names)


def build_vqvae(cfg: dict) -> VQVAE:
    """The VQ-VAE of a tokeniser config (its `vqvae` and `data` sections)."""
    v = cfg["vqvae"]
    return VQVAE(num_features(cfg["data"]), dim=v["dim"], depth=v["depth"], num_heads=v["num_heads"],
                 ff_hidden=v["ff_hidden"], num_registers=v["num_registers"], style=v["style"], dropout=v["dropout"],
                 attn_dropout=v["attn_dropout"],
                 num_codes=v["num_codes"], code_dim=v["code_dim"], beta=v["beta"], alpha=v["alpha"],
                 recon_loss=v["recon_loss"], normalise=v["normalise"], norm_max_n=v["norm_max_n"],
                 target_codebook=v["target_codebook"], vq=v["vq"], recon_reduction=v["recon_reduction"],
                 loss_average=v["loss_average"])


class VQVAETraining(nn.Module):
    """forward(batch) -> (loss, metrics), the interface of the MPM training loop (mpm/loop.py)."""

    def __init__(self, vqvae: VQVAE):
        super().__init__()
        self.vqvae = vqvae

    def forward(self, batch):
        return self.vqvae.loss(batch.x, batch.mask)


def load_tokenizer(path, device="cpu") -> nn.Module:
    """Frozen tokeniser (eval mode, no grad) from a tokenizer.pt file or a run directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.pt"
    blob = load_trained(path, "tokeniser", map_location="cpu")
    if blob.get("kind") == "vqvae":
        tok = build_vqvae(blob["config"])
        tok.load_state_dict(blob["state"])
    elif blob.get("kind") == "kmeans":
        tok = KMeansTokenizer(blob["state"]["centroids"])
    else:
        raise ValueError(f"{path}: not a tokenizer file (key 'kind' must be vqvae or kmeans, got {blob.get('kind')!r})")
    tok.requires_grad_(False)
    return tok.eval().to(device)
