"""common.training.config: base inheritance, strict keys, overrides, free-form sections, atomic save."""
import argparse

import pytest
import yaml

from common.training.config import ConfigError, add_config_args, config_from_args, load_config, save_config


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def chain(tmp_path):
    _write(tmp_path / "root.yaml", """
seed: 0
optim: {lr: 1.0e-3, weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8}
model: {dim: 128, depth: 4}
data: {root: data/x, classes: null}
extra: {}
""")
    _write(tmp_path / "mini" / "mid.yaml", """
base: ../root.yaml
model: {depth: 2}
optim: {lr: 5.0e-4}
""")
    _write(tmp_path / "mini" / "smoke" / "leaf.yaml", """
base: ../mid.yaml
model: {dim: 16}
data: {classes: [QCD, Top]}
extra: {anything: {goes: 1}}
""")
    return tmp_path


def test_inheritance_merges_recursively(chain):
    cfg = load_config(chain / "mini" / "smoke" / "leaf.yaml")
    assert cfg["model"] == {"dim": 16, "depth": 2}
    assert cfg["optim"] == {"lr": 5.0e-4, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-8}
    assert isinstance(cfg["optim"]["eps"], float)  # `1e-8` is a float, not the YAML 1.1 string
    assert cfg["data"] == {"root": "data/x", "classes": ["QCD", "Top"]}  # null in root accepts a list
    assert cfg["extra"] == {"anything": {"goes": 1}}  # {} in root = free-form
    assert "base" not in cfg


def test_overrides_parse_yaml_values(chain):
    cfg = load_config(chain / "mini" / "mid.yaml",
                      ["optim.lr=2e-4", "model.depth=7", "optim.betas=[0.8, 0.9]", "data.root=null", "extra.k.j=x"])
    assert cfg["optim"]["lr"] == 2e-4 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["model"]["depth"] == 7
    assert cfg["optim"]["betas"] == [0.8, 0.9]
    assert cfg["data"]["root"] is None
    assert cfg["extra"] == {"k": {"j": "x"}}


def test_unknown_key_in_child_names_file_and_key(chain):
    bad = _write(chain / "mini" / "bad.yaml", "base: mid.yaml\nmodel: {depht: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "bad.yaml" in msg and "model.depht" in msg and "depth" in msg and "dim" in msg


def test_unknown_key_deep_in_chain(chain):
    _write(chain / "mini" / "bad_mid.yaml", "base: ../root.yaml\noptim: {lrr: 1}\n")
    leaf = _write(chain / "mini" / "leaf2.yaml", "base: bad_mid.yaml\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"bad_mid.yaml.*optim\.lrr"):
        load_config(leaf)


def test_unknown_top_level_key(chain):
    bad = _write(chain / "top.yaml", "base: root.yaml\nsed: 1\n")
    with pytest.raises(ConfigError, match="sed.*Did you mean: seed"):
        load_config(bad)


def test_unknown_override_key(chain):
    with pytest.raises(ConfigError, match=r"optim\.lrate"):
        load_config(chain / "root.yaml", ["optim.lrate=1"])
    with pytest.raises(ConfigError, match="nosuch"):
        load_config(chain / "root.yaml", ["nosuch.key=1"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(chain / "root.yaml", ["optim.lr"])


def test_missing_base_and_bad_files(chain):
    bad = _write(chain / "nobase.yaml", "base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="empty"):
        load_config(_write(chain / "empty.yaml", ""))
    with pytest.raises(ConfigError, match="not found"):
        load_config(chain / "absent.yaml")
    a = _write(chain / "a.yaml", "base: b.yaml\n")
    _write(chain / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(a)


def test_save_config_roundtrip_atomic(chain, tmp_path):
    cfg = load_config(chain / "mini" / "smoke" / "leaf.yaml", ["seed=5"])
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, out)
    assert yaml.safe_load(out.read_text()) == cfg
    assert not (tmp_path / "run" / "config.yaml.tmp").exists()
    # the saved file is itself a valid root config
    assert load_config(out) == cfg


def test_argparse_helpers(chain):
    p = add_config_args(argparse.ArgumentParser())
    args = p.parse_args(["--config", str(chain / "root.yaml"), "--out", "/tmp/x", "seed=9", "model.dim=8"])
    cfg = config_from_args(args)
    assert cfg["seed"] == 9 and cfg["model"]["dim"] == 8 and args.out == "/tmp/x"


# ---------------------------------------------------------------------------------------------------------------------
# one loop vocabulary: renamed keys are refused with their new name

@pytest.mark.parametrize("old,new", [("train.max_steps", "train.steps"), ("train.checkpoint_every", "train.ckpt_every"),
                                     ("train.clip", "train.grad_clip"), ("finetune.accumulate", "finetune.grad_accum"),
                                     ("finetune.eval_every", "finetune.val_every"), ("train.device", "device")])
def test_renamed_key_names_its_new_name(tmp_path, old, new):
    section, key = old.split(".")
    root = tmp_path / "root.yaml"
    root.write_text(f"seed: 0\ndevice: auto\n{section}:\n  {new.split('.')[-1]}: 1\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"base: root.yaml\n{section}:\n  {key}: 5\n")
    with pytest.raises(ConfigError, match=rf"child.yaml: key '{old}' was renamed to {new}"):
        load_config(child)
    with pytest.raises(ConfigError, match=rf"'{old}' was renamed to {new}"):
        load_config(root, [f"{old}=5"])
    # the config.yaml of an earlier run (no base: it is its own schema) is refused too
    old_run = tmp_path / "config.yaml"
    old_run.write_text(f"{section}:\n  {key}: 5\n")
    with pytest.raises(ConfigError, match=rf"config.yaml: key '{old}' was renamed to {new}"):
        load_config(old_run)


def test_every_shipped_config_uses_the_loop_vocabulary():
    import glob

    from common.training.config import RENAMED, check_renamed
    files = [f for m in ("mpm", "omnijet", "hepjepa") for f in glob.glob(f"{m}/configs/**/*.yaml", recursive=True)]
    assert len(files) > 50
    for f in files:
        check_renamed(load_config(f), f)  # raises naming the old key
    assert "train.max_steps" in RENAMED


def test_pretrained_config_is_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "arch.yaml").write_text("model: {dim: 8}\n")
    (tmp_path / "m" / "ft.yaml").write_text("pretrained: {config: arch.yaml}\n")
    monkeypatch.chdir(tmp_path.parent)  # anywhere but the file's directory
    cfg = load_config(tmp_path / "m" / "ft.yaml")
    assert cfg["pretrained"]["config"] == str((tmp_path / "m" / "arch.yaml").resolve())
    assert load_config(cfg["pretrained"]["config"])["model"]["dim"] == 8
