"""Generative pretraining of OmniJet-alpha (arXiv:2403.05618; OJ example_experiment_generative.yaml): next-token
prediction on tokenised top + QCD jets.

    python -m omnijet.pretrain --config omnijet/configs/pretrain.yaml --out runs/omnijet/pretrain \
        tokens_dir=runs/omnijet/tokens

Reads the token sequences written by omnijet.tokenize_dataset (all in RAM, as OJ does), trains OmniJetGPT with AdamW,
keeps `checkpoint.pt` (latest, resumable) and `best.pt` (lowest validation loss, early stopping), and writes
config.yaml, log.jsonl and done.json into --out. Works under torchrun (DDP).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import load_checkpoint, make_state, restore_state, save_checkpoint
from common.config import load_config
from common.distributed import all_reduce_mean, cleanup, init_distributed, unwrap_model, wrap_ddp
from common.logger import MetricLogger
from common.schedules import build_scheduler
from common.train_utils import (build_optimizer, clip_and_step, mark_done, maybe_compile, progress, seed_everything,
                                start_run)
from omnijet.model import OmniJetGPT, build_gpt, gpt_precision, next_token_loss, shift_tokens
from omnijet.tokenize_dataset import load_split
from omnijet.validation import balanced_subset


class TokenBatches:
    """Endless shuffled batches of token sequences for one rank; order depends only on (seed, epoch), and the state
    (epoch, position) makes a resume continue with exactly the next batch."""

    def __init__(self, tokens: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1):
        self.tokens = torch.from_numpy(tokens.astype(np.int64))
        self.lengths = torch.from_numpy(lengths.astype(np.int64))
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.per_epoch = len(tokens) // (batch_size * world_size)
        if self.per_epoch == 0:
            raise ValueError(f"only {len(tokens)} training sequences for batch {batch_size} x {world_size} ranks")
        self.epoch, self.position = 0, 0
        self._order, self._order_epoch = None, -1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, s: dict) -> None:
        self.epoch, self.position = int(s["epoch"]), int(s["position"])

    def __next__(self):
        if self.position == self.per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self._order_epoch != self.epoch:  # one permutation per epoch, from (seed, epoch) only
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            self._order, self._order_epoch = torch.randperm(len(self.tokens), generator=g), self.epoch
        order = self._order
        start = (self.position * self.world_size + self.rank) * self.batch_size
        idx = order[start:start + self.batch_size]
        self.position += 1
        return self.tokens[idx], self.lengths[idx]


def num_codes_of(tokens_dir) -> int:
    done = Path(tokens_dir) / "done.json"
    if not done.is_file():
        raise FileNotFoundError(f"{done}: token directory not finished (run omnijet.tokenize_dataset first)")
    return int(json.loads(done.read_text())["num_codes"])


def load_gpt(run_dir, device="cpu", which: str = "best") -> tuple[OmniJetGPT, dict]:
    """A trained GPT from a pretraining run directory (best.pt, else checkpoint.pt) and its config."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    path = run_dir / f"{which}.pt"
    if not path.is_file():
        path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no best.pt or checkpoint.pt (run omnijet.pretrain first)")
    ckpt = load_checkpoint(path)
    model = build_gpt(cfg["model"], int(ckpt["num_codes"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg


@torch.no_grad()
def validate(model, tokens, lengths, batch_size, max_len, include_padding, device, precision="fp32") -> float:
    """Mean next-token loss over the given sequences (the balanced validation subset, omnijet/validation.py)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        t = torch.as_tensor(tokens[i:i + batch_size].astype(np.int64), device=device)
        ln = torch.as_tensor(lengths[i:i + batch_size].astype(np.int64), device=device)
        inp, tgt, mask = shift_tokens(t, ln, max_len)
        with gpt_precision(device, precision):
            logits = model(inp, mask)
        total += float(next_token_loss(logits, tgt, mask, include_padding)) * len(t)
        n += len(t)
    model.train()
    return float(all_reduce_mean(torch.tensor(total / max(n, 1), device=device)))


def train(cfg: dict, out: Path) -> None:
    """Train into `out` (opened by start_run: config.yaml saved, not done yet); resumes from out/checkpoint.pt."""
    dist = init_distributed(cfg["device"])
    seed_everything(cfg["seed"] + dist.rank)
    tc = cfg["train"]
    gpt_precision("cpu", tc["precision"], "train.precision")  # a bad value fails before the data is read
    num_codes = num_codes_of(cfg["tokens_dir"])
    train_split, val_split = load_split(cfg["tokens_dir"], "train"), load_split(cfg["tokens_dir"], "val")
    # top and QCD in equal numbers, the same sequences at every validation (the split is stored class after class)
    val_pick = balanced_subset(val_split["labels"], tc["val_batches"] * tc["batch_size"] // dist.world_size)
    val_tokens, val_lengths = val_split["tokens"][val_pick], val_split["lengths"][val_pick]
    # OJ keeps pT order and the first 128 constituents; assert the writer's convention once (start token first)
    if (train_split["tokens"][:, 0] != 0).any():
        raise ValueError(f"{cfg['tokens_dir']}: train sequences must start with the start token 0")
    per_rank = tc["batch_size"] // dist.world_size
    batches = TokenBatches(train_split["tokens"], train_split["lengths"], per_rank, cfg["seed"], dist.rank,
                           dist.world_size)

    model = build_gpt(cfg["model"], num_codes).to(dist.device)
    optimizer = build_optimizer(model.parameters(), {"lr": tc["lr"], "weight_decay": tc["weight_decay"]})
    # OJ: ConstantLR(total_iters=1) stepped per epoch -> the first epoch at lr x 1/3 (torch default factor; OJ
    # example_experiment_generative.yaml)
    scheduler = build_scheduler(optimizer, tc["schedule"])
    step, best, bad_evals = 0, float("inf"), 0
    if (out / "checkpoint.pt").is_file():
        ckpt = load_checkpoint(out / "checkpoint.pt")
        step = restore_state(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, loader=batches)
        best, bad_evals = ckpt["best_val"], ckpt["bad_evals"]
    ddp_model = maybe_compile(wrap_ddp(model, dist), cfg["compile"])
    logger = MetricLogger(out, enabled=dist.is_main)
    logger.truncate_after(step)  # a resumed run logs each step once

    def state():
        return make_state(model=model, step=step, optimizer=optimizer, scheduler=scheduler, config=cfg,
                          loader=batches, num_codes=num_codes, best_val=best, bad_evals=bad_evals)

    bar = progress(tc["max_steps"], "omnijet pretrain", dist.is_main, initial=step)
    model.train()
    stop = False
    while step < tc["max_steps"] and not stop:
        tokens, lengths = next(batches)
        inp, tgt, mask = shift_tokens(tokens.to(dist.device), lengths.to(dist.device), tc["max_len"])
        with gpt_precision(dist.device, tc["precision"], "train.precision"):
            logits = ddp_model(inp, mask)
        loss = next_token_loss(logits, tgt, mask, tc["include_padding_in_loss"])
        loss.backward()
        clip_and_step(model, optimizer, scheduler, tc["grad_clip"])
        step += 1
        bar.update(jets=tc["batch_size"], loss=loss.item())
        if step % tc["log_every"] == 0:
            logger.log(step, loss=float(all_reduce_mean(loss.detach())), lr=scheduler.get_last_lr()[0])
        if step % tc["val_every"] == 0 or step == tc["max_steps"]:
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
        if step % tc["checkpoint_every"] == 0 and dist.is_main:
            save_checkpoint(out / "checkpoint.pt", state())
    bar.close()
    if dist.is_main:
        save_checkpoint(out / "checkpoint.pt", state())
        mark_done(out, {"steps": step, "best_val_loss": best, "early_stopped": stop,
                        "jets_seen": step * tc["batch_size"], "num_codes": num_codes})
    cleanup()


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is not None:
        train(run.cfg, run.out)


if __name__ == "__main__":
    main()
