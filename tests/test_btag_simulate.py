"""BTag (flavour-tagging) simulation, its two layouts and reader, the physics rules it implements and the
calibration checks of `python -m common.simulate validate`."""
from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest

from common.data.btag import H5_KEYS, READ_BRANCHES, lifetime_signing, read_btag, track_origin
from common.data.features import DataError

BTAG_SEED = 7
PER_FLAVOUR = 40  # 24 / 8 / 8 per flavour over train / valid / test


@pytest.fixture(scope="session")
def sim_btag(tmp_path_factory):
    pytest.importorskip("pythia8mc")
    from common.simulate.run import simulate_btag

    out = tmp_path_factory.mktemp("sim_btag")
    simulate_btag(str(out), PER_FLAVOUR, seed=BTAG_SEED, workers=1, per_file=48)  # train in two files
    return out


def _h5(d):
    return sorted(glob.glob(os.path.join(d, "*.h5")))


def _fake_jet(n=3, flav=5):
    """A hand-made jet record as common/simulate/btag.py produces them."""
    from common.simulate.btag import TRACK_FIELDS

    rec = {f"trk_{k}": np.zeros(n) for k in TRACK_FIELDS}
    rec["trk_pt"] = np.linspace(10, 2, n)
    rec["trk_d0err"] = rec["trk_z0err"] = np.full(n, 0.01)
    rec["trk_pdg_id"] = np.full(n, 211)
    rec["trk_charge"] = np.ones(n)
    rec.update(jet_pt=50.0, jet_eta=0.1, jet_phi=0.2, jet_M=8.0, jet_flav=flav, n_trks=n,
               hadron_pdgid=np.array([521.0]), hadron_pt=np.array([30.0]), hadron_eta=np.array([0.1]),
               hadron_phi=np.array([0.2]), hadron_x=np.zeros(1), hadron_y=np.zeros(1), hadron_z=np.array([1.5]),
               true_vtx_x=np.zeros(1), true_vtx_y=np.zeros(1), true_vtx_z=np.zeros(1), true_vtx_L3D=np.zeros(1))
    return rec


# ------------------------------------------------------------------------------------------------ layouts
def test_layouts_and_dtypes(sim_btag):
    import h5py
    import uproot

    names = sorted(os.path.basename(f) for f in _h5(sim_btag))
    assert names == ["test_0.h5", "train_0.h5", "train_1.h5", "valid_0.h5"]  # a digit in every name (jetssl sorts)
    assert not glob.glob(os.path.join(sim_btag, "**", "*.tmp"), recursive=True)
    for f in _h5(sim_btag):
        with h5py.File(f, "r") as fh:
            assert set(fh.keys()) == set(H5_KEYS)
            n = fh["labels"].shape[0]
            for k, (dtype, shape) in H5_KEYS.items():
                assert fh[k].dtype == dtype, k
                assert fh[k].shape[0] == n and all(s is None or s == d for s, d in zip(shape, fh[k].shape[1:])), k
            mask = fh["mask"][()]
            assert (mask.sum(1) >= 2).all() and (mask.sum(1) <= 15).all()
            assert (mask[:, :-1] >= mask[:, 1:]).all()  # front-filled
            pt = fh["csts"][..., 0]
            assert (np.diff(np.where(mask, pt, -1), axis=1) <= 0).all()  # pT-ordered
            assert (fh["track_type"][()][~mask] == -1).all() and np.isin(fh["track_type"][()][mask], [0, 1, 2, 3]).all()
            assert (fh["vtx_id"][()].max(1) <= 6).all()
            assert set(np.unique(fh["csts_id"][()][mask])) <= {1, 3, 4, 5, 6, 7}  # tracks only: charged
            np.testing.assert_array_equal(fh["jets"][:, 4], mask.sum(1))  # n_trks
        root = os.path.join(sim_btag, "root", os.path.basename(f)[:-3] + ".root")
        with uproot.open(root) as fh:
            tree = fh["tree"]
            assert set(READ_BRANCHES) <= set(tree.keys())
            assert {"trk_pythia_i", "trk_phierr", "trk_ctgthetaerr", "trk_pterr", "trk_prod_x", "trk_prod_y",
                    "trk_dec_x", "trk_dec_y", "trk_dec_z", "trk_ctgtheta"} <= set(tree.keys())
            assert set(np.unique(tree["jet_flav"].array(library="np"))) <= {0, 4, 5}
            assert tree.num_entries == n


def test_root_and_h5_readers_agree(sim_btag):
    for f in _h5(sim_btag):
        a = read_btag(f)
        b = read_btag(os.path.join(sim_btag, "root", os.path.basename(f)[:-3] + ".root"))
        assert set(a) == set(b) == set(H5_KEYS)
        for k in H5_KEYS:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_equal_flavours_matched_bins(sim_btag):
    from common.simulate.btag import _bin_of

    for f in _h5(sim_btag):
        a = read_btag(f)
        counts = np.bincount(a["labels"], minlength=3)
        assert counts.min() == counts.max() > 0, (f, counts)
        bins = {}
        for lab, (pt, eta), n in zip(a["labels"], a["jets"][:, :2], a["mask"].sum(1)):
            bins.setdefault(_bin_of(pt, abs(eta), n), [0, 0, 0])[lab] += 1
        assert all(c[0] == c[1] == c[2] for c in bins.values()), bins


