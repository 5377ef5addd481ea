"""`python -m common.simulate validate DIR`: per-class distributions to PNG and the measured mass peaks.

Works on any of the three layouts (JetClass ROOT, top-tagging HDF5, quark-gluon npz), simulated or real. A BTag
directory (HDF5 files with a "csts" key, or ROOT files with trk_vtx_index) gets calibration checks instead
(validate_btag).
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

import numpy as np

from ..atomic import atomic_path
from ..data.observables import jet_observables, ptetaphi_to_p4, softdrop_mass
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


def _read_toptagging(files, max_jets, step=50_000):
    """Read with h5py through the training reader's TopTaggingFile (columns by name), never pandas.read_hdf: a
    pandas HDF5 file can hold pickled object columns, and unpickling a shared file could run code."""
    from ..data.toptagging import LABEL_COLUMN, TopTaggingFile

    picked = {0: [], 1: []}
    for f in sorted(files):
        with TopTaggingFile(f) as fh:
            n = sum(1 for c in fh.columns if re.fullmatch(r"E_\d+", c))
            cols = [f"{c}_{i}" for i in range(n) for c in ("E", "PX", "PY", "PZ")]
            for s in range(0, fh.nrows, step):
                if all(sum(len(x) for x in picked[k]) >= max_jets for k in picked):
                    break
                label = fh.read([LABEL_COLUMN], s, s + step)[:, 0]
                block = fh.read(cols, s, s + step).astype(np.float64).reshape(len(label), n, 4)
                for k in picked:
                    have = sum(len(x) for x in picked[k])
                    picked[k].append(block[label == k][: max(max_jets - have, 0)])
    out = {}
    for name, lab in (("QCD", 0), ("Top", 1)):
        e_px_py_pz = np.concatenate(picked[lab]) if picked[lab] else np.zeros((0, 1, 4))
        p4 = e_px_py_pz[..., [1, 2, 3, 0]]
        out[name] = _from_p4(p4, p4[..., 3] > 0)
    return out


def _read_qg(files, max_jets):
    X = []
    y = []
    for f in sorted(files):
        with np.load(f, allow_pickle=False) as d:
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
    fig.suptitle(f"{directory} (kit simulation)" if os.path.isfile(os.path.join(directory, "simulate.json"))
                 else f"{directory}")
    fig.tight_layout()
    png = os.path.join(out, "observables.png")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
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


# ----------------------------------------------------------------------------------------------- BTag calibration
# Targets from jetssl's configs: track-origin class weights N / (4 count) = [0.3868, 1.4342, 3.3482, 2.3896] give the
# origin fractions; the vertexing focal loss' pos_weight 0.778 = (pairs not sharing) / (pairs sharing) gives 56 %
# (mattcleigh/jetssl configs for the track-origin and vertexing tasks). Tolerances are ours, for a few thousand
# simulated jets and a simulation that is not the Delphes sample.
BTAG_ORIGIN_TARGET = {"PV": 64.6, "C": 17.4, "B": 7.5, "other": 10.5}  # % of tracks
BTAG_ORIGIN_TOL = 8.0  # percentage points, absolute
BTAG_PAIRS_TARGET, BTAG_PAIRS_RANGE = 56.0, (40.0, 70.0)  # % of in-jet track pairs from one vertex
BTAG_SIG_SE = 3.0  # b above c, c above light in mean signed d0 / sigma(d0) by this many standard errors


@dataclass
class Check:
    name: str
    target: str
    measured: float
    tolerance: str
    passed: bool

    def line(self) -> str:
        return (f"{self.name:34s} target {self.target:>12s}  measured {self.measured:8.2f}  tolerance "
                f"{self.tolerance:24s} {'PASS' if self.passed else 'FAIL'}")


def btag_files(directory: str) -> list[str]:
    """The BTag files of a directory: HDF5 with "csts" (preferred), else ROOT trees with trk_vtx_index."""
    import h5py

    h5 = []
    for f in sorted(glob.glob(os.path.join(directory, "*.h5"))):
        try:
            with h5py.File(f, "r") as fh:
                if "csts" in fh:
                    h5.append(f)
        except OSError:
            continue
    if h5:
        return h5
    import uproot

    roots = []
    for f in sorted(glob.glob(os.path.join(directory, "*.root")) + glob.glob(os.path.join(directory, "root", "*.root"))):
        with uproot.open(f) as fh:
            if "tree" in fh and "trk_vtx_index" in fh["tree"]:
                roots.append(f)
    return roots


def btag_checks(a: dict) -> list[Check]:
    """The calibration checks on BTag arrays (common/data/btag.py H5_KEYS)."""
    from common.data.btag import ORIGIN_NAMES

    mask = a["mask"]
    origin = a["track_type"][mask]
    checks = []
    for k, name in enumerate(ORIGIN_NAMES):
        frac = 100.0 * float((origin == k).mean())
        want = BTAG_ORIGIN_TARGET[name]
        checks.append(Check(f"track origin {name} [%]", f"{want:g}", frac, f"+-{BTAG_ORIGIN_TOL:g} points",
                            abs(frac - want) <= BTAG_ORIGIN_TOL))
    iu = np.triu_indices(mask.shape[1], 1)
    real = (mask[:, :, None] & mask[:, None, :])[:, iu[0], iu[1]]
    same = (a["vtx_id"][:, :, None] == a["vtx_id"][:, None, :])[:, iu[0], iu[1]]
    pairs = 100.0 * float(same[real].mean()) if real.any() else float("nan")
    lo, hi = BTAG_PAIRS_RANGE
    checks.append(Check("track pairs sharing a vertex [%]", f"{BTAG_PAIRS_TARGET:g}", pairs, f"in [{lo:g}, {hi:g}]",
                        lo <= pairs <= hi))
    sig = a["csts"][..., 3] / np.where(a["csts"][..., 4] > 0, a["csts"][..., 4], np.inf)
    stats = {}
    for label, name in ((0, "light"), (1, "c"), (2, "b")):
        s = sig[mask & (a["labels"] == label)[:, None]].astype(np.float64)
        stats[name] = (s.mean(), s.std() / np.sqrt(len(s))) if len(s) > 1 else (float("nan"), float("nan"))
    for hi_name, lo_name in (("b", "c"), ("c", "light")):
        (m1, e1), (m2, e2) = stats[hi_name], stats[lo_name]
        diff = m1 - m2
        checks.append(Check(f"mean d0 signif. {hi_name} - {lo_name}", "> 0", diff,
                            f"> {BTAG_SIG_SE:g} SE ({BTAG_SIG_SE * np.hypot(e1, e2):.2f})",
                            bool(diff > BTAG_SIG_SE * np.hypot(e1, e2))))
    counts = np.bincount(a["labels"], minlength=3)
    checks.append(Check("flavours light/c/b equal", "1/3 each", float(counts.min() / max(counts.max(), 1)),
                        "min/max count = 1", bool(counts.min() == counts.max())))
    return checks


def validate_btag(directory: str, max_jets: int = 20000) -> list[Check]:
    """Read up to max_jets BTag jets of `directory` and print each calibration check with PASS/FAIL."""
    from common.data.btag import H5_KEYS, read_btag

    files = btag_files(directory)
    if not files:
        raise FileNotFoundError(f"{directory}: no BTag *.h5 (key 'csts') or *.root (branch trk_vtx_index) files")
    parts, n = [], 0
    for f in files:
        if n >= max_jets:
            break
        a = read_btag(f)
        parts.append({k: v[: max_jets - n] for k, v in a.items()})
        n += len(parts[-1]["labels"])
    width = max(p["vtx_pos"].shape[1] for p in parts)
    for p in parts:
        p["vtx_pos"] = np.pad(p["vtx_pos"], ((0, 0), (0, width - p["vtx_pos"].shape[1]), (0, 0)))
    a = {k: np.concatenate([p[k] for p in parts]) for k in H5_KEYS}
    checks = btag_checks(a)
    print(f"BTag calibration, {len(a['labels'])} jets from {len(parts)} file(s) in {directory}")
    for c in checks:
        print(c.line())
    return checks


def is_btag_dir(directory: str) -> bool:
    return bool(btag_files(directory))
