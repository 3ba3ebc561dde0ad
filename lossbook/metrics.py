"""Evaluation metrics. Inputs may be torch tensors or NumPy arrays; results are Python floats,
NumPy arrays or pandas DataFrames.

Where a well-kept library already computes a metric (scikit-learn's confusion matrix, ROC curve and
NDCG), it is used;
the calibration error is written out because the book teaches it, and a test holds it against an
independent computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

__all__ = [
    "to_numpy",
    "top_k_accuracy",
    "accuracy",
    "nll",
    "expected_calibration_error",
    "reliability_table",
    "confusion_matrix",
    "pair_scores",
    "tar_at_far",
    "recall_at_k",
    "ndcg_at_k",
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


def reliability_table(probs, target, *, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin confidence and accuracy of the top-1 prediction (equal-width bins on (0, 1]).

    Columns: ``bin_lower``, ``bin_upper``, ``count``, ``confidence`` (mean max-probability),
    ``accuracy`` (fraction correct), ``gap`` (accuracy − confidence). Empty bins have NaNs.
    """
    p, y = _scores_and_target("reliability_table", probs, target)
    if n_bins < 1:
        raise ValueError(f"reliability_table: n_bins must be ≥ 1; got {n_bins}.")
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds confidences in (edges[b], edges[b+1]]; confidence 0 cannot occur for a max-prob
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = which == b
        n = int(m.sum())
        rows.append(
            {
                "bin_lower": edges[b],
                "bin_upper": edges[b + 1],
                "count": n,
                "confidence": conf[m].mean() if n else np.nan,
                "accuracy": correct[m].mean() if n else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    table["gap"] = table["accuracy"] - table["confidence"]
    return table


def expected_calibration_error(probs, target, *, n_bins: int = 15) -> float:
    """ECE = Σ_b (n_b/N)·|acc_b − conf_b| over equal-width confidence bins (Guo et al. 2017)."""
    table = reliability_table(probs, target, n_bins=n_bins)
    n = table["count"].sum()
    if n == 0:
        return float("nan")
    used = table[table["count"] > 0]
    return float((used["count"] / n * used["gap"].abs()).sum())


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of rows with true class i predicted as j (scikit-learn's convention)."""
    from sklearn.metrics import confusion_matrix as _cm

    return _cm(to_numpy(target), to_numpy(pred), labels=list(range(num_classes)))



# --- verification (face-recognition style) -------------------------------------------------------------


def pair_scores(embeddings, labels) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and "same identity" flag of every unordered pair i < j of ``embeddings``.

    Returns ``(scores, genuine)``, both of length N(N−1)/2 (row-major over i < j): the inputs of
    :func:`tar_at_far`. Memory O(N²): meant for held-out sets of a few thousand embeddings.
    """
    e, y = to_numpy(embeddings).astype(np.float64), to_numpy(labels)
    if e.ndim != 2 or y.shape != (e.shape[0],):
        raise ValueError(f"pair_scores: embeddings must be (N, d) and labels (N,); got shapes {e.shape} and {y.shape}.")
    e = e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
    i, j = np.triu_indices(len(y), k=1)
    sim = e @ e.T
    return sim[i, j], y[i] == y[j]


def tar_at_far(scores, genuine, far=1e-3):
    """True accept rate at a false accept rate: the largest fraction of genuine pairs accepted by a
    threshold t (accept when score ≥ t) that accepts at most a fraction ``far`` of impostor pairs.

    Computed from scikit-learn's ``roc_curve`` (all thresholds kept). ``far`` may be a tuple, then a
    dict ``{far: tar}`` comes back. Needs at least one genuine and one impostor pair.
    """
    from sklearn.metrics import roc_curve

    s, g = to_numpy(scores).astype(np.float64).ravel(), to_numpy(genuine).astype(bool).ravel()
    if s.shape != g.shape:
        raise ValueError(f"tar_at_far: scores and genuine must have the same length; got {s.shape} and {g.shape}.")
    if g.all() or not g.any():
        raise ValueError("tar_at_far: needs both genuine (True) and impostor (False) pairs.")
    fars = (far,) if np.isscalar(far) else tuple(far)
    if any(not 0.0 <= f <= 1.0 for f in fars):
        raise ValueError(f"tar_at_far: far must lie in [0, 1]; got {far!r}.")
    fpr, tpr, _ = roc_curve(g, s, drop_intermediate=False)
    out = {f: float(tpr[fpr <= f].max()) for f in fars}
    return out[far] if np.isscalar(far) else out


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