def test_b_jets_hold_b_tracks(sim_btag):
    a = read_btag(_h5(sim_btag)[1])
    share = [(a["track_type"][a["labels"] == lab] == 2).sum() / a["mask"][a["labels"] == lab].sum() for lab in range(3)]
    assert share[2] > 0.05 and share[2] > 3 * share[0]  # B-hadron tracks belong to b jets


# ------------------------------------------------------------------------------------------------ guarantees
def test_deterministic_and_worker_independent(sim_btag, tmp_path):
    from common.simulate.run import simulate_btag

    simulate_btag(str(tmp_path), PER_FLAVOUR, seed=BTAG_SEED, workers=2, per_file=48)
    for f in _h5(sim_btag):
        a, b = read_btag(f), read_btag(tmp_path / os.path.basename(f))
        for k in H5_KEYS:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # resumable: a rerun finds every file and writes nothing
    before = {f: os.path.getmtime(f) for f in _h5(tmp_path)}
    assert simulate_btag(str(tmp_path), PER_FLAVOUR, seed=BTAG_SEED, workers=1, per_file=48) == []
    assert before == {f: os.path.getmtime(f) for f in _h5(tmp_path)}


# ------------------------------------------------------------------------------------------------ physics rules
def test_track_origin_rule():
    # jet hadrons: a D0 (421) decaying at z = 1.5, a B+ (521) at z = 0.7, padding (pdg 0, z 0)
    had_pdg = np.array([[421.0, 521.0, 0.0]])
    had_z = np.array([[1.5, 0.7, 0.0]])
    prod_z = np.array([[0.0, 1.5, 0.7 + 5e-7, 0.3, 5e-7, 1.5 + 2e-6, 0.0]])
    mask = np.array([[True] * 6 + [False]])
    np.testing.assert_array_equal(track_origin(prod_z, mask, had_pdg, had_z), [[0, 1, 2, 3, 0, 3, -1]])
    # B wins over C at the same z; a strange baryon (3122) is no heavy hadron
    np.testing.assert_array_equal(
        track_origin(np.array([[2.0, 4.0]]), np.ones((1, 2), bool), np.array([[4122.0, 5122.0, 3122.0]]),
                     np.array([[2.0, 2.0, 4.0]])), [[2, 3]])


def test_lifetime_signing_geometry():
    from common.simulate.detector import impact_parameters

    # jet along +x (phi 0, eta 0); tracks at phi 0.1 from a vertex 5 mm along the jet (ahead) and 5 mm behind
    px, py = np.cos([0.1, 0.1]), np.sin([0.1, 0.1])
    d0, z0 = impact_parameters(np.array([5.0, -5.0]), np.zeros(2), np.array([0.3, 0.3]), px, py, np.zeros(2))
    assert d0[0] > 0 > d0[1]
    d0s, z0s = lifetime_signing(d0, z0, np.zeros(2), np.array([0.1, 0.1]), 0.0, 0.0)
    assert d0s[0] == pytest.approx(abs(d0[0])) and d0s[1] == pytest.approx(-abs(d0[1]))
    # the same geometry on the other side of the jet (track at phi -0.1, vertex ahead) is still positive
    d0m, _ = impact_parameters(np.array([5.0]), np.zeros(1), np.zeros(1), np.cos([-0.1]), np.sin([-0.1]), np.zeros(1))
    assert d0m[0] < 0 and lifetime_signing(d0m, np.zeros(1), np.zeros(1), np.array([-0.1]), 0.0, 0.0)[0][0] > 0
    # z0: |z0| sign(z0 (eta_jet - eta_trk))
    _, z0s = lifetime_signing(np.ones(2), np.array([0.2, 0.2]), np.array([0.5, -0.5]), np.zeros(2), 0.0, 0.0)
    np.testing.assert_allclose(z0s, [-0.2, 0.2])


def test_vertex_index_merging():
    from common.simulate.btag import vertex_index

    pts = np.array([[0, 0, 0], [0, 0, 5e-3],  # within 10 um of the origin: primary
                    [3.0, 0, 0],  # farthest: vertex 2
                    [1.0, 0, 0], [1.0, 0, 8e-3], [1.0, 0, 16e-3],  # linked in a chain of 8 um steps: one vertex 1
                    [0, 0, 0]])
    idx, pos = vertex_index(pts, merge_mm=0.01)
    np.testing.assert_array_equal(idx, [0, 0, 2, 1, 1, 1, 0])
    np.testing.assert_allclose(pos, [[0, 0, 0], [1.0, 0, 8e-3], [3.0, 0, 0]])
    idx, _ = vertex_index(pts, merge_mm=1e-4)  # tighter: the 8 um steps split
    assert len(set(idx.tolist())) == 6


