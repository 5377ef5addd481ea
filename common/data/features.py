"""Named per-particle feature sets (ParT, MPMv1, OmniJet-alpha, MPMv2, HEP-JEPA), computed vectorised from raw jets.

Every reader (JetClass, Top tagging, quark-gluon) produces a `RawJets`: padded particle arrays in pT-descending
order. A `FeatureSet` turns a `RawJets` into the arrays of a `JetBatch` (x, mask, p4, jet, label, pid). All constants
are the published ones (ParT arXiv:2202.03772 and particle_transformer data/JetClass/JetClass_full.yaml;
rodem-hep/mpm and mattcleigh/jetssl data loading; omnijet_alpha gabbro/data/loading.py).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from common.data.batch import JET_FIELDS


class DataError(ValueError):
    """Bad input data: the message names the file and what was expected."""


# Per-particle fields a reader may provide besides the four-vector (JetClass branch names, without "part_").
PID_FIELDS = ("charge", "isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")
IP_FIELDS = ("d0val", "d0err", "dzval", "dzerr")


@dataclass
class RawJets:
    """Padded jets straight from a file, particles sorted by decreasing pT.

    p4    (B, M, 4) float32 (px, py, pz, E) [GeV], zero at padding
    mask  (B, M)    bool
    part  name -> (B, M) float32: "deta", "dphi" (JetClass convention: sign(jet eta) flip, dphi in [-pi, pi)),
          and where the dataset has them PID_FIELDS and IP_FIELDS
    jet   (B, 6)    float32 in JET_FIELDS order
    label (B,)      int64
    source: file name for error messages
    """

    p4: np.ndarray
    mask: np.ndarray
    part: dict
    jet: np.ndarray
    label: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return self.p4.shape[0]

    def first(self, k: int) -> "RawJets":
        """The first k particles of every jet (views)."""
        return RawJets(self.p4[:, :k], self.mask[:, :k], {n: v[:, :k] for n, v in self.part.items()}, self.jet,
                       self.label, self.source)

    def select(self, rows) -> "RawJets":
        return RawJets(self.p4[rows], self.mask[rows], {k: v[rows] for k, v in self.part.items()}, self.jet[rows],
                       self.label[rows], self.source)

    @staticmethod
    def concatenate(chunks: list["RawJets"]) -> "RawJets":
        """Concatenate chunks with possibly different particle widths M (zero-pads to the widest)."""
        m = max(c.p4.shape[1] for c in chunks)

        def pad(a):
            w = [(0, 0)] * a.ndim
            w[1] = (0, m - a.shape[1])
            return np.pad(a, w)

        keys = chunks[0].part.keys()
        return RawJets(np.concatenate([pad(c.p4) for c in chunks]), np.concatenate([pad(c.mask) for c in chunks]),
                       {k: np.concatenate([pad(c.part[k]) for c in chunks]) for k in keys},
                       np.concatenate([c.jet for c in chunks]), np.concatenate([c.label for c in chunks]),
                       chunks[0].source)


@dataclass
class Particles:
    """The real particles of B jets, flat (P = counts.sum()) in jet order: the form the preprocessing cache stores once
    per source file (common/data/cache.py), from which a `ParticleFeatureSet` computes its features.

    p4     (P, 4) float32 (px, py, pz, E)
    part   name -> (P,) float32: the RawJets.part fields a feature set reads
    jet    (B, 6) float32 in JET_FIELDS order
    axis   (B, 2) float32 (eta, phi) of the summed constituent four-vector (jet_from_constituents of all the jet's
           particles: the MPMv1 / OmniJet-alpha reference axis)
    counts (B,)   int64 real particles per jet
    """

    p4: np.ndarray
    part: dict
    jet: np.ndarray
    axis: np.ndarray
    counts: np.ndarray

    @staticmethod
    def of(raw: RawJets, fields=()) -> "Particles":
        """The real particles of `raw` (its mask must put them first, as every reader does)."""
        m = raw.mask
        counts = m.sum(1).astype(np.int64)
        if not np.array_equal(m, np.arange(m.shape[1])[None, :] < counts[:, None]):
            raise DataError(f"{raw.source}: padding before a real particle; readers put real particles first")
        return Particles(raw.p4[m], {f: raw.part[f][m] for f in fields}, raw.jet,
                         jet_from_constituents(raw.p4, m)[:, 1:3], counts)

    @property
    def jet_of(self) -> np.ndarray:
        """(P,) the jet of each particle."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def first(self, n: int) -> tuple[np.ndarray | slice, np.ndarray]:
        """(the first n particles of every jet: their indices, or a slice of all when no jet has more; their counts
        per jet)."""
        kept = np.minimum(self.counts, n)
        if (kept == self.counts).all():
            return slice(0, len(self.p4)), kept
        start = np.cumsum(self.counts) - self.counts
        return np.repeat(start - (np.cumsum(kept) - kept), kept) + np.arange(int(kept.sum())), kept

    def pad(self, x: np.ndarray, take: np.ndarray, kept: np.ndarray, n: int, out: dict | None = None) -> dict:
        """Scatter the kept particles' features x (K, F) and four-momenta p4[take] into zero-padded (B, n) arrays
        (x, mask, p4), or into `out`'s (zeroed) arrays."""
        b = len(kept)
        if out is None:
            out = {"x": np.zeros((b, n, x.shape[1]), np.float32), "mask": np.zeros((b, n), bool),
                   "p4": np.zeros((b, n, 4), np.float32)}
        slot = padded_slots(kept, n)
        out["x"].reshape(b * n, -1)[slot] = x.astype(np.float32, copy=False)    # cast first: a faster scatter
        out["p4"].reshape(b * n, 4)[slot] = self.p4[take]
        np.less(np.arange(n)[None, :], kept[:, None], out=out["mask"])
        return out


