"""bench/bench_train.py keeps working: one paper-size config, one optimiser step at a tiny batch."""
import torch

from bench.bench_train import bench_config, format_table, synthetic_tokens


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
