"""Plot helpers. Every function draws on its own Agg figure (no pyplot state, no window) and writes a PNG atomically
(path.tmp, then os.replace); it returns the path written.

  roc_curves(curves, path)          background rejection 1/eps_B vs signal efficiency (or the plain ROC)
  metric_vs_labels(series, path)    e.g. accuracy vs number of labelled jets: log x, mean +- std band over seeds
  table_figure(lines, path)         a results table's figure: ours as lines with bands over seeds, published points,
                                    horizontal references (the supervised ceiling), a title in words and a caption
                                    naming the data; table_figure_fig returns the Figure itself
  hist_ratio(real, gen, path)       real vs generated histograms with a generated/real ratio panel
  data_label(root, name)            what to call a dataset in a plot: its name, or the kit's simulation of it
  loss_curves(log, path)            training/validation losses from log.jsonl rows
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.atomic import atomic_path
from common.training.metrics import roc_curve


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


def table_figure(lines: dict, path, **kw) -> Path:
    """Write table_figure_fig(lines, **kw) to path."""
    return save_figure(table_figure_fig(lines, **kw), path)


def table_figure_fig(lines: dict, *, published: dict | None = None, hlines: dict | None = None,
                     xlabel: str = "labelled jets", ylabel: str = "accuracy", logx: bool = True, logy: bool = False,
                     title: str | None = None, caption: str | None = None, compact: dict | None = None) -> Figure:
    """A results table as a figure.

    lines: {label: {"x": [...], "values": [[per-seed values], ...], "style": "ours" | "floor" | "random",
    "like": label, "keys": {key: value}}}: a line at the mean and a band of +- sample std where a point has more than
    one seed (floor rows dashed, grey shades; "random" dashed in the colour of the line `like`, drawn before it);
    published: {label: {"x": [...], "y": [...], "like": <label of ours with the same keys or None>}}: open markers on
    a dotted line, in the colour of the matching line of ours;
    hlines: {label: [values over seeds]}: horizontal references (e.g. every label, from scratch: the ceiling);
    title: the figure's title in words; caption: one line under it naming the data;
    compact: {"colour": key, "linestyle": (key, {value: (ls, label)}), "marker": (key, {value: (marker, label)})}:
    lines of ours are styled by their keys and the legend lists one entry per colour, line style and marker
    (proxies) instead of one per line."""
    from matplotlib.lines import Line2D

    fig, ax = _figure(figsize=(7.5, 5))
    colours, floor_shades = {}, iter(["0.15", "0.45", "0.6", "0.3"])
    n_own = sum(ln.get("style") == "ours" for ln in lines.values())
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n_own <= 10 else "tab20"]
    palette = iter(cmap(i % cmap.N) for i in range(n_own))
    group_colour: dict = {}  # compact: one colour per value of the colour key
    proxies: dict = {}
    for label, ln in lines.items():
        xs = np.asarray(ln["x"], dtype=float)
        mean = np.array([np.mean(v) for v in ln["values"]])
        std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in ln["values"]])
        floor = ln.get("style") == "floor"
        kw = dict(color=next(floor_shades, "0.5"), ls="--", marker="s", ms=4) if floor else dict(marker="o", ms=4)
        if compact and not floor:
            keys = ln.get("keys") or {}
            group = keys.get(compact["colour"])
            if group not in group_colour:
                group_colour[group] = cmap(len(group_colour) % cmap.N)
            ls_key, ls_map = compact["linestyle"]
            mk_key, mk_map = compact["marker"]
            ls, ls_label = ls_map.get(keys.get(ls_key), ("-", str(keys.get(ls_key))))
            mk, mk_label = mk_map.get(keys.get(mk_key), ("o", str(keys.get(mk_key))))
            kw = dict(color=group_colour[group], ls=ls, marker=mk, ms=5, mfc="none" if ls != "-" else None)
            proxies.setdefault(("ls", ls_label), Line2D([], [], color="k", ls=ls, label=ls_label))
            proxies.setdefault(("mk", mk_label), Line2D([], [], color="k", ls="none", marker=mk, label=mk_label))
            line, = ax.plot(xs, mean, **kw)
        else:
            if ln.get("style") == "ours":  # one colour per line of ours (tab20 beyond ten lines)
                kw["color"] = next(palette)
            if ln.get("style") == "random":  # the same architecture at random init: dashed, in its pretrained colour
                kw = dict(ls="--", marker="o", ms=4, mfc="none", **({"color": colours[ln["like"]]}
                                                                     if ln.get("like") in colours else {}))
            line, = ax.plot(xs, mean, label=label, **kw)
        colours[label] = line.get_color()
        if any(len(v) > 1 for v in ln["values"]):
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    for i, (label, pts) in enumerate((published or {}).items()):
        c = colours.get(pts.get("like")) or f"C{(len(colours) + i) % 10}"
        ax.plot(pts["x"], pts["y"], ls=":", marker="D", ms=5, mfc="none", color=c, label=label)
    for i, (label, vals) in enumerate((hlines or {}).items()):
        m = float(np.mean(vals))
        ax.axhline(m, color="k", ls=(0, (1, 1 + i)), lw=1.2, label=f"{label} ({m:.3g})")
        if len(vals) > 1:
            ax.axhspan(m - np.std(vals, ddof=1), m + np.std(vals, ddof=1), color="k", alpha=0.07, lw=0)
    ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear", yscale="log" if logy else "linear")
    ax.grid(alpha=0.3, which="both")
    handles, labels = ax.get_legend_handles_labels()
    if compact:  # colours (methods) first, then line styles and markers, then the floor and references
        handles = ([Line2D([], [], color=c, lw=3, label=str(g)) for g, c in group_colour.items()]
                   + [p for k, p in proxies.items() if k[0] == "ls"] + [p for k, p in proxies.items() if k[0] == "mk"]
                   + handles)
        labels = [h.get_label() for h in handles]
    ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    if caption:
        ax.set_title(caption, fontsize=7, style="italic")
    return fig


def data_label(root, name: str = "JetClass") -> str:
    """How a plot names the data under `root`: `name` for the real dataset, "<name>-like, kit simulation" where the
    directory was written by python -m common.simulate (its simulate.json), so simulated data are never shown as
    the real dataset."""
    return f"{name}-like (kit simulation)" if (Path(root) / "simulate.json").is_file() else name


def hist_ratio(real, gen, path, *, bins=50, xlabel: str = "", labels=("real", "generated"),
               range: tuple | None = None, logy: bool = False, density: bool = True,
               ratio_limits=(0.5, 1.5), ratio_label: str = "gen. / ref.") -> Path:
    """Histogram of `real` (filled) and `gen` (line) with a gen/real ratio panel; bins span the 0.1-99.9 % quantiles
    of the real sample unless `range` or explicit bin edges are given. Statistical errors are Poisson. `labels` name
    the two samples in the legend; `ratio_label` is the ratio panel's axis label (short enough for its height)."""
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
    ax.legend(fontsize=8)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (h_g / norm_g) / (h_r / norm_r)
        err = ratio * np.sqrt(1 / h_g + 1 / h_r)
    ok = np.isfinite(ratio) & np.isfinite(err)  # bins empty in either sample are left out
    rax.axhline(1.0, c="grey", lw=1)
    rax.errorbar(centres[ok], ratio[ok], yerr=err[ok], xerr=widths[ok] / 2, fmt="o", ms=2, c="C1")
    rax.set(xlabel=xlabel, ylabel=ratio_label, ylim=ratio_limits)  # short: the panel is one unit high
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
