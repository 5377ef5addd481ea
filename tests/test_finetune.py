"""common.training.finetune: modes (fixed is bit-identical, scratch re-initialises), CatchupToLR values, early stopping,
N-per-class sweeps with mean/std, result.json; one integration run through common.data.datasets on tiny Top-tagging files."""
import json

import numpy as np
import pytest
import torch
from test_train_utils import FakeJetLoader
from torch import nn

from common.data.batch import JetBatch
from common.training.classifier import Classifier, build_classifier, build_classifier_optimizer
from common.training.distributed import Dist
from common.training.finetune import evaluate_metrics, run_finetune
from common.training.finetune_config import finetune_settings
from common.training.schedules import build_finetune_scheduler, catchup_lr
from common.training.sweep import run_sweep

CLASSES = ["QCD", "Top"]


class TinyBackbone(nn.Module):
    """Per-particle Linear -> dropout -> BatchNorm (so a frozen backbone must also be kept in eval mode)."""

    def __init__(self, n_features=3, dim=8, norm=True, dropout=0.2):
        super().__init__()
        self.dim = dim
        self.embed = nn.Linear(n_features, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.BatchNorm1d(dim) if norm else nn.Identity()

    def forward(self, batch):
        h = self.drop(self.embed(batch.x))
        h = self.norm(h.reshape(-1, self.dim)).reshape(h.shape)
        return h, batch.mask


PRETRAINED = None


def _pretrained_state():
    global PRETRAINED
    if PRETRAINED is None:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
            torch.manual_seed(99)
            PRETRAINED = {k: v.clone() for k, v in TinyBackbone().state_dict().items()}
    return PRETRAINED


def load_pretrained(bb):
    bb.load_state_dict(_pretrained_state())


class SplitLoader:
    """A split of fake jets with make_loader's subset / shard / shuffle semantics."""

    def __init__(self, x, mask, label, batch_size, shuffle, seed, rank, world_size):
        self.x, self.mask, self.label = x, mask, label
        self.batch_size, self.shuffle, self.seed, self.rank, self.world = batch_size, shuffle, seed, rank, world_size
        self.dataset = range(len(label))
        self.epoch = 0

    def set_epoch(self, e):
        self.epoch = e

    def _idx(self):
        n = len(self.label)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch)) \
            if self.shuffle else torch.arange(n)
        return idx[self.rank::self.world]

    def __len__(self):
        return -(-len(self._idx()) // self.batch_size)

    def __iter__(self):
        idx = self._idx()
        for b in range(len(self)):
            i = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield JetBatch(self.x[i], self.mask[i], torch.zeros(len(i), self.x.shape[1], 4), torch.zeros(len(i), 6),
                           self.label[i])


class Killed(Exception):
    pass


def make_loader_fn(flip_val=False, n_jets=64, kill_after=None):
    data = {split: FakeJetLoader(n_jets=n_jets, data_seed=s) for split, s in (("train", 1), ("val", 2), ("test", 3))}
    if flip_val:  # validation labels opposite to the training rule: val loss rises while training learns
        data["val"] = FakeJetLoader(n_jets=n_jets, data_seed=1)
        data["val"].label = 1 - data["val"].label
    calls = []

    def loader_fn(data_cfg, split, batch_size, *, shuffle, seed=0, rank=0, world_size=1, drop_last=False,
                  max_jets=None, n_per_class=None, subset_seed=0):
        calls.append(dict(split=split, batch_size=batch_size, n_per_class=n_per_class, subset_seed=subset_seed))
        d = data[split]
        idx = torch.arange(len(d.label))
        if n_per_class is not None:
            g = torch.Generator().manual_seed(subset_seed)
            idx = torch.cat([idx[d.label == c][torch.randperm(int((d.label == c).sum()), generator=g)[:n_per_class]]
                             for c in range(2)])
        if max_jets is not None:
            idx = idx[:max_jets]
        loader = SplitLoader(d.x[idx], d.mask[idx], d.label[idx], batch_size, shuffle, seed, rank, world_size)
        if split == "train" and kill_after is not None:  # the process "dies" while reading batch kill_after + 1
            loader.__class__ = type("KillingLoader", (SplitLoader,), {"__iter__": _killing_iter})
            loader.left = kill_after
        return loader

    loader_fn.calls = calls
    return loader_fn


def _killing_iter(self):
    for batch in SplitLoader.__iter__(self):
        if self.left == 0:
            raise Killed
        self.left -= 1
        yield batch


def _cfg(**ft):
    base = {"mode": "finetune", "head": {"kind": "linear_mean"}, "lr": 1e-2, "batch_size": 16, "steps": 20,
            "val_every": 4, "patience": 100, "log_every": 1, "schedule": {"kind": "constant"}, "seeds": [0]}
    return {"data": {"dataset": "fake"}, "finetune": {**base, **ft}}


def _run(tmp_path, loader_fn=None, **ft):
    holder = {}

    def build():
        holder["bb"] = TinyBackbone()
        return holder["bb"]

    res = run_finetune(_cfg(**ft), build, load_pretrained, tmp_path, Dist(), loader_fn=loader_fn or make_loader_fn(),
                       class_names=CLASSES)
    return res, holder["bb"]


# ---------------------------------------------------------------------------------------------------------------------

def test_catchup_lr_mpmv2_values():
    kw = dict(unfreeze_step=5000, catchup_steps=5000, start_lr=1e-8)
    assert catchup_lr(0, 1e-4, **kw) == 0.0
    assert catchup_lr(4999, 1e-4, **kw) == 0.0
    assert catchup_lr(5000, 1e-4, **kw) == pytest.approx(1e-8)
    assert catchup_lr(7500, 1e-4, **kw) == pytest.approx(1e-8 + (1e-4 - 1e-8) / 2)
    assert catchup_lr(10000, 1e-4, **kw) == pytest.approx(1e-4)
    assert catchup_lr(50000, 3e-5, **kw) == pytest.approx(3e-5)  # in sync with the head afterwards
    assert catchup_lr(10**6, 1e-4, unfreeze_step=None) == 0.0  # frozen runs never unfreeze
    # MPMv1: frozen for K steps, then backbone LR = head LR x 0.1 at once
    assert catchup_lr(99, 1e-4, unfreeze_step=100, factor=0.1) == 0.0
    assert catchup_lr(100, 1e-4, unfreeze_step=100, factor=0.1) == pytest.approx(1e-5)


def test_scheduler_groups_follow_head_schedule_and_catchup():
    cfg = _cfg(lr=1e-4, unfreeze_step=10, catchup_steps=10, steps=100,
               schedule={"kind": "warmup_cosine", "warmup_steps": 5, "start_factor": 0.1, "min_factor": 1e-3})
    fc = finetune_settings(cfg)
    assert fc["schedule"].get("total_steps") is None  # the steps the run can take: steps = 100 here
    torch.manual_seed(0)
    model = build_classifier(fc, TinyBackbone, load_pretrained, 2)
    opt = build_classifier_optimizer(model, fc)
    sched = build_finetune_scheduler(opt, fc)
    lrs = {"head": [], "backbone": []}
    for _ in range(60):
        for tag in lrs:
            lrs[tag].append(next(g["lr"] for g in opt.param_groups if g["tag"] == tag))
        opt.step()
        sched.step()
    h, b = lrs["head"], lrs["backbone"]
    assert h[0] == pytest.approx(1e-5) and h[5] == pytest.approx(1e-4)
    assert b[:10] == [0.0] * 10
    assert b[10] == pytest.approx(1e-8)
    assert b[15] == pytest.approx(1e-8 + (h[15] - 1e-8) * 0.5)
    assert b[20:] == pytest.approx(h[20:])
    # fixed mode: the backbone is not in the optimiser at all
    fixed = finetune_settings(_cfg(mode="fixed"))
    m = build_classifier(fixed, TinyBackbone, load_pretrained, 2)
    assert {g["tag"] for g in build_classifier_optimizer(m, fixed).param_groups} == {"head"}
    assert fixed["unfreeze_step"] is None
    never = finetune_settings(_cfg(mode="finetune", unfreeze_step=None))
    m = build_classifier(never, TinyBackbone, load_pretrained, 2)
    assert {g["tag"] for g in build_classifier_optimizer(m, never).param_groups} == {"head"}
    assert not any(p.requires_grad for p in m.backbone.parameters()) and m.backbone_frozen


def test_fixed_mode_backbone_bit_identical(tmp_path):
    res, bb = _run(tmp_path, mode="fixed", steps=12)
    for k, v in bb.state_dict().items():
        assert torch.equal(v, _pretrained_state()[k]), k  # weights and BatchNorm statistics
    assert res["steps"] == 12 and res["test"]["accuracy"] > 0.5
    assert json.loads((tmp_path / "result.json").read_text())["mode"] == "fixed"
    assert (tmp_path / "done.json").exists() and (tmp_path / "log.jsonl").exists()


def test_finetune_backbone_frozen_until_unfreeze_then_trained(tmp_path):
    _, bb = _run(tmp_path / "a", unfreeze_step=5, catchup_steps=3, steps=5)
    assert all(torch.equal(v, _pretrained_state()[k]) for k, v in bb.state_dict().items())
    _, bb = _run(tmp_path / "b", unfreeze_step=5, catchup_steps=3, steps=10)
    assert not torch.equal(bb.embed.weight, _pretrained_state()["embed.weight"])
    rows = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    lr_b = [r["lr_backbone"] for r in rows if "lr_backbone" in r]  # LR for the step after each logged one
    assert lr_b[:4] == [0.0] * 4 and lr_b[4] == pytest.approx(1e-8) and lr_b[7] == pytest.approx(1e-2)


def test_scratch_reinitialises(tmp_path):
    calls = []
    fc = finetune_settings(_cfg(mode="scratch"))
    torch.manual_seed(0)
    m = build_classifier(fc, TinyBackbone, lambda bb: calls.append(bb), 2)
    assert calls == [] and not m.backbone_frozen
    assert not torch.equal(m.backbone.embed.weight, _pretrained_state()["embed.weight"])
    ft = build_classifier(finetune_settings(_cfg()), TinyBackbone, load_pretrained, 2)
    assert torch.equal(ft.backbone.embed.weight, _pretrained_state()["embed.weight"])
    with pytest.raises(ValueError, match="scratch"):
        build_classifier(finetune_settings(_cfg(mode="fixed")), TinyBackbone, None, 2)
    res, bb = _run(tmp_path, mode="scratch", steps=16)
    assert res["test"]["accuracy"] > 0.8  # separable toy data is learned


def test_early_stopping_triggers(tmp_path):
    res, _ = _run(tmp_path, loader_fn=make_loader_fn(flip_val=True), mode="scratch", val_every=2, patience=2,
                  steps=200)
    assert res["stopped_early"] and res["steps"] < 200
    losses = [loss for _, loss in res["val_curve"]]
    assert len(losses) == 3 and res["steps"] == 6  # best at the first check, then 2 checks without improvement
    assert res["best_step"] == res["val_curve"][int(np.argmin(losses))][0]
    assert res["best_val_loss"] == pytest.approx(min(losses))
    # without a pressure to stop, the run goes to steps
    res2, _ = _run(tmp_path / "b", mode="scratch", val_every=2, patience=100, steps=10)
    assert not res2["stopped_early"] and res2["steps"] == 10
    # validation every 2 epochs (64 jets / batch 16 = 4 steps per epoch), plus the last step
    res3, _ = _run(tmp_path / "c", mode="scratch", val_every_epochs=2, steps=20)
    assert [s for s, _ in res3["val_curve"]] == [8, 16, 20]


def test_sweep_n_per_class_and_seeds(tmp_path):
    loader_fn = make_loader_fn()
    cfg = _cfg(mode="scratch", steps=4, n_per_class=[4, 8], seeds=[0, 1],
               per_n=[{"min_n": 16, "max_n": 16, "set": {"steps": 3}}])  # 8 per class x 2 classes
    summary = run_sweep(cfg, TinyBackbone, None, tmp_path, Dist(), loader_fn=loader_fn, class_names=CLASSES)
    train_calls = [c for c in loader_fn.calls if c["split"] == "train"]
    assert [(c["n_per_class"], c["subset_seed"]) for c in train_calls] == [(4, 0), (4, 1), (8, 0), (8, 1)]
    for n in (4, 8):
        accs = [json.loads((tmp_path / f"n{n}" / f"seed{s}" / "result.json").read_text())["test"]["accuracy"]
                for s in (0, 1)]
        st = summary["per_n"][str(n)]["accuracy"]
        assert st["mean"] == pytest.approx(np.mean(accs)) and st["std"] == pytest.approx(np.std(accs, ddof=1))
        r = json.loads((tmp_path / f"n{n}" / "seed0" / "result.json").read_text())
        assert r["n_train_jets"] == 2 * n
        assert r["steps"] == (3 if n == 8 else 4)  # per_n overrides for one N
    assert (tmp_path / "summary.json").exists()
    assert summary["rows"][0]["n_per_class"] == 4 and len(summary["rows"][0]["accuracy"]) == 2
    # a finished run is read back, not retrained
    n_calls = len(loader_fn.calls)
    run_sweep(cfg, TinyBackbone, None, tmp_path, Dist(), loader_fn=loader_fn, class_names=CLASSES)
    assert len(loader_fn.calls) == n_calls


def test_bad_finetune_config():
    with pytest.raises(ValueError, match="finetune.lrr"):
        finetune_settings(_cfg(lrr=1))
    with pytest.raises(ValueError, match="mode"):
        finetune_settings(_cfg(mode="frozen"))
    with pytest.raises(ValueError, match=r"per_n\[0\]: cannot set seeds"):
        finetune_settings(_cfg(per_n=[{"min_n": 100, "set": {"seeds": [1]}}]))
    with pytest.raises(ValueError, match="run_sweep"):
        run_finetune(_cfg(n_per_class=[1, 2]), TinyBackbone, None, "/tmp/unused", Dist(), class_names=CLASSES,
                     loader_fn=make_loader_fn())


def test_classifier_frozen_forward_has_no_graph():
    class ParamFreeHead(nn.Module):
        def forward(self, h, mask):
            return h.mean((1, 2))[:, None].expand(-1, 2)

    m = Classifier(TinyBackbone(), ParamFreeHead())
    m.freeze_backbone(True)
    m.train()
    assert not m.backbone.training
    batch = next(iter(FakeJetLoader()))
    out = m(batch)
    assert not out.requires_grad


def test_killed_run_resumes_bitwise(tmp_path):
    """Killed after the validation at step 8, the rerun continues from checkpoint.pt and ends exactly like a straight
    run (dropout RNG, data order, optimiser, best weights, curves)."""
    kw = dict(mode="finetune", unfreeze_step=3, catchup_steps=2, steps=12, val_every=4)
    straight, bb_straight = _run(tmp_path / "a", **kw)
    with pytest.raises(Killed):
        _run(tmp_path / "b", loader_fn=make_loader_fn(kill_after=9), **kw)
    assert (tmp_path / "b" / "checkpoint.pt").exists() and not (tmp_path / "b" / "result.json").exists()
    resumed, bb_resumed = _run(tmp_path / "b", **kw)
    for k, v in bb_straight.state_dict().items():
        assert torch.equal(bb_resumed.state_dict()[k], v), k
    for key in ("val_curve", "train_curve", "best_step", "best_val_loss", "test", "steps"):
        assert resumed[key] == straight[key], key
    assert not (tmp_path / "b" / "checkpoint.pt").exists()  # removed once result.json is written
    steps = [r["step"] for r in map(json.loads, (tmp_path / "b" / "log.jsonl").read_text().splitlines())
             if "train_loss" in r]
    assert steps == list(range(1, 13))  # the log holds each step once


# ---------------------------------------------------------------------------------------------------------------------
# integration with the real data module, and DDP

def test_integration_with_common_data(tmp_path):
    """A scratch run through common.data.datasets.make_loader on tiny Top-tagging files in the published format."""
    data = pytest.importorskip("common.data.datasets", reason="common/data/datasets.py (DATA helper) not written yet")
    factory = pytest.importorskip("data_factory", reason="tests/data_factory.py (DATA helper) not written yet")
    root = tmp_path / "top"
    for i, split in enumerate(("train", "val", "test")):
        factory.write_toptagging(str(root / f"{split}.h5"), 60, seed=i)
    data_cfg = {"dataset": "toptagging", "root": str(root), "train": "train.h5", "val": "val.h5", "test": "test.h5",
                "features": "part_kin", "num_particles": 16, "classes": None, "cache_dir": str(tmp_path / "cache"),
                "num_workers": 0}
    info = data.dataset_info(data_cfg)
    cfg = {"data": data_cfg, "finetune": {**_cfg()["finetune"], "mode": "scratch", "n_per_class": 10,
                                          "steps": 4, "val_every": 2, "batch_size": 8}}
    res = run_finetune(cfg, lambda: TinyBackbone(n_features=info["num_features"]), None, tmp_path / "run", Dist())
    assert res["class_names"] == ["QCD", "Top"] and res["n_train_jets"] == 20 and res["n_test_jets"] == 60
    assert set(res["test"]) >= {"accuracy", "auc", "rejection_50", "rejection_30"}
    assert [s for s, _ in res["val_curve"]] == [2, 4]


def _plain_backbone():
    torch.manual_seed(5)
    return TinyBackbone(norm=False, dropout=0.0)


def _ddp_cfg():
    return _cfg(mode="finetune", unfreeze_step=2, catchup_steps=2, steps=8, val_every=4, batch_size=16)


def _ddp_worker(rank, store, out):
    import torch.distributed as tdist

    from common.training.distributed import cleanup, init_distributed
    tdist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        dist = init_distributed(device="cpu")
        pre = _plain_backbone().state_dict()
        holder = {}

        def build():
            holder["bb"] = TinyBackbone(norm=False, dropout=0.0)
            return holder["bb"]

        res = run_finetune(_ddp_cfg(), build, lambda bb: bb.load_state_dict(pre), out, dist,
                           loader_fn=make_loader_fn(), class_names=CLASSES)
        torch.save({"res": res, "bb": holder["bb"].state_dict()}, f"{out}/rank{rank}.pt")
    finally:
        cleanup()


@pytest.mark.network
def test_finetune_ddp_two_processes_match_one(tmp_path):
    """Frozen phase (unused backbone parameters under DDP), unfreezing, all-reduced val loss, gathered test set."""
    import torch.multiprocessing as mp
    pre = _plain_backbone().state_dict()
    holder = {}

    def build():
        holder["bb"] = TinyBackbone(norm=False, dropout=0.0)
        return holder["bb"]

    single = run_finetune(_ddp_cfg(), build, lambda bb: bb.load_state_dict(pre), tmp_path / "one", Dist(),
                          loader_fn=make_loader_fn(), class_names=CLASSES)
    out = tmp_path / "two"
    out.mkdir()
    mp.spawn(_ddp_worker, args=(str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for k, v in holder["bb"].state_dict().items():
        torch.testing.assert_close(r0["bb"][k], v, rtol=1e-5, atol=1e-6)
        assert torch.equal(r0["bb"][k], r1["bb"][k])
    assert not torch.equal(holder["bb"].embed.weight, pre["embed.weight"])  # the backbone was trained
    assert r0["res"]["n_test_jets"] == single["n_test_jets"] == 64
    assert [s for s, _ in r0["res"]["val_curve"]] == [s for s, _ in single["val_curve"]] == [4, 8]
    assert [v for _, v in r0["res"]["val_curve"]] == pytest.approx([v for _, v in single["val_curve"]], rel=1e-5)
    assert r0["res"]["test"] == pytest.approx(single["test"], rel=1e-5)
    assert r0["res"]["test"] == r1["res"]["test"]
    assert json.loads((out / "result.json").read_text())["world_size"] == 2


def test_evaluate_metrics_binary_and_multiclass():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    m = evaluate_metrics(y, np.stack([1 - p1, p1], 1), CLASSES)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p1)) and m["accuracy"] == pytest.approx(np.mean((p1 > 0.5) == y))
    assert m["rejection_30"] >= m["rejection_50"] > 1
    y3 = rng.integers(0, 3, 600)
    p3 = rng.dirichlet(np.ones(3), 600)
    m3 = evaluate_metrics(y3, p3, ["QCD", "Hbb", "Tbqq"])
    assert m3["auc"] == pytest.approx(roc_auc_score(y3, p3, multi_class="ovr"))
    assert m3["accuracy"] == pytest.approx(np.mean(p3.argmax(1) == y3))
