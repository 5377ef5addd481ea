"""HEP-JEPA without the jet-kinematics shortcut: relative inputs, per-jet target normalisation, the fixed sin-cos
position, the shortcut monitors, the online probe, the random baseline's statistics and the early-stopping rule that
fine-tuned and scratch share."""
from pathlib import Path

import numpy as np
import pytest
import torch

from common.data.features import FEATURE_SETS, RawJets, deta_dphi_partstyle, jet_from_constituents
from common.training.config import load_config
from common.training.finetune_config import finetune_settings

from hepjepa.model import HEPJEPA, HEPJEPABackbone
from hepjepa.monitors import OnlineProbe, between_jet_share, effective_rank, position_basis, position_r2
from hepjepa.tokenizer import SinCosPosition
from tests.test_hepjepa_model import MASKING, TINY
from tests.test_hepjepa_tokenizer import fake_jets


def make_jets(n_jets=1500, n=16, seed=0, scale=None):
    """Jets whose internal structure is drawn independently of their pT and eta (massless constituents)."""
    rng = np.random.default_rng(seed)
    pt_j = np.exp(rng.uniform(np.log(100), np.log(1000), n_jets)) if scale is None else scale
    eta_j, phi_j = rng.uniform(-2, 2, n_jets), rng.uniform(-np.pi, np.pi, n_jets)
    z = rng.dirichlet(np.ones(n), n_jets)
    z = -np.sort(-z, 1)
    deta, dphi = rng.normal(0, 0.1, (n_jets, n)), rng.normal(0, 0.1, (n_jets, n))
    pt, eta, phi = z * np.atleast_1d(pt_j)[:, None], eta_j[:, None] + deta, phi_j[:, None] + dphi
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
    return p4, eta_j


def raw_jets(p4):
    mask = np.ones(p4.shape[:2], bool)
    jet = jet_from_constituents(p4, mask)
    de, dp = deta_dphi_partstyle(p4, mask, jet)
    return RawJets(p4=p4.astype(np.float32), mask=mask, part={"deta": de, "dphi": dp}, jet=jet,
                   label=np.zeros(len(p4), np.int64))


def test_relative_inputs_carry_no_jet_scale():
    p4, _ = make_jets(50)
    rel, absolute = FEATURE_SETS["hepjepa_rel"], FEATURE_SETS["hepjepa"]
    for c in (0.1, 7.0):
        a, b = rel.compute(raw_jets(p4)), rel.compute(raw_jets(p4 * c))
        assert np.allclose(a["x"], b["x"], atol=1e-4)
        # the absolute set moves with the scale (the test can see a leak)
        assert not np.allclose(absolute.compute(raw_jets(p4))["x"], absolute.compute(raw_jets(p4 * c))["x"],
                               atol=1e-2)


@pytest.mark.parametrize("target", ["log_pt", "abs_eta"])
def test_relative_inputs_do_not_predict_jet_pt_or_eta(target):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    p4, eta_j = make_jets(2000)
    raw = raw_jets(p4)
    y_val = np.log(raw.jet[:, 0]) if target == "log_pt" else np.abs(eta_j)
    y = (y_val > np.median(y_val)).astype(int)
    acc = {}
    for name in ("hepjepa_rel", "hepjepa"):
        x = FEATURE_SETS[name].compute(raw)["x"].reshape(len(y), -1)
        x = StandardScaler().fit_transform(x)
        clf = LogisticRegression(max_iter=2000).fit(x[:1000], y[:1000])
        acc[name] = clf.score(x[1000:], y[1000:])
    assert acc["hepjepa"] > 0.8          # the absolute inputs give it away
    assert acc["hepjepa_rel"] < 0.58     # chance is 0.5 (1000 test jets: 1 sigma = 0.016)


def test_between_jet_share_on_constructed_targets():
    torch.manual_seed(0)
    mask = torch.ones(32, 10, dtype=torch.bool)
    mask[:, 7:] = False
    per_jet = torch.randn(32, 1, 8).expand(32, 10, 8).clone()
    per_jet[~mask] = 99.0                                     # padding never counts
    assert between_jet_share(per_jet, mask) == pytest.approx(1.0, abs=1e-6)
    tokens = torch.randn(32, 10, 8)
    centred = tokens - (tokens * mask[..., None]).sum(1, keepdim=True) / 7
    assert between_jet_share(centred, mask) < 1e-6
    assert 0.0 < between_jet_share(tokens, mask) < 0.3         # independent tokens: ~1/7 between jets


def test_position_r2_on_constructed_targets():
    torch.manual_seed(0)
    centres = torch.rand(16, 12, 2) - 0.5
    mask = torch.rand(16, 12) > 0.2
    w = torch.randn(10, 6)
    determined = position_basis(centres) @ w
    assert position_r2(determined, centres, mask, ridge=1e-8) > 0.999
    assert position_r2(torch.randn(16, 12, 6), centres, mask) < 0.15


