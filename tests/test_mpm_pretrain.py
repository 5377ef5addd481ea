"""mpm.pretrain.fit: logs, checkpoints, done marker, and an interrupted run resumes bit-for-bit."""
from __future__ import annotations

import json

import pytest
import torch

from common.data.batch import JetBatch
from common.training.config import load_config
from common.training.distributed import Dist

from mpm.build import build_model
from mpm.loop import train as fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

OVER = ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.embed_hidden=16",
        "model.head_hidden=16", "data.num_particles=10", "device=cpu", "train.batch_size=4", "train.log_every=1",
        "train.ckpt_every=1", "train.schedule.warmup_steps=2"]


def batches(n=3, B=4, N=10):
    out = []
    for s in range(n):
        g = torch.Generator().manual_seed(s)
        mask = torch.arange(N)[None] < torch.randint(4, N + 1, (B, 1), generator=g)
        x = (torch.randn(B, 1, 3, generator=g) + 0.2 * torch.randn(B, N, 3, generator=g)) * mask[..., None]
        out.append(JetBatch(x, mask, torch.zeros(B, N, 4), torch.zeros(B, 6), torch.zeros(B, dtype=torch.long)))
    return out


def _run(out, steps):
    cfg = load_config("mpm/configs/smoke/mpmv1_regression.yaml", OVER + [f"train.steps={steps}"])
    torch.manual_seed(0)
    model = build_model(cfg)
    summary = fit(cfg, model, out, Dist(), loader=batches())
    return model, summary


def test_fit_writes_outputs_and_resumes_exactly(tmp_path):
    straight, s = _run(tmp_path / "a", 5)
    rows = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and all(r["loss"] > 0 for r in rows)
    assert (tmp_path / "a" / "done.json").is_file() and (tmp_path / "a" / "checkpoint.pt").is_file()

    _run(tmp_path / "b", 2)              # "interrupted" after 2 steps (checkpoint at step 2) ...
    torch.manual_seed(123)               # ... a fresh process with other RNG state ...
    resumed, _ = _run(tmp_path / "b", 5)  # ... resumes from the checkpoint and finishes
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    rows_b = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert rows_b == [1, 2, 3, 4, 5]


V2_OVER = ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.num_registers=2",
           "model.decoder.dim=8", "model.decoder.depth=1", "model.decoder.num_heads=2", "model.decoder.ff_hidden=8",
           "model.task_cfg.hidden=16", "model.task_cfg.context_dim=8", "data.num_particles=10", "device=cpu",
           "train.batch_size=4", "train.log_every=1", "train.ckpt_every=1", "train.schedule.warmup_steps=2"]


def v2_batches(n=3, B=4, N=10):
    out = []
    for b, s in zip(batches(n, B, N), range(n)):
        g = torch.Generator().manual_seed(100 + s)
        x = torch.cat([b.x, 0.5 * torch.randn(B, N, 4, generator=g)], -1) * b.mask[..., None]
        pid = torch.randint(0, 8, (B, N), generator=g) * b.mask
        out.append(JetBatch(x, b.mask, b.p4, b.jet, b.label, pid))
    return out


def _run_v2(config, out, steps):
    cfg = load_config(config, V2_OVER + [f"train.steps={steps}"])
    torch.manual_seed(0)
    model = build_model(cfg)
    return model, fit(cfg, model, out, Dist(), loader=v2_batches())


def test_mpmv2_cnf_smoke_config_trains_and_resumes_exactly(tmp_path):
    """The CNF task through the real loop (smoke config), including its training noise on resume."""
    straight, s = _run_v2("mpm/configs/smoke/mpmv2_cnf.yaml", tmp_path / "a", 4)
    rows = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and (tmp_path / "a" / "done.json").is_file()
    assert all(abs(r["task_loss"]) < 1e3 and r["task_loss"] != 0 for r in rows)
    _run_v2("mpm/configs/smoke/mpmv2_cnf.yaml", tmp_path / "b", 2)
    torch.manual_seed(123)
    resumed, _ = _run_v2("mpm/configs/smoke/mpmv2_cnf.yaml", tmp_path / "b", 4)
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
