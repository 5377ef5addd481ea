"""HEP-JEPA downstream runs: a thin script around common.training.finetune (arXiv:2502.03933: JetClass few-shot,
top tagging, quark-gluon; frozen / fine-tuned / from scratch).

    python -m hepjepa.finetune --config hepjepa/configs/finetune_jetclass.yaml --out runs/hepjepa/ft_jetclass \
        sweep.pretrained=runs/hepjepa/pretrain/checkpoint.pt

For every mode in sweep.modes (fixed = frozen backbone, finetune = all weights, scratch = same model re-initialised)
and every label percentage in sweep.label_percents it trains one classifier per seed (common.training.sweep.run_sweep) into
<out>/<mode>/pct<P>/..., then writes <out>/summary.json (one row per mode and percentage: accuracy, AUC, rejections,
each a list over seeds) and <out>/done.json. Finished runs are skipped, so an interrupted sweep resumes.

Label fractions: P % of the training split read here, spread evenly over the classes (n_per_class =
round(P/100 * N_train / C), at least 1); 100 % = the whole split. In the mini profile the split is the simulated one.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from common.cli import cli
from common.data.datasets import build_dataset, dataset_info, make_loader
from common.data.subsets import label_count
from common.training.distributed import cleanup, init_distributed
from common.training.sweep import run_sweep
from common.training.train_utils import mark_done, start_run, write_json

from .model import backbone_fns


def safe_loader(data_cfg, split, batch_size, **kw):
    """make_loader, dropping a last training batch of a single jet (BatchNorm in the head cannot train on one)."""
    loader = make_loader(data_cfg, split, batch_size, **kw)
    n = len(loader.dataset)
    if split == "train" and n > batch_size and n % batch_size == 1:
        loader = make_loader(data_cfg, split, batch_size, **{**kw, "drop_last": True})
    return loader


def run(cfg: dict, out_dir, dist) -> dict:
    out = Path(out_dir)
    sweep = cfg["sweep"]
    info = dataset_info(cfg["data"])
    n_train = len(build_dataset(cfg["data"], "train"))
    build, load = backbone_fns(cfg)
    rows = []
    for mode in sweep["modes"]:
        for pct in sweep["label_percents"]:
            n = label_count(float(pct), n_train, len(info["class_names"]))
            run_cfg = copy.deepcopy(cfg)
            run_cfg["finetune"]["mode"] = mode
            summary = run_sweep(run_cfg, build, None if mode == "scratch" else load, out / mode / f"pct{pct}", dist,
                                n_values=[n], loader_fn=safe_loader, class_names=info["class_names"])
            row = summary["rows"][0]
            rows.append({"task": sweep["task"], "mode": mode, "label_percent": pct, "n_per_class": n,
                         "n_train_total": n_train, **{k: v for k, v in row.items() if k not in ("mode", "n_per_class")}})
    result = {"task": sweep["task"], "dataset": cfg["data"]["dataset"], "class_names": info["class_names"],
              "seeds": cfg["finetune"]["seeds"], "rows": rows}
    if dist.is_main:
        write_json(out / "summary.json", result)
    return result


def main(argv=None) -> None:
    opened = start_run("HEP-JEPA fine-tuning sweeps", argv)
    if opened is None:
        return
    cfg, out, _ = opened
    dist = init_distributed(cfg["device"])
    try:
        torch.manual_seed(cfg["seed"])
        res = run(cfg, out, dist)
        if dist.is_main:
            mark_done(out, {"runs": len(res["rows"])})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
