"""Which pretraining? Every pretrained backbone of a run, and each at random init, under one frozen probe on one
shared set of jets, beside the jet-observables floor.

Two halves, so that common/ never imports a method:
- `embed_set(build, load, cfg, out)`, called by each method's `<method>/embed.py` with its own backbone builder: the
  pooled frozen embeddings (common.training.probe.pool_mean_max over the backbone's outputs) of the compare set's training
  jets (the union of the labelled subsets of every grid point and seed) and test jets, into <out>/embeddings.npz;
  a random-init backbone gets its data statistics (BatchNorm, MPMv1 input normalisation) from the same training
  jets (common.training.probe.set_norm_stats), one random init per seed of COMPARE_SEEDS (built under that seed, as
  the fine-tuned mode builds it), so that the random-init rows replicate the initialisation too;
- `python -m common.results.compare --runs <out-dir> --out <dir>` reads every */embed/*/embeddings.npz of the run, checks
  that they hold the same jets, fits the same probe (common.training.probe.linear_probe: standardised multinomial logistic
  regression) on the same labelled subsets (common.data.subsets.per_class_subset, the fine-tuning harness's draw) for every
  grid point and seed, adds the floor (common/results/floor.py: BDT and logistic regression on the jet observables of the
  same jets), and writes the table compare.which_pretraining (RESULTS.md section "compare") and its figure.

Two modes:
- frozen: the probe above on the pooled embeddings, at every grid point;
- fine-tuned (`--finetune-grid N,...` of the embed step: `finetune_set`): the backbone with one head and one recipe
  for every method (common/results/compare.yaml) through the kit's fine-tuning harness (common.training.sweep.run_sweep over the same
  labelled subsets and seeds), trained until the validation loss stops improving, into <out>/finetune/; the random
  init gets its data statistics set as in the frozen mode. `compare` refuses fine-tuned runs of different recipes.

The compare set: the method config's data section with the overrides that run_all.sh passes to every embed step
alike (simulated JetClass, all 10 classes, the train, validation and test splits), grid COMPARE_GRID labelled jets
per class (capped at what the split holds) and seeds COMPARE_SEEDS.

Replicates: a random init is one per subset seed; a pretrained backbone's is its pretraining run. smoke and mini
embed every pretraining run of a backbone that has several (run_steps.sh: the first with every subset seed, an extra
run S with subset seed S only, `--subset-seeds S`, in both modes); its rows carry pretrain_seed (the run's config
seed) under the same row name, and the pairwise verdicts take one value per pretraining run.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_path
from common.cli import cli
from common.training.probe import linear_probe, pooled_embeddings
from common.training.probe import random_init as random_baseline
from common.training.train_utils import set_torch_threads

COMPARE_GRID = (10, 100, 1000)  # labelled jets per class
COMPARE_SEEDS = (0, 1, 2)
TABLE_ID = "compare.which_pretraining"
EMBED_FILE = "embeddings.npz"
RECIPE = Path(__file__).with_name("compare.yaml")  # the fine-tuned mode's one head and recipe
MODES = {"frozen": "frozen probe", "finetune": "fine-tuned"}


def finetune_recipe() -> dict:
    """The `finetune:` section of common/results/compare.yaml, checked as any fine-tuning config is."""
    import yaml

    from common.training.finetune_config import finetune_settings

    recipe = (yaml.safe_load(RECIPE.read_text()) or {}).get("finetune")
    if not isinstance(recipe, dict):
        raise ValueError(f"{RECIPE}: expected a `finetune:` section (the fine-tuned mode's recipe)")
    finetune_settings({"finetune": recipe})  # unknown keys and wrong values are refused here
    return recipe


def grid_for(labels: np.ndarray, n_classes: int, grid=None) -> list[int]:
    """The grid points (default COMPARE_GRID) the training split can hold (every class needs n jets)."""
    grid = COMPARE_GRID if grid is None else grid
    fewest = min(int((labels == c).sum()) for c in range(n_classes))
    return [n for n in grid if n <= fewest]


def compare_subsets(data: dict, grid=None, seeds=None) -> tuple[dict, np.ndarray]:
    """{(n, seed): global training-jet indices} (common.data.datasets.build_dataset's draw, as the fine-tuning harness makes
    it) and the labels of the whole training split."""
    from common.data.datasets import build_dataset, dataset_info

    ds = build_dataset(data, "train", progress=False)
    labels = np.concatenate([ds.label_map[np.asarray(e.arrays["label"])] for e in ds.entries])
    if ds.index is not None:
        labels = labels[ds.index]
    n_classes = len(dataset_info(data)["class_names"])
    seeds = COMPARE_SEEDS if seeds is None else seeds
    subsets = {(n, s): np.asarray(build_dataset(data, "train", n_per_class=n, subset_seed=s, progress=False).index)
               for n in grid_for(labels, n_classes, grid) for s in seeds}
    return subsets, labels


@torch.no_grad()
def forward_flops_per_jet(backbone, batch) -> float:
    """Forward FLOPs per jet of backbone(batch), measured by torch.utils.flop_counter (matrix products, attention
    and convolutions: the operations that dominate; element-wise work is not counted), padding included."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        backbone(batch)
    return counter.get_total_flops() / len(batch)


