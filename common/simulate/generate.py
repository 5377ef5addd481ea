"""Event loop: Pythia 8 events -> anti-kT jets -> detector response -> truth matching -> jet records.

Speed (Pythia itself is the floor, ~5-7 ms per event at 13 TeV with MPI); what we add is kept small by:
- Signal classes veto, at the end of the parton level (a Pythia UserHooks `doVetoPartonLevel`, so Pythia goes straight
  on to a new hard process), events in which no resonance could give a matched jet: its decay partons must fit in one
  R = 0.8 cone and it must carry enough pT (matching.could_match). Hadronisation does not move those partons, so the
  kept jets have the same distribution, and rejected events cost no hadronisation. (Stopping at parton level with
  `HadronLevel:all = off` and calling `forceHadronLevel` instead costs 5-15 % more Pythia time per event for most
  classes, more than the few per cent of events the veto rejects save, and its junction search fails for ~8 % of
  events, which would then be lost.)
- Jets are found in C++ by Pythia's SlowJet, which runs fjcore (FastJet's anti-kT), on the visible final-state
  particles within the reach of a selected jet (|eta| < 2.3 + R + 0.2). Only the constituents of candidate jets
  (pT above 85 % of the cut; for signal classes also truth-matched on the generator axis with a +-0.1 margin on R)
  are copied to numpy; candidates from several events go through the detector response together.
- [U] The detector is thus applied to the constituents of generator-level jets rather than to the whole event before
  clustering as in Delphes: particles at the cone edge can differ; the jet pT, mass and substructure are the same to a
  good approximation, and we avoid copying ~1000 particles per event into Python (which would cost about as much as
  Pythia's hadronisation).
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
    parton_veto: bool = True
    extra_settings: list[str] = field(default_factory=list)

    @property
    def is_qcd(self) -> bool:
        return self.process.codes in ((QCD_CODE,), (0,), (1,))


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
    """An initialised Pythia; `hooks` (a pythia8mc.UserHooks, kept alive by the caller) is attached before init."""
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


def _parton_veto(gen: "JetGenerator"):
    """UserHooks that vetoes a parton-level event in which no resonance could give a jet of the sample's class
    (matching.could_match); Pythia then generates a new hard process without hadronising this one. The accepted
    event's resonances are kept in `.resonances`. Counts every event in gen.n_events (vetoed ones in gen.n_vetoed)
    and its own CPU time in gen.t_hook. After gen.max_events it stops vetoing and sets gen.exhausted: Pythia would
    otherwise loop inside next() for ever on a selection that accepts nothing."""
    import pythia8mc as pythia8

    cfg = gen.cfg

    class PartonVeto(pythia8.UserHooks):
        def __init__(self):
            pythia8.UserHooks.__init__(self)
            self.resonances = []

        def canVetoPartonLevel(self):
            return True

        def doVetoPartonLevel(self, event):
            t0 = time.process_time()
            gen.n_events += 1
            self.resonances = find_resonances(event)
            veto = not any(could_match(r, cfg.process.codes, cfg.pt_min, cfg.jet_r) for r in self.resonances)
            if veto and gen.max_events is not None and gen.n_events >= gen.max_events:
                veto, gen.exhausted = False, True
            gen.n_vetoed += veto
            gen.t_hook += time.process_time() - t0
            return veto

    return PartonVeto()


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


class JetGenerator:
    """Yields `Jet`s from one (or two, alternated: charge-conjugate W decays) Pythia instances."""

    def __init__(self, cfg: GenConfig, seed: int):
        import pythia8mc as pythia8

        self.cfg = cfg
        proc = cfg.process
        self.veto = cfg.parton_veto and not cfg.is_qcd
        base = [f"Beams:eCM = {cfg.ecm:g}", f"PartonLevel:MPI = {'on' if cfg.mpi else 'off'}"]
        base += phase_space(cfg.pt_min, cfg.pt_max, flat=cfg.flat_pt, pthat_min=cfg.pthat_min) + cfg.extra_settings
        variants = [proc.settings] + ([proc.conjugate] if proc.conjugate else [])
        self.hooks = [_parton_veto(self) if self.veto else None for _ in variants]
        self.pythias = [make_pythia(base + s, derive_seed(seed, k), h)
                        for k, (s, h) in enumerate(zip(variants, self.hooks))]
        self.rng = np.random.default_rng(seed)
        self.det = get_detector(cfg.detector) if cfg.detector else None
        margin = 0.85 if self.det else 1.0  # detector-level jets are a few per cent softer than generator jets
        self.pre_pt_min, self.pre_pt_max = margin * cfg.pt_min, cfg.pt_max / margin
        self.pre_eta_max = cfg.eta_max + (0.3 if self.det else 0.0)
        # anti-kT (power -1), R, pTjetMin, particles with |eta| < eta_max(jet) + R + 0.2 (farther ones cannot be
        # constituents of a selected jet; skipping the forward region halves the clustering time), visible final
        # state (select 2), particle masses kept (massSet 2), no hook, fjcore on.
        self.slowjet = pythia8.SlowJet(-1, cfg.jet_r, self.pre_pt_min, self.pre_eta_max + cfg.jet_r + 0.2, 2, 2, None,
                                       True, True)
        _quiet_fjcore(self.slowjet, pythia8.Event())
        self.n_events = self.n_vetoed = self.n_jets = 0  # events: every hard process, vetoed ones included
        self.t_pythia = 0.0  # CPU seconds inside Pythia (next, less our veto hook), for the overhead benchmark
        self.t_hook = 0.0  # CPU seconds in the veto hook
        self.max_events = None
        self.exhausted = False  # the hook stopped vetoing at max_events
        self.batch = 32  # candidate jets per detector call
        self._particle_cls = pythia8.Particle

    def _next_event(self, py):
        if self.exhausted or (self.max_events is not None and self.n_events >= self.max_events):
            raise RuntimeError(f"{self.cfg.process.name}: only {self.n_jets} jets after {self.n_events} events; "
                               "the selection accepts (almost) nothing")
        t0, h0 = time.process_time(), self.t_hook
        ok = py.next()
        self.t_pythia += time.process_time() - t0 - (self.t_hook - h0)
        if not ok:
            return False
        if not self.veto:
            self.n_events += 1  # with the veto, the hook counts every hard process
        if self.cfg.process.extra.get("veto_bc") and any(
                py.process[i].idAbs() in (4, 5) for i in range(py.process.size()) if py.process[i].status() == 23):
            return False  # quark-gluon "no bc" variant: outgoing c/b quarks vetoed (§B6)
        return True

    def __iter__(self):
        """Jets in a deterministic order. Candidate jets are collected over several events and passed through the
        detector together (numpy on thousands of particles instead of one jet at a time)."""
        cfg, k, pending = self.cfg, 0, []
        while True:
            i = k % len(self.pythias)
            k += 1
            py, hook = self.pythias[i], self.hooks[i]
            if not self._next_event(py):
                continue
            ev = py.event
            if cfg.is_qcd:
                res = []
            elif hook is not None:
                res = hook.resonances  # found by the hook at the end of this (accepted) event's parton level
            else:
                res = find_resonances(ev)
            pending += self._candidates(ev, res)
            if len(pending) >= self.batch:
                yield from self._build(pending)
                pending = []

    def _candidates(self, ev, res) -> list[tuple[np.ndarray, list]]:
        """Generator-level jets that may pass after the detector: (particle rows, resonances) each."""
        cfg, sj = self.cfg, self.slowjet
        if not sj.analyze(ev):
            return []
        pts = [sj.pT(j) for j in range(sj.sizeJet())]
        order = sorted(range(len(pts)), key=lambda j: -pts[j])
        if cfg.leading_only:
            order = order[:1]
        out, codes, radii = [], cfg.process.codes, (cfg.jet_r - 0.1, cfg.jet_r + 0.1)
        for j in order:
            if pts[j] > self.pre_pt_max or abs(sj.y(j)) > self.pre_eta_max:
                continue
            if not cfg.is_qcd:  # [U] truth pre-match on the generator jet axis with a +-0.1 margin on R
                p = sj.p(j)
                eta, phi = p.eta(), p.phi()
                if not any(r.code([d < rr for d in dists]) in codes
                           for r in res for dists in (r.distances(eta, phi),) for rr in radii):
                    continue
            out.append((self._particles(ev, sj.constituents(j)), res))
        return out

    def _particles(self, ev, idx) -> np.ndarray:
        """(n, 9) rows px, py, pz, E, charge, x, y, z (production vertex, mm), id of the listed record entries.

        One column at a time through the unbound accessors (`map` calls them from C, no Python loop body). The
        production vertex is read only for charged particles that have one (`hasVertex`; otherwise it is exactly 0):
        it only enters the impact parameters of tracks."""
        P = self._particle_cls
        qs = list(map(ev.__getitem__, idx))
        n = len(qs)
        rows = np.zeros((n, 9))
        for col, f in enumerate((P.px, P.py, P.pz, P.e, P.charge)):
            rows[:, col] = np.fromiter(map(f, qs), np.float64, n)
        rows[:, 8] = np.fromiter(map(P.id, qs), np.float64, n)
        ch = np.flatnonzero(rows[:, 4])
        if len(ch):
            cq = [qs[i] for i in ch]
            vtx = ch[np.fromiter(map(P.hasVertex, cq), bool, len(cq))]
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
        out = []
        for j in np.flatnonzero(ok):
            if cfg.is_qcd:
                code, r = cfg.process.codes[0], None
            else:
                code, r = match_jet(cands[j][1], eta[j], phi[j], cfg.jet_r)
                if code not in cfg.process.codes:
                    continue  # signal samples keep only jets with the sample's own label (§A1)
            truth = (r.pt, r.eta, r.phi, float(r.pid), r.px, r.py, r.pz, r.e) if r is not None else (0.0,) * 8
            sl = slice(start[j], start[j + 1])
            # float32 as in the output formats: a 100k-jet file stays ~0.3 GB in memory
            out.append(Jet({k: v[sl].astype(np.int32 if k == "pid" else np.float32) for k, v in c.items()},
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
    stats = dict(events=gen.n_events, vetoed=gen.n_vetoed, jets=len(jets), pythia_cpu_s=gen.t_pythia)
    return jets, stats
