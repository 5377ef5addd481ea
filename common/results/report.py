"""RESULTS.md of one run: every results table of the papers, built from the run's result files (common/results/tables.py)
and run_all.sh's step status (<runs>/status.tsv), with the run's plots copied beside it and, below every table the
paper shows as a figure, that figure drawn from the same rows (common/results/figures.py, <out>/figures/<table>.png).

    python -m common.results.report --runs <out> --profile <p> [--out results/<p>] [--strict [--strict-tables ID,ID]]

Sections: the papers' methods in common/results/published.yaml order, then any other table prefix of our result files
(e.g. "reference", the supervised baselines of bench/bench_weaver_part.py) alphabetically.
A table is refused (its cells flagged **missing**, with the reason) when one of its result files is invalid, when
a step that declares it failed or did not finish in this run, or when a step output it was built from
(meta.sources) is gone or changed since; result files not read are listed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

from common.atomic import write_text
from common.cli import cli
from common.results.figures import is_floor_row, table_figure
from common.results.tables import (all_table_ids, changed_sources, collect_results, load_published, merge_meta,
                                   read_status, render_table_counted)

FAILED = ("failed", "skipped-after-failure", "started", "interrupted")  # step states that produced no valid output
STALE = "stale: built from runs that changed or failed"
SECTION_TITLES = {"compare": ": Which pretraining?"}  # sections of tables of ours (common/results/compare.py)


def sections(known: list[str], extra: list[str]) -> list[str]:
    """RESULTS.md sections: the method prefixes (before the first '.') of the published table ids in their order,
    then the other prefixes of our result files' table ids, alphabetically."""
    first = list(dict.fromkeys(t.partition(".")[0] for t in known))
    return first + sorted({t.partition(".")[0] for t in extra} - set(first))


def step_rate(out_dir: str) -> str:
    """Training throughput a step recorded in its done.json (jets/s of its training loop), as text; '' if none."""
    if not out_dir:
        return ""
    try:
        with open(Path(out_dir) / "done.json") as f:
            done = json.load(f)
    except (OSError, json.JSONDecodeError):
        return ""
    rate = done.get("jets_per_s", done.get("jets_per_second")) if isinstance(done, dict) else None
    return f"{rate:,.0f}" if isinstance(rate, (int, float)) and math.isfinite(rate) else ""


def _missing_reason(table_id: str, status: dict[str, dict]) -> tuple[str, bool]:
    """Why a table has no result file; second value False when no step of this profile produces it."""
    # table writers (--always steps) only collect results: a table is produced by the profile when a real step
    # (training, evaluation) declares it
    steps = [(name, s) for name, s in status.items() if table_id in s["tables"] and not s["always"]]
    if not steps:
        return "no step of this profile produces this table", False
    failed = [n for n, s in steps if s["status"] in FAILED]
    if failed:
        return _step_failure(failed[0], status[failed[0]]), True
    unselected = [n for n, s in steps if s["status"] == "not-selected"]
    if unselected:
        return f"step {unselected[0]} was not selected in this run (--table / --only)", True
    return f"step {steps[-1][0]} ran but no result file for this table exists", True


def _step_failure(name: str, s: dict) -> str:
    return f"step {name} {s['status'].replace('started', 'did not finish')}; log: {s['log']}"


def stale_reason(table_id: str, res: dict, status: dict[str, dict], runs_dir) -> str | None:
    """Why a table's result files cannot stand for this run, or None: a step that declares the table (its table
    writer included) failed or did not finish in this run, or a step output a file was built from (meta.sources)
    is gone or changed since the file was written."""
    failed = [n for n, s in status.items() if table_id in s["tables"] and s["status"] in FAILED]
    if failed:
        return f"{STALE}: {_step_failure(failed[0], status[failed[0]])}"
    for path, meta in zip(res["files"], res["metas"]):
        changed = changed_sources(path, meta)
        if changed:
            return f"{STALE}: {changed[0]} is missing or changed since {os.path.relpath(path, runs_dir)} was written"
    return None


