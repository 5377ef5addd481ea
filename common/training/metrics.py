"""Evaluation metrics (numpy in, Python floats out). The ROC curve, AUC, balanced accuracy and Wasserstein-1 distance
are scikit-learn's and SciPy's; written here are only those no library has (the rejection at a signal efficiency,
SIC, the quantile-binned KL of OmniJet-alpha, the one-sided adjusted Rand index of the vertexing papers).

Classification (binary scores = signal probability, label 1 = signal):
  accuracy, roc_curve, auc, rejection_at (1/eps_B at a signal efficiency eps_S), sic_at_fpr (TPR/sqrt(FPR)),
  one_vs_rest_rejection (JetClass, per class name), multiclass_metrics.
Generation (arXiv:2403.05618; omnijet_alpha gabbro/metrics/utils.py):
  kl_quantile_binned (KL(real || generated) on bins from the quantiles of the reference), wasserstein1.
Per-track BTag tasks (arXiv:2409.12589, out-of-domain studies; mattcleigh/jetssl):
  balanced_accuracy (track origin), bell_numbers, adjusted_rand_index_onesided (secondary-vertex finding).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import wasserstein_distance
from sklearn import metrics as skm

# ParT (Qu, Li, Qian 2022, JetClass results table) quotes the QCD rejection at eps_S = 50 % for most classes and at
# 99 % (Hqql) and 99.5 % (Tbl) for the leptonic ones; other class names fall back to the eff_s argument.
JETCLASS_REJECTION_EFF = {"Hbb": 0.5, "Hcc": 0.5, "Hgg": 0.5, "H4q": 0.5, "Hqql": 0.99, "Zqq": 0.5, "Wqq": 0.5,
                          "Tbqq": 0.5, "Tbl": 0.995}


def _check(y, scores, name: str):
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    if len(y) != len(scores):
        raise ValueError(f"{name}: {len(y)} labels but {len(scores)} scores")
    if len(y) == 0:
        raise ValueError(f"{name}: empty input")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name}: scores contain NaN or inf")
    return y, scores


def accuracy(y, scores) -> float:
    """Fraction correct: argmax over classes for (N, C) scores, threshold 0.5 for (N,) signal probabilities."""
    y, scores = _check(y, scores, "accuracy")
    pred = scores.argmax(1) if scores.ndim == 2 else (scores > 0.5).astype(int)
    return float(np.mean(pred == y))


def roc_curve(y, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for binary labels (1 = signal): sklearn.metrics.roc_curve with every distinct score
    kept (drop_intermediate=False), starting at (0, 0) with threshold inf."""
    y, scores = _check(y, scores, "roc_curve")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("roc_curve: need both signal (1) and background (0) examples")
    return skm.roc_curve(y, scores, drop_intermediate=False)


def auc(y, scores) -> float:
    """Area under the ROC curve (sklearn.metrics.roc_auc_score)."""
    y, scores = _check(y, scores, "auc")
    if y.astype(bool).all() or not y.astype(bool).any():
        raise ValueError("auc: need both signal (1) and background (0) examples")
    return float(skm.roc_auc_score(y.astype(bool), scores))


def rejection_at(y, scores, eff_s: float) -> float:
    """Background rejection 1/eps_B at signal efficiency eps_S (linear interpolation along the ROC curve);
    inf when no background passes."""
    fpr, tpr, _ = roc_curve(y, scores)
    eps_b = float(np.interp(eff_s, tpr, fpr))
    return float("inf") if eps_b <= 0 else 1.0 / eps_b


def sic_at_fpr(y, scores, fpr: float = 0.01) -> float:
    """Significance improvement TPR/sqrt(FPR) at a fixed background efficiency (default 1 %, MPMv2 CWoLa)."""
    f, t, _ = roc_curve(y, scores)
    # interpolate TPR at the requested FPR; for repeated FPR values take the largest TPR
    uf, idx = np.unique(f[::-1], return_index=True)
    ut = t[::-1][idx]
    return float(np.interp(fpr, uf, ut) / np.sqrt(fpr))


