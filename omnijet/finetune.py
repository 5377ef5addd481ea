"""Top vs QCD classification with the OmniJet-alpha generative backbone (arXiv:2403.05618; OJ
example_experiment_classification.yaml), through common.finetune.

    python -m omnijet.finetune --config omnijet/configs/finetune.yaml --out runs/omnijet/finetune/finetune \
        finetune.mode=finetune pretrain_dir=runs/omnijet/pretrain tokenizer_dir=runs/omnijet/tokenizer

Modes (OJ backbone_weights_path / keep_backbone_fixed): scratch (random GPT), fixed (pretrained GPT frozen), finetune
(pretrained GPT trained at the head LR).
The backbone (omnijet.model.OmniJetBackbone) tokenises every jet with the frozen tokeniser of the pretraining, feeds
the full sequence [start, t1 ... tn, stop] to the GPT blocks with the causal mask kept on (as in OJ), and returns
the hidden states; the next-token head is discarded. The classification head is chosen by the top-level `head` key
from `heads` (summation head of the 2025 OJ config, or the class-attention head of the first public config).
Runs every N in finetune.n_per_class and every seed (common.finetune.run_sweep) into <out>/n<N>/seed<S>/.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from common.checkpoint import load_checkpoint
from common.config import save_config
from common.distributed import cleanup, init_distributed
from common.finetune import run_sweep
from common.train_utils import mark_done, start_run
from omnijet.model import OmniJetBackbone, build_gpt


def harness_config(cfg: dict) -> dict:
    """The config common.finetune reads: `finetune.head` filled in from the chosen entry of `heads`."""
    if cfg["head"] not in cfg["heads"]:
        raise ValueError(f"config: head = {cfg['head']!r}; expected one of {sorted(cfg['heads'])} (the keys of heads)")
    out = copy.deepcopy(cfg)
    out["finetune"]["head"] = copy.deepcopy(cfg["heads"][cfg["head"]])
    return out


def backbone_factory(cfg: dict):
    """build_backbone() for the harness: a fresh GPT of the pretraining architecture around the frozen tokeniser."""
    from omnijet.pretrain import load_gpt
    from omnijet.train_tokenizer import load_tokenizer

    tokenizer = load_tokenizer(cfg["tokenizer_dir"])
    _, pre_cfg = load_gpt(cfg["pretrain_dir"])  # the architecture of the pretraining run

    def build() -> OmniJetBackbone:
        return OmniJetBackbone(build_gpt(pre_cfg["model"], tokenizer.num_codes).backbone, tokenizer, cfg["precision"])

    def load_pretrained(backbone: OmniJetBackbone) -> None:
        """Weights of the generative backbone (embedding + GPT blocks), without the next-token head (OJ loads it with
        strict=False)."""
        path = Path(cfg["pretrain_dir"]) / "best.pt"
        if not path.is_file():
            path = Path(cfg["pretrain_dir"]) / "checkpoint.pt"
        state = load_checkpoint(path)["model"]
        gpt_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        backbone.gpt.load_state_dict(gpt_state)

    return build, load_pretrained


def main(argv=None) -> None:
    run = start_run(__doc__, argv, save=False)  # the harness config (head filled in) is saved below
    if run is None:
        return
    cfg, out = harness_config(run.cfg), run.out
    dist = init_distributed(cfg["device"])
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    torch.manual_seed(cfg["seed"])
    build, load_pretrained = backbone_factory(cfg)
    summary = run_sweep(cfg, build, None if cfg["finetune"]["mode"] == "scratch" else load_pretrained, out, dist)
    if dist.is_main:
        mark_done(out, {"mode": summary["mode"], "head": cfg["head"], "seeds": summary["seeds"],
                        "n_per_class": list(summary["per_n"])})
    cleanup()


if __name__ == "__main__":
    main()
