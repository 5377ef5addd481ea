"""JetClass truth matching (FatJetMatching, jetR = 0.8; jet-universe/jetclass_generation makeNtuples.C).

The hard-process resonances (t, W, Z, H) are read from the Pythia event record in record order. For each one we
collect its decay partons, each at its *final copy* (following daughters with the same id: `iBotCopyId`). A jet is
labelled by the first resonance whose required partons all lie within Delta R < 0.8 of the jet axis. Codes:
11/12 Top_bcq/Top_bqq, 15/16 Top_ben/Top_bmn, 21/22 W_cq/W_qq, 31/32/33 Z_bb/Z_cc/Z_qq,
41/42/43/44 H_bb/H_cc/H_qq/H_gg, 45 H_ww4q, 46 H_ww2q1l, 50 QCD.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

JET_R = 0.8
_TWO_PI = 2 * math.pi
KIND = {6: "t", 23: "Z", 24: "W", 25: "H"}  # |PDG id| of the hard-process resonances the matching follows
NEUTRINOS = (12, 14, 16)


@dataclass
class Resonance:
    """A t/W/Z/H with its decay partons (abs ids, eta, phi as tuples of plain numbers). For a top, parton 0 is the b."""

    kind: str  # "t", "W", "Z", "H"
    pid: int
    pt: float
    eta: float
    phi: float
    px: float
    py: float
    pz: float
    e: float
    ids: tuple
    etas: tuple
    phis: tuple
    hvv: bool = False
    codes: dict = field(default_factory=dict, repr=False, compare=False)  # memo of `code`: inside mask -> code

    def __post_init__(self):
        # plain Python numbers: per-jet calls on 2-6 partons, where numpy's per-call cost would dominate
        self.ids = tuple(int(i) for i in self.ids)
        self.etas = tuple(float(x) for x in self.etas)
        self.phis = tuple(float(x) for x in self.phis)
        self.partons = tuple(zip(self.etas, self.phis))

    def code(self, inside) -> int | None:
        """classify(self, inside) for a bool sequence (one per parton), memoised per mask (the same few masks recur
        for every jet of an event)."""
        key = tuple(bool(x) for x in inside)
        try:
            return self.codes[key]
        except KeyError:
            c = self.codes[key] = classify(self, key)
            return c

    def distances(self, eta: float, phi: float) -> list[float]:
        """Delta R of each decay parton to (eta, phi)."""
        return [math.hypot(e - eta, (p - phi + math.pi) % _TWO_PI - math.pi) for e, p in self.partons]


def classify(r: Resonance, inside) -> int | None:
    """FatJetMatching code of `r` given which of its partons are inside the jet (a bool per parton), or None."""
    ids = r.ids
    ins = [bool(x) for x in inside]
    if r.kind == "t":
        if len(ids) < 2:
            return None
        b_in, w_ids, w_in = ins[0], ids[1:], ins[1:]
        if all(i <= 5 for i in w_ids):  # hadronic W
            if len(w_ids) != 2 or not all(w_in):
                return None
            heavy = any(i >= 4 for i in w_ids)
            if b_in:
                return 11 if heavy else 12
            return 21 if heavy else 22  # b outside: the jet is tested as a W
        lep = [k for k, i in enumerate(w_ids) if i in (11, 13)]  # leptonic W: e/mu only, tau not accepted
        if len(lep) != 1 or not (b_in and w_in[lep[0]]):
            return None
        return 15 if w_ids[lep[0]] == 11 else 16
    if r.kind == "W":
        if len(ids) == 2 and all(i <= 5 for i in ids) and all(ins):
            return 21 if any(i >= 4 for i in ids) else 22
        return None
    if r.kind == "Z":
        if len(ids) == 2 and all(i <= 5 for i in ids) and all(ins):
            return 31 if 5 in ids else 32 if 4 in ids else 33
        return None
    if r.kind == "H":
        if r.hvv:
            nq = sum(1 for i, x in zip(ids, ins) if x and i <= 5)
            nl = sum(1 for i, x in zip(ids, ins) if x and i in (11, 13))
            if nq >= 4:
                return 45
            if nq == 2 and nl == 1:
                return 46
            return None
        if len(ids) == 2 and all(ins):
            return {5: 41, 4: 42, 21: 44}.get(ids[0], 43)
    return None


def match_jet(resonances: list[Resonance], eta: float, phi: float, r: float = JET_R) -> tuple[int | None, Resonance | None]:
    """First resonance (record order) whose decay partons match the jet at (eta, phi); (code, resonance)."""
    for res in resonances:
        code = res.code([d < r for d in res.distances(eta, phi)])
        if code is not None:
            return code, res
    return None, None


def could_match(res: Resonance, codes: tuple[int, ...], pt_min: float, r: float = JET_R) -> bool:
    """Exact up to the pT margin: can any jet with pT >= pt_min get one of `codes` from this resonance? Its partons
    must fit in one cone (pairwise Delta R < 2R, triangle inequality) and the resonance must carry most of the jet pT
    [U: resonance pT >= 0.6 * pt_min]."""
    if res.pt < 0.6 * pt_min or res.code((True,) * len(res.partons)) not in codes:
        return False
    return all(d < 2 * r for eta, phi in res.partons for d in res.distances(eta, phi))


def _partons(ev, daughters) -> list[tuple[int, float, float]]:
    """(abs id, eta, phi) of each listed entry at its final copy (`iBotCopyId`: after recoils and radiation)."""
    out = []
    for d in daughters:
        q = ev[ev[d].iBotCopyId()]
        out.append((q.idAbs(), q.eta(), q.phi()))
    return out


def find_resonances(ev, first: int = 3) -> list[Resonance]:
    """Hard-process t/W/Z/H (status -22 among the hard-process entries that open the record: |status| 21-23 from
    entry 3 on) with their decay partons.

    For a W from a top decay, the top's Resonance holds it (the b first, then the W's daughters). Plain Python with
    as few calls into the event record as it takes (each costs about a microsecond)."""
    out = []
    for i in range(first, ev.size()):
        p = ev[i]
        status = p.status()
        if not 21 <= abs(status) <= 23:
            break  # end of the hard process
        if status != -22:
            continue
        pid = p.id()
        kind = KIND.get(abs(pid))
        if kind is None:
            continue
        f = ev[p.iBotCopyId()]
        dau = f.daughterList()
        hvv = False
        if kind == "t":
            ids = [ev[d].idAbs() for d in dau]
            bs = [d for d, a in zip(dau, ids) if a <= 5]
            ws = [d for d, a in zip(dau, ids) if a == 24]
            if not bs or not ws:
                continue
            w_partons = _partons(ev, ev[ev[ws[0]].iBotCopyId()].daughterList())
            partons = _partons(ev, bs[:1]) + [q for q in w_partons if q[0] not in NEUTRINOS]
        elif kind == "H":
            ids = [ev[d].idAbs() for d in dau]
            hvv = len(dau) > 2 or any(a in (23, 24) for a in ids)
            if hvv:
                partons = []
                for d, a in zip(dau, ids):
                    if a in (23, 24):
                        partons += _partons(ev, ev[ev[d].iBotCopyId()].daughterList())
                    else:
                        partons += _partons(ev, [d])
                partons = [q for q in partons if q[0] <= 5 or q[0] in (11, 13)]
            else:
                partons = _partons(ev, dau)
        else:
            partons = _partons(ev, dau)
        out.append(Resonance(kind, pid, f.pT(), f.eta(), f.phi(), f.px(), f.py(), f.pz(), f.e(),
                             ids=[q[0] for q in partons], etas=[q[1] for q in partons], phis=[q[2] for q in partons],
                             hvv=hvv))
    return out
