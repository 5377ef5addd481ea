"""common/results/floor.py: the jet-observables floor sees only jet-level inputs and trains on the fine-tuning runs' subsets."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from common.data.btag import MAX_TRACKS, finalise, write_h5
from common.data.datasets import build_dataset
from common.results import floor
from common.results.tables import read_result, render_table, write_result

from tests.data_factory import write_jetclass

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["QCD", "Tbqq", "Wqq"]


@pytest.fixture(scope="module")
def jetclass_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("floor_jetclass")
    for i, (split, n) in enumerate((("train", 40), ("val", 8), ("test", 20))):
        write_jetclass(str(root / split), n, classes=CLASSES, seed=3 + i)
    return root


def _cfg(root, **finetune):
    return {"data": {"dataset": "jetclass", "root": str(root), "features": "part_kin", "classes": CLASSES,
                     "num_workers": 0},
            "finetune": {"n_per_class": [5, 20], "seeds": [0, 1], "max_test_jets": None, **finetune}}


def _arrays(root, n=12):
    ds = build_dataset(_cfg(root)["data"], "train", progress=False)
    return ds.gather(np.arange(n))


def test_features_are_jet_level_only(jetclass_dir):
    a = _arrays(jetclass_dir)
    ref = floor.jet_features(a["p4"], a["mask"], a["jet"])
    assert ref.shape == (12, len(floor.OBSERVABLES)) and np.isfinite(ref).all()
    # shuffle the constituents within every jet (padding kept at its slots): the inputs do not move
    rng = np.random.default_rng(0)
    p4, mask = a["p4"].copy(), a["mask"].copy()
    for b in range(len(p4)):
        k = int(mask[b].sum())
        perm = rng.permutation(k)
        p4[b, :k] = p4[b, perm]
    assert np.allclose(floor.jet_features(p4, mask, a["jet"]), ref, rtol=1e-9, atol=1e-9)
    # the per-particle model inputs (x) never reach the floor: replacing them leaves its inputs unchanged
    ds = build_dataset(_cfg(jetclass_dir)["data"], "train", progress=False)
    x0, _ = floor.dataset_features(ds)
    gather = ds.gather
    ds.gather = lambda idx: {**gather(idx), "x": np.random.default_rng(1).normal(size=gather(idx)["x"].shape)}
    x1, _ = floor.dataset_features(ds)
    assert np.array_equal(x0, x1)
    x2, y2 = floor.dataset_features(ds, chunk=7)  # gathered in chunks: the same rows
    assert np.array_equal(x2, x0) and len(y2) == len(ds)
    # ...while a changed jet observable does move them (the test would pass for a constant function otherwise)
    p4b = a["p4"].copy()
    p4b[:, 0] *= 3.0
    assert not np.allclose(floor.jet_features(p4b, a["mask"], a["jet"]), ref)


def btag_arrays(n, seed):
    rng = np.random.default_rng(seed)
    k = rng.integers(2, MAX_TRACKS + 1, n)
    mask = np.arange(MAX_TRACKS)[None] < k[:, None]
    labels = np.arange(n) % 3
    csts = np.stack([rng.exponential(5, (n, MAX_TRACKS)) + 1, rng.normal(0, 0.1, (n, MAX_TRACKS)),
                     rng.normal(0, 0.1, (n, MAX_TRACKS)), rng.normal(0, 0.02, (n, MAX_TRACKS)) + 0.03 * labels[:, None],
                     rng.uniform(0.01, 0.05, (n, MAX_TRACKS)), rng.normal(0, 0.05, (n, MAX_TRACKS)),
                     rng.uniform(0.02, 0.08, (n, MAX_TRACKS))], -1)
    jets = np.stack([rng.uniform(20, 200, n), rng.normal(0, 1, n), rng.uniform(-3, 3, n), rng.uniform(5, 20, n), k], 1)
    return finalise(dict(csts=csts, mask=mask, csts_id=rng.integers(0, 8, (n, MAX_TRACKS)), labels=labels,
                         vtx_id=rng.integers(0, 3, (n, MAX_TRACKS)), track_type=rng.integers(0, 4, (n, MAX_TRACKS)),
                         jets=jets, vtx_pos=np.zeros((n, 2, 4))))


def test_btag_features_are_jet_and_track_summaries():
    a = btag_arrays(30, 0)
    ref = floor.btag_features(a["csts"], a["mask"], a["jets"])
    assert ref.shape == (30, len(floor.BTAG_OBSERVABLES)) and np.isfinite(ref).all()
    csts, mask = a["csts"].copy(), a["mask"].copy()
    rng = np.random.default_rng(1)
    for b in range(len(csts)):
        k = int(mask[b].sum())
        csts[b, :k] = csts[b, rng.permutation(k)]
    assert np.allclose(floor.btag_features(csts, mask, a["jets"]), ref)
    # padded track slots never enter
    csts[~mask] = 1e6
    assert np.allclose(floor.btag_features(csts, mask, a["jets"]), ref)


def test_subsets_are_the_finetuning_harness_draw(jetclass_dir, monkeypatch):
    """The floor trains on exactly the jets run_finetune would: the harness's own train-loader call, replayed."""
    from common.training import finetune
    from common.training.distributed import Dist

    cfg = _cfg(jetclass_dir)
    _, info = floor.run_floor(cfg, "mpm.v1_jetclass", classifiers=("logistic",))
    assert set(info["subsets"]) == {"n5_seed0", "n5_seed1", "n20_seed0", "n20_seed1"}

    class Seen(Exception):
        pass

    def spy(data_cfg, split, batch_size, **kw):
        if split == "train":
            raise Seen(kw)
        raise AssertionError("the train loader comes first")

    for n in (5, 20):
        for seed in (0, 1):
            with pytest.raises(Seen) as e:
                finetune.run_finetune({**cfg, "finetune": {**cfg["finetune"], "n_per_class": n}}, None, None,
                                      Path("/nonexistent/floor-spy"), Dist(), seed=seed, n_per_class=n, loader_fn=spy,
                                      class_names=CLASSES)
            kw = e.value.args[0]
            harness = build_dataset(cfg["data"], "train", n_per_class=kw["n_per_class"],
                                    subset_seed=kw["subset_seed"], progress=False).index
            assert np.array_equal(info["subsets"][f"n{n}_seed{seed}"], harness)
    assert not np.array_equal(info["subsets"]["n5_seed0"], info["subsets"]["n5_seed1"])


