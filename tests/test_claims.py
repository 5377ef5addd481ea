"""The Claims section: one verdict rule for every claim, rows picked from the run's own grid, published side read
from published.yaml, and every shipped claim pointing at a real table, metric and key."""
from __future__ import annotations

import math

import pytest
import yaml

from common.results import claims as C
from common.results import report
from common.results import tables as R

PUB = {
    "mpm": {
        "toy": {
            "title": "toy", "source": "Someone et al., arXiv:0000.00000, Table 9", "keys": ["mode", "n_train"],
            "metrics": ["accuracy", "loss"],
            "rows": [{"mode": "finetune", "n_train": 1000, "accuracy": 49.1},
                     {"mode": "scratch", "n_train": 1000, "accuracy": 39.7},
                     {"mode": "finetune", "n_train": 10000, "accuracy": 57.9},
                     {"mode": "scratch", "n_train": 10000, "accuracy": 49.6}],
        },
        "tok": {"title": "t", "source": "s", "keys": ["tokenisation", "num_tokens"], "metrics": ["res"], "rows": []},
    },
    "omnijet": {}, "hepjepa": {},
}
CLAIM = {"id": "ft", "claim": "fine-tuned beats scratch", "source": "arXiv:0000.00000, Table 9", "table": "mpm.toy",
         "metric": "accuracy", "better": "higher", "a": {"mode": "finetune"}, "b": {"mode": "scratch"},
         "at": {"n_train": "min"}}


def test_rule_reproduced_contradicted_inconclusive_and_too_few_seeds():
    a, b = [0.50, 0.52, 0.51], [0.40, 0.41, 0.42]
    v, d, se, _ = C.decide(a, b, "higher")
    assert v == "reproduced" and d == pytest.approx(0.10)
    assert se == pytest.approx(math.sqrt(0.01 ** 2 / 3 + 0.01 ** 2 / 3))
    assert C.decide(b, a, "higher")[0] == "contradicted"
    # lower is better: the sign of d follows the paper's direction
    assert C.decide(b, a, "lower")[0] == "reproduced" and C.decide(b, a, "lower")[1] == pytest.approx(0.10)
    # a difference inside 2 SE decides nothing
    assert C.decide([0.50, 0.60, 0.40], [0.45, 0.55, 0.35], "higher")[0] == "inconclusive"
    # two seeds are never enough, however large the gap
    v, d, _, why = C.decide([0.9, 0.91], [0.1, 0.11, 0.12], "higher")
    assert v == "inconclusive" and "fewer than 3 seeds" in why and d > 0.7
    assert C.decide([], [0.1, 0.2, 0.3], "higher")[0] == "not measured"


def test_rule_boundary_is_exactly_two_standard_errors():
    b = [0.0, 1.0, 2.0]                     # mean 1, s = 1
    a = [x + 2 * math.sqrt(2 / 3) for x in b]  # d = 2 SE exactly (SE = sqrt(1/3 + 1/3))
    assert C.decide(a, b, "higher")[0] == "inconclusive"
    assert C.decide([x + 1e-6 for x in a], b, "higher")[0] == "reproduced"


def _results(rows):
    return {"mpm.toy": {"rows": rows, "metas": [{}], "files": ["x"]}}


