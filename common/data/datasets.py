"""Data entry points shared by every method: `make_loader`, `dataset_info`, `load_arrays`, `set_epoch`.

Config (the `data:` section of every YAML):
    dataset: jetclass | toptagging | qg
    root: directory; train/val/test: glob(s) relative to root. A glob may end in "@a:b" to take the fraction [a, b)
          of every matched file's jets (e.g. one QG file split "QG_jets*.npz@0:0.8" / "@0.8:0.9" / "@0.9:1").
    features: a name in common.data.features.FEATURE_SETS; num_particles: null = the feature set's default
    classes: null or a list of class names (subset, labels remapped to that order); cache_dir: null = <root>/.cache
          (a read-only root: $XDG_CACHE_HOME/jetfm/<root name>-<hash of root>, said on stderr)
    num_workers: DataLoader workers

Each source file is converted once into the memory-mapped cache (common/data/cache.py); a map-style dataset gathers whole
batches from it, and a sharded sampler (DistributedSampler semantics, a new permutation per epoch) feeds it.
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.atomic import atomic_path, write_json
from common.cli import cli
from common.data import jetclass, quarkgluon, toptagging
from common.data.batch import JetBatch
from common.data.cache import file_lock, get_or_build, source_stat
from common.data.features import (DataError, FeatureSet, RawJets, fit_mpmv2_quantiles, get_feature_set,
                                  quantile_transformer)
from common.data.sampler import ShardedBatchSampler
from common.data.subsets import per_class_subset

DATASETS = ("jetclass", "toptagging", "qg")
CLASS_NAMES = {"jetclass": jetclass.CLASS_NAMES, "toptagging": toptagging.CLASS_NAMES, "qg": quarkgluon.CLASS_NAMES}
DEFAULT_GLOBS = {"jetclass": {"train": "train/*.root", "val": "val/*.root", "test": "test/*.root"},
                 "toptagging": {"train": "train.h5", "val": "val.h5", "test": "test.h5"},
                 "qg": {"train": "QG_jets*.npz@0:0.8", "val": "QG_jets*.npz@0.8:0.9", "test": "QG_jets*.npz@0.9:1"}}
STEP_SIZE = 100_000              # jets per read chunk
MIN_CONSTITUENTS = 2             # a jet with fewer has no particle pairs, nothing to mask (see _check_short_jets)
MAX_SHORT_FRACTION = 0.01        # more jets than this fraction below MIN_CONSTITUENTS: the file is refused
MPMV2_FIT_JETS = 100_000         # jets of the training split used to fit the MPMv2 quantile transformer
CONFIG_KEYS = {"dataset", "root", "train", "val", "test", "features", "num_particles", "classes", "cache_dir",
               "num_workers"}


# ------------------------------------------------------------------------------------------------- config helpers
def _check_cfg(cfg: dict) -> None:
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise DataError(f"data config: unknown key(s) {sorted(unknown)}; expected a subset of {sorted(CONFIG_KEYS)}")
    if cfg.get("dataset") not in DATASETS:
        raise DataError(f"data config: dataset must be one of {DATASETS}, got {cfg.get('dataset')!r}")


def _feature_set(cfg) -> FeatureSet:
    return get_feature_set(cfg.get("features") or "part_kin")


def _num_particles(cfg) -> int:
    return int(cfg.get("num_particles") or _feature_set(cfg).num_particles)


def _class_names(cfg) -> tuple[list[str], list[str]]:
    """(all class names of the dataset, the selected ones in the requested order)."""
    names = CLASS_NAMES[cfg["dataset"]]
    chosen = cfg.get("classes") or names
    bad = [c for c in chosen if c not in names]
    if bad or len(set(chosen)) != len(chosen):
        raise DataError(f"data config: classes {list(chosen)} must be distinct names from {names}")
    return names, list(chosen)


_CACHE_NOTED: set = set()
_CACHE_CHOICE: dict = {}   # data root -> the cache folder chosen for it (checked once per process)


def _cache_dir(cfg) -> str:
    """cfg's cache_dir, else <root>/.cache when it can be written there, else (a read-only data folder) a folder of
    its own per data root under $XDG_CACHE_HOME/jetfm (~/.cache/jetfm), said once on stderr."""
    if cfg.get("cache_dir"):
        return cfg["cache_dir"]
    root = os.path.abspath(cfg["root"])
    if root in _CACHE_CHOICE:
        return _CACHE_CHOICE[root]
    default = os.path.join(root, ".cache")
    if _writable(default):
        _CACHE_CHOICE[root] = default
        return default
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):   # unset, empty or relative: ignored, as the XDG Base Directory spec says
        base = os.path.join(os.path.expanduser("~"), ".cache")
    tag = hashlib.sha256(root.encode()).hexdigest()[:16]
    fallback = os.path.join(base, "jetfm", f"{os.path.basename(root) or 'root'}-{tag}")
    if not _writable(fallback):
        raise DataError(f"data.root {root}: its .cache cannot be written and neither can {fallback}; set "
                        "data.cache_dir=<a writable folder>")
    if root not in _CACHE_NOTED:
        _CACHE_NOTED.add(root)
        print(f"data: {root} is not writable; caching its converted arrays in {fallback} "
              "(set data.cache_dir to choose)", file=sys.stderr, flush=True)
    _CACHE_CHOICE[root] = fallback
    return fallback


def _writable(d: str) -> bool:
    """Can the kit write into folder d (made if missing)? os.access and a probe file: root ignores permission bits
    but not a read-only file system, and os.access alone can be wrong on network file systems."""
    if os.path.isdir(d):
        if not os.access(d, os.W_OK | os.X_OK):
            return False
    else:
        parent = os.path.dirname(d)
        while parent and not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        if not parent or not os.access(parent, os.W_OK | os.X_OK):
            return False
        try:
            os.makedirs(d, exist_ok=True)
        except OSError:
            return False
    probe = os.path.join(d, f".write_test.{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError:
        return False
    return True


def _parse_pattern(p: str) -> tuple[str, float, float]:
    if "@" in p:
        p, frac = p.rsplit("@", 1)
        try:
            a, b = (float(v) for v in frac.split(":"))
        except ValueError:
            raise DataError(f"data config: bad fraction suffix '@{frac}' in {p!r}; expected '@a:b' with 0 <= a < b <= 1")
        if not 0 <= a < b <= 1:
            raise DataError(f"data config: fraction '@{frac}' must satisfy 0 <= a < b <= 1")
        return p, a, b
    return p, 0.0, 1.0


def resolve_files(cfg: dict, split: str) -> list[tuple[str, float, float]]:
    """(path, fraction start, fraction stop) for every file of a split, sorted; JetClass limited to the chosen classes
    by file name, so files of other classes are never opened."""
    _check_cfg(cfg)
    patterns = cfg.get(split, DEFAULT_GLOBS[cfg["dataset"]].get(split))
    if patterns is None:
        raise DataError(f"data config: no {split!r} glob")
    root = cfg["root"]
    if not os.path.isdir(root):
        raise DataError(f"data config: root {root!r} is not a directory")
    check_simulation_finished(root)
    out = []
    for pat in [patterns] if isinstance(patterns, str) else list(patterns):
        p, a, b = _parse_pattern(pat)
        files = sorted(glob.glob(os.path.join(root, p)))
        if not files:
            raise DataError(f"data config: {split} glob {p!r} matches no file under {root!r}")
        out += [(f, a, b) for f in files]
    if cfg["dataset"] == "jetclass":
        _, chosen = _class_names(cfg)
        out = [o for o in out if jetclass.class_of_file(o[0]) in chosen]
        if not out:
            raise DataError(f"data config: no {split} JetClass file for classes {chosen} under {root!r}")
        absent = [c for c in chosen if not any(jetclass.class_of_file(o[0]) == c for o in out)]
        if absent:  # e.g. a simulation stopped after some classes: the task would silently have fewer classes
            raise DataError(f"data: {split} glob {patterns!r} under {root!r} has no file of class(es) {absent} of "
                            f"the config's classes {chosen}; set data.classes to the classes present or complete "
                            "the data")
    return out


def check_simulation_finished(root: str) -> None:
    """A simulated sample (common.simulate writes <root>/simulate.json) is read only once its simulation finished:
    a run killed after 2 of 10 classes would otherwise train on what happens to be there."""
    path = os.path.join(root, "simulate.json")
    if os.path.isfile(path) and _read_json(path).get("finished", True) is False:
        raise DataError(f"{path}: the simulation of this sample did not finish (finished: false); rerun the same "
                        "python -m common.simulate command to complete it")


# ------------------------------------------------------------------------------------------------- reading
def _num_entries(cfg: dict, path: str) -> int:
    """Jets in a file, memoised in <cache_dir>/num_entries.json by (path, size, mtime): opening 1000 ROOT files (or
    loading a 0.5 GB npz) on every make_loader call would cost minutes."""
    st = source_stat(path)
    key = f"{st['path']}|{st['size']}|{st['mtime_ns']}"
    memo_path = os.path.join(_cache_dir(cfg), "num_entries.json")
    memo = _read_json(memo_path)
    if key not in memo:
        n = {"jetclass": jetclass.num_entries, "toptagging": toptagging.num_entries,
             "qg": quarkgluon.num_entries}[cfg["dataset"]](path)
        os.makedirs(_cache_dir(cfg), exist_ok=True)
        with file_lock(memo_path + ".lock"):
            memo = _read_json(memo_path)
            memo[key] = n
            write_json(memo_path, memo, indent=None, unique=True)
    return int(memo[key])


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _row_range(n: int, a: float, b: float) -> tuple[int, int]:
    return int(math.floor(a * n)), int(math.floor(b * n))


def iter_raw(dataset: str, path: str, start: int, stop: int, step_size: int = STEP_SIZE):
    if dataset == "jetclass":
        yield from jetclass.iter_jetclass(path, step_size, start, stop)
    elif dataset == "toptagging":
        yield from toptagging.iter_toptagging(path, step_size, start, stop)
    else:
        x, y = quarkgluon.load_npz(path)
        for s in range(start, stop, step_size):
            e = min(s + step_size, stop)
            yield quarkgluon.to_raw(x[s:e], y[s:e], path)


def _mpmv2_state(cfg: dict):
    """Fit (once, cached) the MPMv2 quantile transformer on the start of every training file."""
    fs = _feature_set(cfg)
    train = resolve_files(cfg, "train")
    fp = {"files": [source_stat(f) | {"range": [a, b]} for f, a, b in train], "params": fs.key(),
          "fit_jets": MPMV2_FIT_JETS, "classes": _class_names(cfg)[1]}
    key = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:20]
    path = os.path.join(_cache_dir(cfg), f"mpmv2_quantiles.{key}.npz")
    os.makedirs(_cache_dir(cfg), exist_ok=True)
    with file_lock(path + ".lock"):
        if not os.path.exists(path):
            qt = _fit_mpmv2(cfg, train, fs)
            with atomic_path(path, unique=True) as tmp, open(tmp, "wb") as f:
                np.savez(f, quantiles=qt.quantiles_, references=qt.references_)
    return _load_quantiles(path), key


def _load_quantiles(path: str):
    """The fitted QuantileTransformer from its arrays (an npz of plain arrays, never a pickle: a cache file cannot
    run code)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            quantiles, references = np.asarray(z["quantiles"], np.float64), np.asarray(z["references"], np.float64)
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot read the cached quantile transformer ({e}); delete it to refit") from e
    try:
        return quantile_transformer(quantiles, references, path)
    except DataError as e:
        raise DataError(f"{e}; delete it to refit") from None


