"""JetClass reader (Qu, Li, Qian 2022, arXiv:2202.03772; Zenodo 6619768): ROOT files `<proc>_NNN.root`, tree "tree",
41 branches.

Files hold jets of one class each; the class comes from the file prefix and is cross-checked against the ten label_*
branches (whose dtypes are mixed float / bool / int32, so they are cast). Particles are read in chunks with uproot,
padded to numpy without Python loops, and kept (or put) in decreasing-pT order. Extra counter branches written by
uproot (`npart`) are ignored.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator

import awkward as ak
import numpy as np
import uproot

from common.data.features import DataError, RawJets, jet_from_constituents

CLASS_NAMES = ["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"]   # ParT label order
FILE_PREFIX = {"QCD": "ZJetsToNuNu", "Hbb": "HToBB", "Hcc": "HToCC", "Hgg": "HToGG", "H4q": "HToWW4Q",
               "Hqql": "HToWW2Q1L", "Zqq": "ZToQQ", "Wqq": "WToQQ", "Tbqq": "TTBar", "Tbl": "TTBarLep"}
PREFIX_CLASS = {p: c for c, p in FILE_PREFIX.items()}
TREE = "tree"

# The 41 branches and their ROOT element types (particle_transformer notebooks/JetClass101.ipynb).
PARTICLE_FLOAT = ["part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi", "part_d0val",
                  "part_d0err", "part_dzval", "part_dzerr", "part_charge"]
PARTICLE_INT = ["part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon"]
LABELS = ["label_" + c for c in CLASS_NAMES]
LABEL_DTYPES = {"label_QCD": np.float32, **{f"label_{c}": np.bool_ for c in ["Hbb", "Hcc", "Hgg", "H4q", "Hqql"]},
                **{f"label_{c}": np.int32 for c in ["Zqq", "Wqq", "Tbqq", "Tbl"]}}
JET_BRANCHES = ["jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles", "jet_sdmass", "jet_tau1",
                "jet_tau2", "jet_tau3", "jet_tau4"]
AUX_BRANCHES = ["aux_genpart_eta", "aux_genpart_phi", "aux_genpart_pid", "aux_genpart_pt", "aux_truth_match"]
BRANCHES = PARTICLE_FLOAT + PARTICLE_INT + LABELS + JET_BRANCHES + AUX_BRANCHES
assert len(BRANCHES) == 41

# What the reader needs (the aux_* truth and the tau/sdmass observers are not read).
READ_BRANCHES = PARTICLE_FLOAT + PARTICLE_INT + LABELS + ["jet_pt", "jet_eta", "jet_phi", "jet_energy",
                                                           "jet_nparticles"]
_FILE_RE = re.compile(r"^(" + "|".join(sorted(PREFIX_CLASS, key=len, reverse=True)) + r")_(\d+)\.root$")


def class_of_file(path: str) -> str:
    """Class name from a JetClass file name `<proc>_NNN.root` (e.g. TTBarLep_003.root -> "Tbl")."""
    m = _FILE_RE.match(os.path.basename(str(path)))
    if not m:
        raise DataError(f"{path}: not a JetClass file name; expected <proc>_NNN.root with <proc> one of "
                        f"{sorted(PREFIX_CLASS)}")
    return PREFIX_CLASS[m.group(1)]


def _open_tree(path: str):
    try:
        f = uproot.open(path)
    except Exception as e:  # uproot raises many kinds (ValueError, OSError, DeserializationError) on bad files
        raise DataError(f"{path}: cannot open as a ROOT file (corrupt, truncated or empty?): "
                        f"{' '.join(str(e).split())}") from e
    if TREE not in f:
        raise DataError(f"{path}: no TTree {TREE!r} (found keys {list(f.keys())})")
    tree = f[TREE]
    if not hasattr(tree, "num_entries"):
        raise DataError(f"{path}: {TREE!r} is not a TTree")
    missing = [b for b in READ_BRANCHES if b not in tree]
    if missing:
        raise DataError(f"{path}: tree {TREE!r} lacks JetClass branches {missing}")
    if tree.num_entries == 0:
        raise DataError(f"{path}: tree {TREE!r} holds no jets")
    return f, tree


def num_entries(path: str) -> int:
    f, tree = _open_tree(path)
    with f:
        return int(tree.num_entries)


def _to_raw(arrays, path: str, label: int) -> RawJets:
    """uproot chunk (awkward record array) -> RawJets, vectorised."""
    counts = ak.to_numpy(ak.num(arrays["part_px"])).astype(np.int64)
    b, m = len(counts), max(int(counts.max(initial=0)), 1)
    rows = np.repeat(np.arange(b), counts)
    starts = np.cumsum(counts) - counts
    cols = np.arange(counts.sum()) - np.repeat(starts, counts)
    names = PARTICLE_FLOAT + PARTICLE_INT
    flat = np.empty((len(names), len(rows)), dtype=np.float32)
    for k, name in enumerate(names):
        a = arrays[name]
        if not np.array_equal(ak.to_numpy(ak.num(a)), counts):
            raise DataError(f"{path}: branch {name} has different particle counts than part_px")
        flat[k] = ak.to_numpy(ak.flatten(a))
        if not np.isfinite(flat[k]).all():
            raise DataError(f"{path}: branch {name} holds {int((~np.isfinite(flat[k])).sum())} NaN/inf values")
    jet_b = {}
    for name in ["jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles"]:
        v = ak.to_numpy(arrays[name]).astype(np.float32)
        if not np.isfinite(v).all():
            raise DataError(f"{path}: branch {name} holds NaN/inf values")
        jet_b[name] = v

    # Labels: mixed dtypes -> int, one-hot, and the hot index must be this file's class.
    lab = np.stack([ak.to_numpy(arrays[n]).astype(np.float64) for n in LABELS], 1)
    if not np.isfinite(lab).all() or not np.isin(lab, (0, 1)).all() or not (lab.sum(1) == 1).all():
        raise DataError(f"{path}: label_* branches are not one-hot for {int((lab.sum(1) != 1).sum())} jets")
    hot = lab.argmax(1)
    if (hot != label).any():
        bad = int((hot != label).sum())
        raise DataError(f"{path}: file prefix says class {CLASS_NAMES[label]} but {bad} jets are labelled "
                        f"{sorted({CLASS_NAMES[i] for i in np.unique(hot[hot != label])})}")

    lin = rows * m + cols                                       # slot of each particle in the (b, m) grid
    mask = np.zeros(b * m, dtype=bool)
    mask[lin] = True
    mask = mask.reshape(b, m)
    padded = np.zeros((len(names), b * m), dtype=np.float32)    # one scatter for all 16 particle branches
    padded[:, lin] = flat
    padded = padded.reshape(len(names), b, m)                   # each branch a contiguous (b, m) array
    p4 = np.stack(padded[:4], -1)                               # part_px, part_py, part_pz, part_energy
    part = {name: padded[k] for k, name in enumerate(names) if k >= 4}

    # pT order: JetClass is stored pT-descending; enforce it (stable, so ties keep the file order).
    pt = np.where(mask, np.hypot(p4[..., 0], p4[..., 1]), -np.inf)
    if not (pt[:, :-1] >= pt[:, 1:]).all():
        order = np.argsort(-pt, axis=1, kind="stable")
        p4 = np.take_along_axis(p4, order[..., None], 1)
        part = {k: np.take_along_axis(v, order, 1) for k, v in part.items()}
    part = {k[5:]: v for k, v in part.items()}         # "part_deta" -> "deta"
    jet = jet_from_constituents(p4, mask)               # mass from the constituents (no jet_mass branch)
    jet[:, 0], jet[:, 1], jet[:, 2], jet[:, 3] = (jet_b["jet_pt"], jet_b["jet_eta"], jet_b["jet_phi"],
                                                  jet_b["jet_energy"])
    jet[:, 5] = jet_b["jet_nparticles"]
    return RawJets(p4, mask, part, jet, np.full(b, label, dtype=np.int64), str(path))


def iter_jetclass(path: str, step_size: int = 100_000, entry_start: int | None = None,
                  entry_stop: int | None = None) -> Iterator[RawJets]:
    """Yield RawJets chunks of at most `step_size` jets from one JetClass ROOT file."""
    label = CLASS_NAMES.index(class_of_file(path))
    f, tree = _open_tree(path)
    with f:
        try:
            it = tree.iterate(READ_BRANCHES, step_size=step_size, entry_start=entry_start, entry_stop=entry_stop,
                              library="ak")
            for arrays in it:
                yield _to_raw(arrays, path, label)
        except DataError:
            raise
        except ImportError as e:     # real JetClass files are LZ4-compressed: uproot needs lz4 and xxhash
            raise ImportError(f"{path}: reading this file needs a decompression package: {e}") from e
        except Exception as e:
            raise DataError(f"{path}: failed to read branches (corrupt or truncated file?): {e}") from e


def read_jetclass(path: str, entry_start: int | None = None, entry_stop: int | None = None,
                  step_size: int = 100_000) -> RawJets:
    """Read a whole JetClass file (or an entry range) into one RawJets."""
    chunks = list(iter_jetclass(path, step_size, entry_start, entry_stop))
    if not chunks:
        raise DataError(f"{path}: no jets in entry range [{entry_start}, {entry_stop})")
    return chunks[0] if len(chunks) == 1 else RawJets.concatenate(chunks)
