"""Result files and results tables: our numbers beside the published ones.

- `write_result(path, table_id, rows, meta)`: one JSON file per (partial) table, <table_id>.json, written
  atomically by a method's evaluation or table script. A row is a dict of key columns and metric values; a metric
  value may be a float (within METRIC_RANGES), a list of floats (one per seed), None (the run should have produced it
  and did not: flagged **missing**) or one of REASONS (deliberately not produced: printed as "– (<reason>)"). Every
  file is checked against its table's schema when written and when read (validate_result). Several files, or
  several rows with the same keys (one per seed), are merged and shown as mean ± std. Write each row once: either
  per-step files or one file from the method's table script, not both.
- `render_table(table_id, rows, meta)`: a Markdown table with, for every metric, an "ours" column and a
  "published (source)" column taken from `common/results/published.yaml`, the one cited data file of published numbers.
The report of a whole run (RESULTS.md) is built from these files by common/results/report.py.

Units: ours are in natural units (accuracy as a fraction, as common.training.metrics returns it). A published table lists in
`percent:` the metrics the paper prints in percent; both columns are then shown in percent.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from pathlib import Path

import yaml

from common.atomic import json_default, write_json, write_text

PUBLISHED_PATH = Path(__file__).with_name("published.yaml")
RESULT_FORMAT = "jetfm-result-v1"  # marks our result JSON files among other JSON in a run directory
MIN_SEEDS = 3  # seeds per cell that a comparison needs (the claims rule, common/results/claims.py)


# ---------------------------------------------------------------------------------------------------------------
# published.yaml


def load_published(path: str | os.PathLike | None = None) -> dict:
    """All published tables: {method: {table_name: entry}} (entry: title, source, keys, metrics, rows, ...).

    Read with the kit's strict YAML loader (common.training.config: a key set twice in one mapping is refused, as in
    the run configs) and checked whole: types of every field, one row per key values, and every published value a
    finite number (or null = not published) within its metric's range (METRIC_RANGES, x100 for a `percent:`
    metric). Any problem is a ValueError on one line naming the file, the table and the key."""
    path = Path(path) if path is not None else PUBLISHED_PATH
    data = strict_yaml(path, "published numbers")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of method sections (mpm, omnijet, ...), "
                         f"got {type(data).__name__}")
    for method, tables in data.items():
        if tables is not None and not isinstance(tables, dict):
            raise ValueError(f"{path}: {method}: expected a mapping of tables (name: {{title, source, keys, "
                             f"metrics, rows}}), got {type(tables).__name__}")
        for name, entry in (tables or {}).items():
            _check_entry(path, f"{method}.{name}", entry)
    return data


def strict_yaml(path, what: str):
    """A YAML file of the kit read as the run configs are (common.training.config's loader: a key twice in one
    mapping is refused, `1e-3` is a float, yes/no stay strings); one-line ValueError naming the file otherwise."""
    from common.training.config import DuplicateKeyError, _Loader
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    try:
        with open(path) as f:
            return yaml.load(f, Loader=_Loader)
    except DuplicateKeyError as e:
        raise ValueError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the {what} file ({e})") from None


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)


def _published_value(path, where: str, metric: str, v, percent: bool) -> None:
    """A published value: null, a finite number, or {value, err} of such, within its metric's range."""
    if isinstance(v, dict):
        extra = set(v) - {"value", "mean", "err", "std"}
        if extra or not ({"value", "mean"} & set(v)):
            raise ValueError(f"{path}: {where}: {metric} = {v!r}: expected a number or {{value, err}}")
        for k, x in v.items():
            _published_value(path, where, f"{metric}.{k}", x, percent if k in ("value", "mean") else None)
        return
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{path}: {where}: {metric} = {v!r}: expected a number (null = not published); a note "
                         "belongs in the row's `note`")
    if not math.isfinite(v):
        raise ValueError(f"{path}: {where}: {metric} = {v!r}: expected a finite number (null = not published)")
    if percent is None:   # an error bar: >= 0
        if v < 0:
            raise ValueError(f"{path}: {where}: {metric} = {v!r}: expected a number >= 0")
        return
    lo, hi, _ = metric_range(metric)
    scale = 100.0 if percent else 1.0
    if not lo * scale - ROUNDING <= v <= hi * scale + ROUNDING:
        unit = " (the table lists it under `percent:`)" if percent else \
            (" (a fraction: if the paper prints percent, list the metric under the table's `percent:`)"
             if hi == 1.0 else "")
        raise ValueError(f"{path}: {where}: {metric} = {v!r}: expected a value in [{lo * scale:g}, {hi * scale:g}]"
                         f"{unit}")


