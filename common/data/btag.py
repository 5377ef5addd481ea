"""Flavour-tagging (BTag) dataset reader (Zenodo 13350327, "Dataset for flavour tagging R&D"; used for MPMv2's
out-of-domain tasks, arXiv:2409.12589 Sec. 5): both layouts into the same arrays.

- ROOT: TTree "tree", one row per jet, jagged trk_* / hadron_* / true_vtx_* branches (the Zenodo record's branch
  list). Converted here exactly as mattcleigh/jetssl scripts/make_shlomi.py with src/setup/root_utils.py does:
  the first 15 tracks, deta = trk_eta - jet_eta, dphi wrapped, lifetime-signed d0 / z0, the 8-class particle ID,
  labels 0/4/5 -> 0/1/2 and the track origin from trk_prod_z and the jet's hadrons.
- HDF5 (what jetssl's src/datamodules/hdf.py reads): keys csts (N, 15, 7), mask, csts_id, labels, vtx_id,
  track_type, jets (N, 5), vtx_pos (N, V, 4). jetssl sorts the files of a split by the digits in their names, so
  they are named e.g. train_0.h5.

`read_btag(path)` returns a dict with the HDF5 keys for either layout. Padded track slots are zero in every array
except track_type (-1), whatever the file holds (jetssl's converter leaves deta = -jet_eta and dphi = -jet_phi
there). Bad files raise DataError naming the file and the key.
"""
from __future__ import annotations

import os

import numpy as np

from common.data.features import DataError

TREE = "tree"
MAX_TRACKS = 15  # jetssl read_shlomi_file(num_particles=15)
N_VERTICES_MAX = 6  # secondary vertices per jet: the vertexing ARI is reported for n_vtx = 1..6 (jetssl vertexer.py)
FLAV_LABEL = {0: 0, 4: 1, 5: 2}  # jet_flav (light, c, b) -> labels (make_shlomi.py)
ORIGIN_NAMES = ("PV", "C", "B", "other")  # track_type 0..3 (root_utils.py get_track_type)
ORIGIN_TOL = 1e-6  # |trk_prod_z - hadron_z| below which a track comes from that hadron (get_track_type)

TRACK_BRANCHES = ("trk_pt", "trk_eta", "trk_phi", "trk_d0", "trk_d0err", "trk_z0", "trk_z0err", "trk_charge",
                  "trk_pdg_id", "trk_vtx_index")
JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_M", "n_trks")
VERTEX_BRANCHES = ("true_vtx_x", "true_vtx_y", "true_vtx_z", "true_vtx_L3D")
READ_BRANCHES = TRACK_BRANCHES + JET_BRANCHES + VERTEX_BRANCHES + ("jet_flav", "trk_prod_z", "hadron_pdgid",
                                                                   "hadron_z")
# key -> (dtype, shape after N; None = that axis may have any length)
H5_KEYS = {"csts": (np.float32, (MAX_TRACKS, 7)), "mask": (np.bool_, (MAX_TRACKS,)),
           "csts_id": (np.int64, (MAX_TRACKS,)), "labels": (np.int64, ()), "vtx_id": (np.int64, (MAX_TRACKS,)),
           "track_type": (np.int64, (MAX_TRACKS,)), "jets": (np.float32, (5,)), "vtx_pos": (np.float32, (None, 4))}


def is_c_hadron(pdg) -> np.ndarray:
    """Charm mesons 410 < |id| < 436, baryons 4120 < |id| < 4445 (root_utils.py is_C_hadron)."""
    a = np.abs(pdg)
    return ((a > 410) & (a < 436)) | ((a > 4120) & (a < 4445))


def is_b_hadron(pdg) -> np.ndarray:
    """Bottom mesons 510 < |id| < 546, baryons 5120 < |id| < 5555 (root_utils.py is_B_hadron)."""
    a = np.abs(pdg)
    return ((a > 510) & (a < 546)) | ((a > 5120) & (a < 5555))


def track_origin(prod_z: np.ndarray, mask: np.ndarray, had_pdg: np.ndarray, had_z: np.ndarray) -> np.ndarray:
    """Track origin 0 PV, 1 from a C hadron, 2 from a B hadron, 3 other, -1 padding (root_utils.py get_track_type).

    prod_z, mask (N, T); had_pdg, had_z (N, H) with padding pdg 0. PV if |prod_z| < 1e-6; a track whose prod_z lies
    within 1e-6 of the decay z of one of its jet's C (B) hadrons is C (B); B wins over C, C over PV."""
    close = (np.abs(prod_z[:, :, None] - had_z[:, None, :]) < ORIGIN_TOL) & mask[:, :, None]
    origin = np.full(prod_z.shape, 3, np.int64)
    origin[np.abs(prod_z) < ORIGIN_TOL] = 0
    origin[(close & is_c_hadron(had_pdg)[:, None, :]).any(-1)] = 1
    origin[(close & is_b_hadron(had_pdg)[:, None, :]).any(-1)] = 2
    origin[~mask] = -1
    return origin


