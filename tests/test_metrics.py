"""Metrics agree with scikit-learn / scipy and with hand computations."""
import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from common.training import metrics as M


def _binary(n=2000, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 0.8 * y
    if ties:
        s = np.round(s, 1)
    return y, 1 / (1 + np.exp(-s))


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_roc_match_sklearn(ties):
    y, s = _binary(ties=ties)
    assert M.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = M.roc_curve(y, s)
    f2, t2, th2 = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])


def test_rejection_and_sic_from_sklearn_curve():
    y, s = _binary(n=20000, seed=1)
    fpr, tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    for eff in (0.5, 0.3):
        assert M.rejection_at(y, s, eff) == pytest.approx(1 / np.interp(eff, tpr, fpr), rel=1e-9)
    # at 1 % FPR the SIC is TPR/0.1
    t_at = tpr[np.searchsorted(fpr, 0.01)]
    assert M.sic_at_fpr(y, s, 0.01) == pytest.approx(t_at / 0.1, rel=0.02)
    # a perfect classifier rejects everything
    assert M.rejection_at([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.5) == float("inf")
    # random scores: rejection ~ 1/eff_s
    rng = np.random.default_rng(3)
    assert M.rejection_at(rng.integers(0, 2, 200000), rng.random(200000), 0.5) == pytest.approx(2.0, rel=0.02)


def test_rejection_and_sic_by_hand():
    # scores 0.9 (S), 0.5 (S and B tied), 0.1 (B): ROC points (0, 0), (0, 1/2), (1/2, 1), (1, 1); the tie is a
    # diagonal segment, so eps_S = 3/4 sits at eps_B = 1/4 and FPR = 1/4 at TPR = 3/4
    y, s = [1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]
    assert M.rejection_at(y, s, 0.75) == pytest.approx(4.0)
    assert M.rejection_at(y, s, 0.5) == float("inf")        # no background passes at eps_S = 1/2
    assert M.sic_at_fpr(y, s, 0.25) == pytest.approx(0.75 / 0.5)
    assert M.sic_at_fpr(y, s, 0.5) == pytest.approx(1.0 / np.sqrt(0.5))


def test_kl_quantile_binned_by_hand():
    # reference 0..4, 3 quantile edges at 0, 2, 4: bins [0, 2) and [2, 4] hold 2 and 3 of 5 reference values, so
    # p = (0.4, 0.6); the generated 0.5, 3, 3.5 (5.0 lies outside and is dropped) give q = (1/3, 2/3)
    got = M.kl_quantile_binned([0, 1, 2, 3, 4], [0.5, 3, 3.5, 5.0], n_bins=3, q_low=0.0, q_high=1.0)
    assert got == pytest.approx(0.4 * np.log(0.4 * 3) + 0.6 * np.log(0.6 * 3 / 2), rel=1e-6)


def test_onesided_ari_of_a_partition_matches_sklearn_rand_index():
    """For a predicted partition the pair agreement RI is sklearn's rand_score; the expectation is that of a uniformly
    random partition (Bell numbers from the recurrence B(n+1) = sum_k C(n, k) B(k), not the Bell triangle)."""
    from math import comb

    from sklearn.metrics import rand_score

    bell = [1]
    for n in range(8):
        bell.append(sum(comb(n, k) * bell[k] for k in range(n + 1)))
    assert M.bell_numbers(8) == bell
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 8):
        truth, pred = rng.integers(0, 3, n), rng.integers(0, 3, n)
        mask = np.ones((1, n), bool)
        same = (pred[:, None] == pred[None, :])[None]
        pairs = n * (n - 1) / 2
        g = sum(comb(int(k), 2) for k in np.bincount(truth)) / pairs
        r = bell[n - 1] / bell[n]
        expected = r * g + (1 - r) * (1 - g)
        want = (rand_score(truth, pred) - expected) / (1 - expected)
        assert M.adjusted_rand_index_onesided(mask, truth[None], same)[0] == pytest.approx(want, rel=1e-12)


