"""Collect the MPM run results into the papers' tables (common.results.tables), ours beside the published numbers.

    python -m mpm.tables --runs runs/mini/mpm --out runs/mini/mpm/tables --profile mini

Run layout (mpm/run_steps.sh):
  pretrain/<config>/                          pretraining runs (config.yaml, log.jsonl, done.json)
  probe/<config>[_seed<S>]/summary.json      frozen-backbone probe of each pretraining-table row (and of its extra
                                              pretraining runs, seed S)                            -> mpm.v1_pretraining
  v1_jetclass/<mode>/summary.json             fixed | finetune | scratch                           -> mpm.v1_jetclass
  v1_new_classes/<mode>/summary.json                                                               -> mpm.v1_new_classes
  v1_new_domain/<mode>/summary.json           ATLAS-like target domain (panel "left")
  v1_new_domain_jetclass/<mode>/summary.json  same task in the CMS-like pretraining domain (panel "right")
                                              -> mpm.v1_new_domain_auc, mpm.v1_new_domain_rejection
  v1_cwola/<mode>[_nosched]/summary.json      with / without the learning-rate schedule            -> mpm.v1_cwola
  v2_jetclass/<task>_<mode>/summary.json      task = regression | kmeans | vqvae | cnf | cfm | ssfm | scratch | nobackbone
                                                                                                   -> mpm.v2_jetclass
  v2_cwola/<task>_<mode>/summary.json                                                              -> mpm.v2_cwola
  v2_probe/<task>/summary.json                frozen class-attention probe (final row of Table B)  -> mpm.v2_construction
  v2_sweep/<depth|mask>_<value>/summary.json  decoder-depth and mask-rate sweeps (paper profile)    -> mpm.v2_sweep
Each table is written as <out>/<table_id>.json (common.results.tables.write_result) and <out>/<table_id>.md.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from common.cli import cli
from common.results.tables import merge_seed_runs, read_json, write_table

# pretraining-table row labels (published.yaml keys) from a pretraining config
APE = {"head_input": "head", "backbone_input": "backbone", "none": "none"}
INPUTS = {"original": "original", "vqvae_quantised": "vqvae"}
V1_MODES = ("fixed", "finetune", "scratch")


def _read(path: Path):
    """A step's JSON output (read_json: an unreadable file is an error naming it) or YAML config (None if absent)."""
    if path.suffix == ".json":
        return read_json(path, "step output")
    try:
        return yaml.safe_load(path.read_text())
    except OSError:
        return None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e


def _pretrain_cfg(run_dir: Path) -> dict | None:
    """The pretraining config behind a fine-tuning run directory (its config.yaml names pretrained.run)."""
    cfg = _read(run_dir / "config.yaml")
    if not cfg:
        return None
    run = cfg.get("pretrained", {}).get("run")
    return _read(Path(run) / "config.yaml") if run else None


def _with_pretraining_run(rows: list[dict], run_dir: Path, pretrained: bool) -> list[dict]:
    """Rows of a fine-tuning run that loads a pretraining checkpoint carry `pretrain_seed` (the seed of that pretraining
    run), so that a claim replicated over pretraining runs (common/results/claims.py) can take one value per run;
    rows without pretraining (scratch, No Backbone) carry none."""
    p = _pretrain_cfg(run_dir) if pretrained else None
    if p is not None and p.get("seed") is not None:
        for r in rows:
            r["pretrain_seed"] = p.get("seed")
    return rows


def _seeds(run_dir: Path) -> list:
    """The fine-tuning seeds of a run directory (its config.yaml; [] without one)."""
    cfg = _read(run_dir / "config.yaml") or {}
    return list((cfg.get("finetune") or {}).get("seeds") or [])


def _merged(parts: list[tuple[list[dict], Path]]) -> tuple[list[dict], list]:
    """Rows of several run directories of one table (an extra pretraining run is fine-tuned with one seed): one list,
    and the union of their seeds (common.results.tables.merge_seed_runs)."""
    return merge_seed_runs([(rows, _seeds(d)) for rows, d in parts if rows])


def _n_classes(run_dir: Path) -> int | None:
    for res in sorted(run_dir.glob("n*/seed*/result.json")):
        r = _read(res)
        if r and r.get("class_names"):
            return len(r["class_names"])
    return None


def _pretrain_scale(pcfg: dict | None) -> str | None:
    if not pcfg:
        return None
    t = pcfg["train"]
    return f"pretraining {t['steps']} steps x {t['batch_size']} jets"


def _all_label(run_dir: Path) -> str:
    """Key of a run on the whole labelled training split: 'all (<jets>)'."""
    for res in sorted(run_dir.glob("nall/seed*/result.json")):
        r = _read(res)
        if r and r.get("n_train_jets"):
            return f"all ({r['n_train_jets']})"
    return "all"


