"""HEP-JEPA fidelity: patch overlap (target-in-context fraction), jet-dependent patch size, jets whose targets cover
every patch, positional embedding at every block (Point-JEPA), augmentations that move the four-vectors too."""
import pytest
import torch
import torch.nn.functional as F

from common.blocks.pairwise import pairwise_features
from common.training.config import load_config

from hepjepa.masking import sample_masks
from hepjepa.model import PatchEncoder
from hepjepa.overlap import target_in_context_fraction
from hepjepa.tokenizer import JetTokenizer, patch_size_per_jet
from tests.test_hepjepa_model import tiny_model
from tests.test_hepjepa_tokenizer import fake_jets

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blob_jets(n_jets=64, n_min=30, n_max=80, N=128, seed=0):
    """Jets of n_min..n_max particles in a Gaussian core (sigma 0.1) plus a wide halo (sigma 0.3) in (deta, dphi),
    padded to N: x = (deta, dphi), p4 = massless four-vectors around eta = phi = 0."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(n_min, n_max + 1, (n_jets,), generator=g)
    mask = torch.arange(N)[None, :] < n[:, None]
    width = torch.where(torch.rand(n_jets, N, 1, generator=g) < 0.7, 0.1, 0.3)
    x = torch.randn(n_jets, N, 2, generator=g) * width * mask[..., None]
    pt = torch.rand(n_jets, N, generator=g) * 20 + 1
    px, py, pz = pt * torch.cos(x[..., 1]), pt * torch.sin(x[..., 1]), pt * torch.sinh(x[..., 0])
    p4 = torch.stack([px, py, pz, torch.sqrt(px**2 + py**2 + pz**2)], -1) * mask[..., None]
    return x, mask, p4


def mean_target_in_context(G, K, coverage, draws=4):
    x, mask, p4 = blob_jets()
    tok = JetTokenizer(2, 8, G, K, (0, 1), 8, coverage=coverage).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        p = tok(x, mask, p4)
        f = [target_in_context_fraction(p.groups, p.group_mask, *sample_masks(p.mask, 4, (0.15, 0.2), (0.85, 1.0)),
                                        x.shape[1]) for _ in range(draws)]
    return float(torch.stack(f).mean())


def test_target_in_context_fraction_by_hand():
    # one jet, 6 particles, 3 patches of 2 members: patch 0 = {0, 1}, patch 1 = {1, 2}, patch 2 = {4, 5}
    groups = torch.tensor([[[0, 1], [1, 2], [4, 5]]])
    gmask = torch.ones(1, 3, 2, dtype=torch.bool)
    context = torch.tensor([[True, False, False]])
    targets = torch.tensor([[[False, True, True]]])  # target particles {1, 2, 4, 5}; 1 is also in the context
    assert float(target_in_context_fraction(groups, gmask, context, targets, 6)) == pytest.approx(1 / 4)
    gmask[0, 0, 1] = False  # particle 1 leaves the context patch: no overlap left
    assert float(target_in_context_fraction(groups, gmask, context, targets, 6)) == 0.0


def test_patch_size_follows_the_jet():
    n = torch.tensor([50, 80, 128, 10, 1])
    # ceil(1.5 n / min(n, 16)), capped at 16
    assert patch_size_per_jet(n, 16, 1.5, 16).tolist() == [5, 8, 12, 2, 2]
    assert patch_size_per_jet(n, 16, 1.5, 6).tolist() == [5, 6, 6, 2, 2]
    x, mask, p4 = blob_jets(n_jets=3)
    tok = JetTokenizer(2, 8, 16, 16, (0, 1), 8, coverage=1.5).eval()
    p = tok(x, mask, p4)
    sizes = p.group_mask.sum(-1)  # (B, G) members per patch
    want = patch_size_per_jet(mask.sum(1), 16, 1.5, 16)
    assert (sizes == want[:, None]).all()


def test_default_patching_leaks_far_less_of_the_targets_into_the_context():
    m = load_config("hepjepa/configs/pretrain.yaml")["model"]
    assert m["patch_coverage"] is not None
    new = mean_target_in_context(m["num_patches"], m["group_size"], m["patch_coverage"])
    old = mean_target_in_context(16, 16, None)  # the former default: 16 patches x 16 members
    assert old > 0.8, old  # each particle in ~6 patches: the targets are mostly visible in the context
    assert new < 0.5, new


def test_jets_whose_targets_cover_every_patch_get_no_context_and_no_loss():
    valid = torch.tensor([[True, False, False, False, False, False], [True] * 6])  # a 1-patch and a 6-patch jet
    torch.manual_seed(0)
    ctx, tgt = sample_masks(valid, num_targets=4)
    assert tgt.any(0)[0, 0] and not ctx[0].any(), "a jet whose only patch is a target must get no context token"
    assert ctx[1].any() and not (ctx & tgt.any(0)).any()  # otherwise context and targets never share a token

    model = tiny_model().eval()  # 6 patches per jet
    x, mask, p4 = fake_jets([24, 12, 2])
    ctx = torch.zeros(3, 6, dtype=torch.bool)
    ctx[0, :3] = ctx[1, :2] = True  # jet 2 (2 patches): no context
    tgt = torch.zeros(1, 3, 6, dtype=torch.bool)
    tgt[0, 0, 4:] = tgt[0, 1, 3:5] = tgt[0, 2, :2] = True
    with torch.no_grad():
        full = model(x, mask, p4, masks=(ctx, tgt))
        kept = model(x[:2], mask[:2], p4[:2], masks=(ctx[:2], tgt[:, :2]))
    assert float(full["loss"]) == pytest.approx(float(kept["loss"]), rel=1e-5)
    assert float(full["target_tokens"]) == pytest.approx((2 + 2 + 0) / 3)


@pytest.mark.parametrize("every_layer", [True, False])
def test_positional_embedding_enters_before_every_block(every_layer):
    """Point-JEPA adds pos before each block (x <- x + pos; x <- block(x)); replay that by hand on the encoder."""
    torch.manual_seed(0)
    enc = PatchEncoder(16, 3, 2, 2.0, num_registers=2, pair_hidden=[8], pos_every_layer=every_layer).eval()
    _, mask, p4 = fake_jets([6, 4], N=6)
    x, pos = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    with torch.no_grad():
        got = enc(x, mask, p4, pos)
        e = enc.encoder
        bias = F.pad(enc.pair_embed(pairwise_features(p4, mask), mask), (2, 0, 2, 0))  # registers: zero bias
        m = torch.cat([torch.ones(2, 2, dtype=torch.bool), mask], 1)
        h = torch.cat([e.registers.expand(2, -1, -1), x * mask[..., None]], 1)
        p = torch.cat([torch.zeros(2, 2, 16), pos], 1)
        if not every_layer:
            h = h + p
        for block in e.blocks:
            h = block(h + p if every_layer else h, m, bias)
        want = (e.norm(h) * m[..., None])[:, 2:]
    assert torch.allclose(got, want, atol=1e-5)
    assert load_config("hepjepa/configs/pretrain.yaml")["model"]["pos_every_layer"] is True


def _massless_p4(pt, eta, phi):
    pz = pt * torch.sinh(eta)
    return torch.stack([pt * torch.cos(phi), pt * torch.sin(phi), pz, torch.sqrt(pt**2 + pz**2)], -1)


@pytest.mark.parametrize("aug", [dict(rotate=True, reflect=False, smear_sigma=0.0),
                                 dict(rotate=True, reflect=True, smear_sigma=0.05)])
def test_augmented_four_vectors_follow_the_angles(aug):
    """The pairwise physics-bias inputs are computed from the augmented particles: after a rotation (reflection,
    smearing) of (deta, dphi), the four-vectors give back the new angles, and pairwise_features of the augmented p4
    equal those of massless particles built by hand at the augmented angles."""
    from common.data.batch import JET_FIELDS, JetBatch
    from common.data.features import FEATURE_SETS

    from hepjepa.augment import augment

    names = list(FEATURE_SETS["hepjepa"].names)
    ia, ip = names.index("part_deta"), names.index("part_dphi")
    g = torch.Generator().manual_seed(3)
    B, N = 2, 12
    mask = torch.ones(B, N, dtype=torch.bool)
    jet = torch.zeros(B, len(JET_FIELDS))
    jet[:, JET_FIELDS.index("eta")] = torch.tensor([1.2, -0.8])  # a negative-eta jet: part_deta is sign-flipped
    jet[:, JET_FIELDS.index("phi")] = torch.tensor([0.3, 3.0])
    jet[:, JET_FIELDS.index("energy")] = 1000.0
    sgn = torch.sign(jet[:, 1:2])
    deta, dphi = torch.randn(B, N, generator=g) * 0.2, torch.randn(B, N, generator=g) * 0.2
    pt = torch.rand(B, N, generator=g) * 30 + 1
    p4 = _massless_p4(pt, jet[:, 1:2] + sgn * deta, jet[:, 2:3] + dphi)
    x = torch.zeros(B, N, len(names))
    x[..., ia], x[..., ip] = deta, dphi
    e_col = names.index("part_e_log")
    x[..., e_col] = (torch.log(p4[..., 3]) - 2.0) * 0.7
    torch.manual_seed(0)
    out = augment(JetBatch(x, mask, p4, jet, torch.zeros(B, dtype=torch.long)), names,
                  dict(enabled=True, drop_max=0.0, **aug))
    new_deta, new_dphi = out.x[..., ia], out.x[..., ip]
    assert not torch.allclose(new_deta, deta, atol=1e-3)
    want = _massless_p4(pt, jet[:, 1:2] + sgn * new_deta, jet[:, 2:3] + new_dphi)
    assert torch.allclose(out.p4, want, rtol=1e-4, atol=1e-3)
    off = ~torch.eye(N, dtype=torch.bool)  # i = j: m^2 = 0 of a massless particle, log of rounding noise
    got_pairs = pairwise_features(out.p4, mask)[..., off]
    assert torch.allclose(got_pairs, pairwise_features(want, mask)[..., off], atol=1e-2)  # float32 m^2 of close pairs
    # the pairwise angular distance Delta is the one of the augmented (deta, dphi)
    d_ang = torch.cdist(torch.stack([new_deta, new_dphi], -1), torch.stack([new_deta, new_dphi], -1))
    assert torch.allclose(got_pairs[:, 2], torch.log(d_ang)[:, off], atol=1e-3)
    # log E follows the moved four-vectors (pT fixed, eta changed)
    assert torch.allclose(out.x[..., e_col], ((torch.log(want[..., 3]) - 2.0) * 0.7).clamp(-5, 5), atol=1e-4)
