"""Tokenise the top + QCD jets for the GPT: every jet of the train, val and test splits through the trained
tokeniser, written as token sequences in the format of omnijet/tokens.py (OJ gabbro/data/data_tokenization.py).

    python -m omnijet.tokenize_dataset --config omnijet/configs/pretrain.yaml --out runs/omnijet/tokens \
        tokenizer_dir=runs/omnijet/tokenizer
"""
from __future__ import annotations

import numpy as np
import torch

from common.cli import cli
from common.data.datasets import make_loader
from common.training.train_utils import mark_done, progress, start_run

from omnijet.tokens import codes_to_sequences, save_npy
from omnijet.vqvae import load_tokenizer


@torch.no_grad()
def tokenize_split(tokenizer, data_cfg: dict, split: str, batch_size: int, max_jets, device) -> dict:
    """tokens, lengths, labels of one split, in file order."""
    loader = make_loader(data_cfg, split, batch_size, shuffle=False, max_jets=max_jets)
    toks, lens, labels = [], [], []
    bar = progress(len(loader.dataset) if hasattr(loader, "dataset") else None, f"tokenize {split}", True)
    for batch in loader:
        # OJ keeps the file order, which is pT-descending (JetClass, arXiv:2202.03772): the token order relies on it
        lpt = batch.x[..., 0].masked_fill(~batch.mask, float("-inf"))
        if (lpt[:, 1:] > lpt[:, :-1] + 1e-5).any():
            raise ValueError(f"{data_cfg['root']} ({split}): particles are not in decreasing pT order")
        batch = batch.to(device)
        codes = tokenizer.tokenize(batch.x, batch.mask)
        t, n = codes_to_sequences(codes.cpu().numpy(), batch.mask.cpu().numpy(), tokenizer.num_codes)
        toks.append(t), lens.append(n), labels.append(batch.label.cpu().numpy())
        bar.update(jets=len(batch), steps=len(batch))
    bar.close()
    return dict(tokens=np.concatenate(toks), lengths=np.concatenate(lens), labels=np.concatenate(labels))


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is None:
        return
    cfg, out, _ = run
    device = torch.device("cuda" if torch.cuda.is_available() and cfg["device"] != "cpu" else "cpu")
    tokenizer = load_tokenizer(cfg["tokenizer_dir"], device)
    counts = {}
    for split in ("train", "val", "test"):
        res = tokenize_split(tokenizer, cfg["data"], split, cfg["tokenize"]["batch_size"],
                             cfg["tokenize"][f"max_jets_{split}"], device)
        for key, arr in res.items():
            save_npy(out / f"{split}_{key}.npy", arr)
        counts[split] = int(len(res["tokens"]))
    mark_done(out, {"num_codes": tokenizer.num_codes, "jets": counts})


if __name__ == "__main__":
    cli(main)
