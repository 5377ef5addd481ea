"""OmniJet-alpha tokenisers, generation metrics, configs and the script chain on tiny fake JetClass files.

The fake files follow the JetClass ROOT layout; QCD jets are one narrow prong, top jets three prongs, so jet mass
and N-subjettiness differ strongly between the two classes.
"""
import glob
import json
import os
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from common.data.jetclass import AUX_BRANCHES, FILE_PREFIX, JET_BRANCHES, LABELS, PARTICLE_FLOAT, PARTICLE_INT
from common.training.config import load_config, save_config

from omnijet.evaluate_generation import compare, sample_values
from omnijet.vqvae import BinnedTokenizer, build_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_jets(cls, n, rng):
    prongs = 3 if cls == "Tbqq" else 1
    jets = []
    for _ in range(n):
        ptj, etaj, phij = rng.uniform(550, 900), rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
        npart = int(rng.integers(15, 40))
        centres = rng.normal(0, 0.25, size=(prongs, 2)) if prongs > 1 else np.zeros((1, 2))
        d = centres[rng.integers(0, prongs, npart)] + rng.normal(0, 0.04, size=(npart, 2))
        pt = np.sort(rng.dirichlet(np.full(npart, 0.7)) * ptj)[::-1]
        jets.append((pt, etaj + d[:, 0], phij + d[:, 1]))
    return jets


def write_fake_jetclass(root, n_per_class, classes=("QCD", "Tbqq"), seed=0):
    rng = np.random.default_rng(seed)
    for split, frac in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        os.makedirs(f"{root}/{split}", exist_ok=True)
        for c in classes:
            jets = _fake_jets(c, max(int(n_per_class * frac), 8), rng)
            pt = ak.Array([j[0].astype(np.float32) for j in jets])
            eta, phi = ak.Array([j[1] for j in jets]), ak.Array([j[2] for j in jets])
            px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
            branches = {"part_px": px, "part_py": py, "part_pz": pz, "part_energy": np.sqrt(px**2 + py**2 + pz**2)}
            branches.update({b: ak.zeros_like(px) for b in PARTICLE_FLOAT[4:]})
            branches.update({b: ak.values_astype(ak.zeros_like(px), np.int32) for b in PARTICLE_INT})
            branches.update({lab: np.full(len(jets), float(lab == f"label_{c}"), np.float32) for lab in LABELS})
            branches.update({b: np.zeros(len(jets), np.float32) for b in JET_BRANCHES + AUX_BRANCHES})
            branches["jet_pt"] = np.array([j[0].sum() for j in jets], np.float32)
            branches["jet_nparticles"] = np.array([len(j[0]) for j in jets], np.float32)
            with uproot.recreate(f"{root}/{split}/{FILE_PREFIX[c]}_000.root") as f:
                f["tree"] = branches
    return str(root)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return write_fake_jetclass(tmp_path_factory.mktemp("oj_fake"), 60)


def _data_cfg(root, **kw):
    return {"dataset": "jetclass", "root": root, "train": "train/*.root", "val": "val/*.root", "test": "test/*.root",
            "features": "omnijet", "num_particles": 32, "classes": ["QCD", "Tbqq"], "cache_dir": f"{root}/.cache",
            "num_workers": 0, **kw}


def _tiny_model_cfg(kind="conditional", num_codes=32):
    cfg = load_config(os.path.join(REPO, "omnijet/configs/tokenizer.yaml"))["model"]
    cfg.update(kind=kind, hidden_dim=32, depth=1, num_heads=2, mlp_layers=[32, 32], bin_counts=[4, 4, 4])
    cfg["vq"]["num_codes"] = num_codes
    return cfg


def test_vqvae_reconstruction_improves_and_ignores_padding(fake_root):
    from common.data.datasets import load_arrays

    arr = load_arrays(_data_cfg(fake_root), "train")
    x, mask = torch.as_tensor(arr["x"][:64]), torch.as_tensor(arr["mask"][:64])
    torch.manual_seed(0)
    model = build_tokenizer(_tiny_model_cfg())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def reco_error():
        model.eval()
        with torch.no_grad():
            err = ((model.decode(model.tokenize(x, mask), mask) - x) ** 2)[mask].mean().item()
        model.train()
        return err

    model.train()
    model(x, mask)  # k-means initialisation on the first training batch
    before = reco_error()
    for _ in range(60):
        out = model(x, mask)
        opt.zero_grad(), out["loss"].backward(), opt.step()
    after = reco_error()
    assert after < 0.7 * before
    assert 0 < float(out["utilisation"]) <= 1 and out["codes"].dtype == torch.long
    # padded particles never change the codes or the reconstruction of real ones (conditional = jet context only)
    model.eval()
    x2 = x.clone()
    x2[~mask] = 5.0
    assert torch.equal(model.tokenize(x, mask), model.tokenize(x2, mask))
    assert torch.allclose(model.decode(model.tokenize(x, mask), mask), model.decode(model.tokenize(x2, mask), mask))


