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
Each figure reads alone: its title is the table's title in words (published.yaml `title`, or meta.title for a table of
ours), a caption says which data our lines come from (the kit's simulation, or the real dataset in the paper profile:
data_origin) and where the published points come from; "Which pretraining?" gets a compact legend (colour = method,
line style = pretrained / random init, marker = frozen probe / fine-tuned: COMPACT_LEGENDS).
common/results/report.py writes one PNG per table under <results>/figures/ and links it below the table in RESULTS.md.
"""
from __future__ import annotations

import math
import re
import textwrap
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
# table id -> the row keys that style its lines instead of one legend entry per line: colour (one per value of a key),
# line style and marker ({value: (matplotlib style, legend label)})
COMPACT_LEGENDS = {
    "compare.which_pretraining": {
        "colour": "model",
        "linestyle": ("init", {"pretrained": ("-", "pretrained"), "random": ("--", "random init")}),
        "marker": ("mode", {"frozen probe": ("o", "frozen probe"), "fine-tuned": ("^", "fine-tuned")}),
    },
}


def data_origin(meta: dict | None) -> str | None:
    """"simulated" when our rows come from the kit's simulation, "real" when from the real datasets, None when the
    result files do not say. Read from the table's meta: its `dataset` (a path under .../sim/, or the word
    "simulated") and its `profile` (smoke and mini run on simulated data only; paper reads the real datasets, except
    for a sample whose path says it is simulated, e.g. MPM's second-detector sample data/real/sim/jetclass_atlas)."""
    meta = meta or {}
    ds = str(meta.get("dataset") or "").lower()
    if "simulat" in ds or re.search(r"(^|[/ ])sim(-\w+)?(/|\s|,|$)", ds):
        return "simulated"
    if meta.get("profile") in ("smoke", "mini"):
        return "simulated"
    if meta.get("profile") == "paper":
        return "real"
    return None


def data_caption(meta: dict | None, has_published: bool, cite: str = "") -> str:
    """One line under the title: where our lines and the published points come from."""
    origin, profile = data_origin(meta), (meta or {}).get("profile")
    at = f", profile {profile}" if profile else ""
    ours = {"simulated": f"ours: the kit's simulated sample{at} (not the papers' data)",
            "real": f"ours: the real dataset{at}",
            None: f"ours: this run{at} (data not stated in the result files)"}[origin]
    if has_published:
        ours += f"; open diamonds: published{', ' + cite if cite else ''}"
    return ours


def figure_title(table_id: str, published: dict | None = None, meta: dict | None = None) -> str:
    """The table's title in words: published.yaml's `title`, else the meta title of a table of ours, else its id."""
    entry = published_table(table_id, published) or {}
    return str(entry.get("title") or (meta or {}).get("title") or table_id)


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
                                                                                "like": like, "keys": g["_keys"]})
        ln["pts"][x] = vals
    lines = {k: {"x": sorted(v["pts"]), "values": [v["pts"][x] for x in sorted(v["pts"])], "style": v["style"],
                 "like": v["like"], "keys": {a: b for a, b in v["keys"].items() if a != x_key}}
             for k, v in lines.items()}
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
            "logx": logx, "logy": logy, "cite": cite, "compact": COMPACT_LEGENDS.get(table_id)}


def draw_table_figure(table_id: str, rows: list[dict], published: dict | None = None, title: str | None = None,
                      keys: list[str] | None = None, meta: dict | None = None):
    """The matplotlib Figure of one table (figure_data, titled in words, its data named), or None."""
    from common.results.plots import table_figure_fig

    d = figure_data(table_id, rows, published, keys or (meta or {}).get("keys"))
    if d is None:
        return None
    words = title or figure_title(table_id, published, meta)
    return table_figure_fig(d["lines"], published=d["published"], hlines=d["hlines"], xlabel=d["xlabel"],
                            ylabel=d["ylabel"], logx=d["logx"], logy=d["logy"],
                            title="\n".join(textwrap.wrap(words, 80)),
                            caption="\n".join(textwrap.wrap(data_caption(meta, bool(d["published"]), d["cite"]), 70)), compact=d["compact"])


def table_figure(table_id: str, rows: list[dict], path, published: dict | None = None,
                 title: str | None = None, keys: list[str] | None = None, meta: dict | None = None) -> Path | None:
    """Write the figure of one table (draw_table_figure) to path; None when the table has no figure or no value.
    meta: the table's merged meta (its profile and dataset name the data on the figure)."""
    from common.results.plots import save_figure

    fig = draw_table_figure(table_id, rows, published, title, keys, meta)
    return None if fig is None else save_figure(fig, path)
