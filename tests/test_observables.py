"""N-subjettiness, soft-drop mass and jet kinematics against direct computations on hand-made jets."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("fastjet")
from common.data.observables import jet_observables, nsubjettiness, ptetaphi_to_p4, softdrop_mass  # noqa: E402


def _jet(pt, eta, phi, n_pad=0):
    p4 = ptetaphi_to_p4(np.asarray(pt, float), np.asarray(eta, float), np.asarray(phi, float))
    p4 = np.concatenate([p4, np.zeros((n_pad, 4))])
    return p4[None], (np.arange(len(p4)) < len(pt))[None]


def _rapphi(p):
    return 0.5 * np.log((p[..., 3] + p[..., 2]) / (p[..., 3] - p[..., 2])), np.arctan2(p[..., 1], p[..., 0])


def _dr(a, b):
    (ya, pa), (yb, pb) = _rapphi(a), _rapphi(b)
    return np.hypot(ya - yb, (pa - pb + np.pi) % (2 * np.pi) - np.pi)


def _exclusive_kt(parts, n):
    """Textbook exclusive kT clustering (E-scheme, no beam distance) down to n pseudo-jets."""
    jets = [p.copy() for p in parts]
    while len(jets) > n:
        best = None
        for i, j in itertools.combinations(range(len(jets)), 2):
            pti, ptj = np.hypot(*jets[i][:2]), np.hypot(*jets[j][:2])
            d = min(pti, ptj) ** 2 * _dr(jets[i], jets[j]) ** 2
            if best is None or d < best[0]:
                best = (d, i, j)
        _, i, j = best
        jets[i] = jets[i] + jets[j]
        del jets[j]
    return jets


def _tau_direct(parts, axes, r0=0.8):
    pt = np.hypot(parts[:, 0], parts[:, 1])
    d = np.array([[_dr(p, a) for a in axes] for p in parts]).min(axis=1)
    return (pt * d).sum() / (pt.sum() * r0)


def test_single_particle_jet_has_zero_tau_and_its_own_mass():
    p4, mask = _jet([300.0], [0.5], [1.0], n_pad=3)
    o = jet_observables(p4, mask)
    assert o["tau1"][0] == pytest.approx(0.0, abs=1e-12) and o["mass"][0] == pytest.approx(0.0, abs=1e-6)
    assert o["pt"][0] == pytest.approx(300.0) and o["eta"][0] == pytest.approx(0.5) and o["nparticles"][0] == 1


def test_mass_of_a_known_four_vector_sum():
    p4, mask = _jet([100.0, 100.0], [0.2, -0.2], [0.0, 0.3], n_pad=2)
    o = jet_observables(p4, mask)
    tot = p4[0, :2].sum(0)
    assert o["mass"][0] == pytest.approx(np.sqrt(tot[3] ** 2 - (tot[:3] ** 2).sum()), rel=1e-9)
    # massless pair: m^2 = 2 pT1 pT2 (cosh deta - cos dphi)
    assert o["mass"][0] ** 2 == pytest.approx(2 * 100 * 100 * (np.cosh(0.4) - np.cos(0.3)), rel=1e-9)


def test_two_prong_jet_has_small_tau21():
    rng = np.random.default_rng(0)
    eta = np.concatenate([rng.normal(0.25, 0.02, 6), rng.normal(-0.25, 0.02, 6)])
    phi = np.concatenate([rng.normal(0.0, 0.02, 6), rng.normal(0.1, 0.02, 6)])
    p4, mask = _jet(rng.uniform(20, 40, 12), eta, phi, n_pad=4)
    o = jet_observables(p4, mask)
    assert o["tau21"][0] < 0.15
    one = _jet(rng.uniform(20, 40, 12), rng.normal(0, 0.1, 12), rng.normal(0, 0.1, 12))
    assert jet_observables(*one)["tau21"][0] > 2 * o["tau21"][0]


@pytest.mark.parametrize("n", [3, 4])
def test_tau_matches_direct_computation_with_exclusive_kt_axes(n):
    rng = np.random.default_rng(n)
    batch = []
    for _ in range(5):
        batch.append(_jet(rng.uniform(5, 100, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n), n_pad=6 - n))
    p4 = np.concatenate([b[0] for b in batch])
    mask = np.concatenate([b[1] for b in batch])
    taus = nsubjettiness(p4, mask, n_max=4)
    for b in range(len(p4)):
        parts = p4[b][mask[b]]
        for N in range(1, 5):
            axes = _exclusive_kt(parts, min(N, len(parts)))
            assert taus[b, N - 1] == pytest.approx(_tau_direct(parts, axes), abs=1e-9)
        # brute force over axes = sums of any particle subsets (kT axes are such sums): the minimum is a lower bound
        cands = [parts[list(s)].sum(0) for k in range(1, len(parts) + 1)
                 for s in itertools.combinations(range(len(parts)), k)]
        best2 = min(_tau_direct(parts, list(ax)) for ax in itertools.combinations(cands, 2))
        assert taus[b, 1] >= best2 - 1e-12
        assert taus[b, len(parts) - 1] == pytest.approx(0.0, abs=1e-12)  # N = n particles: every particle an axis


def test_softdrop_removes_a_soft_wide_branch():
    p4, mask = _jet([200.0, 150.0], [0.1, -0.1], [0.0, 0.1])
    assert softdrop_mass(p4, mask)[0] == pytest.approx(jet_observables(p4, mask)["mass"][0], rel=1e-9)
    p4s, masks = _jet([200.0, 150.0, 10.0], [0.1, -0.1, 0.6], [0.0, 0.1, -0.4])
    groomed = softdrop_mass(p4s, masks)[0]
    assert groomed == pytest.approx(jet_observables(p4, mask)["mass"][0], rel=1e-9)
    assert jet_observables(p4s, masks)["mass"][0] > groomed + 1.0
    # z above z_cut keeps both prongs
    p4k, maskk = _jet([200.0, 150.0, 60.0], [0.1, -0.1, 0.6], [0.0, 0.1, -0.4])
    assert softdrop_mass(p4k, maskk)[0] == pytest.approx(jet_observables(p4k, maskk)["mass"][0], rel=1e-9)


def test_padding_and_empty_jets():
    p4 = np.zeros((2, 5, 4))
    mask = np.zeros((2, 5), bool)
    one, m1 = _jet([50.0, 40.0, 30.0], [0.0, 0.2, -0.2], [0.0, 0.1, 0.2], n_pad=2)
    p4[1], mask[1] = one[0], m1[0]
    o = jet_observables(p4, mask)
    assert o["pt"][0] == 0 and o["tau1"][0] == 0 and np.isfinite(o["tau21"]).all()
    ref = jet_observables(one, m1)
    for k in ("tau1", "tau2", "mass"):
        assert o[k][1] == pytest.approx(ref[k][0])
    np.testing.assert_allclose(ptetaphi_to_p4(10.0, 0.0, 0.0, 1.0), [10.0, 0.0, 0.0, np.sqrt(101.0)])


def test_softdrop_agrees_with_fastjet_grooming():
    """Our C/A declustering equals fastjet's own soft-drop grooming (beta = 0, z_cut = 0.1, R0 = 0.8)."""
    import warnings

    import awkward as ak
    import fastjet

    from common.data.observables import _awkward_jets

    rng = np.random.default_rng(5)
    B, N = 12, 30
    pt, eta, phi = rng.exponential(8, (B, N)) + 0.5, rng.normal(0, 0.3, (B, N)), rng.normal(0, 0.3, (B, N))
    p4 = ptetaphi_to_p4(pt, eta, phi)
    mask = np.arange(N)[None, :] < rng.integers(2, N, B)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = fastjet.ClusterSequence(_awkward_jets(p4, mask), fastjet.JetDefinition(fastjet.cambridge_algorithm, 10.0))
        ref = ak.to_numpy(cs.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8).msoftdrop)
    np.testing.assert_allclose(softdrop_mass(p4, mask), ref, rtol=1e-9, atol=1e-9)


