"""Vector quantiser: beta-split loss, (synchronised) straight-through gradients, affine codebook, k-means init on real
particles only, dead-code replacement restores utilisation."""
import math

import pytest
import torch

from common.blocks.vq import VectorQuantizer


def _vq(**kw):
    torch.manual_seed(0)
    args = dict(beta=0.9, affine_lr=2.0, sync_nu=0.0, kmeans_init=False, replace_freq=0)
    args.update(kw)
    return VectorQuantizer(8, 3, **args)


def test_shapes_codes_and_lookup():
    vq = _vq().eval()
    z = torch.randn(4, 5, 3)
    out = vq(z)
    assert out.z_q.shape == z.shape and out.codes.shape == (4, 5) and out.codes.dtype == torch.long
    cb = vq.codebook()
    torch.testing.assert_close(out.codes, torch.cdist(z.reshape(-1, 3), cb).argmin(-1).reshape(4, 5))
    torch.testing.assert_close(out.z_q, vq.lookup(out.codes))  # forward value of the straight-through output
    # affine reparameterisation: C' = (1 + 2 s) C + 2 b
    with torch.no_grad():
        vq.affine_scale.fill_(0.25)
        vq.affine_bias.fill_(-0.5)
    torch.testing.assert_close(vq.codebook(), 1.5 * vq.weight - 1.0)
    torch.testing.assert_close(vq.lookup(torch.tensor([2])), (1.5 * vq.weight[2] - 1.0)[None])


def test_loss_split_by_beta():
    beta = 0.9
    vq = _vq(beta=beta, affine_lr=0.0).train()
    z = torch.randn(6, 3, requires_grad=True)
    out = vq(z)
    zq = vq.weight[out.codes].detach()
    d = ((z.detach() - zq) ** 2).mean(-1).mean()
    torch.testing.assert_close(out.loss, d)  # both terms have the same value
    out.loss.backward()
    # commitment part reaches the encoder with weight (1 - beta), codebook part the codes with weight beta
    torch.testing.assert_close(z.grad, (1 - beta) * 2 * (z.detach() - zq) / (3 * 6))
    expected = torch.zeros_like(vq.weight).index_add_(0, out.codes, beta * 2 * (zq - z.detach()) / (3 * 6))
    torch.testing.assert_close(vq.weight.grad, expected)


def test_straight_through_reaches_encoder_and_sync_nu_reaches_codebook():
    enc = torch.nn.Linear(4, 3)
    x = torch.randn(10, 4)
    for nu in (0.0, 2.0):
        vq = _vq(sync_nu=nu).train()
        enc.zero_grad()
        out = vq(enc(x))
        target = torch.randn(10, 3)
        ((out.z_q - target) ** 2).sum().backward()  # "decoder" loss only, no VQ loss
        g_up = 2 * (out.z_q.detach() - target)
        # identity straight-through: the encoder weight gradient is exactly that of z_q replaced by z
        torch.testing.assert_close(enc.weight.grad, g_up.T @ x)
        if nu == 0:
            assert vq.weight.grad is None or vq.weight.grad.abs().sum() == 0
        else:  # codebook receives nu times the decoder gradient (through the affine map)
            assert vq.weight.grad.abs().sum() > 0
            scale = 1 + 2 * vq.affine_scale.detach()
            exp = torch.zeros_like(vq.weight).index_add_(0, out.codes, nu * g_up) * scale
            torch.testing.assert_close(vq.weight.grad, exp)


def test_mask_excludes_padding_from_loss_and_output():
    vq = _vq().train()
    z = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    out = vq(z, mask)
    g = z.clone()
    g[~mask] = 1e4
    out_g = vq(g, mask)
    torch.testing.assert_close(out_g.loss, out.loss)
    assert (out.z_q[~mask] == 0).all()
    torch.testing.assert_close(out_g.z_q[mask], out.z_q[mask])


def test_kmeans_init_uses_real_particles_only():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, kmeans_init=True, replace_freq=0, seed=0).train()
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    real = centres.repeat(30, 1) + 0.05 * torch.randn(120, 2)
    z = torch.cat([real, torch.full((200, 2), 100.0)])  # a large padded block far away
    mask = torch.cat([torch.ones(120, dtype=torch.bool), torch.zeros(200, dtype=torch.bool)])
    assert not bool(vq.initialised)
    out = vq(z, mask)
    assert bool(vq.initialised)
    cb = vq.codebook().detach()
    assert cb.abs().max() < 6  # no centroid was pulled to the padding
    d = torch.cdist(centres, cb).min(1).values
    assert (d < 0.2).all()  # every true cluster got a code
    assert out.utilisation.item() == 1.0
    assert math.isclose(out.perplexity.item(), 4.0, rel_tol=1e-4)
    # the init happens once
    before = vq.weight.detach().clone()
    vq(z + 1.0, mask)
    torch.testing.assert_close(vq.weight.detach(), before)


def test_dead_codes_are_replaced_and_utilisation_recovers():
    torch.manual_seed(0)
    K = 16
    vq = VectorQuantizer(K, 2, kmeans_init=False, replace_freq=3, sync_nu=0.0, seed=1).train()
    with torch.no_grad():
        vq.weight.copy_(torch.tensor([10.0, 10.0]).repeat(K, 1))  # collapsed codebook: every code identical
        vq.weight[0] = 0.0
    history = []
    for step in range(8):
        z = torch.randn(256, 2) * 3
        history.append(vq(z).utilisation.item())
    assert history[0] <= 2 / K  # collapsed
    assert history[-1] >= 0.8  # recovered after replacement
    assert (vq.code_age < 3).all()


