"""Frozen means computed once: the backbone outputs of a `fixed` fine-tuning run (common/training/finetune.py), computed
once per split and served to the head, instead of a no_grad backbone forward at every optimiser step and validation.

A frozen backbone (eval mode, no autograd, not in the optimiser) gives every jet the same outputs at every step, as
long as its inputs do not change: the cache is used only when
  - the backbone stays frozen for the whole run (finetune.unfreeze_step null: mode fixed),
  - no module of the backbone is in training mode, and two forward passes of the first batch are bit-identical (no
    random step in the forward: HEP-JEPA's tokeniser with `model.fps_random_start` draws its farthest-point-sampling
    start at every step of every arm that trains, the frozen one too, so that arm recomputes),
  - the loader's batches are made by common.data.sampler.ShardedBatchSampler and, for the per-jet training cache, the
    feature set draws nothing per batch (FeatureSet.random_per_batch: MPMv2's neutral-IP noise is redrawn for every new
    batch composition, so its training jets are recomputed; the validation batches are the same at every validation
    and stay cacheable),
  - the outputs fit in finetune.cache_frozen_max_gb (estimated from one batch: bytes per jet x jets).
Otherwise the run recomputes (the loop as before) and says why on stdout.

Training split: the outputs of every jet, (N, T, D) + the (N, T) mask, computed in jet order in batches of the training
micro-batch size (a kernel may choose its algorithm by shape: HEP-JEPA's pair-embedding Conv1d gives a jet other last
bits in a batch of 16 than in one of 8, never other bits in another batch of the same size); each step
gathers its jets' rows (the loader still yields the batch, so labels and per-track targets are those of the recomputing
path, in the same order, with the same RNG). Validation split: one entry per evaluation batch, in the loader's order.
The test split is evaluated once, so it is computed once already. On CPU in fp32 the predictions and metrics are
bit-identical to the recomputing path (tests/test_finetune_frozen_cache.py); on a GPU a batch of another composition
may take another kernel, so the last bits of an output may differ. On CPU a GEMM may also round a row differently by
its position in the batch (MKL's small-K kernels do: a Linear(7, 7) on 6-particle jets gives a jet 1e-7 other outputs
at another row); MPMv1 and HEP-JEPA at the tested sizes (16 particles, 8 patches) show no such difference. Where a
backbone does, the cached run equals a recomputing run with other batch compositions, not this one's bits.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from common.data.batch import JetBatch
from common.data.sampler import ShardedBatchSampler
from common.training.train_utils import autocast


@dataclass
class FrozenBatch(JetBatch):
    """A JetBatch that carries its jets' backbone outputs: h (B, T, D) and hmask (B, T). Classifier.forward gives it
    to the head without running the backbone."""

    h: torch.Tensor | None = None
    hmask: torch.Tensor | None = None

    def _map(self, fn) -> "FrozenBatch":
        return FrozenBatch(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                              for f in fields(self)})

    def to(self, device, non_blocking: bool = False) -> "FrozenBatch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "FrozenBatch":
        return self._map(lambda t: t.pin_memory())

    def __getitem__(self, index) -> "FrozenBatch":
        return self._map(lambda t: t[index])


def with_outputs(batch, h: torch.Tensor, hmask: torch.Tensor):
    """The batch (a JetBatch or a (JetBatch, targets...) tuple) with its JetBatch turned into a FrozenBatch."""
    jets = batch[0] if isinstance(batch, tuple) else batch
    fb = FrozenBatch(**{f.name: getattr(jets, f.name) for f in fields(JetBatch)}, h=h, hmask=hmask)
    return (fb, *batch[1:]) if isinstance(batch, tuple) else fb


def _jets(batch):
    return batch[0] if isinstance(batch, tuple) else batch


def _sampler(loader):
    s = getattr(loader, "sampler", None)
    return s if isinstance(s, ShardedBatchSampler) else None


def _features(loader):
    """The feature set whose per-batch step the loader runs (JetDataset.features, ArrayLoader.features)."""
    if hasattr(loader, "features"):
        return loader.features
    return getattr(getattr(loader, "dataset", None), "features", None)


def batch_at(loader, idx: np.ndarray):
    """The loader's batch of the jets `idx` (sorted), as its iteration would yield them; None for an unknown loader."""
    if hasattr(loader, "batch_at"):
        return loader.batch_at(idx)
    ds = getattr(loader, "dataset", None)
    if isinstance(loader, torch.utils.data.DataLoader) and hasattr(ds, "gather"):   # make_loader's JetDataset
        return ds[idx]
    return None


class IndexedTrainLoader:
    """The training loader with every batch's jets' cached outputs attached (FrozenBatch); the same batches in the same
    order (the sampler's (seed, epoch) order), so ResumableLoader resumes it as it resumes the loader."""

    def __init__(self, loader, h: torch.Tensor, hmask: torch.Tensor):
        self.loader, self.h, self.hmask = loader, h, hmask
        self.sampler, self.dataset = loader.sampler, getattr(loader, "dataset", None)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for idx, batch in zip(self.sampler, self.loader):
            rows = torch.from_numpy(np.sort(np.asarray(idx, dtype=np.int64))).to(self.h.device)
            if len(rows) != len(_jets(batch)):
                raise RuntimeError("frozen cache: the sampler and the loader disagree on a batch")
            yield with_outputs(batch, self.h[rows], self.hmask[rows])