def test_mlp_tokens_are_per_particle_and_conditional_tokens_are_not():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3)
    mask = torch.ones(2, 6, dtype=torch.bool)
    x[1, 0] = x[0, 0]  # same first particle, different rest of the jet
    mlp = build_tokenizer(_tiny_model_cfg("mlp")).eval()
    z_mlp = mlp._encode(x, mask)
    assert torch.allclose(z_mlp[0, 0], z_mlp[1, 0])
    cond = build_tokenizer(_tiny_model_cfg("conditional"))
    for p in cond.parameters():  # leave the zero-initialised Normformer state so that context can matter
        torch.nn.init.normal_(p, std=0.3)
    z_cond = cond.eval()._encode(x, mask)
    assert not torch.allclose(z_cond[0, 0], z_cond[1, 0])


def test_binned_tokenizer_round_trip_within_half_a_bin():
    tok = BinnedTokenizer([[-1.0, 1.0], [0.0, 2.0], [-3.0, 3.0]], [4, 5, 6])
    assert tok.num_codes == 120
    x = torch.rand(3, 7, 3) * torch.tensor([2.0, 2.0, 6.0]) + torch.tensor([-1.0, 0.0, -3.0])
    mask = torch.rand(3, 7) > 0.3
    codes = tok.tokenize(x, mask)
    assert codes.min() >= 0 and codes.max() < 120
    back = tok.decode(codes, mask)
    half = torch.tensor([0.25, 0.2, 0.5])
    assert ((back - x).abs()[mask] <= half + 1e-6).all()
    assert (back[~mask] == 0).all()
    assert torch.equal(tok.tokenize(back, mask), codes)


def test_generation_metrics_zero_for_same_jets_and_large_for_top_vs_qcd(fake_root):
    from common.data.datasets import load_arrays

    arr = load_arrays(_data_cfg(fake_root), "train")
    qcd, top = arr["label"] == 0, arr["label"] == 1
    same = compare(sample_values(arr["x"][qcd], arr["mask"][qcd]), sample_values(arr["x"][qcd], arr["mask"][qcd]),
                   n_bins=10)
    diff = compare(sample_values(arr["x"][qcd], arr["mask"][qcd]), sample_values(arr["x"][top], arr["mask"][top]),
                   n_bins=10)
    assert set(same) >= {"jet_mass", "jet_pt", "tau21", "tau32", "jet_n_constituents", "particle_pt"}
    for name, m in same.items():
        assert m["kl_divergence"] < 1e-6 and m["w1"] < 1e-9, name
    # top jets are three-pronged and heavy: W1 of the mass and the quantile-binned KL of tau21 are large. (The KL of
    # the mass is not used here: the two mass ranges do not overlap at all in these fake jets, a case in which the
    # quantile-binned KL, which drops values outside the reference range, carries no information.)
    assert diff["jet_mass"]["w1"] > 30.0 and diff["tau21"]["w1"] > 0.05
    assert diff["tau21"]["kl_divergence"] > 1.0 and diff["tau32"]["kl_divergence"] > 0.5
    # ... but the fraction of generated values outside the reference range shows it (two of 48 jets for the same
    # sample: the extreme values lie outside the interpolated 0.1 / 99.9 % quantiles)
    assert diff["jet_mass"]["fraction_outside_reference"] > 0.5 and same["jet_mass"]["fraction_outside_reference"] < 0.05


CONFIGS = sorted(glob.glob(os.path.join(REPO, "omnijet/configs/**/*.yaml"), recursive=True))


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, os.path.join(REPO, "omnijet/configs"))
                                               for p in CONFIGS])
