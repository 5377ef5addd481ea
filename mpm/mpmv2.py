"""MPMv2: "Is tokenization needed for masked particle modelling?" (Leigh et al., arXiv:2409.12589; mattcleigh/jetssl).

Encoder (the backbone kept for fine-tuning): Linear(7 -> D)(x_c) + Embedding(8, D)(particle ID), 8 learned registers,
SwiGLU blocks with LayerScale 1e-3, no positional encoding (paper size 8 x 512, 8 heads, hidden 1024).

MAE-style pretraining: floor(0.4 * N_real) real particles per jet are dropped from the encoder input (their keys are
masked, which for a set model is the same as removing them). The encoder output goes through Linear(enc -> dec); each
dropped position receives a learned null token in pT order (the k-th dropped particle gets null_token[k]); a 4-layer
decoder sees the 8 encoder registers plus all particle slots; heads read the decoder outputs at the dropped
positions: the ID task (weight 0.3) plus one reconstruction task (mpm/heads.py). Task "ssfm" (set-to-set flow
matching) instead hands the encoder outputs of the kept particles to its own cross-attention decoder (mpm/heads.py
SSFMTask, mpm/ssfm.py), which generates the dropped set jointly; the number dropped is drawn per jet.

Token targets (kmeans / vqvae tasks): `targets_from="dropped"` runs the frozen tokeniser on the dropped particles alone,
as one set (the official code's VQVAETask calls the VQ-VAE with the null mask: mattcleigh/jetssl
src/models/mpm_tasks.py); "full" tokenises the whole jet and reads the codes of the dropped particles. The two agree
for K-means, whose code of a particle does not depend on the other particles.
"""
from __future__ import annotations

import torch
from torch import nn

from common.blocks.transformer import Encoder
from common.data.batch import JetBatch

from mpm.heads import IDTask, build_task
from mpm.masking import order_among_chosen, random_masking


class MPMv2Encoder(nn.Module):
    """forward(batch) -> (h (B, R+N, dim), mask (B, R+N)), registers first (the fine-tuning backbone)."""

    def __init__(self, num_features: int = 7, num_ids: int = 8, *, dim: int = 512, depth: int = 8, num_heads: int = 8,
                 ff_hidden: int = 1024, num_registers: int = 8, layerscale_init: float = 1e-3, final_norm: bool = False):
        super().__init__()
        self.dim, self.num_registers = dim, num_registers
        self.csts_emb = nn.Linear(num_features, dim)
        self.id_emb = nn.Embedding(num_ids, dim)
        self.encoder = Encoder(dim, depth, num_heads, ff_hidden, style="swiglu", num_registers=num_registers,
                               final_norm=final_norm, layerscale_init=layerscale_init)

    def encode(self, x, pid, mask):
        if pid is None:
            raise ValueError("MPMv2 needs particle IDs (JetBatch.pid): use data.features=mpmv2")
        return self.encoder(self.csts_emb(x) + self.id_emb(pid.clamp(min=0)), mask)

    def forward(self, batch: JetBatch):
        return self.encode(batch.x, batch.pid, batch.mask)


