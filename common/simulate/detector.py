"""A fast parametrised detector response in the spirit of Delphes (jetclass_generation delphes_card.tcl; the
mapping from generator particles is our choice, not validated against Delphes).

Per generator particle (vectorised over the constituents of a jet):
- charged particles become tracks with a pT- and |eta|-dependent efficiency and a relative pT resolution; the impact
  parameters d0, dz come from the production vertex (straight line, no B-field curvature, §B5) smeared by
  separate resolutions sigma_d0(pT, eta) and sigma_z0(pT, eta) (z0 the larger), stored as d0err / dzerr;
- photons (and electrons whose track is lost) go to the ECAL, neutral hadrons (and charged hadrons whose track is
  lost) to the HCAL; deposits are summed in eta-phi cells, smeared with the calorimeter resolution (log-normal, as
  Delphes) and kept above an energy threshold and a significance E / sigma(E) (Delphes `EnergyMin`,
  `EnergySignificanceMin`); muons without a track are lost;
- the E-flow candidates keep Delphes' PID convention: tracks carry the generator PID, ECAL cells 22, HCAL cells 0.

`CMS` follows the JetClass Delphes card (§A1); `ATLAS` follows the Delphes ATLAS card [U: numbers from the public
Delphes ATLAS card as remembered, not re-checked here]. Both are "like", not the experiments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Array = np.ndarray


def _cms_track_eff(pt: Array, aeta: Array) -> Array:
    low = (pt > 0.1) & (pt <= 1.0)
    high = pt > 1.0
    return np.select([(aeta <= 1.5) & low, (aeta <= 1.5) & high, (aeta <= 2.5) & low, (aeta <= 2.5) & high],
                     [0.70, 0.95, 0.60, 0.85], 0.0)


def _cms_track_res(pt: Array, aeta: Array) -> Array:
    """Relative pT resolution, CMS card (formula copied as written in the JetClass card, §A1)."""
    return np.select([aeta <= 0.5, aeta <= 1.5],
                     [np.sqrt(0.06**2 + pt**2 * 1.3e-3**2), np.sqrt(0.10**2 + pt**2 * 1.7e-3**2)],
                     np.sqrt(0.25**2 + pt**2 * 3.1e-3**2))


def _cms_ecal_res(e: Array, aeta: Array) -> Array:
    stoch = np.sqrt(e**2 * 0.008**2 + e * 0.11**2 + 0.40**2)
    return np.select([aeta <= 1.5, aeta <= 2.5], [(1 + 0.64 * aeta**2) * stoch, (2.16 + 5.6 * (aeta - 2) ** 2) * stoch],
                     np.sqrt(e**2 * 0.107**2 + e * 2.08**2))


def _cms_hcal_res(e: Array, aeta: Array) -> Array:
    return np.where(aeta <= 3.0, np.sqrt(e**2 * 0.050**2 + e * 1.50**2), np.sqrt(e**2 * 0.130**2 + e * 2.70**2))


def _sin_theta(aeta: Array) -> Array:
    return 1.0 / np.cosh(aeta)


def _cms_ip_res(pt: Array, aeta: Array) -> tuple[Array, Array]:
    """sigma(d0), sigma(dz) in mm. d0: fit to the CMS TrackSmearing table, barrel ([U] fit). dz: [U] the shape of
    CMS' measured resolutions (CMS tracker performance, arXiv:1405.6569, the impact-parameter resolution vs eta
    figures: dz worse than d0 and growing steeply with |eta|), i.e. the textbook forms sigma(d0) = a + b / (pT sqrt(sin theta)) and sigma(z0) = (a' + b /
    (pT sqrt(sin theta))) / sin theta (added in quadrature; the multiple-scattering term b as for d0), with a' =
    0.03 mm read off that figure from memory, not re-checked; d0 kept eta-independent as the Delphes table fit."""
    pt = np.maximum(pt, 1e-3)
    s0 = np.sqrt(0.011**2 + (0.065 / pt) ** 2)
    st = _sin_theta(aeta)
    return s0, np.sqrt(0.030**2 + (0.065 / pt) ** 2 / st) / st


def _atlas_track_res(pt: Array, aeta: Array) -> Array:
    barrel = np.select([pt <= 1.0, pt <= 10.0, pt <= 200.0], [0.02, 0.01, 0.03], 0.05)
    endcap = np.select([pt <= 1.0, pt <= 10.0, pt <= 200.0], [0.03, 0.02, 0.04], 0.05)
    return np.where(aeta <= 1.5, barrel, endcap)


def _atlas_ecal_res(e: Array, aeta: Array) -> Array:
    return np.where(aeta <= 3.2, np.sqrt(e**2 * 0.0017**2 + e * 0.101**2), np.sqrt(e**2 * 0.0350**2 + e * 0.285**2))


def _atlas_hcal_res(e: Array, aeta: Array) -> Array:
    return np.select([aeta <= 1.7, aeta <= 3.2],
                     [np.sqrt(e**2 * 0.0302**2 + e * 0.5205**2 + 1.59**2), np.sqrt(e**2 * 0.0500**2 + e * 0.706**2)],
                     np.sqrt(e**2 * 0.05**2 + e * 1.0**2))


def _atlas_ip_res(pt: Array, aeta: Array) -> tuple[Array, Array]:
    """[U] ATLAS-like: slightly better d0, worse z0 than the CMS fit, both with the sin(theta) dependence of
    _cms_ip_res (d0 ~ 1 / sqrt(sin theta) in the multiple-scattering term, z0 a further 1 / sin theta)."""
    pt = np.maximum(pt, 1e-3)
    st = _sin_theta(aeta)
    return (np.sqrt(0.010**2 + (0.075 / pt) ** 2 / st),
            np.sqrt(0.050**2 + (0.110 / pt) ** 2 / st) / st)


@dataclass(frozen=True)
class Detector:
    name: str
    track_eff: Callable[[Array, Array], Array]
    track_res: Callable[[Array, Array], Array]
    ecal_res: Callable[[Array, Array], Array]
    hcal_res: Callable[[Array, Array], Array]
    ip_res: Callable[[Array, Array], tuple[Array, Array]]
    muon_eff: float = 0.99
    tracker_eta: float = 2.5
    calo_eta: float = 5.0
    ecal_cell: tuple[float, float] = (0.0174, 2 * np.pi / 360)  # (d eta, d phi)
    hcal_cell: tuple[float, float] = (0.087, 2 * np.pi / 72)
    ecal_emin: float = 0.5
    ecal_sig: float = 2.0
    hcal_emin: float = 1.0
    hcal_sig: float = 1.0


CMS = Detector("cms", _cms_track_eff, _cms_track_res, _cms_ecal_res, _cms_hcal_res, _cms_ip_res)
ATLAS = Detector("atlas", _cms_track_eff, _atlas_track_res, _atlas_ecal_res, _atlas_hcal_res, _atlas_ip_res,
                 muon_eff=0.98, tracker_eta=2.5, calo_eta=4.9, ecal_cell=(0.025, 2 * np.pi / 256),
                 hcal_cell=(0.1, 2 * np.pi / 64), ecal_emin=0.5, ecal_sig=1.0, hcal_emin=1.0, hcal_sig=1.0)
DETECTORS = {"cms": CMS, "atlas": ATLAS}

OUT_FIELDS = ("px", "py", "pz", "e", "pid", "charge", "d0", "d0err", "dz", "dzerr", "jet")


def get_detector(name: str) -> Detector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; expected one of {sorted(DETECTORS)}")
    return DETECTORS[name]


def impact_parameters(x, y, z, px, py, pz):
    """Straight-line transverse and longitudinal impact parameters (mm) w.r.t. the origin (§B5)."""
    pt = np.maximum(np.hypot(px, py), 1e-12)
    d0 = (x * py - y * px) / pt
    dz = z - (x * px + y * py) / pt * pz / pt
    return d0, dz


def _lognormal(rng, mean, sigma):
    """Log-normal smearing with the given mean and standard deviation (Delphes' calorimeter smearing)."""
    var = np.log1p((sigma / np.maximum(mean, 1e-12)) ** 2)
    return mean * np.exp(np.sqrt(var) * rng.standard_normal(mean.shape) - 0.5 * var)


def _calorimeter(e, eta, phi, jet, cell, res, emin, sig, rng):
    """Sum deposits per (jet, eta cell, phi cell), smear, threshold -> massless cells (px, py, pz, e) and their jet."""
    if len(e) == 0:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    ie = np.floor(eta / cell[0]).astype(np.int64) + 2048
    ip = np.floor((phi + np.pi) / cell[1]).astype(np.int64)
    keys, inv = np.unique((jet << 22) | (ie << 10) | ip, return_inverse=True)
    n = len(keys)
    # energy-weighted direction of the cell content
    ce = np.bincount(inv, e, n)
    ceta = np.bincount(inv, e * eta, n) / ce
    cphi = np.arctan2(np.bincount(inv, e * np.sin(phi), n), np.bincount(inv, e * np.cos(phi), n))
    sigma = res(ce, np.abs(ceta))
    es = _lognormal(rng, ce, sigma)
    keep = (es > emin) & (es > sig * sigma)
    es, ceta, cphi = es[keep], ceta[keep], cphi[keep]
    pt = es / np.cosh(ceta)
    return np.stack([pt * np.cos(cphi), pt * np.sin(cphi), pt * np.sinh(ceta), es], axis=1), (keys >> 22)[keep]


def detector_response(p: dict[str, Array], det: Detector, rng: np.random.Generator) -> dict[str, Array]:
    """Generator particles -> E-flow candidates, for many jets at once (calorimeter cells never mix jets).

    p: px, py, pz, e, pid (int), charge, x, y, z (production vertex, mm), optional jet (int index of the jet each
    particle belongs to). Returns OUT_FIELDS arrays plus "jet" (float64 except pid / jet int64), tracks first then ECAL
    then HCAL cells (unsorted).
    """
    jet = p.get("jet", np.zeros(len(p["px"]), np.int64))
    px, py, pz, e, pid, charge = p["px"], p["py"], p["pz"], p["e"], p["pid"], p["charge"]
    pt = np.hypot(px, py)
    aeta = np.abs(np.arcsinh(pz / np.maximum(pt, 1e-12)))
    apid = np.abs(pid)
    charged = charge != 0
    is_mu = apid == 13
    eff = np.where(is_mu, np.where((pt > 0.1) & (aeta <= det.tracker_eta), det.muon_eff, 0.0), det.track_eff(pt, aeta))
    tracked = charged & (rng.random(len(pt)) < eff)

    # tracks: smear pT at fixed direction and mass
    t = tracked
    scale = 1.0 + det.track_res(pt[t], aeta[t]) * rng.standard_normal(int(t.sum()))
    scale = np.maximum(scale, 0.05)  # a track never flips or vanishes [U]
    m2 = np.maximum(e[t] ** 2 - px[t] ** 2 - py[t] ** 2 - pz[t] ** 2, 0.0)
    tpx, tpy, tpz = px[t] * scale, py[t] * scale, pz[t] * scale
    te = np.sqrt(tpx**2 + tpy**2 + tpz**2 + m2)
    d0, dz = impact_parameters(p["x"][t], p["y"][t], p["z"][t], px[t], py[t], pz[t])
    s0, sz = det.ip_res(pt[t] * scale, aeta[t])
    d0 = d0 + s0 * rng.standard_normal(len(s0))
    dz = dz + sz * rng.standard_normal(len(sz))

    # calorimeters
    eta = np.arcsinh(pz / np.maximum(pt, 1e-12))
    phi = np.arctan2(py, px)
    in_calo = (aeta <= det.calo_eta) & ~t & ~is_mu & (pt > 0)
    to_ecal = in_calo & ((apid == 22) | (apid == 11))
    to_hcal = in_calo & ~to_ecal & ~((apid == 12) | (apid == 14) | (apid == 16))
    ecal, ecal_jet = _calorimeter(e[to_ecal], eta[to_ecal], phi[to_ecal], jet[to_ecal], det.ecal_cell, det.ecal_res,
                                  det.ecal_emin, det.ecal_sig, rng)
    hcal, hcal_jet = _calorimeter(e[to_hcal], eta[to_hcal], phi[to_hcal], jet[to_hcal], det.hcal_cell, det.hcal_res,
                                  det.hcal_emin, det.hcal_sig, rng)

    nt, ne, nh = int(t.sum()), len(ecal), len(hcal)
    zeros = np.zeros(ne + nh)
    return {
        "px": np.concatenate([tpx, ecal[:, 0], hcal[:, 0]]),
        "py": np.concatenate([tpy, ecal[:, 1], hcal[:, 1]]),
        "pz": np.concatenate([tpz, ecal[:, 2], hcal[:, 2]]),
        "e": np.concatenate([te, ecal[:, 3], hcal[:, 3]]),
        "pid": np.concatenate([pid[t], np.full(ne, 22), np.zeros(nh, np.int64)]).astype(np.int64),
        "charge": np.concatenate([charge[t], zeros]),
        "d0": np.concatenate([d0, zeros]),
        "d0err": np.concatenate([s0, zeros]),
        "dz": np.concatenate([dz, zeros]),
        "dzerr": np.concatenate([sz, zeros]),
        "jet": np.concatenate([jet[t], ecal_jet, hcal_jet]).astype(np.int64),
    }


def truth_level(p: dict[str, Array]) -> dict[str, Array]:
    """No detector: every visible particle is a candidate; impact parameters unsmeared (errors 0)."""
    d0, dz = impact_parameters(p["x"], p["y"], p["z"], p["px"], p["py"], p["pz"])
    charged = p["charge"] != 0
    z = np.zeros(len(d0))
    return {"px": p["px"], "py": p["py"], "pz": p["pz"], "e": p["e"], "pid": p["pid"].astype(np.int64),
            "charge": p["charge"], "d0": np.where(charged, d0, 0.0), "d0err": z, "dz": np.where(charged, dz, 0.0),
            "dzerr": z, "jet": p.get("jet", np.zeros(len(z), np.int64))}
