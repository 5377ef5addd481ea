"""Your own jets as `RawJets` (common/data/features.py), the input of every feature set: per-particle arrays (NumPy,
padded, or Awkward, jagged) or a file in one of the published formats (JetClass ROOT, Top-tagging HDF5, quark-gluon
npz). Used by common.training.pretrained to embed jets with a pretrained backbone.

Arrays: a mapping with the four-momenta `px`, `py`, `pz`, `energy` in GeV (JetClass branch names, the `part_` prefix
optional), or `p4` (B, M, 4); optional `mask` (B, M) (default: energy > 0, or the lengths of jagged arrays); where the
method needs them `charge`, `isChargedHadron`, `isNeutralHadron`, `isPhoton`, `isElectron`, `isMuon` (particle ID) and
`d0val`, `d0err`, `dzval`, `dzerr` (impact parameters, mm); optional `deta`, `dphi` relative to the jet axis and `jet`
(B, 6) in JET_FIELDS order; optional `label` (B,). Without `deta`/`dphi`/`jet`, the jet is the sum of its constituents
and the angles follow the JetClass convention (deta x sign(jet eta), dphi wrapped), as the Top-tagging reader does.
Particles are put in decreasing pT (stable). Only NumPy (and Awkward for jagged input) is needed; a file needs the
reader of its format (uproot / h5py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.data.features import IP_FIELDS, PID_FIELDS, DataError, RawJets, deta_dphi_partstyle, jet_from_constituents

P4_FIELDS = ("px", "py", "pz", "energy")
OPTIONAL = PID_FIELDS + IP_FIELDS + ("deta", "dphi")
FORMATS = {".root": "jetclass", ".h5": "toptagging", ".hdf5": "toptagging", ".npz": "qg"}


def _get(jets, name):
    for key in (name, "part_" + name):
        if key in jets:
            return jets[key]
    return None


def _dense(value, name: str, source: str, width: int | None):
    """(B, M) float array and the (B, M) mask of its real entries (None for a dense input)."""
    if type(value).__module__.split(".")[0] == "awkward":
        import awkward as ak

        if value.ndim != 2:
            raise DataError(f"{source}: per-particle {name!r} must be a jagged Awkward array of one list of numbers "
                            f"per jet (jets, var); got {value.ndim} dimensions ({value.type})")
        try:
            counts = ak.to_numpy(ak.num(value, axis=1))
            m = width if width is not None else max(int(counts.max(initial=0)), 1)
            dense = ak.to_numpy(ak.fill_none(ak.pad_none(value, m, axis=1, clip=True), 0.0))
        except (ValueError, TypeError) as e:
            raise DataError(f"{source}: per-particle {name!r} is not a jagged array of numbers ({value.type}): "
                            f"{' '.join(str(e).split())[:120]}") from None
        if dense.dtype.kind not in "biuf":
            raise DataError(f"{source}: per-particle {name!r} must hold numbers; got {value.type}")
        return dense.astype(np.float32), np.arange(m)[None, :] < counts[:, None]
    try:
        a = np.asarray(value)
    except ValueError:   # ragged nested lists
        raise DataError(f"{source}: per-particle {name!r} has rows of different lengths; zero-pad it to (jets, "
                        "particles) or pass a jagged Awkward array") from None
    if a.dtype.kind not in "biuf" or a.ndim != 2:
        raise DataError(f"{source}: per-particle {name!r} must be a (jets, particles) array of numbers or a jagged "
                        f"Awkward array; got shape {a.shape} dtype {a.dtype}")
    return a.astype(np.float32), None


def raw_jets(jets, source: str = "jets") -> RawJets:
    """Per-particle arrays (see the module docstring) -> RawJets; one clear error naming the key otherwise."""
    if not hasattr(jets, "keys"):
        raise DataError(f"{source}: expected a mapping of per-particle arrays (px, py, pz, energy, ...) or a file "
                        f"path; got {type(jets).__name__}")
    mask = None
    if "p4" in jets:
        p4 = np.asarray(jets["p4"], dtype=np.float32)
        if p4.ndim != 3 or p4.shape[-1] != 4:
            raise DataError(f"{source}: 'p4' must have shape (jets, particles, 4) (px, py, pz, E); got {p4.shape}")
    else:
        missing = [f for f in P4_FIELDS if _get(jets, f) is None]
        if missing:
            raise DataError(f"{source}: missing per-particle {missing}; expected the four-momenta {list(P4_FIELDS)} "
                            f"(or 'p4' (jets, particles, 4)); got keys {sorted(jets.keys())}")
        cols = [_dense(_get(jets, f), f, source, None) for f in P4_FIELDS]
        shapes = [c[0].shape if c[1] is None else f"jagged: {c[0].shape[0]} jets, {int(c[1].sum())} particles"
                  for c in cols]
        if len(set(shapes)) > 1 or any(c[1] is not None and not np.array_equal(c[1], cols[0][1]) for c in cols):
            raise DataError(f"{source}: the four-momenta differ in shape ("
                            f"{', '.join(f'{f} {s}' for f, s in zip(P4_FIELDS, shapes))}); expected one value per "
                            "particle in each, the same particles in all four")
        mask = cols[0][1]
        p4 = np.stack([c[0] for c in cols], -1)
    b, m = p4.shape[:2]
    if b == 0:
        raise DataError(f"{source}: no jets (the arrays have 0 rows)")
    part = {}
    for f in OPTIONAL:
        v = _get(jets, f)
        if v is not None:
            part[f] = _dense(v, f, source, m)[0]
            if part[f].shape != (b, m):
                raise DataError(f"{source}: {f!r} has shape {part[f].shape}; expected {(b, m)} like the four-momenta")
    if "mask" in jets:
        mask = np.asarray(jets["mask"]).astype(bool)
    if mask is None:
        mask = p4[..., 3] > 0
    if mask.shape != (b, m):
        raise DataError(f"{source}: 'mask' has shape {mask.shape}; expected {(b, m)} like the four-momenta")
    if not np.isfinite(p4[mask]).all():
        raise DataError(f"{source}: non-finite four-momenta among the real particles")
    negative = (p4[..., 3] < 0) & (mask if "mask" in jets else True)   # padding is 0 (or anything, under a mask)
    if negative.any():
        j, k = np.argwhere(negative)[0]
        raise DataError(f"{source}: {int(negative.sum())} particle(s) with negative energy (non-physical), first: jet "
                        f"{j}, particle {k}: energy = {p4[j, k, 3]:.4g}")
    empty = ~mask.any(1)
    if empty.any():
        raise DataError(f"{source}: {int(empty.sum())} jet(s) without particles (energy > 0 or mask), first: jet "
                        f"{int(np.argmax(empty))}; a jet needs at least one particle")
    for f, v in part.items():
        if not np.isfinite(v[mask]).all():
            raise DataError(f"{source}: non-finite {f!r} among the real particles")
    # decreasing pT (stable), as every reader gives them
    pt = np.where(mask, np.hypot(p4[..., 0], p4[..., 1]), -np.inf)
    order = np.argsort(-pt, axis=1, kind="stable")
    p4 = np.take_along_axis(p4, order[..., None], 1) * np.take_along_axis(mask, order, 1)[..., None]
    part = {k: np.take_along_axis(v, order, 1) for k, v in part.items()}
    mask = np.take_along_axis(mask, order, 1)
    jet = jets.get("jet")
    jet = jet_from_constituents(p4, mask) if jet is None else np.asarray(jet, dtype=np.float32)
    if jet.shape != (b, 6):
        raise DataError(f"{source}: 'jet' has shape {jet.shape}; expected {(b, 6)} (pt, eta, phi, energy, mass, n)")
    if not np.isfinite(jet).all():
        raise DataError(f"{source}: non-finite values in 'jet'")
    if "deta" not in part or "dphi" not in part:
        part["deta"], part["dphi"] = deta_dphi_partstyle(p4, mask, jet)
    part = {k: np.where(mask, v, 0.0).astype(np.float32) for k, v in part.items()}
    label = np.asarray(jets.get("label", np.zeros(b)))
    if label.dtype.kind not in "biuf" or (label.dtype.kind == "f" and not (np.isfinite(label).all() and
                                                                            (label == np.round(label)).all())):
        raise DataError(f"{source}: 'label' must hold integer class numbers; got dtype {label.dtype}")
    label = label.astype(np.int64)
    if label.shape != (b,):
        raise DataError(f"{source}: 'label' has shape {label.shape}; expected {(b,)}")
    return RawJets(p4.astype(np.float32), mask, part, jet.astype(np.float32), label, source)


def read_file(path, max_jets: int | None = None) -> RawJets:
    """The jets of one file in a published format (by its suffix: .root JetClass, .h5 Top tagging, .npz quark-gluon),
    read by the kit's reader, exactly as the preprocessing cache reads them."""
    from common.data import jetclass, quarkgluon, toptagging
    from common.data.datasets import iter_raw

    path = str(path)
    dataset = FORMATS.get(Path(path).suffix.lower())
    if dataset is None:
        raise DataError(f"{path}: unknown file format; expected one of {sorted(FORMATS)} (JetClass ROOT, Top-tagging "
                        "HDF5, quark-gluon npz)")
    if Path(path).is_dir():
        raise DataError(f"{path}: a folder, not a file; pass one file (or load its files one by one)")
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    if dataset == "qg":
        try:
            with np.load(path, allow_pickle=False) as z:
                names = set(z.files) if hasattr(z, "files") else set()
        except (OSError, ValueError, EOFError):   # unreadable: the quark-gluon reader names it below
            names = set()
        if names and not {"X", "y"} <= names and (set(P4_FIELDS) <= names or "p4" in names):
            raise DataError(f"{path}: holds per-particle arrays, not the quark-gluon format (X, y); pass them as "
                            f"arrays: dict(np.load({path!r}))")
    n = {"jetclass": jetclass.num_entries, "toptagging": toptagging.num_entries,
         "qg": quarkgluon.num_entries}[dataset](path)
    n = n if max_jets is None else min(n, int(max_jets))
    return RawJets.concatenate(list(iter_raw(dataset, path, 0, n)))
