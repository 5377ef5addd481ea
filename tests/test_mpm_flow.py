"""mpm/flow.py (rational-quadratic spline coupling flow) and the MPMv2 CNF task head (mpm/heads.py :: CNFTask)."""
from __future__ import annotations

import math

import pytest
import torch

from common.data.batch import JetBatch

from mpm.flow import ConditionalSplineFlow, rq_spline
from mpm.heads import CNFTask, build_task
from mpm.mpmv2 import MPMv2, MPMv2Encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

K, B = 8, 4.0


def _params(n, scale=2.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, K, generator=g, dtype=dtype), scale * torch.randn(n, K, generator=g, dtype=dtype),
            scale * torch.randn(n, K - 1, generator=g, dtype=dtype))


def _grid(n=2001):
    return torch.linspace(-7.0, 7.0, n, dtype=torch.float64)  # inside and outside the tail bound 4


# ------------------------------------------------------------------------------------------------------ the spline

def test_spline_round_trip_inside_and_outside_the_tails():
    x = _grid()
    p = _params(x.numel())
    y, ld = rq_spline(x, *p, bound=B)
    x_back, ld_inv = rq_spline(y, *p, bound=B, inverse=True)
    assert (x_back - x).abs().max() < 1e-5
    assert (ld + ld_inv).abs().max() < 1e-5  # log|det| of the inverse is minus that of the forward map
    z = _grid()  # inverse first, then forward
    x2, _ = rq_spline(z, *p, bound=B, inverse=True)
    assert (rq_spline(x2, *p, bound=B)[0] - z).abs().max() < 1e-5
    assert ((x.abs() <= B) & ((y - x).abs() > 1e-2)).any()  # the spline did something inside


def test_spline_is_monotonic_and_maps_the_interval_onto_itself():
    x = _grid()
    p = tuple(t[:1].expand(x.numel(), -1) for t in _params(1, seed=3))  # one spline evaluated on the whole grid
    y, _ = rq_spline(x, *p, bound=B)
    assert (y[1:] > y[:-1]).all()
    ends, _ = rq_spline(torch.tensor([-B, B], dtype=torch.float64), *(t[:2] for t in p), bound=B)
    assert torch.allclose(ends, torch.tensor([-B, B], dtype=torch.float64))


@pytest.mark.parametrize("inverse", [False, True])
def test_spline_log_det_is_the_log_derivative(inverse):
    x = _grid().requires_grad_(True)
    p = _params(x.numel(), seed=1)
    y, ld = rq_spline(x, *p, bound=B, inverse=inverse)
    (dydx,) = torch.autograd.grad(y.sum(), x)  # elementwise map: the gradient of the sum is dy_i/dx_i
    assert torch.allclose(ld, dydx.log(), atol=1e-8)
    with torch.no_grad():  # and a central finite difference, independent of autograd
        h = 1e-6
        xs = x.detach()
        inner = (xs.abs() < B - 1e-3)
        fd = (rq_spline(xs + h, *p, bound=B, inverse=inverse)[0] - rq_spline(xs - h, *p, bound=B,
                                                                             inverse=inverse)[0]) / (2 * h)
        assert torch.allclose(ld[inner], fd[inner].log(), atol=1e-5)


def test_spline_is_the_identity_outside_the_tail_bound_and_joins_it_smoothly():
    x = torch.tensor([-100.0, -7.0, -4.0001, 4.0001, 5.0, 1e3], dtype=torch.float64)
    p = _params(x.numel(), seed=2)
    for inverse in (False, True):
        y, ld = rq_spline(x, *p, bound=B, inverse=inverse)
        assert torch.equal(y, x) and torch.equal(ld, torch.zeros_like(ld))
    edge = torch.tensor([-B, B], dtype=torch.float64)  # boundary derivatives are 1: log|det| 0 at +-B
    _, ld = rq_spline(edge, *(t[:2] for t in p), bound=B)
    assert ld.abs().max() < 1e-9


def test_zero_parameters_give_the_identity():
    x = _grid()
    zeros = (torch.zeros(x.numel(), K, dtype=torch.float64), torch.zeros(x.numel(), K, dtype=torch.float64),
             torch.zeros(x.numel(), K - 1, dtype=torch.float64))
    y, ld = rq_spline(x, *zeros, bound=B)
    assert (y - x).abs().max() < 1e-12 and ld.abs().max() < 1e-12


