"""Rebuild an MPM backbone (MPMv1Backbone or MPMv2Encoder) from a self-contained checkpoint, for
common.training.pretrained.load: fns(bundle, state) -> (build, load), the signature of mpm.build.backbone_fns."""
from __future__ import annotations

from mpm.build import build_backbone, load_backbone_state


def fns(bundle: dict, state: dict | None):
    cfg = bundle["config"]
    if cfg["method"] == "mpmv1" and cfg["model"]["inputs"] == "vqvae_quantised":
        raise ValueError("MPMv1 with model.inputs 'vqvae_quantised' reads its frozen VQ-VAE from tokenizer.checkpoint; "
                         "a self-contained checkpoint of it is not supported: use the continuous-input rows")
    return (lambda: build_backbone(cfg)), (lambda backbone: load_backbone_state(backbone, cfg["method"], state))
