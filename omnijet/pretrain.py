"""Generative pretraining of OmniJet-alpha (arXiv:2403.05618; OJ example_experiment_generative.yaml): next-token
prediction on tokenised top + QCD jets.

    python -m omnijet.pretrain --config omnijet/configs/pretrain.yaml --out runs/omnijet/pretrain \
        tokens_dir=runs/omnijet/tokens

Reads the token sequences written by omnijet.tokenize_dataset (all in RAM, as OJ does), trains OmniJetGPT with AdamW,
keeps `checkpoint.pt` (latest, resumable) and `best.pt` (lowest validation loss, early stopping), and writes
config.yaml, log.jsonl and done.json into --out. Works under torchrun (DDP).

Same shape and keys as every training loop of the kit (common/training/config.py): config, data, model, optimiser and schedule,
resume, loop, checkpoint, done. The batches come from the kit's one sampler (common.data.sampler.ShardedBatchSampler), so
their order depends only on (seed, epoch, rank, world_size) and a resumed run continues with exactly the next batch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from common.cli import cli
from common.data.sampler import ShardedBatchSampler
from common.training.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.training.distributed import Dist, all_reduce_mean, cleanup, init_distributed, wrap_ddp
from common.training.logger import MetricLogger
from common.training.pretrained import bundle
from common.training.schedules import build_scheduler
from common.training.train_utils import (accumulate, autocast, build_optimizer, clip_and_step, mark_done, maybe_compile,
                                         micro_batch_size, progress, seed_everything, start_run)

from omnijet.model import build_gpt, next_token_loss, shift_tokens
from omnijet.pretrained import tokenizer_bundle
from omnijet.tokens import START, load_split, num_codes_of
from omnijet.validation import balanced_subset


def token_batches(tokens: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                  world_size: int = 1) -> ResumableLoader:
    """Endless (tokens, lengths) batches of one rank from the in-memory sequences: a seeded per-epoch permutation
    sharded over ranks (common.data.sampler.ShardedBatchSampler, incomplete batches dropped); its state (epoch,
    position) is saved in the checkpoint."""
    sampler = ShardedBatchSampler(len(tokens), batch_size, shuffle=True, seed=seed, rank=rank, world_size=world_size,
                                  drop_last=True)
    if len(sampler) == 0:
        raise ValueError(f"only {len(tokens)} training sequences for batch {batch_size} x {world_size} ranks")
    data = TensorDataset(torch.from_numpy(tokens), torch.from_numpy(lengths))
    return ResumableLoader(DataLoader(data, batch_size=None, sampler=sampler, collate_fn=lambda b: b))


@torch.no_grad()
def validate(model, tokens, lengths, batch_size, max_len, include_padding, device, precision="fp32") -> float:
    """Mean next-token loss over the given sequences (the balanced validation subset, omnijet/validation.py)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        t = torch.as_tensor(tokens[i:i + batch_size].astype(np.int64), device=device)
        ln = torch.as_tensor(lengths[i:i + batch_size].astype(np.int64), device=device)
        inp, tgt, mask = shift_tokens(t, ln, max_len)
        with autocast(device, precision, "train.precision"):
            logits = model(inp, mask)
        total += float(next_token_loss(logits, tgt, mask, include_padding)) * len(t)
        n += len(t)
    model.train()
    return float(all_reduce_mean(torch.tensor(total / max(n, 1), device=device)))


def train_step(net, ddp, model, optimizer, scheduler, batch, tc: dict, device):
    """One step of the loop (also what bench/bench_train.py times): next-token loss under train.precision autocast,
    backward over train.grad_accum micro-batches of (tokens, lengths), clipping, optimiser and scheduler step."""

    def loss_fn(micro_batch):
        tokens, lengths = micro_batch
        inp, tgt, mask = shift_tokens(tokens, lengths, tc["max_len"])
        with autocast(device, tc["precision"], "train.precision"):
            logits = net(inp, mask)
        return next_token_loss(logits, tgt, mask, tc["include_padding_in_loss"]), {}

    loss, _ = accumulate(ddp, batch, tc["grad_accum"], loss_fn)
    clip_and_step(model, optimizer, scheduler, tc["grad_clip"])
    return loss


