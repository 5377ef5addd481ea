"""Shared pytest fixtures. Tests run from the repository root: `python -m pytest -q tests`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # also when pytest is called as `pytest` rather than `python -m pytest`
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("MPLBACKEND", "Agg")  # plots are written to files; never open a window
# tiny models: one intra-op thread per process (common.training.train_utils.set_torch_threads), also in scripts tests launch
os.environ.setdefault("JETFM_THREADS", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where run_all.sh and the packages live)."""
    return REPO_ROOT


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: OpenMP threads only add overhead (10x on a busy 2-core machine); restored after the module.
    A test module opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
