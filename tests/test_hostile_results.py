"""Hostile round 2 (issue 32): results, claims, checkpoints, runs. Nothing executed, nothing deleted, no replicate
counted twice; every refusal one line naming the file or key and what to do. BENCHMARKS.md, "Hostile round 2:
results, claims, checkpoints", lists every case with its before / after."""
from __future__ import annotations

import copy
import errno
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
import yaml

from common.results import claims as C
from common.results import report
from common.results import tables as R

from tests.test_claims import CLAIM, PUB

ROOT = Path(__file__).resolve().parents[1]


def _rows(seeds=(0, 1, 2), gap=0.003):
    """finetune a hair better than scratch at n_train=100: three seeds decide nothing (inconclusive)."""
    return [{"mode": m, "n_train": 100, "accuracy": base + 0.01 * s, "seed": s}
            for m, base in (("finetune", 0.5 + gap), ("scratch", 0.5)) for s in seeds]


def _write(tmp_path, rows, meta=None):
    runs = tmp_path / "runs"
    path = runs / "mpm" / "tables" / "mpm.toy.json"
    R.write_result(path, "mpm.toy", rows, {"profile": "mini", **(meta or {})}, published=PUB)
    return runs, path


def _verdict(runs):
    (v,) = C.evaluate(R.collect_results(runs, PUB), [CLAIM], PUB)
    return v


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------- 1. replicates that are not
def test_the_honest_cell_is_inconclusive(tmp_path):
    runs, _ = _write(tmp_path, _rows(), {"seeds": [0, 1, 2]})
    assert _verdict(runs).verdict == "inconclusive"


def test_a_cell_with_more_values_than_its_seeds_is_refused(tmp_path):
    rows = [{"mode": "finetune", "n_train": 100, "accuracy": [0.503, 0.513, 0.523] * 4},
            {"mode": "scratch", "n_train": 100, "accuracy": [0.5, 0.51, 0.52] * 4}]
    with pytest.raises(ValueError) as e:
        _write(tmp_path, rows, {"seeds": [0, 1, 2]})
    msg = _one_line(e)
    assert "mpm.toy.json: row 0 (mode=finetune, n_train=100): accuracy" in msg
    assert "12 values for the 3 seeds of meta.seeds [0, 1, 2]" in msg
    # the same file tampered after writing: refused when read, and the claim is not decided from it
    runs, path = _write(tmp_path, [{**r, "accuracy": r["accuracy"][:3]} for r in rows], {"seeds": [0, 1, 2]})
    assert _verdict(runs).verdict == "inconclusive"
    data = json.loads(path.read_text())
    data["rows"][0]["accuracy"] *= 3
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"row 0 .*: 9 values for the 3 seeds"):
        R.read_result(path, PUB)
    assert _verdict(runs).verdict == "not measured"


def test_the_same_row_and_seed_twice_in_one_file_is_refused(tmp_path):
    rows = _rows()
    with pytest.raises(ValueError) as e:
        _write(tmp_path, rows + copy.deepcopy(rows) * 3, {"seeds": [0, 1, 2]})
    assert "row 6 (mode=finetune, n_train=100): seed 0 already in row 0" in _one_line(e)
    # without meta.seeds too, and for rows that hold a whole seed list
    with pytest.raises(ValueError, match=r"row 1 \(mode=finetune, n_train=100\): seed None already in row 0"):
        _write(tmp_path, [{"mode": "finetune", "n_train": 100, "accuracy": [0.5, 0.6]}] * 2)


def test_one_row_per_pretraining_run_is_not_a_duplicate(tmp_path):
    """Rows that differ by pretrain_seed (a declared *_seed field) are different replicates, as mpm.tables writes."""
    rows = [{"mode": "finetune", "n_train": 100, "accuracy": 0.5 + 0.01 * p, "seed": 0, "pretrain_seed": p}
            for p in range(3)]
    _write(tmp_path, rows, {"seeds": [0], "extra_fields": ["pretrain_seed"]})


