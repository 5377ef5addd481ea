"""Jet substructure observables on padded constituent arrays (numpy in, numpy out).

- jet four-vector = sum of the constituents (E-scheme, as Delphes/FastJet);
- N-subjettiness tau_N (Thaler, Van Tilburg, arXiv:1011.2268, Eq. 1-2) with beta = 1, normalised by sum(pT) * R0,
  from exclusive-kT axes (FastJet kt_algorithm, E-scheme, exclusive_jets_up_to(N)). Two definitions (NSUB_DEFINITIONS):
  "delphes" (default, used for the simulated JetClass tau branches): distances in (rapidity, phi), kt radius 10, so the
  beam distance never enters and exclusive_jets(1) is the whole jet; Delphes' AxisMode 4 adds one pass of axis
  minimisation on top of these axes [U: not done here, ratios move little];
  "omnijet": OmniJet-alpha's JetSubstructure (uhh-pd-ml/omnijet_alpha gabbro/metrics/jet_substructure.py): kt radius
  0.8 (kt_algorithm, R = 0.8, whose beam distance can remove subjets from the exclusive jets) and distances in
  (pseudorapidity, phi) (vector's deltaR);
- soft-drop mass (Larkoski, Marzani, Soyez, Thaler, arXiv:1402.2657, Eq. 2.3): C/A declustering of the jet, drop the
  softer branch while min(pT1, pT2) / (pT1 + pT2) <= z_cut (Delta_R / R0)^beta.

Padded arrays: p4 (B, N, 4) as (px, py, pz, E) in GeV, mask (B, N) bool (True = real particle).
"""
from __future__ import annotations

import warnings

import numpy as np

R0_NSUB = 0.8  # normalisation radius of the N-subjettiness measure (Delphes FatJet: R = 0.8)
# kt clustering radius of the axes and the longitudinal coordinate of the distances, per definition (module docstring)
NSUB_DEFINITIONS = {"delphes": {"kt_radius": 10.0, "distance": "rapidity"},
                    "omnijet": {"kt_radius": 0.8, "distance": "pseudorapidity"}}


def ptetaphi_to_p4(pt, eta, phi, mass=0.0) -> np.ndarray:
    """(pt, eta, phi, mass) -> (..., 4) array of (px, py, pz, E)."""
    pt, eta, phi, mass = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi, mass))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return np.stack(np.broadcast_arrays(px, py, pz, e), axis=-1)


def _kinematics(p4: np.ndarray, distance: str = "rapidity"):
    """pt, rapidity (or pseudorapidity) and phi of (..., 4) four-vectors (0 where undefined, e.g. padding)."""
    px, py, pz, e = (p4[..., i] for i in range(4))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        if distance == "rapidity":
            y = 0.5 * np.log((e + pz) / (e - pz))
        elif distance == "pseudorapidity":
            y = np.arcsinh(pz / pt)
        else:
            raise ValueError(f"distance = {distance!r}; expected rapidity or pseudorapidity")
    y = np.where(np.isfinite(y), y, 0.0)
    return pt, y, np.arctan2(py, px)


def _dphi(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def jet_p4(p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], p4, 0.0).sum(axis=1)


def _awkward_jets(p4: np.ndarray, mask: np.ndarray):
    import awkward as ak
    import vector

    vector.register_awkward()
    flat = p4[mask].astype(np.float64)
    rec = ak.zip({"px": flat[:, 0], "py": flat[:, 1], "pz": flat[:, 2], "E": flat[:, 3]}, with_name="Momentum4D")
    return ak.unflatten(rec, mask.sum(axis=1))