def mpmv2_quantiles(cfg: dict):
    """The MPMv2 quantile transformer of a data config (_mpmv2_state): the input scale a backbone pretrained on that
    data saw (mpm.btag.data applies it to other datasets' tracks)."""
    return _mpmv2_state(cfg)[0]


def _fit_mpmv2(cfg, train, fs):
    per_file = max(1, MPMV2_FIT_JETS // len(train))
    raws = []
    for f, a, b in train:
        s, e = _row_range(_num_entries(cfg, f), a, b)
        raws += list(iter_raw(cfg["dataset"], f, s, min(e, s + per_file)))
    return fit_mpmv2_quantiles(raws, n_quantiles=fs.params["n_quantiles"])


def cached_entries(cfg: dict, split: str, progress: bool = True, rank: int = 0, world_size: int = 1,
                   per_file_limit: int | None = None) -> list:
    """Convert (once) every file of the split; returns CacheEntry objects (memory-mapped), in file order.
    Each rank starts at its own offset in the file list, so DDP ranks convert different files in parallel (a file
    lock per entry makes every other rank wait for, then reuse, the one conversion). per_file_limit: convert only
    the first jets of each file (small evaluations on a large split need not convert all of it)."""
    fs, n = _feature_set(cfg), _num_particles(cfg)
    state, extra_state = None, {}
    if fs.needs_fit:
        state, qkey = _mpmv2_state(cfg)
        extra_state = {"quantiles": qkey}
    files = resolve_files(cfg, split)
    start = rank * len(files) // max(world_size, 1)
    entries = {}
    for i in [(start + j) % len(files) for j in range(len(files))]:
        path, a, b = files[i]
        total = _num_entries(cfg, path)
        s, e = _row_range(total, a, b)
        if e <= s:
            raise DataError(f"{path}: fraction [{a}, {b}) of {total} jets is empty")
        if per_file_limit is not None and e - s > per_file_limit:
            e = s + per_file_limit
            extra = {"fraction": [a, b], "limit": per_file_limit, "rows": [s, e], **extra_state}
        else:
            extra = {"fraction": [a, b], "rows": [s, e], **extra_state}
        seed = int(hashlib.sha256(f"{os.path.abspath(path)}:{s}".encode()).hexdigest()[:8], 16)

        def build(path=path, s=s, e=e, seed=seed):
            rng = np.random.default_rng(seed)          # MPMv2 neutral-IP noise of the cache (redrawn per batch)
            bar = _bar(e - s, os.path.basename(path), progress)
            short = 0
            for raw in iter_raw(cfg["dataset"], path, s, e):
                short += int((raw.mask.sum(1) < MIN_CONSTITUENTS).sum())
                yield raw, fs.compute(raw, n, state, rng), fs.source_positions(raw, n)
                if bar is not None:
                    bar.update(len(raw))
            if bar is not None:
                bar.close()
            _check_short_jets(path, short, e - s)

        entries[i] = get_or_build(_cache_dir(cfg), path, fs.name, fs.key(), n, e - s, build, extra,
                                  computed=fs if fs.on_read else None)
    return [entries[i] for i in range(len(files))]


def _check_short_jets(path: str, short: int, total: int) -> None:
    """Jets with fewer than MIN_CONSTITUENTS constituents have no pairs, nothing to mask and predict: more than
    MAX_SHORT_FRACTION of a file is refused (a loss of 0 at every step would train nothing); a few are kept (the
    published files hold some) and counted on stderr, once, when the file is converted."""
    if short > MAX_SHORT_FRACTION * total:
        raise DataError(f"{path}: {short} of {total} jets have fewer than {MIN_CONSTITUENTS} constituents (more than "
                        f"{MAX_SHORT_FRACTION:.0%}); not a usable jet sample")
    if short:
        print(f"{path}: {short} of {total} jets have fewer than {MIN_CONSTITUENTS} constituents (kept)",
              file=sys.stderr, flush=True)


def _bar(total, desc, enabled):
    if not enabled or total < 50_000:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"cache {desc}", unit="jets", unit_scale=True, leave=False)


