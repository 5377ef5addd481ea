"""DeepSets ("ParticleFlow") classifier of the token-quality study (OJ experiment_classification_particleflow.yaml).

OJ `experiment_classification_particleflow.yaml`: phi = 3 -> 100 -> 100 -> 256 per particle, masked sum over the jet,
F = 256 -> 100 -> 100 -> 100 -> n_classes. Trained once on the original constituents and once on the constituents
reconstructed from each tokeniser's tokens (same features, same jets); the test accuracy shows how much
class information survives tokenisation ("accuracy_reco" of the token-quality table).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _mlp(dims: list[int], last_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or last_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ParticleFlow(nn.Module):
    def __init__(self, input_dim: int, n_classes: int, phi=(100, 100, 256), f=(100, 100, 100)):
        super().__init__()
        self.phi = _mlp([input_dim, *phi], last_act=True)
        self.f = _mlp([phi[-1], *f, n_classes], last_act=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.phi(x) * mask.unsqueeze(-1).to(x.dtype)
        return self.f(h.sum(1))


def train_and_score(train: tuple, test: tuple, n_classes: int, *, epochs: int, batch_size: int, lr: float,
                    seed: int = 0) -> float:
    """Train a ParticleFlow on train = (x, mask, y) (AdamW, fixed epochs) and return its test accuracy."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, m, y = (torch.as_tensor(a) for a in train)
    x, m, y = x.float(), m.bool(), y.long()
    model = ParticleFlow(x.shape[-1], n_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = F.cross_entropy(model(x[idx], m[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    xt, mt, yt = (torch.as_tensor(a) for a in test)
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + 4096].float(), mt[i:i + 4096].bool()).argmax(-1)
                          for i in range(0, len(xt), 4096)])
    return float((pred.numpy() == np.asarray(yt)).mean())
