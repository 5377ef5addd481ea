"""What a hostile (or unlucky) user tries: shared files that would run code, folders the kit did not make, two
writers, stray result files, degenerate data and config values. Each case ends in one clear error, never in damage."""
import os
import pickle

import numpy as np
import pytest
import torch

from common.checkpoint import (UnsafeCheckpointError, load_checkpoint, make_state, restore_state, rng_state,
                               save_checkpoint, set_rng_state)


class _WritesAFile:
    """Unpickling this runs a command (here: creates a file) — what a malicious shared checkpoint would carry."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


# ------------------------------------------------------------------------------------------- 1. no code on load
def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "step": 0, "config": {}, "extra": _WritesAFile(target)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"checkpoint\.pt: refused.*system"):
        load_checkpoint(path)
    assert not target.exists()


def test_checkpoint_refusal_is_one_line_at_the_command_line(tmp_path, capsys):
    """An entry point given such a file ends in `error: <file>: refused ...` with exit 2 (common.cli)."""
    from common.cli import cli
    target = tmp_path / "pwned"
    torch.save({"x": _WritesAFile(target)}, tmp_path / "c.pt")
    with pytest.raises(SystemExit) as e:
        cli(lambda argv: load_checkpoint(tmp_path / "c.pt"), [])
    assert e.value.code == 2 and "refused" in capsys.readouterr().err and not target.exists()


def test_kit_checkpoint_round_trips_with_weights_only(tmp_path):
    import random
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", make_state(model=model, optimizer=opt, step=5, config={"a": {"b": [1, 2.5]}},
                                                  result={"auc": np.float64(0.5), "cm": np.eye(2)}))
    expect = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)     # plain torch, strict mode: loads
    assert ckpt["config"] == {"a": {"b": [1, 2.5]}} and ckpt["result"]["auc"] == 0.5
    assert restore_state(ckpt, model=model, optimizer=opt) == 5
    assert (random.random(), np.random.rand(), torch.rand(1)) == expect


def test_rng_state_is_plain():
    s = rng_state()
    assert isinstance(s["numpy"]["keys"], torch.Tensor) and isinstance(s["python"], list)
    a = np.random.rand(3)
    set_rng_state(s)
    assert (np.random.rand(3) == a).all()


def test_quantile_cache_is_not_a_pickle(tmp_path):
    from common import data as data_mod
    from tests.data_factory import write_jetclass
    root = tmp_path / "jc"
    write_jetclass(str(root / "train"), 20, seed=1)
    cfg = dict(dataset="jetclass", root=str(root), train="train/*.root", val="train/*.root", test="train/*.root",
               features="mpmv2", num_particles=16, classes=["QCD", "Hbb"], cache_dir=None, num_workers=0)
    qt, key = data_mod._mpmv2_state(cfg)
    files = os.listdir(root / ".cache")
    assert any(f.endswith(".npz") and "mpmv2_quantiles" in f for f in files)
    assert not any(f.endswith(".pkl") for f in files)
    # the reloaded transformer transforms exactly as the freshly fitted one
    fresh = data_mod._fit_mpmv2(cfg, data_mod.resolve_files(cfg, "train"), data_mod._feature_set(cfg))
    x = np.random.default_rng(0).normal(size=(50, 7))
    np.testing.assert_allclose(qt.transform(x), fresh.transform(x))
    with np.load(root / ".cache" / f"mpmv2_quantiles.{key}.npz", allow_pickle=False) as z:
        assert set(z.files) == {"quantiles", "references"}


# ------------------------------------------------------------------------------------------- 2. --restart
def _run_config(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text("seed: 1\ntrain:\n  lr: 0.001\n  steps: 3\n")
    return str(p)


def test_restart_refuses_a_folder_the_kit_did_not_make(tmp_path, monkeypatch):
    from common.config import ConfigError
    from common.train_utils import start_run
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "thesis.tex").write_text("years of work")
    (out / "data" / "important.npz").write_bytes(b"x")
    (out / "config.yaml").write_text("seed: 1\ntrain:\n  lr: 0.001\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"--restart refused: the folder has no valid \.jetfm-run marker"):
        start_run("t", ["--config", _run_config(tmp_path), "--out", str(out), "--restart"])
    assert (out / "thesis.tex").read_text() == "years of work" and (out / "data" / "important.npz").exists()


def test_restart_deletes_only_what_the_run_wrote(tmp_path, monkeypatch):
    from common.config import ConfigError
    from common.train_utils import mark_done, start_run
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "run"
    (out / "data").mkdir(parents=True)
    (out / "thesis.tex").write_text("mine")                      # there before the run: kept
    (out / "data" / "important.npz").write_bytes(b"x")
    argv = ["--config", _run_config(tmp_path), "--out", str(out)]
    assert start_run("t", argv) is not None
    (out / "seed0").mkdir()
    (out / "seed0" / "result.json").write_text("{}")              # a sub-run the kit made
    (out / "checkpoint.pt").write_bytes(b"x")
    mark_done(out)
    assert start_run("t", argv + ["--restart"]) is not None
    assert sorted(p.name for p in out.iterdir()) == [".jetfm-lock", ".jetfm-run", "config.yaml", "data", "thesis.tex"]
    assert (out / "data" / "important.npz").exists()
    # a foreign file that appeared inside the run folder later: refused, nothing deleted
    (out / "notes.tex").write_text("mine too")
    mark_done(out)
    with pytest.raises(ConfigError, match=r"notes\.tex was not written by the kit"):
        start_run("t", argv + ["--restart"])
    assert (out / "notes.tex").exists() and (out / "done.json").exists()


# ------------------------------------------------------------------------------------------- 4. two writers
def test_second_writer_of_one_run_is_refused_naming_the_holder(tmp_path, monkeypatch):
    import subprocess
    import sys
    from common.config import ConfigError
    from common.train_utils import start_run
    monkeypatch.delenv("RANK", raising=False)
    out, cfg = tmp_path / "run", _run_config(tmp_path)
    code = ("import sys, time; from common.train_utils import start_run; "
            f"start_run('t', ['--config', {cfg!r}, '--out', {str(out)!r}]); print('ready', flush=True); time.sleep(60)")
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert first.stdout.readline().strip() == "ready"
        with pytest.raises(ConfigError, match=rf"another process is writing this run \(pid {first.pid} on host "):
            start_run("t", ["--config", cfg, "--out", str(out)])
    finally:
        first.kill()
        first.wait()
    assert start_run("t", ["--config", cfg, "--out", str(out)]) is not None   # the holder is gone: free again
