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


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where run_all.sh and the packages live)."""
    return REPO_ROOT
