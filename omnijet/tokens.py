"""The token-sequence format of the GPT (OJ gabbro/data/data_tokenization.py, add_start_end_tokens): written by
omnijet.tokenize_dataset, read by omnijet.pretrain, omnijet.generate and the fine-tuning backbone (omnijet.model).

    sequence = [0 (start)] + [code + 1 for each particle, in pT order] + [num_codes + 1 (stop)]

so the vocabulary has num_codes + 2 entries (8194 for 8192 codes). Sequences are zero-padded to N + 2 and stored as
int16 (int32 when the vocabulary does not fit) .npy files, one per split, with their lengths and class labels:

    <dir>/<split>_tokens.npy (J, N+2)   <dir>/<split>_lengths.npy (J,) int32   <dir>/<split>_labels.npy (J,) int64

and <dir>/done.json holds the codebook size (`num_codes`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_path

START = 0


def stop_token(num_codes: int) -> int:
    return num_codes + 1


def vocab_size(num_codes: int) -> int:
    """Start, one id per code, stop."""
    return num_codes + 2


def token_dtype(num_codes: int):
    return np.int16 if vocab_size(num_codes) <= np.iinfo(np.int16).max else np.int32


def codes_to_sequences(codes: np.ndarray, mask: np.ndarray, num_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) codes of real particles (mask True, real particles first) -> (tokens (B, N+2), lengths (B,))."""
    codes, mask = np.asarray(codes), np.asarray(mask, dtype=bool)
    B, N = codes.shape
    n = mask.sum(1)
    if not np.array_equal(mask, np.arange(N)[None, :] < n[:, None]):
        raise ValueError("codes_to_sequences: the mask must mark real particles first (right padding)")
    tokens = np.zeros((B, N + 2), dtype=token_dtype(num_codes))
    tokens[:, 1:N + 1] = np.where(mask, codes + 1, 0)
    tokens[np.arange(B), n + 1] = stop_token(num_codes)
    return tokens, (n + 2).astype(np.int32)


def sequences_to_codes(tokens, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences starting with the start token -> (codes (B, L-1) long, mask (B, L-1) bool).

    Everything from the first stop token on (and any start token after position 0, which the sampler never emits)
    is padding; the start token is dropped and 1 is subtracted (OJ gabbro/data/data_tokenization.py)."""
    t = torch.as_tensor(np.asarray(tokens) if not torch.is_tensor(tokens) else tokens).long()[:, 1:]
    is_stop = (t == stop_token(num_codes)) | (t == START)
    real = torch.cumsum(is_stop.long(), dim=1) == 0
    codes = (t - 1).clamp(0, num_codes - 1).masked_fill(~real, 0)
    return codes, real


def save_npy(path: Path, array: np.ndarray) -> None:
    """Atomic .npy write (common.atomic)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def load_split(tokens_dir, split: str) -> dict:
    """tokens, lengths, labels of one split of a token directory."""
    d = Path(tokens_dir)
    out = {}
    for key in ("tokens", "lengths", "labels"):
        p = d / f"{split}_{key}.npy"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing token file (run omnijet.tokenize_dataset first)")
        out[key] = np.load(p)
    if not (len(out["tokens"]) == len(out["lengths"]) == len(out["labels"])):
        raise ValueError(f"{d}: {split} token/length/label files disagree in length")
    return out


def num_codes_of(tokens_dir) -> int:
    """The codebook size of the tokeniser that wrote a finished token directory (its done.json)."""
    done = Path(tokens_dir) / "done.json"
    if not done.is_file():
        raise FileNotFoundError(f"{done}: token directory not finished (run omnijet.tokenize_dataset first)")
    return int(json.loads(done.read_text())["num_codes"])