def test_at_min_takes_the_smallest_n_either_side_has_and_published_side_from_published():
    rows = [{"mode": "finetune", "n_train": n, "accuracy": acc, "seed": s}
            for n, acc in ((100, 0.3), (1000, 0.5)) for s in range(3)]
    rows += [{"mode": "scratch", "n_train": n, "accuracy": acc - 0.001 * s, "seed": s}
             for n, acc in ((10, 0.9), (1000, 0.4)) for s in range(3)]  # scratch has no N=100; finetune no N=10
    (v,) = C.evaluate(_results(rows), [CLAIM], PUB)
    # the smallest N of either side: finetune's cell there is missing, and the claim does not move to N=1000
    assert v.at == {"n_train": 10.0} and v.a == [] and v.verdict == "not measured"
    assert "side a (mode=finetune, n_train=10): no such row in the results" in v.why
    assert f"`bash run_all.sh --table {v.claim['table']}` runs every row" in v.why  # how to schedule it
    (v,) = C.evaluate({}, [CLAIM], PUB)  # no result file of the table at all
    assert v.verdict == "not measured" and v.why == (f"table {CLAIM['table']} has no result in this run (`bash "
                                                     f"run_all.sh --table {CLAIM['table']}` runs what produces it)")
    both = [r for r in rows if r["n_train"] == 1000]
    (v,) = C.evaluate(_results(both), [CLAIM], PUB)
    assert v.at == {"n_train": 1000.0} and v.verdict == "reproduced"
    assert v.a == [0.5, 0.5, 0.5] and v.b == pytest.approx([0.4, 0.399, 0.398])
    assert v.published.startswith("49.1 vs 39.7") and "n_train=1000" in v.published  # published: shared grid


def test_missing_table_or_side_is_not_measured_and_rendered():
    (v,) = C.evaluate({}, [CLAIM], PUB)
    assert v.verdict == "not measured" and "no result" in v.why
    lines = C.render_claims([v])
    text = "\n".join(lines)
    assert text.startswith("## Claims") and "Rule:" in text and "**not measured**" in text
    assert "0 reproduced, 0 contradicted, 0 inconclusive, 1 not measured" in text


def test_side_max_min_selects_within_a_side():
    claim = {"id": "cb", "claim": "bigger codebook resolves better", "source": "s", "table": "mpm.tok",
             "metric": "res", "better": "lower", "a": {"tokenisation": "vq", "num_tokens": "max"},
             "b": {"tokenisation": "vq", "num_tokens": "min"}}
    rows = [{"tokenisation": "vq", "num_tokens": k, "res": r + 0.01 * s}
            for k, r in ((64, 0.5), (256, 0.3), (1024, 0.2)) for s in range(3)]
    res = {"mpm.tok": {"rows": rows, "metas": [{}], "files": ["x"]}}
    (v,) = C.evaluate(res, [claim], PUB)
    assert v.a == pytest.approx([0.20, 0.21, 0.22]) and v.b == pytest.approx([0.50, 0.51, 0.52])
    assert v.verdict == "reproduced"


def test_load_claims_rejects_unknown_tables_metrics_and_keys(tmp_path):
    def write(claim):
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump({"claims": [claim]}))
        return p
    C.load_claims(write(CLAIM), PUB)
    with pytest.raises(ValueError, match="not in common/results/published.yaml"):
        C.load_claims(write({**CLAIM, "table": "mpm.nope"}), PUB)
    with pytest.raises(ValueError, match="metric 'auc'"):
        C.load_claims(write({**CLAIM, "metric": "auc"}), PUB)
    with pytest.raises(ValueError, match="not key columns"):
        C.load_claims(write({**CLAIM, "a": {"modus": "finetune"}}), PUB)
    with pytest.raises(ValueError, match="better must be"):
        C.load_claims(write({**CLAIM, "better": "bigger"}), PUB)


def test_shipped_claims_match_published_tables_and_cover_every_method():
    claims = C.load_claims()  # validated against common/results/published.yaml
    assert {c["table"].split(".")[0] for c in claims} == {"mpm", "omnijet", "hepjepa"}
    assert len({c["id"] for c in claims}) == len(claims)
    published = R.load_published()
    for c in claims:  # where the paper has numbers for both sides, the published comparison has the paper's sign
        (v,) = C.evaluate({}, [c], published)
        if v.published != "not published":
            d = float(v.published.split("d = ")[1].split(";")[0].rstrip(")"))
            assert d > 0, (c["id"], v.published)


