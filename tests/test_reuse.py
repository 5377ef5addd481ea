"""A pretrained backbone on your own jets (docs/reuse.md, common/training/pretrained.py).

- each method copied out with exactly the docs' command runs its smoke pretraining in a fresh folder (data written
  outside the copy); the checkpoint's preprocessing reproduces the cache's features from the files; after the data
  and its cache are deleted, loading gives bit-identical embeddings; the README snippet runs against the checkpoint
  and its ONNX export gives PyTorch's class probabilities within 1e-4;
- building any model imports neither the dataset readers nor common.results;
- HEP-JEPA's random FPS start is a training augmentation of every arm (the frozen one too) and never of evaluation;
- bad input gives one error naming the key or the file.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _between(path: Path, tag: str) -> str:
    """The fenced code between <!-- tag --> and <!-- /tag --> of a Markdown file, without the fences."""
    m = re.search(rf"<!-- {tag} -->\n```\w*\n(.*?)```\n<!-- /{tag} -->", path.read_text(), re.S)
    assert m, f"{path}: no <!-- {tag} --> code block"
    return m.group(1)


def _run(code: str, cwd, env=None, timeout=240) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JETFM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


# smoke pretraining of each method inside its copy, shrunk to seconds (data outside the copy, argv: root, out)
PRETRAIN = {
    "mpm": """
        from mpm import pretrain
        pretrain.main(["--config", "mpm/configs/smoke/mpmv2_regression.yaml", "--out", f"{out}/run", *d,
                       "train.steps=2", "train.batch_size=8", "model.dim=16", "model.depth=1", "model.num_heads=2",
                       "model.ff_hidden=16"])""",
    "omnijet": """
        from omnijet import pretrain, tokenize_dataset, train_tokenizer
        train_tokenizer.main(["--config", "omnijet/configs/smoke/tokenizer.yaml", "--out", f"{out}/tok", *d,
                              "train.steps=2", "train.batch_size=16"])
        tokenize_dataset.main(["--config", "omnijet/configs/smoke/pretrain.yaml", "--out", f"{out}/tokens", *d,
                               f"tokenizer_dir={out}/tok"])
        pretrain.main(["--config", "omnijet/configs/smoke/pretrain.yaml", "--out", f"{out}/run", *d,
                       f"tokenizer_dir={out}/tok", f"tokens_dir={out}/tokens", "train.steps=2", "train.val_every=2",
                       "train.max_len=17", "train.batch_size=8"])""",
    "hepjepa": """
        from hepjepa import pretrain
        pretrain.main(["--config", "hepjepa/configs/smoke/pretrain.yaml", "--out", f"{out}/run", *d,
                       "train.steps=2", "train.batch_size=8", "monitor.every=0"])""",
}

# in the copy, with the data present: pretrain, check the preprocessing against the cache, embed
BEFORE = """
    import numpy as np
    root, out = r"{root}", r"{out}"
    d = [f"data.root={{root}}", "data.num_particles=16", "device=cpu", "data.train=train/*.root",
         "data.classes=[QCD,Tbqq]"]
    {pretrain}
    from common.data.datasets import load_arrays, resolve_files
    from common.training.config import load_config
    from common.training.pretrained import example_jets, load
    model = load(f"{{out}}/run")
    data = load_config(f"{{out}}/run/config.yaml")["data"]
    cached = load_arrays(data, "test")
    mine = [model.arrays(f) for f, _, _ in resolve_files(data, "test")]
    x, mask = np.concatenate([a["x"] for a in mine]), np.concatenate([a["mask"] for a in mine])
    assert np.array_equal(mask, cached["mask"])
    keep = np.ones(x.shape, bool)
    if "pid" in cached:   # MPMv2: neutral impact parameters are noise (seeded by jet number), the rest is exact
        keep[..., 3:7] = ~np.isin(cached["pid"], (0, 2))[..., None]
    assert np.array_equal(x[keep], cached["x"][keep]), "preprocessing from the checkpoint != the cache's"
    emb = model.embed(example_jets(12))
    np.savez(f"{{out}}/before.npz", **emb)
    jets = example_jets(64, seed=1)
    np.savez(f"{{out}}/my_jets.npz", label=np.arange(64) % 2, **jets)
