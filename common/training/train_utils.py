"""Small pieces every training loop uses: autocast, AdamW with decay groups, gradient accumulation under DDP,
clipping, tqdm with jets/s, seeding, optional torch.compile, parameter counts, the done.json marker and the shared
opening of every entry-point script (`start_run`)."""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from common.atomic import MANIFEST, RUN_MARKER, forget_run, read_manifest, write_json
from common.training.config import ConfigError, add_config_args, config_diff, load_config, save_config
from common.training.distributed import get_rank

# ---------------------------------------------------------------------------------------------------------------------
# precision

PRECISIONS = ("bf16", "fp32")


def autocast(device, precision: str = "bf16", key: str = "precision"):
    """The context a model runs in, from the config's `precision`: "bf16" = bf16 autocast on CUDA (a no-op on CPU,
    which stays fp32: CPU bf16 is slow and changes numerics); "fp32" = autocast off, also inside an outer autocast.
    `key` names the config key in the error for any other value."""
    if precision not in PRECISIONS:
        raise ValueError(f"config: {key} = {precision!r}; expected one of {', '.join(PRECISIONS)}")
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if precision == "fp32":
        return torch.autocast(device_type=dev.type, enabled=False)
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------------------------
# optimiser

# Parameters whose names contain one of these are never weight-decayed (learned tokens / embeddings of positions).
NO_DECAY_KEYWORDS = ("cls_token", "class_token", "register", "mask_token", "pos_embed", "codebook")


def param_groups(model: torch.nn.Module, weight_decay: float, no_decay_keywords=NO_DECAY_KEYWORDS,
                 lr: float | None = None) -> list[dict]:
    """Two AdamW groups: matrices decay; biases, norm gains (ndim < 2) and learned tokens do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or any(k in name for k in no_decay_keywords):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if lr is not None:
        for g in groups:
            g["lr"] = lr
    return [g for g in groups if g["params"]]


def build_optimizer(params_or_groups, cfg: dict) -> torch.optim.AdamW:
    """AdamW from cfg {lr, weight_decay, betas=(0.9, 0.999), eps=1e-8}.

    params_or_groups: an nn.Module (split into decay / no-decay groups), an iterable of parameters, or a list of
    param-group dicts (groups without their own weight_decay get cfg's)."""
    lr = float(cfg["lr"])
    wd = float(cfg.get("weight_decay", 0.0))
    betas = tuple(float(b) for b in cfg.get("betas", (0.9, 0.999)))
    eps = float(cfg.get("eps", 1e-8))
    if isinstance(params_or_groups, torch.nn.Module):
        groups = param_groups(params_or_groups, wd)
    else:
        groups = list(params_or_groups)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=wd, betas=betas, eps=eps)


# ---------------------------------------------------------------------------------------------------------------------
# gradient accumulation and stepping

def no_sync(model: torch.nn.Module, skip_sync: bool):
    """DDP's no_sync() when `skip_sync` (non-final micro-steps of an accumulation), else a no-op context."""
    if skip_sync and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def micro_batches(batch, n: int) -> list:
    """Split a JetBatch, a tensor or a tuple of them (split alike) into `n` consecutive micro-batches of near-equal
    size."""
    if isinstance(batch, tuple):
        return list(zip(*(micro_batches(b, n) for b in batch)))
    size = len(batch)
    if n < 1 or n > size:
        raise ValueError(f"cannot split a batch of {size} into {n} micro-batches")
    edges = [round(i * size / n) for i in range(n + 1)]
    return [batch[edges[i]: edges[i + 1]] for i in range(n)]


def micro_batch_size(batch_size: int, world_size: int, grad_accum: int, section: str = "train") -> int:
    """Jets per process and micro-batch: `batch_size` is the global batch = micro x world_size x grad_accum."""
    if not isinstance(grad_accum, int) or grad_accum < 1:
        raise ValueError(f"config: {section}.grad_accum must be an integer >= 1 (got {grad_accum!r})")
    micro = batch_size // (world_size * grad_accum)
    if micro < 1 or micro * world_size * grad_accum != batch_size:
        raise ValueError(f"config: {section}.batch_size = {batch_size} must be divisible by world_size = {world_size} "
                         f"x {section}.grad_accum = {grad_accum}")
    return micro


