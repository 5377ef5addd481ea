"""HEP-JEPA Figure 2 as a table: per seed, the fine-tuning steps until the validation loss reaches the same seed's
from-scratch minimum (hepjepa/convergence.py), written by the table step and decided by the convergence claim."""
import json
import math

import yaml

from common.results import claims as C
from common.results import tables as R

from hepjepa import convergence, tables


def _run(root, mode, seed, curve, pct=0.5):
    d = root / mode / f"pct{pct}" / "n10" / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"mode": mode, "seed": seed, "val_curve": curve}))


def _summary(root):
    row = {"task": "jetclass", "mode": "finetune", "label_percent": 0.5, "n_per_class": 10, "n_train_total": 2000,
           "accuracy": [0.5, 0.5, 0.5]}
    (root / "summary.json").write_text(json.dumps({"task": "jetclass", "dataset": "jetclass", "class_names": ["a"],
                                                   "seeds": [0, 1, 2], "rows": [row]}))


def test_steps_to_reach_first_step_at_or_below_target_and_inf_when_never():
    curve = [[10, 2.0], [20, 1.5], [30, 1.2], [40, 1.3]]
    assert convergence.steps_to_reach(curve, 1.5) == 20.0  # <= counts
    assert convergence.steps_to_reach(curve, 1.2) == 30.0
    assert convergence.steps_to_reach(curve, 1.0) == math.inf


def test_rows_per_seed_use_that_seeds_scratch_minimum(tmp_path):
    ft = tmp_path / "ft_jetclass"
    _run(ft, "scratch", 0, [[10, 2.0], [20, 1.6], [30, 1.4], [40, 1.5]])   # L* = 1.4 at step 30
    _run(ft, "finetune", 0, [[10, 1.5], [20, 1.3], [30, 1.2]])             # reaches 1.4 at step 20
    _run(ft, "scratch", 1, [[10, 1.1], [20, 1.3]])                         # L* = 1.1 at step 10
    _run(ft, "finetune", 1, [[10, 1.2], [20, 1.15]])                       # never reaches 1.1
    _run(ft, "finetune", 2, [[10, 1.0]])                                   # no scratch partner: no row
    rows = convergence.convergence_rows(ft)
    got = {(r["mode"], r["seed"]): r["steps_to_scratch_min"] for r in rows}
    assert got == {("finetune", 0): 20.0, ("scratch", 0): 30.0, ("finetune", 1): math.inf, ("scratch", 1): 10.0}
    assert {r["scratch_min_val_loss"] for r in rows if r["seed"] == 1} == {1.1}


def _pretraining(runs, name, seed):
    (runs / name).mkdir(parents=True, exist_ok=True)
    (runs / name / "config.yaml").write_text(yaml.safe_dump({
        "seed": seed, "train": {"steps": 10, "batch_size": 4}, "data": {"dataset": "jetclass", "root": "/d"},
        "model": {"dim": 8, "depth": 1}}))


def _three_pretraining_runs(runs, finetune_never_on_seed=None, extra_runs=(1, 2)):
    """run_all's layout: ft_jetclass fine-tunes pretrain (seed 0) with seeds 0-2 and trains scratch with seeds 0-2;
    ft_jetclass_seed<S> fine-tunes pretrain_seed<S> with seed S only. Seed s's scratch minimum is 1.2 - 0.01 s at
    step 30; every fine-tuned run of seed s reaches it at step 20 (pretraining run 0) or 10 (the extra runs)."""
    ft = runs / "ft_jetclass"
    _pretraining(runs, "pretrain", 0)
    for s in range(3):
        _run(ft, "scratch", s, [[10, 2.0], [20, 1.5], [30, 1.2 - 0.01 * s], [40, 1.3]])
        reach = [[10, 1.25], [20, 1.2 - 0.02 * s]] if s != finetune_never_on_seed else [[10, 1.25], [20, 1.3]]
        _run(ft, "finetune", s, reach)
    _summary(ft)
    for s in extra_runs:
        _pretraining(runs, f"pretrain_seed{s}", s)
        extra = runs / f"ft_jetclass_seed{s}"
        _run(extra, "finetune", s, [[10, 1.0]])
        _summary(extra)
        (extra / "config.yaml").write_text(yaml.safe_dump({"sweep": {"pretrained": str(runs / f"pretrain_seed{s}"
                                                                                         / "checkpoint.pt")}}))


def _claim():
    return next(c for c in C.load_claims() if c["id"] == "hepjepa_convergence")


def test_extra_pretraining_runs_are_held_against_the_scratch_run_of_their_seed(tmp_path):
    """ft_jetclass_seed<S> trains no scratch model: its fine-tuned run is paired with scratch seed S of the main
    sweep (the same labelled subset), and only its fine-tuned row is added, tagged with its pretraining run."""
    runs = tmp_path / "hepjepa"
    _three_pretraining_runs(runs)
    rows = convergence.convergence_rows(runs / "ft_jetclass_seed1", scratch_dir=runs / "ft_jetclass")
    assert rows == [{"mode": "finetune", "seed": 1, "label_percent": 0.5, "scratch_min_val_loss": 1.19,
                     "steps_to_scratch_min": 10.0}]
    tables.write_tables(runs, runs / "tables", "mini")
    conv = json.loads((runs / "tables" / "hepjepa.convergence.json").read_text())["rows"]
    tuned = sorted((r["pretrain_seed"], r["seed"], r["steps_to_scratch_min"]) for r in conv if r["mode"] == "finetune")
    assert tuned == [(0, 0, 20.0), (0, 1, 20.0), (0, 2, 20.0), (1, 1, 10.0), (2, 2, 10.0)]
    assert sorted(r["seed"] for r in conv if r["mode"] == "scratch") == [0, 1, 2]  # not counted twice


def test_the_claim_is_decided_over_pretraining_runs(tmp_path):
    runs = tmp_path / "hepjepa"
    _three_pretraining_runs(runs)
    tables.write_tables(runs, runs / "tables", "mini")
    (v,) = C.evaluate(R.collect_results(runs), [_claim()], R.load_published())
    # one value per pretraining run (run 0: the mean of its three seeds), scratch one value per seed
    assert sorted(v.a) == [10.0, 10.0, 20.0] and v.b == [30.0, 30.0, 30.0]
    assert v.verdict == "reproduced" and v.replicated.startswith("a: 3 pretraining runs")


def test_one_pretraining_run_is_inconclusive_however_many_fine_tuning_seeds(tmp_path):
    """The behaviour this replaces: three fine-tuning seeds of one pretraining run read reproduced (d = 10 steps)."""
    runs = tmp_path / "hepjepa"
    _three_pretraining_runs(runs, extra_runs=())
    tables.write_tables(runs, runs / "tables", "mini")
    (v,) = C.evaluate(R.collect_results(runs), [_claim()], R.load_published())
    assert v.a == [20.0] and v.verdict == "inconclusive" and "one pretraining run" in v.why


def test_never_reached_seed_is_kept_and_blocks_a_pass(tmp_path):
    runs = tmp_path / "hepjepa"
    _three_pretraining_runs(runs, finetune_never_on_seed=1)
    tables.write_tables(runs, runs / "tables", "mini")
    (v,) = C.evaluate(R.collect_results(runs), [_claim()], R.load_published())
    # the seed that never reached the scratch minimum makes its pretraining run's value infinite: the sides overlap
    assert sorted(v.a) == [10.0, 10.0, float("inf")] and v.verdict == "inconclusive"
