"""Train an OmniJet-alpha tokeniser (arXiv:2403.05618; OJ experiment_tokenization_transformer.yaml): conditional
VQ-VAE, MLP VQ-VAE baseline, or the binned grid.

    python -m omnijet.train_tokenizer --config omnijet/configs/tokenizer.yaml --out runs/omnijet/tokenizer [k=v ...]

Writes config.yaml, checkpoint.pt (latest, atomic, resumable), log.jsonl and done.json into --out. The binned
tokeniser has no parameters: it is written straight away. Works under torchrun (DDP).

Same shape and keys as every training loop of the kit (common/training/config.py): config, data, model, optimiser and schedule,
resume, loop, checkpoint, done.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.cli import cli
from common.data.datasets import make_loader
from common.training.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.training.distributed import Dist, all_reduce_mean, cleanup, init_distributed, unwrap_model, wrap_ddp
from common.training.logger import MetricLogger
from common.training.schedules import build_scheduler
from common.training.train_utils import (accumulate, autocast, build_optimizer, clip_and_step, mark_done, maybe_compile,
                                         micro_batch_size, progress, seed_everything, start_run)

from omnijet.validation import validation_loader
from omnijet.vqvae import build_tokenizer


@torch.no_grad()
def validate(model, loader, device, max_batches: int, precision: str) -> dict:
    """Mean losses and codebook utilisation (unique codes of real particles / num_codes) on the validation split."""
    model.eval()
    sums, n, used = {"loss": 0.0, "reco_loss": 0.0, "vq_loss": 0.0}, 0, set()
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        batch = batch.to(device)
        with autocast(device, precision, "train.precision"):
            out = model(batch.x, batch.mask)
        for k in sums:
            sums[k] += float(out[k])
        used.update(out["codes"][batch.mask].unique().tolist())
        n += 1
    model.train()
    # losses averaged over ranks; utilisation of the codes seen by this rank (rank 0 logs)
    res = {f"val_{k}": float(all_reduce_mean(torch.tensor(v / max(n, 1), device=device))) for k, v in sums.items()}
    res["val_utilisation"] = len(used) / unwrap_model(model).num_codes
    return res


def train_step(net, ddp, model, optimizer, scheduler, batch, tc: dict, device):
    """One step of the loop (also what bench/bench_train.py times): VQ-VAE loss under train.precision autocast,
    backward over train.grad_accum micro-batches, clipping, optimiser and scheduler step. Returns (loss, metrics)."""

    def loss_fn(mb):
        # train.precision fp32 by default: OJ found mixed precision breaks the VQ layer
        # (experiment_tokenization_transformer.yaml comments out 16-mixed)
        with autocast(device, tc["precision"], "train.precision"):
            res = net(mb.x, mb.mask)
        return res["loss"], {k: res[k] for k in ("reco_loss", "vq_loss", "utilisation")}

    loss, metrics = accumulate(ddp, batch, tc["grad_accum"], loss_fn)
    clip_and_step(model, optimizer, scheduler, tc["grad_clip"])
    return loss, metrics


def train(cfg: dict, out: Path, dist: Dist) -> dict:
    """Train into `out` (opened by start_run: config.yaml saved, not done yet); resumes from out/checkpoint.pt.
    Returns the summary written to done.json."""
    # config
    tc = cfg["train"]
    autocast("cpu", tc["precision"], "train.precision")  # a bad value fails before the data is read
    micro = micro_batch_size(tc["batch_size"], dist.world_size, tc["grad_accum"])
    per_rank = micro * tc["grad_accum"]
    if cfg["model"]["kind"] == "binned":  # nothing to learn: store the grid and finish
        model = build_tokenizer(cfg["model"])
        summary = {"steps": 0, "jets_per_s": None, "num_codes": model.num_codes}
        if dist.is_main:
            save_checkpoint(out / "checkpoint.pt", make_state(model=model, step=0, config=cfg))
            mark_done(out, summary)
        return summary

    # data
    batches = ResumableLoader(make_loader(cfg["data"], "train", per_rank, shuffle=True, seed=cfg["seed"],
                                          rank=dist.rank, world_size=dist.world_size, drop_last=True))
    # every jet type in equal numbers, the same jets at every validation (omnijet/validation.py)
    val_loader = validation_loader(cfg["data"], per_rank, tc["val_batches"] * tc["batch_size"], rank=dist.rank,
                                   world_size=dist.world_size)

    # model
    seed_everything(cfg["seed"] + dist.rank)
    model = build_tokenizer(cfg["model"]).to(dist.device)

    # optimiser and schedule: OJ gabbro/schedulers/lr_scheduler.py OneCycleCooldown, in optimiser steps
    optimizer = build_optimizer(model.parameters(), {"lr": tc["lr"], "weight_decay": tc["weight_decay"]})
    scheduler = build_scheduler(optimizer, tc["schedule"])

    # resume
    ckpt_path = out / "checkpoint.pt"
    step = 0
    if ckpt_path.is_file():
        step = restore_state(load_checkpoint(ckpt_path), model=model, optimizer=optimizer, scheduler=scheduler,
                             loader=batches)
    ddp = wrap_ddp(model, dist)
    net = maybe_compile(ddp, cfg["compile"])
    logger = MetricLogger(out, enabled=dist.is_main)
    logger.truncate_after(step)  # a resumed run logs each step once

    def checkpoint():
        if dist.is_main:
            save_checkpoint(ckpt_path, make_state(model=model, step=step, optimizer=optimizer, scheduler=scheduler,
                                                  config=cfg, loader=batches))

    # loop
    bar = progress(tc["steps"], "tokenizer", dist.is_main, initial=step)
    model.train()
    while step < tc["steps"]:
        batch = next(batches).to(dist.device)
        loss, metrics = train_step(net, ddp, model, optimizer, scheduler, batch, tc, dist.device)
        step += 1
        bar.update(jets=tc["batch_size"], loss=loss.item())
        if step % tc["log_every"] == 0 or step == tc["steps"]:
            logger.log(step, loss=float(all_reduce_mean(loss)), **{k: float(v) for k, v in metrics.items()},
                       lr=scheduler.get_last_lr()[0])
        if step % tc["val_every"] == 0 or step == tc["steps"]:
            logger.log(step, **validate(model, val_loader, dist.device, tc["val_batches"], tc["precision"]))
        # checkpoint
        if step % tc["ckpt_every"] == 0:
            checkpoint()
    bar.close()
    checkpoint()

    # done
    summary = {"steps": step, "jets_per_s": bar.jets_per_second, "num_codes": model.num_codes}
    if dist.is_main:
        mark_done(out, summary)
    return summary


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is None:
        return
    dist = init_distributed(run.cfg["device"])
    try:
        train(run.cfg, run.out, dist)
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
