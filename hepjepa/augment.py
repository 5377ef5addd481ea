"""Physics-inspired augmentations for HEP-JEPA pretraining (ablation (e) of the project page; the list is [U], ours).

Applied to the whole jet before tokenisation, so context and target branches see the same augmented jet:
  rotate  a random rotation of (deta, dphi) about the jet axis: jets have no preferred orientation in the (eta, phi)
          plane apart from colour flow and the JetClass sign(eta_jet) flip, so the representation should not need one;
  reflect dphi -> -dphi with probability 1/2 (phi parity);
  smear   Gaussian noise of width `smear_sigma` on (deta, dphi): finite angular resolution of a detector;
  drop    remove the softest particles, a fraction U[0, drop_max] of each jet (pT-ordered, so the tail): soft radiation
          and thresholds are the least well modelled part of a jet (infrared safety).
The four-vectors move with the angles: every particle keeps its pT and mass and gets eta + sign(eta_jet) * (change of
deta) and phi + (change of dphi) (part_deta carries the sign(eta_jet) flip, common.data.features.deta_dphi_partstyle), so
the patch four-vectors and the pairwise physics bias (ParT, arXiv:2202.03772 Eq. 3) describe the augmented jet that the
tokeniser groups. The ParT standardised deltaR, log E and log E/E_jet columns (if present) are recomputed from the new
angles and energies; the jet-level values are kept.
"""
from __future__ import annotations

import math

import torch

from common.data.batch import JET_FIELDS, JetBatch
from common.data.features import PART_TRANSFORMS


def _standardised(name: str, v: torch.Tensor) -> torch.Tensor:
    """ParT transform (v - a) * b clipped to [-5, 5] of feature `name` (common.data.features.PART_TRANSFORMS)."""
    a, b = PART_TRANSFORMS[name]
    return ((v - a) * b).clamp(-5, 5)


def _shifted(name: str, x: torch.Tensor, dv: torch.Tensor) -> torch.Tensor:
    """The standardised column x of feature `name` after its raw value changed by dv."""
    return (x + PART_TRANSFORMS[name][1] * dv).clamp(-5, 5)


def move_four_vectors(p4: torch.Tensor, mask: torch.Tensor, jet_eta: torch.Tensor, d_deta: torch.Tensor,
                      d_dphi: torch.Tensor) -> torch.Tensor:
    """Shift each particle by (d_deta, d_dphi) in the jet's (deta, dphi) frame at fixed pT and mass.
    p4 (B,N,4) = (px, py, pz, E); jet_eta (B,); d_deta, d_dphi (B,N) -> new p4, zero at padding."""
    p4 = p4.double()  # cosh / sinh of |eta| ~ 4 lose float32 precision in E^2 - |p|^2
    px, py, pz, e = p4.unbind(-1)
    pt = torch.hypot(px, py)
    m2 = (e**2 - px**2 - py**2 - pz**2).clamp(min=0)
    sgn = torch.where(jet_eta >= 0, 1.0, -1.0).to(p4.dtype)[:, None]
    eta = torch.asinh(pz / pt.clamp(min=1e-12)) + sgn * d_deta.double()
    phi = torch.atan2(py, px) + d_dphi.double()
    pz = pt * torch.sinh(eta)
    new = torch.stack([pt * torch.cos(phi), pt * torch.sin(phi), pz, torch.sqrt(pt**2 + pz**2 + m2)], -1)
    return (new * mask[..., None]).float()


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
    if cfg.get("rotate", True) or cfg.get("reflect", True) or sigma > 0:
        moved = move_four_vectors(p4, mask, batch.jet[:, JET_FIELDS.index("eta")], deta - x[..., ia],
                                  dphi - x[..., ip])
        dlog_e = torch.log(moved[..., 3].clamp(min=1e-12)) - torch.log(p4[..., 3].clamp(min=1e-12))
        for name in ("part_e_log", "part_logerel"):  # E changes with eta at fixed pT; E_jet is kept
            if name in names:
                x[..., names.index(name)] = _shifted(name, x[..., names.index(name)], dlog_e)
        p4 = moved
    x[..., ia], x[..., ip] = deta, dphi
    if "part_deltaR" in names:
        x[..., names.index("part_deltaR")] = _standardised("part_deltaR", torch.hypot(deta, dphi))
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
