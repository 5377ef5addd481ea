"""common/training/probe.py: the shared frozen-encoder probe (subsets, pooling, BatchNorm statistics, logistic regression)."""
import numpy as np
import pytest
import torch
from torch import nn

from common.data.subsets import per_class_subset
from common.training.probe import linear_probe, pool_mean_max, set_norm_stats


def test_per_class_subset_is_the_finetuning_draw():
    labels = np.repeat(np.arange(3), 20).astype(np.int16)
    a = per_class_subset(labels, 5, seed=7, n_classes=3)
    assert len(a) == 15 and np.all(np.bincount(labels[a]) == 5)
    assert np.array_equal(a, per_class_subset(labels, 5, seed=7, n_classes=3))
    assert not np.array_equal(a, per_class_subset(labels, 5, seed=8, n_classes=3))
    # the draw the harness made before it was factored out: one generator, classes in order
    rng = np.random.default_rng(7)
    ref = np.sort(np.concatenate([rng.choice(np.nonzero(labels == c)[0], 5, replace=False) for c in range(3)]))
    assert np.array_equal(a, ref)
    with pytest.raises(ValueError, match="class 0 has 20 jets"):
        per_class_subset(labels, 21, seed=0)


def test_pool_mean_max_ignores_padding():
    h = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    out = pool_mean_max(h, mask)
    assert torch.allclose(out, torch.tensor([[2.0, 1.0, 3.0, 4.0]]))
    empty = pool_mean_max(h, torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros(1, 4))


def test_set_norm_stats_from_data_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    w = net[0].weight.clone()
    batches = [torch.randn(64, 3) * 5 + 2 for _ in range(10)]
    n = set_norm_stats(net, batches, lambda m, b: m(b))
    assert n == 10 and not net.training
    assert torch.equal(net[0].weight, w)
    ref = net[0](torch.cat(batches)).detach()
    assert torch.allclose(net[1].running_mean, ref.mean(0), atol=1e-4)
    assert net[1].momentum == 0.1                              # restored
    # at random init (no statistics) the eval-mode output is not normalised; after, it is
    out = net(torch.cat(batches)).detach()
    assert out.mean(0).abs().max() < 1e-3 and (out.std(0) - 1).abs().max() < 0.05


def test_linear_probe_separates_and_refuses_nan():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    x = rng.normal(size=(200, 3)) + y[:, None] * 3.0
    res = linear_probe(x[::2], y[::2], x[1::2], y[1::2])
    assert res["accuracy"] > 0.95 and res["n_train"] == 100
    noise = linear_probe(rng.normal(size=(100, 3)), y[::2], rng.normal(size=(100, 3)), y[1::2])
    assert noise["accuracy"] < 0.75
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(x[::2], y[::2], x[1::2], y[1::2])


def test_random_init_and_pooled_embeddings():
    from common.training.probe import pooled_embeddings, random_init

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.bn = nn.Linear(3, 4), nn.BatchNorm1d(4)

        def forward(self, x):                       # (B, N, 3) -> (h (B, N, 4), mask: the first two particles real)
            h = self.bn(self.lin(x).transpose(1, 2)).transpose(1, 2)
            return h, (torch.arange(x.shape[1]) < 2).expand(x.shape[0], -1)

    batches = [torch.randn(8, 5, 3) * 3 + 1 for _ in range(4)]
    net = random_init(Net, 5, batches)
    torch.manual_seed(5)
    assert torch.equal(Net().lin.weight, net.lin.weight)     # the seed's weights; only the statistics were set
    assert int(net.bn.num_batches_tracked) == 4 and not net.training
    z = pooled_embeddings(net, batches)
    assert z.shape == (32, 8) and z.dtype == np.float32
    h, mask = net(batches[0])
    assert np.allclose(z[:8], pool_mean_max(h, mask).detach().numpy(), atol=1e-6)


