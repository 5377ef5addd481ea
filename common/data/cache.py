"""Preprocessing cache: each source file's real particles stored once, ragged and memory-mapped; a feature set is
computed from them when read, or converted once and stored beside them.

Two kinds of entry, each a directory `<cache_dir>/<slot>.<key>/` of headerless little-endian arrays (`<name>.bin`,
dtype and shape in meta.json) memory-mapped on read:

  source entry  (slot `<file>-src-<tag>`), once per source file and row range, whatever the feature set:
                offsets (n+1, int64) into the particle arrays, every real particle of every jet, no padding: p4
                (P_raw, 4) float32 and the SOURCE_FIELDS of common/data/features.py, deta and dphi (P_raw,) float32;
                per jet: jet (n, 6) float32, axis (n, 2) float32 (eta, phi of the summed constituents), label (n,) in
                the smallest integer type of its values
  feature entry (slot `<file>-<feature set>-n<N>-<tag>`), once per feature set and particle count. For a set
                computed on read (`ParticleFeatureSet.on_read`: ParT kin/rel, HEP-JEPA, MPMv1, OmniJet-alpha: cheap
                functions of the source arrays, no fitted state) only its meta.json: the features are computed from
                the source entry when a batch is read. Every other set (a particle ID, impact parameters, MPMv2's
                fitted quantiles) is stored: offsets (n+1, int64) into x (P, F) float32, the features of the particles
                the set keeps (at most N per jet, real particles only); pid (P,) int8 where the set has a particle ID;
                src_pos (P,) in the smallest unsigned type, the particle's position in the source jet, only for a set
                whose particles are not the first ones of the jet: every other set's particle i of a jet is the
                source's particle i. Either way its four-momentum is read from the source entry.

Reading (CacheEntry.read) pads a batch back to N particles: x, mask, p4 and pid are the arrays FeatureSet.compute gave,
bit for bit (real particles first; zero at padding), jet and label as computed, label as int64: a set computed on
read runs the same function (ParticleFeatureSet.from_particles) on the same float32 inputs as at conversion. Stored
features stay float32: half precision would move ParT-style inputs by up to 2.4e-3 (clip range 5, 11-bit mantissa)
and no test shows the models' tokenisers and regression targets tolerate that; computing on read loses nothing.

A key hashes everything an entry depends on: the cache version, the source's absolute path, size and mtime, the row
range, and for a feature entry the feature set's name and parameters, num_particles and any fitted state. A changed
source or feature set gives a new key (as does whether the set is computed on read); entries of the same slot for an
older state of the source (or an older cache version) are removed, entries for another fitted state of the same source
are kept (a concurrent step may read them). Entries are written to a temporary directory and renamed into place, so an
interrupted conversion leaves nothing that looks finished; a lock per slot makes concurrent converters (DDP ranks,
workers) wait for one conversion. Entries of versions 1 (padded .npy, p4 per feature set) and 2 (every feature set
stored) get other keys and are rebuilt.
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

from common.data.features import SOURCE_FIELDS, FeatureSet, Particles, jet_from_constituents, padded_slots

CACHE_VERSION = 3
PID_DTYPE = np.int8        # particle-ID classes (MPMv2: 0..7)


def source_stat(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _rows_extra(extra: dict | None) -> dict:
    """What of `extra` a source entry depends on (the row range), not fitted feature state."""
    return {k: v for k, v in (extra or {}).items() if k in ("fraction", "limit", "rows")}


def cache_key(source: str, feature_key: str | None, num_particles: int | None, extra: dict | None = None,
              on_read: bool = False) -> str:
    info = {"version": CACHE_VERSION, "source": source_stat(source), "features": feature_key,
            "num_particles": num_particles, "extra": extra or {}}
    if on_read:
        info["on_read"] = True
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
    """A feature entry and its source entry, memory-mapped (opened lazily, so the object pickles cheaply).
    computed: the ParticleFeatureSet of an entry computed on read (it stores no features), else None."""

    def __init__(self, directory: str, source_directory: str, computed: FeatureSet | None = None):
        self.directory, self.source_directory, self.computed = directory, source_directory, computed
        self.meta = _read_meta(directory)
        if bool(self.meta.get("on_read")) != (computed is not None):
            raise RuntimeError(f"{directory}: cache entry {'is' if self.meta.get('on_read') else 'is not'} computed "
                               "on read, the feature set says otherwise")
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
        """The stored arrays: the feature entry's (offsets, x, pid, src_pos where stored: none for a set computed on
        read) and the source's (src_offsets, src_p4, src_<field> of SOURCE_FIELDS, jet, axis, label)."""
        if self._arrays is None:
            src = _open(self.source_directory, _read_meta(self.source_directory))
            mine = _open(self.directory, self.meta)
            self._arrays = {"src_offsets": src["offsets"], "jet": src["jet"], "axis": src["axis"],
                            "label": src["label"], "src_p4": src["p4"],
                            **{"src_" + f: src[f] for f in SOURCE_FIELDS if f in src}, **mine}
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
        f = len(self.computed.names) if self.computed is not None else a["x"].shape[1]
        out = {"x": np.zeros((b, n, f), np.float32), "mask": np.zeros((b, n), bool),
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
        sel = slice(lo, hi) if hi - lo == b else rows    # contiguous: one slice of each array, no fancy indexing
        out = self.empty(b) if out is None else out
        out["jet"][:] = a["jet"][sel]
        out["label"][:] = a["label"][sel]
        if self.computed is not None:      # computed on read: the same function as at conversion, same inputs
            fs = self.computed
            _, src_counts, src_take = _particles_of(a["src_offsets"], sel)
            parts = Particles(a["src_p4"][src_take], {f: a["src_" + f][src_take] for f in fs.source_fields},
                              out["jet"], a["axis"][sel], src_counts)
            parts.pad(*fs.from_particles(parts, n), n, out)
            return out

        _, counts, take = _particles_of(a["offsets"], sel)
        flat = padded_slots(counts, n)                        # row of each particle in the (b*n) layout

        def pad(src, dest):
            dest.reshape((b * n,) + dest.shape[2:])[flat] = src[take]

        pad(a["x"], out["x"])
        # four-momenta from the source entry: particle i of the jet is the source's particle i, or src_pos says which
        so = np.asarray(a["src_offsets"][sel], dtype=np.int64)
        if "src_pos" in a:
            at = np.repeat(so, counts) + a["src_pos"][take]
        else:
            at = np.repeat(so - (np.cumsum(counts) - counts), counts) + np.arange(len(flat))
        out["p4"].reshape(b * n, 4)[flat] = a["src_p4"][at]
        np.less(np.arange(n)[None, :], counts[:, None], out=out["mask"])
        if "pid" in a:
            pad(a["pid"], out["pid"])
        return out


def _particles_of(offsets: np.ndarray, sel) -> tuple[np.ndarray, np.ndarray, np.ndarray | slice]:
    """(first particle, particle count, and the particles in order: a slice when `sel` is one) of the jets `sel` (a
    slice or sorted rows) of a ragged array with these offsets."""
    if isinstance(sel, slice):
        o = np.asarray(offsets[sel.start:sel.stop + 1], dtype=np.int64)
        return o[:-1], np.diff(o), slice(int(o[0]), int(o[-1]))
    starts = np.asarray(offsets[sel], dtype=np.int64)
    counts = np.asarray(offsets[sel + 1], dtype=np.int64) - starts
    return starts, counts, np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))


