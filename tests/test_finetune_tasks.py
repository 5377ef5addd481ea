"""One fine-tuning loop (common.training.finetune.run_finetune) for every downstream task: per-jet classification, MPMv2 BTag
flavour tagging, per-track classification (track origin), per-pair vertexing and CWoLa.

Each task is run for a fixed seed on a tiny sample and its numbers are compared with those the separate loops gave
before they were merged into one (mpm/track_loop.py for the per-track tasks; recorded with the same seeds, data and
settings, JETFM_THREADS=1): the merge must change no result."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_btag_tasks import _args, btag_dir, pretrained_v2  # noqa: F401  (module fixtures)

from common.training.config import load_config
from common.training.distributed import Dist

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

REL = 1e-5  # the same operations in the same order: equal up to float summation noise across platforms


def _curve(c):
    return [[int(s), float(v)] for s, v in c]


def jet_classification(tmp_path) -> dict:
    from test_finetune import _run

    res, _ = _run(tmp_path, steps=12, val_every=4, unfreeze_step=4)
    return {"test": res["test"], "test_loss": res["test_loss"], "best_val_loss": res["best_val_loss"],
            "best_step": res["best_step"], "val_curve": _curve(res["val_curve"]),
            "train_curve": _curve(res["train_curve"])}


def flavour_tagging(tmp_path, run, data) -> dict:
    from mpm.btag import flavour

    out = tmp_path / "ft"
    flavour.main(_args("mpm/configs/smoke/btag_v2.yaml", out, run, data, "btag.n_train=[30]",
                       "finetune.mode=finetune"))
    res = json.loads((out / "n30" / "seed0" / "result.json").read_text())
    return {"test": res["test"], "test_loss": res["test_loss"], "best_val_loss": res["best_val_loss"],
            "best_step": res["best_step"], "val_curve": _curve(res["val_curve"])}


def per_track(tmp_path, run, data, name: str, mode: str) -> dict:
    from mpm.btag import track_origin, vertexing

    script = {"track_origin_v2": track_origin, "vertexing_v2": vertexing}[name]
    out = tmp_path / name
    script.main(_args(f"mpm/configs/smoke/{name}.yaml", out, run, data, f"finetune.mode={mode}"))
    res = json.loads((out / "seed0" / "result.json").read_text())
    return {"score": res["test"], "test_loss": res["test_loss"], "best_val_loss": res["best_val_loss"],
            "best_step": res["best_step"], "val_curve": _curve(res["val_curve"])}


def run_tiny_cwola(tmp_path, monkeypatch, max_epochs: int):
    """mpm.cwola.run_cwola (smoke config, scratch, one seed, 20 signal jets) on 120 / 60 / 60 simulated jets of 10
    particles held in memory; returns (summary, result.json of n20/seed0)."""
    import mpm.cwola as cw

    n_part, rng = 10, np.random.default_rng(0)

    def split(n):
        mask = np.arange(n_part)[None] < rng.integers(3, n_part + 1, n)[:, None]
        label = (np.arange(n) % 3 == 0).astype(np.int64)
        x = (rng.normal(size=(n, n_part, 7)) + label[:, None, None]) * mask[..., None]
        return {"x": x.astype(np.float32), "mask": mask, "p4": np.zeros((n, n_part, 4), np.float32),
                "jet": np.zeros((n, 6), np.float32), "label": label, "pid": rng.integers(0, 8, (n, n_part)) * mask}

    arrays = {"train": split(120), "val": split(60), "test": split(60)}
    monkeypatch.setattr(cw, "_load_split", lambda data_cfg, s, n: arrays[s])
    monkeypatch.setattr(cw, "load_arrays", lambda data_cfg, s, max_jets=None: arrays[s])
    shrink = ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.num_registers=2",
              "model.decoder.dim=8", "model.decoder.depth=1", "model.decoder.num_heads=2",
              "model.decoder.ff_hidden=8", f"data.num_particles={n_part}"]
    cfg = load_config("mpm/configs/smoke/cwola_v2.yaml",
                      ["finetune.mode=scratch", f"data.num_particles={n_part}", f"pretrained.overrides={shrink}",
                       "finetune.head.hidden=8", "finetune.batch_size=16", "finetune.steps=1000",
                       f"finetune.max_epochs={max_epochs}", "finetune.val_every=2"])
    summary = cw.run_cwola(cfg, tmp_path, Dist())
    return summary, json.loads((tmp_path / "n20" / "seed0" / "result.json").read_text())


def cwola(tmp_path, monkeypatch) -> dict:
    _, res = run_tiny_cwola(tmp_path, monkeypatch, max_epochs=2)
    return {"cwola": {k: res["test"][k] for k in ("auc", "sic", "sic_cut05")}, "test_loss": res["test_loss"],
            "best_val_loss": res["best_val_loss"], "val_curve": _curve(res["val_curve"])}


def _same(got, want, where=""):
    """Nested dicts / lists equal, floats to REL."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k in want:
            _same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=REL, abs=1e-9, nan_ok=True), where
    else:
        assert got == want, where


