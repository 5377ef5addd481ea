"""The `finetune:` section of every fine-tuning config: its keys and defaults (FINETUNE_DEFAULTS), their checks, and
the finetune.per_n rules that set values by the number of labelled jets and the mode (MPMv2 recipe).

Modes (MPMv1 / OmniJet-alpha / HEP-JEPA all compare the three):
  fixed     backbone loaded and frozen for the whole run (not in the optimiser, eval mode, no autograd: bit-identical)
  finetune  backbone loaded; frozen for `unfreeze_step` optimiser steps, then trained with
            LR_backbone = LR_head x backbone_lr_factor, reached through a linear catch-up from `catchup_start_lr`
            over `catchup_steps` steps (MPMv2 `CatchupToLR`, jetssl configs/callbacks/finetune.yaml: unfreeze 5000,
            catch-up 5000, factor 1). MPMv1 alternative (rodem-hep/mpm, Lightning BaseFinetuning): unfreeze after K
            steps, catchup_steps 0, backbone_lr_factor 0.1.
            `unfreeze_step: null` = never (the same as fixed).
  scratch   same architecture, random initialisation (nothing loaded), everything trained from step 0 at the head LR.
"""
from __future__ import annotations

import copy
import math

from common.training.config import RENAMED, renamed_error, repeated
from common.training.schedules import check_schedule_cfg, run_schedule
from common.training.train_utils import PRECISIONS

MODES = ("fixed", "finetune", "scratch")

FINETUNE_DEFAULTS = {
    "mode": "finetune",          # fixed | finetune | scratch
    "precision": "bf16",         # bf16: autocast of the whole classifier on CUDA (no-op on CPU) | fp32
    "head": {"kind": "linear_mean"},  # common.blocks.pooling.build_head(kind, backbone.dim, n_classes, **rest)
    "n_per_class": None,         # labelled jets per class (int), a list for run_sweep, null = the whole train split
    "seeds": [0],                # run_sweep repeats every N over these; also the training-subset seed
    "lr": 1.0e-4,                # head LR (AdamW)
    "weight_decay": 1.0e-5,
    "betas": [0.9, 0.999],
    "backbone_lr_factor": 1.0,   # backbone LR / head LR once unfrozen (MPMv2: 1; MPMv1 Lightning default: 0.1)
    "unfreeze_step": 0,          # finetune mode: optimiser steps with a frozen backbone; null = never
    "catchup_steps": 0,          # linear ramp of the backbone LR after unfreezing (MPMv2 CatchupToLR: 5000)
    "catchup_start_lr": 1.0e-8,  # backbone LR at the unfreeze step (MPMv2: 1e-8)
    "schedule": {"kind": "constant"},  # common.training.schedules kinds; total_steps null = the steps the run can take
    "batch_size": 256,           # global batch (split over ranks)
    "eval_batch_size": None,     # null = batch_size
    "grad_accum": 1,             # micro-batches per optimiser step
    "steps": 10000,
    "max_epochs": None,          # optional cap in epochs over the (sub-sampled) training set
    "val_every": 0,              # steps between validations; 0 = once per epoch
    "val_every_epochs": None,    # alternative: validate every this many epochs (MPMv2 for N < 1e4: 10)
    "patience": 5,               # validations without improvement before stopping; null = never stop early
    "min_delta": 0.0,            # improvement needed to reset the patience
    "label_smoothing": 0.0,
    "grad_clip": 1.0,            # null/0 = no clipping
    "select": "best_val",        # weights tested: best_val (lowest validation loss) | last (the final step)
    "max_val_jets": None,        # cap of the validation split (MPMv2: 1M)
    "max_test_jets": None,       # cap of the test split
    "log_every": 50,
    "compile": False,
    "save_model": False,         # write the selected classifier weights to <out>/classifier.pt
    "checkpoint": True,          # <out>/checkpoint.pt at every validation; a rerun continues from it (removed at
                                 # the end)
    "cache_frozen": True,        # fixed mode: backbone outputs of the train/val jets computed once (frozen_cache.py)
    "cache_frozen_max_gb": 8.0,  # memory those outputs may take (estimated per split); above it: recompute, logged
    "per_n": [],                 # rules {min_n, max_n, modes, set: {key: value}} by labelled jets (apply_per_n)
}
SELECT = ("best_val", "last")
_RULE_KEYS = {"min_n", "max_n", "modes", "set"}
_NOT_PER_N = {"per_n", "n_per_class", "seeds", "mode"}  # what a rule may not set


def _deep_update(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def check_per_n(rules) -> None:
    """finetune.per_n must be a list of rules {min_n, max_n, modes, set}; `set` holds keys of this section."""
    if isinstance(rules, dict):
        raise ValueError("config: finetune.per_n is a list of rules {min_n, max_n, modes, set: {key: value}} "
                         f"(n = labelled jets in total), not a mapping N -> overrides (got {rules!r})")
    if not isinstance(rules, (list, tuple)):
        raise ValueError(f"config: finetune.per_n must be a list of rules {{min_n, max_n, modes, set}} (got {rules!r})")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) - _RULE_KEYS or not isinstance(rule.get("set"), dict):
            raise ValueError(f"config: finetune.per_n[{i}] = {rule!r}: expected keys min_n, max_n, modes, set")
        for key in rule["set"]:
            if f"finetune.{key}" in RENAMED:
                raise renamed_error(f"config: finetune.per_n[{i}].set", f"finetune.{key}")
        bad = sorted(set(rule["set"]) - set(FINETUNE_DEFAULTS) | (_NOT_PER_N & set(rule["set"])))
        if bad:
            raise ValueError(f"config: finetune.per_n[{i}]: cannot set {', '.join(bad)}")
        bad_modes = sorted(set(rule.get("modes") or []) - set(MODES))
        if bad_modes:
            raise ValueError(f"config: finetune.per_n[{i}].modes: unknown {', '.join(bad_modes)}; "
                             f"expected some of {', '.join(MODES)}")