def test_hepjepa_label_percents_follow_its_label_count():
    """The floor and HEP-JEPA's sweep share common.data.subsets.label_count (n per class of a label percentage)."""
    cfg = {"sweep": {"label_percents": [0.05, 0.5, 2, 100]}, "finetune": {"n_per_class": None}}
    assert floor.label_grid(cfg, 24000, 10) == [(1, 0.05), (12, 0.5), (48, 2), (None, 100)]
    assert floor.label_grid({"finetune": {"n_per_class": [10, 100]}}, 24000, 10) == [(10, None), (100, None)]


def test_btag_subset_is_the_btag_finetuning_draw():
    """One draw (common.data.btag.subset_index) for the floor and the BTag fine-tuning runs (mpm.btag.data.subset)."""
    from common.data.btag import subset_index

    from mpm.btag.data import subset

    arrays = {"label": np.arange(50), "x": np.arange(50) * 2}
    for seed in (0, 3):
        ref = np.sort(np.random.default_rng(seed).permutation(50)[:20])
        assert np.array_equal(subset_index(50, 20, seed), ref)
        picked = subset(arrays, 20, seed, "train")
        assert np.array_equal(picked["label"], ref) and np.array_equal(picked["x"], ref * 2)
    assert np.array_equal(subset_index(50, None, 0), np.arange(50))
    with pytest.raises(ValueError, match="BTag train: 51 labelled jets requested, the split holds 50"):
        subset_index(50, 51, 0)


def test_cli_writes_a_result_the_table_reads(jetclass_dir, tmp_path):
    cfg_path = tmp_path / "ft.yaml"
    cfg_path.write_text(json.dumps(_cfg(jetclass_dir, n_per_class=[5])))
    floor.main(["--table", "omnijet.classification", "--config", str(cfg_path), "--out", str(tmp_path / "out"),
                "--profile", "smoke", "data.classes=[QCD,Tbqq]"])
    data = read_result(tmp_path / "out" / "omnijet.classification.json")
    names = {r["mode"] for r in data["rows"]}
    assert names == set(floor.CLASSIFIERS.values())
    assert all(r["n_per_class"] == 5 and 0 <= r["accuracy"] <= 1 and "auc" in r for r in data["rows"])
    md = render_table("omnijet.classification", data["rows"], data["meta"])
    line = next(ln for ln in md.splitlines() if ln.startswith("| jet observables (BDT) | 5 |"))
    assert "not published" in line
    info = json.loads((tmp_path / "out" / "floor.json").read_text())
    assert set(info["subsets"]) == {"n5_seed0", "n5_seed1"} and info["subsets"]["n5_seed0"]["n"] == 10


def test_btag_floor_runs_on_the_btag_split(tmp_path):
    for i, (split, n) in enumerate((("train", 60), ("test", 30))):
        write_h5(str(tmp_path / f"{split}_0.h5"), btag_arrays(n, i))
    cfg = {"data": {"dataset": "btag", "root": str(tmp_path), "train": "train_*.h5", "test": "test_*.h5"},
           "btag": {"n_train": [30]}, "finetune": {"seeds": [0, 1], "max_test_jets": 20}}
    rows, info = floor.run_floor(cfg, "mpm.v2_btag")
    assert info["n_test"] == 20 and len(rows) == 4
    assert all(r["n_train"] == 30 and r["task"] is None for r in rows)
    write_result(tmp_path / "mpm.v2_btag.json", "mpm.v2_btag", rows, {"profile": "smoke"})


@pytest.mark.parametrize("table_id", sorted(floor.TABLE_KEYS))
def test_every_floor_table_has_a_run_all_step_and_valid_rows(table_id, tmp_path):
    method = table_id.partition(".")[0]
    steps = (ROOT / method / "run_steps.sh").read_text()
    assert re.search(rf"-m common\.results\.floor[^\n]*(\\\n[^\n]*)*--table {re.escape(table_id)}\b", steps), \
        f"{method}/run_steps.sh has no common.results.floor step for {table_id}"
    for name in floor.CLASSIFIERS.values():
        keys = floor.TABLE_KEYS[table_id](name, 10, 0.5, 10, 100)
        row = {**keys, "seed": 0, "accuracy": 0.5}
        write_result(tmp_path / f"{table_id}.json", table_id, [row], {"profile": "smoke"})


def test_merged_meta_keeps_the_notes_of_method_and_floor():
    from common.results.tables import merge_meta

    meta = merge_meta([{"notes": "floor rows: observables.", "seeds": [0]}, {"notes": "method rows.", "seeds": [1],
                                                                              "dataset": "jetclass"}])
    assert meta["notes"] == "floor rows: observables. method rows." and meta["seeds"] == [0, 1]
    assert meta["dataset"] == "jetclass"
