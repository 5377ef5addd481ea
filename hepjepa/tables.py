"""HEP-JEPA results tables laid out like the paper's (published numbers beside ours via common.results.tables).

    python -m hepjepa.tables --runs runs/mini/hepjepa --out runs/mini/hepjepa/tables --profile mini

Reads the summary.json files that hepjepa.finetune wrote under --runs:
  ft_jetclass/              -> hepjepa.jetclass_fewshot   (mode x label %, accuracy; AUC kept as an extra column)
  ft_jetclass_seed<S>/      -> the same table's fine-tuned rows on the extra pretraining run pretrain_seed<S> (one seed)
  ft_jetclass/<mode>/pct0.5 -> hepjepa.convergence    (per seed: fine-tuning steps until the val loss reaches the
                               scratch run's minimum, Figure 2; hepjepa/convergence.py); ft_jetclass_seed<S>'s
                               fine-tuned runs against the scratch run of the same seed, one value per pretraining run
  ft_top/, ft_qg/           -> hepjepa.top_tagging, hepjepa.quark_gluon (accuracy, AUC, 1/eps_B at 50 % and 30 %)
  probe/probe.json          -> hepjepa.linear_probe (frozen pretrained encoder vs random init with BatchNorm
                               statistics set, linear probe per seed; the notes carry the last logged shortcut
                               monitors of pretrain/log.jsonl)
  shortcut/<arm>/seed<S>/   -> hepjepa.ablation_shortcut (per arm: probe/probe.json, fewshot/summary.json and the
                               last logged between-jet share of pretrain/log.jsonl, a list over seeds)
  ablation/<name>/probe/    -> hepjepa.ablation_*  (each ablation run is matched to the table of the one switch in
                               which its config differs from ablation/base; the base run gives the reference row;
                               hepjepa.ablation_patching is ours, not one of the paper's ablations)
and the pretraining run (pretrain/) for the scale line. Writes <out>/<table_id>.json (common.results.tables.write_result) and
<out>/hepjepa.md (all tables rendered).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from common.atomic import write_text
from common.cli import cli
from common.results.tables import merge_seed_runs, read_json, render_table, write_result

from .convergence import FIGURE2_PERCENT, convergence_rows

MODE_NAMES = {"fixed": "frozen", "finetune": "finetune", "scratch": "scratch"}  # harness name -> paper wording
METRICS = ("accuracy", "auc", "rejection_50", "rejection_30")

# ablation table -> (key column, function of the resolved config giving that column's value)
ABLATIONS = {
    "hepjepa.ablation_masking": ("masking", lambda c: c["masking"]["strategy"]),
    "hepjepa.ablation_num_targets": ("num_targets", lambda c: int(c["masking"]["num_targets"])),
    "hepjepa.ablation_physics_bias": ("physics_bias", lambda c: "on" if c["model"]["physics_bias"] else "off"),
    "hepjepa.ablation_registers": ("registers", lambda c: "on" if int(c["model"]["num_registers"]) > 0 else "off"),
    "hepjepa.ablation_augmentations": ("augmentations", lambda c: "on" if c["augment"]["enabled"] else "off"),
    "hepjepa.ablation_patching": ("patching", lambda c: patching_label(c["model"])),
}
# ablation tables of ours, with no published counterpart (common.results.tables renders them from these fields)
KIT_TABLES = {"hepjepa.ablation_patching": {"title": "HEP-JEPA ablation (ours): patches G x members K",
                                            "keys": ["patching"], "metrics": ["accuracy", "auc"]}}


def patching_label(model: dict) -> str:
    """'G=16, K=16' for fixed-size patches, 'G=16, K=ceil(1.5 n/G)' when the patch size follows the jet."""
    G, K, c = model["num_patches"], model["group_size"], model["patch_coverage"]
    return f"G={G}, K={K}" if c is None else f"G={G}, K=ceil({c:g} n/G) <= {K}"


def _read(path: Path):
    return read_json(path, "fine-tuning summary")


def _pretrain_scale(runs: Path, name: str = "pretrain") -> str:
    cfg_path = runs / name / "config.yaml"
    if not cfg_path.is_file():
        return "pretraining run not found"
    cfg = yaml.safe_load(cfg_path.read_text())
    t = cfg["train"]
    return (f"pretrained {t['steps']} steps x {t['batch_size']} jets on {cfg['data']['dataset']} "
            f"({cfg['data']['root']}), d={cfg['model']['dim']}, depth {cfg['model']['depth']}")


def _pretrain_dir(runs: Path, folder: Path | None) -> Path:
    """The pretraining run behind a fine-tuning folder: the folder of its config's sweep.pretrained checkpoint
    (ft_jetclass_seed<S> fine-tunes pretrain_seed<S>), else runs/pretrain."""
    cfg_path = folder / "config.yaml" if folder is not None else None
    if cfg_path is not None and cfg_path.is_file():
        ckpt = ((yaml.safe_load(cfg_path.read_text()) or {}).get("sweep") or {}).get("pretrained")
        if ckpt and (Path(ckpt).parent / "config.yaml").is_file():
            return Path(ckpt).parent
    return runs / "pretrain"


def with_pretraining_run(rows: list[dict], runs: Path, key: str = "mode", folder: Path | None = None) -> list[dict]:
    """Rows of a run on the pretrained backbone (every `key` value but scratch) carry `pretrain_seed`, the seed of the
    pretraining run behind them (the config.yaml of the run that folder's sweep.pretrained names, else
    runs/pretrain/config.yaml), so that a claim replicated over pretraining runs (common/results/claims.py,
    `replicate: pretraining`) can take one value per run; scratch rows carry none."""
    cfg_path = _pretrain_dir(runs, folder) / "config.yaml"
    seed = (yaml.safe_load(cfg_path.read_text()) or {}).get("seed") if cfg_path.is_file() else None
    if seed is not None:
        for r in rows:
            if r.get(key) != "scratch":
                r["pretrain_seed"] = seed
    return rows


def _meta(summary: dict, profile: str, scale: str, notes: str = "", sources: list | None = None,
          extra_fields: list | None = None) -> dict:
    """sources: the summary.json files the rows come from (the report refuses the table when one changes);
    extra_fields: columns kept in the rows beyond the table's keys and metrics."""
    n_train = summary["rows"][0]["n_train_total"] if summary["rows"] else None
    return {"profile": profile, "dataset": summary["dataset"], "class_order": summary["class_names"],
            "seeds": summary["seeds"], "scale": f"{scale}; fine-tuning pool {n_train} labelled jets (100 %)",
            "notes": notes, "sources": list(sources or []), "extra_fields": list(extra_fields or [])}


