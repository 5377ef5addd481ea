"""What a hostile (or unlucky) user tries: shared files that would run code, folders the kit did not make, two
writers, stray result files, degenerate data and config values. Each case ends in one clear error, never in damage."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from common.training.checkpoint import (UnsafeCheckpointError, load_checkpoint, make_state, restore_state, rng_state,
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
    from common.data import datasets as data_mod

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
    from common.training.config import ConfigError
    from common.training.train_utils import start_run
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
    from common.training.config import ConfigError
    from common.training.train_utils import mark_done, start_run
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "run"
    (out / "data").mkdir(parents=True)
    (out / "thesis.tex").write_text("mine")                      # there before the run: kept
    (out / "data" / "important.npz").write_bytes(b"x")
    argv = ["--config", _run_config(tmp_path), "--out", str(out)]
    assert start_run("t", argv) is not None
    from common.atomic import write_json
    from common.training.checkpoint import save_checkpoint
    write_json(out / "seed0" / "result.json", {})                 # a sub-run the kit made
    save_checkpoint(out / "checkpoint.pt", {"step": 1})
    mark_done(out)
    assert start_run("t", argv + ["--restart"]) is not None
    assert sorted(p.name for p in out.iterdir()) == [".jetfm-lock", ".jetfm-run", ".jetfm-written", "config.yaml",
                                                     "data", "thesis.tex"]
    assert (out / "data" / "important.npz").exists()
    # a foreign file that appeared inside the run folder later: kept (the run never recorded writing it)
    (out / "notes.tex").write_text("mine too")
    mark_done(out)
    assert start_run("t", argv + ["--restart"]) is not None
    assert (out / "notes.tex").read_text() == "mine too" and not (out / "done.json").exists()


# ------------------------------------------------------------------------------------------- 4. two writers
def test_second_writer_of_one_run_is_refused_naming_the_holder(tmp_path, monkeypatch):
    import subprocess
    import sys

    from common.training.config import ConfigError
    from common.training.train_utils import start_run
    monkeypatch.delenv("RANK", raising=False)
    out, cfg = tmp_path / "run", _run_config(tmp_path)
    code = ("import sys, time; from common.training.train_utils import start_run; "
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


# ------------------------------------------------------------------------------------------- 5. claims and results
def _toy_run(tmp_path, seeds=(0, 1)):
    from common.results import tables as R

    from tests.test_claims import PUB
    runs = tmp_path / "runs"
    rows = [{"mode": m, "n_train": n, "accuracy": acc + 0.01 * s, "seed": s}
            for m, grid in (("finetune", ((100, 0.3), (1000, 0.6))), ("scratch", ((100, 0.5), (1000, 0.4))))
            for n, acc in grid for s in seeds]
    path = runs / "mpm" / "tables" / "mpm.toy.json"
    R.write_result(path, "mpm.toy", rows, {"profile": "mini", "seeds": list(seeds)}, published=PUB)
    return runs, path, PUB


def test_a_backup_copy_of_a_tables_folder_is_refused_not_read_as_more_seeds(tmp_path):
    import shutil

    from common.results import claims as C
    from common.results import report
    from common.results import tables as R

    from tests.test_claims import CLAIM
    runs, path, pub = _toy_run(tmp_path)
    shutil.copytree(path.parent, path.parent.with_name("tables.bak"))
    problems = []
    assert "mpm.toy" not in R.collect_results(runs, pub, problems)
    (_, where, msg), = problems
    assert "tables.bak/mpm.toy.json" in msg and "tables/mpm.toy.json" in msg and "seed 0" in msg
    (v,) = C.evaluate(R.collect_results(runs, pub), [CLAIM], pub)
    assert v.verdict == "not measured" and v.a == []            # not n=4
    out, _ = report.build_results_md(runs, "mini", tmp_path / "res", published=pub, claims_path=False)
    assert "also in" in out.read_text() and "**missing**" in out.read_text()


def test_a_run_reads_each_table_only_from_the_folders_of_the_steps_that_write_it(tmp_path):
    """With run_all's status.tsv, a result file outside the output folder of every step declaring its table (a backup
    copy, a file dropped elsewhere) is not read at all: the run's own file alone decides, seeds are not doubled."""
    import shutil

    from common.results import claims as C
    from common.results import tables as R

    from tests.test_claims import CLAIM
    runs, path, pub = _toy_run(tmp_path, seeds=(0, 1, 2))
    (runs / "status.tsv").write_text(f"mpm/tables\tdone\t1\tlog\tmpm.toy\talways\t{path.parent}\n"
                                     f"mpm/other\tdone\t1\tlog\tmpm.other\tstep\t{runs / 'mpm' / 'other'}\n")
    shutil.copytree(path.parent, path.parent.with_name("tables.bak"))
    (runs / "mpm" / "other").mkdir()
    shutil.copy(path, runs / "mpm" / "other" / "mpm.toy.json")      # a step's folder, but not a writer of mpm.toy
    problems = []
    res = R.collect_results(runs, pub, problems)
    assert res["mpm.toy"]["files"] == [str(path)]
    assert sorted(Path(w).parent.name for _, w, _ in problems) == ["other", "tables.bak"]
    assert all("no step of this run writes mpm.toy into this folder" in m for _, _, m in problems)
    (v,) = C.evaluate(res, [CLAIM], pub)
    assert len(v.a) == 3 and v.verdict == "contradicted"


