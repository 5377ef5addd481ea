"""The fine-tuning loop of the per-track BTag tasks of arXiv:2409.12589 (track origin, secondary-vertex finding):
an MPMv2 encoder (fixed / finetune / scratch, as common/finetune_config.py) with a per-track head (mpm/track_heads.py).

It reads the `finetune:` section with the keys and per_n rules of every fine-tuning run (common/finetune_config.py;
N = the labelled training jets) and has the shape of every training loop of the kit: settings, data, model,
optimiser and schedule, resume, loop, checkpoint, done. Validation loss every `val_every` steps (0 = once per epoch),
early stopping after `patience` validations without improvement, the weights of the best validation loss tested
(`select: best_val`; jetssl configs/callbacks/finetune.yaml: ModelCheckpoint and EarlyStopping on valid/total_loss).
A killed run continues from <out>/checkpoint.pt (written at every validation).

A task (TrackTask) gives the per-track target array, the head, the loss, the per-jet prediction and the score of
the test predictions ({cell key value: metric}); run_seeds trains one model per seed in finetune.seeds into
<out>/seed<S>/ (a finished seed's result.json is read back) and writes <out>/summary.json and the result file.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from common.checkpoint import ResumableLoader, load_checkpoint, make_state, restore_state, save_checkpoint
from common.classifier import Classifier, build_classifier_optimizer
from common.distributed import Dist, all_gather_cat, all_reduce_sum, wrap_ddp
from common.finetune_config import finetune_settings, run_steps
from common.logger import MetricLogger
from common.schedules import build_finetune_scheduler, run_schedule
from common.sweep import mean_std
from common.train_utils import accumulate, autocast, clip_and_step, count_parameters, is_done, mark_done, \
    maybe_compile, progress, seed_everything, write_json

from mpm.btag_data import BTagLoader, load_btag_split, pretraining_quantiles
from mpm.btag_results import table_keys, write_btag_result
from mpm.build import backbone_fns


@dataclass
class TrackTask:
    """head_kind: finetune.head.kind of the task; target: the per-track array (mpm.btag_data.TARGETS);
    head(dim, num_registers, head_cfg) -> nn.Module; loss(out, target, mask) -> scalar; predict(out, mask) ->
    per-jet predictions (e.g. class (B, T)); score(test) -> {cell: metric} from evaluate()'s output; table_id, key,
    metric: the result file's table, its cell key and metric (common/published.yaml)."""
    name: str
    head_kind: str
    target: str
    head: Callable[[int, int, dict], nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score: Callable[[dict], dict]
    table_id: str
    key: str
    metric: str


def build_track_model(fc: dict, build_backbone, load_pretrained, task: TrackTask) -> Classifier:
    """Backbone (+ pretrained weights unless scratch) and the task's head, frozen as the mode says (as
    common.classifier.build_classifier does for the jet-level head)."""
    if fc["head"]["kind"] != task.head_kind:
        raise ValueError(f"config: finetune.head.kind = {fc['head']['kind']!r}; {task.name} uses {task.head_kind!r}")
    backbone = build_backbone()
    if fc["mode"] != "scratch":
        if load_pretrained is None:
            raise ValueError(f"finetune.mode = {fc['mode']!r} needs pretrained weights: set pretrained.run")
        load_pretrained(backbone)
    head_cfg = {k: v for k, v in fc["head"].items() if k != "kind"}
    model = Classifier(backbone, task.head(backbone.dim, backbone.num_registers, head_cfg))
    if fc["unfreeze_step"] is None:
        backbone.requires_grad_(False)
    model.freeze_backbone(fc["unfreeze_step"] is None or fc["unfreeze_step"] > 0)
    return model


@torch.no_grad()
def evaluate(net: nn.Module, loader, task: TrackTask, device, precision: str) -> dict:
    """Mean loss over the split's batches (weighted by jets, all-reduced) and, gathered over ranks, the per-jet
    predictions, targets and masks."""
    net.eval()
    loss_sum, count, preds, targets, masks = torch.zeros((), dtype=torch.float64), 0, [], [], []
    for batch, target in loader:
        batch, target = batch.to(device), target.to(device)
        with autocast(device, precision, "finetune.precision"):
            out = net(batch)
        out = out.float()
        loss_sum += float(task.loss(out, target, batch.mask)) * len(batch)
        count += len(batch)
        preds.append(task.predict(out, batch.mask).cpu())
        targets.append(target.cpu())
        masks.append(batch.mask.cpu())
    n = int(all_reduce_sum(torch.tensor(count, dtype=torch.float64)))
    if n == 0:
        raise RuntimeError("evaluation split yielded no jets")
    return {"loss": float(all_reduce_sum(loss_sum)) / n, "pred": all_gather_cat(torch.cat(preds)).numpy(),
            "target": all_gather_cat(torch.cat(targets)).numpy(), "mask": all_gather_cat(torch.cat(masks)).numpy()}


def run_track_task(cfg: dict, task: TrackTask, build_backbone, load_pretrained, splits: dict, out_dir, dist: Dist,
                   seed: int) -> dict:
    """Train on splits['train'] with early stopping on splits['val'], test the selected weights on splits['test'].
    Returns {"result": run summary, "test": evaluate() of the test split}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fc = finetune_settings(cfg, len(splits["train"]["label"]))
    device, world = dist.device, dist.world_size
    if fc["batch_size"] % world:
        raise ValueError(f"finetune.batch_size {fc['batch_size']} is not divisible by the {world} processes")
    seed_everything(seed)
    model = build_track_model(fc, build_backbone, load_pretrained, task).to(device)
    bs, ebs = fc["batch_size"] // world, (fc["eval_batch_size"] or fc["batch_size"]) // world
    train = BTagLoader(splits["train"], bs, shuffle=True, seed=seed, rank=dist.rank, world_size=world,
                       target=task.target)
    val, test = (BTagLoader(splits[s], ebs, shuffle=False, rank=dist.rank, world_size=world, target=task.target)
                 for s in ("val", "test"))
    steps_per_epoch = len(train)
    steps = run_steps(fc, steps_per_epoch)
    fc["schedule"] = run_schedule(fc["schedule"], steps)
    opt = build_classifier_optimizer(model, fc)
    sched = build_finetune_scheduler(opt, fc, steps)
    frozen_phase = fc["unfreeze_step"] is not None and fc["unfreeze_step"] > 0
    ddp = wrap_ddp(model, dist, find_unused_parameters=frozen_phase)
    net = maybe_compile(ddp, fc["compile"])
    val_every = int(fc["val_every"]) or steps_per_epoch
    if fc["val_every_epochs"]:
        val_every = int(fc["val_every_epochs"]) * steps_per_epoch
    if dist.is_main:
        print(f"{task.name}[{fc['mode']}] seed={seed}: {count_parameters(model)} parameters "
              f"({count_parameters(model, trainable_only=True)} trainable), {steps_per_epoch} steps/epoch, "
              f"<= {steps} steps", flush=True)

    def loss_fn(mb):
        batch, target = mb
        with autocast(device, fc["precision"], "finetune.precision"):
            out = net(batch)
        return task.loss(out.float(), target, batch.mask), {}

    log = MetricLogger(out_dir, enabled=dist.is_main)
    it = ResumableLoader(train)
    best = {"loss": math.inf, "step": 0, "state": copy.deepcopy(model.state_dict())}
    val_curve, bad, stopped_early, start = [], 0, False, 0
    ckpt_path = out_dir / "checkpoint.pt"
    if fc["checkpoint"] and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        start = restore_state(ckpt, model=model, optimizer=opt, scheduler=sched, loader=it)
        best, val_curve, bad = (ckpt["harness"][k] for k in ("best", "val_curve", "bad"))
        log.truncate_after(start)
    t0 = time.time()
    bar = progress(steps, f"{task.name} {fc['mode']}", enabled=dist.is_main, initial=start)
    model.train()
    step = start - 1
    for step in range(start, steps):
        if model.backbone_frozen and fc["unfreeze_step"] is not None and step >= fc["unfreeze_step"]:
            model.freeze_backbone(False)  # MPMv2 CatchupToLR: the backbone LR ramps from here
        batch, target = next(it)
        loss, _ = accumulate(ddp, (batch.to(device), target.to(device)), int(fc["grad_accum"]), loss_fn)
        clip_and_step(net, opt, sched, max_norm=fc["grad_clip"])
        bar.update(jets=len(batch) * world, loss=float(loss))
        if (step + 1) % int(fc["log_every"]) == 0:
            log.log(step + 1, train_loss=float(loss), **{f"lr_{g['tag']}": g["lr"] for g in opt.param_groups})
        if (step + 1) % val_every == 0 or step + 1 == steps:
            res = evaluate(net, val, task, device, fc["precision"])
            model.train()
            val_curve.append([step + 1, res["loss"]])
            log.log(step + 1, val_loss=res["loss"])
            if res["loss"] < best["loss"] - float(fc["min_delta"]):
                best, bad = {"loss": res["loss"], "step": step + 1, "state": copy.deepcopy(model.state_dict())}, 0
            else:
                bad += 1
                if fc["patience"] is not None and bad >= int(fc["patience"]):
                    stopped_early = True
                    break
            if fc["checkpoint"] and dist.is_main and step + 1 < steps:
                save_checkpoint(ckpt_path, make_state(model=model, optimizer=opt, scheduler=sched, step=step + 1,
                                                      loader=it, harness={"best": best, "val_curve": val_curve,
                                                                          "bad": bad}))
    bar.close()
    steps_done = step + 1
    if fc["select"] == "best_val":
        model.load_state_dict(best["state"])
    test_out = evaluate(net, test, task, device, fc["precision"])
    result = {"task": task.name, "mode": fc["mode"], "seed": seed, "n_train_jets": len(splits["train"]["label"]),
              "steps": steps_done, "best_step": best["step"], "best_val_loss": best["loss"],
              "stopped_early": stopped_early, "select": fc["select"],
              "selected_step": best["step"] if fc["select"] == "best_val" else steps_done,
              "test_loss": test_out["loss"], "n_test_jets": int(len(test_out["mask"])), "val_curve": val_curve,
              "wall_s": round(time.time() - t0, 2), "world_size": world, "finetune": fc}
    if dist.is_main:
        log.log(steps_done, test_loss=test_out["loss"])
        ckpt_path.unlink(missing_ok=True)
    return {"result": result, "test": test_out}



def run_seeds(cfg: dict, task: TrackTask, out, dist) -> dict:
    """Every seed of finetune.seeds on all jets of the splits (jetssl full_pipeline.smk: the per-track tasks use
    every training jet); the cells of task.score as result rows {mode, task, <task.key>, <task.metric>: [per seed]}
    in <out>/<task.table_id>.json. Cells without a scored test jet are left out."""
    out = Path(out)
    fc = finetune_settings(cfg)
    build, load, pcfg = backbone_fns(cfg)
    load = load if fc["mode"] != "scratch" else None
    quantiles = pretraining_quantiles(pcfg)
    splits = {s: load_btag_split(cfg["data"], s, quantiles, max_jets=m)
              for s, m in (("train", None), ("val", fc["max_val_jets"]), ("test", fc["max_test_jets"]))}
    scores, sources = [], []
    for seed in fc["seeds"]:
        d = out / f"seed{seed}"
        if is_done(d) and (d / "result.json").is_file():
            result = json.loads((d / "result.json").read_text())
        else:
            run = run_track_task(cfg, task, build, load, splits, d, dist, int(seed))
            result = {**run["result"], "score": {str(k): v for k, v in task.score(run["test"]).items()}}
            if dist.is_main:
                write_json(d / "result.json", result)
                mark_done(d, {"steps": result["steps"]})
        scores.append(result["score"])
        sources.append(d / "result.json")
    keys = table_keys(cfg, fc, pcfg)
    cells = sorted({int(k) for s in scores for k in s})
    rows = [{**keys, task.key: c, task.metric: [s[str(c)] for s in scores]} for c in cells]
    summary = {"mode": fc["mode"], **keys, "per_" + task.key: {str(c): mean_std(r[task.metric])
                                                               for c, r in zip(cells, rows)}}
    if dist.is_main:
        write_json(out / "summary.json", summary)
        write_btag_result(out, task.table_id, rows, cfg, pcfg, sources + [out / "summary.json"])
    return summary
