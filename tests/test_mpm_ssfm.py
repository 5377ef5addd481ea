"""MPMv2's set-to-set flow matching (SSFM; arXiv:2409.12589, mattcleigh/jetssl src/models/sdm.py): drop sampling,
time embedding, the flow-matching loss by hand, padding invariance, conditioning on the kept set, gradients, a few
training steps, and a 2-step run of the smoke config through mpm.loop.train with a fine-tuning backbone loaded from
it."""
from __future__ import annotations

import json
import math

import pytest
import torch

from common.training.config import load_config, save_config
from common.training.distributed import Dist

from mpm.build import backbone_fns, build_model, pretrain_config
from mpm.heads import SSFMTask, build_task
from mpm.loop import train as fit
from mpm.masking import random_uniform_masking
from mpm.ssfm import SSFMDecoder, cosine_encoding
from tests.test_mpm_pretrain import V2_OVER, v2_batches

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

SMOKE = "mpm/configs/smoke/mpmv2_ssfm.yaml"
OVER = [o for o in V2_OVER if not o.startswith("model.task_cfg.")]  # the cfm/cnf keys do not exist for ssfm


def tiny_model(seed=0):
    cfg = load_config(SMOKE, OVER + ["train.steps=1"])
    torch.manual_seed(seed)
    return build_model(cfg)


def fixed_dropped(batch):
    """Drop the 2nd and 4th real particle of every jet (all test jets have at least 4)."""
    d = torch.zeros_like(batch.mask)
    d[:, 1] = d[:, 3] = True
    return d & batch.mask


def test_uniform_masking_draws_every_count_between_the_bounds_and_never_padding():
    mask = torch.arange(12)[None] < torch.tensor([10, 7])[:, None]
    g = torch.Generator().manual_seed(0)
    counts = {0: set(), 1: set()}
    for _ in range(600):
        d = random_uniform_masking(mask, 0.2, 1.0, generator=g)
        assert not (d & ~mask).any()
        for b in (0, 1):
            counts[b].add(int(d[b].sum()))
    assert counts[0] == set(range(2, 11))  # ceil(0.2*10)=2 ... floor(1.0*10)=10, both included
    assert counts[1] == set(range(2, 8))  # ceil(0.2*7)=2 ... 7
    assert random_uniform_masking(mask, 0.5, 0.5).sum(1).tolist() == [5, 3]  # ceil = floor for 0.5*10, floor(3.5)=3
    with pytest.raises(ValueError, match="frac_min"):
        random_uniform_masking(mask, 0.6, 0.4)


def test_cosine_time_embedding_is_cos_pi_t_exp_k():
    t = torch.tensor([0.0, 0.5, 0.25])
    emb = cosine_encoding(t, 3)
    want = torch.tensor([[math.cos(math.pi * ti * math.exp(k)) for k in range(3)] for ti in t.tolist()])
    assert emb.shape == (3, 3) and torch.allclose(emb, want, atol=1e-6)


def test_loss_is_the_flow_matching_velocity_regression_over_the_dropped_set(monkeypatch):
    """A stub decoder returning its input y_t: then loss = mean over dropped particles and the 7 + 8 features of
    (y_t - (eps - y))^2 with y = [x_c, one-hot ID], t = sigmoid(N(0,1)) one per jet, y_t = (1 - t) y + t eps."""
    task = SSFMTask(enc_dim=16, dim=8, depth=1, num_heads=2, ff_hidden=8, time_dim=4)
    batch = v2_batches(1)[0]
    dropped = fixed_dropped(batch)
    seen = {}

    def stub(y_t, mask, c, kv, kv_mask):
        seen.update(y_t=y_t, mask=mask, c=c, kv=kv, kv_mask=kv_mask)
        return y_t

    monkeypatch.setattr(task.decoder, "forward", stub)
    h, hmask = torch.randn(4, 2 + 10, 16), torch.ones(4, 12, dtype=torch.bool)
    torch.manual_seed(7)
    loss, _ = task(h, hmask, batch.x, batch.pid, dropped)

    torch.manual_seed(7)
    t = torch.sigmoid(torch.randn(4))
    y = torch.cat([batch.x, torch.nn.functional.one_hot(batch.pid, 8).float()], -1)
    eps = torch.randn_like(y)
    y_t = (1 - t[:, None, None]) * y + t[:, None, None] * eps
    assert torch.allclose(seen["y_t"], y_t) and torch.equal(seen["mask"], dropped)
    assert torch.allclose(seen["c"], cosine_encoding(t, 4))
    want = sum(((y_t[b, i] - (eps[b, i] - y[b, i])) ** 2).sum() for b, i in dropped.nonzero().tolist())
    want = want / (int(dropped.sum()) * 15)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_encoder_sees_only_the_kept_particles_and_the_decoder_reads_them():
    model = tiny_model().eval()
    assert not hasattr(model, "null_tokens") and not hasattr(model, "id_task")
    batch = v2_batches(1)[0]
    dropped = fixed_dropped(batch)
    masks = []
    orig = model.encoder.encode
    model.encoder.encode = lambda x, pid, mask: masks.append(mask) or orig(x, pid, mask)
    torch.manual_seed(1)
    base, _ = model.loss(batch, dropped)
    assert torch.equal(masks[0], batch.mask & ~dropped)

    kept_changed = batch.x.clone()
    kept_changed[:, 0] += 3.0  # particle 0 is kept in every jet
    torch.manual_seed(1)
    other, _ = model.loss(type(batch)(kept_changed, batch.mask, batch.p4, batch.jet, batch.label, batch.pid), dropped)
    assert abs(other.item() - base.item()) > 1e-6  # the generated set depends on the kept set (cross-attention)


