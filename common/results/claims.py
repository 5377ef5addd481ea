"""The papers' headline claims, decided from a run's result files by one rule (the Claims section of RESULTS.md).

A claim compares two cells of one results table (common/results/claims.yaml): side `a` is what the paper says is better,
side `b` what it beats, on one metric. Each side is the list of per-seed values that the table's result files hold
for the selected row. The verdict comes from one rule, applied to every claim alike and printed in RESULTS.md:

    d  = mean(a) - mean(b), signed so that d > 0 is the paper's direction ("better: higher" or "lower")
    SE = sqrt(s_a^2 / n_a + s_b^2 / n_b)                    (s: sample standard deviation over seeds, ddof = 1)
    fewer than MIN_SEEDS seeds on either side           -> inconclusive (too few seeds)
    d >  Z * SE                                         -> reproduced
    d < -Z * SE                                         -> contradicted
    otherwise                                           -> inconclusive
    A side holding an infinite value (a run that never reached its target) has no mean; then the claim is reproduced
    only if every seed of a is better than every seed of b, contradicted if every seed of b beats every seed of a.

A claim marked `test: not_worse` (a criterion of ours, said in its text) asks only that a be no worse than b by more
than a stated margin m (`margin:` in claims.yaml, in the claim's units, with its reason). With e = -d the excess of a
over b in the worse direction (a non-inferiority test at Z standard errors):
    fewer than MIN_SEEDS seeds on either side           -> inconclusive (too few seeds)
    e + Z * SE <  m                                     -> reproduced    (within the margin, even at the upper bound)
    e - Z * SE >  m                                     -> contradicted  (worse by more than the margin)
    otherwise                                           -> inconclusive  (e.g. underpowered: Z * SE too wide for m)
`each: <key>` decides the claim for every value of that key the result files hold or say they wrote (e.g. per
observable): not measured if one value is, else contradicted if one is, reproduced if all are, else inconclusive.

Power (the `power` column): Z * SE is the smallest difference this run could have detected; it is printed beside the
published difference |d_pub| (for a not_worse claim: beside the margin). An inconclusive verdict says which it is:
underpowered (Z * SE >= |d_pub|: even the published effect would not have shown) or the effect at this scale is
smaller than published (Z * SE < |d_pub|: the published effect would have shown, the observed one did not).

Unit of replication (the `replicated` column): a claim about a pretrained method (`replicate: pretraining`) is
decided over pretraining runs. A side with pretraining behind it takes one value per run (rows identify their run by
the field `pretrain_seed`; the value is the mean over that run's fine-tuning or probe seeds; rows of side a without
the field count as one run), a side without pretraining (side b rows without `pretrain_seed`, e.g. scratch) keeps one
value per training seed. One pretraining run reads inconclusive ("one pretraining run: replicate over pretraining
runs needs N>=2"); as everywhere, MIN_SEEDS values a side are needed for a verdict. Its `replicated` text, when given,
says what a run's seeds are ({n} = the pretraining runs, {k} = the seeds per run, e.g. "1-3"; a side without
pretraining is added as "b: <n> seeds (no pretraining)"). Any other claim states its unit in `replicated` (e.g.
"1 pretraining run x {n} fine-tuning seeds", {n} = the seeds per side).

The published value of the same comparison is read from common/results/published.yaml (never typed here).

    python -m common.results.claims --runs runs/mini          # print the Claims section of a run
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from common.cli import cli
from common.results.tables import (MIN_SEEDS, aggregate_rows, canon_key, collect_results, load_published, metric_values,
                                   published_table, strict_yaml)

CLAIMS_PATH = Path(__file__).with_name("claims.yaml")
Z = 2.0        # the difference must exceed Z standard errors
VERDICTS = ("reproduced", "contradicted", "inconclusive", "not measured")
SELECT = {"min": 0, "second_min": 1, "max": -1, "max_both": -1}  # `at:` / side values that pick the smallest, second smallest,
                                                # largest value (position in the sorted values)


@dataclass
class Verdict:
    claim: dict
    a: list          # per-seed values of side a (ours)
    b: list
    at: dict         # the shared key values that were selected (ours)
    d: float | None  # signed difference of the means (> 0: the paper's direction)
    se: float | None
    verdict: str
    why: str
    published: str   # the published comparison, as text
    replicated: str = ""  # what the values of a side replicate (pretraining runs, fine-tuning seeds, ...)
    published_d: float | None = None  # the published difference, signed as d (None: not published)
    power: str = ""  # the smallest detectable difference (Z SE) beside |published d| (or the margin), and for an
                     # inconclusive verdict whether it was underpowered


def rule_text() -> str:
    return (f"d = mean(a) − mean(b), signed so that d > 0 is the paper's direction; SE = √(s_a²/n_a + s_b²/n_b) "
            f"with the sample standard deviation over seeds. **reproduced** if d > {Z:g}·SE, **contradicted** if "
            f"d < −{Z:g}·SE, otherwise **inconclusive**; a side with fewer than {MIN_SEEDS} seeds is inconclusive. "
            "Where a seed's value is infinite (e.g. a run that never reached its target) means do not exist: then "
            "reproduced only if every seed of a beats every seed of b, contradicted if the reverse. "
            "A claim marked *no worse* (our criterion, said in its text) has a stated margin m (claims.yaml, with "
            f"its reason): with e = −d the excess of a in the worse direction, reproduced if e + {Z:g}·SE < m, "
            f"contradicted if e − {Z:g}·SE > m, otherwise inconclusive; a claim decided per value of a key is not "
            "measured if one value is. A claim replicated over pretraining runs takes one value per pretraining "
            "run (the mean over its fine-tuning or probe seeds) for each side with pretraining behind it, so one "
            f"pretraining run is inconclusive and a verdict needs {MIN_SEEDS} runs per side. "
            f"Power: {Z:g}·SE is the smallest difference this run could detect, shown beside the published "
            f"difference (or the margin); an inconclusive verdict is *underpowered* where {Z:g}·SE ≥ |published d|, "
            "otherwise the effect at this scale is smaller than published. "
            "The same rule for every claim; the seeds are fixed in the configs before the run.")


def load_claims(path=None, published: dict | None = None) -> list[dict]:
    """claims.yaml, checked against the published tables (table, metric and key names must exist)."""
    path = Path(path) if path is not None else CLAIMS_PATH
    data = strict_yaml(path, "claims")   # the run configs' loader: a key twice (e.g. `better:`) is refused
    if not isinstance(data, dict) or set(data) - {"claims"}:
        raise ValueError(f"{path}: expected a mapping with the one key 'claims' (a list of claims), got "
                         f"{type(data).__name__ if not isinstance(data, dict) else sorted(data)}")
    claims = data.get("claims")
    if not isinstance(claims, list) or not claims:
        raise ValueError(f"{path}: expected a non-empty list under 'claims'")
    published = load_published() if published is None else published
    seen = set()
    for i, c in enumerate(claims):
        where = f"{path}: claims[{i}] ({c.get('id', '?') if isinstance(c, dict) else '?'})"
        if not isinstance(c, dict):
            raise ValueError(f"{where}: expected a mapping")
        missing = {"id", "claim", "source", "table", "metric", "better", "a", "b"} - set(c)
        if missing:
            raise ValueError(f"{where}: missing {sorted(missing)}")
        unknown = set(c) - {"id", "claim", "source", "table", "metric", "better", "a", "b", "at", "note", "replicate",
                            "replicated", "test", "margin", "each"}
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
        for key in ("id", "claim", "source", "table", "metric"):
            if not isinstance(c[key], str) or not c[key].strip():
                raise ValueError(f"{where}: {key} = {c[key]!r}: expected a non-empty string")
        for key in ("note", "each"):
            if c.get(key) is not None and not isinstance(c[key], str):
                raise ValueError(f"{where}: {key} = {c[key]!r}: expected a string")
        if c["id"] in seen:
            raise ValueError(f"{where}: duplicate id")
        seen.add(c["id"])
        if c["better"] not in ("higher", "lower"):
            raise ValueError(f"{where}: better must be 'higher' or 'lower', got {c['better']!r}")
        if c.get("replicate") not in (None, "pretraining"):
            raise ValueError(f"{where}: replicate must be 'pretraining' or absent, got {c['replicate']!r}")
        if c.get("replicated") is not None and not isinstance(c["replicated"], str):
            raise ValueError(f"{where}: replicated: expected the text of what a side's values replicate (e.g. "
                             "'1 pretraining run × {n} fine-tuning seeds')")
        if c.get("test") not in (None, "not_worse"):
            raise ValueError(f"{where}: test must be 'not_worse' or absent, got {c['test']!r}")
        if c.get("test") == "not_worse":
            m = c.get("margin")
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0 or not math.isfinite(m):
                raise ValueError(f"{where}: test not_worse needs `margin:` > 0 in the claim's units (with a comment "
                                 f"saying why), got {m!r}")
        elif "margin" in c:
            raise ValueError(f"{where}: margin is only for test: not_worse")
        entry = published_table(c["table"], published)
        if entry is None:
            raise ValueError(f"{where}: table {c['table']!r} is not in common/results/published.yaml")
        for side in ("a", "b"):
            sel = c[side]
            if not isinstance(sel, dict):
                raise ValueError(f"{where}: {side} must be a mapping of key columns to values")
            for k, v in sel.items():
                if not (v is None or isinstance(v, (str, int, float))) or isinstance(v, bool) or \
                        (isinstance(v, float) and not math.isfinite(v)):
                    raise ValueError(f"{where}: {side}.{k} = {v!r}: expected one key value (a string or number) "
                                     f"or one of {', '.join(SELECT)}")
            metric = sel.get("metric", c["metric"])
            if metric not in entry["metrics"]:
                raise ValueError(f"{where}: metric {metric!r} is not a metric of {c['table']} {entry['metrics']}")
            bad = set(sel) - set(entry["keys"]) - {"metric"}
            if bad:
                raise ValueError(f"{where}: {side} names {sorted(bad)}, not key columns of {c['table']} "
                                 f"{entry['keys']}")
        if c.get("at") is not None and not isinstance(c["at"], dict):
            raise ValueError(f"{where}: at = {c['at']!r}: expected a mapping of key columns to a value or one of "
                             f"{', '.join(SELECT)}")
        for k, v in (c.get("at") or {}).items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool) or \
                    (isinstance(v, float) and not math.isfinite(v)):
                raise ValueError(f"{where}: at.{k} = {v!r}: expected a key value or one of {', '.join(SELECT)}")
        bad = set(c.get("at") or {}) - set(entry["keys"])
        if bad:
            raise ValueError(f"{where}: at names {sorted(bad)}, not key columns of {c['table']} {entry['keys']}")
        if c.get("each") is not None and c["each"] not in entry["keys"]:
            raise ValueError(f"{where}: each = {c['each']!r}, not a key column of {c['table']} {entry['keys']}")
    return claims


# ---------------------------------------------------------------------------------------------------------------
# selection


def _matches(keys: dict, sel: dict) -> bool:
    return all(canon_key(keys.get(k)) == canon_key(v) for k, v in sel.items() if k != "metric" and v not in SELECT)


def _extreme(rows: list, sel: dict) -> list:
    """Within one side, `key: min` / `key: max` keeps the rows with that side's smallest / largest value of key
    (e.g. the largest codebook against the smallest)."""
    for key, how in sel.items():
        if how not in SELECT:
            continue
        v = _choose(sorted({c for c in (canon_key(k.get(key)) for k, _ in rows) if isinstance(c, float)}), how)
        if v is None:
            return []
        rows = [(k, r) for k, r in rows if canon_key(k.get(key)) == v]
    return rows


def _choose(values: list[float], how: str) -> float | None:
    """The value of sorted `values` that selector `how` names (None when there are too few)."""
    i = SELECT[how]
    return values[i] if -len(values) <= i < len(values) else None


def _pick(groups: list[tuple[dict, dict]], claim: dict, shared: bool = False) -> tuple[dict | None, dict | None, dict]:
    """From (key values, row) pairs choose side a's and side b's row at the shared `at` keys.

    `at: {k: min}` takes the smallest value of k that either side has (second_min: the second smallest, max: the
    largest; max_both: the largest value both sides have): a side without that row reads missing, the claim never
    moves to another cell; shared=True (the
    published table, whose grids may differ by side): the smallest value both sides have. An explicit value is a
    fixed selection; keys not named by `at` or a side must agree between the two rows."""
    at = dict(claim.get("at") or {})
    a_rows = [(k, r) for k, r in groups if _matches(k, claim["a"])]
    b_rows = [(k, r) for k, r in groups if _matches(k, claim["b"])]
    a_rows, b_rows = _extreme(a_rows, claim["a"]), _extreme(b_rows, claim["b"])
    fixed = {k: v for k, v in at.items() if v not in SELECT}
    a_rows = [(k, r) for k, r in a_rows if _matches(k, fixed)]
    b_rows = [(k, r) for k, r in b_rows if _matches(k, fixed)]
    chosen = dict(fixed)
    for key, how in at.items():
        if how not in SELECT:
            continue
        values = [{canon_key(k.get(key)) for k, _ in rows} for rows in (a_rows, b_rows)]
        # ours: over the values of EITHER side, so a cell missing on one side reads missing and never moves to
        # another value; published (shared=True): the values both sides of the paper's table have
        # max_both: the claim is defined at a value both sides ran (e.g. equal codebook sizes, where the grids
        # differ by design): the largest of those; none shared reads missing
        values = values[0] & values[1] if shared or how == "max_both" else values[0] | values[1]
        v = _choose(sorted(v for v in values if isinstance(v, float)), how)
        if v is None:
            return None, None, chosen
        chosen[key] = v
        a_rows = [(k, r) for k, r in a_rows if canon_key(k.get(key)) == v]
        b_rows = [(k, r) for k, r in b_rows if canon_key(k.get(key)) == v]
    if len(a_rows) != 1 or len(b_rows) != 1:
        return (a_rows[0][1] if len(a_rows) == 1 else None), (b_rows[0][1] if len(b_rows) == 1 else None), chosen
    return a_rows[0][1], b_rows[0][1], chosen


def _side_values(row, claim: dict, side: str) -> list[float]:
    if row is None:
        return []
    return metric_values(row.get(claim[side].get("metric", claim["metric"])))  # NaN dropped, +-inf kept (see decide)


def decide(a: list[float], b: list[float], better: str, test: str | None = None,
           margin: float | None = None) -> tuple[str, float | None, float | None, str]:
    """The one rule: (verdict, d, SE, reason). test "not_worse": non-inferiority with `margin` (see the module
    docstring): reproduced if -d + Z SE < margin, contradicted if -d - Z SE > margin, else inconclusive."""
    if test == "not_worse" and (margin is None or not margin > 0):
        raise ValueError(f"decide: test not_worse needs a margin > 0, got {margin!r}")
    if not a or not b:
        return "not measured", None, None, "no result for " + ("either side" if not a and not b else
                                                              "side a" if not a else "side b")
    if not all(math.isfinite(x) for x in a + b):
        # an infinite value (a run that never reached its target, a rejection with no background left) has no mean:
        # decided by order instead, only when every seed of one side is better than every seed of the other
        if min(len(a), len(b)) < MIN_SEEDS:
            return "inconclusive", None, None, f"fewer than {MIN_SEEDS} seeds (n_a={len(a)}, n_b={len(b)})"
        sign = 1.0 if better == "higher" else -1.0
        if min(sign * x for x in a) > max(sign * x for x in b):
            return "reproduced", None, None, "infinite values: every seed of a better than every seed of b"
        if test == "not_worse":  # no mean to hold against the margin, unless a is infinitely worse on every seed
            if all(sign * x == -math.inf for x in a) and all(math.isfinite(x) for x in b):
                return "contradicted", None, None, "infinite values: every seed of a infinitely worse than b"
            return "inconclusive", None, None, "infinite values: no mean to compare with the margin"
        if max(sign * x for x in a) < min(sign * x for x in b):
            return "contradicted", None, None, "infinite values: every seed of b better than every seed of a"
        return "inconclusive", None, None, "infinite values and the two sides overlap"
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    d = (ma - mb) if better == "higher" else (mb - ma)
    var = lambda xs, m: sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else float("nan")
    se = math.sqrt(var(a, ma) / len(a) + var(b, mb) / len(b)) if min(len(a), len(b)) > 1 else None
    if min(len(a), len(b)) < MIN_SEEDS:
        return "inconclusive", d, se, f"fewer than {MIN_SEEDS} seeds (n_a={len(a)}, n_b={len(b)})"
    if test == "not_worse":
        e = -d  # the excess of a over b in the worse direction
        if e + Z * se < margin:
            return "reproduced", d, se, f"excess {e:+.3g} + {Z:g} SE = {e + Z * se:.3g} < margin {margin:g}"
        if e - Z * se > margin:
            return "contradicted", d, se, f"excess {e:+.3g} - {Z:g} SE = {e - Z * se:.3g} > margin {margin:g}"
        return "inconclusive", d, se, (f"margin {margin:g} inside excess {e:+.3g} ± {Z:g} SE "
                                       f"[{e - Z * se:.3g}, {e + Z * se:.3g}]")
    if d < -Z * se:
        return "contradicted", d, se, f"d < -{Z:g} SE"
    if d > Z * se:
        return "reproduced", d, se, f"d > {Z:g} SE"
    return "inconclusive", d, se, f"|d| <= {Z:g} SE"


def power_text(claim: dict, verdict: str, why: str, se: float | None, published_d: float | None) -> str:
    """The power column: Z SE (the smallest difference this run could detect) beside |published d| (a not_worse claim:
    beside its margin); for an inconclusive verdict, whether it was underpowered or the effect at this scale is
    smaller than published."""
    if se is None or not math.isfinite(se):
        return "–" if verdict == "not measured" else "no SE (fewer than 2 values a side)"
    det = Z * se
    if claim.get("test") == "not_worse":
        ref, name = float(claim["margin"]), "margin"
    elif published_d is not None:
        ref, name = abs(published_d), "|published d|"
    else:
        return f"{Z:g} SE = {det:.3g}; not published"
    if ref == 0:   # nothing published to detect: "underpowered" would say nothing
        return f"{Z:g} SE = {det:.3g}; {name} = 0"
    text = f"{Z:g} SE = {det:.3g} {'≥' if det >= ref else '<'} {name} {ref:.3g}"
    if verdict == "inconclusive" and not why.startswith(("fewer than", "one pretraining run")):
        if det >= ref:
            text += ": underpowered"
        else:
            text += (": not underpowered, the excess itself is near the margin" if name == "margin" else
                     ": effect at this scale smaller than published")
    return text


def _published(claim: dict, published: dict) -> tuple[str, float | None]:
    """The published comparison as text, and its d (signed as ours; None where not published)."""
    entry = published_table(claim["table"], published)
    keys = entry["keys"]
    groups = [({k: r.get(k) for k in keys}, r) for r in entry.get("rows") or []]
    a, b, at = _pick(groups, claim, shared=True)
    va = metric_values(a.get(claim["a"].get("metric", claim["metric"]))) if a else []
    vb = metric_values(b.get(claim["b"].get("metric", claim["metric"]))) if b else []
    if not va or not vb:
        return "not published", None
    d = va[0] - vb[0] if claim["better"] == "higher" else vb[0] - va[0]
    where = ", ".join(f"{k}={_fmt_key(v)}" for k, v in at.items())
    return f"{va[0]:g} vs {vb[0]:g} (d = {d:+.3g}{'; ' + where if where else ''})", d


def _published_text(claim: dict, published: dict) -> str:
    return _published(claim, published)[0]


def _fmt_key(v):
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


ONE_RUN = "one pretraining run: replicate over pretraining runs needs N>=2"


def pretraining_run_values(rows: list[dict], metric: str, scale: float = 1.0,
                           pretrained: bool = True, where: str = "claim") -> tuple[list[float], list[int] | None]:
    """The values of one side of a claim replicated over pretraining runs, from the raw rows of its cell: one value
    per pretraining run (the mean over that run's seeds; rows group by their `pretrain_seed`), and the seeds per
    run. Rows without `pretrain_seed`: one run when the side is `pretrained` (side a: a row that does not name its
    run cannot stand for several), otherwise a side without pretraining that keeps one value per seed (runs: None).
    An infinite seed value makes its run's value infinite. A cell mixing rows with and without `pretrain_seed` (e.g.
    a result file of an older kit beside the replicated ones) is refused: the unnamed rows are no run of their own."""
    named = sum("pretrain_seed" in r for r in rows)
    if 0 < named < len(rows):
        raise ValueError(f"{where}: replicate: pretraining, but {len(rows) - named} of the {len(rows)} rows of its cell "
                         "have no pretrain_seed (a result file of an older kit or another run?); rerun those steps or "
                         "move the stray result files away")
    if not pretrained and not any("pretrain_seed" in r for r in rows):
        return [x * scale for r in rows for x in metric_values(r.get(metric))], None
    runs: dict = {}
    for r in rows:
        runs.setdefault(canon_key(r.get("pretrain_seed")), []).extend(metric_values(r.get(metric)))
    vals = [v for v in runs.values() if v]
    return [scale * sum(v) / len(v) for v in vals], [len(v) for v in vals]


def _count(n_a: int, n_b: int) -> str:
    return str(n_a) if n_a == n_b else f"{n_a}/{n_b}"


def _span(k: list[int]) -> str:
    k = sorted(set(k))
    return "–" if not k else str(k[0]) if len(k) == 1 else f"{k[0]}-{k[-1]}"


def _replicated(claim: dict, a: list, b: list, runs_a, runs_b) -> str:
    """The `replicated` column: what one value of a side stands for, with the counts of this run."""
    if not a and not b:
        return "–"
    if claim.get("replicate") == "pretraining":
        text = claim.get("replicated")  # {n}: pretraining runs (side a), {k}: training seeds per run (e.g. "1-3")
        if runs_b is None and b:  # side b has no pretraining behind it: its values are training seeds
            a_text = (text.replace("{n}", str(len(a))).replace("{k}", _span(runs_a or [])) if text else
                      f"{len(a)} pretraining × {_span(runs_a or [])} seeds")
            return f"a: {a_text}; b: {len(b)} seeds (no pretraining)"
        if text:
            return text.replace("{n}", _count(len(a), len(b))).replace("{k}", _span((runs_a or []) + (runs_b or [])))
        return f"{_count(len(a), len(b))} pretraining × {_span((runs_a or []) + (runs_b or []))} probe seeds"
    return claim.get("replicated", "{n} seeds").replace("{n}", _count(len(a), len(b)))


def _cell_rows(rows: list[dict], keys: list[str], row) -> list[dict]:
    """The raw result rows of one aggregated cell."""
    if row is None:
        return []
    want = tuple(canon_key(row["_keys"].get(k)) for k in keys)
    return [r for r in rows if tuple(canon_key(r.get(k)) for k in keys) == want]


def _decide_one(claim: dict, res: dict | None, entry: dict, published: dict) -> Verdict:
    keys = entry["keys"]
    metrics = sorted({claim["metric"], claim["a"].get("metric", claim["metric"]),
                      claim["b"].get("metric", claim["metric"])})
    groups, rows = [], []
    if res:
        rows = res["rows"]
        # rows the files record as written (meta.expected_rows) but no longer hold: present, empty
        written = [k for m in res.get("metas") or [] for k in m.get("expected_rows") or []]
        groups = [(g["_keys"], g) for g in aggregate_rows(rows + written, keys, metrics).values()]
    a_row, b_row, at = _pick(groups, claim)
    # ours in the published table's units (a metric listed under `percent:` is shown in percent, as published)
    pct = set(entry.get("percent") or [])
    scale = lambda s: 100.0 if claim[s].get("metric", claim["metric"]) in pct else 1.0
    runs = {"a": None, "b": None}
    if claim.get("replicate") == "pretraining":  # one value per pretraining run
        (a, runs["a"]), (b, runs["b"]) = (
            pretraining_run_values(_cell_rows(rows, keys, row), claim[s].get("metric", claim["metric"]), scale(s),
                                   pretrained=(s == "a"), where=f"claim {claim['id']} (table {claim['table']}, side "
                                   f"{s})") for s, row in (("a", a_row), ("b", b_row)))
    else:
        a, b = ([x * scale(s) for x in _side_values(row, claim, s)] for s, row in (("a", a_row), ("b", b_row)))
    verdict, d, se, why = decide(a, b, claim["better"], claim.get("test"), claim.get("margin"))
    if claim.get("replicate") == "pretraining" and verdict == "inconclusive" and "fewer than" in why:
        short = [s for s, v in (("a", a), ("b", b)) if len(v) < MIN_SEEDS]
        if any(runs[s] is not None and len(v) < 2 for s, v in (("a", a), ("b", b))):
            why = f"{ONE_RUN} (n_a={len(a)}, n_b={len(b)})"
        elif all(runs[s] is not None for s in short):
            why = (f"fewer than {MIN_SEEDS} pretraining runs per side (n_a={len(a)}, n_b={len(b)}): this claim is "
                   "replicated over pretraining runs, fine-tuning or probe seeds do not replicate them")
    if not res:
        why = (f"table {claim['table']} has no result in this run (`bash run_all.sh --table {claim['table']}` runs "
               "what produces it)")
    elif not a or not b:
        why = "missing: " + "; ".join(_missing_cell(claim, s, at, row)
                                      for s, row, v in (("a", a_row, a), ("b", b_row, b)) if not v)
    pub_text, pub_d = _published(claim, published)
    return Verdict(claim, a, b, at, d, se, verdict, why, pub_text, _replicated(claim, a, b, runs["a"], runs["b"]),
                   pub_d, power_text(claim, verdict, why, se, pub_d))


def evaluate(results: dict, claims: list[dict], published: dict) -> list[Verdict]:
    """One Verdict per claim from collect_results' {table_id: {rows, ...}}."""
    out = []
    for c in claims:
        entry = published_table(c["table"], published)
        res = results.get(c["table"])
        if not c.get("each"):
            out.append(_decide_one(c, res, entry, published))
            continue
        # decided for every value of `each` that the result files hold or say they wrote (meta.expected_rows); the
        # row shows the worst one, and one value not measured makes the claim not measured
        key = c["each"]
        values = []
        written = [k for m in (res or {}).get("metas") or [] for k in m.get("expected_rows") or []]
        for r in (res or {}).get("rows", []) + written:
            if r.get(key) is not None and r.get(key) not in values:
                values.append(r.get(key))
        subs = [(v, _decide_one({**c, "a": {**c["a"], key: v}, "b": {**c["b"], key: v}}, res, entry, published))
                for v in values]
        if not subs:
            out.append(_decide_one(c, res, entry, published))
            continue
        rank = {"not measured": -1, "contradicted": 0, "inconclusive": 1, "reproduced": 2}
        worst_v, worst = min(subs, key=lambda t: (rank[t[1].verdict], t[1].d if t[1].d is not None else 0.0))
        verdicts = {x.verdict for _, x in subs}
        verdict = ("not measured" if "not measured" in verdicts else
                   "contradicted" if "contradicted" in verdicts else
                   "reproduced" if verdicts == {"reproduced"} else "inconclusive")
        why = f"per {key}: " + ", ".join(f"{v} {x.verdict}" for v, x in subs)
        if verdict == "not measured":
            why += "; " + "; ".join(f"{v}: {x.why}" for v, x in subs if x.verdict == "not measured")
        out.append(Verdict(c, worst.a, worst.b, {key: worst_v, **worst.at}, worst.d, worst.se, verdict, why,
                           worst.published, worst.replicated + f", {len(subs)} {key}s", worst.published_d,
                           worst.power))
    return out


