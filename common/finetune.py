"""Fine-tuning harness shared by MPM, OmniJet-alpha and HEP-JEPA: a pretrained backbone + a classification head.

Modes (MPMv1 / OmniJet-alpha / HEP-JEPA all compare the three):
  fixed     backbone loaded and frozen for the whole run (not in the optimiser, eval mode, no autograd: bit-identical)
  finetune  backbone loaded; frozen for `unfreeze_step` optimiser steps, then trained with
            LR_backbone = LR_head x backbone_lr_factor, reached through a linear catch-up from `catchup_start_lr`
            over `catchup_steps` steps (MPMv2 `CatchupToLR`, jetssl configs/callbacks/finetune.yaml: unfreeze 5000,
            catch-up 5000, factor 1). MPMv1 alternative (rodem-hep/mpm, Lightning BaseFinetuning): unfreeze after K
            steps, catchup_steps 0, backbone_lr_factor 0.1.
            `unfreeze_step: null` = never (the same as fixed).
  scratch   same architecture, random initialisation (nothing loaded), everything trained from step 0 at the head LR.

Binary tasks use two-class cross-entropy (softmax; signal score = p[:, 1]); label smoothing is configurable.
Validation loss is measured every `eval_every` steps (0 = once per epoch) or every `eval_every_epochs` epochs; training
stops after `patience` validations without improvement (null = never). The weights evaluated on the test split
(common.metrics) are those of the best validation loss (`select: best_val`, Lightning ModelCheckpoint on the val loss)
or of the last step (`select: last`, MPMv2 CWoLa: jetssl configs/callbacks/cwola.yaml). The val-loss curve per step is
kept in result.json (HEP-JEPA-style loss-curve figures).

A cosine / linear-decay schedule without `total_steps` lasts the steps the run can take, min(max_steps, max_epochs x
steps per epoch), as mltools' linear_warmup_cosine_decay sizes it from the trainer (get_max_steps).

Settings that depend on the number of labelled jets and on the mode are rules in `finetune.per_n` (see apply_per_n).

Config section: every key, its default and meaning in FINETUNE_DEFAULTS below. A killed run continues from
<out>/checkpoint.pt (written at every validation); a finished run (done.json) is read back, not redone.
Under torchrun the global `batch_size` is split over ranks, DDP averages gradients, validation losses are all-reduced
and test predictions all-gathered, so every rank takes the same early-stopping decision; rank 0 writes.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.distributed import Dist, all_gather_cat, all_reduce_sum, wrap_ddp
from common.logger import MetricLogger
from common.schedules import check_schedule_cfg, lr_factor
from common.train_utils import (autocast, build_optimizer, clip_and_step, count_parameters, is_done, maybe_compile,
                                mark_done, micro_batches, no_sync, param_groups, progress, seed_everything,
                                write_json)

MODES = ("fixed", "finetune", "scratch")

FINETUNE_DEFAULTS = {
    "mode": "finetune",          # fixed | finetune | scratch
    "autocast": True,            # bf16 autocast of the whole classifier on CUDA (no-op on CPU); false = fp32
    "head": {"kind": "linear_mean"},  # common.pooling.build_head(kind, backbone.dim, n_classes, **rest)
    "n_per_class": None,         # labelled jets per class (int), a list for run_sweep, null = the whole train split
    "seeds": [0],                # run_sweep repeats every N over these; also the training-subset seed
    "lr": 1.0e-4,                # head LR (AdamW)
    "weight_decay": 1.0e-5,
    "betas": [0.9, 0.999],
    "backbone_lr_factor": 1.0,   # backbone LR / head LR once unfrozen (MPMv2: 1; MPMv1 Lightning default: 0.1)
    "unfreeze_step": 0,          # finetune mode: optimiser steps with a frozen backbone; null = never
    "catchup_steps": 0,          # linear ramp of the backbone LR after unfreezing (MPMv2 CatchupToLR: 5000)
    "catchup_start_lr": 1.0e-8,  # backbone LR at the unfreeze step (MPMv2: 1e-8)
    "schedule": {"kind": "constant"},  # common.schedules kinds; total_steps null = the steps the run can take
    "batch_size": 256,           # global batch (split over ranks)
    "eval_batch_size": None,     # null = batch_size
    "accumulate": 1,             # micro-batches per optimiser step
    "max_steps": 10000,
    "max_epochs": None,          # optional cap in epochs over the (sub-sampled) training set
    "eval_every": 0,             # steps between validations; 0 = once per epoch
    "eval_every_epochs": None,   # alternative: validate every this many epochs (MPMv2 for N < 1e4: 10)
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


class Classifier(nn.Module):
    """backbone(batch) -> (h (B,T,D), mask (B,T)); head(h, mask) -> logits (B,C).

    While `backbone_frozen` the backbone runs in eval mode without autograd, so it receives no gradient and its
    BatchNorm statistics do not move."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.backbone_frozen = False

    def freeze_backbone(self, frozen: bool = True) -> None:
        self.backbone_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def forward(self, batch) -> torch.Tensor:
        if self.backbone_frozen:
            with torch.no_grad():
                h, mask = self.backbone(batch)
        else:
            h, mask = self.backbone(batch)
        return self.head(h, mask)


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


