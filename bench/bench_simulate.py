"""Simulation throughput on one core: bare Pythia event generation vs our full simulation (jets/s).

    python bench/bench_simulate.py [--classes Tbqq,QCD] [--jets 100] [--seed 1]

For each class:
- bare Pythia: the class's Pythia settings with full hadronisation, `next()` only, no analysis, on the same seed and
  for as many events as the full run generated; reported as jets/s = events/s x (selected jets per generated event,
  measured in the full run), i.e. the rate we would reach if clustering, detector, matching, observables and writing
  cost nothing;
- ours: generate + write a JetClass ROOT file (observables included), jets/s;
- overhead = CPU time outside Pythia / CPU time inside Pythia in our run (target <= 20%), split into the event loop
  (clustering, detector, matching) and writing (observables: N-subjettiness, soft drop; ROOT); Pythia's
  initialisation (~0.3 s once per output file) is not counted;
- end-to-end = bare Pythia jets/s / ours jets/s - 1 (both per CPU-second): the overhead above plus what Pythia itself
  loses inside our loop (it runs a few per cent slower between our Python steps than back to back, and it gains where
  the parton-level pre-selection skips the hadronisation of events that cannot give a jet; below 0 is possible).
CPU time (time.process_time) is used so that a loaded machine does not distort the ratio; wall rates are printed too.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.simulate.generate import JetGenerator, derive_seed, make_pythia  # noqa: E402
from common.simulate.processes import JETCLASS_CLASSES, phase_space  # noqa: E402
from common.simulate.run import gen_config  # noqa: E402
from common.simulate.writers import write_jetclass_root  # noqa: E402


def bare_pythia(cfg, seed: int, n_events: int) -> float:
    """CPU seconds per event of plain Pythia with the class's settings (hadronisation on)."""
    base = [f"Beams:eCM = {cfg.ecm:g}", f"PartonLevel:MPI = {'on' if cfg.mpi else 'off'}"]
    base += phase_space(cfg.pt_min, cfg.pt_max, flat=cfg.flat_pt, pthat_min=cfg.pthat_min)
    py = make_pythia(base + cfg.process.settings, seed)
    py.next()
    t0 = time.process_time()
    for _ in range(n_events):
        py.next()
    return (time.process_time() - t0) / n_events


def bench_class(cls: str, n_jets: int, seed: int) -> dict:
    cfg = gen_config("jetclass", cls, {})
    gen = JetGenerator(cfg, seed)  # Pythia init (once per output file) is not counted
    it = iter(gen)
    write_jetclass_root(os.path.join(tempfile.gettempdir(), "bench_warmup.root"), [next(it) for _ in range(5)])
    ev0, py0 = gen.n_events, gen.t_pythia
    c0, w0 = time.process_time(), time.time()
    jets = [next(it) for _ in range(n_jets)]
    c_gen = time.process_time() - c0
    with tempfile.TemporaryDirectory() as d:
        c1 = time.process_time()
        write_jetclass_root(os.path.join(d, "x.root"), jets)
        c_write = time.process_time() - c1
    cpu, wall = time.process_time() - c0, time.time() - w0
    events, t_py = gen.n_events - ev0, gen.t_pythia - py0
    per_event = bare_pythia(cfg, derive_seed(seed, 0), gen.n_events)  # the same events' seed, as many events
    return dict(cls=cls, jets=n_jets, events=events, ours=n_jets / cpu, ours_wall=n_jets / wall,
                bare=n_jets / events / per_event, pythia_ms=1e3 * t_py / n_jets,
                gen_overhead=(c_gen - t_py) / t_py, write_overhead=c_write / t_py, overhead=(cpu - t_py) / t_py,
                end_to_end=cpu / n_jets * (n_jets / events / per_event) - 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="Tbqq", help="comma-separated JetClass classes, or 'all'")
    ap.add_argument("--jets", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    classes = JETCLASS_CLASSES if a.classes == "all" else a.classes.split(",")
    print(f"{'class':6s} {'jets':>5s} {'events':>6s} {'bare Pythia':>12s} {'ours (CPU)':>11s} {'ours (wall)':>11s} "
          f"{'Pythia/jet':>10s} {'overhead: gen':>13s} {'+ write':>8s} {'= total':>8s} {'end-to-end':>10s}")
    for cls in classes:
        r = bench_class(cls, a.jets, a.seed)
        print(f"{cls:6s} {r['jets']:5d} {r['events']:6d} {r['bare']:8.1f} j/s {r['ours']:7.1f} j/s "
              f"{r['ours_wall']:7.1f} j/s {r['pythia_ms']:7.2f} ms {100 * r['gen_overhead']:12.1f}% "
              f"{100 * r['write_overhead']:7.1f}% {100 * r['overhead']:7.1f}% {100 * r['end_to_end']:9.1f}%", flush=True)


if __name__ == "__main__":
    main()
