"""Write simulated jets in the published on-disk formats (JetClass Zenodo 6619768, Top tagging Zenodo 2603256,
QG Zenodo 3164691). All writes atomic."""
from __future__ import annotations

import numpy as np

from ..atomic import atomic_path
from ..data.observables import jet_observables, softdrop_mass
from .generate import Jet
from .processes import JETCLASS_CLASSES, LABEL_CODES

PART_FLOAT = ("px", "py", "pz", "energy", "deta", "dphi", "d0val", "d0err", "dzval", "dzerr", "charge")
PART_INT = ("isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")
JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles", "jet_sdmass",
                "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4")
AUX_BRANCHES = ("aux_genpart_eta", "aux_genpart_phi", "aux_genpart_pid", "aux_genpart_pt", "aux_truth_match")
# JetClass' label dtypes are mixed (§A1 table): float, bool, int32
LABEL_DTYPES = {"label_QCD": np.float32, **{f"label_{c}": np.bool_ for c in ("Hbb", "Hcc", "Hgg", "H4q", "Hqql")},
                **{f"label_{c}": np.int32 for c in ("Zqq", "Wqq", "Tbqq", "Tbl")}}
JETCLASS_BRANCHES = ([f"part_{f}" for f in PART_FLOAT + PART_INT] + list(LABEL_DTYPES) + list(JET_BRANCHES)
                     + list(AUX_BRANCHES))
assert len(JETCLASS_BRANCHES) == 41
# uproot writes jagged branches as float[]/int32_t[] sharing one counter branch (real JetClass: std::vector, no counter)
COUNTER_BRANCH = "npart"



def wrap_phi(x):
    """Phi_mpi_pi: into [-pi, pi)."""
    return (x + np.pi) % (2 * np.pi) - np.pi


def pad_p4(jets: list[Jet]) -> tuple[np.ndarray, np.ndarray]:
    """(B, Nmax, 4) px, py, pz, E and mask."""
    n = np.array([len(j.p["e"]) for j in jets])
    p4 = np.zeros((len(jets), max(n.max(initial=0), 1), 4))
    mask = np.arange(p4.shape[1])[None, :] < n[:, None]
    for b, j in enumerate(jets):
        p4[b, : n[b]] = np.stack([j.p["px"], j.p["py"], j.p["pz"], j.p["e"]], axis=1)
    return p4, mask


def jet_substructure(jets: list[Jet], chunk: int = 4096) -> dict[str, np.ndarray]:
    """tau1..tau4 (N-subjettiness, beta = 1, exclusive-kT axes) and the soft-drop mass (beta = 0, z_cut = 0.1,
    R0 = 0.8), as Delphes' FatJet; computed in chunks so that padding stays small in memory."""
    parts = []
    for s in range(0, len(jets), chunk):
        p4, mask = pad_p4(jets[s:s + chunk])
        o = jet_observables(p4, mask, n_tau=4)
        o["sdmass"] = softdrop_mass(p4, mask, zcut=0.1, beta=0.0, r0=0.8)
        parts.append(o)
    return {k: np.concatenate([o[k] for o in parts]) for k in parts[0]}


def jetclass_branches(jets: list[Jet]) -> dict:
    """The 41 JetClass branches (particles zipped under "part") from simulated jets."""
    import awkward as ak

    counts = np.array([len(j.p["e"]) for j in jets], dtype=np.int64)
    cat = {k: np.concatenate([j.p[k] for j in jets]).astype(np.int64 if k == "pid" else np.float64) for k in jets[0].p}
    jet_eta = np.repeat([j.eta for j in jets], counts)
    jet_phi = np.repeat([j.phi for j in jets], counts)
    pt = np.hypot(cat["px"], cat["py"])
    eta = np.arcsinh(cat["pz"] / pt)
    phi = np.arctan2(cat["py"], cat["px"])
    apid = np.abs(cat["pid"])
    part = {
        "px": cat["px"], "py": cat["py"], "pz": cat["pz"], "energy": cat["e"],
        "deta": np.where(jet_eta > 0, 1.0, -1.0) * (eta - jet_eta),  # sign flip for negative-eta jets (§A1)
        "dphi": wrap_phi(phi - jet_phi),
        "d0val": cat["d0"], "d0err": cat["d0err"], "dzval": cat["dz"], "dzerr": cat["dzerr"], "charge": cat["charge"],
        # PID one-hots as in JetClass' rename.py (Delphes neutral-hadron E-flow carries PID 0)
        "isChargedHadron": np.isin(apid, (211, 321, 2212)), "isNeutralHadron": apid == 0,
        "isPhoton": apid == 22, "isElectron": apid == 11, "isMuon": apid == 13,
    }
    part = {k: (v.astype(np.int32) if k in PART_INT else v.astype(np.float32)) for k, v in part.items()}
    obs = jet_substructure(jets)
    codes = np.array([j.code for j in jets])
    out = {"part": ak.unflatten(ak.zip(part), counts)}
    for name in JETCLASS_CLASSES:
        out[f"label_{name}"] = np.isin(codes, LABEL_CODES[name]).astype(LABEL_DTYPES[f"label_{name}"])
    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    out.update(jet_pt=f32([j.pt for j in jets]), jet_eta=f32([j.eta for j in jets]), jet_phi=f32([j.phi for j in jets]),
               jet_energy=f32([j.energy for j in jets]), jet_nparticles=f32(counts), jet_sdmass=f32(obs["sdmass"]),
               **{f"jet_tau{n}": f32(obs[f"tau{n}"]) for n in range(1, 5)})
    truth = np.array([j.truth for j in jets])
    out.update(aux_genpart_pt=f32(truth[:, 0]), aux_genpart_eta=f32(truth[:, 1]), aux_genpart_phi=f32(truth[:, 2]),
               aux_genpart_pid=f32(truth[:, 3]), aux_truth_match=f32(codes))
    return out


