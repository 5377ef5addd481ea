"""Unit tests of the simulation pieces that need no Pythia: truth matching rules, detector response, splits."""
from __future__ import annotations

import numpy as np
import pytest

from common.simulate.detector import ATLAS, CMS, detector_response, impact_parameters
from common.simulate.matching import Resonance, could_match, match_jet
from common.simulate.run import split_counts


def _res(kind, ids, etas, phis, hvv=False, pt=600.0):
    return Resonance(kind, 6, pt, 0.0, 0.0, pt, 0.0, 0.0, pt, np.array(ids), np.array(etas, float),
                     np.array(phis, float), hvv)


def test_top_matching_rules():
    top = _res("t", [5, 1, 2], [0.0, 0.3, -0.3], [0.0, 0.2, 0.1])
    assert match_jet([top], 0.0, 0.0)[0] == 12
    assert match_jet([_res("t", [5, 3, 4], [0.0, 0.3, -0.3], [0.0, 0.2, 0.1])], 0.0, 0.0)[0] == 11
    b_out = _res("t", [5, 1, 2], [1.5, 0.3, -0.3], [0.0, 0.2, 0.1])
    assert match_jet([b_out], 0.0, 0.0)[0] == 22  # tested as a W
    q_out = _res("t", [5, 1, 2], [0.0, 0.3, -1.3], [0.0, 0.2, 0.1])
    assert match_jet([q_out], 0.0, 0.0)[0] is None
    assert match_jet([_res("t", [5, 11], [0.0, 0.3], [0.0, 0.2])], 0.0, 0.0)[0] == 15
    assert match_jet([_res("t", [5, 13], [0.0, 0.3], [0.0, 0.2])], 0.0, 0.0)[0] == 16
    assert match_jet([_res("t", [5, 15], [0.0, 0.3], [0.0, 0.2])], 0.0, 0.0)[0] is None  # tau not accepted
    # phi wraps around
    assert match_jet([_res("t", [5, 1, 2], [0, 0, 0], [3.1, -3.1, 3.0])], 0.0, 3.14)[0] == 12


def test_boson_and_higgs_matching_rules():
    assert match_jet([_res("W", [4, 3], [0.1, -0.1], [0, 0])], 0, 0)[0] == 21
    assert match_jet([_res("Z", [5, 5], [0.1, -0.1], [0, 0])], 0, 0)[0] == 31
    assert match_jet([_res("Z", [4, 4], [0.1, -0.1], [0, 0])], 0, 0)[0] == 32
    assert match_jet([_res("Z", [1, 1], [0.1, -0.1], [0, 0])], 0, 0)[0] == 33
    assert match_jet([_res("Z", [12, 12], [0.1, -0.1], [0, 0])], 0, 0)[0] is None
    assert match_jet([_res("H", [21, 21], [0.1, -0.1], [0, 0])], 0, 0)[0] == 44
    assert match_jet([_res("H", [5, 5], [0.1, 0.9], [0, 0])], 0, 0)[0] is None
    h4q = _res("H", [1, 2, 3, 4], [0.1, -0.1, 0.2, -0.2], [0, 0.1, 0.2, 0.3], hvv=True)
    assert match_jet([h4q], 0, 0)[0] == 45
    hqql = _res("H", [1, 2, 13], [0.1, -0.1, 0.2], [0, 0.1, 0.2], hvv=True)
    assert match_jet([hqql], 0, 0)[0] == 46
    # record order: the first matching resonance labels the jet
    assert match_jet([_res("Z", [12, 12], [0, 0], [0, 0]), h4q], 0, 0)[0] == 45


def test_parton_level_preselection():
    top = _res("t", [5, 1, 2], [0.0, 0.3, -0.3], [0.0, 0.2, 0.1])
    assert could_match(top, (11, 12), 500.0)
    assert not could_match(top, (15, 16), 500.0)
    wide = _res("t", [5, 1, 2], [0.0, 1.7, -0.3], [0.0, 0.2, 0.1])
    assert not could_match(wide, (11, 12), 500.0)
    assert not could_match(_res("t", [5, 1, 2], [0, 0.1, 0.2], [0, 0, 0], pt=200.0), (11, 12), 500.0)


