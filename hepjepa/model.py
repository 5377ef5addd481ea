"""HEP-JEPA model: particle-patch tokens, context encoder, EMA target encoder, predictor (arXiv:2502.03933;
loop of I-JEPA, facebookresearch/ijepa src/train.py, and Point-JEPA, pointjepa/models/point_jepa.py).

    jet --tokenizer--> G patch tokens (+ centres, patch four-vectors), sequenced
        target branch  (no grad, EMA weights, eval mode): all tokens -> target encoder -> LayerNorm -> h_t (B,G,d)
        masks          M target blocks and one context block per jet (hepjepa.masking)
        context branch context tokens only -> context encoder -> h_c
        predictor      Linear(h_c) + pos(context centres) and M*k mask tokens + pos(target centres) -> predictions
        loss           smooth-L1(prediction, h_t gathered at the target tokens), mean over predicted tokens

Shared pieces: the tokenizer (mini-PointNet) and the positional MLP are trained online only and shared by both
branches (Point-JEPA: only the transformer is EMA'd) [U]. The transformer is common.blocks.transformer.Encoder with 8 register
tokens (Darcet et al. 2023, registers get zero bias) and the ParT physics bias: PairEmbed of the pairwise features of the
patch four-vectors, restricted to the tokens an encoder actually sees (arXiv:2202.03772 Eq. 3). The predictor gets no
physics bias: the four-vectors of the target patches would leak the content it has to predict. `model.pair_scale`
(jet_pt | jet_e | none) divides the patch four-vectors an encoder sees by the pT (or energy) of their vector sum before
the pair features are formed (common.blocks.pairwise.scale_four_momenta) [U, ours]: with the relative particle inputs,
the backbone is then invariant to scaling every four-momentum of a jet (none = the raw four-momenta of ParT). The sum
is over the tokens the encoder sees, so the context encoder learns nothing of the target patches through it.
The positional embedding of the patch centres is added before every encoder block, as in Point-JEPA
(`encoder_add_pos_at_every_layer: true`, configs/Point-JEPA/pretraining/shapenet.yaml), or once at the input
(`model.pos_every_layer: false`); the predictor adds it once (Point-JEPA's `predictor_add_pos_at_every_layer` is false).
`model.pos_embed: sincos` replaces the learned MLP by I-JEPA's fixed 2-D sin-cos embedding, added once at the input of
the encoder and of the predictor. `model.target_norm: instance` standardises each target feature over the tokens of its
jet (data2vec) instead of each token over its features (I-JEPA). `HEPJEPA.monitor` computes the shortcut monitors of
hepjepa.monitors on a batch.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.blocks.pairwise import PAIR_SCALES, pairwise_features, scale_four_momenta
from common.blocks.transformer import Encoder, PairEmbed
from common.data.features import get_feature_set
from common.training.checkpoint import load_trained
from common.training.ema import ema_update, make_target
from common.training.probe import pool_mean_max

from .masking import sample_masks
from .monitors import between_jet_share, effective_rank, position_r2
from .overlap import target_in_context_fraction
from .tokenizer import JetTokenizer, Patches, PositionalMLP, SinCosPosition


def gather_tokens(select: torch.Tensor, *tensors: torch.Tensor):
    """Pack the selected tokens of each jet to the front, keeping their order.
    select (B,T) bool; tensors (B,T,...) -> ([packed (B,L,...)], mask (B,L)) with L = max selected per jet."""
    L = max(int(select.sum(1).max()), 1)
    idx = torch.sort((~select).to(torch.uint8), dim=1, stable=True).indices[:, :L]  # selected positions first
    mask = select.gather(1, idx)
    packed = [t.gather(1, idx.view(*idx.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])) for t in tensors]
    return packed, mask


def instance_norm_tokens(h: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each feature of h (B,T,D) standardised over the valid tokens of its jet (biased variance, as F.instance_norm);
    zero at invalid tokens."""
    m = mask[..., None].to(h.dtype)
    n = m.sum(1, keepdim=True).clamp(min=1)
    mean = (h * m).sum(1, keepdim=True) / n
    var = (((h - mean) ** 2) * m).sum(1, keepdim=True) / n
    return (h - mean) / torch.sqrt(var + eps) * m