def lifetime_signing(d0, z0, trk_eta, trk_phi, jet_eta, jet_phi) -> tuple[np.ndarray, np.ndarray]:
    """Lifetime-signed impact parameters (root_utils.py lifetime_signing, after ATL-PHYS-PUB-2020-014).

    With unit transverse vectors, jet j and track t along (cos phi, sin phi, sinh eta) and the point of closest
    approach dm = (d0 cos(phi_t - pi/2), d0 sin(phi_t - pi/2), z0) (d0 = (x py - y px) / pT, Delphes convention):
    d0s = |d0| sign((j x t) . (t x -dm)), z0s = |z0| sign(z0 (eta_jet - eta_trk)). jet_eta, jet_phi broadcast."""
    def vec(eta, phi):
        return np.stack(np.broadcast_arrays(np.cos(phi), np.sin(phi), np.sinh(eta)), -1)

    t, j = vec(trk_eta, trk_phi), vec(jet_eta, jet_phi)
    dm = np.stack([d0 * np.cos(trk_phi - np.pi / 2), d0 * np.sin(trk_phi - np.pi / 2), z0], -1)
    d0s = np.abs(d0) * np.sign(np.sum(np.cross(j, t) * np.cross(t, -dm), -1))
    z0s = np.abs(z0) * np.sign(z0 * (jet_eta - trk_eta))
    return d0s, z0s


def particle_class(charge: np.ndarray, pdg: np.ndarray) -> np.ndarray:
    """8-class ID from charge and PDG id: 0 photon, 1 h-, 2 h0, 3 h+, 4 e-, 5 e+, 6 mu-, 7 mu+; hadron = |id| > 100
    (root_utils.py common_particle_class)."""
    a = np.abs(pdg)
    out = np.zeros(charge.shape, np.int64)
    hadron, ele, mu = a > 100, a == 11, a == 13
    for cls, sel, q in ((1, hadron, -1), (2, hadron, 0), (3, hadron, 1), (4, ele, -1), (5, ele, 1), (6, mu, -1),
                        (7, mu, 1)):
        out[sel & (charge == q)] = cls
    return out


