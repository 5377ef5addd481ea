"""Particle jet tokeniser: particles -> patch tokens (HEP-JEPA "particle jet tokeniser", arXiv:2502.03933).

The recipe is Point-JEPA's, moved from 3-D points to the (deta, dphi) plane of a jet:
  1. farthest point sampling (FPS) picks G patch centres among the real particles;
  2. each centre groups its K nearest particles (kNN in (deta, dphi); groups may overlap);
  3. the angular channels of each group are taken relative to the centre;
  4. a mini-PointNet maps each group to one token of width d (masked max-pool over members);
  5. the patches are put in a 1-D order by an iterative-nearest-neighbour walk (the "sequencer"), so that contiguous
     index blocks are also contiguous in space (needed by contiguous masking, hepjepa.masking).
Every step is vectorised over the batch; only loops over the G patch slots remain (G is ~16).

Padding safety: padded particles are put at +inf distance, so they are never centres and never group members. Jets with
fewer than G particles get invalid (masked) patches at the end of the sequence; jets with fewer than K particles have
masked group members, which the PointNet max-pool ignores. The patch four-vector (sum of its members' p4) feeds the
ParT physics bias (arXiv:2202.03772 Eq. 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Patches:
    """Sequenced patches of a batch of jets; `mask` is False for patch slots without particles (small jets)."""

    tokens: torch.Tensor  # (B, G, d)  PointNet embedding
    centres: torch.Tensor  # (B, G, 2)  (deta, dphi) of the centre particle
    p4: torch.Tensor  # (B, G, 4)  sum of member four-vectors (px, py, pz, E)
    mask: torch.Tensor  # (B, G) bool
    groups: torch.Tensor  # (B, G, K) long, particle indices of the members
    group_mask: torch.Tensor  # (B, G, K) bool


def farthest_point_sample(points: torch.Tensor, mask: torch.Tensor, num_centres: int, random_start: bool = False):
    """FPS over the real particles. points (B,N,2), mask (B,N) -> (idx (B,G) long, valid (B,G) bool).

    Start: a random real particle (Point-JEPA, `random_start_point=True`) or the leading-pT particle (index of the first
    real particle; deterministic, used at evaluation). Slot g is valid when the jet has more than g real particles;
    invalid slots repeat a real particle (or index 0 for an empty jet) and are masked by `valid`.
    """
    B, N, _ = points.shape
    n_real = mask.sum(1)
    if random_start:
        start = torch.where(mask, torch.rand(B, N, device=points.device), torch.full_like(points[..., 0], -1.0)).argmax(1)
    else:
        start = mask.float().argmax(1)  # first real particle = hardest (pT-ordered)
    idx = torch.empty(B, num_centres, dtype=torch.long, device=points.device)
    # distance of every particle to the current centre set; padded particles sit at -1 so argmax never picks them
    min_dist = torch.where(mask, torch.full_like(points[..., 0], float("inf")), torch.full_like(points[..., 0], -1.0))
    current = start
    for g in range(num_centres):
        idx[:, g] = current
        centre = points.gather(1, current[:, None, None].expand(B, 1, 2))  # (B,1,2)
        d = (points - centre).square().sum(-1)
        min_dist = torch.where(mask, torch.minimum(min_dist, d), min_dist)
        current = min_dist.argmax(1)
    valid = torch.arange(num_centres, device=points.device)[None, :] < n_real[:, None]
    return idx, valid


def knn_groups(points: torch.Tensor, mask: torch.Tensor, centres: torch.Tensor, centre_valid: torch.Tensor, k: int,
               k_per_jet: torch.Tensor | None = None):
    """K nearest real particles of each centre. -> (groups (B,G,K) long, group_mask (B,G,K) bool).

    Padded particles are at +inf distance; when a jet has fewer than K particles the tail of each group is masked.
    k_per_jet (B,) long <= k: a jet-dependent group size; members beyond it are masked (`patch_size_per_jet`).
    """
    N = points.shape[1]
    d = torch.cdist(centres, points)  # (B,G,N)
    d = d.masked_fill(~mask[:, None, :], float("inf"))
    k_eff = min(k, N)
    dist, groups = d.topk(k_eff, dim=-1, largest=False)
    group_mask = torch.isfinite(dist) & centre_valid[..., None]
    if k_per_jet is not None:
        group_mask = group_mask & (torch.arange(k_eff, device=points.device) < k_per_jet[:, None, None])
    if k_eff < k:  # fewer padded slots than K: pad the group with masked copies of the first member
        pad = k - k_eff
        groups = torch.cat([groups, groups[..., :1].expand(-1, -1, pad)], -1)
        group_mask = torch.cat([group_mask, torch.zeros_like(group_mask[..., :1]).expand(-1, -1, pad)], -1)
    return groups, group_mask


def sequence_patches(centres: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Iterative nearest neighbour, min start (Point-JEPA sequencer): start at the valid centre with the smallest
    deta + dphi, then repeatedly step to the nearest unvisited valid centre; invalid slots go last.
    centres (B,G,2), valid (B,G) -> order (B,G) long, a permutation per jet."""
    B, G, _ = centres.shape
    inf = torch.tensor(float("inf"), device=centres.device, dtype=centres.dtype)
    d = torch.cdist(centres, centres)  # (B,G,G)
    visited = ~valid  # invalid slots are never chosen by the walk
    current = torch.where(valid, centres.sum(-1), inf).argmin(1)
    order = torch.empty(B, G, dtype=torch.long, device=centres.device)
    ar = torch.arange(B, device=centres.device)
    for g in range(G):
        order[:, g] = current
        visited = visited.clone()
        visited[ar, current] = True
        step = d[ar, current].masked_fill(visited, inf)  # (B,G)
        current = step.argmin(1)
    # the walk above repeats the last valid centre once all valid ones are visited; replace that tail by the invalid
    # slots in index order, so `order` is a true permutation with the valid patches first.
    n_valid = valid.sum(1, keepdim=True)
    pos = torch.arange(G, device=centres.device)[None, :]
    # invalid slot indices first, each group in index order (unique keys: what a stable sort of `valid` gives, and
    # exportable to ONNX, whose TopK has no stable flag)
    invalid_sorted = (valid.long() * G + pos).argsort(dim=1)
    tail = invalid_sorted.gather(1, (pos - n_valid).clamp(min=0))
    return torch.where(pos < n_valid, order, tail)


