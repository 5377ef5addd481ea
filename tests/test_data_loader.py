"""make_loader / load_arrays / dataset_info and the preprocessing cache, on tiny synthetic files."""
import glob
import os

import numpy as np
import pytest
import torch

from common.data import datasets as data_mod
from common.data import jetclass
from common.data.batch import JetBatch
from common.data.datasets import dataset_info, load_arrays, make_loader, set_epoch
from common.data.features import FEATURE_SETS, DataError
from common.data.jetclass import CLASS_NAMES, read_jetclass

from tests.data_factory import write_jetclass, write_qg, write_toptagging

N_PER_FILE = 40


@pytest.fixture(scope="module")
def jc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("jetclass")
    write_jetclass(str(root / "train"), N_PER_FILE, seed=1)
    write_jetclass(str(root / "val"), N_PER_FILE, seed=2)
    return str(root)


def cfg_for(root, **kw):
    cfg = dict(dataset="jetclass", root=root, train="train/*.root", val="val/*.root", test="val/*.root",
               features="mpmv1", num_particles=None, classes=None, cache_dir=None, num_workers=0)
    cfg.update(kw)
    return cfg


def entries(cache, kind="features"):
    """The cache's finished or temporary entry directories of one kind: feature entries or source entries (-src-)."""
    return [d for d in os.listdir(cache) if os.path.isdir(os.path.join(cache, d))
            and ("-src-" in d) == (kind == "source")]


def collect(loader):
    return [b for b in loader]


def test_jetclass_loader_shapes_and_balance(jc_root):
    cfg = cfg_for(jc_root)
    loader = make_loader(cfg, "train", 64, shuffle=True, seed=0)
    batches = collect(loader)
    b = batches[0]
    assert isinstance(b, JetBatch) and b.x.shape == (64, 64, 3) and b.x.dtype == torch.float32
    assert b.mask.dtype == torch.bool and b.p4.shape == (64, 64, 4) and b.jet.shape == (64, 6)
    assert b.label.dtype == torch.int64 and b.pid is None
    labels = torch.cat([x.label for x in batches])
    assert len(labels) == 10 * N_PER_FILE and torch.bincount(labels).tolist() == [N_PER_FILE] * 10
    assert torch.isfinite(torch.cat([x.x for x in batches])).all()
    assert (b.x[~b.mask] == 0).all() and (b.p4[~b.mask] == 0).all()
    assert dataset_info(cfg) == dict(class_names=CLASS_NAMES, num_features=3, num_particles=64,
                                     feature_names=["part_deta", "part_dphi", "part_pt_log1p"])


def test_cache_round_trip_and_no_reread(jc_root, monkeypatch):
    cfg = cfg_for(jc_root, features="part_full", num_particles=48)
    arrays = load_arrays(cfg, "val")
    # equals reading the ROOT files directly and computing the features
    direct = [FEATURE_SETS["part_full"].compute(read_jetclass(p), 48)
              for p in sorted(glob.glob(os.path.join(jc_root, "val", "*.root")))]
    for k in ("x", "mask", "p4", "jet", "label"):
        np.testing.assert_array_equal(arrays[k], np.concatenate([d[k] for d in direct]))
    assert arrays["x"].shape == (10 * N_PER_FILE, 48, 17) and arrays["label"].dtype == np.int64
    # a second pass must not touch ROOT
    monkeypatch.setattr(jetclass, "iter_jetclass", lambda *a, **k: (_ for _ in ()).throw(AssertionError("reread")))
    again = load_arrays(cfg, "val")
    np.testing.assert_array_equal(again["x"], arrays["x"])
    entry = data_mod.cached_entries(cfg, "val")[0]
    assert isinstance(entry.arrays["x"], np.memmap)                     # memory-mapped random access


