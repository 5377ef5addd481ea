"""Conditional rational-quadratic spline coupling flow (the MPMv2 "CNF" / "Flow" task, arXiv:2409.12589;
jetssl src/models/mpm_tasks.py).

Written from the equations of Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows" (arXiv:1906.04032,
NSF below):
  rq_spline          monotonic rational-quadratic spline on [-B, B] with K bins (NSF Sec. 3.1; inverse NSF App. A),
                     identity ("linear tails") outside, boundary derivatives 1
  CouplingLayer      one coupling transform (NSF Sec. 3.2): an MLP on (identity half, context) gives 3K - 1 spline
                     parameters per transformed dimension
  ConditionalSplineFlow  a stack of coupling layers with alternating masks over the features and a standard-normal
                     base: forward x -> z with log|det dz/dx|, inverse z -> x, log_prob(x, context), sample(context)

The parameterisation is chosen so that all-zero raw parameters give the identity map (equal bins, derivative 1 at
every knot); with the conditioners' last layers zero-initialised an untrained flow is the identity and log_prob is
the standard-normal log density.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def _knots(raw: torch.Tensor, bound: float, min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised bin sizes (..., K) -> knot positions (..., K+1) from -bound to +bound and bin sizes (..., K).
    softmax keeps the sizes positive and summing to 2B; a floor of min_size * 2B keeps every bin non-degenerate."""
    K = raw.shape[-1]
    frac = min_size + (1 - min_size * K) * torch.softmax(raw, dim=-1)
    inner = torch.cumsum(frac, dim=-1)[..., :-1] * 2 * bound - bound
    edge = inner.new_full(inner[..., :1].shape, bound)
    knots = torch.cat([-edge, inner, edge], dim=-1)  # end points exactly -B and +B
    return knots, knots[..., 1:] - knots[..., :-1]


# softplus(raw + _SHIFT) + MIN_DERIVATIVE = 1 at raw = 0, so zero parameters give slope 1 at every interior knot
_SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))


def _log_slope(xi, s, d0, d1):
    """log dy/dx of one rational-quadratic segment at xi (NSF Sec. 3.1, the derivative of alpha / beta):
    dy/dx = s^2 [d1 xi^2 + 2 s xi (1 - xi) + d0 (1 - xi)^2] / [s + (d1 + d0 - 2 s) xi (1 - xi)]^2."""
    om = xi * (1 - xi)
    return (2 * torch.log(s) + torch.log(d1 * xi ** 2 + 2 * s * om + d0 * (1 - xi) ** 2)
            - 2 * torch.log(s + (d1 + d0 - 2 * s) * om))