def test_a_deleted_row_makes_the_claim_missing_never_moves_it(tmp_path):
    import json

    from common.results import claims as C
    from common.results import tables as R

    from tests.test_claims import CLAIM
    runs, path, pub = _toy_run(tmp_path, seeds=(0, 1, 2))
    (v,) = C.evaluate(R.collect_results(runs, pub), [CLAIM], pub)
    assert v.at == {"n_train": 100.0} and v.verdict == "contradicted"        # scratch wins at the smallest N
    data = json.loads(path.read_text())
    data["rows"] = [r for r in data["rows"] if not (r["mode"] == "scratch" and r["n_train"] == 100)]
    path.write_text(json.dumps(data))
    (v,) = C.evaluate(R.collect_results(runs, pub), [CLAIM], pub)
    assert v.at == {"n_train": 100.0} and v.verdict == "not measured"        # not "reproduced" at N=1000
    assert "side b (mode=scratch, n_train=100)" in v.why


@pytest.mark.parametrize("bad", [None, float("nan")])
def test_a_hole_in_a_seed_list_is_refused_naming_file_and_row(tmp_path, bad):
    import json

    from common.results import tables as R

    from tests.test_results_validation import PUB, ROWS
    with pytest.raises(ValueError, match=r"mpm\.toy\.json: row 0: auc = \[0\.7, .*seed value 1 is (null|NaN)"):
        R.write_result(tmp_path / "mpm.toy.json", "mpm.toy", [{**ROWS[0], "auc": [0.7, bad, 0.8]}], {}, published=PUB)
    R.write_result(tmp_path / "mpm.toy.json", "mpm.toy", ROWS, {}, published=PUB)
    text = (tmp_path / "mpm.toy.json").read_text().replace('"auc": 0.6', '"auc": [0.6, null, 0.5]')
    (tmp_path / "mpm.toy.json").write_text(text)
    with pytest.raises(ValueError, match=r"mpm\.toy\.json: row 1: auc = \[0\.6, None, 0\.5\]: seed value 1 is null"):
        R.read_result(tmp_path / "mpm.toy.json", PUB)
    assert json.loads(text)  # (the file itself is valid JSON: the refusal is the kit's)


def test_no_json_file_of_the_kit_holds_a_bare_nan(tmp_path):
    import json

    from common.atomic import write_json
    write_json(tmp_path / "result.json", {"test": {"auc": float("nan"), "acc": np.float32("nan"),
                                                  "curve": [1.0, float("nan")], "t": torch.tensor(float("nan"))}})
    text = (tmp_path / "result.json").read_text()
    assert "NaN" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"test": {"auc": None, "acc": None,
                                                                            "curve": [1.0, None], "t": None}}


# ------------------------------------------------------------------------------------------- 6. config values
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEPJEPA = os.path.join(ROOT, "hepjepa", "configs", "smoke", "pretrain.yaml")
MPMV1 = os.path.join(ROOT, "mpm", "configs", "smoke", "mpmv1.yaml")


@pytest.mark.parametrize("config,override,expected", [
    (HEPJEPA, "train.grad_clip=-1.0", "train.grad_clip = -1.0: expected a number >= 0 (0 or null: no clipping)"),
    (HEPJEPA, "train.weight_decay=-0.5", "train.weight_decay = -0.5: expected a number >= 0"),
    (MPMV1, "model.norm_max_n=-1", "model.norm_max_n = -1: expected a number > 0"),
    (HEPJEPA, "data.num_particles=1", "data.num_particles = 1: expected an integer >= 2"),
    (HEPJEPA, "train.steps=[1,2]", "train.steps = [1, 2]: expected an integer >= 1"),
    (HEPJEPA, "model.dim=", "model.dim = None: expected an integer >= 1"),
    (HEPJEPA, "compile=no", "compile = 'no': expected true or false"),
    (os.path.join(ROOT, "hepjepa", "configs", "smoke", "finetune_top.yaml"), "finetune.seeds=[]",
     "finetune.seeds = []: expected a non-empty list"),
])
def test_bad_config_values_are_named_with_their_key(config, override, expected):
    from common.training.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="^" + re.escape(f"override '{override}': {expected}") + "$"):
        load_config(config, [override])


