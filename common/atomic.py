"""Atomic file writes: every file the kit writes appears whole or not at all.

    with atomic_path(path) as tmp:   # write tmp (any library); on success it is moved onto path, on error removed
        np.save(tmp, array)
    write_json(path, obj)            # JSON (numpy / torch scalars and arrays, Path) through atomic_path
    write_text(path, text)

The temporary file is `<path>.tmp` in the same directory (os.replace is atomic within a file system); `unique=True`
gives it a per-process random name, for files that several processes may write at once (caches, memo files).
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
import numpy as np
import torch


@contextmanager
def atomic_path(path, unique: bool = False):
    """Yield a temporary path beside `path`; move it onto `path` when the block succeeds, remove it otherwise."""
    path = str(path)
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp" if unique else f"{path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
