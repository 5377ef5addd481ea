"""Pretraining and fine-tuning throughput of every method's paper-size model: jets/s of full optimiser steps and peak
memory.

    python -m bench.bench_train [--only mpmv1,hepjepa] [--steps N] [--warmup W] [--batch-size B] [--device cpu|cuda]

Each row builds the model with the method's own builder, from its paper-scale pretraining YAML, exactly as the
method's pretrain script does (mpm.build.build_model, mpm.vqvae.build_vqvae, omnijet.vqvae.build_tokenizer,
omnijet.model.build_gpt, hepjepa.model.build_model), with the loop's optimiser and LR schedule, and times the loop's
own step function (mpm.loop.train_step, omnijet.train_tokenizer.train_step, omnijet.pretrain.train_step,
hepjepa.pretrain.train_step: forward and backward under train.precision with gradient accumulation, clipping,
optimiser and scheduler step, and per-step extras such as HEP-JEPA's augmentation and EMA teacher update); no step
is written here, so the timing follows every change of the loops. The data are
synthetic: JetBatch-es of the configured particle count with a JetClass-like multiplicity (mean 50 real particles,
clipped to [5, N]), or token sequences of the same lengths for the GPT. Frozen target tokenisers (MPMv1 VQ-VAE, MPMv2
k-means with 16384 centroids) are untrained, written to a temporary tokenizer.pt and loaded by the method's own loader.
Speed does not depend on the weights.

A step is forward + backward + clip + optimiser step + scheduler step. `W` warm-up steps (VQ k-means init, allocator
warm-up) are not timed; then N steps are timed. jets/s (wall) = batch x N / wall seconds; on CPU jets/s (CPU) uses the
process's CPU time (meaningful on a shared machine with one thread). Peak memory: CUDA torch.cuda.max_memory_allocated
(bf16 autocast where the method's script uses it; the OmniJet tokeniser trains in fp32 on purpose); CPU the process's
peak RSS (resource.getrusage, fp32) and its rise above the RSS after imports. Each config runs in a fresh
subprocess so that peak RSS is its own (--in-process to switch this off).

Fine-tuning rows ft_<method>_<mode> (mpmv1, mpmv2, hepjepa; OmniJet-alpha's backbone needs a trained tokeniser and is
not built here) time common.training.finetune.train_step on the backbone of the method's pretraining config with the
head and settings of its fine-tuning config, in the modes fixed_cached (the head on backbone outputs computed once,
common/training/frozen_cache.py), fixed (the frozen backbone recomputed every step), finetune and scratch.

Defaults: CUDA: the paper batch sizes, 200 timed steps after 10 warm-up steps. CPU: batch 16, 3 steps after 1 warm-up.
The paper-size GPU measurement (bf16) is:

    python -m bench.bench_train --device cuda --steps 300 --warmup 20
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from common.atomic import write_json  # noqa: E402
from common.cli import cli  # noqa: E402
from common.data.batch import JET_FIELDS, JetBatch  # noqa: E402
from common.data.features import get_feature_set  # noqa: E402
from common.training.checkpoint import save_checkpoint  # noqa: E402
from common.training.config import load_config  # noqa: E402
from common.training.schedules import build_scheduler  # noqa: E402
from common.training.train_utils import build_optimizer, count_parameters  # noqa: E402

MEAN_PARTICLES = 50  # JetClass averages ~30-60 constituents per jet depending on the class


# ---------------------------------------------------------------------------------------------------------------------
# synthetic inputs

def multiplicities(batch_size: int, num_particles: int, gen: torch.Generator) -> torch.Tensor:
    n = torch.normal(float(MEAN_PARTICLES), 20.0, (batch_size,), generator=gen).round().long()
    return n.clamp(5, num_particles)


def synthetic_batch(batch_size: int, num_particles: int, feature_names, gen: torch.Generator,
                    with_pid: bool = False) -> JetBatch:
    """Padded jets with real particles first in decreasing pT; (deta, dphi) columns consistent with p4."""
    B, N = batch_size, num_particles
    n = multiplicities(B, N, gen)
    mask = torch.arange(N)[None, :] < n[:, None]
    pt = torch.sort(torch.empty(B, N).exponential_(1.0 / 20.0, generator=gen), dim=1, descending=True).values + 0.5
    deta = 0.2 * torch.randn(B, N, generator=gen)
    dphi = 0.2 * torch.randn(B, N, generator=gen)
    p4 = torch.stack([pt * torch.cos(dphi), pt * torch.sin(dphi), pt * torch.sinh(deta), pt * torch.cosh(deta)], -1)
    names = list(feature_names)
    x = torch.randn(B, N, len(names), generator=gen)
    for i, name in enumerate(names):
        if name in ("part_deta", "part_etarel"):
            x[..., i] = deta
        elif name in ("part_dphi", "part_phirel"):
            x[..., i] = dphi
    m = mask.float()
    x, p4 = x * m[..., None], p4 * m[..., None]
    tot = p4.sum(1)
    jpt = tot[:, :2].norm(dim=1)
    jet = torch.zeros(B, len(JET_FIELDS))
    jet[:, 0], jet[:, 3] = jpt, tot[:, 3]
    jet[:, 4] = (tot[:, 3] ** 2 - (tot[:, :3] ** 2).sum(1)).clamp_min(0).sqrt()
    jet[:, 5] = n.float()
    pid = torch.randint(0, 8, (B, N), generator=gen) * mask if with_pid else None
    return JetBatch(x=x, mask=mask, p4=p4, jet=jet, label=torch.zeros(B, dtype=torch.long), pid=pid)


def synthetic_tokens(batch_size: int, num_particles: int, num_codes: int, gen: torch.Generator):
    """Sequences [0 (start), code + 1 ..., num_codes + 1 (stop), 0 ...] of length num_particles + 2 and their lengths,
    the layout written by omnijet.tokenize_dataset."""
    n = multiplicities(batch_size, num_particles, gen)
    L = num_particles + 2
    pos = torch.arange(L)[None, :]
    tokens = torch.randint(1, num_codes + 1, (batch_size, L), generator=gen)
    tokens[:, 0] = 0
    tokens = torch.where(pos <= n[:, None], tokens, torch.zeros_like(tokens))
    tokens[torch.arange(batch_size), n + 1] = num_codes + 1
    return tokens, n + 2


# ---------------------------------------------------------------------------------------------------------------------
# one runner per config: builds model, optimiser and scheduler as the pretrain script does; `step()` is one optimiser
# step on a fresh synthetic batch (generated outside the timed region)

@dataclass
class Runner:
    model: torch.nn.Module
    paper_batch: int
    make_input: Callable[[], object]
    step: Callable[[object], float]
    precision: str


def _train_cfg(tc: dict, batch_size: int) -> dict:
    """The config's train section with train.grad_accum capped at the benchmark batch (a CPU batch of 16 jets cannot
    be split into more micro-batches than jets)."""
    return {**tc, "grad_accum": min(tc["grad_accum"], batch_size)}


def _precision(tc: dict, device) -> str:
    return tc["precision"] if device.type == "cuda" else "fp32"


def _mpm_common(cfg, model, device, batch_size, gen, fs_names, with_pid, num_particles):
    from mpm.loop import train_step

    t = _train_cfg(cfg["train"], batch_size)
    opt = build_optimizer(model, t)
    sched = build_scheduler(opt, {**t["schedule"], "total_steps": t["steps"]})

    def make_input():
        return synthetic_batch(batch_size, num_particles, fs_names, gen, with_pid).to(device)

    def step(batch):  # the step of mpm.loop.train (single process: net = model)
        return train_step(model, model, opt, sched, batch, t, device)[0]

    return make_input, step, t["batch_size"], _precision(t, device)


def mpm_runner(cfg_path: str, tmp: str):
    def build(device, batch_size, gen) -> Runner:
        from mpm.build import build_model
        from mpm.vqvae import VQVAETraining, build_vqvae, num_features

        cfg = load_config(ROOT / cfg_path)
        fs = get_feature_set(cfg["data"]["features"])
        N = cfg["data"]["num_particles"]
        if cfg["method"] == "tokenizer":  # mpm.train_tokenizer (vqvae): VQVAETraining trained by mpm.loop.train
            model = VQVAETraining(build_vqvae(cfg))
        else:
            kind = cfg["model"]["target"] if cfg["method"] == "mpmv1" else cfg["model"]["task"]
            if kind == "vqvae":
                tok_cfg = load_config(ROOT / Path(cfg_path).with_name("tokenizer_v1.yaml"))  # the tokeniser of the same profile
                save_checkpoint(Path(tmp) / "tokenizer.pt",
                                {"kind": "vqvae", "config": tok_cfg, "state": build_vqvae(tok_cfg).state_dict()})
                cfg["tokenizer"]["checkpoint"] = tmp
            elif kind == "kmeans":
                k = load_config(ROOT / Path(cfg_path).with_name("tokenizer_v2_kmeans.yaml"))["kmeans"]["n_clusters"]
                cent = torch.randn(k, num_features(cfg["data"]))
                save_checkpoint(Path(tmp) / "tokenizer.pt", {"kind": "kmeans", "config": cfg,
                                                             "state": {"n_clusters": k, "centroids": cent}})
                cfg["tokenizer"]["checkpoint"] = tmp
            model = build_model(cfg)
        model.to(device).train()
        make_input, step, paper, prec = _mpm_common(cfg, model, device, batch_size, gen, fs.names,
                                                    cfg["method"] == "mpmv2", N)
        return Runner(model, paper, make_input, step, prec)

    return build


def omnijet_tokenizer_runner(cfg_path: str, device, batch_size, gen) -> Runner:
    from omnijet.train_tokenizer import train_step
    from omnijet.vqvae import build_tokenizer

    cfg = load_config(ROOT / cfg_path)
    tc = _train_cfg(cfg["train"], batch_size)
    model = build_tokenizer(cfg["model"]).to(device).train()
    opt = build_optimizer(model.parameters(), {"lr": tc["lr"], "weight_decay": tc["weight_decay"]})
    sched = build_scheduler(opt, tc["schedule"])
    names, N = get_feature_set(cfg["data"]["features"]).names, cfg["data"]["num_particles"]

    def make_input():
        return synthetic_batch(batch_size, N, names, gen).to(device)

    def step(batch):  # the step of omnijet.train_tokenizer.train (fp32: OJ experiment_tokenization_transformer.yaml)
        return train_step(model, model, model, opt, sched, batch, tc, device)[0]

    return Runner(model, tc["batch_size"], make_input, step, _precision(tc, device))


def omnijet_gpt_runner(cfg_path: str, device, batch_size, gen) -> Runner:
    from omnijet.model import build_gpt
    from omnijet.pretrain import train_step

    cfg = load_config(ROOT / cfg_path)
    tc = _train_cfg(cfg["train"], batch_size)
    # the vocabulary comes from the tokeniser (tokens_dir/done.json in omnijet.pretrain); paper tokeniser: 8192 codes
    tok_path = Path(cfg_path).with_name("tokenizer.yaml")
    num_codes = load_config(ROOT / tok_path)["model"]["vq"]["num_codes"]
    model = build_gpt(cfg["model"], num_codes).to(device).train()
    opt = build_optimizer(model.parameters(), {"lr": tc["lr"], "weight_decay": tc["weight_decay"]})
    sched = build_scheduler(opt, tc["schedule"])
    N = cfg["data"]["num_particles"]

    def make_input():
        t, ln = synthetic_tokens(batch_size, N, num_codes, gen)
        return t.to(device), ln.to(device)

    def step(inp):  # the step of omnijet.pretrain.train
        return train_step(model, model, model, opt, sched, inp, tc, device)

    return Runner(model, tc["batch_size"], make_input, step, _precision(tc, device))


def hepjepa_runner(cfg_path: str, device, batch_size, gen) -> Runner:
    from common.data.datasets import dataset_info
    from common.training.ema import momentum_schedule

    from hepjepa.model import build_model
    from hepjepa.pretrain import train_step

    cfg = load_config(ROOT / cfg_path)
    cfg["train"] = tc = _train_cfg(cfg["train"], batch_size)
    info = dataset_info(cfg["data"])
    names = info["feature_names"]
    model = build_model(cfg, info).to(device).train()
    opt = build_optimizer(model, tc)
    sched = build_scheduler(opt, tc["schedule"])
    momentum = momentum_schedule(tc["ema"][0], tc["ema"][1], tc["steps"])
    count = [0]

    def make_input():
        return synthetic_batch(batch_size, info["num_particles"], names, gen).to(device)

    def step(batch):  # the step of hepjepa.pretrain.train (augmentation and EMA update included; single process)
        loss = train_step(model, model, model, opt, sched, batch, count[0], cfg, names, momentum, device)[0]
        count[0] += 1
        return loss

    return Runner(model, tc["batch_size"], make_input, step, _precision(tc, device))


# ---------------------------------------------------------------------------------------------------------------------
# fine-tuning steps: the backbone of a method's pretraining config, the head and settings of its fine-tuning config,
# one step of common.training.finetune.train_step (the loop's own step) per mode

FT_MODES = ("fixed_cached", "fixed", "finetune", "scratch")
# method -> (pretraining config of the backbone, fine-tuning config of the head and settings)
FT_METHODS = {"mpmv1": ("mpm/configs/mpmv1.yaml", "mpm/configs/finetune_v1.yaml"),
              "mpmv2": ("mpm/configs/mpmv2.yaml", "mpm/configs/finetune_v2.yaml"),
              "hepjepa": ("hepjepa/configs/pretrain.yaml", "hepjepa/configs/finetune_jetclass.yaml")}
FT_CONFIGS = {f"ft_{m}_{mode}": (m, mode) for m in FT_METHODS for mode in FT_MODES}


def _profile_path(path: str, profile: str) -> Path:
    p = Path(path)
    return p if profile == "paper" else p.parent / profile / p.name


def finetune_runner(method: str, mode: str, profile: str, device, batch_size, gen) -> Runner:
    """One fine-tuning step as common.training.finetune.run_finetune takes it (its loss_fn, train_step): mode fixed
    (the frozen backbone recomputed every step), fixed_cached (the head on the backbone outputs of the step's jets,
    computed once before: common/training/frozen_cache.py; their computation is not timed), finetune (unfrozen from
    step 0) or scratch. The backbone's weights are random (speed does not depend on them)."""
    from common.data.datasets import dataset_info
    from common.training.classifier import build_classifier, build_classifier_optimizer
    from common.training.finetune import classification_task, loss_function, train_step
    from common.training.finetune_config import finetune_settings
    from common.training.frozen_cache import with_backbone_outputs
    from common.training.schedules import build_finetune_scheduler

    pre_path, ft_path = FT_METHODS[method]
    pcfg = load_config(ROOT / _profile_path(pre_path, profile))
    ft = load_config(ROOT / _profile_path(ft_path, profile))
    ft["finetune"]["mode"] = "fixed" if mode == "fixed_cached" else mode
    if mode == "finetune":
        ft["finetune"]["unfreeze_step"] = 0
    fc = finetune_settings(ft)
    fc["grad_accum"] = min(int(fc["grad_accum"]), batch_size)
    info = dataset_info(pcfg["data"])
    if method == "hepjepa":
        from hepjepa.model import HEPJEPABackbone, angle_columns

        def build():
            return HEPJEPABackbone(pcfg["model"], info["num_features"], angle_columns(info["feature_names"]))
    else:
        from mpm.build import build_backbone

        def build():
            return build_backbone(pcfg)
    task = classification_task(info["class_names"])
    model = build_classifier(fc, build, None if mode == "scratch" else (lambda bb: None), task.head).to(device)
    model.train()
    opt = build_classifier_optimizer(model, fc)
    sched = build_finetune_scheduler(opt, fc, int(fc["steps"]))
    prec = fc["precision"] if device.type == "cuda" else "fp32"
    n_classes = len(info["class_names"])

    def make_input():
        batch = synthetic_batch(batch_size, info["num_particles"], info["feature_names"], gen,
                                pcfg["data"]["features"] == "mpmv2")
        batch.label = torch.randint(0, n_classes, (batch_size,), generator=gen)
        batch = batch.to(device)
        return with_backbone_outputs(model, batch, device, prec) if mode == "fixed_cached" else batch

    loss_fn = loss_function(model, task, device, prec)  # run_finetune's

    def step(batch):
        return train_step(model, model, opt, sched, batch, loss_fn, fc)

    return Runner(model, int(fc["batch_size"]), make_input, step, prec)