def test_cache_keeps_another_fitted_state_of_the_same_source_and_drops_an_older_source(tmp_path, monkeypatch):
    """Two steps side by side may use one feature set with two fitted states (two feature keys, one slot): neither
    conversion removes the other's entry (it did, and the step reading it failed with a missing x.bin); an entry
    made from an older state of the source file is still removed."""
    import dataclasses
    root = str(tmp_path)
    write_jetclass(os.path.join(root, "train"), 20, classes=["QCD"], seed=1)
    cfg = cfg_for(root, features="omnijet", classes=["QCD"])
    cache = os.path.join(root, ".cache")
    first = load_arrays(cfg, "train")
    (a,) = entries(cache)
    other = dataclasses.replace(FEATURE_SETS["omnijet"], params={**FEATURE_SETS["omnijet"].params, "test_state": 1})
    monkeypatch.setitem(FEATURE_SETS, "omnijet", other)
    load_arrays(cfg, "train")
    assert len(entries(cache)) == 2 and a in entries(cache)        # both states' entries, one slot
    np.testing.assert_array_equal(load_arrays(cfg, "train")["x"], first["x"])
    write_jetclass(os.path.join(root, "train"), 25, classes=["QCD"], seed=9)  # the source changes
    load_arrays(cfg, "train")
    assert a not in entries(cache) and len(entries(cache)) == 1     # the older source's entries are gone


def test_cache_invalidation(tmp_path):
    root = str(tmp_path)
    write_jetclass(os.path.join(root, "train"), 20, classes=["QCD", "Hbb"], seed=1)
    cfg = cfg_for(root, features="omnijet", classes=["QCD", "Hbb"])
    first = load_arrays(cfg, "train")
    cache = os.path.join(root, ".cache")
    n_entries = len(entries(cache))
    assert len(entries(cache, "source")) == n_entries          # one source entry (four-momenta) per file
    # same config: same entries
    load_arrays(cfg, "train")
    assert len(entries(cache)) == n_entries
    # the source changes (new content, size, mtime): rebuilt, stale entry removed
    write_jetclass(os.path.join(root, "train"), 25, classes=["QCD"], seed=9)
    second = load_arrays(cfg, "train")
    assert len(second["label"]) == 45 and not np.array_equal(second["x"][20:40], first["x"][20:40])  # QCD rows
    np.testing.assert_array_equal(second["x"][:20], first["x"][:20])                                # Hbb kept
    assert len(entries(cache)) == n_entries
    # another feature set or particle count: separate entries
    load_arrays(cfg_for(root, features="omnijet", num_particles=32, classes=["QCD", "Hbb"]), "train")
    load_arrays(cfg_for(root, features="part_kin", classes=["QCD", "Hbb"]), "train")
    assert len(entries(cache)) == 3 * n_entries
    assert len(entries(cache, "source")) == n_entries          # shared by every feature set and particle count
    assert not [d for d in os.listdir(cache) if d.endswith(".tmp")]
    # a conversion killed mid-way (SIGKILL: no cleanup) leaves a .tmp that the next conversion of that slot removes
    slot = [d for d in sorted(entries(cache)) if "-omnijet-n32-" in d][0].rsplit(".", 1)[0]
    stale = os.path.join(cache, slot + ".deadbeef.tmp")
    os.makedirs(stale)
    write_jetclass(os.path.join(root, "train"), 21, classes=["QCD", "Hbb"], seed=11)
    load_arrays(cfg_for(root, features="omnijet", num_particles=32, classes=["QCD", "Hbb"]), "train")
    assert not os.path.exists(stale) and len(entries(cache)) == 3 * n_entries
    # an interrupted conversion leaves nothing that looks finished
    bad = cfg_for(root, features="part_kinpid", classes=["QCD", "Hbb"])

    def boom(*a, **k):
        raise KeyboardInterrupt

    orig = FEATURE_SETS["part_kinpid"].compute
    FEATURE_SETS["part_kinpid"].compute = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            load_arrays(bad, "train")
    finally:
        FEATURE_SETS["part_kinpid"].compute = orig
    assert len(entries(cache)) == 3 * n_entries
    load_arrays(bad, "train")


def _convert_as_rank(root, rank, out):
    a = data_mod.build_dataset(cfg_for(root, features="part_kin"), "train", rank=rank, world_size=2).gather(
        np.arange(200))
    np.save(out, a["x"])


def test_concurrent_ranks_convert_once(tmp_path):
    import multiprocessing as mp

    root = str(tmp_path)
    write_jetclass(os.path.join(root, "train"), 20, seed=3)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_convert_as_rank, args=(root, r, str(tmp_path / f"r{r}.npy"))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "r0.npy"), np.load(tmp_path / "r1.npy"))
    assert len(entries(os.path.join(root, ".cache"))) == 10                  # one entry per file, no leftovers