def _check_entry(path, table_id, entry) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: table {table_id}: expected a mapping, got {type(entry).__name__}")
    for key in ("title", "source", "keys", "metrics"):
        if key not in entry:
            raise ValueError(f"{path}: table {table_id}: missing required field '{key}'")
    for key in ("title", "source", "cite", "note"):
        if key in entry and not isinstance(entry[key], str) and not (key in ("cite", "note") and entry[key] is None):
            raise ValueError(f"{path}: table {table_id}: {key} = {entry[key]!r}: expected a string")
    for key in ("keys", "metrics"):
        if not _str_list(entry[key]) or not entry[key] and key == "metrics":
            raise ValueError(f"{path}: table {table_id}: {key} = {entry[key]!r}: expected a list of distinct names")
    percent = entry.get("percent") or []
    if not _str_list(percent) or set(percent) - set(entry["metrics"]):
        raise ValueError(f"{path}: table {table_id}: percent = {entry.get('percent')!r}: expected a list of its "
                         f"metrics {entry['metrics']}")
    if not isinstance(entry.get("rows") or [], list):
        raise ValueError(f"{path}: table {table_id}: rows: expected a list of rows")
    _check_rows(path, table_id, entry, entry.get("rows") or [], "row")
    refs = entry.get("references") or []
    if not isinstance(refs, list):
        raise ValueError(f"{path}: table {table_id}: references: expected a list of {{name, source, rows}}")
    for ref in refs:
        if not isinstance(ref, dict) or "name" not in ref or "source" not in ref:
            raise ValueError(f"{path}: table {table_id}: every reference needs 'name' and 'source'")
        if not isinstance(ref.get("rows") or [], list):
            raise ValueError(f"{path}: table {table_id}: reference {ref['name']}: rows: expected a list of rows")
        _check_rows(path, table_id, entry, ref.get("rows") or [], f"reference {ref['name']} row")


def _check_rows(path, table_id, entry, rows, what: str) -> None:
    keys, metrics, percent = entry["keys"], entry["metrics"], set(entry.get("percent") or [])
    seen: dict = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: table {table_id}, {what} {i}: expected a mapping, got {row!r}")
        unknown = set(row) - set(keys) - set(metrics) - {"ours", "note"}
        if unknown:
            raise ValueError(f"{path}: table {table_id}, {what} {i}: fields {sorted(unknown)} are neither keys "
                             f"{keys} nor metrics {metrics}")
        where = f"table {table_id}, {what} {i}"
        for k in keys:
            if not _is_scalar(row.get(k)) or (isinstance(row.get(k), float) and not math.isfinite(row[k])):
                raise ValueError(f"{path}: {where}: {k} = {row.get(k)!r}: expected a key value (string or number)")
        if "ours" in row and not isinstance(row["ours"], bool):
            raise ValueError(f"{path}: {where}: ours = {row['ours']!r}: expected true or false")
        if "note" in row and not isinstance(row["note"], (str, type(None))):
            raise ValueError(f"{path}: {where}: note = {row['note']!r}: expected a string")
        for m in metrics:
            if m in row:
                _published_value(path, where, m, row[m], m in percent)
        k = tuple(canon_key(row.get(key)) for key in keys)
        if k in seen:
            shown = ", ".join(f"{key}={row.get(key)}" for key in keys)
            raise ValueError(f"{path}: table {table_id}, {what} {i} ({shown}): the same key values as {what} "
                             f"{seen[k]}; one published row per cell (keep one)")
        seen[k] = i


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


