"""MPMv2 out-of-domain BTag tasks (arXiv:2409.12589): inputs on the pretraining scale, flavour tagging, track origin
(balanced accuracy per number of tracks), secondary-vertex finding (focal loss, one-sided ARI per number of SVs)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.btag import H5_KEYS, MAX_TRACKS, finalise, write_h5
from common.checkpoint import save_checkpoint
from common.config import load_config, save_config
from common.metrics import adjusted_rand_index_onesided, balanced_accuracy, bell_numbers
from common.results import read_result

from mpm.build import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

SHRINK = ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.num_registers=2",
          "model.decoder.dim=8", "model.decoder.depth=1", "model.decoder.num_heads=2", "model.decoder.ff_hidden=8"]


def btag_arrays(n: int, seed: int) -> dict:
    """n hand-made jets in the HDF5 layout of common.btag (2..15 tracks, vertices 0..3, all three flavours)."""
    rng = np.random.default_rng(seed)
    k = rng.integers(2, MAX_TRACKS + 1, n)
    mask = np.arange(MAX_TRACKS)[None] < k[:, None]
    labels = np.arange(n) % 3
    vtx = rng.integers(0, 4, (n, MAX_TRACKS)) * (labels[:, None] > 0)
    csts = np.stack([rng.exponential(5, (n, MAX_TRACKS)) + 1, rng.normal(0, 0.1, (n, MAX_TRACKS)),
                     rng.normal(0, 0.1, (n, MAX_TRACKS)), rng.normal(0, 0.02, (n, MAX_TRACKS)) + 0.05 * (vtx > 0),
                     rng.uniform(0.01, 0.05, (n, MAX_TRACKS)), rng.normal(0, 0.05, (n, MAX_TRACKS)),
                     rng.uniform(0.02, 0.08, (n, MAX_TRACKS))], -1)
    track_type = np.where(vtx > 0, np.where(labels[:, None] == 2, 2, 1), rng.choice([0, 3], (n, MAX_TRACKS)))
    jets = np.stack([rng.uniform(20, 200, n), rng.normal(0, 1, n), rng.uniform(-3, 3, n), rng.uniform(5, 20, n),
                     k], 1)
    return finalise(dict(csts=csts, mask=mask, csts_id=np.where(rng.random((n, MAX_TRACKS)) < 0.5, 1, 3),
                         labels=labels, vtx_id=vtx, track_type=track_type, jets=jets,
                         vtx_pos=np.zeros((n, 4, 4))))


@pytest.fixture(scope="module")
def btag_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("btag")
    for i, (split, n) in enumerate((("train", 90), ("valid", 30), ("test", 45))):
        write_h5(str(d / f"{split}_0.h5"), btag_arrays(n, i))
    return d


@pytest.fixture(scope="module")
def pretrained_v2(tmp_path_factory):
    """A tiny MPMv2 regression 'pretraining run' (config.yaml + checkpoint.pt) on a few JetClass-format jets."""
    from data_factory import write_jetclass

    root = tmp_path_factory.mktemp("jetclass")
    for split in ("train", "val", "test"):
        (root / split).mkdir()
        write_jetclass(str(root / split), 4, seed={"train": 0, "val": 1, "test": 2}[split])
    d = tmp_path_factory.mktemp("pretrain_v2")
    cfg = load_config("mpm/configs/smoke/mpmv2_regression.yaml", SHRINK + [f"data.root={root}"])
    torch.manual_seed(0)
    save_config(cfg, d / "config.yaml")
    save_checkpoint(d / "checkpoint.pt", {"model": build_model(cfg).state_dict(), "step": 0})
    return d


def _args(config, out, run, btag_dir, *extra):
    return ["--config", config, "--out", str(out), f"pretrained.run={run}", f"data.root={btag_dir}", *extra]


# ------------------------------------------------------------------------------------------------------ metrics

def test_bell_numbers():
    assert bell_numbers(15) == [1, 1, 2, 5, 15, 52, 203, 877, 4140, 21147, 115975, 678570, 4213597, 27644437,
                                190899322, 1382958545]


def test_ari_perfect_is_one_and_one_cluster_by_hand():
    mask = np.array([[1, 1, 1, 1, 0]], bool)
    vtx = np.array([[0, 0, 1, 1, 0]])
    truth = vtx[:, :, None] == vtx[:, None, :]
    assert adjusted_rand_index_onesided(mask, vtx, truth)[0] == pytest.approx(1.0)
    # all four tracks predicted in one vertex: 2 of the 6 pairs right, RI = 1/3; r = B3 / B4 = 5 / 15, g = 2:
    # E = (1/3)(2/6) + (2/3)(4/6) = 5/9, ARI = (1/3 - 5/9) / (1 - 5/9) = -1/2
    ones = np.ones((1, 5, 5), bool)
    assert adjusted_rand_index_onesided(mask, vtx, ones)[0] == pytest.approx(-0.5)


def test_ari_is_one_sided_and_reads_the_upper_triangle():
    mask = np.array([[1, 1, 1, 0]], bool)
    vtx = np.array([[0, 0, 1, 0]])
    # all tracks apart: pairs (0,1) wrong, (0,2) (1,2) right: RI = 2/3; r = B2 / B3 = 2/5, g = 1:
    # E = (2/5)(1/3) + (3/5)(2/3) = 8/15, ARI = (2/3 - 8/15) / (7/15) = 2/7 (the symmetric ARI of these partitions
    # is 0: the one-sided expectation is over random partitions of the prediction only)
    apart = np.zeros((1, 4, 4), bool)
    assert adjusted_rand_index_onesided(mask, vtx, apart)[0] == pytest.approx(2 / 7)
    lower_only = np.tril(np.ones((1, 4, 4), bool), -1)  # the lower triangle is never read
    assert adjusted_rand_index_onesided(mask, vtx, lower_only)[0] == pytest.approx(2 / 7)
    assert math.isnan(adjusted_rand_index_onesided(np.array([[1, 0]], bool), np.zeros((1, 2), int),
                                                   np.ones((1, 2, 2), bool))[0])  # one track: no pair


def test_balanced_accuracy_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 0, 1, 1, 0, 2])
    # recalls 3/4, 1/2, 1 (plain accuracy would be 5/7)
    assert balanced_accuracy(y, p) == pytest.approx((0.75 + 0.5 + 1.0) / 3)


# ------------------------------------------------------------------------------------------------------ inputs

def test_inputs_use_the_pretraining_quantiles_in_the_mpmv2_column_order(pretrained_v2, btag_dir):
    from common.btag import read_btag
    from common.config import load_config as load
    from common.data import mpmv2_quantiles
    from mpm.btag_data import load_btag_split

    pcfg = load(pretrained_v2 / "config.yaml")
    qt = mpmv2_quantiles(pcfg["data"])
    got = load_btag_split({"root": str(btag_dir), "train": "train_*.h5"}, "train", qt)
    raw = read_btag(str(btag_dir / "train_0.h5"))
    m = raw["mask"]
    # column 4 of the encoder input is z0 (kit order pt, deta, dphi, d0, z0, d0err, z0err): BTag's column 5
    want = qt.transform(raw["csts"][m][:, [0, 1, 2, 3, 5, 4, 6]].astype(np.float64))
    np.testing.assert_allclose(got["x"][m], want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(want, qt.transform(raw["csts"][m].astype(np.float64)))  # the order matters
    assert (got["x"][~m] == 0).all() and (got["pid"] == raw["csts_id"]).all()
    assert (got["label"] == raw["labels"]).all() and (got["track_type"] == raw["track_type"]).all()


# ------------------------------------------------------------------------------------------------------ scripts

def test_flavour_tagging_script_writes_a_valid_result(pretrained_v2, btag_dir, tmp_path):
    from mpm import btag

    out = tmp_path / "ft"
    btag.main(_args("mpm/configs/smoke/btag_v2.yaml", out, pretrained_v2, btag_dir, "finetune.steps=3",
                    "btag.n_train=[30,60]", "finetune.mode=fixed"))
    res = read_result(out / "mpm.v2_btag.json")
    rows = {r["n_train"]: r for r in res["rows"]}
    assert set(rows) == {30, 60}
    assert rows[30]["mode"] == "frozen" and rows[30]["task"] == "regression"  # published spelling of fixed
    assert len(rows[30]["accuracy"]) == 1 and 0 <= rows[30]["accuracy"][0] <= 1
    assert (out / "done.json").is_file()
    import json
    r = json.loads((out / "n30" / "seed0" / "result.json").read_text())
    assert r["n_train_jets"] == 30 and r["class_names"] == ["light", "c", "b"] and r["steps"] == 3
