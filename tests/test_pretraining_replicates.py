"""Claims about a pretrained method are replicated over pretraining runs (claims.yaml `replicate: pretraining`):
the mini and smoke profiles schedule three pretraining runs (seeds 0, 1, 2) behind every such claim and fine-tune
each of them for the claim's study; the tables keep the runs apart (pretrain_seed) and the claim takes one value per
pretraining run."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from common.results import claims as C
from common.results.tables import collect_results, load_published, write_result

ROOT = Path(__file__).resolve().parents[1]
PUB = load_published()

# the steps of the side(s) with pretraining behind each claim replicated over pretraining runs (run_steps.sh names;
# <name>_seed<S> is the same study on pretraining run S)
SIDE_STEPS = {
    "mpmv1_finetune_vs_scratch": [r"mpm/v1_jetclass_finetune"],
    "mpmv1_new_classes": [r"mpm/v1_new_classes_finetune"],
    "mpmv1_new_domain": [r"mpm/v1_new_domain_finetune"],
    "mpmv1_cwola": [r"mpm/v1_cwola_finetune"],
    "mpmv1_targets_vqvae_vs_kmeans": [r"mpm/probe_mpmv1", r"mpm/probe_mpmv1_kmeans"],
    "mpmv1_targets_kmeans_vs_regression": [r"mpm/probe_mpmv1_kmeans", r"mpm/probe_mpmv1_regression"],
    "mpmv1_ape_head_vs_none": [r"mpm/probe_mpmv1", r"mpm/probe_mpmv1_vqvae_nope"],
    "mpmv1_ape_none_vs_backbone": [r"mpm/probe_mpmv1_vqvae_nope", r"mpm/probe_mpmv1_vqvae_backbonepe"],
    "mpmv2_frozen_vs_nobackbone": [r"mpm/v2_jetclass_regression_fixed"],
    "mpmv2_finetune_vs_scratch": [r"mpm/v2_jetclass_regression_finetune"],
    "mpmv2_btag_finetune_vs_scratch": [r"mpm/v2_btag_regression_finetune"],
    "mpmv2_track_origin_frozen_vs_nobackbone": [r"mpm/v2_track_origin_regression_fixed"],
    "mpmv2_vertexing_ari_falls_with_vertices": [r"mpm/v2_vertexing_regression_finetune"],
    "hepjepa_finetune_vs_scratch_smallest": [r"hepjepa/ft_jetclass"],
    "hepjepa_finetune_vs_scratch_second_smallest": [r"hepjepa/ft_jetclass"],
    "hepjepa_convergence": [r"hepjepa/ft_jetclass"],  # each extra run against the scratch run of its seed
    "omnijet_transfer_vs_scratch": [r"omnijet/finetune_finetune"],
}
# no claim is known short in mini or smoke (mini pretrains the positional-encoding rows three times too)
SHORT = {"mini": set(), "smoke": set()}
PRETRAINED = re.compile(r"(?:pretrained\.run|sweep\.pretrained|pretrain_dir)=(\S+?)(?:/checkpoint\.pt)?(?:\s|$)")


def listed_steps(profile: str, tmp_path, *extra: str) -> dict[str, dict]:
    """{method/step: {tables, cmd}} of `run_all.sh --profile <profile> --list [extra options]`."""
    out = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--profile", profile, "--list", "--data-dir",
                          str(tmp_path / "data"), "--out-dir", str(tmp_path / "runs"), "--results-dir",
                          str(tmp_path / "results"), *extra], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    steps, lines = {}, out.splitlines()
    for head, cmd in zip(lines[1::2], lines[2::2]):
        _, _, name, tables = head.split()[:4]
        steps[name] = {"tables": tables.removeprefix("tables=").split(","), "cmd": cmd.strip()}
    return steps


def pretraining_runs(steps: dict, pattern: str) -> dict[str, int | None]:
    """{pretraining folder: its seed} behind the steps named pattern or pattern_seed<S>; the folder must be the --out
    of a scheduled step (seed: its seed=S override, None = the config's)."""
    outs = {}
    for name, s in steps.items():
        m = re.search(r"--out (\S+)", s["cmd"])
        if m:
            outs[m.group(1).strip("'\"")] = s["cmd"]
    runs = {}
    for name, s in steps.items():
        if not re.fullmatch(pattern + r"(_seed[0-9]+)?", name):
            continue
        m = PRETRAINED.search(s["cmd"])
        assert m, f"{name}: no pretraining run in its command"
        folder = m.group(1).strip("'\"")
        assert folder in outs, f"{name} reads {folder}, which no scheduled step writes"
        seed = re.search(r"(?:^|\s)seed=([0-9]+)", outs[folder])
        runs[folder] = int(seed.group(1)) if seed else None
    return runs


# mini's default run leaves MPMv1's pretraining-table rows other than mpmv1 to --table mpm.v1_pretraining, and the
# new-classes study to --table mpm.v1_new_classes (the 2-hour budget)
ASKED = {"mpm.v1_pretraining": {"mpmv1_targets_vqvae_vs_kmeans", "mpmv1_targets_kmeans_vs_regression",
                                "mpmv1_ape_head_vs_none", "mpmv1_ape_none_vs_backbone"},
         "mpm.v1_new_classes": {"mpmv1_new_classes"}}


@pytest.mark.parametrize("profile,extra,expect", [("mini", (), 12), ("mini", ("--table", "mpm.v1_pretraining"), 4),
                                                  ("mini", ("--table", "mpm.v1_new_classes"), 1), ("smoke", (), 9)])
def test_every_pretraining_claim_has_three_pretraining_runs_scheduled(profile, extra, expect, tmp_path):
    steps = listed_steps(profile, tmp_path, *extra)
    claims = [c for c in C.load_claims(published=PUB) if c.get("replicate") == "pretraining"]
    assert {c["id"] for c in claims} == set(SIDE_STEPS), "a claim replicated over pretraining runs needs its steps here"
    checked = 0
    for c in claims:
        sides = [pretraining_runs(steps, p) for p in SIDE_STEPS[c["id"]]]
        if any(not runs for runs in sides):
            continue  # a study this profile does not run (e.g. smoke: no K-means tokeniser): not measured
        if c["id"] in SHORT[profile]:  # known short: one side with one pretraining run
            assert min(len(runs) for runs in sides) == 1, (profile, c["id"], sides)
            continue
        for p, runs in zip(SIDE_STEPS[c["id"]], sides):
            # seed 0 (the config's) in the run folder, seeds 1 and 2 in <folder>_seed<S>
            assert sorted(v or 0 for v in runs.values()) == [0, 1, 2], (profile, c["id"], p, runs)
        checked += 1
    # smoke: no CWoLa fine-tuning, 6-class, frozen MPMv2 study; mini: the four MPMv1 pretraining-table claims only
    # with --table mpm.v1_pretraining, which schedules them (and the probe of mpmv1 the other claims share) alone
    assert checked == expect
    if profile == "mini":
        measured = {c["id"] for c in claims if all(pretraining_runs(steps, p) for p in SIDE_STEPS[c["id"]])}
        asked = set().union(*ASKED.values())
        assert measured == ASKED[extra[1]] if extra else not measured & asked


def test_paper_keeps_one_pretraining_run_per_claim(tmp_path):
    steps = listed_steps("paper", tmp_path)
    assert not [n for n in steps if re.search(r"_seed[0-9]+$", n) and not n.startswith("omnijet/tokenizer")]
    assert len(pretraining_runs(steps, r"mpm/v1_jetclass_finetune")) == 1


@pytest.mark.parametrize("profile,runs", [("paper", 3), ("mini", 1), ("mini", 4)])
def test_pretrain_runs_option_sets_the_pretraining_runs_behind_every_claim(profile, runs, tmp_path):
    """--pretrain-runs N: seeds 0..N-1 behind every claim replicated over pretraining runs (the paper profile can
    decide them when a user pays for the runs; mini can be cut to one)."""
    steps = listed_steps(profile, tmp_path, "--pretrain-runs", str(runs))
    for c in C.load_claims(published=PUB):
        if c.get("replicate") != "pretraining" or c["id"] in SHORT["mini"]:
            continue
        for p in SIDE_STEPS[c["id"]]:
            found = pretraining_runs(steps, p)
            if found:
                assert sorted(v or 0 for v in found.values()) == list(range(runs)), (c["id"], p, found)


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if path.suffix == ".json" else yaml.safe_dump(obj))