"""

# in the copy, data and cache deleted: load, embed (bit-identical), the README snippet, its ONNX export
AFTER = """
    import os
    import numpy as np
    import onnxruntime as ort
    from common.training.pretrained import example_jets, load
    out = r"{out}"
    again = load(f"{{out}}/run").embed(example_jets(12))
    before = np.load(f"{{out}}/before.npz")
    for k in ("jet", "tokens", "mask"):
        assert np.array_equal(before[k], again[k]), k
    os.chdir(f"{{out}}/work")
    exec(open(f"{{out}}/snippet.py").read())
    tagger = load("my_tagger")
    jets = dict(np.load("my_jets.npz"))
    a = tagger.arrays(jets)
    session = ort.InferenceSession("my_tagger/tagger.onnx")
    onnx_probs = session.run(None, {{i.name: a[i.name] for i in session.get_inputs()}})[0]
    torch_probs = tagger.predict(jets)
    assert probs.shape == torch_probs.shape == onnx_probs.shape == (64, 2)
    assert np.array_equal(probs, torch_probs)
    diff = float(np.abs(onnx_probs - torch_probs).max())
    assert diff < 1e-4, diff
    if {cli}:   # the command line writes the same export
        from common.training.pretrained import main
        main(["export", "my_tagger", "cli.onnx"])
        session = ort.InferenceSession("cli.onnx")
        cli_probs = session.run(None, {{i.name: a[i.name] for i in session.get_inputs()}})[0]
        assert float(np.abs(cli_probs - torch_probs).max()) < 1e-4
    print("onnx max abs diff", diff)
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mpm", "omnijet", "hepjepa"])
def test_copied_method_pretrains_loads_without_its_data_embeds_and_exports(method, tmp_path):
    from tests.data_factory import write_jetclass

    root, out, copy = tmp_path / "data", tmp_path / "out", tmp_path / "copy"
    for i, split in enumerate(("train", "val", "test")):
        write_jetclass(str(root / split), 48, classes=["QCD", "Tbqq"], seed=i, max_particles=20)
    out.mkdir()
    # the copy: exactly the docs' command, then nothing of the kit but that set
    subprocess.run(["bash", "-c", _between(ROOT / "docs" / "reuse.md", "copy-out")], cwd=ROOT, check=True,
                   env={**os.environ, "METHOD": method, "DEST": str(copy)})
    top = sorted(p.name for p in copy.iterdir())
    assert top == sorted(["common", method]), top
    assert sorted(p.name for p in (copy / "common").iterdir() if p.name != "__pycache__") == \
        ["__init__.py", "atomic.py", "blocks", "cli.py", "data", "training"]
    pretrain = textwrap.indent(textwrap.dedent(PRETRAIN[method]), "    ")
    _run(BEFORE.format(root=root, out=out, pretrain=pretrain.strip()), cwd=copy)
    shutil.rmtree(root)  # the data and its preprocessing cache (<root>/.cache) are gone
    assert not root.exists()
    # the README snippet, run as written, in a folder where its run path leads to this method's checkpoint
    work = out / "work"
    (work / "runs/smoke/mpm/pretrain").mkdir(parents=True)
    (work / "runs/smoke/mpm/pretrain/mpmv2").symlink_to(out / "run")
    shutil.copy(out / "my_jets.npz", work / "my_jets.npz")
    (out / "snippet.py").write_text(_between(ROOT / "README.md", "reuse-snippet"))
    assert _between(ROOT / "README.md", "reuse-snippet") == _between(ROOT / "docs" / "reuse.md", "reuse-snippet")
    _run(AFTER.format(out=out, cli=method == "mpm"), cwd=copy)


