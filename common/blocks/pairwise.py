"""ParT pairwise interaction features (Qu, Li, Qian 2022, Eq. 3; weaver ParticleTransformer.py `pairwise_lv_fts`).

For particles i, j with four-vectors (px, py, pz, E):
    Delta = sqrt((y_i - y_j)^2 + (phi_i - phi_j)^2)       rapidity y, not pseudorapidity
    kT    = min(pT_i, pT_j) * Delta
    z     = min(pT_i, pT_j) / (pT_i + pT_j)
    m^2   = (E_i + E_j)^2 - |p_i + p_j|^2
Output channels [ln kT, ln z, ln Delta, ln m^2], each argument clamped at eps = 1e-8 before the log.

`jet_scale` / `scale_four_momenta`: the four-momenta divided by a scale of their jet (the pT or the energy of the
vector sum of its particles). ln kT and ln m^2 of raw four-momenta move by ln s and 2 ln s when every four-momentum
of a jet is scaled by s; of scaled ones they do not move (ln z and ln Delta never do), so a model fed with them is
invariant to the jet's overall scale by construction (HEP-JEPA's `model.pair_scale`, hepjepa/model.py).
"""
from __future__ import annotations

import math

import torch

EPS = 1e-8
PAIR_NAMES = ("ln_kt", "ln_z", "ln_delta", "ln_m2")


def pairwise_features(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """p4 (B, N, 4) = (px, py, pz, E) in GeV, mask (B, N) bool -> (B, 4, N, N); zero where either particle is padding."""
    p4 = p4.float()
    px, py, pz, e = p4.unbind(-1)
    pt = torch.sqrt(px**2 + py**2)
    rap = 0.5 * torch.log(1 + 2 * pz / torch.clamp(e - pz, min=1e-20))
    phi = torch.atan2(py, px)

    def pair(a):  # (B, N) -> (B, N, 1), (B, 1, N)
        return a.unsqueeze(-1), a.unsqueeze(-2)

    pti, ptj = pair(pt)
    yi, yj = pair(rap)
    phii, phij = pair(phi)
    dphi = torch.remainder(phii - phij + math.pi, 2 * math.pi) - math.pi
    delta = torch.sqrt((yi - yj) ** 2 + dphi**2)
    ptmin = torch.minimum(pti, ptj)
    lnkt = torch.log(torch.clamp(ptmin * delta, min=EPS))
    lnz = torch.log(torch.clamp(ptmin / torch.clamp(pti + ptj, min=EPS), min=EPS))
    lndelta = torch.log(torch.clamp(delta, min=EPS))
    s = p4.unsqueeze(2) + p4.unsqueeze(1)                      # (B, N, N, 4) pair sums
    m2 = s[..., 3] ** 2 - (s[..., :3] ** 2).sum(-1)
    lnm2 = torch.log(torch.clamp(m2, min=EPS))
    out = torch.stack([lnkt, lnz, lndelta, lnm2], 1)          # (B, 4, N, N)
    valid = (mask.unsqueeze(-1) & mask.unsqueeze(-2)).unsqueeze(1)
    return torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))


PAIR_SCALES = ("none", "jet_pt", "jet_e")


def jet_scale(p4: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, 1, 1) scale of each jet from its real particles' p4 (B, N, 4) = (px, py, pz, E): 'jet_pt' = the pT of their
    vector sum, 'jet_e' = their summed energy, 'none' = 1. A jet without particles gets 1."""
    if how not in PAIR_SCALES:
        raise ValueError(f"pair scale must be one of {PAIR_SCALES}, got {how!r}")
    if how == "none":
        return torch.ones(p4.shape[0], 1, 1, dtype=p4.dtype, device=p4.device)
    tot = (p4 * mask.unsqueeze(-1).to(p4.dtype)).sum(1)                      # (B, 4)
    s = torch.sqrt(tot[:, 0] ** 2 + tot[:, 1] ** 2) if how == "jet_pt" else tot[:, 3]
    s = torch.where(s > 0, s, torch.ones_like(s))
    return s[:, None, None]


def scale_four_momenta(p4: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """p4 / jet_scale(p4, mask, how): four-momenta in units of their jet's pT or energy ('none': unchanged)."""
    return p4 if how == "none" else p4 / jet_scale(p4, mask, how)
