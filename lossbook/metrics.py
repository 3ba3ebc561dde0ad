"""Evaluation metrics. Inputs may be torch tensors or NumPy arrays; results are Python floats,
NumPy arrays or pandas DataFrames.

Where a well-kept library already computes a metric (scikit-learn's confusion matrix, ROC curve and
NDCG; SciPy's Spearman, Kendall and Kolmogorov–Smirnov statistics), it is used;
the calibration error is written out because the book teaches it, and a test holds it against an
independent computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

__all__ = [
    "BINNINGS",
    "AngleStats",
    "CalibrationSplit",
    "CollapseStats",
    "NormStats",
    "VerificationROC",
    "accuracy",
    "adaptive_calibration_error",
    "angle_stats",
    "balanced_accuracy",
    "brier_score",
    "calibration_error_split",
    "classwise_calibration_error",
    "confusion_matrix",
    "equal_error_rate",
    "expected_calibration_error",
    "false_head_rate",
    "feature_norm_stats",
    "group_accuracy",
    "ks_distance",
    "macro_auc",
    "map_at_r",
    "maximum_calibration_error",
    "mean_average_precision",
    "micro_auc",
    "ndcg_at_k",
    "neural_collapse",
    "nll",
    "pair_scores",
    "per_class_accuracy",
    "precision_at_k",
    "r_precision",
    "recall_at_k",
    "reliability_table",
    "retrieval_recall_at_k",
    "retrieval_report",
    "tar_at_far",
    "to_numpy",
    "top_k_accuracy",
    "verification_report",
    "verification_roc",
]


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _scores_and_target(name: str, scores, target) -> tuple[np.ndarray, np.ndarray]:
    s, y = to_numpy(scores), to_numpy(target)
    if s.ndim != 2:
        raise ValueError(f"{name}: scores must have shape (N, C); got shape {s.shape}.")
    if y.shape != (s.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{name}: target must be integer class indices of shape ({s.shape[0]},); got "
            f"{y.dtype} of shape {y.shape}."
        )
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"{name}: target holds a class outside [0, {s.shape[1]}).")
    return s, y


def top_k_accuracy(scores, target, k: int | tuple[int, ...] = 1):
    """Fraction of rows whose target is among the k highest scores (ties broken by index).

    ``k`` may be a tuple, then a dict ``{k: accuracy}`` comes back.
    """
    s, y = _scores_and_target("top_k_accuracy", scores, target)
    ks = (k,) if isinstance(k, int) else tuple(k)
    if any(int(kk) < 1 for kk in ks):
        raise ValueError(f"top_k_accuracy: k must be ≥ 1; got {k!r}.")
    # rank of the target = number of classes scoring strictly higher (+ earlier ties)
    target_score = s[np.arange(len(y)), y][:, None]
    idx = np.arange(s.shape[1])[None, :]
    rank = (s > target_score).sum(1) + ((s == target_score) & (idx < y[:, None])).sum(1)
    out = {int(kk): float((rank < kk).mean()) if len(y) else float("nan") for kk in ks}
    return out[int(k)] if isinstance(k, int) else out


def accuracy(scores, target) -> float:
    """Top-1 accuracy."""
    return top_k_accuracy(scores, target, 1)


def nll(probs, target, *, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the target under predicted probabilities (rows sum to 1)."""
    p, y = _scores_and_target("nll", probs, target)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], eps, None)).mean())


#: How :func:`reliability_table` and the calibration errors bin confidences: ``"width"``, equal-width
#: bins (b/B, (b + 1)/B] of [0, 1] (Guo et al. 2017); ``"mass"``, equal-mass bins of the sorted
#: confidences, N/B rows each (one more in the first N mod B bins), as in the adaptive ECE of
#: Nixon et al. (2019) and Mukhoti et al. (2020).
BINNINGS = ("width", "mass")


def _check_binning(name: str, n_bins, binning: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"{name}: n_bins must be ≥ 1 (an int); got {n_bins!r}.")
    if binning not in BINNINGS:
        raise ValueError(f"{name}: binning must be one of {BINNINGS} (equal-width or equal-mass bins); "
                         f"got {binning!r}.")


def _binned(conf: np.ndarray, correct: np.ndarray, n_bins: int, binning: str) -> pd.DataFrame:
    """Per-bin count, mean confidence and accuracy of (confidence, correct) pairs; see :data:`BINNINGS`."""
    if binning == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # bin b holds confidences in (edges[b], edges[b+1]]; a confidence of 0 joins the first bin
        which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
        members = [np.flatnonzero(which == b) for b in range(n_bins)]
        lower, upper = edges[:-1], edges[1:]
    else:
        members = np.array_split(np.argsort(conf, kind="stable"), n_bins)
        lower = [conf[m].min() if len(m) else np.nan for m in members]
        upper = [conf[m].max() if len(m) else np.nan for m in members]
    rows = [{"bin_lower": lower[b], "bin_upper": upper[b], "count": len(m),
             "confidence": conf[m].mean() if len(m) else np.nan,
             "accuracy": correct[m].mean() if len(m) else np.nan} for b, m in enumerate(members)]
    table = pd.DataFrame(rows, columns=["bin_lower", "bin_upper", "count", "confidence", "accuracy"])
    table["gap"] = table["accuracy"] - table["confidence"]
    return table


def _weighted_gaps(table: pd.DataFrame) -> np.ndarray:
    """(n_b / N)·(acc_b − conf_b) for the non-empty bins (empty when N = 0)."""
    used = table[table["count"] > 0]
    return (used["count"] / max(int(table["count"].sum()), 1) * used["gap"]).to_numpy()