# ------------------------------------------------------------------------------------------------- dataset, sampler
class JetDataset(torch.utils.data.Dataset):
    """Map-style dataset over cached arrays. Indexing with an array of indices returns a whole JetBatch.

    Jets are numbered through the entries in order; `index` (optional) selects a subset of those global numbers, so
    the full dataset needs no per-jet index arrays (JetClass: 100M jets)."""

    def __init__(self, entries: list, label_map: np.ndarray, index: np.ndarray | None = None,
                 features: FeatureSet | None = None):
        self.entries, self.label_map, self.index, self.features = entries, label_map, index, features
        self.offsets = np.cumsum([0] + [len(e) for e in entries])

    def __len__(self) -> int:
        return int(self.offsets[-1]) if self.index is None else len(self.index)

    def gather(self, idx) -> dict:
        idx = np.sort(np.asarray(idx, dtype=np.int64).reshape(-1))
        g = idx if self.index is None else self.index[idx]
        f = np.searchsorted(self.offsets, g, side="right") - 1
        r = g - self.offsets[f]
        out = self.entries[f[0]].empty(len(g))          # ragged -> padded (common/data/cache.py), file by file
        at = 0
        for k in np.unique(f):
            rows = r[f == k]
            self.entries[k].read(rows, {name: v[at:at + len(rows)] for name, v in out.items()})
            at += len(rows)
        out["label"] = self.label_map[out["label"]]
        return out

    def __getitem__(self, idx) -> JetBatch:
        a = self.gather(idx)
        if self.features is not None:             # per-batch steps of the feature set (MPMv2 neutral-IP noise)
            a = self.features.per_batch(a, np.sort(np.asarray(idx, dtype=np.int64).reshape(-1)))
        return JetBatch(x=torch.from_numpy(a["x"]), mask=torch.from_numpy(a["mask"]), p4=torch.from_numpy(a["p4"]),
                        jet=torch.from_numpy(a["jet"]), label=torch.from_numpy(a["label"]),
                        pid=torch.from_numpy(a["pid"]) if "pid" in a else None)


