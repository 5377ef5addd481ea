"""Fine-tune (or probe) an MPM backbone on labelled jets: a thin script around common.training.finetune.

    python -m mpm.finetune --config mpm/configs/finetune_v1.yaml --out runs/mpm/ft_v1/finetune \
        pretrained.run=runs/mpm/mpmv1 finetune.mode=finetune

Modes (finetune.mode): fixed (frozen backbone: the linear probe), finetune, scratch (same architecture, random init).
finetune.n_per_class may be a list: every N x every seed in finetune.seeds is trained into <out>/n<N>/seed<S>/ and
<out>/summary.json holds mean and std per N (common.training.sweep.run_sweep). Settings that depend on the number of labelled
jets and the mode (MPMv2 recipe) are the finetune.per_n rules of the config.

The backbone architecture comes from the pretraining run (`pretrained.run`/config.yaml), or from `pretrained.config`
(a pretraining YAML, relative to the config file that names it) when there is no run, which is allowed only for
scratch (mpm/build.py backbone_fns).
"""
from __future__ import annotations

from common.cli import cli
from common.training.distributed import cleanup, init_distributed
from common.training.finetune_config import finetune_settings
from common.training.sweep import run_sweep
from common.training.train_utils import mark_done, start_run

from mpm.build import backbone_fns, pretrain_config, require_pretrained_run


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv)
    if run is None:
        return
    cfg, out, config_path = run
    fc = finetune_settings(cfg)
    require_pretrained_run(cfg, fc["mode"], config_path)
    dist = init_distributed(cfg["device"])
    try:
        build, load = backbone_fns(cfg)
        pcfg = pretrain_config(cfg)
        load = load if fc["mode"] != "scratch" else None
        summary = run_sweep(cfg, build, load, out, dist)  # every N with its finetune.per_n rules
        if dist.is_main:
            mark_done(out, {"mode": fc["mode"], "pretrained": cfg["pretrained"]["run"], "method": pcfg["method"],
                            "n_values": list(summary["per_n"])})
    finally:
        cleanup()


if __name__ == "__main__":
    cli(main)