def test_building_a_model_needs_neither_readers_nor_results():
    code = """
        import sys
        from common.training.config import load_config
        from mpm.build import build_model as mpm_model
        from omnijet.model import build_gpt
        from omnijet.vqvae import build_tokenizer
        from hepjepa.model import build_model as jepa_model
        from common.training.pretrained import example_jets, load, Pretrained
        for name in ("mpmv1_regression", "mpmv2_regression"):
            mpm_model(load_config(f"mpm/configs/smoke/{name}.yaml"))
        build_gpt(load_config("omnijet/configs/smoke/pretrain.yaml")["model"], 64)
        build_tokenizer(load_config("omnijet/configs/smoke/tokenizer.yaml")["model"])
        jepa_model(load_config("hepjepa/configs/smoke/pretrain.yaml"))
        banned = {"uproot", "awkward", "h5py"} | {f"common.data.{m}" for m in
                  ("jetclass", "toptagging", "quarkgluon", "btag", "datasets", "cache")}
        bad = sorted(m for m in sys.modules if m in banned or m.startswith("common.results"))
        assert not bad, bad
    """
    _run(code, cwd=ROOT)


def _jepa_backbone(fps_random_start: bool):
    from common.training.config import load_config

    from hepjepa.model import HEPJEPABackbone, angle_columns, feature_info

    cfg = load_config("hepjepa/configs/smoke/pretrain.yaml", [f"model.fps_random_start={fps_random_start}"])
    info = feature_info(cfg["data"])
    torch.manual_seed(0)
    return HEPJEPABackbone(cfg["model"], info["num_features"], angle_columns(info["feature_names"]))


def _jepa_batch():
    from common.data.features import get_feature_set
    from common.data.own_jets import raw_jets
    from common.training.pretrained import Pretrained, example_jets

    a = get_feature_set("hepjepa_rel").compute(raw_jets(example_jets(16, particles=40)), 64)
    return Pretrained.batch(a)


@pytest.mark.parametrize("random_start", [True, False])
def test_hepjepa_random_fps_start_is_an_augmentation_of_every_training_arm_never_of_evaluation(random_start):
    from common.training.classifier import build_classifier
    from common.training.finetune_config import finetune_settings

    batch = _jepa_batch()
    for mode in ("fixed", "finetune", "scratch"):
        fc = finetune_settings({"finetune": {"mode": mode}})
        clf = build_classifier(fc, lambda: _jepa_backbone(random_start), lambda b: None, 2)
        clf.eval()
        with torch.no_grad():
            ref = clf(batch)
            assert torch.equal(ref, clf(batch)), f"{mode}: evaluation must be deterministic"
            clf.train()
            torch.manual_seed(1)
            a = clf(batch)
            torch.manual_seed(2)
            b = clf(batch)
        # the frozen backbone (fixed) runs in eval mode but keeps the augmentation while the classifier trains
        assert clf.backbone.tokenizer.augment is True
        assert (not torch.equal(a, b)) == random_start, mode
        clf.eval()
        assert clf.backbone.tokenizer.augment is False, f"{mode}: evaluation starts at the leading particle"


def test_pretrained_embeddings_of_a_hepjepa_backbone_do_not_change_between_calls():
    from common.training.pretrained import Pretrained, example_jets

    info = {"method": "hepjepa", "preprocessing": {"features": "hepjepa_rel", "num_particles": 64,
                                                   "feature_params": {"names": list(_feature_names())},
                                                   "class_names": ["QCD", "top"], "fitted": None}}
    model = Pretrained(_jepa_backbone(True), info)
    model.train()  # even if someone leaves it in train mode: embed evaluates
    jets = example_jets(10, particles=40)
    a, b = model.embed(jets), model.embed(jets)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _feature_names():
    from common.data.features import get_feature_set
    return get_feature_set("hepjepa_rel").names