def _ft(d, pre, seeds, mode, accs):
    _write(d / "config.yaml", {"pretrained": {"run": str(pre) if pre else None},
                               "finetune": {"seeds": seeds, "mode": mode},
                               "data": {"dataset": "jetclass", "root": "x", "classes": None}})
    _write(d / "summary.json", {"per_n": {"10": {"accuracy": {"values": accs}}}})
    _write(d / "n10" / "seed0" / "result.json", {"class_names": [f"c{i}" for i in range(10)]})


def test_three_pretraining_runs_with_one_finetuning_seed_each_give_three_values(tmp_path):
    """mpm/tables.py reads v1_jetclass/finetune (pretraining seed 0, fine-tuning seeds 0-2) and finetune_seed<S>
    (pretraining run S, one fine-tuning seed S): the result file validates (each value matches its seed), and
    mpmv1_finetune_vs_scratch is decided from 3 values a side: one per pretraining run (not 5 pooled seeds, not 1)
    against scratch's 3 seeds."""
    from mpm.tables import collect, write_table
    pre = tmp_path / "pretrain"
    for s in range(3):
        _write(pre / ("mpmv1" + ("" if s == 0 else f"_seed{s}")) / "config.yaml",
               {"method": "mpmv1", "seed": s, "train": {"steps": 10, "batch_size": 4}})
    _ft(tmp_path / "v1_jetclass" / "finetune", pre / "mpmv1", [0, 1, 2], "finetune", [0.30, 0.32, 0.34])
    _ft(tmp_path / "v1_jetclass" / "finetune_seed1", pre / "mpmv1_seed1", [1], "finetune", [0.36])
    _ft(tmp_path / "v1_jetclass" / "finetune_seed2", pre / "mpmv1_seed2", [2], "finetune", [0.35])
    _ft(tmp_path / "v1_jetclass" / "scratch", None, [0, 1, 2], "scratch", [0.20, 0.22, 0.21])
    rows, meta = collect(tmp_path, "mini")["mpm.v1_jetclass"]
    write_table(tmp_path / "tables", "mpm.v1_jetclass", rows, meta)  # validates: values match seeds one to one
    res = collect_results(tmp_path / "tables", PUB)
    assert sorted((r.get("pretrain_seed"), r.get("seed")) for r in res["mpm.v1_jetclass"]["rows"]
                  if r["mode"] == "finetune") == [(0, None), (1, 1), (2, 2)]
    claim = next(c for c in C.load_claims(published=PUB) if c["id"] == "mpmv1_finetune_vs_scratch")
    (v,) = C.evaluate(res, [claim], PUB)
    assert v.a == pytest.approx([32.0, 36.0, 35.0]) and v.b == pytest.approx([20.0, 22.0, 21.0])
    assert v.verdict == "reproduced"
    assert v.replicated == "a: 3 pretraining runs × 1-3 fine-tuning seeds; b: 3 seeds (no pretraining)"
    # the seed-0 run alone: one pretraining run, inconclusive with that reason, whatever its three seeds say
    only = {"mpm.v1_jetclass": {**res["mpm.v1_jetclass"], "rows": [r for r in res["mpm.v1_jetclass"]["rows"]
                                                                   if r.get("pretrain_seed") in (0, None)]}}
    (v,) = C.evaluate(only, [claim], PUB)
    assert v.verdict == "inconclusive" and v.why.startswith(C.ONE_RUN) and v.a == pytest.approx([32.0])


