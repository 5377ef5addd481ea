"""MPM models on tiny random jets: masking, masked-only losses, MAE null tokens, falling pretraining losses."""
from __future__ import annotations

import math

import pytest
import torch

from common.data.batch import JetBatch

from mpm.masking import masked_jet_mean, order_among_chosen, random_masking
from mpm.mpmv1 import MPMv1, MPMv1Backbone
from mpm.mpmv2 import MPMv2, MPMv2Encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def fake_batch(B=6, N=12, F=3, seed=0, with_pid=True):
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(3, N + 1, (B,), generator=g)
    n[0] = N  # one full jet
    mask = torch.arange(N)[None] < n[:, None]
    x = torch.randn(B, N, F, generator=g) * mask[..., None]
    pid = torch.randint(0, 8, (B, N), generator=g) * mask if with_pid else None
    return JetBatch(x, mask, torch.zeros(B, N, 4), torch.zeros(B, 6), torch.randint(0, 3, (B,), generator=g), pid)


def tiny_v1(target="regression", positional="head_input", N=12, tokenizer=None):
    torch.manual_seed(0)
    bb = MPMv1Backbone(3, dim=16, depth=1, num_heads=2, ff_hidden=32, num_particles=N, positional=positional,
                       attn_dropout=0.0, dropout=0.0)
    return MPMv1(bb, target=target, target_tokenizer=tokenizer, positional=positional, head_hidden=16)


def tiny_v2(task="regression", N=12, dec_depth=1):
    torch.manual_seed(0)
    enc = MPMv2Encoder(7, 8, dim=16, depth=1, num_heads=2, ff_hidden=32, num_registers=2)
    return MPMv2(enc, task=task, dec_dim=8, dec_depth=dec_depth, dec_heads=2, dec_ff_hidden=16, max_particles=N)


def test_random_masking_counts_and_only_real():
    b = fake_batch(B=50, N=20, seed=1)
    for frac in (0.3, 0.4):
        chosen = random_masking(b.mask, frac)
        n_real = b.mask.sum(1)
        assert torch.equal(chosen.sum(1), torch.floor(n_real.double() * frac).long())
        assert not (chosen & ~b.mask).any()
    # uniform: over many draws every real slot of the full jet is chosen sometimes
    hits = sum(random_masking(b.mask, 0.3)[0].long() for _ in range(200))
    assert (hits > 0).all()


def test_order_among_chosen_is_pt_rank():
    chosen = torch.tensor([[False, True, False, True, True, False]])
    assert order_among_chosen(chosen).tolist() == [[0, 0, 0, 1, 2, 0]]


def test_masked_jet_mean_ignores_unchosen():
    vals = torch.tensor([[1.0, 100.0, 3.0], [5.0, 7.0, -50.0]])
    chosen = torch.tensor([[True, False, True], [True, True, False]])
    assert masked_jet_mean(vals, chosen).item() == pytest.approx((2.0 + 6.0) / 2)


@pytest.mark.parametrize("positional", ["none", "backbone_input", "head_input"])
def test_v1_regression_loss_only_at_masked_positions(positional):
    model = tiny_v1(positional=positional).eval()
    b = fake_batch()
    masked = random_masking(b.mask, 0.3, torch.Generator().manual_seed(3))
    targets = model.targets(b, b.x)
    base, _ = model.loss(b, masked=masked, targets=targets)
    noisy = targets + 5.0 * (~masked).unsqueeze(-1) * torch.randn_like(targets)  # perturb unmasked targets
    same, _ = model.loss(b, masked=masked, targets=noisy)
    assert same.item() == base.item()
    moved = targets + 5.0 * masked.unsqueeze(-1) * torch.randn_like(targets)  # perturb masked targets
    assert model.loss(b, masked=masked, targets=moved)[0].item() != pytest.approx(base.item())


def test_v1_token_loss_only_at_masked_positions():
    class RandomCodes(torch.nn.Module):
        num_codes = 5

        def tokenize(self, x, mask):
            return (x[..., 0].abs() * 10).long() % 5

    model = tiny_v1(target="kmeans", tokenizer=RandomCodes()).eval()
    b = fake_batch()
    masked = random_masking(b.mask, 0.3, torch.Generator().manual_seed(4))
    targets = model.targets(b, b.x)
    base, _ = model.loss(b, masked=masked, targets=targets)
    other = torch.where(masked, targets, (targets + 1) % 5)
    assert model.loss(b, masked=masked, targets=other)[0].item() == base.item()
    assert model.loss(b, masked=masked, targets=torch.where(masked, (targets + 1) % 5, targets))[0].item() != base.item()


def test_v1_mask_token_replaces_inputs_and_padding_is_inert():
    model = tiny_v1(positional="none").eval()
    b = fake_batch()
    masked = random_masking(b.mask, 0.3, torch.Generator().manual_seed(5))
    targets = model.targets(b, b.x)
    base = model.loss(b, masked=masked, targets=targets)[0]
    # the values of masked inputs never reach the model (replaced by the mask token)
    x2 = b.x + 3.0 * masked.unsqueeze(-1)
    b2 = JetBatch(x2, b.mask, b.p4, b.jet, b.label, b.pid)
    assert model.loss(b2, masked=masked, targets=targets)[0].item() == pytest.approx(base.item(), abs=1e-6)
    # garbage in padded slots changes nothing
    x3 = b.x + 7.0 * (~b.mask).unsqueeze(-1)
    b3 = JetBatch(x3, b.mask, b.p4, b.jet, b.label, b.pid)
    assert model.loss(b3, masked=masked, targets=targets)[0].item() == pytest.approx(base.item(), abs=1e-6)