# name -> (config file, builder(device, batch_size, generator[, tmp]))
CONFIGS = {
    "mpm_tokenizer_v1": "mpm/configs/tokenizer_v1.yaml",
    "mpmv1": "mpm/configs/mpmv1.yaml",
    "mpmv2": "mpm/configs/mpmv2.yaml",
    "omnijet_tokenizer": "omnijet/configs/tokenizer.yaml",
    "omnijet_gpt": "omnijet/configs/pretrain.yaml",
    "hepjepa": "hepjepa/configs/pretrain.yaml",
}


PROFILES = ("paper", "mini")


def config_path(name: str, profile: str = "paper") -> str:
    """The config a row builds: the paper YAML, or its twin in <method>/configs/mini/ (the model run_all.sh trains);
    a fine-tuning row: its fine-tuning config."""
    if name in FT_CONFIGS:
        return str(_profile_path(FT_METHODS[FT_CONFIGS[name][0]][1], profile))
    p = Path(CONFIGS[name])
    return str(p if profile == "paper" else p.parent / profile / p.name)


def _builder(name: str, tmp: str, profile: str = "paper"):
    path = config_path(name, profile)
    if name in FT_CONFIGS:
        method, mode = FT_CONFIGS[name]
        return lambda device, batch_size, gen: finetune_runner(method, mode, profile, device, batch_size, gen)
    if name.startswith("mpm"):
        return mpm_runner(path, tmp)
    fn = {"omnijet_tokenizer": omnijet_tokenizer_runner, "omnijet_gpt": omnijet_gpt_runner,
          "hepjepa": hepjepa_runner}[name]
    return lambda device, batch_size, gen: fn(path, device, batch_size, gen)


