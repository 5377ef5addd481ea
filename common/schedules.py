"""Learning-rate schedules as multiplicative factors of the optimiser's base LR (torch LambdaLR), stepped once per
optimiser step. `lr_factor(cfg, step)` is the pure function; `build_scheduler(optimizer, cfg)` wraps it.

kinds and their keys (defaults in brackets):
  constant             warmup_steps [0], start_factor [0]; hold_steps [0], hold_factor [1]
                       (OmniJet's ConstantLR, factor 1/3 in the first epoch: hold_steps=<epoch>, hold_factor=1/3)
  warmup_cosine        warmup_steps, total_steps, start_factor [0], min_factor [0]
                       (MPMv2 fine-tuning: 10k warmup from 0.1, cosine to 1e-3 at 200k)
  warmup_exp           warmup_steps, half_life, start_factor [0], min_factor [0]
                       (MPMv2 pretraining `linear_warmup_exp_decay`: 50k warmup, half-life 100k, floor 1e-3)
  warmup_linear_decay  warmup_steps, total_steps, start_factor [0], min_factor [0]
                       (MPMv1 code: linear decay after a 10k warmup)
  onecycle_cooldown    warmup_steps, anneal_steps, cooldown_steps, start_factor [0.5], anneal_factor [0.5],
                       final_factor [0.3]
                       (OmniJet VQ-VAE, OneCycleCooldown of uhh-pd-ml/omnijet_alpha, base lr 1e-3 stepped per
                       epoch: 5e-4 -> 1e-3 over epochs 0-4, back to 5e-4 by epoch 24, to 3e-4 by epoch 74, then
                       constant: warmup 4, anneal 20, cooldown 50; max_lr at epoch == warmup)
Warm-up is linear in the step: factor = start + (1 - start) * step / warmup_steps, reaching 1 at step == warmup_steps.
Past total_steps the cosine / linear schedules stay at min_factor.
"""
from __future__ import annotations

import math

import torch

KINDS = ("constant", "warmup_cosine", "warmup_exp", "warmup_linear_decay", "onecycle_cooldown")

_REQUIRED = {
    "constant": (),
    "warmup_cosine": ("warmup_steps", "total_steps"),
    "warmup_exp": ("warmup_steps", "half_life"),
    "warmup_linear_decay": ("warmup_steps", "total_steps"),
    "onecycle_cooldown": ("warmup_steps", "anneal_steps", "cooldown_steps"),
}


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * min(max(t, 0.0), 1.0)


def check_schedule_cfg(cfg: dict) -> None:
    kind = cfg.get("kind")
    if kind not in KINDS:
        raise ValueError(f"schedule kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
    missing = [k for k in _REQUIRED[kind] if cfg.get(k) is None]
    if missing:
        raise ValueError(f"schedule '{kind}' needs the key(s) {', '.join(missing)} (got {dict(cfg)})")


def lr_factor(cfg: dict, step: int) -> float:
    """Multiplier of the base LR at optimiser step `step` (0-based) for the schedule described by cfg."""
    kind = cfg["kind"]
    warm = int(cfg.get("warmup_steps") or 0)
    start = float(cfg.get("start_factor", 0.5 if kind == "onecycle_cooldown" else 0.0))
    if kind == "onecycle_cooldown":
        anneal, cool = int(cfg["anneal_steps"]), int(cfg["cooldown_steps"])
        mid, final = float(cfg.get("anneal_factor", 0.5)), float(cfg.get("final_factor", 0.3))
        if step < warm:
            return _lerp(start, 1.0, step / warm)
        if step < warm + anneal:
            return _lerp(1.0, mid, (step - warm) / anneal)
        if step < warm + anneal + cool:
            return _lerp(mid, final, (step - warm - anneal) / cool)
        return final
    if step < warm:
        return _lerp(start, 1.0, step / warm)
    floor = float(cfg.get("min_factor", 0.0))
    if kind == "constant":
        hold = int(cfg.get("hold_steps") or 0)
        return float(cfg.get("hold_factor", 1.0)) if step < hold else 1.0
    if kind == "warmup_exp":
        return max(0.5 ** ((step - warm) / float(cfg["half_life"])), floor)
    total = int(cfg["total_steps"])
    t = (step - warm) / max(total - warm, 1)
    if kind == "warmup_cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if kind == "warmup_linear_decay":
        return _lerp(1.0, floor, t)
    raise ValueError(f"schedule kind {kind!r} unknown; expected one of {', '.join(KINDS)}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying lr_factor(cfg, step) to every param group's base LR."""
    check_schedule_cfg(cfg)
    cfg = dict(cfg)

    def factor(step):
        return lr_factor(cfg, step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