def reliability_table(probs, target, *, n_bins: int = 15, binning: str = "width") -> pd.DataFrame:
    """Per-bin confidence and accuracy of the top-1 prediction: the data of a reliability diagram.

    Columns: ``bin_lower``, ``bin_upper``, ``count``, ``confidence`` (mean max-probability),
    ``accuracy`` (fraction correct), ``gap`` (accuracy − confidence). Empty bins have NaNs.
    ``binning="width"`` (default): equal-width bins (b/B, (b + 1)/B] on (0, 1], edges as bounds;
    ``"mass"``: equal-mass bins of the sorted confidences, bounded by their smallest and largest
    confidence (see :data:`BINNINGS`).
    """
    p, y = _scores_and_target("reliability_table", probs, target)
    _check_binning("reliability_table", n_bins, binning)
    return _binned(p.max(1), (p.argmax(1) == y).astype(float), n_bins, binning)


def expected_calibration_error(probs, target, *, n_bins: int = 15, binning: str = "width") -> float:
    """ECE = Σ_b (n_b/N)·|acc_b − conf_b| over confidence bins (Guo et al. 2017) of the top-1 prediction.

    ``binning="width"`` (default) uses equal-width bins, ``"mass"`` equal-mass bins (the adaptive
    ECE, :func:`adaptive_calibration_error`). NaN for an empty input.
    """
    table = reliability_table(probs, target, n_bins=n_bins, binning=binning)
    if table["count"].sum() == 0:
        return float("nan")
    return float(np.abs(_weighted_gaps(table)).sum())


def adaptive_calibration_error(probs, target, *, n_bins: int = 15) -> float:
    """Adaptive ECE (AdaECE; Nixon et al. 2019, Mukhoti et al. 2020): the ECE over ``n_bins``
    equal-mass bins of the top-1 confidence, ``expected_calibration_error(..., binning="mass")``."""
    return expected_calibration_error(probs, target, n_bins=n_bins, binning="mass")


def maximum_calibration_error(probs, target, *, n_bins: int = 15, binning: str = "width") -> float:
    """MCE = max_b |acc_b − conf_b| over the non-empty confidence bins (Naeini et al. 2015); NaN
    for an empty input."""
    table = reliability_table(probs, target, n_bins=n_bins, binning=binning)
    used = table[table["count"] > 0]
    return float(used["gap"].abs().max()) if len(used) else float("nan")


@dataclass(frozen=True)
class CalibrationSplit:
    """The ECE split by the sign of each bin's gap (what :func:`calibration_error_split` returns):
    ``over`` = Σ_b (n_b/N)·max(conf_b − acc_b, 0) (over-confident bins), ``under`` = Σ_b
    (n_b/N)·max(acc_b − conf_b, 0) (under-confident bins), ``ece`` = over + under."""

    ece: float
    over: float
    under: float


def calibration_error_split(probs, target, *, n_bins: int = 15, binning: str = "width") -> CalibrationSplit:
    """The ECE's over- and under-confident parts: the bins where confidence exceeds accuracy, and
    those where it falls short (the split the dual focal loss paper reports). NaNs for an empty input."""
    table = reliability_table(probs, target, n_bins=n_bins, binning=binning)
    if table["count"].sum() == 0:
        return CalibrationSplit(float("nan"), float("nan"), float("nan"))
    gaps = _weighted_gaps(table)
    over, under = float(-gaps[gaps < 0].sum()), float(gaps[gaps > 0].sum())
    return CalibrationSplit(over + under, over, under)


def classwise_calibration_error(probs, target, *, n_bins: int = 15, binning: str = "width") -> float:
    """Classwise ECE (Kull et al. 2019): for every class k, the ECE of p_k as a confidence that
    the label is k, over all rows; the mean over the C classes. NaN for an empty input."""
    p, y = _scores_and_target("classwise_calibration_error", probs, target)
    _check_binning("classwise_calibration_error", n_bins, binning)
    if len(y) == 0:
        return float("nan")
    per_class = [np.abs(_weighted_gaps(_binned(p[:, k], (y == k).astype(float), n_bins, binning))).sum()
                 for k in range(p.shape[1])]
    return float(np.mean(per_class))


def brier_score(probs, target) -> float:
    """Multi-class Brier score (Brier 1950): mean over rows of Σ_k (p_k − 1[y = k])², in [0, 2]."""
    p, y = _scores_and_target("brier_score", probs, target)
    if len(y) == 0:
        return float("nan")
    onehot = np.zeros_like(p, dtype=np.float64)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(1).mean())


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of rows with true class i predicted as j (scikit-learn's convention)."""
    from sklearn.metrics import confusion_matrix as _cm

    return _cm(to_numpy(target), to_numpy(pred), labels=list(range(num_classes)))



# --- verification (face-recognition style) -------------------------------------------------------------

_PAIR_BLOCK = 1 << 22  # similarity entries computed at a time by pair_scores (32 MiB of float64)


def _normalised_rows(name: str, embeddings) -> np.ndarray:
    e = to_numpy(embeddings).astype(np.float64)
    if e.ndim != 2:
        raise ValueError(f"{name}: embeddings must be a 2-D (N, d) array; got shape {e.shape}.")
    if not np.isfinite(e).all():
        raise ValueError(f"{name}: embeddings hold NaN or infinite values; check the model's outputs.")
    return e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)


def _subset_mask(name: str, subset, n: int) -> np.ndarray:
    """A boolean (n,) mask from a boolean mask or integer indices."""
    m = to_numpy(subset)
    if m.dtype == bool:
        if m.shape != (n,):
            raise ValueError(f"{name}: a boolean subset must have one entry per embedding, shape ({n},); got "
                             f"shape {m.shape}.")
        return m
    if m.ndim != 1 or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{name}: subset must be a boolean mask of shape ({n},) or a 1-D array of integer "
                         f"indices; got {m.dtype} of shape {m.shape}.")
    if m.size and (m.min() < -n or m.max() >= n):
        raise ValueError(f"{name}: subset holds an index outside [0, {n}).")
    mask = np.zeros(n, dtype=bool)
    mask[m] = True
    return mask