# ---------------------------------------------------------------------------------------------------------------------
# the numbers of the separate loops before the merge (seed 0)

PINNED: dict = {
 # cwola and flavour re-pinned once when the MPMv2 class-attention head became mltools' ClassAttentionPooling (no kv
 # norm, no final norm, SwiGLU, N(0,1) global token): a deliberate change of the head, not of the loop
 'cwola': {'best_val_loss': 0.6761625077989366,
           'cwola': {'auc': 0.965, 'sic': 8.0, 'sic_cut05': 1.0},
           'test_loss': 0.7078478495279948,
           'val_curve': [[2, 0.6829606162177192], [4, 0.6791855494181315], [6, 0.6767596138848199],
                         [8, 0.6761625077989366]]},
 'flavour': {'best_step': 3,
             'best_val_loss': 1.098409652709961,
             'test': {'accuracy': 0.3333333333333333,
                      'auc': 0.6925925925925926,
                      'rejection_50_b': 2.5,
                      'rejection_50_c': 7.5,
                      'rejection_50_light': 5.0},
             'test_loss': 1.0991289774576822,
             'val_curve': [[3, 1.098409652709961], [6, 1.0988994598388673]]},
 'jet': {'best_step': 12,
         'best_val_loss': 0.5107434988021851,
         'test': {'accuracy': 0.796875, 'auc': 0.996078431372549, 'rejection_30': math.inf, 'rejection_50': math.inf},
         'test_loss': 0.471311017870903,
         'train_curve': [[1, 0.8942456245422363], [2, 0.8217160105705261], [3, 0.7435293197631836],
                         [4, 0.7266088128089905], [5, 0.7424065470695496], [6, 0.6953006982803345],
                         [7, 0.6622838377952576], [8, 0.630557119846344], [9, 0.5714634656906128],
                         [10, 0.5729993581771851], [11, 0.47699570655822754], [12, 0.4713476896286011]],
         'val_curve': [[4, 0.7296684831380844], [8, 0.6163341850042343], [12, 0.5107434988021851]]},
 'track_origin': {'best_step': 6,
                  'best_val_loss': 1.2901527881622314,
                  'score': {'10': 0.0,
                            '11': 0.26785714285714285,
                            '12': 0.25925925925925924,
                            '13': 0.25,
                            '14': 0.22916666666666666,
                            '15': 0.24916666666666665,
                            '5': 0.25,
                            '6': 0.25,
                            '7': 0.25,
                            '8': 0.041666666666666664,
                            '9': 0.025641025641025644},
                  'test_loss': 1.302748203277588,
                  'val_curve': [[3, 1.3277325630187988], [6, 1.2901527881622314]]},
 'vertexing': {'best_step': 3,
               'best_val_loss': 0.08235975354909897,
               'score': {'2': -0.46623577503839425, '3': -0.49352098194837285},
               'test_loss': 0.08118961751461029,
               'val_curve': [[3, 0.08235975354909897], [6, 0.08486779034137726]]}}


