"""Target-in-context fraction: how much of what the predictor must predict the context encoder already sees.

kNN patches overlap (a particle can be a member of several patches), so a particle of a target patch can also be a
member of a context patch. Then the target embedding can be partly interpolated from the context instead of predicted.
This module measures, per batch, the fraction of the particles in target patches that are also members of a context
patch:

    f = sum_jets |P(targets) & P(context)| / sum_jets |P(targets)|,   P(S) = the particles that are members of S.

A monitor only (logged by hepjepa.pretrain), never part of the loss.
"""
from __future__ import annotations

import torch


def member_particles(select: torch.Tensor, groups: torch.Tensor, group_mask: torch.Tensor, num_particles: int):
    """select (B,G) bool patches; groups (B,G,K) particle indices; group_mask (B,G,K) -> (B,N) bool: the particles
    that are members of at least one selected patch."""
    B = groups.shape[0]
    hit = (group_mask & select[..., None]).flatten(1).to(torch.int32)
    count = torch.zeros(B, num_particles, dtype=torch.int32, device=groups.device)
    return count.scatter_add_(1, groups.flatten(1), hit) > 0


def target_in_context_fraction(groups: torch.Tensor, group_mask: torch.Tensor, context: torch.Tensor,
                               targets: torch.Tensor, num_particles: int) -> torch.Tensor:
    """Fraction (scalar tensor) of the particles in any target patch that are also in a context patch.
    context (B,G) bool, targets (M,B,G) bool; 0 when the batch has no target particle."""
    in_tgt = member_particles(targets.any(0), groups, group_mask, num_particles)
    in_ctx = member_particles(context, groups, group_mask, num_particles)
    return (in_tgt & in_ctx).sum().float() / in_tgt.sum().clamp(min=1).float()
