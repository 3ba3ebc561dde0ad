r"""Pair losses of a batch of embeddings: contrastive, triplet, multi-similarity, circle and SupCon.

Each takes ``(embeddings (N, d), labels (N,) int64)`` and returns, with ``reduction="none"``, one
value per anchor (0 for an anchor without the pairs it needs); ``"mean"`` divides the sum by the
number of anchors that have them, ``"sum"`` adds. With S the cosine similarities and D the
Euclidean distances of the normalised embeddings, P(i) the positives and N(i) the negatives of
anchor i (those a miner kept, when ``pairs=`` or ``triplets=`` is given):

.. math::

    \text{contrastive (Hadsell et al., 2006)}\quad
      &\ell_i = \operatorname{mean}_{p\in P(i)}[D_{ip}-m_p]_+ + \operatorname{mean}_{n\in N(i)}[m_n-D_{in}]_+\\
    \text{triplet (Schroff et al., 2015)}\quad
      &\ell_i = \operatorname{mean}_{(i,p,n)}[D_{ip}-D_{in}+m]_+\\
    \text{multi-similarity (Wang et al., 2019)}\quad
      &\ell_i = \tfrac1\alpha\log\bigl(1+\textstyle\sum_{P(i)}e^{-\alpha(S_{ip}-\lambda)}\bigr)
             + \tfrac1\beta\log\bigl(1+\textstyle\sum_{N(i)}e^{\beta(S_{in}-\lambda)}\bigr)\\
    \text{circle (Sun et al., 2020)}\quad
      &\ell_i = \operatorname{softplus}\bigl(\operatorname{LSE}_{N(i)}\gamma\alpha_n(S_{in}-m)
             + \operatorname{LSE}_{P(i)}(-\gamma\alpha_p(S_{ip}-1+m))\bigr),\
      \alpha_p=[1+m-S_{ip}]_+,\ \alpha_n=[S_{in}+m]_+\ \text{(no gradient)}\\
    \text{SupCon (Khosla et al., 2020)}\quad
      &\ell_i = -\operatorname{mean}_{p\in P(i)}\log\frac{e^{S_{ip}/\tau}}{\sum_{j\ne i}e^{S_{ij}/\tau}}

Defaults are the papers' (or, where a paper has several, pytorch-metric-learning's): triplet m =
0.1, multi-similarity α = 2, β = 40, λ = 0.5 with ε = 0.1 mining (the official code's config),
circle m = 0.4, γ = 80 (the paper's fine-grained retrieval setting), SupCon τ = 0.1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_number
from ..registry import register_method
from .distances import (
    _check_metric,
    check_batch,
    masked_logsumexp,
    masked_mean,
    pair_masks,
    pairwise_distance,
    pairwise_similarity,
    reduce_anchors,
)
from .miners import Triplets, all_triplets, batch_hard_triplets, multi_similarity_pairs, semi_hard_triplets

__all__ = [
    "contrastive_loss",
    "triplet_loss",
    "multi_similarity_loss",
    "circle_loss",
    "supcon_loss",
    "ContrastiveLoss",
    "TripletLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
    "SupConLoss",
]


def _pairs(name: str, pairs, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The batch's (pos, neg) masks, restricted to a miner's ``pairs`` when given."""
    pos, neg = pair_masks(labels)
    if pairs is None:
        return pos, neg
    n = len(labels)
    if (not isinstance(pairs, (tuple, list)) or len(pairs) != 2
            or not all(isinstance(m, Tensor) and m.dtype == torch.bool and m.shape == (n, n) for m in pairs)):
        raise TypeError(f"{name}: pairs must be a tuple (pos, neg) of bool ({n}, {n}) masks, as "
                        "lossbook.pairs.multi_similarity_pairs returns; got "
                        f"{type(pairs).__name__}.")
    if bool((pairs[0] & ~pos).any()) or bool((pairs[1] & ~neg).any()):
        raise ValueError(f"{name}: pairs marks a pair as positive (negative) whose labels differ (agree), or a "
                         "sample paired with itself; build the masks from these labels.")
    return pairs[0], pairs[1]


def _check_triplets(name: str, triplets, labels: Tensor) -> Triplets:
    n = len(labels)
    if (not isinstance(triplets, (tuple, list)) or len(triplets) != 3
            or not all(isinstance(t, Tensor) and t.dtype == torch.int64 and t.dim() == 1 for t in triplets)
            or len({len(t) for t in triplets}) != 1):
        raise TypeError(f"{name}: triplets must be three int64 index tensors (anchor, positive, negative) of one "
                        "length, as lossbook.pairs.batch_hard_triplets returns.")
    a, p, ng = triplets
    if len(a) and (min(int(t.min()) for t in triplets) < 0 or max(int(t.max()) for t in triplets) >= n):
        raise ValueError(f"{name}: triplets hold an index outside [0, {n}).")
    if bool(((labels[a] != labels[p]) | (labels[a] == labels[ng]) | (a == p)).any()):
        raise ValueError(f"{name}: every triplet needs y_a = y_p ≠ y_n and a ≠ p; mine them from these labels.")
    return Triplets(a, p, ng)


