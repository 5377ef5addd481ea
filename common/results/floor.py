"""The jet-observables floor of a fine-tuning table: what a physicist gets from a handful of numbers per jet, trained on
the same labelled jets as the fine-tuned models.

    python -m common.results.floor --table mpm.v1_jetclass --config mpm/configs/mini/finetune_v1.yaml \
        --out runs/mini/mpm/floor/v1_jetclass data.root=data/sim/jetclass

Inputs (jet level only, `jet_features`): log pT, |eta|, log E, mass, multiplicity (the jet fields the readers keep:
the file's jet branches where the file has them, the constituent sum otherwise), and the soft-drop mass (z_cut 0.1,
beta 0) and N-subjettiness ratios tau21, tau32, tau43 (common/data/observables.py) of the constituents the fine-tuned models
see (the feature set's first num_particles by pT). No per-particle value reaches the classifiers. BTag (MPMv2's
flavour tagging): the file's jet fields and summaries of the jet's tracks (BTAG_OBSERVABLES), the labelled jets drawn
as the BTag fine-tuning runs draw them (n in total from btag.n_train, seeded permutation of the training split).

Classifiers: gradient-boosted trees (scikit-learn HistGradientBoostingClassifier, default settings) and a multinomial
logistic regression on standardised inputs (the settings of common.training.probe.linear_probe), each seeded with the
fine-tuning seed.

Subsets: the fine-tuning config's own data section, label grid and seeds are read (finetune.n_per_class and
finetune.seeds; HEP-JEPA: sweep.label_percents, n per class = round(P/100 x training jets / classes), 100 % = all),
and the labelled jets are drawn by common.data.datasets.build_dataset(n_per_class=N, subset_seed=seed): the very call the
fine-tuning harness makes (common/training/finetune.py run_finetune). The test split is the harness's too (max_test_jets).
Metrics: common.training.finetune.evaluate_metrics, as for the fine-tuned models.

Output: <out>/<table>.json, rows named "jet observables (BDT)" and "jet observables (logistic)" in the table's key
columns (TABLE_KEYS); common/results/report.py merges them into the table beside the method's rows (published: none).
"""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from common.atomic import write_json
from common.cli import cli
from common.data.subsets import label_count
from common.results.tables import write_result
from common.training.config import load_config
from common.training.train_utils import set_torch_threads

OBSERVABLES = ("log_pt", "abs_eta", "log_energy", "mass", "nparticles", "sd_mass", "tau21", "tau32", "tau43")
# BTag (arXiv:2409.12589 Sec. 5): the jet fields of the file and per-jet summaries of its tracks (an impact-parameter
# tagger's inputs: the largest lifetime-signed d0 and z0 significances, the pT fraction carried by tracks)
BTAG_OBSERVABLES = ("log_pt", "abs_eta", "mass", "n_tracks", "sd0_1", "sd0_2", "sd0_3", "sz0_1", "n_sd0_above_3",
                    "track_pt_fraction")
CLASSIFIERS = {"bdt": "jet observables (BDT)", "logistic": "jet observables (logistic)"}
CHUNK = 50_000  # jets per gather when computing observables


def jet_features(p4: np.ndarray, mask: np.ndarray, jet: np.ndarray) -> np.ndarray:
    """(B, 9) float64 in OBSERVABLES order from a JetBatch's jet fields (common.data.batch.JET_FIELDS: pt, eta, phi,
    energy, mass, nparticles) and its constituents (p4 (B, N, 4), mask (B, N)); every column is invariant under a
    permutation of the constituents within a jet."""
    from common.data.observables import nsubjettiness, softdrop_mass

    jet = np.asarray(jet, dtype=np.float64)
    p4 = np.asarray(p4, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    taus = nsubjettiness(p4, mask, n_max=4)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = lambda a, b: np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)  # noqa: E731
        cols = [np.log(np.clip(jet[:, 0], 1e-6, None)), np.abs(jet[:, 1]), np.log(np.clip(jet[:, 3], 1e-6, None)),
                jet[:, 4], jet[:, 5], softdrop_mass(p4, mask), ratio(taus[:, 1], taus[:, 0]),
                ratio(taus[:, 2], taus[:, 1]), ratio(taus[:, 3], taus[:, 2])]
    return np.stack(cols, axis=1)