# The only strings a metric cell may hold: a value deliberately not produced, shown as "– (<reason>)" and never
# flagged missing. A writer uses these constants; a non-finite value kept as a note is "<inf|-inf|nan>: <reason>"
# (non_finite_note).
NOT_RUN_BY_KIT = "not run by the kit"
NO_CODEBOOK = "no codebook"
CLASSIFIER_DISABLED = "classifier disabled in this profile"
NO_FINITE_DIFFERENCE = "no finite difference"
TOO_FEW_TOP_QCD = "too few top/QCD jets in this seed's subset"
NO_BACKGROUND_PASSES = "no background jet passes at this signal efficiency in the test set"
REASONS = (NOT_RUN_BY_KIT, NO_CODEBOOK, CLASSIFIER_DISABLED, NO_FINITE_DIFFERENCE, TOO_FEW_TOP_QCD,
           NO_BACKGROUND_PASSES)

# Allowed values of our metrics, in our units (fractions, not percent): (low, high, +-inf allowed). Looked up by the
# metric's name, then by its first word (auc_macro -> auc, rejection_50 -> rejection, kl_top_vs_qcd -> kl), then
# *_resolution; any other metric must be finite. inf: 1/eps_B or a SIC with no background jet left after the cut,
# a run that never reaches its target (HEP-JEPA arXiv:2502.03933, Figure 2), and a KL with no generated value inside
# the reference range (common/training/metrics.py kl_quantile_binned). Bounds hold to ROUNDING (a KL of equal histograms).
METRIC_RANGES = {
    "accuracy": (0.0, 1.0, False), "balanced_accuracy": (0.0, 1.0, False), "auc": (0.0, 1.0, False),
    "codebook_utilisation": (0.0, 1.0, False), "fraction_outside_reference": (0.0, 1.0, False),
    "ari": (-1.0, 1.0, False),  # adjusted Rand index
    "rejection": (0.0, math.inf, True), "sic": (0.0, math.inf, True), "steps_to_scratch_min": (0.0, math.inf, True),
    "kl": (0.0, math.inf, True), "w1": (0.0, math.inf, False), "resolution": (0.0, math.inf, False),
}
ROUNDING = 1e-9
ROW_FIELDS = ("seed",)  # allowed in every row besides the table's keys and metrics


def metric_range(name: str) -> tuple[float, float, bool]:
    """(low, high, inf allowed) of a metric; unknown names: any finite value."""
    for key in (name, name.split("_")[0], "resolution" if name.endswith("_resolution") else None):
        if key in METRIC_RANGES:
            return METRIC_RANGES[key]
    return -math.inf, math.inf, False


def non_finite_note(v, reason: str):
    """A metric value for a table: a finite number as it is; inf / nan become "<v>: <reason>" (a note shown as such,
    not a missing cell)."""
    if reason not in REASONS:
        raise ValueError(f"non_finite_note: {reason!r} is not one of results.REASONS")
    if isinstance(v, (int, float)) and not math.isfinite(v):
        return f"{v}: {reason}"
    return v


def json_metric(d: dict, key: str):
    """A metric read back from a JSON file the kit wrote: null there is a NaN (common.atomic.write_json writes NaN
    as null), so it comes back as nan, ready for non_finite_note; an absent key stays None (not measured)."""
    if key in d and d[key] is None:
        return math.nan
    return d.get(key)


def _is_reason(text: str) -> bool:
    head, sep, tail = text.partition(": ")
    return text in REASONS or (bool(sep) and head in ("inf", "-inf", "nan") and tail in REASONS)


