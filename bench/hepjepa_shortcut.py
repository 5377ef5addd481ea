"""The measurement behind HEP-JEPA's input / target-normalisation / position defaults (BENCHMARKS.md, "HEP-JEPA
without the kinematics shortcut"): short mini pretrainings, one per setting, each probed with hepjepa.probe (frozen
encoder vs random init with BatchNorm statistics set from class-balanced batches, 100 labelled jets per class), the
last logged shortcut monitors, and a floor: the same logistic regression on five jet observables (log pT, |eta|,
log E, mass, multiplicity).

This bench chooses defaults, so it scores on the validation split (probe.eval_split=val), never on test: the test
split is read only by the final evaluation of a table (docs/splits.md; tests/test_splits.py guards it).

    JETFM_THREADS=1 python -m bench.hepjepa_shortcut --data data/sim/jetclass --out /tmp/hj_shortcut --steps 300
    JETFM_THREADS=1 python -m bench.hepjepa_shortcut --data data/sim/jetclass --kinematics runs/.../checkpoint.pt \
        [data.features=hepjepa ...]       # R^2 of the pooled embeddings from the jet's (log pT, |eta|) alone

Further KEY=VALUE arguments override the mini config in every arm (e.g. train.lr=5e-4 sweep.encoder=target).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from common.data.batch import JET_FIELDS
from common.data.datasets import load_arrays
from common.data.subsets import per_class_subset
from common.training.config import load_config
from common.training.probe import linear_probe

CFG = "hepjepa/configs/mini/finetune_jetclass.yaml"
SPLIT = "val"   # every score of this bench: a selection is made on validation jets (docs/splits.md)
ARMS = {  # name -> overrides of the mini config
    "absolute_layer_mlp": ["data.features=hepjepa"],
    "relative_layer_mlp": ["data.features=hepjepa_rel", "model.target_norm=layer"],
    "relative_instance_mlp": ["data.features=hepjepa_rel", "model.target_norm=instance"],
    "relative_layer_sincos": ["data.features=hepjepa_rel", "model.target_norm=layer", "model.pos_embed=sincos",
                              "model.pos_every_layer=false"],
    "relative_instance_sincos": ["data.features=hepjepa_rel", "model.target_norm=instance", "model.pos_embed=sincos",
                                 "model.pos_every_layer=false"],
}


def observables_floor(data: str, n: int, seed: int, max_eval: int) -> float:
    """Logistic regression on (log pT, |eta|, log E, mass, multiplicity) of the same labelled and validation jets."""
    cfg = load_config(CFG, [f"data.root={data}"])

    def obs(a):
        j = a["jet"]
        col = {k: j[:, JET_FIELDS.index(k)] for k in JET_FIELDS}
        return np.stack([np.log(col["pt"]), np.abs(col["eta"]), np.log(col["energy"]), col["mass"],
                         a["mask"].sum(1)], 1)

    train, held = load_arrays(cfg["data"], "train"), load_arrays(cfg["data"], SPLIT, max_jets=max_eval)
    idx = per_class_subset(train["label"], n, seed)
    return linear_probe(obs(train)[idx], train["label"][idx], obs(held), held["label"], seed=seed)["accuracy"]


def kinematics_r2(data: str, ckpt: str, overrides=(), max_eval: int = 2000) -> dict:
    """R^2 of the standardised mean+max pooled embeddings of validation jets from a cubic polynomial in the jet's
    (log pT, |eta|): how much of the representation is the jet's kinematics. Pretrained (ckpt) and random init
    (statistics set from 20 class-balanced batches of 256 training jets, common.training.probe.norm_stat_batches)."""
    import torch

    from common.data.array_loader import ArrayLoader
    from common.training.probe import norm_stat_batches, pooled_embeddings, random_init

    from hepjepa.model import backbone_fns

    cfg = load_config(CFG, [f"data.root={data}", f"sweep.pretrained={ckpt}", *overrides])
    held, train = load_arrays(cfg["data"], SPLIT, max_jets=max_eval), load_arrays(cfg["data"], "train", max_jets=5120)
    build, load = backbone_fns(cfg)
    torch.manual_seed(0)
    net = build()
    load(net)
    a, b = np.log(held["jet"][:, JET_FIELDS.index("pt")]), np.abs(held["jet"][:, JET_FIELDS.index("eta")])
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    poly = np.stack([np.ones_like(a), a, b, a * a, a * b, b * b, a ** 3, a * a * b, a * b * b, b ** 3], 1)
    out = {}
    random = random_init(build, 0, norm_stat_batches(train, 20, 256))
    for name, m in (("pretrained", net), ("random", random)):
        z = pooled_embeddings(m, ArrayLoader(held, 256, shuffle=False))
        z = (z - z.mean(0)) / (z.std(0) + 1e-8)
        coef, *_ = np.linalg.lstsq(poly, z, rcond=None)
        out[name] = float(1 - ((z - poly @ coef) ** 2).sum() / (z ** 2).sum())
    return out


def last(log: Path, key: str):
    vals = [r[key] for r in map(json.loads, log.read_text().splitlines()) if key in r]
    return vals[-1] if vals else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out")
    ap.add_argument("--kinematics", metavar="CKPT", help="only the kinematics R^2 of this pretraining checkpoint")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--arms", default=",".join(ARMS))
    args, overrides = ap.parse_known_args(argv)
    if args.kinematics:
        print(json.dumps(kinematics_r2(args.data, args.kinematics, overrides)))
        return
    out = Path(args.out)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            d = out / arm / f"seed{seed}"
            common = [f"data.root={args.data}", f"seed={seed}", *ARMS[arm], *overrides]
            sched = [f"train.steps={args.steps}", f"train.schedule.total_steps={args.steps}",
                     f"train.schedule.warmup_steps={max(1, args.steps // 10)}", f"train.val_every={args.steps}",
                     f"train.ckpt_every={args.steps}"]
            if not (d / "pretrain" / "done.json").exists():
                subprocess.run([sys.executable, "-m", "hepjepa.pretrain", "--config", CFG, "--out", str(d / "pretrain"),
                                *common, *sched], check=True)
            if not (d / "probe" / "done.json").exists():
                subprocess.run([sys.executable, "-m", "hepjepa.probe", "--config", CFG, "--out", str(d / "probe"),
                                *common, f"probe.seeds=[{seed}]", f"probe.eval_split={SPLIT}",
                                f"sweep.pretrained={d / 'pretrain' / 'checkpoint.pt'}"], check=True)
            p = json.loads((d / "probe" / "probe.json").read_text())
            log = d / "pretrain" / "log.jsonl"
            rows.append({"arm": arm, "seed": seed, "pretrained": p["mean"]["pretrained"], "random": p["mean"]["random"],
                         **{k: last(log, k) for k in ("between_jet_share", "position_r2", "effective_rank",
                                                      "online_probe_acc", "loss")}})
            print(json.dumps(rows[-1]), flush=True)
    floor = observables_floor(args.data, 100, 0, 3000)
    (out / "summary.json").write_text(json.dumps({"rows": rows, "observables_floor": floor}, indent=1))
    print(f"observables floor (5 jet observables, 100 jets/class, {SPLIT} jets): {floor:.3f}")


if __name__ == "__main__":
    main()
