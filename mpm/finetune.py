"""Fine-tune (or probe) an MPM backbone on labelled jets: a thin script around common.finetune.

    python -m mpm.finetune --config mpm/configs/finetune_v1.yaml --out runs/mpm/ft_v1/finetune \
        pretrained.run=runs/mpm/mpmv1 finetune.mode=finetune

Modes (finetune.mode): fixed (frozen backbone: the linear probe), finetune, scratch (same architecture, random init).
finetune.n_per_class may be a list: every N x every seed in finetune.seeds is trained into <out>/n<N>/seed<S>/ and
<out>/summary.json holds mean and std per N (common.finetune.run_sweep). Settings that depend on the number of labelled
jets and the mode (MPMv2 recipe) are the finetune.per_n rules of the config.

The backbone architecture comes from the pretraining run (`pretrained.run`/config.yaml), or from `pretrained.config`
(a pretraining YAML) when there is no run, which is allowed only for scratch.
"""
from __future__ import annotations

from pathlib import Path

from common.checkpoint import load_checkpoint
from common.config import load_config, save_config
from common.distributed import cleanup, init_distributed
from common.finetune import finetune_settings, run_sweep
from common.train_utils import mark_done, start_run

from mpm.pretrain import build_backbone

# where the fine-tuning backbone lives inside each pretraining model
BACKBONE_PREFIX = {"mpmv1": "backbone.", "mpmv2": "encoder."}


def pretrain_config(cfg: dict) -> dict:
    """The configuration of the pretraining run whose backbone is fine-tuned."""
    p = cfg["pretrained"]
    if p["run"] is not None:
        path = Path(p["run"]) / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"pretrained.run={p['run']}: no config.yaml there (is it a mpm.pretrain run?)")
        pcfg = load_config(path)
    elif p["config"] is not None:
        pcfg = load_config(p["config"], p["overrides"] or [])
    else:
        raise ValueError("config: set pretrained.run (a pretraining run directory) or pretrained.config (a YAML)")
    if pcfg.get("method") not in BACKBONE_PREFIX:
        raise ValueError(f"pretrained run/config has method {pcfg.get('method')!r}; expected mpmv1 or mpmv2")
    for key in ("features", "num_particles"):
        if pcfg["data"][key] != cfg["data"][key]:
            raise ValueError(f"data.{key} = {cfg['data'][key]!r} differs from the pretraining run's "
                             f"{pcfg['data'][key]!r}; the backbone needs the same inputs")
    return pcfg


def backbone_fns(cfg: dict):
    """(build_backbone, load_pretrained or None) for common.finetune."""
    pcfg = pretrain_config(cfg)
    run = cfg["pretrained"]["run"]

    def build():
        return build_backbone(pcfg)

    def load(backbone):
        ckpt = load_checkpoint(Path(run) / "checkpoint.pt")
        prefix = BACKBONE_PREFIX[pcfg["method"]]
        state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
        backbone.load_state_dict(state, strict=True)
        if hasattr(backbone, "norm") and hasattr(backbone.norm, "freeze"):
            backbone.norm.freeze()  # MPMv1 input normalisation keeps the pretraining statistics

    return build, (load if run is not None else None), pcfg


def main(argv=None):
    run = start_run(__doc__.splitlines()[0], argv, save=False)  # saved below, once the config is checked
    if run is None:
        return
    cfg, out, config_path = run
    fc = finetune_settings(cfg)
    if fc["mode"] != "scratch" and cfg["pretrained"]["run"] is None:
        raise ValueError(f"{config_path}: finetune.mode={fc['mode']} needs pretrained.run (a mpm.pretrain run dir)")
    dist = init_distributed(cfg["device"])
    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        save_config(cfg, out / "config.yaml")
    build, load, pcfg = backbone_fns(cfg)
    load = load if fc["mode"] != "scratch" else None
    summary = run_sweep(cfg, build, load, out, dist)  # every N with its finetune.per_n rules
    if dist.is_main:
        mark_done(out, {"mode": fc["mode"], "pretrained": cfg["pretrained"]["run"], "method": pcfg["method"],
                        "n_values": list(summary["per_n"])})
    cleanup()


if __name__ == "__main__":
    main()