def accumulate(model: torch.nn.Module, batch, grad_accum: int, loss_fn) -> tuple[torch.Tensor, dict]:
    """Backward over `grad_accum` micro-batches of `batch`, synchronising DDP gradients on the last one only.

    loss_fn(micro_batch) -> (loss, metrics dict). Each micro loss is weighted by its share of jets, so the
    accumulated gradient is that of the mean loss over the batch. Returns the batch's (loss, metrics), detached and
    weighted alike (tensors on the device: nothing leaves it here)."""
    parts = micro_batches(batch, grad_accum) if grad_accum > 1 else [batch]
    total = sum(len(p[0] if isinstance(p, tuple) else p) for p in parts)
    loss_sum, metric_sum = 0.0, {}
    for i, part in enumerate(parts):
        share = len(part[0] if isinstance(part, tuple) else part) / total
        with no_sync(model, i < len(parts) - 1):
            loss, metrics = loss_fn(part)
            (loss * share if len(parts) > 1 else loss).backward()
        loss_sum = loss_sum + loss.detach() * share
        for k, v in metrics.items():
            v = v.detach() if isinstance(v, torch.Tensor) else v
            metric_sum[k] = metric_sum.get(k, 0.0) + v * share
    return loss_sum, metric_sum


def clip_and_step(model_or_params, optimizer, scheduler=None, max_norm: float | None = None) -> float:
    """Clip the global grad norm (if max_norm), step optimiser and scheduler, zero the grads. Returns the pre-clip norm
    (nan when max_norm is None, so no extra reduction is paid)."""
    params = model_or_params.parameters() if isinstance(model_or_params, torch.nn.Module) else model_or_params
    params = [p for p in params if p.grad is not None]
    norm = float("nan")
    if max_norm is not None and max_norm > 0 and params:
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


# ---------------------------------------------------------------------------------------------------------------------
# progress, seeding, compile, bookkeeping

class Progress:
    """tqdm over steps that shows a jets/s rate. `update(jets=B, **postfix)` once per step. Disabled = silent."""

    def __init__(self, total: int, desc: str = "", enabled: bool = True, initial: int = 0):
        self.enabled = enabled
        self.jets = 0
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, initial=initial, dynamic_ncols=True, unit="step")

    def update(self, jets: int = 0, steps: int = 1, **postfix) -> None:
        self.jets += jets
        if self.bar is None:
            return
        rate = self.jets / max(time.perf_counter() - self.t0, 1e-9)
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}
        shown["jets/s"] = f"{rate:.0f}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(steps)

    @property
    def jets_per_second(self) -> float:
        return self.jets / max(time.perf_counter() - self.t0, 1e-9)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(total: int, desc: str = "", enabled: bool = True, initial: int = 0) -> Progress:
    """A Progress bar (tqdm on rank 0 with jets/s); pass enabled=dist.is_main."""
    return Progress(total, desc, enabled, initial)


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch and CUDA."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def maybe_compile(model: torch.nn.Module, flag: bool) -> torch.nn.Module:
    """torch.compile(model) when the config's `compile` flag is set; the model unchanged otherwise."""
    return torch.compile(model) if flag else model


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def mark_done(out_dir, info: dict | None = None) -> None:
    """Write out_dir/done.json atomically: the step finished (run_all skips it next time)."""
    write_json(Path(out_dir) / "done.json", {"done": True, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                              **(info or {})})
    held = _held_locks.pop(os.path.abspath(os.path.join(out_dir, RUN_LOCK)), None)
    if held is not None:   # the run is finished: release its lock (lock_dir)
        held.close()


def is_done(out_dir) -> bool:
    return (Path(out_dir) / "done.json").is_file()


# ---------------------------------------------------------------------------------------------------------------------
# the opening of every entry-point script

class RunStart(NamedTuple):
    cfg: dict          # the resolved config (base chain + overrides)
    out: Path          # the run's output directory (--out)
    config_path: str   # --config as given, for error messages


