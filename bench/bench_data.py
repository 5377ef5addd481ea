"""Data-path throughput on one core: reading JetClass ROOT, converting it into the cache, and reading from the cache.

    python -m bench.bench_data [--jets 20000] [--dir /tmp/bench_data] [--features part_full mpmv1 omnijet]

Writes synthetic JetClass-format files (tests/data_factory.py; ~50 particles per jet on average, like JetClass) and
prints a table of jets/s. Targets: ROOT >= 10k jets/s, cache >= 100k jets/s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

import torch
import uproot

from common.cli import cli
from common.data.datasets import cached_entries, make_loader
from common.data.jetclass import iter_jetclass
from tests.data_factory import write_jetclass

CLASSES = ["QCD", "Tbqq"]


def rate(n, seconds):
    return f"{n / seconds:,.0f}"


class Timer:
    """Wall and CPU time of a block (the CPU figure is the one-core rate on a shared machine)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jets", type=int, default=20_000, help="jets per class file")
    ap.add_argument("--dir", default="/tmp/bench_data")
    ap.add_argument("--features", nargs="+", default=["part_full", "mpmv1", "omnijet"])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rewrite", action="store_true", help="rewrite the synthetic ROOT files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    root = args.dir
    if os.path.exists(os.path.join(root, ".cache")):
        shutil.rmtree(os.path.join(root, ".cache"))
    files = sorted(f for f in (os.listdir(os.path.join(root, "train")) if os.path.isdir(os.path.join(root, "train"))
                               else []) if f.endswith(".root"))
    if len(files) != len(CLASSES) or args.rewrite:
        try:                                   # LZ4 level 4, like the published files (needs lz4 + xxhash)
            import lz4, xxhash  # noqa: F401
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
        cfg = dict(dataset="jetclass", root=root, train="train/*.root", features=fs)
        with Timer() as t:
            cached_entries(cfg, "train", progress=False)     # converts every file into the cache
        rows.append(("ROOT -> features -> cache (once)", fs, n, t))
        for shuffle in (True, False):
            loader = make_loader(cfg, "train", args.batch_size, shuffle=shuffle, seed=0)
            with Timer() as t:
                m = sum(len(b) for b in loader)
            rows.append((f"cache -> JetBatch ({'shuffled' if shuffle else 'sequential'})", fs, m, t))

    codec = uproot.open(paths[0]).file.compression
    print(f"\n{n} jets, {nconst / n:.1f} particles per jet on average, {codec}, batch {args.batch_size}, 1 thread\n")
    print(f"| {'stage':<36} | {'features':<9} | {'jets':>7} | {'wall s':>7} | {'jets/s wall':>11} | "
          f"{'jets/s CPU':>10} |")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 12}|")
    for stage, fs, m, t in rows:
        print(f"| {stage:<36} | {fs:<9} | {m:>7} | {t.wall:>7.2f} | {rate(m, t.wall):>11} | {rate(m, t.cpu):>10} |")
    print("\ntargets (one core): ROOT >= 10,000 jets/s, cache >= 100,000 jets/s. 'CPU' = jets per CPU-second of this "
          "process (meaningful on a shared machine); 'wall' includes waiting for the core.")
    return rows


if __name__ == "__main__":
    cli(main)
