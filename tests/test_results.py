"""Results tables: ours beside published, mean ± std over seeds, missing cells flagged, RESULTS.md (common.results.report)."""
from __future__ import annotations

import json
import math

import pytest
import yaml

from common.results import report
from common.results import tables as R

PUB = {
    "mpm": {
        "toy": {
            "title": "toy accuracy table",
            "source": "Someone et al., arXiv:0000.00000, Table 9",
            "cite": "Someone",
            "keys": ["mode", "n_train"],
            "metrics": ["accuracy", "auc"],
            "percent": ["accuracy"],
            "rows": [
                {"mode": "fixed", "n_train": 1000, "accuracy": 44.6, "auc": None},
                {"mode": "scratch", "n_train": 1000, "accuracy": 39.7, "auc": 0.8},
                {"mode": "ParT", "n_train": 1000, "accuracy": 50.0, "auc": {"value": 0.9, "err": 0.01}, "ours": False},
            ],
            "references": [{"name": "third-party", "source": "a re-run, not the paper",
                            "rows": [{"mode": "fixed", "n_train": 1000, "accuracy": 40.0}]}],
        }
    },
    "omnijet": {},
    "hepjepa": {"other": {"title": "t", "source": "s", "keys": ["model"], "metrics": ["accuracy"], "rows": []}},
}


