"""The one fine-tuning loop of the kit (MPM, OmniJet-alpha, HEP-JEPA): a pretrained backbone + the head of a
downstream task. A task (Task) says what the head is, its loss, what is kept of every evaluated jet, the test metrics
and what a better validation loss is; per-jet classification (classification_task, the default) is one, MPMv2's
per-track BTag tasks (mpm/btag/track_origin.py, mpm/btag/vertexing.py) and CWoLa (mpm/cwola.py) are others.

The modes (fixed, finetune, scratch), every key of the `finetune:` section and its default: common/training/finetune_config.py.
The model: common/training/classifier.py; the head and backbone LR schedules: common/training/schedules.py; sweeps over N and seeds:
common/training/sweep.py.

Binary classification uses two-class cross-entropy (softmax; signal score = p[:, 1]); label smoothing is
configurable. Validation loss is measured every `val_every` steps (0 = once per epoch) or every `val_every_epochs`
epochs; training stops after `patience` validations without a better one (Task.better; default: lower by
`min_delta`; null = never). The weights evaluated on the test split are those of the best validation loss
(`select: best_val`, Lightning ModelCheckpoint on the val loss) or of the last step (`select: last`, MPMv2 CWoLa:
jetssl configs/callbacks/cwola.yaml). The val-loss curve per step is kept in result.json (HEP-JEPA-style loss-curve
figures).

A cosine / linear-decay schedule without `total_steps` lasts the steps the run can take, min(steps, max_epochs x
steps per epoch), as mltools' linear_warmup_cosine_decay sizes it from the trainer (get_max_steps).

Settings that depend on the number of labelled jets and on the mode are rules in `finetune.per_n` (apply_per_n).

The loop has the shape of every training loop of the kit: settings, data, model, optimiser and schedule, resume, loop,
checkpoint, done. A killed run continues from
<out>/checkpoint.pt (written at every validation); a finished run (done.json) is read back, not redone.
Under torchrun the global `batch_size` is split over ranks, DDP averages gradients, validation losses are all-reduced
and test predictions all-gathered, so every rank takes the same early-stopping decision; rank 0 writes.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.training.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.training.classifier import build_classifier, build_classifier_optimizer, pooled_head
from common.training.distributed import Dist, all_gather_cat, all_reduce_sum, wrap_ddp
from common.training.finetune_config import finetune_settings, run_steps
from common.training.frozen_cache import build_frozen_cache
from common.training.logger import MetricLogger
from common.training.schedules import build_finetune_scheduler, run_schedule
from common.training.train_utils import (accumulate, autocast, clip_and_step, count_parameters, is_done, mark_done,
                                         maybe_compile, progress, seed_everything, write_json)


@dataclass
class Task:
    """A downstream task of the loop: the head it puts on the backbone, its loss, what it keeps of every jet of an
    evaluation split, its test metrics, and what a better validation loss is. A batch is what the task's loader
    yields: a JetBatch, or a tuple whose first element is the JetBatch the model reads (then per-jet targets).

    head(backbone, finetune.head) -> module on the backbone output; loss(output, batch) -> mean loss (training);
    loss_sum(output, batch) -> the batch's summed loss (validation and test; default loss x jets);
    outputs(output, batch) -> {name: per-jet tensor}, gathered over a split; metrics({name: array}) -> result "test";
    better(val_loss, best_val_loss, min_delta) -> bool (early stopping and best_val selection)."""
    name: str
    head: Callable[[nn.Module, dict], nn.Module]
    loss: Callable
    outputs: Callable[[torch.Tensor, object], dict]
    metrics: Callable[[dict], dict]
    loss_sum: Callable | None = None
    better: Callable[[float, float, float], bool] = lambda new, best, min_delta: new < best - min_delta
    class_names: list[str] | None = None


def classification_task(class_names: list[str], label_smoothing: float = 0.0, metrics: Callable | None = None,
                        name: str = "finetune") -> Task:
    """Per-jet classification: the pooled head of finetune.head (common.blocks.pooling.build_head), cross-entropy with label
    smoothing (softmax; signal score = p[:, 1] for two classes); test metrics evaluate_metrics, or `metrics`
    ({"labels", "probs"} -> dict)."""

    def loss_sum(logits, batch):
        return F.cross_entropy(logits, batch.label, reduction="sum", label_smoothing=label_smoothing).double().cpu()

    return Task(name=name, head=pooled_head(len(class_names)), class_names=list(class_names),
                loss=lambda logits, batch: F.cross_entropy(logits, batch.label, label_smoothing=label_smoothing),
                loss_sum=loss_sum,
                outputs=lambda logits, batch: {"probs": logits.softmax(-1), "labels": batch.label},
                metrics=metrics or (lambda t: evaluate_metrics(t["labels"], t["probs"], class_names)))


def jets_of(batch):
    """The JetBatch the model reads: the batch itself, or the first element of a (JetBatch, targets...) tuple."""
    return batch[0] if isinstance(batch, tuple) else batch


def to_device(batch, device):
    return tuple(b.to(device) for b in batch) if isinstance(batch, tuple) else batch.to(device)


@torch.no_grad()
def evaluate(net: nn.Module, loader, task: Task, device, precision: str = "bf16") -> dict:
    """The loss (all-reduced mean over jets) of a whole split and, gathered over ranks, the task's outputs."""
    net.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    count, kept = 0, {}
    with torch.random.fork_rng(devices=[]):  # a DataLoader draws its base seed here: not from the run's RNG
        batches = iter(loader)
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device, precision, "finetune.precision"):
            out = net(jets_of(batch))
        out = out.float()
        loss_sum += task.loss_sum(out, batch) if task.loss_sum else float(task.loss(out, batch)) * len(jets_of(batch))
        count += len(jets_of(batch))
        for k, v in task.outputs(out, batch).items():
            kept.setdefault(k, []).append(v.cpu())
    total = float(all_reduce_sum(loss_sum))
    n = int(all_reduce_sum(torch.tensor(count, dtype=torch.float64)))
    if n == 0:
        raise RuntimeError("evaluation split yielded no jets")
    return {"loss": total / n, "n": n, **{k: all_gather_cat(torch.cat(v)).numpy() for k, v in kept.items()}}


