"""Simulation throughput on one core: bare Pythia event generation vs our full simulation, on the same events.

    python -m bench.bench_simulate [--classes Tbqq,QCD | all] [--jets 1000] [--seed 1] [--veto-study]

For each JetClass class the script runs our generator (common.simulate.generate.JetGenerator) and, beside it, a
"bare twin" of each of its Pythia instances: the same settings and seed, `next()` only, no analysis. The generator
adds no Python hook to Pythia and leaves its random stream alone, so each twin generates exactly the events ours
generated (checked after every chunk). The two are interleaved in chunks of --chunk jets, so that a shared, noisy
machine slows both alike, and only CPU time (time.process_time) is counted. Pythia's initialisation is not counted.

Columns (per class):
- bare Pythia: jets per CPU-second if clustering, detector, matching, observables and writing cost nothing;
- ours: jets per CPU-second of the full simulation, a JetClass ROOT file written at the end (observables included);
- Pythia/jet: CPU ms inside `next()` in our run per selected jet;
- truth, clustering, copy, detector, write: CPU time of each of our stages as a share of Pythia's time in our run
  (JetGenerator.cpu: resonances and the could-match test; SlowJet/fjcore with the generator-level pre-selection;
  copying candidate constituents out of the event record; detector response, matching and jet records; N-subjettiness,
  soft drop and the ROOT file);
- outside/inside: the sum of those shares: CPU outside Pythia over CPU inside Pythia, in our run;
- end-to-end: our CPU time over the bare twins' CPU time for the same events, minus 1: the shares above plus whatever
  Pythia loses by running between our Python steps (caches). Target: <= 20% for every class, on both measures.

--btag N instead measures the flavour-tagging simulation (common.simulate.btag.generate_btag): N light, c and b jets
each with matched (pT, |eta|, tracks) bins, and its CPU time inside and outside Pythia (initialisation excluded); the
jets per CPU-second count the balanced jets kept (the flavour balance discards most light jets).

--veto-study adds what a parton-level veto (a Python UserHooks.doVetoPartonLevel rejecting events in which no
resonance can give a matched jet, before hadronisation) would save and cost, for the choice in generate.py:
- unmatchable: share of events in which no resonance can give a matched jet (the events such a veto would reject);
- hadron level: share of a bare event's CPU time spent after the parton level (a twin with HadronLevel:all = off);
- saving: unmatchable x hadron level, the Pythia time such a veto saves;
- hook cost: a third twin with a Python UserHooks whose doVetoPartonLevel never vetoes (the same events, run
  alternately with the bare twin event by event): its extra CPU time over the bare twin, i.e. the copy of the event
  record into Python and the C++ -> Python user-hook checks.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.cli import cli  # noqa: E402
from common.simulate.generate import JetGenerator, derive_seed, make_pythia  # noqa: E402
from common.simulate.processes import JETCLASS_CLASSES  # noqa: E402
from common.simulate.run import gen_config  # noqa: E402
from common.simulate.writers import write_jetclass_root  # noqa: E402

TARGET = 0.20
STAGE_COLUMNS = ("truth", "clustering", "copy", "detector")


class Twins:
    """Pythia instances that replay the events of a generator's instances; CPU seconds of their `next()` calls."""

    def __init__(self, gen: JetGenerator, seed: int, extra: list[str] | None = None, hook_factory=None):
        self.hooks = [hook_factory() if hook_factory else None for _ in gen.pythias]  # kept alive while Pythia runs
        self.pythias = [make_pythia(s + (extra or []), derive_seed(seed, k), h)
                        for k, (s, h) in enumerate(zip(gen.cfg.pythia_settings(), self.hooks))]
        self.events = [0] * len(self.pythias)
        self.cpu = 0.0

    def step(self, k: int) -> None:
        """One event of instance k."""
        t0 = time.process_time()
        self.pythias[k].next()
        self.cpu += time.process_time() - t0
        self.events[k] += 1

    def catch_up(self, events: list[int]) -> None:
        catch_up([self], events)


def catch_up(twins: list[Twins], events: list[int]) -> None:
    """Bring every set of twins to `events[k]` events of instance k, one event at a time across the sets, the order
    rotating after each event: twins that are compared run under the same conditions, event by event."""
    for k in range(len(events)):
        while twins[0].events[k] < events[k]:
            for t in twins:
                t.step(k)
            twins = twins[1:] + twins[:1]


def _never_veto_hook():
    """A Python UserHooks that inspects the end of every parton level and never vetoes (same events as bare)."""
    import pythia8mc as pythia8

    class NeverVeto(pythia8.UserHooks):
        def __init__(self):
            pythia8.UserHooks.__init__(self)

        def canVetoPartonLevel(self):
            return True

        def doVetoPartonLevel(self, event):
            return False

    return NeverVeto()


