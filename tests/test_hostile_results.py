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
