"""Parallel, resumable, deterministic production of the datasets (JetClass, top tagging, quark-gluon, BTag).

Work is cut into file tasks; each task runs its own Pythia with a seed derived from (seed, dataset, class, file
index), so a file's content does not depend on the number of workers or on the order tasks run in. A task writes
atomically (`path.tmp` then os.replace); a rerun skips every file that exists. Top-tagging and quark-gluon outputs mix
classes within a file, so their tasks write per-class parts under `DIR/.parts/` that are merged (and shuffled with a
fixed seed) once all parts of an output file exist.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import queue as queue_mod
import time
from dataclasses import dataclass, field

import numpy as np

from ..atomic import atomic_path, write_json
from .generate import GenConfig, derive_seed, generate
from .processes import JETCLASS_CLASSES, JETCLASS_PREFIX, jetclass_process, qg_process, toptagging_process

SPLITS = ("train", "val", "test")
TTV = {"train": 0, "val": 1, "test": 2}  # [U] code values of the top-tagging `ttv` column


@dataclass
class Task:
    dataset: str
    cls: str
    n: int
    seed: int
    path: str
    options: dict = field(default_factory=dict)


def gen_config(dataset: str, cls: str, options: dict) -> GenConfig:
    if dataset == "jetclass":
        return GenConfig(jetclass_process(cls), ecm=13000.0, mpi=True, jet_r=0.8, pt_min=500.0, pt_max=1000.0,
                         eta_max=2.0, detector=options.get("detector", "cms"),
                         flat_pt=options.get("pt_spectrum", "flat") == "flat")
    if dataset == "toptagging":
        return GenConfig(toptagging_process(cls), ecm=14000.0, mpi=False, jet_r=0.8, pt_min=550.0, pt_max=650.0,
                         eta_max=2.0, detector=options.get("detector", "atlas"), flat_pt=False)
    if dataset == "qg":
        return GenConfig(qg_process(cls, options.get("with_bc", False)), ecm=14000.0, mpi=True, jet_r=0.4,
                         pt_min=500.0, pt_max=550.0, eta_max=1.7, use_rapidity=True, detector=None, flat_pt=False,
                         pthat_min=450.0, leading_only=True,
                         # generator level with Pythia's default decay table (K_S, Lambda, Sigma, Xi, Omega decayed):
                         # EnergyFlow's qg_jets hold only the 14 species its remap_pids knows (EnergyFlow
                         # energyflow/datasets/qg_jets.py)
                         extra_settings=["ParticleDecays:limitTau0 = off"])
    raise ValueError(f"unknown dataset {dataset!r}")


# ----------------------------------------------------------------------------------------------- task execution
_QUEUE = None


def _init_worker(q):
    global _QUEUE
    _QUEUE = q


def _report(k: int) -> None:
    if _QUEUE is not None:
        _QUEUE.put(k)


def run_task(task: Task) -> dict:
    """Generate one file (or one part) and write it atomically."""
    from . import writers

    t0, c0 = time.time(), time.process_time()
    if task.dataset == "btag":
        from .btag import run_btag_task

        stats = run_btag_task(task, progress=_report)
        stats.update(seconds=time.time() - t0, cpu_seconds=time.process_time() - c0)
        return stats
    cfg = gen_config(task.dataset, task.cls, task.options)
    max_events = 2000 + 1000 * task.n
    jets, stats = generate(cfg, task.seed, task.n, progress=_report, max_events=max_events)
    if task.dataset == "jetclass":
        writers.write_jetclass_root(task.path, jets)
    else:
        label = {"QCD": 0, "Top": 1, "Gluon": 0, "Quark": 1}[task.cls]
        with atomic_path(task.path) as tmp, open(tmp, "wb") as fh:
            if task.dataset == "toptagging":
                frame = writers.toptagging_frame(jets, np.full(len(jets), label), 0)
                np.savez(fh, data=frame.to_numpy(np.float32), columns=np.array(frame.columns, dtype=str))
            else:
                X, y = writers.qg_arrays(jets, np.full(len(jets), label))
                np.savez(fh, X=X, y=y)
    stats.update(path=task.path, seconds=time.time() - t0, cpu_seconds=time.process_time() - c0)
    return stats


def execute(tasks: list[Task], workers: int, desc: str) -> list[dict]:
    """Run tasks (skipping finished files) on `workers` processes with a jets/s progress bar."""
    from tqdm import tqdm

    todo = [t for t in tasks if not os.path.exists(t.path)]
    for t in todo:  # leftovers of an interrupted run
        if os.path.exists(t.path + ".tmp"):
            os.remove(t.path + ".tmp")
    skipped = len(tasks) - len(todo)
    total = sum(t.n for t in todo)
    bar = tqdm(total=total, desc=desc, unit="jets", unit_scale=False, smoothing=0.05, dynamic_ncols=True)
    if skipped:
        bar.write(f"{desc}: {skipped} finished file(s) skipped")
    results = []
    if not todo:
        bar.close()
        return results
    if workers <= 1:
        global _QUEUE
        _QUEUE = None
        for t in todo:
            results.append(_run_inline(t, bar))
    else:
        import awkward  # noqa: F401,E401  (imported once, before forking)
        import fastjet
        import pythia8mc
        import uproot
        import vector

        ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
        q = ctx.Queue()
        with ctx.Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(q,)) as pool:
            # biggest tasks first so that the pool drains evenly
            pending = pool.map_async(run_task, sorted(todo, key=lambda t: -t.n), chunksize=1)
            while True:
                try:
                    bar.update(q.get(timeout=0.5))
                except queue_mod.Empty:
                    if pending.ready():
                        break
            results = pending.get()
            while not q.empty():
                bar.update(q.get())
    bar.close()
    return results


def _run_inline(task: Task, bar) -> dict:
    global _QUEUE

    class _Bar:
        def put(self, k):
            bar.update(k)

    _QUEUE = _Bar()
    try:
        return run_task(task)
    finally:
        _QUEUE = None


# ----------------------------------------------------------------------------------------------- planning
def split_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"--splits needs three non-negative fractions (train, val, test), got {fractions}")
    f = np.asarray(fractions, float) / sum(fractions)
    counts = np.floor(f * n).astype(int)
    for k in (1, 2):  # tiny samples still get every requested split
        if counts[k] == 0 and f[k] > 0 and n >= 3:
            counts[k] = 1
    counts[0] = n - counts[1:].sum()
    return counts.tolist()


def _chunks(n: int, per_file: int) -> list[int]:
    return [min(per_file, n - s) for s in range(0, n, per_file)] if n > 0 else []


MARKER = "common.simulate"   # simulate.json's "written_by": the folder is the kit's simulation (clean may delete its files)
LOCK_NAME = ".simulate.lock"
# What else may sit in a simulated folder without making it someone else's: the simulator's lock, run_all.sh's done.json
# and the data loader's cache (common.data.datasets: <root>/.cache).
KIT_EXTRAS = (LOCK_NAME, "done.json", ".cache", "simulate.json")


def check_settings(out: str, settings: dict, files: list[str] | None = None) -> None:
    """Refuse to resume into a directory simulated with other settings (files would silently mix). simulate.json
    records the settings with `finished: false` until every file is written (mark_finished); the data readers
    refuse a sample whose simulation did not finish (common.data.datasets). It also carries the kit's marker
    (written_by) and, when given, the files the simulation writes (relative to `out`), which are all that
    `python -m common.simulate clean` ever deletes."""
    path = os.path.join(out, "simulate.json")
    if os.path.exists(path):
        old = read_record(path)
        finished = old.pop("finished", True)
        cleaned = old.pop("cleaned", False)
        for k in ("written_by", "files"):
            old.pop(k, None)
        if old != settings and not cleaned:
            raise ValueError(f"{path} records different settings {old}; requested {settings}. "
                             "Use another --out directory, or (a folder this kit simulated) delete its files with "
                             f"python -m common.simulate clean {out}")
        if finished is False and not cleaned:
            return
    os.makedirs(out, exist_ok=True)
    record = {**settings, "finished": False, "written_by": MARKER}
    if files is not None:
        record["files"] = sorted(files)
    write_json(path, record, indent=1)


def mark_finished(out: str) -> None:
    """Record in simulate.json that every file of the sample was written."""
    path = os.path.join(out, "simulate.json")
    write_json(path, {**read_record(path), "finished": True}, indent=1)


def read_record(path: str) -> dict:
    """simulate.json as a dict; a file that is not one is a one-line error."""
    try:
        with open(path) as fh:
            rec = json.load(fh)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable simulate.json ({e}); move the folder away or delete the file") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: not a simulate.json of this kit (not a JSON object)")
    return rec


def claim_dir(out: str) -> None:
    """Simulate only into a new or empty folder, or one this kit's simulator made (simulate.json): a folder of the
    user's own files is never stamped with a simulate.json that would describe other jets as if they were its."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is not a directory; choose another --out")
    if not os.path.isdir(out) or os.path.isfile(os.path.join(out, "simulate.json")):
        return
    foreign = sorted(n for n in os.listdir(out) if n not in (LOCK_NAME, ".cache"))
    if foreign:
        raise ValueError(f"--out {out}: the folder holds files this kit did not simulate (e.g. {foreign[0]!r}) and "
                         "no simulate.json; refusing to simulate into it: choose a new or empty --out folder")


