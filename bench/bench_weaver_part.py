"""Supervised reference: weaver-core's ParticleTransformer trained on the kit's JetClass-format files.

    python -m bench.bench_weaver_part --data DIR [--epochs 10] [--threads 1] [--out runs/weaver_part]
        [--batch-size 512] [--start-lr 1e-3] [-o num_layers 3 -o embed_dims "[64,256,64]" ...]

DIR holds train/, val/ and test/ with JetClass ROOT files, e.g. from
`python -m common.simulate jetclass --jets-per-class 1200 --out DIR --workers 1`. The script runs the `weaver` command
of weaver-core (the training framework of ParT, arXiv:2202.03772) in a subprocess with the kit's data config
bench/weaver/jetclass_full.yaml (the official "full" feature set) and network config bench/weaver/part_network.py
(ParT; default a reduced 3-layer model, sizes set with -o as weaver's --network-option). The training options follow
jet-universe/particle_transformer train_JetClass.sh for ParT (Ranger, start LR 1e-3, batch 512, weaver's default
flat+decay schedule), except: the number of epochs, one pass over the training files per epoch, CPU in fp32, and
the data read in the training process itself (--num-workers 0), whole files at a time (--fetch-step 1.0; the
simulated files are small), so that --threads is all the CPU the run uses.
weaver keeps the epoch with the best validation accuracy and predicts the test files with it; this script reads
that prediction file and prints

    10-class accuracy, macro one-vs-rest AUC, Tbqq-vs-QCD AUC (score p_Tbqq / (p_Tbqq + p_QCD) on Tbqq and QCD jets,
    the ParT convention), one-vs-rest AUC per class, training jets/s (weaver's own count of the training passes),
    wall time of the whole weaver run, parameters, threads.

It writes the row as a kit result file, <out>/reference.part_weaver.json (common.results.tables.write_result); put --out
under a run directory (e.g. runs/mini/reference/part_weaver) and `python -m common.results.report` shows it in RESULTS.md's
"reference" section beside the self-supervised numbers. weaver's log and outputs stay in <out>/weaver/.

weaver-core is an optional dependency, not in requirements.txt: its metadata pulls tensorboard, grpcio, protobuf,
pyarrow and awkward0, none of which this benchmark uses. It does not depend on torch, so it leaves the installed
torch build alone. The lean install used for BENCHMARKS.md:

    pip install --no-deps weaver-core==0.5.3 && pip install numba

(numba is the one import weaver needs beyond the kit's requirements; `pip install weaver-core==0.5.3` works too.)
"""
from __future__ import annotations

import argparse
import ast
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.cli import cli
from common.data.jetclass import CLASS_NAMES, FILE_PREFIX
from common.results.tables import write_result
from common.training.metrics import accuracy, auc

HERE = Path(__file__).resolve().parent
DATA_CONFIG = HERE / "weaver" / "jetclass_full.yaml"
NETWORK_CONFIG = HERE / "weaver" / "part_network.py"
TABLE_ID = "reference.part_weaver"
INSTALL = "pip install --no-deps weaver-core==0.5.3 && pip install numba"
SPLITS = ("train", "val", "test")