def _check_contrastive(pos_margin=0.0, neg_margin=1.0, distance="euclidean"):
    name = "contrastive_loss"
    check_number(name, "pos_margin", pos_margin, low=0.0)
    check_number(name, "neg_margin", neg_margin, low=0.0)
    _check_metric(name, distance)


@register_method(kind="stateful loss", family="pairs", paper="hadsell2006dimensionality")
def contrastive_loss(embeddings: Tensor, labels: Tensor, *, pos_margin: float = 0.0, neg_margin: float = 1.0,
                     distance: str = "euclidean", pairs=None, reduction: str = "mean") -> Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun, 2006) per anchor: the mean of [D_ip − m_p]₊ over its
    positive pairs plus the mean of [m_n − D_in]₊ over its negative pairs (pytorch-metric-learning's
    defaults m_p = 0, m_n = 1, D the Euclidean distance of the normalised embeddings). ``pairs``:
    the (pos, neg) masks a miner kept. An anchor counts when it has at least one pair."""
    name = "contrastive_loss"
    check_batch(name, embeddings, labels, reduction)
    _check_contrastive(pos_margin, neg_margin, distance)
    pos, neg = _pairs(name, pairs, labels)
    d = pairwise_distance(embeddings, metric=distance)
    per = masked_mean((d - pos_margin).clamp_min(0), pos) + masked_mean((neg_margin - d).clamp_min(0), neg)
    return reduce_anchors(per, pos.any(1) | neg.any(1), reduction, embeddings)


_MINING = ("all", "batch_hard", "semi_hard")


def _check_triplet(margin=0.1, distance="euclidean", mining="all"):
    name = "triplet_loss"
    check_number(name, "margin", margin, low=0.0)
    _check_metric(name, distance)
    if mining not in _MINING:
        raise ValueError(f"{name}: mining must be one of {_MINING}; got {mining!r} (or pass triplets=).")


@register_method(kind="stateful loss", family="pairs", paper="schroff2015facenet")
def triplet_loss(embeddings: Tensor, labels: Tensor, *, margin: float = 0.1, distance: str = "euclidean",
                 mining: str = "all", triplets=None, reduction: str = "mean") -> Tensor:
    """Triplet loss [D_ap − D_an + m]₊ (Schroff et al., 2015), averaged per anchor over its triplets:
    all of them (``mining="all"``), the batch-hard one (Hermans et al., 2017), the semi-hard ones, or
    the given ``triplets`` (anchor, positive, negative). An anchor counts when it has a triplet."""
    name = "triplet_loss"
    check_batch(name, embeddings, labels, reduction)
    _check_triplet(margin, distance, mining)
    if triplets is not None:
        t = _check_triplets(name, triplets, labels)
    elif mining == "batch_hard":
        t = batch_hard_triplets(embeddings, labels, distance=distance)
    elif mining == "semi_hard":
        t = semi_hard_triplets(embeddings, labels, margin=margin, distance=distance)
    else:
        t = all_triplets(labels)
    d = pairwise_distance(embeddings, metric=distance)
    terms = (d[t.anchor, t.positive] - d[t.anchor, t.negative] + margin).clamp_min(0)
    n = len(labels)
    total = torch.zeros(n, dtype=d.dtype, device=d.device).index_add(0, t.anchor, terms)
    count = torch.bincount(t.anchor, minlength=n)
    return reduce_anchors(total / count.clamp_min(1).to(d.dtype), count > 0, reduction, embeddings)


def _check_ms(alpha=2.0, beta=40.0, base=0.5, epsilon=0.1):
    name = "multi_similarity_loss"
    check_number(name, "alpha", alpha, low=0.0, low_open=True)
    check_number(name, "beta", beta, low=0.0, low_open=True)
    check_number(name, "base", base, low=-1.0, high=1.0)
    if epsilon is not None:
        check_number(name, "epsilon", epsilon, low=0.0)


@register_method(kind="stateful loss", family="pairs", paper="wang2019multi")
def multi_similarity_loss(embeddings: Tensor, labels: Tensor, *, alpha: float = 2.0, beta: float = 40.0,
                          base: float = 0.5, epsilon: float | None = 0.1, pairs=None,
                          reduction: str = "mean") -> Tensor:
    """Multi-similarity loss (Wang et al., 2019) per anchor, (1/α)·log(1 + Σ_P e^{−α(S − λ)}) +
    (1/β)·log(1 + Σ_N e^{β(S − λ)}) on cosine similarities, over the pairs its ε-mining keeps
    (:func:`~lossbook.pairs.multi_similarity_pairs`; ``epsilon=None``: every pair, which is what
    pytorch-metric-learning's loss computes without its miner). ``pairs`` overrides the mining.
    Defaults: the official code's α = 2, β = 40, λ = 0.5, ε = 0.1. An anchor counts when a pair is kept."""
    name = "multi_similarity_loss"
    check_batch(name, embeddings, labels, reduction)
    _check_ms(alpha, beta, base, epsilon)
    if pairs is None and epsilon is not None:
        pairs = multi_similarity_pairs(embeddings, labels, epsilon=epsilon)
    pos, neg = _pairs(name, pairs, labels)
    s = pairwise_similarity(embeddings)
    per = (masked_logsumexp(-alpha * (s - base), pos, add_one=True) / alpha
           + masked_logsumexp(beta * (s - base), neg, add_one=True) / beta)
    return reduce_anchors(per, pos.any(1) | neg.any(1), reduction, embeddings)


def _check_circle(margin=0.4, gamma=80.0):
    check_number("circle_loss", "margin", margin, low=0.0, high=1.0)
    check_number("circle_loss", "gamma", gamma, low=0.0, low_open=True)


@register_method(kind="stateful loss", family="pairs", paper="sun2020circle")
def circle_loss(embeddings: Tensor, labels: Tensor, *, margin: float = 0.4, gamma: float = 80.0, pairs=None,
                reduction: str = "mean") -> Tensor:
    """Circle loss (Sun et al., 2020) per anchor: softplus(LSE_N γα_n(S − m) + LSE_P −γα_p(S − 1 + m)),
    with the self-paced weights α_p = [1 + m − S]₊ and α_n = [S + m]₊ held constant (no gradient).
    Its decision boundary α_n(s_n − m) = α_p(s_p − 1 + m) is the circle (s_n − 0)² + (s_p − 1)² = 2m²
    around (0, 1). Defaults: the paper's fine-grained retrieval m = 0.4, γ = 80 (face: m = 0.25,
    γ = 256). An anchor counts when it has a positive and a negative pair."""
    name = "circle_loss"
    check_batch(name, embeddings, labels, reduction)
    _check_circle(margin, gamma)
    pos, neg = _pairs(name, pairs, labels)
    s = pairwise_similarity(embeddings)
    sd = s.detach()
    logit_p = -gamma * (1 + margin - sd).clamp_min(0) * (s - (1 - margin))
    logit_n = gamma * (sd + margin).clamp_min(0) * (s - margin)
    counted = pos.any(1) & neg.any(1)
    inner = masked_logsumexp(logit_n, neg) + masked_logsumexp(logit_p, pos)
    inner = torch.where(counted, inner, torch.zeros_like(inner))
    return reduce_anchors(torch.nn.functional.softplus(inner), counted, reduction, embeddings)


def _check_supcon(temperature=0.1):
    check_number("supcon_loss", "temperature", temperature, low=0.0, low_open=True)


@register_method(kind="stateful loss", family="pairs", paper="khosla2020supcon")
def supcon_loss(embeddings: Tensor, labels: Tensor, *, temperature: float = 0.1, reduction: str = "mean") -> Tensor:
    """Supervised contrastive loss (Khosla et al., 2020, the "L_out" form) per anchor:
    −mean_{p ∈ P(i)} log(e^{S_ip/τ} / Σ_{j ≠ i} e^{S_ij/τ}) on cosine similarities. An anchor counts
    when it has a positive."""
    name = "supcon_loss"
    check_batch(name, embeddings, labels, reduction)
    _check_supcon(temperature)
    pos, _ = pair_masks(labels)
    logits = pairwise_similarity(embeddings) / temperature
    others = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    log_prob = logits - masked_logsumexp(logits, others)[:, None]
    log_prob = torch.where(pos, log_prob, torch.zeros_like(log_prob))
    return reduce_anchors(-masked_mean(log_prob, pos), pos.any(1), reduction, embeddings)


class _PairLossModule(torch.nn.Module):
    """Stores a pair loss's hyper-parameters (checked at construction) and calls its function."""

    _function = None
    _check = None

    def __init__(self, *, reduction: str = "mean", **hyperparameters) -> None:
        super().__init__()
        type(self)._check(**hyperparameters)
        self.reduction = reduction
        self.hyperparameters = hyperparameters

    def forward(self, embeddings: Tensor, labels: Tensor, **kwargs) -> Tensor:
        return type(self)._function(embeddings, labels, **self.hyperparameters, **kwargs, reduction=self.reduction)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())


def _module(name: str, function, check, doc: str) -> type:
    cls = type(name, (_PairLossModule,), {"_function": staticmethod(function), "_check": staticmethod(check),
                                          "__doc__": doc, "__module__": __name__})
    return cls


ContrastiveLoss = _module("ContrastiveLoss", contrastive_loss, _check_contrastive,
                          "Module form of :func:`lossbook.pairs.contrastive_loss`; forward(embeddings, labels, pairs=None).")
TripletLoss = _module("TripletLoss", triplet_loss, _check_triplet,
                      "Module form of :func:`lossbook.pairs.triplet_loss`; forward(embeddings, labels, triplets=None).")
MultiSimilarityLoss = _module("MultiSimilarityLoss", multi_similarity_loss, _check_ms,
                              "Module form of :func:`lossbook.pairs.multi_similarity_loss`.")
CircleLoss = _module("CircleLoss", circle_loss, _check_circle, "Module form of :func:`lossbook.pairs.circle_loss`.")
SupConLoss = _module("SupConLoss", supcon_loss, _check_supcon, "Module form of :func:`lossbook.pairs.supcon_loss`.")
