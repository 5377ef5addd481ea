"""Pooled frozen embeddings of the compare set (common/results/compare.py, "Which pretraining?") from the HEP-JEPA encoder
(sweep.encoder of the config: the context or target encoder of a pretraining checkpoint) or the same architecture at
random init.

    python -m hepjepa.embed --config hepjepa/configs/mini/finetune_jetclass.yaml --out runs/mini/hepjepa/embed/jepa \
        --name "HEP-JEPA" sweep.pretrained=runs/mini/hepjepa/pretrain/checkpoint.pt data.root=...

The backbone and its weights come from hepjepa/model.py backbone_fns, exactly as for fine-tuning.
"""
from __future__ import annotations

from pathlib import Path

from common.cli import cli
from common.results.compare import embed_main

from .model import backbone_fns


def main(argv=None) -> None:
    embed_main(__doc__.splitlines()[0], argv, backbone_fns, lambda cfg: Path(cfg["sweep"]["pretrained"]).parent)


if __name__ == "__main__":
    cli(main)