def test_padded_particles_never_change_the_loss_or_a_dropped_particles_velocity():
    model = tiny_model().eval()
    batch = v2_batches(1)[0]
    dropped = fixed_dropped(batch)
    garbage = batch.x.masked_fill(~batch.mask[..., None], 1e4)
    pid = batch.pid.masked_fill(~batch.mask, 5)
    torch.manual_seed(3)
    a, _ = model.loss(batch, dropped)
    torch.manual_seed(3)
    b, _ = model.loss(type(batch)(garbage, batch.mask, batch.p4, batch.jet, batch.label, pid), dropped)
    assert a.item() == b.item()

    dec = SSFMDecoder(15, 8, 2, 2, 8, 4).eval()
    x_t, kv, c = torch.randn(4, 10, 15), torch.randn(4, 6, 8), torch.randn(4, 4)
    kv_mask = torch.ones(4, 6, dtype=torch.bool)
    kv_mask[:, 4:] = False
    v = dec(x_t, dropped, c, kv, kv_mask)
    x_t2, kv2 = x_t.masked_fill(~dropped[..., None], 1e4), kv.masked_fill(~kv_mask[..., None], float("nan"))
    v2 = dec(x_t2, dropped, c, kv2, kv_mask)
    assert torch.allclose(v[dropped], v2[dropped], atol=1e-6) and (v2[~dropped] == 0).all()


def test_gradients_reach_the_encoder_and_training_lowers_the_loss_on_a_fixed_batch():
    model = tiny_model().train()
    batch = v2_batches(1)[0]
    dropped = fixed_dropped(batch)

    def loss_at(seed):
        torch.manual_seed(seed)
        return model.loss(batch, dropped)[0]

    loss = loss_at(0)
    loss.backward()
    g = model.encoder.csts_emb.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert all(p.grad is not None for p in model.encoder.parameters())
    with torch.no_grad():
        before = sum(loss_at(s).item() for s in range(5)) / 5
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(60):
        opt.zero_grad()
        loss_at(100 + step).backward()
        opt.step()
    with torch.no_grad():
        after = sum(loss_at(s).item() for s in range(5)) / 5
    assert after < 0.8 * before, (before, after)


def test_paper_config_builds_the_thesis_decoder():
    cfg = load_config("mpm/configs/mpmv2_ssfm.yaml", ["model.dim=16", "model.depth=1", "model.num_heads=2",
                                                       "model.ff_hidden=16"])
    task = build_model(cfg).task
    assert isinstance(task, SSFMTask)
    assert len(task.decoder.blocks) == 4 and task.enc_to_dec.in_features == 16 and task.enc_to_dec.out_features == 256
    assert task.decoder.embed.in_features == 15 and task.decoder.out.out_features == 15
    assert task.decoder.blocks[0].cross_attn.fn.num_heads == 8 and task.time_dim == 32
    assert (task.frac_min, task.frac_max) == (0.2, 1.0)
    dec = {"enc_dim": 8, "num_ids": 8, "depth": 1, "num_heads": 2, "ff_hidden": 8}
    with pytest.raises(ValueError, match="unknown key"):
        build_task("ssfm", 8, 7, cfg={"hidden": 3}, decoder=dec)
    with pytest.raises(ValueError, match="model.task_cfg.frac_min"):
        build_task("ssfm", 8, 7, cfg={"frac_min": 0.5, "frac_max": 0.3}, decoder=dec)
    with pytest.raises(ValueError, match="model.task_cfg.time_dim"):
        build_task("ssfm", 8, 7, cfg={"time_dim": 0}, decoder=dec)


def test_smoke_config_runs_two_steps_through_the_loop_and_its_backbone_fine_tunes(tmp_path):
    cfg = load_config(SMOKE, OVER + ["train.steps=2"])
    torch.manual_seed(0)
    model = build_model(cfg)
    save_config(cfg, tmp_path / "config.yaml")  # as mpm.pretrain (common.training.train_utils.start_run)
    summary = fit(cfg, model, tmp_path, Dist(), loader=v2_batches())
    assert summary["steps"] == 2 and summary["first_loss"] > 0 and (tmp_path / "done.json").is_file()
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["task_loss"]) for r in rows)

    ft = load_config("mpm/configs/smoke/finetune_v2.yaml", [f"pretrained.run={tmp_path}", "data.num_particles=10"])
    build, load = backbone_fns(ft)
    pcfg = pretrain_config(ft)
    assert pcfg["model"]["task"] == "ssfm"
    backbone = build()
    load(backbone)  # strict: exactly the encoder's weights
    assert torch.equal(backbone.csts_emb.weight, model.encoder.csts_emb.weight.cpu())