def _passthrough(batch):
    return batch


def build_dataset(cfg: dict, split: str, *, max_jets=None, n_per_class=None, subset_seed: int = 0,
                  progress: bool = True, rank: int = 0, world_size: int = 1) -> JetDataset:
    """The (subset of the) split as a JetDataset; converts missing cache entries first."""
    names, chosen = _class_names(cfg)
    limit = None
    if max_jets is not None and n_per_class is None:          # convert only the first jets of each file
        limit = max(1, math.ceil(max_jets / len(resolve_files(cfg, split))))
    entries = cached_entries(cfg, split, progress, rank, world_size, per_file_limit=limit)
    label_map = np.full(len(names), -1, dtype=np.int64)
    for i, c in enumerate(chosen):
        label_map[names.index(c)] = i
    if n_per_class is None and cfg["dataset"] == "jetclass":
        labels, index = None, None       # every cached jet is used: no per-jet label scan (JetClass files are per class)
    else:
        labels = np.concatenate([label_map[np.asarray(e.arrays["label"])].astype(np.int16) for e in entries])
        index = None if (labels >= 0).all() else np.nonzero(labels >= 0)[0]    # top/qg class subsets
        absent = [c for i, c in enumerate(chosen) if not (labels == i).any()]
        if absent and limit is None:  # one class only: accuracy 1.0, an AUC of NaN (a prefix may hold fewer)
            files = ", ".join(f for f, _, _ in resolve_files(cfg, split))
            raise DataError(f"data: the {split} split ({files}) holds no jet of class(es) {absent} of the config's "
                            f"classes {chosen}; check the labels of these files or set data.classes")
    if n_per_class is not None:
        for c in range(len(chosen)):
            have = int((labels == c).sum())
            if have < n_per_class:
                raise DataError(f"data: {split} split has {have} jets of class {chosen[c]}, "
                                f"n_per_class={n_per_class} requested")
        index = per_class_subset(labels, n_per_class, subset_seed, len(chosen))
    n = sum(len(e) for e in entries) if index is None else len(index)
    if max_jets is not None and max_jets < n:
        pick = np.sort(np.random.default_rng([subset_seed, 1]).choice(n, max_jets, replace=False))
        index = pick if index is None else index[pick]
    if n == 0 or (index is not None and len(index) == 0):
        raise DataError(f"data: {split} split of {cfg['root']!r} has no jets for classes {chosen}")
    return JetDataset(entries, label_map, index, features=_feature_set(cfg))