# -------------------------------------------------------------------------------------------------------- the flow

def _random_flow(dim=3, ctx=2, seed=0):
    torch.manual_seed(seed)
    flow = ConditionalSplineFlow(dim, ctx, num_layers=4, bins=K, tail_bound=B, hidden=16, depth=2,
                                 zero_init=False).double()
    with torch.no_grad():
        for layer in flow.layers:
            layer.net[-1].weight.mul_(5.0)  # clearly non-identity splines
    return flow


def test_untrained_flow_with_zero_last_layers_is_the_standard_normal():
    torch.manual_seed(0)
    flow = ConditionalSplineFlow(7, 5)  # zero_init=True by default
    x, c = 3 * torch.randn(50, 7), torch.randn(50, 5)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    assert torch.allclose(flow.log_prob(x, c), ref, atol=1e-4)


def test_flow_log_det_matches_the_autograd_jacobian_and_inverts():
    flow = _random_flow()
    g = torch.Generator().manual_seed(1)
    x, c = 2.5 * torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g,
                                                                                   dtype=torch.float64)
    z, logdet = flow(x, c)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], c[i:i + 1])[0][0], x[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-8)
    assert (z - x).abs().max() > 1e-2
    assert (flow.inverse(z, c) - x).abs().max() < 1e-5


def test_flow_density_integrates_to_one():
    flow = _random_flow(dim=2, ctx=1, seed=2)
    t = torch.linspace(-9, 9, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], -1)
    for cval in (-1.0, 1.5):
        with torch.no_grad():
            p = flow.log_prob(pts, torch.full((pts.shape[0], 1), cval, dtype=torch.float64)).exp()
        mass = float(p.sum() * (t[1] - t[0]) ** 2)
        assert abs(mass - 1.0) < 1e-2, mass


