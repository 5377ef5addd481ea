"""MPM downstream: a fixed backbone stays bit-identical, fine-tuning moves it, CWoLa sets are built as specified."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.array_loader import ArrayLoader
from common.training.checkpoint import save_checkpoint
from common.training.config import load_config, save_config
from common.training.distributed import Dist
from common.training.finetune import run_finetune
from common.training.train_utils import mark_done

from mpm.build import backbone_fns, build_model
from mpm.cwola import cwola_split, sic_cut

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

SMALL_V1 = ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.embed_hidden=16",
            "model.head_hidden=16", "data.num_particles=12"]


def arrays(n=60, N=12, F=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.integers(4, N + 1, n)
    mask = np.arange(N)[None] < k[:, None]
    label = np.arange(n) % n_classes
    x = (rng.normal(size=(n, N, F)) + label[:, None, None]) * mask[..., None]
    return {"x": x.astype(np.float32), "mask": mask, "p4": np.zeros((n, N, 4), np.float32),
            "jet": np.zeros((n, 6), np.float32), "label": label.astype(np.int64)}


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    """A 'pretraining run' directory: config.yaml + checkpoint.pt of a tiny MPMv1 regression model."""
    d = tmp_path_factory.mktemp("pretrain")
    cfg = load_config("mpm/configs/smoke/mpmv1_regression.yaml", SMALL_V1)
    torch.manual_seed(0)
    model = build_model(cfg)
    a = arrays()
    model.backbone.norm.update(torch.as_tensor(a["x"]), torch.as_tensor(a["mask"]))
    save_config(cfg, d / "config.yaml")
    save_checkpoint(d / "checkpoint.pt", {"model": model.state_dict(), "step": 0})
    mark_done(d)   # a finished pretraining (fine-tuning refuses an unfinished one)
    return d, model


def _finetune(run_dir, out, mode):
    cfg = load_config("mpm/configs/smoke/finetune_v1.yaml",
                      ["data.num_particles=12", f"pretrained.run={run_dir}", f"finetune.mode={mode}",
                       "finetune.steps=6", "finetune.val_every=3", "finetune.batch_size=16",
                       "finetune.head.hidden=8", "finetune.n_per_class=null", "finetune.schedule.warmup_steps=0"])
    build, load = backbone_fns(cfg)
    kept = {}

    def build_and_keep():
        kept["backbone"] = build()
        return kept["backbone"]

    splits = {s: arrays(seed=i) for i, s in enumerate(("train", "val", "test"))}

    def loader_fn(data_cfg, split, batch_size, *, shuffle, seed=0, rank=0, world_size=1, **kw):
        return ArrayLoader(splits[split], batch_size, shuffle=shuffle, seed=seed)

    res = run_finetune(cfg, build_and_keep, load if mode != "scratch" else None, out, Dist(), seed=0,
                       n_per_class=None, loader_fn=loader_fn, class_names=["a", "b", "c"])
    return res, kept["backbone"]


def test_fixed_mode_leaves_backbone_bit_identical(pretrained_run, tmp_path):
    run_dir, model = pretrained_run
    res, backbone = _finetune(run_dir, tmp_path / "fixed", "fixed")
    assert res["steps"] > 0
    ref = model.backbone.state_dict()
    got = backbone.state_dict()
    assert ref.keys() == got.keys()
    assert bool(got.pop("norm.frozen"))  # loading a pretrained backbone freezes its input statistics
    for k in got:
        assert torch.equal(ref[k], got[k]), k  # weights and the normalisation statistics


def test_finetune_mode_moves_backbone(pretrained_run, tmp_path):
    run_dir, model = pretrained_run
    _, backbone = _finetune(run_dir, tmp_path / "finetune", "finetune")
    ref = model.backbone.state_dict()
    moved = [k for k, v in backbone.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, ref[k])]
    assert moved and all(not k.startswith("norm.") for k in moved)  # statistics frozen, weights trained


def test_pretrain_and_finetune_inputs_must_match(pretrained_run):
    run_dir, _ = pretrained_run
    cfg = load_config("mpm/configs/smoke/finetune_v1.yaml", [f"pretrained.run={run_dir}"])  # 64 particles != 12
    with pytest.raises(ValueError, match="num_particles"):
        backbone_fns(cfg)


def test_cwola_sets():
    a = arrays(n=200, n_classes=2, seed=3)
    s = cwola_split(a, n_background=60, n_signal=10, seed=0, where="train")
    assert len(s["label"]) == 70
    assert s["label"][:60].tolist() == [0, 1] * 30 and (s["label"][60:] == 1).all()
    # the background part holds only true background jets: their feature offset is class 0's
    assert abs(s["x"][:60][s["mask"][:60]].mean()) < 0.3 and s["x"][60:][s["mask"][60:]].mean() > 0.7
    with pytest.raises(ValueError, match="background"):
        cwola_split(a, n_background=150, n_signal=10, seed=0, where="train")


def test_sic_cut_definition():
    y = np.array([0] * 100 + [1] * 10)
    s = np.concatenate([np.r_[np.ones(4), np.zeros(96)], np.r_[np.ones(9), np.zeros(1)]])
    assert sic_cut(y, s) == pytest.approx(0.9 / np.sqrt(0.04))


def test_mpmv2_size_dependent_finetune_settings():
    from common.training.finetune_config import finetune_settings
    cfg = load_config("mpm/configs/finetune_v2.yaml")
    small, mid, big, huge = (finetune_settings(cfg, n) for n in (1000, 10000, 10**7, 10**8))
    assert (small["unfreeze_step"], small["patience"]) == (100, 5)
    assert (mid["unfreeze_step"], mid["patience"]) == (5000, 25)
    assert (big["unfreeze_step"], big["catchup_steps"], big["schedule"]["warmup_steps"]) == (20000, 20000, 40000)
    assert big["schedule"]["kind"] == "warmup_cosine" and big["lr"] == 1e-4 and huge["lr"] == 1e-3


def test_every_mode_but_scratch_needs_a_pretraining_run():
    from mpm.build import require_pretrained_run

    cfg = {"pretrained": {"run": None}}
    require_pretrained_run(cfg, "scratch", "x.yaml")
    for mode in ("fixed", "finetune"):
        with pytest.raises(ValueError, match=f"x.yaml: finetune.mode={mode} needs pretrained.run"):
            require_pretrained_run(cfg, mode, "x.yaml")