def test_results_md_starts_with_the_claims_section(tmp_path):
    runs = tmp_path / "runs"
    rows = [{"mode": m, "n_train": 1000, "accuracy": acc + 0.01 * s, "seed": s}
            for m, acc in (("finetune", 0.5), ("scratch", 0.3)) for s in range(3)]
    R.write_result(runs / "mpm" / "mpm.toy.json", "mpm.toy", rows, {"profile": "mini"}, published=PUB)
    cpath = tmp_path / "claims.yaml"
    cpath.write_text(yaml.safe_dump({"claims": [CLAIM]}))
    path, _ = report.build_results_md(runs, "mini", tmp_path / "res", published=PUB, claims_path=cpath)
    text = path.read_text()
    assert text.index("## Claims") < text.index("## Summary") < text.index("### mpm.toy")
    claim_line = next(l for l in text.splitlines() if l.startswith("| fine-tuned beats scratch"))
    assert "**reproduced**" in claim_line and "49.1 vs 39.7" in claim_line


def test_at_second_min_takes_the_second_smallest_value_either_side_has():
    claim = {**CLAIM, "at": {"n_train": "second_min"}}
    rows = [{"mode": m, "n_train": n, "accuracy": acc + 0.001 * s, "seed": s}
            for m, grid in (("finetune", ((10, 0.1), (100, 0.6), (1000, 0.7))),
                            ("scratch", ((100, 0.5), (1000, 0.65), (5000, 0.9))))
            for n, acc in grid for s in range(3)]  # values 10, 100, 1000, 5000: the second smallest is 100
    (v,) = C.evaluate(_results(rows), [claim], PUB)
    assert v.at == {"n_train": 100.0}
    assert v.a == pytest.approx([0.6, 0.601, 0.602]) and v.b == pytest.approx([0.5, 0.501, 0.502])
    assert v.published.startswith("57.9 vs 49.6")  # the published grid's second smallest (10000)
    (one,) = C.evaluate(_results([r for r in rows if r["n_train"] == 100]), [claim], PUB)
    assert one.verdict == "not measured"  # a single shared value has no second smallest


def test_infinite_values_are_decided_by_order_not_dropped():
    # steps to reach the scratch minimum (lower is better): a fine-tuned seed that never reached it is +inf
    inf = float("inf")
    assert C.decide([inf, inf, inf], [90, 95, 100], "lower")[0] == "contradicted"
    assert C.decide([10, 20, 30], [90, 95, inf], "lower")[0] == "reproduced"
    assert C.decide([10, inf, 30], [90, 95, 100], "lower")[0] == "inconclusive"
    assert C.decide([inf, inf], [1, 2, 3], "lower")[0] == "inconclusive"  # too few seeds, as always
    # higher is better: an infinite rejection (no background left) is the best value
    assert C.decide([inf, 50, 60], [10, 20, 30], "higher")[0] == "reproduced"
    # the seeds are kept when read from a table row
    claim = {**CLAIM, "better": "lower"}
    rows = [{"mode": "finetune", "n_train": 1000, "accuracy": inf, "seed": s} for s in range(3)]
    rows += [{"mode": "scratch", "n_train": 1000, "accuracy": 90.0 + s, "seed": s} for s in range(3)]
    (v,) = C.evaluate(_results(rows), [claim], PUB)
    assert v.a == [inf, inf, inf] and v.verdict == "contradicted"
    assert C._mean_std(v.a) == "∞, ∞, ∞ (n=3)" and C._mean_std([1.0, inf, 3.0]) == "1, ∞, 3 (n=3)"


def test_ours_are_in_the_published_units_percent():
    pub = {**PUB, "mpm": {**PUB["mpm"], "toy": {**PUB["mpm"]["toy"], "percent": ["accuracy"]}}}
    rows = [{"mode": m, "n_train": 1000, "accuracy": acc + 0.01 * s, "seed": s}
            for m, acc in (("finetune", 0.50), ("scratch", 0.40)) for s in range(3)]
    (v,) = C.evaluate(_results(rows), [CLAIM], pub)
    assert v.a == pytest.approx([50.0, 51.0, 52.0]) and v.d == pytest.approx(10.0)  # like the published 49.1 vs 39.7
    assert v.verdict == "reproduced"


