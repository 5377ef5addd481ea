"""End-to-end simulation: tiny JetClass / top-tagging / quark-gluon samples in the exact published formats."""
from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sim_fixtures import (JETCLASS_JETS_PER_CLASS, QG_JETS, TOPTAGGING_JETS, sim_jetclass, sim_qg,  # noqa: F401
                          sim_toptagging)

pytest.importorskip("pythia8mc")
uproot = pytest.importorskip("uproot")

from common.simulate.processes import JETCLASS_CLASSES, JETCLASS_PREFIX, LABEL_CODES  # noqa: E402
from common.simulate.writers import JETCLASS_BRANCHES  # noqa: E402

pytestmark = [pytest.mark.sim, pytest.mark.slow]
PREFIX_CLASS = {v: k for k, v in JETCLASS_PREFIX.items()}
ROOT_TYPES = {**{f"part_{f}": "float[]" for f in ("px", "py", "pz", "energy", "deta", "dphi", "d0val", "d0err",
                                                  "dzval", "dzerr", "charge")},
              **{f"part_is{f}": "int32_t[]" for f in ("ChargedHadron", "NeutralHadron", "Photon", "Electron", "Muon")},
              "label_QCD": "float", **{f"label_{c}": "bool" for c in ("Hbb", "Hcc", "Hgg", "H4q", "Hqql")},
              **{f"label_{c}": "int32_t" for c in ("Zqq", "Wqq", "Tbqq", "Tbl")}}


def _files(d):
    return sorted(glob.glob(os.path.join(d, "*", "*.root")))


def test_jetclass_layout_and_types(sim_jetclass):
    files = _files(sim_jetclass)
    assert {os.path.basename(os.path.dirname(f)) for f in files} == {"train", "val", "test"}
    assert {re.sub(r"_\d+\.root$", "", os.path.basename(f)) for f in files} == set(JETCLASS_PREFIX.values())
    assert not glob.glob(os.path.join(sim_jetclass, "**", "*.tmp"), recursive=True)
    total = {c: 0 for c in JETCLASS_CLASSES}
    for f in files:
        with uproot.open(f) as fh:
            tree = fh["tree"]
            assert set(tree.keys()) == set(JETCLASS_BRANCHES) | {"npart"}, f
            assert len(JETCLASS_BRANCHES) == 41
            for name in JETCLASS_BRANCHES:
                want = ROOT_TYPES.get(name, "float")
                assert tree[name].typename == want, (f, name, tree[name].typename)
            a = tree.arrays(library="np")
        cls = PREFIX_CLASS[re.sub(r"_\d+\.root$", "", os.path.basename(f))]
        total[cls] += len(a["jet_pt"])
        labels = np.stack([a[f"label_{c}"].astype(np.int64) for c in JETCLASS_CLASSES], axis=1)
        assert (labels.sum(axis=1) == 1).all(), f
        assert (labels.argmax(axis=1) == JETCLASS_CLASSES.index(cls)).all(), f
        assert np.isin(a["aux_truth_match"], LABEL_CODES[cls]).all()
        assert ((a["jet_pt"] > 500) & (a["jet_pt"] < 1000) & (np.abs(a["jet_eta"]) < 2)).all()
        for b in range(len(a["jet_pt"])):
            px, py, pz, e = (a[f"part_{k}"][b].astype(np.float64) for k in ("px", "py", "pz", "energy"))
            pt = np.hypot(px, py)
            assert len(pt) == a["jet_nparticles"][b] == a["npart"][b]
            assert (np.diff(pt) <= 1e-3).all(), "constituents not pT-ordered"
            for k in JETCLASS_BRANCHES:
                if k.startswith("part_"):
                    assert np.isfinite(a[k][b]).all(), k
            eta = np.arcsinh(pz / pt)
            sign = 1.0 if a["jet_eta"][b] > 0 else -1.0
            np.testing.assert_allclose(a["part_deta"][b], sign * (eta - a["jet_eta"][b]), atol=2e-3)
            assert (np.abs(a["part_dphi"][b]) <= np.pi).all()
            assert np.hypot(px.sum(), py.sum()) == pytest.approx(a["jet_pt"][b], rel=1e-3)
            onehot = sum(a[f"part_is{k}"][b] for k in ("ChargedHadron", "NeutralHadron", "Photon", "Electron", "Muon"))
            assert onehot.max() <= 1
            charged = a["part_charge"][b] != 0
            assert (a["part_d0err"][b][charged] > 0).all() and (a["part_d0err"][b][~charged] == 0).all()
        for k in ("jet_sdmass", "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4"):
            assert np.isfinite(a[k]).all()
        assert (a["jet_tau1"] > 0).all() and (a["jet_sdmass"] >= 0).all()  # kT axes: tau2 <= tau1 is not guaranteed
    assert all(n == JETCLASS_JETS_PER_CLASS for n in total.values()), total


