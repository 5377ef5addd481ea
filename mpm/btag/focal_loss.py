"""Sigmoid focal loss of the MPMv2 vertex finder (Lin et al., arXiv:1708.02002, Eq. 5, with a class weight; mltools
loss.py sigmoid_focal_loss, used with gamma 3 and pos_weight 0.778 by jetssl configs/model/vertexer.yaml)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 3.0,
               pos_weight: float = 0.778) -> torch.Tensor:
    """mean over pairs of w BCE(logit, y) (1 - p_t)^gamma, p_t = p y + (1 - p)(1 - y), w = pos_weight for y = 1
    and 1 for y = 0."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    weight = 1 + (pos_weight - 1) * target
    return (weight * bce * (1 - p_t) ** gamma).mean()