# ---------------------------------------------------------------------------------------------------------------------
# measurement

def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_config(name: str, *, steps: int, warmup: int = 1, batch_size: int | None = None, device="cpu",
                 seed: int = 0, profile: str = "paper") -> dict:
    """Build config `name` (of `profile`), run `warmup` untimed and `steps` timed optimiser steps; return one row.

    Default batch: the config's own for CUDA and for the mini profile; 16 for paper-size models on CPU."""
    if name not in CONFIGS and name not in FT_CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose from {sorted(CONFIGS) + sorted(FT_CONFIGS)}")
    device = torch.device(device)
    torch.manual_seed(seed)
    rss0 = _max_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gen = torch.Generator().manual_seed(seed)
    own_cfg = load_config(ROOT / config_path(name, profile))
    own = own_cfg["finetune"]["batch_size"] if name in FT_CONFIGS else own_cfg["train"]["batch_size"]
    B = batch_size or (own if device.type == "cuda" or profile != "paper" else 16)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        runner = _builder(name, tmp, profile)(device, B, gen)
    params = count_parameters(runner.model, trainable_only=True)
    loss = None
    for _ in range(warmup):
        loss = runner.step(runner.make_input())
    inputs = [runner.make_input() for _ in range(steps)]  # synthetic data are not part of the timing
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    for inp in inputs:
        loss = runner.step(inp)
    _sync(device)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
        raise FloatingPointError(f"{name}: non-finite loss {float(loss)}")
    row = dict(config=name, file=config_path(name, profile), params=params, paper_batch=runner.paper_batch, batch=B, steps=steps,
               warmup=warmup, device=str(device), precision=runner.precision, seconds=wall,
               jets_per_s=B * steps / wall, jets_per_s_cpu=B * steps / cpu if cpu > 0 else float("nan"),
               threads=torch.get_num_threads())
    if device.type == "cuda":
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        row["peak_kind"] = "cuda max_memory_allocated"
    else:
        row["peak_mem_mb"] = _max_rss_mb()
        row["rss_rise_mb"] = row["peak_mem_mb"] - rss0
        row["peak_kind"] = "peak RSS"
    return row


