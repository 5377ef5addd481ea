"""Masked particle pretraining (MPMv1 or MPMv2, chosen by `method:` in the YAML).

    python -m mpm.pretrain --config mpm/configs/mpmv1.yaml --out runs/mpm/mpmv1 [a.b=value ...]
    torchrun --nproc_per_node=4 -m mpm.pretrain --config ... --out ...

Builds the model (mpm/build.py: the backbone, the masked-particle task and its frozen tokeniser) and trains it with the
MPM loop (mpm/loop.py). Writes config.yaml, checkpoint.pt (latest, atomic; a rerun resumes from it exactly; self-contained: its `reuse` entry
lets common.training.pretrained.load embed new jets without the data),
log.jsonl and done.json.
"""
from __future__ import annotations

from common.cli import cli
from common.training.distributed import cleanup, init_distributed
from common.training.pretrained import bundle
from common.training.train_utils import seed_everything, start_run

from mpm.build import build_model
from mpm.loop import train


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    dist = init_distributed(run.cfg["device"])
    try:
        seed_everything(run.cfg["seed"])  # the same initial weights on every rank
        # the checkpoint is self-contained: preprocessing and fitted normalisation with the weights
        reuse = bundle(run.cfg["method"], run.cfg)
        train(run.cfg, build_model(run.cfg), run.out, dist, desc=run.cfg["method"], extra_state={"reuse": reuse})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
