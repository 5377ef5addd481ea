"""JetClass / Top-tagging / quark-gluon readers on tiny files in the exact formats, and every bad input."""
import os

import numpy as np
import pandas as pd
import pytest
import uproot

from common.data.features import DataError
from common.data.jetclass import BRANCHES, CLASS_NAMES, LABEL_DTYPES, class_of_file, read_jetclass
from common.data.quarkgluon import read_qg
from common.data.toptagging import read_toptagging

from tests.data_factory import (jetclass_arrays, toptagging_frame, write_jetclass, write_jetclass_arrays, write_qg,
                                write_toptagging)

JC_TYPES = {"AsJagged(AsDtype('>f4'))": "float[]", "AsJagged(AsDtype('>i4'))": "int32[]", "AsDtype('>f4')": "float",
            "AsDtype('bool')": "bool", "AsDtype('>i4')": "int32"}


def test_jetclass_file_has_the_41_branches_with_real_dtypes(tmp_path):
    path = write_jetclass(str(tmp_path), 20, classes=["Hbb"])[0]
    tree = uproot.open(path)["tree"]
    names = [k for k in tree.keys() if k != "npart"]        # uproot's counter branch, absent in real JetClass
    assert sorted(names) == sorted(BRANCHES) and len(BRANCHES) == 41
    kinds = {b: JC_TYPES[repr(tree[b].interpretation)] for b in names}
    assert kinds["part_px"] == "float[]" and kinds["part_isMuon"] == "int32[]"
    assert kinds["label_QCD"] == "float" and kinds["label_Hbb"] == "bool" and kinds["label_Tbl"] == "int32"
    assert kinds["jet_sdmass"] == "float" and kinds["aux_truth_match"] == "float"
    assert {LABEL_DTYPES[f"label_{c}"] for c in CLASS_NAMES} == {np.float32, np.bool_, np.int32}


def test_jetclass_read_shapes_labels_order(tmp_path):
    paths = write_jetclass(str(tmp_path), 50)
    for k, p in enumerate(paths):
        raw = read_jetclass(p, step_size=17)                  # several chunks, different widths
        assert class_of_file(p) == CLASS_NAMES[k]
        assert raw.label.dtype == np.int64 and (raw.label == k).all()
        assert raw.p4.dtype == np.float32 and raw.p4.shape[0] == 50 and raw.p4.shape[2] == 4
        assert raw.jet.shape == (50, 6) and np.isfinite(raw.jet).all()
        pt = np.where(raw.mask, np.hypot(raw.p4[..., 0], raw.p4[..., 1]), -1)
        assert (np.diff(pt, axis=1) <= 0).all()               # pT-descending, padding last
        assert (raw.mask.sum(1) == raw.jet[:, 5]).all()       # jet_nparticles
        assert {"deta", "dphi", "charge", "isPhoton", "d0val", "dzerr"} <= set(raw.part)


def test_jetclass_values_and_sorting_enforced(tmp_path):
    a = jetclass_arrays(30, "Tbqq", seed=3)
    counts = a["_counts"]
    # reverse the particle order inside every jet: the reader must restore pT order, with the other fields
    starts = np.cumsum(counts) - counts
    perm = np.concatenate([s + np.arange(c)[::-1] for s, c in zip(starts, counts)])
    b = {k: (v[perm] if k.startswith("part_") else v) for k, v in a.items()}
    raw_sorted = read_jetclass(write_jetclass_arrays(str(tmp_path / "s" / "TTBar_000.root"), a))
    raw_rev = read_jetclass(write_jetclass_arrays(str(tmp_path / "r" / "TTBar_000.root"), b))
    np.testing.assert_array_equal(raw_sorted.p4, raw_rev.p4)
    np.testing.assert_array_equal(raw_sorted.part["d0val"], raw_rev.part["d0val"])
    # values: first jet's first particle
    np.testing.assert_allclose(raw_sorted.p4[0, 0], [a["part_px"][0], a["part_py"][0], a["part_pz"][0],
                                                     a["part_energy"][0]])
    assert raw_sorted.part["deta"][0, 0] == a["part_deta"][0]
    np.testing.assert_allclose(raw_sorted.jet[:, 0], a["jet_pt"])


def test_jetclass_lz4_like_the_real_files(tmp_path):
    pytest.importorskip("lz4")
    pytest.importorskip("xxhash")
    a = jetclass_arrays(25, "Wqq", seed=8)
    lz4 = read_jetclass(write_jetclass_arrays(str(tmp_path / "l" / "WToQQ_000.root"), a, compression=uproot.LZ4(4)))
    zlib = read_jetclass(write_jetclass_arrays(str(tmp_path / "z" / "WToQQ_000.root"), a))
    np.testing.assert_array_equal(lz4.p4, zlib.p4)
    assert isinstance(uproot.open(tmp_path / "l" / "WToQQ_000.root").file.compression, uproot.LZ4)


