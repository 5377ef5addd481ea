"""common/results/compare.py ("Which pretraining?"): every method's embeddings go through the same probe on the same subsets,
beside the floor on the same jets; each method's embed.py writes them through common.results.compare."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from common.data.datasets import build_dataset
from common.results import compare

from tests.data_factory import write_jetclass

CLASSES = ["QCD", "Tbqq", "Wqq"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare_jetclass")
    for i, (split, n) in enumerate((("train", 24), ("val", 6), ("test", 12))):
        write_jetclass(str(root / split), n, classes=CLASSES, seed=5 + i)
    return root


def _cfg(root, features="part_kin"):
    return {"seed": 0, "data": {"dataset": "jetclass", "root": str(root), "features": features, "classes": CLASSES,
                                "num_workers": 0}}


class Toy(nn.Module):
    """A stand-in backbone with BatchNorm: (h, mask) per particle, as every method's backbone returns."""

    def __init__(self, d_in, dim=6):
        super().__init__()
        self.lin, self.bn, self.dim = nn.Linear(d_in, dim), nn.BatchNorm1d(dim), dim

    def forward(self, batch):
        h = self.lin(batch.x)
        b, n, d = h.shape
        return self.bn(h.reshape(b * n, d)).reshape(b, n, d), batch.mask


def test_every_embedding_gets_the_same_probe_on_the_same_subsets(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "COMPARE_GRID", (5, 10))
    cfg = _cfg(data_root)
    d_in = build_dataset(cfg["data"], "test", progress=False)[np.arange(2)].x.shape[-1]
    torch.manual_seed(0)
    trained = Toy(d_in)

    def load(m):
        m.load_state_dict(trained.state_dict())

    for name, random in (("toy", False), ("toy", True), ("other", False)):
        compare.embed_set(lambda: Toy(d_in), load, cfg, tmp_path / "m" / "embed" / f"{name}_{random}", name=name,
                          random_init=random, max_test_jets=30)
    seen = []
    real_probe = compare.linear_probe

    def spy(x_train, y_train, x_test, y_test, *, seed=0, **kw):
        seen.append((seed, len(y_train), tuple(y_train), tuple(y_test)))
        return real_probe(x_train, y_train, x_test, y_test, seed=seed, **kw)

    monkeypatch.setattr(compare, "linear_probe", spy)
    rows, meta = compare.compare(tmp_path)
    # 2 grid points x 3 seeds x (3 embeddings + 2 floor classifiers)
    assert len(rows) == 2 * 3 * 5 and len(seen) == 2 * 3 * 3
    for k in range(0, len(seen), 3):  # the three embeddings of one (n, seed): the same labelled jets and test set
        assert seen[k][0] == seen[k + 1][0] == seen[k + 2][0]
        assert seen[k][2:] == seen[k + 1][2:] == seen[k + 2][2:]
    assert {(r["model"], r["init"]) for r in rows} >= {("toy", "pretrained"), ("toy", "random"),
                                                       ("jet observables (BDT)", "none")}
    # the subsets are the fine-tuning harness's draw
    subsets, _ = compare.compare_subsets(cfg["data"], grid=(5, 10))
    for (n, s), idx in subsets.items():
        assert np.array_equal(idx, build_dataset(cfg["data"], "train", n_per_class=n, subset_seed=s,
                                                 progress=False).index)
    assert {len(v) for v in subsets.values()} == {15, 30}
    assert meta["keys"] == ["model", "init", "mode", "n_per_class"]


def test_embeddings_of_other_jets_are_refused(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "COMPARE_GRID", (5,))
    cfg = _cfg(data_root)
    d_in = build_dataset(cfg["data"], "test", progress=False)[np.arange(2)].x.shape[-1]
    compare.embed_set(lambda: Toy(d_in), None, cfg, tmp_path / "a" / "embed" / "x", name="x", random_init=True)
    compare.embed_set(lambda: Toy(d_in), None, cfg, tmp_path / "b" / "embed" / "y", name="y", random_init=True,
                      max_test_jets=20)
    with pytest.raises(ValueError, match="other jets"):
        compare.compare(tmp_path)


@pytest.mark.parametrize("module, config", [("mpm.embed", "mpm/configs/smoke/finetune_v1.yaml"),
                                            ("hepjepa.embed", "hepjepa/configs/smoke/finetune_jetclass.yaml")])
