"""Result files that cannot lie: every file is checked against its table's schema, only the files the steps wrote
are read, a row gone from a file is flagged, a table built from runs that changed or failed is refused, and a broken
step summary is an error naming the file."""
from __future__ import annotations

import json
import math

import pytest

from common.results import report
from common.results import tables as R

PUB = {"mpm": {"toy": {"title": "toy", "source": "Someone, arXiv:0000.00000, Table 9", "keys": ["mode", "n_train"],
                       "metrics": ["accuracy", "auc", "rejection_50"],
                       "rows": [{"mode": "fixed", "n_train": 1000, "accuracy": 44.6},
                                {"mode": "scratch", "n_train": 1000, "accuracy": 39.7}]}}}
ROWS = [{"mode": "fixed", "n_train": 1000, "accuracy": 0.5, "auc": 0.7, "rejection_50": 12.0},
        {"mode": "scratch", "n_train": 1000, "accuracy": 0.4, "auc": 0.6, "rejection_50": 9.0}]
STATUS = "mpm/ft\tdone\t5\tlogs/ft.log\tmpm.toy\tstep\t\nmpm/tables\tdone\t1\tlogs/t.log\tmpm.toy\talways\t\n"


def _corrupt(path, row, key, value):
    data = json.loads(path.read_text())
    data["rows"][row][key] = value
    path.write_text(json.dumps(data))


def _run(tmp_path, rows=ROWS, meta=None, status=STATUS):
    runs = tmp_path / "runs"
    path = runs / "mpm" / "tables" / "mpm.toy.json"
    R.write_result(path, "mpm.toy", rows, {"profile": "mini", **(meta or {})}, published=PUB)
    (runs / "status.tsv").write_text(status)
    return runs, path


def _report(runs, tmp_path):
    per_table: dict = {}
    path, n = report.build_results_md(runs, "mini", tmp_path / "res", published=PUB, per_table=per_table,
                                      claims_path=False)
    return path.read_text(), n


@pytest.mark.parametrize("key, value, expected", [
    ("accuracy", "0.5", "expected a number, a list of numbers, null or one of the reasons"),
    ("accuracy", -3, "expected a value in [0, 1]"),
    ("auc", 7.5, "expected a value in [0, 1]"),
    ("auc", [0.7, math.inf], "expected a finite number"),
    ("rejection_50", -1.0, "expected a value in [0, inf]"),
    ("typo", 0.5, "expected one of the keys ['mode', 'n_train'], metrics"),
    ("mode", ["fixed"], "expected a key value"),
])
def test_a_corrupted_metric_is_an_error_naming_file_row_key_value(tmp_path, key, value, expected):
    runs, path = _run(tmp_path)
    _corrupt(path, 1, key, value)
    with pytest.raises(ValueError) as e:
        R.read_result(path, PUB)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "row 1" in msg and f"{key} = {value!r}" in msg, msg
    assert expected in msg
    # the same check refuses the row at write time
    with pytest.raises(ValueError, match="row 0"):
        R.write_result(tmp_path / "w" / "mpm.toy.json", "mpm.toy", [{**ROWS[0], key: value}], {}, published=PUB)
    # the report refuses the table (its cells flagged, --strict fails) and names the file and the error
    text, n_missing = _report(runs, tmp_path)
    assert "| mpm.toy | refused |" in text and n_missing > 0
    assert f"- {msg}" in text
    assert "0.500" not in text  # no number of the corrupted file is shown


