"""Learning-rate schedules as multiplicative factors of the optimiser's base LR (torch LambdaLR), stepped once per
optimiser step. `lr_factor(cfg, step)` is the pure function; `build_scheduler(optimizer, cfg)` wraps it.

kinds and their keys (defaults in brackets):
  constant             warmup_steps [0], start_factor [0]; hold_steps [0] or hold_epochs, hold_factor [1]
                       (OmniJet's ConstantLR(total_iters=1), torch's default factor 1/3 in the first epoch:
                       hold_steps=<steps of an epoch> or hold_epochs=1, hold_factor=1/3; hold_epochs is turned into
                       hold_steps by run_schedule once the epoch length is known)
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
        if cfg.get("hold_epochs") is not None and cfg.get("hold_steps") is None:
            raise ValueError("schedule 'constant': hold_epochs needs the epoch length (common.training.schedules.run_schedule "
                             "with steps_per_epoch) before the schedule is used")
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


# ---------------------------------------------------------------------------------------------------------------------
# fine-tuning: the head follows the schedule, the backbone catches up to it once unfrozen

def run_schedule(sched: dict, steps: int, steps_per_epoch: int | None = None) -> dict:
    """The schedule with a missing total_steps set to the steps the run can take (mltools linear_warmup_cosine_decay
    takes it from the trainer: get_max_steps: max_steps or else max_epochs x steps per epoch), so that the cosine /
    linear decay reaches its end at the last step; with steps_per_epoch, hold_epochs becomes hold_steps (OmniJet's
    ConstantLR stepped per epoch)."""
    if sched.get("total_steps") is None and sched.get("kind") in ("warmup_cosine", "warmup_linear_decay"):
        sched = {**sched, "total_steps": steps}
    if steps_per_epoch is not None and sched.get("hold_epochs") is not None and sched.get("hold_steps") is None:
        sched = {**sched, "hold_steps": int(sched["hold_epochs"]) * int(steps_per_epoch)}
    return sched


def catchup_lr(step: int, head_lr: float, *, unfreeze_step: int | None, catchup_steps: int = 0,
               factor: float = 1.0, start_lr: float = 1e-8) -> float:
    """Backbone LR at optimiser step `step` given the head LR at that step (MPMv2 CatchupToLR, MPMv1 unfreezing):
    0 before `unfreeze_step` (null = never), then linear from `start_lr` to head_lr x factor over `catchup_steps`,
    then head_lr x factor."""
    if unfreeze_step is None or step < unfreeze_step:
        return 0.0
    target = head_lr * factor
    if catchup_steps and step < unfreeze_step + catchup_steps:
        return start_lr + (target - start_lr) * (step - unfreeze_step) / catchup_steps
    return target


def build_finetune_scheduler(optimizer: torch.optim.Optimizer, fc: dict,
                       steps: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-group LambdaLR: head groups follow fc.schedule; backbone groups (tag 'backbone') follow catchup_lr of it.
    steps: the steps the run can take (run_steps), the length of a schedule without total_steps; default finetune.steps."""
    sched, head_lr = run_schedule(fc["schedule"], int(fc["steps"] if steps is None else steps)), float(fc["lr"])

    def head(step):
        return lr_factor(sched, step)

    def backbone(step):
        base = head_lr * float(fc["backbone_lr_factor"])
        if base == 0:
            return 0.0
        lr = catchup_lr(step, head_lr * lr_factor(sched, step), unfreeze_step=fc["unfreeze_step"],
                        catchup_steps=int(fc["catchup_steps"] or 0), factor=float(fc["backbone_lr_factor"]),
                        start_lr=float(fc["catchup_start_lr"]))
        return lr / base

    lambdas = [backbone if g.get("tag") == "backbone" else head for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