def _omnijet_reference_taus(p4, mask):
    """tau1..3 as OJ's JetSubstructure computes them (gabbro/metrics/jet_substructure.py): awkward Momentum4D
    particles, fastjet kt with R = 0.8, exclusive_jets(n), vector's deltaR (pseudorapidity), beta = 1."""
    import warnings

    import awkward as ak
    import fastjet

    from common.data.observables import _awkward_jets

    parts = _awkward_jets(p4, mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.kt_algorithm, 0.8))
        d0 = ak.sum(parts.pt * 0.8, axis=1)
        taus = []
        for n in (1, 2, 3):
            axes = cs.exclusive_jets(n_jets=n)
            dr = [parts.deltaR(ak.unflatten(ak.flatten(axes[:, k:k + 1]), counts=1)) for k in range(n)]
            dmin = ak.min(ak.concatenate([d[..., np.newaxis] for d in dr], axis=-1), axis=-1)
            taus.append(ak.to_numpy(ak.sum(parts.pt * dmin, axis=1) / d0))
    return np.stack(taus, axis=1)


def test_omnijet_nsubjettiness_is_ojs_jet_substructure():
    """definition "omnijet": kt R = 0.8 axes and pseudorapidity distances, as OJ; the default ("delphes", used for
    the simulated JetClass tau branches) keeps kt R = 10 and rapidity."""
    from omnijet.jets import observables

    rng = np.random.default_rng(7)
    B, N = 40, 25
    n = rng.integers(3, N + 1, B)
    mask = np.arange(N)[None, :] < n[:, None]
    # wide three-prong jets (prongs up to ~1 apart, so the R = 0.8 beam distance matters), massless constituents
    centres = rng.normal(0, 0.35, (B, 3, 2))
    which = rng.integers(0, 3, (B, N))
    eta = np.take_along_axis(centres[..., 0], which, 1) + rng.normal(0, 0.05, (B, N))
    phi = np.take_along_axis(centres[..., 1], which, 1) + rng.normal(0, 0.05, (B, N))
    pt = np.sort(rng.exponential(20, (B, N)) + 1.0, axis=1)[:, ::-1]
    p4 = ptetaphi_to_p4(pt, eta, phi) * mask[..., None]
    ref = _omnijet_reference_taus(p4, mask)
    oj = nsubjettiness(p4, mask, n_max=3, definition="omnijet")
    np.testing.assert_allclose(oj, ref, rtol=1e-9, atol=1e-12)
    assert not np.allclose(nsubjettiness(p4, mask, n_max=3), ref, rtol=1e-3)
    # the OmniJet tables use it: omnijet features (log pT - 1.8, 3 eta, 3 phi) of the same jets
    x = np.stack([np.log(np.where(mask, pt, 1.0)) - 1.8, 3 * eta, 3 * phi], axis=-1) * mask[..., None]
    obs = observables(x, mask)
    np.testing.assert_allclose(obs["tau21"], ref[:, 1] / ref[:, 0], rtol=1e-6)
    np.testing.assert_allclose(obs["tau32"], ref[:, 2] / ref[:, 1], rtol=1e-6)
    with pytest.raises(ValueError, match="definition"):
        nsubjettiness(p4, mask, definition="fastjet")
