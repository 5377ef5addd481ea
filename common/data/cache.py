"""Preprocessing cache: each source file is converted once per feature set into memory-mapped .npy arrays.

An entry is a directory `<cache_dir>/<slot>.<key>/` holding x.npy, mask.npy, p4.npy, jet.npy, label.npy (+ pid.npy)
and meta.json. The slot names the source file, feature set and particle count; the key hashes everything the arrays
depend on: the source's absolute path, size and mtime, the feature set's name and parameters, num_particles, the row
range and any fitted state. A changed source or feature set gives a new key; stale entries of the same slot are
removed. Entries are written to a temporary directory and renamed into place, so an interrupted conversion leaves
nothing that looks finished.
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


CACHE_VERSION = 1
ARRAYS = ("x", "mask", "p4", "jet", "label", "pid")


def source_stat(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(source: str, feature_key: str, num_particles: int, extra: dict | None = None) -> str:
    info = {"version": CACHE_VERSION, "source": source_stat(source), "features": feature_key,
            "num_particles": num_particles, "extra": extra or {}}
    return hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()).hexdigest()[:20]


def slot_name(source: str, feature_name: str, num_particles: int, extra: dict | None = None) -> str:
    """Stable per (source path, feature set, N, split fraction, row limit): entries of the same slot with another key are stale."""
    fraction, limit = (extra or {}).get("fraction"), (extra or {}).get("limit")
    tag = hashlib.sha256(f"{os.path.abspath(source)}:{fraction}:{limit}".encode()).hexdigest()[:8]
    return f"{os.path.basename(source)}-{feature_name}-n{num_particles}-{tag}"


class CacheEntry:
    """Memory-mapped arrays of one converted source file (opened lazily, so the object pickles cheaply)."""

    def __init__(self, directory: str):
        self.directory = directory
        with open(os.path.join(directory, "meta.json")) as f:
            self.meta = json.load(f)
        self.n = int(self.meta["n"])
        self._arrays = None

    @property
    def arrays(self) -> dict:
        if self._arrays is None:
            self._arrays = {k: np.load(os.path.join(self.directory, k + ".npy"), mmap_mode="r")
                            for k in self.meta["arrays"]}
        return self._arrays

    def __getstate__(self):
        return {"directory": self.directory, "meta": self.meta, "n": self.n, "_arrays": None}

    def __len__(self) -> int:
        return self.n


def get_or_build(cache_dir: str, source: str, feature_name: str, feature_key: str, num_particles: int,
                 n_rows: int, build: Callable[[], Iterable[dict]], extra: dict | None = None) -> CacheEntry:
    """Return the cache entry for `source`, converting it with `build()` (an iterator of feature-dict chunks whose
    lengths add up to `n_rows`) if it is missing or stale."""
    os.makedirs(cache_dir, exist_ok=True)
    slot = slot_name(source, feature_name, num_particles, extra)
    key = cache_key(source, feature_key, num_particles, extra)
    final = os.path.join(cache_dir, f"{slot}.{key}")
    if os.path.exists(os.path.join(final, "meta.json")):
        return CacheEntry(final)
    with file_lock(os.path.join(cache_dir, f"{slot}.lock")):    # DDP ranks / workers: one converts, others wait
        if os.path.exists(os.path.join(final, "meta.json")):
            return CacheEntry(final)
        _build(cache_dir, slot, final, source, key, feature_key, num_particles, n_rows, build, extra)
    return CacheEntry(final)


@contextlib.contextmanager
def file_lock(path: str):
    """Exclusive advisory lock (fcntl.flock) held for the duration of the block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(cache_dir, slot, final, source, key, feature_key, num_particles, n_rows, build, extra):
    # Invalidate: other keys of this slot are stale, and (under the lock) any .tmp is left by a killed conversion.
    for old in os.listdir(cache_dir):
        if old.startswith(slot + ".") and not old.endswith(".lock") and old != os.path.basename(final):
            shutil.rmtree(os.path.join(cache_dir, old), ignore_errors=True)
    tmp = f"{final}.{uuid.uuid4().hex[:8]}.tmp"
    os.makedirs(tmp)
    try:
        out, pos = {}, 0
        for chunk in build():
            b = len(chunk["label"])
            if not out:
                for k, v in chunk.items():
                    out[k] = np.lib.format.open_memmap(os.path.join(tmp, k + ".npy"), mode="w+", dtype=v.dtype,
                                                       shape=(n_rows,) + v.shape[1:])
            if pos + b > n_rows:
                raise RuntimeError(f"{source}: conversion produced more rows than the expected {n_rows}")
            for k, v in chunk.items():
                out[k][pos:pos + b] = v
            pos += b
        if pos != n_rows:
            raise RuntimeError(f"{source}: conversion produced {pos} rows, expected {n_rows}")
        for v in out.values():
            v.flush()
        del out
        meta = {"n": n_rows, "arrays": sorted(k for k in os.listdir(tmp) if k.endswith(".npy")), "key": key,
                "source": source_stat(source), "features": feature_key, "num_particles": num_particles,
                "extra": extra or {}}
        meta["arrays"] = [a[:-4] for a in meta["arrays"]]
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, default=str)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

