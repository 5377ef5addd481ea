"""Result files and results tables: our numbers beside the published ones.

Three pieces:
- `write_result(path, table_id, rows, meta)`: one JSON file per (partial) table, written atomically by a method's
  evaluation or table script. A row is a dict of key columns and metric values; a metric value may be a float, a list
  of floats (one per seed), None (the run should have produced it and did not: flagged **missing**) or a string
  (deliberately not produced, e.g. "not run by the kit": printed as "– (<string>)"). Several files, or several rows
  with the same keys (one per seed), are merged and shown as mean ± std. Write each row once: either per-step files
  or one file from the method's table script, not both.
- `render_table(table_id, rows, meta)`: a Markdown table with, for every metric, an "ours" column and a
  "published (source)" column taken from `common/published.yaml`, the one cited data file of published numbers.
- `python -m common.results --runs <out> --profile <p>`: collects every result file of a run and writes
  `results/<p>/RESULTS.md` with every table of the three papers, the data, scale and seeds, cells flagged where a
  number is missing, and the run's plots copied beside it.

Units: ours are in natural units (accuracy as a fraction, as common.metrics returns it). A published table lists in
`percent:` the metrics the paper prints in percent; both columns are then shown in percent.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

import yaml

PUBLISHED_PATH = Path(__file__).with_name("published.yaml")
# sections of RESULTS.md, in order; "reference": supervised baselines of ours with no published table
# (bench/bench_weaver_part.py writes reference.part_weaver), shown after the three methods
METHODS = ("mpm", "omnijet", "hepjepa", "reference")
RESULT_FORMAT = "jetfm-result-v1"  # marks our result JSON files among other JSON in a run directory
MIN_SEEDS = 3  # seeds per cell that a comparison needs (the claims rule, common/claims.py)


# ---------------------------------------------------------------------------------------------------------------
# published.yaml


def load_published(path: str | os.PathLike | None = None) -> dict:
    """All published tables: {method: {table_name: entry}} (entry: title, source, keys, metrics, rows, ...)."""
    path = Path(path) if path is not None else PUBLISHED_PATH
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of method sections ({', '.join(METHODS)}), got {type(data).__name__}")
    for method, tables in data.items():
        for name, entry in (tables or {}).items():
            _check_entry(path, f"{method}.{name}", entry)
    return data


def _check_entry(path, table_id, entry) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: table {table_id}: expected a mapping, got {type(entry).__name__}")
    for key in ("title", "source", "keys", "metrics"):
        if key not in entry:
            raise ValueError(f"{path}: table {table_id}: missing required field '{key}'")
    for i, row in enumerate(entry.get("rows") or []):
        unknown = set(row) - set(entry["keys"]) - set(entry["metrics"]) - {"ours", "note"}
        if unknown:
            raise ValueError(f"{path}: table {table_id}, row {i}: fields {sorted(unknown)} are neither keys "
                             f"{entry['keys']} nor metrics {entry['metrics']}")
    for ref in entry.get("references") or []:
        if "name" not in ref or "source" not in ref:
            raise ValueError(f"{path}: table {table_id}: every reference needs 'name' and 'source'")


def published_table(table_id: str, published: dict | None = None) -> dict | None:
    """The published entry of "method.table", or None when published.yaml has no such table."""
    published = load_published() if published is None else published
    method, _, name = table_id.partition(".")
    return (published.get(method) or {}).get(name)


def all_table_ids(published: dict | None = None) -> list[str]:
    published = load_published() if published is None else published
    return [f"{m}.{t}" for m in METHODS for t in (published.get(m) or {})]


# ---------------------------------------------------------------------------------------------------------------
# result files


def write_result(path, table_id: str, rows: list[dict], meta: dict) -> None:
    """Write one result file atomically. meta should state profile, dataset, scale (jets), seeds and class order."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"write_result({path}): rows must be a list of dicts")
    payload = {"format": RESULT_FORMAT, "table_id": table_id, "rows": rows, "meta": meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=_json_default)
    os.replace(tmp, path)


def write_table(out_dir, table_id: str, rows: list[dict], meta: dict) -> str:
    """A method's table writer output: <out_dir>/<table_id>.json (write_result) and <table_id>.md (render_table),
    both atomic. Returns the Markdown."""
    out_dir = Path(out_dir)
    write_result(out_dir / f"{table_id}.json", table_id, rows, meta)
    md = render_table(table_id, rows, meta)
    tmp = out_dir / f"{table_id}.md.tmp"
    tmp.write_text(md)
    os.replace(tmp, out_dir / f"{table_id}.md")
    return md


