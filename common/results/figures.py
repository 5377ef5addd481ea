"""The figure of a results table, where the paper shows that table as a figure: accuracy against labelled jets (MPMv1,
MPMv2, OmniJet-alpha, HEP-JEPA), SIC against signal jets (CWoLa), ARI against secondary vertices, balanced accuracy
against tracks, rejection against labelled jets (MPMv1 new domain).

`table_figure(table_id, rows, path)` draws, from a table's merged result rows (common.results.tables.collect_results):
- ours: one line per combination of the other key columns (mode, task, ...), at the mean over seeds, with a band of
  +- the sample std (the table's "mean ± std (n)");
- the jet-observables floor (common/results/floor.py rows "jet observables (...)"): dashed grey lines over the same grid;
- rows on every labelled jet (the x key is "all (<jets>)", e.g. the supervised ceiling trained from scratch):
  horizontal references;
- the published points of common/results/published.yaml (percent converted to fractions) of the key combinations we ran,
  dotted, in the colour of our line with the same keys; the table below the figure lists the others; literature
  rows (ours: False) and references are left out.
common/results/report.py writes one PNG per table under <results>/figures/ and links it below the table in RESULTS.md.
"""
from __future__ import annotations

import math
from pathlib import Path

from common.results.tables import aggregate_rows, metric_values, published_table

# table id -> (x key, metric, x label, log x, log y)
FIGURES = {
    "mpm.v1_jetclass": ("n_train", "accuracy", "labelled jets (all classes)", True, False),
    "mpm.v1_new_classes": ("n_train", "accuracy", "labelled jets (all classes)", True, False),
    "mpm.v1_new_domain_auc": ("n_train", "auc", "labelled jets", True, False),
    "mpm.v1_new_domain_rejection": ("n_train", "rejection_50", "labelled jets", True, True),
    "mpm.v1_cwola": ("n_signal", "sic", "signal jets", True, False),
    "mpm.v2_jetclass": ("n_train", "accuracy", "labelled jets (all classes)", True, False),
    "mpm.v2_cwola": ("n_signal", "sic", "signal jets", True, False),
    "mpm.v2_btag": ("n_train", "accuracy", "labelled jets (all flavours)", True, False),
    "mpm.v2_vertexing": ("n_sv", "ari", "secondary vertices in the jet", False, False),
    "mpm.v2_track_origin": ("n_tracks", "balanced_accuracy", "tracks in the jet", False, False),
    "omnijet.classification": ("n_per_class", "accuracy", "labelled jets per class", True, False),
    "hepjepa.jetclass_fewshot": ("label_percent", "accuracy", "labelled fraction of the training split [%]", True,
                                 False),
    "compare.which_pretraining": ("n_per_class", "accuracy", "labelled jets per class", True, False),  # ours
}
FLOOR_PREFIX = "jet observables"


def is_floor_row(row: dict) -> bool:
    """A row of the jet-observables floor (common/results/floor.py names its rows "jet observables (...)")."""
    return any(isinstance(v, str) and v.startswith(FLOOR_PREFIX) for k, v in row.items() if k in ("mode", "model"))


def _num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _label(keys: dict, others: list[str]) -> str:
    return ", ".join(str(keys[k]) for k in others if keys.get(k) not in (None, "", "none"))


def figure_data(table_id: str, rows: list[dict], published: dict | None = None,
                keys: list[str] | None = None) -> dict | None:
    """{lines, published, hlines, xlabel, ylabel, logx, logy} for plots.table_figure, or None when the table has no
    figure or nothing to draw. keys: the key columns of a table of ours (no published entry; its meta.keys)."""
    if table_id not in FIGURES:
        return None
    x_key, metric, xlabel, logx, logy = FIGURES[table_id]
    entry = published_table(table_id, published) or {}
    keys = list(entry.get("keys") or keys or [])
    others = [k for k in keys if k != x_key]
    lines, hlines = {}, {}
    for g in aggregate_rows(rows, keys, [metric]).values():
        vals = [v for v in metric_values(g[metric]) if math.isfinite(v)]
        if not vals:
            continue
        label = _label(g["_keys"], others)
        x = _num(g["_keys"].get(x_key))
        if x is None:  # every labelled jet: a horizontal reference
            hlines[f"{label}, every labelled jet: {g['_keys'].get(x_key)}"] = vals
            continue
        style = "floor" if is_floor_row(g["_keys"]) else "ours"
        like = None
        if g["_keys"].get("init") == "random":  # compare.which_pretraining: dashed, in its pretrained line's colour
            style, like = "random", _label({**g["_keys"], "init": "pretrained"}, others) + " [ours]"
        ln = lines.setdefault(label + ("" if style == "floor" else " [ours]"), {"pts": {}, "style": style,
                                                                                "like": like})
        ln["pts"][x] = vals
    lines = {k: {"x": sorted(v["pts"]), "values": [v["pts"][x] for x in sorted(v["pts"])], "style": v["style"],
                 "like": v["like"]} for k, v in lines.items()}
    scale = 0.01 if metric in set(entry.get("percent") or []) else 1.0
    pub = {}
    cite = entry.get("cite") or str(entry.get("source", "")).split(",")[0].strip()
    for r in entry.get("rows") or []:
        if r.get("ours") is False:
            continue
        v, x = r.get(metric), _num(r.get(x_key))
        v = v.get("value") if isinstance(v, dict) else v
        if _num(v) is None or x is None:
            continue
        label = _label(r, others)
        if f"{label} [ours]" not in lines:  # only the published counterparts of our lines (the table lists the rest)
            continue
        p = pub.setdefault(f"{label} [published, {cite}]", {"x": [], "y": [], "like": f"{label} [ours]"})
        p["x"].append(x)
        p["y"].append(float(v) * scale)
    if not lines and not hlines:
        return None
    return {"lines": lines, "published": pub, "hlines": hlines, "xlabel": xlabel, "ylabel": metric,
            "logx": logx, "logy": logy}


def table_figure(table_id: str, rows: list[dict], path, published: dict | None = None,
                 title: str | None = None, keys: list[str] | None = None) -> Path | None:
    """Write the figure of one table (figure_data) to path; None when the table has no figure or no value."""
    from common.results.plots import table_figure as draw

    d = figure_data(table_id, rows, published, keys)
    if d is None:
        return None
    return draw(d["lines"], path, published=d["published"], hlines=d["hlines"], xlabel=d["xlabel"],
                ylabel=d["ylabel"], logx=d["logx"], logy=d["logy"], title=title or table_id)
