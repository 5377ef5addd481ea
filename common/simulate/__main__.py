"""python -m common.simulate {jetclass,toptagging,qg,btag,validate,clean} ...  (see --help of each subcommand).

A bad option, a folder the kit did not simulate or one another simulation is writing is one line `error: ...` and
exit status 2 (common.cli)."""
from __future__ import annotations

import argparse
import os
import sys


def _splits(s: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(x) for x in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--splits expects three comma-separated fractions, got {s!r}") from None
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"--splits expects three fractions (train,val,test), got {s!r}")
    return vals


def _positive(s: str) -> int:
    """An integer >= 1 (a count of jets, files or processes)."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _common(p: argparse.ArgumentParser, per_file: int = 100_000, test_seed: bool = True) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="parallel processes (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="master seed; file seeds derive from (seed, class, file index)")
    p.add_argument("--jets-per-file", type=_positive, default=per_file,
                   help="jets per output file (default %(default)s)")
    if test_seed:
        p.add_argument("--test-seed", type=int, default=None,
                       help="the test split's file seeds derive from (TEST_SEED, 'test', ...), a derivation no run "
                            "without it used: a fresh test sample, the same training and validation jets")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.simulate", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("jetclass", help="JetClass-format ROOT files, 13 TeV, anti-kT 0.8, 500 < pT < 1000 GeV")
    p.add_argument("--jets-per-class", type=_positive, required=True)
    _common(p)
    p.add_argument("--detector", choices=["cms", "atlas"], default="cms", help="detector response (default cms)")
    p.add_argument("--classes", default=None, help="comma-separated subset, e.g. QCD,Hbb,Tbqq (default: all 10)")
    p.add_argument("--splits", type=_splits, default=(0.8, 0.1, 0.1), help="train,val,test fractions")
    p.add_argument("--pt-spectrum", choices=["flat", "falling"], default="flat",
                   help="[U] flat: pTHat^4-biased sampling, weights ignored, so jets fill 500-1000 GeV roughly evenly "
                        "(JetClass' spectrum is not published); falling: Pythia's natural spectrum")

    p = sub.add_parser("toptagging", help="Top-tagging-format HDF5 (14 TeV, no MPI, 550 < pT < 650 GeV)")
    p.add_argument("--jets", type=_positive, required=True, help="total jets over the three splits, half top half QCD")
    _common(p)
    p.add_argument("--detector", choices=["cms", "atlas"], default="atlas", help="(default atlas, as the real set)")
    p.add_argument("--splits", type=_splits, default=(0.6, 0.2, 0.2), help="train,val,test fractions (real: 1.2M/400k/400k)")

    p = sub.add_parser("qg", help="quark-gluon npz (14 TeV, Z(nunu)+jet, anti-kT 0.4, 500 < pT < 550, |y| < 1.7)")
    p.add_argument("--jets", type=_positive, required=True, help="total jets, half quark half gluon")
    _common(p, test_seed=False)  # one file set cut into splits by fraction: no per-split seed
    p.add_argument("--with-bc", action="store_true", help="allow c and b quark jets (the *_withbc variant)")

    p = sub.add_parser("btag", help="flavour-tagging jets with tracks (Zenodo 13350327 ROOT tree + jetssl HDF5): "
                       "14 TeV tt-bar, anti-kT 0.4; b, c and light in equal numbers, matched in (pT, |eta|, n_trks) "
                       "bins by subsampling (no reweighting)")
    p.add_argument("--jets-per-flavour", type=_positive, required=True, help="light, c and b jets each, over the splits")
    _common(p)
    p.add_argument("--splits", type=_splits, default=(0.6, 0.2, 0.2), help="train,valid,test fractions")

    p = sub.add_parser("validate", help="plots of mass, soft-drop mass, multiplicity, tau21, tau32, pT; mass peaks; "
                       "for a BTag directory the calibration checks (exit status 1 if one fails)")
    p.add_argument("dir")
    p.add_argument("--out", default=None, help="where PNGs go (default DIR/validation)")
    p.add_argument("--max-jets", type=_positive, default=20000, help="jets per class to read")

    p = sub.add_parser("clean", help="delete the files the simulator wrote into DIR (those its simulate.json lists) "
                       "and nothing else; a folder without the simulator's simulate.json is refused")
    p.add_argument("dir")

    a = ap.parse_args(argv)
    from . import run

    if a.cmd == "clean":
        n, kept = run.clean(a.dir)
        print(f"{a.dir}: deleted {n} simulated file(s)" + (f"; kept {len(kept)} not written by the simulator "
                                                         f"(e.g. {kept[0]})" if kept else ""))
        return 0

    if a.cmd == "jetclass":
        classes = a.classes.split(",") if a.classes else None
        res = run.simulate_jetclass(a.out, a.jets_per_class, seed=a.seed, workers=a.workers, classes=classes,
                                    splits=a.splits, per_file=a.jets_per_file, detector=a.detector,
                                    pt_spectrum=a.pt_spectrum, test_seed=a.test_seed)
    elif a.cmd == "toptagging":
        res = run.simulate_toptagging(a.out, a.jets, seed=a.seed, workers=a.workers, splits=a.splits,
                                      per_file=a.jets_per_file, detector=a.detector, test_seed=a.test_seed)
    elif a.cmd == "btag":
        res = run.simulate_btag(a.out, a.jets_per_flavour, seed=a.seed, workers=a.workers, splits=a.splits,
                                per_file=a.jets_per_file, test_seed=a.test_seed)
    elif a.cmd == "qg":
        res = run.simulate_qg(a.out, a.jets, seed=a.seed, workers=a.workers, per_file=a.jets_per_file,
                              with_bc=a.with_bc)
    else:
        from .validate import is_btag_dir, validate, validate_btag

        if is_btag_dir(a.dir):
            return 0 if all(c.passed for c in validate_btag(a.dir, max_jets=a.max_jets)) else 1
        validate(a.dir, out=a.out, max_jets=a.max_jets)
        return 0
    if res:
        cpu = sum(r["cpu_seconds"] for r in res)
        jets = sum(r["jets"] for r in res)
        print(f"wrote {len(res)} file(s), {jets} jets, {jets / max(cpu, 1e-9):.1f} jets per CPU-second "
              "(per core, Pythia initialisation included)")
    return 0


if __name__ == "__main__":
    from ..cli import cli

    cli(main)
