"""Exponential moving average of an online network into a teacher / target network (BYOL, I-JEPA; HEP-JEPA §4 target
encoder):  theta_target <- m * theta_target + (1 - m) * theta_online, with m ramped linearly from `start` to `end`
over training as in I-JEPA (0.996 -> 1.0 in facebookresearch/ijepa configs/in1k_vith14_ep300.yaml,
0.9995 -> 0.99999 in Point-JEPA configs/Point-JEPA/pretraining/shapenet.yaml)."""
from __future__ import annotations

import copy

import torch

from common.training.distributed import unwrap_model


@torch.no_grad()
def ema_update(target: torch.nn.Module, online: torch.nn.Module, momentum: float) -> None:
    """In-place EMA of parameters (floating buffers such as BatchNorm statistics are copied from online).
    The target never receives gradients: call `make_target(online)` to get a frozen copy."""
    t_params = list(unwrap_model(target).parameters())
    o_params = list(unwrap_model(online).parameters())
    if len(t_params) != len(o_params):
        raise ValueError(f"EMA target has {len(t_params)} parameters, online network {len(o_params)}")
    torch._foreach_lerp_(t_params, [p.detach() for p in o_params], 1.0 - float(momentum))
    for tb, ob in zip(unwrap_model(target).buffers(), unwrap_model(online).buffers()):
        tb.copy_(ob)


def make_target(online: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `online` with requires_grad=False everywhere (the EMA teacher)."""
    target = copy.deepcopy(unwrap_model(online))
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def momentum_schedule(start: float, end: float, total_steps: int):
    """callable(step) -> momentum, linear from `start` at step 0 to `end` at total_steps (constant afterwards)."""
    start, end, total = float(start), float(end), max(int(total_steps), 1)

    def momentum(step: int) -> float:
        return start + (end - start) * min(max(step, 0) / total, 1.0)

    return momentum