def _particles(n=400, seed=0):
    rng = np.random.default_rng(seed)
    pid = rng.choice([211, -211, 22, 130, 2112, 11, 13], n)
    pt = rng.exponential(5.0, n) + 0.2
    eta, phi = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
    charge = np.where(np.isin(pid, [211, 13]), 1.0, np.where(np.isin(pid, [-211, 11]), -1.0, 0.0))
    return dict(px=pt * np.cos(phi), py=pt * np.sin(phi), pz=pt * np.sinh(eta), e=pt * np.cosh(eta), pid=pid,
                charge=charge, x=np.zeros(n), y=np.zeros(n), z=np.zeros(n))


def test_detector_response_conventions():
    p = _particles()
    out = detector_response(p, CMS, np.random.default_rng(1))
    n_tracks = int((out["charge"] != 0).sum())
    n_charged = int((p["charge"] != 0).sum())
    assert 0.6 * n_charged < n_tracks < n_charged  # efficiency < 1
    assert set(np.unique(np.abs(out["pid"][out["charge"] == 0]))) <= {0, 22}
    assert (out["d0err"][out["charge"] != 0] > 0).all() and (out["d0"][out["charge"] == 0] == 0).all()
    neutral_e = out["e"][out["pid"] == 0]
    assert (neutral_e > 1.0).all()  # HCAL threshold
    assert (out["e"][out["pid"] == 22] > 0.5).all()  # ECAL threshold
    # prompt tracks: |d0| is only the resolution smearing
    assert np.abs(out["d0"][out["charge"] != 0]).max() < 6 * out["d0err"].max()
    atl = detector_response(p, ATLAS, np.random.default_rng(1))
    assert len(atl["e"]) != len(out["e"]) or not np.allclose(atl["e"], out["e"])


def test_impact_parameters_of_a_displaced_track():
    # a track produced at (x, y) = (0, 1 mm) moving along +x: d0 = x*py - y*px / pT = -1 mm, dz = z
    d0, dz = impact_parameters(np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([10.0]), np.array([0.0]),
                               np.array([0.0]))
    assert d0[0] == pytest.approx(-1.0) and dz[0] == pytest.approx(2.0)


def test_split_counts():
    assert split_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert split_counts(5, (0.8, 0.1, 0.1)) == [3, 1, 1]
    assert sum(split_counts(1003, (0.6, 0.2, 0.2))) == 1003
    with pytest.raises(ValueError):
        split_counts(10, (0.5, 0.5))


def test_test_seed_gives_the_test_split_fresh_pythia_seeds_and_keeps_train_and_val(tmp_path):
    """--test-seed (run_all.sh passes it in mini): the test split's files get seeds of a derivation no run without it
    used, distinct per master seed; training and validation files keep theirs; the settings record it."""
    import json

    from common.simulate.run import check_settings, jetclass_tasks, split_seed

    opts = dict(detector="cms", pt_spectrum="flat")
    old = jetclass_tasks(str(tmp_path), 100, 1, ["QCD", "Hbb"], (0.8, 0.1, 0.1), 100_000, opts)
    new = jetclass_tasks(str(tmp_path), 100, 1, ["QCD", "Hbb"], (0.8, 0.1, 0.1), 100_000, opts, test_seed=1)
    split = lambda t: t.path.split("/")[-2]
    for a, b in zip(old, new):
        assert a.path == b.path and (a.seed == b.seed) == (split(a) != "test"), (a.path, a.seed, b.seed)
    # fresh against every seed an earlier run could have used for any file of the sample (master seeds 0-99)
    earlier = {t.seed for s in range(100) for t in jetclass_tasks(str(tmp_path), 100, s, ["QCD", "Hbb"],
                                                                    (0.8, 0.1, 0.1), 100_000, opts)}
    assert not {t.seed for t in new if split(t) == "test"} & earlier
    # two samples simulated with one test seed (CMS seed 1, ATLAS seed 2) share no test events
    assert split_seed(1, 1, "test", "jetclass", "QCD", 0) != split_seed(2, 1, "test", "jetclass", "QCD", 0)
    assert split_seed(1, None, "test", "jetclass", "QCD", 0) == split_seed(1, None, "train", "jetclass", "QCD", 0)
    check_settings(str(tmp_path / "s"), {"seed": 1, "test_seed": 1})
    assert json.loads((tmp_path / "s" / "simulate.json").read_text())["test_seed"] == 1
    with pytest.raises(ValueError, match="different settings"):   # a sample of another test seed is not resumed
        check_settings(str(tmp_path / "s"), {"seed": 1})
