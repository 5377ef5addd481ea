"""HEP-JEPA model: EMA teacher, loss, information flow to the predictor, backbone."""
import torch

from common.training.ema import momentum_schedule

from hepjepa.model import HEPJEPA, HEPJEPABackbone
from tests.test_hepjepa_tokenizer import fake_jets

TINY = dict(dim=16, depth=2, num_heads=2, mlp_ratio=2.0, dropout=0.0, num_registers=2, physics_bias=True,
            pair_hidden=[8], num_patches=6, group_size=4, patch_coverage=None, pointnet_hidden=8, fps_random_start=True,
            pred_dim=8, pred_depth=1, pred_heads=2, loss_beta=1.0, pos_every_layer=True)
MASKING = dict(strategy="contiguous", num_targets=2, target_scale=[0.15, 0.2], context_scale=[0.85, 1.0], per_jet=True)


def tiny_model(**kw):
    torch.manual_seed(0)
    return HEPJEPA({**TINY, **kw}, 7, (5, 6), MASKING)


def test_teacher_gets_no_gradient_and_moves_by_the_scheduled_momentum():
    model = tiny_model()
    x, mask, p4 = fake_jets([24, 12, 5, 2, 1])  # small jets included
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(x, mask, p4)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(not p.requires_grad and p.grad is None for p in model.target_encoder.parameters())
    assert all(p.grad is not None for p in model.context_encoder.parameters())
    opt.step()
    before = [p.clone() for p in model.target_encoder.parameters()]
    online = [p.detach().clone() for p in model.context_encoder.parameters()]
    m = momentum_schedule(0.9, 1.0, 10)(3)
    assert abs(m - 0.93) < 1e-9
    model.update_target(m)
    for t0, o, t1 in zip(before, online, model.target_encoder.parameters()):
        assert torch.allclose(t1, m * t0 + (1 - m) * o, atol=1e-6)
    assert any(not torch.equal(t0, t1) for t0, t1 in zip(before, model.target_encoder.parameters()))
    assert not model.target_encoder.training and model.training


def test_loss_falls():
    model = tiny_model()
    x, mask, p4 = fake_jets([24, 20, 16, 12, 9, 6] * 3, seed=5)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(30):
        torch.manual_seed(step)
        out = model(x, mask, p4)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.update_target(0.99)
        losses.append(float(out["loss"].detach()))
    assert torch.isfinite(torch.tensor(losses)).all()
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert out["target_std"] > 0 and out["pred_std"] >= 0


def test_predictor_sees_only_context_and_mask_tokens():
    """Changing particles that belong only to target patches changes the targets but neither the context encoding
    nor the predictor input and output."""
    model = tiny_model(num_patches=8, group_size=3).eval()
    x, mask, p4 = fake_jets([24, 20], seed=7)
    p = model.tokenize(x, mask, p4)
    T = p.mask.shape[1]
    context = torch.zeros(2, T, dtype=torch.bool)
    context[:, :3] = True
    targets = torch.zeros(1, 2, T, dtype=torch.bool)
    targets[0, :, 5:7] = True
    in_ctx = torch.zeros_like(mask)
    in_tgt = torch.zeros_like(mask)
    for b in range(2):
        for g in range(T):
            members = p.groups[b, g][p.group_mask[b, g]]
            if context[b, g]:
                in_ctx[b, members] = True
            if targets[0, b, g]:
                in_tgt[b, members] = True
    only_tgt = in_tgt & ~in_ctx
    assert only_tgt.any()
    seen = {}

    def grab(name):
        def hook(mod, args, out):
            seen[name] = ([a.clone() for a in args if torch.is_tensor(a)], out.clone())
        return hook

    h1 = model.predictor.register_forward_hook(grab("pred"))
    h2 = model.context_encoder.register_forward_hook(grab("ctx"))
    with torch.no_grad():
        out1 = model(x, mask, p4, masks=(context, targets))
        first = dict(seen)
        x2, p42 = x.clone(), p4.clone()
        x2[..., :5] = torch.where(only_tgt[..., None], x2[..., :5] + 1.0, x2[..., :5])  # pT / E features only
        p42 = torch.where(only_tgt[..., None], p42 * 3.0, p42)
        out2 = model(x2, mask, p42, masks=(context, targets))
    h1.remove()
    h2.remove()
    for name in ("ctx", "pred"):
        for a, b in zip(first[name][0], seen[name][0]):
            assert torch.equal(a, b), f"{name} input changed"
        assert torch.equal(first[name][1], seen[name][1]), f"{name} output changed"
    assert float(out1["loss"]) != float(out2["loss"]), "targets did not change: the test cannot fail"


