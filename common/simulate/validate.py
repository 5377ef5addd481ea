"""`python -m common.simulate validate DIR`: per-class distributions to PNG and the measured mass peaks.

Works on any of the three layouts (JetClass ROOT, top-tagging HDF5, quark-gluon npz), simulated or real.
"""
from __future__ import annotations

import glob
import os
import re

import numpy as np

from ..observables import jet_observables, ptetaphi_to_p4, softdrop_mass
from .processes import JETCLASS_CLASSES, JETCLASS_PREFIX

# where a fully contained resonance should put the (soft-drop) mass peak [GeV]; reference values, not our output
EXPECTED_PEAK = {"Tbqq": ("top", 173.0), "Top": ("top", 173.0), "Wqq": ("W", 80.4), "Zqq": ("Z", 91.2),
                 "Hbb": ("H", 125.0), "Hcc": ("H", 125.0), "Hgg": ("H", 125.0), "H4q": ("H", 125.0)}
PREFIX_CLASS = {v: k for k, v in JETCLASS_PREFIX.items()}
PANELS = [("mass", "jet mass [GeV]", (0, 300)), ("sdmass", "soft-drop mass [GeV]", (0, 300)),
          ("nparticles", "constituents", (0, 150)), ("tau21", "tau21", (0, 1.2)), ("tau32", "tau32", (0, 1.2)),
          ("pt", "jet pT [GeV]", None)]


def mass_peak(m: np.ndarray, lo: float = 30.0, hi: float = 260.0, bin_w: float = 2.0) -> float:
    """Mode of the mass distribution in [lo, hi]: 2 GeV histogram smoothed with a 5-bin (10 GeV) window."""
    m = m[(m > lo) & (m < hi)]
    if len(m) == 0:
        return float("nan")
    h, edges = np.histogram(m, bins=np.arange(lo, hi + bin_w, bin_w))
    smooth = np.convolve(h, np.ones(5) / 5, mode="same")
    k = int(np.argmax(smooth))
    return float(0.5 * (edges[k] + edges[k + 1]))


def _read_jetclass(files, max_jets):
    import uproot

    by_class = {}
    for f in sorted(files):
        prefix = re.sub(r"_\d+\.root$", "", os.path.basename(f))
        cls = PREFIX_CLASS.get(prefix)
        if cls is None:
            raise ValueError(f"{f}: file prefix {prefix!r} is not a JetClass process {sorted(PREFIX_CLASS)}")
        have = sum(len(a["pt"]) for a in by_class.get(cls, []))
        if have >= max_jets:
            continue
        names = ["jet_pt", "jet_eta", "jet_energy", "jet_nparticles", "jet_sdmass", "jet_tau1", "jet_tau2", "jet_tau3"]
        with uproot.open(f) as fh:
            a = fh["tree"].arrays(names, library="np", entry_stop=max_jets - have)
        pz = a["jet_pt"] * np.sinh(a["jet_eta"])
        m2 = a["jet_energy"].astype(np.float64) ** 2 - a["jet_pt"].astype(np.float64) ** 2 - pz**2
        with np.errstate(divide="ignore", invalid="ignore"):
            d = dict(pt=a["jet_pt"], mass=np.sqrt(np.clip(m2, 0, None)), sdmass=a["jet_sdmass"],
                     nparticles=a["jet_nparticles"], tau21=np.nan_to_num(a["jet_tau2"] / a["jet_tau1"]),
                     tau32=np.nan_to_num(a["jet_tau3"] / a["jet_tau2"]))
        by_class.setdefault(cls, []).append(d)
    order = [c for c in JETCLASS_CLASSES if c in by_class]
    return {c: {k: np.concatenate([d[k] for d in by_class[c]]) for k in by_class[c][0]} for c in order}


def _from_p4(p4, mask):
    obs = jet_observables(p4, mask)
    obs["sdmass"] = softdrop_mass(p4, mask)
    return obs


