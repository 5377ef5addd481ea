"""Fine-tuning sweeps: one classifier per (N labelled jets, seed) with common.training.finetune.run_finetune, and the
statistics over seeds (mean, sample std) that the results tables read."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from torch import nn

from common.training.config import repeated
from common.training.distributed import Dist
from common.training.finetune import flat_metrics, run_finetune
from common.training.finetune_config import finetune_settings
from common.training.train_utils import write_json


def run_sweep(cfg: dict, build_backbone: Callable[[], nn.Module],
              load_pretrained: Callable[[nn.Module], None] | None, out_dir, dist: Dist, *,
              n_values: list | None = None, seeds: list[int] | None = None, loader_fn=None,
              class_names: list[str] | None = None) -> dict:
    """run_finetune for every N in finetune.n_per_class (int, list or null) and every seed in finetune.seeds, into
    <out_dir>/n<N|all>/seed<S>/. Writes <out_dir>/summary.json: per N the mean and sample std (ddof=1) over seeds
    of every scalar test metric, and `rows` ready for common.results.tables.write_result (metric -> list over seeds).
    Each N gets its finetune.per_n rules (run_finetune)."""
    fc = finetune_settings(cfg)
    ns = n_values if n_values is not None else fc["n_per_class"]
    ns = list(ns) if isinstance(ns, (list, tuple)) else [ns]
    seeds = list(seeds if seeds is not None else fc["seeds"])
    for what, values in (("seeds", seeds), ("n_per_class", ns)):
        if repeated(values):
            raise ValueError(f"run_sweep: {what} = {values!r}: expected distinct values ({repeated(values)} repeated: "
                             "the same run again would be counted as another replicate)")
    out_dir = Path(out_dir)
    summary = {"mode": fc["mode"], "seeds": seeds, "per_n": {}, "rows": []}
    for n in ns:
        runs = []
        for s in seeds:
            run_dir = out_dir / f"n{n if n is not None else 'all'}" / f"seed{s}"
            runs.append(run_finetune(cfg, build_backbone, load_pretrained, run_dir, dist, seed=s, n_per_class=n,
                                     loader_fn=loader_fn, class_names=class_names))
        flat = [flat_metrics(r["test"]) for r in runs]
        keys = [k for k in flat[0] if all(isinstance(f.get(k), (int, float)) for f in flat)]
        stats = {k: mean_std([float(f[k]) for f in flat]) for k in keys}
        summary["per_n"][str(n)] = stats
        summary["rows"].append({"mode": fc["mode"], "n_per_class": n, **{k: v["values"] for k, v in stats.items()}})
    if dist.is_main:
        write_json(out_dir / "summary.json", summary)
    return summary


def mean_std(values: list[float]) -> dict:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds; nan std when a value is infinite (e.g. rejection)."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v).all()
    std = float(np.std(v, ddof=1)) if len(v) > 1 and finite else (0.0 if finite else math.nan)
    return {"mean": float(np.mean(v)) if finite else float(np.inf if np.isposinf(v).any() else np.nan),
            "std": std, "values": values}
