"""Hostile round 2 on the surfaces of reuse (common/training/pretrained.py, common/data/own_jets.py), the frozen cache's
settings, the read-only data root's XDG fallback and the claims' replication over pretraining runs. Each case ends in
one line naming the file or key and what was expected (common.cli's USER_ERRORS), never a traceback, a silent wrong
result or a user's file overwritten. BENCHMARKS.md "Hostile round 2: reuse, frozen cache, margins" lists every case."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.cli import USER_ERRORS
from common.data.features import DataError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, USER_ERRORS), msg
    return msg


def _checkpoint(d: Path, **change) -> Path:
    """A tiny MPMv1 pretraining checkpoint with a `reuse` entry (keys p_<name> change its preprocessing)."""
    from common.training.checkpoint import save_checkpoint

    from tests.test_reuse import tiny_mpmv1
    model, info, _ = tiny_mpmv1()
    for k, v in change.items():
        (info["preprocessing"] if k.startswith("p_") else info)[k.removeprefix("p_")] = v
    d.mkdir(parents=True, exist_ok=True)
    save_checkpoint(d / "checkpoint.pt", {"model": model.state_dict(), "step": 1, "reuse": info})
    return d


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from common.training.pretrained import load
    return load(_checkpoint(tmp_path_factory.mktemp("pre") / "run"))


# ------------------------------------------------------------------------------------------- 1. the reuse entry
@pytest.mark.parametrize("change, expected", [
    (dict(method="mpm.pretrained"), r"method 'mpm.pretrained' is not one of"),                 # a module path
    (dict(method=["mpmv1"]), r"method \['mpmv1'\] is not one of"),                             # was: TypeError
    (dict(config="x"), r"reuse\.config = 'x': expected the run's resolved config"),
    (dict(preprocessing="x"), r"reuse\.preprocessing = 'x': expected a mapping"),
    (dict(preprocessing={}), r"reuse\.preprocessing\.num_particles = None: expected an integer >= 1"),
    (dict(p_num_particles=-3), r"num_particles = -3: expected an integer >= 1"),               # was: silent
    (dict(p_num_particles=0), r"num_particles = 0: expected an integer >= 1"),
    (dict(p_num_particles="12"), r"num_particles = '12': expected an integer >= 1"),
    (dict(p_features="os.system"), r"checkpoint\.pt: unknown feature set 'os.system'"),
    (dict(p_class_names="QCD"), r"class_names = 'QCD': expected a non-empty list of strings"),  # was: ['Q','C','D']
    (dict(p_fitted={"quantiles": "a", "references": "b"}), r"fitted = .*: expected \{quantiles, references\}"),
    (dict(p_fitted={"quantiles": torch.zeros(5, 3)}), r"fitted = .*: expected \{quantiles, references\}"),
    (dict(p_fitted={"quantiles": torch.full((5, 3), math.nan), "references": torch.linspace(0, 1, 5)}),
     r"expected finite quantiles"),                                                            # was: silent NaN
])
def test_a_damaged_reuse_entry_is_one_line_naming_the_file_and_key(tmp_path, change, expected):
    from common.training.pretrained import load
    with pytest.raises(USER_ERRORS) as e:
        load(_checkpoint(tmp_path / "run", **change))
    assert "checkpoint.pt" in _one_line(e) and __import__("re").search(expected, str(e.value)), str(e.value)


def test_a_run_folder_with_only_its_config_is_named(tmp_path):
    from common.training.pretrained import load
    (tmp_path / "config.yaml").write_text("a: 1\n")
    with pytest.raises(FileNotFoundError, match=r"no classifier\.pt / best\.pt / checkpoint\.pt in this run folder"):
        load(tmp_path)


# ------------------------------------------------------------------------------------------- 2. your own jets
def _jets(n=6, **kw):
    from common.training.pretrained import example_jets
    return {k: v.copy() for k, v in example_jets(n, **kw).items()}


def _bad(name):
    j = _jets()
    if name == "px shorter":
        j["px"] = j["px"][:4]
    elif name == "px narrower":
        j["px"] = j["px"][:, :10]
    elif name == "negative energy":
        j["energy"][0, 0] = -5.0                               # was: silently dropped (mask = energy > 0)
    elif name == "negative energy, masked":
        j["mask"] = j["energy"] > 0
        j["energy"][0, 0] = -5.0                               # was: silently used
    elif name == "no particles":
        for k in ("px", "py", "pz", "energy"):
            j[k][2] = 0.0                                      # was: an all-zero embedding
    elif name == "no jets":
        j = {k: v[:0] for k, v in j.items()}                   # was: numpy's "need at least one array"
    elif name == "string px":
        j["px"] = j["px"].astype(str)                          # was: parsed silently
    elif name == "ragged lists":
        j = {k: [v[0, :3].tolist(), v[1, :5].tolist()] for k, v in j.items()}
    elif name == "nan charge":
        j["charge"][:] = np.nan                                # was: silent
    elif name == "nan jet":
        j["jet"] = np.full((6, 6), np.nan)                     # was: silent
    elif name == "string labels":
        j["label"] = np.array(["a"] * 6)
    return j


@pytest.mark.parametrize("name, expected", [
    ("px shorter", r"the four-momenta differ in shape \(px \(4, 30\), py \(6, 30\)"),
    ("px narrower", r"the four-momenta differ in shape \(px \(6, 10\)"),
    ("negative energy", r"1 particle\(s\) with negative energy \(non-physical\), first: jet 0, particle 0"),
    ("negative energy, masked", r"negative energy"),
    ("no particles", r"1 jet\(s\) without particles .* first: jet 2"),
    ("no jets", r"no jets \(the arrays have 0 rows\)"),
    ("string px", r"'px' must be a \(jets, particles\) array of numbers"),
    ("ragged lists", r"'px' has rows of different lengths"),
    ("nan charge", r"non-finite 'charge' among the real particles"),
    ("nan jet", r"non-finite values in 'jet'"),
    ("string labels", r"'label' must hold integer class numbers"),
])
def test_bad_own_jets_are_one_line_naming_the_key(model, name, expected):
    with pytest.raises(DataError, match=expected) as e:
        model.embed(_bad(name))
    _one_line(e)


def test_awkward_arrays_of_the_wrong_nesting_are_named():
    ak = pytest.importorskip("awkward")
    from common.data.own_jets import raw_jets
    j = _jets()
    mask = j["energy"] > 0
    jag = {k: ak.Array([row[m] for row, m in zip(v, mask)]) for k, v in j.items()}
    for bad, expected in [({k: ak.Array([[r.tolist()] for r in v]) for k, v in jag.items()}, "got 3 dimensions"),
                          ({k: v[0] for k, v in jag.items()}, "got 1 dimensions"),
                          ({**jag, "px": ak.Array([["a"]] * 6)}, "'px' is not a jagged array of numbers"),
                          ({**jag, "px": jag["px"][:, :2]}, "the four-momenta differ in shape")]:
        with pytest.raises(DataError, match=expected) as e:
            raw_jets(bad)
        _one_line(e)


def test_jets_longer_than_num_particles_keep_their_leading_pt_particles(model):
    """Truncation to the checkpoint's num_particles keeps the highest-pT particles (every reader's order), whatever
    order the user gives them in, relative to the axis of the whole jet (docs/reuse.md)."""
    j = _jets(4, particles=40)
    rng = np.random.default_rng(1)
    perm = rng.permutation(40)
    shuffled = {k: v[:, perm] for k, v in j.items()}
    pt = np.hypot(j["px"], j["py"])
    top = np.argsort(-pt, axis=1, kind="stable")[:, :12]
    leading = np.stack([np.take_along_axis(j[k], top, 1) for k in ("px", "py", "pz", "energy")], -1)
    a, b = model.arrays(shuffled), model.arrays(j)
    assert a["mask"].sum(1).tolist() == [12] * 4
    assert np.array_equal(a["p4"], leading) and np.array_equal(a["x"], b["x"])   # the 12 leading, in pT order
    assert np.array_equal(model.embed(shuffled)["jet"], model.embed(j)["jet"])


def test_file_paths_that_are_folders_or_user_arrays_are_named(model, tmp_path):
    (tmp_path / "d.h5").mkdir()
    with pytest.raises(DataError, match=r"d\.h5: a folder, not a file"):
        model.embed(tmp_path / "d.h5")
    np.savez(tmp_path / "mine.npz", **_jets())
    with pytest.raises(DataError, match=r"mine\.npz: holds per-particle arrays, not the quark-gluon format"):
        model.embed(str(tmp_path / "mine.npz"))
    (tmp_path / "bad.root").write_text("junk")
    with pytest.raises(DataError, match=r"bad\.root: cannot open as a ROOT file") as e:
        model.embed(tmp_path / "bad.root")
    _one_line(e)


@pytest.mark.parametrize("kw, expected", [(dict(max_jets=-1), "max_jets = -1"), (dict(max_jets=0), "max_jets = 0"),
                                          (dict(batch_size=0), "batch_size = 0")])
def test_embed_sizes_below_one_are_refused(model, kw, expected):
    with pytest.raises(ValueError, match=expected):   # max_jets=-1 dropped the last jet silently
        model.embed(_jets(), **kw)


# ------------------------------------------------------------------------------------------- 3. finetune
@pytest.mark.parametrize("labels, kw, expected", [
    (lambda y: y.reshape(20, 2), {}, r"labels have shape \(20, 2\); expected \(40,\)"),     # was: reshaped silently
    (lambda y: y + 0.5, {}, r"labels must be integer class numbers"),                       # was: truncated to int
    (lambda y: y - 1, {}, r"labels must be integer class numbers"),                         # was: IndexError
    (lambda y: np.array(["a", "b"] * 20), {}, r"labels must be integer class numbers"),
    (lambda y: np.zeros(40), {}, r"the training jets have labels \[0\]"),                    # was: a 1-class tagger
    (lambda y: y * 2, {}, r"no jets of class \[1\]"),                                         # was: class '1' empty
    (lambda y: y, dict(class_names=["QCD"]), r"1 class_names \['QCD'\] for labels 0-1"),    # was: IndexError
    (lambda y: y, dict(class_names=["a", "b", "c"]), r"3 class_names"),                     # was: silent
    (lambda y: y, dict(class_names="ab"), r"class_names = 'ab'"),                           # was: ['a', 'b']
    (lambda y: y, dict(class_names=["a", "a"]), r"distinct"),
    (lambda y: y, dict(steps=0), r"finetune\.steps must be >= 1"),
    (lambda y: y, dict(steps=-5), r"finetune\.steps must be >= 1"),
    (lambda y: y, dict(cache_frozen_max_gb=-1), r"finetune\.cache_frozen_max_gb = -1"),
])
def test_bad_finetune_inputs_are_refused_before_anything_is_written(model, tmp_path, labels, kw, expected):
    from common.training.pretrained import finetune
    j, y = _jets(40), np.arange(40) % 2
    with pytest.raises(ValueError, match=expected) as e:
        finetune(model, j, labels(y), tmp_path / "out", **{"steps": 2, "batch_size": 8, **kw})
    _one_line(e)
    assert not (tmp_path / "out").exists()


def test_val_labels_of_the_wrong_length_are_refused(model, tmp_path):
    from common.training.pretrained import finetune
    j, y = _jets(40), np.arange(40) % 2
    with pytest.raises(DataError, match=r"val labels have shape \(3,\); expected \(40,\)"):   # was: accepted
        finetune(model, j, y, tmp_path / "out", val=(j, y[:3]), steps=2, batch_size=8)


def test_finetune_never_writes_into_a_users_folder_or_over_another_fine_tuning(model, tmp_path):
    from common.training.pretrained import finetune
    j, y = _jets(40), np.arange(40) % 2
    user = tmp_path / "mine"
    user.mkdir()
    files = {"thesis.tex": "mine", "result.json": '{"my": 1}', "classifier.pt": "precious"}
    for k, v in files.items():
        (user / k).write_text(v)
    with pytest.raises(DataError, match=r"mine is not empty and not a fine-tuning folder of `finetune`"):
        finetune(model, j, y, user, steps=2, batch_size=8)      # was: result.json and classifier.pt overwritten
    assert {p.name: p.read_text() for p in user.iterdir()} == files
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"afile is a file"):    # was: FileExistsError traceback
        finetune(model, j, y, tmp_path / "afile", steps=2, batch_size=8)
    tagger = finetune(model, j, y, tmp_path / "tag", steps=2, batch_size=8)
    probs = tagger.predict(j)
    assert (tmp_path / "tag" / ".jetfm-run").is_file()          # the kit's run folder: --restart rules apply
    # the same call again reads the finished run back; other labels there are refused (was: the old tagger returned)
    assert np.array_equal(finetune(model, j, y, tmp_path / "tag", steps=2, batch_size=8).predict(j), probs)
    with pytest.raises(DataError, match=r"tag holds a fine-tuning of other jets, labels, settings or backbone"):
        finetune(model, j, 1 - y, tmp_path / "tag", steps=2, batch_size=8)
    # export: never onto a folder or a non-.onnx file (was: IsADirectoryError; the pretraining checkpoint overwritten)
    from common.training.pretrained import export
    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(ValueError, match=r"d\.onnx is a folder"):
        export(tagger, tmp_path / "d.onnx")
    ckpt = tmp_path / "tag" / "classifier.pt"
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"classifier\.pt: expected a file name ending in \.onnx"):
        export(tagger, ckpt)
    assert ckpt.read_bytes() == before
    with pytest.raises(ValueError, match=r"cannot create the folder .*afile"):
        export(tagger, tmp_path / "afile" / "t.onnx")
    assert export(tagger, tmp_path / "new" / "deep" / "t.onnx").is_file()
    assert not list((tmp_path / "new" / "deep").glob("*.tmp"))


def test_export_cli_errors_are_one_line(tmp_path):
    _checkpoint(tmp_path / "pre")
    res = subprocess.run([sys.executable, "-m", "common.training.pretrained", "export", str(tmp_path / "pre"),
                          str(tmp_path / "x.onnx")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and "no classification head" in err[0], res.stderr


# ------------------------------------------------------------------------------------------- 4. frozen cache settings
@pytest.mark.parametrize("key, value", [("cache_frozen_max_gb", -1), ("cache_frozen_max_gb", 0),
                                        ("cache_frozen_max_gb", "8"), ("cache_frozen_max_gb", "lots"),
                                        ("cache_frozen_max_gb", None), ("cache_frozen_max_gb", True),
                                        ("cache_frozen_max_gb", math.inf), ("cache_frozen", "yes"),
                                        ("cache_frozen", None), ("cache_frozen", 1)])
def test_frozen_cache_settings_are_one_config_error(key, value):
    from common.training.finetune_config import finetune_settings
    with pytest.raises(ValueError, match=rf"config: finetune\.{key} = .*expected") as e:
        finetune_settings({"finetune": {"mode": "fixed", key: value}})
    _one_line(e)


def test_frozen_cache_null_in_a_yaml_is_refused():
    from common.training.config import load_config
    from common.training.finetune_config import finetune_settings
    for over in ("finetune.cache_frozen=null", "finetune.cache_frozen_max_gb=0"):
        with pytest.raises(ValueError, match=r"config: finetune\.cache_frozen"):   # was: silently off / no cache
            finetune_settings(load_config("mpm/configs/smoke/finetune_v2.yaml", [over]))


# ------------------------------------------------------------------------------------------- 5. XDG fallback
@pytest.mark.parametrize("xdg", ["relative/cache", ""])
def test_a_relative_or_empty_xdg_cache_home_is_ignored(tmp_path, monkeypatch, xdg):
    """XDG Base Directory spec: a relative $XDG_CACHE_HOME is invalid and ignored (was: a cache under the cwd)."""
    from common.data import datasets as D
    root = tmp_path / "ro"
    root.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(D, "_CACHE_CHOICE", {})
    monkeypatch.setattr(D, "_writable", lambda d: not d.startswith(str(root)))
    got = D._cache_dir({"root": str(root)})
    assert got.startswith(str(tmp_path / "home" / ".cache" / "jetfm")), got


# ------------------------------------------------------------------------------------------- 6. claims
def test_a_cell_mixing_rows_with_and_without_pretrain_seed_is_refused():
    from common.results.claims import pretraining_run_values
    rows = [{"pretrain_seed": 0, "auc": [0.9, 0.91]}, {"pretrain_seed": 1, "auc": [0.92]}, {"auc": [0.5]}]
    with pytest.raises(ValueError, match=r"claim x: replicate: pretraining, but 1 of the 3 rows .* no pretrain_seed"):
        pretraining_run_values(rows, "auc", where="claim x")      # was: 0.5 counted as a third pretraining run
    assert pretraining_run_values([{"auc": [0.9, 0.91, 0.92]}], "auc") == ([pytest.approx(0.91)], [3])


def test_power_with_zero_se_or_one_value_a_side():
    from common.results.claims import decide, power_text
    v = decide([0.9] * 3, [0.9] * 3, "higher", None, None)
    assert power_text({}, v[0], v[3], v[2], 0.0) == "2 SE = 0; |published d| = 0"      # was: "underpowered"
    v = decide([0.9] * 3, [0.8] * 3, "higher", None, None)
    assert v[0] == "reproduced"
    v = decide([0.9], [0.8], "higher", None, None)
    assert power_text({}, v[0], v[3], v[2], 0.1) == "no SE (fewer than 2 values a side)"


@pytest.mark.parametrize("margin, expected", [
    ("-0.01", r"not_worse needs `margin:` > 0"), (".nan", r"not_worse needs `margin:` > 0"),
    (".inf", r"not_worse needs `margin:` > 0"), ("'0.01'", r"not_worse needs `margin:` > 0"), (None, r"got None"),
])
def test_margin_values_are_checked(tmp_path, margin, expected):
    from common.results import claims as C

    from tests.test_hostile_results import CLAIM_YAML, PUB
    text = CLAIM_YAML + "    test: not_worse\n" + (f"    margin: {margin}\n" if margin is not None else "")
    (tmp_path / "claims.yaml").write_text(text)
    with pytest.raises(ValueError, match=expected) as e:
        C.load_claims(tmp_path / "claims.yaml", PUB)
    _one_line(e)
    (tmp_path / "claims.yaml").write_text(CLAIM_YAML + "    margin: 0.01\n")
    with pytest.raises(ValueError, match=r"margin is only for test: not_worse"):
        C.load_claims(tmp_path / "claims.yaml", PUB)


def test_json_of_a_finetune_folder_is_plain(model, tmp_path):
    """finetune_inputs.json is a hash, nothing that could be run."""
    from common.training.pretrained import FINETUNE_INPUTS, finetune
    finetune(model, _jets(20), np.arange(20) % 2, tmp_path / "t", steps=1, batch_size=8)
    assert set(json.loads((tmp_path / "t" / FINETUNE_INPUTS).read_text())) == {"sha256"}