@contextlib.contextmanager
def dir_lock(out: str):
    """One simulator per folder: an exclusive, non-blocking flock on DIR/.simulate.lock naming its holder; a second
    simulator into the same folder (which would remove the first one's temporary files) is a one-line error."""
    import fcntl
    import socket

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if os.path.islink(path):
            raise ValueError(f"{path}: a symbolic link; remove it (the simulator writes its own lock file)") from None
        raise ValueError(f"--out {out}: cannot create the lock file {LOCK_NAME} ({e.strerror}); is it writable?") from None
    fh = os.fdopen(fd, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown holder"
            raise ValueError(f"--out {out}: another simulation is writing this folder ({holder}); wait for it to "
                             "end or use another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


@contextlib.contextmanager
def simulation(out: str, settings: dict, files: list[str]):
    """The frame of every simulate_*: refuse a foreign folder, lock it, check/record the settings and the planned
    files, and mark the sample finished when the block completes."""
    out = str(out)
    claim_dir(out)
    with dir_lock(out):
        check_settings(out, settings, [os.path.relpath(f, out) for f in files])
        yield
        mark_finished(out)


def clean(out: str) -> tuple[int, list[str]]:
    """Delete what the kit's simulator wrote into `out` (the files simulate.json lists, their temporary files, the
    empty folders they leave, run_all.sh's done.json) and nothing else; returns (files deleted, what was kept).
    A folder without the simulator's simulate.json (its marker and file list) is refused, nothing deleted."""
    out = str(out)
    path = os.path.join(out, "simulate.json")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ValueError(f"{out}: not a folder; clean takes the folder a simulation wrote into")
    if not os.path.isdir(out):
        return 0, []
    if not os.path.isfile(path):
        raise ValueError(f"{out}: no simulate.json, so this kit did not simulate it; refusing to delete anything "
                         "(move the folder away or delete it yourself)")
    rec = read_record(path)
    if rec.get("written_by") != MARKER or not isinstance(rec.get("files"), list):
        raise ValueError(f"{path}: not marked as written by {MARKER} with its list of files (an older kit or "
                         "another tool); refusing to delete anything (delete the folder yourself)")
    real = os.path.realpath(out)
    with dir_lock(out):
        n = 0
        for rel in rec["files"]:
            p = os.path.realpath(os.path.join(out, str(rel)))
            if not p.startswith(real + os.sep):
                raise ValueError(f"{path}: lists {rel!r}, outside the folder; refusing to delete anything")
        for rel in rec["files"]:
            p = os.path.join(out, str(rel))
            for q in (p, p + ".tmp"):
                if os.path.isfile(q) or os.path.islink(q):
                    os.remove(q)
                    n += 1
        for rel in sorted({os.path.dirname(str(r)) for r in rec["files"]}, key=len, reverse=True):
            d = os.path.join(out, rel)
            while rel and os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
                rel = os.path.dirname(rel)
                d = os.path.join(out, rel)
        done = os.path.join(out, "done.json")
        if os.path.isfile(done):
            try:
                with open(done) as fh:
                    by = json.load(fh).get("by")
            except (OSError, ValueError, AttributeError):
                by = None
            if by == "run_all.sh":
                os.remove(done)
        write_json(path, {"written_by": MARKER, "files": [], "finished": False, "cleaned": True}, indent=1)
    kept = sorted(n_ for n_ in os.listdir(out) if n_ not in KIT_EXTRAS)
    return n, kept


def split_seed(seed: int, test_seed: int | None, split: str, *parts) -> int:
    """A file's Pythia seed: derive_seed(seed, *parts); with test_seed, the test split's files derive theirs from
    (test_seed, "test", seed, *parts) instead, a derivation no run without --test-seed used (and distinct per master
    seed, so two samples simulated with one test_seed share no events), so that a test sample can be simulated fresh
    while the training and validation samples stay the same jets."""
    if test_seed is not None and split == "test":
        return derive_seed(test_seed, "test", seed, *parts)
    return derive_seed(seed, *parts)


def _with_test_seed(settings: dict, test_seed: int | None) -> dict:
    """simulate.json settings: test_seed recorded only when given (directories simulated without it stay valid)."""
    return settings if test_seed is None else {**settings, "test_seed": test_seed}


def jetclass_tasks(out: str, n_per_class: int, seed: int, classes: list[str], splits, per_file: int,
                   options: dict, test_seed: int | None = None) -> list[Task]:
    """DIR/{train,val,test}/<prefix>_NNN.root; file numbers run train, test, val as in JetClass (§A1)."""
    tasks = []
    n_split = dict(zip(SPLITS, split_counts(n_per_class, splits)))
    for cls in classes:
        idx = 0
        for split in ("train", "test", "val"):
            for n in _chunks(n_split[split], per_file):
                path = os.path.join(out, split, f"{JETCLASS_PREFIX[cls]}_{idx:03d}.root")
                tasks.append(Task("jetclass", cls, n, split_seed(seed, test_seed, split, "jetclass", cls, idx), path,
                                  options))
                idx += 1
    return tasks


def simulate_jetclass(out, n_per_class, *, seed=0, workers=1, classes=None, splits=(0.8, 0.1, 0.1),
                      per_file=100_000, detector="cms", pt_spectrum="flat", test_seed=None) -> list[dict]:
    classes = list(classes or JETCLASS_CLASSES)
    for c in classes:
        if c not in JETCLASS_PREFIX:
            raise ValueError(f"unknown class {c!r} in --classes; expected names from {JETCLASS_CLASSES}")
    options = dict(detector=detector, pt_spectrum=pt_spectrum)
    settings = _with_test_seed(dict(dataset="jetclass", jets_per_class=n_per_class, seed=seed, classes=classes,
                                    splits=list(splits), jets_per_file=per_file, **options), test_seed)
    tasks = jetclass_tasks(out, n_per_class, seed, classes, splits, per_file, options, test_seed)
    with simulation(out, settings, [t.path for t in tasks]):
        results = execute(tasks, workers, "jetclass")
    return results


def _merge(parts: list[str], out_path: str, seed: int, build) -> None:
    """Concatenate finished parts, shuffle them with a fixed seed and write `out_path` via build(arrays, perm)."""
    if os.path.exists(out_path):
        return
    loaded = [dict(np.load(p, allow_pickle=False)) for p in parts]
    build(loaded, np.random.default_rng(derive_seed(seed, "shuffle", os.path.basename(out_path))))


def simulate_toptagging(out, n_jets, *, seed=0, workers=1, splits=(0.8, 0.1, 0.1), per_file=100_000,
                        detector="atlas", test_seed=None) -> list[dict]:
    """DIR/{train,val,test}.h5, balanced top / QCD, pandas key "table" (§A2, §B6)."""
    options = dict(detector=detector)
    settings = _with_test_seed(dict(dataset="toptagging", jets=n_jets, seed=seed, splits=list(splits),
                                    jets_per_file=per_file, **options), test_seed)
    parts_dir = os.path.join(out, ".parts")
    tasks, by_split = [], {}
    for split, n in zip(SPLITS, split_counts(n_jets, splits)):
        by_split[split] = []
        for cls, m in (("Top", (n + 1) // 2), ("QCD", n // 2)):
            for k, nk in enumerate(_chunks(m, per_file)):
                path = os.path.join(parts_dir, f"{split}_{cls}_{k:03d}.npz")
                tasks.append(Task("toptagging", cls, nk, split_seed(seed, test_seed, split, "toptagging", split, cls, k),
                                  path, options))
                by_split[split].append(path)
    finals = [os.path.join(out, f"{s}.h5") for s in by_split if by_split[s]]
    with simulation(out, settings, finals + [t.path for t in tasks]):
        return _toptagging_files(out, seed, workers, tasks, by_split, parts_dir)


def _toptagging_files(out, seed, workers, tasks, by_split, parts_dir):
    import pandas as pd

    from . import writers

    tasks = [t for t in tasks if not os.path.exists(os.path.join(out, os.path.basename(t.path).split("_")[0] + ".h5"))]
    results = execute(tasks, workers, "toptagging")
    for split, parts in by_split.items():
        if not parts:
            continue

        def build(loaded, rng, split=split):
            data = np.concatenate([d["data"] for d in loaded])
            cols = [str(c) for c in loaded[0]["columns"]]
            data = data[rng.permutation(len(data))]
            frame = pd.DataFrame({c: data[:, i] for i, c in enumerate(cols)})
            for c in cols:
                frame[c] = frame[c].astype(np.int64 if c in ("ttv", "is_signal_new") else np.float32)
            frame["ttv"] = TTV[split]
            writers.write_toptagging_h5(os.path.join(out, f"{split}.h5"), frame)

        _merge(parts, os.path.join(out, f"{split}.h5"), seed, build)
    _cleanup_parts(parts_dir, [os.path.join(out, f"{s}.h5") for s in by_split if by_split[s]],
                   [p for ps in by_split.values() for p in ps])
    return results


def simulate_qg(out, n_jets, *, seed=0, workers=1, per_file=100_000, with_bc=False) -> list[dict]:
    """DIR/QG_jets.npz, QG_jets_1.npz, ... with per_file jets each, half quark half gluon (§A3, §B6)."""
    options = dict(with_bc=with_bc)
    settings = dict(dataset="qg", jets=n_jets, seed=seed, jets_per_file=per_file, **options)
    parts_dir = os.path.join(out, ".parts")
    stem = "QG_jets_withbc" if with_bc else "QG_jets"
    tasks, files = [], {}
    for k, n in enumerate(_chunks(n_jets, per_file)):
        name = f"{stem}_{k}.npz" if (with_bc or k > 0) else f"{stem}.npz"
        final = os.path.join(out, name)
        files[final] = []
        for cls, m in (("Quark", (n + 1) // 2), ("Gluon", n // 2)):
            path = os.path.join(parts_dir, f"qg_{k:03d}_{cls}.npz")
            if m:
                files[final].append(path)
                tasks.append(Task("qg", cls, m, derive_seed(seed, "qg", cls, k), path, options))
    with simulation(out, settings, list(files) + [t.path for t in tasks]):
        tasks = [t for t in tasks if not any(t.path in parts and os.path.exists(f) for f, parts in files.items())]
        return _qg_files(seed, workers, tasks, files, parts_dir)


def _qg_files(seed, workers, tasks, files, parts_dir):
    from . import writers

    results = execute(tasks, workers, "qg")
    for final, parts in files.items():

        def build(loaded, rng, final=final):
            M = max(d["X"].shape[1] for d in loaded)
            X = np.concatenate([np.pad(d["X"], ((0, 0), (0, M - d["X"].shape[1]), (0, 0))) for d in loaded])
            y = np.concatenate([d["y"] for d in loaded])
            perm = rng.permutation(len(y))
            writers.write_qg_npz(final, X[perm], y[perm])

        _merge(parts, final, seed, build)
    _cleanup_parts(parts_dir, list(files), [p for ps in files.values() for p in ps])
    return results


def simulate_btag(out, n_per_flavour, *, seed=0, workers=1, splits=(0.6, 0.2, 0.2), per_file=100_000,
                  test_seed=None) -> list[dict]:
    """DIR/{train,valid,test}_<k>.h5 (the layout jetssl reads) and DIR/root/<same name>.root (the Zenodo 13350327
    tree), n_per_flavour light, c and b jets each over the splits, at most `per_file` jets (a multiple of three, the
    flavours in equal numbers) in a file (common/simulate/btag.py). jetssl orders a split's files by the digits in
    their names, hence the _<k>."""
    if per_file < 3:
        raise ValueError(f"--jets-per-file must be at least 3 for btag (one jet per flavour), got {per_file}")
    settings = _with_test_seed(dict(dataset="btag", jets_per_flavour=n_per_flavour, seed=seed, splits=list(splits),
                                    jets_per_file=per_file), test_seed)
    tasks = []
    for split, n in zip(("train", "valid", "test"), split_counts(n_per_flavour, splits)):
        for k, nk in enumerate(_chunks(n, per_file // 3)):
            tasks.append(Task("btag", "ttbar", 3 * nk, split_seed(seed, test_seed, split, "btag", split, k),
                              os.path.join(out, f"{split}_{k}.h5")))
    roots = [os.path.join(out, "root", os.path.basename(t.path)[:-3] + ".root") for t in tasks]
    with simulation(out, settings, [t.path for t in tasks] + roots):
        results = execute(tasks, workers, "btag")
    return results


def _cleanup_parts(parts_dir: str, finals: list[str], parts: list[str]) -> None:
    """Once every output file exists, remove the parts this simulation wrote (only those) and .parts/ if empty."""
    if all(os.path.exists(f) for f in finals) and os.path.isdir(parts_dir):
        for p in parts:
            for q in (p, p + ".tmp"):
                if os.path.isfile(q):
                    os.remove(q)
        if not os.listdir(parts_dir):
            os.rmdir(parts_dir)
