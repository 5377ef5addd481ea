"""mpm.tables maps run directories onto the published table keys (common/results/published.yaml)."""
from __future__ import annotations

import json

import pytest
import yaml

from common.results.tables import load_published

from mpm.tables import collect

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if path.suffix == ".json" else yaml.safe_dump(obj))


def _sweep(d, pretrain_dir, n_classes, per_n, classes=None, mode="fixed"):
    _write(d / "config.yaml", {"pretrained": {"run": str(pretrain_dir)}, "finetune": {"seeds": [0, 1], "mode": mode},
                               "data": {"dataset": "jetclass", "root": "x", "classes": classes}})
    _write(d / "summary.json", {"per_n": per_n})
    for n in per_n:
        _write(d / f"n{n}" / "seed0" / "result.json", {"class_names": [f"c{i}" for i in range(n_classes)]})


def test_collect_maps_runs_to_published_keys(tmp_path):
    pre = tmp_path / "pretrain"
    for name, model in (("mpmv1", {"inputs": "original", "target": "vqvae", "positional": "head_input"}),
                        ("mpmv1_quantised_kmeans", {"inputs": "vqvae_quantised", "target": "kmeans",
                                                    "positional": "head_input"}),
                        ("mpmv1_regression_backbonepe", {"inputs": "original", "target": "regression",
                                                         "positional": "backbone_input"})):
        _write(pre / name / "config.yaml", {"method": "mpmv1", "model": model, "train": {"steps": 10,
                                                                                         "batch_size": 4}})
        _sweep(tmp_path / "probe" / name, pre / name, 10, {"100": {"accuracy": {"values": [0.5]}}})
    _sweep(tmp_path / "v1_jetclass" / "finetune", pre / "mpmv1", 10,
           {"100": {"accuracy": {"values": [0.6, 0.62]}}}, mode="finetune")
    _sweep(tmp_path / "v1_new_classes" / "scratch", pre / "mpmv1", 4,
           {"250": {"accuracy": {"values": [0.7]}}}, classes=["Tbl", "Tbqq", "Wqq", "Zqq"])
    _sweep(tmp_path / "v1_cwola" / "fixed", pre / "mpmv1", 2,
           {"1000": {"sic": {"values": [3.0]}, "sic_cut05": {"values": [1.5]}}})
    _sweep(tmp_path / "v1_cwola" / "fixed_nosched", pre / "mpmv1", 2,
           {"1000": {"sic": {"values": [2.0]}, "sic_cut05": {"values": [1.2]}}})
    _sweep(tmp_path / "v1_new_domain" / "fixed", pre / "mpmv1", 2, {"100": {"auc": {"values": [0.9]}}})
    _sweep(tmp_path / "v1_new_domain_jetclass" / "fixed", pre / "mpmv1", 2, {"100": {"auc": {"values": [0.8]}}})
    _write(pre / "mpmv2_kmeans" / "config.yaml", {"method": "mpmv2", "train": {"steps": 10, "batch_size": 4}})
    _sweep(tmp_path / "v2_jetclass" / "kmeans_fixed", pre / "mpmv2_kmeans", 10, {"100": {"accuracy": {"values": [0.8]}}})
    _sweep(tmp_path / "v2_jetclass" / "nobackbone", pre / "mpmv2_kmeans", 10, {"100": {"accuracy": {"values": [0.3]}}})

    tables = collect(tmp_path, "mini")
    pub = load_published()["mpm"]
    pre_rows = tables["mpm.v1_pretraining"][0]
    keys = {(r["inputs"], r["targets"], r["ape"]) for r in pre_rows}
    assert keys == {("original", "vqvae", "head"), ("vqvae", "kmeans", "head"), ("original", "regression", "backbone")}
    published_keys = {(r["inputs"], r["targets"], r["ape"]) for r in pub["v1_pretraining"]["rows"]}
    assert keys <= published_keys  # our labels are the published ones, so the columns line up
    jc = tables["mpm.v1_jetclass"][0]
    assert jc == [{"mode": "finetune", "n_train": 1000, "accuracy": [0.6, 0.62]}]  # N = per class x 10 classes
    assert tables["mpm.v1_new_classes"][0][0]["n_train"] == 1000  # 250 per class x 4 unseen classes
    cw = {r["lr_schedule"]: r for r in tables["mpm.v1_cwola"][0]}
    assert cw["on"]["n_signal"] == 1000 and cw["on"]["sic"] == [1.5] and cw["on"]["sic_fpr1"] == [3.0]  # v1: cut SIC
    assert cw["off"]["sic"] == [1.2]
    panels = {(r["panel"], r["n_train"]): r["auc"] for r in tables["mpm.v1_new_domain_auc"][0]}
    assert panels == {("left", 200): [0.9], ("right", 200): [0.8]}
    v2 = {(r["mode"], r["task"]) for r in tables["mpm.v2_jetclass"][0]}
    assert v2 == {("frozen", "kmeans"), ("frozen", "nobackbone")}
    assert tables["mpm.v1_jetclass"][1]["profile"] == "mini" and "steps" in tables["mpm.v1_jetclass"][1]["scale"]


