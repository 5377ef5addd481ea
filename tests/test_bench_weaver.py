"""bench/bench_weaver_part.py: the weaver data config reads only branches the kit writes; the metrics read from
weaver's prediction file are right; and (when weaver-core is installed) the whole benchmark runs on a tiny sample."""
import ast
import json
import math
import re

import numpy as np
import pytest
import uproot
import yaml

from common.data.jetclass import CLASS_NAMES
from common.simulate.writers import JETCLASS_BRANCHES

from bench.bench_weaver_part import DATA_CONFIG, TABLE_ID, evaluate_predictions, main, parse_log
from tests.data_factory import write_jetclass

# numpy / awkward names the data config's expressions may use besides branch names
NAMESPACES = {"np", "ak", "math"}


def _config_branches(cfg: dict) -> set[str]:
    """Every input branch the data config reads: names in expressions, inputs, labels and observers that are not
    defined in new_variables."""
    new = cfg.get("new_variables") or {}
    used = set()
    for expr in new.values():
        tree = ast.parse(str(expr), mode="eval")
        used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    for group in cfg["inputs"].values():
        used |= {v[0] if isinstance(v, list) else v for v in group["vars"]}
    used |= set(cfg["labels"]["value"]) | set(cfg.get("observers") or [])
    return used - set(new) - NAMESPACES


def test_data_config_reads_only_kit_branches():
    cfg = yaml.safe_load(open(DATA_CONFIG))
    branches = _config_branches(cfg)
    assert branches <= set(JETCLASS_BRANCHES), sorted(branches - set(JETCLASS_BRANCHES))
    # the official "full" set: 17 particle features, four-vectors, mask, 10 labels in the ParT order
    feats = [v[0] for v in cfg["inputs"]["pf_features"]["vars"]]
    assert len(feats) == 17 and feats[:5] == ["part_pt_log", "part_e_log", "part_logptrel", "part_logerel",
                                              "part_deltaR"]
    assert [v[0] for v in cfg["inputs"]["pf_vectors"]["vars"]] == ["part_px", "part_py", "part_pz", "part_energy"]
    assert cfg["inputs"]["pf_mask"]["pad_mode"] == "constant"
    assert cfg["labels"]["value"] == [f"label_{c}" for c in CLASS_NAMES]
    assert {"part_d0val", "part_dzval", "part_d0err", "part_dzerr", "jet_pt", "jet_energy"} <= branches


def test_evaluate_predictions_against_hand_values(tmp_path):
    # 4 jets: QCD, QCD, Tbqq, Tbqq; jet 1 (QCD) is misclassified as Tbqq -> accuracy 3/4
    y = np.array([0, 0, 8, 8])
    p = np.full((4, 10), 0.01)
    p[0, 0] = 0.9
    p[1, 0], p[1, 8] = 0.4, 0.5
    p[2, 8] = 0.9
    p[3, 0], p[3, 8] = 0.45, 0.5
    data = {f"label_{c}": (y == k) for k, c in enumerate(CLASS_NAMES)}
    data.update({f"score_label_{c}": p[:, k] for k, c in enumerate(CLASS_NAMES)})
    path = tmp_path / "pred.root"
    with uproot.recreate(path) as f:
        f["Events"] = data
    out = evaluate_predictions(path)
    assert out["n_test"] == 4
    assert out["accuracy"] == pytest.approx(3 / 4)
    # ratios p_T / (p_T + p_QCD): QCD jets 0.011, 0.556; Tbqq jets 0.989, 0.526 -> 3 of 4 pairs ordered
    assert out["auc_Tbqq_vs_QCD"] == pytest.approx(3 / 4)
    assert out["auc_QCD"] == pytest.approx(3 / 4)  # p_QCD: QCD 0.9, 0.4 vs others 0.01, 0.45
    assert math.isnan(out["auc_Hbb"])  # no Hbb jet in the test set


def test_parse_log_sums_only_training_passes():
    text = ("x INFO: ParT parameters: 298838\n"
            "x INFO: Processed 100 entries in total (avg. speed 50.0 entries/s)\nx INFO: Train AvgLoss: 1\n"
            "x INFO: Processed 40 entries in total (avg. speed 400.0 entries/s)\nx INFO: Eval AvgLoss: 1\n"
            "x INFO: Processed 100 entries in total (avg. speed 25.0 entries/s)\nx INFO: Train AvgLoss: 1\n")
    out = parse_log(text)
    assert out["params"] == 298838 and out["train_jets"] == 200
    assert out["train_jets_per_s"] == pytest.approx(200 / 6.0)


