"""Quark-gluon jets reader (Komiske, Metodiev, Thaler 2019; EnergyFlow `qg_jets`; Zenodo 3164691).

npz files with X (n, M_file, 4) = (pT, rapidity y, phi, pdgid) zero-padded to a per-file M, and y (1 = quark).
Following ParT's conversion: massless four-vectors from (pT, y used as eta, phi), particles re-sorted by pT, the jet
is the constituent sum, part_deta is sign(eta_jet)-flipped, PID one-hots and charge from the pdgid.
"""
from __future__ import annotations

import numpy as np

from common.data.features import DataError, RawJets, deta_dphi_partstyle, jet_from_constituents

CLASS_NAMES = ["Gluon", "Quark"]


def _pid_fields(pid: np.ndarray) -> dict:
    a = np.abs(pid)
    hadron_charge = np.sign(pid) * np.isin(a, (211, 321, 2212))
    lepton_charge = -np.sign(pid) * np.isin(a, (11, 13))               # pdg 11 = e-, 13 = mu-
    return {"charge": (hadron_charge + lepton_charge).astype(np.float32),
            "isChargedHadron": np.isin(a, (211, 321, 2212)).astype(np.float32),
            "isNeutralHadron": np.isin(a, (130, 2112)).astype(np.float32),
            "isPhoton": (a == 22).astype(np.float32),
            "isElectron": (a == 11).astype(np.float32),
            "isMuon": (a == 13).astype(np.float32)}


def load_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"X", "y"} <= keys:
                raise DataError(f"{path}: npz needs arrays 'X' and 'y'; found {sorted(keys)}")
            x, y = z["X"], z["y"]
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot read as npz (corrupt, truncated or empty?): {e}") from e
    if x.ndim != 3 or x.shape[2] != 4 or len(x) != len(y):
        raise DataError(f"{path}: expected X of shape (n, M, 4) = (pt, y, phi, pdgid) and y of shape (n,); "
                        f"got X {x.shape}, y {y.shape}")
    if len(x) == 0:
        raise DataError(f"{path}: holds no jets")
    return x, y


def to_raw(x: np.ndarray, y: np.ndarray, path: str) -> RawJets:
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise DataError(f"{path}: X or y holds {int((~np.isfinite(x)).sum() + (~np.isfinite(y)).sum())} NaN/inf")
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"{path}: y must be 0 (gluon) or 1 (quark)")
    pt = x[..., 0]
    mask = pt > 0
    order = np.argsort(np.where(mask, -pt, np.inf), axis=1, kind="stable")      # pT-descending, padding last
    x, mask = np.take_along_axis(x, order[..., None], 1), np.take_along_axis(mask, order, 1)
    m = max(int(mask.sum(1).max(initial=0)), 1)
    x, mask = x[:, :m], mask[:, :m]
    pt, rap, phi = x[..., 0], x[..., 1], x[..., 2]
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(rap), pt * np.cosh(rap)], -1)
    p4 = (p4 * mask[..., None]).astype(np.float32)
    jet = jet_from_constituents(p4, mask)
    deta, dphi = deta_dphi_partstyle(p4, mask, jet)
    part = {"deta": deta, "dphi": dphi}
    part.update({k: v * mask for k, v in _pid_fields(np.rint(x[..., 3]).astype(np.int64)).items()})
    return RawJets(p4, mask, part, jet, y.astype(np.int64), str(path))


def read_qg(path: str, entry_start: int = 0, entry_stop: int | None = None) -> RawJets:
    x, y = load_npz(path)
    return to_raw(x[entry_start:entry_stop], y[entry_start:entry_stop], path)


def num_entries(path: str) -> int:
    """Number of jets, reading only y (X of a real file is ~0.5 GB)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "y" not in z.files:
                raise DataError(f"{path}: npz needs arrays 'X' and 'y'; found {sorted(z.files)}")
            return len(z["y"])
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot read as npz (corrupt, truncated or empty?): {e}") from e