def test_valid_values_pass_inf_where_the_metric_allows_it_and_reasons(tmp_path):
    rows = [{**ROWS[0], "rejection_50": [math.inf, 3.0], "auc": None},
            {**ROWS[1], "auc": R.NOT_RUN_BY_KIT, "rejection_50": f"inf: {R.NO_BACKGROUND_PASSES}", "seed": 0}]
    _, path = _run(tmp_path, rows)
    assert R.read_result(path, PUB)["rows"][1]["auc"] == "not run by the kit"
    with pytest.raises(ValueError, match="unknown|table_id 'mpm.nope'"):
        R.write_result(tmp_path / "mpm.nope.json", "mpm.nope", ROWS, {}, published=PUB)
    with pytest.raises(ValueError, match="REASONS"):
        R.non_finite_note(math.inf, "some made-up reason")
    assert R.non_finite_note(math.inf, R.NO_BACKGROUND_PASSES) == f"inf: {R.NO_BACKGROUND_PASSES}"
    # the range of a metric by its name, its first word, or *_resolution
    assert R.metric_range("auc_macro") == (0.0, 1.0, False) and R.metric_range("rejection_30") == (0, math.inf, True)
    assert R.metric_range("kl_top_vs_qcd")[2] and R.metric_range("particle_pt_resolution") == (0, math.inf, False)
    assert R.metric_range("scratch_min_val_loss") == (-math.inf, math.inf, False)  # any finite value


def test_a_row_deleted_from_a_file_is_flagged_missing_not_moved_to_published_only(tmp_path):
    runs, path = _run(tmp_path)
    data = json.loads(path.read_text())
    assert data["meta"]["expected_rows"] == [{"mode": "fixed", "n_train": 1000}, {"mode": "scratch", "n_train": 1000}]
    del data["rows"][1]
    path.write_text(json.dumps(data))
    text, n_missing = _report(runs, tmp_path)
    main = text.split("### mpm.toy")[1].split("Published rows not in")[0]
    assert "| scratch | 1000 | **missing** (row not produced by the run) |" in main
    assert n_missing == 3 and "| mpm.toy | yes | 3 |" in text


def test_a_stray_copy_is_not_read_as_a_second_seed_and_is_named(tmp_path):
    runs, path = _run(tmp_path)
    stray = path.with_name("mpm.toy.old.json")
    stray.write_text(path.read_text())
    found = R.collect_results(runs, PUB)
    assert found["mpm.toy"]["files"] == [str(path)] and len(found["mpm.toy"]["rows"]) == 2
    text, n_missing = _report(runs, tmp_path)
    assert "(n=2)" not in text and n_missing == 0
    assert f"- {stray}: ignored: a result file of mpm.toy must be named mpm.toy.json" in text


def test_a_truncated_table_file_names_the_file_and_refuses_the_table(tmp_path):
    runs, path = _run(tmp_path)
    path.write_text(path.read_text()[:40])
    text, n_missing = _report(runs, tmp_path)
    assert f"{path}: result file is not valid JSON" in text and "| mpm.toy | refused |" in text and n_missing > 0


def test_a_table_whose_source_changed_or_vanished_is_stale(tmp_path):
    src = tmp_path / "runs" / "mpm" / "ft" / "summary.json"
    src.parent.mkdir(parents=True)
    src.write_text('{"accuracy": 0.5}')
    runs, path = _run(tmp_path, meta={"sources": [src]})
    assert json.loads(path.read_text())["meta"]["sources"][0]["path"] == "../ft/summary.json"
    assert _report(runs, tmp_path)[1] == 0
    src.write_text('{"accuracy": 0.9}')  # the step reran after the table was written
    text, n_missing = _report(runs, tmp_path)
    assert "**missing** (stale: built from runs that changed or failed: ../ft/summary.json is missing or changed " \
           "since mpm/tables/mpm.toy.json was written)" in text
    assert n_missing == 6 and "| mpm.toy | refused | 6 |" in text  # every row the file holds, flagged
    src.unlink()
    assert "stale: built from runs that changed or failed: ../ft/summary.json" in _report(runs, tmp_path)[0]


@pytest.mark.parametrize("failed_step", ["mpm/ft", "mpm/tables"])
def test_an_old_table_file_does_not_stand_in_for_a_step_that_failed_in_this_run(tmp_path, failed_step):
    runs, _ = _run(tmp_path, status=STATUS.replace(f"{failed_step}\tdone", f"{failed_step}\tfailed"))
    text, n_missing = _report(runs, tmp_path)
    log = "logs/ft.log" if failed_step == "mpm/ft" else "logs/t.log"
    assert f"**missing** (stale: built from runs that changed or failed: step {failed_step} failed; log: {log})" in text
    assert n_missing == 6