def pair_scores(embeddings, labels, *, subset=None, require: str = "any") -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and "same identity" flag of every unordered pair i < j of ``embeddings``.

    Returns ``(scores, genuine)`` (float64 and bool), both of length N(N−1)/2 (row-major over i < j): the
    inputs of :func:`tar_at_far`, :func:`verification_roc` and :func:`equal_error_rate`.

    ``subset`` (a boolean mask of shape (N,) or integer indices) keeps only the pairs with at least one
    member in it (``require="any"``, e.g. "pairs involving a low-quality sample") or with both members in
    it (``require="both"``); the kept pairs stay in row-major order. The similarities are computed (in
    float64) in blocks of rows of at most 4M entries, so memory is the output (9 bytes a pair: 40 MB
    for N = 3000) plus one block (≤ 32 MB), never an N×N matrix.
    """
    name = "pair_scores"
    e, y = _normalised_rows(name, embeddings), to_numpy(labels)
    if y.shape != (e.shape[0],):
        raise ValueError(f"{name}: embeddings must be (N, d) and labels (N,); got shapes {e.shape} and {y.shape}.")
    if require not in ("any", "both"):
        raise ValueError(f"{name}: require must be 'any' (at least one member in subset) or 'both'; got "
                         f"{require!r}.")
    n = len(y)
    sub = None if subset is None else _subset_mask(name, subset, n)
    if sub is None:
        total = n * (n - 1) // 2
    else:
        m = int(sub.sum())
        total = m * (m - 1) // 2 if require == "both" else n * (n - 1) // 2 - (n - m) * (n - m - 1) // 2
    scores, genuine = np.empty(total, dtype=np.float64), np.empty(total, dtype=bool)
    block = max(2, _PAIR_BLOCK // max(n, 1))
    pos = 0
    for start in range(0, max(n - 1, 0), block):
        stop = min(start + block, n)
        keep = np.triu(np.ones((stop - start, n - start), dtype=bool), k=1)  # column c > row r
        if sub is not None:
            pair_in = np.logical_or if require == "any" else np.logical_and
            keep &= pair_in(sub[start:stop, None], sub[None, start:])
        sim = e[start:stop] @ e[start:].T
        count = int(keep.sum())
        scores[pos:pos + count] = sim[keep]
        genuine[pos:pos + count] = (y[start:stop, None] == y[None, start:])[keep]
        pos += count
    return scores, genuine


def _verification_inputs(name: str, scores, genuine) -> tuple[np.ndarray, np.ndarray]:
    s, g = to_numpy(scores).astype(np.float64).ravel(), to_numpy(genuine).astype(bool).ravel()
    if s.shape != g.shape:
        raise ValueError(f"{name}: scores and genuine must have the same length; got {s.shape} and {g.shape}.")
    if g.all() or not g.any():
        raise ValueError(f"{name}: needs both genuine (True) and impostor (False) pairs; got {int(g.sum())} genuine "
                         f"of {g.size}. Use more than one identity, and at least two samples of one identity.")
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: scores hold NaN or infinite values; check the embeddings.")
    return s, g


@dataclass(frozen=True, eq=False)
class VerificationROC:
    """What :func:`verification_roc` returns: one ROC point per distinct score threshold.

    ``far`` (false accept rate = fraction of impostor pairs with score ≥ threshold), ``tar`` (true
    accept rate = the same for genuine pairs) and ``thresholds``, ordered by decreasing threshold
    (the first threshold is +inf: nothing accepted). ``frr`` = 1 − ``tar`` (false reject rate).
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    num_genuine: int
    num_impostor: int

    @property
    def frr(self) -> np.ndarray:
        return 1.0 - self.tar

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"threshold": self.thresholds, "far": self.far, "tar": self.tar, "frr": self.frr})


def verification_roc(scores, genuine) -> VerificationROC:
    """The verification ROC from scikit-learn's ``roc_curve`` with every threshold kept
    (``drop_intermediate=False``); a pair is accepted when its score is ≥ the threshold.

    Needs at least one genuine and one impostor pair.
    """
    from sklearn.metrics import roc_curve

    s, g = _verification_inputs("verification_roc", scores, genuine)
    fpr, tpr, thr = roc_curve(g, s, drop_intermediate=False)
    return VerificationROC(fpr, tpr, thr, int(g.sum()), int((~g).sum()))


def tar_at_far(scores, genuine, far=1e-3):
    """True accept rate at a false accept rate: the largest fraction of genuine pairs accepted by a
    threshold t (accept when score ≥ t) that accepts at most a fraction ``far`` of impostor pairs.

    Computed from :func:`verification_roc` (scikit-learn's ``roc_curve``, all thresholds kept). ``far``
    may be a tuple, then a dict ``{far: tar}`` comes back. Needs at least one genuine and one impostor
    pair. With M impostor pairs, FARs below 1/M mean "no impostor accepted".
    """
    s, g = _verification_inputs("tar_at_far", scores, genuine)
    fars = (far,) if np.isscalar(far) else tuple(far)
    if any(not 0.0 <= f <= 1.0 for f in fars):
        raise ValueError(f"tar_at_far: far must lie in [0, 1]; got {far!r}.")
    roc = verification_roc(s, g)
    out = {f: float(roc.tar[roc.far <= f].max()) for f in fars}
    return out[far] if np.isscalar(far) else out


