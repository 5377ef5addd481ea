"""Vector quantisation with the vqtorch behaviour (Huh et al., ICML 2023, "Straightening out the straight-through
estimator") that MPMv1 (arXiv:2401.13537) and OmniJet-alpha (arXiv:2403.05618) rely on.

  loss        L = (1 - beta) d(z_e, sg z_q) + beta d(sg z_e, z_q), d = mean squared error per vector, averaged over
              the real positions (all positions when mask is None, as in the original OmniJet code)
  loss_average "particle": the mean over every real vector of the batch (OmniJet; jetssl's quantizer(enc_outs[mask]));
              "jet": the mean over the real particles of each jet, then over the jets (rodem-hep/mpm
              src/models/jet_vq_vae.py, _shared_step: lat_loss.sum(1) / mask.sum(1), then .mean()); z is (jets, N, D)
  sync_nu     synchronised straight-through: z_st = z_e + sg(z_q - z_e) + nu z_q - sg(nu z_q); the forward value is
              z_q, the encoder receives the decoder gradient unchanged and the codebook receives nu times it
  affine_lr   shared affine reparameterisation of the codebook: C' = (1 + a s) * C + a b, s, b in R^D learnable
              (init 0), a = affine_lr; C' is used for the nearest-neighbour search and for decoding (lookup)
  kmeans_init on the first training batch the codebook is set to k-means++ centroids of the real z_e (mask)
  replace_freq a code unused for replace_freq consecutive training forwards is reset to a random real z_e of the
              current batch plus noise replace_noise * ||z_e|| * N(0,1) (LRU replacement)
Utilisation (fraction of codes used by the real positions of the batch) and perplexity (exp of the entropy of the
code histogram) are reported with every forward.

The MPMv2 VQ-VAE quantiser (lucidrains vector-quantize-pytorch 1.14.19 VectorQuantize(use_cosine_sim=True,
kmeans_init=True, kmeans_iters=50, threshold_ema_dead_code=2), mattcleigh/jetssl configs/model/vqvae.yaml) is the
other mode, selected by three switches:
  distance="cosine"      z and the codebook are l2-normalised; nearest code = largest cosine similarity; z_q is the
                         unit code vector and the straight-through estimator starts from the normalised z
  codebook_update="ema"  the codebook is a buffer updated by exponential moving averages (decay ema_decay = 0.8):
                         N_k <- decay N_k + (1 - decay) n_k, m_k <- decay m_k + (1 - decay) sum_{z -> k} z,
                         c_k = l2norm(m_k / N~_k) with Laplace-smoothed counts N~ (eps ema_eps = 1e-5); the loss is
                         the commitment term d(z, sg z_q) alone (commitment weight 1, no codebook term, beta unused);
                         k-means init is spherical k-means (kmeans_iters, means drawn from the batch)
  dead_code_threshold    (ema mode) after each update, codes with N_k < threshold are reset to random normalised z of
                         the batch, with N_k = threshold and m_k = threshold * z

Deliberate differences from vqtorch, all switches of the caller: padded positions are excluded from the loss, the
k-means init and the replacement pool whenever a mask is given (mask=None reproduces the original); a replaced code
is written in pre-affine coordinates so that the *effective* code equals the chosen z_e; the replacement happens at
the start of the next training forward (before the codebook is used), so autograd never sees an in-place change.
Under torch.distributed (training mode only) the usage counts are summed over ranks and rank 0's k-means init and
replacements are broadcast, so every rank keeps the same codebook; eval-mode forwards never communicate.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from common.blocks.kmeans import KMeans, nearest


class VQOutput(NamedTuple):
    z_q: torch.Tensor  # (..., D) quantised vectors with the straight-through gradient; zero at padded positions
    codes: torch.Tensor  # (...) long code indices (also computed at padded positions)
    loss: torch.Tensor  # scalar beta-split VQ loss
    utilisation: torch.Tensor  # scalar, fraction of codes used by the real positions of this batch
    perplexity: torch.Tensor  # scalar, exp(entropy) of the code histogram of this batch


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """VectorQuantizer(num_codes, dim, *, beta=0.9, affine_lr=2.0, sync_nu=2.0, kmeans_init=True, replace_freq=100,
    replace_noise=0.01, kmeans_iters=20, kmeans_max_points=100_000, seed=0).

    forward(z (..., D), mask (...) bool | None) -> VQOutput; lookup(codes) -> (..., D) effective codebook rows;
    codebook() -> (K, D) effective (affine-transformed) codebook. replace_freq=0 disables replacement, affine_lr=0
    disables the affine reparameterisation, sync_nu=0 gives the plain straight-through estimator.
    """

    def __init__(self, num_codes: int, dim: int, *, beta: float = 0.9, affine_lr: float = 2.0, sync_nu: float = 2.0,
                 kmeans_init: bool = True, replace_freq: int = 100, replace_noise: float = 0.01,
                 kmeans_iters: int = 20, kmeans_max_points: int = 100_000, seed: int = 0,
                 distance: str = "euclidean", codebook_update: str = "gradient", ema_decay: float = 0.8,
                 ema_eps: float = 1e-5, dead_code_threshold: float = 0.0, loss_average: str = "particle"):
        super().__init__()
        if loss_average not in ("particle", "jet"):
            raise ValueError(f"vq.loss_average must be particle | jet, got {loss_average!r}")
        self.loss_average = loss_average
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"vq.distance must be euclidean | cosine, got {distance!r}")
        if codebook_update not in ("gradient", "ema"):
            raise ValueError(f"vq.codebook_update must be gradient | ema, got {codebook_update!r}")
        ema = codebook_update == "ema"
        if ema and (affine_lr or replace_freq):
            raise ValueError("vq.codebook_update=ema needs vq.affine_lr=0 and vq.replace_freq=0 (dead codes are "
                             "replaced through vq.dead_code_threshold)")
        if dead_code_threshold and not ema:
            raise ValueError("vq.dead_code_threshold needs vq.codebook_update=ema (use vq.replace_freq otherwise)")
        self.num_codes, self.dim = num_codes, dim
        self.beta, self.affine_lr, self.sync_nu = beta, affine_lr, sync_nu
        self.kmeans_init, self.kmeans_iters, self.kmeans_max_points = kmeans_init, kmeans_iters, kmeans_max_points
        self.replace_freq, self.replace_noise, self.seed = replace_freq, replace_noise, seed
        self.distance, self.codebook_update = distance, codebook_update
        self.ema_decay, self.ema_eps, self.dead_code_threshold = ema_decay, ema_eps, dead_code_threshold
        init = torch.randn(num_codes, dim)
        if distance == "cosine":
            init = F.normalize(init, dim=-1)
        if ema:  # raw codebook C, a buffer: no gradient, no weight decay
            self.register_buffer("weight", init)
            self.register_buffer("ema_count", torch.zeros(num_codes))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.weight = nn.Parameter(init)  # raw codebook C (pre-affine)
        self.affine_scale = nn.Parameter(torch.zeros(dim))
        self.affine_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialised", torch.tensor(not kmeans_init))
        self.register_buffer("code_age", torch.zeros(num_codes, dtype=torch.long))  # training forwards since last use
        self._generator: torch.Generator | None = None

    # ---- codebook ---------------------------------------------------------------------------------------------------
    def _affine(self):
        if not self.affine_lr:
            return None, None
        return 1.0 + self.affine_lr * self.affine_scale, self.affine_lr * self.affine_bias

    def codebook(self) -> torch.Tensor:
        """Effective codebook C' = (1 + a s) C + a b, (K, D); unit rows for the cosine distance."""
        scale, bias = self._affine()
        cb = self.weight if scale is None else self.weight * scale + bias
        return F.normalize(cb, dim=-1) if self.distance == "cosine" else cb

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code indices (...) -> effective code vectors (..., D) (decoding tokens)."""
        return F.embedding(codes, self.codebook())

    @torch.no_grad()
    def _set_effective(self, idx: torch.Tensor, vectors: torch.Tensor):
        """Write codebook rows so that their *effective* (affine) value equals `vectors`."""
        scale, bias = self._affine()
        if scale is not None:
            vectors = (vectors - bias) / scale
        self.weight[idx] = vectors.to(self.weight.dtype)

    def _gen(self, device) -> torch.Generator:
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    # ---- k-means init and dead-code replacement ---------------------------------------------------------------------
    @torch.no_grad()
    def _sample(self, z: torch.Tensor, n: int) -> torch.Tensor:
        """n rows of z, without replacement when z has enough (sample_vectors of vector-quantize-pytorch)."""
        g = self._gen(z.device)
        if z.shape[0] >= n:
            return z[torch.randperm(z.shape[0], generator=g, device=z.device)[:n]]
        return z[torch.randint(z.shape[0], (n,), generator=g, device=z.device)]

    @torch.no_grad()
    def _spherical_kmeans_init(self, z_real: torch.Tensor):
        """Cosine k-means of the (normalised) z: means drawn from the batch, kmeans_iters rounds of arg-max cosine
        assignment and renormalised means, empty clusters keep their mean; the EMA state starts from the result."""
        means = self._sample(z_real, self.num_codes)
        counts = torch.zeros(self.num_codes, device=z_real.device)
        for _ in range(self.kmeans_iters):
            assign = (z_real @ means.T).argmax(-1)
            counts = torch.bincount(assign, minlength=self.num_codes).float()
            sums = torch.zeros_like(means).index_add_(0, assign, z_real)
            means = torch.where(counts[:, None] > 0, F.normalize(sums / counts.clamp(min=1)[:, None], dim=-1), means)
        self.weight.copy_(means)
        self.ema_sum.copy_(means * counts[:, None])
        self.ema_count.copy_(counts)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, z_real: torch.Tensor, codes_real: torch.Tensor):
        """EMA codebook step and dead-code reset (CosineSimCodebook.forward / expire_codes_ of
        vector-quantize-pytorch 1.14.19); counts and sums are summed over ranks, resets broadcast from rank 0."""
        counts = torch.bincount(codes_real, minlength=self.num_codes).float()
        sums = torch.zeros(self.num_codes, self.dim, device=z_real.device).index_add_(0, codes_real, z_real)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.lerp_(counts, 1 - self.ema_decay)
        self.ema_sum.lerp_(sums, 1 - self.ema_decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.ema_eps) / (total + self.num_codes * self.ema_eps) * total
        means = self.ema_sum / smoothed[:, None]
        self.weight.copy_(F.normalize(means, dim=-1) if self.distance == "cosine" else means)
        dead = (self.ema_count < self.dead_code_threshold).nonzero().squeeze(1)
        if len(dead) and z_real.shape[0]:
            new = self._sample(z_real, len(dead))
            self.weight[dead] = new
            self.ema_sum[dead] = new * self.dead_code_threshold
            self.ema_count[dead] = self.dead_code_threshold
            self._broadcast_codebook()

    @torch.no_grad()
    def _kmeans_init(self, z_real: torch.Tensor):
        g = self._gen(z_real.device)
        if z_real.shape[0] > self.kmeans_max_points:
            z_real = z_real[torch.randperm(z_real.shape[0], generator=g, device=z_real.device)[:self.kmeans_max_points]]
        if self.codebook_update == "ema":
            return self._spherical_kmeans_init(z_real)
        if z_real.shape[0] < self.num_codes:  # too few vectors: repeat them with small noise
            reps = -(-self.num_codes // max(z_real.shape[0], 1))
            z_real = z_real.repeat(reps, 1)
            z_real = z_real + 0.01 * z_real.std().clamp(min=1e-6) * torch.randn(
                z_real.shape, generator=g, device=z_real.device)
        km = KMeans(self.num_codes, n_iter=self.kmeans_iters, seed=self.seed).fit(z_real.float())
        self._set_effective(torch.arange(self.num_codes, device=z_real.device), km.centroids)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _replace_dead(self, z_real: torch.Tensor) -> int:
        dead = (self.code_age >= self.replace_freq).nonzero().squeeze(1)
        if len(dead) == 0 or z_real.shape[0] == 0:
            return 0
        g = self._gen(z_real.device)
        pick = torch.randint(z_real.shape[0], (len(dead),), generator=g, device=z_real.device)
        new = z_real[pick].float()
        new = new + self.replace_noise * new.norm(dim=-1, keepdim=True) * torch.randn(
            new.shape, generator=g, device=new.device)
        self._set_effective(dead, new)
        self.code_age[dead] = 0
        return len(dead)

    # ---- forward ----------------------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> VQOutput:
        if z.shape[-1] != self.dim:
            raise ValueError(f"VectorQuantizer: last dimension of z is {z.shape[-1]}, expected dim={self.dim}")
        shape = z.shape[:-1]
        if self.loss_average == "jet" and len(shape) < 2:
            raise ValueError(f"vq.loss_average=jet needs z of shape (jets, particles, dim), got {tuple(z.shape)}")
        z_flat = z.reshape(-1, self.dim).float()
        if self.distance == "cosine":
            z_flat = F.normalize(z_flat, dim=-1)
        m_flat = torch.ones(z_flat.shape[0], dtype=torch.bool, device=z.device) if mask is None else mask.reshape(-1)
        z_real = z_flat.detach()[m_flat]

        with torch.autocast(device_type=z.device.type, enabled=False):
            if self.training:
                if not bool(self.initialised):
                    self._kmeans_init(z_real)
                    self._broadcast_codebook()
                if self.replace_freq and bool((self.code_age >= self.replace_freq).any()):
                    self._replace_dead(z_real)
                    self._broadcast_codebook()
            cb = self.codebook().float()
            with torch.no_grad():
                codes = nearest(z_flat.detach(), cb.detach())[0]
            z_q = F.embedding(codes, cb)

            # beta-split loss per real vector (Huh et al. 2023); EMA mode: the commitment term alone
            commit = ((z_flat - z_q.detach()) ** 2).mean(-1)
            if self.codebook_update == "ema":
                per_vector = commit
                if self.training:
                    self._ema_update(z_flat.detach()[m_flat], codes[m_flat])
            else:
                codebook_term = ((z_flat.detach() - z_q) ** 2).mean(-1)
                per_vector = (1.0 - self.beta) * commit + self.beta * codebook_term
            loss = self._average(per_vector, m_flat, shape)

            # synchronised straight-through estimator (Huh et al. 2023)
            z_st = z_flat + (z_q - z_flat).detach()
            if self.sync_nu:
                z_st = z_st + self.sync_nu * z_q - (self.sync_nu * z_q).detach()
            z_st = z_st.masked_fill(~m_flat.unsqueeze(-1), 0.0)

            # usage statistics over real positions (summed over ranks)
            counts = torch.bincount(codes[m_flat], minlength=self.num_codes).float()
            if self.training and _distributed():  # training forwards run in lock-step on every rank; eval may not
                dist.all_reduce(counts)
            if self.training and self.replace_freq:
                with torch.no_grad():
                    self.code_age += 1
                    self.code_age[counts > 0] = 0
            p = counts / counts.sum().clamp(min=1.0)
            utilisation = (counts > 0).float().mean()
            perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())

        return VQOutput(z_st.reshape(*shape, self.dim).to(z.dtype), codes.reshape(shape), loss, utilisation.detach(),
                        perplexity.detach())

    def _average(self, per_vector: torch.Tensor, m_flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Mean of the per-vector loss over the real vectors (loss_average particle) or per jet, then over the jets
        with a real particle (loss_average jet)."""
        w = m_flat.to(per_vector.dtype)
        if self.loss_average == "particle":
            return (per_vector * w).sum() / w.sum().clamp(min=1.0)
        w = w.reshape(shape)
        n = w.sum(-1)
        per_jet = (per_vector.reshape(shape) * w).sum(-1)[n > 0] / n[n > 0]
        return per_jet.mean() if per_jet.numel() else per_vector.sum() * 0.0

    def _broadcast_codebook(self):
        if _distributed():
            with torch.no_grad():
                dist.broadcast(self.weight.data, src=0)
                dist.broadcast(self.code_age, src=0)
                if self.codebook_update == "ema":
                    dist.broadcast(self.ema_count, src=0)
                    dist.broadcast(self.ema_sum, src=0)

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, affine_lr={self.affine_lr}, "
                f"sync_nu={self.sync_nu}, kmeans_init={self.kmeans_init}, replace_freq={self.replace_freq}, "
                f"distance={self.distance}, codebook_update={self.codebook_update}, loss_average={self.loss_average}")