def one_vs_rest_rejection(y, probs, class_names, eff_s: float | dict = 0.5, background: str | None = "QCD") -> dict:
    """Rejection 1/eps_B per class name.

    background one of the class names (default "QCD", the ParT convention for JetClass): for each class
    X != background, only jets of X and of the background are used, with the discriminant p_X / (p_X + p_background).
    background None or not among the classes: plain one-vs-rest, X against all other classes with score p_X.
    eff_s: one signal efficiency, or a dict class name -> efficiency (e.g. JETCLASS_REJECTION_EFF).
    """
    y, probs = _check(y, probs, "one_vs_rest_rejection")
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"one_vs_rest_rejection: probs shape {probs.shape} does not match {len(class_names)} classes")
    out = {}
    b = list(class_names).index(background) if background in class_names else None
    for k, name in enumerate(class_names):
        if k == b:
            continue
        eff = eff_s.get(name, 0.5) if isinstance(eff_s, dict) else eff_s
        if b is None:
            sel, score = np.ones(len(y), bool), probs[:, k]
        else:
            sel = (y == k) | (y == b)
            score = probs[sel, k] / np.clip(probs[sel, k] + probs[sel, b], 1e-12, None)
        is_sig = (y[sel] == k).astype(int)
        if is_sig.all() or not is_sig.any():
            out[name] = float("nan")  # class absent from this evaluation set
            continue
        out[name] = rejection_at(is_sig, score, eff)
    return out


def multiclass_metrics(y, probs, class_names, background: str | None = "QCD") -> dict:
    """accuracy; auc = macro average of one-vs-rest AUCs (as scikit-learn multi_class="ovr"); and
    rejection_<eff%>_<name> for every class (JETCLASS_REJECTION_EFF where the name is a JetClass class, else 50 %),
    against `background` when it is one of the classes, else one-vs-rest."""
    y, probs = _check(y, probs, "multiclass_metrics")
    out = {"accuracy": accuracy(y, probs)}
    aucs = [auc((y == k).astype(int), probs[:, k]) for k in range(probs.shape[1]) if 0 < (y == k).sum() < len(y)]
    out["auc"] = float(np.mean(aucs)) if aucs else float("nan")
    bkg = background if background in class_names else None
    effs = {n: JETCLASS_REJECTION_EFF.get(n, 0.5) for n in class_names}
    for name, rej in one_vs_rest_rejection(y, probs, class_names, effs, bkg).items():
        out[f"rejection_{100 * effs[name]:g}_{name}"] = rej
    return out