def train(cfg: dict, out: Path, dist: Dist) -> dict:
    """Train into `out` (opened by start_run: config.yaml saved, not done yet); resumes from out/checkpoint.pt.
    Returns the summary written to done.json."""
    # config
    tc = cfg["train"]
    autocast("cpu", tc["precision"], "train.precision")  # a bad value fails before the data is read
    micro = micro_batch_size(tc["batch_size"], dist.world_size, tc["grad_accum"])
    per_rank = micro * tc["grad_accum"]

    # data
    num_codes = num_codes_of(cfg["tokens_dir"])
    train_split, val_split = load_split(cfg["tokens_dir"], "train"), load_split(cfg["tokens_dir"], "val")
    # top and QCD in equal numbers, the same sequences at every validation (the split is stored class after class)
    val_pick = balanced_subset(val_split["labels"], tc["val_batches"] * tc["batch_size"] // dist.world_size)
    val_tokens, val_lengths = val_split["tokens"][val_pick], val_split["lengths"][val_pick]
    # OJ keeps pT order and the first 128 constituents; assert the writer's convention once (start token first)
    if (train_split["tokens"][:, 0] != START).any():
        raise ValueError(f"{cfg['tokens_dir']}: train sequences must start with the start token {START}")
    batches = token_batches(train_split["tokens"], train_split["lengths"], per_rank, cfg["seed"], dist.rank,
                            dist.world_size)

    # model
    seed_everything(cfg["seed"] + dist.rank)
    model = build_gpt(cfg["model"], num_codes).to(dist.device)

    # optimiser and schedule: OJ ConstantLR(total_iters=1) stepped per epoch -> the first epoch at lr x 1/3 (torch
    # default factor; OJ example_experiment_generative.yaml)
    optimizer = build_optimizer(model.parameters(), {"lr": tc["lr"], "weight_decay": tc["weight_decay"]})
    scheduler = build_scheduler(optimizer, tc["schedule"])

    # resume
    ckpt_path = out / "checkpoint.pt"
    step, best, bad_evals = 0, float("inf"), 0
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        step = restore_state(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, loader=batches)
        best, bad_evals = ckpt["best_val"], ckpt["bad_evals"]
    ddp = wrap_ddp(model, dist)
    net = maybe_compile(ddp, cfg["compile"])
    logger = MetricLogger(out, enabled=dist.is_main)
    logger.truncate_after(step)  # a resumed run logs each step once

    # self-contained checkpoints: the preprocessing and the tokeniser with the weights (common.training.pretrained)
    # (token sequences without their tokeniser run, as tests write them, give a checkpoint without it)
    has_tokenizer = (Path(cfg["tokenizer_dir"]) / "checkpoint.pt").is_file()
    reuse = bundle("omnijet", cfg, tokenizer=tokenizer_bundle(cfg["tokenizer_dir"])) if has_tokenizer else None
    if reuse is None and dist.is_main:
        print(f"{cfg['tokenizer_dir']}: no tokeniser checkpoint; the GPT checkpoint will not be self-contained")

    def state():
        return make_state(model=model, step=step, optimizer=optimizer, scheduler=scheduler, config=cfg,
                          loader=batches, num_codes=num_codes, best_val=best, bad_evals=bad_evals, reuse=reuse)

    # loop
    bar = progress(tc["steps"], "omnijet pretrain", dist.is_main, initial=step)
    model.train()
    stop = False
    while step < tc["steps"] and not stop:
        tokens, lengths = next(batches)
        batch = (tokens.to(dist.device).long(), lengths.to(dist.device).long())
        loss = train_step(net, ddp, model, optimizer, scheduler, batch, tc, dist.device)
        step += 1
        bar.update(jets=tc["batch_size"], loss=loss.item())
        if step % tc["log_every"] == 0:
            logger.log(step, loss=float(all_reduce_mean(loss)), lr=scheduler.get_last_lr()[0])
        if step % tc["val_every"] == 0 or step == tc["steps"]:
            val = validate(model, val_tokens, val_lengths, per_rank, tc["max_len"], tc["include_padding_in_loss"],
                           dist.device, tc["precision"])
            logger.log(step, val_loss=val)
            if val < best:  # min-val-loss checkpoint, EarlyStopping (OJ example_experiment_generative.yaml)
                best, bad_evals = val, 0
                if dist.is_main:
                    save_checkpoint(out / "best.pt", state())
            else:
                bad_evals += 1
                stop = bad_evals >= tc["patience"]
        # checkpoint
        if step % tc["ckpt_every"] == 0 and dist.is_main:
            save_checkpoint(ckpt_path, state())
    bar.close()
    if dist.is_main:
        save_checkpoint(ckpt_path, state())

    # done
    summary = {"steps": step, "jets_per_s": bar.jets_per_second, "best_val_loss": best, "early_stopped": stop,
               "jets_seen": step * tc["batch_size"], "num_codes": num_codes}
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
