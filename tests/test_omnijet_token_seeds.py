"""OmniJet-alpha token-quality claims get three seeds in mini: run_steps.sh trains the compared tokenisers with seeds
0, 1, 2, token_quality lists every run, and the table rows of one tokeniser merge into its per-seed values."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from common.results import claims as C
from common.results.tables import load_published
from common.training.config import load_config

from omnijet import tables


def _listed_steps(repo_root, profile, *extra):
    res = subprocess.run(["bash", "run_all.sh", "--list", "--only", "omnijet", "--profile", profile,
                          "--data-dir", "/nonexistent", "--out-dir", "/nonexistent/runs", *extra],
                         cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    steps = {}
    for i, line in enumerate(lines):
        m = re.match(r"\s*\d+\s+\S+\s+omnijet/(\S+)", line)
        if m:
            steps[m.group(1)] = lines[i + 1].strip()
    return steps


def test_mini_trains_the_claims_tokenisers_with_three_seeds_and_token_quality_reads_them(repo_root):
    steps = _listed_steps(repo_root, "mini")
    tq = load_config(repo_root / "omnijet/configs/mini/token_quality.yaml")["tokenizers"]
    trained = {s for s in steps if s.startswith("tokenizer")}
    assert trained == set(tq)
    assert load_config(repo_root / "omnijet/configs/mini/tokenizer.yaml")["seed"] == 0  # seed 0 of 0, 1, 2
    for name in ("tokenizer", "tokenizer_128", "tokenizer_2048", "tokenizer_mlp"):
        assert load_config(repo_root / f"omnijet/configs/mini/{name}.yaml")["seed"] == 0
        for s in (1, 2):
            cmd = steps[f"{name}_seed{s}"]
            assert f"configs/mini/{name}.yaml" in cmd and cmd.endswith(f"seed={s}"), cmd
    # the binned baseline once; the GPT's tokeniser (512 codes, the MLP's size: the equal-size pair) three times, the
    # GPT itself built on seed 0's
    assert not any(s.startswith("tokenizer_binned_seed") for s in steps)
    assert load_config(repo_root / "omnijet/configs/mini/tokenizer_mlp.yaml")["model"]["vq"]["num_codes"] == \
        load_config(repo_root / "omnijet/configs/mini/tokenizer.yaml")["model"]["vq"]["num_codes"] == 512
    assert "tokenizer_dir=/nonexistent/runs/omnijet/tokenizer" in steps["pretrain"].replace("\\", "")
    # smoke: one seed each tokeniser (its GPT: three pretraining runs on that one tokeniser, for the transfer claim and
    # the GPT's row of "Which pretraining?")
    smoke = _listed_steps(repo_root, "smoke")
    assert not any(s.startswith("tokenizer") and "_seed" in s for s in smoke)
    assert sorted(s for s in smoke if "_seed" in s) == ["embed_gpt_pretrained_seed1", "embed_gpt_pretrained_seed2",
                                                        "finetune_finetune_seed1", "finetune_finetune_seed2",
                                                        "pretrain_seed1", "pretrain_seed2"]


def _row(run, kind, n, seed, pt_res, mass_res):
    return {"run": run, "tokenisation": kind, "num_tokens": n, "seed": seed, "particle_pt_resolution": pt_res,
            "jet_mass_resolution": mass_res, "codebook_utilisation": 0.5}


def test_token_quality_rows_merge_into_per_seed_values_and_decide_the_claims(tmp_path):
    rows = [_row("tokenizer_128" + ("" if s == 0 else f"_seed{s}"), "conditional_vqvae", 128, s, 2.0 + 0.1 * s, 9.0)
            for s in range(3)]
    rows += [_row("tokenizer_2048" + ("" if s == 0 else f"_seed{s}"), "conditional_vqvae", 2048, s, 1.0 + 0.1 * s,
                  5.0 + 0.1 * s) for s in range(3)]
    rows += [_row("tokenizer" + ("" if s == 0 else f"_seed{s}"), "conditional_vqvae", 512, s, 1.5, 6.0 + 0.1 * s)
             for s in range(3)]
    rows += [_row("tokenizer_mlp" + ("" if s == 0 else f"_seed{s}"), "unconditional_vqvae", 512, s, 1.5, 8.0 + 0.2 * s)
             for s in range(3)]
    rows += [_row("tokenizer_binned", "binned", 512, 0, 3.0, 20.0)]
    (tmp_path / "token_quality").mkdir()
    (tmp_path / "token_quality" / "metrics.json").write_text(json.dumps({"rows": rows, "n_jets": 100}))
    table_rows, meta = tables.token_quality_table(tmp_path, "mini")
    assert [r["seed"] for r in table_rows] == [0, 1, 2] * 4 + [0] and meta["seeds"] == [0, 1, 2]

    published = load_published()
    claims = {c["id"]: c for c in C.load_claims(published=published)}
    res = {"omnijet.token_quality": {"rows": table_rows, "metas": [meta], "files": ["x"]}}
    size, cond = C.evaluate(res, [claims["omnijet_codebook_size"], claims["omnijet_conditional_vs_unconditional"]],
                            published)
    assert size.a == pytest.approx([1.0, 1.1, 1.2]) and size.b == pytest.approx([2.0, 2.1, 2.2])
    assert size.verdict == "reproduced"
    # equal codebook size (was: the 2048-code conditional run against the 512-code MLP): the 512-code pair
    assert cond.at == {"num_tokens": 512.0}
    assert cond.a == pytest.approx([6.0, 6.1, 6.2]) and cond.b == pytest.approx([8.0, 8.2, 8.4])
    assert cond.verdict == "reproduced" and cond.replicated == "3 tokeniser runs"
    # without a conditional run of the MLP's size the claim is not measured, never moved to another size
    res["omnijet.token_quality"]["rows"] = [r for r in table_rows if not (r["tokenisation"] == "conditional_vqvae"
                                                                          and r["num_tokens"] == 512)]
    (cond,) = C.evaluate(res, [claims["omnijet_conditional_vs_unconditional"]], published)
    assert cond.verdict == "not measured"


def test_mini_finetune_compares_scratch_and_finetune_over_three_seeds_and_runs_the_rest_once(repo_root):
    steps = _listed_steps(repo_root, "mini")
    assert load_config(repo_root / "omnijet/configs/mini/finetune.yaml")["finetune"]["seeds"] == [0, 1, 2]
    for mode in ("scratch", "finetune"):
        assert "finetune.seeds" not in steps[f"finetune_{mode}"]
    assert steps["finetune_fixed"].replace("\\", "").endswith("finetune.seeds=[0]")  # no claim compares it
    # the summation head (no claim) runs in mini only when its table is asked for (the 2-hour default run)
    assert "finetune_sum" not in steps
    asked = _listed_steps(repo_root, "mini", "--table", "omnijet.classification_sum")
    assert asked["finetune_sum"].replace("\\", "").endswith("finetune.seeds=[0]"), asked["finetune_sum"]