def test_jetclass_resume_skips_finished_files(sim_jetclass):
    from common.simulate import simulate_jetclass

    mtimes = {f: os.stat(f).st_mtime_ns for f in _files(sim_jetclass)}
    t0 = time.time()
    results = simulate_jetclass(str(sim_jetclass), JETCLASS_JETS_PER_CLASS, seed=7, workers=2)
    assert results == [] and time.time() - t0 < 5
    assert {f: os.stat(f).st_mtime_ns for f in _files(sim_jetclass)} == mtimes
    with pytest.raises(ValueError, match="different settings"):
        simulate_jetclass(str(sim_jetclass), JETCLASS_JETS_PER_CLASS, seed=8, workers=1)


def test_jetclass_deterministic_for_fixed_seed(tmp_path):
    from common.simulate import simulate_jetclass

    arrays = []
    for run, workers in (("a", 1), ("b", 2)):
        simulate_jetclass(str(tmp_path / run), 6, seed=3, workers=workers, classes=["Hqql"], splits=(1, 0, 0),
                          per_file=3)
        files = _files(tmp_path / run)
        assert len(files) == 2
        arrays.append([uproot.open(f)["tree"].arrays(library="np") for f in files])
    for x, y in zip(*arrays):
        for k in JETCLASS_BRANCHES:
            for u, v in zip(x[k], y[k]):
                np.testing.assert_array_equal(u, v)
    # Hqql: both W charges decay hadronically (no charge bias from onPosIfAny/onNegIfAny)
    simulate_jetclass(str(tmp_path / "c"), 6, seed=4, workers=1, classes=["Hqql"], splits=(1, 0, 0))
    other = uproot.open(_files(tmp_path / "c")[0])["tree"].arrays(["jet_pt"], library="np")
    assert not np.array_equal(other["jet_pt"][:3], arrays[0][0]["jet_pt"])