def btag_features(csts: np.ndarray, mask: np.ndarray, jets: np.ndarray) -> np.ndarray:
    """(B, 10) float64 in BTAG_OBSERVABLES order from the BTag arrays (common/data/btag.py: csts (B, T, 7) = pT, deta,
    dphi, signed d0, d0 error, signed z0, z0 error; mask (B, T); jets (B, 5) = pT, eta, phi, mass, n tracks);
    invariant under a permutation of the tracks within a jet."""
    csts, jets = np.asarray(csts, np.float64), np.asarray(jets, np.float64)
    mask = np.asarray(mask, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd0 = np.where(mask & (csts[..., 4] > 0), csts[..., 3] / np.where(csts[..., 4] > 0, csts[..., 4], 1.0), -np.inf)
        sz0 = np.where(mask & (csts[..., 6] > 0), csts[..., 5] / np.where(csts[..., 6] > 0, csts[..., 6], 1.0), -np.inf)
    top = -np.sort(-sd0, axis=1)[:, :3]
    top = np.pad(top, ((0, 0), (0, 3 - top.shape[1])), constant_values=-np.inf)
    finite = lambda a: np.where(np.isfinite(a), a, -99.0)  # noqa: E731  (fewer tracks than the rank asked)
    pt_sum = np.where(mask, csts[..., 0], 0.0).sum(1)
    cols = [np.log(np.clip(jets[:, 0], 1e-6, None)), np.abs(jets[:, 1]), jets[:, 3], mask.sum(1).astype(np.float64),
            finite(top[:, 0]), finite(top[:, 1]), finite(top[:, 2]), finite(sz0.max(1)),
            (sd0 > 3).sum(1).astype(np.float64), pt_sum / np.clip(jets[:, 0], 1e-6, None)]
    return np.stack(cols, axis=1)


def fit_predict(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int,
                n_classes: int) -> np.ndarray:
    """Class probabilities (B_test, n_classes) of one floor classifier trained on (x_train, y_train)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "bdt":
        clf = HistGradientBoostingClassifier(random_state=seed)
    elif kind == "logistic":
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    else:
        raise ValueError(f"floor classifier {kind!r}; expected one of {', '.join(CLASSIFIERS)}")
    clf.fit(x_train, y_train)
    probs = np.zeros((len(x_test), n_classes))
    probs[:, clf.classes_] = clf.predict_proba(x_test)  # a class absent from training keeps probability 0
    return probs


def label_grid(cfg: dict, n_train: int, n_classes: int) -> list[tuple[int | None, float | None]]:
    """[(labelled jets per class or None = all, label percent or None)] of a fine-tuning config: HEP-JEPA's
    sweep.label_percents (common.data.subsets.label_count), else finetune.n_per_class."""
    sweep = cfg.get("sweep") or {}
    if sweep.get("label_percents") is not None:
        return [(label_count(float(p), n_train, n_classes), p) for p in sweep["label_percents"]]
    ns = (cfg.get("finetune") or {}).get("n_per_class")
    return [(n, None) for n in (ns if isinstance(ns, (list, tuple)) else [ns])]


# Row keys of every table that gets a floor: (classifier row name, labelled jets per class, label percent,
# classes, training jets of the subset) -> key columns (common/results/published.yaml keys of the table).
def _n_train(n, n_classes, n_jets):
    return f"all ({n_jets})" if n is None else int(n) * n_classes


TABLE_KEYS = {
    "mpm.v1_jetclass": lambda name, n, pct, c, nj: {"mode": name, "n_train": _n_train(n, c, nj)},
    "mpm.v2_jetclass": lambda name, n, pct, c, nj: {"mode": name, "task": None, "n_train": _n_train(n, c, nj)},
    "omnijet.classification": lambda name, n, pct, c, nj: {"mode": name, "n_per_class": n},
    "hepjepa.jetclass_fewshot": lambda name, n, pct, c, nj: {"mode": name, "label_percent": pct},
    "hepjepa.top_tagging": lambda name, n, pct, c, nj: {"model": name},
    "hepjepa.quark_gluon": lambda name, n, pct, c, nj: {"model": name},
    "mpm.v2_btag": lambda name, n, pct, c, nj: {"mode": name, "task": None, "n_train": nj},
}
BTAG_FLAVOURS = ("light", "c", "b")  # labels 0, 1, 2 (common/data/btag.py FLAV_LABEL)


def dataset_features(ds, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Observables and labels of every jet of a JetDataset, gathered `chunk` jets at a time (a paper-scale split
    does not fit in memory as padded constituents)."""
    xs, ys = [], []
    for start in range(0, len(ds), chunk):
        a = ds.gather(np.arange(start, min(start + chunk, len(ds))))
        xs.append(jet_features(a["p4"], a["mask"], a["jet"]))
        ys.append(np.asarray(a["label"]))
    return np.concatenate(xs), np.concatenate(ys)


def _btag_split(data: dict, split: str, max_jets: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BTag observables and labels of a split as the BTag tasks read it (common.data.btag.read_split)."""
    from common.data.btag import read_split

    a = read_split(data, split, max_jets, keys=("csts", "mask", "jets", "labels"))
    return btag_features(a["csts"], a["mask"], a["jets"]), a["labels"].astype(np.int64)


def run_floor(cfg: dict, table_id: str, classifiers=tuple(CLASSIFIERS)) -> tuple[list[dict], dict]:
    """Rows (one per classifier, label-grid point and seed) and run information of the floor of one table."""
    from common.results.tables import published_table
    from common.training.finetune import evaluate_metrics

    if table_id not in TABLE_KEYS:
        raise ValueError(f"--table {table_id}: no floor defined; expected one of {', '.join(TABLE_KEYS)}")
    data, fc = cfg["data"], cfg.get("finetune") or {}
    seeds = [int(s) for s in fc.get("seeds") or [0]]
    metrics = list(published_table(table_id)["metrics"])
    rows, subsets = [], {}
    if data.get("dataset") == "btag":  # in-memory arrays, n labelled jets in total (mpm/btag.py)
        from common.data.btag import subset_index

        class_names, observables = list(BTAG_FLAVOURS), BTAG_OBSERVABLES
        x_all, y_all = _btag_split(data, "train")
        x_test, y_test = _btag_split(data, "test", fc.get("max_test_jets"))
        grid = [(n, None) for n in (cfg.get("btag") or {}).get("n_train") or [None]]

        def draw(n, seed):
            idx = subset_index(len(y_all), n, seed)
            return idx, x_all[idx], y_all[idx]
    else:
        from common.data.datasets import build_dataset, dataset_info

        class_names, observables = list(dataset_info(data)["class_names"]), OBSERVABLES
        x_test, y_test = dataset_features(build_dataset(data, "test", max_jets=fc.get("max_test_jets"), progress=False))
        grid = label_grid(cfg, len(build_dataset(data, "train", progress=False)), len(class_names))

        def draw(n, seed):  # the harness's draw: run_finetune -> make_loader(n_per_class=n, subset_seed=seed)
            ds = build_dataset(data, "train", n_per_class=n, subset_seed=seed, progress=False)
            return (np.arange(len(ds)) if ds.index is None else np.asarray(ds.index)), *dataset_features(ds)
    c = len(class_names)
    for n, pct in grid:
        for seed in seeds:
            idx, x, y = draw(n, seed)
            subsets[f"n{n if n is not None else 'all'}_seed{seed}"] = idx
            for kind in classifiers:
                probs = fit_predict(kind, x, y, x_test, seed, c)
                m = evaluate_metrics(y_test, probs, class_names)
                rows.append({**TABLE_KEYS[table_id](CLASSIFIERS[kind], n, pct, c, len(y)), "seed": seed,
                             **{k: float(m[k]) for k in metrics if k in m}})
    info = {"classes": class_names, "seeds": seeds, "n_test": int(len(y_test)), "observables": list(observables),
            "subsets": subsets}
    return rows, info


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Jet-observables floor (BDT and logistic regression) of one fine-tuning "
                                             "table, on the fine-tuning config's labelled subsets and seeds.")
    ap.add_argument("--table", required=True, help=f"table id: {', '.join(TABLE_KEYS)}")
    ap.add_argument("--config", required=True, help="the fine-tuning config whose subsets, seeds and test split to use")
    ap.add_argument("--out", required=True, help="output directory (<table>.json, floor.json)")
    ap.add_argument("--profile", default=None, help="smoke | mini | paper (recorded in the result file)")
    ap.add_argument("overrides", nargs="*", help="a.b=value overrides of the config (as given to the method's step)")
    args = ap.parse_args(argv)
    if args.table not in TABLE_KEYS:
        raise ValueError(f"--table {args.table}: no floor defined; expected one of {', '.join(TABLE_KEYS)}")
    set_torch_threads()  # also caps scikit-learn's OpenMP pool (a loaded 2-core machine)
    cfg = load_config(args.config, args.overrides)
    t0 = time.time()
    rows, info = run_floor(cfg, args.table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"seeds": info["seeds"], "floor": {"config": args.config, "observables": info["observables"],
                                              "n_test": info["n_test"]},
            "notes": ("Jet observables rows: gradient-boosted trees / logistic regression on "
                      f"{', '.join(info['observables'])} only, trained on the fine-tuning runs' labelled subsets and "
                      "seeds "
                      "(python -m common.results.floor; no pretraining; no per-particle input reaches the classifiers).")}
    if args.profile:
        meta["profile"] = args.profile
    write_result(out / f"{args.table}.json", args.table, rows, meta)
    info["subsets"] = {k: {"n": len(v), "sha256": hashlib.sha256(np.asarray(v, np.int64).tobytes()).hexdigest()}
                       for k, v in info["subsets"].items()}  # the training-jet indices of every run, as a digest
    write_json(out / "floor.json", {**info, "table": args.table, "wall_s": round(time.time() - t0, 2)}, indent=None)
    print(f"floor {args.table}: {len(rows)} rows in {time.time() - t0:.1f} s -> {out / (args.table + '.json')}")


if __name__ == "__main__":
    cli(main)