def test_pretraining_run_values_take_the_mean_over_each_runs_seeds():
    rows = [{"mode": "finetune", "n_train": 100, "pretrain_seed": p, "accuracy": [p + 0.1, p + 0.2, p + 0.3]}
            for p in range(3)]
    vals, runs = C.pretraining_run_values(rows, "accuracy")
    assert vals == pytest.approx([0.2, 1.2, 2.2]) and runs == [3, 3, 3]
    scratch = [{"mode": "scratch", "n_train": 100, "accuracy": [0.5, 0.6, 0.7]}]
    # a side without pretraining keeps one value per seed; side a without pretrain_seed is one pretraining run
    assert C.pretraining_run_values(scratch, "accuracy", pretrained=False) == ([0.5, 0.6, 0.7], None)
    vals, runs = C.pretraining_run_values(scratch, "accuracy", 100.0, pretrained=True)
    assert vals == pytest.approx([60.0]) and runs == [3]


def test_replicated_column_says_what_a_value_stands_for():
    rows = [{"mode": m, "n_train": 100, "accuracy": acc + 0.01 * s, "seed": s}
            for m, acc in (("finetune", 0.5), ("scratch", 0.4)) for s in range(3)]
    claim = {**CLAIM, "replicated": "1 pretraining run × {n} fine-tuning seeds"}
    (v,) = C.evaluate(_results(rows), [claim], PUB)
    assert v.replicated == "1 pretraining run × 3 fine-tuning seeds"
    text = "\n".join(C.render_claims([v]))
    assert "| replicated |" in text and "| 1 pretraining run × 3 fine-tuning seeds |" in text
    (v,) = C.evaluate(_results(rows[:5]), [claim], PUB)
    assert v.replicated == "1 pretraining run × 3/2 fine-tuning seeds"


def test_every_shipped_claim_states_its_unit_of_replication():
    claims = {c["id"]: c for c in C.load_claims()}
    for c in claims.values():
        assert c.get("replicate") == "pretraining" or "{n}" in c.get("replicated", ""), c["id"]
    # the claims comparing pretraining configurations are decided over pretraining runs
    for cid in ("mpmv1_targets_vqvae_vs_kmeans", "mpmv1_targets_kmeans_vs_regression", "mpmv1_ape_head_vs_none",
                "mpmv1_ape_none_vs_backbone"):
        assert claims[cid]["replicate"] == "pretraining"
    # pretrained vs scratch: over pretraining runs too (mini and smoke pretrain three times; one value per run)
    for cid in ("mpmv1_finetune_vs_scratch", "mpmv2_finetune_vs_scratch", "omnijet_transfer_vs_scratch",
                "hepjepa_finetune_vs_scratch_smallest", "mpmv2_btag_finetune_vs_scratch"):
        assert claims[cid]["replicate"] == "pretraining"
        assert claims[cid]["replicated"].startswith("{n} pretraining runs × {k} ")


def test_mpmv1_cwola_is_decided_at_the_largest_signal_count():
    """The paper's gap is at its largest signal counts (5.04 vs 1.94 at 5000); at the smallest both SICs sit at the
    no-discrimination level (was: at n_signal min). A side without the largest count reads missing: the claim never
    moves to a smaller count."""
    published = R.load_published()
    claim = next(c for c in C.load_claims(published=published) if c["id"] == "mpmv1_cwola")
    grids = {"finetune": ((50, 1.0), (300, 3.0), (1000, 9.0)), "scratch": ((50, 1.1), (300, 1.5), (1000, 2.0))}
    # the fine-tuned side: three pretraining runs with one CWoLa seed each (pretrain_seed); scratch: three seeds
    rows = [{"mode": m, "lr_schedule": "on", "n_signal": n, "sic": v + 0.01 * s, "seed": s,
             **({"pretrain_seed": s} if m == "finetune" else {})}
            for m, grid in grids.items() for n, v in grid for s in range(3)]
    res = lambda rows: {"mpm.v1_cwola": {"rows": rows, "metas": [{}], "files": ["x"]}}
    (v,) = C.evaluate(res(rows), [claim], published)
    assert v.at == {"n_signal": 1000.0} and v.a == pytest.approx([9.0, 9.01, 9.02]) and v.verdict == "reproduced"
    (v,) = C.evaluate(res([r for r in rows if not (r["mode"] == "scratch" and r["n_signal"] == 1000)]), [claim],
                      published)
    assert v.at == {"n_signal": 1000.0} and v.b == [] and v.verdict == "not measured" and "missing" in v.why


