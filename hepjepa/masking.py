"""Context and target masks over the sequenced patches (HEP-JEPA, arXiv:2502.03933; I-JEPA / Point-JEPA block
masking, facebookresearch/ijepa src/masks/multiblock.py, pointjepa/modules/masking.py).

For every jet (masks are drawn per jet, not per batch, unless `per_jet: false`):
  * M target blocks, each a contiguous run of k = max(1, int(T * s)) tokens in the sequencer order, s ~ U[target_scale],
    with T the jet's number of valid patches; blocks may overlap each other (Point-JEPA);
  * one context block: a contiguous window, of a fraction U[context_scale] of the tokens NOT in any target, over that
    remaining index list (Point-JEPA `contiguous` context sampler).
`strategy: random` replaces both by random token subsets of the same sizes (the random-vs-contiguous ablation).

Masks are boolean (B, T) tensors (targets: (M, B, T)), so jets with different token counts need no truncation; the
model gathers the selected tokens into padded tensors. When the targets cover every valid token of a jet (only tiny
jets), its context is empty and the model drops the jet from the loss: reusing a target token as context would hand the
predictor the embedding it has to predict. I-JEPA never puts a target patch in the context (`allow_overlap: false`,
facebookresearch/ijepa src/masks/multiblock.py).
"""
from __future__ import annotations

import torch


def _contiguous(valid_count: torch.Tensor, size: torch.Tensor, u: torch.Tensor, T: int) -> torch.Tensor:
    """Block [start, start + size) in a sequence of `valid_count` slots, start = floor(u * (count - size + 1))."""
    start = (u * (valid_count - size + 1).clamp(min=1)).floor().long()
    pos = torch.arange(T, device=valid_count.device)[None, :]
    return (pos >= start[:, None]) & (pos < (start + size)[:, None])


def _random_subset(allowed: torch.Tensor, size: torch.Tensor, gen_shape_like: torch.Tensor) -> torch.Tensor:
    """`size` random slots among `allowed` (B,T) per jet."""
    score = torch.rand(gen_shape_like.shape, device=allowed.device).masked_fill(~allowed, 2.0)
    rank = score.argsort(1).argsort(1)
    return (rank < size[:, None]) & allowed


def sample_masks(valid: torch.Tensor, num_targets: int = 4, target_scale=(0.15, 0.2), context_scale=(0.85, 1.0),
                 strategy: str = "contiguous", per_jet: bool = True):
    """valid (B,T) bool, valid patches first -> (context (B,T) bool, targets (M,B,T) bool)."""
    if strategy not in ("contiguous", "random"):
        raise ValueError(f"masking.strategy must be 'contiguous' or 'random', got {strategy!r}")
    B, T = valid.shape
    dev = valid.device
    n = valid.sum(1)  # valid tokens per jet

    def rand(*shape):  # one draw per jet, or one for the whole batch (Point-JEPA behaviour)
        r = torch.rand(*shape[:-1], 1 if not per_jet else shape[-1], device=dev)
        return r.expand(*shape)

    lo, hi = target_scale
    scale = lo + (hi - lo) * rand(B)  # one target scale per jet (Point-JEPA draws one per batch)
    k = torch.clamp((n.float() * scale).long(), min=1)
    targets = []
    for _ in range(num_targets):
        if strategy == "contiguous":
            block = _contiguous(n, k, rand(B), T)
        else:
            block = _random_subset(valid, k, valid.float())
        targets.append(block & valid)
    targets = torch.stack(targets) if num_targets else torch.zeros(0, B, T, dtype=torch.bool, device=dev)
    remaining = valid & ~targets.any(0)
    n_rem = remaining.sum(1)
    lo, hi = context_scale
    kc = torch.clamp((n_rem.float() * (lo + (hi - lo) * rand(B))).long(), min=1)
    kc = torch.minimum(kc, n_rem)  # 0 when the targets cover the whole jet: no context
    if strategy == "contiguous":
        rank = remaining.long().cumsum(1) - 1  # position of each remaining token in the remaining list
        window = _contiguous(n_rem, kc, rand(B), T)  # over remaining-list positions
        context = remaining & window.gather(1, rank.clamp(min=0))
    else:
        context = _random_subset(remaining, kc, valid.float())
    return context, targets
