"""The papers' headline claims, decided from a run's result files by one rule (the Claims section of RESULTS.md).

A claim compares two cells of one results table (common/claims.yaml): side `a` is what the paper says is better,
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

The published value of the same comparison is read from common/published.yaml (never typed here).

    python -m common.claims --runs runs/mini          # print the Claims section of a run
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from common.cli import cli
from common.results import (MIN_SEEDS, aggregate_rows, canon_key, collect_results, load_published, metric_values,
                            published_table)

CLAIMS_PATH = Path(__file__).with_name("claims.yaml")
Z = 2.0        # the difference must exceed Z standard errors
VERDICTS = ("reproduced", "contradicted", "inconclusive", "not measured")
SELECT = {"min": 0, "second_min": 1, "max": -1}  # `at:` / side values that pick the smallest, second smallest,
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


def rule_text() -> str:
    return (f"d = mean(a) − mean(b), signed so that d > 0 is the paper's direction; SE = √(s_a²/n_a + s_b²/n_b) "
            f"with the sample standard deviation over seeds. **reproduced** if d > {Z:g}·SE, **contradicted** if "
            f"d < −{Z:g}·SE, otherwise **inconclusive**; a side with fewer than {MIN_SEEDS} seeds is inconclusive. "
            "Where a seed's value is infinite (e.g. a run that never reached its target) means do not exist: then "
            "reproduced only if every seed of a beats every seed of b, contradicted if the reverse. "
            "The same rule for every claim; the seeds are fixed in the configs before the run.")


def load_claims(path=None, published: dict | None = None) -> list[dict]:
    """claims.yaml, checked against the published tables (table, metric and key names must exist)."""
    path = Path(path) if path is not None else CLAIMS_PATH
    with open(path) as f:
        data = yaml.safe_load(f) or {}
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
        unknown = set(c) - {"id", "claim", "source", "table", "metric", "better", "a", "b", "at", "note"}
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
        if c["id"] in seen:
            raise ValueError(f"{where}: duplicate id")
        seen.add(c["id"])
        if c["better"] not in ("higher", "lower"):
            raise ValueError(f"{where}: better must be 'higher' or 'lower', got {c['better']!r}")
        entry = published_table(c["table"], published)
        if entry is None:
            raise ValueError(f"{where}: table {c['table']!r} is not in common/published.yaml")
        for side in ("a", "b"):
            sel = c[side]
            if not isinstance(sel, dict):
                raise ValueError(f"{where}: {side} must be a mapping of key columns to values")
            metric = sel.get("metric", c["metric"])
            if metric not in entry["metrics"]:
                raise ValueError(f"{where}: metric {metric!r} is not a metric of {c['table']} {entry['metrics']}")
            bad = set(sel) - set(entry["keys"]) - {"metric"}
            if bad:
                raise ValueError(f"{where}: {side} names {sorted(bad)}, not key columns of {c['table']} "
                                 f"{entry['keys']}")
        bad = set(c.get("at") or {}) - set(entry["keys"])
        if bad:
            raise ValueError(f"{where}: at names {sorted(bad)}, not key columns of {c['table']} {entry['keys']}")
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
    largest): a side without that row reads missing, the claim never moves to another cell; shared=True (the
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
        values = values[0] & values[1] if shared else values[0] | values[1]
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


def decide(a: list[float], b: list[float], better: str) -> tuple[str, float | None, float | None, str]:
    """The one rule: (verdict, d, SE, reason)."""
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
        if max(sign * x for x in a) < min(sign * x for x in b):
            return "contradicted", None, None, "infinite values: every seed of b better than every seed of a"
        return "inconclusive", None, None, "infinite values and the two sides overlap"
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    d = (ma - mb) if better == "higher" else (mb - ma)
    var = lambda xs, m: sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else float("nan")
    se = math.sqrt(var(a, ma) / len(a) + var(b, mb) / len(b)) if min(len(a), len(b)) > 1 else None
    if min(len(a), len(b)) < MIN_SEEDS:
        return "inconclusive", d, se, f"fewer than {MIN_SEEDS} seeds (n_a={len(a)}, n_b={len(b)})"
    if d > Z * se:
        return "reproduced", d, se, f"d > {Z:g} SE"
    if d < -Z * se:
        return "contradicted", d, se, f"d < -{Z:g} SE"
    return "inconclusive", d, se, f"|d| <= {Z:g} SE"


def _published_text(claim: dict, published: dict) -> str:
    entry = published_table(claim["table"], published)
    keys = entry["keys"]
    groups = [({k: r.get(k) for k in keys}, r) for r in entry.get("rows") or []]
    a, b, at = _pick(groups, claim, shared=True)
    va = metric_values(a.get(claim["a"].get("metric", claim["metric"]))) if a else []
    vb = metric_values(b.get(claim["b"].get("metric", claim["metric"]))) if b else []
    if not va or not vb:
        return "not published"
    d = va[0] - vb[0] if claim["better"] == "higher" else vb[0] - va[0]
    where = ", ".join(f"{k}={_fmt_key(v)}" for k, v in at.items())
    return f"{va[0]:g} vs {vb[0]:g} (d = {d:+.3g}{'; ' + where if where else ''})"


def _fmt_key(v):
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def evaluate(results: dict, claims: list[dict], published: dict) -> list[Verdict]:
    """One Verdict per claim from collect_results' {table_id: {rows, ...}}."""
    out = []
    for c in claims:
        entry = published_table(c["table"], published)
        keys = entry["keys"]
        metrics = sorted({c["metric"], c["a"].get("metric", c["metric"]), c["b"].get("metric", c["metric"])})
        res = results.get(c["table"])
        groups = []
        if res:  # rows the files record as written (meta.expected_rows) but no longer hold: present, empty
            written = [k for m in res.get("metas") or [] for k in m.get("expected_rows") or []]
            groups = [(g["_keys"], g) for g in aggregate_rows(res["rows"] + written, keys, metrics).values()]
        a_row, b_row, at = _pick(groups, c)
        # ours in the published table's units (a metric listed under `percent:` is shown in percent, as published)
        pct = set(entry.get("percent") or [])
        a, b = ([x * (100.0 if c[s].get("metric", c["metric"]) in pct else 1.0) for x in _side_values(row, c, s)]
                for s, row in (("a", a_row), ("b", b_row)))
        verdict, d, se, why = decide(a, b, c["better"])
        if not res:
            why = f"table {c['table']} has no result in this run"
        elif not a or not b:
            why = "missing: " + "; ".join(_missing_cell(c, s, at, row) for s, row, v in (("a", a_row, a), ("b", b_row, b))
                                          if not v)
        out.append(Verdict(c, a, b, at, d, se, verdict, why, _published_text(c, published)))
    return out


