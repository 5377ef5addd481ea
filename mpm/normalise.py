"""Running mean / std input normalisation of MPMv1 (`NewIterativeNormLayer` in rodem-hep/mpm
mattstools/mattstools/modules.py).

Statistics are accumulated over real particles by explicit `update(x, mask)` calls (the caller decides which inputs
count: MPMv1 updates with the clean, unmasked jet), until `max_n` particles have been seen, then frozen. `forward`
only normalises. They live inside the model (buffers), so a checkpoint carries them. `freeze()` stops updates for good (used
when a pretrained backbone is fine-tuned, so a "fixed" backbone stays bit-identical).
"""
from __future__ import annotations

import torch
from torch import nn


class IterativeNorm(nn.Module):
    # a random-init baseline gets these statistics from data like BatchNorm's (common.training.probe.set_norm_stats): the
    # backbone updates them in its training-mode forward
    collects_input_statistics = True

    def __init__(self, num_features: int, max_n: float = 1e6, eps: float = 1e-6):
        super().__init__()
        self.max_n, self.eps = float(max_n), eps
        self.register_buffer("n", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(num_features, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(num_features, dtype=torch.float64))  # sum of squared deviations
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    def freeze(self) -> None:
        self.frozen.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        """Chan et al. parallel update of mean and variance with the real particles of x (B,N,F)."""
        if bool(self.frozen) or self.n >= self.max_n:
            return
        v = x[mask].to(torch.float64)
        if v.numel() == 0:
            return
        nb = v.shape[0]
        mb = v.mean(dim=0)
        m2b = ((v - mb) ** 2).sum(dim=0)
        tot = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / tot
        self.m2 += m2b + delta ** 2 * self.n * nb / tot
        self.n.fill_(tot)

    @property
    def std(self) -> torch.Tensor:
        if self.n < 2:
            return torch.ones_like(self.mean)
        return (self.m2 / (self.n - 1)).sqrt().clamp(min=self.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return out.masked_fill(~mask.unsqueeze(-1), 0.0)
