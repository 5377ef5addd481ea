"""Every (N, seed) run of an MPMv2 BTag task through the one fine-tuning loop (common.training.finetune.run_finetune), and its
result file (common/results/published.yaml: mpm.v2_btag, mpm.v2_vertexing, mpm.v2_track_origin; arXiv:2409.12589
out-of-domain figures): the mode and task keys of a run, <out>/summary.json and <out>/<table_id>.json."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from common.data.array_loader import ArrayLoader
from common.data.features import get_feature_set
from common.results.tables import write_result
from common.training.finetune import run_finetune
from common.training.finetune_config import finetune_settings
from common.training.sweep import mean_std
from common.training.train_utils import write_json

from mpm.btag.data import TARGETS, load_btag_split, pretraining_quantiles, subset
from mpm.build import backbone_fns, pretrain_config

# the kit's finetune.mode -> the published `mode` key: the frozen study (fixed backbone) and the fine-tuned study,
# whose from-scratch baseline ("untrained" in jetssl workflow/full_pipeline.smk) is the published task "scratch"
PUBLISHED_MODE = {"fixed": "frozen", "finetune": "finetune", "scratch": "finetune"}


def table_keys(cfg: dict, fc: dict, pcfg: dict) -> dict:
    """{mode, task} of the rows: btag.table_mode / btag.table_task, or (null) from finetune.mode and the
    pretraining task (model.task; "scratch" for a randomly initialised backbone)."""
    b = cfg["btag"]
    mode = b["table_mode"] or PUBLISHED_MODE[fc["mode"]]
    task = b["table_task"] or ("scratch" if fc["mode"] == "scratch" else pcfg["model"]["task"])
    if mode not in ("finetune", "frozen"):
        raise ValueError(f"config: btag.table_mode = {mode!r}; expected finetune or frozen (common/results/published.yaml)")
    return {"mode": mode, "task": task}


def run_btag_task(cfg: dict, task, out: Path, dist, n_values: list, target: str | None = None,
                  task_reads_val: bool = False) -> dict:
    """The BTag splits on the scale of the pretraining run (mpm.btag.data), then for every N of n_values (labelled
    training jets drawn per seed; None = every training jet, as jetssl full_pipeline.smk runs the per-track tasks)
    and every seed of finetune.seeds one run_finetune of `task` into <out>/n<N>/seed<S>/ (<out>/seed<S>/ for None).
    The validation split holds min(finetune.max_val_jets, N) jets (jetssl configs/experiment/train_classifier.yaml:
    val n_jets = min(1M, n_jets)); finetune.per_n rules compare with N. target: the per-track array the loader
    serves with every batch (mpm.btag.data.TARGETS), None for the flavour label. task_reads_val: the task factory is
    called as task(fc, val=<the validation arrays>), for a task that decides something on the validation jets
    (vertexing's scored cells).
    Returns {"runs": {N: [result per seed]}, "sources": result files, "keys": table_keys, "pcfg"}."""
    if target not in (None, *TARGETS):
        raise ValueError(f"BTag target {target!r}; expected one of {TARGETS}")
    fc = finetune_settings(cfg)
    build, load = backbone_fns(cfg)
    pcfg = pretrain_config(cfg)
    load = load if fc["mode"] != "scratch" else None
    features = get_feature_set("mpmv2")  # the per-batch step of the encoder's inputs (BTag holds tracks only)
    quantiles = pretraining_quantiles(pcfg)
    data = cfg["data"]
    arrays = {"train": load_btag_split(data, "train", quantiles),
              "val": load_btag_split(data, "val", quantiles, max_jets=fc["max_val_jets"]),
              "test": load_btag_split(data, "test", quantiles, max_jets=fc["max_test_jets"])}
    if task_reads_val:
        task = partial(task, val=arrays["val"])
    runs, sources = {}, []
    for n in n_values:
        for seed in fc["seeds"]:
            d = (out / f"n{n}" if n is not None else out) / f"seed{seed}"

            def loader_fn(data_cfg, split, batch_size, *, shuffle, seed=0, rank=0, world_size=1, subset_seed=0,
                          max_jets=None, **kw):
                a = subset(arrays["train"], n, subset_seed, "train") if split == "train" else arrays[split]
                if split == "val" and n is not None:
                    a = {k: v[:min(n, len(v))] for k, v in a.items()}
                return ArrayLoader(a, batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                                   features=features, target=target)

            n_total = n if n is not None else len(arrays["train"]["label"])
            runs.setdefault(n, []).append(run_finetune(cfg, build, load, d, dist, task=task, seed=seed,
                                                       n_per_class=None, loader_fn=loader_fn, n_total=n_total))
            sources.append(d / "result.json")
    return {"runs": runs, "sources": sources, "keys": table_keys(cfg, fc, pcfg), "pcfg": pcfg}


def run_track_task(cfg: dict, task, out: Path, dist, *, target: str, table_id: str, key: str, metric: str,
                   task_reads_val: bool = False) -> dict:
    """A per-track task on every training jet, every seed; its test metrics ({cell: value}, e.g. per number of
    tracks) as result rows {mode, task, <key>: cell, <metric>: [per seed]}. Cells without a scored test jet are left
    out."""
    run = run_btag_task(cfg, task, out, dist, [None], target, task_reads_val)
    scores, keys = [r["test"] for r in run["runs"][None]], run["keys"]
    cells = sorted({int(k) for s in scores for k in s})
    rows = [{**keys, key: c, metric: [s[str(c)] for s in scores]} for c in cells]
    summary = {"mode": finetune_settings(cfg)["mode"], **keys,
               "per_" + key: {str(c): mean_std(r[metric]) for c, r in zip(cells, rows)}}
    if dist.is_main:
        write_btag_result(out, table_id, rows, summary, cfg, run["pcfg"], run["sources"])
    return summary


def write_btag_result(out, table_id: str, rows: list[dict], summary: dict, cfg: dict, pcfg: dict,
                      sources: list) -> Path:
    """<out>/summary.json and <out>/<table_id>.json with the run's meta (profile, data, pretraining scale, seeds).
    Rows of a run that loads a pretraining checkpoint (pretrained.run, not scratch) carry `pretrain_seed`, the seed of
    that pretraining run: a claim replicated over pretraining runs (common/results/claims.py) takes one value per run,
    and the files of two pretraining runs' steps hold different cells (common.results.tables.collect_results)."""
    out = Path(out)
    if finetune_settings(cfg)["mode"] != "scratch" and cfg["pretrained"].get("run") and pcfg.get("seed") is not None:
        rows = [{**r, "pretrain_seed": pcfg["seed"]} for r in rows]
    write_json(out / "summary.json", summary)
    path = out / f"{table_id}.json"
    t = pcfg.get("train") or {}
    meta = {"profile": cfg["btag"]["profile"], "dataset": f"{cfg['data']['dataset']} at {cfg['data']['root']}",
            "seeds": cfg["finetune"]["seeds"], "class_order": "light, c, b",
            "sources": list(sources) + [out / "summary.json"],
            "scale": f"pretraining {t.get('steps')} steps x batch {t.get('batch_size')}", "extra_fields": ["pretrain_seed"]}
    write_result(path, table_id, rows, meta)
    return path