def _missing_cell(claim: dict, side: str, at: dict, row) -> str:
    """Why one side of a claim has no values: its row is absent from the results, or holds no value."""
    cell = {k: v for k, v in {**claim[side], **at}.items() if k != "metric" and v not in SELECT}
    shown = ", ".join(f"{k}={_fmt_key(canon_key(v) if isinstance(canon_key(v), float) else v)}" for k, v in cell.items())
    return f"side {side} ({shown}): " + ("no such row in the results" if row is None else "the row holds no value")


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
             "beats; values are mean ± sample std over seeds (n = seeds). Rule: " + rule_text(), "",
             "Verdicts: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + ".", "",
             "| claim | table, metric | a | b | at | ours a | ours b | d ± SE | published (a vs b) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        c = v.claim
        at = ", ".join(f"{k}={_fmt_key(x)}" for k, x in v.at.items()) or "–"
        d = "–" if v.d is None else (f"{v.d:+.3g}" + ("" if v.se is None else f" ± {v.se:.2g}"))
        verdict = f"**{v.verdict}**" + (f" ({v.why})" if v.verdict != "reproduced" else "")
        lines.append(f"| {c['claim']} ({c['source']}) | {c['table']}, {c['metric']} ({c['better']} is better) | "
                     f"{_side_label(c['a'])} | {_side_label(c['b'])} | {at} | {_mean_std(v.a)} | {_mean_std(v.b)} | "
                     f"{d} | {v.published} | {verdict} |")
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
    ap = argparse.ArgumentParser(description="Print the Claims section of a run (the rule in common/claims.py).")
    ap.add_argument("--runs", required=True)
    ap.add_argument("--claims", default=None, help="claims YAML (default common/claims.yaml)")
    args = ap.parse_args(argv)
    lines, _ = claims_section(args.runs, claims_path=args.claims)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    cli(main)