def write_jetclass_root(path: str, jets: list[Jet]) -> None:
    """JetClass ROOT file: TTree "tree" with the 41 branches (+ uproot's counter `npart`), LZ4 level 4."""
    import uproot

    branches = jetclass_branches(jets)
    types = {k: (v.type.content if k == "part" else v.dtype) for k, v in branches.items()}
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp, compression=uproot.LZ4(4)) as f:
            f.mktree("tree", types, title="JetClass-format jets simulated with Pythia 8 (common.simulate)")
            f["tree"].extend(branches)


def toptagging_frame(jets: list[Jet], labels: np.ndarray, ttv: int, n_const: int = 200):
    """pandas DataFrame in the Top Quark Tagging layout (§A2): E_i, PX_i, PY_i, PZ_i interleaved, truth*, ttv,
    is_signal_new. Momenta float32 [U]; leading n_const constituents by pT, zero-padded."""
    import pandas as pd

    B = len(jets)
    arr = np.zeros((B, n_const, 4), np.float32)
    for b, j in enumerate(jets):
        k = min(n_const, len(j.p["e"]))
        arr[b, :k] = np.stack([j.p["e"], j.p["px"], j.p["py"], j.p["pz"]], axis=1)[:k]
    cols = [f"{c}_{i}" for i in range(n_const) for c in ("E", "PX", "PY", "PZ")]
    data = dict(zip(cols, arr.reshape(B, -1).T))
    truth = np.array([(j.truth[7], j.truth[4], j.truth[5], j.truth[6]) for j in jets], np.float32).reshape(B, 4)
    for k, c in enumerate(("truthE", "truthPX", "truthPY", "truthPZ")):
        data[c] = truth[:, k]
    data["ttv"] = np.full(B, ttv, np.int64)
    data["is_signal_new"] = np.asarray(labels, np.int64)
    return pd.DataFrame(data, columns=cols + ["truthE", "truthPX", "truthPY", "truthPZ", "ttv", "is_signal_new"])


def write_toptagging_h5(path: str, frame) -> None:
    """pandas HDF5, key "table" (PyTables fixed format, as pandas' default)."""
    with atomic_path(path) as tmp:
        frame.to_hdf(tmp, key="table", mode="w", complevel=0)


def qg_arrays(jets: list[Jet], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EnergyFlow quark-gluon layout (§A3): X (B, M, 4) = (pT, rapidity, phi, pdgid) zero-padded to the longest jet
    of the file, phi within pi of the jet axis; y = 1 quark, 0 gluon; float64 [U]."""
    M = max(len(j.p["e"]) for j in jets)
    X = np.zeros((len(jets), M, 4))
    for b, j in enumerate(jets):
        p = {k: v.astype(np.float64) for k, v in j.p.items()}
        pt = np.hypot(p["px"], p["py"])
        y = 0.5 * np.log((p["e"] + p["pz"]) / (p["e"] - p["pz"]))
        phi = j.phi + wrap_phi(np.arctan2(p["py"], p["px"]) - j.phi)
        X[b, : len(pt)] = np.stack([pt, y, phi, p["pid"].astype(np.float64)], axis=1)
    return X, np.asarray(labels, np.float64)


def write_qg_npz(path: str, X: np.ndarray, y: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object keeps numpy from appending ".npz" to the tmp name
            np.savez_compressed(fh, X=X, y=y)