def _batches(ds, batch_size: int):
    """JetBatches of a JetDataset in order."""
    for start in range(0, len(ds), batch_size):
        yield ds[np.arange(start, min(start + batch_size, len(ds)))]


def check_subset_seeds(seeds, random_init: bool = False) -> list[int]:
    """The labelled-subset seeds of one embed step (default COMPARE_SEEDS): a subset of COMPARE_SEEDS. An extra
    pretraining run S is probed and fine-tuned with seed S only; a random init always with every seed."""
    if seeds is None:
        return list(COMPARE_SEEDS)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or not set(seeds) <= set(COMPARE_SEEDS):
        raise ValueError(f"subset seeds {seeds}: expected distinct seeds of COMPARE_SEEDS {list(COMPARE_SEEDS)}")
    if random_init and seeds != list(COMPARE_SEEDS):
        raise ValueError(f"subset seeds {seeds}: a random init is built once per seed of {list(COMPARE_SEEDS)}")
    return seeds


def embed_set(build, load, cfg: dict, out, *, name: str, random_init: bool, max_test_jets: int = 3000,
              batch_size: int = 256, norm_batches: int = 20, extra: dict | None = None, jets=None,
              subset_seeds=None) -> Path:
    """Pooled frozen embeddings of the compare set into <out>/embeddings.npz (see the module docstring).
    build() -> backbone with backbone(JetBatch) -> (h (B, T, D), mask (B, T)); load(backbone) loads the pretrained
    weights (not called for random_init). jets: training_jets(cfg["data"]) when the caller has it already.
    subset_seeds: the labelled-subset seeds `compare` probes these embeddings with (default COMPARE_SEEDS; an extra
    pretraining run S: [S]); the embedded jets are the whole compare set's whatever they are.
    extra: recorded in the info (the pretraining cost; pretrain_seed, the seed of the pretraining run)."""
    from common.data.datasets import build_dataset

    subset_seeds = check_subset_seeds(subset_seeds, random_init)
    data = cfg["data"]
    torch.manual_seed(int(cfg.get("seed", 0)))
    union, train, labels = jets or training_jets(data)
    test = build_dataset(data, "test", max_jets=max_test_jets, progress=False)
    per_seed = {}
    if random_init:  # statistics from data, as a pretrained backbone got them in pretraining
        # one random init per labelled-subset seed S, built under torch seed S as the fine-tuned mode builds it
        # (common.training.finetune seeds every run): a random init is a replicate like the subset draw
        stats = _stat_batches(train, labels[union], batch_size, norm_batches)
        for seed in COMPARE_SEEDS[1:]:
            b = random_baseline(build, int(seed), stats)
            per_seed[f"x_train_seed{seed}"] = pooled_embeddings(b, _batches(train, batch_size))
            per_seed[f"x_test_seed{seed}"] = pooled_embeddings(b, _batches(test, batch_size))
        backbone = random_baseline(build, int(COMPARE_SEEDS[0]), stats)
    else:
        backbone = build()
        load(backbone)
    t0 = time.time()
    x_train = pooled_embeddings(backbone, _batches(train, batch_size))
    x_test = pooled_embeddings(backbone, _batches(test, batch_size))
    info = {"name": name, "init": "random" if random_init else "pretrained", "data": data,
            "max_test_jets": max_test_jets, "subset_seeds": subset_seeds,
            "n_params": int(sum(p.numel() for p in backbone.parameters())), "embed_s": round(time.time() - t0, 2),
            "forward_flops_per_jet": forward_flops_per_jet(backbone, test[np.arange(min(64, len(test)))]),
            **(extra or {})}
    y_train = np.asarray(train.gather(np.arange(len(train)))["label"])
    y_test = np.asarray(test.gather(np.arange(len(test)))["label"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / EMBED_FILE
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, train_index=union, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                     info=np.array(json.dumps({**info, "init_seeds": (list(COMPARE_SEEDS) if random_init else None)},
                                              default=str)), **per_seed)
    return path


def training_jets(data: dict):
    """(global indices, JetDataset, labels of the whole split) of the compare set's training jets: the union of every
    grid point's subsets; read once per embed step and shared by both modes."""
    from common.data.datasets import JetDataset, build_dataset

    subsets, labels = compare_subsets(data)
    if not subsets:
        raise ValueError(f"compare set {data['root']}: no grid point of {COMPARE_GRID} fits the training split")
    union = np.unique(np.concatenate(list(subsets.values())))
    full = build_dataset(data, "train", progress=False)
    return union, JetDataset(full.entries, full.label_map, union if full.index is None else full.index[union],
                             features=full.features), labels


def _stat_batches(train, labels: np.ndarray, batch_size: int, norm_batches: int) -> list:
    """The batches a random-init backbone's data statistics are set from (the same in both modes): the kit's one
    class-balanced draw (common.data.subsets.balanced_batches, seed 0); labels: those of the jets of `train`."""
    from common.data.subsets import balanced_batches

    return [train[idx] for idx in balanced_batches(labels, norm_batches, min(batch_size, len(train)), seed=0)]


def finetune_set(build, load, cfg: dict, out, *, random_init: bool, grid, batch_size: int = 256,
                 norm_batches: int = 20, dist=None, jets=None, subset_seeds=None) -> dict:
    """The fine-tuned mode: common.training.sweep.run_sweep of the backbone with the recipe of common/results/compare.yaml (one head,
    one recipe for every method) at the grid points `grid` (capped at what the split holds) and the subset seeds
    (default COMPARE_SEEDS; an extra pretraining run S: [S]), on the compare set's labelled subsets, into
    <out>/finetune/n<N>/seed<S>/. At random init the backbone is built under the
    run's seed and its data statistics are set from the frozen mode's batches (common.training.probe.set_norm_stats) before
    training; pretrained, load(backbone) loads the weights. Returns run_sweep's summary."""
    import copy

    from common.data.datasets import dataset_info
    from common.training.distributed import init_distributed
    from common.training.probe import set_norm_stats
    from common.training.sweep import run_sweep

    data = cfg["data"]
    union, train, labels = jets or training_jets(data)
    ns = grid_for(labels, len(dataset_info(data)["class_names"]), tuple(int(n) for n in grid))
    if not ns:
        raise ValueError(f"compare set {data['root']}: no fine-tuned grid point of {list(grid)} fits the training "
                         "split")
    cfg_ft = copy.deepcopy(cfg)
    cfg_ft["finetune"] = {**finetune_recipe(), "n_per_class": ns,
                          "seeds": check_subset_seeds(subset_seeds, random_init)}
    if random_init:
        batches = _stat_batches(train, labels[union], batch_size, norm_batches)

        def load_fn(backbone):  # statistics from data, weights as built (random)
            set_norm_stats(backbone, batches, lambda m, b: m(b))
    else:
        load_fn = load
    return run_sweep(cfg_ft, build, load_fn, Path(out) / "finetune", dist or init_distributed())


def pretraining_cost(run_dir) -> dict:
    """Pretraining jets seen and seconds of a pretraining run directory, from its done.json (steps, jets_seen or
    steps x config.yaml train.batch_size, jets_per_s) as the kit's training loops write it; {} where unknown."""
    import yaml

    run_dir = Path(run_dir)
    try:
        done = json.loads((run_dir / "done.json").read_text())
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ValueError):
        return {}
    jets = done.get("jets_seen")
    if jets is None and done.get("steps") is not None and (cfg.get("train") or {}).get("batch_size"):
        jets = int(done["steps"]) * int(cfg["train"]["batch_size"])
    out = {"pretraining_jets": int(jets)} if jets is not None else {}
    rate = done.get("jets_per_s")
    if done.get("seconds") is not None:
        out["pretraining_s"] = float(done["seconds"])
    elif jets is not None and rate:
        out["pretraining_s"] = round(jets / float(rate), 1)
    return out


