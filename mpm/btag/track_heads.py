"""Per-track heads on the MPMv2 encoder outputs for the BTag tasks of arXiv:2409.12589: track origin (jetssl
src/models/tracker.py) and secondary-vertex finding (jetssl src/models/vertexer.py). Both take the encoder output
(B, R + T, D) with its mask, drop the R registers and act on every track."""
from __future__ import annotations

import torch
from torch import nn


def track_mlp(in_dim: int, out_dim: int, hidden: int, num_blocks: int, dropout: float) -> nn.Sequential:
    """The mltools MLP of jetssl's configs/model/{tracker,vertexer}.yaml (num_blocks, hddn_dim, dropout, norm
    LayerNorm; act SiLU): num_blocks blocks Linear -> SiLU -> LayerNorm -> Dropout, then a plain Linear to out_dim."""
    layers, d = [], in_dim
    for _ in range(num_blocks):
        layers += [nn.Linear(d, hidden), nn.SiLU(), nn.LayerNorm(hidden), nn.Dropout(dropout)]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, out_dim))


class TrackOriginHead(nn.Module):
    """Per-track class logits (B, T, C): the MLP on every track's encoder output (jetssl tracker.py)."""

    def __init__(self, in_dim: int, num_registers: int, n_classes: int = 4, *, hidden: int = 128,
                 num_blocks: int = 3, dropout: float = 0.2):
        super().__init__()
        self.num_registers = num_registers
        self.mlp = track_mlp(in_dim, n_classes, hidden, num_blocks, dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mlp(h[:, self.num_registers:])


class EdgeHead(nn.Module):
    """Pairwise "same vertex" logits (B, T, T): the MLP maps every track to D features, the logit of a pair is
    Linear(|x_i - x_j|) (jetssl vertexer.py: vertex_head, then dist_head on the L1 difference)."""

    def __init__(self, in_dim: int, num_registers: int, *, hidden: int = 128, num_blocks: int = 3,
                 dropout: float = 0.2):
        super().__init__()
        self.num_registers = num_registers
        self.mlp = track_mlp(in_dim, in_dim, hidden, num_blocks, dropout)
        self.dist = nn.Linear(in_dim, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.mlp(h[:, self.num_registers:])
        return self.dist((x.unsqueeze(1) - x.unsqueeze(2)).abs()).squeeze(-1)


def per_track_head(task: str, kind: str, head_cls, **kwargs):
    """head(backbone, finetune.head) of a per-track task (common.training.finetune.Task): head_cls on the backbone width and
    registers with the settings of finetune.head, whose kind must be the task's."""

    def head(backbone: nn.Module, head_cfg: dict) -> nn.Module:
        if head_cfg["kind"] != kind:
            raise ValueError(f"config: finetune.head.kind = {head_cfg['kind']!r}; {task} uses {kind!r}")
        return head_cls(backbone.dim, backbone.num_registers, **kwargs,
                        **{k: v for k, v in head_cfg.items() if k != "kind"})

    return head
