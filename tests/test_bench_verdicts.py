"""bench/verdicts.py: a run's verdicts beside a previous run's, read from a saved JSON or from the claims table that
BENCHMARKS.md recorded for a run whose folder is gone."""
import json

import pytest
from test_hepjepa_convergence import _three_pretraining_runs

from bench import verdicts
from hepjepa import tables

MD = """# Bench

## Fresh-clone default run, then (measured)

Some words.

| longest steps | status | wall s |
|---|---|---|
| hepjepa/ft_jetclass | done | 653 |

| claim | at | ours a | ours b | d ± SE | replicated | verdict |
|---|---|---|---|---|---|---|
| hepjepa_convergence | – | 30 ± 10 (n=3) | 63 ± 12 (n=3) | +33.3 ± 8.8 | 1 pretraining run × 3 fine-tuning seeds | reproduced |
| omnijet_codebook_size | – | 7.8 (n=3) | 16 (n=3) | +8.64 ± 2.4 | 3 tokeniser runs | reproduced |

## Later section

| claim | verdict |
|---|---|
| hepjepa_convergence | contradicted |
"""


def test_markdown_table_under_its_heading_is_read_and_nothing_else(tmp_path):
    md = tmp_path / "B.md"
    md.write_text(MD)
    prev = verdicts.markdown_verdicts(md, "Fresh-clone default run, then (measured)")
    assert prev == {"hepjepa_convergence": {"verdict": "reproduced", "d_se": "+33.3 ± 8.8",
                                            "replicated": "1 pretraining run × 3 fine-tuning seeds"},
                    "omnijet_codebook_size": {"verdict": "reproduced", "d_se": "+8.64 ± 2.4",
                                              "replicated": "3 tokeniser runs"}}
    with pytest.raises(ValueError, match="no heading 'Nope'"):
        verdicts.markdown_verdicts(md, "Nope")
    with pytest.raises(ValueError, match="no table with 'claim' and 'verdict'"):
        verdicts.markdown_verdicts(md, "Bench")


def test_a_run_beside_the_recorded_one_names_each_change(tmp_path, capsys):
    runs = tmp_path / "hepjepa"
    _three_pretraining_runs(runs)
    tables.write_tables(runs, runs / "tables", "mini")
    md = tmp_path / "B.md"
    old = "| omnijet_codebook_size | – | 7.8 (n=3) | 16 (n=3) | +8.64 ± 2.4 | 3 tokeniser runs | reproduced |"
    md.write_text(MD.replace(old, "| omnijet_codebook_size | – | 7.8 | 16 | +8.64 ± 2.4 | 3 | inconclusive |"))
    saved = tmp_path / "v.json"
    assert verdicts.main(["--runs", str(tmp_path), "--previous", f"{md}#Fresh-clone default run, then (measured)",
                          "--save", str(saved)]) == 0
    rows = {ln.split(" | ")[0].strip("| "): ln.split(" | ") for ln in capsys.readouterr().out.splitlines()
            if ln.startswith("| ") and not ln.startswith("| claim")}
    conv = rows["hepjepa_convergence"]   # decided over three pretraining runs now: still reproduced, unchanged
    assert conv[1] == "reproduced" and conv[3] == "reproduced" and conv[-1] == "no |"
    code = rows["omnijet_codebook_size"]  # no token-quality table in this run: not measured, a change
    assert code[1] == "inconclusive" and code[3] == "not measured" and code[-1] == "**yes** |"
    now = json.loads(saved.read_text())["verdicts"]
    assert now["hepjepa_convergence"]["verdict"] == "reproduced" and now["hepjepa_convergence"]["n_a"] == 3
    assert verdicts.load_previous(str(saved)) == now      # the saved file is the next run's --previous
    with pytest.raises(ValueError, match="expected a JSON file saved by bench.verdicts"):
        verdicts.load_previous(str(md))
