"""Feature sets and pairwise features against hand-computed values (ParT arXiv:2202.03772 and weaver pairwise_lv_fts;
rodem-hep/mpm, omnijet_alpha feature_dict)."""
import math

import numpy as np
import pytest
import torch

from common.blocks.pairwise import pairwise_features
from common.data.features import (FEATURE_SETS, PART_FULL, PART_KIN, PART_KINPID, DataError, RawJets,
                                  fit_mpmv2_quantiles, jet_from_constituents, mpmv2_continuous, mpmv2_pid)


def raw_from(p4, mask=None, jet=None, **part):
    p4 = np.asarray(p4, np.float32)
    mask = np.ones(p4.shape[:2], bool) if mask is None else np.asarray(mask)
    jet = jet_from_constituents(p4, mask) if jet is None else np.asarray(jet, np.float32)
    part = {k: np.asarray(v, np.float32) for k, v in part.items()}
    return RawJets(p4, mask, part, jet, np.zeros(len(p4), np.int64), "handmade")


def one_particle_raw():
    # px=3, py=4 -> pT=5; E=10; jet pT=100, E=200; deta=0.3, dphi=-0.4 -> dR=0.5
    jet = [[100.0, 0.5, 0.1, 200.0, 20.0, 2.0]]
    p4 = [[[3.0, 4.0, 1.0, 10.0], [1e-4, 0.0, 0.0, 1e-4]]]
    return raw_from(p4, jet=jet, deta=[[0.3, 0.1]], dphi=[[-0.4, 0.1]], charge=[[-1, 0]], isChargedHadron=[[1, 0]],
                    isNeutralHadron=[[0, 0]], isPhoton=[[0, 1]], isElectron=[[0, 0]], isMuon=[[0, 0]],
                    d0val=[[2.0, 0]], d0err=[[1.7, 0]], dzval=[[-0.5, 0]], dzerr=[[0.3, 0]])


def test_part_full_exact_constants():
    out = FEATURE_SETS["part_full"].compute(one_particle_raw(), num_particles=4)
    x = out["x"][0, 0]
    expect = {
        "part_pt_log": (math.log(5) - 1.7) * 0.7,          # -0.06339
        "part_e_log": (math.log(10) - 2.0) * 0.7,
        "part_logptrel": (math.log(5 / 100) + 4.7) * 0.7,
        "part_logerel": (math.log(10 / 200) + 4.7) * 0.7,
        "part_deltaR": (0.5 - 0.2) * 4.0,
        "part_charge": -1, "part_isChargedHadron": 1, "part_isNeutralHadron": 0, "part_isPhoton": 0,
        "part_isElectron": 0, "part_isMuon": 0,
        "part_d0": math.tanh(2.0), "part_d0err": 1.0, "part_dz": math.tanh(-0.5), "part_dzerr": 0.3,
        "part_deta": 0.3, "part_dphi": -0.4,
    }
    assert len(PART_FULL) == 17 and list(expect) == list(PART_FULL)
    np.testing.assert_allclose(x, list(expect.values()), atol=2e-6)
    assert x[0] == pytest.approx(-0.0633935, abs=1e-6) and x[2] == pytest.approx(1.1929874, abs=1e-6)
    # soft particle: log pT clipped at -5 (and log pT/pT_jet, log E/E_jet too)
    soft = out["x"][0, 1]
    assert soft[0] == -5.0 and soft[1] == -5.0 and soft[2] == -5.0 and soft[3] == -5.0
    assert out["x"][0, 2:].sum() == 0 and out["mask"][0].tolist() == [True, True, False, False]
    assert out["x"].dtype == np.float32 and out["mask"].dtype == bool and out["p4"].shape == (1, 4, 4)