def test_method_embed_scripts_write_the_compare_set(module, config, data_root, tmp_path, monkeypatch, repo_root):
    import importlib

    monkeypatch.setattr(compare, "COMPARE_GRID", (5,))
    recipe = {**compare.finetune_recipe(), "steps": 4, "val_every": 2, "batch_size": 5, "max_test_jets": 3000}
    monkeypatch.setattr(compare, "finetune_recipe", lambda: recipe)
    mod = importlib.import_module(module)
    out = tmp_path / "embed" / "random"
    mod.main(["--config", str(repo_root / config), "--out", str(out), "--name", module, "--random-init",
              "--finetune-grid", "5", f"data.root={data_root}", "data.classes=[QCD,Tbqq,Wqq]", "data.num_workers=0"])
    # the fine-tuned mode through the method's own backbone: three seeds at 5 jets per class
    assert len(list(out.glob("finetune/n5/seed*/result.json"))) == 3
    e = compare.read_embeddings(out / compare.EMBED_FILE)
    assert e["info"]["name"] == module and e["info"]["init"] == "random"
    subsets, _ = compare.compare_subsets(e["info"]["data"])  # the union of the three seeds' 5-per-class draws
    union = np.unique(np.concatenate(list(subsets.values())))
    assert np.array_equal(e["train_index"], union) and e["x_train"].shape[0] == len(union)
    assert np.isfinite(e["x_train"]).all() and e["x_test"].shape[0] == len(e["y_test"])
    assert (out / "done.json").is_file()


def test_pretraining_cost_from_the_runs_done_json(tmp_path):
    import json

    (tmp_path / "config.yaml").write_text("train:\n  batch_size: 32\n")
    (tmp_path / "done.json").write_text(json.dumps({"steps": 30, "jets_per_s": 480.0}))
    assert compare.pretraining_cost(tmp_path) == {"pretraining_jets": 960, "pretraining_s": 2.0}
    (tmp_path / "done.json").write_text(json.dumps({"steps": 30, "jets_seen": 480, "seconds": 1.5}))
    assert compare.pretraining_cost(tmp_path) == {"pretraining_jets": 480, "pretraining_s": 1.5}
    assert compare.pretraining_cost(tmp_path / "missing") == {}


def test_pairwise_verdicts_follow_the_claims_rule():
    from common.results.compare import pairwise_verdicts

    rows = []
    for s in range(3):  # pretrained: 3 pretraining runs (pretrain_seed) x 1 subset seed; the others: 3 seeds
        for model, init, acc in (("A", "pretrained", 0.60), ("A", "random", 0.40), ("B", "pretrained", 0.50),
                                 ("B", "random", 0.495), ("floor (BDT)", "none", 0.502)):
            rows.append({"model": model, "init": init, "n_per_class": 10, "seed": s, "accuracy": acc + 0.01 * s,
                         **({"pretrain_seed": s} if init == "pretrained" else {})})
    (line,) = pairwise_verdicts(rows)
    assert line.startswith("frozen probe, 10 per class: ")
    assert "A pretrained > random init reproduced (3 pretraining runs vs 3 seeds)" in line
    assert "B pretrained > random init inconclusive" in line       # d = 0.005 < 2 SE
    assert "A > floor (BDT) reproduced (3 pretraining runs vs 3 seeds)" in line   # ranked: A, floor, B
    assert "floor (BDT) > B inconclusive (3 seeds vs 3 pretraining runs)" in line
    assert line.index("A > floor (BDT)") < line.index("floor (BDT) > B")
    # one pretraining run with three subset seeds is one replicate, whatever its seeds say
    (line,) = pairwise_verdicts([{**r, "pretrain_seed": 0} if r["init"] == "pretrained" else r for r in rows])
    assert "A pretrained > random init inconclusive (1 pretraining run vs 3 seeds)" in line


