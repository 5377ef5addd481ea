"""Sampling speed of the OmniJet-alpha GPT in jets/s, with and without the KV cache (omnijet_alpha gabbro/models/backbone.py generate_batch).

    python bench/bench_omnijet_sampling.py [--paper-size] [--jets 64] [--max-len 128] [--device cpu|cuda]

Random weights are enough: speed does not depend on them. To make every sequence run the full max_len steps (the
worst case, and a fair comparison) the stop-token logit is suppressed. The default model is shrunken for CPU; with
--paper-size it is the paper's (width 256, 3 blocks, 8 heads, FF 1024, vocabulary 8194).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import cli  # noqa: E402

from omnijet.model import OmniJetGPT  # noqa: E402
from omnijet.sampling import sample  # noqa: E402


def bench(model, jets: int, max_len: int, use_cache: bool, device) -> float:
    gen = torch.Generator(device=device).manual_seed(0)
    sample(model, min(jets, 4), 4, use_cache=use_cache, generator=gen)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    seq = sample(model, jets, max_len, use_cache=use_cache, generator=gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert seq.shape == (jets, max_len + 1)
    return jets / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--paper-size", action="store_true")
    p.add_argument("--jets", type=int, default=64)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.paper_size:
        model = OmniJetGPT(8194, 256, 3, 8, 1024)
    else:
        model = OmniJetGPT(1026, 128, 3, 8, 512)
    with torch.no_grad():
        model.head.bias[-1] = -1e4  # never stop early: every jet runs max_len steps
    model = model.to(device).eval()
    rows = [(name, bench(model, args.jets, args.max_len, cache, device)) for name, cache in
            (("KV cache", True), ("full recomputation", False))]
    size = "paper size (d=256, 3 blocks, vocab 8194)" if args.paper_size else "reduced (d=128, 3 blocks, vocab 1026)"
    print(f"OmniJet-alpha sampling, {size}, {args.jets} jets x {args.max_len} tokens on {device}")
    print(f"| {'path':20s} | jets/s |\n|{'-' * 22}|--------|")
    for name, rate in rows:
        print(f"| {name:20s} | {rate:6.1f} |")
    print(f"speed-up from the KV cache: {rows[0][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    cli(main)
