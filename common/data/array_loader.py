"""Batches of jets held in memory as numpy arrays (CWoLa's pseudo-labelled sets, the BTag splits), served like
common.data.datasets.make_loader's: in the order of common.data.sampler.ShardedBatchSampler (a permutation per (seed, epoch),
sharded over ranks; sorted within a batch) and with the feature set's per-batch step (FeatureSet.per_batch, e.g.
MPMv2's fresh neutral-IP noise seeded by the batch's jets), as common.data.datasets.JetDataset runs it."""
from __future__ import annotations

import numpy as np
import torch

from common.data.batch import JetBatch
from common.data.features import FeatureSet
from common.data.sampler import ShardedBatchSampler

JET_ARRAYS = ("x", "mask", "p4", "jet", "label", "pid")  # the JetBatch fields (pid optional)


class ArrayLoader:
    """arrays: {x, mask, p4, jet, label[, pid]} and any per-jet target, indexed by jet. Yields JetBatch, or
    (JetBatch, arrays[target] as long) when `target` names a further array (e.g. a per-track label). len(),
    set_epoch() and .dataset (the jets) as common.training.finetune and common.training.checkpoint.ResumableLoader use them."""

    def __init__(self, arrays: dict, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, features: FeatureSet | None = None, target: str | None = None):
        if target is not None and arrays.get(target) is None:
            raise ValueError(f"ArrayLoader: target {target!r} is not among the arrays {sorted(arrays)}")
        keep = JET_ARRAYS + ((target,) if target is not None else ())
        self.arrays = {k: np.asarray(v) for k, v in arrays.items() if k in keep and v is not None}
        self.features, self.target = features, target
        self.sampler = ShardedBatchSampler(len(self.arrays["label"]), batch_size, shuffle=shuffle, seed=seed,
                                           rank=rank, world_size=world_size)
        self.dataset = range(len(self.arrays["label"]))

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for idx in self.sampler:
            yield self.batch_at(idx)

    def batch_at(self, idx):
        """The batch of the jets idx (sorted first), as the iteration yields it."""
        idx = np.sort(idx)
        a = {k: v[idx] for k, v in self.arrays.items()}
        if self.features is not None:
            a = self.features.per_batch(a, idx)
        t = {k: torch.from_numpy(v) for k, v in a.items()}
        batch = JetBatch(t["x"].float(), t["mask"].bool(), t["p4"].float(), t["jet"].float(), t["label"].long(),
                         t["pid"].long() if "pid" in t else None)
        return batch if self.target is None else (batch, t[self.target].long())