def test_not_worse_is_non_inferiority_with_the_stated_margin():
    """e = -d, the excess of a in the worse direction: reproduced only if e + 2 SE < margin, contradicted if
    e - 2 SE > margin, otherwise inconclusive (was: reproduced unless d < -2 SE, so a noisy run passed)."""
    m = 0.02
    noisy_a, noisy_b = [0.06, 0.10, 0.02], [0.05, 0.09, 0.01]      # e = 0.01, SE ~ 0.033: underpowered
    v, d, se, why = C.decide(noisy_a, noisy_b, "lower", "not_worse", m)
    assert v == "inconclusive" and -d + 2 * se > m and -d - 2 * se < m and "margin 0.02" in why
    # the old rule read this noisy run as "no worse" (d = -0.01 > -2 SE): it no longer passes
    assert d > -2 * se and v != "reproduced"
    tight = [0.050, 0.051, 0.052]
    v, d, se, _ = C.decide(tight, list(tight), "lower", "not_worse", m)   # e = 0, 2 SE ~ 0.0016 < 0.02
    assert v == "reproduced" and d == pytest.approx(0.0)
    v, d, se, why = C.decide([0.20, 0.21, 0.22], tight, "lower", "not_worse", m)   # e ~ 0.16, far beyond 0.02
    assert v == "contradicted" and -d - 2 * se > m and "> margin" in why
    # worse, but by less than the margin, with 2 SE to spare: reproduced (the usual rule would say contradicted)
    slightly = [x + 0.01 for x in tight]
    assert C.decide(slightly, tight, "lower")[0] == "contradicted"
    assert C.decide(slightly, tight, "lower", "not_worse", m)[0] == "reproduced"
    # higher is better: the excess is measured downwards
    assert C.decide([0.70, 0.71, 0.72], [0.80, 0.81, 0.82], "higher", "not_worse", m)[0] == "contradicted"
    assert C.decide(tight[:2], tight, "lower", "not_worse", m)[0] == "inconclusive"  # too few seeds
    with pytest.raises(ValueError, match="margin"):
        C.decide(tight, tight, "lower", "not_worse")


GEN_PUB = {"mpm": {}, "hepjepa": {}, "omnijet": {"gen": {
    "title": "g", "source": "s", "keys": ["observable"], "metrics": ["kl_gen", "kl_floor"], "rows": []}}}
GEN_CLAIM = {"id": "gen", "claim": "close to real", "source": "s", "table": "omnijet.gen", "metric": "kl_gen",
             "better": "lower", "a": {}, "b": {"metric": "kl_floor"}, "test": "not_worse", "margin": 0.02,
             "each": "observable", "replicated": "{n} sampling seeds"}


def _gen_rows(obs, gen=0.050, floor=0.050):
    return [{"observable": o, "seed": s, "kl_gen": gen + 0.001 * s, "kl_floor": floor + 0.001 * s}
            for o in obs for s in range(3)]


def test_each_claim_with_a_value_not_measured_reads_not_measured():
    res = lambda rows, metas=({},): {"omnijet.gen": {"rows": rows, "metas": list(metas), "files": ["x"]}}
    (v,) = C.evaluate(res(_gen_rows(["pt", "mass"])), [GEN_CLAIM], GEN_PUB)
    assert v.verdict == "reproduced" and v.replicated == "3 sampling seeds, 2 observables"
    # one observable holds no floor value: the claim is not measured (was: decided on the others)
    rows = _gen_rows(["pt", "mass"]) + [{"observable": "tau21", "seed": s, "kl_gen": 0.05, "kl_floor": None}
                                         for s in range(3)]
    (v,) = C.evaluate(res(rows), [GEN_CLAIM], GEN_PUB)
    assert v.verdict == "not measured" and "tau21 not measured" in v.why
    # an observable the result file says it wrote but no longer holds: not measured either
    (v,) = C.evaluate(res(_gen_rows(["pt"]), [{"expected_rows": [{"observable": "pt"}, {"observable": "mass"}]}]),
                      [GEN_CLAIM], GEN_PUB)
    assert v.verdict == "not measured" and "mass not measured" in v.why
    # beyond the margin on one observable: contradicted
    (v,) = C.evaluate(res(_gen_rows(["pt"]) + _gen_rows(["mass"], gen=0.2)), [GEN_CLAIM], GEN_PUB)
    assert v.verdict == "contradicted" and v.at["observable"] == "mass"


