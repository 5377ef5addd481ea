"""common.training.train_utils and common.training.logger; also home of the tiny fake loader / model used by the other test_train_* files
(imported as `from test_train_utils import ...`)."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from common.data.batch import JetBatch
from common.training.config import ConfigError, load_config
from common.training.logger import MetricLogger, read_log
from common.training.train_utils import (accumulate, autocast, build_optimizer, clip_and_step, count_parameters,
                                         is_done, mark_done, micro_batches, param_groups, progress, seed_everything,
                                         start_run)


class FakeJetLoader:
    """In-memory stand-in for make_loader: JetBatch batches, order a function of (seed, epoch), strided rank shards."""

    def __init__(self, n_jets=40, batch_size=8, n_particles=6, n_features=3, n_classes=2, seed=0, shuffle=True,
                 rank=0, world_size=1, data_seed=123, drop_last=True, labels=None, class_offset=1.5):
        g = torch.Generator().manual_seed(data_seed)
        self.label = torch.randint(0, n_classes, (n_jets,), generator=g) if labels is None else labels
        self.x = torch.randn(n_jets, n_particles, n_features, generator=g) + class_offset * self.label[:, None, None]
        n_real = torch.randint(2, n_particles + 1, (n_jets,), generator=g)
        self.mask = torch.arange(n_particles)[None, :] < n_real[:, None]
        self.x = self.x * self.mask[..., None]
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _indices(self):
        n = len(self.label)
        if self.shuffle:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        else:
            idx = torch.arange(n)
        return idx[self.rank::self.world_size]

    def __len__(self):
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        idx = self._indices()
        for b in range(len(self)):
            i = idx[b * self.batch_size:(b + 1) * self.batch_size]
            B, N = len(i), self.x.shape[1]
            yield JetBatch(x=self.x[i], mask=self.mask[i], p4=torch.zeros(B, N, 4), jet=torch.zeros(B, 6),
                           label=self.label[i])


class TinyNet(nn.Module):
    """Per-particle MLP with dropout, masked mean, linear classifier."""

    def __init__(self, n_features=3, dim=16, n_classes=2, dropout=0.2):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(n_features, dim), nn.GELU(), nn.Dropout(dropout), nn.LayerNorm(dim))
        self.out = nn.Linear(dim, n_classes)

    def forward(self, batch):
        h = self.embed(batch.x)
        m = batch.mask[..., None].float()
        return self.out((h * m).sum(1) / m.sum(1).clamp(min=1))


def loss_fn(model, batch):
    return nn.functional.cross_entropy(model(batch), batch.label)


# ---------------------------------------------------------------------------------------------------------------------

def test_param_groups_split_decay():
    model = TinyNet()
    model.cls_token = nn.Parameter(torch.zeros(1, 1, 16))
    groups = param_groups(model, 0.1)
    decay = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert id(model.embed[0].weight) in decay and id(model.out.weight) in decay
    assert id(model.embed[0].bias) not in decay and id(model.embed[3].weight) not in decay
    assert id(model.cls_token) not in decay
    opt = build_optimizer(model, {"lr": 1e-3, "weight_decay": 0.1, "betas": [0.9, 0.95]})
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_accumulation_equals_full_batch():
    torch.manual_seed(0)
    a = TinyNet(dropout=0.0)
    b = TinyNet(dropout=0.0)
    b.load_state_dict(a.state_dict())
    batch = next(iter(FakeJetLoader(batch_size=10)))
    loss_fn(a, batch).backward()
    loss, _ = accumulate(b, batch, 3, lambda mb: (loss_fn(b, mb), {}))
    assert float(loss) == pytest.approx(float(loss_fn(a, batch).detach()), rel=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-7)


def test_clip_and_step_clips_and_zeroes():
    model = TinyNet(dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    before = [p.detach().clone() for p in model.parameters()]
    norm = clip_and_step(model, opt, max_norm=1.0)
    assert norm == pytest.approx(10.0 * count_parameters(model) ** 0.5, rel=1e-5)
    moved = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    assert moved.norm().item() == pytest.approx(1.0, rel=1e-4)  # SGD lr 1 moves by the clipped gradient
    assert all(p.grad is None for p in model.parameters())


def test_autocast_noop_on_cpu_and_seed():
    with autocast("cpu"):
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16), autocast("cpu", "fp32"):  # fp32 switches an outer autocast off
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    with pytest.raises(ValueError, match="train.precision = 'half'"):
        autocast("cpu", "half", "train.precision")
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_count_parameters():
    m = nn.Linear(3, 4)
    assert count_parameters(m) == 16
    m.bias.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == 12


def test_done_marker(tmp_path):
    assert not is_done(tmp_path)
    mark_done(tmp_path, {"step": 5, "acc": np.float32(0.5)})
    assert is_done(tmp_path)
    info = json.loads((tmp_path / "done.json").read_text())
    assert info["step"] == 5 and info["acc"] == 0.5


def _run_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\ntrain:\n  lr: 0.001\n  steps: 10\n")
    return path


def test_start_run_saves_resolved_config(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "runs" / "a"
    run = start_run("test", ["--config", str(_run_config(tmp_path)), "--out", str(out), "train.steps=3"])
    assert run is not None
    cfg, run_out, config_path = run
    assert run_out == out and config_path == str(tmp_path / "run.yaml")
    assert cfg == {"seed": 1, "train": {"lr": 0.001, "steps": 3}}
    assert load_config(out / "config.yaml") == cfg


def test_start_run_save_false_and_nonzero_rank_write_nothing(tmp_path, monkeypatch):
    args = ["--config", str(_run_config(tmp_path))]
    out = tmp_path / "b"
    assert start_run("test", args + ["--out", str(out)], save=False) is not None
    assert not out.exists()  # save=False: the caller creates the directory and saves (after validating)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert start_run("test", args + ["--out", str(out)]).cfg["seed"] == 1
    assert out.is_dir() and not (out / "config.yaml").exists()  # only rank 0 writes config.yaml


def test_start_run_done_returns_none(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "c"
    mark_done(out)
    assert start_run("test", ["--config", str(_run_config(tmp_path)), "--out", str(out)]) is None
    assert capsys.readouterr().out.strip() == f"{out}: done.json exists, nothing to do (--restart to redo it)"
    assert not (out / "config.yaml").exists()


def test_start_run_unknown_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="train.stpes"):
        start_run("test", ["--config", str(_run_config(tmp_path)), "--out", str(tmp_path / "d"), "train.stpes=3"])
    assert not (tmp_path / "d").exists()


def test_progress_disabled_is_silent(capsys):
    p = progress(3, "x", enabled=False)
    p.update(jets=100, loss=1.0)
    p.close()
    assert capsys.readouterr().err == "" and p.jets == 100


def test_metric_logger_jsonl_csv_and_truncate(tmp_path):
    log = MetricLogger(tmp_path, enabled=True, csv_file="log.csv")
    for s in range(5):
        log.log(s, loss=torch.tensor(1.0 / (s + 1)), lr=np.float64(1e-3))
    rows = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == list(range(5)) and rows[1]["loss"] == 0.5
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "step,loss,lr,time"
    log.truncate_after(2)
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [0, 1, 2]
    off = MetricLogger(tmp_path / "other", enabled=False)
    off.log(0, loss=1.0)
    assert not (tmp_path / "other").exists()


def test_set_torch_threads_from_env_and_rejects_bad_values(monkeypatch):
    from common.training.train_utils import set_torch_threads

    n0 = torch.get_num_threads()
    try:
        monkeypatch.setenv("JETFM_THREADS", "2")
        assert set_torch_threads() == 2 and torch.get_num_threads() == 2
        # the native libraries' OpenMP / BLAS pools (scikit-learn's gradient boosting) get the same cap
        from threadpoolctl import threadpool_info

        def pools():
            return {p["num_threads"] for p in threadpool_info() if p["internal_api"] in ("openmp", "openblas")}
        assert pools() == {2}
        monkeypatch.setenv("JETFM_THREADS", "1")
        assert set_torch_threads() == 1 and torch.get_num_threads() == 1
        assert pools() == {1}
        monkeypatch.delenv("JETFM_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert set_torch_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(10 * (os.cpu_count() or 1)))
        assert set_torch_threads() == 1  # cores shared among the node's processes, at least one
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv("JETFM_THREADS", bad)
            with pytest.raises(ValueError, match="JETFM_THREADS"):
                set_torch_threads()
    finally:
        torch.set_num_threads(n0)


def test_micro_batches_split_tuples_alike():
    tokens, lengths = torch.arange(10).reshape(5, 2), torch.arange(5)
    parts = micro_batches((tokens, lengths), 2)
    assert [len(p[0]) for p in parts] == [2, 3] and [len(p[1]) for p in parts] == [2, 3]
    assert torch.equal(torch.cat([p[0] for p in parts]), tokens) and torch.equal(parts[1][1], lengths[2:])
    with pytest.raises(ValueError, match="cannot split a batch of 5 into 6"):
        micro_batches(lengths, 6)