def get_or_build(cache_dir: str, source: str, feature_name: str, feature_key: str, num_particles: int,
                 n_rows: int, build: Callable[[], Iterable[tuple]], extra: dict | None = None,
                 computed: FeatureSet | None = None) -> CacheEntry:
    """Return the cache entry for `source`, converting it with `build()` if it is missing or stale. computed: the
    feature set when it is computed on read (ParticleFeatureSet.on_read): its entry stores no features. build() yields
    (raw, features, positions) chunks whose lengths add up to `n_rows`: raw with p4 (B, M, 4), mask (B, M), jet, label
    (a common.data.features.RawJets), features the padded dict of FeatureSet.compute, positions
    FeatureSet.source_positions (None: the set keeps the first particles of every jet). Either way every kept
    particle's four-momentum must be the raw one at its position (checked while converting)."""
    os.makedirs(cache_dir, exist_ok=True)
    slot = slot_name(source, feature_name, num_particles, extra)
    key = cache_key(source, feature_key, num_particles, extra, on_read=computed is not None)
    final = os.path.join(cache_dir, f"{slot}.{key}")
    src_slot = slot_name(source, None, None, extra)
    src_final = os.path.join(cache_dir, f"{src_slot}.{cache_key(source, None, None, _rows_extra(extra))}")

    def ready():
        return all(os.path.exists(os.path.join(d, "meta.json")) for d in (final, src_final))

    if ready():
        return CacheEntry(final, src_final, computed)
    with file_lock(os.path.join(cache_dir, f"{slot}.lock")):    # DDP ranks / workers: one converts, others wait
        if ready():
            return CacheEntry(final, src_final, computed)
        with contextlib.ExitStack() as stack:                   # lock order: feature slot, then source slot
            write_src = not os.path.exists(os.path.join(src_final, "meta.json"))
            if write_src:
                stack.enter_context(file_lock(os.path.join(cache_dir, f"{src_slot}.lock")))
                write_src = not os.path.exists(os.path.join(src_final, "meta.json"))
            _build(cache_dir, slot, final, src_slot, src_final if write_src else None, source, key, feature_key,
                   num_particles, n_rows, build, extra, computed is not None)
    return CacheEntry(final, src_final, computed)


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
           extra, on_read):
    _remove_stale(cache_dir, slot, final, source)
    shutil.rmtree(final, ignore_errors=True)          # finished, but its source entry was removed: rebuilt with it
    if src_final is not None:
        _remove_stale(cache_dir, src_slot, src_final, source)
    feat = _Writer(cache_dir, final)
    src = _Writer(cache_dir, src_final) if src_final is not None else None
    try:
        pos, counts, src_counts, jets, labels, src_pos, src_axis = 0, [], [], [], [], [], []
        for raw, chunk, where in build():
            b = len(chunk["x"])
            if pos + b > n_rows:
                raise RuntimeError(f"{source}: conversion produced more rows than the expected {n_rows}")
            c = _counts(chunk["mask"], "a feature set's output", source)
            m = chunk["mask"]
            counts.append(c)
            if not on_read:                 # a set computed on read stores nothing but its meta.json (its features
                feat.append("x", chunk["x"][m])   # were still computed: compute() refuses non-finite ones here, once)
            if "pid" in chunk and chunk["pid"] is not None and not on_read:
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
                for f in SOURCE_FIELDS:
                    if f in raw.part:
                        src.append(f, np.asarray(raw.part[f], np.float32)[raw.mask])
                src_counts.append(rc)
                src_axis.append(jet_from_constituents(raw.p4, raw.mask)[:, 1:3])
                jets.append(np.asarray(raw.jet, np.float32))
                labels.append(np.asarray(raw.label))
            pos += b
        if pos != n_rows:
            raise RuntimeError(f"{source}: conversion produced {pos} rows, expected {n_rows}")
        if pos == 0:
            raise RuntimeError(f"{source}: conversion produced no rows")
        if src is not None:                  # the source entry first: a feature entry never lacks its source
            lab = np.concatenate(labels)
            src.whole("offsets", np.concatenate([[0], np.cumsum(np.concatenate(src_counts))]).astype(np.int64))
            src.whole("jet", np.concatenate(jets))
            src.whole("axis", np.concatenate(src_axis))
            src.whole("label", lab.astype(smallest_int(lab)))
            src.finish({"n": n_rows, "kind": "source", "source": source_stat(source), "extra": _rows_extra(extra)})
            src = None
        if not on_read:
            feat.whole("offsets", np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64))
        if src_pos and not on_read:
            at = np.concatenate(src_pos)
            feat.whole("src_pos", at.astype(np.uint8 if len(at) == 0 or at.max() < 256 else np.uint16))
        feat.finish({"n": n_rows, "kind": "features", "key": key, "source": source_stat(source),
                     "features": feature_key, "num_particles": num_particles, "extra": extra or {},
                     "source_positions": bool(src_pos), "on_read": on_read})
    except BaseException:
        feat.abort()
        if src is not None:
            src.abort()
        raise


def padded_bytes_per_jet(num_features: int, num_particles: int, pid: bool) -> int:
    """Bytes per jet of the version-1 layout: every jet padded to num_particles, float32 x, bool mask, float32 p4 per
    feature set, float32 jet (6), int64 label, int64 pid."""
    return num_particles * (num_features * 4 + 1 + 16 + (8 if pid else 0)) + 6 * 4 + 8