def test_jetclass_d0_and_dz_resolutions_differ():
    pytest.importorskip("pythia8mc")
    import awkward as ak

    from common.simulate.generate import GenConfig, generate
    from common.simulate.processes import jetclass_process
    from common.simulate.writers import jetclass_branches

    jets, _ = generate(GenConfig(jetclass_process("Wqq")), 3, 2)
    part = jetclass_branches(jets)["part"]  # the JetClass writer's part_d0err / part_dzerr
    d0err, dzerr = ak.to_numpy(ak.flatten(part.d0err)), ak.to_numpy(ak.flatten(part.dzerr))
    trk = d0err > 0
    assert trk.sum() > 20 and (dzerr[trk] > d0err[trk]).all()
    from common.simulate.detector import ATLAS, CMS

    for det in (CMS, ATLAS):  # z0 worse at larger |eta| for the same pT
        s0, sz = det.ip_res(np.array([2.0, 2.0]), np.array([0.0, 2.0]))
        assert sz[1] > 2 * sz[0] and (sz > s0).all()


# ------------------------------------------------------------------------------------------------ reader errors
def test_reader_errors_name_file_and_key(sim_btag, tmp_path):
    import h5py

    src = _h5(sim_btag)[0]
    missing = tmp_path / "train_7.h5"
    shutil.copy(src, missing)
    with h5py.File(missing, "a") as fh:
        del fh["track_type"]
    with pytest.raises(DataError, match=r"train_7\.h5.*track_type"):
        read_btag(missing)
    nan = tmp_path / "train_8.h5"
    shutil.copy(src, nan)
    with h5py.File(nan, "a") as fh:
        fh["csts"][0, 0, 3] = np.nan
    with pytest.raises(DataError, match=r"train_8\.h5.*'csts'.*NaN"):
        read_btag(nan)
    shape = tmp_path / "train_9.h5"
    shutil.copy(src, shape)
    with h5py.File(shape, "a") as fh:
        jets = fh["jets"][:, :4]
        del fh["jets"]
        fh["jets"] = jets
    with pytest.raises(DataError, match=r"train_9\.h5.*'jets'.*shape"):
        read_btag(shape)
    empty = tmp_path / "test_3.h5"
    with h5py.File(empty, "w") as fh:
        for k, (dtype, shp) in H5_KEYS.items():
            fh[k] = np.zeros((0,) + tuple(1 if s is None else s for s in shp), dtype)
    with pytest.raises(DataError, match=r"test_3\.h5.*no jets"):
        read_btag(empty)


def test_root_reader_missing_branch(tmp_path):
    import uproot

    from common.simulate.btag import root_branches, write_root

    good = tmp_path / "valid_0.root"
    write_root(str(good), [_fake_jet(), _fake_jet(4, 0)])
    a = read_btag(good)
    assert a["labels"].tolist() == [2, 0] and a["mask"].sum(1).tolist() == [3, 4]
    branches = root_branches([_fake_jet()])
    del branches["hadron"]
    bad = tmp_path / "valid_1.root"
    with uproot.recreate(bad) as f:
        f["tree"] = branches
    with pytest.raises(DataError, match=r"valid_1\.root.*hadron_pdgid"):
        read_btag(bad)


# ------------------------------------------------------------------------------------------------ calibration
def test_validate_fails_on_a_doctored_sample(sim_btag, tmp_path):
    import h5py

    from common.simulate.__main__ import main
    from common.simulate.validate import btag_checks, validate_btag

    checks = validate_btag(str(sim_btag))
    assert [c.name.split(" [")[0] for c in checks][:5] == ["track origin PV", "track origin C", "track origin B",
                                                           "track origin other", "track pairs sharing a vertex"]
    for f in _h5(sim_btag):
        shutil.copy(f, tmp_path / os.path.basename(f))
        with h5py.File(tmp_path / os.path.basename(f), "a") as fh:
            tt = fh["track_type"][()]
            fh["track_type"][...] = np.where(tt >= 0, 0, -1)  # every track from the primary vertex
            fh["vtx_id"][...] = 0
    doctored = {c.name: c for c in validate_btag(str(tmp_path))}
    assert not doctored["track origin PV [%]"].passed and doctored["track origin PV [%]"].measured == 100.0
    assert not doctored["track pairs sharing a vertex [%]"].passed
    assert main(["validate", str(tmp_path)]) == 1
    # signed d0 significance: equal for all flavours fails
    a = read_btag(_h5(sim_btag)[1])
    a["csts"][..., 3] = 0.0
    sig = [c for c in btag_checks(a) if c.name.startswith("mean d0")]
    assert len(sig) == 2 and not any(c.passed for c in sig)
