"""Pythia 8 settings per simulated class (our recipes: the JetClass, Top tagging and QG datasets publish
only their process descriptions) and the truth codes each class keeps (jetclass_generation makeNtuples.C)."""
from __future__ import annotations

from dataclasses import dataclass, field

# JetClass classes in ParT order, their file prefixes and the FatJetMatching codes that give each label (§A1).
JETCLASS_CLASSES = ["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"]
JETCLASS_PREFIX = {"QCD": "ZJetsToNuNu", "Hbb": "HToBB", "Hcc": "HToCC", "Hgg": "HToGG", "H4q": "HToWW4Q",
                   "Hqql": "HToWW2Q1L", "Zqq": "ZToQQ", "Wqq": "WToQQ", "Tbqq": "TTBar", "Tbl": "TTBarLep"}
LABEL_CODES = {"QCD": (50,), "Hbb": (41,), "Hcc": (42,), "Hgg": (44,), "H4q": (45,), "Hqql": (46,),
               "Zqq": (31, 32, 33), "Wqq": (21, 22), "Tbqq": (11, 12), "Tbl": (15, 16)}
QCD_CODE = 50

QUIET = ["Next:numberCount = 0", "Next:numberShowEvent = 0", "Next:numberShowInfo = 0", "Next:numberShowProcess = 0",
         "Next:numberShowLHA = 0", "Init:showProcesses = off", "Init:showChangedSettings = off",
         "Init:showChangedParticleData = off", "Init:showMultipartonInteractions = off", "Print:quiet = on"]

# CMS-style stable K_S / Lambda (c*tau > 10 mm are not decayed), as Delphes sees them [our choice: Pythia 8
# ParticleDecays:limitTau0].
LONG_LIVED = ["ParticleDecays:limitTau0 = on", "ParticleDecays:tau0Max = 10"]

# Process blocks of §B4.
HZ = ["HiggsSM:ffbar2HZ = on", "23:onMode = off", "23:onIfAny = 12 14 16", "25:onMode = off"]
TT = ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off"]
ZJ = ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on", "WeakZ0:gmZmode = 2", "23:onMode = off"]
WJ = ["WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", "24:onMode = off"]
QUARKS = "1 2 3 4 5"
LEPTONS = "11 13"


@dataclass
class Process:
    """One simulated class: Pythia settings and the truth codes of the jets it keeps.

    `conjugate`: a second settings list run alternately event by event (the charge-conjugate W decay assignment), so
    that W+ and W- each decay hadronically in half of the events (Pythia 8 docs: `24:onPosIfAny/onNegIfAny` alone
    always gives W+ -> qq and W- -> l nu).
    """

    name: str
    settings: list[str]
    codes: tuple[int, ...]
    conjugate: list[str] | None = None
    resonances: tuple[int, ...] = (6, 23, 24, 25)  # |id| of the t/Z/W/H whose decays the matching looks at
    extra: dict = field(default_factory=dict)


def jetclass_process(name: str) -> Process:
    if name not in JETCLASS_PREFIX:
        raise ValueError(f"unknown JetClass class {name!r}; expected one of {JETCLASS_CLASSES}")
    codes = LABEL_CODES[name]
    hvv = ["25:onIfMatch = 24 -24", "24:onMode = off"]
    table = {
        "QCD": (ZJ + ["23:onIfAny = 12 14 16"], None),
        "Hbb": (HZ + ["25:onIfMatch = 5 -5"], None),
        "Hcc": (HZ + ["25:onIfMatch = 4 -4"], None),
        "Hgg": (HZ + ["25:onIfMatch = 21 21"], None),
        "H4q": (HZ + hvv + [f"24:onIfAny = {QUARKS}"], None),
        "Hqql": (HZ + hvv + [f"24:onPosIfAny = {QUARKS}", f"24:onNegIfAny = {LEPTONS}"],
                 HZ + hvv + [f"24:onPosIfAny = {LEPTONS}", f"24:onNegIfAny = {QUARKS}"]),
        "Zqq": (ZJ + [f"23:onIfAny = {QUARKS}"], None),
        "Wqq": (WJ + [f"24:onIfAny = {QUARKS}"], None),
        "Tbqq": (TT + [f"24:onIfAny = {QUARKS}"], None),
        # semileptonic ttbar: one W -> e/mu nu, the other -> qq, alternating which top decays leptonically
        "Tbl": (TT + [f"24:onPosIfAny = {QUARKS}", f"24:onNegIfAny = {LEPTONS}"],
                TT + [f"24:onPosIfAny = {LEPTONS}", f"24:onNegIfAny = {QUARKS}"]),
    }
    settings, conj = table[name]
    return Process(name, settings, codes, conj)


def toptagging_process(name: str) -> Process:
    """Top-tagging substitute (§B6): hadronic ttbar (signal, fully merged top) vs QCD dijets."""
    if name == "Top":
        return Process("Top", TT + [f"24:onIfAny = {QUARKS}"], (11, 12))
    if name == "QCD":
        return Process("QCD", ["HardQCD:all = on"], (QCD_CODE,))
    raise ValueError(f"unknown toptagging class {name!r}; expected QCD or Top")


def qg_process(name: str, with_bc: bool = False) -> Process:
    """Quark/gluon substitute (§B6): qqbar -> Z(nunu) g (gluon jets) and qg -> Z(nunu) q (quark jets)."""
    z = ["WeakZ0:gmZmode = 2", "23:onMode = off", "23:onIfAny = 12 14 16"]
    if name == "Gluon":
        return Process("Gluon", ["WeakBosonAndParton:qqbar2gmZg = on"] + z, (0,))
    if name == "Quark":
        return Process("Quark", ["WeakBosonAndParton:qg2gmZq = on"] + z, (1,), extra={"veto_bc": not with_bc})
    raise ValueError(f"unknown qg class {name!r}; expected Gluon or Quark")


def phase_space(pt_min: float, pt_max: float, *, flat: bool, pthat_min: float | None = None) -> list[str]:
    """pTHat window for jets in [pt_min, pt_max].

    [U] pTHat from 0.9 * pt_min (jets just above pt_min come from partons just above it after radiation) to
    1.1 * pt_max. With flat=True the hard process is sampled with a pTHat^4 bias (`PhaseSpace:bias2Selection`) and the
    event weights are ignored, which turns the steeply falling spectrum into a roughly flat one over the window, so
    that the whole 500-1000 GeV range of JetClass is populated (JetClass' own pT spectrum is not published). flat=False
    keeps Pythia's natural falling spectrum.
    """
    lo = pthat_min if pthat_min is not None else 0.9 * pt_min
    s = [f"PhaseSpace:pTHatMin = {lo:g}", f"PhaseSpace:pTHatMax = {1.1 * pt_max:g}"]
    if flat:
        s += ["PhaseSpace:bias2Selection = on", "PhaseSpace:bias2SelectionPow = 4",
              f"PhaseSpace:bias2SelectionRef = {lo:g}"]
    return s
