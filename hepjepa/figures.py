"""HEP-JEPA figures (PNG):

  Figure 2  validation loss against step, fine-tuned vs from scratch at 0.5 % labels, and the step at which the
            fine-tuned model first reaches the best validation loss of the from-scratch model (data: the val-loss
            curves that common.training.finetune keeps in each run's result.json);
  Figure 3  t-SNE (scikit-learn) of the pooled embeddings (masked mean over patch tokens) of test jets, coloured by
            class: the pretrained backbone beside the same architecture at random initialisation (BatchNorm statistics
            set from data, common.training.probe.random_init);
  monitors  (ours) the pretraining log: loss, prediction / target spreads, and the shortcut monitors of
            hepjepa.monitors (between-jet share of the target variance, R^2 of the targets from position alone,
            effective rank of the pooled embeddings, online-probe accuracy).

    python -m hepjepa.figures --config hepjepa/configs/mini/finetune_jetclass.yaml --out runs/mini/hepjepa/figures \
        --finetune-dir runs/mini/hepjepa/ft_jetclass sweep.pretrained=runs/mini/hepjepa/pretrain/checkpoint.pt
Writes figure2_loss_vs_step.png, figure2.json (the numbers), figure3_tsne.png, pretrain_monitors.png (from the
log.jsonl beside sweep.pretrained) and done.json into --out.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.blocks.pooling import masked_mean
from common.cli import cli
from common.data.batch import JetBatch
from common.data.datasets import dataset_info, load_arrays
from common.results.plots import save_figure
from common.training.config import add_config_args, config_from_args
from common.training.probe import norm_stat_batches, random_init  # the kit's one class-balanced statistics draw
from common.training.train_utils import mark_done, write_json

from .convergence import FIGURE2_PERCENT, steps_to_reach
from .model import backbone_fns


def _curve(run_dir: Path, mode: str, pct) -> list | None:
    """val_curve [[step, loss], ...] of the first seed of <run_dir>/<mode>/pct<pct>/n*/seed*/result.json."""
    found = sorted((run_dir / mode / f"pct{pct}").glob("n*/seed*/result.json"))
    return json.loads(found[0].read_text())["val_curve"] if found else None


def data_note(data_cfg: dict) -> str:
    """The line under a figure's title that names its jets: the kit's simulation (a data root the simulator made, with
    its simulate.json) or the folder read."""
    root = Path(str(data_cfg.get("root", "")))
    if (root / "simulate.json").is_file():
        return f"data: the kit's simulated sample at {root} (not the papers' data)"
    return f"data: {data_cfg.get('dataset', 'jets')} at {root}"


def _title(fig, title: str, note: str) -> None:
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)


def figure2(finetune_dir, out_dir, pct=FIGURE2_PERCENT, note: str = "") -> dict:
    """Val loss vs step for fine-tuned and scratch at `pct` % labels; returns the numbers written to figure2.json.
    note: the data line under the title (data_note)."""
    ft, sc = _curve(Path(finetune_dir), "finetune", pct), _curve(Path(finetune_dir), "scratch", pct)
    if not ft or not sc:
        raise FileNotFoundError(f"{finetune_dir}: no finetune/scratch runs at pct{pct} (run hepjepa.finetune first)")
    best_scratch = min(v for _, v in sc)
    reach = steps_to_reach(ft, best_scratch)  # first step where fine-tuning matches it
    reach = int(reach) if math.isfinite(reach) else None
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(*zip(*sc), "o-", ms=3, label="from scratch")
    ax.plot(*zip(*ft), "o-", ms=3, label="HEP-JEPA fine-tuned")
    ax.axhline(best_scratch, color="grey", ls=":", lw=1, label=f"best scratch loss {best_scratch:.3f}")
    if reach is not None:
        ax.axvline(reach, color="C1", ls="--", lw=1, label=f"fine-tuned reaches it at step {reach}")
    else:
        ax.plot([], [], " ", label="fine-tuned never reaches it in this run")
    ax.set(xlabel="fine-tuning step", ylabel="validation loss")
    _title(fig, f"HEP-JEPA Figure 2: validation loss, fine-tuned vs from scratch (JetClass, {pct}% labels)", note)
    ax.legend(fontsize=8)
    save_figure(fig, Path(out_dir) / "figure2_loss_vs_step.png")
    info = {"label_percent": float(pct), "best_scratch_val_loss": best_scratch,
            "best_scratch_step": min(sc, key=lambda sv: sv[1])[0], "finetune_reaches_scratch_best_at_step": reach,
            "finetune_best_val_loss": min(v for _, v in ft), "finetune_curve": ft, "scratch_curve": sc}
    write_json(Path(out_dir) / "figure2.json", info)
    return info


@torch.no_grad()
def pooled_embeddings(backbone, arrays: dict, batch_size: int = 256) -> np.ndarray:
    backbone.eval()
    out = []
    for i in range(0, len(arrays["label"]), batch_size):
        sl = slice(i, i + batch_size)
        b = JetBatch(*(torch.from_numpy(arrays[k][sl]) for k in ("x", "mask", "p4", "jet", "label")))
        h, m = backbone(b)
        out.append(masked_mean(h, m).numpy())
    return np.concatenate(out)


def figure3(cfg: dict, out_dir, max_jets: int = 2000, seed: int = 0) -> None:
    """t-SNE of pooled test-jet embeddings: pretrained (sweep.pretrained) vs random initialisation (a figure: it
    chooses nothing, so it may read the test split)."""
    from sklearn.manifold import TSNE

    info = dataset_info(cfg["data"])
    arrays = load_arrays(cfg["data"], "test", max_jets=max_jets)
    build, load = backbone_fns(cfg)
    torch.manual_seed(seed)
    pretrained = build()
    load(pretrained)
    random = random_init(build, seed, norm_stat_batches(load_arrays(cfg["data"], "train", max_jets=20 * 256), 20, 256))
    panels = {"HEP-JEPA pretrained": pretrained, "random initialisation (stats set)": random}
    fig = Figure(figsize=(11, 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    y = arrays["label"]
    for ax, (title, net) in zip(axes, panels.items()):
        z = pooled_embeddings(net, arrays)
        perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 4)))
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
        for c, name in enumerate(info["class_names"]):
            sel = y == c
            if sel.any():
                ax.scatter(emb[sel, 0], emb[sel, 1], s=4, alpha=0.6, label=name)
        ax.set(title=f"{title} ({len(z)} test jets)", xticks=[], yticks=[])
    axes[1].legend(markerscale=3, fontsize=7, loc="best")
    _title(fig, "HEP-JEPA Figure 3: t-SNE of the pooled jet embeddings, coloured by class", data_note(cfg["data"]))
    save_figure(fig, Path(out_dir) / "figure3_tsne.png")


MONITOR_PANELS = (("JEPA loss", ("loss", "val_loss")), ("spread", ("pred_std", "target_std")),
                  ("shortcut monitors", ("between_jet_share", "between_jet_share_encoder", "position_r2")), ("effective rank", ("effective_rank",)),
                  ("online probe", ("online_probe_acc",)))


def figure_monitors(log_path, out_dir, note: str = "") -> bool:
    """The pretraining monitors against step from a log.jsonl; False when the log is missing."""
    log_path = Path(log_path)
    if not log_path.is_file():
        return False
    recs = [json.loads(line) for line in log_path.read_text().splitlines()]
    fig = Figure(figsize=(15, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (title, keys) in zip(fig.subplots(1, len(MONITOR_PANELS)), MONITOR_PANELS):
        for k in keys:
            pts = [(r["step"], r[k]) for r in recs if k in r and "step" in r]
            if pts:
                ax.plot(*zip(*pts), "-", lw=1.2, label=k)
        ax.set(title=title, xlabel="pretraining step")
        ax.legend(fontsize=7)
    _title(fig, "HEP-JEPA pretraining monitors (ours)", note)
    save_figure(fig, Path(out_dir) / "pretrain_monitors.png")
    return True


def main(argv=None) -> None:
    parser = add_config_args(argparse.ArgumentParser(description="HEP-JEPA Figures 2 and 3"))
    parser.add_argument("--finetune-dir", required=True, help="output folder of hepjepa.finetune on JetClass")
    parser.add_argument("--label-percent", default=str(FIGURE2_PERCENT), help="label fraction of Figure 2 (a sweep folder pct<P>)")
    parser.add_argument("--tsne-jets", type=int, default=2000, help="test jets in the t-SNE")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    note = data_note(cfg["data"])
    f2 = figure2(args.finetune_dir, args.out, args.label_percent, note)
    figure3(cfg, args.out, args.tsne_jets, cfg["seed"])
    figure_monitors(Path(cfg["sweep"]["pretrained"]).parent / "log.jsonl", args.out, note)
    mark_done(args.out, {"finetune_reaches_scratch_best_at_step": f2["finetune_reaches_scratch_best_at_step"]})


if __name__ == "__main__":
    cli(main)
