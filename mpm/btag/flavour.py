"""Flavour tagging (light / c / b) on the BTag dataset with an MPMv2 backbone pretrained on JetClass: the
out-of-domain classification study of arXiv:2409.12589 (jetssl workflow/full_pipeline.smk, task btag).

    python -m mpm.btag.flavour --config mpm/configs/btag_v2.yaml --out runs/mpm/v2_btag/kmeans_finetune \
        pretrained.run=runs/mpm/pretrain/mpmv2_kmeans finetune.mode=finetune

For every N in btag.n_train (labelled jets in total, drawn from the train split per seed) and every seed in
finetune.seeds, a classifier (common.training.finetune.run_finetune through mpm/btag/sweep.py; the class-attention head and
settings of the config, finetune.per_n rules applied with N) is trained into <out>/n<N>/seed<S>/ and scored on the
test split. The inputs are the BTag tracks on the scale of the pretraining run (mpm/btag/data.py). The validation
split holds min(finetune.max_val_jets, N) jets (jetssl configs/experiment/train_classifier.yaml: val n_jets = min(1M, n_jets)).
Writes <out>/summary.json and <out>/mpm.v2_btag.json (accuracy as a fraction per seed; the table shows percent).
"""
from __future__ import annotations

from pathlib import Path

from common.cli import cli
from common.training.distributed import cleanup, init_distributed
from common.training.finetune import classification_task
from common.training.finetune_config import finetune_settings
from common.training.sweep import mean_std
from common.training.train_utils import mark_done, start_run

from mpm.btag.data import FLAVOURS
from mpm.btag.sweep import run_btag_task, write_btag_result
from mpm.build import require_pretrained_run

TABLE_ID = "mpm.v2_btag"


def check_n_train(cfg: dict) -> list[int]:
    ns = cfg["btag"]["n_train"]
    if not isinstance(ns, list) or not ns or not all(isinstance(n, int) and n >= 1 for n in ns):
        raise ValueError(f"config: btag.n_train must be a list of labelled-jet counts >= 1 (got {ns!r})")
    return ns


def run_btag(cfg: dict, out: Path, dist) -> dict:
    ns = check_n_train(cfg)

    def task(fc):  # light / c / b with the run's label smoothing
        return classification_task(list(FLAVOURS), float(fc["label_smoothing"]))

    run = run_btag_task(cfg, task, out, dist, ns)
    keys = run["keys"]
    summary, rows = {"mode": finetune_settings(cfg)["mode"], **keys, "per_n": {}}, []
    for n in ns:
        acc = [float(r["test"]["accuracy"]) for r in run["runs"][n]]
        summary["per_n"][str(n)] = {"accuracy": mean_std(acc)}
        rows.append({**keys, "n_train": n, "accuracy": acc})
    if dist.is_main:
        write_btag_result(out, TABLE_ID, rows, summary, cfg, run["pcfg"], run["sources"])
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
