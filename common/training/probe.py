"""The frozen-encoder linear probe: one probe for every pretrained backbone, so embeddings compare fairly.

- `pool_mean_max`: masked mean and max over the real particles (Point-JEPA's pooled representation,
  arXiv:2404.16207 Sec. 3.4; also the input of the HEP-JEPA fine-tuning head, arXiv:2502.03933 Sec. 4);
- `set_norm_stats`: a random-init backbone gets its normalisation statistics (BatchNorm running mean/var) from data
  by forward passes only, as a pretrained one got them during pretraining; without it the random baseline
  normalises with mean 0 / var 1 and looks worse than it is;
- `random_init`, `pooled_embeddings`: the baseline built and calibrated so, and the pooled embeddings of a backbone;
- `norm_stat_batches`: the batches a random init's statistics are set from, for in-memory jets: the kit's one
  class-balanced draw (common.data.subsets.balanced_batches; common/results/compare.py draws the same for its
  JetDataset), never the first batches in file order (the split files are per class and sorted);
- `linear_probe`: standardised features, scikit-learn multinomial logistic regression, accuracy on a test set.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from common.data.array_loader import ArrayLoader
from common.data.subsets import balanced_batches


def pool_mean_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, D) particle (or patch) embeddings and (B, N) bool mask -> (B, 2D): [masked mean, masked max].
    Padded positions never enter; a jet with no real entry pools to zeros."""
    m = mask.unsqueeze(-1).to(h.dtype)
    count = m.sum(1).clamp_min(1.0)
    mean = (h * m).sum(1) / count
    neg = torch.finfo(h.dtype).min
    mx = h.masked_fill(~mask.unsqueeze(-1), neg).amax(1)
    mx = torch.where(mask.any(1, keepdim=True), mx, torch.zeros_like(mx))
    return torch.cat([mean, mx], dim=-1)


@torch.no_grad()
def set_norm_stats(model: nn.Module, batches: Iterable, forward: Callable[[nn.Module, object], object]) -> int:
    """Set the data statistics of `model` from `batches` by forward passes in training mode, without gradients:
    every BatchNorm's running statistics (cumulative average over the batches, momentum=None), and those of any
    module that marks itself `collects_input_statistics = True` and accumulates them in its training-mode forward
    (MPMv1's running input normalisation, mpm/normalise.py). Weights are untouched; the model ends in eval mode.
    Returns the number of batches used. A model with neither is left as it is (no forward pass)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    collectors = [m for m in model.modules() if getattr(m, "collects_input_statistics", False)]
    if not norms and not collectors:
        model.eval()
        return 0
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    try:
        for batch in batches:
            forward(model, batch)
            n += 1
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.eval()
    if n == 0:
        raise ValueError("set_norm_stats: no batches given")
    return n


def random_init(build: Callable[[], nn.Module], seed: int, batches: Iterable,
                forward: Callable[[nn.Module, object], object] = lambda m, b: m(b)) -> nn.Module:
    """The random-init baseline: build() under torch seed `seed`, its data statistics set from `batches`
    (set_norm_stats), in eval mode."""
    torch.manual_seed(seed)
    net = build()
    set_norm_stats(net, batches, forward)
    return net


def norm_stat_batches(arrays: dict, n_batches: int, batch_size: int = 256, seed: int = 0) -> list:
    """JetBatches of in-memory jets ({x, mask, p4, jet, label[, pid]}) that set a random-init backbone's statistics:
    n_batches class-balanced batches of batch_size (common.data.subsets.balanced_batches with `seed`)."""
    keep = {k: v for k, v in arrays.items() if v is not None}
    return [next(iter(ArrayLoader({k: v[idx] for k, v in keep.items()}, len(idx), shuffle=False)))
            for idx in balanced_batches(arrays["label"], n_batches, batch_size, seed)]


@torch.no_grad()
def pooled_embeddings(backbone: nn.Module, batches: Iterable) -> np.ndarray:
    """(N, 2D) float32 pool_mean_max of backbone(batch) -> (h, mask) over `batches`, in eval mode, in order."""
    backbone.eval()
    out = []
    for batch in batches:
        h, mask = backbone(batch)
        out.append(pool_mean_max(h.float(), mask).numpy())
    return np.concatenate(out).astype(np.float32)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                 seed: int = 0, max_iter: int = 2000, c: float = 1.0) -> dict:
    """Standardise (fit on the training jets), multinomial logistic regression (L2, C=c), accuracy on the test jets.
    Returns {accuracy, n_train, n_features}."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    for name, a in (("train", x_train), ("test", x_test)):
        if not np.isfinite(a).all():
            raise ValueError(f"linear_probe: {name} features hold NaN or inf")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    clf.fit(x_train, np.asarray(y_train))
    acc = float((clf.predict(x_test) == np.asarray(y_test)).mean())
    return {"accuracy": acc, "n_train": int(len(y_train)), "n_features": int(x_train.shape[1])}
