"""Sample jets from the OmniJet-alpha GPT (omnijet/sampling.py, OJ gabbro/models/backbone.py generate_batch) and
decode them through the VQ-VAE.

    python -m omnijet.generate --config omnijet/configs/generate.yaml --out runs/omnijet/generate \
        pretrain_dir=runs/omnijet/pretrain tokenizer_dir=runs/omnijet/tokenizer

`sample.seeds` lists the sampling seeds: one independent sample of `sample.n_jets` jets per seed (its own seeded
generator), so that the generation metrics have per-seed values. `sample.temperature`, `sample.top_k` and
`sample.use_kv_cache` are the switches of omnijet.sampling.sample (OJ: 1, none, no cache).

Writes tokens.npy (S * J, 1 + max_len; start token first, zero after the stop token), particles.npz (x: omnijet
features (S * J, max_len, 3), mask, seed: the sampling seed of every jet) and done.json (jets/s) into --out.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_path
from common.cli import cli
from common.training.train_utils import mark_done, progress, seed_everything, start_run

from omnijet.model import load_gpt
from omnijet.sampling import sample
from omnijet.tokens import save_npy, sequences_to_codes, stop_token
from omnijet.vqvae import load_tokenizer


@torch.no_grad()
def decode_sequences(tokens: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences -> (omnijet features x (B, L-1, 3), mask): drop start, cut at stop, subtract 1, decode."""
    codes, mask = sequences_to_codes(tokens, tokenizer.num_codes)
    device = next(itertools.chain(tokenizer.parameters(), tokenizer.buffers())).device
    codes, mask = codes.to(device), mask.to(device)
    return tokenizer.decode(codes, mask), mask


def save_npz(path: Path, **arrays) -> None:
    """Atomic .npz write (common.atomic)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is None:
        return
    cfg, out, _ = run
    seed_everything(cfg["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() and cfg["device"] != "cpu" else "cpu")
    model, _ = load_gpt(cfg["pretrain_dir"], device)
    tokenizer = load_tokenizer(cfg["tokenizer_dir"], device)
    if model.vocab_size != tokenizer.num_codes + 2:
        raise ValueError(f"{cfg['pretrain_dir']}: GPT vocabulary {model.vocab_size} does not match the tokeniser "
                         f"{cfg['tokenizer_dir']} ({tokenizer.num_codes} codes + start + stop)")
    sc = cfg["sample"]
    seeds = sampling_seeds(sc)
    all_tokens, all_x, all_mask, all_seed = [], [], [], []
    bar = progress(sc["n_jets"] * len(seeds), "omnijet sample", True)
    t0 = time.perf_counter()
    for seed in seeds:
        gen = torch.Generator(device=device).manual_seed(seed)
        for start in range(0, sc["n_jets"], sc["batch_size"]):
            n = min(sc["batch_size"], sc["n_jets"] - start)
            tokens = sample(model, n, sc["max_len"], temperature=sc["temperature"], top_k=sc["top_k"],
                            use_cache=sc["use_kv_cache"], generator=gen)
            x, mask = decode_sequences(tokens, tokenizer)
            all_tokens.append(tokens.cpu().numpy()), all_x.append(x.cpu().numpy())
            all_mask.append(mask.cpu().numpy()), all_seed.append(np.full(n, seed, dtype=np.int64))
            bar.update(jets=n, steps=n)
    bar.close()
    n_total = sc["n_jets"] * len(seeds)
    rate = n_total / (time.perf_counter() - t0)
    tokens = np.concatenate(all_tokens)
    save_npy(out / "tokens.npy", tokens.astype(np.int32))
    save_npz(out / "particles.npz", x=np.concatenate(all_x).astype(np.float32), mask=np.concatenate(all_mask),
             seed=np.concatenate(all_seed))
    ended = float((tokens == stop_token(tokenizer.num_codes)).any(1).mean())
    mark_done(out, {"jets": n_total, "seeds": seeds, "jets_per_second": rate, "fraction_with_stop_token": ended,
                    "kv_cache": sc["use_kv_cache"], "temperature": sc["temperature"], "top_k": sc["top_k"]})
    print(f"generated {sc['n_jets']} jets for each of the seeds {seeds} at {rate:.1f} jets/s ({ended:.1%} ended "
          f"with the stop token)")


def sampling_seeds(sc: dict) -> list[int]:
    """sample.seeds: a non-empty list of distinct integers."""
    seeds = sc.get("seeds")
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ValueError(f"sample.seeds must be a non-empty list of distinct integers, got {seeds!r}")
    return seeds


if __name__ == "__main__":
    cli(main)