def _metric_cols(row: dict) -> dict:
    return {m: row.get(m) for m in METRICS if m in row}


def fewshot_rows(summary: dict) -> list[dict]:
    return [{"mode": MODE_NAMES[r["mode"]], "label_percent": r["label_percent"], "n_per_class": r["n_per_class"],
             **_metric_cols(r)} for r in summary["rows"]]


def transfer_rows(summary: dict) -> list[dict]:
    return [{"model": MODE_NAMES[r["mode"]], **_metric_cols(r)} for r in summary["rows"]]


def ablation_tables(runs: Path) -> dict[str, list[dict]]:
    """{table_id: rows} from ablation/<name>/probe/{summary.json, config.yaml}; rows carry the probe accuracy."""
    root = runs / "ablation"
    base_cfg_path = root / "base" / "probe" / "config.yaml"
    if not base_cfg_path.is_file():
        return {}
    base_cfg = yaml.safe_load(base_cfg_path.read_text())
    out: dict[str, list[dict]] = {t: [] for t in ABLATIONS}
    for probe in sorted(root.glob("*/probe")):
        summary, cfg_path = _read(probe / "summary.json"), probe / "config.yaml"
        if summary is None or not cfg_path.is_file():
            continue
        cfg = yaml.safe_load(cfg_path.read_text())
        r = summary["rows"][0]
        for table, (key, value) in ABLATIONS.items():
            others = [t for t in ABLATIONS if t != table]
            same_elsewhere = all(ABLATIONS[o][1](cfg) == ABLATIONS[o][1](base_cfg) for o in others)
            if same_elsewhere and (probe.parent.name == "base" or value(cfg) != value(base_cfg)):
                out[table].append({key: value(cfg), "accuracy": r.get("accuracy"), "auc": r.get("auc")})
    return {t: rows for t, rows in out.items() if rows}


PROBE_NAMES = {"pretrained": "pretrained", "random": "random init (stats set)"}
MONITORS = ("between_jet_share", "between_jet_share_encoder", "position_r2", "effective_rank", "online_probe_acc")


def last_monitors(log_path: Path) -> dict:
    """The last logged value of each shortcut monitor (hepjepa.monitors) in a pretraining log.jsonl."""
    found = {}
    if log_path.is_file():
        for line in log_path.read_text().splitlines():
            rec = json.loads(line)
            found.update({k: rec[k] for k in MONITORS if k in rec})
    return found


def probe_rows(probe: dict) -> list[dict]:
    return [{"encoder": PROBE_NAMES[k], "accuracy": [r[k] for r in probe["rows"]]} for k in PROBE_NAMES]


