"""Metric logs beside the checkpoint: one JSON object per line (`log.jsonl`), optionally a CSV mirror. Rank 0 only.

    log = MetricLogger(out_dir, enabled=dist.is_main)
    log.log(step, loss=0.7, lr=1e-3)            # {"step": 100, "loss": 0.7, "lr": 0.001, "time": 12.3}
    read_log(out_dir / "log.jsonl")             # list of dicts (for plots and tests)

A resumed run appends to the same file; `truncate_after(step)` drops lines the crashed run wrote after its last
checkpoint so the log has each step once. The first line a logger writes also drops every earlier line at or after
its step: a run killed before its first checkpoint and started again from step 0 does not log its steps twice.
"""
from __future__ import annotations

import csv
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from common.atomic import record_written, write_text
from common.training.distributed import is_main


def _plain(v):
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no nan/inf: keep them visible as strings
    return v


class MetricLogger:
    def __init__(self, out_dir, filename: str = "log.jsonl", enabled: bool | None = None, csv_file: str | None = None):
        """enabled: None = rank 0 of the current process group. csv_file: also write a CSV (columns fixed by the
        first logged line; later new keys are ignored in the CSV, never in the JSONL)."""
        self.enabled = is_main() if enabled is None else enabled
        self.path = Path(out_dir) / filename
        self.csv_path = Path(out_dir) / csv_file if csv_file else None
        self._csv_cols = None
        self._first = True
        self.t0 = time.time()
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, step: int, **metrics) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}, "time": round(time.time() - self.t0, 3)}
        if self._first:  # lines of an earlier process from this step on are superseded (restart without checkpoint)
            self._first = False
            self.truncate_after(int(step) - 1)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        record_written(self.path)   # the run's manifest (--restart deletes only what the kit wrote)
        if self.csv_path is not None:
            record_written(self.csv_path)
            new = not self.csv_path.exists()
            if self._csv_cols is None:
                self._csv_cols = list(row) if new else next(csv.reader(open(self.csv_path)))
            with open(self.csv_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self._csv_cols, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)

    def truncate_after(self, step: int) -> None:
        """Drop JSONL lines with step > `step` (call on resume with the checkpoint's step). Atomic."""
        if not self.enabled or not self.path.exists():
            return
        keep = [line for line, row in _rows(self.path) if row["step"] <= step]
        write_text(self.path, "".join(line + "\n" for line in keep))


def _rows(path: Path):
    """(line, row) of every JSONL line. A torn last line (a process killed while writing it) is dropped with a
    warning; a broken line anywhere else is an error naming the file and the line."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError("not an object with a 'step'")
        except ValueError as e:
            if i == len(lines) - 1:
                warnings.warn(f"{path}: dropped a torn last line ({line[:60]!r})", stacklevel=3)
                break
            raise ValueError(f"{path}: line {i + 1} is not a log row ({e}): {line[:80]!r}") from None
        out.append((line, row))
    return out


def read_log(path) -> list[dict]:
    """All rows of a JSONL log (a torn last line dropped with a warning)."""
    return [row for _, row in _rows(path)]
