"""HEP-JEPA particle jet tokeniser: FPS centres, kNN groups, padding safety, small jets, sequencer."""
import torch

from hepjepa.tokenizer import JetTokenizer, farthest_point_sample, knn_groups, sequence_patches


def fake_jets(counts, N=24, F=7, seed=0, pad_value=0.0):
    g = torch.Generator().manual_seed(seed)
    B = len(counts)
    mask = torch.arange(N)[None, :] < torch.tensor(counts)[:, None]
    x = torch.randn(B, N, F, generator=g) * 0.3
    p4 = torch.rand(B, N, 4, generator=g) * 10
    p4[..., 3] = p4[..., :3].norm(dim=-1) + 0.5
    x = torch.where(mask[..., None], x, torch.full_like(x, pad_value))
    p4 = torch.where(mask[..., None], p4, torch.full_like(p4, pad_value))
    return x, mask, p4


def test_centres_and_groups_never_padding_and_small_jets():
    counts = [24, 10, 5, 3, 1, 2]
    x, mask, p4 = fake_jets(counts)  # padded particles sit at (0, 0): right next to the real ones
    tok = JetTokenizer(7, 16, num_patches=6, group_size=4, angle_idx=(5, 6))
    for training in (True, False):
        tok.train(training)
        p = tok(x, mask, p4)
        n = torch.tensor(counts)
        assert p.mask.sum(1).tolist() == torch.clamp(n, max=6).tolist()
        member_real = mask.gather(1, p.groups.flatten(1)).view_as(p.groups)
        assert bool((member_real | ~p.group_mask).all()), "a padded particle is a group member"
        assert p.group_mask.sum(-1)[p.mask].tolist() == torch.clamp(n, max=4).repeat_interleave(p.mask.sum(1)).tolist()
        assert not p.group_mask[~p.mask].any()
        # the valid centres are distinct real particles (coordinates of real particles)
        for b, c in enumerate(counts):
            real = x[b, :c, 5:7]
            for g in range(int(p.mask[b].sum())):
                assert (real - p.centres[b, g]).abs().sum(-1).min() < 1e-6
        assert torch.isfinite(p.tokens).all()
        assert (p.tokens[~p.mask] == 0).all()


def test_padding_values_do_not_change_tokens():
    x, mask, p4 = fake_jets([20, 7, 2], seed=1)
    x2, _, p42 = fake_jets([20, 7, 2], seed=1, pad_value=0.0)
    x2 = torch.where(mask[..., None], x2, torch.randn_like(x2) * 0.01)  # garbage close to the jet axis
    p42 = torch.where(mask[..., None], p42, torch.rand_like(p42) * 100)
    tok = JetTokenizer(7, 16, num_patches=5, group_size=6, angle_idx=(5, 6)).eval()
    a, b = tok(x, mask, p4), tok(x2, mask, p42)
    assert torch.equal(a.groups[a.group_mask], b.groups[b.group_mask])
    assert torch.allclose(a.tokens, b.tokens)
    assert torch.allclose(a.p4, b.p4)


def test_fps_matches_reference():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(1, 15, 2, generator=g)
    mask = torch.ones(1, 15, dtype=torch.bool)
    idx, valid = farthest_point_sample(pts, mask, 5, random_start=False)
    chosen = [0]
    for _ in range(4):
        d = torch.cdist(pts[0], pts[0][chosen]).min(1).values
        chosen.append(int(d.argmax()))
    assert idx[0].tolist() == chosen and valid.all()


def test_knn_are_nearest():
    g = torch.Generator().manual_seed(4)
    pts = torch.randn(1, 12, 2, generator=g)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 9:] = False
    centres = pts[:, :2]
    groups, gm = knn_groups(pts, mask, centres, torch.ones(1, 2, dtype=torch.bool), 4)
    for c in range(2):
        d = (pts[0, :9] - centres[0, c]).norm(dim=-1)
        assert set(groups[0, c].tolist()) == set(d.argsort()[:4].tolist())
    assert gm.all()


def test_sequencer_is_nearest_neighbour_walk():
    centres = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [-1.0, -1.0], [9.0, 9.0]]])
    valid = torch.tensor([[True, True, True, True, False]])
    order = sequence_patches(centres, valid)
    # start at the smallest deta + dphi (-1,-1), then nearest unvisited: (0,0), (1,0), (3,0); invalid slot last
    assert order[0].tolist() == [3, 0, 2, 1, 4]
