"""Physics cross-checks from the correctness review (jetclass_generation delphes_card.tcl, rodem-hep/mpm loading.py).

Each test builds a configuration whose physical answer is known without reference to the code under test."""
import numpy as np
from sim_fixtures import sim_qg  # noqa: F401  (session fixture, shared with test_simulate)

from common.data.features import RawJets, jet_from_constituents, mpmv2_continuous
from common.simulate.detector import impact_parameters


def _displaced_tracks(jet_eta: float, jet_phi: float, seed: int = 0):
    """Tracks from a secondary vertex displaced along the jet axis (a b-hadron decay): their lifetime-signed impact
    parameters must be positive. d0, dz use the Delphes convention d0 = (x py - y px) / pT (ParticlePropagator),
    as in JetClass."""
    rng = np.random.default_rng(seed)
    n = 12
    L = 5.0                                                   # mm of flight along the jet direction
    th = 2 * np.arctan(np.exp(-jet_eta))
    vtx = L * np.array([np.sin(th) * np.cos(jet_phi), np.sin(th) * np.sin(jet_phi), np.cos(th)])
    eta = jet_eta + rng.uniform(-0.1, 0.1, n)
    phi = jet_phi + rng.uniform(-0.1, 0.1, n)
    pt = rng.uniform(5, 50, n)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    d0, dz = impact_parameters(vtx[0], vtx[1], vtx[2], px, py, pz)
    p4 = np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2)], -1)[None].astype(np.float32)
    mask = np.ones((1, n), bool)
    jet = jet_from_constituents(p4, mask)
    jet[:, 1], jet[:, 2] = jet_eta, jet_phi
    sgn = 1.0 if jet_eta > 0 else -1.0                        # JetClass part_deta is sign-flipped for eta_jet < 0
    dphi = (phi - jet_phi + np.pi) % (2 * np.pi) - np.pi
    part = dict(deta=(sgn * (eta - jet_eta))[None], dphi=dphi[None], charge=np.ones((1, n)),
                isChargedHadron=np.ones((1, n)), isNeutralHadron=np.zeros((1, n)), isPhoton=np.zeros((1, n)),
                isElectron=np.zeros((1, n)), isMuon=np.zeros((1, n)), d0val=d0[None], d0err=np.full((1, n), 0.01),
                dzval=dz[None], dzerr=np.full((1, n), 0.01))
    part = {k: np.asarray(v, np.float32) for k, v in part.items()}
    return RawJets(p4, mask, part, jet, np.zeros(1, np.int64), "displaced-vertex")


def test_mpmv2_lifetime_signed_ip_positive_for_displaced_vertex():
    for k, (jeta, jphi) in enumerate([(0.7, 0.3), (-1.2, 2.9), (1.5, -2.0), (-0.3, -0.8)]):
        raw = _displaced_tracks(jeta, jphi, seed=k)
        x, _ = mpmv2_continuous(raw)
        assert np.abs(raw.part["d0val"]).min() > 1e-4            # genuinely displaced (non-trivial sign)
        assert (x[0, :, 3] > 0).all(), f"signed d0 must be > 0 for a vertex along the jet (eta={jeta}, phi={jphi})"
        assert (x[0, :, 4] > 0).all(), f"signed z0 must be > 0 for a vertex along the jet (eta={jeta}, phi={jphi})"


# Quark-gluon substitute: EnergyFlow's qg_jets hold only the 14 final-state species of Pythia's default decay table
# (K_S, Lambda, Sigma, Xi, Omega decayed; EnergyFlow's remap_pids knows exactly these and raises on anything else).
QG_PIDS = (22, 211, 321, 130, 2112, 2212, 11, 13)


def test_qg_particles_are_energyflow_species(sim_qg):
    import glob

    for f in sorted(glob.glob(str(sim_qg / "QG_jets*.npz"))):
        with np.load(f) as d:
            X = d["X"]
        pid = np.abs(X[..., 3][X[..., 0] > 0]).astype(int)
        extra = sorted(set(pid) - set(QG_PIDS))
        assert not extra, f"{f}: species absent from the EnergyFlow quark-gluon dataset: {extra}"