class MPMv2(nn.Module):
    """Pretraining model. `loss(batch, dropped=None) -> (loss, metrics)`."""

    def __init__(self, encoder: MPMv2Encoder, *, task: str = "kmeans", tokenizer: nn.Module | None = None,
                 mask_fraction: float = 0.4, dec_dim: int = 256, dec_depth: int = 4, dec_heads: int = 8,
                 dec_ff_hidden: int = 512, max_particles: int = 128, id_weight: float = 0.3,
                 id_label_smoothing: float = 0.1, task_cfg: dict | None = None, num_features: int = 7,
                 num_ids: int = 8, targets_from: str = "dropped", dec_final_norm: bool = False):
        super().__init__()
        if targets_from not in ("dropped", "full"):
            raise ValueError(f"model.targets_from must be dropped | full, got {targets_from!r}")
        self.targets_from = targets_from
        self.encoder, self.task_kind, self.mask_fraction = encoder, task, mask_fraction
        self.tokenizer = tokenizer
        if tokenizer is not None:
            tokenizer.requires_grad_(False)
        if task == "ssfm":  # its own cross-attention decoder; no null tokens, no ID task (jetssl src/models/sdm.py)
            self.task = build_task(task, dec_dim, num_features, cfg=task_cfg, decoder=dict(
                enc_dim=encoder.dim, num_ids=num_ids, depth=dec_depth, num_heads=dec_heads, ff_hidden=dec_ff_hidden,
                final_norm=dec_final_norm))
            return
        self.enc_to_dec = nn.Linear(encoder.dim, dec_dim)
        self.null_tokens = nn.Parameter(torch.randn(max_particles, dec_dim) * 1e-3)  # as jetssl src/models/mpm.py
        # no final LayerNorm: do_final_norm False in jetssl configs/model/decoder_config/small.yaml
        self.decoder = Encoder(dec_dim, dec_depth, dec_heads, dec_ff_hidden, style="swiglu", num_registers=0,
                               final_norm=dec_final_norm)
        self.id_task = IDTask(dec_dim, num_ids, id_label_smoothing, id_weight)
        self.task = build_task(task, dec_dim, num_features, tokenizer, task_cfg)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()
        return self

    def decoder_inputs(self, h_enc, mask, dropped):
        """Encoder outputs (B, R+N, E) -> decoder inputs (B, R+N, dec): registers and kept particles projected,
        dropped slots filled with null_token[k] for the k-th dropped particle in pT order."""
        R = self.encoder.num_registers
        z = self.enc_to_dec(h_enc)
        k = order_among_chosen(dropped)  # (B,N)
        nulls = self.null_tokens[k]  # (B,N,dec)
        parts = torch.where(dropped.unsqueeze(-1), nulls.to(z.dtype), z[:, R:])
        return torch.cat([z[:, :R], parts], dim=1)

    def forward(self, batch: JetBatch, *args, **kw):
        return self.loss(batch, *args, **kw)

    def loss(self, batch: JetBatch, dropped: torch.Tensor | None = None):
        mask = batch.mask
        if self.task_kind == "ssfm":
            dropped = self.task.draw_dropped(mask) if dropped is None else dropped
            h, hmask = self.encoder.encode(batch.x, batch.pid, mask & ~dropped)
            loss, metrics = self.task(h, hmask, batch.x, batch.pid, dropped)
            return loss, {**metrics, "task_loss": loss.detach()}
        if mask.shape[1] > self.null_tokens.shape[0]:
            raise ValueError(f"jets have {mask.shape[1]} particle slots but model.max_particles is "
                             f"{self.null_tokens.shape[0]}")
        if dropped is None:
            dropped = random_masking(mask, self.mask_fraction)
        codes = None
        if self.tokenizer is not None:
            codes = self.tokenizer.tokenize(batch.x, dropped if self.targets_from == "dropped" else mask)
        kept = mask & ~dropped
        h, hmask = self.encoder.encode(batch.x, batch.pid, kept)
        dec_in = self.decoder_inputs(h, mask, dropped)
        full_mask = torch.cat([hmask[:, : self.encoder.num_registers], mask], dim=1)
        d, _ = self.decoder(dec_in, full_mask)
        d = d[:, self.encoder.num_registers:][dropped]  # (M, dec): dropped particles only
        if d.shape[0] == 0:  # no jet has enough particles to drop one: nothing to reconstruct
            zero = d.sum() * 0.0
            return zero, {"id_loss": zero.detach(), "task_loss": zero.detach()}
        id_loss, metrics = self.id_task(d, batch.pid[dropped])
        task_loss, m2 = self.task(d, batch.x[dropped], None if codes is None else codes[dropped])
        metrics.update(m2)
        metrics.update({"id_loss": id_loss.detach(), "task_loss": task_loss.detach()})
        return id_loss + task_loss, metrics