def test_killed_run_leaves_no_half_file_and_resumes(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "common.simulate", "jetclass", "--jets-per-class", "120", "--jets-per-file", "8",
           "--classes", "Wqq", "--splits", "1,0,0", "--workers", "1", "--seed", "5", "--out", str(out)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not _files(out):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _files(out)
    assert 0 < len(finished) < 15, "the run finished before it could be killed"
    for f in finished:  # whatever exists under its final name is complete
        assert uproot.open(f)["tree"].num_entries == 8
    subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert len(_files(out)) == 15
    assert not glob.glob(str(out / "**" / "*.tmp"), recursive=True)


def test_atomic_write_failure_leaves_nothing(tmp_path):
    from common.atomic import atomic_path

    target = tmp_path / "x.root"
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and not (tmp_path / "x.root.tmp").exists()


def test_atlas_and_cms_detectors_differ():
    from common.simulate.generate import GenConfig, generate
    from common.simulate.processes import jetclass_process

    out = {}
    for det in ("cms", "atlas"):
        jets, _ = generate(GenConfig(jetclass_process("Wqq"), detector=det), 11, 3)
        out[det] = jets
    # same Pythia events (same seed), different response: multiplicities / energies / IP errors differ
    cms = np.concatenate([j.p["d0err"] for j in out["cms"]])
    atl = np.concatenate([j.p["d0err"] for j in out["atlas"]])
    assert len(cms) != len(atl) or not np.allclose(cms, atl)
    assert [round(j.pt, 3) for j in out["cms"]] != [round(j.pt, 3) for j in out["atlas"]]


def test_toptagging_layout(sim_toptagging):
    import h5py
    import pandas as pd

    for split in ("train", "val", "test"):
        path = sim_toptagging / f"{split}.h5"
        with h5py.File(path, "r") as f:
            assert "table" in f
        df = pd.read_hdf(path, key="table")
        cols = [f"{c}_{i}" for i in range(200) for c in ("E", "PX", "PY", "PZ")]
        assert list(df.columns) == cols + ["truthE", "truthPX", "truthPY", "truthPZ", "ttv", "is_signal_new"]
        assert np.isfinite(df.to_numpy(np.float64)).all()
        y = df["is_signal_new"].to_numpy()
        assert set(np.unique(y)) <= {0, 1} and abs(y.sum() - (len(y) - y.sum())) <= 1
        p = df[cols].to_numpy().reshape(len(df), 200, 4)
        pt = np.hypot(p[..., 1], p[..., 2])
        jet_pt = np.hypot(p[..., 1].sum(1), p[..., 2].sum(1))
        assert ((jet_pt > 549) & (jet_pt < 651)).all()
        assert (np.diff(pt, axis=1) <= 1e-3).all()
        assert ((df["truthE"] > 0) == (y == 1)).all()
    assert sum(len(pd.read_hdf(sim_toptagging / f"{s}.h5", key="table")) for s in ("train", "val", "test")) \
        == TOPTAGGING_JETS
    assert not (sim_toptagging / ".parts").exists()


def test_qg_layout(sim_qg):
    files = sorted(glob.glob(str(sim_qg / "QG_jets*.npz")))
    assert [os.path.basename(f) for f in files] == ["QG_jets.npz", "QG_jets_1.npz"]
    n = 0
    for f in files:
        with np.load(f) as d:
            X, y = d["X"], d["y"]
        assert X.ndim == 3 and X.shape[2] == 4 and len(y) == len(X)
        assert set(np.unique(y)) <= {0.0, 1.0}
        mask = X[..., 0] > 0
        assert (mask[:, :-1] >= mask[:, 1:]).all(), "zero padding must follow the particles"
        assert (np.diff(X[..., 0], axis=1) <= 1e-9).all()
        px = (X[..., 0] * np.cos(X[..., 2])).sum(1)
        py = (X[..., 0] * np.sin(X[..., 2])).sum(1)
        assert ((np.hypot(px, py) > 490) & (np.hypot(px, py) < 560)).all()
        assert np.isin(np.abs(X[..., 3][mask]), [11, 13, 22, 130, 211, 321, 2112, 2212]).all()  # EnergyFlow species
        n += len(y)
    assert n == QG_JETS


def test_validate_prints_peaks(sim_jetclass, tmp_path, capsys):
    from common.simulate.validate import validate

    peaks = validate(str(sim_jetclass), out=str(tmp_path))
    assert (tmp_path / "observables.png").stat().st_size > 1000
    assert set(peaks) == set(JETCLASS_CLASSES)
    assert 130 < peaks["Tbqq"]["mass"] < 220  # a top with 10 jets: loose
    assert "top near 173" in capsys.readouterr().out


def test_no_w_charge_bias_in_leptonic_top():
    """Tbl alternates the charge-conjugate W decay assignment event by event: both t and tbar give Tbl jets."""
    from common.simulate.generate import GenConfig, JetGenerator
    from common.simulate.processes import jetclass_process

    gen = JetGenerator(GenConfig(jetclass_process("Tbl")), 2)
    assert len(gen.pythias) == 2
    it = iter(gen)
    pids = {next(it).truth[3] for _ in range(10)}
    assert pids == {6.0, -6.0}


def test_unmatchable_signal_events_are_not_clustered_and_a_selection_that_accepts_nothing_stops():
    """A signal event in which no resonance can give a matched jet skips the clustering; with no such jet ever
    possible the generator stops at max_events instead of looping for ever."""
    from common.simulate.generate import GenConfig, JetGenerator
    from common.simulate.processes import jetclass_process

    gen = JetGenerator(GenConfig(jetclass_process("Hbb"), jet_r=0.01), 5)  # no b pair fits in R = 0.01
    gen.max_events = 15
    with pytest.raises(RuntimeError, match="accepts"):
        next(iter(gen))
    assert gen.n_events == 15 and gen.n_unmatchable == 15 and gen.cpu["clustering"] == 0.0


def test_stage_timers_and_the_constituent_copy_match_pythia():
    """`cpu` splits the run into Pythia and our stages (bench_simulate prints them); the constituent copy takes the
    charge and the mass from the PDG id, which must give Pythia's own charge and energy for every constituent, and
    reads the production vertex of displaced tracks only (the others are within PROMPT_MM of the origin)."""
    from common.simulate.generate import PROMPT_MM, STAGES, GenConfig, JetGenerator
    from common.simulate.processes import jetclass_process

    gen = JetGenerator(GenConfig(jetclass_process("Tbqq")), 6)
    c0 = time.process_time()
    it = iter(gen)
    jets = [next(it) for _ in range(5)]
    total = time.process_time() - c0
    assert set(gen.cpu) == set(STAGES) and all(gen.cpu[k] > 0 for k in STAGES), gen.cpu
    assert sum(gen.cpu.values()) <= total  # the stages are disjoint parts of the run
    assert sum(gen.events) == gen.n_events and gen.n_jets >= len(jets)

    ev, sj = gen.pythias[0].event, gen.slowjet
    assert sj.analyze(ev) and sj.sizeJet() > 0
    idx = [i for j in range(sj.sizeJet()) for i in sj.constituents(j)]
    rows = gen._particles(ev, idx)
    want = [ev[i].charge() for i in idx]
    np.testing.assert_array_equal(rows[:, 4], want)
    np.testing.assert_array_equal(rows[:, 8], [ev[i].id() for i in idx])
    np.testing.assert_array_equal(rows[:, :3], [(ev[i].px(), ev[i].py(), ev[i].pz()) for i in idx])
    np.testing.assert_allclose(rows[:, 3], [ev[i].e() for i in idx], rtol=1e-10, atol=0)  # E from the pole mass
    assert {-1.0, 0.0, 1.0} <= set(want)
    vtx = np.array([(ev[i].xProd(), ev[i].yProd(), ev[i].zProd()) for i in idx])
    charged = rows[:, 4] != 0
    assert (rows[~charged, 5:8] == 0).all()
    np.testing.assert_allclose(rows[charged, 5:8], vtx[charged], rtol=0, atol=PROMPT_MM)
    displaced = charged & (np.abs(vtx).max(axis=1) > PROMPT_MM)
    assert displaced.any()  # top jets: b-hadron decay products
    np.testing.assert_array_equal(rows[displaced, 5:8], vtx[displaced])


def test_a_final_state_species_with_a_width_keeps_its_own_energy():
    """E comes from the pole mass, except for a final-state species with a width (here the rho, left undecayed),
    whose particles keep Pythia's E."""
    from common.simulate.generate import GenConfig, JetGenerator
    from common.simulate.processes import jetclass_process

    gen = JetGenerator(GenConfig(jetclass_process("QCD"), extra_settings=["113:mayDecay = off"]), 7)
    py, sj = gen.pythias[0], gen.slowjet
    seen = 0
    for _ in range(5):
        assert py.next() and sj.analyze(py.event)
        ev = py.event
        idx = [i for j in range(sj.sizeJet()) for i in sj.constituents(j)]
        rows = gen._particles(ev, idx)
        rho = [k for k, i in enumerate(idx) if ev[i].id() == 113]
        seen += len(rho)
        for k in rho:
            assert rows[k, 3] == ev[idx[k]].e() and ev[idx[k]].m() != py.particleData.m0(113)
        np.testing.assert_allclose(rows[:, 3], [ev[i].e() for i in idx], rtol=1e-10, atol=0)
    assert seen > 0 and np.isnan(gen.mass[113])
