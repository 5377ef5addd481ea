"""Table figures (common/results/figures.py, common/results/plots.py table_figure) and their links in RESULTS.md; the generation
histograms name simulated data as the kit's simulation and keep their ratio label whole."""
from __future__ import annotations

import numpy as np

from common.results import figures, report
from common.results import tables as results
from common.results.plots import data_label, hist_ratio

PUB = {"mpm": {"v2_jetclass": {
    "title": "t", "source": "Leigh et al., arXiv:2409.12589", "keys": ["mode", "task", "n_train"],
    "metrics": ["accuracy"], "percent": ["accuracy"],
    "rows": [{"mode": "finetune", "task": "regression", "n_train": 1000, "accuracy": 67.3},
             {"mode": "finetune", "task": "regression", "n_train": 10000, "accuracy": 78.0},
             {"mode": "finetune", "task": "kmeans", "n_train": 1000, "accuracy": 47.7}]}}}


def _rows():
    rows = [{"mode": "finetune", "task": "regression", "n_train": n, "seed": s, "accuracy": 0.3 + 0.01 * s + 0.1 * k}
            for k, n in enumerate((100, 1000)) for s in range(3)]
    rows += [{"mode": "jet observables (BDT)", "task": None, "n_train": n, "seed": s, "accuracy": 0.4}
             for n in (100, 1000) for s in range(3)]
    rows.append({"mode": "finetune", "task": "scratch", "n_train": "all (24000)", "seed": 0, "accuracy": 0.55})
    return rows


def test_figure_data_lines_bands_floor_ceiling_and_published_points():
    d = figures.figure_data("mpm.v2_jetclass", _rows(), PUB)
    ours = d["lines"]["finetune, regression [ours]"]
    assert ours["x"] == [100.0, 1000.0] and ours["style"] == "ours"
    assert np.allclose(ours["values"][0], [0.30, 0.31, 0.32])          # every seed kept: the band is over seeds
    assert d["lines"]["jet observables (BDT)"]["style"] == "floor"
    assert d["hlines"] == {"finetune, scratch, every labelled jet: all (24000)": [0.55]}   # the ceiling
    pub = d["published"]["finetune, regression [published, Leigh et al.]"]
    assert pub["x"] == [1000.0, 10000.0] and np.allclose(pub["y"], [0.673, 0.78])  # percent -> fraction
    assert pub["like"] == "finetune, regression [ours]"
    assert not any("kmeans" in k for k in d["published"])               # only counterparts of our lines
    assert figures.figure_data("mpm.v2_construction", _rows(), PUB) is None


def test_report_links_the_figure_under_its_table_and_drops_stale_ones(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "res"
    results.write_result(runs / "mpm" / "tables" / "mpm.v2_jetclass.json", "mpm.v2_jetclass", _rows(),
                         {"profile": "mini"}, published=PUB)
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "mpm.old_table.png").write_bytes(b"old")
    path, _ = report.build_results_md(runs, "mini", out, published=PUB, claims_path=False)
    md = path.read_text()
    png = out / "figures" / "mpm.v2_jetclass.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    table_at, link_at = md.index("### mpm.v2_jetclass"), md.index("Figure: [figures/mpm.v2_jetclass.png]")
    assert table_at < link_at
    assert not (out / "figures" / "mpm.old_table.png").exists()


def test_simulated_data_are_named_as_such_and_the_ratio_label_is_whole(tmp_path, monkeypatch):
    assert data_label(tmp_path) == "JetClass"
    (tmp_path / "simulate.json").write_text("{}")
    assert data_label(tmp_path) == "JetClass-like (kit simulation)"
    seen = {}
    from matplotlib.axes import Axes

    orig = Axes.set

    def spy(self, **kw):
        if "ylabel" in kw:
            seen.setdefault("ylabels", []).append(kw["ylabel"])
        return orig(self, **kw)

    monkeypatch.setattr(Axes, "set", spy)
    rng = np.random.default_rng(0)
    hist_ratio(rng.normal(size=500), rng.normal(size=500), tmp_path / "h.png",
               labels=(data_label(tmp_path) + ", tokenised + reconstructed", "generated (seed 0)"),
               ratio_label="generated / ref.")
    assert "generated / ref." in seen["ylabels"]


def test_report_lists_the_floor_rows_under_the_methods_rows(tmp_path):
    runs = tmp_path / "runs"
    rows = _rows()
    floor_rows = [r for r in rows if figures.is_floor_row(r)]
    results.write_result(runs / "mpm" / "floor" / "mpm.v2_jetclass.json", "mpm.v2_jetclass", floor_rows,
                         {"profile": "mini", "notes": "floor."}, published=PUB)   # sorts before tables/
    results.write_result(runs / "mpm" / "tables" / "mpm.v2_jetclass.json", "mpm.v2_jetclass",
                         [r for r in rows if not figures.is_floor_row(r)], {"profile": "mini", "notes": "method."},
                         published=PUB)
    md = report.build_results_md(runs, "mini", tmp_path / "res", published=PUB, claims_path=False)[0].read_text()
    assert md.index("| finetune | regression | 100 |") < md.index("| jet observables (BDT) | – | 100 |")
    assert "floor. method." in md


