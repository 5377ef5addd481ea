"""Every method's fine-tuning section exposes the shared harness's finetune.per_n rules (common/training/finetune.py
apply_per_n), so they can be set from YAML or the command line."""
import pytest

from common.training.config import load_config
from common.training.finetune_config import finetune_settings

RULE = "finetune.per_n=[{min_n: 0, max_n: 1000, modes: [finetune], set: {lr: 0.5}}]"
CONFIGS = [f"hepjepa/configs/{profile}finetune_{task}.yaml" for profile in ("", "mini/", "smoke/")
           for task in ("jetclass", "top", "qg")] + ["hepjepa/configs/pretrain.yaml", "omnijet/configs/finetune.yaml"]


@pytest.mark.parametrize("path", CONFIGS)
def test_per_n_rules_can_be_set_from_the_config(path):
    assert load_config(path)["finetune"]["per_n"] == []            # no per-N rules published
    cfg = load_config(path, [RULE, "finetune.mode=finetune"])
    assert finetune_settings(cfg, n_total=1000)["lr"] == 0.5
    assert finetune_settings(cfg, n_total=1001)["lr"] != 0.5
