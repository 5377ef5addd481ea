"""Atomic checkpoints and exact resume.

A checkpoint is one dict saved with torch.save to `path.tmp` and moved into place with os.replace, so a crash never
leaves a half-written `checkpoint.pt`. For a resume that continues bit-for-bit (on CPU) it holds:
model / optimiser / scheduler states, the step, the RNG states of python / numpy / torch / cuda (dropout, masking),
the config, and the data position (epoch, batches consumed in that epoch; see `ResumableLoader`).

A checkpoint holds only tensors, numbers, strings, None, lists, tuples and dicts (RNG states as tensors and lists,
numpy values converted on save), so it is read with torch.load(weights_only=True): a shared checkpoint carrying any
other object (whose unpickling could run code) is refused with one line naming the file, never unpickled.

    state = make_state(model=model, optimizer=opt, scheduler=sched, step=step, config=cfg, loader=train_iter)
    save_checkpoint(out / "checkpoint.pt", state)          # rank 0 only
    ...
    ckpt = load_checkpoint(out / "checkpoint.pt")
    step = restore_state(ckpt, model=model, optimizer=opt, scheduler=sched, loader=train_iter)
"""
from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from common.atomic import NoSpaceError, atomic_path
from common.training.distributed import unwrap_model


def _plain(obj):
    """`obj` with numpy arrays as tensors and numpy scalars as Python numbers (what weights_only loading accepts)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_checkpoint(path, state: dict) -> None:
    """torch.save `state` atomically (path.tmp, then os.replace); numpy values become tensors / numbers (_plain).
    A full disk is a NoSpaceError naming the file (torch reports it as an internal RuntimeError of its zip writer)."""
    with atomic_path(path) as tmp:
        try:
            torch.save(_plain(state), tmp)
        except RuntimeError as e:   # torch's zip writer: "unexpected pos ...", "file write failed", ...
            free = _free_bytes(Path(path).parent)
            if free is not None and free < LOW_SPACE:
                raise NoSpaceError(f"{path}: cannot write the checkpoint: no space left on the device "
                                   f"({free // 2**20} MiB free); free some space and rerun the same command "
                                   "(the previous checkpoint is intact)") from None
            raise CheckpointError(f"{path}: cannot write the checkpoint ({' '.join(str(e).split())[:200]}); check "
                                  "the disk and rerun the same command (the previous checkpoint is intact)") from None


LOW_SPACE = 64 * 2**20  # below this many free bytes a failed write is reported as a full disk


def _free_bytes(directory) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model: one line naming the file and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file that holds more than tensors and plain values: refused, never unpickled."""


LOADED_FROM = "_loaded_from"   # key load_checkpoint adds: the file, for errors of restore_state


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with torch.load(weights_only=True): tensors and plain values only, so loading a shared file
    never runs code. A file that needs any other object is refused (UnsafeCheckpointError, one line naming it); a
    truncated, empty or foreign file is a CheckpointError naming it."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    redo = (f"rerun with --restart to start {path.parent} over, or put back an intact copy of {path.name}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        what = re.search(r"GLOBAL ([\w.]+)|Unsupported global:? ?([\w.]*)", str(e))
        if what:  # weights_only refuses any global it does not allow: the object was never built
            raise UnsafeCheckpointError(
                f"{path}: refused: the checkpoint holds objects other than tensors and plain values "
                f"({what.group(1) or what.group(2) or 'a Python class'}); loading it could run code, so it is not "
                "loaded (a checkpoint written by this kit never does)") from None
        raise CheckpointError(f"{path}: cannot read the checkpoint (not a torch checkpoint, or corrupt); "
                              f"{redo}") from None
    except Exception as e:  # truncated / corrupt file
        size = path.stat().st_size
        raise CheckpointError(f"{path}: cannot read the checkpoint ({'empty file' if not size else f'{size} bytes, truncated or not a torch checkpoint'}: "
                              f"{type(e).__name__}: {' '.join(str(e).split())[:160]}); {redo}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint of this kit (a mapping with "
                              f"model, step, ...); {redo}")
    ckpt[LOADED_FROM] = str(path)
    return ckpt


UNFINISHED_ENV = "JETFM_ALLOW_UNFINISHED"


