"""Convergence of fine-tuning against training from scratch (Bardhan et al., arXiv:2502.03933, Figure 2: the
fine-tuned model reaches the from-scratch model's best validation loss in about 3x fewer steps).

For every seed s of the JetClass sweep at the Figure 2 label fraction:
    L*(s)                  = the minimum validation loss of the scratch run with seed s
    steps_to_scratch_min   = the first validated step at which a run's validation loss <= L*(s)
so the scratch run's value is the step of its own minimum, and the fine-tuned run's the step at which it first
matches it. A fine-tuned run that never reaches L*(s) within its steps gets inf: it is shown as inf, and a claim,
which counts finite values only, then has fewer seeds on that side (inconclusive, never reproduced).

The curves are the `val_curve` ([[step, loss], ...]) that common.training.finetune keeps in each run's result.json, under
<ft_jetclass>/<mode>/pct<P>/n*/seed<S>/.
"""
from __future__ import annotations

import math
from pathlib import Path

from common.results.tables import read_json

FIGURE2_PERCENT = 0.5  # label fraction (%) of Figure 2 (arXiv:2502.03933)


def steps_to_reach(curve: list, target: float) -> float:
    """First step of curve [[step, loss], ...] with loss <= target; inf when no validation reaches it."""
    return next((float(step) for step, loss in curve if loss <= target), math.inf)


def seed_curves(finetune_dir, mode: str, pct=FIGURE2_PERCENT) -> dict[int, list]:
    """{seed: val_curve} of the runs <finetune_dir>/<mode>/pct<pct>/n*/seed*/result.json."""
    out = {}
    for path in sorted(Path(finetune_dir, mode, f"pct{pct}").glob("n*/seed*/result.json")):
        res = read_json(path, "fine-tuning result")
        out[int(res["seed"])] = res["val_curve"]
    return out


def convergence_rows(finetune_dir, pct=FIGURE2_PERCENT, scratch_dir=None) -> list[dict]:
    """One row per (mode, seed) for the seeds that have both a scratch and a fine-tuned run:
    {mode: scratch | finetune, seed, label_percent, scratch_min_val_loss, steps_to_scratch_min}.

    scratch_dir: for a sweep that fine-tunes another pretraining run and trains no scratch model of its own
    (run_all's ft_jetclass_seed<S>): its fine-tuned runs are held against the scratch run of the same seed (the same
    labelled subset) in scratch_dir, and only its fine-tuned rows are returned (the scratch rows belong to
    scratch_dir's own table), so that each pretraining run gets its own paired value."""
    scratch = seed_curves(scratch_dir or finetune_dir, "scratch", pct)
    tuned = seed_curves(finetune_dir, "finetune", pct)
    rows = []
    for seed in sorted(set(scratch) & set(tuned)):
        if not scratch[seed]:
            continue
        best = min(loss for _, loss in scratch[seed])
        pairs = (("finetune", tuned[seed]),) if scratch_dir else (("finetune", tuned[seed]), ("scratch", scratch[seed]))
        for mode, curve in pairs:
            rows.append({"mode": mode, "seed": seed, "label_percent": float(pct), "scratch_min_val_loss": best,
                         "steps_to_scratch_min": steps_to_reach(curve, best)})
    return rows
