"""The ragged cache layout (common/data/cache.py): exact read-back against FeatureSet.compute (stored sets and sets
computed on read from the source entry), exact byte counts for a constructed jet set, four-momenta once per source
file, the prefix check, and the version bump that rebuilds old entries."""
import os

import numpy as np
import pytest

from common.data import cache as cache_mod
from common.data.cache import get_or_build, smallest_int
from common.data.features import FEATURE_SETS, PartFeatures, RawJets, deta_dphi_partstyle, jet_from_constituents

COUNTS = np.array([1, 4, 2, 6, 3])       # real particles per jet; M = 6 in the file
M = 6


def constructed_jets(counts=COUNTS, seed=0, m=M) -> RawJets:
    rng = np.random.default_rng(seed)
    b = len(counts)
    mask = np.arange(m)[None, :] < counts[:, None]
    pt = np.sort(rng.exponential(20, (b, m)) + 1, axis=1)[:, ::-1] * mask
    eta = rng.normal(0, 0.3, (b, m)) * mask
    phi = rng.normal(0, 0.3, (b, m)) * mask
    if b > 1:
        eta[1, 2] = 2.0                                  # outside OmniJet-alpha's cut (|eta_rel| < 0.8)
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1).astype(np.float32)
    p4 *= mask[..., None]
    jet = jet_from_constituents(p4, mask)
    deta, dphi = deta_dphi_partstyle(p4, mask, jet)
    part = {"deta": deta, "dphi": dphi}
    return RawJets(p4, mask, part, jet, rng.integers(0, 3, b).astype(np.int64), "constructed")


class WithPID(PartFeatures):
    """part_kin plus a particle ID (as MPMv2 carries one): the int8 column of the cache; stored, never computed on
    read."""

    on_read = False

    def _compute(self, raw, n, state, rng):
        out = super()._compute(raw, n, state, rng)
        out["pid"] = (np.arange(n)[None, :] % 8).repeat(len(raw), 0)
        return out


PID_SET = WithPID("withpid", FEATURE_SETS["part_kin"].names, 4, {"names": FEATURE_SETS["part_kin"].names})


def _entry(tmp_path, fs, n, raw=None, chunks=2, source=None, on_read=None):
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

    on_read = fs.on_read if on_read is None else on_read
    return get_or_build(str(tmp_path / "cache"), source, fs.name, fs.key(), n, len(raw), build,
                        {"rows": [0, len(raw)]}, computed=fs if on_read else None)


@pytest.mark.parametrize("name,on_read", [(name, on_read) for name in ("part_kin", "hepjepa_rel", "mpmv1", "omnijet")
                                           for on_read in (True, False)] + [("withpid", False)])
def test_read_back_is_exact(tmp_path, name, on_read):
    """Stored, or computed on read from the source entry: either way the arrays compute() gave, bit for bit."""
    fs = PID_SET if name == "withpid" else FEATURE_SETS[name]
    raw = constructed_jets()
    want = fs.compute(raw, 4)
    e = _entry(tmp_path, fs, 4, raw, on_read=on_read)
    assert (e.nbytes()["features"] == 0) == on_read                   # computed on read: no feature arrays
    for rows in (np.arange(5), np.array([1, 2]), np.array([0, 3, 4]), np.array([4])):
        got = e.read(rows)
        assert set(got) == set(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k][rows]), (k, rows)


def test_which_sets_are_computed_on_read():
    """The cheap functions of the stored particles (four-momenta, deta, dphi, the jet and its axis) are computed on
    read; a set that needs a particle ID, impact parameters or a fitted state is stored."""
    on_read = sorted(n for n, fs in FEATURE_SETS.items() if fs.on_read)
    assert on_read == ["hepjepa", "hepjepa_rel", "mpmv1", "omnijet", "part_kin"]