@pytest.mark.parametrize("meta, row, expected", [
    ({"seeds": [0, 0, 1]}, {}, r"meta\.seeds = \[0, 0, 1\]: seed\(s\) \[0\] listed twice"),
    ({"seeds": 3}, {}, r"meta\.seeds = 3: expected a list of integer seeds >= 0"),
    ({"seeds": [0, 1, 2]}, {"seed": 7}, r"row 0 \(.*\): seed = 7 is not one of meta\.seeds \[0, 1, 2\]"),
    ({}, {"seed": 0.5}, r"row 0 \(.*\): seed = 0\.5: expected an integer seed >= 0"),
    ({}, {"seed": 0, "accuracy": [0.5, 0.6]}, r"accuracy = \[0\.5, 0\.6\]: 2 values for the one seed 0"),
    ({}, {"accuracy": [0.5, 0.6], "loss": [1.0]}, r"loss = \[1\.0\]: 1 values where the row's other metrics hold 2"),
])
def test_seed_bookkeeping_of_a_result_file(tmp_path, meta, row, expected):
    base = {"mode": "finetune", "n_train": 100, "accuracy": 0.5}
    with pytest.raises(ValueError, match=expected):
        _write(tmp_path, [{**base, **row}], meta)


def test_a_key_twice_in_a_result_file_is_refused(tmp_path):
    runs, path = _write(tmp_path, _rows(), {"seeds": [0, 1, 2]})
    text = path.read_text().replace('"accuracy": 0.503,', '"accuracy": 0.1, "accuracy": 0.503,', 1)
    assert text != path.read_text()
    path.write_text(text)
    with pytest.raises(ValueError, match=r"mpm\.toy\.json: key 'accuracy' appears twice in one JSON object"):
        R.read_result(path, PUB)
    (runs / "other.json").write_text('{"a": 1, "a": 2}')       # not a result file: not ours to judge
    assert R.read_result(runs / "other.json", PUB) is None


def test_a_nan_key_value_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"row 0: n_train = nan: expected a key value"):
        _write(tmp_path, [{"mode": "finetune", "n_train": float("nan"), "accuracy": 0.5}])


@pytest.mark.parametrize("override, key", [("finetune.seeds=[0,0,0]", "finetune.seeds"),
                                           ("finetune.n_per_class=[100,100]", "finetune.n_per_class")])
def test_repeated_seeds_or_grid_points_in_a_config_are_refused_at_load(override, key):
    from common.training.config import ConfigError, load_config
    cfg = ROOT / "mpm" / "configs" / "smoke" / "finetune_v1.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(cfg, [override])
    msg = _one_line(e)
    assert msg.startswith(f"override '{override}': {key} = ") and "expected distinct values" in msg


def test_repeated_seeds_are_refused_by_the_loop_itself():
    from common.training.finetune_config import finetune_settings
    with pytest.raises(ValueError, match=r"finetune\.seeds = \[0, 0, 0\]: expected distinct values \(0 repeated"):
        finetune_settings({"finetune": {"seeds": [0, 0, 0]}})
    from common.training.sweep import run_sweep
    with pytest.raises(ValueError, match=r"run_sweep: seeds = \[1, 1\]: expected distinct values"):
        run_sweep({"finetune": {}}, None, None, "/nonexistent", None, seeds=[1, 1])


# ------------------------------------------------------------------------------------- 2. claims / published YAML
def _claims_file(tmp_path, text):
    p = tmp_path / "claims.yaml"
    p.write_text(text)
    return p


CLAIM_YAML = """claims:
  - id: ft
    claim: "fine-tuned beats scratch"
    source: "arXiv:0000.00000, Table 9"
    table: mpm.toy
    metric: accuracy
    better: higher
    a: {mode: finetune}
    b: {mode: scratch}
    at: {n_train: min}
"""


def test_a_key_twice_in_claims_yaml_is_refused(tmp_path):
    p = _claims_file(tmp_path, CLAIM_YAML.replace("better: higher\n", "better: higher\n    better: lower\n"))
    with pytest.raises(ValueError) as e:
        C.load_claims(p, PUB)
    assert re.search(r"claims\.yaml: key 'better' appears twice in one mapping \(lines 7 and 8\)", _one_line(e))
    assert C.load_claims(_claims_file(tmp_path, CLAIM_YAML), PUB)[0]["better"] == "higher"


