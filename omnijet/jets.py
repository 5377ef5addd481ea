"""From OmniJet features back to physics: massless particles and jet observables (OJ gabbro/data/loading.py,
gabbro/metrics/jet_substructure.py).

Decoded particles carry (pT, eta_rel, phi_rel) relative to the jet axis; as in OJ they are treated as massless and
eta_rel, phi_rel are used as their eta and phi, so the jet sits at eta ~ phi ~ 0. Jet pT, eta, phi, mass, the
multiplicity and the N-subjettiness ratios come from common.data.observables; the same function is applied to original,
reconstructed and generated jets. N-subjettiness uses OJ's definition (gabbro/metrics/jet_substructure.py
JetSubstructure: beta = 1, R = 0.8, exclusive-kT axes of a kt clustering with R = 0.8, pseudorapidity distances).
"""
from __future__ import annotations

import numpy as np

from common.data.features import FEATURE_SETS
from common.data.observables import jet_observables, ptetaphi_to_p4

JET_OBSERVABLES = ("pt", "eta", "phi", "mass", "nparticles", "tau21", "tau32")
PARTICLE_FEATURES = ("pt", "eta_rel", "phi_rel")


def particles(x: np.ndarray, mask: np.ndarray) -> dict:
    """omnijet features (B, N, 3) -> dict(pt, eta_rel, phi_rel) each (B, N), zero at padding."""
    kin = FEATURE_SETS["omnijet"].inverse(np.asarray(x, dtype=np.float64), np.asarray(mask, dtype=bool))
    return dict(pt=kin["pt"], eta_rel=kin["deta"], phi_rel=kin["dphi"])


def observables(x: np.ndarray, mask: np.ndarray, nsub_definition: str = "omnijet") -> dict:
    """Jet observables of JET_OBSERVABLES (each (B,)) from omnijet features of padded jets; nsub_definition
    "delphes" gives the N-subjettiness of the simulated JetClass branches instead (common.data.observables)."""
    mask = np.asarray(mask, dtype=bool)
    kin = particles(x, mask)
    p4 = ptetaphi_to_p4(kin["pt"], kin["eta_rel"], kin["phi_rel"]) * mask[..., None]
    obs = jet_observables(p4, mask, nsub_definition=nsub_definition)
    return {k: np.asarray(obs[k], dtype=np.float64) for k in JET_OBSERVABLES}


def particle_values(x: np.ndarray, mask: np.ndarray) -> dict:
    """Flat arrays of the real particles' pT, eta_rel, phi_rel (for particle-level histograms and metrics)."""
    mask = np.asarray(mask, dtype=bool)
    kin = particles(x, mask)
    return {k: kin[k][mask] for k in PARTICLE_FEATURES}
