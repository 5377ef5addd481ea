"""OmniJet-alpha results tables, laid out like the paper's, with the published numbers beside ours.

    python -m omnijet.tables --runs runs/mini/omnijet --out runs/mini/omnijet/tables --profile mini

Collects what the evaluation steps wrote under --runs and writes one result file per table through
common.results.tables.write_result (<out>/<table_id>.json) plus a Markdown rendering (<out>/<table_id>.md):
  omnijet.token_quality    token_quality/metrics.json     resolutions and codebook utilisation per tokeniser
  omnijet.generation       eval_generation/metrics.json   KL and W1 of generated vs tokenised+reconstructed jets
  omnijet.classification   finetune/**/result.json        top vs QCD vs labelled jets per class, per mode
                                                          (the paper-era class-attention head; the summation
                                                          head, when run, goes to omnijet.classification_sum)
A table whose inputs are missing is skipped with a message (RESULTS.md then flags it as not produced).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import cli
from common.results.tables import (CLASSIFIER_DISABLED, NO_BACKGROUND_PASSES, NO_CODEBOOK, NO_FINITE_DIFFERENCE,
                                   TOO_FEW_TOP_QCD, json_metric, non_finite_note, read_json, write_table)

TOKEN_METRICS = ("particle_pt_resolution", "etaphi_resolution", "eta_resolution", "phi_resolution",
                 "jet_mass_resolution", "jet_pt_resolution", "tau21_resolution", "tau32_resolution",
                 "codebook_utilisation")
CLASS_METRICS = ("accuracy", "auc", "rejection_30", "rejection_50")
MAIN_HEAD = "class_attention_oj"  # the head of the paper-era config (omnijet/configs/finetune.yaml `head`)


def _config_value(run_dir: Path, dotted: str):
    import yaml

    cfg_path = run_dir / "config.yaml"
    node = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _data_meta(run_dir: Path) -> str:
    data = _config_value(run_dir, "data") or {}
    return f"{data.get('dataset', '?')} at {data.get('root', '?')}"


def token_quality_table(runs: Path, profile: str):
    source = runs / "token_quality" / "metrics.json"
    res = read_json(source, "token-quality metrics")
    if res is None:
        return None
    rows = [{"tokenisation": r["tokenisation"], "num_tokens": r["num_tokens"], "seed": r.get("seed"),
             **{m: non_finite_note(json_metric(r, m), NO_FINITE_DIFFERENCE) for m in TOKEN_METRICS},
             "accuracy_reco": r.get("accuracy_reco")} for r in res["rows"]]
    for r in rows:
        if r["tokenisation"] == "original":
            r["codebook_utilisation"] = NO_CODEBOOK
        if r["accuracy_reco"] is None:
            r["accuracy_reco"] = CLASSIFIER_DISABLED
    meta = {"profile": profile, "dataset": _data_meta(runs / "token_quality"), "sources": [source],
            "extra_fields": ["eta_resolution", "phi_resolution"],  # kept beside the paper's combined eta-phi one
            "seeds": sorted({r["seed"] for r in rows if r["seed"] is not None}),
            "scale": f"{res['n_jets']} test jets (>= 3 constituents); tokenisers trained "
                     f"{_tokenizer_steps(runs, res['rows'])}",
            "notes": "Resolutions are std(reco - original) of real particles (in pT order) and jets; accuracy_reco = "
                     "test accuracy of a DeepSets classifier trained and tested on (reconstructed) constituents of "
                     "all classes of the data" + (f" ({res['classifier']})" if res.get("classifier") else "") + "."}
    return rows, meta


def _tokenizer_steps(runs: Path, rows) -> str:
    parts = []
    for r in rows:
        if r["run"] is None:
            continue
        done = read_json(runs / r["run"] / "done.json", "tokeniser done.json") or {}
        parts.append(f"{r['run']}: {done.get('steps', '?')} steps of batch {_config_value(runs / r['run'], 'train.batch_size')}")
    return "; ".join(parts)


def generation_table(runs: Path, profile: str):
    source = runs / "eval_generation" / "metrics.json"
    res = read_json(source, "generation metrics")
    if res is None:
        return None
    floor = res["reference_half_vs_half"]
    rows = []
    for i, r in enumerate(res["per_seed"]):  # one row per (observable, sampling seed): the seeds of a cell
        for name, m in r["generated_vs_reference"].items():
            rows.append({"observable": name, "seed": r["seed"], "kl_divergence": m["kl_divergence"], "w1": m["w1"],
                         "fraction_outside_reference": m.get("fraction_outside_reference"),
                         "kl_top_vs_qcd": non_finite_note(json_metric(r["kl_top_vs_qcd"], name), TOO_FEW_TOP_QCD),
                         # per seed: KL(half A || half B) and KL(half A || generated) at the same sizes
                         "kl_reference_halves": _kl(r, "half_vs_half", name, floor if i == 0 else None),
                         "kl_generated_vs_half": _kl(r, "generated_vs_half", name, None),
                         "w1_reference_halves": floor[name]["w1"] if i == 0 else None})
    pre = read_json(runs / "pretrain" / "done.json", "pretraining done.json") or {}
    r0 = res["per_seed"][0]
    meta = {"profile": profile, "dataset": _data_meta(runs / "eval_generation"), "sources": [source],
            "extra_fields": ["w1_reference_halves"], "seeds": [r["seed"] for r in res["per_seed"]],
            "scale": f"{r0['n_generated_jets']} generated jets per sampling seed vs {res['n_reference_jets']} "
                     f"tokenised+reconstructed test jets; GPT trained {pre.get('steps', '?')} steps "
                     f"({pre.get('jets_seen', '?')} jets seen)",
            "class_order": ["QCD", "Tbqq"],
            "notes": f"KL quantile-binned with {res['n_bins']} edges; kl_reference_halves = KL(half A || half B) "
                     f"of the reference split at random per seed, kl_generated_vs_half = KL(half A || as many "
                     f"generated jets as B holds): the statistical floor at equal sample sizes and the generated "
                     f"jets on the same footing ({r0.get('n_half_jets', '?')} vs {r0.get('n_compared_jets', '?')} "
                     f"jets); w1_reference_halves: one split; kl_top_vs_qcd = KL(QCD || top) of the reference jets, each seed on its own disjoint "
                     f"subset (about {r0['n_qcd_jets']} QCD and {r0['n_top_jets']} top jets)."}
    return rows, meta


def _kl(seed_result: dict, part: str, name: str, fallback: dict | None):
    """KL of one observable from a seed's `part` (generated_vs_half, half_vs_half); a metrics.json written before
    these existed gives the one reference split (fallback) or nothing."""
    if part in seed_result and name in seed_result[part]:
        return seed_result[part][name]["kl_divergence"]
    return fallback[name]["kl_divergence"] if fallback and name in fallback else None


def _run_config_dir(path: Path) -> Path:
    """The fine-tuning step directory (holding config.yaml) above a per-N, per-seed result."""
    for parent in path.parents:
        if (parent / "config.yaml").is_file():
            return parent
    return path.parent


def classification_tables(runs: Path, profile: str) -> dict[str, tuple]:
    tables: dict[str, tuple[list, dict]] = {}
    pretrain_seed = _config_value(runs / "pretrain", "seed")
    for path in sorted((runs / "finetune").glob("**/result.json")):
        result = read_json(path, "fine-tuning result")
        head = ((result.get("finetune") or {}).get("head") or {}).get("kind", MAIN_HEAD)
        table_id = "omnijet.classification" if head == MAIN_HEAD else f"omnijet.classification_{head}"
        row = {"mode": result["mode"], "n_per_class": result["n_per_class"], "seed": result["seed"],
               **{m: non_finite_note(json_metric(result.get("test") or {}, m), NO_BACKGROUND_PASSES)
                  for m in CLASS_METRICS}}
        step_dir = _run_config_dir(path)
        rows, meta = tables.setdefault(table_id, ([], {"profile": profile, "dataset": _data_meta(step_dir),
                                                       "class_order": result.get("class_names"), "seeds": [],
                                                       "keys": ["mode", "n_per_class"],
                                                       "metrics": list(CLASS_METRICS), "_test": set(),
                                                       "sources": [], "extra_fields": ["pretrain_seed"]}))
        # the pretraining run behind the row (claims.py, replicate: pretraining): the GPT its step fine-tuned
        # (pretrain_dir; finetune/finetune_seed<S> fine-tunes pretrain_seed<S>), else runs/pretrain
        pdir = _config_value(step_dir, "pretrain_dir")
        seed = _config_value(Path(pdir), "seed") if pdir and (Path(pdir) / "config.yaml").is_file() else pretrain_seed
        if row["mode"] != "scratch" and seed is not None:
            row["pretrain_seed"] = seed
        rows.append(row)
        meta["sources"].append(path)
        meta["_test"].add(result.get("n_test_jets"))
        if row["seed"] not in meta["seeds"]:
            meta["seeds"].append(row["seed"])
    pre = read_json(runs / "pretrain" / "done.json", "pretraining done.json") or {}
    order = {"scratch": 0, "fixed": 1, "finetune": 2}
    for table_id, (rows, meta) in tables.items():
        rows.sort(key=lambda r: (order.get(r["mode"], 3), r["n_per_class"] or 0, r["seed"] or 0))
        n_test = sorted(x for x in meta.pop("_test") if x is not None)
        head = table_id.split("classification_", 1)[1] if "classification_" in table_id else MAIN_HEAD
        meta["scale"] = (f"labelled jets per class {sorted({r['n_per_class'] for r in rows if r['n_per_class']})}, "
                         f"{n_test} test jets, head '{head}'; backbone pretrained {pre.get('steps', '?')} steps "
                         f"({pre.get('jets_seen', '?')} jets seen)")
    return tables


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", required=True, help="the omnijet output directory of a run_all profile")
    p.add_argument("--out", required=True, help="where the table files go")
    p.add_argument("--profile", default="mini")
    args = p.parse_args(argv)
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    produced = {"omnijet.token_quality": token_quality_table(runs, args.profile),
                "omnijet.generation": generation_table(runs, args.profile),
                **classification_tables(runs, args.profile)}
    for table_id, content in produced.items():
        if content is None:
            print(f"{table_id}: inputs not found under {runs}, skipped")
            continue
        rows, meta = content
        print(write_table(out, table_id, rows, meta))
    if "omnijet.classification" not in produced:
        print(f"omnijet.classification: no finetune/**/result.json under {runs}, skipped")


if __name__ == "__main__":
    cli(main)
