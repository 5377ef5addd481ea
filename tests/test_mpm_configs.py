"""Every MPM config loads strictly (common.training.config) and its model/step runs once at a shrunken size."""
from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch

from common.data.batch import JetBatch
from common.training.checkpoint import save_checkpoint
from common.training.classifier import build_classifier
from common.training.config import load_config
from common.training.distributed import Dist
from common.training.finetune_config import finetune_settings

from mpm.build import build_model
from mpm.loop import train as fit
from mpm.vqvae import KMeansTokenizer, VQVAETraining, build_vqvae

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

ALL = sorted(glob.glob("mpm/configs/**/*.yaml", recursive=True))
PAPER = sorted(glob.glob("mpm/configs/*.yaml"))
N = 10
SHRINK = {
    "mpmv1": ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.embed_hidden=16",
              "model.head_hidden=16"],
    "mpmv2": ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.num_registers=2",
              "model.decoder.dim=8", "model.decoder.depth=1", "model.decoder.num_heads=2", "model.decoder.ff_hidden=8"],
    "tokenizer": ["vqvae.dim=16", "vqvae.depth=1", "vqvae.num_heads=2", "vqvae.ff_hidden=16", "vqvae.num_codes=16",
                  "kmeans.n_clusters=8", "kmeans.n_iter=3"],
}
TRAIN = ["train.steps=1", "train.batch_size=4", "train.log_every=1", "train.ckpt_every=1", "device=cpu"]


