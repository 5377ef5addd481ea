"""Session-scoped tiny simulated samples (Pythia 8 + FastJet), reusable by any test module:

    from sim_fixtures import sim_jetclass, sim_toptagging, sim_qg  # noqa: F401  (pytest finds them by name)

Each fixture returns the output directory of `python -m common.simulate ...` with a handful of jets.
"""
from __future__ import annotations

import pytest

SIM_SEED = 7
JETCLASS_JETS_PER_CLASS = 10  # 8 / 1 / 1 over train / val / test
TOPTAGGING_JETS = 20
QG_JETS = 12


@pytest.fixture(scope="session")
def sim_jetclass(tmp_path_factory):
    pytest.importorskip("pythia8mc")
    from common.simulate import simulate_jetclass

    out = tmp_path_factory.mktemp("sim_jetclass")
    simulate_jetclass(str(out), JETCLASS_JETS_PER_CLASS, seed=SIM_SEED, workers=2)
    return out


@pytest.fixture(scope="session")
def sim_toptagging(tmp_path_factory):
    pytest.importorskip("pythia8mc")
    from common.simulate import simulate_toptagging

    out = tmp_path_factory.mktemp("sim_toptagging")
    simulate_toptagging(str(out), TOPTAGGING_JETS, seed=SIM_SEED, workers=2)
    return out


@pytest.fixture(scope="session")
def sim_qg(tmp_path_factory):
    pytest.importorskip("pythia8mc")
    from common.simulate import simulate_qg

    out = tmp_path_factory.mktemp("sim_qg")
    simulate_qg(str(out), QG_JETS, seed=SIM_SEED, workers=2, per_file=8)  # two files: QG_jets.npz, QG_jets_1.npz
    return out