def rq_spline(x: torch.Tensor, raw_widths: torch.Tensor, raw_heights: torch.Tensor, raw_derivs: torch.Tensor,
              bound: float = 4.0, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise monotonic rational-quadratic spline (NSF Sec. 3.1) with linear (identity) tails outside [-B, B].

    x (...,), raw_widths / raw_heights (..., K), raw_derivs (..., K-1) for the interior knots; the two boundary
    derivatives are fixed to 1 so that the spline joins the identity tails smoothly (NSF Sec. 3.1, "linear tails").
    Returns (y, log|dy/dx|) elementwise for the forward map, or (x', log|dx'/dy|) of the inverse map if inverse."""
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)  # evaluate on clamped values: no inf/NaN in the unused branch of torch.where

    xk, w = _knots(raw_widths, bound, MIN_BIN_WIDTH)   # x^(k), bin widths
    yk, h = _knots(raw_heights, bound, MIN_BIN_HEIGHT)  # y^(k), bin heights
    d_int = F.softplus(raw_derivs + _SHIFT) + MIN_DERIVATIVE
    ones = d_int.new_ones(d_int[..., :1].shape)
    d = torch.cat([ones, d_int, ones], dim=-1)          # delta^(k), k = 0..K

    # bin index k with knot^(k) <= value < knot^(k+1) (in y for the inverse); interior knots only, so k in 0..K-1
    knots = yk if inverse else xk
    k = (xc[..., None] >= knots[..., 1:-1]).sum(-1, keepdim=True)

    def at(t, kk=k):
        return t.gather(-1, kk).squeeze(-1)

    x0, wk, y0, hk = at(xk), at(w), at(yk), at(h)
    d0, d1 = at(d), at(d, k + 1)
    s = hk / wk  # s_k, the bin's average slope

    if not inverse:
        xi = (xc - x0) / wk  # xi in [0, 1]
        om = xi * (1 - xi)
        y = y0 + hk * (s * xi ** 2 + d0 * om) / (s + (d1 + d0 - 2 * s) * om)  # NSF Sec. 3.1: alpha(xi) / beta(xi)
        logdet = _log_slope(xi, s, d0, d1)
        return torch.where(inside, y, x), torch.where(inside, logdet, torch.zeros_like(logdet))

    # inverse (NSF App. A): xi solves a xi^2 + b xi + c = 0 with
    dy = xc - y0
    a = hk * (s - d0) + dy * (d1 + d0 - 2 * s)
    b = hk * d0 - dy * (d1 + d0 - 2 * s)
    c = -s * dy
    disc = (b ** 2 - 4 * a * c).clamp(min=0)    # >= 0 for a monotonic spline; clamp only guards round-off
    xi = (2 * c) / (-b - torch.sqrt(disc))      # the root in [0, 1], in the numerically stable form
    xi = xi.clamp(0, 1)
    xo = x0 + xi * wk
    logdet = -_log_slope(xi, s, d0, d1)  # log|dx/dy| = -log|dy/dx| at the recovered x
    return torch.where(inside, xo, x), torch.where(inside, logdet, torch.zeros_like(logdet))


def mlp(n_in: int, n_out: int, hidden: int, depth: int, zero_last: bool = True) -> nn.Sequential:
    """depth hidden layers of width `hidden` with SiLU, then a linear output (zero-initialised if zero_last)."""
    layers, w = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(w, hidden), nn.SiLU()]
        w = hidden
    out = nn.Linear(w, n_out)
    if zero_last:
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
    return nn.Sequential(*layers, out)


class CouplingLayer(nn.Module):
    """Coupling transform (NSF Sec. 3.2): dimensions with mask False pass unchanged and, with the context, condition
    the spline of every dimension with mask True. Parameters per transformed dim: K widths, K heights, K-1 slopes."""

    def __init__(self, mask: torch.Tensor, context_dim: int, bins: int = 8, tail_bound: float = 4.0,
                 hidden: int = 128, depth: int = 2, zero_init: bool = True):
        super().__init__()
        self.register_buffer("mask", mask.bool(), persistent=False)
        self.bins, self.tail_bound = bins, tail_bound
        n_id, n_tr = int((~self.mask).sum()), int(self.mask.sum())
        self.net = mlp(n_id + context_dim, n_tr * (3 * bins - 1), hidden, depth, zero_last=zero_init)

    def _params(self, x_id, context):
        p = self.net(torch.cat([x_id, context], dim=-1))
        p = p.view(*x_id.shape[:-1], int(self.mask.sum()), 3 * self.bins - 1)
        K = self.bins
        return p[..., :K], p[..., K:2 * K], p[..., 2 * K:]

    def forward(self, x, context, inverse: bool = False):
        """x (M, D), context (M, C) -> (y (M, D), log|det| (M,)) of the forward map (or of the inverse map)."""
        x_id, x_tr = x[:, ~self.mask], x[:, self.mask]
        y_tr, logdet = rq_spline(x_tr, *self._params(x_id, context), bound=self.tail_bound, inverse=inverse)
        y = x.clone()
        y[:, self.mask] = y_tr
        return y, logdet.sum(-1)


class ConditionalSplineFlow(nn.Module):
    """p(x | context) = N(z; 0, I) |det dz/dx| with z = f(x; context) a stack of RQ-spline coupling layers.
    Layer i transforms the dims j with (j + i) even and is conditioned on the others (alternating masks)."""

    def __init__(self, dim: int, context_dim: int, num_layers: int = 6, bins: int = 8, tail_bound: float = 4.0,
                 hidden: int = 128, depth: int = 2, zero_init: bool = True):
        super().__init__()
        if dim < 2:
            raise ValueError("a coupling flow needs at least 2 dimensions")
        self.dim = dim
        j = torch.arange(dim)
        self.layers = nn.ModuleList(CouplingLayer((j + i) % 2 == 0, context_dim, bins, tail_bound, hidden, depth,
                                                  zero_init) for i in range(num_layers))

    def forward(self, x, context):
        """x -> (z, log|det dz/dx|)."""
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, context)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z, context):
        """z -> x (the sampling direction)."""
        for layer in reversed(self.layers):
            z, _ = layer(z, context, inverse=True)
        return z

    def log_prob(self, x, context):
        """log p(x | context) under the standard-normal base (change of variables, NSF Eq. 2)."""
        z, logdet = self(x, context)
        base = -0.5 * (z ** 2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return base + logdet

    @torch.no_grad()
    def sample(self, context):
        """One sample per context row."""
        z = torch.randn(context.shape[0], self.dim, device=context.device, dtype=context.dtype)
        return self.inverse(z, context)