@dataclass
class FrozenCache:
    train: object | None      # IndexedTrainLoader or None (recompute)
    val: list | None          # FrozenBatch (or tuple) per validation batch, or None (recompute)
    notes: list


def _forward(backbone: nn.Module, batch, device, ctx):
    with torch.no_grad(), ctx():
        h, mask = backbone(_jets(batch).to(device))
    return h, mask


def with_backbone_outputs(model, batch, device, precision: str):
    """The batch with the frozen backbone's outputs of its jets (what the cache serves), under finetune.precision."""
    h, mask = _forward(model.backbone, batch, device, lambda: autocast(device, precision, "finetune.precision"))
    return with_outputs(batch, h, mask)


def _bytes_per_jet(h: torch.Tensor, mask: torch.Tensor, batch, with_data: bool) -> float:
    n = max(len(h), 1)
    b = h.element_size() * h.numel() + mask.element_size() * mask.numel()
    if with_data:
        parts = list(batch) if isinstance(batch, tuple) else [batch]
        for p in parts:
            ts = [getattr(p, f.name) for f in fields(JetBatch)] if isinstance(p, JetBatch) else [p]
            b += sum(t.element_size() * t.numel() for t in ts if isinstance(t, torch.Tensor))
    return b / n


def build_frozen_cache(model, train, val, device, fc: dict, ctx, log=print) -> FrozenCache:
    """The frozen outputs of the train and val splits of a run (see the module docstring), or None per split with the
    reason in `notes` (also logged). ctx() is the autocast context of the recomputing path (finetune.precision).
    Runs under its own RNG fork: the run's global torch RNG is where the recomputing path has it."""
    notes = []

    def refuse(msg):
        notes.append(msg)
        log(f"finetune: frozen cache off, recomputing the backbone: {msg}", flush=True)
        return FrozenCache(None, None, notes)

    if not fc.get("cache_frozen", True):
        return FrozenCache(None, None, ["finetune.cache_frozen is false"])
    if fc["unfreeze_step"] is not None or not getattr(model, "backbone_frozen", False):
        return FrozenCache(None, None, ["the backbone is trained in this run"])
    backbone = model.backbone
    model.train()                                   # as the loop runs it: a frozen backbone stays in eval mode
    training = sorted({type(m).__name__ for m in backbone.modules() if m.training})
    if training:
        return refuse(f"backbone modules in training mode ({', '.join(training)}): their random steps would be cached")
    budget = float(fc.get("cache_frozen_max_gb", 8.0)) * 1e9
    out_train, out_val = None, None
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        first = next(iter(val))
        h1, m1 = _forward(backbone, first, device, ctx)
        h2, m2 = _forward(backbone, first, device, ctx)
        if not (torch.equal(h1, h2) and torch.equal(m1, m2)):
            return refuse("two forward passes of the same batch differ (a random step in the frozen backbone, e.g. "
                          "HEP-JEPA's model.fps_random_start)")
        # the training split: every jet once, in jet order
        ts, feats = _sampler(train), _features(train)
        n = len(train.dataset) if getattr(train, "dataset", None) is not None else 0
        probe = batch_at(train, np.arange(min(n, len(_jets(first))))) if ts is not None and n else None
        if ts is None or probe is None:
            refuse_train = "the training loader is not a ShardedBatchSampler loader with indexed jets"
        elif getattr(feats, "random_per_batch", False):
            refuse_train = (f"feature set {feats.name!r} redraws inputs for every batch composition "
                            "(FeatureSet.random_per_batch)")
        else:
            ph, pm = _forward(backbone, probe, device, ctx)
            need = _bytes_per_jet(ph, pm, probe, False) * n
            refuse_train = (None if need <= budget else f"the training outputs need {need / 1e9:.2f} GB > "
                            f"finetune.cache_frozen_max_gb = {budget / 1e9:g}")
        if refuse_train:
            notes.append("train: " + refuse_train)
            log(f"finetune: frozen cache of the training split off, recomputing: {refuse_train}", flush=True)
        else:
            budget -= need
            # batches of the size the training forward runs (a kernel may pick its algorithm by shape, e.g. a Conv1d)
            step = max(1, round(ts.batch_size / int(fc["grad_accum"])))
            hs, ms = [], []
            for s in range(0, n, step):
                h, m = _forward(backbone, batch_at(train, np.arange(s, min(s + step, n))), device, ctx)
                hs.append(h)
                ms.append(m)
            if len({tuple(h.shape[1:]) for h in hs}) > 1:
                notes.append("train: the backbone's output width differs between batches")
                log("finetune: frozen cache of the training split off: output width differs between batches",
                    flush=True)
            else:
                out_train = IndexedTrainLoader(train, torch.cat(hs), torch.cat(ms))
        # the validation split: its batches, in the loader's order (the same at every validation)
        vs = _sampler(val)
        nv = len(val.dataset) if getattr(val, "dataset", None) is not None else 0
        need_v = _bytes_per_jet(h1, m1, first, True) * nv
        if vs is None or vs.shuffle:
            why = "the validation loader is not an unshuffled ShardedBatchSampler loader"
        elif need_v > budget:
            why = f"the validation outputs need {need_v / 1e9:.2f} GB > what finetune.cache_frozen_max_gb leaves"
        else:
            why = None
            out_val = [with_outputs(b, *_forward(backbone, b, device, ctx)) for b in val]
        if why:
            notes.append("val: " + why)
            log(f"finetune: frozen cache of the validation split off, recomputing: {why}", flush=True)
    return FrozenCache(out_train, out_val, notes)
