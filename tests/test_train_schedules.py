"""common.training.schedules (values at key steps) and common.training.ema (exact momentum, no gradients)."""
import math

import pytest
import torch
from torch import nn

from common.training.ema import ema_update, make_target, momentum_schedule
from common.training.schedules import build_scheduler, lr_factor


def _lrs(cfg, steps, base=1.0):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = build_scheduler(opt, cfg)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_cosine_mpmv2_finetune():
    # jetssl train_classifier.yaml: warmup 10k from 0.1 x lr, cosine to 1e-3 x lr at 200k (scaled down by 1000)
    cfg = {"kind": "warmup_cosine", "warmup_steps": 10, "total_steps": 200, "start_factor": 0.1, "min_factor": 1e-3}
    lr = _lrs(cfg, 260, base=1e-4)
    assert lr[0] == pytest.approx(1e-5)
    assert lr[5] == pytest.approx(1e-4 * 0.55)
    assert lr[10] == pytest.approx(1e-4)
    assert lr[105] == pytest.approx(1e-4 * (1e-3 + (1 - 1e-3) * 0.5))  # half-way through the cosine
    assert lr[200] == pytest.approx(1e-7) and lr[259] == pytest.approx(1e-7)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))


def test_warmup_exp_half_life_and_floor():
    # MPMv2 pretraining: warmup 50k from 0, half-life 100k, factor floored at 1e-3 (scaled by 1000)
    cfg = {"kind": "warmup_exp", "warmup_steps": 50, "half_life": 100, "min_factor": 1e-3}
    assert lr_factor(cfg, 0) == 0.0
    assert lr_factor(cfg, 25) == pytest.approx(0.5)
    assert lr_factor(cfg, 50) == pytest.approx(1.0)
    assert lr_factor(cfg, 150) == pytest.approx(0.5)
    assert lr_factor(cfg, 250) == pytest.approx(0.25)
    assert lr_factor(cfg, 50 + 100 * 9) == pytest.approx(2 ** -9)
    assert lr_factor(cfg, 50 + 100 * 20) == pytest.approx(1e-3)  # floor


def test_onecycle_cooldown_omnijet_values():
    # omnijet_alpha OneCycleCooldown, base lr 1e-3: 5e-4 -> 1e-3 over epochs 0-4, back to 5e-4 by 24(+1), to 3e-4 by 74(+1), then 3e-4
    cfg = {"kind": "onecycle_cooldown", "warmup_steps": 5, "anneal_steps": 20, "cooldown_steps": 50}
    lr = _lrs(cfg, 100, base=1e-3)
    assert lr[0] == pytest.approx(5e-4)
    assert lr[5] == pytest.approx(1e-3)
    assert lr[15] == pytest.approx(7.5e-4)
    assert lr[25] == pytest.approx(5e-4)
    assert lr[50] == pytest.approx(4e-4)
    assert lr[75] == pytest.approx(3e-4) and lr[99] == pytest.approx(3e-4)


def test_linear_decay_and_constant():
    cfg = {"kind": "warmup_linear_decay", "warmup_steps": 10, "total_steps": 110}
    assert [lr_factor(cfg, s) for s in (0, 5, 10, 60, 110, 200)] == pytest.approx([0, 0.5, 1, 0.5, 0, 0])
    const = {"kind": "constant"}
    assert lr_factor(const, 0) == 1.0 and lr_factor(const, 10**6) == 1.0
    oj = {"kind": "constant", "hold_steps": 3, "hold_factor": 1 / 3}  # OmniJet ConstantLR(total_iters=1 epoch)
    assert [lr_factor(oj, s) for s in range(5)] == pytest.approx([1 / 3] * 3 + [1, 1])


def test_bad_schedule_cfg():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown"):
        build_scheduler(opt, {"kind": "cosine"})
    with pytest.raises(ValueError, match="half_life"):
        build_scheduler(opt, {"kind": "warmup_exp", "warmup_steps": 1})


def test_ema_moves_by_momentum_exactly_and_has_no_grad():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    target = make_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    old_t = [p.clone() for p in target.parameters()]
    online(torch.randn(5, 4)).sum().backward()  # online gets grads, target must not
    m = 0.9
    ema_update(target, online, m)
    for t, t0, o in zip(target.parameters(), old_t, online.parameters()):
        torch.testing.assert_close(t, m * t0 + (1 - m) * o.detach(), rtol=0, atol=1e-6)
        assert not torch.equal(t, t0)
        assert t.grad is None and not t.requires_grad
    torch.testing.assert_close(target[1].running_mean, online[1].running_mean)
    # momentum 1 freezes the target; momentum 0 copies the online network
    frozen = [p.clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, target.parameters()))
    ema_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))


def test_momentum_schedule_and_ema_update():
    m = momentum_schedule(0.996, 1.0, 100)
    assert m(0) == pytest.approx(0.996) and m(50) == pytest.approx(0.998) and m(100) == 1.0 and m(500) == 1.0
    net = nn.Linear(3, 3)
    target = make_target(net)
    w0 = target.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema_update(target, net, momentum_schedule(0.5, 1.0, 10)(0))
    torch.testing.assert_close(target.weight, w0 + 0.5)
    assert not math.isnan(float(target.weight.sum()))
