"""Autoregressive sampling of jets from the OmniJet-alpha GPT (arXiv:2403.05618; OJ gabbro/models/backbone.py
generate_batch).

OJ `generate_batch`: start from the start token; at each of up to 128 steps take the logits of the last position,
drop the start-token logit, softmax, draw one token, append; cut every sequence at its first stop token. OJ uses
temperature 1, no top-k and no KV cache; here `temperature`, `top_k` and `use_cache` are switches (the cache does
not change the result, only the speed). A batch stops early once every sequence has emitted the stop token.

The draw is an inverse-CDF lookup with one uniform number per sequence and step from a seeded generator, so the
cached and the uncached path consume identical random numbers and give identical tokens.
"""
from __future__ import annotations

import torch

from omnijet.model import OmniJetGPT
from omnijet.tokens import START


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