def test_three_pretraining_runs_are_three_values_never_merged(data_root, tmp_path, monkeypatch):
    """A backbone with three pretraining runs (the first probed with every subset seed, an extra run S with subset
    seed S in both modes) is one row name of the table, its rows name their run (pretrain_seed), and its verdicts take
    one value per run (the mean over its subset seeds): 3 values, two runs never merged into one; the random init
    keeps one value per seed. The check that every embedding holds the same jets passes with the extra embeddings."""
    import shutil

    from common.results import claims
    from common.results.tables import collect_results, write_table

    monkeypatch.setattr(compare, "COMPARE_GRID", (5,))
    recipe = {**compare.finetune_recipe(), "steps": 4, "val_every": 2, "batch_size": 5, "max_test_jets": 30}
    monkeypatch.setattr(compare, "finetune_recipe", lambda: recipe)
    cfg = _cfg(data_root)
    d_in = build_dataset(cfg["data"], "test", progress=False)[np.arange(2)].x.shape[-1]
    weights = {}
    for s in range(3):
        torch.manual_seed(10 + s)
        weights[s] = Toy(d_in).state_dict()
    emb = tmp_path / "m" / "embed"
    for s, seeds in ((0, None), (1, [1]), (2, [2])):
        out = emb / ("toy_pretrained" + (f"_seed{s}" if s else ""))
        kw = dict(random_init=False, subset_seeds=seeds)
        compare.embed_set(lambda: Toy(d_in), lambda m, s=s: m.load_state_dict(weights[s]), cfg, out, name="toy",
                          max_test_jets=30, extra={"pretrain_seed": s}, **kw)
        if s < 2:  # the fine-tuned mode of runs 0 and 1: subset seeds 0-2 and 1
            compare.finetune_set(lambda: Toy(d_in), lambda m, s=s: m.load_state_dict(weights[s]), cfg, out,
                                 grid=[5], **kw)
    compare.embed_set(lambda: Toy(d_in), None, cfg, emb / "toy_random", name="toy", random_init=True,
                      max_test_jets=30)
    assert sorted(p.parent.name for p in emb.glob("toy_pretrained_seed1/finetune/n5/seed*/result.json")) == ["seed1"]
    decided = []
    real_decide = claims.decide
    monkeypatch.setattr(claims, "decide", lambda a, b, *x, **k: decided.append((list(a), list(b)))
                        or real_decide(a, b, *x, **k))
    rows, meta = compare.compare(tmp_path)
    pre = {md: sorted((r["pretrain_seed"], r["seed"]) for r in rows if r["init"] == "pretrained" and r["mode"] == md)
           for md in compare.MODES.values()}
    assert pre == {"frozen probe": [(0, 0), (0, 1), (0, 2), (1, 1), (2, 2)],
                   "fine-tuned": [(0, 0), (0, 1), (0, 2), (1, 1)]}
    assert {r["model"] for r in rows if r["init"] != "none"} == {"toy"}
    rnd = [r for r in rows if r["init"] == "random" and r["mode"] == "frozen probe"]
    assert sorted(r["seed"] for r in rnd) == [0, 1, 2] and not any("pretrain_seed" in r for r in rnd)
    # frozen: toy pretrained against its random init from one value per pretraining run, against 3 seeds
    frozen = [r for r in rows if r["mode"] == "frozen probe" and r["init"] == "pretrained"]
    per_run = [np.mean([r["accuracy"] for r in frozen if r["pretrain_seed"] == s]) for s in range(3)]
    assert (per_run, [r["accuracy"] for r in sorted(rnd, key=lambda r: r["seed"])]) in decided
    assert "frozen probe, 5 per class: toy pretrained > random init" in meta["notes"]
    assert "(3 pretraining runs vs 3 seeds)" in meta["notes"] and "(2 pretraining runs vs" in meta["notes"]
    assert "n pretraining runs" in meta["notes"] and "one of its 3 pretraining runs" in meta["notes"]
    # the table file validates and keeps the runs apart: seed 1 of run 0 and of run 1 are two replicates
    write_table(tmp_path / "tables", compare.TABLE_ID, rows, meta)
    res = collect_results(tmp_path / "tables")[compare.TABLE_ID]["rows"]
    assert sorted((r["mode"], r["pretrain_seed"]) for r in res if r["init"] == "pretrained" and r["seed"] == 1) == [
        ("fine-tuned", 0), ("fine-tuned", 1), ("frozen probe", 0), ("frozen probe", 1)]
    # refused: the same pretraining run embedded twice; a run that does not name itself beside another
    _copy_embedding(emb / "toy_pretrained_seed1", emb / "toy_pretrained_again", {})
    with pytest.raises(ValueError, match="embedded once"):
        compare.compare(tmp_path)
    _copy_embedding(emb / "toy_pretrained_seed1", emb / "toy_pretrained_again", {"pretrain_seed": None})
    with pytest.raises(ValueError, match="merged with another run"):
        compare.compare(tmp_path)
    shutil.rmtree(emb / "toy_pretrained_again")
    # a fine-tuned run of a subset seed its embed step was not given is refused
    shutil.copytree(emb / "toy_pretrained" / "finetune" / "n5" / "seed0",
                    emb / "toy_pretrained_seed1" / "finetune" / "n5" / "seed0")
    with pytest.raises(ValueError, match="not one of its embed step's subset seeds"):
        compare.compare(tmp_path)


def _copy_embedding(src, dst, info_update: dict):
    """A copy of src's embeddings.npz in dst with its info updated."""
    import json

    e = compare.read_embeddings(src / compare.EMBED_FILE)
    e["info"] = np.array(json.dumps({**e["info"], **info_update}))
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / compare.EMBED_FILE, "wb") as f:
        np.savez(f, **e)


