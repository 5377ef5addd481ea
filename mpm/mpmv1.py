"""MPMv1: masked particle modelling on sets (Golling et al., arXiv:2401.13537; rodem-hep/mpm).

Backbone: per-particle MLP embedding (features -> dim/2 -> dim) and 8 Normformer encoder blocks of width 1024
(paper size). Pretraining: floor(0.3 * N_real) real particles per jet are replaced by ONE learned mask token that lives
in raw-feature space (initialised to ones, before the input normalisation); a per-particle head predicts, at the masked
positions only, the target of each hidden particle:

  target     vqvae      code index of the frozen VQ-VAE tokeniser (cross-entropy)
             kmeans     nearest k-means centroid on raw features (cross-entropy)
             regression the normalised features themselves (squared error summed over the features; "original" targets)
  positional none           permutation-equivariant; all masked outputs are identical (arXiv:2401.13537)
             backbone_input learned embedding over the pT order added to the backbone input (leaks pT ordering);
                            backbone_pe "raw": a zero-initialised (N, features) table added to the (masked) raw
                            inputs before the normalisation, in pretraining only, as the V1 code (order_inputs in
                            rodem-hep/mpm src/models/bert.py; its fine-tuning forward skips the table);
                            "embedding": an (N, dim) table, N(0, 0.02), added after the embedding MLP, kept by the
                            fine-tuned backbone
             head_input     learned embedding over the pT order added to the backbone output before the head
                            (paper default, best row of the table)
  inputs     original           raw (dEta, dPhi, log(pT+1))
             vqvae_quantised    the frozen VQ-VAE's quantised latents z_q; the mask token then lives in z_q space
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks.transformer import Encoder
from common.data.batch import JetBatch

from mpm.masking import masked_jet_mean, random_masking
from mpm.normalise import IterativeNorm

TARGETS = ("vqvae", "kmeans", "regression")
POSITIONAL = ("none", "backbone_input", "head_input")
BACKBONE_PE = ("raw", "embedding")
INPUTS = ("original", "vqvae_quantised")
HEADS = ("mlp", "transformer")


class MPMv1Backbone(nn.Module):
    """Fine-tuning backbone: forward(batch) -> (h (B,N,dim), mask). Holds the input normalisation, the embedding MLP,
    the optional input positional embedding and the Normformer encoder; for quantised inputs it also holds the frozen
    tokeniser that produces them."""

    def __init__(self, in_dim: int, *, dim: int = 1024, depth: int = 8, num_heads: int = 8, ff_hidden: int = 512,
                 embed_hidden: int | None = None, attn_dropout: float = 0.1, dropout: float = 0.0,
                 num_particles: int = 64,
                 positional: str = "head_input", inputs: str = "original", norm_max_n: float = 1e6,
                 tokenizer: nn.Module | None = None, backbone_pe: str = "raw"):
        super().__init__()
        if positional not in POSITIONAL:
            raise ValueError(f"model.positional must be one of {POSITIONAL}, got {positional!r}")
        if backbone_pe not in BACKBONE_PE:
            raise ValueError(f"model.backbone_pe must be one of {BACKBONE_PE}, got {backbone_pe!r}")
        self.positional, self.backbone_pe = positional, backbone_pe
        if inputs not in INPUTS:
            raise ValueError(f"model.inputs must be one of {INPUTS}, got {inputs!r}")
        if inputs == "vqvae_quantised" and tokenizer is None:
            raise ValueError("model.inputs=vqvae_quantised needs a VQ-VAE tokeniser (tokenizer.checkpoint)")
        self.dim, self.inputs, self.num_particles = dim, inputs, num_particles
        self.tokenizer = tokenizer if inputs == "vqvae_quantised" else None
        if self.tokenizer is not None:
            self.tokenizer.requires_grad_(False)
            in_dim = self.tokenizer.quantizer.dim
        self.in_dim = in_dim
        self.norm = IterativeNorm(in_dim, norm_max_n)
        embed_hidden = embed_hidden or dim // 2
        self.embed = nn.Sequential(nn.Linear(in_dim, embed_hidden), nn.LeakyReLU(), nn.Linear(embed_hidden, dim))
        embedded_pe = positional == "backbone_input" and backbone_pe == "embedding"
        self.input_pos = nn.Parameter(torch.zeros(num_particles, dim)) if embedded_pe else None
        if self.input_pos is not None:
            nn.init.normal_(self.input_pos, std=0.02)
        # attention-probability dropout only, as the V1 code (rodem-hep/mpm configs/model/encoder/backbone_*.yaml)
        self.encoder = Encoder(dim, depth, num_heads, ff_hidden, style="normformer", dropout=dropout,
                               attn_dropout=attn_dropout, act="leaky_relu", final_norm=True)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()  # the tokeniser is frozen: no dropout, no codebook updates
        return self

    def raw_inputs(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Features the mask token replaces: raw features, or z_q of the frozen VQ-VAE."""
        if self.tokenizer is None:
            return x
        with torch.no_grad():
            return self.tokenizer.quantise(x, mask)

    def encode(self, raw: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """raw (B,N,in_dim) already-masked inputs -> h (B,N,dim)."""
        tokens = self.embed(self.norm(raw, mask))
        if self.input_pos is not None:
            tokens = tokens + self.input_pos[: tokens.shape[1]]
        h, _ = self.encoder(tokens, mask)
        return h

    def forward(self, batch: JetBatch):
        raw = self.raw_inputs(batch.x, batch.mask)
        if self.training:
            self.norm.update(raw, batch.mask)  # no-op once frozen (pretrained) or after max_n particles
        return self.encode(raw, batch.mask), batch.mask


class TransformerHead(nn.Module):
    """The official code's masked-prediction head: a 2-layer transformer over the nodes (rodem-hep/mpm
    trans_encoder.yaml; the paper says MLP, hence a switch)."""

    def __init__(self, dim: int, out_dim: int, head_dim: int = 256, num_heads: int = 8, depth: int = 2):
        super().__init__()
        self.inp = nn.Linear(dim, head_dim)
        self.encoder = Encoder(head_dim, depth, num_heads, 2 * head_dim, style="preln")
        self.out = nn.Linear(head_dim, out_dim)

    def forward(self, h, mask):
        return self.out(self.encoder(self.inp(h), mask)[0])


class MLPHead(nn.Module):
    """The paper's masked-prediction head: a per-node MLP, no interactions between particles (arXiv:2401.13537)."""

    def __init__(self, dim: int, out_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(), nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, h, mask):
        return self.net(h)


class MPMv1(nn.Module):
    """Pretraining model: backbone + mask token + positional embedding + masked-prediction head.
    `loss(batch, masked=None, targets=None) -> (loss, metrics)`; `masked` and `targets` may be given (tests)."""

    def __init__(self, backbone: MPMv1Backbone, *, target: str = "vqvae", target_tokenizer: nn.Module | None = None,
                 mask_fraction: float = 0.3, head: str = "mlp", head_hidden: int = 512, positional: str = "head_input"):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"model.target must be one of {TARGETS}, got {target!r}")
        if head not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {head!r}")
        if target != "regression" and target_tokenizer is None:
            raise ValueError(f"model.target={target} needs a tokeniser checkpoint (tokenizer.checkpoint)")
        self.backbone, self.target, self.mask_fraction = backbone, target, mask_fraction
        self.target_tokenizer = target_tokenizer if target != "regression" else None
        if self.target_tokenizer is not None:
            self.target_tokenizer.requires_grad_(False)
        # one shared learned mask token in the raw input space, initialised to ones (rodem-hep/mpm src/models/bert.py)
        self.mask_token = nn.Parameter(torch.ones(backbone.in_dim))
        dim, N = backbone.dim, backbone.num_particles
        self.head_pos = nn.Parameter(torch.randn(N, dim) * 0.02) if positional == "head_input" else None
        raw_pe = backbone.positional == "backbone_input" and backbone.backbone_pe == "raw"
        self.raw_pos = nn.Parameter(torch.zeros(N, backbone.in_dim)) if raw_pe else None  # V1 bert.py pos_encoding
        out_dim = backbone.in_dim if target == "regression" else self.target_tokenizer.num_codes
        self.head = MLPHead(dim, out_dim, head_hidden) if head == "mlp" else TransformerHead(dim, out_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.target_tokenizer is not None:
            self.target_tokenizer.eval()
        return self

    @torch.no_grad()
    def targets(self, batch: JetBatch, raw: torch.Tensor) -> torch.Tensor:
        """Per-particle targets from the ORIGINAL (unmasked) jet: code indices (B,N) or normalised features (B,N,F)."""
        if self.target == "regression":
            b = self.backbone.norm
            return ((raw - b.mean.to(raw.dtype)) / b.std.to(raw.dtype)).masked_fill(~batch.mask.unsqueeze(-1), 0.0)
        return self.target_tokenizer.tokenize(batch.x, batch.mask)

    def forward(self, batch: JetBatch, *args, **kw):
        return self.loss(batch, *args, **kw)

    def loss(self, batch: JetBatch, masked: torch.Tensor | None = None, targets: torch.Tensor | None = None):
        mask = batch.mask
        if masked is None:
            masked = random_masking(mask, self.mask_fraction)
        raw = self.backbone.raw_inputs(batch.x, mask)
        if self.training:
            self.backbone.norm.update(raw, mask)  # statistics of the unmasked inputs
        if targets is None:
            targets = self.targets(batch, raw)
        corrupted = torch.where(masked.unsqueeze(-1), self.mask_token.to(raw.dtype), raw)
        if self.raw_pos is not None:
            corrupted = corrupted + self.raw_pos[: corrupted.shape[1]].to(raw.dtype)
        h = self.backbone.encode(corrupted, mask)
        if self.head_pos is not None:
            h = h + self.head_pos[: h.shape[1]]
        out = self.head(h, mask).float()
        if self.target == "regression":
            # squared error summed over the features of a particle (rodem-hep/mpm src/models/bert.py,
            # RegressBert.get_loss: MSELoss(reduction="none")(...).sum(-1))
            per_particle = F.mse_loss(out, targets.float(), reduction="none").sum(dim=-1)
            metrics = {}
        else:
            per_particle = F.cross_entropy(out.transpose(1, 2), targets, reduction="none")
            with torch.no_grad():
                top1 = (out.argmax(-1) == targets).float()
                top2 = (out.topk(2, dim=-1).indices == targets.unsqueeze(-1)).any(-1).float()
            metrics = {"acc": masked_jet_mean(top1, masked), "top2": masked_jet_mean(top2, masked)}
        loss = masked_jet_mean(per_particle, masked)  # only at masked positions
        return loss, metrics
