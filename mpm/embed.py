"""Pooled frozen embeddings of the compare set (common/results/compare.py, "Which pretraining?") from an MPM backbone: the
encoder of a pretraining run (MPMv1 or MPMv2, any task) or the same architecture at random init.

    python -m mpm.embed --config mpm/configs/mini/finetune_v2.yaml --out runs/mini/mpm/embed/mpmv2_regression \
        --name "MPMv2 regression" pretrained.run=runs/mini/mpm/pretrain/mpmv2_regression data.root=...

The backbone and its pretrained weights come from mpm/build.py backbone_fns, exactly as for fine-tuning. At random
init the data statistics are set from the compare set's training jets (common.training.probe.set_norm_stats): MPMv1's input
normalisation (mpm/normalise.py IterativeNorm), as the pretrained encoder got it in pretraining.
"""
from __future__ import annotations

from common.cli import cli
from common.results.compare import embed_main

from mpm.build import backbone_fns


def main(argv=None) -> None:
    embed_main(__doc__.splitlines()[0], argv, backbone_fns, lambda cfg: cfg["pretrained"]["run"])


if __name__ == "__main__":
    cli(main)
