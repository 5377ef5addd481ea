"""The HEP-JEPA shortcut ablation's reference arm at seed 0 reuses the main pretraining where it is the same run (the
paper profile): hepjepa.pretrain's train.reuse links a finished run of the same pretraining sections, and trains
otherwise; run_all lists the reuse for paper only."""
import json
import subprocess

import torch
import yaml

from common.training.config import load_config
from common.training.distributed import Dist

from hepjepa.pretrain import reusable, reuse_run


def _finished(tmp_path, cfg):
    run = tmp_path / "main"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"model": {}}, run / "checkpoint.pt")
    (run / "log.jsonl").write_text(json.dumps({"step": 1, "between_jet_share": 0.3}) + "\n")
    (run / "done.json").write_text(json.dumps({"steps": 7}))
    return run


def test_the_paper_reference_arm_is_the_main_pretraining_and_mini_is_not(tmp_path):
    main = _finished(tmp_path, load_config("hepjepa/configs/pretrain.yaml", ["data.root=/d"]))
    assert reusable(load_config("hepjepa/configs/shortcut_base.yaml", ["data.root=/d", "seed=0"]), main)
    assert not reusable(load_config("hepjepa/configs/shortcut_base.yaml", ["data.root=/d", "seed=1"]), main)
    assert not reusable(load_config("hepjepa/configs/shortcut_inputs.yaml", ["data.root=/d", "seed=0"]), main)
    assert not reusable(load_config("hepjepa/configs/shortcut_base.yaml", ["data.root=/elsewhere", "seed=0"]), main)
    mini = tmp_path / "mini"
    mini.mkdir()
    m = _finished(mini, load_config("hepjepa/configs/mini/pretrain.yaml", ["data.root=/d"]))
    assert not reusable(load_config("hepjepa/configs/mini/shortcut_base.yaml", ["data.root=/d", "seed=0"]), m)
    (main / "done.json").unlink()                                  # unfinished: not reusable
    assert not reusable(load_config("hepjepa/configs/shortcut_base.yaml", ["data.root=/d", "seed=0"]), main)


def test_reuse_links_the_run_and_marks_it_done(tmp_path):
    main = _finished(tmp_path, load_config("hepjepa/configs/pretrain.yaml", ["data.root=/d"]))
    out = tmp_path / "arm"
    out.mkdir()
    cfg = load_config("hepjepa/configs/shortcut_base.yaml", ["data.root=/d", "seed=0", f"train.reuse={main}"])
    summary = reuse_run(cfg, out, Dist())
    assert summary["steps"] == 7 and summary["reused"] == str(main.resolve())
    assert (out / "checkpoint.pt").resolve() == (main / "checkpoint.pt").resolve()
    assert (out / "log.jsonl").read_text() == (main / "log.jsonl").read_text()
    assert json.loads((out / "done.json").read_text())["reused"] == str(main.resolve())
    other = load_config("hepjepa/configs/shortcut_base.yaml", ["data.root=/d", "seed=2", f"train.reuse={main}"])
    assert reuse_run(other, tmp_path, Dist()) is None              # another run: trained, not linked


def test_run_all_lists_the_reuse_in_the_paper_profile_only(repo_root):
    def steps(profile):
        res = subprocess.run(["bash", "run_all.sh", "--list", "--only", "hepjepa", "--profile", profile, "--data-dir",
                              "/nonexistent", "--out-dir", "/nonexistent/runs"], cwd=repo_root, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout
    paper, mini = steps("paper"), steps("mini")
    assert "seed0/pretrain data.root=/nonexistent/JetClass/Pythia seed=0 train.reuse=/nonexistent/runs/hepjepa/pretrain" \
        in paper
    assert paper.count("train.reuse=") == 1 and "train.reuse=" not in mini
