"""The random-initialisation baseline of every frozen-encoder comparison (hepjepa.probe, Figure 3 of hepjepa.figures):
the downstream architecture built with a seed, its BatchNorm statistics (the physics-bias pair embedding) set from
training batches by forward passes alone (common.probe.set_norm_stats), as the pretrained encoder got them during
pretraining. Without them the random encoder normalises with mean 0 / variance 1 and looks worse than it is."""
from __future__ import annotations

import torch

from common.batch import JetBatch
from common.probe import set_norm_stats

FIELDS = ("x", "mask", "p4", "jet", "label")


def array_batches(arrays: dict, batch_size: int, limit: int | None = None):
    """JetBatch views of in-memory arrays (common.data.load_arrays), in order; at most `limit` batches."""
    n = len(arrays["label"])
    for k, i in enumerate(range(0, n, batch_size)):
        if limit is not None and k >= limit:
            return
        sl = slice(i, i + batch_size)
        yield JetBatch(*(torch.from_numpy(arrays[f][sl]) for f in FIELDS))


def random_backbone(build, arrays: dict, seed: int, norm_batches: int, batch_size: int = 256):
    """build() at random initialisation (torch seed `seed`), statistics set from the first `norm_batches` batches of
    `arrays`; returned in eval mode."""
    torch.manual_seed(seed)
    net = build()
    set_norm_stats(net, array_batches(arrays, batch_size, norm_batches), lambda m, b: m(b))
    return net
