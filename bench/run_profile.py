"""Where a run_all.sh run spent its time, from its <out>/status.tsv (one line per step: name, status, wall seconds,
...): step-minutes and steps per part (the method, or data), per kind of step (pretraining, fine-tuning by mode,
floor, embed, ablation, ...; the extra pretraining runs' steps `*_seed<S>` in a column of their own, the price of
replicating over pretraining runs), and the longest steps. Prints Markdown tables for BENCHMARKS.md.

    python -m bench.run_profile runs/mini [--top 15]
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict

from common.results.tables import status_records


def profile(out_dir) -> tuple[dict, list]:
    """({part: {status: count, 'seconds': s}}, [(seconds, step, status)] longest first) of the last status per step;
    a step a later invocation found finished or did not select ("done-earlier", "not-selected") counts with the
    status and time of the attempts that ran it, an interrupted attempt's time added to the step's."""
    last: dict[str, dict] = {}                     # the last status of each step (as common.results.tables.read_status)
    spent: dict[str, float] = defaultdict(float)   # seconds of every done / interrupted / failed attempt of each step
    ran: dict[str, str] = {}                       # the status of the last attempt that ran the step
    records = status_records(out_dir)
    if not records:
        raise FileNotFoundError(f"{out_dir}/status.tsv: missing or without step lines (expected run_all.sh --out-dir)")
    for step, rec in records:
        last[step] = {"status": rec["status"], "seconds": float(rec["seconds"] or 0)}
        if rec["status"] in ("done", "interrupted", "failed"):
            spent[step] += float(rec["seconds"] or 0)
            ran[step] = rec["status"]
    for name, rec in last.items():
        if rec["status"] in ("done-earlier", "not-selected") and name in ran:
            rec["status"] = ran[name]
        if name in spent:
            rec["seconds"] = spent[name]
    parts: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    steps = []
    for name, rec in last.items():
        part = name.split("/", 1)[0]
        secs = float(rec.get("seconds") or 0)
        parts[part][rec["status"]] += 1
        parts[part]["seconds"] += secs
        steps.append((secs, name, rec["status"]))
    return parts, sorted(steps, reverse=True)


# (kind, pattern on the step name without its method) in order: the first match names the kind
KINDS = [("data", r"^(sim_|validate_)"), ("ablation", r"^(shortcut_|ablation_)"), ("tokeniser", r"^tokeni[sz]"),
         ("pretraining", r"^pretrain"), ("floor (jet observables)", r"^floor_"),
         ("embed (Which pretraining?)", r"^embed_"), ("generation", r"^(generate|eval_generation|token_quality)"),
         ("fine-tuning: frozen / probe", r"(fixed|^probe|_probe_|sum$)"),
         ("fine-tuning: scratch / no backbone", r"(scratch|nobackbone)"),
         ("fine-tuning: fine-tuned (HEP-JEPA ft_*: every mode)", r"(finetune|^ft_)"),
         ("tables, figures, comparison", r"")]


def kind_of(step: str) -> tuple[str, bool]:
    """(kind, extra pretraining run?) of a step name such as mpm/v1_jetclass_finetune_seed1."""
    name = step.split("/", 1)[-1]
    extra = re.search(r"_seed[0-9]+$", name) is not None and not name.startswith("tokeni")
    base = re.sub(r"_seed[0-9]+$", "", name)
    return next(k for k, pat in KINDS if re.search(pat, base)), extra


def by_kind(steps: list) -> dict[str, list[float]]:
    """{kind: [seconds of the main steps, seconds of the extra pretraining runs' steps, step count]}."""
    out: dict[str, list[float]] = {k: [0.0, 0.0, 0] for k, _ in KINDS}
    for secs, name, _status in steps:
        kind, extra = kind_of(name)
        out[kind][1 if extra else 0] += secs
        out[kind][2] += 1
    return {k: v for k, v in out.items() if v[2]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", help="run_all.sh --out-dir")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    parts, steps = profile(args.out_dir)
    print("| part | steps done | other states | step time (sum of wall s) |\n|---|---|---|---|")
    total = defaultdict(float)
    for part in sorted(parts):
        p = parts[part]
        other = ", ".join(f"{k} {int(v)}" for k, v in sorted(p.items()) if k not in ("done", "seconds")) or "-"
        print(f"| {part} | {int(p.get('done', 0))} | {other} | {p['seconds']:,.0f} s ({p['seconds'] / 60:.1f} min) |")
        for k, v in p.items():
            total[k] += v
    other = ", ".join(f"{k} {int(v)}" for k, v in sorted(total.items()) if k not in ("done", "seconds")) or "-"
    print(f"| all | {int(total.get('done', 0))} | {other} | {total['seconds']:,.0f} s "
          f"({total['seconds'] / 60:.1f} min) |\n")
    print("| kind of step | steps | main runs (step-min) | extra pretraining runs (step-min) | all (step-min) |\n"
          "|---|---|---|---|---|")
    for kind, (main_s, extra_s, n) in by_kind(steps).items():
        print(f"| {kind} | {n} | {main_s / 60:.1f} | {extra_s / 60:.1f} | {(main_s + extra_s) / 60:.1f} |")
    print()
    print("| longest steps | status | wall s |\n|---|---|---|")
    for secs, name, status in steps[:args.top]:
        print(f"| {name} | {status} | {secs:,.0f} |")


if __name__ == "__main__":
    main()