def launch_rank() -> int:
    """This process's rank before init_distributed: torchrun's RANK, else a process group the caller started, else 0
    (the same rule as common.training.distributed.init_distributed)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"])
    return get_rank()


THREADS_ENV = "JETFM_THREADS"  # torch intra-op threads per process; run_all.sh sets it per profile (--threads)


def set_torch_threads() -> int:
    """Set torch's intra-op thread count, and that of the native libraries' OpenMP / BLAS pools, deliberately and
    return it.

    $JETFM_THREADS if set, else $OMP_NUM_THREADS, else the machine's cores shared among the processes of this node
    (torchrun's LOCAL_WORLD_SIZE). On a loaded 2-core machine two intra-op threads made the small mini models 4-9x
    slower than one (bench/bench_train.py --profile mini --threads 1,2; BENCHMARKS.md), so run_all.sh passes 1 there."""
    raw = os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS")
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"${THREADS_ENV} / $OMP_NUM_THREADS must be an integer >= 1, got {raw!r}")
    else:
        n = max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    torch.set_num_threads(n)
    # the same cap for the OpenMP / BLAS pools of native libraries: scikit-learn's gradient boosting (the floor) spun
    # on two OpenMP threads beside a training step and took over 10 minutes for a fit of one second (BENCHMARKS.md)
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n)
    return n


RUN_LOCK = ".jetfm-lock"     # flock'ed by the one process writing the run
_held_locks: dict[str, object] = {}   # path -> open file holding its flock, for the life of the process


def lock_dir(directory, what: str = "run") -> None:
    """Take an exclusive lock (fcntl.flock, held until the process exits) on `directory`/.jetfm-lock, recording this
    process's pid and host in it; a second writer is refused with a ConfigError naming the holder."""
    import fcntl
    import socket

    path = os.path.abspath(os.path.join(directory, RUN_LOCK))
    if path in _held_locks:
        return
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ConfigError(f"{directory}: another process is writing this {what} ({holder}); wait for it to end or "
                          "use another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
    f.flush()
    _held_locks[path] = f


def _write_marker(out: Path, threads: int) -> None:
    """The run marker: what the folder held before the run started (never deleted by --restart), and the torch
    thread count the run started with (a bit-exact resume needs the same). Files the run writes are recorded beside
    it in the manifest (.jetfm-written, common.atomic.record_written)."""
    before = sorted(p.name for p in out.iterdir() if p.name not in (RUN_MARKER, RUN_LOCK, MANIFEST))
    write_json(out / RUN_MARKER, {"kit": "jetfm", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "preexisting": before,
                                  "manifest": MANIFEST, "threads": threads})


def _read_marker(out: Path) -> dict | None:
    import json
    try:
        marker = json.loads((out / RUN_MARKER).read_text())
        return marker if isinstance(marker, dict) and isinstance(marker.get("preexisting"), list) else None
    except (OSError, ValueError):
        return None


def clear_run(out: Path) -> list[str]:
    """--restart: delete what the kit wrote in `out`: exactly the files its manifest (and the manifests of sub-runs
    with their own marker) records, then the folders left empty; the markers and manifests go last. Refuses (nothing
    deleted) a folder without a valid marker (not made by the kit, or by a version without manifests) and a manifest
    naming a path outside the folder; keeps every file that was there before the run and every file the user saved in it since
    (notes.md, my_plots/fig.png, whatever their ending), naming them. Returns the deleted relative paths."""
    out = Path(out)
    marker = _read_marker(out)
    if marker is None or marker.get("manifest") != MANIFEST:
        raise ConfigError(f"{out}: --restart refused: the folder has no valid {RUN_MARKER} marker with a manifest of "
                          "the files the kit wrote, so it was not made by the kit (or by an older version of it); "
                          "nothing was deleted. Delete the run files yourself or use another --out")
    root = out.resolve()
    doomed: list[Path] = []
    for run in [out] + sorted(p.parent for p in out.rglob(RUN_MARKER) if p.parent != out):
        for rel in read_manifest(run) or ():
            f = (run / rel)
            try:
                inside = f.resolve().is_relative_to(root) and ".." not in Path(rel).parts and not Path(rel).is_absolute()
            except OSError:
                inside = False
            if not inside:   # a manifest edited to point outside the run: never followed
                raise ConfigError(f"{run / MANIFEST}: --restart refused: it names {rel!r}, outside the run folder "
                                  f"{out}; nothing was deleted")
            if (f.is_file() or f.is_symlink()) and f not in doomed:
                doomed.append(f)
    keep = set(marker["preexisting"])
    doomed = [f for f in doomed if f.relative_to(out).parts[0] not in keep]
    for f in doomed:
        f.unlink()
    gone = [str(f.relative_to(out)) for f in doomed]
    # folders the run made and left empty; then the sub-runs' markers and manifests if nothing else is left there
    for d in sorted((p for p in out.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        if d.relative_to(out).parts[0] in keep:
            continue
        left = [q for q in d.iterdir()]
        if all(q.name in (RUN_MARKER, MANIFEST, RUN_LOCK) for q in left):
            for q in left:
                q.unlink()
            d.rmdir()
            gone.append(str(d.relative_to(out)) + "/")
    (out / MANIFEST).unlink(missing_ok=True)
    forget_run(out)
    kept = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                  and p.relative_to(out).parts[0] not in keep and p.name not in (RUN_MARKER, RUN_LOCK, MANIFEST))
    if kept:
        print(f"{out}: --restart kept {len(kept)} file(s) the run did not write: {', '.join(kept[:5])}"
              f"{', ...' if len(kept) > 5 else ''}", flush=True)
    return sorted(gone)


def _read_saved_config(saved: Path) -> dict:
    """The config.yaml of an earlier run in the folder: a mapping, or a ConfigError naming it (one line)."""
    try:
        old = yaml.safe_load(saved.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{saved}: the earlier run's config is unreadable ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:120]}); rerun with --restart to start over, or use another "
                          "--out") from None
    if not isinstance(old, dict):
        raise ConfigError(f"{saved}: the earlier run's config is not a mapping of keys (got "
                          f"{type(old).__name__}); rerun with --restart to start over, or use another --out")
    return old


def _check_threads(out: Path, threads: int) -> None:
    """A resume with another torch thread count than the run started with is refused: CPU float reductions then sum
    in another order, and the run no longer continues bit for bit (README, exact resume)."""
    marker = _read_marker(out) or {}
    then = marker.get("threads")
    if isinstance(then, int) and then != threads:
        raise ConfigError(f"{out}: this run started with {then} torch thread(s), this process has {threads}; a resume "
                          f"is bit-exact only with the same count: rerun with JETFM_THREADS={then} (or "
                          "--restart to start over)")


def _shown(diff: list[str]) -> str:
    return "; ".join(diff[:8]) + ("; ..." if len(diff) > 8 else "")


def start_run(description: str, argv=None, *, save: bool = True) -> RunStart | None:
    """Parse `--config <yaml> --out <dir> [--restart] [a.b=value ...]` and load the config (common.training.config rules: an
    unknown key or a value of the wrong type is a ConfigError naming the file, the key and what was expected).

    With save=True, rank 0 creates <out> and takes its lock (lock_dir: a second process writing the same run is
    refused, naming the holder). An earlier run in <out>: finished (done.json) -> returns None, printing one line
    (rank 0), and the caller returns at once; unfinished -> it is resumed, but only if its config.yaml equals the
    resolved config, else a ConfigError names the differing keys (a resumed optimiser and schedule would not match the
    recorded config). `--restart` deletes what the earlier run wrote (clear_run: only in a folder the kit made,
    recognised by its .jetfm-run marker; the user's own files there are never deleted) and starts over.
    Otherwise, with save=True, writes the run marker (first start) and the resolved <out>/config.yaml (on rank 0
    only); save=False leaves all of it to the caller."""
    args = add_config_args(argparse.ArgumentParser(description=description)).parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    threads = set_torch_threads()
    out = Path(args.out)
    rank0 = launch_rank() == 0
    saved = out / "config.yaml"
    if save and rank0:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {out}: cannot create the run folder ({e.strerror})") from None
        lock_dir(out)
    if args.restart and (saved.is_file() or (out / RUN_MARKER).is_file()):
        if rank0:
            gone = clear_run(out)
            marker = _read_marker(out)
            write_json(out / RUN_MARKER, {**marker, "threads": threads})   # the new run's thread count
            print(f"{out}: --restart, the earlier run was deleted ({len(gone)} entries)", flush=True)
    elif is_done(out):
        diff = config_diff(_read_saved_config(saved), cfg) if saved.is_file() else []
        if diff:   # the finished run answers another question: never report it as this one's
            raise ConfigError(f"{saved}: the finished run there has another config ({_shown(diff)}); rerun with "
                              "--restart to redo it with this config, or use another --out")
        if rank0:
            print(f"{out}: done.json exists, nothing to do (--restart to redo it)", flush=True)
        return None
    elif saved.is_file():
        diff = config_diff(_read_saved_config(saved), cfg)
        if diff:
            raise ConfigError(f"{saved}: the unfinished run there has another config ({_shown(diff)}); rerun with "
                              "--restart to start over, or use another --out")
        _check_threads(out, threads)
    if save:
        out.mkdir(parents=True, exist_ok=True)
        if rank0:
            if not (out / RUN_MARKER).is_file() and not saved.is_file():
                _write_marker(out, threads)
            save_config(cfg, saved)
    return RunStart(cfg, out, args.config)