def test_shipped_not_worse_claims_state_a_margin_with_its_reason():
    claims = C.load_claims()
    nw = [c for c in claims if c.get("test") == "not_worse"]
    assert nw and all(c["margin"] > 0 for c in nw)
    text = C.CLAIMS_PATH.read_text()
    margin_lines = [ln for ln in text.splitlines() if ln.strip().startswith("margin:")]
    assert len(margin_lines) == len(nw) and all("#" in ln and len(ln.split("#", 1)[1].strip()) > 20
                                                for ln in margin_lines)


def test_load_claims_requires_a_margin_for_not_worse(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"claims": [{**CLAIM, "test": "not_worse"}]}))
    with pytest.raises(ValueError, match="needs `margin:`"):
        C.load_claims(p, PUB)
    p.write_text(yaml.safe_dump({"claims": [{**CLAIM, "margin": 0.1}]}))
    with pytest.raises(ValueError, match="only for test: not_worse"):
        C.load_claims(p, PUB)


def test_power_column_says_the_smallest_detectable_difference_and_why_inconclusive():
    # published at n_train=1000: 49.1 vs 39.7, d = 9.4
    def run(fin, scr):
        rows = [{"mode": "finetune", "n_train": 1000, "accuracy": x, "seed": s} for s, x in enumerate(fin)]
        rows += [{"mode": "scratch", "n_train": 1000, "accuracy": x, "seed": s} for s, x in enumerate(scr)]
        (v,) = C.evaluate(_results(rows), [CLAIM], PUB)
        return v
    v = run([40.0, 50.0, 60.0], [35.0, 45.0, 55.0])          # SE ~ 8.2: 2 SE ~ 16 >= 9.4
    assert v.verdict == "inconclusive" and v.published_d == pytest.approx(9.4)
    assert v.power.startswith("2 SE = 16.3 ≥ |published d| 9.4") and v.power.endswith(": underpowered")
    v = run([45.0, 45.5, 46.0], [44.5, 45.0, 45.5])          # d = 0.5, 2 SE ~ 0.82 < 9.4: the effect is smaller here
    assert v.verdict == "inconclusive"
    assert v.power.endswith("< |published d| 9.4: effect at this scale smaller than published")
    v = run([50.0, 50.5, 51.0], [40.0, 40.5, 41.0])          # reproduced: the power is shown, no diagnosis
    assert v.verdict == "reproduced" and v.power == "2 SE = 0.816 < |published d| 9.4"
    text = "\n".join(C.render_claims([v]))
    assert "| power (2 SE: smallest detectable d) |" in text and "| 2 SE = 0.816 < |published d| 9.4 |" in text
    # a not_worse claim holds 2 SE against its margin
    noisy = C.evaluate({"omnijet.gen": {"rows": _gen_rows(["pt"]) + [
        {"observable": "mass", "seed": s, "kl_gen": x, "kl_floor": y}
        for s, (x, y) in enumerate(((0.06, 0.05), (0.10, 0.09), (0.02, 0.01)))], "metas": [{}], "files": ["x"]}},
        [GEN_CLAIM], GEN_PUB)[0]
    assert noisy.verdict == "inconclusive" and noisy.power.endswith("≥ margin 0.02: underpowered")
    assert C.evaluate({}, [CLAIM], PUB)[0].power == "–"


