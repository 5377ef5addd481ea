"""DDP on the CPU: two gloo processes with a global batch split in two (and accumulated over micro-batches) reach the
same parameters after K steps as one process that sees the whole global batch."""
import os

import pytest
import torch
import torch.distributed as tdist
from spawn import spawn_on_free_port
from test_train_utils import FakeJetLoader, TinyNet, loss_fn

from common.training.checkpoint import ResumableLoader
from common.training.distributed import (all_gather_cat, all_reduce_mean, all_reduce_sum, cleanup, init_distributed,
                                         unwrap_model, wrap_ddp)
from common.training.schedules import build_scheduler
from common.training.train_utils import accumulate, build_optimizer, clip_and_step, no_sync

GLOBAL_BATCH, STEPS = 12, 6  # 48 jets = 4 global batches per epoch, so the run crosses an epoch boundary


def _train(world: int, rank: int, accum: int) -> dict:
    dist = init_distributed(device="cpu")
    assert (dist.rank, dist.world_size, dist.is_main) == (rank, world, rank == 0)
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    net = wrap_ddp(model, dist)
    opt = build_optimizer(model, {"lr": 3e-2, "weight_decay": 0.01})
    sched = build_scheduler(opt, {"kind": "warmup_cosine", "warmup_steps": 2, "total_steps": STEPS})
    it = ResumableLoader(FakeJetLoader(n_jets=48, batch_size=GLOBAL_BATCH // world, seed=3, rank=dist.rank,
                                       world_size=dist.world_size))
    losses = []
    for _ in range(STEPS):
        batch = next(it)
        loss, _ = accumulate(net, batch, accum, lambda mb: (loss_fn(net, mb), {}))
        clip_and_step(net, opt, sched, max_norm=0.5)
        losses.append(all_reduce_mean(float(loss)))
    labels = all_gather_cat(batch.label)
    n = all_reduce_sum(len(batch))
    return {"params": {k: v.clone() for k, v in unwrap_model(net).state_dict().items()}, "losses": losses,
            "labels": labels, "n": n}


def _sync_check(rank: int) -> dict:
    """Gradients after a no_sync micro-step stay local (differ across ranks); after a synced one they agree."""
    torch.manual_seed(0)
    net = wrap_ddp(TinyNet(dropout=0.0), init_distributed(device="cpu"))
    batch = next(iter(FakeJetLoader(n_jets=16, batch_size=8, seed=1, rank=rank, world_size=2)))
    with no_sync(net, True):
        loss_fn(net, batch).backward()
    local = all_gather_cat(net.module.out.weight.grad[None])
    with no_sync(net, False):
        loss_fn(net, batch).backward()
    synced = all_gather_cat(net.module.out.weight.grad[None])
    return {"local_equal": torch.equal(local[0], local[1]), "synced_equal": torch.allclose(synced[0], synced[1])}


def _worker(rank: int, port: int, world: int, out: str, accum: int) -> None:
    # the environment torchrun gives each process; init_distributed starts the gloo group from it
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    init_distributed(device="cpu")
    assert tdist.is_initialized() and tdist.get_backend() == "gloo"
    try:
        res = _train(world, rank, accum)
        res["sync"] = _sync_check(rank)
        if rank == 0:
            torch.save(res, out)
    finally:
        cleanup()


@pytest.mark.network
def test_two_gloo_processes_match_one_process(tmp_path):
    single = _train(world=1, rank=0, accum=1)
    out = str(tmp_path / "ddp.pt")
    spawn_on_free_port(_worker, (2, out, 2))
    ddp = torch.load(out, weights_only=False)
    for name, p in single["params"].items():
        torch.testing.assert_close(ddp["params"][name], p, rtol=1e-5, atol=1e-6, msg=name)
    # the runs did move away from the initialisation, so equality above is not trivial
    torch.manual_seed(0)
    init = TinyNet(dropout=0.0).state_dict()
    assert not torch.allclose(init["out.weight"], single["params"]["out.weight"], atol=1e-3)
    # the all-reduced loss equals the single-process loss of the same global batch
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert ddp["n"] == GLOBAL_BATCH
    assert ddp["sync"] == {"local_equal": False, "synced_equal": True}  # no_sync skips the all-reduce
    assert sorted(ddp["labels"].tolist()) == sorted(single["labels"].tolist())


def test_single_process_helpers_are_noops(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    dist = init_distributed()
    assert dist.world_size == 1 and dist.is_main and not dist.enabled
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_mean(x), x) and all_reduce_mean(3) == 3.0 and all_gather_cat(x) is x
    m = TinyNet()
    assert wrap_ddp(m, dist) is m


def test_torchrun_env_with_one_process(monkeypatch):
    """torchrun --nproc_per_node=1 sets RANK/WORLD_SIZE=1: no process group is needed."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    dist = init_distributed(device="cpu")
    assert (dist.rank, dist.world_size, dist.is_main, dist.device.type) == (0, 1, True, "cpu")
    assert not tdist.is_initialized()
