"""Sample jets from the OmniJet-alpha GPT (OJ gabbro/models/backbone.py generate_batch) and decode them through the
VQ-VAE.

    python -m omnijet.generate --config omnijet/configs/generate.yaml --out runs/omnijet/generate \
        pretrain_dir=runs/omnijet/pretrain tokenizer_dir=runs/omnijet/tokenizer

OJ `generate_batch`: start from the start token; at each of up to 128 steps take the logits of the last position,
drop the start-token logit, softmax, draw one token, append; cut every sequence at its first stop token. OJ uses
temperature 1, no top-k and no KV cache; here `temperature`, `top_k` and `use_kv_cache` are switches (the cache
does not change the result, only the speed). A batch stops early once every sequence has emitted the stop token.

The draw is an inverse-CDF lookup with one uniform number per sequence and step from a seeded generator, so the
cached and the uncached path consume identical random numbers and give identical tokens.

`sample.seeds` lists the sampling seeds: one independent sample of `sample.n_jets` jets per seed (its own seeded
generator), so that the generation metrics have per-seed values.

Writes tokens.npy (S * J, 1 + max_len; start token first, zero after the stop token), particles.npz (x: omnijet
features (S * J, max_len, 3), mask, seed: the sampling seed of every jet) and done.json (jets/s) into --out.
"""
from __future__ import annotations

import io
import itertools
import os
import time
from pathlib import Path

import numpy as np
import torch

from common.train_utils import mark_done, progress, seed_everything, start_run
from omnijet.model import OmniJetGPT
from omnijet.tokenize_dataset import START, save_npy, sequences_to_codes, stop_token


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> torch.Tensor:
    """One token per row from next-token logits (B, V): never the start token; temperature; optional top-k."""
    logits = logits[:, 1:].float() / temperature  # drop the start-token logit (OJ), ids shift by one
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cdf = torch.softmax(logits, dim=-1).cumsum(-1)
    u = torch.rand(logits.shape[0], 1, generator=generator, device=generator.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).clamp_max(logits.shape[-1] - 1).squeeze(1) + 1


@torch.no_grad()
def sample(model: OmniJetGPT, n: int, max_len: int, *, temperature: float = 1.0, top_k: int | None = None,
           use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """n token sequences (n, 1 + max_len): start token, up to max_len sampled tokens, zero after the first stop."""
    model.eval()
    device = next(model.parameters()).device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    stop = model.vocab_size - 1
    seq = torch.full((n, 1), START, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    cache = model.backbone.new_cache() if use_cache else None
    for _ in range(max_len):
        if use_cache:  # feed only the newest token; keys and values of earlier ones come from the cache
            h = model.backbone.forward_incremental(seq[:, -1:], cache)[:, -1]
            logits = model.head(h)
        else:  # recompute the whole prefix (the OJ way)
            logits = model(seq)[:, -1]
        nxt = _draw(logits, temperature, top_k, generator)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        finished |= nxt == stop
        if bool(finished.all()):
            break
    after_stop = torch.cumsum((seq == stop).long(), dim=1) - (seq == stop).long() > 0
    seq = seq.masked_fill(after_stop, 0)
    if seq.shape[1] < max_len + 1:
        seq = torch.nn.functional.pad(seq, (0, max_len + 1 - seq.shape[1]))
    return seq


@torch.no_grad()
def decode_sequences(tokens: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences -> (omnijet features x (B, L-1, 3), mask): drop start, cut at stop, subtract 1, decode."""
    codes, mask = sequences_to_codes(tokens, tokenizer.num_codes)
    device = next(itertools.chain(tokenizer.parameters(), tokenizer.buffers())).device
    codes, mask = codes.to(device), mask.to(device)
    return tokenizer.decode(codes, mask), mask


def save_npz(path: Path, **arrays) -> None:
    """Atomic .npz write."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def main(argv=None) -> None:
    from omnijet.pretrain import load_gpt
    from omnijet.train_tokenizer import load_tokenizer

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
    main()
