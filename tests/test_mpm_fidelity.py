"""MPMv1 / MPMv2 model details checked against the official code (rodem-hep/mpm, mattcleigh/jetssl)."""
from __future__ import annotations

import pytest
import torch

from mpm.heads import CFMTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_cfm_loss_is_mean_over_features():
    """jetssl VectorDiffuser.get_loss: (v - (x1 - x0)).square().mean() over particles and all 7 features."""
    torch.manual_seed(0)
    task = CFMTask(dim=8, num_features=7, context_dim=4, hidden=8, depth=1, time_dim=4)
    d, x = torch.randn(5, 8), torch.randn(5, 7)
    torch.manual_seed(1)
    loss, _ = task(d, x)
    torch.manual_seed(1)
    t = torch.sigmoid(torch.randn(5))
    eps = torch.randn(5, 7)
    v = task.velocity((1 - t[:, None]) * x + t[:, None] * eps, t, task.context(d))
    expected = ((v - (eps - x)) ** 2).mean()
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, ((v - (eps - x)) ** 2).sum(-1).mean())