def test_subset_seeds_of_an_embed_step():
    assert compare.check_subset_seeds(None) == list(compare.COMPARE_SEEDS)
    assert compare.check_subset_seeds([2]) == [2]
    for bad in ([5], [1, 1], []):
        with pytest.raises(ValueError, match="COMPARE_SEEDS"):
            compare.check_subset_seeds(bad)
    with pytest.raises(ValueError, match="random init"):  # a random init is built once per subset seed
        compare.check_subset_seeds([1], random_init=True)


def test_forward_flops_per_jet_counts_the_backbones_matrix_products():
    import torch
    from torch import nn

    from common.results.compare import _cost, forward_flops_per_jet

    class Lin(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 7)

        def forward(self, x):
            return self.lin(x), None

    x = torch.randn(4, 10, 5)                                     # 4 jets x 10 particles x 5 features
    assert forward_flops_per_jet(Lin(), x) == 2 * 10 * 5 * 7       # one (10 x 5) @ (5 x 7) product per jet
    assert "0.0007 MFLOP forward per jet" in _cost("m", {"n_params": 42, "forward_flops_per_jet": 700.0})


def test_finetuned_mode_is_one_recipe_on_the_frozen_modes_subsets(data_root, tmp_path, monkeypatch):
    """Every backbone is fine-tuned with common/results/compare.yaml's head and recipe on the frozen mode's labelled subsets
    and test jets; the random init gets its data statistics set first; another recipe is refused."""
    import json

    import common.training.probe

    monkeypatch.setattr(compare, "COMPARE_GRID", (5,))
    recipe = {**compare.finetune_recipe(), "steps": 6, "val_every": 3, "batch_size": 5, "max_test_jets": 30,
              "max_val_jets": 18}
    monkeypatch.setattr(compare, "finetune_recipe", lambda: recipe)
    stats_set = []
    real_set = common.training.probe.set_norm_stats
    monkeypatch.setattr(common.training.probe, "set_norm_stats",
                        lambda m, b, f: stats_set.append(len(b)) or real_set(m, b, f))
    cfg = _cfg(data_root)
    d_in = build_dataset(cfg["data"], "test", progress=False)[np.arange(2)].x.shape[-1]
    torch.manual_seed(0)
    trained = Toy(d_in)
    loaded = []

    def load(m):
        loaded.append(1)
        m.load_state_dict(trained.state_dict())

    for random in (False, True):
        out = tmp_path / "m" / "embed" / f"toy_{random}"
        compare.embed_set(lambda: Toy(d_in), load, cfg, out, name="toy", random_init=random, max_test_jets=30)
        n_loaded, n_set = len(loaded), len(stats_set)
        compare.finetune_set(lambda: Toy(d_in), load, cfg, out, random_init=random, grid=[5, 1000])
        # 1000 per class does not fit the split: only n=5 runs, three seeds
        assert sorted(p.parent.name for p in out.glob("finetune/n*/seed*/result.json")) == ["seed0", "seed1", "seed2"]
        assert (len(loaded) - n_loaded, len(stats_set) - n_set) == ((0, 3) if random else (3, 0))
    rows, meta = compare.compare(tmp_path)
    ft = [r for r in rows if r["mode"] == "fine-tuned"]
    assert sorted((r["init"], r["seed"]) for r in ft) == [(i, s) for i in ("pretrained", "random") for s in (0, 1, 2)]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["n_per_class"] == 5 for r in ft)
    assert meta["keys"] == ["model", "init", "mode", "n_per_class"] and "mean_max" in meta["notes"]
    assert "fine-tuned, 5 per class: toy pretrained > random init" in meta["notes"]
    subsets, _ = compare.compare_subsets(cfg["data"], grid=(5,))
    for res in tmp_path.glob("m/embed/*/finetune/n5/seed*/result.json"):
        r = json.loads(res.read_text())
        assert r["n_train_jets"] == len(subsets[(5, r["seed"])]) == 15 and r["n_test_jets"] == 30
        assert r["finetune"]["head"] == {"kind": "mean_max"} and r["finetune"]["backbone_lr_factor"] == 1.0
    # a run of another recipe is refused, naming the key
    res = next(tmp_path.glob("m/embed/toy_True/finetune/n5/seed1/result.json"))
    r = json.loads(res.read_text())
    r["finetune"]["lr"] = 1.0
    res.write_text(json.dumps(r))
    with pytest.raises(ValueError, match=r"another recipe.*\['lr'\]"):
        compare.compare(tmp_path)


