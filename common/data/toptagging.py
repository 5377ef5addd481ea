"""Top Quark Tagging reference dataset reader (Kasieczka et al. 2019, arXiv:1902.09914; Zenodo 2603256).

pandas HDF5 files with key "table": columns E_i, PX_i, PY_i, PZ_i (i < 200, pT-ordered, zero-padded), truthE/PX/PY/PZ,
ttv, is_signal_new (1 = top). Read with h5py (no pandas/PyTables needed), columns selected by NAME, for both PyTables
layouts: "fixed" (table/axis0 + table/blockK_items, table/blockK_values) and "table" (compound table/table whose
values_block_K fields list their columns in the values_block_K_kind attribute, or data columns named directly).
Following ParT's conversion, the jet is the sum of the constituents and part_deta is sign(eta_jet)-flipped.
"""
from __future__ import annotations

import io
import pickle
from collections.abc import Iterator

import h5py
import numpy as np

from common.data.features import DataError, RawJets, deta_dphi_partstyle, jet_from_constituents

CLASS_NAMES = ["QCD", "Top"]
KEY = "table"
MAX_PARTICLES = 200
PARTICLE_COLUMNS = [f"{c}_{i}" for i in range(MAX_PARTICLES) for c in ("E", "PX", "PY", "PZ")]
LABEL_COLUMN = "is_signal_new"