# --------------------------------------------------------------------------------------------------------------------
# Distribution distances for generation (omnijet_alpha gabbro/metrics/utils.py)
# --------------------------------------------------------------------------------------------------------------------
def _finite_1d(a, name):
    a = np.asarray(a, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if len(a) == 0:
        raise ValueError(f"{name}: no finite values")
    return a


def kl_quantile_binned(p, q, n_bins: int = 50, q_low: float = 0.001, q_high: float = 0.999) -> float:
    """KL(p || q), p = reference (real) sample, q = generated sample, as in OmniJet-alpha: bin edges = quantiles of p
    at linspace(q_low, q_high, n_bins) (n_bins - 1 bins); density histograms + 1e-8, normalised over bins, then
    sum p log(p/q). Values outside the reference range are dropped (as in the original), so report the fraction of
    generated values outside it beside this number. A generated sample with no value inside the reference range at
    all returns inf: the original recipe would normalise two flat histograms and report a misleadingly small KL."""
    p, q = _finite_1d(p, "kl_quantile_binned(p)"), _finite_1d(q, "kl_quantile_binned(q)")
    edges = np.unique(np.quantile(p, np.linspace(q_low, q_high, n_bins)))
    if len(edges) < 2:  # a (near) constant reference: one bin around it
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    if not np.any((q >= edges[0]) & (q <= edges[-1])):
        return float("inf")
    hp = np.histogram(p, bins=edges, density=True)[0] + 1e-8
    hq = np.histogram(q, bins=edges, density=True)[0] + 1e-8
    hp, hq = hp / hp.sum(), hq / hq.sum()
    return float(np.sum(hp * np.log(hp / hq)))


def wasserstein1(p, q) -> float:
    """1-d Wasserstein-1 (earth mover's) distance between two samples (scipy.stats.wasserstein_distance), over their
    finite values."""
    return float(wasserstein_distance(_finite_1d(p, "wasserstein1(p)"), _finite_1d(q, "wasserstein1(q)")))


def balanced_accuracy(y, pred) -> float:
    """Mean over the classes present in y of the recall (correct / true of that class): sklearn's
    balanced_accuracy_score, which jetssl plotting/trk_perf.py uses for the track origin. A predicted class absent
    from y counts for nothing (sklearn warns about it; silenced here, the per-n-tracks cells often lack a class)."""
    y, pred = np.asarray(y), np.asarray(pred)
    if y.shape != pred.shape or y.ndim != 1:
        raise ValueError(f"balanced_accuracy: labels {y.shape} and predictions {pred.shape} must be equal 1-d shapes")
    if len(y) == 0:
        raise ValueError("balanced_accuracy: empty input")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(skm.balanced_accuracy_score(y, pred))


def bell_numbers(n_max: int) -> list[int]:
    """Bell numbers B_0 .. B_n_max (partitions of a set of n elements), by the Bell triangle."""
    bell, row = [1], [1]
    for _ in range(n_max):
        new = [row[-1]]
        for v in row:
            new.append(new[-1] + v)
        row = new
        bell.append(row[0])
    return bell


def adjusted_rand_index_onesided(mask, vtx_id, same) -> np.ndarray:
    """One-sided adjusted Rand index per jet (Shlomi et al., arXiv:2008.02831, "adjustedRI_onesided"; jetssl
    src/models/vertexer.py get_ari): the truth partition is fixed, the prediction is compared with a uniformly random
    partition of the n tracks.

    mask (J, T) real tracks; vtx_id (J, T) true vertex of each track; same (J, T, T) predicted "same vertex" per pair
    (edge logit > 0; only the upper triangle i < j is read, no clustering). With P = n (n - 1) / 2 pairs:
      RI  = pairs whose prediction equals the truth / P
      E   = r g / P + (1 - r) (1 - g / P),  r = B(n - 1) / B(n) (Bell numbers), g = sum over vertices C(n_v, 2)
      ARI = (RI - E) / (1 - E)
    Jets with fewer than 2 tracks have no pair: NaN."""
    mask = np.asarray(mask, bool)
    vtx_id, same = np.asarray(vtx_id), np.asarray(same, bool)
    J, T = mask.shape
    if vtx_id.shape != (J, T) or same.shape != (J, T, T):
        raise ValueError(f"adjusted_rand_index_onesided: mask {mask.shape}, vtx_id {vtx_id.shape} and same "
                         f"{same.shape} must be (J, T), (J, T) and (J, T, T)")
    pairs = np.triu(mask[:, :, None] & mask[:, None, :], 1)
    truth = vtx_id[:, :, None] == vtx_id[:, None, :]
    n = mask.sum(1)
    n_pairs = n * (n - 1) / 2
    bell = np.asarray(bell_numbers(max(int(n.max(initial=0)), 1)), dtype=np.float64)
    r = bell[np.maximum(n - 1, 0)] / bell[n]
    ids = np.where(mask, vtx_id, -1)
    g = sum((k * (k - 1) / 2) for k in ((ids == v).sum(1) for v in np.unique(vtx_id[mask])))
    with np.errstate(invalid="ignore", divide="ignore"):
        ri = ((same == truth) & pairs).sum((1, 2)) / n_pairs
        g_ratio = g / n_pairs
        expected = r * g_ratio + (1 - r) * (1 - g_ratio)
        ari = (ri - expected) / (1 - expected)
    return np.where(n >= 2, ari, np.nan)
