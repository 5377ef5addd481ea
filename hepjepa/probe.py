"""Independent linear probe of the frozen HEP-JEPA encoder against the same architecture at random initialisation.

    python -m hepjepa.probe --config hepjepa/configs/mini/finetune_jetclass.yaml --out runs/mini/hepjepa/probe \
        sweep.pretrained=runs/mini/hepjepa/pretrain/checkpoint.pt

For every seed in probe.seeds: probe.n_per_class labelled training jets per class (common.data.subsets.per_class_subset, the
draw of the fine-tuning harness), the downstream backbone (sweep.encoder of the pretrained checkpoint) pooled with
mean + max over its patch tokens, a standardised logistic regression (common.training.probe.linear_probe) scored on up to
probe.max_test_jets jets of probe.eval_split (test: the final evaluation of the tables hepjepa.linear_probe and
hepjepa.ablation_shortcut; val: wherever the probe chooses a default, e.g. bench/hepjepa_shortcut.py). The random
baseline is the same architecture built with the same seed, with its BatchNorm statistics (the physics-bias pair
embedding) set by forward passes from probe.norm_batches class-balanced training batches
(common.training.probe.norm_stat_batches: common.data.subsets.balanced_batches, the draw of every random init of the
kit; common.training.probe.random_init), as the pretrained encoder got them during pretraining. Writes probe.json and
done.json.
"""
from __future__ import annotations

import argparse
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from common.cli import cli
from common.data.array_loader import ArrayLoader
from common.data.datasets import load_arrays
from common.data.subsets import per_class_subset
from common.training.config import add_config_args, config_from_args
from common.training.probe import linear_probe, norm_stat_batches, pooled_embeddings, random_init
from common.training.train_utils import mark_done, write_json

from .model import backbone_fns

EVAL_SPLITS = ("test", "val")


def _batches(arrays: dict, batch_size: int = 256, limit: int | None = None):
    """In-memory jets in order as JetBatch (common.data.array_loader.ArrayLoader); the first `limit` batches."""
    return islice(ArrayLoader(arrays, batch_size, shuffle=False), limit)




def run_probe(cfg: dict) -> dict:
    pc = cfg["probe"]
    n = int(pc["n_per_class"])
    build, load = backbone_fns(cfg)
    split = pc.get("eval_split", "test")
    if split not in EVAL_SPLITS:
        raise ValueError(f"probe.eval_split must be one of {EVAL_SPLITS}, got {split!r}")
    train = load_arrays(cfg["data"], "train")
    test = load_arrays(cfg["data"], split, max_jets=pc["max_test_jets"])
    rows = []
    for seed in pc["seeds"]:
        idx = per_class_subset(train["label"], n, int(seed))
        sub = {k: v[idx] for k, v in train.items() if v is not None}
        torch.manual_seed(int(seed))
        pretrained = build()
        load(pretrained)
        nets = {"pretrained": pretrained,
                "random": random_init(build, int(seed), norm_stat_batches(train, int(pc["norm_batches"])))}
        row = {"seed": int(seed)}
        for name, net in nets.items():
            res = linear_probe(pooled_embeddings(net, _batches(sub)), sub["label"],
                               pooled_embeddings(net, _batches(test)), test["label"], seed=int(seed))
            row[name] = res["accuracy"]
        rows.append(row)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("pretrained", "random")}
    return {"n_per_class": n, "eval_split": split, "n_test_jets": int(len(test["label"])),
            "norm_batches": int(pc["norm_batches"]),
            "encoder": cfg["sweep"]["encoder"], "rows": rows, "mean": mean,
            "gain": mean["pretrained"] - mean["random"]}


def main(argv=None) -> None:
    parser = add_config_args(argparse.ArgumentParser(description="HEP-JEPA frozen linear probe vs random init"))
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    res = run_probe(cfg)
    write_json(Path(args.out) / "probe.json", res)
    print(f"[hepjepa.probe] pretrained {res['mean']['pretrained']:.3f}  random (stats set) "
          f"{res['mean']['random']:.3f}  ({res['n_per_class']} jets/class, {res['n_test_jets']} {res['eval_split']} jets)")
    mark_done(args.out, {"pretrained": res["mean"]["pretrained"], "random": res["mean"]["random"]})


if __name__ == "__main__":
    cli(main)
