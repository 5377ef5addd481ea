"""The MPM training loop, shared by the masked-particle pretraining (mpm.pretrain) and the VQ-VAE tokeniser
(mpm.train_tokenizer): it trains any module whose forward(batch) returns (loss, metrics).

Same shape and keys as every loop of the kit (common/training/config.py): config, data, model, optimiser and schedule, resume,
loop, checkpoint, done. `train.*`: batch_size (global), steps, lr, weight_decay, grad_clip, grad_accum, schedule,
log_every, ckpt_every, max_jets, precision; top level: seed, compile. Resumes from <out>/checkpoint.pt exactly.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from common.data.datasets import make_loader
from common.training.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.training.distributed import Dist, all_reduce_mean, wrap_ddp
from common.training.logger import MetricLogger
from common.training.schedules import build_scheduler
from common.training.train_utils import (accumulate, autocast, build_optimizer, clip_and_step, count_parameters,
                                         mark_done, maybe_compile, micro_batch_size, progress, seed_everything)


def train_step(net: torch.nn.Module, model: torch.nn.Module, optimizer, scheduler, batch, t: dict, device):
    """One step of the loop (also what bench/bench_train.py times): forward under train.precision autocast and backward
    over train.grad_accum micro-batches, clipping at train.grad_clip, optimiser and scheduler step.
    net: the model as run (DDP, compiled); model: the module whose parameters are clipped. Returns (loss, metrics,
    grad norm before clipping)."""

    def loss_fn(mb):
        with autocast(device, t["precision"], "train.precision"):
            return net(mb)

    loss, metrics = accumulate(net, batch, t["grad_accum"], loss_fn)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()}")
    return loss, metrics, clip_and_step(model, optimizer, scheduler, t["grad_clip"])


def train(cfg: dict, model: torch.nn.Module, out: Path, dist: Dist, desc: str = "pretrain", mark: bool = True,
          loader=None, extra_state: dict | None = None) -> dict:
    """Train `model` for train.steps optimiser steps into `out`; returns the summary (written to done.json when
    `mark`). loader: the training batches (default: common.data.datasets.make_loader of cfg.data, sharded over ranks).
    extra_state: plain values saved in every checkpoint (mpm.pretrain: the `reuse` entry,
    common.training.pretrained.bundle)."""
    # config
    t = cfg["train"]
    micro = micro_batch_size(t["batch_size"], dist.world_size, t["grad_accum"])
    out = Path(out)
    # data
    if loader is None:
        loader = make_loader(cfg["data"], "train", batch_size=micro * t["grad_accum"], shuffle=True,
                             seed=cfg["seed"], rank=dist.rank, world_size=dist.world_size, drop_last=True,
                             max_jets=t["max_jets"])
    batches = ResumableLoader(loader)
    # model (built by the caller with seed_everything(seed): the same initial weights on every rank)
    model.to(dist.device)
    # optimiser and schedule
    optimizer = build_optimizer(model, t)
    scheduler = build_scheduler(optimizer, {**t["schedule"], "total_steps": t["steps"]})
    # resume
    logger = MetricLogger(out, enabled=dist.is_main)
    step, first_loss = 0, None
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        step = restore_state(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, loader=batches)
        first_loss = ckpt.get("first_loss")   # the run's first loss, not this process's
        logger.truncate_after(step)
        if dist.is_main:
            print(f"{out}: resuming at step {step}")
    else:
        seed_everything(cfg["seed"] + dist.rank)  # masking differs per rank
    net = maybe_compile(wrap_ddp(model, dist), cfg["compile"])
    if dist.is_main:
        print(f"{desc}: {count_parameters(model, trainable_only=True):,} trainable parameters, device {dist.device}")

    def checkpoint():
        if dist.is_main:
            save_checkpoint(ckpt_path, make_state(model=model, optimizer=optimizer, scheduler=scheduler, step=step,
                                                  config=cfg, loader=batches, first_loss=first_loss,
                                                  **(extra_state or {})))

    # loop
    bar = progress(t["steps"], desc, enabled=dist.is_main, initial=step)
    running, t0, last = {}, time.perf_counter(), {}
    model.train()
    while step < t["steps"]:
        batch = next(batches).to(dist.device, non_blocking=True)
        try:
            loss, metrics, grad_norm = train_step(net, model, optimizer, scheduler, batch, t, dist.device)
        except FloatingPointError as e:
            raise FloatingPointError(f"{desc}: {e} at step {step} (config {out/'config.yaml'})") from None
        step += 1
        vals = {"loss": float(loss), **{k: float(v) for k, v in metrics.items()}}
        first_loss = vals["loss"] if first_loss is None else first_loss
        for k, v in vals.items():
            running[k] = running.get(k, 0.0) + v
        running["_n"] = running.get("_n", 0) + 1
        bar.update(jets=len(batch) * dist.world_size, loss=vals["loss"])
        if step % t["log_every"] == 0 or step == t["steps"]:
            n = running.pop("_n")
            last = {k: all_reduce_mean(v / n) for k, v in running.items()}
            logger.log(step, **last, lr=scheduler.get_last_lr()[0], grad_norm=grad_norm,
                       jets_per_s=bar.jets_per_second)
            running = {}
        # checkpoint
        if step % t["ckpt_every"] == 0 or step == t["steps"]:
            checkpoint()
    bar.close()
    # done
    summary = {"steps": step, "first_loss": first_loss, "final": last,
               "seconds": round(time.perf_counter() - t0, 1), "jets_per_s": bar.jets_per_second}
    if mark and dist.is_main:
        mark_done(out, summary)
    return summary