def _missing_cell(claim: dict, side: str, at: dict, row) -> str:
    """Why one side of a claim has no values: its row is absent from the results, or holds no value."""
    cell = {k: v for k, v in {**claim[side], **at}.items() if k != "metric" and v not in SELECT}
    shown = ", ".join(f"{k}={_fmt_key(canon_key(v) if isinstance(canon_key(v), float) else v)}" for k, v in cell.items())
    return f"side {side} ({shown}): " + (f"no such row in the results (a row this run did not schedule: `bash run_all.sh "
                                         f"--table {claim['table']}` runs every row the profile has)"
                                         if row is None else "the row holds no value")


# ---------------------------------------------------------------------------------------------------------------
# rendering


def _side_label(sel: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sel.items())


def _mean_std(xs: list[float]) -> str:
    if not xs:
        return "–"
    if not all(math.isfinite(x) for x in xs):  # no mean: the seeds' values themselves
        return ", ".join("∞" if x == float("inf") else "−∞" if x == -float("inf") else f"{x:.4g}" for x in xs) + \
            f" (n={len(xs)})"
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return f"{m:.4g} (n=1)"
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return f"{m:.4g} ± {s:.2g} (n={len(xs)})"


def render_claims(verdicts: list[Verdict]) -> list[str]:
    counts = {v: sum(x.verdict == v for x in verdicts) for v in VERDICTS}
    lines = ["## Claims", "",
             "Each claim of the papers compared on this run. a is the side the paper says is better, b the side it "
             "beats; values are mean ± sample std over the side's replicates (n; the replicated column says what "
             "one value stands for). Rule: " + rule_text(), "",
             "Verdicts: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + ".", "",
             f"| claim | table, metric | a | b | at | ours a | ours b | d ± SE | replicated | published (a vs b) | "
             f"power ({Z:g} SE: smallest detectable d) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        c = v.claim
        at = ", ".join(f"{k}={_fmt_key(x)}" for k, x in v.at.items()) or "–"
        d = "–" if v.d is None else (f"{v.d:+.3g}" + ("" if v.se is None else f" ± {v.se:.2g}"))
        verdict = f"**{v.verdict}**" + (f" ({v.why})" if v.verdict != "reproduced" or c.get("each") else "")
        lines.append(f"| {c['claim']} ({c['source']}) | {c['table']}, {c['metric']} ({c['better']} is better) | "
                     f"{_side_label(c['a'])} | {_side_label(c['b'])} | {at} | {_mean_std(v.a)} | {_mean_std(v.b)} | "
                     f"{d} | {v.replicated or '–'} | {v.published} | {v.power or '–'} | {verdict} |")
    lines.append("")
    return lines


def claims_section(runs_dir, published: dict | None = None, claims_path=None,
                   results: dict | None = None) -> tuple[list[str], list[Verdict]]:
    """The Claims section's lines and verdicts; results: the tables to decide from (default: every valid result
    file of runs_dir; the report passes the tables it accepted, without those it refused as stale)."""
    published = load_published() if published is None else published
    claims = load_claims(claims_path, published)
    verdicts = evaluate(collect_results(runs_dir, published) if results is None else results, claims, published)
    return render_claims(verdicts), verdicts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Print the Claims section of a run (the rule in common/results/claims.py).")
    ap.add_argument("--runs", required=True)
    ap.add_argument("--claims", default=None, help="claims YAML (default common/results/claims.yaml)")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    if not runs.is_dir():
        raise FileNotFoundError(f"--runs {runs}: {'not a directory' if runs.exists() else 'no such directory'}; "
                                "give the run's output folder (run_all.sh --out-dir)")
    published = load_published()
    problems: list = []
    results = collect_results(runs, published, problems)
    if not results:
        why = f"; {len(problems)} file(s) refused, the first: {problems[0][2]}" if problems else ""
        raise FileNotFoundError(f"--runs {runs}: no valid result file (<table_id>.json) under it, so no claim could "
                                f"be measured; give the run's output folder (run_all.sh --out-dir){why}")
    lines, _ = claims_section(runs, published, args.claims, results)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    cli(main)