@pytest.mark.parametrize("text, expected", [
    ("- just a list\n", r"claims\.yaml: expected a mapping with the one key 'claims'"),
    ("claims: [\n", r"claims\.yaml: not valid YAML"),
    (CLAIM_YAML.replace("id: ft", "id: 7"), r"claims\[0\] \(7\): id = 7: expected a non-empty string"),
    (CLAIM_YAML.replace("{mode: finetune}", "{mode: [finetune]}"), r"a\.mode = \['finetune'\]: expected one key value"),
    (CLAIM_YAML.replace("{n_train: min}", "[n_train]"), r"at = \['n_train'\]: expected a mapping"),
    (CLAIM_YAML + "extra: 1\n", r"expected a mapping with the one key 'claims'"),
])
def test_malformed_claims_yaml_is_one_line_naming_file_and_key(tmp_path, text, expected):
    with pytest.raises(ValueError) as e:
        C.load_claims(_claims_file(tmp_path, text), PUB)
    assert re.search(expected, _one_line(e))


def test_a_missing_claims_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml: claims file not found"):
        C.load_claims(tmp_path / "nope.yaml", PUB)


def _published_file(tmp_path, mutate):
    pub = copy.deepcopy(PUB)
    pub["mpm"]["toy"]["percent"] = ["accuracy"]          # its values are percent (49.1)
    mutate(pub["mpm"]["toy"])
    p = tmp_path / "published.yaml"
    p.write_text(yaml.safe_dump(pub, sort_keys=False))
    return p


@pytest.mark.parametrize("mutate, expected", [
    (lambda t: t["rows"][0].update(accuracy="49.1"),
     r"table mpm\.toy, row 0: accuracy = '49\.1': expected a number \(null = not published\)"),
    (lambda t: t["rows"][0].update(accuracy=float("nan")), r"row 0: accuracy = nan: expected a finite number"),
    (lambda t: t.pop("percent"),                       # percent values in a table that lists no `percent:`
     r"row 0: accuracy = 49\.1: expected a value in \[0, 1\] \(a fraction: if the paper prints percent, list"),
    (lambda t: (t.update(percent=["accuracy"]), t["rows"][1].update(accuracy=3970.0)),
     r"row 1: accuracy = 3970\.0: expected a value in \[0, 100\] \(the table lists it under `percent:`\)"),
    (lambda t: t.update(percent=["acuracy"]), r"percent = \['acuracy'\]: expected a list of its metrics"),
    (lambda t: t.update(keys="mode"), r"table mpm\.toy: keys = 'mode': expected a list of distinct names"),
    (lambda t: t["rows"].append(dict(t["rows"][0])),
     r"row 4 \(mode=finetune, n_train=1000\): the same key values as row 0"),
    (lambda t: t["rows"][0].update(mode=["finetune"]), r"row 0: mode = \['finetune'\]: expected a key value"),
    (lambda t: t["rows"][0].update(ours="no"), r"row 0: ours = 'no': expected true or false"),
    (lambda t: t["rows"][0].update(accuracy={"value": 0.5, "err": -0.1}), r"accuracy\.err = -0\.1: expected a number >= 0"),
])
def test_published_yaml_is_validated_like_a_run_config(tmp_path, mutate, expected):
    with pytest.raises(ValueError) as e:
        R.load_published(_published_file(tmp_path, mutate))
    msg = _one_line(e)
    assert "published.yaml: " in msg and re.search(expected, msg), msg


def test_a_key_twice_or_a_list_section_in_published_yaml_is_refused(tmp_path):
    p = tmp_path / "published.yaml"
    p.write_text("mpm:\n  toy:\n    title: t\n    title: u\n")
    with pytest.raises(ValueError, match=r"published\.yaml: key 'title' appears twice in one mapping \(lines 3 and 4\)"):
        R.load_published(p)
    p.write_text("mpm:\n  - toy\n")
    with pytest.raises(ValueError, match=r"published\.yaml: mpm: expected a mapping of tables"):
        R.load_published(p)