def _arm_values(cfg: dict) -> dict:
    m = cfg["model"]
    pos = "sin-cos, input" if m.get("pos_embed") == "sincos" else \
        ("MLP, every block" if m["pos_every_layer"] else "MLP, input")
    inputs = {"hepjepa": "absolute (ParT kin)", "hepjepa_rel": "relative", "hepjepa_relfull": "relative + PID, IP"}
    return {"inputs": inputs.get(cfg["data"]["features"], cfg["data"]["features"]),
            "target_norm": m.get("target_norm", "layer"), "position": pos}


def shortcut_rows(runs: Path) -> tuple[list[dict], list[Path], list]:
    """One row per arm of shortcut/<arm>/seed<S>/ (metrics: lists over the seeds found), the source files, seeds."""
    rows, sources, seeds = [], [], set()
    for arm in sorted(p for p in (runs / "shortcut").glob("*") if p.is_dir()):
        row, cfg = None, None
        vals = {k: [] for k in ("probe_accuracy", "random_probe_accuracy", "fewshot_accuracy", "between_jet_share",
                                "between_jet_share_encoder")}
        for sd in sorted(arm.glob("seed*")):
            probe = read_json(sd / "probe" / "probe.json", "linear probe")
            few = _read(sd / "fewshot" / "summary.json")
            if probe is not None:
                vals["probe_accuracy"] += [r["pretrained"] for r in probe["rows"]]
                vals["random_probe_accuracy"] += [r["random"] for r in probe["rows"]]
                sources.append(sd / "probe" / "probe.json")
            if few is not None:
                vals["fewshot_accuracy"] += [a for r in few["rows"] for a in (r.get("accuracy") or [])]
                sources.append(sd / "fewshot" / "summary.json")
            mons = last_monitors(sd / "pretrain" / "log.jsonl")
            for k in ("between_jet_share", "between_jet_share_encoder"):
                if mons.get(k) is not None:
                    vals[k].append(mons[k])
            cfg_path = sd / "pretrain" / "config.yaml"
            if cfg is None and cfg_path.is_file():
                cfg = yaml.safe_load(cfg_path.read_text())
            if probe is not None or few is not None:
                seeds.add(int(sd.name[len("seed"):]))
        if cfg is not None:
            row = {**_arm_values(cfg), **{k: v for k, v in vals.items() if v}}
            rows.append(row)
    return rows, sources, sorted(seeds)