def test_no_replacement_in_eval_or_when_disabled():
    vq = _vq(replace_freq=2).eval()
    w = vq.weight.detach().clone()
    for _ in range(5):
        vq(torch.randn(4, 3))
    torch.testing.assert_close(vq.weight.detach(), w)
    assert (vq.code_age == 0).all()


def _ddp_worker(rank, port, world, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different data and different local random draws on each rank
        vq = VectorQuantizer(8, 2, kmeans_init=True, replace_freq=2, kmeans_iters=5, seed=rank).train()
        for _ in range(6):
            vq(torch.randn(50, 2) * (1 + rank))
        out[rank] = vq.weight.detach().clone()
    finally:
        dist.destroy_process_group()


def test_codebook_stays_identical_across_ranks():
    import torch.multiprocessing as mp
    from spawn import spawn_on_free_port
    out = mp.Manager().dict()
    spawn_on_free_port(_ddp_worker, (2, out))
    torch.testing.assert_close(out[0], out[1])


def test_cosine_ema_quantiser_matches_a_hand_computed_step():
    """vector-quantize-pytorch 1.14.19 CosineSimCodebook (MPMv2 VQ-VAE): normalised inputs, arg-max cosine codes,
    commitment-only loss, EMA update c_k = l2norm(m_k / N~_k) with decay 0.8, dead codes (N_k < 2) reset."""
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 2, affine_lr=0.0, sync_nu=0.0, kmeans_init=False, replace_freq=0, distance="cosine",
                         codebook_update="ema", dead_code_threshold=0.0).train()
    assert "weight" not in dict(vq.named_parameters())            # the codebook gets no gradient
    with torch.no_grad():
        vq.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        vq.ema_sum.copy_(vq.weight)
        vq.ema_count.fill_(1.0)
    z = torch.tensor([[3.0, 1.0], [2.0, 0.0], [0.5, 4.0]], requires_grad=True)
    out = vq(z)
    zn = torch.nn.functional.normalize(z.detach(), dim=-1)
    assert out.codes.tolist() == [0, 0, 1]
    cb0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert torch.allclose(out.z_q, cb0[[0, 0, 1]])
    assert torch.allclose(out.loss, ((zn - cb0[[0, 0, 1]]) ** 2).mean())
    count = 0.8 * torch.ones(3) + 0.2 * torch.tensor([2.0, 1.0, 0.0])
    sums = 0.8 * cb0 + 0.2 * torch.stack([zn[0] + zn[1], zn[2], torch.zeros(2)])
    total = count.sum()
    smooth = (count + 1e-5) / (total + 3e-5) * total
    assert torch.allclose(vq.ema_count, count)
    assert torch.allclose(vq.weight, torch.nn.functional.normalize(sums / smooth[:, None], dim=-1), atol=1e-6)
    out.z_q.sum().backward()                                    # straight-through into the normalised inputs
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_ema_dead_codes_below_threshold_are_reset_to_batch_vectors():
    vq = VectorQuantizer(4, 2, affine_lr=0.0, sync_nu=0.0, kmeans_init=False, replace_freq=0, distance="cosine",
                         codebook_update="ema", dead_code_threshold=2.0).train()
    z = torch.nn.functional.normalize(torch.randn(6, 2), dim=-1)
    vq(z)                                                          # all counts start at 0 < 2: every code is reset
    assert torch.allclose(vq.ema_count, torch.full((4,), 2.0))
    assert all(torch.isclose(z, row).all(-1).any() for row in vq.weight)


def test_cosine_ema_kmeans_init_and_option_errors():
    vq = VectorQuantizer(2, 2, affine_lr=0.0, sync_nu=0.0, kmeans_init=True, kmeans_iters=5, replace_freq=0,
                         distance="cosine", codebook_update="ema").train()
    z = torch.cat([torch.tensor([[5.0, 0.1]]).repeat(5, 1), torch.tensor([[0.1, -3.0]]).repeat(3, 1)])
    vq(z)
    got = sorted(vq.weight.tolist())
    want = sorted(torch.nn.functional.normalize(torch.tensor([[5.0, 0.1], [0.1, -3.0]]), dim=-1).tolist())
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5)
    with pytest.raises(ValueError, match="vq.distance"):
        VectorQuantizer(2, 2, distance="l2")
    with pytest.raises(ValueError, match="vq.affine_lr"):
        VectorQuantizer(2, 2, codebook_update="ema")


def test_loss_average_jet_weighs_every_jet_equally():
    """rodem-hep/mpm jet_vq_vae.py _shared_step: lat_loss.sum(1) / mask.sum(1), then the mean over the jets;
    "particle" (OmniJet, jetssl) is the mean over every real vector."""
    z = torch.randn(3, 4, 3)
    mask = torch.tensor([[True, False, False, False], [True, True, True, True], [True, True, False, False]])
    per_vector = {}
    for average in ("particle", "jet"):
        vq = _vq(affine_lr=0.0, loss_average=average).eval()
        out = vq(z, mask)
        zq = vq.weight[out.codes]
        d = ((z - zq) ** 2).mean(-1)                               # beta-split terms are equal in value
        per_vector[average] = (out.loss, d)
    loss, d = per_vector["jet"]
    expected_jet = torch.stack([d[0, :1].mean(), d[1].mean(), d[2, :2].mean()]).mean()
    torch.testing.assert_close(loss, expected_jet)
    torch.testing.assert_close(per_vector["particle"][0], d[mask].mean())
    assert not torch.isclose(expected_jet, d[mask].mean())
    with pytest.raises(ValueError, match="vq.loss_average"):
        VectorQuantizer(2, 2, loss_average="event")
    with pytest.raises(ValueError, match="vq.loss_average=jet"):
        _vq(loss_average="jet")(torch.randn(5, 3))