class _NoGlobals(pickle.Unpickler):
    """Unpickle PyTables' column-name lists (plain lists of str) without allowing any class lookups."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _names(raw) -> list[str]:
    if isinstance(raw, (bytes, np.bytes_)):
        return [str(n) for n in _NoGlobals(io.BytesIO(bytes(raw))).load()]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(raw).tolist()]


class TopTaggingFile:
    """Random access to one Top-tagging file by column name: `read(columns, start, stop) -> (rows, len(columns))`."""

    def __init__(self, path: str):
        self.path = str(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except Exception as e:
            raise DataError(f"{path}: cannot open as HDF5 (corrupt, truncated or empty?): {e}") from e
        if KEY not in self.h5:
            found = list(self.h5.keys())
            self.h5.close()
            raise DataError(f"{path}: no key {KEY!r} (pandas to_hdf key); found {found}")
        g = self.h5[KEY]
        self.columns: dict[str, tuple] = {}   # name -> (dataset, field or None, column index or None)
        try:
            if "table" in g and isinstance(g["table"], h5py.Dataset) and g["table"].dtype.names:   # format="table"
                ds = g["table"]
                self.nrows = ds.shape[0]
                for fld in ds.dtype.names:
                    if fld.startswith("values_block_"):
                        for j, n in enumerate(_names(ds.attrs[f"{fld}_kind"])):
                            self.columns[n] = (ds, fld, j)
                    elif fld != "index":
                        self.columns[fld] = (ds, fld, None)                  # data_columns=True
            elif "axis0" in g:                                                # format="fixed"
                # pandas stores an empty axis as a 1-element placeholder carrying a pickled "shape" attribute
                self.nrows = 0 if "shape" in g["axis1"].attrs else g["axis1"].shape[0]
                k = 0
                while f"block{k}_items" in g:
                    for j, n in enumerate(_names(g[f"block{k}_items"][()])):
                        self.columns[n] = (g[f"block{k}_values"], None, j)
                    k += 1
            else:
                raise DataError(f"{path}: {KEY!r} is neither a PyTables fixed (axis0/blockK_*) nor a table-format "
                                f"(table/table) pandas layout; members {list(g.keys())}")
        except DataError:
            self.h5.close()
            raise
        except Exception as e:
            self.h5.close()
            raise DataError(f"{path}: unreadable pandas layout under {KEY!r}: {e}") from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.h5.close()

    def read(self, names: list[str], start: int = 0, stop: int | None = None) -> np.ndarray:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise DataError(f"{self.path}: missing column(s) {missing[:8]}{' ...' if len(missing) > 8 else ''} "
                            f"under key {KEY!r}")
        stop = self.nrows if stop is None else min(stop, self.nrows)
        out = np.empty((max(stop - start, 0), len(names)), np.float32)
        groups: dict = {}
        for i, n in enumerate(names):
            ds, fld, j = self.columns[n]
            groups.setdefault((id(ds), fld), (ds, fld, [], []))
            groups[(id(ds), fld)][2].append(i)
            groups[(id(ds), fld)][3].append(j)
        try:
            for ds, fld, dst, src in groups.values():
                block = ds[start:stop] if fld is None else ds.fields(fld)[start:stop]
                out[:, dst] = block.reshape(len(block), -1)[:, src] if src[0] is not None else block.reshape(-1, 1)
        except Exception as e:
            raise DataError(f"{self.path}: failed to read rows {start}:{stop} (truncated file?): {e}") from e
        return out


def _to_raw(block: np.ndarray, path: str) -> RawJets:
    if not np.isfinite(block).all():
        raise DataError(f"{path}: {int((~np.isfinite(block)).sum())} NaN/inf values in the E/PX/PY/PZ or label columns")
    label = block[:, -1]
    if not np.isin(label, (0, 1)).all():
        raise DataError(f"{path}: {LABEL_COLUMN} must be 0 or 1")
    epxpypz = block[:, :-1].reshape(len(block), MAX_PARTICLES, 4)
    e, p = epxpypz[..., 0], np.linalg.norm(epxpypz[..., 1:], axis=-1)
    bad = (e < 0) | ((e > 0) & (e < p * (1 - 1e-2) - 1e-3))   # E >= |p| for a real particle (float32 rounding allowed)
    if bad.any():
        j, k = np.argwhere(bad)[0]
        raise DataError(f"{path}: {int(bad.sum())} non-physical constituent four-vector(s) (negative energy or "
                        f"E < |p|), first: jet {j}, constituent {k}: E = {e[j, k]:.4g}, |p| = {p[j, k]:.4g}")
    p4 = epxpypz[..., [1, 2, 3, 0]].astype(np.float32)
    mask = p4[..., 3] > 0
    m = max(int(mask.sum(1).max(initial=0)), 1)
    if mask[:, m:].any():
        raise DataError(f"{path}: particles are not front-filled (E > 0 after zero padding)")
    p4, mask = p4[:, :m], mask[:, :m]
    pt = np.where(mask, np.hypot(p4[..., 0], p4[..., 1]), -np.inf)
    if not (pt[:, :-1] >= pt[:, 1:]).all():                              # enforce pT order (stable)
        order = np.argsort(-pt, axis=1, kind="stable")
        p4, mask = np.take_along_axis(p4, order[..., None], 1), np.take_along_axis(mask, order, 1)
    p4 = p4 * mask[..., None]
    jet = jet_from_constituents(p4, mask)
    deta, dphi = deta_dphi_partstyle(p4, mask, jet)
    return RawJets(p4, mask, {"deta": deta, "dphi": dphi}, jet, label.astype(np.int64), path)


def num_entries(path: str) -> int:
    with TopTaggingFile(path) as f:
        return int(f.nrows)


def iter_toptagging(path: str, step_size: int = 100_000, entry_start: int = 0,
                    entry_stop: int | None = None) -> Iterator[RawJets]:
    with TopTaggingFile(path) as f:
        stop = f.nrows if entry_stop is None else min(entry_stop, f.nrows)
        if f.nrows == 0:
            raise DataError(f"{path}: key {KEY!r} holds no jets")
        for s in range(entry_start or 0, stop, step_size):
            yield _to_raw(f.read(PARTICLE_COLUMNS + [LABEL_COLUMN], s, min(s + step_size, stop)), str(path))


def read_toptagging(path: str, entry_start: int = 0, entry_stop: int | None = None,
                    step_size: int = 100_000) -> RawJets:
    chunks = list(iter_toptagging(path, step_size, entry_start, entry_stop))
    if not chunks:
        raise DataError(f"{path}: no jets in rows [{entry_start}, {entry_stop})")
    return chunks[0] if len(chunks) == 1 else RawJets.concatenate(chunks)