# ------------------------------------------------------------------------------------------------- public API
def make_loader(data_cfg: dict, split: str, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                world_size: int = 1, drop_last: bool = False, max_jets: int | None = None,
                n_per_class: int | None = None, subset_seed: int = 0) -> DataLoader:
    """DataLoader yielding JetBatch (CPU tensors). Call set_epoch(loader, epoch) each epoch when shuffling."""
    ds = build_dataset(data_cfg, split, max_jets=max_jets, n_per_class=n_per_class, subset_seed=subset_seed,
                       progress=rank == 0, rank=rank, world_size=world_size)
    if drop_last and len(ds) < batch_size * world_size:
        raise DataError(f"data: the {split} split gives {len(ds)} jets" + (f" (max_jets = {max_jets})" if max_jets
                        else "") + f", fewer than one batch of {batch_size * world_size}; lower the batch size or "
                        "use more jets")
    sampler = ShardedBatchSampler(len(ds), batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                                  drop_last=drop_last)
    workers = int(data_cfg.get("num_workers") or 0)
    return DataLoader(ds, batch_size=None, sampler=sampler, num_workers=workers, collate_fn=_passthrough,
                      pin_memory=torch.cuda.is_available(), prefetch_factor=4 if workers else None)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    loader.sampler.set_epoch(epoch)