def padded_slots(kept: np.ndarray, n: int) -> np.ndarray:
    """The row in the (B * n) padded layout of each of the kept.sum() particles, kept[j] of them in jet j, in order."""
    first = np.cumsum(kept) - kept
    return np.repeat(np.arange(0, len(kept) * n, n, dtype=np.int64) - first, kept) + np.arange(int(kept.sum()))


# ----------------------------------------------------------------------------------------------- kinematics helpers
def wrap_phi(dphi):
    """Map an angle difference to [-pi, pi)."""
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def _pt_eta_phi(p4):
    px, py, pz = p4[..., 0], p4[..., 1], p4[..., 2]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), 0.0))
    return pt, eta, np.arctan2(py, px)


def jet_from_constituents(p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Jet-level values (JET_FIELDS order) from the sum of the constituent four-vectors."""
    s = (p4.astype(np.float64) * mask[..., None]).sum(1)
    pt, eta, phi = _pt_eta_phi(s)
    m2 = s[:, 3] ** 2 - (s[:, :3] ** 2).sum(1)
    mass = np.sqrt(np.clip(m2, 0, None))
    return np.stack([pt, eta, phi, s[:, 3], mass, mask.sum(1)], 1).astype(np.float32)


def deta_dphi_partstyle(p4, mask, jet):
    """part_deta = (eta - eta_jet) * sign(eta_jet) (sign(0) -> +1), part_dphi wrapped (particle_transformer
    utils/convert_top_datasets.py)."""
    _, eta, phi = _pt_eta_phi(p4)
    sgn = np.where(jet[:, 1:2] >= 0, 1.0, -1.0)
    deta = ((eta - jet[:, 1:2]) * sgn * mask).astype(np.float32)
    dphi = (wrap_phi(phi - jet[:, 2:3]) * mask).astype(np.float32)
    return deta, dphi


def _relative_to_axis(p4, axis):
    """(pt, deta, dphi) of particles p4 (P, 4) relative to their jet's summed-constituent axis (P, 2) (eta, phi), in
    float64, no sign flip (OmniJet / MPMv1 convention)."""
    pt, eta, phi = _pt_eta_phi(p4.astype(np.float64))
    return pt, eta - axis[:, 0].astype(np.float64), wrap_phi(phi - axis[:, 1].astype(np.float64))


def _truncate(a, n):
    """Cut or zero-pad axis 1 to length n."""
    if a.shape[1] >= n:
        return a[:, :n]
    w = [(0, 0)] * a.ndim
    w[1] = (0, n - a.shape[1])
    return np.pad(a, w)


def _require(raw: RawJets, fields, set_name):
    missing = [f for f in fields if f not in raw.part]
    if missing:
        raise DataError(f"{raw.source}: feature set {set_name!r} needs per-particle {missing}, which this dataset "
                        f"does not provide (available: {sorted(raw.part)})")


# ------------------------------------------------------------------------------------------------- ParT (§A1)
# (subtract_by, multiply_by); x' = clip((x - a) * b, -5, 5); None = raw (no transform, no clipping).
PART_TRANSFORMS = {
    "part_pt_log": (1.7, 0.7),
    "part_e_log": (2.0, 0.7),
    "part_logptrel": (-4.7, 0.7),
    "part_logerel": (-4.7, 0.7),
    "part_deltaR": (0.2, 4.0),
    "part_charge": None, "part_isChargedHadron": None, "part_isNeutralHadron": None, "part_isPhoton": None,
    "part_isElectron": None, "part_isMuon": None,
    "part_d0": None,
    "part_d0err": "clip01",  # weaver entry [part_d0err, 0, 1, 0, 1]
    "part_dz": None,
    "part_dzerr": "clip01",
    "part_deta": None, "part_dphi": None,
}
PART_FULL = tuple(PART_TRANSFORMS)                                   # 17, JetClass_full.yaml order
PART_KIN = PART_FULL[:5] + ("part_deta", "part_dphi")                # 7
PART_KINPID = PART_FULL[:11] + ("part_deta", "part_dphi")            # 13
# relative to the jet only (no absolute pT or E): log pT/pT_jet, log E/E_jet, deltaR, deta, dphi. Rescaling every
# four-momentum of a jet (and the jet) by a constant leaves them unchanged.
PART_REL = PART_FULL[2:5] + ("part_deta", "part_dphi")              # 5
PART_RELFULL = PART_FULL[2:]                                         # 15: PART_REL + particle ID + impact params


def part_variables(p4: np.ndarray, part: dict, jet: np.ndarray) -> dict:
    """The untransformed ParT variables of particle_transformer data/JetClass/JetClass_full.yaml (only those `part`
    provides) of particles p4 (P, 4), part fields (P,), each with its jet's values jet (P, 6)."""
    px, py, e = p4[:, 0], p4[:, 1], p4[:, 3]
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = {
            "part_pt_log": np.log(pt),
            "part_e_log": np.log(e),
            "part_logptrel": np.log(pt / jet[:, 0]),
            "part_logerel": np.log(e / jet[:, 3]),
            "part_deltaR": np.hypot(part["deta"], part["dphi"]),
            "part_deta": part["deta"], "part_dphi": part["dphi"],
        }
    for f in PID_FIELDS:
        if f in part:
            v["part_" + f] = part[f]
    if "d0val" in part:
        v.update(part_d0=np.tanh(part["d0val"]), part_d0err=part["d0err"],
                 part_dz=np.tanh(part["dzval"]), part_dzerr=part["dzerr"])
    return v


def part_transform(name: str, x: np.ndarray) -> np.ndarray:
    t = PART_TRANSFORMS[name]
    if t is None:
        return x
    if t == "clip01":
        return np.clip(x, 0.0, 1.0)
    a, b = t
    return np.clip((x - a) * b, -5.0, 5.0)


# ------------------------------------------------------------------------------------------------- feature sets
@dataclass
class FeatureSet:
    """A named per-particle feature set. `compute(raw, num_particles, state)` -> dict(x, mask, p4, jet, label, pid)."""

    name: str
    names: tuple
    num_particles: int
    params: dict = field(default_factory=dict)
    needs_fit: bool = False     # mpmv2: a quantile transformer fitted on training data (see data.py)
    # per_batch draws inputs that depend on the batch's composition (a frozen backbone's outputs of a jet then change
    # from epoch to epoch: common/training/frozen_cache.py recomputes them)
    random_per_batch = False
    # computed from the preprocessing cache's source entry when read, never stored (ParticleFeatureSet)
    on_read = False

    def key(self) -> str:
        """Identifies the computation for the preprocessing cache (name + every parameter)."""
        return self.name + ":" + json.dumps(self.params, sort_keys=True)

    def compute(self, raw: RawJets, num_particles: int | None = None, state=None, rng=None) -> dict:
        n = num_particles or self.num_particles
        out = self._compute(raw, n, state, rng)
        x = out["x"].astype(np.float32)
        mask = out["mask"]
        x[~mask] = 0.0
        if not np.isfinite(x).all():
            raise DataError(f"{raw.source}: feature set {self.name!r} produced non-finite values")
        res = dict(x=x, mask=mask.astype(bool), p4=(out["p4"] * mask[..., None]).astype(np.float32),
                   jet=raw.jet.astype(np.float32), label=raw.label.astype(np.int64))
        if out.get("pid") is not None:
            res["pid"] = np.where(mask, out["pid"], 0).astype(np.int64)
        return res

    def source_positions(self, raw: RawJets, num_particles: int | None = None):
        """(B, N) position in the raw jet of each particle compute() keeps (valid where its mask is true), or None when
        they are the jet's first particles in order (the preprocessing cache reads their four-momenta from the raw
        particles it stores once per source file: common/data/cache.py)."""
        return None

    def per_batch(self, arrays: dict, idx: np.ndarray) -> dict:
        """Applied to every batch gathered from the cache (common.data.datasets.JetDataset); `idx` are the batch's jet
        numbers. The identity, except for feature sets that redraw noise per batch."""
        return arrays

    def inverse(self, x, mask) -> dict:
        raise NotImplementedError(f"feature set {self.name!r} has no inverse (only omnijet and mpmv1 do)")

    def _compute(self, raw, n, state, rng):  # pragma: no cover - abstract
        raise NotImplementedError


# Per-particle fields of RawJets.part the preprocessing cache stores in its source entry (common/data/cache.py): a
# ParticleFeatureSet that reads no others is computed from the source entry when read, and the cache stores none of
# its features.
SOURCE_FIELDS = ("deta", "dphi")


class ParticleFeatureSet(FeatureSet):
    """A feature set whose features are a function of each kept particle, its jet and its jet's axis (`Particles`):
    computed on the real particles only, and, when it reads only SOURCE_FIELDS and has no fitted state, computed from
    the cache's source entry when read instead of being stored (`on_read`)."""

    source_fields: tuple = ()

    @property
    def on_read(self) -> bool:
        return set(self.source_fields) <= set(SOURCE_FIELDS) and not self.needs_fit

    def from_particles(self, parts: Particles, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x (K, F) of the kept particles in jet order, their indices (K,) into parts (or a slice), kept particles
        per jet (B,)); at most n per jet."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _compute(self, raw, n, state, rng):
        _require(raw, self.source_fields, self.name)
        parts = Particles.of(raw, self.source_fields)
        return parts.pad(*self.from_particles(parts, n), n)


class PartFeatures(ParticleFeatureSet):
    """ParT kin / kinpid / full (particle_transformer data/JetClass/*.yaml), truncated to the hardest n particles,
    zero-padded."""

    @property
    def source_fields(self) -> tuple:
        fields = ["deta", "dphi"]
        if any(k[5:] in PID_FIELDS for k in self.names):
            fields += PID_FIELDS
        if "part_d0" in self.names:
            fields += IP_FIELDS
        return tuple(fields)

    def from_particles(self, parts, n):
        take, kept = parts.first(n)
        jet = np.repeat(parts.jet, kept, axis=0)                # each kept particle's jet
        var = part_variables(parts.p4[take], {f: v[take] for f, v in parts.part.items()}, jet)
        return np.stack([part_transform(name, var[name]) for name in self.names], -1), take, kept


class MPMv1Features(ParticleFeatureSet):
    """MPMv1 (rodem-hep/mpm src/datamodules/loading.py): (deta, dphi, log(1 + pT)) w.r.t. the summed-constituent axis;
    first 64 particles."""

    def from_particles(self, parts, n):
        take, kept = parts.first(n)
        pt, deta, dphi = _relative_to_axis(parts.p4[take], np.repeat(parts.axis, kept, axis=0))
        return np.stack([deta, dphi, np.log1p(pt)], -1), take, kept  # log_squash_pt = sign(x) log(|x| + 1), pT >= 0

    def inverse(self, x, mask):
        m = _float_mask(mask, x)
        return dict(pt=_expm1(x[..., 2]) * m, deta=x[..., 0] * m, dphi=x[..., 1] * m)


OMNIJET_CUT = 0.8      # keep -0.8 < eta_rel, phi_rel < 0.8 (strict) (OJ feature_dict)
OMNIJET_PT_SHIFT = 1.8
OMNIJET_ANGLE_SCALE = 3.0


class OmniJetFeatures(ParticleFeatureSet):
    """OmniJet-alpha (omnijet_alpha feature_dict): cut |eta_rel|, |phi_rel| < 0.8 -> drop -> (log pT - 1.8, 3 eta_rel,
    3 phi_rel)
    -> first 128 -> zero-pad. Relative to the sum of the constituent four-vectors (before the cut)."""

    def from_particles(self, parts, n):
        jet_of = parts.jet_of
        pt, deta, dphi = _relative_to_axis(parts.p4, np.repeat(parts.axis, parts.counts, axis=0))
        cut = np.nonzero((np.abs(deta) < OMNIJET_CUT) & (np.abs(dphi) < OMNIJET_CUT))[0]    # strict, in pT order
        passed = np.bincount(jet_of[cut], minlength=len(parts.counts))
        rank = np.arange(len(cut)) - np.repeat(np.cumsum(passed) - passed, passed)
        take = cut[rank < n]
        x = np.stack([np.log(pt[take]) - OMNIJET_PT_SHIFT, OMNIJET_ANGLE_SCALE * deta[take],
                      OMNIJET_ANGLE_SCALE * dphi[take]], -1)
        return x, take, np.minimum(passed, n)

    def source_positions(self, raw, num_particles=None):
        n = num_particles or self.num_particles
        parts = Particles.of(raw)
        _, take, kept = self.from_particles(parts, n)
        at = np.zeros((len(raw), n), np.int64)
        at.reshape(-1)[padded_slots(kept, n)] = take - np.repeat(np.cumsum(parts.counts) - parts.counts, kept)
        return at

    def inverse(self, x, mask):
        m = _float_mask(mask, x)
        return dict(pt=_exp(x[..., 0] + OMNIJET_PT_SHIFT) * m, deta=x[..., 1] / OMNIJET_ANGLE_SCALE * m,
                    dphi=x[..., 2] / OMNIJET_ANGLE_SCALE * m)


def _float_mask(mask, x):
    """Mask as x's float dtype; works for numpy arrays and torch tensors."""
    return mask.astype(x.dtype) if isinstance(x, np.ndarray) else mask.to(x.dtype)


def _exp(a):
    return a.exp() if hasattr(a, "exp") and not isinstance(a, np.ndarray) else np.exp(a)


def _expm1(a):
    return a.expm1() if hasattr(a, "expm1") and not isinstance(a, np.ndarray) else np.expm1(a)


# --------------------------------------------------------------------- MPMv2 (jetssl src/datamodules/preprocessing.py)
MPMV2_NAMES = ("part_pt", "part_deta", "part_dphi", "part_d0", "part_z0", "part_d0err", "part_z0err")
MPMV2_IP = slice(3, 7)          # the four impact-parameter columns
MPMV2_ANGLE_CLIP = 0.8
MPMV2_PID_NAMES = ("photon", "h-", "h0", "h+", "e-", "e+", "mu-", "mu+")
MPMV2_NEUTRAL = (0, 2)          # photon, h0: impact parameters replaced by N(0, 1) noise


def mpmv2_pid(part: dict) -> np.ndarray:
    """8-class particle ID: 0 photon, 1 h-, 2 h0, 3 h+, 4 e-, 5 e+, 6 mu-, 7 mu+ (MPMv2).
    Particles without a one-hot (e.g. Sigma+-) count as charged/neutral hadrons by their charge."""
    q = part["charge"]
    pos = q > 0
    neg = q < 0
    pid = np.where(neg, 1, np.where(pos, 3, 2))                       # hadrons by charge
    pid = np.where(part["isPhoton"] > 0, 0, pid)
    pid = np.where(part["isElectron"] > 0, np.where(pos, 5, 4), pid)
    pid = np.where(part["isMuon"] > 0, np.where(pos, 7, 6), pid)
    return pid.astype(np.int64)


def mpmv2_continuous(raw: RawJets) -> tuple[np.ndarray, np.ndarray]:
    """Raw 7 continuous features and the 8-class PID. d0, z0 lifetime-signed w.r.t. the jet axis (DIPS convention):
    positive when the track's point of closest approach lies on the jet side, i.e. for tracks from a vertex displaced
    along the jet. JetClass/Delphes store d0 = (x py - y px) / pT, the opposite sign of ATLAS' d0, so ATLAS'
    sign(sin(phi_jet - phi_trk) d0) becomes sign(sin(phi_trk - phi_jet) d0) here (as the MPMv2 code's 3-D cross
    product gives on JetClass); z0: sign((eta_jet - eta_trk) z0). Neutral IPs are NaN (ignored by the fit)."""
    _require(raw, PID_FIELDS + IP_FIELDS, "mpmv2")
    pt = np.hypot(raw.p4[..., 0], raw.p4[..., 1])
    deta, dphi = raw.part["deta"], raw.part["dphi"]
    eta_sign = np.where(raw.jet[:, 1:2] >= 0, 1.0, -1.0)          # undo the JetClass sign(jet eta) flip
    d0, z0 = raw.part["d0val"], raw.part["dzval"]
    d0s = np.abs(d0) * np.where(np.sin(dphi) * d0 >= 0, 1.0, -1.0)
    z0s = np.abs(z0) * np.where(-deta * eta_sign * z0 >= 0, 1.0, -1.0)
    x = np.stack([pt, np.clip(deta, -MPMV2_ANGLE_CLIP, MPMV2_ANGLE_CLIP), np.clip(dphi, -MPMV2_ANGLE_CLIP,
                  MPMV2_ANGLE_CLIP), d0s, z0s, raw.part["d0err"], raw.part["dzerr"]], -1).astype(np.float64)
    pid = mpmv2_pid(raw.part)
    neutral = np.isin(pid, MPMV2_NEUTRAL)
    x[..., MPMV2_IP] = np.where(neutral[..., None], np.nan, x[..., MPMV2_IP])
    return x, pid


def quantile_transformer(quantiles: np.ndarray, references: np.ndarray, where: str = "quantiles"):
    """A fitted QuantileTransformer(output_distribution="normal") rebuilt from its two arrays (what the preprocessing
    cache and a self-contained checkpoint store: plain arrays, never a pickle, so reading them cannot run code)."""
    from sklearn.preprocessing import QuantileTransformer

    quantiles, references = np.asarray(quantiles, np.float64), np.asarray(references, np.float64)
    if quantiles.ndim != 2 or references.shape != (quantiles.shape[0],):
        raise DataError(f"{where}: quantiles {quantiles.shape} and references {references.shape} do not match; "
                        "expected (n_quantiles, n_features) and (n_quantiles,)")
    qt = QuantileTransformer(n_quantiles=len(references), output_distribution="normal")
    qt.quantiles_, qt.references_ = quantiles, references
    qt.n_quantiles_, qt.n_features_in_ = len(references), quantiles.shape[1]
    return qt


def fit_mpmv2_quantiles(raws: list[RawJets], n_quantiles: int = 500, seed: int = 0):
    """Per-feature sklearn QuantileTransformer(output_distribution="normal") on real particles (jetssl
    preprocessing.py)."""
    from sklearn.preprocessing import QuantileTransformer

    rows = []
    for raw in raws:
        x, _ = mpmv2_continuous(raw)
        rows.append(x[raw.mask])
    rows = np.concatenate(rows)
    qt = QuantileTransformer(n_quantiles=min(n_quantiles, len(rows)), output_distribution="normal",
                             subsample=1_000_000, random_state=seed)
    return qt.fit(rows)


class MPMv2Features(FeatureSet):
    """MPMv2 (arXiv:2409.12589; jetssl preprocessing.py): 7 quantile-normalised continuous features + the 8-class PID
    in JetBatch.pid.
    `state` is the QuantileTransformer fitted on training data; `rng` draws the N(0, 1) noise for neutral IPs."""

    random_per_batch = True

    def _compute(self, raw, n, state, rng):
        if state is None:
            raise DataError("mpmv2 needs a fitted quantile transformer (data.py fits it on the training split)")
        x, pid = mpmv2_continuous(raw)
        x, pid, mask = _truncate(x, n), _truncate(pid, n), _truncate(raw.mask, n)
        b, m, f = x.shape
        flat = x.reshape(-1, f)
        real = mask.reshape(-1)
        out = np.zeros_like(flat)
        if real.any():
            out[real] = state.transform(flat[real])
        out = out.reshape(b, m, f)
        neutral = np.isin(pid, MPMV2_NEUTRAL) & mask
        rng = rng if rng is not None else np.random.default_rng(0)
        noise = rng.standard_normal((b, m, 4))
        out[..., MPMV2_IP] = np.where(neutral[..., None], noise, out[..., MPMV2_IP])
        return dict(x=out, mask=mask, p4=_truncate(raw.p4, n), pid=pid)

    def per_batch(self, arrays: dict, idx: np.ndarray) -> dict:
        """Fresh N(0, 1) noise in the neutral IPs of every batch, as the V2 code draws it each time a jet is loaded
        (preprocess in mattcleigh/jetssl src/datamodules/preprocessing.py); seeded by the batch's jet numbers, so a
        resumed run and a fixed evaluation batch see the same noise, while reshuffled batches see new noise."""
        if "pid" not in arrays:
            return arrays
        x, pid = arrays["x"], arrays["pid"]
        neutral = ((pid == MPMV2_NEUTRAL[0]) | (pid == MPMV2_NEUTRAL[1])) & arrays["mask"]
        digest = hashlib.blake2b(np.asarray(idx, dtype=np.int64).tobytes(), digest_size=16).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))   # a function of the batch's jet numbers
        x[neutral, MPMV2_IP] = rng.standard_normal((int(neutral.sum()), 4), dtype=np.float32)   # neutrals only
        return arrays