def test_jetclass_class_prefix():
    assert class_of_file("/x/TTBarLep_012.root") == "Tbl" and class_of_file("TTBar_000.root") == "Tbqq"
    assert class_of_file("HToWW2Q1L_100.root") == "Hqql" and class_of_file("ZJetsToNuNu_000.root") == "QCD"
    with pytest.raises(DataError, match="Foo_000.root.*<proc>_NNN.root"):
        class_of_file("Foo_000.root")


def test_toptagging_both_layouts_same_arrays(tmp_path):
    fixed = read_toptagging(write_toptagging(str(tmp_path / "f.h5"), 40, format="fixed"), step_size=15)
    table = read_toptagging(write_toptagging(str(tmp_path / "t.h5"), 40, format="table"))
    np.testing.assert_array_equal(fixed.p4, table.p4)
    np.testing.assert_array_equal(fixed.label, table.label)
    assert fixed.label.tolist() == [i % 2 for i in range(40)]
    df = toptagging_frame(40)
    np.testing.assert_allclose(fixed.p4[3, 0], df.loc[3, ["PX_0", "PY_0", "PZ_0", "E_0"]].to_numpy(), rtol=1e-6)
    assert (fixed.mask.sum(1) == (df[[f"E_{i}" for i in range(200)]].to_numpy() > 0).sum(1)).all()
    pt = np.where(fixed.mask, np.hypot(fixed.p4[..., 0], fixed.p4[..., 1]), -1)
    assert (np.diff(pt, axis=1) <= 0).all()
    # jet = constituent sum, ParT-style deta flip
    s = fixed.p4.sum(1)
    np.testing.assert_allclose(fixed.jet[:, 0], np.hypot(s[:, 0], s[:, 1]), rtol=1e-5)


def test_toptagging_selects_columns_by_name(tmp_path):
    df = toptagging_frame(20)
    cols = list(df.columns)
    shuffled = df[cols[::-1]]                                  # reversed column order, also split into blocks
    shuffled.to_hdf(tmp_path / "s.h5", key="table", format="table", mode="w", data_columns=["is_signal_new"])
    df.to_hdf(tmp_path / "o.h5", key="table", format="fixed", mode="w")
    a, b = read_toptagging(str(tmp_path / "o.h5")), read_toptagging(str(tmp_path / "s.h5"))
    np.testing.assert_array_equal(a.p4, b.p4)
    np.testing.assert_array_equal(a.label, b.label)


def test_qg_two_files_different_lengths(tmp_path):
    p1 = write_qg(str(tmp_path / "QG_jets.npz"), 30, seed=1, max_particles=12)
    p2 = write_qg(str(tmp_path / "QG_jets_1.npz"), 30, seed=2, max_particles=25)
    m1, m2 = np.load(p1)["X"].shape[1], np.load(p2)["X"].shape[1]
    assert m1 != m2
    r1, r2 = read_qg(p1), read_qg(p2)
    assert r1.label.tolist() == [i % 2 for i in range(30)] and r1.p4.shape[1] == m1
    x = np.load(p1)["X"]
    pt0 = x[0, 0, 0]
    assert np.hypot(*r1.p4[0, 0, :2]) == pytest.approx(pt0, rel=1e-5)
    # massless p4 from (pT, y as eta, phi)
    np.testing.assert_allclose(r1.p4[0, 0, 3], pt0 * np.cosh(x[0, 0, 1]), rtol=1e-5)
    pid = x[0, 0, 3]
    expect_q = {211: 1, -211: -1, 321: 1, -321: -1, 2212: 1, -2212: -1, 11: -1, -11: 1, 13: -1, -13: 1}.get(int(pid), 0)
    assert r1.part["charge"][0, 0] == expect_q
    from common.data.features import RawJets
    both = RawJets.concatenate([r1, r2])
    assert both.p4.shape == (60, max(m1, m2), 4) and both.mask[:30, m1:].sum() == 0


