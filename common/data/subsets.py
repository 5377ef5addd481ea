"""The labelled jets of a few-shot run.

- `per_class_subset`: n jets per class drawn with one seed (the same draw the fine-tuning harness makes,
  common.data.datasets.build_dataset);
- `label_count`: n per class of a label percentage;
- `balanced_batches`: the class-balanced batches from which every random-init backbone of the kit gets its data
  statistics (common.training.probe.random_init / set_norm_stats; hepjepa/probe.py, bench/hepjepa_shortcut.py,
  common/results/compare.py). The split files are per class and sorted, so the first batches in file order hold
  nearly one class: statistics set from them describe that class, not the data.
"""
from __future__ import annotations

import numpy as np


def per_class_subset(labels: np.ndarray, n_per_class: int, seed: int, n_classes: int | None = None) -> np.ndarray:
    """Sorted indices of n_per_class jets of each class 0..n_classes-1, drawn without replacement with `seed`.
    Raises ValueError naming the class when a class has fewer jets than asked."""
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    rng = np.random.default_rng(seed)
    pick = []
    for c in range(n_classes):
        have = np.nonzero(labels == c)[0]
        if len(have) < n_per_class:
            raise ValueError(f"class {c} has {len(have)} jets, n_per_class={n_per_class} requested")
        pick.append(rng.choice(have, n_per_class, replace=False))
    return np.sort(np.concatenate(pick))


def label_count(percent: float, n_train: int, n_classes: int) -> int | None:
    """Labelled jets per class for a label percentage of a training split of n_train jets spread evenly over the
    classes (HEP-JEPA's few-shot fractions, arXiv:2502.03933 Sec. 4); None (the whole split) from 100 % on."""
    if percent >= 100:
        return None
    return max(1, round(percent / 100.0 * n_train / n_classes))


def balanced_batches(labels: np.ndarray, n_batches: int, batch_size: int, seed: int = 0,
                     n_classes: int | None = None) -> list[np.ndarray]:
    """n_batches sorted index arrays of batch_size jets each, class-balanced: every batch holds batch_size // C jets
    of each of the C classes present (the remainder goes to the classes in turn, rotating from batch to batch), drawn
    with `seed` from each class in a random order, without replacement until a class runs out (then its order is
    redrawn). Classes 0..n_classes-1 absent from `labels` raise ValueError (their statistics would be missing)."""
    labels = np.asarray(labels)
    if n_batches < 1 or batch_size < 1:
        raise ValueError(f"balanced_batches: n_batches and batch_size must be >= 1, got {n_batches}, {batch_size}")
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    pools = [np.nonzero(labels == c)[0] for c in range(n_classes)]
    empty = [c for c, p in enumerate(pools) if not len(p)]
    if empty:
        raise ValueError(f"balanced_batches: classes {empty} have no jets")
    rng = np.random.default_rng(seed)
    order = [rng.permutation(p) for p in pools]
    pos = [0] * n_classes
    out = []
    for b in range(n_batches):
        counts = [batch_size // n_classes + ((c - b) % n_classes < batch_size % n_classes) for c in range(n_classes)]
        pick = []
        for c, k in enumerate(counts):
            while k > 0:
                if pos[c] == len(order[c]):
                    order[c], pos[c] = rng.permutation(pools[c]), 0
                take = order[c][pos[c]:pos[c] + k]
                pick.append(take)
                pos[c] += len(take)
                k -= len(take)
        out.append(np.sort(np.concatenate(pick)))
    return out