def test_v2_task_rows_line_up_with_the_published_labels(tmp_path):
    """Every MPMv2 task that run_steps.sh pretrains (cnf and cfm included) gives rows whose keys the published
    tables have, so ours and the paper's sit side by side."""
    pre = tmp_path / "pretrain"
    tasks = ("regression", "kmeans", "vqvae", "cnf", "cfm")
    for task in tasks:
        _write(pre / f"mpmv2_{task}" / "config.yaml", {"method": "mpmv2", "model": {"task": task},
                                                        "train": {"steps": 10, "batch_size": 4}})
        for mode in ("finetune", "fixed"):
            _sweep(tmp_path / "v2_jetclass" / f"{task}_{mode}", pre / f"mpmv2_{task}", 10,
                   {"100": {"accuracy": {"values": [0.8]}}}, mode=mode)
        _sweep(tmp_path / "v2_cwola" / f"{task}_finetune", pre / f"mpmv2_{task}", 2,
               {"500": {"sic": {"values": [5.0]}}}, mode="finetune")
    tables = collect(tmp_path, "paper")
    pub = load_published()["mpm"]
    for table, n_key, n in (("v2_jetclass", "n_train", 1000), ("v2_cwola", "n_signal", 500)):
        ours = {(r["mode"], r["task"], r[n_key]) for r in tables[f"mpm.{table}"][0]}
        published = {(r["mode"], r["task"], r[n_key]) for r in pub[table]["rows"]}
        assert ("finetune", "cnf", n) in ours and ("finetune", "cfm", n) in ours
        assert ours <= published, sorted(ours - published)


def test_scratch_on_every_label_is_the_supervised_ceiling_row(tmp_path):
    d = tmp_path / "v2_jetclass" / "scratch_all"
    _write(d / "config.yaml", {"pretrained": {"run": None}, "finetune": {"seeds": [0], "mode": "scratch"},
                               "data": {"dataset": "jetclass", "root": "x", "classes": None}})
    _write(d / "summary.json", {"per_n": {"None": {"accuracy": {"values": [0.7]}}}})
    _write(d / "nall" / "seed0" / "result.json", {"class_names": [f"c{i}" for i in range(10)], "n_train_jets": 21000})
    (row,) = collect(tmp_path, "mini")["mpm.v2_jetclass"][0]
    assert row == {"mode": "finetune", "task": "scratch", "n_train": "all (21000)", "accuracy": [0.7]}


