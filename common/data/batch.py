"""One batch representation for every dataset (JetClass, Top tagging, quark-gluon) and every method."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

# Jet-level values carried in JetBatch.jet, in this order.
JET_FIELDS = ("pt", "eta", "phi", "energy", "mass", "nparticles")


@dataclass
class JetBatch:
    """Padded jets.

    x     (B, N, F) float32  per-particle features of the chosen feature set, zero at padding
    mask  (B, N)    bool     True for a real particle; real particles come first, in decreasing pT
    p4    (B, N, 4) float32  (px, py, pz, E) in GeV, zero at padding (for pairwise features and observables)
    jet   (B, J)    float32  jet-level values in JET_FIELDS order
    label (B,)      int64    class index in the dataset's class order
    pid   (B, N)    int64    particle-ID class (MPMv2 convention, 0..7) or None when the feature set has none
    """

    x: torch.Tensor
    mask: torch.Tensor
    p4: torch.Tensor
    jet: torch.Tensor
    label: torch.Tensor
    pid: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device, non_blocking: bool = False) -> "JetBatch":
        moved = {
            f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device, non_blocking=non_blocking))
            for f in fields(self)
        }
        return JetBatch(**moved)

    def pin_memory(self) -> "JetBatch":
        pinned = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).pin_memory()) for f in fields(self)}
        return JetBatch(**pinned)

    def __getitem__(self, index) -> "JetBatch":
        """Select jets (a slice, an index tensor or a boolean tensor over the batch)."""
        picked = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[index]) for f in fields(self)}
        return JetBatch(**picked)
