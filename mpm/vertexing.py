"""Secondary-vertex finding on the BTag dataset with an MPMv2 backbone pretrained on JetClass: the out-of-domain
vertexing study of arXiv:2409.12589 (jetssl src/models/vertexer.py, configs/experiment/train_vertexer.yaml,
configs/model/vertexer.yaml, plotting/vtx_perf.py).

    python -m mpm.vertexing --config mpm/configs/vertexing_v2.yaml --out runs/mpm/v2_vertexing/kmeans_fixed \\
        pretrained.run=runs/mpm/pretrain/mpmv2_kmeans finetune.mode=fixed

An edge head (mpm/track_heads.py EdgeHead) gives a "same vertex" logit for every pair of tracks; the loss is the
focal loss (mpm/focal_loss.py; btag.gamma, btag.pos_weight) over the upper triangle of real track pairs, the target
being vtx_id_i == vtx_id_j. A pair is predicted in the same vertex when its logit is > 0 (no clustering). Scored on
the test split by the one-sided adjusted Rand index per jet (common.metrics.adjusted_rand_index_onesided), averaged
over the jets with n_sv = max(vtx_id) secondary vertices, for every n_sv in btag.n_sv (jets with one track have no
pair and are left out). Writes <out>/seed<S>/, <out>/summary.json and <out>/mpm.v2_vertexing.json.
"""
from __future__ import annotations

import numpy as np
import torch

from common.cli import cli
from common.distributed import cleanup, init_distributed
from common.finetune_config import finetune_settings
from common.metrics import adjusted_rand_index_onesided
from common.train_utils import mark_done, start_run

from mpm.build import require_pretrained_run
from mpm.focal_loss import focal_loss
from mpm.track_heads import EdgeHead
from mpm.track_loop import TrackTask, run_seeds


def real_pairs(mask: torch.Tensor) -> torch.Tensor:
    """(B, T, T) the pairs i < j of real tracks (jetssl vertexer.py: the upper triangle, no self edges)."""
    return torch.triu(mask.unsqueeze(1) & mask.unsqueeze(2), diagonal=1)


def vertex_task(cfg: dict) -> TrackTask:
    b = cfg["btag"]
    gamma, pos_weight = float(b["gamma"]), float(b["pos_weight"])
    if gamma < 0 or pos_weight <= 0:
        raise ValueError(f"config: btag.gamma must be >= 0 and btag.pos_weight > 0 (got {gamma}, {pos_weight})")

    def loss(out, vtx_id, mask):
        pairs = real_pairs(mask)
        same = vtx_id.unsqueeze(1) == vtx_id.unsqueeze(2)
        return focal_loss(out[pairs], same[pairs].float(), gamma=gamma, pos_weight=pos_weight)

    def score(test):
        mask, vtx_id = test["mask"], test["target"]
        ari = adjusted_rand_index_onesided(mask, vtx_id, test["pred"])
        n_sv = np.where(mask, vtx_id, 0).max(1)
        return {k: float(np.mean(ari[sel])) for k in b["n_sv"]
                if (sel := (n_sv == k) & np.isfinite(ari)).any()}

    return TrackTask(name="vertexing", head_kind="edge_mlp", target="vtx_id",
                     head=lambda dim, regs, h: EdgeHead(dim, regs, **h), loss=loss,
                     predict=lambda out, mask: out > 0, score=score, table_id="mpm.v2_vertexing",
                     key="n_sv", metric="ari")


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, config_path = run
    fc = finetune_settings(cfg)
    require_pretrained_run(cfg, fc["mode"], config_path)
    task = vertex_task(cfg)
    dist = init_distributed(cfg["device"])
    try:
        summary = run_seeds(cfg, task, out, dist)
        if dist.is_main:
            mark_done(out, {"mode": fc["mode"], "task": summary["task"]})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