def test_balanced_accuracy_matches_sklearn_and_ignores_predicted_absent_classes():
    from sklearn.metrics import balanced_accuracy_score

    y, p = np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 0, 3])   # class 3 predicted, never true
    assert M.balanced_accuracy(y, p) == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert M.balanced_accuracy(y[:5], p[:5]) == pytest.approx(balanced_accuracy_score(y[:5], p[:5]))


def test_accuracy():
    assert M.accuracy([1, 0, 1], [0.9, 0.4, 0.2]) == pytest.approx(2 / 3)
    assert M.accuracy([2, 0], [[0.1, 0.2, 0.7], [0.3, 0.6, 0.1]]) == 0.5
    with pytest.raises(ValueError, match="NaN"):
        M.accuracy([1], [np.nan])


def test_multiclass_and_one_vs_rest():
    rng = np.random.default_rng(0)
    names = ["QCD", "Hbb", "Tbl"]
    y = rng.integers(0, 3, 3000)
    logits = rng.normal(size=(3000, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    out = M.multiclass_metrics(y, p, names)
    assert out["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    assert out["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert set(out) == {"accuracy", "auc", "rejection_50_Hbb", "rejection_99.5_Tbl"}
    # ParT convention: Hbb vs QCD only with p_Hbb / (p_Hbb + p_QCD)
    sel = (y == 1) | (y == 0)
    score = p[sel, 1] / (p[sel, 1] + p[sel, 0])
    assert out["rejection_50_Hbb"] == pytest.approx(M.rejection_at((y[sel] == 1).astype(int), score, 0.5))
    ovr = M.one_vs_rest_rejection(y, p, names, eff_s=0.5, background=None)
    assert set(ovr) == set(names)
    assert ovr["QCD"] == pytest.approx(M.rejection_at((y == 0).astype(int), p[:, 0], 0.5))


def test_kl_quantile_binned():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50000), rng.normal(size=50000)
    assert M.kl_quantile_binned(a, a) < 1e-6
    assert M.kl_quantile_binned(a, b) < 0.01
    assert M.kl_quantile_binned(a, rng.normal(2.0, 1.0, 50000)) > 0.5
    # the OmniJet-alpha recipe written out with scipy
    from scipy.stats import entropy
    c = rng.gamma(2.0, size=3000)
    edges = np.quantile(a, np.linspace(0.001, 0.999, 50))
    ref = entropy(np.histogram(a, edges, density=True)[0] + 1e-8, np.histogram(c, edges, density=True)[0] + 1e-8)
    assert M.kl_quantile_binned(a, c) == pytest.approx(ref, rel=1e-9)
    assert M.kl_quantile_binned(a, b + 0.3) > 5 * M.kl_quantile_binned(a, b)
    # a generated sample entirely outside the reference range is infinitely far, not flat-vs-flat ~ 0
    assert M.kl_quantile_binned(a, a + 100.0) == float("inf")


def test_wasserstein1_matches_scipy():
    rng = np.random.default_rng(1)
    for n, m in [(100, 100), (1000, 37), (5, 5000)]:
        p, q = rng.normal(size=n), rng.exponential(size=m)
        assert M.wasserstein1(p, q) == pytest.approx(wasserstein_distance(p, q), rel=1e-10)
    assert M.wasserstein1([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert M.wasserstein1([0.0], [3.0]) == pytest.approx(3.0)


def test_plots_write_pngs_atomically(tmp_path):
    import json

    from common.results import plots
    y, s = _binary(n=500)
    rng = np.random.default_rng(0)
    paths = [
        plots.roc_curves({"a": (y, s), "random": (y, rng.random(500))}, tmp_path / "roc.png"),
        plots.roc_curves({"a": (y, s)}, tmp_path / "sub" / "roc2.png", kind="roc"),
        plots.metric_vs_labels({"fine-tuned": {100: [0.6, 0.62], 1000: [0.7, 0.71, 0.69]}, "scratch": {100: 0.5}},
                               tmp_path / "acc.png", reference={"published": {100: 0.65}}),
        plots.hist_ratio(rng.normal(size=1000), rng.normal(0.1, 1, 800), tmp_path / "h.png", xlabel="mass"),
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0,
                                                                                   "val_loss": -0.5}]))
    paths.append(plots.loss_curves(log, tmp_path / "loss.png"))
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not list(tmp_path.rglob("*.tmp"))
