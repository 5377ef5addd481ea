"""Event loop: Pythia 8 events -> anti-kT jets -> detector response -> truth matching -> jet records.

Speed (Pythia itself is the floor, ~5-10 ms per event at 13 TeV with MPI); what we add is kept small by:
- Pythia runs with no Python UserHooks. A parton-level veto of the signal events in which no resonance can give a
  matched jet (0-7 % of events) would only save their hadron level (10-20 % of an event): at most ~1 % of Pythia's
  time, and a Python hook costs about as much at every event (a copy of the event record into Python and the
  C++ -> Python user-hook checks: 0-1 %). `python -m bench.bench_simulate --veto-study` measures both per class
  (BENCHMARKS.md). Without a hook the code is simpler and Pythia's random stream is ours alone, so the benchmark
  replays exactly our events in bare Pythia. Unmatchable events are still recognised after `next()`
  (matching.could_match) and skip the clustering.
- Jets are found in C++ by Pythia's SlowJet, which runs fjcore (FastJet's anti-kT), on the visible final-state
  particles within the reach of a selected jet (|eta| < 2.3 + R + 0.2). Only the constituents of candidate jets
  (pT above 85 % of the cut; for signal classes also truth-matched on the generator axis with a +-0.1 margin on R)
  are copied to numpy; candidates from several events go through the detector response together.
- [U] The detector is thus applied to the constituents of generator-level jets rather than to the whole event before
  clustering as in Delphes: particles at the cone edge can differ; the jet pT, mass and substructure are the same to a
  good approximation, and we avoid copying ~1000 particles per event into Python (which would cost about as much as
  Pythia's hadronisation).
Each stage's CPU time is kept in `JetGenerator.cpu` (bench/bench_simulate.py prints the breakdown).
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from .detector import detector_response, get_detector, truth_level
from .matching import could_match, find_resonances, match_jet
from .processes import LONG_LIVED, QCD_CODE, QUIET, Process, phase_space


@dataclass
class GenConfig:
    """What one generator produces. `detector=None` keeps generator-level particles (quark-gluon dataset)."""

    process: Process
    ecm: float = 13000.0
    mpi: bool = True
    jet_r: float = 0.8
    pt_min: float = 500.0
    pt_max: float = 1000.0
    eta_max: float = 2.0
    use_rapidity: bool = False  # |y| instead of |eta| cut (quark-gluon)
    detector: str | None = "cms"
    flat_pt: bool = True
    pthat_min: float | None = None
    leading_only: bool = False
    extra_settings: list[str] = field(default_factory=list)

    @property
    def is_qcd(self) -> bool:
        return self.process.codes in ((QCD_CODE,), (0,), (1,))

    def pythia_settings(self) -> list[list[str]]:
        """Pythia settings of each instance the generator alternates (two for charge-conjugate W decays)."""
        base = [f"Beams:eCM = {self.ecm:g}", f"PartonLevel:MPI = {'on' if self.mpi else 'off'}"]
        base += phase_space(self.pt_min, self.pt_max, flat=self.flat_pt, pthat_min=self.pthat_min)
        base += self.extra_settings
        return [base + s for s in [self.process.settings] + ([self.process.conjugate] if self.process.conjugate else [])]


def derive_seed(*parts) -> int:
    """A Pythia seed in [1, 900000000) from (seed, dataset, class, file index, ...): stable across runs and machines."""
    return zlib.crc32("/".join(map(str, parts)).encode()) % 899_999_999 + 1


_BANNER_SHOWN = False


def _quiet_fjcore(slowjet, event) -> None:
    """fjcore prints its banner (to stdout, from C++) on the first clustering of a process; run that one silently."""
    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        return
    import sys

    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        slowjet.analyze(event)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        _BANNER_SHOWN = True


def make_pythia(settings: list[str], seed: int, hooks=None):
    """An initialised Pythia with our quiet and long-lived-particle settings. `hooks`: a pythia8mc.UserHooks attached
    before init and kept alive by the caller (the generator attaches none; bench_simulate measures what one costs)."""
    import pythia8mc as pythia8

    py = pythia8.Pythia("", False)
    for s in QUIET + LONG_LIVED + settings + ["Random:setSeed = on", f"Random:seed = {seed}"]:
        if not py.readString(s):
            raise ValueError(f"Pythia rejected the setting {s!r}")
    if hooks is not None:
        py.setUserHooksPtr(hooks)
    if not py.init():
        raise RuntimeError(f"Pythia initialisation failed for settings {settings}")
    return py


@dataclass
class Jet:
    """One selected jet: E-flow candidates sorted by decreasing pT, jet kinematics, truth."""

    p: dict  # px py pz e pid charge d0 d0err dz dzerr (float32 / pid int32), pT-descending
    pt: float
    eta: float
    phi: float
    energy: float
    code: int
    truth: tuple  # (pt, eta, phi, pid, px, py, pz, e) of the matched resonance, zeros for QCD


class _PerSpecies(dict):
    """PDG id -> a property from Pythia's particle table, filled on first use (a few dozen final-state species)."""

    def __init__(self, lookup):
        super().__init__()
        self._lookup = lookup

    def __missing__(self, pid):
        v = self[pid] = self._lookup(pid)
        return v


