"""Top vs QCD classification with the OmniJet-alpha generative backbone (arXiv:2403.05618; OJ
example_experiment_classification.yaml), through common.training.finetune.

    python -m omnijet.finetune --config omnijet/configs/finetune.yaml --out runs/omnijet/finetune/finetune \
        finetune.mode=finetune pretrain_dir=runs/omnijet/pretrain tokenizer_dir=runs/omnijet/tokenizer

Modes (OJ backbone_weights_path / keep_backbone_fixed): scratch (random GPT), fixed (pretrained GPT frozen), finetune
(pretrained GPT trained at the head LR).
The backbone (omnijet.model.OmniJetBackbone) tokenises every jet with the frozen tokeniser of the pretraining, feeds
the full sequence [start, t1 ... tn, stop] to the GPT blocks with the causal mask kept on (as in OJ), and returns
the hidden states; the next-token head is discarded. The classification head is chosen by the top-level `head` key
from `heads` (the class-attention head of the paper-era public config, default, or the summation head of the
2025 OJ config). The schedule holds lr/3 for the first epoch (OJ ConstantLR(total_iters=1), hold_epochs).
Runs every N in finetune.n_per_class and every seed (common.training.finetune.run_sweep) into <out>/n<N>/seed<S>/.
"""
from __future__ import annotations

import copy

import torch

from common.cli import cli
from common.training.distributed import cleanup, init_distributed
from common.training.sweep import run_sweep
from common.training.train_utils import mark_done, start_run

from omnijet.model import backbone_fns


def harness_config(cfg: dict) -> dict:
    """The config common.training.finetune reads: `finetune.head` filled in from the chosen entry of `heads`."""
    if cfg["head"] not in cfg["heads"]:
        raise ValueError(f"config: head = {cfg['head']!r}; expected one of {sorted(cfg['heads'])} (the keys of heads)")
    out = copy.deepcopy(cfg)
    out["finetune"]["head"] = copy.deepcopy(cfg["heads"][cfg["head"]])
    return out


def main(argv=None) -> None:
    run = start_run(__doc__, argv)
    if run is None:
        return
    cfg, out = harness_config(run.cfg), run.out  # the head of `heads` chosen by `head`, filled into finetune.head
    dist = init_distributed(cfg["device"])
    try:
        torch.manual_seed(cfg["seed"])
        build, load = backbone_fns(cfg)
        summary = run_sweep(cfg, build, None if cfg["finetune"]["mode"] == "scratch" else load, out, dist)
        if dist.is_main:
            mark_done(out, {"mode": summary["mode"], "head": cfg["head"], "seeds": summary["seeds"],
                            "n_per_class": list(summary["per_n"])})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