def batch(F, B=4, pid=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(N)[None] < torch.tensor([N, 7, 5, 3])[:B, None]
    x = torch.randn(B, N, F, generator=g) * mask[..., None]
    return JetBatch(x, mask, torch.zeros(B, N, 4), torch.zeros(B, 6), torch.zeros(B, dtype=torch.long),
                    torch.randint(0, 8, (B, N), generator=g) * mask if pid else None)


def test_every_config_loads():
    assert len(PAPER) >= 20 and len(ALL) > 2 * len(PAPER) - 5
    for path in ALL:
        cfg = load_config(path)
        assert cfg["method"] in ("mpmv1", "mpmv2", "tokenizer", "finetune"), path
        if cfg["method"] == "finetune":
            finetune_settings(cfg)  # the harness accepts the section
            if "/smoke/" in path or "/mini/" in path:
                assert Path(cfg["pretrained"]["config"]).is_file(), path


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Tiny tokeniser files standing in for mpm.train_tokenizer runs: v1/v2 VQ-VAE and k-means."""
    d = tmp_path_factory.mktemp("tok")
    out = {}
    for name, cfg_path, F in (("v1", "mpm/configs/tokenizer_v1.yaml", 3), ("v2", "mpm/configs/tokenizer_v2.yaml", 7)):
        cfg = load_config(cfg_path, SHRINK["tokenizer"])
        vq = build_vqvae(cfg)
        VQVAETraining(vq).train()(batch(F))
        save_checkpoint(d / f"vq_{name}.pt", {"kind": "vqvae", "config": cfg, "state": vq.state_dict()})
        km = KMeansTokenizer(torch.randn(8, F))
        save_checkpoint(d / f"km_{name}.pt", {"kind": "kmeans", "config": {}, "state": {"centroids": km.centroids,
                                                                                        "n_clusters": 8}})
        out[f"vq_{name}"], out[f"km_{name}"] = str(d / f"vq_{name}.pt"), str(d / f"km_{name}.pt")
    return out


def _tokenizer_overrides(cfg, toks):
    v = "v1" if cfg["method"] == "mpmv1" else "v2"
    kind = cfg["model"]["target"] if v == "v1" else cfg["model"]["task"]
    over = []
    if kind == "kmeans":
        over.append(f"tokenizer.checkpoint={toks['km_' + v]}")
    elif kind == "vqvae":
        over.append(f"tokenizer.checkpoint={toks['vq_' + v]}")
    if v == "v1" and cfg["model"]["inputs"] == "vqvae_quantised":
        over.append(f"tokenizer.input_checkpoint={toks['vq_v1']}")
    return over


@pytest.mark.parametrize("path", [p for p in PAPER if load_config(p)["method"] in ("mpmv1", "mpmv2")])
def test_pretraining_config_runs_one_step(path, tokenizers, tmp_path):
    cfg = load_config(path)
    over = SHRINK[cfg["method"]] + TRAIN + [f"data.num_particles={N}"] + _tokenizer_overrides(cfg, tokenizers)
    cfg = load_config(path, over)
    torch.manual_seed(0)
    model = build_model(cfg)
    F = 3 if cfg["method"] == "mpmv1" else 7
    summary = fit(cfg, model, tmp_path, Dist(), loader=[batch(F, pid=True)])
    assert summary["steps"] == 1 and summary["first_loss"] > 0
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "done.json").is_file()


@pytest.mark.parametrize("path", [p for p in PAPER if load_config(p)["method"] == "tokenizer"])
def test_tokenizer_config_builds_and_steps(path):
    cfg = load_config(path, SHRINK["tokenizer"])
    F = 3 if cfg["data"]["features"] == "mpmv1" else 7
    if cfg["tokenizer"]["kind"] == "vqvae":
        model = VQVAETraining(build_vqvae(cfg)).train()
        loss, metrics = model(batch(F))
        loss.backward()
        assert torch.isfinite(loss) and 0 < float(metrics["utilisation"]) <= 1
    else:
        from common.blocks.kmeans import KMeans
        km = KMeans(cfg["kmeans"]["n_clusters"], n_iter=cfg["kmeans"]["n_iter"]).fit(torch.randn(50, F))
        assert KMeansTokenizer.from_kmeans(km).num_codes == cfg["kmeans"]["n_clusters"]


@pytest.mark.parametrize("path", [p for p in PAPER if load_config(p)["method"] == "finetune"
                                  and load_config(p)["finetune"]["head"]["kind"] not in ("track_mlp", "edge_mlp")])
def test_finetune_config_builds_classifier_and_steps(path):  # per-track heads: tests/test_btag_tasks.py
    from mpm.build import backbone_fns
    cfg = load_config(path)
    pm = "mpmv1" if cfg["data"]["features"] == "mpmv1" else "mpmv2"
    over = [f"data.num_particles={N}", f"pretrained.overrides={SHRINK[pm] + [f'data.num_particles={N}']}"]
    cfg = load_config(path, over)
    fc = finetune_settings({**cfg, "finetune": {**cfg["finetune"], "mode": "scratch"}})
    build, _ = backbone_fns(cfg)
    n_classes = len(cfg["data"].get("classes") or range(10))  # BTag configs: no data.classes
    clf = build_classifier(fc, build, None, n_classes)
    logits = clf(batch(3 if pm == "mpmv1" else 7, pid=True))
    assert logits.shape == (4, n_classes)
    torch.nn.functional.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).backward()


@pytest.mark.parametrize("path", [p for p in PAPER if Path(p).name.startswith("mpmv2_")])
def test_mpmv2_task_configs_have_mini_and_smoke_twins_with_the_same_head(path):
    """mini/ and smoke/ shrink the backbone and the steps only: the task head and its options are the paper's."""
    paper = load_config(path)
    for profile in ("mini", "smoke"):
        twin = load_config(str(Path("mpm/configs") / profile / Path(path).name))
        for key in ("task", "task_cfg", "final_norm", "mask_fraction"):
            assert twin["model"][key] == paper["model"][key], (profile, path, key)


def test_cnf_config_builds_the_paper_flow():
    from mpm.heads import CNFTask
    cfg = load_config("mpm/configs/mpmv2_cnf.yaml", SHRINK["mpmv2"])
    task = build_model(cfg).task
    assert isinstance(task, CNFTask) and cfg["model"]["final_norm"] is True
    flow = task.flow
    assert len(flow.layers) == 6 and flow.dim == 7 and task.context.out_features == 128
    assert all(layer.bins == 8 and layer.tail_bound == 4.0 for layer in flow.layers)
    assert task.ip == slice(3, 7) and task.ip_noise == 0.05