def masked_std(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Standard deviation over the valid tokens of z (..., T, D), per feature, averaged over features."""
    w = mask.reshape(-1, 1).to(z.dtype)
    z = z.reshape(-1, z.shape[-1])
    n = w.sum()
    mean = (z * w).sum(0) / n.clamp(min=1)
    var = ((z - mean) ** 2 * w).sum(0) / (n - 1).clamp(min=1)
    return var.sqrt().mean()


class PatchEncoder(nn.Module):
    """Transformer over patch tokens with registers and the ParT physics bias; forward(x, mask, p4, pos) -> (B,T,d)
    with the register outputs dropped and padded tokens zeroed. This is the part that the EMA target copies.
    pos (B,T,d): positional embedding of the patch centres, added before every block (pos_every_layer, Point-JEPA)
    or once to the input."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, num_registers: int = 8,
                 physics_bias: bool = True, pair_hidden=(64, 64, 64), dropout: float = 0.0, style: str = "preln",
                 pos_every_layer: bool = True, pair_scale: str = "none"):
        super().__init__()
        self.dim, self.num_registers, self.pos_every_layer = dim, num_registers, pos_every_layer
        self.pair_scale = pair_scale
        self.encoder = Encoder(dim, depth, num_heads, int(dim * mlp_ratio), style=style, num_registers=num_registers,
                               dropout=dropout)
        self.pair_embed = PairEmbed(num_heads, 4, tuple(pair_hidden)) if physics_bias else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, p4: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        bias = None
        if self.pair_embed is not None:  # ParT interaction bias between patch four-vectors (arXiv:2202.03772 Eq. 3)
            bias = self.pair_embed(pairwise_features(scale_four_momenta(p4, mask, self.pair_scale), mask), mask)
        if self.pos_every_layer:
            h, _ = self.encoder(x, mask, bias, pos=pos)
        else:
            h, _ = self.encoder(x + pos, mask, bias)
        return h[:, self.num_registers:]