def equal_error_rate(scores, genuine, *, return_threshold: bool = False):
    """Equal error rate: the error rate where FAR = FRR (= 1 − TAR) on the ROC.

    Convention: walking the ROC of :func:`verification_roc` from the strictest threshold (FAR = 0,
    FRR = 1) to the loosest (FAR = 1, FRR = 0), FAR − FRR rises strictly from −1 to 1. At the first
    point k with FAR_k ≥ FRR_k (found with exact pair counts) the EER is FAR_k if FAR_k = FRR_k;
    otherwise both rates are linearly interpolated between points k−1 and k and the EER is where the
    two lines cross, FAR_{k−1} + t·(FAR_k − FAR_{k−1}) with t = −d_{k−1}/(d_k − d_{k−1}),
    d = FAR − FRR. It lies between max(FAR_{k−1}, FRR_k) and min(FRR_{k−1}, FAR_k), the best
    max(FAR, FRR) of any single threshold. Perfect separation gives 0, perfectly reversed scores 1,
    and scores that carry no information about 0.5 (exactly 0.5 when all scores are equal).

    With ``return_threshold``, ``(eer, threshold)`` comes back: the threshold interpolated with the
    same t between the two points' thresholds (point k's own threshold when point k−1 is the +inf
    start, or when FAR_k = FRR_k).
    """
    s, g = _verification_inputs("equal_error_rate", scores, genuine)
    roc = verification_roc(s, g)
    n_gen, n_imp = roc.num_genuine, roc.num_impostor
    fp = np.rint(roc.far * n_imp).astype(np.int64)
    fn = n_gen - np.rint(roc.tar * n_gen).astype(np.int64)
    d = fp * n_gen - fn * n_imp  # (FAR − FRR)·n_gen·n_imp, exact
    k = int(np.argmax(d >= 0))  # exists: the last point has FAR = 1, FRR = 0
    if d[k] == 0:
        eer, thr = float(roc.far[k]), float(roc.thresholds[k])
    else:  # k ≥ 1 since d[0] = −n_gen·n_imp < 0
        t = float(-d[k - 1]) / float(d[k] - d[k - 1])
        eer = float(roc.far[k - 1] + t * (roc.far[k] - roc.far[k - 1]))
        lo, hi = roc.thresholds[k - 1], roc.thresholds[k]
        thr = float(hi) if not np.isfinite(lo) else float(lo + t * (hi - lo))
    return (eer, thr) if return_threshold else eer


def verification_report(embeddings, labels, far=(1e-4, 1e-3, 1e-2), subset=None, *,
                        require: str = "any") -> dict:
    """One row of a verification table: all pairs of ``embeddings`` (cosine scores, :func:`pair_scores`),
    optionally only those touching ``subset`` (see :func:`pair_scores` for ``subset`` and ``require``).

    Keys: ``"tar@far=<far>"`` for each FAR (formatted with ``:g``, e.g. ``tar@far=0.001``), ``eer``,
    ``eer_threshold``, ``genuine_mean`` and ``impostor_mean`` (mean cosines), ``genuine_pairs``,
    ``impostor_pairs``, ``pairs``. With M impostor pairs, TAR at a FAR below 1/M is the TAR with no
    impostor accepted. ``pd.DataFrame([verification_report(...) for model in models])`` gives a table.
    """
    fars = (far,) if np.isscalar(far) else tuple(far)
    s, g = pair_scores(embeddings, labels, subset=subset, require=require)
    if g.all() or not g.any():
        raise ValueError(f"verification_report: the pairs need both genuine and impostor pairs; got {int(g.sum())} "
                         f"genuine of {g.size}. Use a larger subset or more identities.")
    tars = tar_at_far(s, g, fars)
    eer, thr = equal_error_rate(s, g, return_threshold=True)
    out: dict = {f"tar@far={f:g}": tars[f] for f in fars}
    out.update(eer=eer, eer_threshold=thr, genuine_mean=float(s[g].mean()), impostor_mean=float(s[~g].mean()),
               genuine_pairs=int(g.sum()), impostor_pairs=int((~g).sum()), pairs=int(g.size))
    return out


# --- feature norms and angles (margin losses) ----------------------------------------------------------------

_NORM_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True, eq=False)
class NormStats:
    """What :func:`feature_norm_stats` returns.

    ``mean``, ``std`` (ddof = 0) and ``quantiles`` ({q: value}) of the norms ‖f_i‖. With a quality:
    ``spearman`` ρ(‖f‖, quality) and its two-sided ``spearman_pvalue``; ``bins``, a DataFrame with one
    row per equal-count quality bin (lowest quality first: ``bin``, ``count``, ``quality_min``,
    ``quality_max``, ``quality_mean``, ``norm_mean``, ``norm_std``); ``monotone``, True when the bins'
    mean norms strictly increase with quality; ``kendall_tau``, Kendall's τ between bin index and bin
    mean norm (1: increasing, −1: decreasing). Without a quality these are NaN / None.
    """

    mean: float
    std: float
    quantiles: dict
    spearman: float = float("nan")
    spearman_pvalue: float = float("nan")
    bins: pd.DataFrame | None = None
    monotone: bool | None = None
    kendall_tau: float = float("nan")

    def as_dict(self) -> dict:
        """Flat dict (one table row): ``norm_mean``, ``norm_std``, ``norm_q05`` …, ``spearman``, ``spearman_pvalue``,
        ``monotone``, ``kendall_tau``."""
        out = {"norm_mean": self.mean, "norm_std": self.std}
        out.update({f"norm_q{round(100 * q):02d}": v for q, v in self.quantiles.items()})
        out.update(spearman=self.spearman, spearman_pvalue=self.spearman_pvalue, monotone=self.monotone,
                   kendall_tau=self.kendall_tau)
        return out


