"""Frozen means computed once (common/training/frozen_cache.py): a fixed-mode run that serves the frozen backbone's
outputs from the cache gives bit-identical weights, curves and test metrics to the recomputing run (CPU, fp32) for
MPMv1's and HEP-JEPA's backbones; and the cache refuses what it cannot serve exactly (training-mode randomness,
eval-time randomness, per-batch input noise, outputs beyond the memory limit), saying so."""
import copy

import data_factory
import numpy as np
import pytest
import torch
from torch import nn

from common.data.array_loader import ArrayLoader
from common.data.datasets import dataset_info, make_loader
from common.data.features import get_feature_set
from common.training.classifier import build_classifier
from common.training.distributed import Dist
from common.training.finetune import run_finetune
from common.training.finetune_config import finetune_settings
from common.training.frozen_cache import FrozenBatch, build_frozen_cache, with_outputs


@pytest.fixture(scope="module")
def top_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("top")
    for i, split in enumerate(("train", "val", "test")):
        data_factory.write_toptagging(str(root / f"{split}.h5"), 80, seed=i)
    return root


def _data(root, features, n_part=16):
    return {"dataset": "toptagging", "root": str(root), "train": "train.h5", "val": "val.h5", "test": "test.h5",
            "features": features, "num_particles": n_part, "classes": None, "cache_dir": str(root / "cache"),
            "num_workers": 0}


def _mpmv1(info):
    from mpm.mpmv1 import MPMv1Backbone
    return MPMv1Backbone(info["num_features"], dim=16, depth=2, num_heads=2, ff_hidden=16, attn_dropout=0.1,
                         dropout=0.1, num_particles=info["num_particles"])


def _hepjepa(info, fps_random_start=False):
    from common.training.config import load_config

    from hepjepa.model import HEPJEPABackbone, angle_columns
    model = load_config("hepjepa/configs/smoke/pretrain.yaml")["model"]
    # the random FPS start is an input augmentation of every arm that trains, the frozen one too (hepjepa/model.py
    # augment_inputs): with it the frozen outputs change from step to step, so only the deterministic start caches
    model = {**model, "fps_random_start": fps_random_start}
    return HEPJEPABackbone(model, info["num_features"], angle_columns(info["feature_names"]))


BACKBONES = {"mpmv1": (_mpmv1, "mpmv1"), "hepjepa": (_hepjepa, "hepjepa")}


def _run(tmp_path, root, method, cache, **ft):
    make, features = BACKBONES[method]
    data = _data(root, features)
    info = dataset_info(data)
    torch.manual_seed(7)
    pre = make(info).state_dict()
    cfg = {"data": data, "finetune": {"mode": "fixed", "n_per_class": 20, "steps": 12, "val_every": 4,
                                      "batch_size": 8, "eval_batch_size": 16, "patience": None, "lr": 1e-2,
                                      "precision": "fp32", "save_model": True, "cache_frozen": cache,
                                      "head": {"kind": "mean_max"}, **ft}}
    out = tmp_path / f"{method}-{cache}"
    res = run_finetune(cfg, lambda: make(info), lambda bb: bb.load_state_dict(pre), out, Dist())
    return res, torch.load(out / "classifier.pt", weights_only=False)["model"]


@pytest.mark.parametrize("method", sorted(BACKBONES))
def test_cached_fixed_run_is_bit_identical_to_recomputing(tmp_path, top_root, method):
    got, got_w = _run(tmp_path, top_root, method, True)
    want, want_w = _run(tmp_path, top_root, method, False)
    assert got["frozen_cache"]["train"] and got["frozen_cache"]["val"], got["frozen_cache"]
    assert not want["frozen_cache"]["train"] and not want["frozen_cache"]["val"]
    for key in ("test", "test_loss", "val_curve", "train_curve", "best_step", "best_val_loss", "steps"):
        assert got[key] == want[key], key
    assert got_w.keys() == want_w.keys()
    for k in got_w:
        assert torch.equal(got_w[k], want_w[k]), k


def test_hepjepa_random_fps_start_is_never_cached(tmp_path, top_root):
    """HEP-JEPA's default fps_random_start draws a new FPS start at every training step of the frozen arm too: the
    cache must see it and recompute (the run's numbers are then those of the recomputing path)."""
    BACKBONES["hepjepa_random_start"] = (lambda info: _hepjepa(info, True), "hepjepa")
    try:
        got, got_w = _run(tmp_path, top_root, "hepjepa_random_start", True)
        want, want_w = _run(tmp_path, top_root, "hepjepa_random_start", False)
    finally:
        del BACKBONES["hepjepa_random_start"]
    assert not got["frozen_cache"]["train"] and not got["frozen_cache"]["val"]
    assert any("differ" in n for n in got["frozen_cache"]["notes"]), got["frozen_cache"]
    assert got["test"] == want["test"] and got["val_curve"] == want["val_curve"]
    for k in got_w:
        assert torch.equal(got_w[k], want_w[k]), k


def _fixed_model(backbone, **ft):
    fc = finetune_settings({"finetune": {"mode": "fixed", "precision": "fp32", **ft}})
    model = build_classifier(fc, lambda: backbone, lambda bb: None, 2)
    return model, fc


def _loaders(root, features="part_kin", bs=8):
    data = _data(root, features)
    return (make_loader(data, "train", bs, shuffle=True, seed=1, n_per_class=10, subset_seed=1),
            make_loader(data, "val", bs, shuffle=False))


