"""Train the tokeniser whose codes are the MPM targets (arXiv:2401.13537; arXiv:2409.12589), then freeze it.

    python -m mpm.train_tokenizer --config mpm/configs/tokenizer_v1.yaml --out runs/mpm/tokenizer_v1 [a.b=value ...]

tokenizer.kind vqvae: a VQ-VAE (mpm/vqvae.py) trained with the MPM loop (mpm/loop.py).
tokenizer.kind kmeans: common.blocks.kmeans.KMeans fitted once on per-particle features of `kmeans.fit_jets` training jets
(MPMv1: raw features, 512 centroids; MPMv2: quantile-normalised x_c, 16384 centroids).
Writes `tokenizer.pt` ({kind, config, state}) next to the usual config.yaml / checkpoint.pt / log.jsonl / done.json.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.blocks.kmeans import KMeans
from common.cli import cli
from common.data.datasets import make_loader
from common.training.checkpoint import save_checkpoint
from common.training.distributed import cleanup, init_distributed
from common.training.train_utils import mark_done, seed_everything, start_run

from mpm.loop import train
from mpm.vqvae import KMeansTokenizer, VQVAETraining, build_vqvae


def fit_kmeans(cfg: dict, out: Path, dist) -> None:
    """k-means on the per-particle features of kmeans.fit_jets training jets, written as tokenizer.pt."""
    k = cfg["kmeans"]
    loader = make_loader(cfg["data"], k["split"], batch_size=min(1000, k["fit_jets"]), shuffle=True, seed=k["seed"],
                         max_jets=k["fit_jets"])
    xs, n = [], 0
    for batch in loader:
        xs.append(batch.x[batch.mask].float())
        n += len(batch)
        if n >= k["fit_jets"]:
            break
    x = torch.cat(xs)
    if x.shape[0] > k["max_points"]:
        g = torch.Generator().manual_seed(k["seed"])
        x = x[torch.randperm(x.shape[0], generator=g)[: k["max_points"]]]
    x = x.to(dist.device)  # 16384 centroids on millions of particles: use the GPU when there is one
    km = KMeans(k["n_clusters"], n_iter=k["n_iter"], seed=k["seed"]).fit(x)
    tok = KMeansTokenizer.from_kmeans(km).to(dist.device)
    real = torch.ones(1, x.shape[0], dtype=torch.bool, device=x.device)
    counts = torch.bincount(tok.tokenize(x[None], real)[0], minlength=k["n_clusters"])
    km.to("cpu")
    info = {"points": int(x.shape[0]), "inertia": km.inertia, "used_codes": int((counts > 0).sum())}
    if dist.is_main:
        save_checkpoint(out / "tokenizer.pt", {"kind": "kmeans", "config": cfg, "state": km.state_dict()})
        mark_done(out, info)
    print(f"k-means tokeniser: {info}")


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, config_path = run
    kind = cfg["tokenizer"]["kind"]
    if kind not in ("vqvae", "kmeans"):
        raise ValueError(f"{config_path}: tokenizer.kind must be vqvae or kmeans, got {kind!r}")
    dist = init_distributed(cfg["device"])
    try:
        seed_everything(cfg["seed"])
        if kind == "kmeans":
            fit_kmeans(cfg, out, dist)
            return
        vqvae = build_vqvae(cfg)
        summary = train(cfg, VQVAETraining(vqvae), out, dist, desc="vqvae", mark=False)
        if dist.is_main:
            vqvae.norm.freeze() if vqvae.norm is not None else None
            save_checkpoint(out / "tokenizer.pt", {"kind": "vqvae", "config": cfg, "state": vqvae.state_dict()})
            mark_done(out, summary)
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
