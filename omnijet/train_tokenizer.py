"""Train an OmniJet-alpha tokeniser (arXiv:2403.05618; OJ experiment_tokenization_transformer.yaml): conditional
VQ-VAE, MLP VQ-VAE baseline, or the binned grid.

    python -m omnijet.train_tokenizer --config omnijet/configs/tokenizer.yaml --out runs/omnijet/tokenizer [k=v ...]

Writes config.yaml, checkpoint.pt (latest, atomic, resumable), log.jsonl and done.json into --out. The binned
tokeniser has no parameters: it is written straight away. Works under torchrun (DDP).
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.config import load_config
from common.data import make_loader
from common.distributed import all_reduce_mean, cleanup, init_distributed, unwrap_model, wrap_ddp
from common.logger import MetricLogger
from common.schedules import build_scheduler
from common.train_utils import (build_optimizer, clip_and_step, mark_done, maybe_compile, progress, seed_everything,
                                start_run)
from omnijet.validation import validation_loader
from omnijet.vqvae import build_tokenizer


def load_tokenizer(run_dir, device="cpu") -> torch.nn.Module:
    """A trained tokeniser from its run directory (config.yaml + checkpoint.pt), in eval mode."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    model = build_tokenizer(cfg["model"])
    ckpt_path = run_dir / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: no tokeniser checkpoint (run omnijet.train_tokenizer first)")
    model.load_state_dict(load_checkpoint(ckpt_path)["model"])
    return model.to(device).eval()


@torch.no_grad()
def validate(model, loader, device, max_batches: int) -> dict:
    """Mean losses and codebook utilisation (unique codes of real particles / num_codes) on the validation split."""
    model.eval()
    sums, n, used = {"loss": 0.0, "reco_loss": 0.0, "vq_loss": 0.0}, 0, set()
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        batch = batch.to(device)
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


def train(cfg: dict, out: Path) -> None:
    """Train into `out` (opened by start_run: config.yaml saved, not done yet); resumes from out/checkpoint.pt."""
    dist = init_distributed(cfg["device"])
    seed_everything(cfg["seed"] + dist.rank)
    model = build_tokenizer(cfg["model"]).to(dist.device)

    if cfg["model"]["kind"] == "binned":  # nothing to learn: store the grid and finish
        if dist.is_main:
            save_checkpoint(out / "checkpoint.pt", make_state(model=model, step=0, config=cfg))
            mark_done(out, {"steps": 0, "num_codes": model.num_codes})
        cleanup()
        return

    tc = cfg["train"]
    per_rank = tc["batch_size"] // dist.world_size
    loader = ResumableLoader(make_loader(cfg["data"], "train", per_rank, shuffle=True, seed=cfg["seed"],
                                         rank=dist.rank, world_size=dist.world_size, drop_last=True))
    # every jet type in equal numbers, the same jets at every validation (omnijet/validation.py)
    val_loader = validation_loader(cfg["data"], per_rank, tc["val_batches"] * tc["batch_size"], rank=dist.rank,
                                   world_size=dist.world_size)
    optimizer = build_optimizer(model.parameters(), {"lr": tc["lr"], "weight_decay": tc["weight_decay"]})
    scheduler = build_scheduler(optimizer, tc["schedule"])  # OJ gabbro/schedulers/lr_scheduler.py OneCycleCooldown,
    # in optimiser steps
    step = 0
    if (out / "checkpoint.pt").is_file():
        step = restore_state(load_checkpoint(out / "checkpoint.pt"), model=model, optimizer=optimizer,
                             scheduler=scheduler, loader=loader)
    ddp_model = maybe_compile(wrap_ddp(model, dist), cfg["compile"])
    logger = MetricLogger(out, enabled=dist.is_main)
    logger.truncate_after(step)  # a resumed run logs each step once

    def checkpoint():
        if dist.is_main:
            save_checkpoint(out / "checkpoint.pt", make_state(model=model, step=step, optimizer=optimizer,
                                                              scheduler=scheduler, config=cfg, loader=loader))

    bar = progress(tc["max_steps"], "tokenizer", dist.is_main, initial=step)
    model.train()
    while step < tc["max_steps"]:
        batch = next(loader).to(dist.device)
        # fp32 on purpose: OJ found mixed precision breaks the VQ layer (OJ experiment_tokenization_transformer.yaml
        # comments out 16-mixed)
        res = ddp_model(batch.x, batch.mask)
        res["loss"].backward()
        clip_and_step(model, optimizer, scheduler, tc["grad_clip"])
        step += 1
        bar.update(jets=tc["batch_size"], loss=res["loss"].item())
        if step % tc["log_every"] == 0 or step == tc["max_steps"]:
            logger.log(step, loss=float(all_reduce_mean(res["loss"].detach())), reco_loss=float(res["reco_loss"]),
                       vq_loss=float(res["vq_loss"]), utilisation=float(res["utilisation"]),
                       lr=scheduler.get_last_lr()[0])
        if step % tc["val_every"] == 0 or step == tc["max_steps"]:
            logger.log(step, **validate(model, val_loader, dist.device, tc["val_batches"]))
        if step % tc["checkpoint_every"] == 0:
            checkpoint()
    bar.close()
    checkpoint()
    if dist.is_main:
        mark_done(out, {"steps": step, "num_codes": model.num_codes})
    cleanup()


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is not None:
        train(run.cfg, run.out)


if __name__ == "__main__":
    main()