def build_results_md(runs_dir, profile: str, out_dir, published: dict | None = None,
                     per_table: dict | None = None, claims_path=None) -> tuple[Path, int]:
    """Write out_dir/RESULTS.md (+ plots/); returns (path, number of flagged missing cells).

    per_table, when given, is filled with {table_id: missing cells}. claims_path: the claims YAML of the Claims
    section (default common/results/claims.yaml; False: no Claims section)."""
    published = load_published() if published is None else published
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    problems: list = []
    results = collect_results(runs_dir, published, problems)
    invalid = {t: path for t, path, _ in problems if t is not None}
    status = read_status(runs_dir)
    refused = {t: r for t, res in results.items() if (r := stale_reason(t, res, status, runs_dir))}
    refused.update({t: f"invalid result file {os.path.relpath(path, runs_dir)} (see 'Result files not read')"
                    for t, path in invalid.items()})
    out_dir.mkdir(parents=True, exist_ok=True)

    body: list[str] = []
    summary: list[str] = []
    not_produced: list[str] = []
    total_missing = 0
    figures: list[str] = []
    known = all_table_ids(published)
    extra = list(dict.fromkeys(t for t in [*results, *invalid] if t not in known and "." in t))
    for method in sections(known, extra):
        ids = [t for t in known + extra if t.partition(".")[0] == method]
        body.append(f"## {method}{SECTION_TITLES.get(method, '')}\n")
        for table_id in ids:
            res = results.get(table_id)
            if table_id in refused:  # every row the refused files hold is flagged, with the reason
                rows = [k for m in (res["metas"] if res else []) for k in m.get("expected_rows") or []]
                text, n = render_table_counted(table_id, [], {"profile": profile, "expected_rows": rows},
                                               published=published, missing_reason=refused[table_id])
                if res:
                    files = ", ".join(os.path.relpath(f, runs_dir) for f in res["files"])
                    text += f"\nRefused result files (under {runs_dir}): {files}\n"
            elif res:
                meta = merge_meta(res["metas"])
                meta.setdefault("profile", profile)
                rows = sorted(res["rows"], key=is_floor_row)  # the method's rows first, the floor's under them
                text, n = render_table_counted(table_id, rows, meta, published=published)
                files = ", ".join(os.path.relpath(f, runs_dir) for f in res["files"])
                text += f"\nResult files (under {runs_dir}): {files}\n"
                fig = table_figure(table_id, res["rows"], out_dir / "figures" / f"{table_id}.png", published,
                                   keys=meta.get("keys"), meta=meta)
                if fig is not None:  # the paper shows this table as a figure (common/results/figures.py)
                    figures.append(fig.name)
                    text += f"\nFigure: [figures/{fig.name}](figures/{fig.name})\n"
            else:
                reason, produced = _missing_reason(table_id, status)
                if not produced:
                    not_produced.append(table_id)
                text, n = render_table_counted(table_id, [], {"profile": profile}, published=published,
                                               **{"missing_reason" if produced else "not_run": reason})
            total_missing += n
            if per_table is not None:
                per_table[table_id] = n
            state = "refused" if table_id in refused else "yes" if res else "no"
            summary.append(f"| {table_id} | {state} | {n} |")
            body.append(text)

    for stale in sorted((out_dir / "figures").glob("*.png")):  # a table with no figure this time keeps no old one
        if stale.name not in figures:
            stale.unlink()
    plots = _copy_plots(runs_dir, out_dir)
    lines = [f"# Results: profile `{profile}`", "",
             f"Generated by `python -m common.results.report --runs {runs_dir} --profile {profile}` from the result files "
             "of that run. Columns marked *ours* come from this run; columns marked *published* come from "
             "`common/results/published.yaml` (each table cites its source). Never read a published column as ours.", ""]
    if profile != "paper":
        lines += ["**These numbers come from simulated data at reduced scale** (Pythia 8 + FastJet + our own "
                  "detector response; no MadGraph, no Delphes), with far fewer jets and training steps than the "
                  "papers. Compare trends (pretrained vs scratch, fixed vs fine-tuned), not absolute values. "
                  "See docs/simulation.md for how the simulation differs from the real datasets.", ""]
    if claims_path is not False:
        from common.results.claims import claims_section  # claims.py reads result files through common.results.tables
        accepted = {t: res for t, res in results.items() if t not in refused}
        lines += claims_section(runs_dir, published, claims_path, accepted)[0]
    lines += ["## Summary", "", f"Flagged missing cells: **{total_missing}**.", "",
              "| table | result file | missing cells |", "|---|---|---|", *summary, ""]
    if not_produced:
        lines += [f"Tables no step of the `{profile}` profile produces: " + ", ".join(not_produced) + ".", ""]
    if problems:
        lines += ["## Result files not read", "", "Invalid files refuse their table (its cells are flagged); other "
                  "files in the result format are not read (only <table_id>.json files are).", ""]
        lines += [f"- {message}" for _, _, message in problems] + [""]
    if status:
        lines += ["## Steps", "", "Wall seconds per step, and the training throughput (jets/s) that a training loop "
                  "recorded in its done.json, measured inside this run.", "",
                  "| step | status | seconds | jets/s | log |", "|---|---|---|---|---|"]
        lines += [f"| {n} | {s['status']} | {s['seconds']} | {step_rate(s.get('out', ''))} | {s['log']} |"
                  for n, s in status.items()]
        lines.append("")
    lines += body
    lines += ["## Plots", ""]
    lines += [f"- [figures/{f}](figures/{f}) (table figure)" for f in figures]
    lines += [f"- [{p}]({p})" for p in plots] or ([] if figures else ["(no plots were produced)"])
    path = out_dir / "RESULTS.md"
    write_text(path, "\n".join(lines) + "\n")
    return path, total_missing


