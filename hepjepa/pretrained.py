"""Rebuild the HEP-JEPA downstream backbone (tokeniser + positional MLP + context encoder) from a self-contained
checkpoint, for common.training.pretrained.load: fns(bundle, state) -> (build, load), the signature of
hepjepa.model.backbone_fns. The feature names come from the checkpoint's preprocessing, not from the data."""
from __future__ import annotations

from hepjepa.model import HEPJEPABackbone, angle_columns


def fns(bundle: dict, state: dict | None):
    model_cfg, names = bundle["config"]["model"], bundle["preprocessing"]["feature_names"]
    return ((lambda: HEPJEPABackbone(model_cfg, len(names), angle_columns(names))),
            (lambda backbone: backbone.load_pretrained(state, use="context")))