class MiniPointNet(nn.Module):
    """Per-group PointNet (Point-JEPA "small" encoder, narrower): per-member MLP -> masked max -> concat(global,
    member) -> MLP -> masked max. LayerNorm instead of BatchNorm [U, our choice]: BN statistics would mix padded members
    and other jets into a real particle's embedding."""

    def __init__(self, in_dim: int, dim: int, hidden: int = 64):
        super().__init__()
        self.first = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.LayerNorm(hidden), nn.ReLU(),
                                   nn.Linear(hidden, 2 * hidden))
        self.second = nn.Sequential(nn.Linear(4 * hidden, 4 * hidden, bias=False), nn.LayerNorm(4 * hidden), nn.ReLU(),
                                    nn.Linear(4 * hidden, dim))

    @staticmethod
    def _masked_max(f: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return f.masked_fill(~m[..., None], float("-inf")).amax(-2)

    def forward(self, x: torch.Tensor, member_mask: torch.Tensor) -> torch.Tensor:
        """x (B,G,K,C), member_mask (B,G,K) -> (B,G,dim); zero for patches without members."""
        has = member_mask.any(-1)
        safe = member_mask | ~has[..., None]  # empty patches: pool over their (zeroed) slots, result zeroed below
        f = self.first(x)
        g = self._masked_max(f, safe)
        f = torch.cat([g[..., None, :].expand_as(f), f], -1)
        out = self._masked_max(self.second(f), safe)
        return out * has[..., None]


def patch_size_per_jet(n_real: torch.Tensor, num_patches: int, coverage: float, max_size: int) -> torch.Tensor:
    """K per jet = ceil(coverage * n / G_jet), G_jet = min(n, G), clamped to [1, max_size]: the G patches hold about
    `coverage` times the jet's n particles, so each particle sits in ~coverage patches whatever the multiplicity
    (Point-JEPA: 64 x 32 members for 1024 points, coverage 2). n_real (B,) -> (B,) long."""
    g_jet = n_real.clamp(min=1, max=num_patches).float()
    return torch.ceil(coverage * n_real.float() / g_jet).long().clamp(min=1, max=max_size)


class JetTokenizer(nn.Module):
    """Particles (JetBatch.x, .mask, .p4) -> sequenced `Patches`.

    angle_idx: columns of (deta, dphi) in the feature vector (from FEATURE_SETS[name].names).
    coverage: None = every patch has `group_size` members (Point-JEPA, fixed-size point clouds); a float c = the patch
    size follows the jet, K = ceil(c n / G) capped at `group_size` (patch_size_per_jet).
    """

    def __init__(self, in_dim: int, dim: int, num_patches: int, group_size: int, angle_idx=(0, 1),
                 pointnet_hidden: int = 64, random_start: bool = True, sequence: bool = True,
                 coverage: float | None = None):
        super().__init__()
        self.num_patches, self.group_size, self.coverage = num_patches, group_size, coverage
        self.angle_idx = list(angle_idx)
        self.random_start = random_start
        self.augment = True  # follows train(); a frozen backbone in a training run keeps it (HEPJEPABackbone)
        self.sequence = sequence
        self.pointnet = MiniPointNet(in_dim, dim, pointnet_hidden)

    def train(self, mode: bool = True):
        """The random FPS start (random_start) is a training augmentation: on in train mode, never in evaluation,
        where FPS starts at the leading particle as pointnet2_ops' furthest_point_sample starts at index 0
        (Point-MAE / Point-BERT), so embeddings are deterministic."""
        super().train(mode)
        self.augment = mode
        return self

    def forward(self, x: torch.Tensor, mask: torch.Tensor, p4: torch.Tensor) -> Patches:
        B, N, F = x.shape
        mask = mask.bool()
        points = x[..., self.angle_idx].float()
        idx, valid = farthest_point_sample(points, mask, self.num_patches, self.random_start and self.augment)
        centres = points.gather(1, idx[..., None].expand(-1, -1, 2))
        if self.sequence:
            order = sequence_patches(centres, valid)
            idx, valid = idx.gather(1, order), valid.gather(1, order)
            centres = centres.gather(1, order[..., None].expand(-1, -1, 2))
        k_jet = None if self.coverage is None else patch_size_per_jet(mask.sum(1), self.num_patches, self.coverage,
                                                                       self.group_size)
        groups, gmask = knn_groups(points, mask, centres, valid, self.group_size, k_jet)
        G, K = groups.shape[1], groups.shape[2]
        flat = groups.reshape(B, G * K)
        members = x.gather(1, flat[..., None].expand(-1, -1, F)).reshape(B, G, K, F)
        # angular channels relative to the centre (others minus 0: unchanged); no in-place index assignment, which the
        # ONNX export cannot translate
        c = centres[:, :, None, :].to(members.dtype)
        zero = torch.zeros_like(c[..., 0])
        shift = torch.stack([c[..., self.angle_idx.index(f)] if f in self.angle_idx else zero for f in range(F)], -1)
        rel = (members - shift) * gmask[..., None]
        tokens = self.pointnet(rel, gmask)
        # patch four-vector: sum of member p4 (a particle shared by overlapping groups counts in each) [U]
        mp4 = p4.gather(1, flat[..., None].expand(-1, -1, 4)).reshape(B, G, K, 4)
        patch_p4 = (mp4 * gmask[..., None]).sum(2)
        centres = centres * valid[..., None]
        return Patches(tokens, centres, patch_p4, valid, groups, gmask)


class PositionalMLP(nn.Module):
    """Positional embedding of the patch centres: Linear(2, h) -> GELU -> Linear(h, d) (Point-JEPA, 2-D here)."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, centres: torch.Tensor) -> torch.Tensor:
        return self.net(centres)


class SinCosPosition(nn.Module):
    """Fixed 2-D sin-cos embedding of the patch centres (I-JEPA get_2d_sincos_pos_embed, src/models/vision_transformer.py):
    half of the d channels encode deta, half dphi, each as [sin(u w_k), cos(u w_k)] with w_k = 10000^(-k/(d/4)).
    I-JEPA's coordinates are patch-grid indices; here u = angle / `unit`, unit = 0.02 rad [U: about an ECal cell,
    0.0174], so a jet of radius 0.8 spans ~40 grid steps (ViT-B/16 at 224 px: 14). No parameters."""

    def __init__(self, dim: int, unit: float = 0.02, temperature: float = 10000.0):
        super().__init__()
        if dim % 4:
            raise ValueError(f"the sin-cos position needs a width divisible by 4, got {dim}")
        k = torch.arange(dim // 4, dtype=torch.float32) / (dim // 4)
        self.register_buffer("omega", temperature ** -k, persistent=False)
        self.unit = unit

    def forward(self, centres: torch.Tensor) -> torch.Tensor:
        u = centres.float()[..., :, None] / self.unit * self.omega          # (..., 2, d/4)
        return torch.cat([u[..., 0, :].sin(), u[..., 0, :].cos(), u[..., 1, :].sin(), u[..., 1, :].cos()], -1)