def pretraining_seed(run_dir) -> int | None:
    """The seed of a pretraining run (its resolved config.yaml `seed`): the identity of the run in the table's rows
    (pretrain_seed, as the methods' tables write it); None where unknown."""
    import yaml

    try:
        seed = (yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}).get("seed")
    except (OSError, ValueError):
        return None
    return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None


def embed_main(description: str, argv, backbone_fns, pretrain_dir=None) -> None:
    """The command line of every <method>/embed.py:

        python -m <method>.embed --config <its fine-tuning yaml> --out <dir> --name <row name> [--random-init] a.b=v ...

    backbone_fns(cfg) -> (build, load) from the method's model module; pretrain_dir(cfg) -> the pretraining run
    directory (its cost is recorded: pretraining_cost); writes <out>/embeddings.npz and done.json."""
    from common.training.train_utils import mark_done, start_run

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--name", required=True, help="the model's row name in compare.which_pretraining")
    ap.add_argument("--random-init", action="store_true", help="same architecture at random init, nothing loaded")
    ap.add_argument("--finetune-grid", default="", metavar="N,...",
                    help="also the fine-tuned mode at these labelled jets per class (common/results/compare.yaml's recipe)")
    ap.add_argument("--subset-seeds", default="", metavar="S,...",
                    help="labelled-subset seeds of both modes (default: all of COMPARE_SEEDS); an extra pretraining "
                         "run S takes seed S")
    args, rest = ap.parse_known_args(argv)
    try:
        grid = [int(n) for n in args.finetune_grid.split(",") if n.strip()]
    except ValueError:
        raise SystemExit(f"--finetune-grid {args.finetune_grid!r}: expected labelled jets per class, e.g. 10,100")
    try:
        seeds = check_subset_seeds([int(s) for s in args.subset_seeds.split(",") if s.strip()]
                                   if args.subset_seeds.strip() else None, args.random_init)
    except ValueError as e:
        raise SystemExit(f"--subset-seeds {args.subset_seeds!r}: {e}")
    run = start_run(description, rest)
    if run is None:
        return
    cfg, out = run[0], Path(run[1])
    build, load = backbone_fns(cfg)
    extra = {}
    if pretrain_dir is not None and not args.random_init:
        extra = {**pretraining_cost(pretrain_dir(cfg)), "pretrain_seed": pretraining_seed(pretrain_dir(cfg))}
    jets = training_jets(cfg["data"])
    path = embed_set(build, load, cfg, out, name=args.name, random_init=args.random_init, extra=extra, jets=jets,
                     subset_seeds=seeds)
    if grid:
        finetune_set(build, load, cfg, out, random_init=args.random_init, grid=grid, jets=jets, subset_seeds=seeds)
    mark_done(out, {"name": args.name, "random_init": args.random_init, "embeddings": str(path),
                    "finetune_grid": grid, "subset_seeds": seeds})