def test_the_frozen_random_init_is_one_backbone_per_seed(data_root, tmp_path, monkeypatch):
    """Frozen mode: a random init is a replicate like the subset draw. The random-init embedding step builds one
    backbone per seed of COMPARE_SEEDS (under that seed, as the fine-tuned mode does), and the probe of seed S reads
    the embeddings of the backbone built under S; the pretrained backbone is one set of embeddings for every seed."""
    monkeypatch.setattr(compare, "COMPARE_GRID", (5,))
    cfg = _cfg(data_root)
    d_in = build_dataset(cfg["data"], "test", progress=False)[np.arange(2)].x.shape[-1]
    built = []

    def build():
        built.append(torch.initial_seed())
        return Toy(d_in)

    rnd, pre = tmp_path / "m" / "embed" / "toy_random", tmp_path / "m" / "embed" / "toy_pretrained"
    compare.embed_set(build, None, cfg, rnd, name="toy", random_init=True, max_test_jets=30)
    assert sorted(built) == list(compare.COMPARE_SEEDS)
    compare.embed_set(lambda: Toy(d_in), lambda m: None, cfg, pre, name="toy", random_init=False, max_test_jets=30)
    e = compare.read_embeddings(rnd / compare.EMBED_FILE)
    firsts = [e["x_train"]] + [e[f"x_train_seed{s}"] for s in compare.COMPARE_SEEDS[1:]]
    assert not np.allclose(firsts[0], firsts[1]) and not np.allclose(firsts[1], firsts[2])  # three different inits
    assert "x_train_seed1" not in compare.read_embeddings(pre / compare.EMBED_FILE)
    seen = {}
    real_probe = compare.linear_probe

    def spy(x_train, y_train, x_test, y_test, *, seed=0, **kw):
        seen.setdefault(seed, []).append(x_test)
        return real_probe(x_train, y_train, x_test, y_test, seed=seed, **kw)

    monkeypatch.setattr(compare, "linear_probe", spy)
    compare.compare(tmp_path)
    for s in compare.COMPARE_SEEDS:  # per seed: the pretrained embedding (same every seed), the random init of seed s
        want = e["x_test"] if s == compare.COMPARE_SEEDS[0] else e[f"x_test_seed{s}"]
        assert any(np.array_equal(x, want) for x in seen[s])
        others = [e["x_test"]] + [e[f"x_test_seed{t}"] for t in compare.COMPARE_SEEDS[1:]]
        assert sum(any(np.array_equal(x, o) for x in seen[s]) for o in others) == 1


def test_embed_main_of_an_extra_pretraining_run(data_root, tmp_path, monkeypatch):
    """`embed_main ... --subset-seeds 1` (run_steps.sh: the extra pretraining run 1): both modes with subset seed 1
    only, the rows' pretrain_seed read from the pretraining run's config.yaml; refused with --random-init."""
    import yaml

    monkeypatch.setattr(compare, "COMPARE_GRID", (5,))
    recipe = {**compare.finetune_recipe(), "steps": 4, "val_every": 2, "batch_size": 5, "max_test_jets": 3000}
    monkeypatch.setattr(compare, "finetune_recipe", lambda: recipe)
    cfg_path, pre = tmp_path / "ft.yaml", tmp_path / "pretrain_seed1"
    cfg_path.write_text(yaml.safe_dump(_cfg(data_root)))
    pre.mkdir()
    (pre / "config.yaml").write_text(yaml.safe_dump({"seed": 1, "train": {"batch_size": 4}}))
    d_in = build_dataset(_cfg(data_root)["data"], "test", progress=False)[np.arange(2)].x.shape[-1]

    def fns(cfg):
        return (lambda: Toy(d_in)), (lambda m: None)

    out = tmp_path / "m" / "embed" / "toy_pretrained_seed1"
    compare.embed_main("test", ["--config", str(cfg_path), "--out", str(out), "--name", "toy", "--finetune-grid", "5",
                                "--subset-seeds", "1"], fns, lambda cfg: pre)
    e = compare.read_embeddings(out / compare.EMBED_FILE)
    assert e["info"]["subset_seeds"] == [1] and e["info"]["pretrain_seed"] == 1
    assert [p.parent.name for p in out.glob("finetune/n5/seed*/result.json")] == ["seed1"]
    with pytest.raises(SystemExit, match="random init"):
        compare.embed_main("test", ["--config", str(cfg_path), "--out", str(tmp_path / "r"), "--name", "toy",
                                    "--random-init", "--subset-seeds", "1"], fns, lambda cfg: pre)
