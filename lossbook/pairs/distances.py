r"""Similarities, distances and pair masks of a batch of embeddings.

Pair losses read the batch through two matrices: the similarity (or distance) of every pair, and
which pairs are positive (same label, not the same sample) or negative (different labels).
:func:`pairwise_similarity` gives cosine (or dot-product) similarities and :func:`pairwise_distance`
Euclidean distances, by default of the L2-normalised embeddings (as pytorch-metric-learning's
default ``LpDistance``), so that d² = 2 − 2·cos. The square root has a finite gradient everywhere:
the zero distances of a sample to itself are never differentiated through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_embeddings, check_labels, check_reduction, reduce_loss
from ..registry import register_method

__all__ = [
    "DISTANCES",
    "pairwise_similarity",
    "pairwise_distance",
    "pair_masks",
]

#: What a pair loss may measure pairs with: cosine similarity, or Euclidean distance of the
#: normalised embeddings (and of the raw embeddings).
DISTANCES = ("cosine", "euclidean", "euclidean_raw", "squared_euclidean")


def _check_metric(name: str, metric: str, allowed=DISTANCES) -> None:
    if metric not in allowed:
        raise ValueError(f"{name}: distance must be one of {allowed}; got {metric!r}.")


@register_method(kind="building block", family="pairs")
def pairwise_similarity(x: Tensor, y: Tensor | None = None, *, metric: str = "cosine") -> Tensor:
    """Similarities S[i, j] between the rows of ``x`` (N, d) and of ``y`` (M, d) (``x`` itself when
    None): ``"cosine"`` (rows L2-normalised first) or ``"dot"``. Shape (N, M)."""
    name = "pairwise_similarity"
    check_embeddings(name, x)
    if y is not None:
        check_embeddings(name, y, x.shape[1])
    _check_metric(name, metric, ("cosine", "dot"))
    y = x if y is None else y
    if metric == "cosine":
        return F.normalize(x, dim=1) @ F.normalize(y, dim=1).T
    return x @ y.T


def _safe_sqrt(d2: Tensor) -> Tensor:
    """√d² with a zero (not NaN) gradient at d² = 0."""
    positive = d2 > 0
    return torch.where(positive, torch.where(positive, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


@register_method(kind="building block", family="pairs")
def pairwise_distance(x: Tensor, y: Tensor | None = None, *, metric: str = "euclidean") -> Tensor:
    """Distances D[i, j] between the rows of ``x`` (N, d) and ``y`` (M, d) (``x`` when None).

    ``"euclidean"``: ‖x̂_i − ŷ_j‖ of the L2-normalised rows (pytorch-metric-learning's default
    ``LpDistance``); ``"squared_euclidean"``: its square, 2 − 2·cos; ``"euclidean_raw"``: ‖x_i − y_j‖
    of the rows as given; ``"cosine"``: the cosine distance 1 − cos. Shape (N, M)."""
    name = "pairwise_distance"
    check_embeddings(name, x)
    if y is not None:
        check_embeddings(name, y, x.shape[1])
    _check_metric(name, metric)
    y_ = x if y is None else y
    if metric == "cosine":
        return 1.0 - F.normalize(x, dim=1) @ F.normalize(y_, dim=1).T
    if metric in ("euclidean", "squared_euclidean"):
        x, y_ = F.normalize(x, dim=1), F.normalize(y_, dim=1)
    d2 = (x.square().sum(1, keepdim=True) + y_.square().sum(1) - 2.0 * x @ y_.T).clamp_min(0.0)
    if y is None:  # exact zeros on the diagonal, whatever the rounding
        d2 = d2 * (1.0 - torch.eye(len(x), dtype=d2.dtype, device=d2.device))
    return d2 if metric == "squared_euclidean" else _safe_sqrt(d2)


@register_method(kind="building block", family="pairs")
def pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """The positive and negative pairs of a batch: ``(pos, neg)``, bool (N, N); pos[i, j] when
    labels agree and i ≠ j, neg[i, j] when they differ."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"pair_masks: labels must be an int64 tensor of shape (N,); got {type(labels).__name__}.")
    check_labels("pair_masks", labels, len(labels))
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


# --- shared by the losses -----------------------------------------------------------------------------


def check_batch(name: str, embeddings, labels, reduction: str) -> None:
    """Embeddings (N, d) floating, labels int64 (N,), a known reduction."""
    check_embeddings(name, embeddings)
    check_labels(name, labels, embeddings.shape[0])
    check_reduction(name, reduction)
    if labels.device != embeddings.device:
        raise ValueError(f"{name}: labels are on {labels.device} but embeddings on {embeddings.device}. "
                         "Use labels.to(embeddings.device).")


def class_centroids(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The batch's classes: their labels (K,) in ascending order, each row's one-hot membership (N, K)
    (in the embeddings' dtype) and the class means (K, d) of ``embeddings``."""
    classes, inverse = torch.unique(labels, return_inverse=True)
    onehot = F.one_hot(inverse, len(classes)).to(embeddings.dtype)
    return classes, onehot, (onehot.T @ embeddings) / onehot.sum(0)[:, None]


def masked_logsumexp(x: Tensor, mask: Tensor, *, add_one: bool = False) -> Tensor:
    """log Σ_{j: mask[i, j]} e^{x[i, j]} per row (log(1 + Σ …) with ``add_one``); an empty row gives
    −inf (0 with ``add_one``), with zero gradient, never NaN."""
    empty = ~mask.any(1, keepdim=True)
    xm = x.masked_fill(~mask, float("-inf")).masked_fill(empty, 0.0)
    zero = x.new_zeros(x.shape[0])
    if add_one:
        return torch.where(empty.squeeze(1), zero, torch.logsumexp(torch.cat([xm, zero[:, None]], 1), 1))
    return torch.where(empty.squeeze(1), zero - float("inf"), torch.logsumexp(xm, 1))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x[i, j] over mask[i, j] per row; 0 for an empty row."""
    count = mask.sum(1)
    return (x * mask).sum(1) / count.clamp_min(1).to(x.dtype)


def reduce_anchors(per_anchor: Tensor, counted: Tensor, reduction: str, anchor_source: Tensor) -> Tensor:
    """``"none"``: the (N,) values (0 for anchors that are not counted); ``"mean"``: their sum over the
    number of counted anchors; ``"sum"``. An empty or pair-less batch gives 0 attached to the graph."""
    per_anchor = torch.where(counted, per_anchor, torch.zeros_like(per_anchor)) + anchor_source.sum() * 0.0
    return reduce_loss(per_anchor, reduction, denominator=counted.sum().to(per_anchor.dtype))