def test_pretraining_rows_carry_their_pretraining_run_and_the_claims_take_one_value_per_run(tmp_path):
    """Extra pretraining runs of a configuration (probe/<row>_seed<S>) give rows with pretrain_seed; a claim that
    compares pretraining configurations (replicate: pretraining) is decided over pretraining runs, one value each (the mean
    over its probe seeds), not over the pooled probe seeds."""
    from common.results import claims as C
    pre = tmp_path / "pretrain"
    accs = {"mpmv1": (0.30, 0.31, 0.32), "mpmv1_kmeans": (0.27, 0.28, 0.26)}
    for name, target in (("mpmv1", "vqvae"), ("mpmv1_kmeans", "kmeans")):
        for s in range(3):
            run = name + ("" if s == 0 else f"_seed{s}")
            _write(pre / run / "config.yaml", {"method": "mpmv1", "seed": s, "train": {"steps": 10, "batch_size": 4},
                                               "model": {"inputs": "original", "target": target,
                                                         "positional": "head_input"}})
            a = accs[name][s]
            _sweep(tmp_path / "probe" / run, pre / run, 10,
                   {"100": {"accuracy": {"values": [a - 0.01, a, a + 0.01]}}})
    rows, meta = collect(tmp_path, "mini")["mpm.v1_pretraining"]
    assert sorted(r["pretrain_seed"] for r in rows if r["targets"] == "vqvae") == [0, 1, 2]
    assert "pretrain_seed" in meta["extra_fields"]
    published = load_published()
    claim = next(c for c in C.load_claims(published=published) if c["id"] == "mpmv1_targets_vqvae_vs_kmeans")
    assert claim["replicate"] == "pretraining"
    pct = lambda xs: [100 * x for x in xs]
    (v,) = C.evaluate({"mpm.v1_pretraining": {"rows": rows, "metas": [meta], "files": ["x"]}}, [claim], published)
    assert v.a == pytest.approx(pct(accs["mpmv1"])) and v.b == pytest.approx(pct(accs["mpmv1_kmeans"]))
    assert v.replicated == "3 pretraining × 3 probe seeds" and v.verdict == "reproduced"
    # one pretraining run a side: inconclusive whatever its probe seeds say, with that reason
    one = [r for r in rows if r["pretrain_seed"] == 0]
    (v,) = C.evaluate({"mpm.v1_pretraining": {"rows": one, "metas": [meta], "files": ["x"]}}, [claim], published)
    assert v.verdict == "inconclusive" and "pretraining runs" in v.why and v.a == pytest.approx([30.0])
    assert v.replicated == "1 pretraining × 3 probe seeds"


def test_finetuning_rows_name_their_pretraining_run_and_scratch_rows_none(tmp_path):
    """Rows of a run that loads a pretraining checkpoint carry pretrain_seed (the unit of a claim replicated over
    pretraining runs, common/results/claims.py); scratch and No-Backbone rows carry none."""
    pre = tmp_path / "pretrain"
    for name, seed in (("mpmv1", 0), ("mpmv2_regression", 3)):
        _write(pre / name / "config.yaml", {"method": name[:5], "seed": seed, "train": {"steps": 10, "batch_size": 4},
                                            "model": {"inputs": "original", "target": "vqvae",
                                                      "positional": "head_input"}})
    per_n = {"100": {"accuracy": {"values": [0.6, 0.62, 0.61]}}}
    for mode in ("finetune", "scratch"):
        _sweep(tmp_path / "v1_jetclass" / mode, pre / "mpmv1", 10, per_n, mode=mode)
    for run in ("regression_finetune", "scratch", "nobackbone"):
        _sweep(tmp_path / "v2_jetclass" / run, pre / "mpmv2_regression", 10, per_n)
    tables = collect(tmp_path, "mini")
    v1 = {r["mode"]: r for r in tables["mpm.v1_jetclass"][0]}
    assert v1["finetune"]["pretrain_seed"] == 0 and "pretrain_seed" not in v1["scratch"]
    v2 = {r["task"]: r for r in tables["mpm.v2_jetclass"][0]}
    assert v2["regression"]["pretrain_seed"] == 3
    assert "pretrain_seed" not in v2["scratch"] and "pretrain_seed" not in v2["nobackbone"]
    assert "pretrain_seed" in tables["mpm.v2_jetclass"][1]["extra_fields"]
