"""K-means in torch: the particle tokeniser of MPMv1 (512 centroids on raw features) and MPMv2 (16384 centroids on
the quantile-normalised 7-d x_c), and the codebook initialisation of the VQ layer (jetssl, rodem-hep/mpm; vqtorch
kmeans_init).

Lloyd's algorithm with k-means++ (Arthur & Vassilvitskii 2007) or random initialisation, seeded. Distances are computed
in chunks of points, ||x||^2 - 2 x.c + ||c||^2, so that 16384 centroids on ~1e5 points need only a few MB at a time.
Rough CPU cost (1 thread, 7-d, 1e5 points, 16384 centroids): one Lloyd iteration ~5 s, k-means++ seeding ~30 s;
init="random" (as torchpq, used by MPMv2) skips the seeding cost.
"""
from __future__ import annotations

import torch


def nearest(x: torch.Tensor, c: torch.Tensor, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (M,) long and squared distance (M,) of the nearest centroid, computed in chunks of points.

    The default chunk keeps each (chunk, K) distance block near 1M entries (4 MB, cache-friendly): for a 7-d input the
    matrix product is memory-bound, and small blocks are several times faster than large ones on CPU."""
    K = c.shape[0]
    chunk_size = chunk_size or max(1, (1 << 20) // max(K, 1))
    c_sq = (c * c).sum(-1)
    idx, dist = [], []
    for s in range(0, x.shape[0], chunk_size):
        xs = x[s:s + chunk_size]
        d, i = torch.addmm(c_sq, xs, c.T, alpha=-2.0).min(dim=1)  # ||c||^2 - 2 x.c; ||x||^2 added below
        idx.append(i)
        dist.append((d + (xs * xs).sum(-1)).clamp_(min=0.0))
    if not idx:
        return torch.empty(0, dtype=torch.long, device=x.device), torch.empty(0, device=x.device)
    return torch.cat(idx), torch.cat(dist)


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to D(x)^2 (cost O(k M D))."""
    M = x.shape[0]
    x_sq = (x * x).sum(-1)
    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    j = torch.randint(M, (1,), generator=generator, device=x.device)[0]
    d2 = None
    for i in range(k):
        if i > 0:
            cdf = d2.cumsum(0)
            if cdf[-1] > 0:  # inverse-CDF draw; falls back to uniform when all points coincide with centres
                u = torch.rand(1, generator=generator, device=x.device, dtype=x.dtype) * cdf[-1]
                j = torch.searchsorted(cdf, u).clamp_(max=M - 1)[0]
            else:
                j = torch.randint(M, (1,), generator=generator, device=x.device)[0]
        centres[i] = x[j]
        d_new = (x_sq - 2.0 * (x @ centres[i]) + x_sq[j]).clamp_(min=0.0)
        d2 = d_new if d2 is None else torch.minimum(d2, d_new)
    return centres


class KMeans:
    """KMeans(n_clusters, n_iter=50, seed=0, init="k-means++" | "random", tol=1e-6, chunk_size=None).

    fit(x (M,D)) -> self; predict(x) -> (M,) long; centroids (K,D); state_dict() / load_state_dict(); to(device).
    Empty clusters are re-seeded with the points farthest from their centroid.
    """

    def __init__(self, n_clusters: int, n_iter: int = 50, seed: int = 0, init: str = "k-means++", tol: float = 1e-6,
                 chunk_size: int | None = None, verbose: bool = False):
        if init not in ("k-means++", "random"):
            raise ValueError(f"KMeans init must be 'k-means++' or 'random', got {init!r}")
        self.n_clusters, self.n_iter, self.seed, self.init, self.tol = n_clusters, n_iter, seed, init, tol
        self.chunk_size, self.verbose = chunk_size, verbose
        self.centroids: torch.Tensor | None = None
        self.inertia: float | None = None

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> "KMeans":
        x = torch.as_tensor(x).float()
        if x.ndim != 2:
            raise ValueError(f"KMeans.fit expects (M, D) points, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("KMeans.fit: input contains NaN or inf")
        M, K = x.shape[0], self.n_clusters
        if M < K:
            raise ValueError(f"KMeans.fit: {M} points for {K} clusters; need at least as many points as clusters")
        g = torch.Generator(device=x.device).manual_seed(self.seed)
        if self.init == "k-means++":
            c = kmeans_plusplus(x, K, g)
        else:
            c = x[torch.randperm(M, generator=g, device=x.device)[:K]].clone()
        for it in range(self.n_iter):
            idx, d2 = nearest(x, c, self.chunk_size)
            counts = torch.bincount(idx, minlength=K)
            sums = torch.zeros_like(c).index_add_(0, idx, x)
            new = sums / counts.clamp(min=1)[:, None].to(x.dtype)
            empty = (counts == 0).nonzero().squeeze(1)
            if len(empty):  # re-seed empty clusters with the worst-represented points
                new[empty] = x[d2.topk(len(empty)).indices]
            shift = ((new - c) ** 2).sum(-1).max().item()
            c = new
            if self.verbose:
                print(f"kmeans iter {it}: inertia {d2.sum().item():.4g}, max centroid shift^2 {shift:.3g}")
            if shift <= self.tol and not len(empty):
                break
        self.centroids = c
        self.inertia = nearest(x, c, self.chunk_size)[1].sum().item()
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.centroids is None:
            raise RuntimeError("KMeans.predict called before fit() or load_state_dict()")
        x = torch.as_tensor(x).to(self.centroids)
        shape = x.shape[:-1]
        return nearest(x.reshape(-1, x.shape[-1]), self.centroids, self.chunk_size)[0].reshape(shape)

    def to(self, device) -> "KMeans":
        if self.centroids is not None:
            self.centroids = self.centroids.to(device)
        return self

    def state_dict(self) -> dict:
        return {"n_clusters": self.n_clusters, "n_iter": self.n_iter, "seed": self.seed, "init": self.init,
                "centroids": None if self.centroids is None else self.centroids.cpu()}

    def load_state_dict(self, state: dict) -> "KMeans":
        missing = {"n_clusters", "centroids"} - set(state)
        if missing:
            raise KeyError(f"KMeans.load_state_dict: missing keys {sorted(missing)}")
        self.n_clusters = state["n_clusters"]
        self.n_iter, self.seed = state.get("n_iter", 50), state.get("seed", 0)
        self.init = state.get("init", "k-means++")
        self.centroids = state["centroids"]
        if self.centroids is not None and self.centroids.shape[0] != self.n_clusters:
            raise ValueError(f"KMeans.load_state_dict: {self.centroids.shape[0]} centroids for n_clusters "
                             f"{self.n_clusters}")
        return self