def _json_default(x):
    if hasattr(x, "tolist"):  # numpy scalars and arrays, torch tensors
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_result(path) -> dict | None:
    """A result file's content, or None when the JSON file is not one of ours."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        return None
    return data


def collect_results(runs_dir) -> dict[str, dict]:
    """Every result file under runs_dir merged per table: {table_id: {rows, metas, files}}."""
    found: dict[str, dict] = {}
    for path in sorted(Path(runs_dir).rglob("*.json")):
        if path.name == "done.json" or path.stat().st_size > 50_000_000:
            continue
        data = read_result(path)
        if data is None:
            continue
        entry = found.setdefault(data["table_id"], {"rows": [], "metas": [], "files": []})
        entry["rows"].extend(data["rows"])
        entry["metas"].append(data.get("meta") or {})
        entry["files"].append(str(path))
    return found


# ---------------------------------------------------------------------------------------------------------------
# rendering


def _canon(v):
    """Canonical form of a key value so that 1000, 1000.0 and "1e3" match."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v).strip().lower()


def _values(v) -> list[float]:
    """Metric value -> list of floats (None and NaN dropped; inf kept, e.g. a rejection with no background left)."""
    if v is None:
        return []
    if isinstance(v, dict) and "mean" in v:  # already aggregated
        return [float(v["mean"])] if v["mean"] is not None else []
    vals = v if isinstance(v, (list, tuple)) else [v]
    out = []
    for x in vals:
        try:
            x = float(x)
        except (TypeError, ValueError):
            continue
        if not math.isnan(x):
            out.append(x)
    return out


def _auto_digits(x: float) -> int | None:
    """Decimals for a value of this size; None = scientific notation (tiny values)."""
    a = abs(x)
    return 0 if a >= 100 else 1 if a >= 10 else 3 if (a >= 0.01 or a == 0) else None


def _fmt_num(x: float, digits: int | None) -> str:
    return f"{x:.2e}" if digits is None else f"{x:.{digits}f}"


def _fmt_ours(v, percent: bool) -> str | None:
    """Mean ± sample std over seeds; None when there is no finite value."""
    if isinstance(v, dict) and "mean" in v and v.get("std") is not None:  # aggregated upstream
        mean, std, n = float(v["mean"]), float(v["std"]), int(v.get("n", 2))
    else:
        vals = _values(v)
        if not vals:
            notes = [x for x in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(x, str)]
            return f"– ({notes[0]})" if notes else None  # a string = deliberately not produced
        n_inf = sum(math.isinf(x) for x in vals)
        if n_inf:  # e.g. 1/eps_B when no background jet passes the cut (small test sets)
            sign = "" if all(x > 0 for x in vals if math.isinf(x)) else "±"
            return f"{sign}∞" + (f" (in {n_inf} of {len(vals)} seeds)" if n_inf < len(vals) else "")
        n, mean = len(vals), sum(vals) / len(vals)
        std = math.sqrt(sum((x - mean) ** 2 for x in vals) / (n - 1)) if n > 1 else None
    if percent:
        mean, std = 100 * mean, (None if std is None else 100 * std)
    d = 1 if percent else _auto_digits(mean)
    return _fmt_num(mean, d) if std is None else f"{_fmt_num(mean, d)} ± {_fmt_num(std, d)} (n={n})"


def _fmt_published(v) -> str:
    if v is None:
        return "not published"
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        mean, err = v.get("value", v.get("mean")), v.get("err", v.get("std"))
        return f"{mean} ± {err}" if err is not None else f"{mean}"
    return f"{v}"


