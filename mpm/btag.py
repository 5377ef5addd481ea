"""Flavour tagging (light / c / b) on the BTag dataset with an MPMv2 backbone pretrained on JetClass: the
out-of-domain classification study of arXiv:2409.12589 (jetssl workflow/full_pipeline.smk, task btag).

    python -m mpm.btag --config mpm/configs/btag_v2.yaml --out runs/mpm/v2_btag/kmeans_finetune \
        pretrained.run=runs/mpm/pretrain/mpmv2_kmeans finetune.mode=finetune

For every N in btag.n_train (labelled jets in total, drawn from the train split per seed) and every seed in
finetune.seeds, a classifier (common.finetune.run_finetune; the class-attention head and settings of the config,
finetune.per_n rules applied with N) is trained into <out>/n<N>/seed<S>/ and scored on the test split. The inputs
are the BTag tracks on the scale of the pretraining run (mpm/btag_data.py). The validation split holds
min(finetune.max_val_jets, N) jets (jetssl configs/experiment/train_classifier.yaml: val n_jets = min(1M, n_jets)).
Writes <out>/summary.json and <out>/mpm.v2_btag.json (accuracy as a fraction per seed; the table shows percent).
"""
from __future__ import annotations

from pathlib import Path

from common.cli import cli
from common.distributed import cleanup, init_distributed
from common.finetune import run_finetune
from common.finetune_config import finetune_settings
from common.sweep import mean_std
from common.train_utils import mark_done, start_run, write_json

from mpm.btag_data import FLAVOURS, BTagLoader, load_btag_split, pretraining_quantiles, subset
from mpm.btag_results import table_keys, write_btag_result
from mpm.build import backbone_fns, require_pretrained_run

TABLE_ID = "mpm.v2_btag"


def check_n_train(cfg: dict) -> list[int]:
    ns = cfg["btag"]["n_train"]
    if not isinstance(ns, list) or not ns or not all(isinstance(n, int) and n >= 1 for n in ns):
        raise ValueError(f"config: btag.n_train must be a list of labelled-jet counts >= 1 (got {ns!r})")
    return ns


def run_btag(cfg: dict, out: Path, dist) -> dict:
    fc = finetune_settings(cfg)
    ns = check_n_train(cfg)
    build, load, pcfg = backbone_fns(cfg)
    load = load if fc["mode"] != "scratch" else None
    quantiles = pretraining_quantiles(pcfg)
    data = cfg["data"]
    arrays = {"train": load_btag_split(data, "train", quantiles),
              "val": load_btag_split(data, "val", quantiles, max_jets=fc["max_val_jets"]),
              "test": load_btag_split(data, "test", quantiles, max_jets=fc["max_test_jets"])}
    keys = table_keys(cfg, fc, pcfg)
    summary, rows, sources = {"mode": fc["mode"], **keys, "per_n": {}}, [], []
    for n in ns:
        runs = []
        for seed in fc["seeds"]:
            d = out / f"n{n}" / f"seed{seed}"

            def loader_fn(data_cfg, split, batch_size, *, shuffle, seed=0, rank=0, world_size=1, subset_seed=0,
                          max_jets=None, **kw):
                a = subset(arrays["train"], n, subset_seed, "train") if split == "train" else arrays[split]
                if split == "val":
                    a = {k: v[:min(n, len(v))] for k, v in a.items()}
                return BTagLoader(a, batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)

            runs.append(run_finetune(cfg, build, load, d, dist, seed=seed, n_per_class=None, loader_fn=loader_fn,
                                     class_names=list(FLAVOURS), n_total=n))
            sources.append(d / "result.json")
        acc = [float(r["test"]["accuracy"]) for r in runs]
        summary["per_n"][str(n)] = {"accuracy": mean_std(acc)}
        rows.append({**keys, "n_train": n, "accuracy": acc})
    if dist.is_main:
        write_json(out / "summary.json", summary)
        write_btag_result(out, TABLE_ID, rows, cfg, pcfg, sources + [out / "summary.json"])
    return summary


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, config_path = run
    fc = finetune_settings(cfg)
    require_pretrained_run(cfg, fc["mode"], config_path)
    dist = init_distributed(cfg["device"])
    try:
        summary = run_btag(cfg, out, dist)
        if dist.is_main:
            mark_done(out, {"mode": fc["mode"], "task": summary["task"], "n_train": list(summary["per_n"])})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
