"""HEP-JEPA pretraining: a plain loop in the style of I-JEPA's src/train.py, driven by one YAML dict.

    python -m hepjepa.pretrain --config hepjepa/configs/pretrain.yaml --out runs/hepjepa/pretrain [a.b=value ...]
    torchrun --nproc_per_node=4 -m hepjepa.pretrain --config ... --out ...

Per optimiser step: augment -> tokenise -> teacher targets -> masks -> context encoder -> predictor -> smooth-L1 ->
backward (gradient accumulation, DDP) -> clip -> AdamW step -> LR schedule -> EMA update of the teacher with the
scheduled momentum (I-JEPA src/train.py). Every `monitor.every` steps: the shortcut monitors and the online probe
(hepjepa.monitors; its head is not checkpointed: it restarts on resume). Writes config.yaml, checkpoint.pt (atomic, resumable), log.jsonl and
done.json in --out.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.cli import cli
from common.data.datasets import dataset_info, make_loader
from common.training.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.training.distributed import Dist, all_reduce_mean, barrier, cleanup, init_distributed, wrap_ddp
from common.training.ema import momentum_schedule
from common.training.logger import MetricLogger
from common.training.pretrained import bundle
from common.training.schedules import build_scheduler
from common.training.train_utils import (accumulate, autocast, build_optimizer, clip_and_step, count_parameters,
                                         mark_done, maybe_compile, micro_batch_size, progress, seed_everything,
                                         start_run)

from .augment import augment
from .model import HEPJEPA, build_model
from .monitors import OnlineProbe

# the sections a pretraining reads; the rest (finetune, probe, sweep) are downstream settings
PRETRAINING_KEYS = ("seed", "device", "compile", "data", "model", "masking", "monitor", "augment", "train")


def _pretraining_part(cfg: dict) -> dict:
    return {k: ({kk: vv for kk, vv in cfg[k].items() if kk != "reuse"} if k == "train" else cfg[k])
            for k in PRETRAINING_KEYS if k in cfg}


def reusable(cfg: dict, run_dir) -> bool:
    """run_dir holds a finished pretraining (done.json, checkpoint.pt, log.jsonl) whose config.yaml has the same
    pretraining sections as cfg (train.reuse and the downstream sections aside): the run cfg asks for, already done."""
    import yaml

    run_dir = Path(run_dir)
    need = [run_dir / n for n in ("done.json", "checkpoint.pt", "log.jsonl", "config.yaml")]
    if not all(p.is_file() for p in need):
        return False
    return _pretraining_part(yaml.safe_load((run_dir / "config.yaml").read_text()) or {}) == _pretraining_part(cfg)


def reuse_run(cfg: dict, out: Path, dist: Dist) -> dict | None:
    """train.reuse: link the finished pretraining there into `out` (checkpoint.pt, log.jsonl) and mark `out` done,
    when it is this very pretraining (reusable); else None (the caller trains). The HEP-JEPA shortcut ablation's
    reference arm at seed 0 is the main pretraining in the paper profile (hepjepa/run_steps.sh)."""
    import json
    import os

    src = cfg["train"].get("reuse")
    if not src or not reusable(cfg, src):
        if src and dist.is_main:
            print(f"[hepjepa.pretrain] train.reuse={src}: not a finished run of this pretraining config; training",
                  flush=True)
        return None
    src = Path(src).resolve()
    summary = {**json.loads((src / "done.json").read_text()), "reused": str(src)}
    if dist.is_main:
        for name in ("checkpoint.pt", "log.jsonl"):
            link = Path(out) / name
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(src / name, link)
        mark_done(out, summary)
        print(f"[hepjepa.pretrain] the same pretraining as {src}: reused (linked), not rerun", flush=True)
    barrier()
    return summary


@torch.no_grad()
def validate(model: HEPJEPA, loader, device, n_batches: int, precision: str = "bf16", seed: int = 1234) -> dict:
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
            with autocast(device, precision, "train.precision"):
                out = model(b.x, b.mask, b.p4)
            tot["val_loss"] += float(out["loss"])
            tot["val_pred_std"] += float(out["pred_std"])
            tot["val_target_std"] += float(out["target_std"])
            n += 1
    model.train()
    return {k: all_reduce_mean(v / max(n, 1)) for k, v in tot.items()}


def train_step(net, ddp, model, optimizer, scheduler, batch, step: int, cfg: dict, names, momentum, device):
    """One step of the loop (also what bench/bench_train.py times): augmentation, JEPA loss under train.precision
    autocast and backward over train.grad_accum micro-batches, clipping, optimiser and scheduler step, then the EMA
    update of the target encoder (I-JEPA: after the optimiser step). Returns (loss, monitors, grad norm, momentum)."""
    tc = cfg["train"]

    def loss_fn(mb):
        with autocast(device, tc["precision"], "train.precision"):
            res = net(mb.x, mb.mask, mb.p4)
        # monitors stay tensors until logged; target_in_context: share of target-patch particles also in a context
        # patch (hepjepa.overlap)
        return res["loss"], {k: res[k] for k in ("pred_std", "target_std", "target_in_context", "context_tokens")}

    batch = augment(batch, names, cfg["augment"])
    loss, stats = accumulate(ddp, batch, tc["grad_accum"], loss_fn)
    gnorm = clip_and_step(model, optimizer, scheduler, tc["grad_clip"])
    m = momentum(step)
    model.update_target(m)  # after the optimiser step (I-JEPA)
    return loss, stats, gnorm, m


def train(cfg: dict, out: Path, dist: Dist) -> dict:
    """Run (or resume) pretraining into `out`, or reuse a finished identical one (train.reuse, reuse_run). Returns the
    summary (also written to done.json)."""
    reused = reuse_run(cfg, Path(out), dist)
    if reused is not None:
        return reused
    # config
    out, dev, tc = Path(out), dist.device, cfg["train"]
    micro = micro_batch_size(tc["batch_size"], dist.world_size, tc["grad_accum"])
    seed_everything(cfg["seed"] + dist.rank)
    # data
    info = dataset_info(cfg["data"])
    reuse = bundle("hepjepa", cfg)   # self-contained checkpoint: the preprocessing with the weights
    names = info["feature_names"]
    per_rank = micro * tc["grad_accum"]
    loader = make_loader(cfg["data"], "train", per_rank, shuffle=True, seed=cfg["seed"], rank=dist.rank,
                         world_size=dist.world_size, drop_last=True, max_jets=tc["max_jets"])
    val_loader = make_loader(cfg["data"], "val", per_rank, shuffle=False, rank=dist.rank, world_size=dist.world_size,
                             max_jets=tc["val_batches"] * per_rank * dist.world_size)
    batches = ResumableLoader(loader)
    # model
    model = build_model(cfg, info).to(dev)
    ddp = wrap_ddp(model, dist)  # find_unused_parameters not needed: every trainable weight is used each step
    net = maybe_compile(ddp, cfg["compile"])
    # optimiser and schedule (the teacher has requires_grad=False: not optimised)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc["schedule"])
    momentum = momentum_schedule(tc["ema"][0], tc["ema"][1], tc["steps"])
    # resume
    log = MetricLogger(out, enabled=dist.is_main)
    step = 0
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        step = restore_state(load_checkpoint(ckpt_path, map_location=dev), model=model, optimizer=optimizer,
                             scheduler=scheduler, loader=batches)
        log.truncate_after(step)
        if dist.is_main:
            print(f"[hepjepa.pretrain] resumed from {ckpt_path} at step {step}", flush=True)
    # shortcut monitors and the online probe (hepjepa.monitors), every monitor.every steps on the training batch
    # (their own random stream: a resumed run draws the same masks and augmentations as a straight one)
    mon_every = int(cfg["monitor"]["every"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"] + dist.rank)
        probe = OnlineProbe(2 * int(cfg["model"]["dim"]), len(info["class_names"]),
                            float(cfg["monitor"]["probe_lr"])).to(dev)
    n_backbone = count_parameters(model.context_encoder) + count_parameters(model.tokenizer) + count_parameters(model.pos)
    if dist.is_main:
        print(f"[hepjepa.pretrain] context encoder + tokeniser: {n_backbone:,} params; predictor "
              f"{count_parameters(model.predictor):,}; device {dev}; world {dist.world_size}", flush=True)

    # loop
    bar = progress(tc["steps"], "hepjepa pretrain", enabled=dist.is_main, initial=step)
    model.train()
    while step < tc["steps"]:
        batch = next(batches).to(dev, non_blocking=True)
        loss, stats, gnorm, m = train_step(net, ddp, model, optimizer, scheduler, batch, step, cfg, names, momentum,
                                           dev)
        step += 1
        if step % tc["log_every"] == 0 or step == tc["steps"]:  # monitors leave the device only here
            loss = all_reduce_mean(float(loss))
            bar.update(jets=len(batch) * dist.world_size, loss=loss)
            log.log(step, loss=loss, **{k: float(v) for k, v in stats.items()},
                    lr=scheduler.get_last_lr()[0], momentum=m, grad_norm=gnorm, jets_per_s=bar.jets_per_second)
        else:
            bar.update(jets=len(batch) * dist.world_size)
        if mon_every and step % mon_every == 0:  # on this rank's batch; the probe sees only detached embeddings
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                mon = model.monitor(batch.x, batch.mask, batch.p4)
                acc = probe.step(mon.pop("pooled"), batch.label)
            log.log(step, **mon, online_probe_acc=acc)
        if step % tc["val_every"] == 0 or step == tc["steps"]:
            log.log(step, **validate(model, val_loader, dev, tc["val_batches"], tc["precision"]))
        # checkpoint
        if step % tc["ckpt_every"] == 0 or step == tc["steps"]:
            if dist.is_main:
                save_checkpoint(ckpt_path, make_state(model=model, optimizer=optimizer, scheduler=scheduler,
                                                      step=step, config=cfg, loader=batches, reuse=reuse))
            barrier()
    bar.close()
    # done
    summary = {"steps": step, "jets_per_s": bar.jets_per_second, "params_backbone": n_backbone}
    if dist.is_main:
        mark_done(out, summary)
    return summary


def main(argv=None) -> None:
    run = start_run("HEP-JEPA pretraining", argv)
    if run is None:
        return
    dist = init_distributed(run.cfg["device"])
    try:
        train(run.cfg, run.out, dist)
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