def read_embeddings(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    d["info"] = json.loads(str(d["info"]))
    return d


def _subset_seeds(info: dict) -> list[int]:
    """The labelled-subset seeds an embedding is probed and fine-tuned with (embeddings without the field: all)."""
    return list(info.get("subset_seeds") or COMPARE_SEEDS)


def _run_fields(info: dict) -> dict:
    """{"pretrain_seed": S} for the rows of a pretrained embedding whose pretraining run is known, else {}: rows of
    two pretraining runs of one backbone are two replicates, never one (claims.pretraining_run_values)."""
    if info["init"] == "pretrained" and info.get("pretrain_seed") is not None:
        return {"pretrain_seed": int(info["pretrain_seed"])}
    return {}


def _check_runs(embs: list) -> dict[str, int]:
    """{backbone name: its pretraining runs}. Refused: two embeddings of one backbone, init and pretraining run (one
    run counted twice), and a backbone with several pretrained embeddings of which one does not name its run."""
    seen: dict[tuple, Path] = {}
    runs: dict[str, list] = {}
    for p, e in embs:
        info = e["info"]
        pseed = info.get("pretrain_seed") if info["init"] == "pretrained" else None
        ident = (info["name"], info["init"], pseed)
        if ident in seen:
            raise ValueError(f"{p}: the same backbone ({info['name']}, {info['init']}"
                             + (f", pretraining seed {pseed}" if pseed is not None else "") + f") as {seen[ident]}; "
                             "one pretraining run (or random init) is embedded once: remove one of them")
        seen[ident] = p
        if info["init"] == "pretrained":
            runs.setdefault(info["name"], []).append((pseed, p))
    for name, rs in runs.items():
        if len(rs) > 1 and any(s is None for s, _ in rs):
            unnamed = next(p for s, p in rs if s is None)
            raise ValueError(f"{unnamed}: {name} has {len(rs)} pretrained embeddings and this one does not name its "
                             "pretraining run (info pretrain_seed: its config.yaml has no seed); its rows would be "
                             "merged with another run's")
    return {name: len(rs) for name, rs in runs.items()}


def compare(runs_dir, classifiers=("bdt", "logistic")) -> tuple[list[dict], dict]:
    """Rows of compare.which_pretraining from every embeddings.npz under runs_dir, and the meta of the table."""
    from common.data.datasets import JetDataset, build_dataset
    from common.results import floor

    paths = sorted(Path(runs_dir).glob("*/embed/*/" + EMBED_FILE))
    if not paths:
        raise FileNotFoundError(f"{runs_dir}: no */embed/*/{EMBED_FILE} (run the methods' embed steps first)")
    embs = [(p, read_embeddings(p)) for p in paths]
    ref_path, ref = embs[0]
    for p, e in embs[1:]:
        if not (np.array_equal(e["train_index"], ref["train_index"]) and np.array_equal(e["y_test"], ref["y_test"])
                and np.array_equal(e["y_train"], ref["y_train"])):
            raise ValueError(f"{p}: holds other jets than {ref_path}; every embed step must read the same compare set "
                             "(same data.root, train, test and classes)")
    n_runs = _check_runs(embs)
    data = ref["info"]["data"]
    subsets, _ = compare_subsets(data)
    index = ref["train_index"]
    # the floor on the same jets: jet observables of the compare set (common/results/floor.py)
    full = build_dataset(data, "train", progress=False)
    train = JetDataset(full.entries, full.label_map, index if full.index is None else full.index[index])
    fx_train, _ = floor.dataset_features(train)
    max_test = ref["info"].get("max_test_jets", len(ref["y_test"]))
    fx_test, fy_test = floor.dataset_features(build_dataset(data, "test", max_jets=max_test, progress=False))
    if not np.array_equal(fy_test, ref["y_test"]):
        raise ValueError(f"{ref_path}: its test jets are not the compare set's test split of {data.get('root')}")
    n_classes = int(max(ref["y_train"].max(), ref["y_test"].max())) + 1
    rows = []
    for (n, seed), sub in sorted(subsets.items()):
        pos = np.searchsorted(index, sub)
        for p, e in embs:
            if seed not in _subset_seeds(e["info"]):  # an extra pretraining run S: subset seed S only
                continue
            # a random init: the one built under this seed (x_*_seed<S>; x_train / x_test hold the first seed's)
            xs = (e[f"x_train_seed{seed}"], e[f"x_test_seed{seed}"]) if f"x_train_seed{seed}" in e else \
                (e["x_train"], e["x_test"])
            res = linear_probe(xs[0][pos], e["y_train"][pos], xs[1], e["y_test"], seed=seed)
            rows.append({"model": e["info"]["name"], "init": e["info"]["init"], "mode": MODES["frozen"],
                         "n_per_class": n, "seed": seed, "accuracy": res["accuracy"], **_run_fields(e["info"])})
        for kind in classifiers:
            probs = floor.fit_predict(kind, fx_train[pos], ref["y_train"][pos], fx_test, seed, n_classes)
            rows.append({"model": floor.CLASSIFIERS[kind], "init": "none", "mode": "none", "n_per_class": n,
                         "seed": seed, "accuracy": float((probs.argmax(1) == ref["y_test"]).mean())})
    ft_rows, recipe = finetuned_rows(embs, subsets, len(ref["y_test"]))
    rows += ft_rows
    models: dict[str, dict] = {}
    for _, e in embs:  # the (first) pretrained embedding's info carries the pretraining cost
        name = e["info"]["name"]
        if name not in models or (e["info"]["init"] == "pretrained" and models[name]["init"] != "pretrained"):
            models[name] = e["info"]
    meta = {"title": "Which pretraining? Every backbone of the run on the same jets: one frozen probe, one "
                     "fine-tuning recipe",
            "keys": ["model", "init", "mode", "n_per_class"], "metrics": ["accuracy"], "seeds": list(COMPARE_SEEDS),
            "extra_fields": ["pretrain_seed"],
            "dataset": f"{data.get('dataset')} at {data.get('root')}, train/validation/test splits, all classes",
            "scale": f"{len(index)} training jets embedded, {len(ref['y_test'])} test jets",
            "sources": [str(p) for p, _ in embs],
            "notes": ("Frozen mode: masked mean+max pooled embeddings, standardised multinomial logistic regression "
                      "(common.training.probe.linear_probe), the same labelled subsets (common.data.subsets.per_class_subset) for "
                      "every row; random init = same architecture, one per seed (built under that seed), data "
                      "statistics (BatchNorm, MPMv1 input normalisation) set from the same jets. "
                      + (_recipe_note(recipe) if recipe else "Fine-tuned mode not run. ") +
                      "Cost (parameters; forward FLOPs per jet, measured on 64 test jets with "
                      "torch.utils.flop_counter; pretraining jets seen and seconds, from the pretraining run's "
                      "done.json): "
                      + "; ".join(_cost(k, v, n_runs.get(k, 1)) for k, v in sorted(models.items())) + ". "
                      "A pretrained backbone's cell holds every pretraining run (pretrain_seed: the run's seed; "
                      "the first run with the 3 labelled-subset seeds, an extra run S with subset seed S). "
                      "Pairwise verdicts (the claims' rule, per mode and grid point): a replicate of a pretrained "
                      "backbone is one pretraining run (its value: the mean over its subset seeds; \"n pretraining "
                      "runs\", so one run reads inconclusive), of a random init or the floor one labelled-subset seed "
                      "(\"n seeds\"): " + " | ".join(pairwise_verdicts(rows)) + ".")}
    return rows, meta


def finetuned_rows(embs: list, subsets: dict, n_test: int) -> tuple[list[dict], dict | None]:
    """Rows of the fine-tuned mode from <embed dir>/finetune/n<N>/seed<S>/result.json (finetune_set), and the recipe
    they share. Refused: runs of different recipes, on other labelled subsets or test jets than the frozen mode's."""
    rows, recipes = [], {}  # per N (its finetune.per_n rules applied): (settings, first file)
    for p, e in embs:
        for res_path in sorted(p.parent.glob("finetune/n*/seed*/result.json")):
            r = json.loads(res_path.read_text())
            fc = {k: v for k, v in r["finetune"].items() if k not in ("n_per_class", "seeds", "schedule")}
            n, seed = int(r["n_per_class"]), int(r["seed"])
            recipe, first = recipes.setdefault(n, (fc, res_path))
            if fc != recipe:
                diff = sorted(k for k in set(fc) | set(recipe) if fc.get(k) != recipe.get(k))
                raise ValueError(f"{res_path}: fine-tuned with another recipe than {first} (keys {diff}); the "
                                 "fine-tuned mode uses common/results/compare.yaml for every backbone")
            if (n, seed) not in subsets or r["n_train_jets"] != len(subsets[(n, seed)]) or r["n_test_jets"] != n_test:
                raise ValueError(f"{res_path}: not the compare set's labelled subset (n={n}, seed={seed}) and "
                                 f"{n_test} test jets")
            if seed not in _subset_seeds(e["info"]):
                raise ValueError(f"{res_path}: subset seed {seed} is not one of its embed step's subset seeds "
                                 f"{_subset_seeds(e['info'])}")
            rows.append({"model": e["info"]["name"], "init": e["info"]["init"], "mode": MODES["finetune"],
                         "n_per_class": n, "seed": seed, "accuracy": float(r["test"]["accuracy"]),
                         **_run_fields(e["info"])})
    return rows, (recipes[min(recipes)][0] if recipes else None)


def _recipe_note(fc: dict) -> str:
    return (f"Fine-tuned mode: every backbone with one head ({fc['head'].get('kind')}) and one recipe "
            f"(common/results/compare.yaml: AdamW lr {fc['lr']:g}, backbone at {fc['backbone_lr_factor']:g}x, batch "
            f"{fc['batch_size']}, validation every {fc['val_every']} steps, stop after {fc['patience']} without a "
            f"lower validation loss, at most {fc['steps']} steps, best-validation weights tested"
            + (f"; these are the settings at the fewest labelled jets, finetune.per_n rules {fc['per_n']}"
               if fc.get("per_n") else "")
            + "); random init with the same data statistics set before training. ")


def _replicates(rows: list[dict], init: str) -> tuple[list[float], str]:
    """The values of one cell for a verdict and what they are: a pretrained backbone one per pretraining run (the
    mean over its subset seeds; rows group by pretrain_seed, rows without it are one run), a random init or the
    floor one per labelled-subset seed."""
    from common.results.claims import pretraining_run_values

    vals, runs = pretraining_run_values(rows, "accuracy", pretrained=(init == "pretrained"))
    unit = "seed" if runs is None else "pretraining run"
    return vals, f"{len(vals)} {unit}{'' if len(vals) == 1 else 's'}"


def _verdict(decide, a: tuple, b: tuple) -> str:
    """"<verdict> (<a's count> vs <b's count>)" of a > b; a, b: _replicates of the two cells."""
    return f"{decide(a[0], b[0], 'higher')[0]} ({a[1]} vs {b[1]})"


def pairwise_verdicts(rows: list[dict]) -> list[str]:
    """Under the claims' one rule (common.results.claims.decide: d > 2 SE reproduced, d < -2 SE contradicted, else
    inconclusive; fewer than 3 values a side inconclusive), per mode and grid point: each pretrained backbone against
    its own random init, and adjacent entries of the ranking of pretrained backbones and the floor by mean
    ("A > B"). A pretrained backbone's replicate is its pretraining run (_replicates), the others' a subset seed;
    each verdict says its counts, e.g. "(3 pretraining runs vs 3 seeds)"."""
    from common.results.claims import decide

    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["init"], r.get("mode", MODES["frozen"]), r["n_per_class"]), []).append(r)
    out = []
    for mode in [m for m in MODES.values() if any(k[2] == m for k in cells)]:
        for n in sorted({k[3] for k in cells if k[2] == mode}):
            here = {(m, i): _replicates(v, i) for (m, i, md, nn), v in cells.items()
                    if nn == n and md in (mode, "none")}
            said = []
            for (m, i) in sorted(here):
                if i == "pretrained" and (m, "random") in here:
                    said.append(f"{m} pretrained > random init {_verdict(decide, here[(m, i)], here[(m, 'random')])}")
            ranked = sorted(((m, i) for m, i in here if i != "random"), key=lambda k: -float(np.mean(here[k][0])))
            for hi, lo in zip(ranked, ranked[1:]):
                said.append(f"{hi[0]} > {lo[0]} {_verdict(decide, here[hi], here[lo])}")
            out.append(f"{mode}, {n} per class: " + "; ".join(said))
    return out


