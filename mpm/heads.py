"""MPMv2 pretraining task heads (arXiv:2409.12589; jetssl src/models/mpm_tasks.py).

Every head acts on the decoder outputs of the dropped particles only, d (M, dec_dim), and returns a scalar loss.
  IDTask          Linear(dec -> 8), cross-entropy with label smoothing 0.1; always on, weight 0.3
  RegressionTask  Linear(dec -> 7), L1 to the quantile-normalised continuous features
  TokenTask       Linear(dec -> K), cross-entropy to the frozen tokeniser's code (k-means K = 16384, label smoothing
                  0.1; VQ-VAE K = 512, label smoothing 0.05)
  CFMTask         conditional flow matching: Linear(dec -> 128) context; an MLP on (x_t, context, cosine time
                  embedding) predicts the velocity; t = sigmoid(N(0,1)), x_t = (1 - t) x0 + t eps, loss = mean over
                  particles and the 7 features of (v - (eps - x0))^2
  CNFTask         conditional normalising flow ("Flow"): Linear(dec -> 128) context; a 7-d rational-quadratic-spline
                  coupling flow (6 layers, 8 bins, tail bound 4; mpm/flow.py) conditioned on it; loss = negative
                  log-likelihood of the features, +0.05 N(0,1) noise on the 4 impact-parameter features in training;
                  computed in fp32
SSFMTask (set-to-set flow matching) is not a head on the MAE decoder: it replaces the decoder, the null tokens and
the ID task by its own cross-attention decoder (mpm/ssfm.py) reading the encoder outputs, and is called as
task(h, hmask, x, pid, dropped) (mpm/mpmv2.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.data.features import MPMV2_IP

from mpm.flow import ConditionalSplineFlow
from mpm.masking import random_uniform_masking
from mpm.ssfm import SSFMDecoder, cosine_encoding


class IDTask(nn.Module):
    def __init__(self, dim: int, num_ids: int = 8, label_smoothing: float = 0.1, weight: float = 0.3):
        super().__init__()
        self.head = nn.Linear(dim, num_ids)
        self.label_smoothing, self.weight = label_smoothing, weight

    def forward(self, d, pid):
        logits = self.head(d).float()
        loss = F.cross_entropy(logits, pid, label_smoothing=self.label_smoothing)
        return self.weight * loss, {"id_acc": (logits.argmax(-1) == pid).float().mean()}


class RegressionTask(nn.Module):
    def __init__(self, dim: int, num_features: int = 7):
        super().__init__()
        self.head = nn.Linear(dim, num_features)

    def forward(self, d, x, codes=None):
        return F.l1_loss(self.head(d).float(), x.float()), {}


class TokenTask(nn.Module):
    def __init__(self, dim: int, num_codes: int, label_smoothing: float = 0.1):
        super().__init__()
        self.head = nn.Linear(dim, num_codes)
        self.label_smoothing = label_smoothing

    def forward(self, d, x, codes):
        logits = self.head(d).float()
        loss = F.cross_entropy(logits, codes, label_smoothing=self.label_smoothing)
        return loss, {"code_acc": (logits.argmax(-1) == codes).float().mean()}


class CFMTask(nn.Module):
    """Conditional flow matching per dropped particle ("Diffusion" in arXiv v1/v2). Sampling (EMA copy, midpoint ODE
    solver) is not needed to pretrain and is not implemented here."""

    def __init__(self, dim: int, num_features: int = 7, context_dim: int = 128, hidden: int = 256, depth: int = 3,
                 time_dim: int = 16):
        super().__init__()
        self.time_dim = time_dim
        self.context = nn.Linear(dim, context_dim)
        layers, w = [], num_features + context_dim + time_dim
        for _ in range(depth):
            layers += [nn.Linear(w, hidden), nn.SiLU(), nn.LayerNorm(hidden)]
            w = hidden
        self.net = nn.Sequential(*layers, nn.Linear(hidden, num_features))

    def velocity(self, x_t, t, ctx):
        # the time as cos(pi t e^k), k < time_dim: jetssl VectorDiffuser's mltools CosineEncodingLayer (cosines only)
        return self.net(torch.cat([x_t, ctx, cosine_encoding(t, self.time_dim)], dim=-1))

    def forward(self, d, x, codes=None):
        x0 = x.float()
        ctx = self.context(d).float()
        t = torch.sigmoid(torch.randn(x0.shape[0], device=x0.device))  # logit-normal time
        eps = torch.randn_like(x0)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
        v = self.velocity(x_t, t, ctx)
        # mean over particles and features, as VectorDiffuser.get_loss in mattcleigh/jetssl src/models/utils.py
        return ((v - (eps - x0)) ** 2).mean(), {}


class CNFTask(nn.Module):
    """Conditional normalising flow per dropped particle ("Flow" in arXiv v1/v2): -log p(x | Linear(d)) under a
    rational-quadratic-spline coupling flow (mpm/flow.py). The whole head runs in fp32 with autocast off.
    ip_noise: std of the Gaussian noise added to the impact-parameter features `ip_features` (a [start, stop) range
    of feature columns; mpmv2 features 3-6 = d0, z0, sigma d0, sigma z0) in training mode only."""

    def __init__(self, dim: int, num_features: int = 7, context_dim: int = 128, num_layers: int = 6, bins: int = 8,
                 tail_bound: float = 4.0, hidden: int = 128, depth: int = 2, ip_noise: float = 0.05,
                 ip_features: tuple | list | None = (MPMV2_IP.start, MPMV2_IP.stop), zero_init: bool = True):
        super().__init__()
        self.context = nn.Linear(dim, context_dim)
        self.flow = ConditionalSplineFlow(num_features, context_dim, num_layers, bins, tail_bound, hidden, depth,
                                          zero_init)
        self.ip_noise = float(ip_noise)
        self.ip = slice(*ip_features) if ip_features is not None else slice(0, 0)
        if self.ip.stop is not None and self.ip.stop > num_features:
            raise ValueError(f"ip_features {list(ip_features)} out of range for {num_features} features")

    def forward(self, d, x, codes=None):
        with torch.autocast(d.device.type, enabled=False):
            x = x.float()
            if self.training and self.ip_noise > 0:
                noise = torch.zeros_like(x)
                noise[:, self.ip] = self.ip_noise * torch.randn_like(x[:, self.ip])
                x = x + noise
            if x.shape[0] == 0:  # nothing dropped: a zero loss that still touches every parameter
                return sum(p.sum() for p in self.parameters()) * 0.0, {}
            ctx = self.context(d.float())
            return -self.flow.log_prob(x, ctx).mean(), {}


class SSFMTask(nn.Module):
    """Set-to-set flow matching ("Full-Diffusion" in arXiv v1/v2 of arXiv:2409.12589; mattcleigh/jetssl
    src/models/sdm.py). The dropped set T, each particle y = [x_c (7), one-hot ID (8)], is generated jointly by a
    time-conditioned transformer decoder that cross-attends to Linear(enc -> dec) of the encoder outputs of the kept
    particles and the registers. One time per jet, t = sigmoid(N(0,1)); y_t = (1 - t) y + t eps; loss = mean over the
    dropped particles of the batch and the 15 features of (v_hat - (eps - y))^2. Unlike CFMTask (one particle at a
    time, an MLP on the MAE decoder output) the dropped particles attend to each other, so no null tokens or
    positional encoding are needed. The number dropped per jet is drawn uniformly in [frac_min, frac_max] of its
    particles (draw_dropped)."""

    def __init__(self, enc_dim: int, num_features: int = 7, num_ids: int = 8, *, dim: int = 256, depth: int = 4,
                 num_heads: int = 8, ff_hidden: int = 512, final_norm: bool = False, time_dim: int = 32,
                 frac_min: float = 0.2, frac_max: float = 1.0):
        super().__init__()
        if not 0.0 <= frac_min <= frac_max <= 1.0:
            raise ValueError(f"model.task_cfg.frac_min / frac_max need 0 <= frac_min <= frac_max <= 1, "
                             f"got {frac_min}, {frac_max}")
        if int(time_dim) < 1:
            raise ValueError(f"model.task_cfg.time_dim must be >= 1, got {time_dim}")
        self.num_ids, self.time_dim = num_ids, int(time_dim)
        self.frac_min, self.frac_max = float(frac_min), float(frac_max)
        self.enc_to_dec = nn.Linear(enc_dim, dim)
        self.decoder = SSFMDecoder(num_features + num_ids, dim, depth, num_heads, ff_hidden, self.time_dim,
                                   final_norm)

    def draw_dropped(self, mask: torch.Tensor) -> torch.Tensor:
        return random_uniform_masking(mask, self.frac_min, self.frac_max)

    def forward(self, h, hmask, x, pid, dropped):
        """h (B,R+N,enc), hmask (B,R+N): encoder outputs and their mask (registers + kept particles); x (B,N,7),
        pid (B,N), dropped (B,N) bool: the set to generate."""
        y = torch.cat([x.float(), F.one_hot(pid.clamp(min=0), self.num_ids).float()], dim=-1)
        t = torch.sigmoid(torch.randn(y.shape[0], device=y.device))  # logit-normal time, one per jet
        eps = torch.randn_like(y)
        y_t = (1 - t[:, None, None]) * y + t[:, None, None] * eps
        v = self.decoder(y_t, dropped, cosine_encoding(t, self.time_dim), self.enc_to_dec(h), hmask)
        if not dropped.any():  # nothing dropped: a zero loss that still touches every parameter
            return sum(p.sum() for p in self.parameters()) * 0.0, {}
        return ((v.float() - (eps - y)) ** 2)[dropped].mean(), {}


SSFM_KEYS = ("time_dim", "frac_min", "frac_max")


def build_task(kind: str, dim: int, num_features: int, tokenizer=None, cfg: dict | None = None,
               decoder: dict | None = None) -> nn.Module:
    """decoder: for ssfm only, the sizes of its own decoder (enc_dim, num_ids, depth, num_heads, ff_hidden,
    final_norm; `dim` is its width)."""
    cfg = dict(cfg or {})
    if kind == "regression":
        return RegressionTask(dim, num_features)
    if kind in ("kmeans", "vqvae"):
        if tokenizer is None:
            raise ValueError(f"model.task={kind} needs a tokeniser checkpoint (tokenizer.checkpoint)")
        default_ls = 0.1 if kind == "kmeans" else 0.05
        return TokenTask(dim, tokenizer.num_codes, float(cfg.get("label_smoothing", default_ls)))
    if kind == "cfm":
        return CFMTask(dim, num_features, cfg.get("context_dim", 128), cfg.get("hidden", 256), cfg.get("depth", 3),
                       cfg.get("time_dim", 16))
    if kind == "cnf":
        keys = ("context_dim", "num_layers", "bins", "tail_bound", "hidden", "depth", "ip_noise", "ip_features",
                "zero_init")
        unknown = sorted(set(cfg) - set(keys))
        if unknown:
            raise ValueError(f"model.task_cfg: unknown key(s) {unknown} for task 'cnf' (known: {', '.join(keys)})")
        return CNFTask(dim, num_features, **cfg)
    if kind == "ssfm":
        unknown = sorted(set(cfg) - set(SSFM_KEYS))
        if unknown:
            raise ValueError(f"model.task_cfg: unknown key(s) {unknown} for task 'ssfm' "
                             f"(known: {', '.join(SSFM_KEYS)})")
        if decoder is None:
            raise ValueError("task 'ssfm' needs its decoder sizes (build it through mpm.mpmv2.MPMv2)")
        d = dict(decoder)
        return SSFMTask(d.pop("enc_dim"), num_features, d.pop("num_ids"), dim=dim, **d, **cfg)
    raise ValueError(f"model.task must be regression | kmeans | vqvae | cnf | cfm | ssfm, got {kind!r}")
