"""Hand-written DDP plumbing: torchrun detection, process groups, all-reduce of metrics, rank-0 helpers.

Run with `torchrun --nproc_per_node=K -m <method>.pretrain ...` for K processes (NCCL on CUDA, gloo on CPU), or plainly
with `python -m ...` for one process (no process group). The global batch is `batch_size x world_size` unless a
script divides it; every rank reads its own shard of the data (make_loader(..., rank, world_size)).
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    is_main: bool = True

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _pick_device(local_rank: int, device: str | None) -> torch.device:
    if device is not None and device != "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"config: device = {device!r} but CUDA is not available here (no GPU, or torch "
                             f"{torch.__version__} built without CUDA); use device=auto or device=cpu")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: str | None = None, backend: str | None = None) -> Dist:
    """Start the process group when launched by torchrun (RANK/WORLD_SIZE set), else a single-process Dist.

    device: "auto"/None = cuda:local_rank when CUDA is available, otherwise cpu; or an explicit "cpu"/"cuda".
    backend: None = nccl on CUDA, gloo on CPU.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        if tdist.is_available() and tdist.is_initialized():  # a group started by the caller (tests, notebooks)
            rank, world = tdist.get_rank(), tdist.get_world_size()
            local = int(os.environ.get("LOCAL_RANK", rank))
            dev = _pick_device(local, device)
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            return Dist(rank, world, local, dev, rank == 0)
        return Dist(0, 1, 0, _pick_device(0, device), True)
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = _pick_device(local, device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"),
                                 rank=rank, world_size=world,
                                 device_id=dev if dev.type == "cuda" else None)
    return Dist(rank, world, local, dev, rank == 0)


def is_dist() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def get_rank() -> int:
    return tdist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return tdist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def all_reduce_mean(x):
    """Mean over ranks of a tensor (returns a new tensor) or a Python number (returns a float). No-op on one process."""
    if not is_dist():
        return x if isinstance(x, torch.Tensor) else float(x)
    if isinstance(x, torch.Tensor):
        t = x.detach().clone()
    else:
        t = torch.tensor(float(x), dtype=torch.float64)
    if tdist.get_backend() == "nccl":
        t = t.cuda()
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    t = t / tdist.get_world_size()
    if isinstance(x, torch.Tensor):
        return t.to(x.device)
    return float(t)


def all_reduce_sum(x):
    """Sum over ranks of a tensor or a Python number (for counts, e.g. correct predictions)."""
    if not is_dist():
        return x if isinstance(x, torch.Tensor) else x
    t = x.detach().clone() if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)
    dev = t.device
    if tdist.get_backend() == "nccl":
        t = t.cuda()
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t.to(dev) if isinstance(x, torch.Tensor) else t.item()


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor along dim 0 across ranks (rows may differ in number per rank). No-op on one process."""
    if not is_dist():
        return x
    dev = x.device
    nccl = tdist.get_backend() == "nccl"
    comm_dev = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    xs = x.detach().to(comm_dev)
    n = torch.tensor([xs.shape[0]], device=comm_dev)
    sizes = [torch.zeros_like(n) for _ in range(tdist.get_world_size())]
    tdist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    pad = torch.zeros((max(sizes),) + tuple(xs.shape[1:]), dtype=xs.dtype, device=comm_dev)
    pad[: xs.shape[0]] = xs
    out = [torch.zeros_like(pad) for _ in sizes]
    tdist.all_gather(out, pad)
    return torch.cat([o[:s] for o, s in zip(out, sizes)]).to(dev)


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from rank `src` to every rank."""
    if not is_dist():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if is_dist():
        tdist.barrier()


def cleanup() -> None:
    """Destroy the process group (call at the end of a torchrun script).

    DDP wrappers left in reference cycles hold the group's gloo threads; freed only at interpreter shutdown, they abort
    the process ("terminate called without an active exception", SIGABRT, after the script's last line). So collect
    them first, and let every rank reach the barrier before any rank tears its end down."""
    if tdist.is_available() and tdist.is_initialized():
        gc.collect()
        if tdist.get_world_size() > 1:
            tdist.barrier()
        tdist.destroy_process_group()
        gc.collect()


def wrap_ddp(model: torch.nn.Module, dist: Dist, **kw) -> torch.nn.Module:
    """DistributedDataParallel when world_size > 1, else the model itself."""
    if not dist.enabled:
        return model
    if dist.device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[dist.device.index], **kw)
    return DistributedDataParallel(model, **kw)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers (use it for state_dict and attribute access)."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
