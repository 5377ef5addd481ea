"""The labelled jets of a few-shot run.

- `per_class_subset`: n jets per class drawn with one seed (the same draw the fine-tuning harness makes,
  common.data.datasets.build_dataset);
- `label_count`: n per class of a label percentage.
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