FEATURE_SETS: dict[str, FeatureSet] = {
    "part_kin": PartFeatures("part_kin", PART_KIN, 128, {"names": PART_KIN}),
    "part_kinpid": PartFeatures("part_kinpid", PART_KINPID, 128, {"names": PART_KINPID}),
    "part_full": PartFeatures("part_full", PART_FULL, 128, {"names": PART_FULL}),
    "mpmv1": MPMv1Features("mpmv1", ("part_deta", "part_dphi", "part_pt_log1p"), 64, {"axis": "constituent_sum"}),
    "omnijet": OmniJetFeatures("omnijet", ("part_pt", "part_etarel", "part_phirel"), 128,
                               {"cut": OMNIJET_CUT, "pt_shift": OMNIJET_PT_SHIFT, "scale": OMNIJET_ANGLE_SCALE}),
    "mpmv2": MPMv2Features("mpmv2", MPMV2_NAMES, 128, {"n_quantiles": 500, "clip": MPMV2_ANGLE_CLIP,
                                                        "ip_sign": "dips_delphes_d0"}, needs_fit=True),
    # HEP-JEPA: the ParT kin recipe, 128 particles (the paper's exact features are not published; our choice,
    # the common denominator of the three datasets).
    "hepjepa": PartFeatures("hepjepa", PART_KIN, 128, {"names": PART_KIN}),
    # HEP-JEPA without the jet-kinematics shortcut: part_pt_log and part_e_log give every particle its jet's pT and
    # eta (log E - log pT = log cosh eta), so a JEPA can predict its targets from one per-jet vector; these sets keep
    # only quantities relative to the jet. hepjepa_rel works on all three datasets (Top tagging and quark-gluon carry
    # four-vectors only); hepjepa_relfull adds particle ID and track impact parameters (JetClass only).
    "hepjepa_rel": PartFeatures("hepjepa_rel", PART_REL, 128, {"names": PART_REL}),
    "hepjepa_relfull": PartFeatures("hepjepa_relfull", PART_RELFULL, 128, {"names": PART_RELFULL}),
}


def get_feature_set(name: str) -> FeatureSet:
    if name not in FEATURE_SETS:
        raise DataError(f"unknown feature set {name!r}; expected one of {sorted(FEATURE_SETS)}")
    return FEATURE_SETS[name]


__all__ = ["DataError", "RawJets", "Particles", "FeatureSet", "ParticleFeatureSet", "FEATURE_SETS", "SOURCE_FIELDS",
           "get_feature_set", "JET_FIELDS", "PART_FULL", "PART_KIN", "PART_KINPID", "PART_REL", "PART_RELFULL",
           "PART_TRANSFORMS", "MPMV2_PID_NAMES", "jet_from_constituents", "deta_dphi_partstyle", "fit_mpmv2_quantiles",
           "quantile_transformer", "mpmv2_pid", "wrap_phi"]