def _kt_axes_numpy(p4: np.ndarray, mask: np.ndarray, n_max: int, kt_radius: float):
    """kt_axes through fastjet's compiled multi-event interface on flat numpy columns (no awkward arrays: their
    per-call cost was most of the N-subjettiness time for a few hundred jets). None if that interface is missing."""
    import fastjet

    multi = getattr(getattr(fastjet, "_ext", None), "interfacemulti", None)
    if multi is None:
        return None
    flat = p4[mask].astype(np.float64)
    stops = np.cumsum(mask.sum(axis=1)).astype(np.int64)
    starts = np.concatenate([[0], stops[:-1]]).astype(np.int64)
    cols = [np.ascontiguousarray(flat[:, i]) for i in range(4)]
    res = multi(*cols, starts, stops, fastjet.JetDefinition(fastjet.kt_algorithm, kt_radius))
    B, out = p4.shape[0], []
    for n in range(1, n_max + 1):
        *mom, offsets = res.to_numpy_exclusive_njet_up_to(n)
        offsets = np.asarray(offsets, np.int64)
        counts = np.diff(offsets)
        rows = np.repeat(np.arange(B), counts)
        arr = np.zeros((B, n, 4))
        arr[rows, np.arange(offsets[-1] - offsets[0]) - np.repeat(offsets[:-1] - offsets[0], counts)] = \
            np.stack(mom, axis=1)
        out.append(arr)
    return out


def kt_axes(p4: np.ndarray, mask: np.ndarray, n_max: int = 4, kt_radius: float = 10.0) -> list[np.ndarray]:
    """Exclusive-kT axes for N = 1..n_max: list of (B, N, 4) arrays, zero where a jet has fewer than N particles (or,
    for a kt_radius below the jet size, where subjets merged with the beam before N jets were left)."""
    import awkward as ak
    import fastjet

    B = p4.shape[0]
    out = [np.zeros((B, n, 4)) for n in range(1, n_max + 1)]
    nonempty = mask.any(axis=1)
    if not nonempty.any():
        return out
    _quiet_fastjet_banner()
    # R only sets the beam distance, which exclusive clustering with a fixed N never reaches for R >> jet size.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastjet warns about exclusive jets even for kt
        fast = _kt_axes_numpy(p4[nonempty], mask[nonempty], n_max, kt_radius)
        if fast is not None:
            for o, f in zip(out, fast):
                o[nonempty] = f
            return out
        jets = _awkward_jets(p4[nonempty], mask[nonempty])
        cs = fastjet.ClusterSequence(jets, fastjet.JetDefinition(fastjet.kt_algorithm, kt_radius))
        for n in range(1, n_max + 1):
            axes = cs.exclusive_jets_up_to(n)
            padded = ak.fill_none(ak.pad_none(axes, n, clip=True), {"px": 0.0, "py": 0.0, "pz": 0.0, "E": 0.0})
            arr = np.stack([ak.to_numpy(padded[f]) for f in ("px", "py", "pz", "E")], axis=-1)
            out[n - 1][nonempty] = arr
    return out


def nsubjettiness(p4: np.ndarray, mask: np.ndarray, n_max: int = 4, beta: float = 1.0, r0: float = R0_NSUB,
                  definition: str = "delphes") -> np.ndarray:
    """tau_1 .. tau_nmax, shape (B, n_max); tau_N = sum_i pT_i min_k dR_ik^beta / (sum_i pT_i r0^beta), with the axes
    and distances of `definition` (a key of NSUB_DEFINITIONS)."""
    if definition not in NSUB_DEFINITIONS:
        raise ValueError(f"N-subjettiness definition {definition!r}; expected one of {', '.join(NSUB_DEFINITIONS)}")
    kt_radius, distance = NSUB_DEFINITIONS[definition]["kt_radius"], NSUB_DEFINITIONS[definition]["distance"]
    pt, y, phi = _kinematics(p4, distance)
    norm = np.where(mask, pt, 0.0).sum(axis=1) * r0**beta
    taus = np.zeros((p4.shape[0], n_max))
    jet = np.nonzero(mask)[0]  # distances on real particles only (padding is most of a (B, N) array)
    yr, phir = y[mask][:, None], phi[mask][:, None]
    for n, axes in enumerate(kt_axes(p4, mask, n_max, kt_radius), start=1):
        _, ay, aphi = _kinematics(axes, distance)
        dr2 = (yr - ay[jet]) ** 2 + _dphi(phir, aphi[jet]) ** 2
        dr2 = np.where(axes[jet, :, 3] > 0, dr2, np.inf)  # missing axes (jet with < N particles)
        dmin = np.sqrt(dr2.min(axis=1)) ** beta
        terms = np.zeros(mask.shape)  # back to (B, N) so that the per-jet sum runs in the same order as before
        terms[mask] = pt[mask] * np.where(np.isfinite(dmin), dmin, 0.0)
        num = terms.sum(axis=1)
        taus[:, n - 1] = np.divide(num, norm, out=np.zeros_like(num), where=norm > 0)
    return taus


