"""Weak supervision with Classification Without Labels (CWoLa) on top of an MPM backbone (arXiv:2401.13537 and
arXiv:2409.12589, weak-supervision studies).

    python -m mpm.cwola --config mpm/configs/cwola_v1.yaml --out runs/mpm/cwola/fixed \
        pretrained.run=runs/mpm/mpmv1 finetune.mode=fixed

Two sets of background (QCD) jets get the pseudo-labels 0 and 1 (alternating by index, as in the V2 code); N signal
jets (Tbqq) are added to set 1. A classifier (common.training.finetune: fixed / finetune / scratch backbone) learns to tell the
two sets apart; the validation split is built the same way (no true labels are used for model selection). MPMv2 trains
10 epochs and keeps the last weights (finetune.select: last, jetssl configs/callbacks/cwola.yaml); settings that depend
on the number of signal jets are finetune.per_n rules with N = n_signal. On a pure test set of true QCD and top jets we
report
  sic        TPR / sqrt(FPR) at FPR = 1 % (MPMv2 definition, common.training.metrics.sic_at_fpr)
  sic_cut05  (S/sqrt(B) after a cut at score 0.5) / (S/sqrt(B) before) = eff_S / sqrt(eff_B) (MPMv1 definition)
plus the AUC. Results: <out>/n<N>/seed<S>/result.json ("test") and <out>/summary.json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.cli import cli
from common.data.array_loader import ArrayLoader
from common.data.datasets import build_dataset, load_arrays
from common.data.features import DataError, get_feature_set
from common.training.distributed import cleanup, init_distributed
from common.training.finetune import classification_task, evaluate_metrics, run_finetune
from common.training.finetune_config import finetune_settings
from common.training.metrics import sic_at_fpr
from common.training.sweep import mean_std
from common.training.train_utils import mark_done, start_run, write_json

from mpm.build import backbone_fns

# the pure test set is scored in batches of this many jets (its neutral-IP noise is drawn per batch, seeded by the
# batch's jets: a fixed batching keeps the scores of a run reproducible across finetune.batch_size settings)
TEST_BATCH = 1024


def _take(arrays: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in arrays.items() if v is not None}


def _cat(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def cwola_split(arrays: dict, n_background: int, n_signal: int, seed: int, where: str) -> dict:
    """Background jets (label 0) alternately pseudo-labelled 0 / 1, plus n_signal signal jets (label 1) labelled 1."""
    y = np.asarray(arrays["label"])
    bkg, sig = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    if len(bkg) < n_background:
        raise ValueError(f"CWoLa {where}: {len(bkg)} background jets available, cwola.n_background={n_background}")
    if len(sig) < n_signal:
        raise ValueError(f"CWoLa {where}: {len(sig)} signal jets available, n_signal={n_signal}")
    rng = np.random.default_rng(seed)
    bkg = rng.permutation(bkg)[:n_background]
    sig = rng.permutation(sig)[:n_signal]
    out = _cat([_take(arrays, bkg), _take(arrays, sig)])
    out["label"] = np.concatenate([np.arange(n_background) % 2, np.ones(n_signal, dtype=np.int64)]).astype(np.int64)
    return out


def _load_split(data: dict, split: str, n_per_class: int) -> dict:
    """n_per_class jets of each class in memory (JetClass splits hold millions); the whole split when a class has
    fewer (small simulated samples)."""

    try:
        ds = build_dataset(data, split, n_per_class=n_per_class, subset_seed=0)
    except DataError:
        return load_arrays(data, split)
    return ds.gather(np.arange(len(ds)))


def sic_cut(y: np.ndarray, s: np.ndarray, cut: float = 0.5) -> float:
    """MPMv1 SIC: (S/sqrt(B) after the cut) / (S/sqrt(B) before) = eff_S / sqrt(eff_B)."""
    eff_s = float(np.mean(s[y == 1] > cut))
    eff_b = float(np.mean(s[y == 0] > cut))
    return float("nan") if eff_b == 0 else eff_s / np.sqrt(eff_b)


def cwola_metrics(fpr: float):
    """The test metrics of a CWoLa classifier on the pure test set (true labels, signal score p[:, 1]): those of every
    binary classifier (common.training.finetune.evaluate_metrics) plus sic (at FPR = cwola.fpr) and sic_cut05."""

    def metrics(test):
        y, s = test["labels"], test["probs"][:, 1]
        return {**evaluate_metrics(y, test["probs"], ["background", "signal"]),
                "sic": sic_at_fpr(y, s, fpr), "sic_cut05": sic_cut(y, s)}

    return metrics


def run_cwola(cfg: dict, out: Path, dist) -> dict:
    c = cfg["cwola"]
    fc = finetune_settings(cfg)
    build, load = backbone_fns(cfg)
    load = load if fc["mode"] != "scratch" else None
    data = cfg["data"]
    n_val_bkg = int(c["n_background"] * c["val_fraction"])
    n_sig_max = max(c["n_signal"])
    train_all = _load_split(data, "train", max(c["n_background"], n_sig_max))
    val_all = _load_split(data, "val", max(n_val_bkg, int(round(n_sig_max * c["val_fraction"]))))
    test = load_arrays(data, "test", max_jets=c["test_jets"])
    features = get_feature_set(data["features"])

    def task(f):  # trained on the pseudo-labels set0 / set1, scored on the true labels of the test set
        return classification_task(["set0", "set1"], float(f["label_smoothing"]), cwola_metrics(c["fpr"]))

    summary = {"mode": fc["mode"], "rows": [], "per_n": {}}
    for n_sig in c["n_signal"]:
        runs = []
        for seed in fc["seeds"]:
            splits = {"train": cwola_split(train_all, c["n_background"], n_sig, seed, "train"),
                      "val": cwola_split(val_all, n_val_bkg, int(round(n_sig * c["val_fraction"])), seed, "val"),
                      "test": test}

            def loader_fn(data_cfg, split, batch_size, *, shuffle, seed=0, rank=0, world_size=1, **kw):
                batch_size = TEST_BATCH // world_size if split == "test" else batch_size
                return ArrayLoader(splits[split], batch_size, shuffle=shuffle, seed=seed, rank=rank,
                                   world_size=world_size, features=features)

            # finetune.per_n rules compare with the signal jets (jetssl workflow/full_pipeline.smk:
            # n_jets = num_signal); the pure test set is scored with the selected weights (finetune.select; MPMv2: the last step)
            runs.append(run_finetune(cfg, build, load, out / f"n{n_sig}" / f"seed{seed}", dist, task=task, seed=seed,
                                     n_per_class=None, loader_fn=loader_fn, n_total=n_sig))
        vals = {k: [r["test"][k] for r in runs] for k in ("sic", "sic_cut05", "auc")}
        summary["per_n"][str(n_sig)] = {k: mean_std(v) for k, v in vals.items()}
        summary["rows"].append({"mode": fc["mode"], "n_signal": n_sig, **vals})
    if dist.is_main:
        write_json(out / "summary.json", summary)
    return summary


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, config_path = run
    if cfg.get("cwola") is None:
        raise ValueError(f"{config_path}: missing the 'cwola' section (n_background, n_signal, ...)")
    if cfg["data"]["classes"] is None or len(cfg["data"]["classes"]) != 2:
        raise ValueError(f"{config_path}: data.classes must be [background, signal], e.g. [QCD, Tbqq]")
    dist = init_distributed(cfg["device"])
    try:
        summary = run_cwola(cfg, out, dist)
        if dist.is_main:
            mark_done(out, {"mode": summary["mode"], "n_signal": list(summary["per_n"])})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