def _row_cells(text: str, first_key: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(f"| {first_key} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row starting with {first_key!r} in\n{text}")


def test_render_ours_beside_published_with_mean_std_and_percent():
    rows = [{"mode": "fixed", "n_train": 1000, "accuracy": 0.30, "auc": 0.70, "seed": 0},
            {"mode": "fixed", "n_train": 1e3, "accuracy": 0.32, "auc": 0.72, "seed": 1},
            {"mode": "fixed", "n_train": "1e3", "accuracy": [0.31], "auc": [0.71], "seed": 2}]
    text = R.render_table("mpm.toy", rows, {"profile": "mini", "seeds": [0, 1, 2]}, published=PUB)
    header = next(l for l in text.splitlines() if l.startswith("| mode"))
    assert "accuracy [%] ours" in header and "accuracy [%] published (Someone)" in header
    assert "auc ours" in header and "auc published (Someone)" in header and "third-party" in header
    assert "Table 9" in text  # the full citation is printed
    cells = _row_cells(text, "fixed")
    # 1000, 1000.0 and "1e3" are one row; three seeds: mean 31.0 %, sample std 1.0 %
    assert cells[2] == "31.0 ± 1.0 (n=3)"
    assert cells[3] == "44.6"
    assert cells[4] == "40.0"  # the third-party reference column, separate from "published"
    assert cells[5] == "0.710 ± 0.010 (n=3)"
    assert cells[6] == "not published"
    assert text.count("| fixed |") == 1


def test_render_flags_missing_and_grid_rows_by_profile():
    rows = [{"mode": "fixed", "n_train": 1000, "accuracy": float("nan"), "auc": None}]
    mini, n_missing = R.render_table_counted("mpm.toy", rows, {"profile": "mini"}, published=PUB)
    cells = _row_cells(mini, "fixed")
    assert cells[2].startswith("**missing**") and cells[5].startswith("**missing**")
    assert n_missing == 2
    # published rows outside the mini grid go to a published-only table (no "ours" column)
    published_only = mini.split("Published rows not in the mini run")[1]
    assert _row_cells(published_only, "scratch") == ["scratch", "1000", "39.7", "not published", "0.8", "not published"]
    assert _row_cells(published_only, "ParT (literature)")[4] == "0.9 ± 0.01"
    assert "| scratch |" not in mini.split("Published rows not in")[0]
    # at paper scale an expected published row we did not produce is a missing cell
    paper, n_missing = R.render_table_counted("mpm.toy", [{"mode": "fixed", "n_train": 1000, "accuracy": 0.3,
                                                            "auc": 0.7}], {"profile": "paper"}, published=PUB)
    assert _row_cells(paper, "scratch")[2].startswith("**missing**")
    assert n_missing == 2  # the scratch row's two metrics; the literature row is not expected
    assert "| ParT (literature) |" in paper
    # no result at all: every expected cell carries the reason (paper), one flagged placeholder row (reduced grids)
    none, n_missing = R.render_table_counted("mpm.toy", [], {"profile": "paper"}, published=PUB,
                                             missing_reason="step mpm/x failed")
    assert "**missing** (step mpm/x failed)" in _row_cells(none, "scratch")[2] and n_missing == 4
    none, n_missing = R.render_table_counted("mpm.toy", [], {"profile": "mini"}, published=PUB,
                                             missing_reason="step mpm/x failed")
    assert _row_cells(none, "–")[2] == "**missing** (step mpm/x failed)" and n_missing == 2


def test_string_metric_means_deliberately_not_run_and_is_not_missing():
    text, n_missing = R.render_table_counted("mpm.toy", [{"mode": "fixed", "n_train": 1000, "accuracy": 0.5,
                                                           "auc": "not run by the kit"}], {"profile": "mini"},
                                             published=PUB)
    assert _row_cells(text, "fixed")[5] == "– (not run by the kit)"
    assert n_missing == 0


def test_infinite_values_are_numbers_not_missing():
    text, n_missing = R.render_table_counted("mpm.toy", [{"mode": "fixed", "n_train": 1000, "accuracy": [0.5, 0.7],
                                                           "auc": [float("inf"), 3.0]}], {"profile": "mini"},
                                             published=PUB)
    assert _row_cells(text, "fixed")[5] == "∞ (in 1 of 2 seeds)" and n_missing == 0


def test_ours_rows_without_published_counterpart_say_not_published():
    text = R.render_table("mpm.toy", [{"mode": "fixed", "n_train": 100, "accuracy": 0.2, "auc": 0.6}],
                          {"profile": "mini"}, published=PUB)
    line = next(l for l in text.splitlines() if l.startswith("| fixed | 100 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "20.0" and cells[3] == "not published"


def test_write_result_is_atomic_json_and_collected(tmp_path):
    path = tmp_path / "run" / "ft" / "mpm.toy.json"
    R.write_result(path, "mpm.toy", [{"mode": "fixed", "n_train": 1000, "accuracy": 0.5}], {"profile": "smoke"},
                   published=PUB)
    assert not (path.parent / "mpm.toy.json.tmp").exists()
    data = json.loads(path.read_text())
    assert data["table_id"] == "mpm.toy" and data["rows"][0]["accuracy"] == 0.5
    (tmp_path / "run" / "config.json").write_text(json.dumps({"table_id": "mpm.toy", "rows": []}))  # not ours
    (tmp_path / "run" / "done.json").write_text("{}")
    R.write_result(tmp_path / "run" / "b" / "mpm.toy.json", "mpm.toy",
                   [{"mode": "scratch", "n_train": 1000, "accuracy": 0.4}], {"profile": "smoke", "seeds": [3]},
                   published=PUB)
    found = R.collect_results(tmp_path / "run", PUB)
    assert list(found) == ["mpm.toy"] and len(found["mpm.toy"]["rows"]) == 2 and len(found["mpm.toy"]["files"]) == 2
    with pytest.raises(TypeError):
        R.write_result(tmp_path / "bad.json", "mpm.toy", {"not": "a list"}, {}, published=PUB)


def test_build_results_md_every_table_missing_reasons_and_plots(tmp_path):
    runs = tmp_path / "runs"
    (runs / "mpm" / "ft").mkdir(parents=True)
    R.write_result(runs / "mpm" / "ft" / "mpm.toy.json", "mpm.toy",
                   [{"mode": "fixed", "n_train": 1000, "accuracy": 0.3, "auc": 0.7}],
                   {"profile": "smoke", "dataset": "simulated JetClass", "scale": {"train": 500}, "seeds": [0]},
                   published=PUB)
    (runs / "mpm" / "ft" / "roc.png").write_bytes(b"\x89PNG fake")
    (runs / "logs").mkdir()
    (runs / "status.tsv").write_text("hepjepa/finetune\tstarted\t0\tlogs/h.log\thepjepa.other\tstep\n"
                                     "hepjepa/finetune\tfailed\t12\tlogs/h.log\thepjepa.other\tstep\n"
                                     "mpm/tables\tdone\t1\tlogs/t.log\tmpm.toy,mpm.other\talways\n")
    path, n_missing = report.build_results_md(runs, "smoke", tmp_path / "res", published=PUB, claims_path=False)
    text = path.read_text()
    for table_id in ("mpm.toy", "hepjepa.other"):
        assert f"### {table_id}:" in text
    assert "data: simulated JetClass" in text and "scale: train=500" in text and "seeds: 0" in text
    assert "step hepjepa/finetune failed; log: logs/h.log" in text
    assert "(plots/mpm/ft/roc.png)" in text and (tmp_path / "res" / "plots" / "mpm" / "ft" / "roc.png").exists()
    assert "reduced scale" in text  # the simulated-data warning for non-paper profiles
    assert n_missing == 1  # hepjepa.other has no published rows, so one placeholder row is flagged
    # the CLI's --strict turns missing cells into a failing exit status
    pub_path = tmp_path / "pub.yaml"
    pub_path.write_text(yaml.safe_dump(PUB))
    assert report.main(["--runs", str(runs), "--profile", "smoke", "--out", str(tmp_path / "r2"),
                   "--published", str(pub_path), "--claims", "none", "--strict"]) == 1
    assert report.main(["--runs", str(runs), "--profile", "smoke", "--out", str(tmp_path / "r2"),
                   "--published", str(pub_path), "--claims", "none"]) == 0


def test_table_no_step_produces_is_not_flagged_missing(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    # a table writer (--always) that lists the table does not make the profile produce it
    (runs / "status.tsv").write_text("mpm/tables\tdone\t1\tlogs/t.log\tmpm.toy\talways\n")
    path, n_missing = report.build_results_md(runs, "smoke", tmp_path / "res", published=PUB, claims_path=False)
    text = path.read_text()
    assert n_missing == 0
    assert "Tables no step of the `smoke` profile produces: mpm.toy, hepjepa.other" in text
    assert "Not reproduced by the smoke profile" in text


def test_load_published_rejects_bad_entries(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"mpm": {"t": {"title": "x", "source": "y", "keys": ["a"], "metrics": ["m"],
                                                 "rows": [{"a": 1, "typo": 2}]}}}))
    with pytest.raises(ValueError, match=r"bad.yaml.*mpm.t.*typo"):
        R.load_published(bad)
    bad.write_text(yaml.safe_dump({"mpm": {"t": {"title": "x", "keys": ["a"], "metrics": ["m"]}}}))
    with pytest.raises(ValueError, match="source"):
        R.load_published(bad)


def test_published_yaml_is_complete_and_cited():
    pub = R.load_published()
    assert set(pub) == {"mpm", "omnijet", "hepjepa"}
    ids = R.all_table_ids(pub)
    for needed in ("mpm.v1_pretraining", "mpm.v2_jetclass", "omnijet.classification", "hepjepa.jetclass_fewshot",
                   "hepjepa.top_tagging", "hepjepa.quark_gluon"):
        assert needed in ids
    for table_id in ids:
        entry = R.published_table(table_id, pub)
        assert "arXiv:" in entry["source"], table_id
        for row in entry.get("rows") or []:
            for m in entry["metrics"]:
                v = row.get(m)
                assert v is None or isinstance(v, (int, float, str, dict)), (table_id, m, v)
                if isinstance(v, (int, float)):
                    assert math.isfinite(v)
    # spot checks against the published values (M. Leigh's thesis tables; HEP-JEPA arXiv:2502.03933 as summarised)
    t = R.published_table("mpm.v1_pretraining", pub)
    assert {"inputs": "original", "targets": "vqvae", "ape": "head", "accuracy": 56.8} in t["rows"]
    few = R.published_table("hepjepa.jetclass_fewshot", pub)
    assert {"mode": "finetune", "label_percent": 0.05, "accuracy": 0.564} in few["rows"]
    assert "second-hand" in few["source"]


def test_write_table_writes_result_json_and_markdown(tmp_path):
    rows = [{"mode": "fixed", "n_train": 1000, "accuracy": 0.4}]
    meta = {"profile": "smoke", "keys": ["mode", "n_train"], "metrics": ["accuracy"]}  # a table of ours
    md = R.write_table(tmp_path / "tables", "mpm.nonexistent_table", rows, meta)
    assert md == R.render_table("mpm.nonexistent_table", rows, meta)
    assert (tmp_path / "tables/mpm.nonexistent_table.md").read_text() == md
    res = R.read_result(tmp_path / "tables/mpm.nonexistent_table.json")
    assert res["rows"] == rows and res["meta"] == {**meta, "expected_rows": [{"mode": "fixed", "n_train": 1000}]}
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["mpm.nonexistent_table.json",
                                                                         "mpm.nonexistent_table.md"]


def test_table_with_fewer_than_three_seeds_says_it_is_underpowered():
    two = [{"mode": "fixed", "n_train": 1000, "accuracy": a, "auc": 0.7} for a in (0.30, 0.32)]
    text = R.render_table("mpm.toy", two, {"profile": "mini"}, published=PUB)
    assert "Underpowered at this scale: at most 2 seed(s) per cell" in text
    three = two + [{"mode": "fixed", "n_train": 1000, "accuracy": 0.31, "auc": 0.7}]
    assert "Underpowered" not in R.render_table("mpm.toy", three, {"profile": "mini"}, published=PUB)


def test_steps_table_shows_the_training_rate_a_step_recorded(tmp_path):
    runs = tmp_path / "runs"
    (runs / "m" / "pre").mkdir(parents=True)
    (runs / "m" / "pre" / "done.json").write_text(json.dumps({"steps": 10, "jets_per_s": 436.2}))
    (runs / "status.tsv").write_text(f"m/pre\tdone\t12\tlogs/p.log\t\tstep\t{runs / 'm' / 'pre'}\n"
                                     "m/old\tdone\t3\tlogs/o.log\t\tstep\n")  # an old 6-column line still reads
    status = report.read_status(runs)
    assert report.step_rate(status["m/pre"]["out"]) == "436" and report.step_rate(status["m/old"]["out"]) == ""
    path, _ = report.build_results_md(runs, "mini", tmp_path / "res", published=PUB, claims_path=False)
    assert "| m/pre | done | 12 | 436 | logs/p.log |" in path.read_text()
