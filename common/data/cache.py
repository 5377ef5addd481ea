"""Preprocessing cache: each source file is converted once per feature set into memory-mapped arrays, stored ragged.

Two kinds of entry, each a directory `<cache_dir>/<slot>.<key>/` of headerless little-endian arrays (`<name>.bin`,
dtype and shape in meta.json) memory-mapped on read:

  source entry  (slot `<file>-src-<tag>`), once per source file and row range, whatever the feature set:
                offsets (n+1, int64) into p4 (P_raw, 4) float32, the four-momenta of every particle of every jet, no
                padding; jet (n, 6) float32; label (n,) in the smallest integer type of its values
  feature entry (slot `<file>-<feature set>-n<N>-<tag>`), once per feature set and particle count:
                offsets (n+1, int64) into x (P, F) float32, the features of the particles the set keeps (at most N per
                jet, real particles only); pid (P,) int8 where the set has a particle ID; src_pos (P,) in the
                smallest unsigned type, the particle's position in the source jet, only for a set whose particles
                are not the first ones of the jet (OmniJet-alpha's angular cut): every other set's particle i of a
                jet is the source's particle i. Either way its four-momentum is read from the source entry.

Reading (CacheEntry.read) pads a batch back to N particles: x, mask, p4 and pid are the arrays FeatureSet.compute gave,
bit for bit (real particles first; zero at padding), jet and label as computed, label as int64. Features stay float32:
half precision would move ParT-style inputs by up to 2.4e-3 (clip range 5, 11-bit mantissa) and no test shows the
models' tokenisers and regression targets tolerate that.

A key hashes everything an entry depends on: the cache version, the source's absolute path, size and mtime, the row
range, and for a feature entry the feature set's name and parameters, num_particles and any fitted state. A changed
source or feature set gives a new key; entries of the same slot for an older state of the source (or an older cache
version) are removed, entries for another fitted state of the same source are kept (a concurrent step may read them). Entries are written to a temporary
directory and renamed into place, so an interrupted conversion leaves nothing that looks finished; a lock per slot
makes concurrent converters (DDP ranks, workers) wait for one conversion. Version 1 (padded .npy, p4 per feature set)
entries get other keys and are rebuilt.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable

import numpy as np

CACHE_VERSION = 2
PID_DTYPE = np.int8        # particle-ID classes (MPMv2: 0..7)


def source_stat(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _rows_extra(extra: dict | None) -> dict:
    """What of `extra` a source entry depends on (the row range), not fitted feature state."""
    return {k: v for k, v in (extra or {}).items() if k in ("fraction", "limit", "rows")}


def cache_key(source: str, feature_key: str | None, num_particles: int | None, extra: dict | None = None) -> str:
    info = {"version": CACHE_VERSION, "source": source_stat(source), "features": feature_key,
            "num_particles": num_particles, "extra": extra or {}}
    return hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()).hexdigest()[:20]


def slot_name(source: str, feature_name: str | None, num_particles: int | None, extra: dict | None = None) -> str:
    """Stable per (source path, feature set, N, split fraction, row limit): entries of the same slot with another key
    are stale. feature_name None: the source entry."""
    fraction, limit = (extra or {}).get("fraction"), (extra or {}).get("limit")
    tag = hashlib.sha256(f"{os.path.abspath(source)}:{fraction}:{limit}".encode()).hexdigest()[:8]
    if feature_name is None:
        return f"{os.path.basename(source)}-src-{tag}"
    return f"{os.path.basename(source)}-{feature_name}-n{num_particles}-{tag}"


def _open(directory: str, meta: dict) -> dict:
    out = {}
    for name, (dtype, shape) in meta["arrays"].items():
        path = os.path.join(directory, name + ".bin")
        if int(np.prod(shape)) == 0:
            out[name] = np.zeros(shape, dtype)
        else:
            out[name] = np.memmap(path, dtype=np.dtype(dtype), mode="r", shape=tuple(shape))
    return out


def _read_meta(directory: str) -> dict:
    with open(os.path.join(directory, "meta.json")) as f:
        return json.load(f)


class CacheEntry:
    """A feature entry and its source entry, memory-mapped (opened lazily, so the object pickles cheaply)."""

    def __init__(self, directory: str, source_directory: str):
        self.directory, self.source_directory = directory, source_directory
        self.meta = _read_meta(directory)
        self.n = int(self.meta["n"])
        self.num_particles = int(self.meta["num_particles"])
        self._arrays = self._views = None

    @property
    def views(self) -> dict:
        """`arrays` as plain ndarray views of the same maps (indexing a np.memmap costs a Python call per access)."""
        if self._views is None:
            self._views = {k: v.view(np.ndarray) for k, v in self.arrays.items()}
        return self._views

    @property
    def arrays(self) -> dict:
        """The stored arrays: the feature entry's (offsets, x, pid, src_pos where stored) and the source's
        (src_offsets, src_p4, jet, label)."""
        if self._arrays is None:
            src = _open(self.source_directory, _read_meta(self.source_directory))
            mine = _open(self.directory, self.meta)
            self._arrays = {"src_offsets": src["offsets"], "jet": src["jet"], "label": src["label"],
                            "src_p4": src["p4"], **mine}
        return self._arrays

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None, "_views": None}

    def __len__(self) -> int:
        return self.n

    def nbytes(self) -> dict:
        """Bytes on disk of the arrays: {"features": this entry, "source": its source entry}."""
        def size(d, meta):
            return sum(int(np.prod(s)) * np.dtype(t).itemsize for t, s in meta["arrays"].values())
        return {"features": size(self.directory, self.meta),
                "source": size(self.source_directory, _read_meta(self.source_directory))}

    def empty(self, b: int) -> dict:
        """Zeroed arrays of b jets as read() fills them."""
        a, n = self.views, self.num_particles
        out = {"x": np.zeros((b, n) + a["x"].shape[1:], np.float32), "mask": np.zeros((b, n), bool),
               "p4": np.zeros((b, n, 4), np.float32), "jet": np.zeros((b,) + a["jet"].shape[1:], np.float32),
               "label": np.zeros(b, np.int64)}
        if "pid" in a:
            out["pid"] = np.zeros((b, n), np.int64)
        return out

    def read(self, rows: np.ndarray, out: dict | None = None) -> dict:
        """Jets `rows` (sorted, within the entry) padded to num_particles: x, mask, p4, jet, label (int64) [+ pid].
        out: zeroed arrays of len(rows) jets to fill (e.g. slices of a batch's arrays, empty()), else new ones."""
        a = self.views
        rows = np.asarray(rows, dtype=np.int64)
        b, n = len(rows), self.num_particles
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        contiguous = hi - lo == b
        off = a["offsets"]
        if contiguous:                       # one slice of each array, no fancy indexing of the map
            o = np.asarray(off[lo:hi + 1], dtype=np.int64)
            starts, counts = o[:-1], np.diff(o)
            take = slice(int(o[0]), int(o[-1]))
        else:
            starts = np.asarray(off[rows], dtype=np.int64)
            counts = np.asarray(off[rows + 1], dtype=np.int64) - starts
        total = int(counts.sum())
        ramp = np.arange(total, dtype=np.int64)
        first = np.cumsum(counts) - counts                    # position of each jet's first particle in the batch
        flat = np.repeat(np.arange(0, b * n, n, dtype=np.int64) - first, counts) + ramp   # row in the (b*n) layout
        if not contiguous:
            take = np.repeat(starts - first, counts) + ramp

        out = self.empty(b) if out is None else out

        def pad(src, dest):
            dest.reshape((b * n,) + dest.shape[2:])[flat] = src[take]

        pad(a["x"], out["x"])
        # four-momenta from the source entry: particle i of the jet is the source's particle i, or src_pos says which
        so = np.asarray(a["src_offsets"][rows], dtype=np.int64)
        if "src_pos" in a:
            at = np.repeat(so, counts) + a["src_pos"][take]
        else:
            at = np.repeat(so - first, counts) + ramp
        out["p4"].reshape(b * n, 4)[flat] = a["src_p4"][at]
        np.less(np.arange(n)[None, :], counts[:, None], out=out["mask"])
        sel = slice(lo, hi) if contiguous else rows
        out["jet"][:] = a["jet"][sel]
        out["label"][:] = a["label"][sel]
        if "pid" in a:
            pad(a["pid"], out["pid"])
        return out


def get_or_build(cache_dir: str, source: str, feature_name: str, feature_key: str, num_particles: int,
                 n_rows: int, build: Callable[[], Iterable[tuple]], extra: dict | None = None) -> CacheEntry:
    """Return the cache entry for `source`, converting it with `build()` if it is missing or stale. build() yields
    (raw, features, positions) chunks whose lengths add up to `n_rows`: raw with p4 (B, M, 4), mask (B, M), jet, label
    (a common.data.features.RawJets), features the padded dict of FeatureSet.compute, positions
    FeatureSet.source_positions (None: the set keeps the first particles of every jet). Either way every kept
    particle's four-momentum must be the raw one at its position (checked while converting)."""
    os.makedirs(cache_dir, exist_ok=True)
    slot = slot_name(source, feature_name, num_particles, extra)
    key = cache_key(source, feature_key, num_particles, extra)
    final = os.path.join(cache_dir, f"{slot}.{key}")
    src_slot = slot_name(source, None, None, extra)
    src_final = os.path.join(cache_dir, f"{src_slot}.{cache_key(source, None, None, _rows_extra(extra))}")

    def ready():
        return all(os.path.exists(os.path.join(d, "meta.json")) for d in (final, src_final))

    if ready():
        return CacheEntry(final, src_final)
    with file_lock(os.path.join(cache_dir, f"{slot}.lock")):    # DDP ranks / workers: one converts, others wait
        if ready():
            return CacheEntry(final, src_final)
        with contextlib.ExitStack() as stack:                   # lock order: feature slot, then source slot
            write_src = not os.path.exists(os.path.join(src_final, "meta.json"))
            if write_src:
                stack.enter_context(file_lock(os.path.join(cache_dir, f"{src_slot}.lock")))
                write_src = not os.path.exists(os.path.join(src_final, "meta.json"))
            _build(cache_dir, slot, final, src_slot, src_final if write_src else None, source, key, feature_key,
                   num_particles, n_rows, build, extra)
    return CacheEntry(final, src_final)


@contextlib.contextmanager
def file_lock(path: str):
    """Exclusive advisory lock (fcntl.flock) held for the duration of the block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Writer:
    """Arrays of one entry being written into a temporary directory: appended ragged parts, whole small arrays."""

    def __init__(self, cache_dir: str, final: str):
        self.final = final
        self.tmp = f"{final}.{uuid.uuid4().hex[:8]}.tmp"
        os.makedirs(self.tmp)
        self.files, self.shapes, self.dtypes = {}, {}, {}

    def append(self, name: str, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        if name not in self.files:
            self.files[name] = open(os.path.join(self.tmp, name + ".bin"), "wb")
            self.shapes[name], self.dtypes[name] = [0, *a.shape[1:]], a.dtype.str
        self.files[name].write(a.tobytes())
        self.shapes[name][0] += len(a)

    def whole(self, name: str, a: np.ndarray) -> None:
        self.append(name, a)

    def finish(self, meta: dict) -> None:
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        meta = {**meta, "version": CACHE_VERSION,
                "arrays": {k: [self.dtypes[k], self.shapes[k]] for k in self.files}}
        with open(os.path.join(self.tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, default=str)
        os.rename(self.tmp, self.final)

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def smallest_int(values: np.ndarray) -> np.dtype:
    """The smallest signed integer type that holds every value (int8 for an empty array)."""
    if len(values) == 0:
        return np.dtype(np.int8)
    lo, hi = int(values.min()), int(values.max())
    for t in (np.int8, np.int16, np.int32, np.int64):
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return np.dtype(t)
    raise ValueError(f"values in [{lo}, {hi}] fit no integer type")


def _remove_stale(cache_dir: str, slot: str, keep: str, source: str) -> None:
    """Remove the slot's stale entries: (under the slot's lock) any .tmp, left by a killed conversion, and the entries
    of another version or of another state of the source file (its size or mtime changed). An entry of the same
    source with another feature key (another fitted state of the set, e.g. quantiles fitted for another run) is kept:
    a step running beside this one may be reading it (two mini steps replaced each other's entry and one failed)."""
    now = source_stat(source)
    for old in os.listdir(cache_dir):
        if not old.startswith(slot + ".") or old.endswith(".lock") or old == os.path.basename(keep):
            continue
        path = os.path.join(cache_dir, old)
        if not old.endswith(".tmp"):
            try:
                with open(os.path.join(path, "meta.json")) as f:
                    meta = json.load(f)
                if meta.get("version") == CACHE_VERSION and meta.get("source") == now:
                    continue
            except (OSError, ValueError):
                pass
        shutil.rmtree(path, ignore_errors=True)


def _counts(mask: np.ndarray, what: str, source: str) -> np.ndarray:
    """Real particles per jet; the mask must put them first."""
    counts = mask.sum(1)
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < counts[:, None]):
        raise RuntimeError(f"{source}: {what} has padding before a real particle; the ragged cache needs real "
                           "particles first")
    return counts.astype(np.int64)