def table_schema(table_id, meta: dict, published: dict | None = None) -> tuple[list, list, list] | None:
    """(keys, metrics, extra fields) of a table: published.yaml's keys and metrics, or, for a table of ours, those
    its writer declares in meta (keys, metrics); meta.extra_fields: further columns the writer keeps in its rows.
    None when the table is neither."""
    entry = published_table(str(table_id), published)
    if entry is None:
        if not (isinstance(meta.get("keys"), list) and isinstance(meta.get("metrics"), list)):
            return None
        entry = meta
    return list(entry["keys"]), list(entry["metrics"]), list(meta.get("extra_fields") or [])


def _check_value(name: str, v) -> str | None:
    """Why a metric value is invalid, or None."""
    if v is None or (isinstance(v, str) and _is_reason(v)):
        return None
    if isinstance(v, str):
        return f"expected a number, a list of numbers, null or one of the reasons {list(REASONS)}"
    for j, x in enumerate(v if isinstance(v, list) else [v]):
        where = f"seed value {j} is " if isinstance(v, list) else ""
        if x is None:  # a seed list holds one number per seed: a hole would silently lower n
            return f"{where}null; expected one number per seed (a run without a value: null for the whole cell)"
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return "expected a number, a list of numbers, null or a reason string (results.REASONS)"
        if math.isnan(x):  # never dropped silently, never written as a bare NaN (not valid JSON)
            return (f"{where}NaN; expected a number (write null for a missing cell, or "
                    "results.non_finite_note(value, reason))")
        lo, hi, inf_ok = metric_range(name)
        if math.isinf(x) and not inf_ok:
            return f"expected a finite number (in [{lo:g}, {hi:g}])"
        if not lo - ROUNDING <= x <= hi + ROUNDING:
            return f"expected a value in [{lo:g}, {hi:g}]"
    return None


def validate_result(path, data, published: dict | None = None) -> None:
    """Check a result file's content against the schema of its table; ValueError naming the file, row, key, value
    and what was expected, on one line."""
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        raise ValueError(f"{path}: not a result file (format {RESULT_FORMAT!r})")
    table_id, rows, meta = data.get("table_id"), data.get("rows"), data.get("meta")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: meta: expected a mapping, got {type(meta).__name__}")
    schema = table_schema(table_id, meta, published)
    if schema is None:
        raise ValueError(f"{path}: table_id {table_id!r}: expected a table of common/results/published.yaml or one whose "
                         "meta declares keys and metrics")
    keys, metrics, extra = schema
    if not isinstance(rows, list):
        raise ValueError(f"{path}: rows: expected a list of rows, got {type(rows).__name__}")
    allowed = set(keys) | set(metrics) | set(extra) | set(ROW_FIELDS)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {i}: expected a mapping of keys and metrics, got {row!r}")
        for name, v in row.items():
            if name not in allowed:
                raise ValueError(f"{path}: row {i}: {name} = {v!r}: expected one of the keys {keys}, "
                                 f"metrics {metrics} or declared fields {extra + list(ROW_FIELDS)} of {table_id}")
            if name in keys or name == "seed":
                bad = isinstance(v, (list, dict)) or (isinstance(v, float) and not math.isfinite(v))
                why = "expected a key value (string, number or null)" if bad else None
            else:
                why = _check_value(name, v)
            if why:
                raise ValueError(f"{path}: row {i}: {name} = {v!r}: {why}")
    for i, k in enumerate(meta.get("expected_rows") or []):
        if not isinstance(k, dict) or set(k) - set(keys):
            raise ValueError(f"{path}: meta.expected_rows[{i}] = {k!r}: expected a mapping of the keys {keys}")
    _check_replicates(path, table_id, rows, meta, keys, metrics, extra)


