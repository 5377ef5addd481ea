"""MPMv2 pretraining task heads (mpm.md 4, "MPMv2 pretraining task heads").

Every head acts on the decoder outputs of the dropped particles only, d (M, dec_dim), and returns a scalar loss.
  IDTask          Linear(dec -> 8), cross-entropy with label smoothing 0.1; always on, weight 0.3
  RegressionTask  Linear(dec -> 7), L1 to the quantile-normalised continuous features
  TokenTask       Linear(dec -> K), cross-entropy to the frozen tokeniser's code (k-means K = 16384, label smoothing
                  0.1; VQ-VAE K = 512, label smoothing 0.05)
  CFMTask         conditional flow matching: Linear(dec -> 128) context; an MLP on (x_t, context, cosine time
                  embedding) predicts the velocity; t = sigmoid(N(0,1)), x_t = (1 - t) x0 + t eps, loss |v - (eps - x0)|^2
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class IDTask(nn.Module):
    def __init__(self, dim: int, num_ids: int = 8, label_smoothing: float = 0.1, weight: float = 0.3):
        super().__init__()
        self.head = nn.Linear(dim, num_ids)
        self.label_smoothing, self.weight = label_smoothing, weight

    def forward(self, d, pid):
        logits = self.head(d).float()
        loss = F.cross_entropy(logits, pid, label_smoothing=self.label_smoothing)
        return self.weight * loss, {"id_acc": (logits.argmax(-1) == pid).float().mean()}


class RegressionTask(nn.Module):
    def __init__(self, dim: int, num_features: int = 7):
        super().__init__()
        self.head = nn.Linear(dim, num_features)

    def forward(self, d, x, codes=None):
        return F.l1_loss(self.head(d).float(), x.float()), {}


class TokenTask(nn.Module):
    def __init__(self, dim: int, num_codes: int, label_smoothing: float = 0.1):
        super().__init__()
        self.head = nn.Linear(dim, num_codes)
        self.label_smoothing = label_smoothing

    def forward(self, d, x, codes):
        logits = self.head(d).float()
        loss = F.cross_entropy(logits, codes, label_smoothing=self.label_smoothing)
        return loss, {"code_acc": (logits.argmax(-1) == codes).float().mean()}


def cosine_time_embedding(t: torch.Tensor, dim: int = 16) -> torch.Tensor:
    """t (M,) in [0, 1] -> (M, dim) [cos(2 pi f t), sin(2 pi f t)] over log-spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), half, device=t.device))
    ang = 2 * math.pi * t[:, None] * freqs[None]
    return torch.cat([ang.cos(), ang.sin()], dim=-1)


class CFMTask(nn.Module):
    """Conditional flow matching per dropped particle ("Diffusion" in arXiv v1/v2). Sampling (EMA copy, midpoint ODE
    solver) is not needed to pretrain and is not implemented here."""

    def __init__(self, dim: int, num_features: int = 7, context_dim: int = 128, hidden: int = 256, depth: int = 3,
                 time_dim: int = 16):
        super().__init__()
        self.time_dim = time_dim
        self.context = nn.Linear(dim, context_dim)
        layers, w = [], num_features + context_dim + time_dim
        for _ in range(depth):
            layers += [nn.Linear(w, hidden), nn.SiLU(), nn.LayerNorm(hidden)]
            w = hidden
        self.net = nn.Sequential(*layers, nn.Linear(hidden, num_features))

    def velocity(self, x_t, t, ctx):
        return self.net(torch.cat([x_t, ctx, cosine_time_embedding(t, self.time_dim)], dim=-1))

    def forward(self, d, x, codes=None):
        x0 = x.float()
        ctx = self.context(d).float()
        t = torch.sigmoid(torch.randn(x0.shape[0], device=x0.device))  # logit-normal time
        eps = torch.randn_like(x0)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
        v = self.velocity(x_t, t, ctx)
        return ((v - (eps - x0)) ** 2).sum(-1).mean(), {}


def build_task(kind: str, dim: int, num_features: int, tokenizer=None, cfg: dict | None = None) -> nn.Module:
    cfg = dict(cfg or {})
    if kind == "regression":
        return RegressionTask(dim, num_features)
    if kind in ("kmeans", "vqvae"):
        if tokenizer is None:
            raise ValueError(f"model.task={kind} needs a tokeniser checkpoint (tokenizer.checkpoint)")
        default_ls = 0.1 if kind == "kmeans" else 0.05
        return TokenTask(dim, tokenizer.num_codes, float(cfg.get("label_smoothing", default_ls)))
    if kind == "cfm":
        return CFMTask(dim, num_features, cfg.get("context_dim", 128), cfg.get("hidden", 256), cfg.get("depth", 3),
                       cfg.get("time_dim", 16))
    if kind in ("cnf", "ssfm"):
        raise NotImplementedError(f"MPMv2 task {kind!r} (mpm.md 4) is not implemented in this kit; use regression, "
                                  "kmeans, vqvae or cfm")
    raise ValueError(f"model.task must be regression | kmeans | vqvae | cfm, got {kind!r}")
