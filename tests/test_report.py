"""RESULTS.md builder (common/results/report.py): the report of a fixed small run is byte-identical to the text the builder
produced before it moved out of common/results/tables.py (tests/fixtures/report_RESULTS.md, generated once by that code)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "report_RESULTS.md"

PUB = {
    "mpm": {
        "toy": {"title": "toy accuracy table", "source": "Someone et al., arXiv:0000.00000, Table 9", "cite": "Someone",
                "keys": ["mode", "n_train"], "metrics": ["accuracy", "auc"], "percent": ["accuracy"],
                "rows": [{"mode": "fixed", "n_train": 1000, "accuracy": 44.6, "auc": None},
                         {"mode": "scratch", "n_train": 1000, "accuracy": 39.7, "auc": 0.8},
                         {"mode": "ParT", "n_train": 1000, "accuracy": 50.0, "auc": {"value": 0.9, "err": 0.01},
                          "ours": False}]},
        "failing": {"title": "a table whose step failed", "source": "Someone, arXiv:0000.00000, Table 2",
                    "keys": ["model"], "metrics": ["accuracy"], "rows": [{"model": "a", "accuracy": 0.5}]},
    },
    "omnijet": {"unselected": {"title": "not selected", "source": "Other, arXiv:0000.00001, Table 1",
                               "keys": ["model"], "metrics": ["auc"], "rows": []}},
    "hepjepa": {"other": {"title": "t", "source": "s, arXiv:0000.00002", "keys": ["model"], "metrics": ["accuracy"],
                          "rows": [{"model": "x", "accuracy": 0.7}]}},
}


def make_run(runs: Path, write_result) -> None:
    """A small run: three tables with result files (one of ours without a published table, one reference), one
    failed step, one step not selected, a table no step produces, a training rate and a plot."""
    rows = [{"mode": "fixed", "n_train": 1000, "accuracy": a, "auc": u, "seed": s}
            for s, (a, u) in enumerate(((0.30, 0.70), (0.32, 0.72), (0.31, 0.71)))]
    rows += [{"mode": "scratch", "n_train": 100, "accuracy": a, "auc": u, "seed": s}   # seed 2 of this cell: none
             for s, (a, u) in enumerate(((0.2, 0.9), (0.25, 0.8)))]
    write_result(runs / "mpm" / "tables" / "mpm.toy.json", "mpm.toy", rows,
                 {"profile": "mini", "dataset": "simulated JetClass", "scale": {"train": 500}, "seeds": [0, 1, 2],
                  "class_order": ["QCD", "Tbqq"], "notes": "A note."})
    write_result(runs / "mpm" / "tables" / "mpm.extra.json", "mpm.extra",
                 [{"variant": "v", "accuracy": 0.123}], {"profile": "mini", "title": "ours only",
                                                         "keys": ["variant"], "metrics": ["accuracy"]})
    write_result(runs / "reference" / "reference.part.json", "reference.part",
                 [{"model": "ParT", "accuracy": 0.7134}], {"title": "Supervised reference", "keys": ["model"],
                                                           "metrics": ["accuracy"], "dataset": "sim"})
    (runs / "mpm" / "pre").mkdir(parents=True)
    (runs / "mpm" / "pre" / "done.json").write_text(json.dumps({"steps": 10, "jets_per_s": 436.2}))
    (runs / "mpm" / "pre" / "loss.png").write_bytes(b"\x89PNG fake")
    (runs / "status.tsv").write_text(
        f"mpm/pre\tdone\t12\tlogs/p.log\t\tstep\t{runs / 'mpm' / 'pre'}\n"
        "mpm/ft\tdone\t5\tlogs/ft.log\tmpm.toy\tstep\t\n"
        "mpm/fail\tstarted\t0\tlogs/f.log\tmpm.failing\tstep\t\n"
        "mpm/fail\tfailed\t3\tlogs/f.log\tmpm.failing\tstep\t\n"
        "omnijet/x\tnot-selected\t0\tlogs/x.log\tomnijet.unselected\tstep\t\n"
        "mpm/tables\tdone\t1\tlogs/t.log\tmpm.toy,mpm.failing,hepjepa.other\talways\t\n")


def test_results_md_is_byte_identical_to_the_builder_before_the_split(tmp_path):
    from common.results import report
    from common.results import tables as results
    runs = tmp_path / "runs"
    make_run(runs, functools.partial(results.write_result, published=PUB))
    path, n_missing = report.build_results_md(runs, "mini", tmp_path / "res", published=PUB, claims_path=False)
    # the intended differences: the command line that names the builder, and the page on the simulation (docs/)
    expected = FIXTURE.read_text().replace("python -m common.results.tables", "python -m common.results.report")
    expected = expected.replace("See README.md, section 'The simulated data'.",
                                "See docs/simulation.md for how the simulation differs from the real datasets.")
    assert path.read_text().replace(str(runs), "<RUNS>") == expected
    assert n_missing == 2


def test_sections_follow_published_order_then_other_prefixes_alphabetically():
    from common.results.report import sections

    assert sections(["mpm.a", "omnijet.b", "hepjepa.c"], ["zeta.x", "mpm.extra", "reference.part"]) == [
        "mpm", "omnijet", "hepjepa", "reference", "zeta"]


def test_old_entry_point_is_gone():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "common.results.tables", "--runs", ".", "--profile", "smoke"],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode != 0 and not hasattr(__import__("common.results.tables").results, "main")
