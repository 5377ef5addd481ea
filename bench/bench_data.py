"""Data-path throughput on one core: reading JetClass ROOT, converting it into the cache, and reading from the cache.

    python -m bench.bench_data [--jets 20000] [--dir /tmp/bench_data] [--features part_full mpmv2 hepjepa mpmv1 omnijet]

Writes synthetic JetClass-format files (tests/data_factory.py; ~50 particles per jet on average, like JetClass) and
prints a table of jets/s (reading the cache: the fastest of three passes). Targets: ROOT >= 10k jets/s, cache >= 100k
jets/s.

Then the cache's size: bytes per jet of every JetClass feature set of the paper profile (the (features, num_particles)
of every paper config, */configs/*.yaml) in three layouts: version 1 (every jet padded to N, four-momenta per feature
set), version 2 (ragged, every feature set stored; its bytes follow from the particles each set keeps) and version 3
(common/data/cache.py, measured on these files: the sets that are cheap functions of the source entry's particles are
computed on read and store nothing), and the projected cache of a paper run (JetClass, 125M jets) beside the published
dataset (190 GB). The ragged sizes scale with the mean number of particles per jet, printed with them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

import numpy as np
import torch
import uproot

from common.cli import cli
from common.data.cache import padded_bytes_per_jet
from common.data.datasets import cached_entries, make_loader
from common.data.features import get_feature_set
from common.data.jetclass import iter_jetclass

from tests.data_factory import write_jetclass

CLASSES = ["QCD", "Tbqq"]
JETCLASS_JETS = 125_000_000       # train 100M + val 5M + test 20M
JETCLASS_PUBLISHED_GB = 190


def paper_feature_sets() -> list[tuple[str, int]]:
    """(feature set, num_particles) of every JetClass paper config (the top-level */configs/*.yaml)."""
    import glob

    from common.training.config import load_config

    sets = set()
    for path in sorted(glob.glob("*/configs/*.yaml")):
        data = load_config(path).get("data") or {}
        if data.get("dataset") == "jetclass" and data.get("features"):
            fs = get_feature_set(data["features"])
            sets.add((fs.name, int(data.get("num_particles") or fs.num_particles)))
    return sorted(sets)


def ragged_v2_bytes_per_jet(num_features: int, kept: float, pid: bool, positions: bool) -> float:
    """Bytes per jet of a version-2 feature entry (every set stored): offsets (int64), x float32 per kept particle,
    pid int8 where the set has one, src_pos uint8 for a set that is not a prefix of the jet (OmniJet-alpha)."""
    return 8 + kept * (4 * num_features + (1 if pid else 0) + (1 if positions else 0))


def ragged_v2_source_bytes_per_jet(particles: float) -> float:
    """Bytes per jet of a version-2 source entry: offsets, p4 float32 per particle, jet (6 float32), label int8."""
    return 8 + particles * 16 + 6 * 4 + 1


def cache_sizes(root: str, sets: list[tuple[str, int]]) -> list[dict]:
    """Bytes per jet of each (feature set, N) converted from the files under root: the v1 and v2 layouts from their
    formulas, v3 measured."""
    out = []
    for name, n in sets:
        cfg = dict(dataset="jetclass", root=root, train="train/*.root", features=name, classes=CLASSES, num_particles=n)
        entries = cached_entries(cfg, "train", progress=False)
        jets = sum(len(e) for e in entries)
        feat = sum(e.nbytes()["features"] for e in entries)
        src = sum(e.nbytes()["source"] for e in entries)
        kept = sum(int(e.read(np.arange(len(e)))["mask"].sum()) for e in entries) / jets
        particles = sum(int(e.arrays["src_offsets"][-1]) for e in entries) / jets
        fs = get_feature_set(name)
        out.append(dict(name=name, n=n, v1=padded_bytes_per_jet(len(fs.names), n, pid=name == "mpmv2"),
                        v2=ragged_v2_bytes_per_jet(len(fs.names), kept, pid=name == "mpmv2",
                                                   positions=name == "omnijet"),
                        v3=feat / jets, src=src / jets, src_v2=ragged_v2_source_bytes_per_jet(particles), kept=kept,
                        particles=particles, on_read=fs.on_read))
    return out


def print_sizes(sizes: list[dict]) -> None:
    print(f"\n| {'feature set':<12} | {'N':>4} | {'particles kept/jet':>18} | {'v1 padded B/jet':>15} | "
          f"{'v2 ragged B/jet':>15} | {'v3 B/jet':>8} | {'v3':<12} |")
    print(f"|{'-' * 14}|{'-' * 6}|{'-' * 20}|{'-' * 17}|{'-' * 17}|{'-' * 10}|{'-' * 14}|")
    for r in sizes:
        how = "on read" if r["on_read"] else "stored"
        print(f"| {r['name']:<12} | {r['n']:>4} | {r['kept']:>18.1f} | {r['v1']:>15,.0f} | {r['v2']:>15,.0f} | "
              f"{r['v3']:>8,.0f} | {how:<12} |")
    src, src_v2 = sizes[0]["src"], sizes[0]["src_v2"]
    v1 = sum(r["v1"] for r in sizes)
    v2 = sum(r["v2"] for r in sizes) + src_v2
    v3 = sum(r["v3"] for r in sizes) + src
    print(f"| {'source entry':<12} | {'':>4} | {'':>18} | {'(per set)':>15} | {src_v2:>15,.0f} | {src:>8,.0f} | "
          f"{'':<12} |")
    print(f"| {'all':<12} | {'':>4} | {'':>18} | {v1:>15,.0f} | {v2:>15,.0f} | {v3:>8,.0f} | {'':<12} |")
    gb = {k: v * JETCLASS_JETS / 1e9 for k, v in (("v1", v1), ("v2", v2), ("v3", v3))}
    print(f"\npaper profile, JetClass {JETCLASS_JETS / 1e6:.0f}M jets, these {len(sizes)} feature sets: cache "
          f"{gb['v1']:,.0f} GB (v1 padded) -> {gb['v2']:,.0f} GB (v2 ragged) -> {gb['v3']:,.0f} GB (v3, computed on "
          f"read) = {gb['v3'] / JETCLASS_PUBLISHED_GB:.2f} x the published dataset ({JETCLASS_PUBLISHED_GB} GB). "
          "Ragged sizes scale with the particles per jet of these files (printed above the first table).")


def rate(n, seconds):
    return f"{n / seconds:,.0f}"


class Timer:
    """Wall and CPU time of a block (the CPU figure is the one-core rate on a shared machine)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jets", type=int, default=20_000, help="jets per class file")
    ap.add_argument("--dir", default="/tmp/bench_data")
    ap.add_argument("--features", nargs="+", default=["part_full", "mpmv2", "hepjepa", "mpmv1", "omnijet"],
                    help="feature sets whose conversion and reading are timed (part_full, mpmv2: stored; hepjepa, "
                         "mpmv1, omnijet: computed on read)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rewrite", action="store_true", help="rewrite the synthetic ROOT files")
    ap.add_argument("--no-sizes", action="store_true", help="skip the cache-size table (converts 5 feature sets)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    root = args.dir
    if os.path.exists(os.path.join(root, ".cache")):
        shutil.rmtree(os.path.join(root, ".cache"))
    files = sorted(f for f in (os.listdir(os.path.join(root, "train")) if os.path.isdir(os.path.join(root, "train"))
                               else []) if f.endswith(".root"))
    if len(files) != len(CLASSES) or args.rewrite:
        try:                                   # LZ4 level 4, like the published files (needs lz4 + xxhash)
            import lz4  # noqa: F401
            import xxhash
            codec = uproot.LZ4(4)
        except ImportError:
            codec = None
        write_jetclass(os.path.join(root, "train"), args.jets, classes=CLASSES, seed=0, max_particles=100,
                       compression=codec)
    paths = sorted(os.path.join(root, "train", f) for f in os.listdir(os.path.join(root, "train")))

    rows = []
    n = nconst = 0
    next(iter_jetclass(paths[0], step_size=1000))            # warm-up: imports and uproot's first-read setup
    with Timer() as t:
        for p in paths:
            for raw in iter_jetclass(p):
                n += len(raw)
                nconst += int(raw.mask.sum())
    rows.append(("JetClass ROOT -> padded arrays", "-", n, t))
    for fs in args.features:
        cfg = dict(dataset="jetclass", root=root, train="train/*.root", features=fs, classes=CLASSES)
        with Timer() as t:
            cached_entries(cfg, "train", progress=False)     # converts every file into the cache
        rows.append(("ROOT -> features -> cache (once)", fs, n, t))
        for shuffle in (True, False):
            loader = make_loader(cfg, "train", args.batch_size, shuffle=shuffle, seed=0)
            passes = []
            for _ in range(3):                               # the fastest of three passes (a shared machine)
                with Timer() as t:
                    m = sum(len(b) for b in loader)
                passes.append(t)
            rows.append((f"cache -> JetBatch ({'shuffled' if shuffle else 'sequential'})", fs, m,
                         min(passes, key=lambda t: t.cpu)))

    codec = uproot.open(paths[0]).file.compression
    print(f"\n{n} jets, {nconst / n:.1f} particles per jet on average, {codec}, batch {args.batch_size}, 1 thread\n")
    print(f"| {'stage':<36} | {'features':<9} | {'jets':>7} | {'wall s':>7} | {'jets/s wall':>11} | "
          f"{'jets/s CPU':>10} |")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 12}|")
    for stage, fs, m, t in rows:
        print(f"| {stage:<36} | {fs:<9} | {m:>7} | {t.wall:>7.2f} | {rate(m, t.wall):>11} | {rate(m, t.cpu):>10} |")
    print("\ntargets (one core): ROOT >= 10,000 jets/s, cache >= 100,000 jets/s. 'CPU' = jets per CPU-second of this "
          "process (meaningful on a shared machine); 'wall' includes waiting for the core.")
    if not args.no_sizes:
        print_sizes(cache_sizes(root, paper_feature_sets()))
    return rows


if __name__ == "__main__":
    cli(main)
