"""The fixed validation subset of the tokeniser and GPT trainings: class-balanced and shuffled with a fixed seed.

OJ validates on one file per jet type loaded together and shuffled with the fixed seed 3838 (`seed_shuffle_data` of
uhh-pd-ml/omnijet_alpha gabbro/data/iterable_dataset_jetclass.py, val config `max_n_files_per_type: 1`), so the
first validation batches hold every jet type in about equal numbers, the same jets at every validation. The splits
here are stored in sorted file order (one class after the other), so their first batches would hold one class only.
"""
from __future__ import annotations

import numpy as np

from common.data.datasets import JetDataset, build_dataset
from common.data.sampler import ShardedBatchSampler

SEED = 3838  # OJ seed_shuffle_data


def balanced_subset(labels: np.ndarray, n_jets: int, seed: int = SEED) -> np.ndarray:
    """Indices of n_jets // C jets of each of the C classes in `labels` (fewer if a class has fewer: then every class
    gets as many as the smallest), drawn and put in a shuffled order by a generator seeded with `seed` only."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) == 0:
        raise ValueError("balanced_subset: no jets")
    per_class = min(n_jets // len(classes), min(int((labels == c).sum()) for c in classes))
    if per_class < 1:
        raise ValueError(f"balanced_subset: {n_jets} jets cannot hold one jet of each of {len(classes)} classes")
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(np.nonzero(labels == c)[0], per_class, replace=False) for c in classes])
    return pick[rng.permutation(len(pick))]


def dataset_labels(ds: JetDataset) -> np.ndarray:
    """Class label of every jet of a JetDataset, read from the cached label arrays only (no particle arrays)."""
    raw = np.concatenate([np.asarray(e.arrays["label"]) for e in ds.entries])
    labels = ds.label_map[raw]
    return labels if ds.index is None else labels[ds.index]


def validation_loader(data_cfg: dict, batch_size: int, n_jets: int, *, rank: int = 0, world_size: int = 1):
    """Loader over the balanced, shuffled validation subset of n_jets jets (batches in the subset's order)."""
    from torch.utils.data import DataLoader

    ds = build_dataset(data_cfg, "val", progress=rank == 0, rank=rank, world_size=world_size)
    pick = balanced_subset(dataset_labels(ds), n_jets)
    subset = JetDataset(ds.entries, ds.label_map, pick if ds.index is None else ds.index[pick])
    sampler = ShardedBatchSampler(len(subset), batch_size, shuffle=False, rank=rank, world_size=world_size)
    return DataLoader(subset, batch_size=None, sampler=sampler, num_workers=0, collate_fn=lambda b: b)