def test_a_wide_spread_of_multiplicities_reads_back_exactly_on_read(tmp_path):
    """300 jets with 1 to 150 particles (more than N), converted in three chunks of different widths and read in
    shuffled and contiguous batches: the on-read entry equals compute() bit for bit."""
    rng = np.random.default_rng(5)
    raw = constructed_jets(np.clip(rng.poisson(40, 300), 1, 150), seed=3, m=150)
    for name in ("hepjepa", "mpmv1", "omnijet"):
        fs = FEATURE_SETS[name]
        want = fs.compute(raw, fs.num_particles)
        e = _entry(tmp_path, fs, fs.num_particles, raw, chunks=3)
        assert e.computed is fs
        for rows in (np.sort(rng.choice(300, 64, replace=False)), np.arange(100, 228)):
            got = e.read(rows)
            for k in want:
                assert np.array_equal(got[k], want[k][rows]), (name, k)


def test_byte_counts_of_a_constructed_jet_set(tmp_path):
    kept = np.minimum(COUNTS, 4).sum()                   # 14 particles of at most 4 per jet; the file holds 16
    n = len(COUNTS)
    e = _entry(tmp_path, PID_SET, 4)
    # offsets; p4, deta and dphi per particle; jet, axis and label (int8) per jet
    src = (n + 1) * 8 + COUNTS.sum() * (4 + 2) * 4 + n * (6 + 2) * 4 + n * 1
    assert e.nbytes() == {"features": (n + 1) * 8 + kept * 7 * 4 + kept * 1, "source": src}   # offsets, x, pid int8
    on_disk = sum(os.path.getsize(os.path.join(e.directory, f)) for f in os.listdir(e.directory) if f.endswith(".bin"))
    assert on_disk == e.nbytes()["features"]
    # OmniJet-alpha keeps particles after an angular cut. Stored: their positions in the source jet (uint8);
    # computed on read: nothing beyond the shared source entry
    o = _entry(tmp_path, FEATURE_SETS["omnijet"], 4, on_read=False)
    ko = int(FEATURE_SETS["omnijet"].compute(constructed_jets(), 4)["mask"].sum())
    assert ko < kept
    assert o.nbytes() == {"features": (n + 1) * 8 + ko * 3 * 4 + ko * 1, "source": src}
    assert o.source_directory == e.source_directory
    r = _entry(tmp_path, FEATURE_SETS["omnijet"], 4)
    assert r.nbytes() == {"features": 0, "source": src} and r.source_directory == e.source_directory
    assert os.listdir(r.directory) == ["meta.json"]
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
    class Lying(PartFeatures):      # drops every jet's second particle, yet claims to keep the first ones
        on_read = False

        def _compute(self, raw, n, state, rng):
            keep = raw.mask.copy()
            keep[:, 1] = False
            order = np.argsort(~keep, axis=1, kind="stable")
            keep, p4 = np.take_along_axis(keep, order, 1), np.take_along_axis(raw.p4, order[..., None], 1)
            return dict(x=np.zeros((len(raw), n, 7)), mask=keep[:, :n], p4=p4[:, :n])

    fs = Lying("lying", FEATURE_SETS["part_kin"].names, 4, {})
    with pytest.raises(RuntimeError, match="not the raw ones"):
        _entry(tmp_path, fs, 4)
    assert not [d for d in os.listdir(tmp_path / "cache") if not d.endswith(".lock")]   # nothing left behind


def test_old_version_entries_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", 2)
    old = _entry(tmp_path, FEATURE_SETS["part_kin"], 4)
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", 3)
    new = _entry(tmp_path, FEATURE_SETS["part_kin"], 4)
    assert new.directory != old.directory and not os.path.exists(old.directory)
    assert not os.path.exists(old.source_directory) and os.path.exists(new.source_directory)


def test_smallest_int():
    assert smallest_int(np.array([0, 9])) == np.int8 and smallest_int(np.array([0, 300])) == np.int16
    assert smallest_int(np.array([], dtype=np.int64)) == np.int8