def test_the_shipped_claims_and_published_files_pass_the_strict_checks():
    pub = R.load_published()
    assert C.load_claims(None, pub)


# ------------------------------------------------------------------------------------- 3. the claims CLI
def _cli(main, argv, capsys):
    from common.cli import cli
    with pytest.raises(SystemExit) as e:
        cli(main, argv)
    err = capsys.readouterr().err.strip()
    return e.value.code, err


def test_claims_cli_refuses_a_missing_runs_folder(tmp_path, capsys):
    code, err = _cli(C.main, ["--runs", str(tmp_path / "nope")], capsys)
    assert code == 2 and err.count("\n") == 0 and f"--runs {tmp_path / 'nope'}: no such directory" in err


def test_claims_cli_refuses_a_file_or_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = _cli(C.main, ["--runs", str(tmp_path / "f")], capsys)
    assert code == 2 and "not a directory" in err
    (tmp_path / "empty").mkdir()
    code, err = _cli(C.main, ["--runs", str(tmp_path / "empty")], capsys)
    assert code == 2 and "no valid result file" in err and err.count("\n") == 0


# ------------------------------------------------------------------------------------- 4. unfinished pretraining
def _unfinished_tokenizer_run(tmp_path):
    from common.training.checkpoint import save_checkpoint

    from tests.test_omnijet_loops import _tokenizer_run
    run = tmp_path / "tokenizer"
    _tokenizer_run(run, "binned")
    (run / "done.json").unlink()                       # killed before it finished
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    save_checkpoint(run / "checkpoint.pt", {**ckpt, "step": 150})
    return run


def test_weights_of_an_unfinished_run_are_refused_naming_the_folder(tmp_path, monkeypatch):
    from common.training.checkpoint import CheckpointError

    from omnijet.vqvae import load_tokenizer
    monkeypatch.delenv("JETFM_ALLOW_UNFINISHED", raising=False)
    run = _unfinished_tokenizer_run(tmp_path)
    with pytest.raises(CheckpointError) as e:
        load_tokenizer(run)
    msg = _one_line(e)
    assert msg.startswith(f"{run}: this run did not finish (no done.json) (its checkpoint.pt is from step 150)")
    assert f"set JETFM_ALLOW_UNFINISHED={run} to use its tokeniser as they are" in msg
    monkeypatch.setenv("JETFM_ALLOW_UNFINISHED", str(tmp_path / "another"))
    with pytest.raises(CheckpointError):
        load_tokenizer(run)
    monkeypatch.setenv("JETFM_ALLOW_UNFINISHED", str(run))          # asked for by name: used, with a warning
    assert load_tokenizer(run) is not None


def test_an_explicit_checkpoint_outside_a_run_folder_is_the_users_choice(tmp_path):
    from common.training.checkpoint import load_trained, save_checkpoint
    save_checkpoint(tmp_path / "mine.pt", {"model": {}, "step": 3})
    assert load_trained(tmp_path / "mine.pt")["step"] == 3


def test_mpm_finetune_refuses_an_unfinished_pretraining(tmp_path, monkeypatch):
    from common.training.checkpoint import CheckpointError

    from mpm.build import backbone_fns
    from tests.test_mpm_finetune import pretrained_run
    monkeypatch.delenv("JETFM_ALLOW_UNFINISHED", raising=False)

    class _Factory:
        def mktemp(self, name):
            (tmp_path / name).mkdir()
            return tmp_path / name
    run, _ = pretrained_run.__wrapped__(_Factory())
    (run / "done.json").unlink()
    cfg = {"pretrained": {"run": str(run), "config": None, "overrides": None},
           "data": dict(__import__("common.training.config", fromlist=["x"]).load_config(run / "config.yaml")["data"])}
    build, load = backbone_fns(cfg)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(run))}: this run did not finish"):
        load(build())


