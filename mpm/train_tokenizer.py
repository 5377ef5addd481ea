"""Train the tokeniser whose codes are the MPM targets (arXiv:2401.13537; arXiv:2409.12589), then freeze it.

    python -m mpm.train_tokenizer --config mpm/configs/tokenizer_v1.yaml --out runs/mpm/tokenizer_v1 [a.b=value ...]

tokenizer.kind vqvae: a VQ-VAE (mpm/vqvae.py) trained with the shared loop of mpm/pretrain.py.
tokenizer.kind kmeans: common.kmeans.KMeans fitted once on per-particle features of `kmeans.fit_jets` training jets
(MPMv1: raw features, 512 centroids; MPMv2: quantile-normalised x_c, 16384 centroids).
Writes `tokenizer.pt` ({kind, config, state}) next to the usual config.yaml / checkpoint.pt / log.jsonl / done.json.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from common.checkpoint import load_checkpoint, save_checkpoint
from common.distributed import cleanup, init_distributed
from common.features import get_feature_set
from common.kmeans import KMeans
from common.train_utils import mark_done, seed_everything, start_run

from mpm.vqvae import VQVAE, KMeansTokenizer


def num_features(data_cfg: dict) -> int:
    return len(get_feature_set(data_cfg["features"]).names)


def build_vqvae(cfg: dict) -> VQVAE:
    v = cfg["vqvae"]
    return VQVAE(num_features(cfg["data"]), dim=v["dim"], depth=v["depth"], num_heads=v["num_heads"],
                 ff_hidden=v["ff_hidden"], num_registers=v["num_registers"], style=v["style"], dropout=v["dropout"],
                 attn_dropout=v["attn_dropout"],
                 num_codes=v["num_codes"], code_dim=v["code_dim"], beta=v["beta"], alpha=v["alpha"],
                 recon_loss=v["recon_loss"], normalise=v["normalise"], norm_max_n=v["norm_max_n"],
                 target_codebook=v["target_codebook"], vq=v["vq"], recon_reduction=v["recon_reduction"],
                 loss_average=v["loss_average"])


class VQVAETraining(nn.Module):
    """forward(batch) -> (loss, metrics), the interface of mpm.pretrain.fit."""

    def __init__(self, vqvae: VQVAE):
        super().__init__()
        self.vqvae = vqvae

    def forward(self, batch):
        return self.vqvae.loss(batch.x, batch.mask)


def load_tokenizer(path, device="cpu") -> nn.Module:
    """Frozen tokeniser (eval mode, no grad) from a tokenizer.pt file or a run directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.pt"
    blob = load_checkpoint(path, map_location="cpu")
    if blob.get("kind") == "vqvae":
        tok = build_vqvae(blob["config"])
        tok.load_state_dict(blob["state"])
    elif blob.get("kind") == "kmeans":
        tok = KMeansTokenizer(blob["state"]["centroids"])
    else:
        raise ValueError(f"{path}: not a tokenizer file (key 'kind' must be vqvae or kmeans, got {blob.get('kind')!r})")
    tok.requires_grad_(False)
    return tok.eval().to(device)


def fit_kmeans(cfg: dict, out: Path, dist) -> None:
    from common.data import make_loader

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
    dist = init_distributed(cfg["train"]["device"])
    seed_everything(cfg["train"]["seed"])
    kind = cfg["tokenizer"]["kind"]
    if kind == "kmeans":
        fit_kmeans(cfg, out, dist)
    elif kind == "vqvae":
        from mpm.pretrain import fit

        vqvae = build_vqvae(cfg)
        summary = fit(cfg, VQVAETraining(vqvae), out, dist, desc="vqvae", mark=False)
        if dist.is_main:
            vqvae.norm.freeze() if vqvae.norm is not None else None
            save_checkpoint(out / "tokenizer.pt", {"kind": "vqvae", "config": cfg, "state": vqvae.state_dict()})
            mark_done(out, summary)
    else:
        raise ValueError(f"{config_path}: tokenizer.kind must be vqvae or kmeans, got {kind!r}")
    cleanup()


if __name__ == "__main__":
    main()