def _read_toptagging(files, max_jets):
    import pandas as pd

    frames = [pd.read_hdf(f, key="table") for f in sorted(files)]
    df = pd.concat(frames)
    n = sum(1 for c in df.columns if c.startswith("E_"))
    cols = [f"{c}_{i}" for i in range(n) for c in ("E", "PX", "PY", "PZ")]
    e_px_py_pz = df[cols].to_numpy(np.float64).reshape(len(df), n, 4)
    p4 = e_px_py_pz[..., [1, 2, 3, 0]]
    label = df["is_signal_new"].to_numpy()
    out = {}
    for name, lab in (("QCD", 0), ("Top", 1)):
        sel = np.flatnonzero(label == lab)[:max_jets]
        out[name] = _from_p4(p4[sel], p4[sel, :, 3] > 0)
    return out


def _read_qg(files, max_jets):
    X = []
    y = []
    for f in sorted(files):
        with np.load(f) as d:
            X.append(d["X"])
            y.append(d["y"])
    M = max(x.shape[1] for x in X)
    X = np.concatenate([np.pad(x, ((0, 0), (0, M - x.shape[1]), (0, 0))) for x in X])
    y = np.concatenate(y)
    out = {}
    for name, lab in (("Gluon", 0), ("Quark", 1)):
        sel = np.flatnonzero(y == lab)[:max_jets]
        x = X[sel]
        mask = x[..., 0] > 0
        p4 = np.where(mask[..., None], ptetaphi_to_p4(x[..., 0], x[..., 1], x[..., 2]), 0.0)
        out[name] = _from_p4(p4, mask)
    return out


def load_observables(directory: str, max_jets: int = 20000) -> dict[str, dict[str, np.ndarray]]:
    roots = glob.glob(os.path.join(directory, "**", "*.root"), recursive=True)
    h5 = glob.glob(os.path.join(directory, "**", "*.h5"), recursive=True)
    npz = glob.glob(os.path.join(directory, "**", "QG_jets*.npz"), recursive=True)
    if roots:
        return _read_jetclass(roots, max_jets)
    if h5:
        return _read_toptagging(h5, max_jets)
    if npz:
        return _read_qg(npz, max_jets)
    raise FileNotFoundError(f"{directory}: no JetClass *.root, top-tagging *.h5 or QG_jets*.npz files found")


def validate(directory: str, out: str | None = None, max_jets: int = 20000) -> dict[str, dict[str, float]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = load_observables(directory, max_jets)
    out = out or os.path.join(directory, "validation")
    os.makedirs(out, exist_ok=True)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (key, label, rng) in zip(axes.flat, PANELS):
        for cls, o in obs.items():
            v = np.asarray(o[key], np.float64)
            ax.hist(v, bins=40, range=rng or (np.min(v), np.max(v) + 1e-6), histtype="step", density=True, label=cls)
        ax.set_xlabel(label)
    axes.flat[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{directory}")
    fig.tight_layout()
    png = os.path.join(out, "observables.png")
    fig.savefig(png + ".tmp.png", dpi=90)
    os.replace(png + ".tmp.png", png)
    plt.close(fig)

    peaks = {}
    print(f"{'class':8s} {'jets':>7s} {'m peak':>8s} {'m_SD peak':>10s}  reference")
    for cls, o in obs.items():
        peaks[cls] = dict(n=len(o["pt"]), mass=mass_peak(np.asarray(o["mass"])),
                          sdmass=mass_peak(np.asarray(o["sdmass"])))
        ref = EXPECTED_PEAK.get(cls)
        ref_s = f"{ref[0]} near {ref[1]:g} GeV" if ref else "(no resonance peak expected)"
        print(f"{cls:8s} {peaks[cls]['n']:7d} {peaks[cls]['mass']:8.1f} {peaks[cls]['sdmass']:10.1f}  {ref_s}")
    print(f"plots: {png}")
    return peaks