# ------------------------------------------------------------------------------------- 5. runs and run folders
def _cfg(tmp_path, lr=0.001):
    p = tmp_path / f"cfg{lr}.yaml"
    p.write_text(f"seed: 1\ntrain:\n  lr: {lr}\n  steps: 3\n")
    return str(p)


@pytest.fixture
def rank0(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "JETFM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield monkeypatch
    torch.set_num_threads(1)


def test_a_finished_run_rerun_with_another_config_is_refused_naming_the_change(tmp_path, rank0):
    from common.training.config import ConfigError
    from common.training.train_utils import mark_done, start_run
    out = tmp_path / "run"
    assert start_run("t", ["--config", _cfg(tmp_path), "--out", str(out)]) is not None
    mark_done(out)
    assert start_run("t", ["--config", _cfg(tmp_path), "--out", str(out)]) is None      # same config: nothing to do
    with pytest.raises(ConfigError) as e:
        start_run("t", ["--config", _cfg(tmp_path, 0.002), "--out", str(out)])
    msg = _one_line(e)
    assert "config.yaml: the finished run there has another config (train.lr: 0.001 -> 0.002); rerun with " \
           "--restart to redo it" in msg
    assert start_run("t", ["--config", _cfg(tmp_path, 0.002), "--out", str(out), "--restart"]) is not None


@pytest.mark.parametrize("text", ["seed: [1\n", "- a list\n", "\x00\x01binary"])
def test_a_corrupt_config_yaml_in_a_run_folder_is_one_line(tmp_path, rank0, text):
    from common.training.config import ConfigError
    from common.training.train_utils import start_run
    out = tmp_path / "run"
    start_run("t", ["--config", _cfg(tmp_path), "--out", str(out)])
    (out / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        start_run("t", ["--config", _cfg(tmp_path), "--out", str(out)])
    assert re.search(r"config\.yaml: the earlier run's config is (unreadable|not a mapping).*--restart", _one_line(e))


def test_a_resume_with_another_thread_count_is_refused(tmp_path, rank0):
    from common.training.config import ConfigError
    from common.training.train_utils import start_run
    out = tmp_path / "run"
    argv = ["--config", _cfg(tmp_path), "--out", str(out)]
    start_run("t", argv)
    assert json.loads((out / ".jetfm-run").read_text())["threads"] == 1
    rank0.setenv("JETFM_THREADS", "2")
    with pytest.raises(ConfigError, match=r"started with 1 torch thread\(s\), this process has 2; .*JETFM_THREADS=1"):
        start_run("t", argv)
    assert start_run("t", argv + ["--restart"]) is not None                       # a new run: its own count
    assert json.loads((out / ".jetfm-run").read_text())["threads"] == 2
    rank0.setenv("JETFM_THREADS", "1")
    with pytest.raises(ConfigError, match="started with 2 torch thread"):
        start_run("t", argv)


def test_restart_deletes_only_the_files_the_run_recorded_writing(tmp_path, rank0):
    from common.atomic import write_json, write_text
    from common.results.plots import save_figure
    from common.training.checkpoint import save_checkpoint
    from common.training.logger import MetricLogger
    from common.training.train_utils import mark_done, start_run
    out = tmp_path / "run"
    argv = ["--config", _cfg(tmp_path), "--out", str(out)]
    start_run("t", argv)
    save_checkpoint(out / "checkpoint.pt", {"step": 1})
    MetricLogger(out, enabled=True).log(1, loss=0.5)
    write_json(out / "n100" / "seed0" / "result.json", {"auc": 0.5})
    write_text(out / "plots" / "loss.md", "kit")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    save_figure(plt.figure(), out / "plots" / "loss.png")
    mark_done(out)
    (out / "notes.md").write_text("my notes")                                   # the user's, kit endings
    (out / "my_plots").mkdir()
    (out / "my_plots" / "fig.png").write_bytes(b"\x89PNG mine")
    (out / "plots" / "annotated.png").write_bytes(b"\x89PNG mine too")
    assert start_run("t", argv + ["--restart"]) is not None
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == [".jetfm-lock", ".jetfm-run", ".jetfm-written", "config.yaml", "my_plots/fig.png", "notes.md",
                    "plots/annotated.png"]
    assert (out / "notes.md").read_text() == "my notes"
    assert (out / ".jetfm-written").read_text() == "config.yaml\n"                # recorded again after --restart


def test_a_manifest_naming_a_file_outside_the_run_is_never_followed(tmp_path, rank0):
    from common.training.config import ConfigError
    from common.training.train_utils import start_run
    out = tmp_path / "run"
    argv = ["--config", _cfg(tmp_path), "--out", str(out)]
    start_run("t", argv)
    (tmp_path / "precious.txt").write_text("x")
    with open(out / ".jetfm-written", "a") as f:
        f.write("../precious.txt\n")
    with pytest.raises(ConfigError, match=r"names '\.\./precious\.txt', outside the run folder .*nothing was deleted"):
        start_run("t", argv + ["--restart"])
    assert (tmp_path / "precious.txt").exists() and (out / "config.yaml").exists()


def test_restart_of_a_run_made_before_manifests_is_refused(tmp_path, rank0):
    from common.training.config import ConfigError
    from common.training.train_utils import start_run
    out = tmp_path / "run"
    out.mkdir()
    (out / ".jetfm-run").write_text(json.dumps({"kit": "jetfm", "preexisting": []}))   # the old marker
    (out / "config.yaml").write_text("seed: 1\n")
    (out / "notes.md").write_text("mine")
    with pytest.raises(ConfigError, match="no valid .jetfm-run marker with a manifest"):
        start_run("t", ["--config", _cfg(tmp_path), "--out", str(out), "--restart"])
    assert (out / "notes.md").exists()


# ------------------------------------------------------------------------------------- checkpoints
def _resume_cli(tmp_path, ckpt_path, capsys, model=None):
    """What every training loop does on resume, at an entry point: load + restore, through common.cli."""
    from common.training.checkpoint import load_checkpoint, restore_state
    model = model or torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    return _cli(lambda argv: restore_state(load_checkpoint(ckpt_path), model=model, optimizer=opt), [], capsys)


def test_a_truncated_or_empty_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    from common.training.checkpoint import make_state, save_checkpoint
    path = tmp_path / "run" / "checkpoint.pt"
    model = torch.nn.Linear(3, 2)
    save_checkpoint(path, make_state(model=model, step=5, optimizer=torch.optim.AdamW(model.parameters())))
    path.write_bytes(path.read_bytes()[:300])
    code, err = _resume_cli(tmp_path, path, capsys)
    assert code == 2 and err.count("\n") == 0 and f"{path}: cannot read the checkpoint (300 bytes" in err
    assert "rerun with --restart" in err
    path.write_bytes(b"")
    code, err = _resume_cli(tmp_path, path, capsys)
    assert code == 2 and "cannot read the checkpoint (empty file" in err


def test_a_foreign_checkpoint_is_one_line_not_hundreds_of_key_names(tmp_path, capsys):
    from common.training.checkpoint import make_state, save_checkpoint
    path = tmp_path / "checkpoint.pt"
    big = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(150)])
    save_checkpoint(path, make_state(model=big, step=5, optimizer=torch.optim.AdamW(big.parameters())))
    code, err = _resume_cli(tmp_path, path, capsys)
    assert code == 2 and err.count("\n") == 0 and len(err) < 500, err
    assert f"{path}: does not fit this run's model or optimiser (missing key(s): 2, e.g. weight; " \
           "unexpected key(s): 300, e.g. 0.weight)" in err