def test_backbone_loads_pretrained_and_ignores_padding():
    model = tiny_model(num_registers=0, physics_bias=False)
    bb = HEPJEPABackbone({**TINY, "num_registers": 0, "physics_bias": False}, 7, (5, 6))
    bb.load_pretrained(model.state_dict())
    for k, v in bb.context_encoder.state_dict().items():
        assert torch.equal(v, model.context_encoder.state_dict()[k])
    bb.load_pretrained(model.state_dict(), use="target")
    assert bb.dim == 16
    bb.eval()
    x, mask, p4 = fake_jets([24, 3], seed=2)
    from common.data.batch import JetBatch
    batch = JetBatch(x, mask, p4, torch.zeros(2, 6), torch.zeros(2, dtype=torch.long))
    h, hm = bb(batch)
    assert h.shape == (2, 6, 16) and hm.sum(1).tolist() == [6, 3]
    x2 = torch.where(mask[..., None], x, torch.randn_like(x))
    h2, _ = bb(JetBatch(x2, mask, p4, batch.jet, batch.label))
    assert torch.allclose(h, h2, atol=1e-6)


def _scaled_batch(s, counts=(24, 18, 12, 9, 6, 30)):
    from common.data.batch import JetBatch

    x, mask, p4 = fake_jets(list(counts), N=32, seed=11)
    b = len(counts)
    return JetBatch(x, mask, p4 * s, torch.zeros(b, 6), torch.zeros(b, dtype=torch.long))


def test_backbone_is_invariant_to_the_jets_scale_with_pair_scale_on():
    """Scaling every four-momentum of a jet by s (its relative inputs x unchanged) moves ln kT by ln s and ln m^2 by
    2 ln s of raw four-momenta; with model.pair_scale = jet_pt (the HEP-JEPA default) the backbone output does not
    move, at random init and after a few pretraining steps; with pair_scale = none (the former behaviour) it does."""
    base, scaled = _scaled_batch(1.0), _scaled_batch(2.0)   # a power of 2: every rounding scales exactly
    # any other factor changes the rounding: on a jet of 6 particles two patches can hold the same members, summed in
    # another order, so their Delta is 0 or ~1e-7 and ln Delta jumps (with or without the switch); large jets only
    big, odd = _scaled_batch(1.0, (24, 18, 30, 28)), _scaled_batch(3.7, (24, 18, 30, 28))
    for how, invariant in (("jet_pt", True), ("jet_e", True), ("none", False)):
        torch.manual_seed(0)
        net = HEPJEPABackbone({**TINY, "pair_scale": how}, 7, (5, 6)).eval()
        with torch.no_grad():
            h0, m0 = net(base)
            h2, m2 = net(scaled)
            h3, hb = net(odd)[0], net(big)[0]
        assert torch.equal(m0, m2)
        if invariant:
            assert torch.allclose(h0, h2, atol=1e-6, rtol=0), (how, (h0 - h2).abs().max())
            assert torch.allclose(hb, h3, atol=1e-4, rtol=1e-4), (how, (hb - h3).abs().max())
        else:
            assert (h0 - h2).abs().max() > 1e-3, how
    # after a few pretraining steps (weights and the pair embedding's BatchNorm statistics moved), loaded downstream
    for how, invariant in (("jet_pt", True), ("none", False)):
        model = tiny_model(pair_scale=how)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        x, mask, p4 = fake_jets([24, 20, 16, 12, 9, 6] * 2, seed=5)
        for step in range(5):
            torch.manual_seed(step)
            out = model(x, mask, p4 * (1.0 + step))  # jets at several scales
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            model.update_target(0.99)
        net = HEPJEPABackbone({**TINY, "pair_scale": how}, 7, (5, 6))
        net.load_pretrained(model.state_dict())
        net.eval()
        bn = net.context_encoder.pair_embed.input_bn
        assert int(bn.num_batches_tracked) > 0 and bn.running_mean.abs().max() > 1e-3  # statistics moved
        with torch.no_grad():
            d = (net(base)[0] - net(scaled)[0]).abs().max()
        assert (d < 1e-5) if invariant else (d > 1e-3), (how, d)


def test_pair_scale_is_checked_and_the_configs_default_to_jet_pt():
    import pytest

    from common.training.config import load_config
    with pytest.raises(ValueError, match="pair_scale"):
        HEPJEPABackbone({**TINY, "pair_scale": "jet_mass"}, 7, (5, 6))
    for profile in ("", "mini", "smoke"):
        assert load_config(f"hepjepa/configs/{profile}/pretrain.yaml".replace("//", "/"))["model"]["pair_scale"] == \
            "jet_pt"
