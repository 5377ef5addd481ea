"""Atomic checkpoints and exact resume.

A checkpoint is one dict saved with torch.save to `path.tmp` and moved into place with os.replace, so a crash never
leaves a half-written `checkpoint.pt`. For a resume that continues bit-for-bit (on CPU) it holds:
model / optimiser / scheduler states, the step, the RNG states of python / numpy / torch / cuda (dropout, masking),
the config, and the data position (epoch, batches consumed in that epoch; see `ResumableLoader`).

    state = make_state(model=model, optimizer=opt, scheduler=sched, step=step, config=cfg, loader=train_iter)
    save_checkpoint(out / "checkpoint.pt", state)          # rank 0 only
    ...
    ckpt = load_checkpoint(out / "checkpoint.pt")
    step = restore_state(ckpt, model=model, optimizer=opt, scheduler=sched, loader=train_iter)
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_path
from common.distributed import unwrap_model


def save_checkpoint(path, state: dict) -> None:
    """torch.save `state` atomically (path.tmp, then os.replace)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by save_checkpoint (our own files: full unpickling, RNG states included)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated / corrupt file
        raise RuntimeError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e}); delete it to restart") from e


def rng_state() -> dict:
    """RNG states of python, numpy, torch (CPU) and every CUDA device."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(s: dict) -> None:
    """Restore the states captured by rng_state()."""
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"].cpu())
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in s["cuda"]])


def make_state(*, model, step: int, optimizer=None, scheduler=None, config: dict | None = None, loader=None,
               **extra) -> dict:
    """Collect everything a resume needs. `model` may be DDP/compiled (unwrapped here); `loader` is a
    ResumableLoader (or anything with state_dict()); `extra` holds other objects with state_dict() (e.g. ema=EMA,
    scaler=GradScaler) or plain values."""
    state = {
        "model": unwrap_model(model).state_dict(),
        "step": int(step),
        "rng": rng_state(),
        "config": config,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if loader is not None:
        state["loader"] = loader.state_dict()
    for k, v in extra.items():
        state[k] = unwrap_model(v).state_dict() if hasattr(v, "state_dict") else v
    return state


def restore_state(ckpt: dict, *, model, optimizer=None, scheduler=None, loader=None, rng: bool = True,
                  **modules) -> int:
    """Load states saved by make_state into the given objects (and keyword objects with load_state_dict, e.g.
    ema=EMA); restore the RNG last so nothing done here consumes random numbers afterwards.
    Returns the step to continue from."""
    unwrap_model(model).load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if loader is not None:
        loader.load_state_dict(ckpt["loader"])
    for k, m in modules.items():
        unwrap_model(m).load_state_dict(ckpt[k])
    if rng:
        set_rng_state(ckpt["rng"])
    return int(ckpt["step"])


def _set_epoch(loader, epoch: int) -> None:
    """Tell a loader which epoch starts (reshuffle by seed + epoch): calls set_epoch on the loader itself or on its
    sampler / batch sampler / dataset, whichever has it (common.data.make_loader: the sampler)."""
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None), getattr(loader, "dataset", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


class ResumableLoader:
    """Endless iteration over a DataLoader that remembers (epoch, batches consumed) for exact resume.

    Each epoch calls set_epoch(loader, epoch) first, so the order must depend only on (seed, epoch), as make_loader's
    does. The iterator is created (and, on resume, the consumed batches are skipped) inside torch.random.fork_rng,
    so starting or resuming an epoch never draws from the global torch RNG that dropout and masking use.
    Skipping re-reads the skipped batches: simple and correct for any loader.
    """

    def __init__(self, loader, epoch: int = 0):
        self.loader = loader
        self.epoch = epoch
        self.position = 0  # batches of the current epoch already handed out
        self._it = None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, s: dict) -> None:
        self.epoch, self.position = int(s["epoch"]), int(s["position"])
        self._it = None

    def _start(self) -> None:
        with torch.random.fork_rng(devices=[]):
            _set_epoch(self.loader, self.epoch)
            self._it = iter(self.loader)
            for _ in range(self.position):
                next(self._it)

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._it is None:
                self._start()
            try:
                with torch.random.fork_rng(devices=[]):
                    batch = next(self._it)
            except StopIteration:
                if self.position == 0:
                    raise RuntimeError("the training loader yields no batches (empty split or batch larger than data "
                                       "with drop_last)")
                self.epoch += 1
                self.position = 0
                self._it = None
                continue
            self.position += 1
            return batch