def evaluate_metrics(y: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Test metrics from class probabilities (B, C) with common.training.metrics. Binary (C = 2, signal = class 1): accuracy,
    AUC, 1/eps_B at eps_S = 0.5 and 0.3; multiclass: multiclass_metrics (accuracy, macro one-vs-rest AUC,
    per-class rejections against QCD)."""
    from common.training import metrics
    if probs.shape[1] == 2:
        s = probs[:, 1]
        return {"accuracy": metrics.accuracy(y, probs), "auc": metrics.auc(y, s),
                "rejection_50": metrics.rejection_at(y, s, 0.5), "rejection_30": metrics.rejection_at(y, s, 0.3)}
    return dict(metrics.multiclass_metrics(y, probs, class_names))


def _default_loader_fn():
    from common.data.datasets import make_loader
    return make_loader


def _default_class_names(cfg: dict) -> list[str]:
    from common.data.datasets import dataset_info
    return list(dataset_info(cfg["data"])["class_names"])


def train_step(net: nn.Module, ddp: nn.Module, opt, sched, batch, loss_fn, fc: dict) -> torch.Tensor:
    """One fine-tuning step: forward and backward over finetune.grad_accum micro-batches, clip, optimiser and
    scheduler step. Returns the batch's loss (detached)."""
    loss, _ = accumulate(ddp, batch, int(fc["grad_accum"]), loss_fn)
    clip_and_step(net, opt, sched, max_norm=fc["grad_clip"])
    return loss


def loss_function(net: nn.Module, task: Task, device, precision: str) -> Callable:
    """The training loss of a (micro-)batch as train_step takes it: mb -> (task.loss, {})."""

    def loss_fn(mb):
        with autocast(device, precision, "finetune.precision"):
            out = net(jets_of(mb))
        return task.loss(out.float(), mb), {}

    return loss_fn


def run_finetune(cfg: dict, build_backbone: Callable[[], nn.Module],
                 load_pretrained: Callable[[nn.Module], None] | None, out_dir, dist: Dist, *,
                 task: Task | Callable[[dict], Task] | None = None, seed: int | None = None,
                 n_per_class: int | None | str = "config", loader_fn=None, class_names: list[str] | None = None,
                 n_total: int | None | str = "n_per_class") -> dict:
    """Train one model (one N, one seed) for a task with early stopping, evaluate the selected weights
    (finetune.select) on the test split and write <out_dir>/result.json (+ log.jsonl, done.json). A finished run
    (done.json) is read back, not redone.

    task: a Task, or task(finetune settings of this run) -> Task; default: per-jet classification of class_names
    (default from dataset_info) with finetune.label_smoothing.
    seed / n_per_class: default to finetune.seeds[0] / finetune.n_per_class (which must then be an int or null).
    n_total: the N that the finetune.per_n rules compare with; default n_per_class x the number of classes.
    loader_fn: defaults to common.data.datasets.make_loader (same signature); it yields the task's batches.
    """
    out_dir = Path(out_dir)
    if is_done(out_dir) and (out_dir / "result.json").is_file():
        return json.loads((out_dir / "result.json").read_text())
    n = finetune_settings(cfg)["n_per_class"] if n_per_class == "config" else n_per_class
    if isinstance(n, (list, tuple)):
        raise ValueError(f"finetune.n_per_class is a list ({n}); run_finetune trains one N: use run_sweep")
    if task is None or (n_total == "n_per_class" and n is not None):
        class_names = list(class_names) if class_names is not None else _default_class_names(cfg)
    if n_total == "n_per_class":
        n_total = None if n is None else int(n) * len(class_names)
    # config: the finetune section with the per_n rules of this N
    fc = finetune_settings(cfg, n_total)
    if task is None:
        task = classification_task(class_names, float(fc["label_smoothing"]))
    elif not isinstance(task, Task):
        task = task(fc)
    seed = int(fc["seeds"][0] if seed is None else seed)
    loader_fn = loader_fn or _default_loader_fn()
    device, world = dist.device, dist.world_size
    if fc["batch_size"] % world:
        raise ValueError(f"finetune.batch_size {fc['batch_size']} is not divisible by the {world} processes")
    # data (the subset of n labelled jets per class is drawn with its own seed)
    bs, ebs = fc["batch_size"] // world, (fc["eval_batch_size"] or fc["batch_size"]) // world
    train = loader_fn(cfg["data"], "train", bs, shuffle=True, seed=seed, rank=dist.rank, world_size=world,
                      n_per_class=n, subset_seed=seed)
    val = loader_fn(cfg["data"], "val", ebs, shuffle=False, rank=dist.rank, world_size=world,
                    max_jets=fc["max_val_jets"])
    steps_per_epoch = len(train)
    if steps_per_epoch == 0:
        raise RuntimeError(f"fine-tuning train loader is empty (n_per_class={n}, batch_size={fc['batch_size']})")
    # model
    seed_everything(seed)
    model = build_classifier(fc, build_backbone, load_pretrained, task.head).to(device)
    # backbone parameters get no gradient before unfreeze_step: DDP must be told to expect unused parameters
    frozen_phase = fc["unfreeze_step"] is not None and fc["unfreeze_step"] > 0
    ddp = wrap_ddp(model, dist, find_unused_parameters=frozen_phase)  # the model itself on one process
    net = maybe_compile(ddp, fc["compile"])
    # optimiser and schedule
    steps = run_steps(fc, steps_per_epoch)
    fc["schedule"] = run_schedule(fc["schedule"], steps, steps_per_epoch)  # as run (result.json)
    opt = build_classifier_optimizer(model, fc)
    sched = build_finetune_scheduler(opt, fc, steps)

    val_every = int(fc["val_every"]) or steps_per_epoch
    if fc["val_every_epochs"]:
        val_every = int(fc["val_every_epochs"]) * steps_per_epoch
    n_train = len(train.dataset) if hasattr(train, "dataset") else None

    if dist.is_main:
        print(f"{task.name}[{fc['mode']}] N={n_total} seed={seed}: {count_parameters(model)} parameters "
              f"({count_parameters(model, trainable_only=True)} trainable), {steps_per_epoch} steps/epoch, "
              f"<= {steps} steps", flush=True)

    loss_fn = loss_function(net, task, device, fc["precision"])

    # a frozen backbone's outputs of the train and val jets, computed once (common/training/frozen_cache.py)
    frozen = build_frozen_cache(model, train, val, device, fc, lambda: autocast(device, fc["precision"],
                                "finetune.precision"), log=print if dist.is_main else (lambda *a, **k: None))
    val_batches = val if frozen.val is None else frozen.val
    # resume (a killed run continues from its last validation)
    log = MetricLogger(out_dir, enabled=dist.is_main)
    it = ResumableLoader(train if frozen.train is None else frozen.train)
    best = {"loss": math.inf, "step": 0, "state": copy.deepcopy(model.state_dict())}
    val_curve, train_curve, bad, stopped_early, start, running = [], [], 0, False, 0, []
    ckpt_path = out_dir / "checkpoint.pt"
    if fc["checkpoint"] and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        start = restore_state(ckpt, model=model, optimizer=opt, scheduler=sched, loader=it)
        best, val_curve, train_curve, bad, running = (ckpt["harness"][k] for k in
                                                      ("best", "val_curve", "train_curve", "bad", "running"))
        log.truncate_after(start)
    # loop
    t0 = time.time()
    bar = progress(steps, f"{task.name} {fc['mode']}", enabled=dist.is_main, initial=start)
    model.train()
    step = start - 1
    for step in range(start, steps):
        if model.backbone_frozen and fc["unfreeze_step"] is not None and step >= fc["unfreeze_step"]:
            model.freeze_backbone(False)  # MPMv2 CatchupToLR / MPMv1 unfreezing; its LR ramps from here
        batch = to_device(next(it), device)
        loss_val = float(train_step(net, ddp, opt, sched, batch, loss_fn, fc))
        running.append(loss_val)
        bar.update(jets=len(jets_of(batch)) * world, loss=loss_val)
        if (step + 1) % int(fc["log_every"]) == 0:
            lrs = {f"lr_{g['tag']}": g["lr"] for g in opt.param_groups}
            log.log(step + 1, train_loss=float(np.mean(running)), **lrs)
            train_curve.append([step + 1, float(np.mean(running))])
            running = []
        if (step + 1) % val_every == 0 or step + 1 == steps:
            res = evaluate(net, val_batches, task, device, fc["precision"])
            model.train()
            val_curve.append([step + 1, res["loss"]])
            log.log(step + 1, val_loss=res["loss"])
            if task.better(res["loss"], best["loss"], float(fc["min_delta"])):
                best = {"loss": res["loss"], "step": step + 1, "state": copy.deepcopy(model.state_dict())}
                bad = 0
            else:
                bad += 1
                if fc["patience"] is not None and bad >= int(fc["patience"]):
                    stopped_early = True
                    break
            # checkpoint (at every validation)
            if fc["checkpoint"] and dist.is_main and step + 1 < steps:
                harness = {"best": best, "val_curve": val_curve, "train_curve": train_curve, "bad": bad,
                           "running": running}
                save_checkpoint(ckpt_path, make_state(model=model, optimizer=opt, scheduler=sched, step=step + 1,
                                                      loader=it, harness=harness))
    bar.close()
    steps_done = step + 1
    # done: the selected weights on the test split

    if fc["select"] == "best_val":
        model.load_state_dict(best["state"])
    selected_step = best["step"] if fc["select"] == "best_val" else steps_done
    test = loader_fn(cfg["data"], "test", ebs, shuffle=False, rank=dist.rank, world_size=world,
                     max_jets=fc["max_test_jets"])
    res = evaluate(net, test, task, device, fc["precision"])
    metrics = task.metrics(res)
    result = {
        "task": task.name, "mode": fc["mode"], "n_per_class": n, "seed": seed, "n_train_jets": n_train,
        "class_names": task.class_names,
        "steps": steps_done, "best_step": best["step"], "best_val_loss": best["loss"], "stopped_early": stopped_early,
        "select": fc["select"], "selected_step": selected_step,
        "test_loss": res["loss"], "n_test_jets": res["n"], "test": metrics,
        "val_curve": val_curve, "train_curve": train_curve, "wall_s": round(time.time() - t0, 2),
        "world_size": world, "finetune": fc,
        "frozen_cache": {"train": frozen.train is not None, "val": frozen.val is not None, "notes": frozen.notes},
    }
    if dist.is_main:
        log.log(steps_done, test_loss=res["loss"], **{f"test_{k}": v for k, v in flat_metrics(metrics).items()})
        if fc["save_model"]:
            save_checkpoint(out_dir / "classifier.pt", {"model": model.state_dict(), "result": result})
        write_json(out_dir / "result.json", result)
        mark_done(out_dir, {"best_step": best["step"], "steps": steps_done})
        ckpt_path.unlink(missing_ok=True)  # result.json holds everything; keep sweeps small on disk
    return result


def flat_metrics(d: dict, prefix: str = "") -> dict:
    """Nested metric dicts flattened to {"a/b": value} (multiclass metrics hold per-class dicts)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_metrics(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
