"""OmniJet-alpha's generation claim against its margin, observable by observable: the spread of the statistical floor
(KL between two real halves, per sampling seed) beside the margin of `omnijet_generation_close_to_real` in
common/results/claims.yaml, to check that one margin suits all ten observables.

    python -m bench.generation_floor runs/mini/omnijet/eval_generation/metrics.json

Per observable: the floor KL(A || B) (mean and sample standard deviation over the sampling seeds, each its own random
split of the reference), the generated jets' KL(A || generated) at the same sizes, and their difference (the excess
the claim holds against the margin). Infinite values (an empty bin) are counted, not averaged.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from common.cli import cli
from common.results.claims import load_claims


def _stats(xs: list[float]) -> str:
    finite = [x for x in xs if math.isfinite(x)]
    if len(finite) < len(xs):
        return f"{len(xs) - len(finite)} infinite"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


def floor_rows(metrics: dict) -> list[tuple[str, list, list, list]]:
    """(observable, floor KLs, generated KLs, excesses) over the sampling seeds."""
    seeds = metrics["per_seed"]
    out = []
    for name in seeds[0]["half_vs_half"]:
        floor = [s["half_vs_half"][name]["kl_divergence"] for s in seeds]
        gen = [s["generated_vs_half"][name]["kl_divergence"] for s in seeds]
        out.append((name, floor, gen, [g - f for g, f in zip(gen, floor)]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metrics", help="omnijet.evaluate_generation's metrics.json")
    args = ap.parse_args(argv)
    path = Path(args.metrics)
    try:
        metrics = json.loads(path.read_text())
        rows = floor_rows(metrics)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{path}: expected omnijet.evaluate_generation's metrics.json with per_seed "
                         f"half_vs_half / generated_vs_half ({err})") from err
    margin = next(c["margin"] for c in load_claims() if c["id"] == "omnijet_generation_close_to_real")
    s0 = metrics["per_seed"][0]
    print(f"{len(metrics['per_seed'])} sampling seeds; half A {s0.get('n_half_jets')} jets against "
          f"{s0.get('n_compared_jets')} jets; margin {margin}\n")
    print("| observable | floor KL(A‖B), mean ± sd | generated KL(A‖gen) | excess | floor sd / margin |")
    print("|---|---|---|---|---|")
    for name, floor, gen, excess in rows:
        finite = [x for x in floor if math.isfinite(x)]
        ratio = f"{statistics.stdev(finite) / margin:.2f}" if len(finite) == len(floor) > 1 else "–"
        print(f"| {name} | {_stats(floor)} | {_stats(gen)} | {_stats(excess)} | {ratio} |")
    return 0


if __name__ == "__main__":
    cli(main)