def finetune_settings(cfg: dict, n_total: int | None = None) -> dict:
    """The `finetune` section merged over FINETUNE_DEFAULTS with the finetune.per_n rules for n_total labelled jets
    applied (apply_per_n), checked, with mode-implied values filled in."""
    section = cfg.get("finetune")
    if not isinstance(section, dict):
        raise ValueError("config: missing the 'finetune' section (mode, head, n_per_class, seeds, lr, ...)")
    if cfg.get("per_n_overrides") is not None:
        raise ValueError("config: per_n_overrides was replaced by finetune.per_n (the same rules {min_n, max_n, set}, "
                         "plus `modes`)")
    unknown = sorted(set(section) - set(FINETUNE_DEFAULTS))
    if unknown:
        raise ValueError(f"config: unknown key(s) finetune.{', finetune.'.join(unknown)}; valid keys: "
                         f"{', '.join(FINETUNE_DEFAULTS)}")
    fc = {**copy.deepcopy(FINETUNE_DEFAULTS), **copy.deepcopy(section)}
    if fc["mode"] not in MODES:
        raise ValueError(f"config: finetune.mode = {fc['mode']!r}; expected one of {', '.join(MODES)}")
    check_per_n(fc["per_n"] or [])
    fc = apply_per_n(fc, n_total)
    if int(fc["max_steps"]) < 1:
        raise ValueError(f"config: finetune.max_steps must be >= 1 (got {fc['max_steps']})")
    if fc["select"] not in SELECT:
        raise ValueError(f"config: finetune.select = {fc['select']!r}; expected one of {', '.join(SELECT)}")
    if not isinstance(fc["head"], dict) or "kind" not in fc["head"]:
        raise ValueError(f"config: finetune.head must be a mapping with 'kind' (got {fc['head']!r})")
    if fc["mode"] == "fixed" or (fc["mode"] == "finetune" and fc["unfreeze_step"] is None):
        fc["unfreeze_step"] = None
    elif fc["mode"] == "scratch":
        fc["unfreeze_step"], fc["catchup_steps"], fc["backbone_lr_factor"] = 0, 0, 1.0
    fc["schedule"] = dict(fc["schedule"] or {"kind": "constant"})
    check_schedule_cfg(run_schedule(fc["schedule"], int(fc["max_steps"])))
    return fc


def run_steps(fc: dict, steps_per_epoch: int) -> int:
    """Optimiser steps the run can take: max_steps, capped at max_epochs x steps_per_epoch."""
    steps = int(fc["max_steps"])
    if fc["max_epochs"] is not None:
        steps = min(steps, int(fc["max_epochs"]) * steps_per_epoch)
    return steps