# ------------------------------------------------------------------------------------------------- bad input
def test_jetclass_bad_inputs(tmp_path):
    good = jetclass_arrays(20, "QCD", seed=5)
    # missing branch
    p = write_jetclass_arrays(str(tmp_path / "a" / "ZJetsToNuNu_000.root"), good, drop=("part_d0val",))
    with pytest.raises(DataError, match=r"ZJetsToNuNu_000.root.*part_d0val"):
        read_jetclass(p)
    # labels contradict the file prefix
    p = write_jetclass_arrays(str(tmp_path / "b" / "HToBB_000.root"), good)
    with pytest.raises(DataError, match=r"HToBB_000.root.*prefix says class Hbb.*QCD"):
        read_jetclass(p)
    # not one-hot
    bad = dict(good, label_Hbb=np.ones(20, bool))
    p = write_jetclass_arrays(str(tmp_path / "c" / "ZJetsToNuNu_000.root"), bad)
    with pytest.raises(DataError, match="one-hot"):
        read_jetclass(p)
    # NaN / inf
    for v in (np.nan, np.inf):
        px = good["part_px"].copy()
        px[7] = v
        p = write_jetclass_arrays(str(tmp_path / f"d{v}" / "ZJetsToNuNu_000.root"), dict(good, part_px=px))
        with pytest.raises(DataError, match=r"ZJetsToNuNu_000.root.*part_px.*NaN/inf"):
            read_jetclass(p)
    # wrong tree name
    p = str(tmp_path / "e" / "ZJetsToNuNu_000.root")
    os.makedirs(os.path.dirname(p))
    with uproot.recreate(p) as f:
        f.mktree("events", {"x": np.float32})
        f["events"].extend({"x": np.zeros(3, np.float32)})
    with pytest.raises(DataError, match=r"ZJetsToNuNu_000.root.*no TTree 'tree'"):
        read_jetclass(p)
    # empty tree
    p = str(tmp_path / "f" / "ZJetsToNuNu_000.root")
    write_jetclass_arrays(p, {k: (v[:0] if k != "_counts" else v[:0]) for k, v in good.items()})
    with pytest.raises(DataError, match="no jets"):
        read_jetclass(p)
    # zero-byte, garbage, truncated
    src = open(write_jetclass_arrays(str(tmp_path / "g" / "ZJetsToNuNu_000.root"), good), "rb").read()
    for name, content in [("empty", b""), ("garbage", os.urandom(5000)), ("trunc", src[: len(src) // 2])]:
        p = tmp_path / name / "ZJetsToNuNu_000.root"
        p.parent.mkdir()
        p.write_bytes(content)
        with pytest.raises(DataError, match=rf"{name}/ZJetsToNuNu_000.root.*(corrupt|truncated)"):
            read_jetclass(str(p))
    # wrong class prefix
    p = write_jetclass_arrays(str(tmp_path / "h" / "QCD_000.root"), good)
    with pytest.raises(DataError, match="QCD_000.root: not a JetClass file name"):
        read_jetclass(p)


def test_toptagging_bad_inputs(tmp_path):
    df = toptagging_frame(10)
    df.to_hdf(tmp_path / "k.h5", key="jets", format="fixed", mode="w")
    with pytest.raises(DataError, match=r"k.h5: no key 'table'"):
        read_toptagging(str(tmp_path / "k.h5"))
    df.drop(columns=["PX_5"]).to_hdf(tmp_path / "c.h5", key="table", format="table", mode="w")
    with pytest.raises(DataError, match=r"c.h5: missing column.*PX_5"):
        read_toptagging(str(tmp_path / "c.h5"))
    df.drop(columns=["is_signal_new"]).to_hdf(tmp_path / "l.h5", key="table", format="fixed", mode="w")
    with pytest.raises(DataError, match=r"l.h5: missing column.*is_signal_new"):
        read_toptagging(str(tmp_path / "l.h5"))
    nan = df.copy()
    nan.loc[2, "PY_0"] = np.nan
    nan.to_hdf(tmp_path / "n.h5", key="table", format="fixed", mode="w")
    with pytest.raises(DataError, match=r"n.h5: 1 NaN/inf"):
        read_toptagging(str(tmp_path / "n.h5"))
    src = open(write_toptagging(str(tmp_path / "g.h5"), 50), "rb").read()
    for name, content in [("empty", b""), ("garbage", os.urandom(4000)), ("trunc", src[: len(src) // 2])]:
        (tmp_path / f"{name}.h5").write_bytes(content)
        with pytest.raises(DataError, match=rf"{name}.h5: .*(corrupt|truncated)"):
            read_toptagging(str(tmp_path / f"{name}.h5"))
    pd.DataFrame(columns=df.columns, dtype=np.float32).to_hdf(tmp_path / "z.h5", key="table", format="fixed")
    with pytest.raises(DataError, match="z.h5: key 'table' holds no jets"):
        read_toptagging(str(tmp_path / "z.h5"))


def test_qg_bad_inputs(tmp_path):
    np.savez(tmp_path / "noy.npz", X=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match=r"noy.npz: npz needs arrays 'X' and 'y'"):
        read_qg(str(tmp_path / "noy.npz"))
    np.savez(tmp_path / "shape.npz", X=np.zeros((3, 4, 3)), y=np.zeros(3))
    with pytest.raises(DataError, match=r"shape.npz: expected X of shape"):
        read_qg(str(tmp_path / "shape.npz"))
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 4, 4)), y=np.zeros(0))
    with pytest.raises(DataError, match="empty.npz: holds no jets"):
        read_qg(str(tmp_path / "empty.npz"))
    x = np.load(write_qg(str(tmp_path / "g.npz"), 10))["X"]
    x[1, 0, 1] = np.inf
    np.savez(tmp_path / "inf.npz", X=x, y=np.zeros(10))
    with pytest.raises(DataError, match="inf.npz: .*NaN/inf"):
        read_qg(str(tmp_path / "inf.npz"))
    src = (tmp_path / "g.npz").read_bytes()
    for name, content in [("zero", b""), ("garbage", os.urandom(3000)), ("trunc", src[: len(src) // 2])]:
        (tmp_path / f"{name}.npz").write_bytes(content)
        with pytest.raises(DataError, match=rf"{name}.npz: cannot read as npz"):
            read_qg(str(tmp_path / f"{name}.npz"))
