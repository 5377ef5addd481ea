"""HEP-JEPA table writer: each ablation run lands in the table of the one switch it changes."""
import json

import yaml

from common.training.config import load_config

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


def test_linear_probe_and_shortcut_ablation_tables(tmp_path):
    runs = tmp_path / "hepjepa"
    (runs / "probe").mkdir(parents=True)
    (runs / "probe" / "probe.json").write_text(json.dumps({
        "n_per_class": 100, "n_test_jets": 3000, "norm_batches": 20, "encoder": "context",
        "rows": [{"seed": 0, "pretrained": 0.4, "random": 0.3}, {"seed": 1, "pretrained": 0.42, "random": 0.31}]}))
    (runs / "pretrain").mkdir()
    (runs / "pretrain" / "log.jsonl").write_text(
        json.dumps({"step": 20, "between_jet_share": 0.9}) + "\n" + json.dumps({"step": 40, "between_jet_share": 0.2,
                                                                                "effective_rank": 30.0}) + "\n")
    for arm, acc in [("base", 0.4), ("inputs", 0.3), ("position", 0.35)]:
        cfg = load_config(f"hepjepa/configs/smoke/shortcut_{arm}.yaml")
        for s in (0, 1, 2):
            d = runs / "shortcut" / arm / f"seed{s}"
            (d / "pretrain").mkdir(parents=True)
            (d / "pretrain" / "config.yaml").write_text(yaml.safe_dump(cfg))
            (d / "pretrain" / "log.jsonl").write_text(json.dumps({"step": 10, "between_jet_share": 0.1 * s}) + "\n")
            (d / "probe").mkdir()
            (d / "probe" / "probe.json").write_text(json.dumps({"rows": [{"seed": s, "pretrained": acc,
                                                                          "random": 0.25}]}))
            (d / "fewshot").mkdir()
            (d / "fewshot" / "summary.json").write_text(json.dumps({"rows": [{"mode": "finetune", "accuracy": [acc / 2]}]}))
    rows, sources, seeds = tables.shortcut_rows(runs)
    assert seeds == [0, 1, 2] and len(sources) == 18
    by_inputs = {(r["inputs"], r["position"]): r for r in rows}
    assert by_inputs[("absolute (ParT kin)", "MLP, every block")]["probe_accuracy"] == [0.3] * 3
    assert by_inputs[("relative", "sin-cos, input")]["fewshot_accuracy"] == [0.175] * 3
    base = by_inputs[("relative", "MLP, every block")]
    assert base["target_norm"] == "layer" and base["between_jet_share"] == [0.0, 0.1, 0.2]
    assert base["random_probe_accuracy"] == [0.25] * 3
    written = tables.write_tables(runs, runs / "tables", "smoke")
    assert {"hepjepa.linear_probe", "hepjepa.ablation_shortcut"} <= set(written)
    lp = json.loads((runs / "tables" / "hepjepa.linear_probe.json").read_text())
    assert lp["rows"] == [{"encoder": "pretrained", "accuracy": [0.4, 0.42]},
                          {"encoder": "random init (stats set)", "accuracy": [0.3, 0.31]}]
    assert "between_jet_share 0.2" in lp["meta"]["notes"]        # the last logged value


def test_rows_on_the_pretrained_backbone_name_their_pretraining_run(tmp_path):
    """pretrain_seed (the seed of runs/pretrain) on every row but scratch: the unit of a claim replicated over
    pretraining runs (common/results/claims.py, replicate: pretraining)."""
    import yaml as _yaml

    from hepjepa.tables import with_pretraining_run
    rows = [{"mode": m, "accuracy": 0.5} for m in ("frozen", "finetune", "scratch")]
    assert all("pretrain_seed" not in r for r in with_pretraining_run([dict(r) for r in rows], tmp_path))
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "config.yaml").write_text(_yaml.safe_dump({"seed": 4}))
    out = {r["mode"]: r for r in with_pretraining_run([dict(r) for r in rows], tmp_path)}
    assert out["frozen"]["pretrain_seed"] == out["finetune"]["pretrain_seed"] == 4
    assert "pretrain_seed" not in out["scratch"]
