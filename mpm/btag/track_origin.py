"""Track-origin classification (PV, C, B, other) on the BTag dataset with an MPMv2 backbone pretrained on JetClass:
the out-of-domain track-identification study of arXiv:2409.12589 (jetssl src/models/tracker.py,
configs/experiment/train_tracker.yaml, plotting/trk_perf.py).

    python -m mpm.btag.track_origin --config mpm/configs/track_origin_v2.yaml \\
        --out runs/mpm/v2_track_origin/kmeans_fixed \\
        pretrained.run=runs/mpm/pretrain/mpmv2_kmeans finetune.mode=fixed

A per-track MLP on the encoder outputs (mpm/btag/track_heads.py) learns the origin of every real track with a weighted
cross-entropy (btag.class_weights, label smoothing finetune.label_smoothing). Scored on the test split by the
balanced accuracy over the real tracks of the jets with exactly n tracks, for every n in btag.n_tracks. Writes
<out>/seed<S>/, <out>/summary.json and <out>/mpm.v2_track_origin.json (a fraction per seed; the table shows percent).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch.nn.functional as F

from common.cli import cli
from common.data.btag import ORIGIN_NAMES
from common.training.distributed import cleanup, init_distributed
from common.training.finetune import Task
from common.training.finetune_config import finetune_settings
from common.training.metrics import balanced_accuracy
from common.training.train_utils import mark_done, start_run

from mpm.btag.sweep import run_track_task
from mpm.btag.track_heads import TrackOriginHead, per_track_head
from mpm.build import require_pretrained_run

N_ORIGINS = len(ORIGIN_NAMES)  # PV, C, B, other


def origin_task(b: dict, fc: dict) -> Task:
    """The task of the loop from the btag section and the run's finetune settings; batches are (JetBatch, origin)."""
    weights = b["class_weights"]
    if not (isinstance(weights, list) and len(weights) == N_ORIGINS and all(w > 0 for w in weights)):
        raise ValueError(f"config: btag.class_weights must be {N_ORIGINS} positive weights (PV, C, B, other), "
                         f"got {weights!r}")
    smoothing = float(fc["label_smoothing"])

    def loss(out, batch):  # jetssl tracker.py: CE over the real tracks, label smoothing and class weights
        jets, target = batch
        return F.cross_entropy(out[jets.mask], target[jets.mask], weight=out.new_tensor(weights),
                               label_smoothing=smoothing)

    def metrics(test):  # balanced accuracy over the real tracks of the jets with exactly k tracks
        mask, pred, target = test["mask"], test["pred"], test["target"]
        n = mask.sum(1)
        return {str(k): balanced_accuracy(target[n == k][mask[n == k]], pred[n == k][mask[n == k]])
                for k in b["n_tracks"] if np.any(n == k)}

    return Task(name="track_origin", head=per_track_head("track_origin", "track_mlp", TrackOriginHead,
                                                         n_classes=N_ORIGINS),
                loss=loss, metrics=metrics, class_names=list(ORIGIN_NAMES),
                outputs=lambda out, batch: {"pred": out.argmax(-1), "target": batch[1], "mask": batch[0].mask})


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, config_path = run
    fc = finetune_settings(cfg)
    require_pretrained_run(cfg, fc["mode"], config_path)
    task = partial(origin_task, cfg["btag"])
    task(fc)  # the btag section checked before any data is read
    dist = init_distributed(cfg["device"])
    try:
        summary = run_track_task(cfg, task, out, dist, target="track_type", table_id="mpm.v2_track_origin",
                                 key="n_tracks", metric="balanced_accuracy")
        if dist.is_main:
            mark_done(out, {"mode": fc["mode"], "task": summary["task"]})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
