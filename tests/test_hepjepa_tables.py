"""HEP-JEPA table writer: each ablation run lands in the table of the one switch it changes."""
import json

import yaml

from common.config import load_config
from hepjepa import tables


def _probe(runs, name, cfg, acc):
    d = runs / "ablation" / name / "probe"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    row = {"task": "jetclass", "mode": "fixed", "label_percent": 10, "n_per_class": 3, "n_train_total": 300,
           "accuracy": [acc], "auc": [0.6]}
    (d / "summary.json").write_text(json.dumps({"task": "jetclass", "dataset": "jetclass", "class_names": ["a", "b"],
                                                "seeds": [0], "rows": [row]}))


def test_ablation_rows_are_matched_by_switch(tmp_path):
    runs = tmp_path / "hepjepa"
    for name, acc in [("base", 0.5), ("random_masking", 0.4), ("targets1", 0.3), ("no_registers", 0.2),
                      ("no_physics_bias", 0.1), ("patching_fixed", 0.35), ("patching_2g", 0.45)]:
        _probe(runs, name, load_config(f"hepjepa/configs/smoke/ablation_{name}.yaml"), acc)
    got = tables.ablation_tables(runs)
    assert got["hepjepa.ablation_masking"] == [
        {"masking": "contiguous", "accuracy": [0.5], "auc": [0.6]},
        {"masking": "random", "accuracy": [0.4], "auc": [0.6]}]
    assert sorted((r["num_targets"], r["accuracy"][0]) for r in got["hepjepa.ablation_num_targets"]) == [(1, 0.3), (4, 0.5)]
    assert [(r["registers"], r["accuracy"][0]) for r in got["hepjepa.ablation_registers"]] == [("on", 0.5), ("off", 0.2)]
    assert [(r["physics_bias"], r["accuracy"][0]) for r in got["hepjepa.ablation_physics_bias"]] == [
        ("on", 0.5), ("off", 0.1)]
    assert [r["augmentations"] for r in got["hepjepa.ablation_augmentations"]] == ["on"]  # only the reference run
    assert [(r["patching"], r["accuracy"][0]) for r in got["hepjepa.ablation_patching"]] == [
        ("G=8, K=ceil(1.5 n/G) <= 12", 0.5), ("G=16, K=ceil(1.5 n/G) <= 12", 0.45), ("G=8, K=12", 0.35)]
    written = tables.write_tables(runs, runs / "tables", "smoke")
    assert "hepjepa.ablation_patching" in written
    assert "patches G x members K" in (runs / "tables" / "hepjepa.md").read_text()
    assert "hepjepa.ablation_masking" in written and (runs / "tables" / "hepjepa.ablation_masking.json").is_file()