def test_set_norm_stats_sets_mpmv1_input_normalisation_too():
    """A random-init MPMv1 backbone has no BatchNorm but a running input normalisation (mpm/normalise.py) that its
    training-mode forward accumulates: the baseline gets it from data, as the pretrained one got it in pretraining
    (was: left at mean 0 / std 1)."""
    from mpm.normalise import IterativeNorm

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.lin = IterativeNorm(3), nn.Linear(3, 4)

        def forward(self, x):
            mask = torch.ones(x.shape[:2], dtype=torch.bool)
            if self.training:
                self.norm.update(x, mask)
            return self.lin(self.norm(x, mask)), mask

    batches = [torch.randn(8, 5, 3) * 4 + 7 for _ in range(3)]
    net = Backbone()
    assert set_norm_stats(net, batches, lambda m, b: m(b)) == 3 and not net.training
    assert int(net.norm.n) == 3 * 8 * 5
    assert torch.allclose(net.norm.mean.float(), torch.cat(batches).reshape(-1, 3).mean(0), atol=1e-5)
    assert set_norm_stats(nn.Linear(3, 4), batches, lambda m, b: m(b)) == 0      # nothing to set: no pass


def test_balanced_batches_draw_every_class_alike_from_class_sorted_files():
    """Split files are per class and sorted: the first batches in file order hold one class. The kit's one statistics
    draw (common.data.subsets.balanced_batches) holds every class alike in every batch, deterministically per seed."""
    from common.data.subsets import balanced_batches

    labels = np.repeat(np.arange(4), [300, 40, 500, 7])          # class-sorted, unequal classes
    first = labels[:256]                                         # the old draw: the first batch in file order
    assert np.bincount(first, minlength=4).tolist() == [256, 0, 0, 0]
    batches = balanced_batches(labels, 5, 256, seed=0)
    assert len(batches) == 5 and all(len(b) == 256 and np.all(np.diff(b) >= 0) for b in batches)
    for b in batches:
        counts = np.bincount(labels[b], minlength=4)
        assert counts.max() - counts.min() <= 1 and counts.sum() == 256
    big = np.concatenate(batches)[labels[np.concatenate(batches)] == 2]   # 320 of its 500 jets
    assert len(np.unique(big)) == len(big)                       # no jet twice while its class has jets left
    assert all(np.array_equal(x, y) for x, y in zip(batches, balanced_batches(labels, 5, 256, seed=0)))
    assert not all(np.array_equal(x, y) for x, y in zip(batches, balanced_batches(labels, 5, 256, seed=1)))
    with pytest.raises(ValueError, match=r"classes \[1\] have no jets"):
        balanced_batches(np.array([0, 0, 2, 2]), 1, 4)


def test_every_random_init_of_the_kit_uses_the_one_balanced_draw():
    """hepjepa/probe.py, hepjepa/figures.py, bench/hepjepa_shortcut.py and common/results/compare.py draw the statistics
    batches of a random init through common.data.subsets.balanced_batches (common.training.probe.norm_stat_batches for
    in-memory arrays)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert "norm_stat_batches(train" in (root / "hepjepa/probe.py").read_text()
    assert "norm_stat_batches(train" in (root / "bench/hepjepa_shortcut.py").read_text()
    assert "norm_stat_batches(load_arrays" in (root / "hepjepa/figures.py").read_text()
    assert "balanced_batches(" in (root / "common/results/compare.py").read_text()
    from common.training.probe import norm_stat_batches

    n = 60
    arrays = {"x": np.zeros((n, 3, 2), np.float32), "mask": np.ones((n, 3), bool), "p4": np.ones((n, 3, 4), np.float32),
              "jet": np.zeros((n, 6), np.float32), "label": np.repeat(np.arange(3), 20)}
    for batch in norm_stat_batches(arrays, 3, 12):
        assert np.bincount(batch.label.numpy(), minlength=3).tolist() == [4, 4, 4]
