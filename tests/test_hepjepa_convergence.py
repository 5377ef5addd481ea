"""HEP-JEPA Figure 2 as a table: per seed, the fine-tuning steps until the validation loss reaches the same seed's
from-scratch minimum (hepjepa/convergence.py), written by the table step and decided by the convergence claim."""
import json
import math

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


def _three_seeds(ft, finetune_never_on_seed=None):
    for s in range(3):
        _run(ft, "scratch", s, [[10, 2.0], [20, 1.5], [30, 1.2 - 0.01 * s], [40, 1.3]])
        reach = [[10, 1.25], [20, 1.2 - 0.02 * s]] if s != finetune_never_on_seed else [[10, 1.25], [20, 1.3]]
        _run(ft, "finetune", s, reach)
    _summary(ft)


def _claim():
    return next(c for c in C.load_claims() if c["id"] == "hepjepa_convergence")


def test_table_step_writes_convergence_and_the_claim_decides_it(tmp_path):
    runs = tmp_path / "hepjepa"
    _three_seeds(runs / "ft_jetclass")
    assert "hepjepa.convergence" in tables.write_tables(runs, runs / "tables", "mini")
    (v,) = C.evaluate(R.collect_results(runs), [_claim()], R.load_published())
    assert sorted(v.a) == [20.0, 20.0, 20.0] and v.b == [30.0, 30.0, 30.0]
    assert v.d == 10.0 and v.verdict == "reproduced"


def test_never_reached_seed_is_kept_and_blocks_a_pass(tmp_path):
    runs = tmp_path / "hepjepa"
    _three_seeds(runs / "ft_jetclass", finetune_never_on_seed=1)
    tables.write_tables(runs, runs / "tables", "mini")
    (v,) = C.evaluate(R.collect_results(runs), [_claim()], R.load_published())
    # the seed that never reached the scratch minimum counts as the worst value: the sides overlap
    assert sorted(v.a) == [20.0, 20.0, float("inf")] and v.verdict == "inconclusive"
