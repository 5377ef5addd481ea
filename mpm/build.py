"""Builders of the MPM models from a config: the pretraining model (MPMv1 or MPMv2 with its frozen tokeniser, chosen by
`method:`), the backbone that fine-tuning keeps, and `backbone_fns`, which rebuilds that backbone from a pretraining
run for common.training.finetune (mpm.finetune, mpm.cwola)."""
from __future__ import annotations

from pathlib import Path

from common.training.checkpoint import load_trained
from common.training.config import load_config

from mpm.mpmv1 import MPMv1, MPMv1Backbone
from mpm.mpmv2 import MPMv2, MPMv2Encoder
from mpm.vqvae import load_tokenizer, num_features

METHODS = ("mpmv1", "mpmv2")


def _load(path, what: str, cfg: dict):
    if path is None:
        raise ValueError(f"{cfg['method']}: {what} needs a tokeniser: set tokenizer.checkpoint (a run directory of "
                         "mpm.train_tokenizer)")
    return load_tokenizer(path)


def target_tokenizer(cfg: dict):
    """Frozen tokeniser giving the targets (None for regression)."""
    m = cfg["model"]
    kind = m["target"] if cfg["method"] == "mpmv1" else m["task"]
    if kind not in ("vqvae", "kmeans"):
        return None
    return _load(cfg["tokenizer"]["checkpoint"], f"target {kind!r}", cfg)


def input_tokenizer(cfg: dict):
    """Frozen VQ-VAE for the quantised-inputs rows of MPMv1 (None otherwise)."""
    if cfg["method"] != "mpmv1" or cfg["model"]["inputs"] != "vqvae_quantised":
        return None
    t = cfg["tokenizer"]
    return _load(t["input_checkpoint"] or t["checkpoint"], "inputs 'vqvae_quantised'", cfg)


def build_backbone(cfg: dict, tokenizer=None):
    """The part kept for fine-tuning: MPMv1Backbone or MPMv2Encoder, sized by cfg['model']."""
    m = cfg["model"]
    if cfg["method"] == "mpmv1":
        if m["inputs"] == "vqvae_quantised" and tokenizer is None:
            tokenizer = input_tokenizer(cfg)
        return MPMv1Backbone(num_features(cfg["data"]), dim=m["dim"], depth=m["depth"], num_heads=m["num_heads"],
                             ff_hidden=m["ff_hidden"], embed_hidden=m["embed_hidden"], dropout=m["dropout"],
                             attn_dropout=m["attn_dropout"], num_particles=cfg["data"]["num_particles"],
                             positional=m["positional"], backbone_pe=m["backbone_pe"], inputs=m["inputs"],
                             norm_max_n=m["norm_max_n"], tokenizer=tokenizer)
    if cfg["method"] == "mpmv2":
        return MPMv2Encoder(num_features(cfg["data"]), m["num_ids"], dim=m["dim"], depth=m["depth"],
                            num_heads=m["num_heads"], ff_hidden=m["ff_hidden"], num_registers=m["num_registers"],
                            layerscale_init=m["layerscale_init"], final_norm=m["final_norm"])
    raise ValueError(f"config key 'method' must be one of {METHODS}, got {cfg.get('method')!r}")


def build_model(cfg: dict):
    """The pretraining model: MPMv1 or MPMv2 with its frozen tokeniser."""
    m = cfg["model"]
    tok = target_tokenizer(cfg)
    if cfg["method"] == "mpmv1":
        backbone = build_backbone(cfg, tokenizer=input_tokenizer(cfg))
        return MPMv1(backbone, target=m["target"], target_tokenizer=tok, mask_fraction=m["mask_fraction"],
                     head=m["head"], head_hidden=m["head_hidden"], positional=m["positional"])
    if cfg["method"] == "mpmv2":
        d = m["decoder"]
        return MPMv2(build_backbone(cfg), task=m["task"], tokenizer=tok, mask_fraction=m["mask_fraction"],
                     dec_dim=d["dim"], dec_depth=d["depth"], dec_heads=d["num_heads"], dec_ff_hidden=d["ff_hidden"],
                     max_particles=cfg["data"]["num_particles"], id_weight=m["id_weight"],
                     id_label_smoothing=m["id_label_smoothing"], task_cfg=m["task_cfg"],
                     num_features=num_features(cfg["data"]), num_ids=m["num_ids"], targets_from=m["targets_from"],
                     dec_final_norm=d["final_norm"])
    raise ValueError(f"config key 'method' must be one of {METHODS}, got {cfg.get('method')!r}")


# where the fine-tuning backbone lives inside each pretraining model
BACKBONE_PREFIX = {"mpmv1": "backbone.", "mpmv2": "encoder."}


def load_backbone_state(backbone, method: str, state: dict) -> None:
    """The backbone's weights out of a pretraining model's state dict (strict)."""
    prefix = BACKBONE_PREFIX[method]
    backbone.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    if hasattr(backbone, "norm") and hasattr(backbone.norm, "freeze"):
        backbone.norm.freeze()  # MPMv1 input normalisation (running means, buffers) keeps the pretraining statistics


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
    """(build_backbone, load_pretrained or None) for common.training.finetune, as every method's backbone_fns; the
    pretraining run's config is pretrain_config(cfg)."""
    pcfg = pretrain_config(cfg)
    run = cfg["pretrained"]["run"]

    def build():
        return build_backbone(pcfg)

    def load(backbone):
        ckpt = load_trained(Path(run) / "checkpoint.pt", "pretrained weights")
        load_backbone_state(backbone, pcfg["method"], ckpt["model"])

    return build, (load if run is not None else None)


def require_pretrained_run(cfg: dict, mode: str, where) -> None:
    """Every fine-tuning mode but scratch loads a pretraining run: pretrained.run must be set."""
    if mode != "scratch" and cfg["pretrained"]["run"] is None:
        raise ValueError(f"{where}: finetune.mode={mode} needs pretrained.run (a mpm.pretrain run dir)")