def wrap_phi(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def _pad(jagged, width: int | None = None) -> np.ndarray:
    """Awkward (N, var) -> (N, width) float64, clipped, zero-padded (root_utils.py ak_to_numpy_padded)."""
    import awkward as ak

    if width is None:
        width = max(int(ak.max(ak.num(jagged), initial=0)), 1)
    return np.nan_to_num(ak.to_numpy(ak.fill_none(ak.pad_none(jagged, width, clip=True), 0)).astype(np.float64))


def root_to_arrays(tree_arrays: dict, source: str = "") -> dict[str, np.ndarray]:
    """The HDF5 arrays from the ROOT branches (awkward arrays by branch name), as make_shlomi.py converts them."""
    a = tree_arrays
    trk = {k: _pad(a[k], MAX_TRACKS) for k in TRACK_BRANCHES + ("trk_prod_z",)}
    jets = np.stack([np.asarray(a[k], np.float64) for k in JET_BRANCHES], 1)
    mask = trk["trk_pt"] > 0
    flav = np.asarray(a["jet_flav"], np.int64)
    bad = ~np.isin(flav, list(FLAV_LABEL))
    if bad.any():
        raise DataError(f"{source}: branch 'jet_flav' holds {sorted(set(flav[bad].tolist()))[:5]}; expected 0, 4 or 5")
    labels = np.select([flav == 4, flav == 5], [1, 2], 0).astype(np.int64)
    d0s, z0s = lifetime_signing(trk["trk_d0"], trk["trk_z0"], trk["trk_eta"], trk["trk_phi"], jets[:, 1:2],
                                jets[:, 2:3])
    csts = np.stack([trk["trk_pt"], trk["trk_eta"] - jets[:, 1:2], wrap_phi(trk["trk_phi"] - jets[:, 2:3]), d0s,
                     trk["trk_d0err"], z0s, trk["trk_z0err"]], -1)
    had_pdg, had_z = _pad(a["hadron_pdgid"]), _pad(a["hadron_z"])
    vtx_pos = np.stack([_pad(a[k]) for k in VERTEX_BRANCHES], -1)
    return finalise(dict(csts=csts, mask=mask, csts_id=particle_class(trk["trk_charge"], trk["trk_pdg_id"]),
                         labels=labels, vtx_id=trk["trk_vtx_index"].astype(np.int64),
                         track_type=track_origin(trk["trk_prod_z"], mask, had_pdg, had_z), jets=jets,
                         vtx_pos=vtx_pos))


def finalise(arrays: dict) -> dict[str, np.ndarray]:
    """Cast to the HDF5 dtypes and zero the padded track slots (track_type -1 there)."""
    out = {k: np.asarray(arrays[k]).astype(H5_KEYS[k][0]) for k in H5_KEYS}
    pad = ~out["mask"]
    out["csts"][pad] = 0
    for k in ("csts_id", "vtx_id"):
        out[k][pad] = 0
    out["track_type"][pad] = -1
    return out


def _check(arrays: dict, path: str) -> dict:
    n = None
    for key, (dtype, shape) in H5_KEYS.items():
        v = arrays[key]
        if v.ndim != 1 + len(shape) or any(s is not None and s != d for s, d in zip(shape, v.shape[1:])):
            want = ", ".join(["N"] + ["V" if d is None else str(d) for d in shape])
            raise DataError(f"{path}: key {key!r} has shape {v.shape}; expected ({want})")
        if n is not None and len(v) != n:
            raise DataError(f"{path}: key {key!r} has {len(v)} jets, 'csts' has {n}")
        n = len(v)
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise DataError(f"{path}: key {key!r} holds {int((~np.isfinite(v)).sum())} NaN/inf values")
    if n == 0:
        raise DataError(f"{path}: no jets")
    bad = ~np.isin(arrays["labels"], (0, 1, 2))
    if bad.any():
        raise DataError(f"{path}: key 'labels' holds {sorted(set(arrays['labels'][bad].tolist()))[:5]}; expected 0-2")
    return arrays


def _read_h5(path: str) -> dict:
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise DataError(f"{path}: cannot open as HDF5 (corrupt, truncated or empty?): {e}") from e
    with f:
        missing = [k for k in H5_KEYS if k not in f]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; found {sorted(f.keys())}")
        raw = {k: f[k][()] for k in H5_KEYS}
    return finalise(_check(raw, path))


def _read_root(path: str) -> dict:
    import uproot

    try:
        f = uproot.open(path)
    except Exception as e:
        raise DataError(f"{path}: cannot open as a ROOT file (corrupt, truncated or empty?): "
                        f"{' '.join(str(e).split())}") from e
    with f:
        if TREE not in f:
            raise DataError(f"{path}: no TTree {TREE!r} (found keys {list(f.keys())})")
        tree = f[TREE]
        missing = [b for b in READ_BRANCHES if b not in tree]
        if missing:
            raise DataError(f"{path}: tree {TREE!r} lacks branch(es) {missing}")
        if tree.num_entries == 0:
            raise DataError(f"{path}: no jets")
        a = tree.arrays(list(READ_BRANCHES), library="ak")
    import awkward as ak

    for b in READ_BRANCHES:
        flat = ak.to_numpy(ak.flatten(a[b], axis=None)).astype(np.float64)
        if not np.isfinite(flat).all():
            raise DataError(f"{path}: branch {b!r} holds {int((~np.isfinite(flat)).sum())} NaN/inf values")
    return _check(root_to_arrays({b: a[b] for b in READ_BRANCHES}, path), path)


def read_btag(path: str) -> dict[str, np.ndarray]:
    """One BTag file, ROOT (*.root) or HDF5 (*.h5), as the HDF5 arrays (H5_KEYS)."""
    path = str(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if path.endswith(".root"):
        return _read_root(path)
    return _read_h5(path)


def write_h5(path: str, arrays: dict) -> None:
    """The HDF5 layout jetssl reads (dtypes as make_shlomi.py writes them), to `path` directly."""
    import h5py

    with h5py.File(path, "w") as f:
        for k in H5_KEYS:
            f.create_dataset(k, data=arrays[k])


# ----------------------------------------------------------------------------------------------- splits and subsets
def split_files(data_cfg: dict, split: str) -> list[str]:
    """The files of data.<split> (a glob under data.root), sorted; a simulated sample must have finished."""
    import glob

    from common.data.datasets import check_simulation_finished

    pattern = data_cfg.get(split)
    if not isinstance(pattern, str):
        raise DataError(f"data.{split} must be a glob under data.root (e.g. 'train*.h5'), got {pattern!r}")
    check_simulation_finished(data_cfg["root"])   # a simulated BTag sample whose simulation did not finish: refused
    files = sorted(glob.glob(os.path.join(data_cfg["root"], pattern)))
    if not files:
        raise DataError(f"data.{split}: {pattern!r} matches no file under {data_cfg['root']!r}")
    return files


SPLIT_KEYS = ("csts", "mask", "csts_id", "labels", "vtx_id", "track_type", "jets")  # what the tasks and floor read


def read_split(data_cfg: dict, split: str, max_jets: int | None = None, keys=SPLIT_KEYS) -> dict[str, np.ndarray]:
    """The `keys` arrays of every file of a split (read_btag) concatenated in file order; the first max_jets jets."""
    parts = [read_btag(f) for f in split_files(data_cfg, split)]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    return arrays if max_jets is None else {k: v[:max_jets] for k, v in arrays.items()}


def subset_index(total: int, n: int | None, seed: int, where: str = "train") -> np.ndarray:
    """The labelled jets of one BTag run: n of `total` drawn without replacement with `seed` (sorted); all for None."""
    if n is None:
        return np.arange(total)
    if n > total:
        raise ValueError(f"BTag {where}: {n} labelled jets requested, the split holds {total}")
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])
