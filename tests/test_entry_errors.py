"""Configs that cannot lie (issue: typed checks at load time, honest resume) and entry points that end in one line."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.training.config import ConfigError, load_config
from common.training.train_utils import start_run

ROOT = Path(__file__).resolve().parents[1]
HEPJEPA = "hepjepa/configs/pretrain.yaml"


@pytest.mark.parametrize("override,expected", [
    ('model.physics_bias="no"', "model.physics_bias = 'no': expected true or false"),  # bool("no") was True
    ("train.steps=-5", "train.steps = -5: expected an integer >= 1"),  # exited 0 with no checkpoint
    ("train.steps=0", "train.steps = 0: expected an integer >= 1"),
    ("train.lr=abc", "train.lr = 'abc': expected a number > 0"),
    ("train.batch_size=thirty-two", "train.batch_size = 'thirty-two': expected an integer >= 1"),
    ('train.steps="20"', "train.steps = '20': expected an integer >= 1"),
    ("train.steps=", "train.steps = None: expected an integer >= 1"),
    ("train.batch_size=32.7", "train.batch_size = 32.7: expected an integer >= 1"),  # said "divisible by world_size"
    ("train.optimizer=0.001", "'train.optimizer' was renamed to train.lr"),
    ("device=gpu", "device = 'gpu': expected one of auto | cpu | cuda"),
    ("train.precision=half", "train.precision = 'half': expected one of bf16, fp32"),
    ("masking.num_targets=2.5", "masking.num_targets = 2.5: expected an integer"),
])
def test_bad_values_are_refused_at_load_time_naming_key_value_and_expectation(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / HEPJEPA, [override])
    assert expected in str(e.value) and f"override '{override}'" in str(e.value)


def test_a_bad_value_in_a_file_names_that_file(tmp_path):
    child = tmp_path / "mine.yaml"
    child.write_text(f"base: {ROOT / HEPJEPA}\ntrain:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: train.lr = 'fast': expected a number > 0"):
        load_config(child)


def test_every_shipped_config_passes_the_value_checks():
    files = sorted(ROOT.glob("*/configs/**/*.yaml"))
    assert len(files) > 100
    for f in files:
        load_config(f)


def _start(tmp_path, *over, restart=False):
    argv = ["--config", str(ROOT / HEPJEPA), "--out", str(tmp_path / "run"), *over] + (["--restart"] if restart else [])
    return start_run("test", argv)


def test_resume_with_another_config_is_refused_naming_the_keys(tmp_path):
    run = _start(tmp_path, "seed=1", "train.lr=0.002")
    from common.training.checkpoint import save_checkpoint
    save_checkpoint(run.out / "checkpoint.pt", {"step": 1})   # an interrupted run
    assert _start(tmp_path, "seed=1", "train.lr=0.002").cfg["train"]["lr"] == 0.002  # same config: resumes
    with pytest.raises(ConfigError, match=r"config.yaml: the unfinished run there has another config "
                                          r"\(seed: 1 -> 2; train.lr: 0.002 -> 0.003\); rerun with --restart"):
        _start(tmp_path, "seed=2", "train.lr=0.003")
    assert yaml.safe_load((run.out / "config.yaml").read_text())["train"]["lr"] == 0.002  # the record stays true
    again = _start(tmp_path, "seed=2", "train.lr=0.003", restart=True)
    assert not (again.out / "checkpoint.pt").exists()
    assert yaml.safe_load((again.out / "config.yaml").read_text())["seed"] == 2


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hepjepa.pretrain", "--config", HEPJEPA, *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_entry_point_ends_bad_input_in_one_line(tmp_path):
    p = _cli("--out", str(tmp_path / "r"), "train.lr=fast")
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == ["error: override 'train.lr=fast': train.lr = 'fast': expected a number > 0  (rerun with --debug "
                     "for the traceback)"]
    for debug in (["--debug"], []):
        p = _cli("--out", str(tmp_path / "r"), "train.lr=fast", *debug, env={} if debug else {"JETFM_DEBUG": "1"})
        assert p.returncode == 1 and "Traceback" in p.stderr and "ConfigError" in p.stderr


def test_cli_exit_status(monkeypatch):
    from common.cli import cli
    for ret, code in ((None, 0), (3, 3), ([{"row": 1}], 0)):  # a bench main returns its rows: still success
        with pytest.raises(SystemExit) as e:
            cli(lambda argv: ret, [])
        assert e.value.code == code


def test_every_shipped_pretrained_override_loads():
    # a fine-tuning config's pretrained.overrides are applied to its pretraining config (mpm/build.py backbone_fns);
    # e.g. the No-Backbone baseline's model.depth=0 is a valid value, not a count that must be >= 1
    n = 0
    for f in sorted(ROOT.glob("*/configs/**/*.yaml")):
        cfg = load_config(f)
        p = cfg.get("pretrained") if isinstance(cfg.get("pretrained"), dict) else None
        if p and p.get("config") and p.get("overrides"):
            load_config(p["config"], p["overrides"])
            n += 1
    assert n >= 1
    assert load_config(ROOT / "mpm/configs/mini/mpmv2.yaml", ["model.depth=0"])["model"]["depth"] == 0