def test_v1_without_positional_encoding_masked_outputs_are_degenerate():
    """arXiv:2401.13537: with identical mask tokens and no APE all masked outputs coincide; head APE breaks the tie."""
    b = fake_batch(B=1, N=12)
    masked = random_masking(b.mask, 0.3, torch.Generator().manual_seed(6))
    for positional, degenerate in (("none", True), ("head_input", False)):
        model = tiny_v1(positional=positional).eval()
        raw = torch.where(masked.unsqueeze(-1), model.mask_token, b.x)
        h = model.backbone.encode(raw, b.mask)
        if model.head_pos is not None:
            h = h + model.head_pos[: h.shape[1]]
        out = model.head(h, b.mask)[masked]
        assert torch.allclose(out, out[:1].expand_as(out), atol=1e-5) == degenerate


def test_v2_each_dropped_particle_gets_its_own_null_token_in_pt_order():
    model = tiny_v2().eval()
    b = fake_batch(F=7)
    dropped = random_masking(b.mask, 0.4, torch.Generator().manual_seed(7))
    h, _ = model.encoder.encode(b.x, b.pid, b.mask & ~dropped)
    dec_in = model.decoder_inputs(h, b.mask, dropped)[:, model.encoder.num_registers:]
    for j in range(len(b)):
        idx = dropped[j].nonzero().squeeze(1)
        got = dec_in[j, idx]
        assert torch.equal(got, model.null_tokens[: len(idx)].to(got.dtype))  # k-th dropped -> null_token[k]
        if len(idx) > 1:
            assert torch.unique(got, dim=0).shape[0] == len(idx)  # all distinct
    # kept particles carry the projected encoder output, not a null token
    kept = b.mask & ~dropped
    R = model.encoder.num_registers
    assert torch.allclose(dec_in[kept], model.enc_to_dec(h)[:, R:][kept])


def test_v2_encoder_never_sees_dropped_particles():
    model = tiny_v2().eval()
    b = fake_batch(F=7)
    dropped = random_masking(b.mask, 0.4, torch.Generator().manual_seed(8))
    kept = b.mask & ~dropped
    h1, _ = model.encoder.encode(b.x, b.pid, kept)
    x2 = b.x + 9.0 * dropped.unsqueeze(-1)
    h2, _ = model.encoder.encode(x2, b.pid, kept)
    assert torch.allclose(h1, h2, atol=1e-6)


@pytest.mark.parametrize("task", ["regression", "cfm"])
def test_v2_loss_finite_and_backprop_reaches_null_tokens(task):
    model = tiny_v2(task)
    b = fake_batch(F=7)
    loss, metrics = model(b)
    assert math.isfinite(loss.item()) and "id_acc" in metrics
    loss.backward()
    assert model.null_tokens.grad is not None and model.null_tokens.grad.abs().sum() > 0


def structured_batch(B=16, N=12, F=3, seed=0):
    """Jets whose particles share a per-jet offset: a masked particle is predictable from the others."""
    b = fake_batch(B, N, F, seed)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(B, 1, F, generator=g) + 0.1 * torch.randn(B, N, F, generator=g)
    return JetBatch(x * b.mask[..., None], b.mask, b.p4, b.jet, b.label, b.pid)


def _fixed_loss(model, batch, fraction):
    model.eval()
    chosen = random_masking(batch.mask, fraction, torch.Generator().manual_seed(11))
    with torch.no_grad():
        torch.manual_seed(12)  # CFM noise
        loss, metrics = model(batch, chosen)
    model.train()
    return float(metrics.get("task_loss", loss))  # MPMv2: the reconstruction task (random IDs are unpredictable)


def _train(model, batch, steps=60, lr=3e-3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_pretraining_loss_falls(version):
    torch.manual_seed(1)
    if version == "v1":
        model, batch, frac = tiny_v1(), structured_batch(), 0.3
        model.backbone.norm.update(batch.x, batch.mask)
    else:
        model, batch, frac = tiny_v2(), structured_batch(F=7), 0.4
    before = _fixed_loss(model, batch, frac)
    _train(model, batch, steps=60 if version == "v1" else 100)  # v2: no decoder final LN, slower start
    after = _fixed_loss(model, batch, frac)
    assert after < 0.6 * before, (before, after)


def test_v2_batch_without_droppable_particles_gives_zero_loss():
    b = fake_batch(F=7)
    small = b.mask & (torch.arange(b.mask.shape[1])[None] < 2)  # two particles per jet: floor(0.4 * 2) = 0
    b2 = JetBatch(b.x, small, b.p4, b.jet, b.label, b.pid)
    loss, _ = tiny_v2()(b2)
    assert loss.item() == 0.0