def test_part_subsets_are_columns_of_full():
    raw = one_particle_raw()
    full = FEATURE_SETS["part_full"].compute(raw)["x"]
    for name, cols in [("part_kin", PART_KIN), ("part_kinpid", PART_KINPID), ("hepjepa", PART_KIN)]:
        fs = FEATURE_SETS[name]
        assert fs.names == cols and len(cols) == {"part_kin": 7, "part_kinpid": 13, "hepjepa": 7}[name]
        np.testing.assert_array_equal(fs.compute(raw)["x"], full[..., [PART_FULL.index(c) for c in cols]])
    assert FEATURE_SETS["part_kin"].num_particles == 128


def test_kinpid_needs_pid_fields():
    raw = one_particle_raw()
    del raw.part["isMuon"]
    with pytest.raises(DataError, match="part_kinpid.*isMuon"):
        FEATURE_SETS["part_kinpid"].compute(raw)
    FEATURE_SETS["part_kin"].compute(raw)  # kinematics only: fine


def _ptetaphi(pt, eta, phi):
    pt, eta, phi = map(np.asarray, (pt, eta, phi))
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)[None]


def test_mpmv1_relative_to_constituent_sum():
    pt, eta, phi = [50.0, 30.0, 20.0], [0.1, -0.2, 0.3], [3.1, -3.1, 3.0]     # straddles the phi = pi boundary
    raw = raw_from(_ptetaphi(pt, eta, phi), jet=[[999, 0, 0, 999, 0, 3]])     # stored jet values must be ignored
    out = FEATURE_SETS["mpmv1"].compute(raw)
    s = _ptetaphi(pt, eta, phi)[0].sum(0)
    jeta, jphi = np.arcsinh(s[2] / np.hypot(s[0], s[1])), np.arctan2(s[1], s[0])
    x = out["x"][0]
    assert out["x"].shape == (1, 64, 3) and FEATURE_SETS["mpmv1"].num_particles == 64
    np.testing.assert_allclose(x[:3, 0], np.array(eta) - jeta, atol=1e-5)
    dphi = (np.array(phi) - jphi + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(x[:3, 1], dphi, atol=1e-5)
    assert np.abs(x[:3, 1]).max() < 0.2                                      # wrapped, not ~2 pi
    np.testing.assert_allclose(x[:3, 2], np.log1p(pt), rtol=1e-5)
    inv = FEATURE_SETS["mpmv1"].inverse(out["x"], out["mask"])
    np.testing.assert_allclose(inv["pt"][0, :3], pt, rtol=1e-4)
    assert inv["pt"][0, 3:].sum() == 0


def test_mpmv1_keeps_first_64():
    n = 80
    pt = np.linspace(100, 1, n)
    raw = raw_from(_ptetaphi(pt, np.zeros(n) + 0.01 * np.arange(n) / n, np.zeros(n)))
    out = FEATURE_SETS["mpmv1"].compute(raw)
    assert out["mask"].sum() == 64
    np.testing.assert_allclose(out["x"][0, :, 2], np.log1p(pt[:64]), rtol=1e-5)


def test_omnijet_cut_transform_inverse():
    pt = [100.0, 50.0, 20.0, 10.0, 5.0]
    eta = [0.0, 0.1, 1.2, -0.1, 0.0]         # particle 2 is far in eta: cut
    phi = [0.0, 0.05, 0.0, 1.2, -0.1]        # particle 3 is far in phi: cut
    raw = raw_from(_ptetaphi(pt, eta, phi))
    fs = FEATURE_SETS["omnijet"]
    out = fs.compute(raw)
    s = _ptetaphi(pt, eta, phi)[0].sum(0)
    jeta, jphi = np.arcsinh(s[2] / np.hypot(s[0], s[1])), np.arctan2(s[1], s[0])
    kept = [0, 1, 4]
    assert out["mask"][0].tolist()[:4] == [True, True, True, False] and out["x"].shape == (1, 128, 3)
    x = out["x"][0, :3]
    np.testing.assert_allclose(x[:, 0], np.log(np.array(pt)[kept]) - 1.8, atol=1e-5)
    np.testing.assert_allclose(x[:, 1], 3 * (np.array(eta)[kept] - jeta), atol=1e-5)
    np.testing.assert_allclose(x[:, 2], 3 * (np.array(phi)[kept] - jphi), atol=1e-5)
    np.testing.assert_allclose(out["p4"][0, 2], _ptetaphi(pt, eta, phi)[0, 4], rtol=1e-5)   # p4 compacted too
    inv = fs.inverse(torch.from_numpy(out["x"]), torch.from_numpy(out["mask"]))            # torch works too
    np.testing.assert_allclose(inv["pt"][0, :3].numpy(), np.array(pt)[kept], rtol=1e-4)
    np.testing.assert_allclose(inv["deta"][0, :3].numpy(), np.array(eta)[kept] - jeta, atol=1e-5)
    with pytest.raises(NotImplementedError):
        FEATURE_SETS["part_kin"].inverse(out["x"], out["mask"])


def _mpm_raw():
    pt, eta, phi = [40.0, 30.0, 20.0, 10.0, 5.0, 4.0], [0.1, 0.05, -0.05, 0.2, 0.0, 0.0], [0.1, -0.1, 0.02, 0, 0, 0]
    p4 = _ptetaphi(pt, eta, phi)
    jet = jet_from_constituents(p4.astype(np.float32), np.ones((1, 6), bool))
    jet[:, 1] = -0.5                                        # negative-eta jet: stored deta is sign-flipped
    deta = [[-0.1, 0.2, 0.0, 0.0, 0.9, 0.0]]                # (eta - eta_jet) * (-1)
    dphi = [[0.1, -0.1, 0.02, 0.0, 0.0, -1.0]]
    return raw_from(p4, jet=jet, deta=deta, dphi=dphi,
                    charge=[[1, -1, 0, 0, -1, 1]], isChargedHadron=[[1, 1, 0, 0, 0, 0]], isNeutralHadron=[[0, 0, 1, 0, 0, 0]],
                    isPhoton=[[0, 0, 0, 1, 0, 0]], isElectron=[[0, 0, 0, 0, 1, 0]], isMuon=[[0, 0, 0, 0, 0, 1]],
                    d0val=[[0.2, 0.3, 0, 0, 0.1, 0.1]], d0err=[[0.01] * 6], dzval=[[0.4, -0.4, 0, 0, 0.1, 0.1]],
                    dzerr=[[0.02] * 6])


def test_mpmv2_pid_and_lifetime_sign():
    raw = _mpm_raw()
    assert mpmv2_pid(raw.part)[0].tolist() == [3, 1, 2, 0, 4, 7]           # h+, h-, h0, photon, e-, mu+
    x, pid = mpmv2_continuous(raw)
    x = x[0]
    np.testing.assert_allclose(x[:, 0], np.hypot(raw.p4[0, :, 0], raw.p4[0, :, 1]), rtol=1e-5)   # raw pT
    assert x[4, 1] == pytest.approx(0.8) and x[5, 2] == pytest.approx(-0.8)                             # angles clipped at 0.8
    # Delphes d0 convention (opposite to ATLAS'): particle 0: dphi = +0.1, d0 = +0.2 -> sin(phi_trk - phi_jet) d0 > 0
    assert x[0, 3] == pytest.approx(0.2)
    assert x[1, 3] == pytest.approx(-0.3)                                   # dphi < 0, d0 > 0 -> negative
    # z0: eta_jet - eta_trk = -(deta_stored * sign(eta_jet)) = deta_stored for a negative jet
    assert x[0, 4] == pytest.approx(-0.4)                                   # deta_stored -0.1, z0 +0.4 -> negative
    assert x[1, 4] == pytest.approx(-0.4)                                   # deta_stored +0.2, z0 -0.4 -> negative
    assert np.isnan(x[2, 3:]).all() and np.isnan(x[3, 3:]).all()           # neutrals: NaN for the fit
    assert not np.isnan(x[4, 3:]).any()


def test_mpmv2_quantile_normalised_with_noise():
    rng = np.random.default_rng(0)
    raws = []
    for s in range(30):
        r = _mpm_raw()
        r.p4 = r.p4 * rng.uniform(0.5, 2.0)
        r.part["d0val"] = r.part["d0val"] * rng.normal(size=r.part["d0val"].shape).astype(np.float32)
        raws.append(r)
    qt = fit_mpmv2_quantiles(raws)
    assert qt.n_quantiles <= 500 and qt.output_distribution == "normal"
    fs = FEATURE_SETS["mpmv2"]
    assert fs.params["n_quantiles"] == 500 and fs.names[0] == "part_pt" and len(fs.names) == 7
    out = fs.compute(raws[0], 8, qt, np.random.default_rng(1))
    out2 = fs.compute(raws[0], 8, qt, np.random.default_rng(2))
    assert out["pid"][0].tolist() == [3, 1, 2, 0, 4, 7, 0, 0] and out["pid"].dtype == np.int64
    assert np.isfinite(out["x"]).all() and np.abs(out["x"]).max() < 6
    # charged: deterministic transform; neutrals' IP columns are N(0,1) noise (differ between rngs)
    np.testing.assert_array_equal(out["x"][0, [0, 1, 4, 5]], out2["x"][0, [0, 1, 4, 5]])
    assert not np.allclose(out["x"][0, 2, 3:], out2["x"][0, 2, 3:])
    np.testing.assert_array_equal(out["x"][0, 2, :3], out2["x"][0, 2, :3])
    np.testing.assert_allclose(out["x"][0, :6, 0], qt.transform(mpmv2_continuous(raws[0])[0][0])[:, 0], atol=1e-6)
    with pytest.raises(DataError, match="quantile"):
        fs.compute(raws[0], 8, None)


def test_pairwise_hand_computed_pair():
    # a = (10, 0, 0, 10): pT 10, y 0, phi 0;  b = (0, 5, 0, 5): pT 5, y 0, phi pi/2;  c: padding
    p4 = torch.tensor([[[10.0, 0, 0, 10], [0, 5, 0, 5], [7, 7, 7, 20]]])
    mask = torch.tensor([[True, True, False]])
    f = pairwise_features(p4, mask)
    assert f.shape == (1, 4, 3, 3)
    delta = math.pi / 2
    expect = [math.log(5 * delta), math.log(5 / 15), math.log(delta), math.log(15**2 - (10**2 + 5**2))]
    np.testing.assert_allclose(f[0, :, 0, 1].numpy(), expect, rtol=1e-5)
    np.testing.assert_allclose(f[0, :, 1, 0].numpy(), expect, rtol=1e-5)          # symmetric
    assert f[0, :, 2, :].abs().sum() == 0 and f[0, :, :, 2].abs().sum() == 0     # zero at padded pairs
    # diagonal: Delta = 0 -> ln eps for kT and Delta
    assert f[0, 0, 0, 0].item() == pytest.approx(math.log(1e-8), rel=1e-5)
    # padding never changes real pairs
    f2 = pairwise_features(p4[:, :2], mask[:, :2])
    torch.testing.assert_close(f[..., :2, :2], f2)


def test_pairwise_uses_rapidity():
    # massive particle (1, 0, 1, 2): y = 0.5 ln(3) = 0.5493 (eta would be asinh(1) = 0.8814)
    p4 = torch.tensor([[[1.0, 0, 1, 2], [1, 0, 0, 1]]])
    f = pairwise_features(p4, torch.ones(1, 2, dtype=torch.bool))
    assert f[0, 2, 0, 1].item() == pytest.approx(math.log(0.5 * math.log(3)), rel=1e-5)
    # m^2 = (3)^2 - (2^2 + 0 + 1^2) = 4
    assert f[0, 3, 0, 1].item() == pytest.approx(math.log(4), rel=1e-5)