def feature_norm_stats(embeddings, quality=None, *, n_bins: int = 5) -> NormStats:
    """Summary of the feature norms ‖f_i‖ (unnormalised ``embeddings`` (N, d)) and, given a per-sample
    ``quality`` (N,), how the norm follows quality (AdaFace's "norm ≈ quality", MagFace's "magnitude
    increases monotonically with quality").

    Spearman's ρ comes from ``scipy.stats.spearmanr`` (NaN when the norms or the qualities are all
    equal). The quality bins hold equal counts (ranks split by ``numpy.array_split``; ties broken by
    position), ``n_bins`` of them, 2 ≤ n_bins ≤ N.
    """
    from scipy import stats

    name = "feature_norm_stats"
    e = to_numpy(embeddings).astype(np.float64)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"{name}: embeddings must be a non-empty 2-D (N, d) array; got shape {e.shape}.")
    norms = np.linalg.norm(e, axis=1)
    if not np.isfinite(norms).all():
        raise ValueError(f"{name}: embeddings hold NaN or infinite values.")
    quant = dict(zip(_NORM_QUANTILES, (float(v) for v in np.quantile(norms, _NORM_QUANTILES))))
    base = {"mean": float(norms.mean()), "std": float(norms.std()), "quantiles": quant}
    if quality is None:
        return NormStats(**base)
    q = to_numpy(quality).astype(np.float64)
    if q.shape != norms.shape:
        raise ValueError(f"{name}: quality must have one value per embedding, shape ({len(norms)},); got shape "
                         f"{q.shape}.")
    if not np.isfinite(q).all():
        raise ValueError(f"{name}: quality holds NaN or infinite values.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or not 2 <= n_bins <= len(q):
        raise ValueError(f"{name}: n_bins must be an int in [2, N = {len(q)}]; got {n_bins!r}.")
    if np.ptp(q) == 0 or np.ptp(norms) == 0:
        rho = pval = float("nan")
    else:
        res = stats.spearmanr(norms, q)
        rho, pval = float(res.statistic), float(res.pvalue)
    rows = []
    for b, idx in enumerate(np.array_split(np.argsort(q, kind="stable"), n_bins)):
        rows.append({"bin": b, "count": len(idx), "quality_min": q[idx].min(), "quality_max": q[idx].max(),
                     "quality_mean": q[idx].mean(), "norm_mean": norms[idx].mean(), "norm_std": norms[idx].std()})
    bins = pd.DataFrame(rows)
    means = bins["norm_mean"].to_numpy()
    monotone = bool(np.all(np.diff(means) > 0))
    tau = float(stats.kendalltau(np.arange(n_bins), means).statistic) if np.ptp(means) > 0 else float("nan")
    return NormStats(**base, spearman=rho, spearman_pvalue=pval, bins=bins, monotone=monotone, kendall_tau=tau)


@dataclass(frozen=True, eq=False)
class AngleStats:
    """What :func:`angle_stats` returns, all angles in degrees.

    ``intra`` (N,): each sample's angle to its class centre; ``inter`` (K(K−1)/2,): angles between
    every two centres (row-major over i < j); ``nearest_inter`` (K,): each centre's angle to the
    nearest other centre; ``classes`` (K,): the label of each centre; ``centres`` (K, d): the unit
    centre directions used.
    """

    intra: np.ndarray
    inter: np.ndarray
    nearest_inter: np.ndarray
    classes: np.ndarray
    centres: np.ndarray

    def summary(self) -> dict:
        """Means and extremes for a table row: ``intra_mean``, ``intra_max``, ``inter_mean``, ``inter_min``,
        ``nearest_inter_mean``."""
        return {"intra_mean": float(self.intra.mean()), "intra_max": float(self.intra.max()),
                "inter_mean": float(self.inter.mean()) if self.inter.size else float("nan"),
                "inter_min": float(self.inter.min()) if self.inter.size else float("nan"),
                "nearest_inter_mean": float(self.nearest_inter.mean())}


def _degrees(cos: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def angle_stats(embeddings, labels, centres=None) -> AngleStats:
    """Intra-class angles (sample to its class centre) and inter-class angles (centre to centre), in degrees,
    for the angle histograms of the margin-loss papers.

    Without ``centres``, a class's centre is the direction of the mean of its L2-normalised embeddings,
    over the classes present in ``labels`` (any integers; ``classes`` lists them, sorted). With
    ``centres`` (K, d), e.g. a margin head's class weights, ``labels`` index its rows (0 ≤ label < K)
    and every row is a centre, with samples or not. Inter-class angles cost O(K²) memory.
    """
    name = "angle_stats"
    e, y = _normalised_rows(name, embeddings), to_numpy(labels)
    if y.shape != (e.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integers of shape ({e.shape[0]},) (one per embedding); got "
                         f"{y.dtype} of shape {y.shape}.")
    if y.size == 0:
        raise ValueError(f"{name}: needs at least one embedding.")
    if centres is None:
        classes, index = np.unique(y, return_inverse=True)
        c = np.zeros((len(classes), e.shape[1]))
        np.add.at(c, index, e)
        c /= np.clip(np.linalg.norm(c, axis=1, keepdims=True), 1e-12, None)
    else:
        c = _normalised_rows(name, centres)
        if c.shape[1] != e.shape[1]:
            hint = " (transpose it: centres must be (K, d))" if c.shape[0] == e.shape[1] else ""
            raise ValueError(f"{name}: centres must be (K, d) with d = {e.shape[1]} like the embeddings; got shape "
                             f"{c.shape}{hint}.")
        if y.min() < 0 or y.max() >= c.shape[0]:
            raise ValueError(f"{name}: with centres, labels must index their rows, in [0, {c.shape[0]}).")
        classes, index = np.arange(c.shape[0]), y
    intra = _degrees((e * c[index]).sum(1))
    cc = c @ c.T
    inter = _degrees(cc[np.triu_indices(len(c), k=1)])
    np.fill_diagonal(cc, -np.inf)
    nearest = _degrees(cc.max(1)) if len(c) > 1 else np.full(len(c), np.nan)
    return AngleStats(intra, inter, nearest, classes, c)


def ks_distance(a, b) -> float:
    """Two-sample Kolmogorov–Smirnov statistic sup_t |F_a(t) − F_b(t)| between two samples of scores
    (e.g. the negative cosines seen in a batch vs those of all pairs: UNPG's mismatch), from
    ``scipy.stats.ks_2samp``. Inputs of any shape are flattened."""
    from scipy.stats import ks_2samp

    x, z = to_numpy(a).astype(np.float64).ravel(), to_numpy(b).astype(np.float64).ravel()
    if x.size == 0 or z.size == 0:
        raise ValueError(f"ks_distance: both samples must be non-empty; got sizes {x.size} and {z.size}.")
    if not (np.isfinite(x).all() and np.isfinite(z).all()):
        raise ValueError("ks_distance: the samples hold NaN or infinite values.")
    return float(ks_2samp(x, z).statistic)


# --- recommendation: top-k metrics over a catalogue --------------------------------------------------------


def _topk_inputs(name: str, scores, relevant, exclude) -> tuple[np.ndarray, np.ndarray]:
    s = to_numpy(scores).astype(np.float64).copy()
    rel = to_numpy(relevant)
    if s.ndim != 2:
        raise ValueError(f"{name}: scores must be (users, items); got shape {s.shape}.")
    if rel.ndim != 2 or rel.shape[0] != s.shape[0] or not np.issubdtype(rel.dtype, np.integer):
        raise ValueError(f"{name}: relevant must be an integer (users, n) matrix of item ids; got {rel.dtype} of "
                         f"shape {rel.shape}.")
    if rel.size and (rel.min() < 0 or rel.max() >= s.shape[1]):
        raise ValueError(f"{name}: relevant holds an item outside [0, {s.shape[1]}).")
    truth = np.zeros(s.shape, dtype=bool)
    np.put_along_axis(truth, rel, True, axis=1)
    if exclude is not None:
        ex = to_numpy(exclude)
        if ex.ndim != 2 or ex.shape[0] != s.shape[0]:
            raise ValueError(f"{name}: exclude must be a (users, m) matrix of item ids; got shape {ex.shape}.")
        low = np.nanmin(s) - 1.0  # below every real score, still finite (scikit-learn rejects inf)
        np.put_along_axis(s, ex, low, axis=1)
        np.put_along_axis(truth, ex, False, axis=1)
    return s, truth


def recall_at_k(scores, relevant, k: int = 20, *, exclude=None) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant|.

    ``scores`` (users, items); ``relevant`` (users, n) item ids (e.g. each user's held-out items);
    ``exclude`` (users, m) item ids never recommended (e.g. the training items). Ties in the
    scores are broken by item index.
    """
    s, truth = _topk_inputs("recall_at_k", scores, relevant, exclude)
    if k < 1:
        raise ValueError(f"recall_at_k: k must be ≥ 1; got {k}.")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(truth, top, axis=1).sum(1)
    return float((hits / np.maximum(truth.sum(1), 1)).mean())


def ndcg_at_k(scores, relevant, k: int = 20, *, exclude=None) -> float:
    """Mean over users of NDCG@k with binary relevance (scikit-learn's ``ndcg_score``):
    DCG@k = Σ_{r ≤ k} rel_r / log₂(r + 1) over the ranking, divided by the ideal DCG@k.
    ``relevant`` and ``exclude`` as in :func:`recall_at_k`."""
    from sklearn.metrics import ndcg_score

    s, truth = _topk_inputs("ndcg_at_k", scores, relevant, exclude)
    if k < 1:
        raise ValueError(f"ndcg_at_k: k must be ≥ 1; got {k}.")
    return float(ndcg_score(truth.astype(np.float64), s, k=k, ignore_ties=True))


def precision_at_k(scores, positives, k: int = 1) -> float:
    """Mean over queries of |top-k ∩ positives| / k, the extreme-classification P@k.

    ``scores`` (queries, labels); ``positives`` (queries, labels) bool, each query's relevant labels.
    Ties in the scores are broken by label index.
    """
    s, pos = to_numpy(scores), to_numpy(positives)
    if s.ndim != 2:
        raise ValueError(f"precision_at_k: scores must be (queries, labels); got shape {s.shape}.")
    if pos.shape != s.shape or pos.dtype != np.bool_:
        raise ValueError(f"precision_at_k: positives must be a bool matrix of the scores' shape {s.shape}; got "
                         f"{pos.dtype} of shape {pos.shape} (use positives.bool()).")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= s.shape[1]:
        raise ValueError(f"precision_at_k: k must be an int in [1, {s.shape[1]}]; got {k!r}.")
    top = np.argsort(-s.astype(np.float64), axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(pos, top, axis=1).sum(1).mean() / k)


# --- imbalance, long tail, multi-label and AUC (chapter 7) -------------------------------------------------


def per_class_accuracy(scores, target, num_classes: int | None = None) -> np.ndarray:
    """Recall of each class: the share of its rows predicted as it (argmax of ``scores`` (N, C), or
    ``scores`` already int predictions (N,)); NaN for a class without rows. Shape (C,)."""
    pred, y, c = _predictions("per_class_accuracy", scores, target, num_classes)
    counts = np.bincount(y, minlength=c).astype(float)
    hits = np.bincount(y[pred == y], minlength=c).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.where(counts > 0, counts, 1), np.nan)


def balanced_accuracy(scores, target, num_classes: int | None = None) -> float:
    """Mean per-class accuracy over the classes present in ``target`` (scikit-learn's
    ``balanced_accuracy_score``): the accuracy on a test set re-weighted to uniform classes."""
    return float(np.nanmean(per_class_accuracy(scores, target, num_classes)))


def group_accuracy(scores, target, class_counts, *, many: int | None = None, few: int | None = None) -> dict:
    """Mean per-class accuracy of the head (``"many"``), ``"medium"`` and tail (``"few"``) classes,
    grouped by their training counts ``class_counts`` (C,): many-shot n > ``many``, few-shot n < ``few``
    (the long-tail literature's 100 and 20 on ImageNet-LT). Without thresholds, the classes sorted by
    count are cut into three equal thirds (head, medium, tail). A group without classes gets NaN."""
    counts = to_numpy(class_counts).astype(float)
    if counts.ndim != 1:
        raise ValueError(f"group_accuracy: class_counts must be one count per class (C,); got shape {counts.shape}.")
    acc = per_class_accuracy(scores, target, len(counts))
    if many is None and few is None:
        order = np.argsort(-counts, kind="stable")
        parts = np.array_split(order, 3)
        groups = {"many": parts[0], "medium": parts[1], "few": parts[2]}
    else:
        if many is None or few is None or few > many:
            raise ValueError(f"group_accuracy: give both thresholds with few ≤ many (e.g. many=100, few=20); got "
                             f"many={many!r}, few={few!r}.")
        idx = np.arange(len(counts))
        groups = {"many": idx[counts > many], "medium": idx[(counts <= many) & (counts >= few)],
                  "few": idx[counts < few]}
    return {k: float(np.nanmean(acc[v])) if len(v) and np.isfinite(acc[v]).any() else float("nan")
            for k, v in groups.items()}


def _predictions(name: str, scores, target, num_classes) -> tuple[np.ndarray, np.ndarray, int]:
    s = to_numpy(scores)
    if s.ndim == 2:
        s, y = _scores_and_target(name, s, target)
        return s.argmax(1), y, s.shape[1] if num_classes is None else int(num_classes)
    y = to_numpy(target)
    if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer) or y.shape != s.shape or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: pass scores (N, C) or integer predictions (N,), and integer targets (N,); got "
                         f"{s.dtype} of shape {s.shape} and {y.dtype} of shape {y.shape}.")
    c = int(max(s.max(initial=-1), y.max(initial=-1)) + 1) if num_classes is None else int(num_classes)
    return s, y, c


def _label_matrix(name: str, scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s, t = to_numpy(scores).astype(np.float64), to_numpy(labels)
    if s.ndim == 1:
        s, t = s[:, None], t.reshape(-1, 1)
    if s.ndim != 2 or t.shape != s.shape:
        raise ValueError(f"{name}: scores and labels must both be (N, K) (or (N,) for one label); got shapes "
                         f"{s.shape} and {t.shape}.")
    if t.size and not np.isin(t, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0/1 (or bool); got other values.")
    return s, t.astype(int)


def _with_both(t: np.ndarray) -> np.ndarray:
    """Labels (columns) with at least one positive and one negative row."""
    pos = t.sum(0)
    return (pos > 0) & (pos < t.shape[0])


def mean_average_precision(scores, labels) -> float:
    """Multi-label mAP: the mean over labels with at least one positive of scikit-learn's
    ``average_precision_score`` (the area under the precision–recall curve of the label's column)."""
    from sklearn.metrics import average_precision_score

    s, t = _label_matrix("mean_average_precision", scores, labels)
    keep = t.sum(0) > 0
    if not keep.any():
        raise ValueError("mean_average_precision: no label has a positive row; mAP is undefined.")
    return float(np.mean([average_precision_score(t[:, k], s[:, k]) for k in np.flatnonzero(keep)]))


def macro_auc(scores, labels) -> float:
    """Macro-AUC: the mean over labels (columns) of the AUROC of the label's scores, over the labels
    with both a positive and a negative row (scikit-learn's ``roc_auc_score(average="macro")`` on them).
    ``scores`` and 0/1 ``labels`` (N, K), or (N,) for one binary task."""
    from sklearn.metrics import roc_auc_score

    s, t = _label_matrix("macro_auc", scores, labels)
    keep = _with_both(t)
    if not keep.any():
        raise ValueError("macro_auc: no label has both a positive and a negative row; AUROC is undefined.")
    return float(np.mean([roc_auc_score(t[:, k], s[:, k]) for k in np.flatnonzero(keep)]))


def micro_auc(scores, labels) -> float:
    """Micro-AUC: the AUROC of all (row, label) entries pooled (scikit-learn's
    ``roc_auc_score(average="micro")``)."""
    from sklearn.metrics import roc_auc_score

    s, t = _label_matrix("micro_auc", scores, labels)
    if t.min(initial=1) == t.max(initial=0):
        raise ValueError("micro_auc: the labels need both positives and negatives.")
    return float(roc_auc_score(t.ravel(), s.ravel()))


@dataclass(frozen=True)
class CollapseStats:
    """Neural-collapse measures of features grouped by class (Papyan, Han & Donoho, 2020).

    ``nc1`` = Tr(Σ_W Σ_B⁺)/K (within-class variability relative to the between-class spread; 0 at
    collapse); ``equinorm`` = std/mean of the centred class means' norms ‖μ_k − μ_G‖ (0 when equal);
    ``equiangularity`` = std over class pairs of cos(μ_k − μ_G, μ_l − μ_G) (0 when equiangular);
    ``max_angle_gap`` = mean over pairs of |cos + 1/(K − 1)| (0 for a simplex ETF, the maximally
    separated configuration)."""

    nc1: float
    equinorm: float
    equiangularity: float
    max_angle_gap: float


def neural_collapse(features, labels) -> CollapseStats:
    """:class:`CollapseStats` of ``features`` (N, d) with int class ``labels`` (N,); classes without
    rows are left out, and at least two classes are needed."""
    h, y = to_numpy(features).astype(np.float64), to_numpy(labels)
    if h.ndim != 2 or y.shape != (h.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"neural_collapse: features must be (N, d) and labels int (N,); got shapes {h.shape} and "
                         f"{y.shape} ({y.dtype}).")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("neural_collapse: need at least two classes with rows.")
    k = len(classes)
    mu_g = h.mean(0)
    means = np.stack([h[y == c].mean(0) for c in classes])
    centred = means - mu_g
    sigma_b = centred.T @ centred / k
    within = np.concatenate([h[y == c] - means[i] for i, c in enumerate(classes)])
    sigma_w = within.T @ within / len(h)
    nc1 = float(np.trace(sigma_w @ np.linalg.pinv(sigma_b)) / k)
    norms = np.linalg.norm(centred, axis=1)
    unit = centred / np.where(norms > 0, norms, 1)[:, None]
    cos = (unit @ unit.T)[np.triu_indices(k, 1)]
    return CollapseStats(nc1=nc1, equinorm=float(norms.std() / norms.mean()), equiangularity=float(cos.std()),
                         max_angle_gap=float(np.abs(cos + 1.0 / (k - 1)).mean()))


# --- retrieval: every sample queries the others (metric learning) ----------------------------------------------


def _retrieval_ranks(name: str, embeddings, labels, max_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query (every sample, its own row excluded from the gallery): the relevance of the
    gallery ranked by decreasing cosine similarity (ties by index), truncated to ``max_k`` columns, and
    R, the number of relevant gallery items (same label). Returns ``(relevant (N, K) bool, R (N,))``."""
    e = _normalised_rows(name, embeddings)
    y = to_numpy(labels)
    if y.shape != (len(e),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integer class ids of shape ({len(e)},), one per embedding; got "
                         f"{y.dtype} of shape {y.shape}.")
    if len(e) < 2:
        raise ValueError(f"{name}: needs at least two embeddings (a query and a gallery); got {len(e)}.")
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    k = len(e) - 1 if max_k is None else min(max_k, len(e) - 1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    relevant = y[order] == y[:, None]
    ids = np.unique(y, return_inverse=True)[1].ravel()
    r = np.bincount(ids)[ids] - 1
    return relevant, r


def _check_k(name: str, k) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else tuple(k)
    if not ks or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in ks):
        raise ValueError(f"{name}: k must be an int ≥ 1 or a sequence of them; got {k!r}.")
    return tuple(int(v) for v in ks)


def retrieval_recall_at_k(embeddings, labels, k=1):
    """Recall@K of metric learning (the MS and Circle papers' metric): the share of queries whose K
    nearest other samples (cosine similarity, the query itself left out) hold at least one of its
    class. Queries without another sample of their class are left out. ``k`` an int (a float back)
    or a sequence (a dict ``{k: recall}``)."""
    name = "retrieval_recall_at_k"
    ks = _check_k(name, k)
    relevant, r = _retrieval_ranks(name, embeddings, labels, max(ks))
    keep = r > 0
    out = {v: float(relevant[keep, :v].any(1).mean()) for v in ks}
    return out[ks[0]] if isinstance(k, (int, np.integer)) else out


def r_precision(embeddings, labels) -> float:
    """R-precision (Musgrave et al., 2020): for each query with R > 0 other samples of its class, the
    share of its R nearest neighbours that are of its class; the mean over queries."""
    relevant, r = _retrieval_ranks("r_precision", embeddings, labels)
    keep = r > 0
    within = np.arange(relevant.shape[1])[None, :] < r[:, None]
    return float(((relevant & within).sum(1)[keep] / r[keep]).mean())


def map_at_r(embeddings, labels) -> float:
    """MAP@R (Musgrave et al., 2020): for each query with R > 0, (1/R)·Σ_{i ≤ R} P(i)·rel(i), P(i) the
    precision of the first i neighbours and rel(i) whether the i-th is of the query's class; the mean
    over queries."""
    relevant, r = _retrieval_ranks("map_at_r", embeddings, labels)
    keep = r > 0
    within = np.arange(relevant.shape[1])[None, :] < r[:, None]
    rel = relevant & within
    precision = np.cumsum(rel, 1) / np.arange(1, rel.shape[1] + 1)[None, :]
    return float(((precision * rel).sum(1)[keep] / r[keep]).mean())


def retrieval_report(embeddings, labels, k=(1, 2, 4)) -> dict:
    """``{"R@1": …, "R@2": …, …, "MAP@R": …, "R-precision": …}`` (see :func:`retrieval_recall_at_k`,
    :func:`map_at_r`, :func:`r_precision`)."""
    recalls = retrieval_recall_at_k(embeddings, labels, tuple(_check_k("retrieval_report", k)))
    return {**{f"R@{v}": x for v, x in recalls.items()}, "MAP@R": map_at_r(embeddings, labels),
            "R-precision": r_precision(embeddings, labels)}


# --- long tail: the False Head Rate (chapter 7, Bayes-LT) --------------------------------------------------------


def false_head_rate(scores, target, class_counts, *, tail_shares=(0.25, 0.5, 0.75)) -> float:
    """False Head Rate of Li & Zhang (2023): with the classes ranked by their training counts
    ``class_counts`` (C,) from the most frequent, and a border b = round(C·share) for each share in
    ``tail_shares``, the share of rows whose class ranks ≥ b (the tail) that are predicted as a
    class ranked < b (the head); the mean over the shares (the authors' code,
    lblaoke/RF-DLC ``model/metric.py``, uses 0.25, 0.5, 0.75 and reports their mean). ``scores``
    (N, C) (argmax) or int predictions (N,). Lower is better; NaN if no share has a tail row."""
    pred, y, c = _predictions("false_head_rate", scores, target, None)
    counts = to_numpy(class_counts).astype(float)
    if counts.ndim != 1 or len(counts) < max(c, 2):
        raise ValueError(f"false_head_rate: class_counts must be one training count per class (C ≥ 2, covering every "
                         f"class in scores/target); got shape {counts.shape}.")
    shares = np.atleast_1d(np.asarray(tail_shares, dtype=float))
    if shares.size == 0 or not ((shares > 0) & (shares < 1)).all():
        raise ValueError(f"false_head_rate: tail_shares must be shares in (0, 1); got {tail_shares!r}.")
    rank = np.empty(len(counts), dtype=int)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    rp, ry = rank[pred], rank[y]
    rates = []
    for share in shares:
        border = int(len(counts) * share + 0.5)
        tail = ry >= border
        if tail.any():
            rates.append(float((tail & (rp < border)).sum() / tail.sum()))
    return float(np.mean(rates)) if rates else float("nan")