def apply_per_n(fc: dict, n_total: int | None) -> dict:
    """fc with the finetune.per_n rules that match applied in order (later rules win; nested keys such as
    schedule.warmup_steps are merged). A rule matches when min_n <= n_total <= max_n (a missing bound is open) and
    fc.mode is in its `modes` (missing = every mode). n_total = labelled training jets in total, as the MPMv2
    workflow's n_jets (jetssl workflow/full_pipeline.smk; for CWoLa the signal jets); null (the whole split) matches
    only rules without bounds."""
    for rule in fc["per_n"] or []:
        lo, hi, modes = rule.get("min_n"), rule.get("max_n"), rule.get("modes")
        if (lo is not None or hi is not None) and n_total is None:
            continue
        if (lo is not None and n_total < float(lo)) or (hi is not None and n_total > float(hi)):
            continue
        if modes is not None and fc["mode"] not in modes:
            continue
        fc = _deep_update(fc, rule["set"])
    return fc


def finetune_settings(cfg: dict, n_total: int | None = None) -> dict:
    """The `finetune` section merged over FINETUNE_DEFAULTS with the finetune.per_n rules for n_total labelled jets
    applied (apply_per_n), checked, with mode-implied values filled in."""
    section = cfg.get("finetune")
    if not isinstance(section, dict):
        raise ValueError("config: missing the 'finetune' section (mode, head, n_per_class, seeds, lr, ...)")
    for key in section:
        if f"finetune.{key}" in RENAMED:
            raise renamed_error("config", f"finetune.{key}")
    unknown = sorted(set(section) - set(FINETUNE_DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown key(s) finetune.{', finetune.'.join(unknown)}; valid keys: "
                         f"{', '.join(FINETUNE_DEFAULTS)}")
    fc = {**copy.deepcopy(FINETUNE_DEFAULTS), **copy.deepcopy(section)}
    if fc["mode"] not in MODES:
        raise ValueError(f"config: finetune.mode = {fc['mode']!r}; expected one of {', '.join(MODES)}")
    check_per_n(fc["per_n"] or [])
    for key in ("seeds", "n_per_class"):
        if isinstance(fc[key], (list, tuple)) and repeated(list(fc[key])):
            raise ValueError(f"config: finetune.{key} = {list(fc[key])!r}: expected distinct values "
                             f"({', '.join(map(repr, repeated(list(fc[key]))))} repeated: the same run again is not "
                             "another replicate)")
    fc = apply_per_n(fc, n_total)
    if not isinstance(fc["cache_frozen"], bool):
        raise ValueError(f"config: finetune.cache_frozen = {fc['cache_frozen']!r}; expected true or false")
    gb = fc["cache_frozen_max_gb"]
    if isinstance(gb, bool) or not isinstance(gb, (int, float)) or not math.isfinite(gb) or gb <= 0:
        raise ValueError(f"config: finetune.cache_frozen_max_gb = {gb!r}; expected a number of GB > 0 (the memory "
                         "the frozen outputs may take; finetune.cache_frozen: false turns the cache off)")
    if int(fc["steps"]) < 1:
        raise ValueError(f"config: finetune.steps must be >= 1 (got {fc['steps']})")
    if fc["precision"] not in PRECISIONS:
        raise ValueError(f"config: finetune.precision = {fc['precision']!r}; expected one of {', '.join(PRECISIONS)}")
    if fc["select"] not in SELECT:
        raise ValueError(f"config: finetune.select = {fc['select']!r}; expected one of {', '.join(SELECT)}")
    if not isinstance(fc["head"], dict) or "kind" not in fc["head"]:
        raise ValueError(f"config: finetune.head must be a mapping with 'kind' (got {fc['head']!r})")
    if fc["mode"] == "fixed" or (fc["mode"] == "finetune" and fc["unfreeze_step"] is None):
        fc["unfreeze_step"] = None
    elif fc["mode"] == "scratch":
        fc["unfreeze_step"], fc["catchup_steps"], fc["backbone_lr_factor"] = 0, 0, 1.0
    fc["schedule"] = dict(fc["schedule"] or {"kind": "constant"})
    check_schedule_cfg(run_schedule(fc["schedule"], int(fc["steps"])))
    return fc


def run_steps(fc: dict, steps_per_epoch: int) -> int:
    """Optimiser steps the run can take: steps, capped at max_epochs x steps_per_epoch."""
    steps = int(fc["steps"])
    if fc["max_epochs"] is not None:
        steps = min(steps, int(fc["max_epochs"]) * steps_per_epoch)
    return steps
