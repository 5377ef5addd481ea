"""Masked particle pretraining (MPMv1 or MPMv2, chosen by `method:` in the YAML).

    python -m mpm.pretrain --config mpm/configs/mpmv1.yaml --out runs/mpm/mpmv1 [a.b=value ...]
    torchrun --nproc_per_node=4 -m mpm.pretrain --config ... --out ...

Writes config.yaml, checkpoint.pt (latest, atomic; a rerun resumes from it exactly), log.jsonl and done.json.
`fit` below is the whole training loop, shared with mpm.train_tokenizer (VQ-VAE): any module whose
forward(batch) returns (loss, metrics) can be trained by it.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from common.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.distributed import all_reduce_mean, cleanup, init_distributed, wrap_ddp
from common.logger import MetricLogger
from common.schedules import build_scheduler
from common.train_utils import (autocast, build_optimizer, clip_and_step, count_parameters, mark_done, maybe_compile,
                                progress, seed_everything, start_run)

from mpm.mpmv1 import MPMv1, MPMv1Backbone
from mpm.mpmv2 import MPMv2, MPMv2Encoder
from mpm.train_tokenizer import load_tokenizer, num_features

METHODS = ("mpmv1", "mpmv2")


# ---------------------------------------------------------------------------------------------------------------------
# model builders (also used by mpm.finetune to rebuild the backbone of a pretraining run)

def _load(path, what: str, cfg: dict):
    if path is None:
        raise ValueError(f"{cfg['method']}: {what} needs a tokeniser: set tokenizer.checkpoint (a run directory of "
                         "mpm.train_tokenizer)")
    return load_tokenizer(path)


def target_tokenizer(cfg: dict):
    """Frozen tokeniser giving the targets (None for regression)."""
    m = cfg["model"]
    kind = m["target"] if cfg["method"] == "mpmv1" else m["task"]
    if kind not in ("vqvae", "kmeans"):
        return None
    return _load(cfg["tokenizer"]["checkpoint"], f"target {kind!r}", cfg)


def input_tokenizer(cfg: dict):
    """Frozen VQ-VAE for the quantised-inputs rows of MPMv1 (None otherwise)."""
    if cfg["method"] != "mpmv1" or cfg["model"]["inputs"] != "vqvae_quantised":
        return None
    t = cfg["tokenizer"]
    return _load(t["input_checkpoint"] or t["checkpoint"], "inputs 'vqvae_quantised'", cfg)


def build_backbone(cfg: dict, tokenizer=None):
    """The part kept for fine-tuning: MPMv1Backbone or MPMv2Encoder, sized by cfg['model']."""
    m = cfg["model"]
    if cfg["method"] == "mpmv1":
        if m["inputs"] == "vqvae_quantised" and tokenizer is None:
            tokenizer = input_tokenizer(cfg)
        return MPMv1Backbone(num_features(cfg["data"]), dim=m["dim"], depth=m["depth"], num_heads=m["num_heads"],
                             ff_hidden=m["ff_hidden"], embed_hidden=m["embed_hidden"], dropout=m["dropout"],
                             attn_dropout=m["attn_dropout"], num_particles=cfg["data"]["num_particles"],
                             positional=m["positional"], backbone_pe=m["backbone_pe"], inputs=m["inputs"],
                             norm_max_n=m["norm_max_n"], tokenizer=tokenizer)
    if cfg["method"] == "mpmv2":
        return MPMv2Encoder(num_features(cfg["data"]), m["num_ids"], dim=m["dim"], depth=m["depth"],
                            num_heads=m["num_heads"], ff_hidden=m["ff_hidden"], num_registers=m["num_registers"],
                            layerscale_init=m["layerscale_init"], final_norm=m["final_norm"])
    raise ValueError(f"config key 'method' must be one of {METHODS}, got {cfg.get('method')!r}")


def build_model(cfg: dict):
    """The pretraining model: MPMv1 or MPMv2 with its frozen tokeniser."""
    m = cfg["model"]
    tok = target_tokenizer(cfg)
    if cfg["method"] == "mpmv1":
        backbone = build_backbone(cfg, tokenizer=input_tokenizer(cfg))
        return MPMv1(backbone, target=m["target"], target_tokenizer=tok, mask_fraction=m["mask_fraction"],
                     head=m["head"], head_hidden=m["head_hidden"], positional=m["positional"])
    if cfg["method"] == "mpmv2":
        d = m["decoder"]
        return MPMv2(build_backbone(cfg), task=m["task"], tokenizer=tok, mask_fraction=m["mask_fraction"],
                     dec_dim=d["dim"], dec_depth=d["depth"], dec_heads=d["num_heads"], dec_ff_hidden=d["ff_hidden"],
                     max_particles=cfg["data"]["num_particles"], id_weight=m["id_weight"],
                     id_label_smoothing=m["id_label_smoothing"], task_cfg=m["task_cfg"],
                     num_features=num_features(cfg["data"]), num_ids=m["num_ids"], targets_from=m["targets_from"],
                     dec_final_norm=d["final_norm"])
    raise ValueError(f"config key 'method' must be one of {METHODS}, got {cfg.get('method')!r}")


# ---------------------------------------------------------------------------------------------------------------------
# the training loop

def fit(cfg: dict, model: torch.nn.Module, out_dir, dist, desc: str = "pretrain", loader=None, mark: bool = True):
    """Train `model` (forward(batch) -> (loss, metrics)) for cfg.train.steps optimiser steps.

    cfg.train: seed, device, batch_size, steps, lr, weight_decay, grad_clip, schedule{...}, log_every, ckpt_every,
    max_jets, autocast, compile. Resumes from out_dir/checkpoint.pt when present. Returns a summary dict."""
    t = cfg["train"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to(dist.device)
    if loader is None:
        from common.data import make_loader

        loader = make_loader(cfg["data"], "train", batch_size=t["batch_size"], shuffle=True, seed=t["seed"],
                             rank=dist.rank, world_size=dist.world_size, drop_last=True, max_jets=t["max_jets"])
    batches = ResumableLoader(loader)
    optimizer = build_optimizer(model, t)
    scheduler = build_scheduler(optimizer, {**t["schedule"], "total_steps": t["steps"]})
    logger = MetricLogger(out, enabled=dist.is_main)
    step = 0
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        step = restore_state(load_checkpoint(ckpt_path), model=model, optimizer=optimizer, scheduler=scheduler,
                             loader=batches)
        logger.truncate_after(step)
        if dist.is_main:
            print(f"{out}: resuming at step {step}")
    else:
        seed_everything(t["seed"] + dist.rank)  # masking differs per rank, identical model init came before
    train_model = maybe_compile(wrap_ddp(model, dist), t["compile"])
    if dist.is_main:
        print(f"{desc}: {count_parameters(model, trainable_only=True):,} trainable parameters, device {dist.device}")

    def save():
        if dist.is_main:
            save_checkpoint(ckpt_path, make_state(model=model, optimizer=optimizer, scheduler=scheduler, step=step,
                                                  config=cfg, loader=batches))

    bar = progress(t["steps"], desc, enabled=dist.is_main, initial=step)
    running, t0, first_loss, last = {}, time.perf_counter(), None, {}
    model.train()
    while step < t["steps"]:
        batch = next(batches).to(dist.device, non_blocking=True)
        with autocast(dist.device, t["autocast"]):
            loss, metrics = train_model(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite loss {loss.item()} at step {step} (config {out/'config.yaml'})")
        loss.backward()
        grad_norm = clip_and_step(model, optimizer, scheduler, t["grad_clip"])
        step += 1
        vals = {"loss": float(loss.detach()), **{k: float(v) for k, v in metrics.items()}}
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
        if step % t["ckpt_every"] == 0 or step == t["steps"]:
            save()
    bar.close()
    summary = {"steps": step, "first_loss": first_loss, "final": last,
               "seconds": round(time.perf_counter() - t0, 1), "jets_per_s": bar.jets_per_second}
    if mark and dist.is_main:
        mark_done(out, summary)
    return summary


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, _ = run
    dist = init_distributed(cfg["train"]["device"])
    seed_everything(cfg["train"]["seed"])  # the same initial weights on every rank
    model = build_model(cfg)
    fit(cfg, model, out, dist, desc=cfg["method"])
    cleanup()


if __name__ == "__main__":
    main()