def _same_event(a, b) -> bool:
    ea, eb = a.event, b.event
    n = ea.size()
    return n == eb.size() and all(ea[i].px() == eb[i].px() and ea[i].id() == eb[i].id() for i in (n // 2, n - 1))


def bench_class(cls: str, n_jets: int, seed: int, chunk: int = 5, veto_study: bool = False) -> dict:
    cfg = gen_config("jetclass", cls, {})
    gen = JetGenerator(cfg, seed)
    bare = Twins(gen, seed)
    hooked = Twins(gen, seed, hook_factory=_never_veto_hook) if veto_study else None
    parton = Twins(gen, seed, extra=["HadronLevel:all = off"]) if veto_study else None
    it = iter(gen)
    warm = [next(it)]
    while len(warm) < gen.n_jets:  # drain the detector batch: timing starts with a new event
        warm.append(next(it))
    write_jetclass_root(os.path.join(tempfile.gettempdir(), "bench_warmup.root"), warm)
    twins = [t for t in (bare, hooked, parton) if t is not None]
    catch_up(twins, gen.events)
    for t in twins:
        t.cpu = 0.0
    for k in gen.cpu:
        gen.cpu[k] = 0.0
    ev0, unmatchable0 = gen.n_events, gen.n_unmatchable
    jets, ours = [], 0.0
    while len(jets) < n_jets:
        c0 = time.process_time()
        jets += [next(it) for _ in range(min(chunk, n_jets - len(jets)))]
        ours += time.process_time() - c0
        catch_up(twins, gen.events)
        for k in range(len(gen.pythias)):
            if not (_same_event(gen.pythias[k], bare.pythias[k])
                    and (hooked is None or _same_event(gen.pythias[k], hooked.pythias[k]))):
                raise RuntimeError(f"{cls}: a bare twin generated other events than ours (instance {k}); "
                                   "the generator must not touch Pythia's random stream or add hooks")
    with tempfile.TemporaryDirectory() as d:
        c1 = time.process_time()
        write_jetclass_root(os.path.join(d, "x.root"), jets)
        write = time.process_time() - c1
    ours += write
    t_py, events = gen.cpu["pythia"], gen.n_events - ev0
    r = dict(cls=cls, jets=n_jets, events=events, bare=n_jets / bare.cpu, ours=n_jets / ours,
             pythia_ms=1e3 * t_py / n_jets, write=write / t_py, split=(ours - t_py) / t_py,
             end_to_end=ours / bare.cpu - 1, **{k: gen.cpu[k] / t_py for k in STAGE_COLUMNS})
    if veto_study:
        r["unmatchable"] = (gen.n_unmatchable - unmatchable0) / events
        r["hadron_level"] = 1 - parton.cpu / bare.cpu
        r["saving"] = r["unmatchable"] * r["hadron_level"]
        r["hook_cost"] = hooked.cpu / bare.cpu - 1
    return r


def bench_btag(n_per_flavour: int, seed: int) -> dict:
    """CPU time of the BTag simulation of n_per_flavour jets per flavour (one process, one thread)."""
    from common.simulate.btag import generate_btag

    jets, stats = generate_btag(seed, n_per_flavour)
    cpu = stats["pythia_cpu_s"] + stats["ours_cpu_s"]
    r = dict(jets=stats["jets"], events=stats["events"], jets_per_cpu_s=stats["jets"] / cpu,
             pythia_share=stats["pythia_cpu_s"] / cpu)
    print("| jets (balanced) | events | jets per CPU-s | share of CPU in Pythia |\n|---|---|---|---|")
    print(f"| {r['jets']} | {r['events']} | {r['jets_per_cpu_s']:.1f} | {100 * r['pythia_share']:.0f}% |")
    return r


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="Tbqq", help="comma-separated JetClass classes, or 'all'")
    ap.add_argument("--jets", type=int, default=1000, help="jets per class (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=5, help="jets between two catch-ups of the bare twins (default 5)")
    ap.add_argument("--veto-study", action="store_true", help="also measure what a parton-level veto saves and costs")
    ap.add_argument("--btag", type=int, default=0, metavar="N", help="measure the BTag simulation (N jets per flavour)")
    a = ap.parse_args(argv)
    if a.btag:
        return [bench_btag(a.btag, a.seed)]
    classes = JETCLASS_CLASSES if a.classes == "all" else a.classes.split(",")
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    head = ["class", "jets", "events", "bare Pythia j/s", "ours j/s", "Pythia ms/jet", *STAGE_COLUMNS, "write",
            "outside/inside", "end-to-end"]
    if a.veto_study:
        head += ["unmatchable", "hadron level", "veto saving", "hook cost"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    rows = []
    for cls in classes:
        r = bench_class(cls, a.jets, a.seed, a.chunk, a.veto_study)
        rows.append(r)
        cells = [cls, str(r["jets"]), str(r["events"]), f"{r['bare']:.1f}", f"{r['ours']:.1f}", f"{r['pythia_ms']:.2f}",
                 *(pct(r[k]) for k in STAGE_COLUMNS), pct(r["write"]), pct(r["split"]), pct(r["end_to_end"])]
        if a.veto_study:
            cells += [pct(r[k]) for k in ("unmatchable", "hadron_level", "saving", "hook_cost")]
        print("| " + " | ".join(cells) + " |", flush=True)
    worst_split = max(rows, key=lambda r: r["split"])
    worst_e2e = max(rows, key=lambda r: r["end_to_end"])
    ok = all(r["split"] <= TARGET and r["end_to_end"] <= TARGET for r in rows)
    print(f"\ntarget <= {pct(TARGET)}: {'met' if ok else 'NOT met'} (largest outside/inside {pct(worst_split['split'])} "
          f"for {worst_split['cls']}, largest end-to-end {pct(worst_e2e['end_to_end'])} for {worst_e2e['cls']}); "
          "CPU time, one thread")
    return rows


if __name__ == "__main__":
    cli(main)