TITLED = {"mpm": {"v2_jetclass": {**PUB["mpm"]["v2_jetclass"],
                                  "title": "MPMv2 JetClass 10-class accuracy vs number of labelled jets"}}}


def _texts(fig):
    ax = fig.axes[0]
    words = lambda s: " ".join(s.split())  # titles are wrapped onto lines
    return (words(fig._suptitle.get_text()), words(ax.get_title()),
            [t.get_text() for t in ax.get_legend().get_texts()])


def test_table_figure_is_titled_in_words_and_names_simulated_data():
    fig = figures.draw_table_figure("mpm.v2_jetclass", _rows(), TITLED,
                                    meta={"profile": "mini", "dataset": "jetclass at data/sim/jetclass (simulated)"})
    title, caption, legend = _texts(fig)
    assert title == "MPMv2 JetClass 10-class accuracy vs number of labelled jets"
    assert "mpm.v2_jetclass" not in title
    assert caption == ("ours: the kit's simulated sample, profile mini (not the papers' data); "
                       "open diamonds: published, Leigh et al.")
    assert "finetune, regression [published, Leigh et al.]" in legend and "jet observables (BDT)" in legend


def test_paper_profile_figure_says_real_data_unless_the_sample_is_simulated():
    real = {"profile": "paper", "dataset": "jetclass at data/real/JetClass/Pythia (real)"}
    caption = _texts(figures.draw_table_figure("mpm.v2_jetclass", _rows(), TITLED, meta=real))[1]
    assert caption.startswith("ours: the real dataset, profile paper") and "simulated" not in caption
    # the paper profile's second-detector sample is simulated (data/real/sim/jetclass_atlas)
    assert figures.data_origin({"profile": "paper", "dataset": "jetclass at data/real/sim/jetclass_atlas"}) == "simulated"
    assert figures.data_origin({"profile": "smoke", "dataset": "toptagging at data/sim-smoke/toptagging"}) == "simulated"
    assert figures.data_origin({"profile": "paper", "dataset": "qg at data/real/qg"}) == "real"
    assert figures.data_origin({}) is None
    caption = _texts(figures.draw_table_figure("mpm.v2_jetclass", _rows(), TITLED, meta={}))[1]
    assert "data not stated" in caption


def _compare_rows():
    rows = []
    for model in ("mpmv1", "mpmv2_regression", "mpmv2_ssfm", "omnijet", "hepjepa"):
        for init in ("pretrained", "random"):
            for mode in ("frozen probe", "fine-tuned"):
                rows += [{"model": model, "init": init, "mode": mode, "n_per_class": n, "seed": s,
                          "accuracy": 0.2 + 0.1 * (init == "pretrained") + 0.01 * s + 0.001 * n}
                         for n in (10, 100) for s in range(3)]
    rows += [{"model": "jet observables (BDT)", "init": "none", "mode": "none", "n_per_class": n, "seed": s,
              "accuracy": 0.4} for n in (10, 100) for s in range(3)]
    return rows


def test_comparison_figure_has_a_compact_legend_colour_method_style_init_marker_mode():
    meta = {"title": "Which pretraining? Every backbone of the run on the same jets", "profile": "mini",
            "keys": ["model", "init", "mode", "n_per_class"], "dataset": "jetclass at data/sim/jetclass"}
    fig = figures.draw_table_figure("compare.which_pretraining", _compare_rows(), {}, meta=meta)
    title, caption, legend = _texts(fig)
    assert title == meta["title"]
    assert caption == "ours: the kit's simulated sample, profile mini (not the papers' data)"
    assert legend == ["mpmv1", "mpmv2_regression", "mpmv2_ssfm", "omnijet", "hepjepa", "pretrained", "random init",
                      "frozen probe", "fine-tuned", "jet observables (BDT)"]          # 10 entries for 21 lines
    ax = fig.axes[0]
    drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2]
    assert len(drawn) == 21
    by_style = {(ln.get_linestyle(), ln.get_marker()) for ln in drawn[:20]}
    assert by_style == {("-", "o"), ("-", "^"), ("--", "o"), ("--", "^")}
    colours = {}
    for ln in drawn[:20]:
        colours.setdefault(ln.get_color() if isinstance(ln.get_color(), str) else tuple(ln.get_color()), 0)
    assert len(colours) == 5                                                       # one colour per method
