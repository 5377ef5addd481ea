"""Plot helpers. Every function draws on its own Agg figure (no pyplot state, no window) and writes a PNG atomically
(path.tmp, then os.replace); it returns the path written.

  roc_curves(curves, path)          background rejection 1/eps_B vs signal efficiency (or the plain ROC)
  metric_vs_labels(series, path)    e.g. accuracy vs number of labelled jets: log x, mean +- std band over seeds
  hist_ratio(real, gen, path)       real vs generated histograms with a generated/real ratio panel
  loss_curves(log, path)            training/validation losses from log.jsonl rows
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.atomic import atomic_path
from common.metrics import roc_curve


def _figure(nrows=1, height_ratios=None, figsize=(6, 4.5), sharex=True):
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    if nrows == 1:
        return fig, fig.subplots()
    return fig, fig.subplots(nrows, 1, sharex=sharex, gridspec_kw={"height_ratios": height_ratios})


def save_figure(fig: Figure, path) -> Path:
    """Write fig as PNG to path atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def roc_curves(curves: dict, path, *, kind: str = "rejection", title: str | None = None) -> Path:
    """curves: {label: (y, scores)} (binary labels, 1 = signal) or {label: (fpr, tpr)} with kind="precomputed".
    kind "rejection": 1/eps_B (log) vs eps_S, the usual jet-tagging view; "roc": TPR vs FPR."""
    fig, ax = _figure()
    for label, (a, b) in curves.items():
        fpr, tpr = (np.asarray(a), np.asarray(b)) if kind == "precomputed" else roc_curve(a, b)[:2]
        if kind == "roc":
            ax.plot(fpr, tpr, label=label)
        else:
            ok = fpr > 0
            ax.plot(tpr[ok], 1.0 / fpr[ok], label=label)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls=":", c="grey")
        ax.set(xlabel="background efficiency (FPR)", ylabel="signal efficiency (TPR)")
    else:
        ax.set(xlabel=r"signal efficiency $\epsilon_S$", ylabel=r"background rejection $1/\epsilon_B$", yscale="log",
               xlim=(0, 1))
    ax.legend()
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def metric_vs_labels(series: dict, path, *, ylabel: str = "accuracy", xlabel: str = "labelled jets per class",
                     title: str | None = None, reference: dict | None = None) -> Path:
    """series: {label: {n_labels: value or list of values over seeds}}; a line at the mean and a band of +- std.
    reference: optional {label: {n_labels: value}} drawn dashed (e.g. published numbers, labelled as such)."""
    fig, ax = _figure()
    for label, points in series.items():
        ns = sorted(points)
        vals = [np.atleast_1d(np.asarray(points[n], dtype=float)) for n in ns]
        mean = np.array([v.mean() for v in vals])
        std = np.array([v.std() for v in vals])
        line, = ax.plot(ns, mean, marker="o", label=label)
        if any(len(v) > 1 for v in vals):
            ax.fill_between(ns, mean - std, mean + std, color=line.get_color(), alpha=0.25)
    for label, points in (reference or {}).items():
        ns = sorted(points)
        ax.plot(ns, [points[n] for n in ns], ls="--", marker="x", label=label)
    ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def hist_ratio(real, gen, path, *, bins=50, xlabel: str = "", labels=("real", "generated"),
               range: tuple | None = None, logy: bool = False, density: bool = True,
               ratio_limits=(0.5, 1.5)) -> Path:
    """Histogram of `real` (filled) and `gen` (line) with a gen/real ratio panel; bins span the 0.1-99.9 % quantiles
    of the real sample unless `range` or explicit bin edges are given. Statistical errors are Poisson."""
    real = np.asarray(real, dtype=float).ravel()
    gen = np.asarray(gen, dtype=float).ravel()
    real, gen = real[np.isfinite(real)], gen[np.isfinite(gen)]
    if np.ndim(bins) == 0:
        lo, hi = range if range is not None else np.quantile(real, [0.001, 0.999]) if len(real) else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, int(bins) + 1)
    edges = np.asarray(bins, dtype=float)
    centres, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    h_r, h_g = np.histogram(real, edges)[0].astype(float), np.histogram(gen, edges)[0].astype(float)
    norm_r = h_r.sum() * widths if density and h_r.sum() else np.ones_like(widths)
    norm_g = h_g.sum() * widths if density and h_g.sum() else np.ones_like(widths)
    fig, (ax, rax) = _figure(2, height_ratios=(3, 1), figsize=(6, 5.5))
    ax.stairs(h_r / norm_r, edges, fill=True, alpha=0.35, label=labels[0])
    ax.stairs(h_g / norm_g, edges, lw=1.5, label=labels[1])
    ax.errorbar(centres, h_g / norm_g, yerr=np.sqrt(h_g) / norm_g, fmt="none", ecolor="C1", lw=1)
    ax.set(ylabel="density" if density else "entries", yscale="log" if logy else "linear")
    ax.legend()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (h_g / norm_g) / (h_r / norm_r)
        err = ratio * np.sqrt(1 / h_g + 1 / h_r)
    ok = np.isfinite(ratio) & np.isfinite(err)  # bins empty in either sample are left out
    rax.axhline(1.0, c="grey", lw=1)
    rax.errorbar(centres[ok], ratio[ok], yerr=err[ok], xerr=widths[ok] / 2, fmt="o", ms=2, c="C1")
    rax.set(xlabel=xlabel, ylabel=f"{labels[1]} / {labels[0]}"[:30], ylim=ratio_limits)
    return save_figure(fig, path)


def _read_log(log) -> list[dict]:
    if isinstance(log, (str, Path)):
        with open(log) as f:
            return [json.loads(line) for line in f if line.strip()]
    return list(log)


def loss_curves(log, path, *, keys=None, logy: bool = True, title: str | None = None) -> Path:
    """log: rows of a log.jsonl (list of dicts with "step") or the file's path; keys: metrics to draw (default: every
    key containing "loss"). Each key is drawn over the steps at which it was logged."""
    rows = _read_log(log)
    if keys is None:
        keys = sorted({k for r in rows for k in r if "loss" in k})
    fig, ax = _figure()
    positive = True
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r and r[key] is not None]
        if pts:
            steps, vals = zip(*pts)
            positive &= min(vals) > 0
            ax.plot(steps, vals, label=key, marker="." if len(pts) < 50 else None)
    # log scale only when every value is positive (a flow NLL can be negative)
    ax.set(xlabel="step", ylabel="loss", yscale="log" if logy and positive else "linear")
    if keys:
        ax.legend()
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