def test_two_pretraining_runs_in_two_files_are_two_cells(tmp_path):
    """BTag steps write their own result files (mpm/btag/sweep.py): the same cell and fine-tuning seed from two
    pretraining runs is two replicates (pretrain_seed), the same pretraining run twice is refused."""
    def write(folder, pseed, accs):
        write_result(tmp_path / folder / "mpm.v2_btag.json", "mpm.v2_btag",
                     [{"mode": "finetune", "task": "regression", "n_train": 100, "accuracy": accs,
                       "pretrain_seed": pseed}], {"profile": "mini", "seeds": [0], "extra_fields": ["pretrain_seed"]})
    write("a", 0, [0.5])
    write("b", 1, [0.6])
    res = collect_results(tmp_path, PUB)
    assert sorted(r["pretrain_seed"] for r in res["mpm.v2_btag"]["rows"]) == [0, 1]
    write("c", 1, [0.6])
    problems = []
    assert "mpm.v2_btag" not in collect_results(tmp_path, PUB, problems) and "also in" in problems[0][2]


# "Which pretraining?" (common/results/compare.py): smoke runs MPMv2's set-to-set flow matching once (no claim, no
# extra pretraining runs; its verdicts read "1 pretraining run")
EMBED_SHORT = {"mini": set(), "smoke": {"mpm/MPMv2 (ssfm)"}}