def weaver_command() -> list[str]:
    """The weaver CLI of the current interpreter's environment; a clear error naming the install if missing."""
    try:
        import weaver  # noqa: F401
        import weaver.train  # noqa: F401  (imports numba, the one extra dependency)
    except ImportError as e:
        raise SystemExit(f"bench_weaver_part: weaver-core is not installed ({e}). Install it with:\n    {INSTALL}")
    exe = shutil.which("weaver", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return [exe] if exe else [sys.executable, "-c", "from weaver.train import main; main()"]


def split_files(data: Path) -> dict[str, list[str]]:
    """DIR/{train,val,test}/*.root; an error naming the split when one is empty."""
    out = {}
    for split in SPLITS:
        files = sorted(str(p) for p in (data / split).glob("*.root"))
        if not files:
            raise SystemExit(f"bench_weaver_part: no ROOT files in {data / split} (--data must hold {'/, '.join(SPLITS)}/)")
        out[split] = files
    return out


def build_command(args, files: dict[str, list[str]], work: Path) -> list[str]:
    # training files named "<process>:<glob>" per class as in train_JetClass.sh (weaver groups them by name)
    train = []
    for name in CLASS_NAMES:
        pattern = os.path.join(os.path.dirname(files["train"][0]), f"{FILE_PREFIX[name]}_*.root")
        if any(Path(f).name.startswith(FILE_PREFIX[name] + "_") for f in files["train"]):
            train.append(f"{FILE_PREFIX[name]}:{pattern}")
    cmd = weaver_command() + [
        "--data-train", *train, "--data-val", *files["val"], "--data-test", *files["test"],
        "--data-config", str(DATA_CONFIG), "--network-config", str(NETWORK_CONFIG),
        "--model-prefix", str(work / "net"), "--predict-output", str(work / "pred.root"),
        "--num-workers", "0", "--fetch-step", "1.0",
        "--batch-size", str(args.batch_size), "--start-lr", str(args.start_lr), "--optimizer", "ranger",
        "--num-epochs", str(args.epochs), "--gpus", "", "--log-file", str(work / "weaver.log"),
    ]
    for name, value in args.network_option:
        cmd += ["--network-option", name, value]
    return cmd


def parse_log(text: str) -> dict:
    """From weaver's log: the parameter count (logged by part_network.get_model) and the training throughput, summed
    over the training passes (each "Processed N entries ... (avg. speed S entries/s)" line followed by "Train")."""
    m = re.search(r"ParT parameters: (\d+)", text)
    params = int(m.group(1)) if m else None
    jets, seconds = 0, 0.0
    pat = re.compile(r"Processed (\d+) entries in total \(avg\. speed ([\d.]+) entries/s\)\s*\n[^\n]*?(Train|Eval)")
    for n, speed, kind in pat.findall(text):
        if kind == "Train" and float(speed) > 0:
            jets += int(n)
            seconds += int(n) / float(speed)
    return {"params": params, "train_jets": jets, "train_seconds": seconds,
            "train_jets_per_s": jets / seconds if seconds > 0 else None}


def evaluate_predictions(path) -> dict:
    """Metrics from weaver's prediction ROOT file (branches label_<C> and score_label_<C>, CLASS_NAMES order)."""
    import uproot

    with uproot.open(path) as f:
        tree = f[f.keys()[0].split(";")[0]]
        arrays = tree.arrays([f"label_{c}" for c in CLASS_NAMES] + [f"score_label_{c}" for c in CLASS_NAMES],
                             library="np")
    y = np.stack([arrays[f"label_{c}"] for c in CLASS_NAMES], 1).argmax(1)
    p = np.stack([arrays[f"score_label_{c}"] for c in CLASS_NAMES], 1).astype(np.float64)
    out = {"n_test": int(len(y)), "accuracy": accuracy(y, p)}
    per_class = {}
    for k, c in enumerate(CLASS_NAMES):
        per_class[c] = auc((y == k).astype(int), p[:, k]) if 0 < (y == k).sum() < len(y) else float("nan")
    present = [v for v in per_class.values() if np.isfinite(v)]
    out["auc_macro"] = float(np.mean(present)) if present else float("nan")
    t, q = CLASS_NAMES.index("Tbqq"), CLASS_NAMES.index("QCD")
    sel = (y == t) | (y == q)
    both = 0 < (y[sel] == t).sum() < sel.sum()
    out["auc_Tbqq_vs_QCD"] = (auc((y[sel] == t).astype(int), p[sel, t] / np.clip(p[sel, t] + p[sel, q], 1e-12, None))
                              if both else float("nan"))
    out.update({f"auc_{c}": v for c, v in per_class.items()})
    return out


def format_table(row: dict) -> str:
    lines = ["| quantity | value |", "|---|---|"]
    for key, label in (("accuracy", "10-class accuracy"), ("auc_macro", "AUC, macro one-vs-rest"),
                       ("auc_Tbqq_vs_QCD", "AUC Tbqq vs QCD")):
        lines.append(f"| {label} | {row[key]:.4f} |")
    lines += [f"| AUC {c} vs rest | {row[f'auc_{c}']:.4f} |" for c in CLASS_NAMES]
    jps = row["train_jets_per_s"]
    lines += [f"| training jets/s (wall, weaver's count) | {jps:,.1f} |" if jps else "| training jets/s | n/a |",
              f"| wall time, whole weaver run (s) | {row['wall_s']:.1f} |",
              f"| parameters | {row['params']:,} |" if row["params"] else "| parameters | n/a |",
              f"| threads (torch intra-op) / machine CPUs | {row['threads']} / {row['machine_cpus']} |",
              f"| jets: train / val / test | {row['n_train']} / {row['n_val']} / {row['n_test']} |",
              f"| epochs | {row['epochs']} |"]
    return "\n".join(lines)


def count_jets(files: list[str]) -> int:
    import uproot

    return sum(uproot.open(f)["tree"].num_entries for f in files)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="directory with train/, val/, test/ JetClass ROOT files")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of the weaver process")
    ap.add_argument("--out", type=Path, default=Path("runs/weaver_part"))
    ap.add_argument("--batch-size", type=int, default=512, help="train_JetClass.sh: 512 for ParT")
    ap.add_argument("--start-lr", type=float, default=1e-3, help="train_JetClass.sh: 1e-3 for ParT")
    ap.add_argument("-o", "--network-option", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="ParT size, passed to weaver: e.g. -o num_layers 3 -o embed_dims '[64,256,64]'")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    for name, value in args.network_option:
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            ap.error(f"--network-option {name}: value {value!r} is not a Python literal (weaver reads it so)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    files = split_files(args.data.resolve())
    work = args.out.resolve() / "weaver"  # weaver runs in this directory: every path it gets is absolute
    work.mkdir(parents=True, exist_ok=True)
    cmd = build_command(args, files, work)
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
               NUMEXPR_MAX_THREADS=threads, MPLBACKEND="Agg")
    print("$ " + shlex.join(cmd), flush=True)
    t0 = time.time()
    with open(work / "stdout.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    wall = time.time() - t0
    text = (work / "stdout.log").read_text(errors="replace")
    pred = work / "pred.root"
    if rc != 0 or not pred.exists():
        tail = "\n".join(text.splitlines()[-30:])
        raise SystemExit(f"bench_weaver_part: weaver exited with status {rc}"
                         f"{'' if pred.exists() else ' and wrote no ' + str(pred)}; log {work / 'stdout.log'}:\n{tail}")
    row = {"model": "ParT (weaver-core)", "features": "full", **evaluate_predictions(pred), **parse_log(text),
           "wall_s": wall, "threads": args.threads, "machine_cpus": os.cpu_count(), "epochs": args.epochs,
           "n_train": count_jets(files["train"]), "n_val": count_jets(files["val"])}
    meta = {"title": "Supervised reference: weaver-core ParticleTransformer (full features)",
            "dataset": str(args.data), "keys": ["model", "features"],
            # RESULTS.md columns (each with an empty "published" twin); the per-class AUCs stay in the row
            "metrics": ["accuracy", "auc_macro", "auc_Tbqq_vs_QCD", "train_jets_per_s", "wall_s", "params"],
            "scale": f"{row['n_train']} train / {row['n_val']} val / {row['n_test']} test jets, {args.epochs} epochs",
            "class_order": CLASS_NAMES,
            "notes": (f"weaver-core {importlib.metadata.version('weaver-core')}, bench/weaver/part_network.py options "
                      f"{dict(args.network_option) or 'default (3 layers, [64, 256, 64])'}, batch {args.batch_size}, "
                      f"start LR {args.start_lr}, {args.threads} thread(s) on {platform.node() or 'this machine'} "
                      f"({os.cpu_count()} CPUs)."),
            "command": "python -m bench.bench_weaver_part " + shlex.join(sys.argv[1:] if argv is None else argv)}
    meta["extra_fields"] = sorted(set(row) - set(meta["keys"]) - set(meta["metrics"]))  # per-class AUCs, sizes, ...
    write_result(args.out / f"{TABLE_ID}.json", TABLE_ID, [row], meta)
    print(format_table(row))
    print(f"result file: {args.out / (TABLE_ID + '.json')}; weaver log: {work / 'stdout.log'}")
    return row


if __name__ == "__main__":
    cli(main)