def sweep_rows(run_dir: Path, keys: dict, metrics: dict, n_key: str = "n_train") -> list[dict]:
    """Rows of a fine-tuning sweep: one per N, metric -> list over seeds. metrics maps table name -> summary name."""
    s = _read(run_dir / "summary.json")
    if not s:
        return []
    k = _n_classes(run_dir) or 1
    rows = []
    for n, stats in s["per_n"].items():
        row = dict(keys)
        if n_key == "n_train":
            row[n_key] = _all_label(run_dir) if n in ("None", "all") else int(n) * k
        else:
            row[n_key] = int(n)
        for name, src in metrics.items():
            if src in stats:
                row[name] = stats[src]["values"]
        rows.append(row)
    return rows


def _meta(profile: str, runs: list[Path], extra: dict | None = None) -> dict:
    cfgs = [c for c in (_read(r / "config.yaml") for r in runs) if c]
    pcfgs = [p for p in (_pretrain_cfg(r) for r in runs) if p]
    # the step outputs the rows come from: the report refuses the table when one of them changes (common/results/report.py)
    meta = {"profile": profile, "sources": [r / "summary.json" for r in runs if (r / "summary.json").is_file()]}
    if cfgs:
        d = cfgs[0]["data"]
        meta["dataset"] = f"{d['dataset']} at {d['root']} ({'real' if profile == 'paper' else 'simulated'})"
        meta["class_order"] = d["classes"] or "all classes, ParT order"
        meta["seeds"] = cfgs[0]["finetune"]["seeds"]
    if pcfgs:
        meta["scale"] = _pretrain_scale(pcfgs[0])
    meta.update(extra or {})
    return meta


