"""The one batch sampler of the kit: a seeded per-epoch permutation sharded over ranks and cut into batches.

Used by every loader (common.data.datasets.make_loader, the in-memory CWoLa batches of mpm/cwola.py, the token sequences of
omnijet/pretrain.py), so a run's batch order depends only on (seed, epoch, rank, world_size), and a resumed run that
restores the epoch and the position within it continues with exactly the next batch.
"""
from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Sampler


class ShardedBatchSampler(Sampler):
    """DistributedSampler semantics over batches: per-epoch permutation from (seed, epoch), padded by wrapping to a
    multiple of world_size, rank r takes every world_size-th index, then cut into batches."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last, self.epoch = rank, world_size, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        per_rank = math.ceil(self.n / self.world_size)
        if per_rank * self.world_size > self.n and self.n > 0:
            order = np.resize(order, per_rank * self.world_size)     # wrap, like DistributedSampler
        return order[self.rank::self.world_size]

    def __iter__(self):
        idx = self._indices()
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        for b in range(0, stop, self.batch_size):
            yield idx[b:b + self.batch_size]

    def __len__(self) -> int:
        m = math.ceil(self.n / self.world_size)
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)