def test_every_config_loads_and_runs_one_step(path):
    """Every config resolves, and its model (shrunken in width and codebook) takes one training step."""
    from omnijet.finetune import harness_config
    from omnijet.model import OmniJetBackbone, build_gpt, next_token_loss, shift_tokens

    cfg = load_config(path)
    name = os.path.basename(path)
    torch.manual_seed(0)
    x, mask = torch.randn(4, 10, 3), torch.arange(10)[None, :] < torch.tensor([[10], [7], [3], [5]])
    if name.startswith("tokenizer"):
        m = dict(cfg["model"], hidden_dim=16, num_heads=2, depth=1, mlp_layers=[16])
        m["vq"] = dict(m["vq"], num_codes=min(m["vq"]["num_codes"], 16))
        model = build_tokenizer(m)
        if m["kind"] == "binned":
            assert torch.equal(model.tokenize(model.decode(model.tokenize(x, mask), mask), mask), model.tokenize(x, mask))
            return
        out = model(x, mask)
        out["loss"].backward()
        assert torch.isfinite(out["loss"])
    elif name == "pretrain.yaml":
        gpt = build_gpt(dict(cfg["model"], dim=16, ff_hidden=32, num_heads=2), num_codes=16)
        tokens = torch.randint(1, 17, (4, 12))
        tokens[:, 0] = 0
        inp, tgt, m = shift_tokens(tokens, torch.tensor([12, 9, 5, 7]), cfg["train"]["max_len"])
        loss = next_token_loss(gpt(inp, m), tgt, m, cfg["train"]["include_padding_in_loss"])
        loss.backward()
        assert torch.isfinite(loss)
    elif name == "finetune.yaml":
        from common.blocks.pooling import build_head

        hc = harness_config(cfg)
        assert hc["finetune"]["head"]["kind"] in ("sum", "class_attention_oj")
        tok = build_tokenizer(_tiny_model_cfg("binned"))
        backbone = OmniJetBackbone(build_gpt({"dim": 16, "depth": 1, "num_heads": 2, "ff_hidden": 32,
                                              "attention_dropout": 0.0}, tok.num_codes).backbone, tok)
        for head_name, head_cfg in cfg["heads"].items():
            kw = {k: v for k, v in head_cfg.items() if k != "kind"}
            kw["hidden"] = 16
            head = build_head(head_cfg["kind"], backbone.dim, 2, **kw)
            batch = type("B", (), {"x": x, "mask": mask})()
            h, hm = backbone(batch)
            assert h.shape == (4, 12, 16) and hm.sum(1).tolist() == [12, 9, 5, 7]
            head(h, hm).sum().backward()
    elif name == "generate.yaml":
        from omnijet.sampling import sample

        gpt = build_gpt({"dim": 16, "depth": 1, "num_heads": 2, "ff_hidden": 32, "attention_dropout": 0.0}, 16)
        sc = cfg["sample"]
        seq = sample(gpt, 2, 5, temperature=sc["temperature"], top_k=sc["top_k"], use_cache=sc["use_kv_cache"])
        assert seq.shape == (2, 6)
        assert cfg["evaluate"]["n_bins"] >= 2
    elif name == "token_quality.yaml":
        assert cfg["tokenizers"] and cfg["n_jets"] > 0
    else:
        pytest.fail(f"no one-step check for config {name}")


def _run(module, *args):
    env = dict(os.environ, PYTHONPATH=REPO)
    res = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"{module} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.mark.slow