def write_tables(runs, out, profile: str) -> list[str]:
    runs, out = Path(runs), Path(out)
    scale = _pretrain_scale(runs)
    written, md = [], []
    jobs = [("hepjepa.jetclass_fewshot", runs / "ft_jetclass", fewshot_rows,
             "Few-shot: label_percent of the fine-tuning pool, spread evenly over the classes; frozen = backbone "
             "fixed, head trained."),
            ("hepjepa.top_tagging", runs / "ft_top", transfer_rows, "JetClass-pretrained backbone, all labels."),
            ("hepjepa.quark_gluon", runs / "ft_qg", transfer_rows, "JetClass-pretrained backbone, all labels, "
                                                                    "kinematic features only.")]
    for table_id, folder, to_rows, notes in jobs:
        summary = _read(folder / "summary.json")
        if summary is None:
            continue
        fewshot_table = table_id == "hepjepa.jetclass_fewshot"
        # ft_jetclass_seed<S>: the fine-tuned mode on the extra pretraining run S, with one fine-tuning seed
        folders = [folder] + (sorted(runs.glob("ft_jetclass_seed[0-9]*")) if fewshot_table else [])
        parts = [(f, _read(f / "summary.json")) for f in folders]
        parts = [(f, s) for f, s in parts if s is not None]
        rows, seeds = merge_seed_runs([(with_pretraining_run(to_rows(s), runs, "mode" if fewshot_table else "model",
                                                             f), s["seeds"]) for f, s in parts])
        fields = {f for r in rows for f in r}
        meta = _meta({**summary, "seeds": seeds}, profile, scale, notes, [f / "summary.json" for f, _ in parts],
                     # the few-shot table prints accuracy; the other metrics and the class count stay in the rows
                     sorted(fields - {"mode", "label_percent", "accuracy", "seed"}) if fewshot_table
                     else sorted(fields & {"pretrain_seed"}))
        write_result(out / f"{table_id}.json", table_id, rows, meta)
        md.append(render_table(table_id, rows, meta))
        written.append(table_id)
    fewshot = _read(runs / "ft_jetclass" / "summary.json")
    conv, conv_sources = [], []
    if fewshot:  # the main sweep (every mode), then each extra pretraining run against the same seed's scratch run
        conv = with_pretraining_run(convergence_rows(runs / "ft_jetclass", FIGURE2_PERCENT), runs)
        conv_sources = sorted((runs / "ft_jetclass").glob(f"*/pct{FIGURE2_PERCENT}/n*/seed*/result.json"))
        for extra in sorted(runs.glob("ft_jetclass_seed[0-9]*")):
            conv += with_pretraining_run(convergence_rows(extra, FIGURE2_PERCENT, scratch_dir=runs / "ft_jetclass"),
                                         runs, folder=extra)
            conv_sources += sorted(extra.glob(f"finetune/pct{FIGURE2_PERCENT}/n*/seed*/result.json"))
    if conv:
        meta = _meta(fewshot, profile, scale,
                     f"Figure 2 at {FIGURE2_PERCENT:g} % labels, one row per seed: the first validated fine-tuning "
                     "step at which the val loss <= the same seed's scratch minimum (scratch: the step of that "
                     "minimum); inf = never reached in the run.",
                     conv_sources, ["label_percent", "scratch_min_val_loss", "pretrain_seed"])
        write_result(out / "hepjepa.convergence.json", "hepjepa.convergence", conv, meta)
        md.append(render_table("hepjepa.convergence", conv, meta))
        written.append("hepjepa.convergence")
    probe = read_json(runs / "probe" / "probe.json", "linear probe")
    if probe is not None:
        mon = last_monitors(runs / "pretrain" / "log.jsonl")
        mon_txt = ", ".join(f"{k} {v:.3g}" for k, v in mon.items()) or "none logged"
        meta = {"profile": profile, "dataset": "jetclass", "seeds": [r["seed"] for r in probe["rows"]],
                "scale": f"{scale}; {probe['n_per_class']} labelled jets per class, {probe['n_test_jets']} "
                         f"{probe.get('eval_split', 'test')} jets",
                "notes": f"Linear probe (standardised logistic regression) on mean+max pooled {probe['encoder']}-encoder "
                         f"outputs; the random encoder (same seed) has its BatchNorm statistics set from "
                         f"{probe['norm_batches']} training batches. Shortcut monitors at the end of pretraining: "
                         f"{mon_txt}.",
                "sources": [runs / "probe" / "probe.json"]}
        rows = probe_rows(probe)
        write_result(out / "hepjepa.linear_probe.json", "hepjepa.linear_probe", rows, meta)
        md.append(render_table("hepjepa.linear_probe", rows, meta))
        written.append("hepjepa.linear_probe")
    sc_rows, sc_sources, sc_seeds = shortcut_rows(runs)
    if sc_rows:
        base_pre = next(iter(sorted((runs / "shortcut").glob("base/seed*/pretrain"))), None)
        scale_sc = _pretrain_scale(base_pre.parent, "pretrain") if base_pre else "reference arm not found"
        meta = {"profile": profile, "dataset": "jetclass", "seeds": sc_seeds, "scale": scale_sc,
                "notes": "One switch changed per row from the reference arm; per seed one pretraining (shortened), the "
                         "linear probe at 100 labelled jets per class (pretrained and random init with statistics "
                         "set), fine-tuning at the smallest label fraction until validation stops improving, and the "
                         "last logged between-jet share of the target variance and of the teacher's output before "
                         "the target normalisation (encoder). Values are lists over seeds.",
                "sources": sc_sources}
        write_result(out / "hepjepa.ablation_shortcut.json", "hepjepa.ablation_shortcut", sc_rows, meta)
        md.append(render_table("hepjepa.ablation_shortcut", sc_rows, meta))
        written.append("hepjepa.ablation_shortcut")
    abl = ablation_tables(runs)
    if abl:
        base = _read(runs / "ablation" / "base" / "probe" / "summary.json")
        r0 = base["rows"][0]
        probes = sorted((runs / "ablation").glob("*/probe/summary.json"))  # each row is matched against the base
        for table_id, rows in abl.items():
            meta = _meta(base, profile, _pretrain_scale(runs / "ablation" / "base", "pretrain"),
                         f"Frozen-backbone probe ({r0['mode']}) at {r0['label_percent']} % labels after the shortened "
                         f"ablation pretraining; one switch changed per row.", probes,
                         [] if table_id in KIT_TABLES else ["auc"])
            meta.update(KIT_TABLES.get(table_id, {}))
            write_result(out / f"{table_id}.json", table_id, rows, meta)
            md.append(render_table(table_id, rows, meta))
            written.append(table_id)
    write_text(out / f"{__package__}.md", "\n\n".join(md) + "\n")   # all tables; atomic, in the manifest
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="HEP-JEPA results tables")
    ap.add_argument("--runs", required=True, help="the HEP-JEPA run folder (holds pretrain/, ft_jetclass/, ...)")
    ap.add_argument("--out", required=True, help="where the table JSON files and hepjepa.md go")
    ap.add_argument("--profile", default="mini")
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    written = write_tables(args.runs, args.out, args.profile)
    print(f"[hepjepa.tables] wrote {', '.join(written) or 'no tables (no finished runs found)'} into {args.out}")


if __name__ == "__main__":
    cli(main)