def _build(cache_dir, slot, final, src_slot, src_final, source, key, feature_key, num_particles, n_rows, build,
           extra):
    _remove_stale(cache_dir, slot, final, source)
    shutil.rmtree(final, ignore_errors=True)          # finished, but its source entry was removed: rebuilt with it
    if src_final is not None:
        _remove_stale(cache_dir, src_slot, src_final, source)
    feat = _Writer(cache_dir, final)
    src = _Writer(cache_dir, src_final) if src_final is not None else None
    try:
        pos, counts, src_counts, jets, labels, src_pos = 0, [], [], [], [], []
        for raw, chunk, where in build():
            b = len(chunk["x"])
            if pos + b > n_rows:
                raise RuntimeError(f"{source}: conversion produced more rows than the expected {n_rows}")
            c = _counts(chunk["mask"], "a feature set's output", source)
            m = chunk["mask"]
            counts.append(c)
            feat.append("x", chunk["x"][m])
            if "pid" in chunk and chunk["pid"] is not None:
                pid = chunk["pid"][m]
                if len(pid) and (pid.min() < np.iinfo(PID_DTYPE).min or pid.max() > np.iinfo(PID_DTYPE).max):
                    raise RuntimeError(f"{source}: particle IDs outside {np.dtype(PID_DTYPE).name}")
                feat.append("pid", pid.astype(PID_DTYPE))
            rc = _counts(raw.mask, "the reader's jets", source)
            if where is None:               # the set's particle i is the source's particle i
                where = np.broadcast_to(np.arange(m.shape[1]), m.shape)
            else:
                src_pos.append(np.asarray(where)[m])
            jet_idx = np.nonzero(m)[0]
            at = np.asarray(where)[m]
            ok = (at < rc[jet_idx]).all() if len(at) else True
            if not ok or not np.array_equal(chunk["p4"][m], np.asarray(raw.p4, np.float32)[jet_idx, at]):
                raise RuntimeError(f"{source}: the feature set's four-momenta are not the raw ones at its particles' "
                                   "positions (the first particles of each jet, or FeatureSet.source_positions)")
            if src is not None:
                src.append("p4", np.asarray(raw.p4, np.float32)[raw.mask])
                src_counts.append(rc)
                jets.append(np.asarray(raw.jet, np.float32))
                labels.append(np.asarray(raw.label))
            pos += b
        if pos != n_rows:
            raise RuntimeError(f"{source}: conversion produced {pos} rows, expected {n_rows}")
        if "x" not in feat.files:
            raise RuntimeError(f"{source}: conversion produced no rows")
        if src is not None:                  # the source entry first: a feature entry never lacks its source
            lab = np.concatenate(labels)
            src.whole("offsets", np.concatenate([[0], np.cumsum(np.concatenate(src_counts))]).astype(np.int64))
            src.whole("jet", np.concatenate(jets))
            src.whole("label", lab.astype(smallest_int(lab)))
            src.finish({"n": n_rows, "kind": "source", "source": source_stat(source), "extra": _rows_extra(extra)})
            src = None
        feat.whole("offsets", np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64))
        if src_pos:
            at = np.concatenate(src_pos)
            feat.whole("src_pos", at.astype(np.uint8 if len(at) == 0 or at.max() < 256 else np.uint16))
        feat.finish({"n": n_rows, "kind": "features", "key": key, "source": source_stat(source),
                     "features": feature_key, "num_particles": num_particles, "extra": extra or {},
                     "source_positions": bool(src_pos)})
    except BaseException:
        feat.abort()
        if src is not None:
            src.abort()
        raise


def padded_bytes_per_jet(num_features: int, num_particles: int, pid: bool) -> int:
    """Bytes per jet of the version-1 layout: every jet padded to num_particles, float32 x, bool mask, float32 p4 per
    feature set, float32 jet (6), int64 label, int64 pid."""
    return num_particles * (num_features * 4 + 1 + 16 + (8 if pid else 0)) + 6 * 4 + 8
