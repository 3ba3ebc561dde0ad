"""Evaluation metrics. Inputs may be torch tensors or NumPy arrays; results are Python floats,
NumPy arrays or pandas DataFrames.

Where a well-kept library already computes a metric (scikit-learn's confusion matrix), it is used;
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