class Noisy(nn.Module):
    """A backbone that draws noise in eval mode."""
    dim = 7

    def forward(self, batch):
        return batch.x + 0.1 * torch.randn_like(batch.x), batch.mask


def test_cache_refuses_randomness_of_the_backbone(top_root):
    train, val = _loaders(top_root)
    lines = []
    log = lambda *a, **k: lines.append(" ".join(map(str, a)))  # noqa: E731
    model, fc = _fixed_model(Noisy())
    state = torch.random.get_rng_state()
    c = build_frozen_cache(model, train, val, "cpu", fc, torch.no_grad, log=log)
    assert c.train is None and c.val is None and "differ" in lines[0]
    assert torch.equal(state, torch.random.get_rng_state())     # the run's RNG is where it was

    class Training(Noisy):     # a module kept in training mode (e.g. a random step only taken while training)
        def train(self, mode=True):
            return super().train(True)

    model, fc = _fixed_model(Training())
    c = build_frozen_cache(model, train, val, "cpu", fc, torch.no_grad, log=log)
    assert c.train is None and c.val is None and "training mode (Training)" in lines[1]


class Proj(nn.Module):
    dim = 7

    def __init__(self, n_features=7):
        super().__init__()
        self.lin = nn.Linear(n_features, 7)

    def forward(self, batch):
        return self.lin(batch.x), batch.mask


class Elementwise(nn.Module):
    """Per-element only: a jet's outputs cannot depend on its row in the batch (a GEMM's may, in the last bits: see
    common/training/frozen_cache.py), so the gathering itself is checked bit for bit."""
    dim = 7

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 2.0, 7))

    def forward(self, batch):
        return torch.tanh(batch.x * self.w + 0.25), batch.mask


def test_cache_falls_back_above_the_memory_limit_and_when_switched_off(top_root):
    train, val = _loaders(top_root)
    lines = []
    model, fc = _fixed_model(Proj(), cache_frozen_max_gb=1e-9)
    c = build_frozen_cache(model, train, val, "cpu", fc, torch.no_grad, log=lambda *a, **k: lines.append(a[0]))
    assert c.train is None and c.val is None
    assert "training outputs need" in lines[0] and "validation outputs need" in lines[1]
    model, fc = _fixed_model(Proj(), cache_frozen=False)
    assert build_frozen_cache(model, train, val, "cpu", fc, torch.no_grad).train is None
    model, fc = _fixed_model(Proj())                # within the limit: both splits
    c = build_frozen_cache(model, train, val, "cpu", fc, torch.no_grad)
    assert c.train is not None and len(c.val) == len(val)
    fc_ft = finetune_settings({"finetune": {"mode": "finetune", "unfreeze_step": 4}})
    assert build_frozen_cache(build_classifier(fc_ft, Proj, lambda bb: None, 2), train, val, "cpu", fc_ft,
                              torch.no_grad).notes == ["the backbone is trained in this run"]


def test_per_batch_noise_keeps_the_training_split_recomputed(top_root):
    """MPMv2's neutral-IP noise is redrawn per batch composition: training jets change from epoch to epoch (recomputed);
    the validation batches are the same at every validation (cached)."""
    rng = np.random.default_rng(0)
    n, m = 40, 6
    arrays = {"x": rng.normal(size=(n, m, 7)).astype(np.float32), "mask": np.ones((n, m), bool),
              "p4": np.ones((n, m, 4), np.float32), "jet": np.ones((n, 6), np.float32),
              "label": rng.integers(0, 2, n), "pid": rng.integers(0, 8, (n, m))}
    feats = get_feature_set("mpmv2")
    train = ArrayLoader(arrays, 8, shuffle=True, seed=0, features=feats)
    val = ArrayLoader(arrays, 8, shuffle=False, features=feats)
    model, fc = _fixed_model(Elementwise())
    lines = []
    c = build_frozen_cache(model, train, val, "cpu", fc, torch.no_grad, log=lambda *a, **k: lines.append(a[0]))
    assert c.train is None and "random_per_batch" in lines[0] and len(c.val) == len(val)
    for cached, batch in zip(c.val, val):          # the cached batches are the loader's, with the backbone outputs
        assert torch.equal(cached.x, batch.x) and torch.equal(cached.h, model.backbone(batch)[0])
    # without the per-batch step the jets are fixed: cached per jet, gathered in the loader's order
    plain = copy.copy(train)
    plain.features = None
    c = build_frozen_cache(model, plain, val, "cpu", fc, torch.no_grad)
    plain.set_epoch(3)
    c.train.set_epoch(3)
    for cached, batch in zip(c.train, plain):
        assert torch.equal(cached.h, model.backbone(batch)[0]) and torch.equal(cached.label, batch.label)


def test_frozen_batch_slices_and_moves_with_its_outputs():
    b = with_outputs((data_factory_batch(), torch.arange(4)), torch.arange(24.).reshape(4, 3, 2),
                     torch.ones(4, 3, dtype=torch.bool))
    fb, target = b
    part = fb[1:3].to("cpu")
    assert isinstance(part, FrozenBatch) and torch.equal(part.h, fb.h[1:3]) and torch.equal(part.x, fb.x[1:3])


def data_factory_batch():
    from common.data.batch import JetBatch
    return JetBatch(torch.zeros(4, 3, 2), torch.ones(4, 3, dtype=torch.bool), torch.zeros(4, 3, 4),
                    torch.zeros(4, 6), torch.zeros(4, dtype=torch.long))