def require_finished(path, what: str = "weights") -> None:
    """Refuse to use the weights of a run that did not finish: `path` (a file in a run folder, or the folder) lies in
    a folder the kit made (config.yaml or .jetfm-run) that has no done.json, e.g. a pretraining killed at step 230
    of 600 whose checkpoint.pt holds the step-150 weights. The user may ask for them by naming the folder in
    $JETFM_ALLOW_UNFINISHED (os.pathsep-separated folders, or `all`). A checkpoint file outside a run folder (no
    config.yaml, no marker) is the user's explicit choice and is not checked."""
    path = Path(path)
    run = path if path.is_dir() else path.parent
    if not ((run / "config.yaml").is_file() or (run / ".jetfm-run").is_file()) or (run / "done.json").is_file():
        return
    allowed = [a for a in os.environ.get(UNFINISHED_ENV, "").split(os.pathsep) if a]
    if "all" in allowed or any(Path(a).resolve() == run.resolve() for a in allowed):
        print(f"warning: {run}: using the {what} of an unfinished run ({UNFINISHED_ENV})", flush=True)
        return
    step = ""
    try:
        step = f" (its {path.name} is from step {int(torch.load(path, map_location='cpu', weights_only=True)['step'])})" \
            if path.is_file() and path.suffix == ".pt" else ""
    except Exception:
        pass
    raise CheckpointError(f"{run}: this run did not finish (no done.json){step}; rerun its command to finish it, "
                          f"or set {UNFINISHED_ENV}={run} to use its {what} as they are")


def load_trained(path, what: str = "weights", map_location="cpu") -> dict:
    """load_checkpoint of the result of a finished run (require_finished first): what fine-tuning, probes and
    generation load."""
    require_finished(path, what)
    return load_checkpoint(path, map_location)


def rng_state() -> dict:
    """RNG states of python, numpy, torch (CPU) and every CUDA device, as tensors, numbers and lists (weights_only)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(s: dict) -> None:
    """Restore the states captured by rng_state()."""
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))
    n = s["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
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
    Returns the step to continue from. A checkpoint that does not fit (another model's, a bare state dict, a
    missing part) is a CheckpointError naming its file, not hundreds of parameter names."""
    where = ckpt.get(LOADED_FROM, "the checkpoint") if isinstance(ckpt, dict) else "the checkpoint"
    redo = f"rerun with --restart to start over (or use another --out)"
    parts = ["model", "step"] + (["optimizer"] if optimizer is not None else []) + \
        (["scheduler"] if scheduler is not None else []) + (["loader"] if loader is not None else []) + \
        list(modules) + (["rng"] if rng else [])
    missing = [k for k in parts if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{where}: not a resumable checkpoint of this run (no {', '.join(missing)}); {redo}")
    try:
        unwrap_model(model).load_state_dict(ckpt["model"])
        if optimizer is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if loader is not None:
            loader.load_state_dict(ckpt["loader"])
        for k, m in modules.items():
            unwrap_model(m).load_state_dict(ckpt[k])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"{where}: does not fit this run's model or optimiser ({_short(e)}); {redo}") from None
    if rng:
        set_rng_state(ckpt["rng"])
    return int(ckpt["step"])


def _short(e: Exception) -> str:
    """A load_state_dict error in a few words: counts of missing / unexpected keys and the first of each."""
    text = str(e)
    out = []
    for label in ("Missing key(s)", "Unexpected key(s)", "size mismatch"):
        i = text.find(label)
        if i >= 0:
            names = re.findall(r'"([^"]+)"', text[i:].split("\n")[0].split(". ")[0] if label != "size mismatch" else
                               text[i:].split("\n")[0])
            out.append(f"{label.lower()}: {len(names)}" + (f", e.g. {names[0]}" if names else ""))
    return "; ".join(out) or f"{type(e).__name__}: {' '.join(text.split())[:160]}"


def _set_epoch(loader, epoch: int) -> None:
    """Tell a loader which epoch starts (reshuffle by seed + epoch): calls set_epoch on the loader itself or on its
    sampler / batch sampler / dataset, whichever has it (common.data.datasets.make_loader: the sampler)."""
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
                    raise ValueError("the training loader yields no batches (empty split, or a batch larger than "
                                     "the data with drop_last); lower the batch size or use more jets")
                self.epoch += 1
                self.position = 0
                self._it = None
                continue
            self.position += 1
            return batch
