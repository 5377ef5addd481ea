"""Physics-inspired augmentations for HEP-JEPA pretraining (ablation (e) of the project page; the list is [U], ours).

Applied to the whole jet before tokenisation, so context and target branches see the same augmented jet:
  rotate  a random rotation of (deta, dphi) about the jet axis: jets have no preferred orientation in the (eta, phi)
          plane apart from colour flow and the JetClass sign(eta_jet) flip, so the representation should not need one;
  reflect dphi -> -dphi with probability 1/2 (phi parity);
  smear   Gaussian noise of width `smear_sigma` on (deta, dphi): finite angular resolution of a detector;
  drop    remove the softest particles, a fraction U[0, drop_max] of each jet (pT-ordered, so the tail): soft radiation
          and thresholds are the least well modelled part of a jet (infrared safety).
The ParT standardised deltaR column (if present) is recomputed from the new angles. The four-vectors are left as they
are: the pairwise physics bias uses only Delta, kT, z and m^2, which are (to first order) invariant under these
transformations of the angles.
"""
from __future__ import annotations

import math

import torch

from common.batch import JetBatch


def augment(batch: JetBatch, names, cfg: dict) -> JetBatch:
    """Return an augmented copy of `batch`. names: the feature names (to find deta, dphi, deltaR); cfg: the YAML
    `augment:` section {enabled, rotate, reflect, smear_sigma, drop_max}."""
    if not cfg.get("enabled", False):
        return batch
    names = list(names)
    ia, ip = names.index("part_deta"), names.index("part_dphi")
    x, mask, p4 = batch.x.clone(), batch.mask.clone(), batch.p4.clone()
    B = x.shape[0]
    deta, dphi = x[..., ia], x[..., ip]
    if cfg.get("rotate", True):
        theta = torch.rand(B, 1, device=x.device) * 2 * math.pi
        c, s = torch.cos(theta), torch.sin(theta)
        deta, dphi = c * deta - s * dphi, s * deta + c * dphi
    if cfg.get("reflect", True):
        sign = torch.where(torch.rand(B, 1, device=x.device) < 0.5, -1.0, 1.0)
        dphi = dphi * sign
    sigma = float(cfg.get("smear_sigma", 0.0))
    if sigma > 0:
        deta = deta + sigma * torch.randn_like(deta)
        dphi = dphi + sigma * torch.randn_like(dphi)
    x[..., ia], x[..., ip] = deta, dphi
    if "part_deltaR" in names:  # ParT standardisation (x - 0.2) * 4, clipped to [-5, 5] (datasets.md §A1)
        x[..., names.index("part_deltaR")] = ((torch.hypot(deta, dphi) - 0.2) * 4.0).clamp(-5, 5)
    drop_max = float(cfg.get("drop_max", 0.0))
    if drop_max > 0:
        n = mask.sum(1)
        n_drop = (torch.rand(B, device=x.device) * drop_max * n).floor().long()
        n_keep = torch.clamp(n - n_drop, min=1)
        rank = mask.long().cumsum(1)  # 1-based rank among real particles (pT order)
        mask = mask & (rank <= n_keep[:, None])
    x = x * mask[..., None]
    p4 = p4 * mask[..., None]
    return JetBatch(x=x, mask=mask, p4=p4, jet=batch.jet, label=batch.label, pid=batch.pid)