@pytest.mark.slow
def test_benchmark_end_to_end_tiny(tmp_path, monkeypatch):
    pytest.importorskip("weaver")
    pytest.importorskip("numba")
    data = tmp_path / "data"
    for i, split in enumerate(("train", "val", "test")):
        write_jetclass(str(data / split), 30 if split == "train" else 6, seed=11 + i, index=i)
    monkeypatch.chdir(tmp_path)  # relative --data and --out, as in the documented command
    out = tmp_path / "out"
    row = main(["--data", "data", "--epochs", "1", "--out", "out", "--batch-size", "32",
                "-o", "num_layers", "1", "-o", "embed_dims", "[16,32,16]", "-o", "pair_embed_dims", "[8,8,8]",
                "-o", "num_heads", "2", "-o", "num_cls_layers", "1"])
    res = json.loads((out / f"{TABLE_ID}.json").read_text())
    r = res["rows"][0]
    assert res["table_id"] == TABLE_ID and r["accuracy"] == row["accuracy"]
    assert r["n_train"] == 300 and r["n_val"] == 60 and r["n_test"] == 60 and r["threads"] == 1
    assert 0 <= r["accuracy"] <= 1 and 0 <= r["auc_Tbqq_vs_QCD"] <= 1 and 0 <= r["auc_macro"] <= 1
    assert all(0 <= r[f"auc_{c}"] <= 1 for c in CLASS_NAMES)
    assert r["params"] > 0 and r["train_jets"] > 0 and r["train_jets_per_s"] > 0 and r["wall_s"] > 0
    assert set(res["meta"]["metrics"]) <= set(r)
    assert res["meta"]["command"].startswith("python -m bench.bench_weaver_part --data data --epochs 1 --out out")
    # the network options reached weaver's model: the tiny model, not the default reduced ParT (~0.3M)
    assert r["params"] < 20_000
    log = (out / "weaver" / "stdout.log").read_text()
    assert re.search(r"'num_layers': 1\b", log) and "'embed_dims': [16, 32, 16]" in log


def test_reference_result_shown_in_results_md(tmp_path):
    from common.results.report import build_results_md
    from common.results.tables import write_result

    row = {"model": "ParT (weaver-core)", "features": "full", "accuracy": 0.7134, "auc_Tbqq_vs_QCD": 0.9881}
    meta = {"title": "Supervised reference", "keys": ["model", "features"],
            "metrics": ["accuracy", "auc_Tbqq_vs_QCD"], "dataset": "sim"}
    write_result(tmp_path / "runs" / "reference" / f"{TABLE_ID}.json", TABLE_ID, [row], meta)
    path, _ = build_results_md(tmp_path / "runs", "mini", tmp_path / "results", claims_path=False)
    text = path.read_text()
    # its own section after the three methods' sections, with our numbers (was dropped: not a method section)
    assert "## reference" in text and text.index("## reference") > text.index("## hepjepa")
    section = text[text.index("## reference"):]
    assert "| ParT (weaver-core) | full | 0.713 |" in section and "| 0.988 |" in section


def _network_module():
    pytest.importorskip("weaver")
    pytest.importorskip("numba")
    import importlib.util

    from bench.bench_weaver_part import NETWORK_CONFIG

    spec = importlib.util.spec_from_file_location("part_network", NETWORK_CONFIG)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _DataConfig:  # the attributes of weaver's DataConfig that get_model reads
    input_dicts = {"pf_points": [0] * 2, "pf_features": [0] * 17, "pf_vectors": [0] * 4, "pf_mask": [0]}
    label_value = [f"label_{c}" for c in CLASS_NAMES]
    input_names = ("pf_points", "pf_features", "pf_vectors", "pf_mask")
    input_shapes = {"pf_points": (-1, 2, 128), "pf_features": (-1, 17, 128), "pf_vectors": (-1, 4, 128),
                    "pf_mask": (-1, 1, 128)}


def test_network_default_is_the_reduced_part():
    mod = _network_module()
    model, info = mod.get_model(_DataConfig())
    part = model.mod
    assert len(part.blocks) == 3 and len(part.cls_blocks) == 2  # 3 particle-attention + 2 class-attention layers
    assert part.embed.input_bn.num_features == 17 and part.fc[-1].out_features == 10
    assert sum(p.numel() for p in model.parameters()) == 298_838  # embed [64, 256, 64], the official rest
    small, _ = mod.get_model(_DataConfig(), num_layers=1, embed_dims=[16, 32, 16])
    assert len(small.mod.blocks) == 1
    with pytest.raises(ValueError, match="num_layer"):
        mod.get_model(_DataConfig(), num_layer=2)