def _is_seed(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_replicates(path, table_id, rows, meta, keys, metrics, extra) -> None:
    """Every value of a cell is one seed's, and no seed is counted twice: meta.seeds distinct integers; a row with a
    `seed` holds one value per metric (that seed's, one of meta.seeds when given); a row without one holds one value
    per seed of meta.seeds, in order; and no (row keys, seed) appears twice in the file (a pasted row would be read
    as another replicate). The identity of a replicate also holds the row's *_seed fields (pretrain_seed: one row
    per pretraining run)."""
    seeds = meta.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not all(_is_seed(x) for x in seeds):
            raise ValueError(f"{path}: meta.seeds = {seeds!r}: expected a list of integer seeds >= 0")
        twice = sorted({x for x in seeds if seeds.count(x) > 1})
        if twice:
            raise ValueError(f"{path}: meta.seeds = {seeds!r}: seed(s) {twice} listed twice; the seeds of a table are "
                             "distinct (a repeated seed is the same run again, not a replicate)")
    ids = [f for f in extra if f.endswith("seed")]
    seen: dict = {}
    for i, row in enumerate(rows):
        shown = ", ".join(f"{k}={row.get(k)}" for k in keys)
        if "seed" in row and row["seed"] is not None:
            if not _is_seed(row["seed"]):
                raise ValueError(f"{path}: row {i} ({shown}): seed = {row['seed']!r}: expected an integer seed >= 0")
            if seeds is not None and row["seed"] not in seeds:
                raise ValueError(f"{path}: row {i} ({shown}): seed = {row['seed']!r} is not one of meta.seeds "
                                 f"{seeds}; every value must come from a seed the table lists")
            for m in metrics:
                if isinstance(row.get(m), list) and len(row[m]) != 1:
                    raise ValueError(f"{path}: row {i} ({shown}): {m} = {row[m]!r}: {len(row[m])} values for the "
                                     f"one seed {row['seed']}; a row with a seed holds that seed's value")
            cell_seeds = [row["seed"]]
        else:
            n = None
            for m in metrics:
                v = row.get(m)
                if isinstance(v, list):
                    if seeds is not None and len(v) != len(seeds):
                        raise ValueError(f"{path}: row {i} ({shown}): {m} = {v!r}: {len(v)} values for the "
                                         f"{len(seeds)} seeds of meta.seeds {seeds}; a cell holds one value per "
                                         "seed, in that order (more values than seeds are not more replicates)")
                    n = len(v) if n is None else n
                    if len(v) != n:
                        raise ValueError(f"{path}: row {i} ({shown}): {m} = {v!r}: {len(v)} values where the row's "
                                         f"other metrics hold {n}; one value per seed")
            cell_seeds = list(seeds) if seeds else [None]
        ident = tuple(canon_key(row.get(k)) for k in keys) + tuple(canon_key(row.get(f)) for f in ids)
        for s in cell_seeds:
            if (ident, s) in seen:
                raise ValueError(f"{path}: row {i} ({shown}): seed {s} already in row {seen[(ident, s)]}; the same "
                                 "cell and seed twice in one file would count one run as two replicates: keep one")
            seen[(ident, s)] = i


def merge_seed_runs(parts: list[tuple[list[dict], list]]) -> tuple[list[dict], list]:
    """Rows of several runs of one table whose seed lists differ (e.g. a pretraining run fine-tuned with seeds 0-2 and
    an extra pretraining run fine-tuned with one seed), as one file's (rows, meta.seeds): the seeds are the union, in
    order; a run whose seeds are not that union has each of its rows split into one row per seed (`seed` set; every
    list field of the row's length, a metric's values over the seeds, gives that seed's value), so that every value
    still matches its seed one to one (validate_result)."""
    union: list = []
    for _, seeds in parts:
        union += [s for s in seeds if s not in union]
    out: list[dict] = []
    for rows, seeds in parts:
        if list(seeds) == union:
            out += rows
            continue
        for r in rows:
            if "seed" in r:
                out.append(r)
                continue
            per_seed = {k for k, v in r.items() if isinstance(v, list) and len(v) == len(seeds)}
            for i, s in enumerate(seeds):
                out.append({**{k: ([v[i]] if k in per_seed else v) for k, v in r.items()}, "seed": s})
    return out, union


def write_result(path, table_id: str, rows: list[dict], meta: dict, published: dict | None = None) -> None:
    """Write one result file atomically, after checking it against its table's schema (validate_result).

    meta should state profile, dataset, scale (jets), seeds and class order. Recorded with it:
    expected_rows: the key values of every row written (plus any the writer passes), so that a row that goes
    missing from the file is flagged, never dropped; sources: the step outputs the rows were read from (paths, as
    the writer passes them), stored with their SHA-256, so that the report can refuse a table whose runs changed."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"write_result({path}): rows must be a list of dicts")
    path = Path(path)
    meta = dict(meta)
    schema = table_schema(table_id, meta, published)
    if schema is not None:
        expected = [{k: r.get(k) for k in schema[0]} for r in list(meta.get("expected_rows") or []) + rows]
        meta["expected_rows"] = list({json.dumps(e, sort_keys=True, default=str): e for e in expected}.values())
    if "sources" in meta:
        meta["sources"] = [source_stamp(p, path.parent) for p in meta["sources"]]
    payload = json.loads(json.dumps({"format": RESULT_FORMAT, "table_id": table_id, "rows": rows, "meta": meta},
                                    default=json_default))
    validate_result(path, payload, published)
    write_json(path, payload, indent=1)


def write_table(out_dir, table_id: str, rows: list[dict], meta: dict) -> str:
    """A method's table writer output: <out_dir>/<table_id>.json (write_result) and <table_id>.md (render_table),
    both atomic. Returns the Markdown."""
    out_dir = Path(out_dir)
    write_result(out_dir / f"{table_id}.json", table_id, rows, meta)
    md = render_table(table_id, rows, meta)
    write_text(out_dir / f"{table_id}.md", md)
    return md


def read_json(path, what: str):
    """A step's JSON output (summary.json, result.json, done.json, ...): its content, None when the file does not
    exist, a ValueError naming the file when it cannot be read or is not valid JSON (e.g. truncated)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: {what} is not valid JSON ({e})") from e


def source_stamp(path, base) -> dict:
    """{path (relative to base, the result file's folder), sha256} of one step output a table was built from."""
    path = Path(path)
    return {"path": os.path.relpath(path, base), "sha256": _sha256(path)}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def changed_sources(result_path, meta: dict) -> list[str]:
    """The recorded sources of a result file that no longer exist or whose content changed since it was written."""
    base = Path(result_path).parent
    return [s["path"] for s in meta.get("sources") or [] if _sha256(base / s["path"]) != s.get("sha256")]


class _KeyTwice(ValueError):
    pass


def _no_twice(pairs):
    """A JSON object that sets one key twice (json keeps the last silently): refused."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise _KeyTwice(repr(k))
        out[k] = v
    return out


def read_result(path, published: dict | None = None, *, validate: bool = True) -> dict | None:
    """A result file's content, None when the file is not one of ours (other JSON), a ValueError naming the file
    when it is one of ours (or named <published table id>.json) but unreadable or (validate) outside its table's
    schema."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(), object_pairs_hook=_no_twice)
    except _KeyTwice as e:
        plain = json.loads(path.read_text())
        if (isinstance(plain, dict) and plain.get("format") == RESULT_FORMAT) or \
                path.name[:-len(".json")] in all_table_ids(published):
            raise ValueError(f"{path}: key {e} appears twice in one JSON object (a hand-edited result file?); keep "
                             "one (the kit never writes a key twice)") from None
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if path.name[:-len(".json")] in all_table_ids(published):
            raise ValueError(f"{path}: result file is not valid JSON ({e})") from e
        return None
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        return None
    if validate:
        validate_result(path, data, published)
    return data


def status_records(runs_dir) -> list[tuple[str, dict]]:
    """Every line of run_all.sh's <runs_dir>/status.tsv, in order: [(step, {status, seconds, log, tables, always,
    out})] (an attempt per line: started, done, failed, interrupted, done-earlier, not-selected); [] without the file.

    run_all.sh records the log and output folders relative to the run folder, so a run folder moved or copied
    elsewhere still reads: `out` comes back as a path under runs_dir (`log` as recorded, for display: relative to
    the run folder). An older status.tsv holds absolute paths: an `out` under the folder the run was written in (the
    log column's <out>/logs/<step>.log names it) is mapped to runs_dir as well; other absolute paths (e.g. the data
    folders) are kept."""
    runs = Path(runs_dir)
    path = runs / "status.tsv"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 5 or parts[0] == "step":
            continue
        rows.append(parts)
    old_roots = {str(Path(p[3]).parent.parent) for p in rows
                 if os.path.isabs(p[3]) and Path(p[3]).parent.name == "logs"}

    def here(value: str) -> str:
        if not value:
            return value
        if not os.path.isabs(value):
            return str(runs / value)
        for old in old_roots:
            if value == old or value.startswith(old + "/"):
                return str(runs / os.path.relpath(value, old)) if value != old else str(runs)
        return value

    out = []
    for parts in rows:
        step, status, seconds, log, tables = parts[:5]
        out.append((step, {"status": status, "seconds": seconds, "log": log,
                           "tables": [t for t in tables.split(",") if t],
                           "always": len(parts) > 5 and parts[5] == "always",
                           "out": here(parts[6]) if len(parts) > 6 else ""}))
    return out


def read_status(runs_dir) -> dict[str, dict]:
    """run_all.sh's step status (last line per step wins): {step: {status, seconds, log, tables, always, out}}."""
    return dict(status_records(runs_dir))


def collect_results(runs_dir, published: dict | None = None, problems: list | None = None) -> dict[str, dict]:
    """Every valid result file under runs_dir merged per table: {table_id: {rows, metas, files}}.

    Only files named <table_id>.json (as write_table and the kit's writers name them) are read; another file in the
    result format (e.g. a stray copy x.old.json) is ignored. A table with an invalid file is left out whole.
    problems, when given, receives (table_id or None, path, message) for every ignored or invalid file."""
    published = load_published() if published is None else published
    writers = table_folders(runs_dir)
    found: dict[str, dict] = {}
    invalid: set[str] = set()
    seen: dict[tuple, str] = {}  # (table, row keys, seed) -> the file that holds it
    for path in sorted(Path(runs_dir).rglob("*.json")):
        if path.name == "done.json" or path.stat().st_size > 50_000_000:
            continue
        try:
            data = read_result(path, published, validate=False)
            if data is not None and path.name != f"{data.get('table_id')}.json":
                if problems is not None:
                    problems.append((None, str(path), f"{path}: ignored: a result file of {data.get('table_id')} "
                                                      f"must be named {data.get('table_id')}.json"))
                continue
            if data is not None and not _written_by_a_step(path, data["table_id"], writers):
                if problems is not None:
                    problems.append((None, str(path), f"{path}: ignored: no step of this run writes "
                                                      f"{data['table_id']} into this folder (a copy?)"))
                continue
            if data is not None:
                validate_result(path, data, published)
        except ValueError as e:
            invalid.add(path.name[:-len(".json")])
            if problems is not None:
                problems.append((path.name[:-len(".json")], str(path), str(e)))
            continue
        if data is None:
            continue
        twice = _seen_twice(data, str(path), seen, published)
        if twice:
            invalid.add(data["table_id"])
            if problems is not None:
                problems.append((data["table_id"], str(path), twice))
            continue
        entry = found.setdefault(data["table_id"], {"rows": [], "metas": [], "files": []})
        entry["rows"].extend(data["rows"])
        entry["metas"].append(data.get("meta") or {})
        entry["files"].append(str(path))
    return {t: e for t, e in found.items() if t not in invalid}


def table_folders(runs_dir) -> dict[str, list[Path]] | None:
    """{table_id: output folders of the run_all steps that declare it} from <runs_dir>/status.tsv (None for a table
    that a step declares without a recorded folder); None when the folder holds no status.tsv (results written by
    hand or by a test: every <table_id>.json is read). A table that no step declares is read wherever it lies."""
    status = read_status(runs_dir)
    if not status:
        return None
    out: dict[str, list[Path] | None] = {}
    for s in status.values():
        for t in s["tables"]:
            if not s["out"]:                      # a step whose folder is not recorded: no restriction for t
                out[t] = None
            elif out.get(t, []) is not None:
                out.setdefault(t, []).append(Path(s["out"]).resolve())
    return out


def _written_by_a_step(path: Path, table_id: str, writers: dict | None) -> bool:
    """A result file stands for the run only where a step that declares its table writes: a copy of a tables folder
    (tables.bak/) or a file dropped anywhere else is not read."""
    if writers is None or writers.get(table_id) is None:   # no status.tsv, or no step of it names the folder
        return True
    p = path.resolve()
    return any(p.is_relative_to(d) for d in writers[table_id])


def _seen_twice(data: dict, path: str, seen: dict, published) -> str | None:
    """The error when a (table, row, seed) of this file was already read from another file (e.g. a backup copy of a
    tables folder would count its seeds twice); records this file's cells in `seen` otherwise."""
    table_id, meta = data["table_id"], data.get("meta") or {}
    keys, _, extra = table_schema(table_id, meta, published)
    ids = [f for f in extra if f.endswith("seed")]  # pretrain_seed: rows of two pretraining runs are two cells
    cells = []
    for row in data["rows"]:
        k = tuple(canon_key(row.get(key)) for key in keys) + tuple(canon_key(row.get(f)) for f in ids)
        for seed in ([row["seed"]] if "seed" in row else list(meta.get("seeds") or [None])):
            cells.append(((table_id, k, canon_key(seed)), row, seed))
    for cell, row, seed in cells:
        other = seen.get(cell)
        if other is not None and other != path:
            shown = ", ".join(f"{key}={row.get(key)}" for key in keys)
            return (f"{path}: table {table_id}, row ({shown}), seed {seed}: also in {other}; the same cell from two "
                    "files (a copy of a result folder?) is refused, not counted twice: remove one of them")
    for cell, _, _ in cells:
        seen.setdefault(cell, path)
    return None


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
    At any scale, a row that meta.expected_rows lists (write_result records every row it writes) and that the rows
    do not hold is flagged missing in the main table.
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
    written = OrderedDict((tuple(canon_key(r.get(k)) for k in keys), r) for r in meta.get("expected_rows") or [])

    # Main table: our rows, every row the result files say they hold (write_result records them: a row gone from
    # a file is flagged at any scale), and at paper scale every expected published row, flagged when absent.
    main = list(ours) + [k for k in written if k not in ours]
    main += [k for k in expected if k not in main] if paper and (rows or missing_reason) else []
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
            key_vals = o_row["_keys"] if o_row else written.get(k) or {kk: p_row.get(kk) for kk in keys}
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
    """One meta for several result files of a table: seeds, expected_rows and sources united, the distinct notes
    joined (e.g. a method's and the jet-observables floor's, common/results/floor.py), other fields from the first that has
    them."""
    if not metas:
        return {}
    out: dict = {}
    united: dict[str, list] = {"seeds": [], "expected_rows": [], "sources": []}
    notes: list[str] = []
    for m in metas:
        if m.get("notes") and m["notes"] not in notes:
            notes.append(m["notes"])
        for k, v in m.items():
            if k == "notes":
                continue
            if k in united:
                for s in (v if isinstance(v, (list, tuple)) else [v]):
                    if s not in united[k]:
                        united[k].append(s)
            else:
                out.setdefault(k, v)
    out.update({k: v for k, v in united.items() if v})
    if notes:
        out["notes"] = " ".join(notes)
    return out


if __name__ == "__main__":
    raise SystemExit("common.results.tables is the result-file library; RESULTS.md is built by `python -m common.results.report`")