def test_effective_rank():
    torch.manual_seed(0)
    assert effective_rank(torch.randn(4000, 16)) > 15.0
    assert effective_rank(torch.randn(500, 1) @ torch.randn(1, 16)) < 1.01


def test_instance_target_norm_removes_what_a_jet_shares():
    x, mask, p4 = fake_jets([24, 12, 9, 30])
    for norm, low in (("layer", False), ("instance", True)):
        torch.manual_seed(0)
        model = HEPJEPA({**TINY, "target_norm": norm}, 7, (5, 6), MASKING).eval()   # as the monitor runs it
        patches = model.tokenize(x, mask, p4)
        h, raw = model.targets(patches, model.pos(patches.centres), with_raw=True)
        share = between_jet_share(h, patches.mask)
        assert (share < 1e-6) == low
        # the encoder-side monitor sees the teacher before the normalisation: not zero by construction
        assert between_jet_share(raw, patches.mask) > 1e-3
        mon = model.monitor(x, mask, p4)
        assert mon["between_jet_share_encoder"] == pytest.approx(between_jet_share(raw, patches.mask), rel=1e-5)
        assert torch.equal(h[~patches.mask], torch.zeros_like(h[~patches.mask]))


def test_sincos_position_is_fixed_and_once_at_the_input():
    pe = SinCosPosition(16)
    c = torch.tensor([[0.0, 0.0], [0.1, -0.2]])
    out = pe(c)
    assert out.shape == (2, 16) and not list(pe.parameters())
    assert torch.allclose(out[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    assert torch.allclose(out[1, 0], torch.sin(torch.tensor(0.1 / 0.02)))
    model = HEPJEPA({**TINY, "pos_embed": "sincos", "pos_every_layer": False}, 7, (5, 6), MASKING)
    assert isinstance(model.pos, SinCosPosition) and isinstance(model.predictor.pos, SinCosPosition)
    assert torch.isfinite(model(*fake_jets([24, 12, 9]))["loss"])
    with pytest.raises(ValueError, match="pos_every_layer"):
        HEPJEPA({**TINY, "pos_embed": "sincos", "pos_every_layer": True}, 7, (5, 6), MASKING)


def test_monitor_and_online_probe_never_feed_the_encoder():
    torch.manual_seed(0)
    model = HEPJEPA(TINY, 7, (5, 6), MASKING)
    x, mask, p4 = fake_jets([24, 12, 9, 30, 18, 7])
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mon = model.monitor(x, mask, p4)
    assert set(mon) == {"between_jet_share", "between_jet_share_encoder", "position_r2", "effective_rank", "pooled"}
    assert model.training and not mon["pooled"].requires_grad
    probe = OnlineProbe(mon["pooled"].shape[1], 2, lr=0.05)
    w = probe.head[1].weight.clone()
    accs = [probe.step(mon["pooled"], labels) for _ in range(100)]
    assert not torch.equal(w, probe.head[1].weight) and accs[-1] == 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # BN statistics included
    assert all(p.grad is None for p in model.parameters())


def test_random_baseline_gets_its_statistics_from_data():
    x, mask, p4 = fake_jets([24, 12, 9, 30, 18, 7, 20, 15])
    arrays = {"x": x.numpy(), "mask": mask.numpy(), "p4": p4.numpy(), "jet": np.zeros((8, 6), np.float32),
              "label": np.zeros(8, np.int64)}

    def build():
        return HEPJEPABackbone(TINY, 7, (5, 6))

    from common.data.array_loader import ArrayLoader
    from common.training.probe import random_init
    net = random_init(build, 0, ArrayLoader(arrays, 4, shuffle=False))      # 8 jets: 2 batches
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not net.training
    assert all(int(m.num_batches_tracked) == 2 for m in bns)
    assert any(not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)
    torch.manual_seed(0)
    fresh = build()   # same seed, same weights: only the statistics differ
    assert all(torch.equal(p, q) for p, q in zip(fresh.parameters(), net.parameters()))


@pytest.mark.parametrize("profile", ["", "mini", "smoke"])
def test_finetuned_and_scratch_stop_by_the_same_rule(profile):
    """Every HEP-JEPA few-shot config: fine-tuned, frozen and scratch share the early-stopping rule and cap at every
    label fraction (the per_n rules included), so no claim is decided by which side stopped earlier."""
    keys = ("steps", "max_epochs", "patience", "min_delta", "val_every", "val_every_epochs", "select", "max_val_jets")
    cfg = load_config(Path("hepjepa/configs", profile, "finetune_jetclass.yaml"))
    assert cfg["finetune"]["patience"] is not None
    for n_total in (1, 10, 100, 1000, 10 ** 6, None):
        rules = []
        for mode in cfg["sweep"]["modes"]:
            fc = finetune_settings({**cfg, "finetune": {**cfg["finetune"], "mode": mode}}, n_total)
            rules.append(tuple(fc[k] for k in keys))
        assert len(set(rules)) == 1, (profile, n_total, rules)
