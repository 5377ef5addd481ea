"""bench/bench_simulate.py keeps working: the bare twins replay our events, and the row adds up."""
import math

import pytest

pytest.importorskip("pythia8mc")

from common.simulate.generate import JetGenerator  # noqa: E402
from common.simulate.run import gen_config  # noqa: E402

from bench.bench_simulate import STAGE_COLUMNS, Twins, _same_event, bench_class  # noqa: E402

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_bench_simulate_row_with_veto_study():
    r = bench_class("Tbl", 4, seed=2, chunk=2, veto_study=True)  # Tbl: two alternating Pythia instances
    assert r["jets"] == 4 and r["events"] >= 4
    for k in ("bare", "ours", "pythia_ms", "write", "split", "end_to_end", "unmatchable", "hadron_level", "saving",
              "hook_cost", *STAGE_COLUMNS):
        assert math.isfinite(r[k]), k
    assert r["bare"] > 0 and r["ours"] > 0 and r["pythia_ms"] > 0
    assert all(r[k] > 0 for k in STAGE_COLUMNS) and r["write"] > 0
    # outside/inside is everything we add: at least the stages we time
    assert r["split"] >= sum(r[k] for k in STAGE_COLUMNS) + r["write"] - 1e-9
    assert 0 <= r["unmatchable"] <= 1 and r["hadron_level"] < 1
    assert r["saving"] == pytest.approx(r["unmatchable"] * r["hadron_level"])


def test_twins_replay_our_events_and_another_seed_does_not():
    gen = JetGenerator(gen_config("jetclass", "Hbb", {}), 3)
    it = iter(gen)
    next(it)
    twins = Twins(gen, 3)
    twins.catch_up(gen.events)
    assert twins.events == gen.events and twins.cpu > 0
    assert _same_event(gen.pythias[0], twins.pythias[0])
    ours, bare = gen.pythias[0].event, twins.pythias[0].event
    assert all(ours[i].px() == bare[i].px() for i in range(0, ours.size(), 7))
    other = Twins(gen, 4)  # another seed: other events, which bench_class's check must catch
    other.catch_up(gen.events)
    assert not _same_event(gen.pythias[0], other.pythias[0])


def test_bench_btag_row():
    from bench.bench_simulate import bench_btag

    r = bench_btag(5, seed=3)
    assert r["jets"] == 15 and r["events"] > 0 and r["jets_per_cpu_s"] > 0 and 0 < r["pythia_share"] < 1