def test_a_key_twice_in_one_yaml_is_refused(tmp_path):
    from common.training.config import ConfigError, load_config
    p = tmp_path / "c.yaml"
    p.write_text("seed: 1\ntrain:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'lr' appears twice in one mapping \(lines 3 and 4\)"):
        load_config(p)


def test_yes_no_are_strings_not_booleans(tmp_path):
    from common.training.config import ConfigError, load_config, parse_value
    assert parse_value("no") == "no" and parse_value("true") is True and parse_value("FALSE") is False
    p = tmp_path / "c.yaml"
    p.write_text("compile: false\n")
    with pytest.raises(ConfigError, match="compile = 'off': expected true or false"):
        load_config(p, ["compile=off"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_clear_error():
    from common.training.distributed import init_distributed
    with pytest.raises(ValueError, match="device = 'cuda' but CUDA is not available here"):
        init_distributed("cuda")


# ------------------------------------------------------------------------------------------- 6. degenerate data
def _qg_cfg(root, **kw):
    return dict(dataset="qg", root=str(root), train="QG_jets*.npz@0:0.8", val="QG_jets*.npz@0.8:0.9",
                test="QG_jets*.npz@0.9:1", features="part_kin", num_particles=None, classes=None, cache_dir=None,
                num_workers=0, **kw)


def test_batch_larger_than_the_data_or_max_jets_below_a_batch(tmp_path):
    from common.data.datasets import make_loader
    from common.data.features import DataError

    from tests.data_factory import write_qg
    write_qg(str(tmp_path / "QG_jets.npz"), 50)
    with pytest.raises(DataError, match="the train split gives 40 jets, fewer than one batch of 64"):
        make_loader(_qg_cfg(tmp_path), "train", 64, shuffle=True, drop_last=True)
    with pytest.raises(DataError, match=r"gives 10 jets \(max_jets = 10\), fewer than one batch of 16"):
        make_loader(_qg_cfg(tmp_path), "train", 16, shuffle=True, drop_last=True, max_jets=10)
    assert len(list(make_loader(_qg_cfg(tmp_path), "train", 16, shuffle=True, drop_last=True))) == 2


def test_labels_of_one_class_are_refused_at_load_naming_the_file(tmp_path):
    from common.data.datasets import load_arrays
    from common.data.features import DataError
    path = tmp_path / "QG_jets.npz"
    from tests.data_factory import write_qg
    write_qg(str(path), 40)
    z = dict(np.load(path))
    np.savez(path, X=z["X"], y=np.ones_like(z["y"]))                       # every jet a quark
    with pytest.raises(DataError, match=r"the train split \(.*QG_jets\.npz\) holds no jet of class\(es\) \['Gluon'\]"):
        load_arrays(_qg_cfg(tmp_path), "train")


def test_jetclass_with_classes_missing_is_refused(tmp_path):
    from common.data.datasets import load_arrays
    from common.data.features import DataError

    from tests.data_factory import write_jetclass
    write_jetclass(str(tmp_path / "train"), 10, classes=["QCD", "Hbb"])     # e.g. a simulation stopped early
    cfg = dict(dataset="jetclass", root=str(tmp_path), train="train/*.root", features="part_kin",
               num_particles=None, classes=None, cache_dir=None, num_workers=0)
    with pytest.raises(DataError, match=r"has no file of class\(es\) \['Hcc', .*'Tbl'\] of the config's classes"):
        load_arrays(cfg, "train")
    assert len(load_arrays({**cfg, "classes": ["QCD", "Hbb"]}, "train")["label"]) == 20


# ------------------------------------------------------------------------------------------- 6. resume bookkeeping
def test_rerun_after_a_kill_before_the_first_checkpoint_logs_each_step_once(tmp_path):
    from tests.test_mpm_pretrain import _run
    out = tmp_path / "run"
    _run(out, 3)
    (out / "checkpoint.pt").unlink()          # as if killed after logging steps 1-3, before any checkpoint
    (out / "done.json").unlink()
    _run(out, 5)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_first_loss_is_the_runs_across_a_resume(tmp_path):
    from tests.test_mpm_pretrain import _run
    _, straight = _run(tmp_path / "a", 4)
    _run(tmp_path / "b", 2)
    torch.manual_seed(123)
    _, resumed = _run(tmp_path / "b", 4)
    assert resumed["first_loss"] == straight["first_loss"]
    assert json.loads((tmp_path / "b" / "done.json").read_text())["first_loss"] == straight["first_loss"]


# ------------------------------------------------------------------------------------------- 6. simulation, report
def test_simulate_refuses_a_negative_count(tmp_path, capsys):
    from common.simulate.__main__ import main
    with pytest.raises(SystemExit) as e:
        main(["qg", "--jets", "-5", "--out", str(tmp_path / "qg")])
    assert e.value.code == 2 and "--jets: expected an integer >= 1, got -5" in capsys.readouterr().err
    assert not (tmp_path / "qg").exists()


def test_an_unfinished_simulation_is_refused_by_the_readers(tmp_path):
    from common.data.datasets import load_arrays
    from common.data.features import DataError
    from common.simulate.run import check_settings, mark_finished

    from tests.data_factory import write_qg
    write_qg(str(tmp_path / "QG_jets.npz"), 40)
    check_settings(str(tmp_path), {"dataset": "qg", "jets": 40})         # the simulation started ...
    with pytest.raises(DataError, match=r"simulate\.json: the simulation of this sample did not finish"):
        load_arrays(_qg_cfg(tmp_path), "train")
    check_settings(str(tmp_path), {"dataset": "qg", "jets": 40})         # a rerun with the same settings resumes
    mark_finished(str(tmp_path))                                          # ... and finishes
    assert json.loads((tmp_path / "simulate.json").read_text())["finished"] is True
    assert len(load_arrays(_qg_cfg(tmp_path), "train")["label"]) == 32


def test_report_refuses_an_unknown_profile(tmp_path, capsys):
    from common.results.report import main
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["--runs", str(tmp_path / "runs"), "--profile", "nonsense", "--out", str(tmp_path / "res")])
    assert e.value.code == 2 and "invalid choice: 'nonsense'" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------------------------------- 6. degenerate jets
def test_jets_with_fewer_than_two_constituents_are_refused(tmp_path):
    from common.data.datasets import load_arrays
    from common.data.features import DataError

    from tests.data_factory import write_qg
    path = tmp_path / "QG_jets.npz"
    write_qg(str(path), 40)
    z = dict(np.load(path))
    z["X"][:, 1:] = 0                                                      # one constituent per jet
    np.savez(path, **z)
    with pytest.raises(DataError, match=r"QG_jets\.npz: 32 of 32 jets have fewer than 2 constituents"):
        load_arrays(_qg_cfg(tmp_path), "train")


def test_a_negative_energy_in_a_top_file_is_named_as_non_physical(tmp_path):
    from common.data.features import DataError
    from common.data.toptagging import read_toptagging

    from tests.data_factory import toptagging_frame
    df = toptagging_frame(10, 0)
    df.loc[3, "E_1"] = -abs(df.loc[3, "E_1"])
    path = tmp_path / "train.h5"
    df.to_hdf(path, key="table", format="fixed", mode="w")
    with pytest.raises(DataError, match=r"train\.h5: 1 non-physical constituent four-vector\(s\) \(negative energy"):
        read_toptagging(str(path))


def test_an_unfinished_btag_simulation_is_refused(tmp_path):
    from common.data.btag import split_files
    from common.data.features import DataError
    from common.results.floor import run_floor
    from common.simulate.run import check_settings
    (tmp_path / "train_0.h5").write_bytes(b"")
    check_settings(str(tmp_path), {"dataset": "btag"})
    data = {"dataset": "btag", "root": str(tmp_path), "train": "train*.h5", "test": "train*.h5"}
    with pytest.raises(DataError, match="did not finish"):
        split_files(data, "train")
    with pytest.raises(DataError, match="did not finish"):     # the floor reads BTag through the same reader
        run_floor({"data": data, "btag": {"n_train": [10]}}, "mpm.v2_btag")


def test_a_nan_written_as_null_comes_back_as_a_noted_non_finite_value_not_a_missing_cell(tmp_path):
    """write_json writes NaN as null; the table writers read such a null back as NaN with its reason (e.g. too few
    top/QCD jets for a KL), while an absent metric stays missing."""
    import json
    import math

    from common.atomic import write_json
    from common.results.tables import TOO_FEW_TOP_QCD, json_metric, non_finite_note
    write_json(tmp_path / "m.json", {"kl": {"jet_eta": float("nan"), "jet_pt": 1.5}})
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["kl"]["jet_eta"] is None                                  # no bare NaN in the file
    assert math.isnan(json_metric(d["kl"], "jet_eta")) and json_metric(d["kl"], "jet_pt") == 1.5
    assert json_metric(d["kl"], "tau21") is None                      # absent: not measured
    assert non_finite_note(json_metric(d["kl"], "jet_eta"), TOO_FEW_TOP_QCD) == f"nan: {TOO_FEW_TOP_QCD}"
