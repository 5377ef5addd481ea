"""Result files and results tables: our numbers beside the published ones.

- `write_result(path, table_id, rows, meta)`: one JSON file per (partial) table, written atomically by a method's
  evaluation or table script. A row is a dict of key columns and metric values; a metric value may be a float, a list
  of floats (one per seed), None (the run should have produced it and did not: flagged **missing**) or a string
  (deliberately not produced, e.g. "not run by the kit": printed as "– (<string>)"). Several files, or several rows
  with the same keys (one per seed), are merged and shown as mean ± std. Write each row once: either per-step files
  or one file from the method's table script, not both.
- `render_table(table_id, rows, meta)`: a Markdown table with, for every metric, an "ours" column and a
  "published (source)" column taken from `common/published.yaml`, the one cited data file of published numbers.
The report of a whole run (RESULTS.md) is built from these files by common/report.py.

Units: ours are in natural units (accuracy as a fraction, as common.metrics returns it). A published table lists in
`percent:` the metrics the paper prints in percent; both columns are then shown in percent.
"""
from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from pathlib import Path

import yaml

PUBLISHED_PATH = Path(__file__).with_name("published.yaml")
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
        raise ValueError(f"{path}: expected a mapping of method sections (mpm, omnijet, ...), "
                         f"got {type(data).__name__}")
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
    """Every published table id, "method.table", in published.yaml order."""
    published = load_published() if published is None else published
    return [f"{m}.{t}" for m, tables in published.items() for t in (tables or {})]


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


def canon_key(v):
    """Canonical form of a key value so that 1000, 1000.0 and "1e3" match."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v).strip().lower()


def metric_values(v) -> list[float]:
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
        vals = metric_values(v)
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
        k = tuple(canon_key(row.get(key)) for key in keys)
        g = grouped.setdefault(k, {"_keys": {key: row.get(key) for key in keys}, **{m: [] for m in metrics}})
        for m in metrics:
            v = row.get(m)
            if isinstance(v, dict) and "mean" in v:
                g[m] = v
            elif isinstance(g[m], list):
                g[m].extend(v if isinstance(v, (list, tuple)) else [v])
    return grouped


def render_table(table_id: str, rows: list[dict], meta: dict, **kw) -> str:
    """The Markdown of render_table_counted (the tables.py writers need no count)."""
    return render_table_counted(table_id, rows, meta, **kw)[0]


def render_table_counted(table_id: str, rows: list[dict], meta: dict, *, published: dict | None = None,
                         missing_reason: str | None = None, not_run: str | None = None) -> tuple[str, int]:
    """(Markdown table, number of cells flagged **missing**): key columns, then per metric "ours" and
    "published (source)".

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
    pub = OrderedDict((tuple(canon_key(r.get(k)) for k in keys), r) for r in entry.get("rows") or [])
    ref_maps = [{tuple(canon_key(r.get(k)) for k in keys): r for r in ref.get("rows") or []} for ref in refs]
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

    n_seeds = [len(metric_values(g[m])) for g in ours.values() for m in metrics if isinstance(g[m], list)]
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
    return "\n".join(lines) + "\n", n_missing


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


if __name__ == "__main__":
    raise SystemExit("common.results is the result-file library; RESULTS.md is built by `python -m common.report`")