def _fmt_key(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _short_cite(entry: dict) -> str:
    return entry.get("cite") or entry["source"].split(",")[0].strip()


def aggregate_rows(rows: list[dict], keys: list[str], metrics: list[str]) -> "OrderedDict[tuple, dict]":
    """Group rows by their key values; collect each metric's per-seed values in a list."""
    grouped: "OrderedDict[tuple, dict]" = OrderedDict()
    for row in rows:
        k = tuple(_canon(row.get(key)) for key in keys)
        g = grouped.setdefault(k, {"_keys": {key: row.get(key) for key in keys}, **{m: [] for m in metrics}})
        for m in metrics:
            v = row.get(m)
            if isinstance(v, dict) and "mean" in v:
                g[m] = v
            elif isinstance(g[m], list):
                g[m].extend(v if isinstance(v, (list, tuple)) else [v])
    return grouped


def render_table(table_id: str, rows: list[dict], meta: dict, *, published: dict | None = None,
                 missing_reason: str | None = None, not_run: str | None = None) -> str:
    """Markdown table: key columns, then per metric "ours" and "published (source)".

    rows: our rows. A metric without a value is flagged **missing**. When rows is empty, either `missing_reason`
    says why (the producing step failed: flagged) or `not_run` says why the profile does not produce this table
    (not flagged).
    meta: profile, dataset, scale, seeds, class_order, notes.
    At paper scale every published row is expected, and one we did not produce is flagged missing. The reduced
    profiles run smaller label grids; published rows outside them are listed in a second, published-only table.
    """
    entry = published_table(table_id, published)
    if entry is None:  # a table of ours with no published counterpart: derive columns from the rows
        keys = list(meta.get("keys") or []) or _guess_keys(rows)
        metrics = meta.get("metrics") or sorted({k for r in rows for k in r} - set(keys) - {"seed"})
        entry = {"title": meta.get("title", table_id), "source": "no published counterpart", "keys": keys,
                 "metrics": metrics, "rows": []}
    keys, metrics = list(entry["keys"]), list(entry["metrics"])
    percent = set(entry.get("percent") or [])
    refs = entry.get("references") or []
    profile = meta.get("profile", "?")

    ours = aggregate_rows(rows, keys, metrics)
    pub = OrderedDict((tuple(_canon(r.get(k)) for k in keys), r) for r in entry.get("rows") or [])
    ref_maps = [{tuple(_canon(r.get(k)) for k in keys): r for r in ref.get("rows") or []} for ref in refs]
    paper = profile == "paper"
    expected = [k for k in pub if pub[k].get("ours") is not False]  # rows the paper-scale run must produce

    # Main table: our rows (at paper scale also every expected published row, flagged when absent).
    main = list(ours) + ([k for k in expected if k not in ours] if paper and (rows or missing_reason) else [])
    placeholder = not rows and missing_reason is not None and not main  # failed, and no grid to show: one row

    cite = _short_cite(entry)
    lines = [f"### {table_id}: {entry['title']}", "", f"Published: {entry['source']}."]
    for ref in refs:
        lines.append(f"Reference '{ref['name']}': {ref['source']}.")
    if entry.get("note"):
        lines.append(f"Note: {entry['note'].strip()}")
    lines.append("")
    lines.append(f"Not reproduced by the {profile} profile: {not_run}." if not rows and not_run else _meta_line(meta))

    n_seeds = [len(_values(g[m])) for g in ours.values() for m in metrics if isinstance(g[m], list)]
    n_seeds = [n for n in n_seeds if n]
    if n_seeds and max(n_seeds) < MIN_SEEDS:
        lines.append(f"Underpowered at this scale: at most {max(n_seeds)} seed(s) per cell, fewer than the "
                     f"{MIN_SEEDS} a comparison needs (the claims rule); differences in this table decide nothing.")

    n_missing = 0
    if main or placeholder:
        header = list(keys)
        for m in metrics:
            unit = " [%]" if m in percent else ""
            header += [f"{m}{unit} ours", f"{m}{unit} published ({cite})"] + [f"{m}{unit} {r['name']}" for r in refs]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for k in main or [None]:
            o_row, p_row = ours.get(k), pub.get(k, {})
            key_vals = o_row["_keys"] if o_row else {kk: p_row.get(kk) for kk in keys}
            cells = [_fmt_key(key_vals.get(kk)) for kk in keys]
            for m in metrics:
                cell = _fmt_ours(o_row[m], m in percent) if o_row is not None else None
                if cell is None:
                    cell = f"**missing** ({missing_reason or ('row not produced by the run' if o_row is None else 'the run produced no value')})"
                    n_missing += 1
                cells += [cell, _fmt_published(p_row.get(m))] + [_fmt_published(rm.get(k, {}).get(m)) for rm in ref_maps]
            lines.append("| " + " | ".join(cells) + " |")

    # Published rows this run did not produce (other label grid, literature baselines): published columns only.
    rest = [k for k in pub if k not in main]
    shown = [k for k in rest if any(pub[k].get(m) is not None or any(rm.get(k, {}).get(m) is not None
                                                                      for rm in ref_maps) for m in metrics)]
    if shown:
        what = "Published values" if not rows else f"Published rows not in the {profile} run"
        lines += ["", f"{what} (no 'ours' column: this run did not produce these rows):", ""]
        header = list(keys)
        for m in metrics:
            unit = " [%]" if m in percent else ""
            header += [f"{m}{unit} published ({cite})"] + [f"{m}{unit} {r['name']}" for r in refs]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for k in shown:
            p_row = pub[k]
            cells = [_fmt_key(p_row.get(kk)) for kk in keys]
            if p_row.get("ours") is False:
                cells[0] += " (literature)"
            for m in metrics:
                cells += [_fmt_published(p_row.get(m))] + [_fmt_published(rm.get(k, {}).get(m)) for rm in ref_maps]
            lines.append("| " + " | ".join(cells) + " |")
    if len(rest) > len(shown):
        lines += ["", f"{len(rest) - len(shown)} further row(s) of the paper's table have no published value."]
    render_table.last_missing = n_missing  # for the aggregator's summary
    return "\n".join(lines) + "\n"


render_table.last_missing = 0


def _guess_keys(rows):
    if not rows:
        return []
    return [k for k, v in rows[0].items() if isinstance(v, str) or k in ("mode", "n_train", "seed")][:3]


def _meta_line(meta: dict) -> str:
    if not meta:
        return "Ours: no run result."
    parts = []
    for key, label in (("profile", "profile"), ("dataset", "data"), ("scale", "scale"), ("seeds", "seeds"),
                       ("class_order", "class order")):
        if meta.get(key) not in (None, "", []):
            v = meta[key]
            if isinstance(v, (list, tuple)):
                v = ", ".join(str(x) for x in v)
            elif isinstance(v, dict):
                v = ", ".join(f"{a}={b}" for a, b in v.items())
            parts.append(f"{label}: {v}")
    line = "Ours: " + "; ".join(parts) + "." if parts else "Ours: (no meta data)."
    if meta.get("notes"):
        line += f" {meta['notes']}"
    return line


def merge_meta(metas: list[dict]) -> dict:
    """One meta for several result files of a table: seeds united, other fields from the first that has them."""
    if not metas:
        return {}
    out: dict = {}
    seeds: list = []
    for m in metas:
        for k, v in m.items():
            if k == "seeds":
                for s in (v if isinstance(v, (list, tuple)) else [v]):
                    if s not in seeds:
                        seeds.append(s)
            else:
                out.setdefault(k, v)
    if seeds:
        out["seeds"] = seeds
    return out


# ---------------------------------------------------------------------------------------------------------------
# aggregator: results/<profile>/RESULTS.md


def read_status(runs_dir) -> dict[str, dict]:
    """run_all.sh's step status (last line per step wins): {step: {status, seconds, log, tables, always, out}}."""
    path = Path(runs_dir) / "status.tsv"
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 5 or parts[0] == "step":
            continue
        step, status, seconds, log, tables = parts[:5]
        out[step] = {"status": status, "seconds": seconds, "log": log,
                     "tables": [t for t in tables.split(",") if t],
                     "always": len(parts) > 5 and parts[5] == "always", "out": parts[6] if len(parts) > 6 else ""}
    return out


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
    failed = [n for n, s in steps if s["status"] in ("failed", "skipped-after-failure", "started", "interrupted")]
    if failed:
        s = status[failed[0]]
        return f"step {failed[0]} {s['status'].replace('started', 'did not finish')}; log: {s['log']}", True
    unselected = [n for n, s in steps if s["status"] == "not-selected"]
    if unselected:
        return f"step {unselected[0]} was not selected in this run (--table / --only)", True
    return f"step {steps[-1][0]} ran but no result file for this table exists", True


def build_results_md(runs_dir, profile: str, out_dir, published: dict | None = None,
                     per_table: dict | None = None, claims_path=None) -> tuple[Path, int]:
    """Write out_dir/RESULTS.md (+ plots/); returns (path, number of flagged missing cells).

    per_table, when given, is filled with {table_id: missing cells}. claims_path: the claims YAML of the Claims
    section (default common/claims.yaml; False: no Claims section)."""
    published = load_published() if published is None else published
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    results = collect_results(runs_dir)
    status = read_status(runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    body: list[str] = []
    summary: list[str] = []
    not_produced: list[str] = []
    total_missing = 0
    known = all_table_ids(published)
    extra = [t for t in results if t not in known]
    for method in METHODS:
        ids = [t for t in known if t.startswith(method + ".")] + [t for t in extra if t.startswith(method + ".")]
        if not ids:
            continue
        body.append(f"## {method}\n")
        for table_id in ids:
            res = results.get(table_id)
            if res:
                meta = merge_meta(res["metas"])
                meta.setdefault("profile", profile)
                text = render_table(table_id, res["rows"], meta, published=published)
                files = ", ".join(os.path.relpath(f, runs_dir) for f in res["files"])
                text += f"\nResult files (under {runs_dir}): {files}\n"
            else:
                reason, produced = _missing_reason(table_id, status)
                if produced:
                    text = render_table(table_id, [], {"profile": profile}, published=published,
                                        missing_reason=reason)
                else:
                    not_produced.append(table_id)
                    text = render_table(table_id, [], {"profile": profile}, published=published, not_run=reason)
            n = render_table.last_missing
            total_missing += n
            if per_table is not None:
                per_table[table_id] = n
            summary.append(f"| {table_id} | {'yes' if res else 'no'} | {n} |")
            body.append(text)

    plots = _copy_plots(runs_dir, out_dir)
    lines = [f"# Results: profile `{profile}`", "",
             f"Generated by `python -m common.results --runs {runs_dir} --profile {profile}` from the result files "
             "of that run. Columns marked *ours* come from this run; columns marked *published* come from "
             "`common/published.yaml` (each table cites its source). Never read a published column as ours.", ""]
    if profile != "paper":
        lines += ["**These numbers come from simulated data at reduced scale** (Pythia 8 + FastJet + our own "
                  "detector response; no MadGraph, no Delphes), with far fewer jets and training steps than the "
                  "papers. Compare trends (pretrained vs scratch, fixed vs fine-tuned), not absolute values. "
                  "See README.md, section 'The simulated data'.", ""]
    if claims_path is not False:
        from common.claims import claims_section  # claims.py reads result files through this module
        lines += claims_section(runs_dir, published, claims_path)[0]
    lines += ["## Summary", "", f"Flagged missing cells: **{total_missing}**.", "",
              "| table | result file | missing cells |", "|---|---|---|", *summary, ""]
    if not_produced:
        lines += [f"Tables no step of the `{profile}` profile produces: " + ", ".join(not_produced) + ".", ""]
    if status:
        lines += ["## Steps", "", "Wall seconds per step, and the training throughput (jets/s) that a training loop "
                  "recorded in its done.json, measured inside this run.", "",
                  "| step | status | seconds | jets/s | log |", "|---|---|---|---|---|"]
        lines += [f"| {n} | {s['status']} | {s['seconds']} | {step_rate(s.get('out', ''))} | {s['log']} |"
                  for n, s in status.items()]
        lines.append("")
    lines += body
    lines += ["## Plots", ""]
    lines += [f"- [{p}]({p})" for p in plots] or ["(no plots were produced)"]
    path = out_dir / "RESULTS.md"
    tmp = path.with_name("RESULTS.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path, total_missing


def _copy_plots(runs_dir: Path, out_dir: Path) -> list[str]:
    """Copy every PNG of the run to out_dir/plots/<same relative path>; return the relative paths."""
    out = []
    for png in sorted(runs_dir.rglob("*.png")):
        rel = png.relative_to(runs_dir)
        dest = out_dir / "plots" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, dest)
        out.append(str(Path("plots") / rel))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write results/<profile>/RESULTS.md from a run's result files.")
    ap.add_argument("--runs", required=True, help="run output directory (run_all.sh --out-dir)")
    ap.add_argument("--profile", required=True, help="smoke | mini | paper")
    ap.add_argument("--out", default=None, help="output directory (default results/<profile>)")
    ap.add_argument("--published", default=None, help="published-numbers YAML (default common/published.yaml)")
    ap.add_argument("--claims", default=None,
                    help="claims YAML for the Claims section (default common/claims.yaml; 'none': no Claims section)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any cell is flagged missing")
    ap.add_argument("--strict-tables", default=None,
                    help="with --strict: only missing cells of these comma-separated tables count")
    args = ap.parse_args(argv)
    if not Path(args.runs).is_dir():
        print(f"common.results: run directory {args.runs} does not exist", file=sys.stderr)
        return 2
    out = args.out or os.path.join("results", args.profile)
    per_table: dict[str, int] = {}
    claims = False if args.claims == "none" else args.claims
    path, n_missing = build_results_md(args.runs, args.profile, out, load_published(args.published), per_table,
                                       claims)
    if args.strict_tables:
        wanted = args.strict_tables.split(",")
        n_missing = sum(per_table.get(t, 0) for t in wanted)
        print(f"wrote {path} ({n_missing} missing cells in {', '.join(wanted)})")
    else:
        print(f"wrote {path} ({n_missing} missing cells)")
    return 1 if (args.strict and n_missing) else 0


if __name__ == "__main__":
    sys.exit(main())
