"""Secondary-vertex finding on the BTag dataset with an MPMv2 backbone pretrained on JetClass: the out-of-domain
vertexing study of arXiv:2409.12589 (jetssl src/models/vertexer.py, configs/experiment/train_vertexer.yaml,
configs/model/vertexer.yaml, plotting/vtx_perf.py).

    python -m mpm.btag.vertexing --config mpm/configs/vertexing_v2.yaml --out runs/mpm/v2_vertexing/kmeans_fixed \\
        pretrained.run=runs/mpm/pretrain/mpmv2_kmeans finetune.mode=fixed

An edge head (mpm/btag/track_heads.py EdgeHead) gives a "same vertex" logit for every pair of tracks; the loss is the
focal loss (mpm/btag/focal_loss.py; btag.gamma, btag.pos_weight) over the upper triangle of real track pairs, the target
being vtx_id_i == vtx_id_j. A pair is predicted in the same vertex when its logit is > 0 (no clustering). Scored on
the test split by the one-sided adjusted Rand index per jet (common.training.metrics.adjusted_rand_index_onesided), averaged
over the jets with n_sv = max(vtx_id) secondary vertices (jets with one track have no pair and are left out). Which
n_sv cells of btag.n_sv are scored is decided on the validation jets: a cell whose share of the validation split,
times the number of scored test jets, reaches btag.min_jets_per_n_sv (the test split is read only by the final
evaluation; its size, not its labels, enters). Writes <out>/seed<S>/, <out>/summary.json and
<out>/mpm.v2_vertexing.json.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from common.cli import cli
from common.training.distributed import cleanup, init_distributed
from common.training.finetune import Task
from common.training.finetune_config import finetune_settings
from common.training.metrics import adjusted_rand_index_onesided
from common.training.train_utils import mark_done, start_run

from mpm.btag.focal_loss import focal_loss
from mpm.btag.sweep import run_track_task
from mpm.btag.track_heads import EdgeHead, per_track_head
from mpm.build import require_pretrained_run


def real_pairs(mask: torch.Tensor) -> torch.Tensor:
    """(B, T, T) the pairs i < j of real tracks (jetssl vertexer.py: the upper triangle, no self edges)."""
    return torch.triu(mask.unsqueeze(1) & mask.unsqueeze(2), diagonal=1)


def n_sv_of(mask: np.ndarray, vtx_id: np.ndarray) -> np.ndarray:
    """(B,) secondary vertices per jet, max(vtx_id) over its real tracks (jetssl plotting/vtx_perf.py); -1 for a jet
    with fewer than two tracks (no pair: not scored)."""
    return np.where(mask.sum(1) >= 2, np.where(mask, vtx_id, 0).max(1), -1)


def validation_shares(val: dict) -> dict[int, float]:
    """{n_sv: share} of the validation jets (arrays with mask and vtx_id: the split the runs validate on) that have
    a pair of tracks."""
    n_sv = n_sv_of(val["mask"], val["vtx_id"])
    scored = n_sv[n_sv >= 0]
    if len(scored) == 0:
        raise ValueError("data.val: no validation jet with two tracks; the scored n_sv cells are decided on them")
    return {int(k): float(np.mean(scored == k)) for k in np.unique(scored)}


def vertex_task(b: dict, fc: dict, val: dict | None = None) -> Task:
    """The task of the loop from the btag section; batches are (JetBatch, vtx_id). val: the validation arrays
    (mpm.btag.sweep.run_btag_task passes them), whose n_sv shares decide the scored cells (test metrics only)."""
    gamma, pos_weight = float(b["gamma"]), float(b["pos_weight"])
    if gamma < 0 or pos_weight <= 0:
        raise ValueError(f"config: btag.gamma must be >= 0 and btag.pos_weight > 0 (got {gamma}, {pos_weight})")
    min_jets = b.get("min_jets_per_n_sv", 1)
    if isinstance(min_jets, bool) or not isinstance(min_jets, int) or min_jets < 1:
        raise ValueError(f"config: btag.min_jets_per_n_sv = {min_jets!r}; expected a whole number >= 1 (the test jets "
                         "an n_sv cell needs, predicted from its validation share, to be scored)")

    def loss(out, batch):
        jets, vtx_id = batch
        pairs = real_pairs(jets.mask)
        same = vtx_id.unsqueeze(1) == vtx_id.unsqueeze(2)
        return focal_loss(out[pairs], same[pairs].float(), gamma=gamma, pos_weight=pos_weight)

    val_shares = validation_shares(val) if val is not None else None

    def metrics(test):  # the mean one-sided ARI of the jets with k secondary vertices, in the cells validation chose
        if val_shares is None:
            raise ValueError("vertexing: the scored n_sv cells are decided on the validation split "
                             "(vertex_task(..., val=<validation arrays>))")
        mask, vtx_id = test["mask"], test["target"]
        ari = adjusted_rand_index_onesided(mask, vtx_id, test["pred"])
        n_sv = np.where(np.isfinite(ari), n_sv_of(mask, vtx_id), -1)
        scored = int((n_sv >= 0).sum())
        return {str(k): float(np.mean(ari[n_sv == k])) for k in b["n_sv"]
                if val_shares.get(k, 0.0) * scored >= min_jets and (n_sv == k).any()}

    return Task(name="vertexing", head=per_track_head("vertexing", "edge_mlp", EdgeHead), loss=loss,
                metrics=metrics,
                outputs=lambda out, batch: {"pred": out > 0, "target": batch[1], "mask": batch[0].mask})


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, config_path = run
    fc = finetune_settings(cfg)
    require_pretrained_run(cfg, fc["mode"], config_path)
    task = partial(vertex_task, cfg["btag"])
    task(fc)  # the btag section checked before any data is read
    dist = init_distributed(cfg["device"])
    try:
        summary = run_track_task(cfg, task, out, dist, target="vtx_id", table_id="mpm.v2_vertexing", key="n_sv",
                                 metric="ari", task_reads_val=True)
        if dist.is_main:
            mark_done(out, {"mode": fc["mode"], "task": summary["task"]})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
