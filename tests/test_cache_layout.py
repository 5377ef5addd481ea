"""The ragged cache layout (common/data/cache.py): exact read-back against FeatureSet.compute, exact byte counts for a
constructed jet set, four-momenta once per source file, the prefix check, and the version bump that rebuilds old
entries."""
import os

import numpy as np
import pytest

from common.data import cache as cache_mod
from common.data.cache import get_or_build, smallest_int
from common.data.features import FEATURE_SETS, PartFeatures, RawJets, deta_dphi_partstyle, jet_from_constituents

COUNTS = np.array([1, 4, 2, 6, 3])       # real particles per jet; M = 6 in the file
M = 6


def constructed_jets(counts=COUNTS, seed=0) -> RawJets:
    rng = np.random.default_rng(seed)
    b = len(counts)
    mask = np.arange(M)[None, :] < counts[:, None]
    pt = np.sort(rng.exponential(20, (b, M)) + 1, axis=1)[:, ::-1] * mask
    eta = rng.normal(0, 0.3, (b, M)) * mask
    phi = rng.normal(0, 0.3, (b, M)) * mask
    if b > 1:
        eta[1, 2] = 2.0                                  # outside OmniJet-alpha's cut (|eta_rel| < 0.8)
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1).astype(np.float32)
    p4 *= mask[..., None]
    jet = jet_from_constituents(p4, mask)
    deta, dphi = deta_dphi_partstyle(p4, mask, jet)
    part = {"deta": deta, "dphi": dphi}
    return RawJets(p4, mask, part, jet, rng.integers(0, 3, b).astype(np.int64), "constructed")


class WithPID(PartFeatures):
    """part_kin plus a particle ID (as MPMv2 carries one): the int8 column of the cache."""

    def _compute(self, raw, n, state, rng):
        out = super()._compute(raw, n, state, rng)
        out["pid"] = (np.arange(n)[None, :] % 8).repeat(len(raw), 0)
        return out


PID_SET = WithPID("withpid", FEATURE_SETS["part_kin"].names, 4, {"names": FEATURE_SETS["part_kin"].names})


def _entry(tmp_path, fs, n, raw=None, chunks=2, source=None):
    raw = raw if raw is not None else constructed_jets()
    source = source or str(tmp_path / "file.h5")
    if not os.path.exists(source):
        with open(source, "w") as f:
            f.write("jets")
    edges = np.linspace(0, len(raw), chunks + 1).astype(int)

    def build():
        for a, b in zip(edges[:-1], edges[1:]):
            r = raw.select(slice(a, b))
            yield r, fs.compute(r, n), fs.source_positions(r, n)

    return get_or_build(str(tmp_path / "cache"), source, fs.name, fs.key(), n, len(raw), build,
                        {"rows": [0, len(raw)]})


@pytest.mark.parametrize("name", ["part_kin", "mpmv1", "omnijet", "withpid"])
def test_read_back_is_exact(tmp_path, name):
    fs = PID_SET if name == "withpid" else FEATURE_SETS[name]
    raw = constructed_jets()
    want = fs.compute(raw, 4)
    e = _entry(tmp_path, fs, 4, raw)
    for rows in (np.arange(5), np.array([1, 2]), np.array([0, 3, 4]), np.array([4])):
        got = e.read(rows)
        assert set(got) == set(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k][rows]), (k, rows)


def test_byte_counts_of_a_constructed_jet_set(tmp_path):
    kept = np.minimum(COUNTS, 4).sum()                   # 14 particles of at most 4 per jet; the file holds 16
    n = len(COUNTS)
    e = _entry(tmp_path, PID_SET, 4)
    src = (n + 1) * 8 + COUNTS.sum() * 4 * 4 + n * 6 * 4 + n * 1        # offsets, p4, jet, label int8
    assert e.nbytes() == {"features": (n + 1) * 8 + kept * 7 * 4 + kept * 1, "source": src}   # offsets, x, pid int8
    on_disk = sum(os.path.getsize(os.path.join(e.directory, f)) for f in os.listdir(e.directory) if f.endswith(".bin"))
    assert on_disk == e.nbytes()["features"]
    # OmniJet-alpha keeps particles after an angular cut: their positions in the source jet (uint8), the source
    # entry shared
    o = _entry(tmp_path, FEATURE_SETS["omnijet"], 4)
    ko = int(FEATURE_SETS["omnijet"].compute(constructed_jets(), 4)["mask"].sum())
    assert ko < kept
    assert o.nbytes() == {"features": (n + 1) * 8 + ko * 3 * 4 + ko * 1, "source": src}
    assert o.source_directory == e.source_directory
    # the padded layout of version 1: x, mask, p4 per particle slot, jet, label int64, pid int64
    assert cache_mod.padded_bytes_per_jet(7, 4, pid=True) == 4 * (7 * 4 + 1 + 16 + 8) + 24 + 8


def test_four_momenta_once_per_source_file(tmp_path):
    for name in ("part_kin", "mpmv1", "omnijet"):
        _entry(tmp_path, FEATURE_SETS[name], 4)
    _entry(tmp_path, FEATURE_SETS["part_kin"], 3)
    dirs = sorted(os.listdir(tmp_path / "cache"))
    src = [d for d in dirs if "-src-" in d and not d.endswith(".lock")]
    assert len(src) == 1
    with_p4 = [d for d in dirs if os.path.exists(tmp_path / "cache" / d / "p4.bin")]
    assert with_p4 == src


def test_a_set_that_is_not_a_prefix_is_refused(tmp_path):
    from common.data.features import _compact

    class Lying(PartFeatures):      # drops every jet's second particle, yet claims to keep the first ones
        def _compute(self, raw, n, state, rng):
            keep = raw.mask.copy()
            keep[:, 1] = False
            keep, (p4,) = _compact(keep, raw.p4)
            return dict(x=np.zeros((len(raw), n, 7)), mask=keep[:, :n], p4=p4[:, :n])

    fs = Lying("lying", FEATURE_SETS["part_kin"].names, 4, {})
    with pytest.raises(RuntimeError, match="not the raw ones"):
        _entry(tmp_path, fs, 4)
    assert not [d for d in os.listdir(tmp_path / "cache") if not d.endswith(".lock")]   # nothing left behind


def test_old_version_entries_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", 1)
    old = _entry(tmp_path, FEATURE_SETS["part_kin"], 4)
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", 2)
    new = _entry(tmp_path, FEATURE_SETS["part_kin"], 4)
    assert new.directory != old.directory and not os.path.exists(old.directory)
    assert not os.path.exists(old.source_directory) and os.path.exists(new.source_directory)


def test_smallest_int():
    assert smallest_int(np.array([0, 9])) == np.int8 and smallest_int(np.array([0, 300])) == np.int16
    assert smallest_int(np.array([], dtype=np.int64)) == np.int8