def test_a_bare_state_dict_as_checkpoint_is_named(tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    code, err = _resume_cli(tmp_path, path, capsys)
    assert code == 2 and f"{path}: not a resumable checkpoint of this run (no model, step, optimizer, rng)" in err


def test_a_folder_named_checkpoint_pt_is_named(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").mkdir()
    code, err = _resume_cli(tmp_path, tmp_path / "checkpoint.pt", capsys)
    assert code == 2 and "checkpoint.pt: is a folder, not a checkpoint file" in err


def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    from common.training import checkpoint as ck
    path = tmp_path / "checkpoint.pt"
    ck.save_checkpoint(path, {"step": 1})

    def full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    code, err = _cli(lambda argv: ck.save_checkpoint(path, {"step": 2}), [], capsys)
    assert code == 2 and err.count("\n") == 0
    assert f"{path}: cannot write: no space left on the device" in err
    assert ck.load_checkpoint(path)["step"] == 1 and not list(tmp_path.glob("*.tmp"))
    # torch's own zip writer reports a full disk as an internal RuntimeError naming neither file nor cause

    def torn(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", torn)
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: type("U", (), {"free": 1024})())
    code, err = _cli(lambda argv: ck.save_checkpoint(path, {"step": 2}), [], capsys)
    assert code == 2 and f"{path}: cannot write the checkpoint: no space left on the device (0 MiB free)" in err
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: type("U", (), {"free": 2**40})())
    code, err = _cli(lambda argv: ck.save_checkpoint(path, {"step": 2}), [], capsys)
    assert code == 2 and f"{path}: cannot write the checkpoint ([enforce fail at inline_container.cc:626] " in err
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: type("U", (), {"free": 1024})())
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")))
    code, err = _cli(lambda argv: ck.save_checkpoint(path, {"step": 2}), [], capsys)
    assert code == 2 and f"{path}: cannot write the checkpoint: no space left on the device (0 MiB free)" in err


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    def main(argv):
        raise KeyboardInterrupt
    code, err = _cli(main, [], capsys)
    assert code == 130 and err == "interrupted; rerun the same command to resume (a run continues from its last " \
                                  "checkpoint)"
    from common.cli import cli
    with pytest.raises(KeyboardInterrupt):
        cli(main, ["--debug"])