def dataset_info(data_cfg: dict) -> dict:
    _check_cfg(data_cfg)
    fs = _feature_set(data_cfg)
    return dict(class_names=_class_names(data_cfg)[1], num_features=len(fs.names),
                num_particles=_num_particles(data_cfg), feature_names=list(fs.names))


def preprocessing(data_cfg: dict) -> dict:
    """Everything that turns raw jets into a backbone's input, as plain values and arrays (a checkpoint keeps it, so a
    backbone can embed new jets once its training data is gone; common.training.pretrained): the dataset and its
    class names, the feature set with its parameters, the number of particles and, for MPMv2, the quantile
    transformer fitted on this data's training split (arrays; the same one the cache applied)."""
    info, fs = dataset_info(data_cfg), _feature_set(data_cfg)
    fitted = None
    if fs.needs_fit:
        qt = mpmv2_quantiles(data_cfg)
        fitted = {"quantiles": np.asarray(qt.quantiles_, np.float64), "references": np.asarray(qt.references_, np.float64)}
    return {"dataset": data_cfg["dataset"], "class_names": info["class_names"], "features": fs.name,
            "feature_params": json.loads(json.dumps(fs.params)), "feature_names": info["feature_names"],
            "num_particles": info["num_particles"], "fitted": fitted}


def load_arrays(data_cfg: dict, split: str, max_jets: int | None = None) -> dict[str, np.ndarray]:
    """The whole split (or a seeded subset of max_jets) in memory: x, mask, p4, jet, label (+ pid)."""
    ds = build_dataset(data_cfg, split, max_jets=max_jets)
    return ds.gather(np.arange(len(ds)))


__all__ = ["DataError", "make_loader", "set_epoch", "dataset_info", "load_arrays", "resolve_files",
           "build_dataset", "JetDataset", "RawJets"]


# ------------------------------------------------------------------------------------------------- CLI
def _prepare_worker(args):
    cfg, split, rank, world = args
    cached_entries(cfg, split, progress=rank == 0, rank=rank, world_size=world)


def main(argv=None) -> None:
    """Convert splits into the cache ahead of training, over several processes:
    python -m common.data.datasets --dataset jetclass --root data/real/JetClass/Pythia --features mpmv1 --workers 8 \
        --train "train_100M/*.root" --val "val_5M/*.root" --test "test_20M/*.root"
    """
    import argparse
    import multiprocessing as mp

    ap = argparse.ArgumentParser(description="Fill the preprocessing cache (common/data/cache.py) for some splits.")
    ap.add_argument("--dataset", required=True, choices=DATASETS)
    ap.add_argument("--root", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--num-particles", type=int, default=None)
    ap.add_argument("--classes", default=None, help="comma-separated class names (default: all)")
    ap.add_argument("--cache-dir", default=None)
    for split in ("train", "val", "test"):
        ap.add_argument(f"--{split}", default=None, help=f"{split} glob (default: {DEFAULT_GLOBS['jetclass'][split]} "
                        "for jetclass, see DEFAULT_GLOBS)")
    ap.add_argument("--splits", default="train,val,test")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    cfg = {"dataset": a.dataset, "root": a.root, "features": a.features, "num_particles": a.num_particles,
           "classes": a.classes.split(",") if a.classes else None, "cache_dir": a.cache_dir}
    for split in ("train", "val", "test"):
        if getattr(a, split) is not None:
            cfg[split] = getattr(a, split)
    for split in a.splits.split(","):
        if a.workers <= 1:
            _prepare_worker((cfg, split, 0, 1))
        else:   # each process starts at its own offset in the file list; per-entry locks share out the files
            with mp.get_context("spawn").Pool(a.workers) as pool:
                pool.map(_prepare_worker, [(cfg, split, r, a.workers) for r in range(a.workers)])
        n = len(build_dataset(cfg, split, progress=False))
        print(f"{split}: {n} jets cached in {_cache_dir(cfg)} ({cfg['features']}, {_num_particles(cfg)} particles)")


if __name__ == "__main__":
    cli(main)
