"""Choosing which particles are hidden from the backbone.

MPMv1 (BERT-style, arXiv:2401.13537; rodem-hep/mpm src/models/bert.py): floor(0.3 * N_real) real particles per jet,
uniformly at random, are replaced by a mask
token. MPMv2 (MAE-style): floor(0.4 * N_real) real particles are dropped from the encoder input. Both draw the same
kind of subset, so one function serves both. MPMv2's set-to-set flow matching (SSFM) draws the number to drop per
jet (random_uniform_masking).
"""
from __future__ import annotations

import torch


def random_masking(mask: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """mask (B,N) bool True = real particle -> chosen (B,N) bool: exactly floor(fraction * n_real) real particles per jet,
    drawn uniformly at random without replacement; never a padded slot."""
    n_real = mask.sum(dim=1)
    n_pick = torch.floor(n_real.to(torch.float64) * fraction).long()  # float64: floor(0.3*10) must be 3, not 2
    return _choose(mask, n_pick, generator)


def random_uniform_masking(mask: torch.Tensor, frac_min: float, frac_max: float,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """MPMv2's SSFM drop: per jet, a number of real particles drawn uniformly from the integers
    ceil(frac_min * n_real) ... floor(frac_max * n_real) (both included), then that many particles uniformly at
    random (mattcleigh/jetssl src/datamodules/masking.py random_uniform_masking)."""
    if not 0.0 <= frac_min <= frac_max <= 1.0:
        raise ValueError(f"drop fractions need 0 <= frac_min <= frac_max <= 1, got {frac_min}, {frac_max}")
    n_real = mask.sum(dim=1).to(torch.float64)
    lo, hi = torch.ceil(frac_min * n_real), torch.floor(frac_max * n_real)
    u = torch.rand(mask.shape[0], generator=generator, dtype=torch.float64,
                   device="cpu" if generator is not None else mask.device).to(mask.device)
    n_pick = torch.minimum(lo + torch.floor(u * (hi - lo + 1)), hi).long()
    return _choose(mask, n_pick, generator)


def _choose(mask: torch.Tensor, n_pick: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """n_pick[b] real particles of jet b, uniformly at random without replacement; never a padded slot."""
    B, N = mask.shape
    score = torch.rand(B, N, generator=generator, device="cpu" if generator is not None else mask.device)
    score = score.to(mask.device).masked_fill(~mask, 2.0)  # padding sorts last
    rank = score.argsort(dim=1).argsort(dim=1)  # rank of each slot among the jet's random scores
    return (rank < n_pick[:, None]) & mask


def order_among_chosen(chosen: torch.Tensor) -> torch.Tensor:
    """(B,N) bool -> (B,N) long: k for the k-th chosen particle in the stored (decreasing pT) order, 0 elsewhere.
    MPMv2 gives the k-th dropped particle null_token[k] ("APE only among the masked elements", jetssl
    src/models/mpm.py)."""
    return (chosen.long().cumsum(dim=1) - 1).clamp(min=0) * chosen.long()


def masked_jet_mean(per_particle: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Loss averaged over the chosen particles of each jet, then over the jets that have any (rodem-hep/mpm
    src/models/bert.py)."""
    w = chosen.to(per_particle.dtype)
    n = w.sum(dim=1)
    per_jet = (per_particle * w).sum(dim=1) / n.clamp(min=1)
    has = n > 0
    if not has.any():
        return per_particle.sum() * 0.0
    return per_jet[has].mean()