def test_own_jets_bad_input_names_the_key(tmp_path):
    from common.data.features import DataError
    from common.data.own_jets import raw_jets, read_file
    from common.training.pretrained import example_jets

    jets = example_jets(3)
    with pytest.raises(DataError, match=r"missing per-particle \['energy'\]"):
        raw_jets({k: v for k, v in jets.items() if k != "energy"})
    with pytest.raises(DataError, match="'charge' has shape"):
        raw_jets({**jets, "charge": jets["charge"][:, :2]})
    with pytest.raises(DataError, match="unknown file format"):
        read_file(tmp_path / "jets.parquet")
    # jagged Awkward arrays give the same jets as zero-padded NumPy ones
    ak = pytest.importorskip("awkward")
    mask = jets["energy"] > 0
    jagged = {k: ak.Array([row[m] for row, m in zip(v, mask)]) for k, v in jets.items()}
    a, b = raw_jets(jets), raw_jets(jagged)
    width = b.p4.shape[1]
    assert np.array_equal(a.p4[:, :width], b.p4) and np.array_equal(a.part["deta"][:, :width], b.part["deta"])


def test_a_checkpoint_without_its_preprocessing_is_refused_in_one_line(tmp_path):
    from common.training.checkpoint import save_checkpoint
    from common.training.pretrained import load

    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {}, "step": 1})
    with pytest.raises(ValueError, match=r"checkpoint.pt: no self-contained `reuse` entry"):
        load(tmp_path)
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {}, "reuse": {"format": 1, "method": "os.system"}})
    with pytest.raises(ValueError, match="method 'os.system' is not one of"):
        load(tmp_path / "checkpoint.pt")


def tiny_mpmv1():
    """(model, reuse entry, feature set) of a tiny MPMv1 pretraining model on 12 particles, weights seeded."""
    from common.data.features import get_feature_set
    from common.training.config import load_config

    from mpm.build import build_model

    over = ["model.dim=16", "model.depth=1", "model.num_heads=2", "model.ff_hidden=16", "model.embed_hidden=16",
            "model.head_hidden=16", "data.num_particles=12"]
    cfg = load_config("mpm/configs/smoke/mpmv1_regression.yaml", over)
    torch.manual_seed(0)
    model = build_model(cfg)
    fs = get_feature_set("mpmv1")
    info = {"format": 1, "method": "mpmv1", "config": cfg,
            "preprocessing": {"dataset": "jetclass", "class_names": ["QCD", "Tbqq"], "features": "mpmv1",
                              "feature_params": dict(fs.params), "feature_names": list(fs.names),
                              "num_particles": 12, "fitted": None}}
    return model, info, fs


def test_mpmv1_running_means_travel_with_the_weights(tmp_path):
    """MPMv1's input normalisation (running means and variances, buffers) is part of the checkpoint: the loaded
    backbone has the pretraining statistics, frozen, and embeds deterministically."""
    from common.training.checkpoint import save_checkpoint
    from common.training.pretrained import example_jets, load

    model, info, fs = tiny_mpmv1()
    from common.data.own_jets import raw_jets
    a = fs.compute(raw_jets(example_jets(32, seed=4)), 12)
    model.backbone.norm.update(torch.as_tensor(a["x"]), torch.as_tensor(a["mask"]))
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": model.state_dict(), "step": 1, "reuse": info})
    loaded = load(tmp_path)
    for k, v in model.backbone.norm.state_dict().items():
        if k != "frozen":
            assert torch.equal(v, loaded.backbone.norm.state_dict()[k]), k
    assert bool(loaded.backbone.norm.frozen)
    jets = example_jets(8)
    e1, e2 = loaded.embed(jets), load(tmp_path / "checkpoint.pt").embed(jets)
    assert all(np.array_equal(e1[k], e2[k]) for k in e1)