def test_flow_samples_follow_the_inverse():
    flow = _random_flow(seed=4)
    c = torch.randn(5, 2, dtype=torch.float64)
    torch.manual_seed(9)
    x = flow.sample(c)
    torch.manual_seed(9)
    z = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(flow(x, c)[0], z, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- the CNF task

def _conditional_problem(M=256, dim=8, F=7, seed=0):
    """x = A d + 0.1 eps: the decoder output d determines x up to small noise."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(M, dim, generator=g)
    A = torch.randn(dim, F, generator=g) / math.sqrt(dim)
    return d, d @ A + 0.1 * torch.randn(M, F, generator=g)


def _small_task(**kw):
    torch.manual_seed(0)
    return CNFTask(8, 7, context_dim=16, num_layers=4, bins=8, hidden=32, depth=2, **kw)


def test_cnf_nll_falls_on_a_conditional_problem():
    task = _small_task(ip_noise=0.0)
    d, x = _conditional_problem()
    task.eval()
    with torch.no_grad():
        before = float(task(d, x)[0])
    opt = torch.optim.Adam(task.parameters(), lr=3e-3)
    task.train()
    for _ in range(100):
        loss, _ = task(d, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    task.eval()
    with torch.no_grad():
        after = float(task(d, x)[0])
    # untrained = standard normal (about 9.4 nats here); the context explains x up to 0.1 noise
    assert before > 8.0 and after < before - 4.0, (before, after)


def test_cnf_ip_noise_only_on_the_impact_parameters_and_only_in_training():
    task = _small_task(ip_noise=0.05)
    seen = []
    log_prob = task.flow.log_prob
    task.flow.log_prob = lambda x, c: (seen.append(x.detach().clone()), log_prob(x, c))[1]
    d, x = _conditional_problem(M=4000)
    task.train()
    task(d, x)
    diff = seen[-1] - x
    assert torch.equal(diff[:, :3], torch.zeros_like(diff[:, :3]))  # pT, deta, dphi untouched
    assert abs(float(diff[:, 3:].std()) - 0.05) < 0.005 and abs(float(diff[:, 3:].mean())) < 0.005
    task.eval()
    task(d, x)
    assert torch.equal(seen[-1], x)


def test_cnf_runs_in_fp32_under_autocast():
    task = _small_task(ip_noise=0.0, zero_init=False).eval()  # non-zero last layers: bf16 would show
    d, x = _conditional_problem(M=32)
    ref, _ = task(d, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = task(d, x)
    assert loss.dtype == torch.float32 and torch.allclose(loss, ref, atol=1e-5)


def test_cnf_empty_input_gives_a_finite_zero_loss():
    task = _small_task().train()
    loss, _ = task(torch.zeros(0, 8), torch.zeros(0, 7))
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in task.parameters())


def test_build_task_cnf_reads_task_cfg_and_rejects_unknown_keys():
    task = build_task("cnf", 8, 7, cfg={"hidden": 64, "num_layers": 3, "bins": 5, "tail_bound": 3.0,
                                        "ip_features": [3, 7]})
    assert isinstance(task, CNFTask) and len(task.flow.layers) == 3
    layer = task.flow.layers[0]
    assert layer.bins == 5 and layer.tail_bound == 3.0 and layer.net[0].out_features == 64
    assert layer.net[-1].out_features == int(layer.mask.sum()) * (3 * 5 - 1)
    with pytest.raises(ValueError, match="unknown key"):
        build_task("cnf", 8, 7, cfg={"hiden": 64})
    with pytest.raises(ValueError, match="ssfm"):  # ssfm needs its own decoder sizes (tests/test_mpm_ssfm.py)
        build_task("ssfm", 8, 7)


def _batch(B=6, N=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(3, N + 1, (B,), generator=g)
    mask = torch.arange(N)[None] < n[:, None]
    x = torch.randn(B, N, 7, generator=g) * mask[..., None]
    pid = torch.randint(0, 8, (B, N), generator=g) * mask
    return JetBatch(x, mask, torch.zeros(B, N, 4), torch.zeros(B, 6), torch.zeros(B, dtype=torch.long), pid)


def _tiny_mpmv2():
    torch.manual_seed(0)
    enc = MPMv2Encoder(7, 8, dim=16, depth=1, num_heads=2, ff_hidden=32, num_registers=2, final_norm=True)
    return MPMv2(enc, task="cnf", dec_dim=8, dec_depth=1, dec_heads=2, dec_ff_hidden=16, max_particles=12,
                 task_cfg={"context_dim": 8, "hidden": 16, "num_layers": 2})


def test_mpmv2_with_cnf_task_trains_the_backbone():
    model = _tiny_mpmv2()
    loss, metrics = model(_batch())
    assert math.isfinite(loss.item()) and "id_acc" in metrics and metrics["task_loss"] > 0
    loss.backward()
    # zero-initialised conditioner outputs: the first gradient reaches the flow's last layers and the context map
    assert model.task.context.weight.grad is not None
    assert any(layer.net[-1].weight.grad.abs().sum() > 0 for layer in model.task.flow.layers)


def test_mpmv2_with_cnf_task_and_nothing_to_drop_gives_zero_loss():
    b = _batch()
    small = b.mask & (torch.arange(b.mask.shape[1])[None] < 2)  # floor(0.4 * 2) = 0 dropped per jet
    loss, _ = _tiny_mpmv2()(JetBatch(b.x, small, b.p4, b.jet, b.label, b.pid))
    assert loss.item() == 0.0


def test_cfm_time_embedding_is_the_official_cosine_encoding():
    # jetssl's VectorDiffuser embeds t with mltools' CosineEncodingLayer: cos(pi t e^k), k < time_dim, no sines
    # (the kit used [cos, sin](2 pi f t) over log-spaced f before)
    from mpm.heads import CFMTask

    task = CFMTask(dim=8, num_features=7, context_dim=4, hidden=16, depth=2, time_dim=5)
    seen = []
    task.net[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    t = torch.tensor([0.0, 0.3])
    task.velocity(torch.zeros(2, 7), t, torch.zeros(2, 4))
    emb = seen[0][:, 7 + 4:]
    want = torch.cos(math.pi * t[:, None] * torch.exp(torch.arange(5.0))[None])
    torch.testing.assert_close(emb, want)
    assert emb.shape == (2, 5) and torch.allclose(emb[0], torch.ones(5))  # t = 0: every cosine is 1