def test_scripts_end_to_end_on_fake_jetclass(fake_root, tmp_path):
    """tokenisers -> token quality -> tokens -> GPT -> sampling -> evaluation -> fine-tuning -> tables (smoke)."""
    cfg = os.path.join(REPO, "omnijet/configs/smoke")
    d = [f"data.root={fake_root}", f"data.cache_dir={fake_root}/.cache"]
    out = tmp_path
    small = ["train.steps=6", "train.val_every=6", "train.ckpt_every=3"]
    two = ["data.classes=[QCD,Tbqq]"]  # the fake data hold two classes; the tokeniser configs read every class
    _run("omnijet.train_tokenizer", "--config", f"{cfg}/tokenizer.yaml", "--out", f"{out}/tokenizer", *d, *small, *two)
    _run("omnijet.train_tokenizer", "--config", f"{cfg}/tokenizer_binned.yaml", "--out", f"{out}/tokenizer_binned", *d,
         *two)
    _run("omnijet.token_quality", "--config", f"{cfg}/token_quality.yaml", "--out", f"{out}/token_quality", *d,
         f"runs_dir={out}", "tokenizers=[tokenizer,tokenizer_binned]", *two)
    tq = json.loads((out / "token_quality/metrics.json").read_text())["rows"]
    assert [r["tokenisation"] for r in tq] == ["original", "conditional_vqvae", "binned"]
    assert tq[0]["jet_mass_resolution"] == 0 and 0 <= tq[0]["accuracy_reco"] <= 1
    assert all(r["jet_mass_resolution"] > 0 and 0 < r["codebook_utilisation"] <= 1 for r in tq[1:])

    _run("omnijet.tokenize_dataset", "--config", f"{cfg}/pretrain.yaml", "--out", f"{out}/tokens", *d,
         f"tokenizer_dir={out}/tokenizer")
    tokens = np.load(out / "tokens/train_tokens.npy")
    assert tokens.dtype == np.int16 and (tokens[:, 0] == 0).all() and tokens.max() == 65

    pre = [f"--config={cfg}/pretrain.yaml", f"--out={out}/pretrain", *d, f"tokens_dir={out}/tokens",
           "train.val_every=4", "train.ckpt_every=4"]
    _run("omnijet.pretrain", *pre, "train.steps=4")
    assert (out / "pretrain/done.json").is_file()
    # as if an 8-step run had stopped after its step-4 checkpoint: it resumes there and goes on to step 8
    os.remove(out / "pretrain/done.json")
    interrupted = load_config(out / "pretrain/config.yaml")
    interrupted["train"]["steps"] = 8
    save_config(interrupted, out / "pretrain/config.yaml")
    _run("omnijet.pretrain", *pre, "train.steps=8")
    log = [json.loads(line) for line in (out / "pretrain/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_loss" in r] == [4, 8]
    assert json.loads((out / "pretrain/done.json").read_text())["steps"] == 8

    _run("omnijet.generate", "--config", f"{cfg}/generate.yaml", "--out", f"{out}/generate", *d,
         f"pretrain_dir={out}/pretrain", f"tokenizer_dir={out}/tokenizer", "sample.n_jets=16", "sample.max_len=20")
    gen = np.load(out / "generate/particles.npz")
    # one sample of 16 jets per sampling seed (sample.seeds: 0, 1, 2), each seed its own draw
    assert gen["x"].shape == (48, 20, 3) and np.isfinite(gen["x"]).all()
    assert gen["seed"].tolist() == [0] * 16 + [1] * 16 + [2] * 16
    assert not np.array_equal(gen["x"][:16], gen["x"][16:32])
    _run("omnijet.evaluate_generation", "--config", f"{cfg}/generate.yaml", "--out", f"{out}/eval_generation", *d,
         f"generated_dir={out}/generate", f"tokenizer_dir={out}/tokenizer")
    assert (out / "eval_generation/hist_jet_mass.png").is_file()
    ev = json.loads((out / "eval_generation/metrics.json").read_text())
    assert [r["seed"] for r in ev["per_seed"]] == [0, 1, 2]
    # three disjoint subsets of the 16 reference jets (too few here for the KL of every subset to be finite)
    assert all(r["n_generated_jets"] == 16 and "jet_mass" in r["kl_top_vs_qcd"] for r in ev["per_seed"])
    assert sum(r["n_qcd_jets"] + r["n_top_jets"] for r in ev["per_seed"]) == 16
    assert ev["per_seed"][0]["kl_top_vs_qcd"]["jet_mass"] > 0

    _run("omnijet.finetune", "--config", f"{cfg}/finetune.yaml", "--out", f"{out}/finetune/fixed", *d,
         "finetune.mode=fixed", f"pretrain_dir={out}/pretrain", f"tokenizer_dir={out}/tokenizer",
         "finetune.steps=3", "data.train=train/*.root")
    result = json.loads((out / "finetune/fixed/n10/seed0/result.json").read_text())
    assert result["mode"] == "fixed" and 0 <= result["test"]["auc"] <= 1
    # the paper-era class-attention head, and OJ's first epoch at lr/3 resolved to this run's epoch length
    assert result["finetune"]["head"]["kind"] == "class_attention_oj"
    assert result["finetune"]["schedule"]["hold_steps"] >= 1

    _run("omnijet.tables", "--runs", str(out), "--out", f"{out}/tables", "--profile", "smoke")
    for table_id in ("omnijet.token_quality", "omnijet.generation", "omnijet.classification"):
        assert (out / "tables" / f"{table_id}.json").is_file()