def collect(runs: Path, profile: str) -> dict[str, tuple[list, dict]]:
    tables: dict[str, tuple[list, dict]] = {}

    # MPMv1 pretraining table: frozen-backbone probe of every pretraining configuration
    parts, dirs = [], []
    for d in sorted((runs / "probe").glob("*")):
        p = _pretrain_cfg(d)
        if not p or p.get("method") != "mpmv1":
            continue
        m = p["model"]
        keys = {"inputs": INPUTS[m["inputs"]], "targets": m["target"], "ape": APE[m["positional"]]}
        rows = sweep_rows(d, keys, {"accuracy": "accuracy"})
        for r in rows:
            r.pop("n_train", None)
            r["pretrain_seed"] = p.get("seed")  # one row per pretraining run; its values: the probe seeds
        parts.append((rows, d))
        dirs.append(d)
    rows, seeds = _merged(parts)
    if rows:
        runs_per_row = {}
        for r in rows:
            runs_per_row.setdefault((r["inputs"], r["targets"], r["ape"]), set()).add(r["pretrain_seed"])
        tables["mpm.v1_pretraining"] = (rows, _meta(profile, dirs, {
            "extra_fields": ["pretrain_seed"], "seeds": seeds,
            "notes": "linear probe = fixed backbone + weighted-mean head; a row's values pool the probe seeds of "
                     f"every pretraining run of that configuration ({max(len(v) for v in runs_per_row.values())} "
                     "at most; the claims comparing these rows take one value per pretraining run)"}))

    def by_mode(sub, table, metrics, extra_keys=None, n_key="n_train", suffixes=("",)):
        parts, dirs = [], []
        for mode in V1_MODES:
            # <mode>_seed<S>: the same study on the extra pretraining run S (its rows: pretrain_seed S)
            extra = sorted(runs.joinpath(sub).glob(f"{mode}_seed[0-9]*")) if mode != "scratch" else []
            for d in [runs / sub / f"{mode}{suffix}" for suffix in suffixes] + extra:
                keys = {**(extra_keys or {}), "mode": mode}
                if d.name.endswith("_nosched"):
                    keys["lr_schedule"] = "off"
                parts.append((_with_pretraining_run(sweep_rows(d, keys, metrics, n_key), d, mode != "scratch"), d))
                if (d / "config.yaml").exists():
                    dirs.append(d)
        if table in tables:  # a second panel of the same table
            parts.insert(0, (tables[table][0], None))
        rows, seeds = merge_seed_runs([(r, tables[table][1]["seeds"] if d is None else _seeds(d))
                                       for r, d in parts if r])
        if not rows:
            return
        if table in tables:
            tables[table][1]["sources"] += _meta(profile, dirs)["sources"]
            tables[table] = (rows, {**tables[table][1], "seeds": seeds})
        else:
            tables[table] = (rows, _meta(profile, dirs, {"extra_fields": ["pretrain_seed"], "seeds": seeds}))

    by_mode("v1_jetclass", "mpm.v1_jetclass", {"accuracy": "accuracy"})
    by_mode("v1_new_classes", "mpm.v1_new_classes", {"accuracy": "accuracy"})
    # panels [U]: left = the new (ATLAS-like) domain, right = the same task in the pretraining (CMS-like) domain
    by_mode("v1_new_domain", "mpm.v1_new_domain_auc", {"auc": "auc"}, {"panel": "left"})
    by_mode("v1_new_domain_jetclass", "mpm.v1_new_domain_auc", {"auc": "auc"}, {"panel": "right"})
    # pretraining key: the paper's "40M"/"1M" labels do not apply to our run; the key states our pretraining size
    nd = [runs / "v1_new_domain" / m for m in V1_MODES]
    pcfg = next((p for p in (_pretrain_cfg(d) for d in nd) if p), None)
    label = (f"ours ({pcfg['train']['steps'] * pcfg['train']['batch_size']} jets seen)" if pcfg else "ours")
    by_mode("v1_new_domain", "mpm.v1_new_domain_rejection", {"rejection_50": "rejection_50"},
            {"pretraining": label, "panel": "left"})
    by_mode("v1_new_domain_jetclass", "mpm.v1_new_domain_rejection", {"rejection_50": "rejection_50"},
            {"pretraining": label, "panel": "right"})
    # v1 SIC is the cut-based definition of the paper; the 1 %-FPR SIC of MPMv2 is reported beside it
    by_mode("v1_cwola", "mpm.v1_cwola", {"sic": "sic_cut05", "sic_fpr1": "sic"}, {"lr_schedule": "on"},
            n_key="n_signal", suffixes=("", "_nosched"))

    for sub, table, metric, n_key in (("v2_jetclass", "mpm.v2_jetclass", "accuracy", "n_train"),
                                      ("v2_cwola", "mpm.v2_cwola", "sic", "n_signal")):
        parts, dirs = [], []
        for d in sorted((runs / sub).glob("*")):
            cfg = _read(d / "config.yaml")
            if not cfg:
                continue
            # <task>_<mode>_seed<S>: the same run on the extra pretraining run S (its rows: pretrain_seed S)
            name = re.sub(r"_seed[0-9]+$", "", d.name)
            task, _, mode = name.rpartition("_")
            mode = {"fixed": "frozen"}.get(mode, mode)
            if d.name in ("scratch", "nobackbone", "scratch_all"):  # scratch_all: the supervised ceiling
                task, mode = d.name.removesuffix("_all"), ("frozen" if d.name == "nobackbone" else "finetune")
            parts.append((_with_pretraining_run(sweep_rows(d, {"mode": mode, "task": task}, {metric: metric}, n_key),
                                                d, task not in ("scratch", "nobackbone")), d))
            dirs.append(d)
        rows, seeds = _merged(parts)
        if rows:
            tables[table] = (rows, _meta(profile, dirs, {"extra_fields": ["pretrain_seed"], "seeds": seeds}))
    # MPMv2 Table B: only its final row is a configuration of ours (1M steps, decoder depth 4, D_f 40 %)
    rows, dirs = [], []
    for task in ("regression", "kmeans"):
        d = runs / "v2_probe" / task
        for r in sweep_rows(d, {"change": "+ 1M steps + decoder depth 4 + D_f 40 %", "task": task},
                            {"accuracy": "accuracy"}):
            r.pop("n_train", None)
            rows.append(r)
        dirs += [d] if (d / "config.yaml").exists() else []
    if rows:
        tables["mpm.v2_construction"] = (rows, _meta(profile, dirs, {"notes": "the intermediate rows are ablations "
                                                                       "of the redesign this kit does not run"}))
    # MPMv2 sweeps: decoder depth (D_f 30 %) and mask rate (2-layer decoder), frozen probe
    rows, dirs = [], []
    for d in sorted((runs / "v2_sweep").glob("*_*")):
        sweep, _, value = d.name.partition("_")
        key = {"depth": "decoder_depth", "mask": "mask_rate"}.get(sweep)
        if key is None:
            continue
        for r in sweep_rows(d, {"sweep": key, "value": float(value) if key == "mask_rate" else int(value)},
                            {"accuracy": "accuracy"}):
            r.pop("n_train", None)
            rows.append(r)
        dirs.append(d)
    if rows:
        tables["mpm.v2_sweep"] = (rows, _meta(profile, dirs))
    return tables


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="the MPM run directory (runs/<profile>/mpm)")
    ap.add_argument("--out", required=True, help="where <table_id>.json and .md are written")
    ap.add_argument("--profile", default="mini")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = collect(Path(args.runs), args.profile)
    for table_id, (rows, meta) in tables.items():
        print(write_table(out, table_id, rows, meta))
    if not tables:
        print(f"no MPM results under {args.runs}")
    from common.training.train_utils import mark_done
    mark_done(out, {"tables": sorted(tables)})


if __name__ == "__main__":
    cli(main)