class Predictor(nn.Module):
    """Narrow transformer: context encodings and mask tokens (each plus a positional embedding of its patch centre)
    -> predicted target embeddings (I-JEPA / Point-JEPA predictor)."""

    def __init__(self, dim: int, pred_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 pos_embed: str = "mlp"):
        super().__init__()
        self.embed = nn.Linear(dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        # I-JEPA's predictor uses the fixed sin-cos embedding too (predictor_pos_embed, requires_grad=False)
        self.pos = SinCosPosition(pred_dim) if pos_embed == "sincos" else PositionalMLP(pred_dim)
        self.encoder = Encoder(pred_dim, depth, num_heads, int(pred_dim * mlp_ratio), num_registers=0)
        self.out = nn.Linear(pred_dim, dim)

    def forward(self, ctx_h, ctx_centres, ctx_mask, tgt_centres, tgt_mask) -> torch.Tensor:
        """ctx_h (B,Lc,d), ctx_centres (B,Lc,2), ctx_mask (B,Lc), tgt_centres (B,Lt,2), tgt_mask (B,Lt) -> (B,Lt,d)."""
        B, Lt = tgt_mask.shape
        ctx = self.embed(ctx_h) + self.pos(ctx_centres)
        queries = self.mask_token.expand(B, Lt, -1) + self.pos(tgt_centres)
        h, _ = self.encoder(torch.cat([ctx, queries], 1), torch.cat([ctx_mask, tgt_mask], 1))
        return self.out(h[:, ctx.shape[1]:]) * tgt_mask[..., None]


def position_embedding(cfg: dict, dim: int) -> nn.Module:
    """model.pos_embed: 'mlp' = the learned Point-JEPA positional MLP of the patch centres; 'sincos' = the fixed 2-D
    sin-cos embedding of I-JEPA (facebookresearch/ijepa src/models/vision_transformer.py), added once at the input
    (which model.pos_every_layer must then say)."""
    kind = cfg.get("pos_embed", "mlp")
    if kind == "mlp":
        return PositionalMLP(dim)
    if kind == "sincos":
        if cfg.get("pos_every_layer", False):
            raise ValueError("model.pos_embed 'sincos' is added once at the input (I-JEPA): set "
                             "model.pos_every_layer: false")
        return SinCosPosition(dim)
    raise ValueError(f"model.pos_embed must be 'mlp' or 'sincos', got {kind!r}")


def pair_scale(cfg: dict) -> str:
    """model.pair_scale (default jet_pt, the HEP-JEPA configs' value): what an encoder divides the patch four-vectors it
    sees by before the physics-bias pair features are formed (none: nothing, the former behaviour)."""
    how = cfg.get("pair_scale", "jet_pt")
    if how not in PAIR_SCALES:
        raise ValueError(f"model.pair_scale must be one of {PAIR_SCALES}, got {how!r}")
    return how


def build_online_modules(cfg: dict, in_dim: int, angle_idx) -> tuple[JetTokenizer, PositionalMLP, PatchEncoder]:
    """The online (trained) stack shared by pretraining and downstream use: patch tokenizer, positional MLP of the patch
    centres, context encoder. cfg = the YAML `model:` section; built in this order (same initial weights)."""
    d = int(cfg["dim"])
    coverage = cfg["patch_coverage"]
    if coverage is not None and not float(coverage) > 0:
        raise ValueError(f"model.patch_coverage must be null or > 0, got {coverage!r}")
    tokenizer = JetTokenizer(in_dim, d, int(cfg["num_patches"]), int(cfg["group_size"]), angle_idx,
                             int(cfg["pointnet_hidden"]), bool(cfg["fps_random_start"]),
                             coverage=None if coverage is None else float(coverage))
    pos = position_embedding(cfg, d)
    context_encoder = PatchEncoder(d, int(cfg["depth"]), int(cfg["num_heads"]), float(cfg["mlp_ratio"]),
                                   int(cfg["num_registers"]), bool(cfg["physics_bias"]), cfg["pair_hidden"],
                                   float(cfg["dropout"]), pos_every_layer=bool(cfg["pos_every_layer"]),
                                   pair_scale=pair_scale(cfg))
    return tokenizer, pos, context_encoder


class HEPJEPA(nn.Module):
    """The pretraining model. cfg = the YAML `model:` section; in_dim = number of particle features; angle_idx = the
    (deta, dphi) columns. `mask_cfg` = the YAML `masking:` section."""

    def __init__(self, cfg: dict, in_dim: int, angle_idx, mask_cfg: dict):
        super().__init__()
        d = int(cfg["dim"])
        self.cfg, self.mask_cfg = cfg, mask_cfg
        self.tokenizer, self.pos, self.context_encoder = build_online_modules(cfg, in_dim, angle_idx)
        self.target_encoder = make_target(self.context_encoder)  # frozen copy, updated only by EMA
        self.predictor = Predictor(d, int(cfg["pred_dim"]), int(cfg["pred_depth"]), int(cfg["pred_heads"]),
                                   float(cfg["mlp_ratio"]), cfg.get("pos_embed", "mlp"))
        self.loss_beta = float(cfg["loss_beta"])
        self.target_norm = cfg.get("target_norm", "layer")
        if self.target_norm not in ("layer", "instance"):
            raise ValueError(f"model.target_norm must be 'layer' or 'instance', got {self.target_norm!r}")
        self.target_encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.target_encoder.eval()  # the teacher never runs dropout and never updates BN statistics by itself
        return self

    def tokenize(self, x, mask, p4) -> Patches:
        return self.tokenizer(x, mask, p4)

    @torch.no_grad()
    def targets(self, patches: Patches, pos: torch.Tensor, with_raw: bool = False):
        """Teacher embeddings of all tokens, zero at invalid patches, normalised (model.target_norm): 'layer' = over
        the features of each token (I-JEPA); 'instance' = each feature over the tokens of its jet (data2vec,
        arXiv:2202.03555 Sec. 3.3, fairseq instance_norm_target_layer): what all tokens of a jet share is removed.
        with_raw: also return the teacher's output before the normalisation (for the monitors)."""
        raw = self.target_encoder(patches.tokens, patches.mask, patches.p4, pos).float()
        if self.target_norm == "instance":
            h = instance_norm_tokens(raw, patches.mask)
        else:
            h = F.layer_norm(raw, (raw.shape[-1],)) * patches.mask[..., None]
        return (h, raw) if with_raw else h

    @torch.no_grad()
    def monitor(self, x, mask, p4) -> dict:
        """Shortcut monitors on one batch (hepjepa.monitors), in eval mode, no gradients: between-jet share of the
        target variance (between_jet_share; 0 by construction with instance target normalisation) and of the teacher's
        output before the normalisation (between_jet_share_encoder: how much of the representation is one vector
        per jet, whatever the target normalisation), R^2 of the targets from the patch centres alone, effective rank of the pooled downstream
        embeddings; also returns `pooled` (B, 2d) = mean+max pooled context-encoder output on all patches (the
        downstream backbone) for the online probe."""
        was_training = self.training
        self.eval()
        patches = self.tokenize(x, mask, p4)
        pos = self.pos(patches.centres)
        h_t, h_raw = self.targets(patches, pos, with_raw=True)
        h = self.context_encoder(patches.tokens, patches.mask, patches.p4, pos)
        pooled = pool_mean_max(h.float(), patches.mask)
        self.train(was_training)
        return dict(between_jet_share=between_jet_share(h_t, patches.mask),
                    between_jet_share_encoder=between_jet_share(h_raw, patches.mask),
                    position_r2=position_r2(h_t, patches.centres, patches.mask),
                    effective_rank=effective_rank(pooled), pooled=pooled)

    def forward(self, x, mask, p4, masks=None) -> dict:
        """One JEPA step on a batch. masks = optional (context (B,G), targets (M,B,G)) to fix the masking (tests).
        Returns dict(loss, pred_std, target_std, context_tokens, target_tokens, target_in_context): scalar tensors
        (only the loss has a graph; the rest are detached monitors, left on the device so that logging them costs no
        sync per step). target_in_context: hepjepa.overlap."""
        patches = self.tokenize(x, mask, p4)
        pos = self.pos(patches.centres)
        h_t = self.targets(patches, pos)
        if masks is None:
            m = self.mask_cfg
            masks = sample_masks(patches.mask, int(m["num_targets"]), tuple(m["target_scale"]),
                                 tuple(m["context_scale"]), m["strategy"], bool(m["per_jet"]))
        context, targets = masks
        # a jet without context tokens (its targets cover all its patches) has nothing to predict from: no loss
        targets = targets & (context & patches.mask).any(1)[None, :, None]
        h_c, ctx_centres, ctx_mask = self.encode_context(patches, pos, context)
        M, B, G = targets.shape
        # all M target blocks in one predictor call: the context is repeated M times along the batch
        (tgt_h, tgt_centres), tgt_mask = gather_tokens(targets.reshape(M * B, G), h_t.repeat(M, 1, 1),
                                                       patches.centres.repeat(M, 1, 1))
        pred = self.predictor(h_c.repeat(M, 1, 1), ctx_centres.repeat(M, 1, 1), ctx_mask.repeat(M, 1),
                              tgt_centres, tgt_mask)
        loss_tok = F.smooth_l1_loss(pred.float(), tgt_h, beta=self.loss_beta, reduction="none").mean(-1)
        loss = (loss_tok * tgt_mask).sum() / tgt_mask.sum().clamp(min=1)
        with torch.no_grad():  # collapse monitors (Point-JEPA): std over predicted tokens, averaged over features
            pred_std, tgt_std = masked_std(pred.float(), tgt_mask), masked_std(tgt_h, tgt_mask)
            tic = target_in_context_fraction(patches.groups, patches.group_mask, context, targets, x.shape[1])
        return dict(loss=loss, pred_std=pred_std, target_std=tgt_std, context_tokens=ctx_mask.sum(1).float().mean(),
                    target_tokens=tgt_mask.sum(1).float().mean(), target_in_context=tic)

    def encode_context(self, patches: Patches, pos: torch.Tensor, context: torch.Tensor):
        """Context encoder on the context tokens only; the physics bias uses only their four-vectors.
        -> (h_c (B,Lc,d), centres (B,Lc,2), mask (B,Lc))."""
        (tok, p4, centres, ctx_pos), ctx_mask = gather_tokens(context & patches.mask, patches.tokens, patches.p4,
                                                              patches.centres, pos)
        return self.context_encoder(tok, ctx_mask, p4, ctx_pos), centres, ctx_mask

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """theta_target <- m theta_target + (1 - m) theta_context (I-JEPA, after each optimiser step); common.training.ema also
        copies the buffers (PairEmbed BatchNorm statistics), so the eval-mode teacher normalises like the student."""
        ema_update(self.target_encoder, self.context_encoder, momentum)


class HEPJEPABackbone(nn.Module):
    """Downstream backbone (common.training.finetune protocol): tokenizer + positional MLP + context encoder on all patches.
    forward(batch) -> (h (B,G,d), mask (B,G)). Parameter names match HEPJEPA, so a pretrained state dict loads with
    `load_pretrained`."""

    def __init__(self, cfg: dict, in_dim: int, angle_idx):
        super().__init__()
        self.dim = int(cfg["dim"])
        self.tokenizer, self.pos, self.context_encoder = build_online_modules(cfg, in_dim, angle_idx)

    def augment_inputs(self, mode: bool) -> None:
        """Called by common.training.classifier.Classifier.train: the tokeniser's random FPS start (model.fps_random_start)
        follows the training run, also while the backbone is frozen (eval mode), so every arm that trains (fixed,
        finetune, scratch) gets the same augmentation and evaluation never does."""
        self.tokenizer.augment = mode

    def forward(self, batch):
        p = self.tokenizer(batch.x, batch.mask, batch.p4)
        h = self.context_encoder(p.tokens, p.mask, p.p4, self.pos(p.centres))
        return h, p.mask

    def load_pretrained(self, state: dict, use: str = "context") -> None:
        """Load from a HEPJEPA state dict; use="target" takes the EMA teacher's transformer instead (I-JEPA evaluates
        the target encoder) [U]."""
        mine = {}
        for k, v in state.items():
            if k.startswith(("tokenizer.", "pos.")):
                mine[k] = v
            elif k.startswith(f"{use}_encoder."):
                mine["context_encoder." + k[len(use) + len("_encoder."):]] = v
        self.load_state_dict(mine, strict=True)


# ---------------------------------------------------------------------------------------------------------------------
# builders: the pretraining model, and the downstream backbone for common.training.finetune

AUGMENTATION_KEYS = ("fps_random_start",)   # `model:` keys that change training, not the weights' architecture


def angle_columns(feature_names) -> tuple[int, int]:
    """Indices of (deta, dphi) in the feature vector (the tokeniser's coordinates)."""
    names = list(feature_names)
    for need in ("part_deta", "part_dphi"):
        if need not in names:
            raise ValueError(f"HEP-JEPA needs '{need}' among the particle features, got {names}")
    return names.index("part_deta"), names.index("part_dphi")


def feature_info(data_cfg: dict) -> dict:
    """num_features and feature_names of the config's feature set (what the model needs of the data; the feature set
    alone, so building a model never imports the dataset readers)."""
    names = list(get_feature_set(data_cfg.get("features") or "part_kin").names)
    return {"num_features": len(names), "feature_names": names}


def build_model(cfg: dict, info: dict | None = None) -> HEPJEPA:
    """The pretraining model of a config (`model`, `masking`) for the features described by `info` (dataset_info or
    feature_info; default: feature_info of cfg.data)."""
    info = info or feature_info(cfg["data"])
    return HEPJEPA(cfg["model"], info["num_features"], angle_columns(info["feature_names"]), cfg["masking"])


def backbone_fns(cfg: dict):
    """(build_backbone, load_pretrained) for common.training.finetune from the YAML and sweep.pretrained (a checkpoint)."""
    info = feature_info(cfg["data"])
    angles = angle_columns(info["feature_names"])
    sweep = cfg["sweep"]
    if sweep["encoder"] not in ("context", "target"):
        raise ValueError(f"sweep.encoder must be 'context' or 'target', got {sweep['encoder']!r}")

    def build():
        return HEPJEPABackbone(cfg["model"], info["num_features"], angles)

    def load(backbone):
        path = Path(sweep["pretrained"])
        if not path.is_file():
            raise FileNotFoundError(f"sweep.pretrained: no HEP-JEPA checkpoint at {path} (run hepjepa.pretrain first, "
                                    f"or use only mode 'scratch')")
        ckpt = load_trained(path, "pretrained encoder")
        trained = (ckpt.get("config") or {}).get("model")
        diff = [] if trained is None else sorted(k for k in set(trained) | set(cfg["model"])
                                                 if k not in AUGMENTATION_KEYS and trained.get(k) != cfg["model"].get(k))
        if diff:
            raise ValueError(f"{path}: the pretrained model differs from this config's `model:` in {diff}")
        backbone.load_pretrained(ckpt["model"], use=sweep["encoder"])

    return build, load
