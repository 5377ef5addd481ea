"""The fine-tuning model: a backbone (pretrained or not) and a classification head, frozen as the mode says
(common/training/finetune_config.py), and its AdamW groups (head and backbone tagged, for the catch-up schedule)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from common.blocks.pooling import build_head
from common.training.train_utils import build_optimizer, param_groups


class Classifier(nn.Module):
    """backbone(batch) -> (h (B,T,D), mask (B,T)); head(h, mask) -> logits (B,C).

    While `backbone_frozen` the backbone runs in eval mode without autograd, so it receives no gradient and its
    BatchNorm statistics do not move."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.backbone_frozen = False

    def freeze_backbone(self, frozen: bool = True) -> None:
        self.backbone_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        if hasattr(self.backbone, "augment_inputs"):  # input augmentations follow the run, frozen or not (HEP-JEPA)
            self.backbone.augment_inputs(mode)
        return self

    def forward(self, batch) -> torch.Tensor:
        if getattr(batch, "h", None) is not None:  # a FrozenBatch: the frozen backbone's outputs, computed once
            if not self.backbone_frozen:
                raise RuntimeError("a FrozenBatch (cached backbone outputs) given to a classifier whose backbone trains")
            return self.head(batch.h, batch.hmask)
        if self.backbone_frozen:
            with torch.no_grad():
                h, mask = self.backbone(batch)
        else:
            h, mask = self.backbone(batch)
        return self.head(h, mask)


def pooled_head(n_classes: int) -> Callable[[nn.Module, dict], nn.Module]:
    """The per-jet head of finetune.head (common.blocks.pooling.build_head: kind and its settings) with n_classes logits."""

    def head(backbone: nn.Module, head_cfg: dict) -> nn.Module:
        cfg = dict(head_cfg)
        return build_head(cfg.pop("kind"), backbone.dim, n_classes, **cfg)

    return head


def build_classifier(fc: dict, build_backbone: Callable[[], nn.Module],
                     load_pretrained: Callable[[nn.Module], None] | None,
                     head: int | Callable[[nn.Module, dict], nn.Module]) -> Classifier:
    """Backbone (+ pretrained weights unless scratch) and head, frozen as the mode says. head: a number of classes
    (pooled_head) or head(backbone, finetune.head) -> module (a task's head, common.training.finetune.Task)."""
    backbone = build_backbone()
    if not hasattr(backbone, "dim"):
        raise TypeError(f"{type(backbone).__name__}: a fine-tuning backbone needs an attribute `dim` (output width)")
    if fc["mode"] != "scratch":
        if load_pretrained is None:
            raise ValueError(f"finetune.mode = {fc['mode']!r} needs pretrained weights (load_pretrained is None); "
                             f"use mode 'scratch' for a randomly initialised backbone")
        load_pretrained(backbone)
    head = pooled_head(head) if isinstance(head, int) else head
    model = Classifier(backbone, head(backbone, fc["head"]))
    if fc["unfreeze_step"] is None:  # fixed (or finetune that never unfreezes): not trainable at all
        backbone.requires_grad_(False)
    model.freeze_backbone(fc["unfreeze_step"] is None or fc["unfreeze_step"] > 0)
    return model


def build_classifier_optimizer(model: Classifier, fc: dict) -> torch.optim.AdamW:
    wd, lr = float(fc["weight_decay"]), float(fc["lr"])
    groups = [dict(g, tag="head") for g in param_groups(model.head, wd, lr=lr)]
    if fc["unfreeze_step"] is not None:
        groups += [dict(g, tag="backbone") for g in param_groups(model.backbone, wd,
                                                                 lr=lr * float(fc["backbone_lr_factor"]))]
    return build_optimizer(groups, {"lr": lr, "weight_decay": wd, "betas": fc["betas"]})