def _cost(name: str, info: dict, runs: int = 1) -> str:
    parts = [f"{info['n_params']:,} parameters"]
    if info.get("forward_flops_per_jet") is not None:
        parts.append(f"{info['forward_flops_per_jet'] / 1e6:.3g} MFLOP forward per jet")
    if info.get("pretraining_jets") is not None:
        parts.append(f"{info['pretraining_jets']:,} pretraining jets")
    if info.get("pretraining_s") is not None:
        parts.append(f"{info['pretraining_s']:g} s")
    return f"{name} " + ", ".join(parts) + (f" (one of its {runs} pretraining runs)" if runs > 1 else "")


def main(argv=None) -> None:
    from common.results.tables import write_table

    ap = argparse.ArgumentParser(description="Which pretraining? One frozen probe over every embed step's output.")
    ap.add_argument("--runs", required=True, help="run_all.sh --out-dir (its */embed/*/embeddings.npz are read)")
    ap.add_argument("--out", required=True, help="output directory (compare.which_pretraining.json/.md/.png)")
    ap.add_argument("--profile", default=None)
    args = ap.parse_args(argv)
    set_torch_threads()  # also caps scikit-learn's OpenMP pool (the floor's gradient boosting)
    rows, meta = compare(args.runs)
    if args.profile:
        meta["profile"] = args.profile
    out = Path(args.out)
    write_table(out, TABLE_ID, rows, meta)  # RESULTS.md draws its figure (common/results/figures.py)
    print(f"compare: {len(rows)} rows -> {out / (TABLE_ID + '.json')}")


if __name__ == "__main__":
    cli(main)