def test_ctrl_c_during_a_checkpoint_write_keeps_the_last_one(tmp_path, monkeypatch):
    from common.training import checkpoint as ck
    path = tmp_path / "checkpoint.pt"
    ck.save_checkpoint(path, {"step": 1})

    def interrupted(obj, f, *a, **k):
        open(f, "wb").write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["step"] == 1 and not list(tmp_path.glob("*.tmp"))


def test_output_piped_into_a_closed_reader_ends_quietly(capsys):
    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")
    code, err = _cli(main, [], capsys)
    assert code == 0 and err == ""


# ------------------------------------------------------------------------------------- report CLI
def test_report_out_pointing_at_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "RESULTS.md").write_text("mine")
    code, err = _cli(report.main, ["--runs", str(tmp_path / "runs"), "--profile", "mini", "--out",
                                   str(tmp_path / "RESULTS.md")], capsys)
    assert code == 2 and err.count("\n") == 0 and "RESULTS.md is a file, not a folder" in err
    assert (tmp_path / "RESULTS.md").read_text() == "mine"


def test_report_refuses_a_misspelt_strict_table(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    code, err = _cli(report.main, ["--runs", str(tmp_path / "runs"), "--profile", "mini", "--out",
                                   str(tmp_path / "res"), "--claims", "none", "--strict",
                                   "--strict-tables", "mpm.v1_jetclas"], capsys)
    assert code == 2 and "--strict-tables: mpm.v1_jetclas: no such table" in err


def test_report_out_inside_runs_does_not_copy_its_own_plots_again(tmp_path):
    runs = tmp_path / "runs"
    (runs / "step").mkdir(parents=True)
    (runs / "step" / "loss.png").write_bytes(b"\x89PNG")
    for _ in range(3):
        report.build_results_md(runs, "mini", runs / "results", claims_path=False)
    pngs = sorted(str(p.relative_to(runs)) for p in runs.rglob("*.png"))
    assert pngs == ["results/plots/step/loss.png", "step/loss.png"]


def test_report_runs_that_is_a_file_is_named(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = _cli(report.main, ["--runs", str(tmp_path / "f"), "--profile", "mini"], capsys)
    assert code == 2 and "is not a directory" in err