_BANNER_DONE = False


def _quiet_fastjet_banner() -> None:
    """FastJet prints its banner to stdout (from C++) on the first clustering; print it once into /dev/null."""
    global _BANNER_DONE
    if _BANNER_DONE:
        return
    import os
    import sys

    import fastjet

    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        fastjet.ClusterSequence([fastjet.PseudoJet(1.0, 0.0, 0.0, 1.0)],
                                fastjet.JetDefinition(fastjet.kt_algorithm, 0.4))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        _BANNER_DONE = True


def _softdrop_one(p, jetdef, zcut, beta, r0, new_pseudojet):
    import fastjet

    # raw SWIG PseudoJets: the proxy class' Python __init__ cost more than the clustering itself
    cs = fastjet._swig.ClusterSequence([new_pseudojet(a, b, c, d) for a, b, c, d in p.tolist()], jetdef)
    j = cs.exclusive_jets(1)[0]
    p1, p2 = fastjet.PseudoJet(), fastjet.PseudoJet()
    while j.has_parents(p1, p2):
        pt1, pt2 = p1.pt(), p2.pt()
        cut = zcut * (p1.delta_R(p2) / r0) ** beta if beta != 0 else zcut
        if min(pt1, pt2) / (pt1 + pt2) > cut:
            break
        j = p1 if pt1 >= pt2 else p2
        p1, p2 = fastjet.PseudoJet(), fastjet.PseudoJet()
    return j.m() if j.m2() > 0 else 0.0


def softdrop_mass(p4: np.ndarray, mask: np.ndarray, zcut: float = 0.1, beta: float = 0.0, r0: float = 0.8) -> np.ndarray:
    """Soft-drop groomed mass per jet (B,); C/A reclustering of all constituents into one jet, then declustering."""
    import fastjet

    _quiet_fastjet_banner()
    new_pseudojet = getattr(getattr(fastjet._swig, "_fastjet_swig", None), "new_PseudoJet", fastjet.PseudoJet)
    jetdef = fastjet.JetDefinition(fastjet.cambridge_algorithm, 10.0)
    out = np.zeros(p4.shape[0])
    for b in range(p4.shape[0]):
        p = p4[b][mask[b]]
        if len(p):
            out[b] = _softdrop_one(p, jetdef, zcut, beta, r0, new_pseudojet)
    return out


def jet_observables(p4: np.ndarray, mask: np.ndarray, *, n_tau: int = 4,
                    nsub_definition: str = "delphes") -> dict[str, np.ndarray]:
    """pt, eta, phi, energy, mass, nparticles, tau1..tau{n_tau}, tau21, tau32 for each jet (float64 arrays);
    nsub_definition: the N-subjettiness definition (NSUB_DEFINITIONS)."""
    p4 = np.asarray(p4, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    j = jet_p4(p4, mask)
    pt = np.hypot(j[:, 0], j[:, 1])
    p = np.sqrt(pt**2 + j[:, 2] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(j[:, 2] / np.where(pt > 0, pt, 1.0)), 0.0)
    out = dict(pt=pt, eta=eta, phi=np.arctan2(j[:, 1], j[:, 0]), energy=j[:, 3],
               mass=np.sqrt(np.clip(j[:, 3] ** 2 - p**2, 0.0, None)), nparticles=mask.sum(axis=1).astype(np.float64))
    taus = nsubjettiness(p4, mask, n_max=max(n_tau, 3), definition=nsub_definition)
    for n in range(1, n_tau + 1):
        out[f"tau{n}"] = taus[:, n - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["tau21"] = np.where(taus[:, 0] > 0, taus[:, 1] / taus[:, 0], 0.0)
        out["tau32"] = np.where(taus[:, 1] > 0, taus[:, 2] / taus[:, 1], 0.0)
    return out