def _pole_mass(particle_data):
    """m0 of a species without width (all its particles have m = m0); NaN for one with a width (a rare final-state
    resonance such as the Lambda_c(2595), whose particles _particles reads E of one by one)."""

    def m0(pid):
        return particle_data.m0(pid) if particle_data.mWidth(pid) == 0 else float("nan")

    return m0


STAGES = ("pythia", "truth", "clustering", "copy", "detector")
PROMPT_MM = 1e-6  # production time (mm/c) below which a track's vertex is taken at the origin (_particles)


class JetGenerator:
    """Yields `Jet`s from one (or two, alternated: charge-conjugate W decays) Pythia instances.

    `cpu` holds the CPU seconds of each stage (STAGES: Pythia's `next()`, finding the resonances, clustering with the
    generator-level pre-selection, copying constituents out of the event record, detector response with matching and
    the jet records); `events[i]` counts the events of Pythia instance i."""

    def __init__(self, cfg: GenConfig, seed: int):
        import pythia8mc as pythia8

        self.cfg = cfg
        self.pythias = [make_pythia(s, derive_seed(seed, k)) for k, s in enumerate(cfg.pythia_settings())]
        pd = self.pythias[0].particleData
        self.charge, self.mass = _PerSpecies(pd.charge), _PerSpecies(_pole_mass(pd))
        self.rng = np.random.default_rng(seed)
        self.det = get_detector(cfg.detector) if cfg.detector else None
        margin = 0.85 if self.det else 1.0  # detector-level jets are a few per cent softer than generator jets
        self.pre_pt_min, self.pre_pt_max = margin * cfg.pt_min, cfg.pt_max / margin
        self.pre_eta_max = cfg.eta_max + (0.3 if self.det else 0.0)
        # anti-kT (power -1), R, pTjetMin, particles with |eta| < eta_max(jet) + R + 0.2 (skipping the forward region
        # halves the clustering time; constituents lie within R of the axis in rapidity, and the cut is in
        # pseudorapidity, so only a very soft massive hadron at the edge of the most forward jets, whose |eta| exceeds
        # its |y| by more than the margin, can be lost), visible final state (select 2), particle masses kept
        # (massSet 2), no hook, fjcore on.
        self.slowjet = pythia8.SlowJet(-1, cfg.jet_r, self.pre_pt_min, self.pre_eta_max + cfg.jet_r + 0.2, 2, 2, None,
                                       True, True)
        _quiet_fjcore(self.slowjet, pythia8.Event())
        self.events = [0] * len(self.pythias)
        self.n_events = self.n_jets = 0
        self.n_unmatchable = 0  # signal events in which no resonance can give a matched jet (not clustered)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.max_events = None
        self.batch = 32  # candidate jets per detector call
        self._particle_cls = pythia8.Particle

    @property
    def t_pythia(self) -> float:
        """CPU seconds inside Pythia's next()."""
        return self.cpu["pythia"]

    def _next_event(self, i: int) -> bool:
        if self.max_events is not None and self.n_events >= self.max_events:
            raise RuntimeError(f"{self.cfg.process.name}: only {self.n_jets} jets after {self.n_events} events; "
                               "the selection accepts (almost) nothing")
        py = self.pythias[i]
        t0 = time.process_time()
        ok = py.next()
        self.cpu["pythia"] += time.process_time() - t0
        self.n_events += 1
        self.events[i] += 1
        if not ok:
            return False
        if self.cfg.process.extra.get("veto_bc") and any(
                py.process[k].idAbs() in (4, 5) for k in range(py.process.size()) if py.process[k].status() == 23):
            return False  # quark-gluon "no bc" variant: outgoing c/b quarks vetoed (§B6)
        return True

    def __iter__(self):
        """Jets in a deterministic order. Candidate jets are collected over several events and passed through the
        detector together (numpy on thousands of particles instead of one jet at a time)."""
        cfg, k, pending = self.cfg, 0, []
        while True:
            i = k % len(self.pythias)
            k += 1
            if not self._next_event(i):
                continue
            ev = self.pythias[i].event
            res = []
            if not cfg.is_qcd:
                t0 = time.process_time()
                res = find_resonances(ev)
                matchable = any(could_match(r, cfg.process.codes, cfg.pt_min, cfg.jet_r) for r in res)
                self.cpu["truth"] += time.process_time() - t0
                if not matchable:
                    self.n_unmatchable += 1
                    continue
            pending += self._candidates(ev, res)
            if len(pending) >= self.batch:
                t0 = time.process_time()
                jets = self._build(pending)
                self.cpu["detector"] += time.process_time() - t0
                pending = []
                yield from jets

    def _candidates(self, ev, res) -> list[tuple[np.ndarray, list]]:
        """Generator-level jets that may pass after the detector: (particle rows, resonances) each."""
        cfg, sj, cpu = self.cfg, self.slowjet, self.cpu
        t0 = time.process_time()
        if not sj.analyze(ev):
            cpu["clustering"] += time.process_time() - t0
            return []
        jets = sorted(((sj.pT(j), j) for j in range(sj.sizeJet())), key=lambda t: -t[0])
        if cfg.leading_only:
            jets = jets[:1]
        keep, codes, radii = [], cfg.process.codes, (cfg.jet_r - 0.1, cfg.jet_r + 0.1)
        for pt, j in jets:
            if pt > self.pre_pt_max or abs(sj.y(j)) > self.pre_eta_max:
                continue
            if not cfg.is_qcd:  # [U] truth pre-match on the generator jet axis with a +-0.1 margin on R
                p = sj.p(j)
                eta, phi = p.eta(), p.phi()
                if not any(r.code([d < rr for d in dists]) in codes
                           for r in res for dists in (r.distances(eta, phi),) for rr in radii):
                    continue
            keep.append(j)
        t1 = time.process_time()
        cpu["clustering"] += t1 - t0
        out = [(self._particles(ev, sj.constituents(j)), res) for j in keep]
        cpu["copy"] += time.process_time() - t1
        return out

    def _particles(self, ev, idx) -> np.ndarray:
        """(n, 9) rows px, py, pz, E, charge, x, y, z (production vertex, mm), id of the listed record entries.

        One column at a time through the unbound accessors (`map` calls them from C, no Python loop body). The charge
        comes from the PDG id, and so does the mass: final-state species almost all have no width, so E =
        sqrt(p^2 + m0^2) (equal to Pythia's E to ~1e-12, the same in the float32 output); E is read for the rare
        ones with a width. The production vertex only enters the impact parameters of tracks, and
        is read only for charged particles produced at t > PROMPT_MM: the primary vertex sits at the origin and
        nothing moves faster than light, so |x|, |y|, |z| <= t, and an earlier vertex (primary, or prompt decays) is
        kept at 0, less than PROMPT_MM from the truth and far below the ~0.01 mm impact-parameter resolution."""
        P = self._particle_cls
        qs = list(map(ev.__getitem__, idx))
        n = len(qs)
        rows = np.zeros((n, 9))
        for col, f in enumerate((P.px, P.py, P.pz)):
            rows[:, col] = np.fromiter(map(f, qs), np.float64, n)
        ids = list(map(P.id, qs))
        rows[:, 8] = ids
        rows[:, 4] = np.fromiter(map(self.charge.__getitem__, ids), np.float64, n)
        m = np.fromiter(map(self.mass.__getitem__, ids), np.float64, n)
        rows[:, 3] = np.sqrt(rows[:, 0] ** 2 + rows[:, 1] ** 2 + rows[:, 2] ** 2 + m**2)
        for i in np.flatnonzero(np.isnan(m)):  # species with a width: E as Pythia has it
            rows[i, 3] = qs[i].e()
        ch = np.flatnonzero(rows[:, 4])
        if len(ch):
            cq = [qs[i] for i in ch]
            vtx = ch[np.fromiter(map(P.tProd, cq), np.float64, len(cq)) > PROMPT_MM]
            if len(vtx):
                vq = [qs[i] for i in vtx]
                for col, f in ((5, P.xProd), (6, P.yProd), (7, P.zProd)):
                    rows[vtx, col] = np.fromiter(map(f, vq), np.float64, len(vq))
        return rows

    def _build(self, cands) -> list[Jet]:
        cfg = self.cfg
        rows = np.concatenate([c[0] for c in cands])
        counts = np.array([len(c[0]) for c in cands])
        nj = len(cands)
        p = dict(px=rows[:, 0], py=rows[:, 1], pz=rows[:, 2], e=rows[:, 3], charge=rows[:, 4], x=rows[:, 5],
                 y=rows[:, 6], z=rows[:, 7], pid=rows[:, 8].astype(np.int64), jet=np.repeat(np.arange(nj), counts))
        c = detector_response(p, self.det, self.rng) if self.det else truth_level(p)
        # JetClass constituent filter (makeNtuples): drop |pz| > 10000, |eta| > 5, pT <= 0; then sort by pT per jet
        cpt = np.hypot(c["px"], c["py"])
        with np.errstate(divide="ignore", invalid="ignore"):
            ceta = np.arcsinh(c["pz"] / cpt)
        keep = (np.abs(c["pz"]) <= 1e4) & (cpt > 0) & (np.abs(ceta) <= 5)
        order = np.flatnonzero(keep)[np.lexsort((-cpt[keep], c["jet"][keep]))]
        c = {key: v[order] for key, v in c.items()}
        jet = c.pop("jet")
        n = np.bincount(jet, minlength=nj)
        px, py, pz, e = (np.bincount(jet, c[k], nj) for k in ("px", "py", "pz", "e"))
        pt = np.hypot(px, py)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(pz / pt)
            y = 0.5 * np.log((e + pz) / (e - pz))
        phi = np.arctan2(py, px)
        ok = (n > 0) & (pt > cfg.pt_min) & (pt < cfg.pt_max) & (np.abs(y if cfg.use_rapidity else eta) < cfg.eta_max)
        start = np.concatenate([[0], np.cumsum(n)])
        kept = []  # (candidate, code, resonance) of the selected jets
        for j in np.flatnonzero(ok):
            if cfg.is_qcd:
                kept.append((j, cfg.process.codes[0], None))
                continue
            code, r = match_jet(cands[j][1], eta[j], phi[j], cfg.jet_r)
            if code in cfg.process.codes:  # signal samples keep only jets with the sample's own label (§A1)
                kept.append((j, code, r))
        # the selected jets' particles, once, in float32 as in the output formats (a 100k-jet file stays ~0.3 GB in
        # memory); each jet keeps views into them
        rows = np.concatenate([np.arange(start[j], start[j + 1]) for j, _, _ in kept]) if kept else np.arange(0)
        c = {k: v[rows].astype(np.int32 if k == "pid" else np.float32) for k, v in c.items()}
        bounds = np.concatenate([[0], np.cumsum([n[j] for j, _, _ in kept])]).astype(np.int64)
        out = []
        for (j, code, r), a, b in zip(kept, bounds[:-1], bounds[1:]):
            truth = (r.pt, r.eta, r.phi, float(r.pid), r.px, r.py, r.pz, r.e) if r is not None else (0.0,) * 8
            out.append(Jet({k: v[a:b] for k, v in c.items()},
                           float(pt[j]), float(eta[j]), float(phi[j]), float(e[j]), int(code), truth))
        self.n_jets += len(out)
        return out


def generate(cfg: GenConfig, seed: int, n_jets: int, progress=None, max_events: int | None = None
             ) -> tuple[list[Jet], dict]:
    """Generate exactly n_jets jets; `progress(k)` is called with the number of new jets now and then."""
    gen = JetGenerator(cfg, seed)
    gen.max_events = max_events
    jets, last = [], 0
    for jet in gen:
        jets.append(jet)
        if progress is not None and len(jets) - last >= 20:
            progress(len(jets) - last)
            last = len(jets)
        if len(jets) >= n_jets:
            break
    if progress is not None and len(jets) > last:
        progress(len(jets) - last)
    stats = dict(events=gen.n_events, unmatchable=gen.n_unmatchable, jets=len(jets), pythia_cpu_s=gen.t_pythia)
    return jets, stats
