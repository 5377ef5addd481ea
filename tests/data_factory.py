"""Tiny synthetic files in the exact published formats (JetClass ROOT, Top-tagging pandas HDF5, quark-gluon npz).

Independent of the simulator, so reader tests run alone. Jets are random but physical enough: massless-ish particles
scattered around a jet axis, pT-ordered, JetClass conventions for part_deta / part_dphi, one-hot labels with the real
mixed dtypes. Reusable by other tests: `from tests.data_factory import write_jetclass, write_toptagging, write_qg`.
"""
from __future__ import annotations

import os

import awkward as ak
import numpy as np
import uproot

from common.data.jetclass import CLASS_NAMES, FILE_PREFIX, LABEL_DTYPES, PARTICLE_FLOAT, PARTICLE_INT


def random_jets(n: int, seed: int, max_particles: int = 40, min_particles: int = 3):
    """Flat particle arrays for n jets: counts (n,), pt/eta/phi/mass (sum(counts),), jet-axis eta/phi (n,)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(min_particles, max_particles + 1, n)
    jet_eta, jet_phi = rng.uniform(-1.8, 1.8, n), rng.uniform(-np.pi, np.pi, n)
    tot = counts.sum()
    which = np.repeat(np.arange(n), counts)
    pt = rng.exponential(15.0, tot) + 0.5
    # pT-descending within each jet: sort by (jet, -pt)
    order = np.lexsort((-pt, which))
    pt = pt[order]
    eta = jet_eta[which] + rng.normal(0, 0.25, tot)
    phi = (jet_phi[which] + rng.normal(0, 0.25, tot) + np.pi) % (2 * np.pi) - np.pi
    mass = np.where(rng.random(tot) < 0.6, 0.13957, 0.0)
    return counts, pt, eta, phi, mass, rng


def _p4(pt, eta, phi, mass):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + mass**2)


def jetclass_arrays(n: int, cls: str, seed: int = 0, max_particles: int = 40) -> dict:
    """Branch name -> array (awkward for particles) for n jets of class `cls`, JetClass conventions."""
    counts, pt, eta, phi, mass, rng = random_jets(n, seed, max_particles)
    which = np.repeat(np.arange(n), counts)
    px, py, pz, e = _p4(pt, eta, phi, mass)
    # jet axis = constituent sum (stand-in for the Delphes jet)
    s = np.zeros((n, 4))
    for k, v in enumerate((px, py, pz, e)):
        np.add.at(s[:, k], which, v)
    jpt = np.hypot(s[:, 0], s[:, 1])
    jeta, jphi = np.arcsinh(s[:, 2] / jpt), np.arctan2(s[:, 1], s[:, 0])
    deta = np.where(jeta[which] > 0, 1.0, -1.0) * (eta - jeta[which])
    dphi = (phi - jphi[which] + np.pi) % (2 * np.pi) - np.pi
    kind = rng.choice(5, size=len(pt), p=[0.55, 0.1, 0.3, 0.03, 0.02])   # ch-had, neu-had, photon, e, mu
    charged = (kind == 0) | (kind >= 3)
    charge = np.where(charged, rng.choice([-1.0, 1.0], len(pt)), 0.0)
    d0 = np.where(charged, rng.normal(0, 0.05, len(pt)), 0.0)
    dz = np.where(charged, rng.normal(0, 0.08, len(pt)), 0.0)
    err = np.where(charged, np.sqrt(0.011**2 + (0.065 / pt) ** 2), 0.0)
    flat = dict(part_px=px, part_py=py, part_pz=pz, part_energy=e, part_deta=deta, part_dphi=dphi, part_d0val=d0,
                part_d0err=err, part_dzval=dz, part_dzerr=err, part_charge=charge,
                part_isChargedHadron=kind == 0, part_isNeutralHadron=kind == 1, part_isPhoton=kind == 2,
                part_isElectron=kind == 3, part_isMuon=kind == 4)
    out = {k: (v.astype(np.float32) if k in PARTICLE_FLOAT else v.astype(np.int32)) for k, v in flat.items()}
    for c in CLASS_NAMES:
        out[f"label_{c}"] = np.full(n, c == cls).astype(LABEL_DTYPES[f"label_{c}"])
    f32 = np.float32
    out.update(jet_pt=jpt.astype(f32), jet_eta=jeta.astype(f32), jet_phi=jphi.astype(f32),
               jet_energy=s[:, 3].astype(f32), jet_nparticles=counts.astype(f32),
               jet_sdmass=rng.uniform(10, 200, n).astype(f32), jet_tau1=rng.uniform(0, .5, n).astype(f32),
               jet_tau2=rng.uniform(0, .3, n).astype(f32), jet_tau3=rng.uniform(0, .2, n).astype(f32),
               jet_tau4=rng.uniform(0, .1, n).astype(f32),
               aux_genpart_eta=np.zeros(n, f32), aux_genpart_phi=np.zeros(n, f32), aux_genpart_pid=np.zeros(n, f32),
               aux_genpart_pt=np.zeros(n, f32), aux_truth_match=np.zeros(n, f32))
    out["_counts"] = counts
    return out


def write_jetclass_arrays(path: str, arrays: dict, drop: tuple = (), compression=None) -> str:
    """Write branch arrays as a JetClass TTree (particle branches zipped under "part" -> part_* + counter npart).
    compression: an uproot codec, e.g. uproot.LZ4(4) as in the real files (needs the lz4 and xxhash packages);
    None = uproot's default (zlib)."""
    counts = arrays["_counts"]
    part = {k[5:]: ak.unflatten(arrays[k], counts) for k in PARTICLE_FLOAT + PARTICLE_INT if k not in drop}
    scalars = {k: v for k, v in arrays.items() if not k.startswith(("part_", "_")) and k not in drop}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with uproot.recreate(path, **({} if compression is None else {"compression": compression})) as f:
        data = {"part": ak.zip(part), **scalars}
        f.mktree("tree", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
        f["tree"].extend(data)
    return path


def write_jetclass(directory: str, n: int, classes=None, seed: int = 0, index: int = 0,
                   max_particles: int = 40, compression=None) -> list[str]:
    """One `<proc>_NNN.root` per class in `directory`; returns the paths."""
    paths = []
    for k, c in enumerate(classes or CLASS_NAMES):
        arrays = jetclass_arrays(n, c, seed=seed * 1000 + 17 * k + index, max_particles=max_particles)
        paths.append(write_jetclass_arrays(os.path.join(directory, f"{FILE_PREFIX[c]}_{index:03d}.root"), arrays,
                                           compression=compression))
    return paths


def toptagging_frame(n: int, seed: int = 0, max_particles: int = 200):
    """pandas DataFrame with the 806 Top-tagging columns (E_i, PX_i, PY_i, PZ_i for i < 200, truth*, ttv,
    is_signal_new); half top (label 1)."""
    import pandas as pd

    counts, pt, eta, phi, mass, _ = random_jets(n, seed, min(max_particles, 60))
    which = np.repeat(np.arange(n), counts)
    cols = np.arange(len(pt)) - np.repeat(np.cumsum(counts) - counts, counts)
    px, py, pz, e = _p4(pt, eta, phi, mass)
    block = np.zeros((n, 200, 4), np.float32)
    for k, v in enumerate((e, px, py, pz)):
        block[which, cols, k] = v
    names = [f"{c}_{i}" for i in range(200) for c in ("E", "PX", "PY", "PZ")]
    df = pd.DataFrame(block.reshape(n, 800), columns=names)
    label = (np.arange(n) % 2).astype(np.int64)
    for c in ("truthE", "truthPX", "truthPY", "truthPZ"):
        df[c] = np.float32(0.0)
    df["ttv"] = np.int64(0)
    df["is_signal_new"] = label
    return df


def write_toptagging(path: str, n: int, seed: int = 0, format: str = "fixed") -> str:
    df = toptagging_frame(n, seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    df.to_hdf(path, key="table", format=format, mode="w")
    return path


def write_qg(path: str, n: int, seed: int = 0, max_particles: int = 30) -> str:
    """EnergyFlow layout: X (n, M, 4) = (pt, y, phi, pdgid) zero-padded to this file's M, y (n,) 1 = quark."""
    counts, pt, eta, phi, _, rng = random_jets(n, seed, max_particles)
    m = int(counts.max())
    which = np.repeat(np.arange(n), counts)
    cols = np.arange(len(pt)) - np.repeat(np.cumsum(counts) - counts, counts)
    pdg = rng.choice([211, -211, 321, -321, 2212, -2212, 130, 2112, -2112, 22, 11, -11, 13, -13], len(pt))
    x = np.zeros((n, m, 4))
    x[which, cols] = np.stack([pt, eta, phi, pdg], 1)
    y = (np.arange(n) % 2).astype(np.float64)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, X=x, y=y)
    return path