def run_schedule(sched: dict, steps: int) -> dict:
    """The schedule with a missing total_steps set to the steps the run can take (mltools linear_warmup_cosine_decay
    takes it from the trainer: get_max_steps, max_steps or else max_epochs x steps per epoch), so that the cosine /
    linear decay reaches its end at the last step."""
    if sched.get("total_steps") is None and sched.get("kind") in ("warmup_cosine", "warmup_linear_decay"):
        return {**sched, "total_steps": steps}
    return sched


def build_lr_scheduler(optimizer: torch.optim.Optimizer, fc: dict,
                       steps: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-group LambdaLR: head groups follow fc.schedule; backbone groups (tag 'backbone') follow catchup_lr of it.
    steps: the steps the run can take (run_steps), the length of a schedule without total_steps; default max_steps."""
    sched, head_lr = run_schedule(fc["schedule"], int(fc["max_steps"] if steps is None else steps)), float(fc["lr"])

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


def build_classifier(fc: dict, build_backbone: Callable[[], nn.Module],
                     load_pretrained: Callable[[nn.Module], None] | None, n_classes: int) -> Classifier:
    """Backbone (+ pretrained weights unless scratch) and head, frozen as the mode says."""
    backbone = build_backbone()
    if not hasattr(backbone, "dim"):
        raise TypeError(f"{type(backbone).__name__}: a fine-tuning backbone needs an attribute `dim` (output width)")
    if fc["mode"] != "scratch":
        if load_pretrained is None:
            raise ValueError(f"finetune.mode = {fc['mode']!r} needs pretrained weights (load_pretrained is None); "
                             f"use mode 'scratch' for a randomly initialised backbone")
        load_pretrained(backbone)
    from common.pooling import build_head
    head_cfg = dict(fc["head"])
    head = build_head(head_cfg.pop("kind"), backbone.dim, n_classes, **head_cfg)
    model = Classifier(backbone, head)
    if fc["unfreeze_step"] is None:  # fixed (or finetune that never unfreezes): not trainable at all
        backbone.requires_grad_(False)
    model.freeze_backbone(fc["unfreeze_step"] is None or fc["unfreeze_step"] > 0)
    return model


def _optimizer(model: Classifier, fc: dict) -> torch.optim.AdamW:
    wd, lr = float(fc["weight_decay"]), float(fc["lr"])
    groups = [dict(g, tag="head") for g in param_groups(model.head, wd, lr=lr)]
    if fc["unfreeze_step"] is not None:
        groups += [dict(g, tag="backbone") for g in param_groups(model.backbone, wd,
                                                                 lr=lr * float(fc["backbone_lr_factor"]))]
    return build_optimizer(groups, {"lr": lr, "weight_decay": wd, "betas": fc["betas"]})


@torch.no_grad()
def predict(net: nn.Module, loader, device, label_smoothing: float = 0.0, use_autocast: bool = True) -> dict:
    """Loss (all-reduced mean) and, gathered over ranks, probabilities and labels of a whole split."""
    net.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = 0
    probs, labels = [], []
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, use_autocast):
            logits = net(batch)
        logits = logits.float()
        loss = F.cross_entropy(logits, batch.label, reduction="sum", label_smoothing=label_smoothing)
        loss_sum += loss.double().cpu()
        count += len(batch)
        probs.append(logits.softmax(-1).cpu())
        labels.append(batch.label.cpu())
    total = float(all_reduce_sum(loss_sum))
    n = int(all_reduce_sum(torch.tensor(count, dtype=torch.float64)))
    if n == 0:
        raise RuntimeError("evaluation split yielded no jets")
    p = all_gather_cat(torch.cat(probs)) if probs else torch.zeros(0)
    y = all_gather_cat(torch.cat(labels)) if labels else torch.zeros(0, dtype=torch.long)
    return {"loss": total / n, "probs": p.numpy(), "labels": y.numpy(), "n": n}


def evaluate_metrics(y: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Test metrics from class probabilities (B, C) with common.metrics. Binary (C = 2, signal = class 1): accuracy,
    AUC, 1/eps_B at eps_S = 0.5 and 0.3; multiclass: multiclass_metrics (accuracy, macro one-vs-rest AUC,
    per-class rejections against QCD)."""
    from common import metrics
    if probs.shape[1] == 2:
        s = probs[:, 1]
        return {"accuracy": metrics.accuracy(y, probs), "auc": metrics.auc(y, s),
                "rejection_50": metrics.rejection_at(y, s, 0.5), "rejection_30": metrics.rejection_at(y, s, 0.3)}
    return dict(metrics.multiclass_metrics(y, probs, class_names))


def _default_loader_fn():
    from common.data import make_loader
    return make_loader


def _default_class_names(cfg: dict) -> list[str]:
    from common.data import dataset_info
    return list(dataset_info(cfg["data"])["class_names"])


def run_finetune(cfg: dict, build_backbone: Callable[[], nn.Module],
                 load_pretrained: Callable[[nn.Module], None] | None, out_dir, dist: Dist, *,
                 seed: int | None = None, n_per_class: int | None | str = "config", loader_fn=None,
                 class_names: list[str] | None = None, n_total: int | None | str = "n_per_class") -> dict:
    """Train one classifier (one N, one seed) with early stopping, evaluate the selected weights (finetune.select) on
    the test split and write <out_dir>/result.json (+ log.jsonl, done.json). A finished run (done.json) is read back,
    not redone.

    seed / n_per_class: default to finetune.seeds[0] / finetune.n_per_class (which must then be an int or null).
    n_total: the N that the finetune.per_n rules compare with; default n_per_class x the number of classes.
    loader_fn: defaults to common.data.make_loader (same signature); class_names: default from dataset_info.
    """
    out_dir = Path(out_dir)
    if is_done(out_dir) and (out_dir / "result.json").is_file():
        return json.loads((out_dir / "result.json").read_text())
    n = finetune_settings(cfg)["n_per_class"] if n_per_class == "config" else n_per_class
    if isinstance(n, (list, tuple)):
        raise ValueError(f"finetune.n_per_class is a list ({n}); run_finetune trains one N: use run_sweep")
    class_names = list(class_names) if class_names is not None else _default_class_names(cfg)
    if n_total == "n_per_class":
        n_total = None if n is None else int(n) * len(class_names)
    fc = finetune_settings(cfg, n_total)
    seed = int(fc["seeds"][0] if seed is None else seed)
    loader_fn = loader_fn or _default_loader_fn()
    device, world = dist.device, dist.world_size
    if fc["batch_size"] % world:
        raise ValueError(f"finetune.batch_size {fc['batch_size']} is not divisible by the {world} processes")

    seed_everything(seed)
    model = build_classifier(fc, build_backbone, load_pretrained, len(class_names)).to(device)
    bs, ebs = fc["batch_size"] // world, (fc["eval_batch_size"] or fc["batch_size"]) // world
    train = loader_fn(cfg["data"], "train", bs, shuffle=True, seed=seed, rank=dist.rank, world_size=world,
                      n_per_class=n, subset_seed=seed)
    val = loader_fn(cfg["data"], "val", ebs, shuffle=False, rank=dist.rank, world_size=world,
                    max_jets=fc["max_val_jets"])
    steps_per_epoch = len(train)
    if steps_per_epoch == 0:
        raise RuntimeError(f"fine-tuning train loader is empty (n_per_class={n}, batch_size={fc['batch_size']})")
    max_steps = run_steps(fc, steps_per_epoch)
    fc["schedule"] = run_schedule(fc["schedule"], max_steps)  # as run (result.json)
    opt = _optimizer(model, fc)
    sched = build_lr_scheduler(opt, fc, max_steps)
    # backbone parameters get no gradient before unfreeze_step: DDP must be told to expect unused parameters
    frozen_phase = fc["unfreeze_step"] is not None and fc["unfreeze_step"] > 0
    ddp = wrap_ddp(model, dist, find_unused_parameters=frozen_phase)  # the model itself on one process
    net = maybe_compile(ddp, fc["compile"])

    eval_every = int(fc["eval_every"]) or steps_per_epoch
    if fc["eval_every_epochs"]:
        eval_every = int(fc["eval_every_epochs"]) * steps_per_epoch
    n_train = len(train.dataset) if hasattr(train, "dataset") else None

    if dist.is_main:
        print(f"finetune[{fc['mode']}] N/class={n} seed={seed}: {count_parameters(model)} parameters "
              f"({count_parameters(model, trainable_only=True)} trainable), {steps_per_epoch} steps/epoch, "
              f"<= {max_steps} steps", flush=True)
    log = MetricLogger(out_dir, enabled=dist.is_main)
    it = ResumableLoader(train)
    best = {"loss": math.inf, "step": 0, "state": copy.deepcopy(model.state_dict())}
    val_curve, train_curve, bad, stopped_early, start, running = [], [], 0, False, 0, []
    ckpt_path = out_dir / "checkpoint.pt"
    if fc["checkpoint"] and ckpt_path.is_file():  # a killed run continues from its last validation
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        start = restore_state(ckpt, model=model, optimizer=opt, scheduler=sched, loader=it)
        best, val_curve, train_curve, bad, running = (ckpt["harness"][k] for k in
                                                      ("best", "val_curve", "train_curve", "bad", "running"))
        log.truncate_after(start)
    t0 = time.time()
    bar = progress(max_steps, f"finetune {fc['mode']}", enabled=dist.is_main, initial=start)
    model.train()
    step = start - 1
    for step in range(start, max_steps):
        if model.backbone_frozen and fc["unfreeze_step"] is not None and step >= fc["unfreeze_step"]:
            model.freeze_backbone(False)  # MPMv2 CatchupToLR / MPMv1 unfreezing; its LR ramps from here
        batch = next(it).to(device)
        chunks = micro_batches(batch, int(fc["accumulate"])) if fc["accumulate"] > 1 else [batch]
        loss_val = 0.0
        for i, mb in enumerate(chunks):
            with no_sync(ddp, i < len(chunks) - 1):  # DDP all-reduces on the last micro-batch only
                with autocast(device, bool(fc["autocast"])):
                    logits = net(mb)
                loss = F.cross_entropy(logits.float(), mb.label, label_smoothing=float(fc["label_smoothing"]))
                (loss * len(mb) / len(batch)).backward()
            loss_val += float(loss.detach()) * len(mb) / len(batch)
        clip_and_step(net, opt, sched, max_norm=fc["grad_clip"])
        running.append(loss_val)
        bar.update(jets=len(batch) * world, loss=loss_val)
        if (step + 1) % int(fc["log_every"]) == 0:
            lrs = {f"lr_{g['tag']}": g["lr"] for g in opt.param_groups}
            log.log(step + 1, train_loss=float(np.mean(running)), **lrs)
            train_curve.append([step + 1, float(np.mean(running))])
            running = []
        if (step + 1) % eval_every == 0 or step + 1 == max_steps:
            res = predict(net, val, device, float(fc["label_smoothing"]), bool(fc["autocast"]))
            model.train()
            val_curve.append([step + 1, res["loss"]])
            log.log(step + 1, val_loss=res["loss"])
            if res["loss"] < best["loss"] - float(fc["min_delta"]):
                best = {"loss": res["loss"], "step": step + 1, "state": copy.deepcopy(model.state_dict())}
                bad = 0
            else:
                bad += 1
                if fc["patience"] is not None and bad >= int(fc["patience"]):
                    stopped_early = True
                    break
            if fc["checkpoint"] and dist.is_main and step + 1 < max_steps:
                harness = {"best": best, "val_curve": val_curve, "train_curve": train_curve, "bad": bad,
                           "running": running}
                save_checkpoint(ckpt_path, make_state(model=model, optimizer=opt, scheduler=sched, step=step + 1,
                                                      loader=it, harness=harness))
    bar.close()
    steps_done = step + 1

    if fc["select"] == "best_val":
        model.load_state_dict(best["state"])
    selected_step = best["step"] if fc["select"] == "best_val" else steps_done
    test = loader_fn(cfg["data"], "test", ebs, shuffle=False, rank=dist.rank, world_size=world,
                     max_jets=fc["max_test_jets"])
    res = predict(net, test, device, float(fc["label_smoothing"]), bool(fc["autocast"]))
    metrics = evaluate_metrics(res["labels"], res["probs"], class_names)
    result = {
        "mode": fc["mode"], "n_per_class": n, "seed": seed, "n_train_jets": n_train, "class_names": class_names,
        "steps": steps_done, "best_step": best["step"], "best_val_loss": best["loss"], "stopped_early": stopped_early,
        "select": fc["select"], "selected_step": selected_step,
        "test_loss": res["loss"], "n_test_jets": res["n"], "test": metrics,
        "val_curve": val_curve, "train_curve": train_curve, "wall_s": round(time.time() - t0, 2),
        "world_size": world, "finetune": fc,
    }
    if dist.is_main:
        log.log(steps_done, test_loss=res["loss"], **{f"test_{k}": v for k, v in _flat(metrics).items()})
        if fc["save_model"]:
            save_checkpoint(out_dir / "classifier.pt", {"model": model.state_dict(), "result": result})
        write_json(out_dir / "result.json", result)
        mark_done(out_dir, {"best_step": best["step"], "steps": steps_done})
        ckpt_path.unlink(missing_ok=True)  # result.json holds everything; keep sweeps small on disk
    return result


def run_sweep(cfg: dict, build_backbone: Callable[[], nn.Module],
              load_pretrained: Callable[[nn.Module], None] | None, out_dir, dist: Dist, *,
              n_values: list | None = None, seeds: list[int] | None = None, loader_fn=None,
              class_names: list[str] | None = None) -> dict:
    """run_finetune for every N in finetune.n_per_class (int, list or null) and every seed in finetune.seeds, into
    <out_dir>/n<N|all>/seed<S>/. Writes <out_dir>/summary.json: per N the mean and sample std (ddof=1) over seeds
    of every scalar test metric, and `rows` ready for common.results.write_result (metric -> list over seeds).
    Each N gets its finetune.per_n rules (run_finetune)."""
    fc = finetune_settings(cfg)
    ns = n_values if n_values is not None else fc["n_per_class"]
    ns = list(ns) if isinstance(ns, (list, tuple)) else [ns]
    seeds = list(seeds if seeds is not None else fc["seeds"])
    out_dir = Path(out_dir)
    summary = {"mode": fc["mode"], "seeds": seeds, "per_n": {}, "rows": []}
    for n in ns:
        runs = []
        for s in seeds:
            run_dir = out_dir / f"n{n if n is not None else 'all'}" / f"seed{s}"
            runs.append(run_finetune(cfg, build_backbone, load_pretrained, run_dir, dist, seed=s, n_per_class=n,
                                     loader_fn=loader_fn, class_names=class_names))
        flat = [_flat(r["test"]) for r in runs]
        keys = [k for k in flat[0] if all(isinstance(f.get(k), (int, float)) for f in flat)]
        stats = {k: _mean_std([float(f[k]) for f in flat]) for k in keys}
        summary["per_n"][str(n)] = stats
        summary["rows"].append({"mode": fc["mode"], "n_per_class": n, **{k: v["values"] for k, v in stats.items()}})
    if dist.is_main:
        write_json(out_dir / "summary.json", summary)
    return summary


def _mean_std(values: list[float]) -> dict:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds; nan std when a value is infinite (e.g. rejection)."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v).all()
    std = float(np.std(v, ddof=1)) if len(v) > 1 and finite else (0.0 if finite else math.nan)
    return {"mean": float(np.mean(v)) if finite else float(np.inf if np.isposinf(v).any() else np.nan),
            "std": std, "values": values}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
