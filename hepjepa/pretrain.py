"""HEP-JEPA pretraining: a plain loop in the style of I-JEPA's src/train.py, driven by one YAML dict.

    python -m hepjepa.pretrain --config hepjepa/configs/pretrain.yaml --out runs/hepjepa/pretrain [a.b=value ...]
    torchrun --nproc_per_node=4 -m hepjepa.pretrain --config ... --out ...

Per optimiser step: augment -> tokenise -> teacher targets -> masks -> context encoder -> predictor -> smooth-L1 ->
backward (gradient accumulation, DDP) -> clip -> AdamW step -> LR schedule -> EMA update of the teacher with the
scheduled momentum (I-JEPA src/train.py). Writes config.yaml, checkpoint.pt (atomic, resumable), log.jsonl and
done.json in --out.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from common.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.config import save_config
from common.data import dataset_info, make_loader
from common.distributed import all_reduce_mean, barrier, cleanup, init_distributed, unwrap_model, wrap_ddp
from common.ema import momentum_schedule
from common.logger import MetricLogger
from common.schedules import build_scheduler
from common.train_utils import (autocast, build_optimizer, clip_and_step, count_parameters, mark_done, maybe_compile,
                                micro_batches, no_sync, progress, seed_everything, start_run)

from .augment import augment
from .model import HEPJEPA


def angle_columns(feature_names) -> tuple[int, int]:
    """Indices of (deta, dphi) in the feature vector (the tokeniser's coordinates)."""
    names = list(feature_names)
    for need in ("part_deta", "part_dphi"):
        if need not in names:
            raise ValueError(f"HEP-JEPA needs '{need}' among the particle features, got {names}")
    return names.index("part_deta"), names.index("part_dphi")


def build_model(cfg: dict, info: dict) -> HEPJEPA:
    return HEPJEPA(cfg["model"], info["num_features"], angle_columns(info["feature_names"]), cfg["masking"])


@torch.no_grad()
def validate(model: HEPJEPA, loader, device, n_batches: int, seed: int = 1234) -> dict:
    """Mean JEPA loss and collapse monitors on the first `n_batches` validation batches, with fixed masks (seeded)."""
    model.eval()
    tot = {"val_loss": 0.0, "val_pred_std": 0.0, "val_target_std": 0.0}
    n = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i, batch in enumerate(loader):
            if i >= n_batches:
                break
            b = batch.to(device)
            with autocast(device):
                out = model(b.x, b.mask, b.p4)
            tot["val_loss"] += float(out["loss"])
            tot["val_pred_std"] += float(out["pred_std"])
            tot["val_target_std"] += float(out["target_std"])
            n += 1
    model.train()
    return {k: all_reduce_mean(v / max(n, 1)) for k, v in tot.items()}


def train(cfg: dict, out_dir, dist=None) -> dict:
    """Run (or resume) pretraining into out_dir. Returns a summary dict (also written to done.json)."""
    out = Path(out_dir)
    dist = dist or init_distributed(cfg["device"])
    dev = dist.device
    tc = cfg["train"]
    micro = tc["batch_size"] // (dist.world_size * tc["grad_accum"])
    if micro * dist.world_size * tc["grad_accum"] != tc["batch_size"] or micro < 1:
        raise ValueError(f"train.batch_size={tc['batch_size']} must be divisible by world_size={dist.world_size} x "
                         f"train.grad_accum={tc['grad_accum']}")
    seed_everything(cfg["seed"] + dist.rank)
    if dist.is_main:
        save_config(cfg, out / "config.yaml")

    info = dataset_info(cfg["data"])
    names = info["feature_names"]
    model = build_model(cfg, info).to(dev)
    optimizer = build_optimizer(model, tc["optimizer"])  # the teacher has requires_grad=False: not optimised
    scheduler = build_scheduler(optimizer, tc["schedule"])
    momentum = momentum_schedule(tc["ema"][0], tc["ema"][1], tc["steps"])
    ddp = wrap_ddp(model, dist)  # find_unused_parameters not needed: every trainable weight is used each step
    net = maybe_compile(ddp, cfg["compile"])

    loader = make_loader(cfg["data"], "train", micro * tc["grad_accum"], shuffle=True, seed=cfg["seed"],
                         rank=dist.rank, world_size=dist.world_size, drop_last=True, max_jets=tc["max_train_jets"])
    val_loader = make_loader(cfg["data"], "val", micro * tc["grad_accum"], shuffle=False, rank=dist.rank,
                             world_size=dist.world_size, max_jets=tc["val_batches"] * micro * tc["grad_accum"] * dist.world_size)
    batches = ResumableLoader(loader)
    log = MetricLogger(out, enabled=dist.is_main)

    step = 0
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        step = restore_state(load_checkpoint(ckpt_path, map_location=dev), model=model, optimizer=optimizer,
                             scheduler=scheduler, loader=batches)
        log.truncate_after(step)
        if dist.is_main:
            print(f"[hepjepa.pretrain] resumed from {ckpt_path} at step {step}", flush=True)
    if dist.is_main:
        print(f"[hepjepa.pretrain] context encoder + tokeniser: {count_parameters(model.context_encoder) + count_parameters(model.tokenizer) + count_parameters(model.pos):,} "
              f"params; predictor {count_parameters(model.predictor):,}; device {dev}; world {dist.world_size}", flush=True)

    bar = progress(tc["steps"], "hepjepa pretrain", enabled=dist.is_main, initial=step)
    model.train()
    while step < tc["steps"]:
        batch = next(batches).to(dev, non_blocking=True)
        batch = augment(batch, names, cfg["augment"])
        parts = micro_batches(batch, tc["grad_accum"])
        # monitors stay tensors until logged; target_in_context: share of target-patch particles also in a context
        # patch (hepjepa.overlap)
        stats = {"loss": 0.0, "pred_std": 0.0, "target_std": 0.0, "target_in_context": 0.0}
        for i, mb in enumerate(parts):
            with no_sync(ddp, i < len(parts) - 1), autocast(dev):
                res = net(mb.x, mb.mask, mb.p4)
                (res["loss"] / len(parts)).backward()
            stats["loss"] += res["loss"].detach() / len(parts)
            stats["pred_std"] += res["pred_std"] / len(parts)
            stats["target_std"] += res["target_std"] / len(parts)
            stats["target_in_context"] += res["target_in_context"] / len(parts)
            stats["context_tokens"] = res["context_tokens"]
        gnorm = clip_and_step(model, optimizer, scheduler, tc["clip"])
        m = momentum(step)
        model.update_target(m)  # after the optimiser step (I-JEPA)
        step += 1
        if step % tc["log_every"] == 0 or step == tc["steps"]:  # monitors leave the device only here
            loss = all_reduce_mean(float(stats["loss"]))
            bar.update(jets=len(batch) * dist.world_size, loss=loss)
            log.log(step, loss=loss, pred_std=float(stats["pred_std"]),
                    target_std=float(stats["target_std"]), context_tokens=float(stats["context_tokens"]),
                    target_in_context=float(stats["target_in_context"]),
                    lr=scheduler.get_last_lr()[0], momentum=m, grad_norm=gnorm, jets_per_s=bar.jets_per_second)
        else:
            bar.update(jets=len(batch) * dist.world_size)
        if step % tc["val_every"] == 0 or step == tc["steps"]:
            log.log(step, **validate(model, val_loader, dev, tc["val_batches"]))
        if step % tc["ckpt_every"] == 0 or step == tc["steps"]:
            if dist.is_main:
                save_checkpoint(ckpt_path, make_state(model=model, optimizer=optimizer, scheduler=scheduler,
                                                      step=step, config=cfg, loader=batches))
            barrier()
    bar.close()
    summary = {"steps": step, "jets_per_s": bar.jets_per_second,
               "params_backbone": count_parameters(unwrap_model(model).context_encoder)
               + count_parameters(model.tokenizer) + count_parameters(model.pos)}
    if dist.is_main:
        mark_done(out, summary)
    return summary


def main(argv=None) -> None:
    run = start_run("HEP-JEPA pretraining", argv, save=False)  # train() saves config.yaml (also when tests call it)
    if run is None:
        return
    dist = init_distributed(run.cfg["device"])
    try:
        train(run.cfg, run.out, dist)
    finally:
        cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
