"""Every claim's verdict of a run beside a previous run's, for BENCHMARKS.md (what changed, claim by claim).

    python -m bench.verdicts --runs runs/mini --save verdicts.json
    python -m bench.verdicts --runs runs/mini --previous old_verdicts.json
    python -m bench.verdicts --runs runs/mini --previous "BENCHMARKS.md#Fresh-clone default run, 2026-12-06 (measured)"

The verdicts of --runs are decided now, by common/results/claims.py, from the run's result files. --previous is a
file this script saved (--save), or, for a run whose folder is gone, the claims table that BENCHMARKS.md recorded for
it: FILE#HEADING reads the first table under that heading with a `claim` and a `verdict` column. Prints one Markdown
table (claim, previous verdict and d ± SE, this run's, its replication and power, changed or not) and the counts.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from common.atomic import write_json
from common.cli import cli
from common.results.claims import claims_section


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def run_verdicts(runs) -> dict[str, dict]:
    """{claim id: {verdict, d, se, replicated, power, n_a, n_b}} decided from the run's result files now."""
    _, verdicts = claims_section(runs)
    return {v.claim["id"]: {"verdict": v.verdict, "d": _num(v.d), "se": _num(v.se), "replicated": v.replicated,
                            "power": v.power, "n_a": len(v.a), "n_b": len(v.b)} for v in verdicts}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_verdicts(path: Path, heading: str) -> dict[str, dict]:
    """{claim id: {verdict, d_se, replicated}} from the first table under `heading` (a Markdown heading's text) of
    path that has `claim` and `verdict` columns."""
    lines = path.read_text().splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.lstrip("#").strip() == heading and ln.startswith("#")]
    if not starts:
        raise ValueError(f"{path}: no heading {heading!r} (expected the exact text of a '#' heading)")
    i = starts[0] + 1
    while i < len(lines) and not lines[i].startswith("#"):
        if lines[i].startswith("|"):
            head = _cells(lines[i])
            if "claim" in head and "verdict" in head:
                out = {}
                for ln in lines[i + 2:]:
                    if not ln.startswith("|"):
                        break
                    row = dict(zip(head, _cells(ln)))
                    out[row["claim"]] = {"verdict": row["verdict"], "d_se": row.get("d ± SE", ""),
                                         "replicated": row.get("replicated", "")}
                return out
        i += 1
    raise ValueError(f"{path}: no table with 'claim' and 'verdict' columns under {heading!r}")


def load_previous(spec: str) -> dict[str, dict]:
    path, _, heading = spec.partition("#")
    if heading:
        return markdown_verdicts(Path(path), heading)
    try:
        return json.loads(Path(path).read_text())["verdicts"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--previous {path}: expected a JSON file saved by bench.verdicts --save "
                         f"({{'verdicts': {{claim: ...}}}}) or FILE#HEADING of a Markdown table ({err})") from err


def _d_se(v: dict) -> str:
    if "d_se" in v:
        return v["d_se"] or "–"
    if v.get("d") is None:
        return "–"
    return f"{v['d']:+.3g}" + (f" ± {v['se']:.2g}" if v.get("se") is not None else "")


def render(now: dict[str, dict], before: dict[str, dict] | None) -> list[str]:
    lines = ["| claim | previous | d ± SE (previous) | this run | d ± SE | replicated | power | changed |",
             "|---|---|---|---|---|---|---|---|"]
    for cid, v in now.items():
        p = (before or {}).get(cid)
        prev, prev_d = (p["verdict"], _d_se(p)) if p else ("not in that run", "–")
        changed = "–" if p is None else ("**yes**" if p["verdict"] != v["verdict"] else "no")
        lines.append(f"| {cid} | {prev} | {prev_d} | {v['verdict']} | {_d_se(v)} | {v['replicated'] or '–'} | "
                     f"{v['power'] or '–'} | {changed} |")
    counts = {k: sum(v["verdict"] == k for v in now.values()) for k in ("reproduced", "contradicted", "inconclusive",
                                                                          "not measured")}
    lines += ["", "This run: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" of {len(now)}."]
    if before:
        prev_counts = {k: sum(v["verdict"] == k for v in before.values()) for k in counts}
        lines.append("Previous: " + ", ".join(f"{n} {k}" for k, n in prev_counts.items()) + f" of {len(before)}.")
        gone = sorted(set(before) - set(now))
        if gone:
            lines.append("In the previous run only: " + ", ".join(gone) + ".")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="run_all.sh --out-dir of the run")
    ap.add_argument("--previous", default=None, help="a --save JSON, or FILE#HEADING of a Markdown claims table")
    ap.add_argument("--save", default=None, help="write this run's verdicts as JSON here")
    args = ap.parse_args(argv)
    if not Path(args.runs).is_dir():
        raise FileNotFoundError(f"--runs {args.runs}: no such directory (expected run_all.sh --out-dir)")
    now = run_verdicts(args.runs)
    before = load_previous(args.previous) if args.previous else None
    print("\n".join(render(now, before)))
    if args.save:
        write_json(Path(args.save), {"runs": str(args.runs), "verdicts": now}, indent=1)
    return 0


if __name__ == "__main__":
    cli(main)