def test_jet_classification_gives_the_same_result_as_before(tmp_path):
    _same(jet_classification(tmp_path), PINNED["jet"])


def test_flavour_tagging_gives_the_same_result_as_before(pretrained_v2, btag_dir, tmp_path):  # noqa: F811
    _same(flavour_tagging(tmp_path, pretrained_v2, btag_dir), PINNED["flavour"])


def test_track_origin_gives_the_same_result_as_before(pretrained_v2, btag_dir, tmp_path):  # noqa: F811
    _same(per_track(tmp_path, pretrained_v2, btag_dir, "track_origin_v2", "finetune"), PINNED["track_origin"])


def test_vertexing_gives_the_same_result_as_before(pretrained_v2, btag_dir, tmp_path):  # noqa: F811
    _same(per_track(tmp_path, pretrained_v2, btag_dir, "vertexing_v2", "fixed"), PINNED["vertexing"])


def _per_batch_as_pinned(self, arrays, idx):
    """MPMv2's neutral-IP noise as drawn when the CWoLa numbers were pinned: a full (B, N, 4) float64 draw seeded by
    the batch's jet numbers as a SeedSequence, kept at the neutrals. The kit now draws only the neutrals' values,
    seeded by a digest of the jet numbers (5x faster reading), which changes the noise and nothing else."""
    x = arrays["x"]
    neutral = np.isin(arrays["pid"], (0, 2)) & arrays["mask"]
    noise = np.random.default_rng(np.asarray(idx, dtype=np.int64)).standard_normal(x[..., 3:7].shape)
    x[..., 3:7] = np.where(neutral[..., None], noise.astype(x.dtype), x[..., 3:7])
    return arrays


def test_cwola_gives_the_same_result_as_before(tmp_path, monkeypatch):
    from common.data.features import MPMv2Features

    monkeypatch.setattr(MPMv2Features, "per_batch", _per_batch_as_pinned)
    _same(cwola(tmp_path, monkeypatch), PINNED["cwola"])


def test_a_new_downstream_task_is_a_small_task_object(tmp_path):
    """A per-jet regression of the label through the same loop: its head, loss, kept outputs and metrics, and a
    'better' that never accepts (so best_val selection tests the initial weights, step 0)."""
    import torch
    from test_finetune import TinyBackbone, _cfg, load_pretrained, make_loader_fn
    from torch import nn

    from common.training.finetune import Task, run_finetune

    class MeanHead(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.out = nn.Linear(dim, 1)

        def forward(self, h, mask):
            m = mask.unsqueeze(-1).float()
            return self.out((h * m).sum(1) / m.sum(1).clamp_min(1)).squeeze(-1)

    task = Task(name="regression", head=lambda backbone, head_cfg: MeanHead(backbone.dim),
                loss=lambda out, batch: nn.functional.mse_loss(out, batch.label.float()),
                outputs=lambda out, batch: {"pred": out, "y": batch.label.float()},
                metrics=lambda t: {"mse": float(np.mean((t["pred"] - t["y"]) ** 2))},
                better=lambda new, best, min_delta: False)
    res = run_finetune(_cfg(steps=8, val_every=4, patience=None), TinyBackbone, load_pretrained, tmp_path, Dist(),
                       task=task, loader_fn=make_loader_fn(), n_total=None)
    assert res["task"] == "regression" and set(res["test"]) == {"mse"} and res["class_names"] is None
    assert res["test_loss"] == pytest.approx(res["test"]["mse"], rel=1e-5)  # mean loss x jets / jets = the MSE
    assert res["best_step"] == 0 and res["selected_step"] == 0 and len(res["val_curve"]) == 2
    assert torch.isfinite(torch.tensor(res["train_curve"])).all()