def test_determinism_epochs_and_sharding(jc_root):
    cfg = cfg_for(jc_root)
    a = torch.cat([b.x[:, 0, 2] for b in make_loader(cfg, "train", 50, shuffle=True, seed=3)])
    b = torch.cat([b.x[:, 0, 2] for b in make_loader(cfg, "train", 50, shuffle=True, seed=3)])
    torch.testing.assert_close(a, b)
    loader = make_loader(cfg, "train", 50, shuffle=True, seed=3)
    set_epoch(loader, 1)
    c = torch.cat([b.x[:, 0, 2] for b in loader])
    assert not torch.equal(a, c) and torch.equal(a.sort().values, c.sort().values)
    # two ranks: disjoint, together everything (400 jets, even split)
    seen = []
    for rank in range(2):
        ld = make_loader(cfg, "train", 32, shuffle=True, seed=3, rank=rank, world_size=2)
        assert len(ld) == 7
        seen.append(torch.cat([b.p4[:, 0, 3] for b in ld]))
    assert len(seen[0]) == len(seen[1]) == 200
    all_e = torch.cat(seen)
    assert len(set(all_e.tolist())) == 400
    assert len(make_loader(cfg, "train", 32, shuffle=False, drop_last=True)) == 400 // 32


def test_workers_give_same_batches(jc_root):
    cfg = cfg_for(jc_root)
    a = [b.label for b in make_loader(cfg, "train", 100, shuffle=True, seed=1)]
    b = [b.label for b in make_loader(dict(cfg, num_workers=1), "train", 100, shuffle=True, seed=1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == 4


def test_class_subset_only_opens_its_files(tmp_path):
    root = str(tmp_path)
    write_jetclass(os.path.join(root, "train"), 30, classes=["QCD", "Hbb", "Tbqq"], seed=4)
    with open(os.path.join(root, "train", "HToBB_000.root"), "wb") as f:      # would fail if opened
        f.write(b"not a root file")
    cfg = cfg_for(root, classes=["Tbqq", "QCD"])
    arrays = load_arrays(cfg, "train")
    assert np.bincount(arrays["label"]).tolist() == [30, 30]
    assert dataset_info(cfg)["class_names"] == ["Tbqq", "QCD"]
    # Tbqq -> 0: the Tbqq file's jets carry label 0
    direct = FEATURE_SETS["mpmv1"].compute(read_jetclass(os.path.join(root, "train", "TTBar_000.root")))
    sel = arrays["label"] == 0
    np.testing.assert_array_equal(np.sort(arrays["x"][sel][:, 0, 2]), np.sort(direct["x"][:, 0, 2]))
    with pytest.raises(DataError, match="HToBB_000.root.*cannot open"):
        load_arrays(cfg_for(root, classes=["QCD", "Hbb", "Tbqq"]), "train")


def test_n_per_class_and_max_jets(jc_root):
    cfg = cfg_for(jc_root, classes=["QCD", "Tbqq", "Wqq"])
    ld = make_loader(cfg, "train", 1000, shuffle=False, n_per_class=7, subset_seed=1)
    b = next(iter(ld))
    assert torch.bincount(b.label).tolist() == [7, 7, 7]
    b2 = next(iter(make_loader(cfg, "train", 1000, shuffle=False, n_per_class=7, subset_seed=1)))
    b3 = next(iter(make_loader(cfg, "train", 1000, shuffle=False, n_per_class=7, subset_seed=2)))
    assert torch.equal(b.x, b2.x) and not torch.equal(b.x, b3.x)
    with pytest.raises(DataError, match="n_per_class=41"):
        make_loader(cfg, "train", 10, shuffle=False, n_per_class=41)
    small = load_arrays(cfg_for(jc_root), "val", max_jets=33)
    assert len(small["label"]) == 33 and len(set(small["label"].tolist())) == 10      # drawn from every file
    # max_jets converts only the first ceil(33 / 10) = 4 jets of each file
    full = load_arrays(cfg_for(jc_root), "val")
    first4 = np.concatenate([full["x"][k * N_PER_FILE:k * N_PER_FILE + 4] for k in range(10)])
    assert {a.tobytes() for a in small["x"]} <= {a.tobytes() for a in first4}


def test_toptagging_and_qg_loaders(tmp_path):
    top = str(tmp_path / "top")
    write_toptagging(os.path.join(top, "train.h5"), 30, format="fixed")
    write_toptagging(os.path.join(top, "val.h5"), 20, seed=1, format="table")
    cfg = dict(dataset="toptagging", root=top, train="train.h5", val="val.h5", test="val.h5", features="part_kin")
    b = next(iter(make_loader(cfg, "val", 20, shuffle=False)))
    assert b.x.shape == (20, 128, 7) and torch.bincount(b.label).tolist() == [10, 10]
    assert dataset_info(cfg)["class_names"] == ["QCD", "Top"]
    with pytest.raises(DataError, match="part_kinpid"):
        load_arrays(dict(cfg, features="part_kinpid"), "val")
    qg = str(tmp_path / "qg")
    write_qg(os.path.join(qg, "QG_jets.npz"), 40, seed=1, max_particles=10)
    write_qg(os.path.join(qg, "QG_jets_1.npz"), 40, seed=2, max_particles=30)
    cfg = dict(dataset="qg", root=qg, train="QG_jets*.npz@0:0.75", val="QG_jets*.npz@0.75:1", features="part_kinpid",
               num_particles=32)
    tr, va = load_arrays(cfg, "train"), load_arrays(cfg, "val")
    assert tr["x"].shape == (60, 32, 13) and va["x"].shape == (20, 32, 13)
    assert dataset_info(cfg)["class_names"] == ["Gluon", "Quark"]
    assert np.bincount(tr["label"]).tolist() == [30, 30]
    # the train/val fractions are disjoint
    assert not set(tr["p4"][:, 0, 3].tolist()) & set(va["p4"][:, 0, 3].tolist())


def test_mpmv2_through_loader(jc_root):
    cfg = cfg_for(jc_root, features="mpmv2", num_particles=32, classes=["QCD", "Hbb"])
    b = next(iter(make_loader(cfg, "val", 80, shuffle=False)))
    assert b.x.shape == (80, 32, 7) and b.pid.shape == (80, 32) and b.pid.dtype == torch.int64
    assert int(b.pid.max()) <= 7 and (b.pid[~b.mask] == 0).all()
    assert glob.glob(os.path.join(jc_root, ".cache", "mpmv2_quantiles.*.npz"))
    x = b.x[b.mask]
    assert abs(float(x[:, 0].mean())) < 0.5 and 0.5 < float(x[:, 0].std()) < 1.5     # ~N(0,1) pT


def test_bad_config(jc_root):
    with pytest.raises(DataError, match="unknown feature set 'nope'"):
        dataset_info(cfg_for(jc_root, features="nope"))
    with pytest.raises(DataError, match="matches no file"):
        load_arrays(cfg_for(jc_root, train="missing/*.root"), "train")
    with pytest.raises(DataError, match="classes"):
        dataset_info(cfg_for(jc_root, classes=["Top"]))
    with pytest.raises(DataError, match="unknown key.*'featurs'"):
        dataset_info(dict(cfg_for(jc_root), featurs="mpmv1"))
    with pytest.raises(DataError, match="dataset must be one of"):
        dataset_info(cfg_for(jc_root, dataset="jetnet"))


def test_prepare_cli_fills_the_cache(tmp_path, capsys, monkeypatch):
    root = str(tmp_path)
    write_jetclass(os.path.join(root, "train"), 10, classes=["QCD", "Tbl"], seed=6)
    data_mod.main(["--dataset", "jetclass", "--root", root, "--features", "omnijet", "--splits", "train",
                  "--classes", "QCD,Tbl"])
    assert "train: 20 jets cached" in capsys.readouterr().out
    assert len(entries(os.path.join(root, ".cache"))) == 2
    monkeypatch.setattr(jetclass, "iter_jetclass", lambda *a, **k: (_ for _ in ()).throw(AssertionError("reread")))
    assert load_arrays(cfg_for(root, features="omnijet", classes=["QCD", "Tbl"]), "train")["x"].shape == (20, 128, 3)
