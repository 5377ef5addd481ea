"""common.training.finetune against the official MPMv2 fine-tuning recipe (jetssl workflow/full_pipeline.smk, configs/callbacks,
mltools lightning_utils): schedule length under an epoch cap, the per-N / per-mode rules of the shipped configs,
validation every k epochs, the last-step model of CWoLa."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_finetune import CLASSES, TinyBackbone, _cfg, _run, make_loader_fn

from common.training.checkpoint import load_checkpoint
from common.training.config import load_config
from common.training.distributed import Dist
from common.training.finetune_config import MODES, apply_per_n, finetune_settings
from common.training.sweep import run_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

V2 = "mpm/configs/finetune_v2.yaml"
NOBACKBONE = "mpm/configs/finetune_v2_nobackbone.yaml"
CWOLA_V2 = "mpm/configs/cwola_v2.yaml"


def _settings(path, n_total, mode=None):
    cfg = load_config(path, [f"finetune.mode={mode}"] if mode else [])
    return finetune_settings(cfg, n_total)


def _lrs(run_dir):
    rows = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]
    return [r["lr_head"] for r in rows if "lr_head" in r]


def test_cosine_is_sized_by_the_epoch_capped_steps(tmp_path):
    # 64 jets / batch 16 = 4 steps per epoch; 3 epochs = 12 steps although steps is 1000
    sched = {"kind": "warmup_cosine", "warmup_steps": 2, "start_factor": 0.1, "min_factor": 1e-3}
    res, _ = _run(tmp_path, mode="scratch", lr=1e-2, steps=1000, max_epochs=3, log_every=1, schedule=sched)
    assert res["steps"] == 12 and res["finetune"]["schedule"]["total_steps"] == 12
    lr = _lrs(tmp_path)  # logged after step s: the LR of step s + 1
    last_step = 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * (11 - 2) / (12 - 2)))
    assert lr[-2] == pytest.approx(1e-2 * last_step)  # the LR of the last optimiser step (index 11)
    assert lr[-1] == pytest.approx(1e-2 * 1e-3)      # the cosine's end, reached with the last step
    # an explicit total_steps is kept
    res2, _ = _run(tmp_path / "b", mode="scratch", steps=1000, max_epochs=3, schedule={**sched, "total_steps": 40})
    assert res2["finetune"]["schedule"]["total_steps"] == 40


def test_per_n_rules_match_by_n_and_mode():
    rules = [{"max_n": 99, "set": {"patience": 1}},
             {"modes": ["finetune"], "min_n": 100, "set": {"lr": 0.5, "schedule": {"warmup_steps": 7}}}]
    base = _cfg(per_n=rules, schedule={"kind": "constant", "warmup_steps": 3})
    fc = finetune_settings(base, 100)
    assert (fc["patience"], fc["lr"], fc["schedule"]) == (100, 0.5, {"kind": "constant", "warmup_steps": 7})
    fixed = finetune_settings({**base, "finetune": {**base["finetune"], "mode": "fixed"}}, 100)
    assert (fixed["lr"], fixed["schedule"]["warmup_steps"]) == (1e-2, 3)
    assert finetune_settings(base, 99)["patience"] == 1
    assert finetune_settings(base, None)["patience"] == 100  # the whole split: bounded rules do not apply
    assert apply_per_n({"mode": "scratch", "per_n": [{"set": {"lr": 2.0}}], "lr": 1.0}, None)["lr"] == 2.0


def test_per_n_rules_apply_per_n_in_sweeps(tmp_path):
    # N = 8 per class x 2 classes = 16 labelled jets; a rule for fixed runs only does not touch a finetune run
    cfg = _cfg(mode="finetune", steps=4, n_per_class=[4, 8],
               per_n=[{"min_n": 16, "set": {"steps": 3}}, {"modes": ["fixed"], "set": {"steps": 2}}])
    run_sweep(cfg, TinyBackbone, lambda bb: None, tmp_path, Dist(), loader_fn=make_loader_fn(), class_names=CLASSES)
    steps = {n: json.loads((tmp_path / f"n{n}" / "seed0" / "result.json").read_text())["steps"] for n in (4, 8)}
    assert steps == {4: 4, 8: 3}


def test_old_per_n_keys_name_the_replacement():
    with pytest.raises(ValueError, match="'per_n_overrides' was renamed to finetune.per_n"):
        load_config(V2, ["per_n_overrides=[{max_n: 10, set: {patience: 1}}]"])
    with pytest.raises(ValueError, match=r"per_n\[0\].set: key 'finetune.max_steps' was renamed to finetune.steps"):
        finetune_settings(_cfg(per_n=[{"min_n": 1, "set": {"max_steps": 3}}]))
    with pytest.raises(ValueError, match="'finetune.accumulate' was renamed to finetune.grad_accum"):
        finetune_settings(_cfg(accumulate=2))
    with pytest.raises(ValueError, match="finetune.per_n is a list of rules"):
        finetune_settings(_cfg(per_n={1000: {"unfreeze_step": 100}}))
    with pytest.raises(ValueError, match=r"per_n\[0\].modes: unknown frozen"):
        finetune_settings(_cfg(per_n=[{"modes": ["frozen"], "set": {"lr": 1.0}}]))
    with pytest.raises(ValueError, match="finetune.select"):
        finetune_settings(_cfg(select="best"))


def test_mpmv2_fixed_runs_do_not_get_the_finetune_only_settings():
    fixed, ft = _settings(V2, 10**8, "fixed"), _settings(V2, 10**8, "finetune")
    assert (fixed["lr"], fixed["schedule"]["warmup_steps"], fixed["unfreeze_step"]) == (1e-4, 10000, None)
    assert (ft["lr"], ft["schedule"]["warmup_steps"], ft["unfreeze_step"], ft["catchup_steps"]) == \
        (1e-3, 40000, 20000, 20000)
    ft7, fixed7 = _settings(V2, 10**7, "finetune"), _settings(V2, 10**7, "fixed")
    assert (ft7["lr"], ft7["schedule"]["warmup_steps"], fixed7["schedule"]["warmup_steps"]) == (1e-4, 40000, 10000)
    assert (_settings(V2, 1000, "finetune")["unfreeze_step"], _settings(V2, 1000, "fixed")["unfreeze_step"]) == \
        (100, None)
    # "untrained" of the fine-tuned study: lr 1e-3 at every N, the long warm-up at >= 1e7
    scratch3, scratch7 = _settings(V2, 1000, "scratch"), _settings(V2, 10**7, "scratch")
    assert (scratch3["lr"], scratch3["schedule"]["warmup_steps"]) == (1e-3, 10000)
    assert (scratch7["lr"], scratch7["schedule"]["warmup_steps"]) == (1e-3, 40000)
    # "No Backbone" of the frozen study: all trained, lr 1e-4 and the 10k warm-up at every N
    for n in (1000, 10**7, 10**8):
        nb = _settings(NOBACKBONE, n)
        assert (nb["mode"], nb["lr"], nb["schedule"]["warmup_steps"], nb["unfreeze_step"]) == \
            ("scratch", 1e-4, 10000, 0), n
    assert load_config(NOBACKBONE)["pretrained"]["overrides"] == ["model.depth=0"]


def test_mpmv2_validates_every_10_epochs_below_1e4_jets():
    # (patience, val_every_epochs, val_every in steps; 0 = once per epoch)
    expected = {1000: (5, 10, 0), 9999: (5, 10, 0), 10000: (25, None, 0), 10**5: (10, None, 0),
                10**6: (10, None, 0), 10**7: (5, None, 20000), 10**8: (5, None, 20000)}
    for path in (V2, NOBACKBONE):
        for mode in MODES if path == V2 else [None]:
            for n, want in expected.items():
                fc = _settings(path, n, mode)
                assert (fc["patience"], fc["val_every_epochs"], fc["val_every"]) == want, (path, mode, n)


def test_validation_every_k_epochs_and_patience_counts_validations(tmp_path):
    # 4 steps per epoch, validation every 2 epochs: steps 8, 16, 24; the val loss only rises (flipped labels), so
    # patience 2 stops after the third validation
    res, _ = _run(tmp_path, loader_fn=make_loader_fn(flip_val=True), mode="scratch", val_every=1,
                  val_every_epochs=2, patience=2, steps=200)
    assert [s for s, _ in res["val_curve"]] == [8, 16, 24]
    assert res["stopped_early"] and res["steps"] == 24 and res["best_step"] == 8


def test_select_last_tests_the_final_weights(tmp_path):
    kw = dict(loader_fn=make_loader_fn(flip_val=True), mode="scratch", steps=12, patience=None, save_model=True)
    last, _ = _run(tmp_path / "last", select="last", val_every=4, **kw)
    best, _ = _run(tmp_path / "best", val_every=4, **kw)
    end, _ = _run(tmp_path / "end", val_every=12, **kw)  # one validation, at the last step: best = final
    assert last["steps"] == best["steps"] == 12 and not last["stopped_early"]  # patience null: no early stop
    assert (last["select"], last["selected_step"]) == ("last", 12)
    assert best["selected_step"] == best["best_step"] < 12
    w = {k: load_checkpoint(tmp_path / k / "classifier.pt")["model"] for k in ("last", "best", "end")}
    assert all(torch.equal(v, w["end"][k]) for k, v in w["last"].items())
    assert not all(torch.equal(v, w["best"][k]) for k, v in w["last"].items())
    assert last["test_loss"] == pytest.approx(end["test_loss"]) and last["test_loss"] != best["test_loss"]


def test_cwola_v2_settings_follow_the_workflow():
    for n in (500, 1000, 5000, 100000):
        ft, scratch, fixed = (_settings(CWOLA_V2, n, m) for m in ("finetune", "scratch", "fixed"))
        assert ft["unfreeze_step"] == (100 if n <= 1000 else 5000), n
        assert scratch["lr"] == ft["lr"] == fixed["lr"] == 1e-4  # the workflow's lr 1e-3 is for JetClass only
        assert fixed["unfreeze_step"] is None
        assert (ft["patience"], ft["select"], ft["val_every_epochs"], ft["schedule"]["total_steps"]) == \
            (None, "last", 10, None)
        assert ft["schedule"]["warmup_steps"] == 5000 and ft["max_epochs"] == 10
    for prof in ("mini", "smoke"):
        twin = finetune_settings(load_config(f"mpm/configs/{prof}/cwola_v2.yaml"))
        assert (twin["select"], twin["patience"], twin["schedule"]["total_steps"]) == ("last", None, None), prof
    steps = Path("mpm/run_steps.sh").read_text()
    cw = [line for line in steps.splitlines() if "$OUT/v2_cwola/scratch" in line or "v2_jetclass/nobackbone" in line]
    assert len(cw) == 2 and not any("finetune.lr" in line for line in cw)


def test_run_cwola_v2_keeps_the_last_step(tmp_path, monkeypatch):
    from test_finetune_tasks import run_tiny_cwola

    summary, res = run_tiny_cwola(tmp_path, monkeypatch, max_epochs=3)
    assert res["steps"] == 12  # (40 background + 20 signal) jets / batch 16 = 4 steps per epoch, 3 epochs
    assert (res["select"], res["selected_step"], res["stopped_early"]) == ("last", res["steps"], False)
    assert res["finetune"]["schedule"]["total_steps"] == res["steps"]
    assert summary["per_n"]["20"]["auc"]["values"] == [res["test"]["auc"]]


@pytest.mark.parametrize("flag", ["bf16", "fp32"])
def test_finetune_precision_switch_reaches_every_forward(tmp_path, monkeypatch, flag):
    # OmniJet's classifier trains in fp32 (no precision set in its official configs): finetune.precision fp32
    import common.training.finetune as F

    seen = []
    real = F.autocast
    monkeypatch.setattr(F, "autocast", lambda device, precision="bf16", key="precision":
                        (seen.append(precision), real(device, precision, key))[1])
    _run(tmp_path, mode="scratch", steps=4, precision=flag)
    assert seen and set(seen) == {flag}  # training steps, validation and the test split alike


def test_finetune_precision_value_is_checked():
    with pytest.raises(ValueError, match="finetune.precision"):
        finetune_settings(_cfg(precision="half"))


def test_omnijet_finetune_config_runs_the_head_in_fp32():
    for prof in ("", "mini/", "smoke/"):
        assert finetune_settings(load_config(f"omnijet/configs/{prof}finetune.yaml"))["precision"] == "fp32"
