"""Offline Pythia 8 + FastJet simulation of JetClass-, Top-tagging- and quark-gluon-like jets in the published formats.

Entry point: `python -m common.simulate {jetclass,toptagging,qg,validate} ...`. One concept per file: processes
(Pythia settings), generate (event loop and clustering), matching (JetClass truth labels), detector (response),
writers (ROOT / HDF5 / npz), run (parallel, resumable production), validate (plots).
"""
from .run import simulate_jetclass, simulate_qg, simulate_toptagging  # noqa: F401