def format_table(rows: list[dict]) -> str:
    cpu = any(r["device"] == "cpu" for r in rows)
    head = ["config", "file", "trainable params", "batch (config)", "steps", "threads", "precision", "jets/s (wall)"]
    head += ["jets/s (CPU)", "peak RSS MB", "RSS rise MB"] if cpu else ["peak mem MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["config"], r["file"], f"{r['params']:,}", f"{r['batch']} ({r['paper_batch']})", str(r["steps"]),
                 str(r["threads"]), r["precision"], f"{r['jets_per_s']:,.1f}"]
        if cpu:
            cells += [f"{r['jets_per_s_cpu']:,.1f}", f"{r['peak_mem_mb']:,.0f}", f"{r.get('rss_rise_mb', 0):,.0f}"]
        else:
            cells += [f"{r['peak_mem_mb']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(CONFIGS)} and of the "
                    f"fine-tuning rows ft_<{'|'.join(FT_METHODS)}>_<{'|'.join(FT_MODES)}>")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 200 on CUDA, 3 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 on CUDA, 1 on CPU)")
    ap.add_argument("--batch-size", type=int, default=None, help="jets per step (default: paper on CUDA, 16 on CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="paper", choices=PROFILES,
                    help="paper: the paper-size models; mini: the models run_all.sh's default profile trains")
    ap.add_argument("--threads", default=None,
                    help="comma-separated torch thread counts, each config measured once per count (e.g. 1,2)")
    ap.add_argument("--in-process", action="store_true", help="run every config in this process (peak RSS shared)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is available")
    steps = a.steps if a.steps is not None else (200 if dev.type == "cuda" else 3)
    warmup = a.warmup if a.warmup is not None else (10 if dev.type == "cuda" else 1)
    names = list(CONFIGS) + list(FT_CONFIGS) if not a.only else [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [n for n in names if n not in CONFIGS and n not in FT_CONFIGS]
    if bad:
        ap.error(f"--only: unknown config(s) {bad}; choose from {list(CONFIGS)}")
    kw = dict(steps=steps, warmup=warmup, batch_size=a.batch_size, device=a.device, seed=a.seed, profile=a.profile)
    threads = [int(t) for t in a.threads.split(",")] if a.threads else [None]
    if a.child:  # one config, one JSON line on stdout
        if threads[0] is not None:
            torch.set_num_threads(threads[0])
        print("BENCH_ROW " + json.dumps(bench_config(names[0], **kw)), flush=True)
        return []
    rows = []
    for name in names:
        for t in threads:
            if a.in_process:
                if t is not None:
                    torch.set_num_threads(t)
                rows.append(bench_config(name, **kw))
            else:
                cmd = [sys.executable, "-m", "bench.bench_train", "--child", "--only", name, "--steps", str(steps),
                       "--warmup", str(warmup), "--device", a.device, "--seed", str(a.seed), "--profile", a.profile]
                if a.batch_size:
                    cmd += ["--batch-size", str(a.batch_size)]
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
                if t is not None:
                    cmd += ["--threads", str(t)]
                    env["OMP_NUM_THREADS"] = str(t)
                p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                found = [ln for ln in p.stdout.splitlines() if ln.startswith("BENCH_ROW ")]
                if p.returncode != 0 or not found:
                    sys.stderr.write(p.stdout + p.stderr)
                    raise RuntimeError(f"bench_train: config {name} failed (exit {p.returncode})")
                rows.append(json.loads(found[-1][len("BENCH_ROW "):]))
            r = rows[-1]
            print(f"{name}: {r['jets_per_s']:,.1f} jets/s at batch {r['batch']}, {r['threads']} threads",
                  file=sys.stderr, flush=True)
    print(f"\n{a.profile} pretraining and fine-tuning (ft_*) steps on {a.device}, {warmup} warm-up + {steps} timed "
          f"steps per config, synthetic jets (mean {MEAN_PARTICLES} real particles)\n")
    print(format_table(rows))
    if a.json:
        write_json(a.json, rows, indent=1)
    return rows


if __name__ == "__main__":
    cli(main)
