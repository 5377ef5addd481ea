"""Split discipline (docs/splits.md): every selection is made on validation jets; the test split is read only by the
final evaluation of a table. A static scan of bench/*.py for test-split loads, runtime checks of the bench that chose
HEP-JEPA's defaults and of the probe it runs (the data loader monkeypatched to record the splits read), and the doc
kept true against the code."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_hepjepa_model import TINY
from tests.test_hepjepa_tokenizer import fake_jets

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "splits.md"
# a call that reads a split of the data: its "test" argument (or a weaver --data-test) reads the test split
TEST_LOAD = re.compile(r"""(load_arrays|build_dataset|make_loader|loader_fn|load_btag_split|_btag_split|cached_entries)"""
                       r"""\([^()]*?["']test["']|--data-test|eval_split=test""")
# benches that are the final evaluation of a table (and say so in docs/splits.md): nothing else of bench/ reads test
BENCH_TABLES = {"bench/bench_weaver_part.py": "reference.part_weaver"}


def _reads_test(path: Path) -> bool:
    return bool(TEST_LOAD.search(path.read_text()))


def test_no_bench_reads_the_test_split_except_a_tables_final_evaluation():
    readers = {str(p.relative_to(ROOT)) for p in sorted((ROOT / "bench").rglob("*.py")) if _reads_test(p)}
    assert readers == set(BENCH_TABLES), readers
    # the scan sees what it is meant to see (the old shortcut bench loaded "test")
    assert TEST_LOAD.search('train, test = load_arrays(cfg["data"], "train"), load_arrays(cfg["data"], "test", '
                            'max_jets=max_test)')
    assert not TEST_LOAD.search('load_arrays(cfg["data"], SPLIT, max_jets=max_eval)')


def test_every_test_split_reader_is_named_in_the_doc_with_its_table():
    """docs/splits.md lists every module that reads the test split, with the table it is the final evaluation of."""
    doc = DOC.read_text()
    readers = [p for d in ("bench", "common", "hepjepa", "mpm", "omnijet") for p in sorted((ROOT / d).rglob("*.py"))
               if "simulate" not in p.parts and p.name != "download.py" and _reads_test(p)]
    assert readers
    rows = {ln.split("|")[1].strip().strip("`"): ln for ln in doc.splitlines() if ln.startswith("| `")}
    for p in readers:
        rel = str(p.relative_to(ROOT))
        assert rel in rows, f"{rel} reads the test split but docs/splits.md does not say for which table"
        assert "test" in rows[rel].split("|")[3], rows[rel]
    for rel, table in BENCH_TABLES.items():
        assert table in rows[rel]
    assert "bench/hepjepa_shortcut.py" in rows and "test" not in rows["bench/hepjepa_shortcut.py"].split("|")[3]


def _arrays(n_per_class: int, n_classes: int = 3, seed: int = 0) -> dict:
    """Class-sorted jets, as the per-class split files give them."""
    n = n_per_class * n_classes
    x, mask, p4 = fake_jets([12 + (i % 9) for i in range(n)], seed=seed)
    jet = np.ones((n, 6), np.float32)
    jet[:, 0] = np.linspace(400.0, 800.0, n)  # pt
    jet[:, 1] = np.linspace(-1.0, 1.0, n)     # eta
    jet[:, 3] = jet[:, 0] * 1.2               # energy
    return {"x": x.numpy(), "mask": mask.numpy(), "p4": p4.numpy(), "jet": jet,
            "label": np.repeat(np.arange(n_classes), n_per_class)}


@pytest.fixture
def recorded_splits(monkeypatch):
    """The data loader of the probe and of the bench replaced by one that records the splits it is asked for."""
    import bench.hepjepa_shortcut as bench
    import hepjepa.probe as probe

    splits = []

    def load(data, split, max_jets=None):
        splits.append(split)
        return _arrays(10 if split == "train" else 6, seed={"train": 0, "val": 1, "test": 2}[split])

    def backbone_fns(cfg):
        from hepjepa.model import HEPJEPABackbone
        return (lambda: HEPJEPABackbone(TINY, 7, (5, 6))), (lambda net: None)

    for mod in (probe, bench):
        monkeypatch.setattr(mod, "load_arrays", load)
    monkeypatch.setattr(probe, "backbone_fns", backbone_fns)
    monkeypatch.setattr("hepjepa.model.backbone_fns", backbone_fns)
    return splits


def _probe_cfg(split: str) -> dict:
    return {"data": {}, "sweep": {"encoder": "context"},
            "probe": {"n_per_class": 3, "seeds": [0], "norm_batches": 2, "max_test_jets": None, "eval_split": split}}


def test_probe_scores_the_split_it_is_told_and_sets_statistics_from_balanced_batches(recorded_splits, monkeypatch):
    import hepjepa.probe as probe

    seen = []
    real = probe.random_init

    def spy(build, seed, batches, *a, **k):
        batches = list(batches)
        seen.extend(np.bincount(b.label.numpy(), minlength=3).tolist() for b in batches)
        return real(build, seed, batches, *a, **k)

    monkeypatch.setattr(probe, "random_init", spy)
    res = probe.run_probe(_probe_cfg("val"))
    assert recorded_splits == ["train", "val"] and res["eval_split"] == "val"
    # 2 batches of 256 from 30 class-sorted jets: every class alike (was: the first batches in file order)
    assert len(seen) == 2 and all(max(c) - min(c) <= 1 for c in seen)
    recorded_splits.clear()
    probe.run_probe(_probe_cfg("test"))                 # a table's final evaluation
    assert recorded_splits == ["train", "test"]
    with pytest.raises(ValueError, match="eval_split"):
        probe.run_probe(_probe_cfg("train"))


def test_shortcut_bench_reads_no_test_jets(recorded_splits, monkeypatch, tmp_path):
    """A tiny run of bench/hepjepa_shortcut.py (its pretraining and probe subprocesses stubbed, the loader recording):
    the probe is told to score validation jets, and the bench itself reads only train and val."""
    import subprocess

    import bench.hepjepa_shortcut as bench

    calls = []

    def run(cmd, check):
        calls.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if "hepjepa.pretrain" in cmd:
            (out / "log.jsonl").write_text(json.dumps({"loss": 0.1, "between_jet_share": 0.3}) + "\n")
        else:
            (out / "probe.json").write_text(json.dumps({"mean": {"pretrained": 0.4, "random": 0.3}}))
        (out / "done.json").write_text("{}")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(bench, "per_class_subset", lambda labels, n, seed: np.arange(len(labels)))
    bench.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--steps", "2",
                "--arms", "absolute_layer_mlp"])
    probe_calls = [c for c in calls if "hepjepa.probe" in c]
    assert probe_calls and all("probe.eval_split=val" in c for c in probe_calls)
    assert "test" not in recorded_splits and "val" in recorded_splits
    recorded_splits.clear()
    bench.kinematics_r2(str(tmp_path / "data"), str(tmp_path / "ckpt.pt"))
    assert sorted(set(recorded_splits)) == ["train", "val"]
