"""Pooled frozen embeddings of the compare set (common/results/compare.py, "Which pretraining?") from the OmniJet-alpha GPT
backbone (frozen tokeniser + generative transformer without its next-token head), pretrained or at random init.

    python -m omnijet.embed --config omnijet/configs/mini/finetune.yaml --out runs/mini/omnijet/embed/gpt \
        --name "OmniJet-alpha GPT" pretrain_dir=runs/mini/omnijet/pretrain tokenizer_dir=runs/mini/omnijet/tokenizer

The backbone and its weights come from omnijet/model.py backbone_fns, exactly as for fine-tuning (the random-init
GPT keeps the trained tokeniser: the tokens are its inputs).
"""
from __future__ import annotations

from common.cli import cli
from common.results.compare import embed_main

from omnijet.model import backbone_fns


def main(argv=None) -> None:
    embed_main(__doc__.splitlines()[0], argv, backbone_fns, lambda cfg: cfg["pretrain_dir"])


if __name__ == "__main__":
    cli(main)
