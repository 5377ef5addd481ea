"""Pretraining monitors that see a JEPA shortcut (logged by hepjepa.pretrain, plotted by hepjepa.figures).

The prediction / target spreads (Point-JEPA's collapse monitors) stay healthy when the targets are one per-jet vector
that the predictor copies; these do not:

- `between_jet_share`: the share of the target-token variance that lies between jets (the variance of the per-jet
  mean token over the total). Near 1: the tokens of a jet barely differ, the target is a jet-level summary (with the
  absolute log pT / log E inputs: the jet's pT and eta).
- `position_r2`: R^2 of a ridge fit of the targets on a cubic polynomial of the patch centre (deta, dphi), per logged
  batch: how much of the target the predictor gets from the position it is given alone.
- `effective_rank`: exp(entropy of the normalised singular values) of the centred pooled embeddings (Roy & Vetterli,
  EUSIPCO 2007): a dimensional-collapse monitor.
- `OnlineProbe`: a linear head on the detached pooled output of the encoder used downstream, trained on the labels of
  the pretraining batch every k batches; its accuracy on each batch before the update is logged (the online probe of
  mattcleigh/jetssl src/models/jepa.py). The encoder never receives its gradients.
"""
from __future__ import annotations

import torch
from torch import nn


def between_jet_share(h: torch.Tensor, mask: torch.Tensor) -> float:
    """h (B,T,D) token vectors, mask (B,T) -> SS_between / SS_total over the valid tokens (summed over features).
    1 when every token of a jet is the same vector; 0 when every jet has the same mean token."""
    h, m = h.float(), mask.float()[..., None]
    n = m.sum(1)                                                    # (B,1) tokens per jet
    keep = n[:, 0] > 0
    h, m, n = h[keep], m[keep], n[keep]
    grand = (h * m).sum((0, 1)) / n.sum()
    jet_mean = (h * m).sum(1) / n                                   # (B,D)
    ss_between = (n * (jet_mean - grand) ** 2).sum()
    ss_total = (((h - grand) ** 2) * m).sum()
    return float(ss_between / ss_total.clamp(min=1e-12))


def position_basis(centres: torch.Tensor) -> torch.Tensor:
    """(..., 2) patch centres (deta, dphi) -> (..., 10): all monomials of degree <= 3 [U: a smooth-enough family]."""
    x, y = centres[..., 0], centres[..., 1]
    return torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y, x ** 3, x * x * y, x * y * y, y ** 3], -1)


def position_r2(h: torch.Tensor, centres: torch.Tensor, mask: torch.Tensor, ridge: float = 1e-3) -> float:
    """R^2 (pooled over features) of the valid tokens h (B,T,D) predicted from their centres (B,T,2) alone by a ridge
    regression on `position_basis`, fitted and scored on the same batch (an in-sample monitor)."""
    sel = mask.reshape(-1)
    y = h.reshape(-1, h.shape[-1])[sel].double()
    a = position_basis(centres.reshape(-1, 2)[sel].double())
    a = (a - a.mean(0)) / a.std(0).clamp(min=1e-9)
    a[:, 0] = 1.0
    yc = y - y.mean(0)
    ss_tot = (yc ** 2).sum()
    if len(y) < 2 or ss_tot <= 0:
        return 0.0
    coef = torch.linalg.solve(a.T @ a + ridge * len(y) * torch.eye(a.shape[1], dtype=a.dtype), a.T @ y)
    ss_res = ((y - a @ coef) ** 2).sum()
    return float(1.0 - ss_res / ss_tot)


def effective_rank(z: torch.Tensor) -> float:
    """z (N,D) embeddings -> exp(H(p)), p = singular values of the centred z normalised to sum 1 (Roy & Vetterli)."""
    z = z.double() - z.double().mean(0)
    s = torch.linalg.svdvals(z)
    p = s / s.sum().clamp(min=1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


class OnlineProbe(nn.Module):
    """Linear classifier on detached pooled embeddings (BatchNorm without affine weights standardises them), its own
    AdamW; `step(z, labels)` -> accuracy of the current head on this batch, then one update."""

    def __init__(self, in_dim: int, num_classes: int, lr: float = 1e-3):
        super().__init__()
        self.head = nn.Sequential(nn.BatchNorm1d(in_dim, affine=False), nn.Linear(in_dim, num_classes))
        self.opt = torch.optim.AdamW(self.head.parameters(), lr=lr, weight_decay=0.0)

    def step(self, z: torch.Tensor, labels: torch.Tensor) -> float:
        z = z.detach().float()
        self.train()
        logits = self.head(z)
        acc = float((logits.argmax(-1) == labels).float().mean())
        loss = nn.functional.cross_entropy(logits, labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return acc