def embed_backbones(steps: dict) -> dict[str, dict]:
    """{method/row name: {"pretrained": {pretraining seed: subset seeds (None: all)}, "random": n steps}} of the
    embed steps (tables compare.which_pretraining) of a `run_all.sh --list`; a pretraining folder's seed is its
    writer step's seed=S (None, the config's: 0)."""
    import shlex

    outs = {}
    for s in steps.values():
        m = re.search(r"--out (\S+)", s["cmd"])
        if m:
            outs[m.group(1).strip("'\"")] = s["cmd"]
    found: dict[str, dict] = {}
    for name, s in steps.items():
        if "compare.which_pretraining" not in s["tables"] or "/embed" not in name:
            continue
        words = shlex.split(s["cmd"])
        row = f"{name.split('/')[0]}/{words[words.index('--name') + 1]}"
        b = found.setdefault(row, {"pretrained": {}, "random": 0})
        if "--random-init" in words:
            assert "--subset-seeds" not in words, f"{name}: a random init is built once per subset seed"
            b["random"] += 1
            continue
        m = PRETRAINED.search(s["cmd"])
        assert m, f"{name}: no pretraining run in its command"
        folder = m.group(1).strip("'\"")
        assert folder in outs, f"{name} reads {folder}, which no scheduled step writes"
        seed = re.search(r"(?:^|\s)seed=([0-9]+)", outs[folder])
        pseed = int(seed.group(1)) if seed else 0
        assert pseed not in b["pretrained"], f"{name}: pretraining run {folder} embedded twice"
        sub = words[words.index("--subset-seeds") + 1] if "--subset-seeds" in words else None
        b["pretrained"][pseed] = [int(x) for x in sub.split(",")] if sub else None
    return found


@pytest.mark.parametrize("profile", ["mini", "smoke"])
def test_every_pretrained_embed_backbone_has_three_pretraining_runs(profile, tmp_path):
    """Each pretrained row of "Which pretraining?" is replicated over pretraining runs: embed steps for the runs of
    seeds 0, 1, 2 under one row name, the extra run S with subset seed S only, one random init (every subset seed)."""
    found = embed_backbones(listed_steps(profile, tmp_path))
    assert len(found) == (4 if profile == "mini" else 5), found  # MPMv1, MPMv2, OmniJet-α GPT, HEP-JEPA (+ SSFM)
    for name, b in found.items():
        assert b["random"] == 1, (profile, name, b)
        if name in EMBED_SHORT[profile]:
            assert b["pretrained"] == {0: None}, (profile, name, b)
            continue
        assert b["pretrained"] == {0: None, 1: [1], 2: [2]}, (profile, name, b)


def test_paper_embeds_one_pretraining_run_per_backbone(tmp_path):
    found = embed_backbones(listed_steps("paper", tmp_path))
    assert found and all(b["pretrained"] == {0: None} and b["random"] == 1 for b in found.values()), found