def test_read_json_names_the_truncated_file(tmp_path):
    bad = tmp_path / "summary.json"
    bad.write_text('{"per_n": {"10": ')
    with pytest.raises(ValueError, match=rf"{bad}: fine-tuning summary is not valid JSON"):
        R.read_json(bad, "fine-tuning summary")
    assert R.read_json(tmp_path / "absent.json", "x") is None


def test_the_table_writers_name_a_truncated_step_summary(tmp_path):
    from hepjepa import tables as hepjepa_tables
    from mpm import tables as mpm_tables
    from omnijet import tables as omnijet_tables

    for path in (tmp_path / "mpm" / "v1_jetclass" / "fixed" / "summary.json",
                 tmp_path / "hepjepa" / "ft_jetclass" / "summary.json",
                 tmp_path / "omnijet" / "token_quality" / "metrics.json"):
        path.parent.mkdir(parents=True)
        path.write_text('{"rows": [')
    with pytest.raises(ValueError, match=r"v1_jetclass/fixed/summary.json: step output is not valid JSON"):
        mpm_tables.collect(tmp_path / "mpm", "mini")
    with pytest.raises(ValueError, match=r"ft_jetclass/summary.json: fine-tuning summary is not valid JSON"):
        hepjepa_tables.write_tables(tmp_path / "hepjepa", tmp_path / "out", "mini")
    with pytest.raises(ValueError, match=r"token_quality/metrics.json: token-quality metrics is not valid JSON"):
        omnijet_tables.token_quality_table(tmp_path / "omnijet", "mini")


def test_a_table_writer_ties_its_table_to_the_summaries_it_read(tmp_path):
    from hepjepa import tables as hepjepa_tables

    runs = tmp_path / "runs"
    summary = runs / "hepjepa" / "ft_top" / "summary.json"
    summary.parent.mkdir(parents=True)
    row = {"mode": "finetune", "n_train_total": 100, **{m: [0.9, 0.91, 0.92] for m in ("accuracy", "auc")},
           **{m: [40.0, 41.0, 42.0] for m in ("rejection_50", "rejection_30")}}
    summary.write_text(json.dumps({"dataset": "toptagging", "class_names": ["QCD", "top"], "seeds": [0, 1, 2],
                                   "rows": [row]}))
    out = runs / "hepjepa" / "tables"
    assert hepjepa_tables.write_tables(runs / "hepjepa", out, "mini") == ["hepjepa.top_tagging"]
    sources = json.loads((out / "hepjepa.top_tagging.json").read_text())["meta"]["sources"]
    assert [s["path"] for s in sources] == ["../ft_top/summary.json"] and len(sources[0]["sha256"]) == 64
    (runs / "status.tsv").write_text("hepjepa/ft_top\tdone\t5\tlogs/top.log\thepjepa.top_tagging\tstep\t\n")
    before, after = {}, {}
    report.build_results_md(runs, "mini", tmp_path / "res", per_table=before, claims_path=False)
    summary.write_text(summary.read_text().replace("0.92", "0.99"))  # fine-tuning reran, tables did not
    path, _ = report.build_results_md(runs, "mini", tmp_path / "res", per_table=after, claims_path=False)
    text = path.read_text()
    assert before["hepjepa.top_tagging"] == 0 and after["hepjepa.top_tagging"] > 0
    assert "stale: built from runs that changed or failed: ../ft_top/summary.json" in text


def test_an_invalid_stray_copy_is_only_listed_not_a_table(tmp_path):
    runs, path = _run(tmp_path)
    stray = path.with_name("mpm.toy.old.json")
    stray.write_text(path.read_text().replace('"accuracy": 0.5', '"accuracy": "x"'))
    text, n_missing = _report(runs, tmp_path)
    assert "### mpm.toy.old" not in text and "| mpm.toy | yes | 0 |" in text and n_missing == 0
    assert f"- {stray}: ignored" in text