def test_replicate_pretraining_takes_one_value_per_pretraining_run():
    claim = {**CLAIM, "replicate": "pretraining"}
    scratch = [{"mode": "scratch", "n_train": 1000, "accuracy": [0.40, 0.41, 0.42]}]
    one = [{"mode": "finetune", "n_train": 1000, "pretrain_seed": 0, "accuracy": [0.50, 0.51, 0.52]}]
    (v,) = C.evaluate(_results(one + scratch), [claim], PUB)
    # three fine-tuning seeds of one pretraining run are one value: inconclusive, with that reason
    assert v.verdict == "inconclusive" and v.why.startswith(C.ONE_RUN) and v.a == pytest.approx([0.51])
    assert v.b == pytest.approx([0.40, 0.41, 0.42]) and v.replicated == "a: 1 pretraining × 3 seeds; b: 3 seeds (no pretraining)"
    assert C.evaluate(_results(one + scratch), [CLAIM], PUB)[0].verdict == "reproduced"  # the fine-tuning-seed unit
    # rows that do not name their pretraining run are one run
    (v,) = C.evaluate(_results([{k: x for k, x in one[0].items() if k != "pretrain_seed"}] + scratch), [claim], PUB)
    assert v.why.startswith(C.ONE_RUN)
    two = one + [{"mode": "finetune", "n_train": 1000, "pretrain_seed": 1, "accuracy": [0.55, 0.56, 0.57]}]
    (v,) = C.evaluate(_results(two + scratch), [claim], PUB)
    assert v.verdict == "inconclusive" and "fewer than 3 pretraining runs" in v.why
    three = two + [{"mode": "finetune", "n_train": 1000, "pretrain_seed": 2, "accuracy": [0.52, 0.53, 0.54]}]
    (v,) = C.evaluate(_results(three + scratch), [claim], PUB)
    assert v.verdict == "reproduced" and v.a == pytest.approx([0.51, 0.56, 0.53])
    assert v.replicated == "a: 3 pretraining × 3 seeds; b: 3 seeds (no pretraining)"
    text = "\n".join(C.render_claims([v]))
    assert "| a: 3 pretraining × 3 seeds; b: 3 seeds (no pretraining) |" in text


def test_mpmv2_jetclass_claims_are_decided_at_100_per_class():
    """At mini's 10 labelled jets per class every mode sits near chance; the claims are decided at 1000 labelled jets
    (100 per class, the paper's smallest N), never at the run's smallest N (was: n_train min)."""
    published = R.load_published()
    claims = {c["id"]: c for c in C.load_claims(published=published)}
    sides = {"mpmv2_frozen_vs_nobackbone": (("frozen", "regression"), ("frozen", "nobackbone")),
             "mpmv2_finetune_vs_scratch": (("finetune", "regression"), ("finetune", "scratch"))}
    for cid, ((ma, ta), (mb, tb)) in sides.items():
        rows = [{"mode": m, "task": t, "n_train": n, "accuracy": acc + 0.001 * s, "seed": s,
                 **({"pretrain_seed": s} if t == "regression" else {})}  # three pretraining runs, one seed each
                for m, t, grid in ((ma, ta, ((100, 0.12), (1000, 0.30))), (mb, tb, ((100, 0.17), (1000, 0.23))))
                for n, acc in grid for s in range(3)]
        (v,) = C.evaluate({"mpm.v2_jetclass": {"rows": rows, "metas": [{}], "files": ["x"]}}, [claims[cid]],
                          published)
        assert v.at == {"n_train": 1000.0} and v.verdict == "reproduced", cid
        assert "n_train=1000" in v.published


def test_replicated_column_of_a_pretraining_claim_with_a_side_missing():
    claim = {**CLAIM, "replicate": "pretraining"}
    one = [{"mode": "finetune", "n_train": 1000, "pretrain_seed": 0, "accuracy": [0.50, 0.51, 0.52]}]
    (v,) = C.evaluate(_results(one), [claim], PUB)
    assert v.verdict == "not measured" and v.replicated == "1/0 pretraining × 3 probe seeds"
