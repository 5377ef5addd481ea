"""bench/bench_train.py keeps working: one paper-size config, one optimiser step at a tiny batch; and it times the
loops' own step functions (it writes no step of its own)."""
import ast
import importlib
from pathlib import Path

import pytest
import torch

from bench.bench_train import CONFIGS, FT_CONFIGS, bench_config, format_table, synthetic_tokens

# config -> the module whose train_step the pretraining loop of that config runs
LOOPS = {"mpm_tokenizer_v1": "mpm.loop", "mpmv1": "mpm.loop", "mpmv2": "mpm.loop",
         "omnijet_tokenizer": "omnijet.train_tokenizer", "omnijet_gpt": "omnijet.pretrain",
         "hepjepa": "hepjepa.pretrain"}


def test_bench_train_one_step_row():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = bench_config("hepjepa", steps=1, warmup=0, batch_size=4, device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert row["config"] == "hepjepa" and row["batch"] == 4 and row["steps"] == 1
    assert row["paper_batch"] == 2048 and row["params"] > 1_000_000
    assert row["jets_per_s"] > 0 and row["peak_mem_mb"] > 0
    assert "hepjepa" in format_table([row])


def test_synthetic_tokens_layout():
    g = torch.Generator().manual_seed(0)
    tokens, lengths = synthetic_tokens(6, 20, 10, g)
    assert tokens.shape == (6, 22)
    for t, n in zip(tokens, lengths):
        assert t[0] == 0 and t[n - 1] == 11 and (t[1:n - 1] >= 1).all() and (t[1:n - 1] <= 10).all()
        assert (t[n:] == 0).all()


def test_bench_train_mini_profile_builds_the_mini_config_at_its_own_batch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = bench_config("mpmv1", steps=1, warmup=0, device="cpu", profile="mini")
    finally:
        torch.set_num_threads(threads)
    assert row["file"] == "mpm/configs/mini/mpmv1.yaml"
    assert row["batch"] == row["paper_batch"]  # the mini config's own batch size, not the CPU default of 16
    assert row["params"] < 1_000_000 and row["threads"] == 1


def test_every_config_names_its_loop():
    assert set(LOOPS) == set(CONFIGS)


@pytest.mark.parametrize("name", ["hepjepa", "omnijet_tokenizer", "omnijet_gpt", "mpmv1"])
def test_bench_times_the_loops_own_step_function(name, monkeypatch):
    """Each timed (and warm-up) step is one call of the loop's train_step, and the loop itself calls that function."""
    module = importlib.import_module(LOOPS[name])
    real, calls = module.train_step, []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_step", counting)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bench_config(name, steps=2, warmup=1, device="cpu", profile="mini")
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 3
    loop = ast.parse(Path(module.__file__).read_text())
    train = next(f for f in loop.body if isinstance(f, ast.FunctionDef) and f.name == "train")
    assert any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "train_step" for n in ast.walk(train))


def test_bench_writes_no_step_of_its_own():
    src = Path("bench/bench_train.py").read_text()
    called = {getattr(n.func, "id", None) or getattr(n.func, "attr", None)
              for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call)}
    assert not called & {"accumulate", "clip_and_step", "backward", "update_target", "augment", "autocast"}


@pytest.mark.parametrize("mode", ["fixed_cached", "fixed", "finetune", "scratch"])
def test_finetune_rows_time_the_loops_step_and_the_cached_row_runs_no_backbone(mode, monkeypatch):
    """A fine-tuning row times common.training.finetune.train_step; with the cache the timed steps never run the
    backbone (its outputs come with the batch), without it every step does."""
    import common.training.finetune as ft

    from hepjepa.model import HEPJEPABackbone

    real, during, forwards = ft.train_step, [], []

    def counting(*a, **k):
        before = len(forwards)
        out = real(*a, **k)
        during.append(len(forwards) - before)
        return out

    monkeypatch.setattr(ft, "train_step", counting)
    orig = HEPJEPABackbone.forward
    monkeypatch.setattr(HEPJEPABackbone, "forward", lambda self, b: forwards.append(1) or orig(self, b))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = bench_config(f"ft_hepjepa_{mode}", steps=2, warmup=1, batch_size=4, device="cpu", profile="mini")
    finally:
        torch.set_num_threads(threads)
    assert row["batch"] == 4 and row["file"] == "hepjepa/configs/mini/finetune_jetclass.yaml"
    assert during == ([0, 0, 0] if mode == "fixed_cached" else [1, 1, 1])     # backbone forwards inside each step
    assert set(FT_CONFIGS) >= {f"ft_{m}_{mode}" for m in ("mpmv1", "mpmv2", "hepjepa")}