def _copy_plots(runs_dir: Path, out_dir: Path) -> list[str]:
    """Copy every PNG of the run to out_dir/plots/<same relative path>; return the relative paths."""
    out = []
    for png in sorted(runs_dir.rglob("*.png")):
        if png.resolve().is_relative_to(out_dir.resolve()):   # --out inside --runs: never copy our own copies
            continue
        rel = png.relative_to(runs_dir)
        dest = out_dir / "plots" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, dest)
        out.append(str(Path("plots") / rel))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write results/<profile>/RESULTS.md from a run's result files.")
    ap.add_argument("--runs", required=True, help="run output directory (run_all.sh --out-dir)")
    ap.add_argument("--profile", required=True, choices=("smoke", "mini", "paper"), help="smoke | mini | paper")
    ap.add_argument("--out", default=None, help="output directory (default results/<profile>)")
    ap.add_argument("--published", default=None, help="published-numbers YAML (default common/results/published.yaml)")
    ap.add_argument("--claims", default=None,
                    help="claims YAML for the Claims section (default common/results/claims.yaml; 'none': no Claims section)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any cell is flagged missing")
    ap.add_argument("--strict-tables", default=None,
                    help="with --strict: only missing cells of these comma-separated tables count")
    args = ap.parse_args(argv)
    if not Path(args.runs).is_dir():
        print(f"common.results.report: run directory {args.runs} "
              f"{'is not a directory' if Path(args.runs).exists() else 'does not exist'}", file=sys.stderr)
        return 2
    out = args.out or os.path.join("results", args.profile)
    blocked = next((p for p in [Path(out), *Path(out).parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ValueError(f"--out {out}: {blocked} is a file, not a folder; give a folder for RESULTS.md (e.g. "
                         f"results/{args.profile})")

    per_table: dict[str, int] = {}
    claims = False if args.claims == "none" else args.claims
    path, n_missing = build_results_md(args.runs, args.profile, out, load_published(args.published), per_table,
                                       claims)
    if args.strict_tables:
        wanted = args.strict_tables.split(",")
        unknown = [t for t in wanted if t not in per_table]
        if unknown:   # a misspelt table id would make --strict pass on nothing
            raise ValueError(f"--strict-tables: {', '.join(unknown)}: no such table in published.yaml or in the "
                             f"run's result files (e.g. {next(iter(per_table), 'mpm.v1_jetclass')}); {path} was "
                             "written, but the strict check cannot pass on a table that does not exist")
        n_missing = sum(per_table.get(t, 0) for t in wanted)
        print(f"wrote {path} ({n_missing} missing cells in {', '.join(wanted)})")
    else:
        print(f"wrote {path} ({n_missing} missing cells)")
    return 1 if (args.strict and n_missing) else 0


if __name__ == "__main__":
    cli(main)
