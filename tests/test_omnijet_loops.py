"""The two OmniJet-alpha training loops (omnijet.pretrain, omnijet.train_tokenizer) in the kit's one loop shape:
train(cfg, out, dist) -> the done.json summary, the loop vocabulary (train.steps, ckpt_every, grad_accum,
precision), the kit's one sampler for the GPT batches with a bit-exact resume, and the loaders beside their models."""
import json

import numpy as np
import pytest
import torch

from common.data.sampler import ShardedBatchSampler
from common.training.checkpoint import load_checkpoint, make_state, save_checkpoint
from common.training.config import ConfigError, load_config, save_config
from common.training.distributed import init_distributed
from common.training.train_utils import mark_done

from tests.test_omnijet_pipeline import REPO, _data_cfg, _tiny_model_cfg, write_fake_jetclass

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NUM_CODES = 8


def _token_dir(path, n_train=32, n_val=16, length=None, seed=0):
    """A finished token directory (omnijet/tokens.py format): random codes, lengths 1..6 (or all `length`)."""
    from omnijet.tokens import codes_to_sequences, save_npy

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        n_real = np.full(n, length) if length else rng.integers(1, 7, n)
        mask = np.arange(6)[None, :] < n_real[:, None]
        tokens, lengths = codes_to_sequences(np.where(mask, rng.integers(0, NUM_CODES, (n, 6)), 0), mask, NUM_CODES)
        for key, arr in {"tokens": tokens, "lengths": lengths, "labels": np.repeat([0, 1], n // 2)}.items():
            save_npy(path / f"{split}_{key}.npy", arr)
    (path / "done.json").write_text(json.dumps({"num_codes": NUM_CODES}))
    return path


def _pretrain_cfg(tokens_dir, **train):
    cfg = load_config(f"{REPO}/omnijet/configs/smoke/pretrain.yaml")
    cfg["tokens_dir"] = str(tokens_dir)
    cfg["device"] = "cpu"
    cfg["train"].update({"batch_size": 4, "steps": 6, "val_every": 3, "val_batches": 2, "max_len": 7, "log_every": 1,
                         "ckpt_every": 3, **train})
    return cfg


def test_gpt_batches_are_the_kit_samplers_permutation_across_epochs():
    """Old behaviour: a torch.randperm seeded with seed * 100003 + epoch (a second copy of the sampler)."""
    from omnijet.pretrain import token_batches

    tokens = np.arange(10 * 3, dtype=np.int16).reshape(10, 3)
    lengths = np.arange(10, dtype=np.int32)
    batches = token_batches(tokens, lengths, 4, seed=7)
    got = [next(batches)[1].tolist() for _ in range(5)]  # 2 batches per epoch (drop_last), into epoch 2
    perms = [np.random.default_rng([7, e]).permutation(10) for e in range(3)]
    assert got == [perms[0][:4].tolist(), perms[0][4:8].tolist(), perms[1][:4].tolist(), perms[1][4:8].tolist(),
                   perms[2][:4].tolist()]
    assert batches.state_dict() == {"epoch": 2, "position": 1}
    # rank 1 of 2: the other half of the same permutation (ShardedBatchSampler)
    rank1 = token_batches(tokens, lengths, 2, seed=7, rank=1, world_size=2)
    expected = list(ShardedBatchSampler(10, 2, shuffle=True, seed=7, rank=1, world_size=2, drop_last=True))
    assert [next(rank1)[1].tolist() for _ in range(2)] == [e.tolist() for e in expected]
    with pytest.raises(ValueError, match="only 10 training sequences"):
        token_batches(tokens, lengths, 6, seed=0, world_size=2)


def test_pretrain_resume_is_bit_exact_and_done_json_holds_the_summary(tmp_path):
    from omnijet import pretrain

    tokens_dir = _token_dir(tmp_path / "tokens")
    dist = init_distributed("cpu")
    straight = pretrain.train(_pretrain_cfg(tokens_dir), tmp_path / "a", dist)
    pretrain.train(_pretrain_cfg(tokens_dir, steps=3), tmp_path / "b", dist)
    (tmp_path / "b" / "done.json").unlink()
    resumed = pretrain.train(_pretrain_cfg(tokens_dir), tmp_path / "b", dist)
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("a", "b"))
    assert a["step"] == b["step"] == 6 and a["loader"] == b["loader"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    logs = [[json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("a", "b")]
    assert [r.get("loss") for r in logs[0]] == [r.get("loss") for r in logs[1]]
    done = json.loads((tmp_path / "a" / "done.json").read_text())
    assert done["steps"] == 6 and done["jets_per_s"] > 0 and resumed["steps"] == 6
    assert {k: done[k] for k in straight} == straight


def test_gpt_gradient_accumulation_gives_the_full_batch_step(tmp_path):
    """train.grad_accum = 2 splits each batch of 4 into two micro-batches of 2: with sequences of equal length (the
    same number of loss positions per jet) the accumulated gradient is the full-batch one."""
    from omnijet import pretrain

    tokens_dir = _token_dir(tmp_path / "tokens", length=5)
    dist = init_distributed("cpu")
    states = []
    for accum in (1, 2):
        pretrain.train(_pretrain_cfg(tokens_dir, steps=2, grad_accum=accum), tmp_path / f"acc{accum}", dist)
        states.append(load_checkpoint(tmp_path / f"acc{accum}" / "checkpoint.pt")["model"])
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])  # two micro-batches really ran
    with pytest.raises(ValueError, match="train.grad_accum"):
        pretrain.train(_pretrain_cfg(tokens_dir, grad_accum=3), tmp_path / "bad", dist)


def test_pretrain_main_saves_the_config_and_a_bad_precision_names_its_key(tmp_path):
    from omnijet import pretrain

    tokens_dir = _token_dir(tmp_path / "tokens")
    cfg = f"{REPO}/omnijet/configs/smoke/pretrain.yaml"
    common = [f"tokens_dir={tokens_dir}", "device=cpu", "train.batch_size=4", "train.max_len=7",
              "train.val_batches=2"]
    pretrain.main(["--config", cfg, "--out", str(tmp_path / "run"), *common, "train.steps=2", "train.val_every=2"])
    assert load_config(tmp_path / "run" / "config.yaml")["train"]["steps"] == 2
    assert json.loads((tmp_path / "run" / "done.json").read_text())["steps"] == 2
    with pytest.raises(ValueError, match="train.precision"):
        pretrain.main(["--config", cfg, "--out", str(tmp_path / "bad"), *common, "train.precision=fp16"])


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return write_fake_jetclass(tmp_path_factory.mktemp("oj_loops"), 40)


def _tokenizer_cfg(root, **train):
    cfg = load_config(f"{REPO}/omnijet/configs/smoke/tokenizer.yaml")
    cfg["data"].update(_data_cfg(root))
    cfg["device"] = "cpu"
    cfg["train"].update({"batch_size": 4, "steps": 2, "val_every": 2, "val_batches": 1, "log_every": 1, "ckpt_every": 2,
                         **train})
    return cfg


def test_tokenizer_runs_in_the_configured_precision_and_accumulates(fake_root, tmp_path, monkeypatch):
    """train.precision (fp32 in the paper config: OJ's tokenisation experiment comments out 16-mixed) is the
    context of every tokeniser forward; train.grad_accum splits the batch (the old loop read neither key)."""
    from omnijet import train_tokenizer

    for name in ("tokenizer", "mini/tokenizer", "smoke/tokenizer", "tokenizer_mlp"):
        train_cfg = load_config(f"{REPO}/omnijet/configs/{name}.yaml")["train"]
        assert train_cfg["precision"] == "fp32" and train_cfg["grad_accum"] == 1
    seen, real = [], train_tokenizer.autocast

    def spy(device, precision="bf16", key="precision"):
        seen.append((precision, key))
        return real(device, precision, key)

    monkeypatch.setattr(train_tokenizer, "autocast", spy)
    forwards = []
    monkeypatch.setattr(train_tokenizer, "build_tokenizer", lambda m: _counting(m, forwards))
    dist = init_distributed("cpu")
    summary = train_tokenizer.train(_tokenizer_cfg(fake_root, grad_accum=2), tmp_path / "run", dist)
    assert summary["steps"] == 2 and summary["jets_per_s"] > 0
    assert set(seen) == {("fp32", "train.precision")}
    assert forwards[:4] == [2, 2, 2, 2]  # two steps of two micro-batches of 2 jets, then validation
    with pytest.raises(ValueError, match="train.precision"):
        train_tokenizer.train(_tokenizer_cfg(fake_root, precision="fp16"), tmp_path / "bad", dist)
    with pytest.raises(ValueError, match="train.grad_accum"):
        train_tokenizer.train(_tokenizer_cfg(fake_root, grad_accum=3), tmp_path / "bad", dist)


def _counting(model_cfg, forwards):
    from omnijet.vqvae import build_tokenizer

    model = build_tokenizer(model_cfg)
    model.register_forward_pre_hook(lambda mod, args: forwards.append(len(args[0])))
    return model


def _tokenizer_run(path, kind="binned"):
    """A finished tokeniser run directory (config.yaml + checkpoint.pt) of a tiny tokeniser."""
    from omnijet.vqvae import build_tokenizer

    cfg = load_config(f"{REPO}/omnijet/configs/smoke/tokenizer.yaml")
    cfg["model"] = _tiny_model_cfg(kind)
    model = build_tokenizer(cfg["model"])
    save_config(cfg, path / "config.yaml")
    save_checkpoint(path / "checkpoint.pt", make_state(model=model, step=0, config=cfg))
    mark_done(path)   # a finished tokeniser run (its users refuse an unfinished one)
    return cfg


def test_a_run_directory_of_the_old_vocabulary_names_the_renamed_key(tmp_path):
    from omnijet.vqvae import load_tokenizer

    cfg = _tokenizer_run(tmp_path)
    cfg["train"]["max_steps"] = cfg["train"].pop("steps")
    save_config(cfg, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="'train.max_steps' was renamed to train.steps"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("kind", ["conditional", "mlp", "binned"])
def test_tokenisers_tokenize_and_decode(kind):
    """One name per idea: tokenize(x, mask) -> codes, as MPM's tokenisers and the paper (arXiv:2403.05618 Sec. 3);
    the old name `encode` is gone."""
    from omnijet.vqvae import build_tokenizer

    torch.manual_seed(0)
    model = build_tokenizer(_tiny_model_cfg(kind)).eval()
    x, mask = torch.randn(3, 5, 3), torch.arange(5)[None, :] < torch.tensor([[5], [3], [1]])
    codes = model.tokenize(x, mask)
    assert not hasattr(model, "encode") and codes.dtype == torch.long and (codes[~mask] == 0).all()
    if kind != "binned":
        with torch.no_grad():
            assert torch.equal(codes, model(x, mask)["codes"])
    assert model.decode(codes, mask).shape == x.shape


def test_backbone_fns_builds_the_pretraining_architecture_and_loads_its_backbone(tmp_path):
    from omnijet.model import OmniJetBackbone, backbone_fns, build_gpt

    tok_cfg = _tokenizer_run(tmp_path / "tokenizer")
    num_codes = int(np.prod(tok_cfg["model"]["bin_counts"]))
    pre = load_config(f"{REPO}/omnijet/configs/smoke/pretrain.yaml")
    pre["model"].update(dim=16, depth=1, num_heads=2, ff_hidden=32)
    torch.manual_seed(1)
    gpt = build_gpt(pre["model"], num_codes)
    save_config(pre, tmp_path / "pretrain" / "config.yaml")
    save_checkpoint(tmp_path / "pretrain" / "best.pt", make_state(model=gpt, step=1, num_codes=num_codes))
    mark_done(tmp_path / "pretrain")
    cfg = load_config(f"{REPO}/omnijet/configs/smoke/finetune.yaml")
    cfg.update(tokenizer_dir=str(tmp_path / "tokenizer"), pretrain_dir=str(tmp_path / "pretrain"))
    build, load = backbone_fns(cfg)
    backbone = build()
    assert isinstance(backbone, OmniJetBackbone) and backbone.dim == 16 and backbone.precision == "fp32"
    assert not torch.equal(backbone.gpt.embed.weight, gpt.backbone.embed.weight)
    load(backbone)
    ref = gpt.backbone.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in backbone.gpt.state_dict().items())
