"""Rebuild the OmniJet-alpha backbone (frozen tokeniser + GPT without its next-token head) from a self-contained
checkpoint, for common.training.pretrained.load: fns(bundle, state) -> (build, load), the signature of
omnijet.model.backbone_fns. The checkpoint carries the tokeniser (bundle["tokenizer"]: its `model:` config and
weights), so neither tokenizer_dir nor the data is needed."""
from __future__ import annotations

from omnijet.model import OmniJetBackbone, build_gpt
from omnijet.vqvae import build_tokenizer


def tokenizer_bundle(run_dir) -> dict:
    """The tokeniser of an omnijet.train_tokenizer run as plain values and tensors (for the pretraining checkpoint)."""
    from pathlib import Path

    from common.training.checkpoint import load_checkpoint
    from common.training.config import load_config

    run_dir = Path(run_dir)
    return {"config": load_config(run_dir / "config.yaml")["model"],
            "model": load_checkpoint(run_dir / "checkpoint.pt")["model"]}


def fns(bundle: dict, state: dict | None):
    cfg, tok = bundle["config"], bundle["tokenizer"]
    tokenizer = build_tokenizer(tok["config"])
    tokenizer.load_state_dict(tok["model"])
    tokenizer.eval()

    def build() -> OmniJetBackbone:
        return OmniJetBackbone(build_gpt(cfg["model"], tokenizer.num_codes).backbone, tokenizer, "fp32")

    def load(backbone: OmniJetBackbone) -> None:  # the generative backbone without the head (OJ strict=False load)
        backbone.gpt.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})

    return build, load
