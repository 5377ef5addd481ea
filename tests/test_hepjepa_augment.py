"""HEP-JEPA physics-inspired augmentations: rotations keep deltaR, soft-particle drop keeps the hardest particles."""
import math

import torch

from common.data.batch import JetBatch
from common.data.features import FEATURE_SETS

from hepjepa.augment import augment
from tests.test_hepjepa_tokenizer import fake_jets

NAMES = FEATURE_SETS["hepjepa"].names


def _batch(counts):
    x, mask, p4 = fake_jets(counts, N=max(counts) + 4)
    ia, ip, ir = NAMES.index("part_deta"), NAMES.index("part_dphi"), NAMES.index("part_deltaR")
    x[..., ir] = torch.where(mask, ((torch.hypot(x[..., ia], x[..., ip]) - 0.2) * 4).clamp(-5, 5), 0.0)
    return JetBatch(x, mask, p4, torch.zeros(len(counts), 6), torch.zeros(len(counts), dtype=torch.long))


def test_rotation_and_reflection_keep_distances():
    torch.manual_seed(0)
    b = _batch([20, 7, 1])
    out = augment(b, NAMES, dict(enabled=True, rotate=True, reflect=True, smear_sigma=0.0, drop_max=0.0))
    ia, ip, ir = NAMES.index("part_deta"), NAMES.index("part_dphi"), NAMES.index("part_deltaR")
    assert not torch.allclose(out.x[..., ia], b.x[..., ia])
    assert torch.allclose(out.x[..., ir], b.x[..., ir], atol=1e-5)
    pts, pts0 = out.x[0, :20, [ia, ip]], b.x[0, :20, [ia, ip]]
    assert torch.allclose(torch.cdist(pts, pts), torch.cdist(pts0, pts0), atol=1e-5)
    assert torch.equal(out.mask, b.mask)
    pt = lambda q: torch.hypot(q[..., 0], q[..., 1])  # noqa: E731
    assert torch.allclose(pt(out.p4), pt(b.p4), rtol=1e-5)  # the four-vectors move at fixed pT (test_hepjepa_fidelity)


def test_soft_drop_removes_only_the_softest_tail():
    torch.manual_seed(1)
    b = _batch([40] * 16)
    out = augment(b, NAMES, dict(enabled=True, rotate=False, reflect=False, smear_sigma=0.0, drop_max=0.5))
    n = out.mask.sum(1)
    assert (n <= 40).all() and (n >= 20).all() and (n < 40).any()
    assert torch.equal(out.mask, torch.arange(44)[None, :] < n[:, None])  # real particles stay first
    assert (out.x[~out.mask] == 0).all() and (out.p4[~out.mask] == 0).all()
    assert torch.equal(out.x[out.mask], b.x[out.mask])


def test_disabled_is_identity():
    b = _batch([5, 3])
    assert augment(b, NAMES, dict(enabled=False)) is b
    assert math.isclose(float(b.x.abs().sum()), float(augment(b, NAMES, {"enabled": False}).x.abs().sum()))
