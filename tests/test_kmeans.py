"""Torch k-means: recovers separated clusters, seeded, chunked prediction equals brute force, state round trip."""
import pytest
import torch

from common.blocks.kmeans import KMeans, nearest


def _blobs(k=6, n=200, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 20
    labels = torch.arange(k).repeat_interleave(n)
    x = centres[labels] + 0.3 * torch.randn(k * n, d, generator=g)
    return x, labels, centres


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_recovers_separated_clusters(init):
    x, labels, centres = _blobs()
    km = KMeans(6, n_iter=50, seed=1, init=init).fit(x)
    pred = km.predict(x)
    # a one-to-one map between true and found clusters
    pairs = torch.stack([labels, pred], 1).unique(dim=0)
    if init == "k-means++":
        assert len(pairs) == 6 and len(pred.unique()) == 6
        matched = km.centroids[pred[:: 200]]
        assert (matched - centres).abs().max() < 0.2
    else:  # random init may merge two blobs, but it must still be a valid k-means partition
        assert len(pred.unique()) == 6


def test_seeded_and_state_round_trip():
    x, _, _ = _blobs(k=4, n=50)
    a = KMeans(8, seed=3).fit(x)
    b = KMeans(8, seed=3).fit(x)
    torch.testing.assert_close(a.centroids, b.centroids)
    c = KMeans(1).load_state_dict(a.state_dict())
    assert torch.equal(c.predict(x), a.predict(x))


def test_chunked_nearest_equals_brute_force():
    torch.manual_seed(0)
    x, c = torch.randn(1000, 7), torch.randn(300, 7)
    idx, d2 = nearest(x, c, chunk_size=37)
    ref = torch.cdist(x, c).argmin(1)
    assert torch.equal(idx, ref)
    torch.testing.assert_close(d2, ((x - c[ref]) ** 2).sum(-1), rtol=1e-4, atol=1e-4)
    km = KMeans(300, n_iter=2, chunk_size=11).fit(x)
    assert km.predict(x.view(10, 100, 7)).shape == (10, 100)


def test_bad_input():
    with pytest.raises(ValueError, match="clusters"):
        KMeans(10).fit(torch.randn(5, 2))
    with pytest.raises(ValueError, match="NaN"):
        KMeans(2).fit(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))
    with pytest.raises(RuntimeError):
        KMeans(2).predict(torch.randn(3, 2))
