"""Atomic file writes: every file the kit writes appears whole or not at all.

    with atomic_path(path) as tmp:   # write tmp (any library); on success it is moved onto path, on error removed
        np.save(tmp, array)
    write_json(path, obj)            # JSON (numpy / torch scalars and arrays, Path) through atomic_path
    write_text(path, text)

The temporary file is `<path>.tmp` in the same directory (os.replace is atomic within a file system); `unique=True`
gives it a per-process random name, for files that several processes may write at once (caches, memo files).
"""
from __future__ import annotations

import errno
import json
import os
import uuid
from contextlib import contextmanager

import numpy as np
import torch


class NoSpaceError(OSError):
    """A write that failed for want of disk space (or quota): one line naming the file (common.cli)."""


_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_path(path, unique: bool = False):
    """Yield a temporary path beside `path`; move it onto `path` when the block succeeds, remove it otherwise.
    A full disk (ENOSPC / EDQUOT) is a NoSpaceError naming `path`; the earlier file at `path` is left intact."""
    path = str(path)
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp" if unique else f"{path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in _FULL and not isinstance(e, NoSpaceError):
            full = NoSpaceError(f"{path}: cannot write: no space left on the device; free some space and rerun "
                                "the same command (the earlier file, if any, is intact)")
            full.errno = e.errno
            raise full from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    record_written(path)


RUN_MARKER = ".jetfm-run"         # written at a run's start (common.training.train_utils.start_run)
MANIFEST = ".jetfm-written"       # beside it: every file the kit wrote in the run, one relative path a line
_recorded: set[tuple[str, str]] = set()


def run_folder_of(path) -> str | None:
    """The nearest folder above `path` that holds a run marker (the run the file belongs to), or None."""
    d = os.path.dirname(os.path.abspath(path))
    for _ in range(32):
        if os.path.isfile(os.path.join(d, RUN_MARKER)):
            return d
        up = os.path.dirname(d)
        if up == d:
            return None
        d = up
    return None


def record_written(path) -> None:
    """Note `path` in the manifest of the run folder it lies in (if any): --restart (clear_run) deletes exactly the
    files a manifest names, never a file the user saved there. Every writer of the kit records through here
    (atomic_path, the metric logger)."""
    run = run_folder_of(path)
    if run is None:
        return
    rel = os.path.relpath(os.path.abspath(path), run)
    if os.path.basename(rel).startswith(".jetfm") and os.path.dirname(rel) == "":
        return
    if (run, rel) in _recorded:
        return
    try:
        with open(os.path.join(run, MANIFEST), "a") as f:
            f.write(rel + "\n")
    except OSError:
        return        # a read-only or full run folder: the file is then never deleted by --restart (the safe side)
    _recorded.add((run, rel))


def forget_run(run) -> None:
    """After --restart removed a run's manifest: files written again are recorded again."""
    run = os.path.abspath(run)
    for key in [k for k in _recorded if k[0] == run or k[0].startswith(run + os.sep)]:
        _recorded.discard(key)


def read_manifest(run) -> set[str] | None:
    """The relative paths a run folder's manifest records (None: no manifest)."""
    try:
        with open(os.path.join(run, MANIFEST)) as f:
            return {line.rstrip("\n") for line in f if line.strip()}
    except FileNotFoundError:
        return None


def json_default(o):
    """JSON for what the kit writes besides plain Python: numpy / torch scalars and arrays, paths."""
    if isinstance(o, (np.generic, np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_text(path, text: str, unique: bool = False) -> None:
    with atomic_path(path, unique) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def _no_nan(obj):
    """obj with every NaN float (numpy and torch values included) replaced by None: a bare NaN is not JSON."""
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor, np.generic)):
        return _no_nan(obj.tolist())
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def write_json(path, obj, indent: int | None = 2, unique: bool = False) -> None:
    """Write obj as JSON atomically (json_default converts numpy / torch values). A NaN is written as null, so no
    file of the kit holds a bare NaN (strict JSON readers reject it); result tables refuse NaN before that
    (common.results.tables.validate_result)."""
    write_text(path, json.dumps(_no_nan(obj), indent=indent, default=json_default), unique)
