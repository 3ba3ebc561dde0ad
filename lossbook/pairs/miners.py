r"""Miners: which pairs or triplets of a batch a loss looks at.

A miner reads the batch's distances without gradient and returns indices or masks; the loss then
takes them as ``triplets=`` or ``pairs=``.

* :func:`all_triplets`: every (a, p, n) with y_a = y_p ≠ y_n, a ≠ p.
* :func:`batch_hard_triplets` (Hermans et al., 2017): for each anchor its farthest positive and its
  closest negative, one triplet per anchor.
* :func:`semi_hard_triplets` (Schroff et al., 2015): the triplets whose negative is farther than the
  positive but within the margin, 0 < d_an − d_ap ≤ m.
* :func:`multi_similarity_pairs` (Wang et al., 2019): with cosine similarities S, keep the negative
  pairs with S_an + ε > min_p S_ap and the positive pairs with S_ap − ε < max_n S_an (the paper's
  ε-mining, as its official code and pytorch-metric-learning's ``MultiSimilarityMiner``: the
  minimum and maximum run over all of the anchor's positives and negatives).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._validation import check_embeddings, check_labels, check_number
from ..registry import register_method
from .distances import _check_metric, pair_masks, pairwise_distance, pairwise_similarity

__all__ = [
    "Triplets",
    "all_triplets",
    "batch_hard_triplets",
    "semi_hard_triplets",
    "multi_similarity_pairs",
]


class Triplets(NamedTuple):
    """Index tensors (T,) of the anchors, positives and negatives of T triplets."""

    anchor: Tensor
    positive: Tensor
    negative: Tensor


def _inputs(name: str, embeddings, labels) -> None:
    check_embeddings(name, embeddings)
    check_labels(name, labels, embeddings.shape[0])


@register_method(kind="building block", family="pairs", paper="schroff2015facenet")
def all_triplets(labels: Tensor) -> Triplets:
    """Every triplet (a, p, n) of the batch with y_a = y_p ≠ y_n and a ≠ p, anchor-major."""
    pos, neg = pair_masks(labels)
    a, p, n = torch.nonzero(pos[:, :, None] & neg[:, None, :], as_tuple=True)
    return Triplets(a, p, n)


@register_method(kind="building block", family="pairs", paper="hermans2017defense")
def batch_hard_triplets(embeddings: Tensor, labels: Tensor, *, distance: str = "euclidean") -> Triplets:
    """Batch-hard mining: for each anchor with a positive and a negative, its farthest positive and its
    closest negative (ties: the lowest index). ``distance`` as :func:`~lossbook.pairs.pairwise_distance`."""
    name = "batch_hard_triplets"
    _inputs(name, embeddings, labels)
    _check_metric(name, distance)
    if len(labels) == 0:
        return all_triplets(labels)
    with torch.no_grad():
        d = pairwise_distance(embeddings, metric=distance)
        pos, neg = pair_masks(labels)
        ok = pos.any(1) & neg.any(1)
        hardest_p = d.masked_fill(~pos, float("-inf")).argmax(1)
        hardest_n = d.masked_fill(~neg, float("inf")).argmin(1)
        a = torch.nonzero(ok).squeeze(1)
    return Triplets(a, hardest_p[a], hardest_n[a])


@register_method(kind="building block", family="pairs", paper="schroff2015facenet")
def semi_hard_triplets(embeddings: Tensor, labels: Tensor, *, margin: float = 0.1,
                       distance: str = "euclidean") -> Triplets:
    """Semi-hard triplets: those with 0 < d_an − d_ap ≤ ``margin`` (the negative is farther than the
    positive, but inside the margin), as pytorch-metric-learning's ``TripletMarginMiner(type_of_triplets=
    "semihard")``."""
    name = "semi_hard_triplets"
    _inputs(name, embeddings, labels)
    check_number(name, "margin", margin, low=0.0, low_open=True)
    _check_metric(name, distance)
    with torch.no_grad():
        d = pairwise_distance(embeddings, metric=distance)
        t = all_triplets(labels)
        gap = d[t.anchor, t.negative] - d[t.anchor, t.positive]
        keep = (gap > 0) & (gap <= margin)
    return Triplets(t.anchor[keep], t.positive[keep], t.negative[keep])


@register_method(kind="building block", family="pairs", paper="wang2019multi")
def multi_similarity_pairs(embeddings: Tensor, labels: Tensor, *, epsilon: float = 0.1) -> tuple[Tensor, Tensor]:
    """The multi-similarity paper's ε-mining on cosine similarities: ``(pos, neg)`` bool (N, N) masks,
    pos[a, p] when S_ap − ε < max_n S_an, neg[a, n] when S_an + ε > min_p S_ap (an anchor without
    negatives keeps no positive, one without positives no negative)."""
    name = "multi_similarity_pairs"
    _inputs(name, embeddings, labels)
    check_number(name, "epsilon", epsilon, low=0.0)
    if len(labels) == 0:
        return pair_masks(labels)
    with torch.no_grad():
        s = pairwise_similarity(embeddings)
        pos, neg = pair_masks(labels)
        max_neg = s.masked_fill(~neg, float("-inf")).amax(1, keepdim=True)
        min_pos = s.masked_fill(~pos, float("inf")).amin(1, keepdim=True)
        return pos & (s - epsilon < max_neg), neg & (s + epsilon > min_pos)
