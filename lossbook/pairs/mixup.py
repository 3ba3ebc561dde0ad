r"""Metrix (Venkataramanan et al., ICLR 2022, "It Takes Two to Tango: Mixup for Deep Metric Learning"):
mixup of embeddings with interpolated pair labels, here for the contrastive and the multi-similarity losses.

For an anchor i, its first positive p (in batch order, as the official code pairs them) and each of its
negatives n, the mixed embedding is
z̃ = λ z_p + (1 − λ) z_n (embedding mixup, the authors' ``Metrix/embed``), and its label towards the
anchor is "positive with weight λ, negative with weight 1 − λ". The contrastive loss's positive and
negative terms then both act on the anchor's distance to z̃, weighted by the mixed label:

.. math::

    \ell^{\text{mix}}_i = \operatorname{mean}_{n\in N(i)}
        \Bigl(\lambda\,[D(e_i, \tilde z_{pn}) - m_p]_+ + (1-\lambda)\,[m_n - D(e_i, \tilde z_{pn})]_+\Bigr),
    \qquad \ell_i = \ell^{\text{clean}}_i + w\,\ell^{\text{mix}}_i ,

with D the Euclidean distance of the L2-normalised vectors (as the contrastive loss's) and ℓ^clean the
contrastive loss of :func:`~lossbook.pairs.contrastive_loss`. At λ = 0 the mixed term is the clean
loss's negative term; at λ = 1 it is the first positive's term (the clean positive term when every
positive is mixed, ``positives="all"``). The official code (billpsomas/Metrix_ICLR22,
``train.py`` ``embed_metrix_contrastive`` and ``mixup/losses.py`` ``loss_posneg_mixup``) draws one
λ ~ Beta(2, 2) per batch, weighs the mixed loss by w = 0.4 and uses pytorch-metric-learning's
``ContrastiveLoss(neg_margin=0.5)`` on ``LpDistance``; it mixes each anchor's first positive with each of
its negatives (our default; ``positives="all"`` mixes every positive) and averages the non-zero pair
losses, where we average per anchor, then over anchors, as the chapter's contrastive loss does.

The multi-similarity (MS) version follows the paper's generic recipe, label-weighted sums of the loss's
positive and negative terms over the mixed examples U(i) of anchor i, each z̃ counting as a positive with
weight λ and as a negative with weight 1 − λ inside MS's two log-sums:

.. math::

    \ell^{\text{mix}}_i = \frac1\alpha\log\Bigl(1 + \lambda\sum_{\tilde z\in U(i)} e^{-\alpha(S(e_i,\tilde z)-b)}\Bigr)
        + \frac1\beta\log\Bigl(1 + (1-\lambda)\sum_{\tilde z\in U(i)} e^{\beta(S(e_i,\tilde z)-b)}\Bigr),

S the cosine similarity, b MS's λ (``base``), ℓ^clean :func:`~lossbook.pairs.multi_similarity_loss` with its
ε-mining; the mixed pairs are not mined. The official repository's ``main.py`` lists ``multisimilarity`` among
its ``--loss`` choices but implements only the contrastive loss, so the MS version, its pairing (as the
contrastive one's), λ ~ Beta(2, 2) and w = 0.4 are carried over from the official contrastive configuration,
and α = 2, β = 40, b = 0.5, ε = 0.1 are the MS authors' own.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_number, check_reduction
from ..registry import register_method
from .distances import _safe_sqrt, check_batch, masked_logsumexp, pair_masks, reduce_anchors
from .losses import _check_contrastive, _check_ms, contrastive_loss, multi_similarity_loss
from .miners import multi_similarity_pairs

__all__ = ["mix_positive_negative", "metrix_contrastive_loss", "MetrixContrastiveLoss",
           "metrix_multi_similarity_loss", "MetrixMultiSimilarityLoss"]


_POSITIVES = ("first", "all")


def _check_positives(name: str, positives: str) -> None:
    if positives not in _POSITIVES:
        raise ValueError(f"{name}: positives must be one of {_POSITIVES}; got {positives!r}.")


@register_method(kind="building block", family="pairs", paper="venkataramanan2022metrix")
def mix_positive_negative(embeddings: Tensor, labels: Tensor, lam: float, *,
                          positives: str = "first") -> tuple[Tensor, Tensor]:
    """The (anchor i, positive p, negative n) triples of the batch and their mixed embeddings
    z̃ = λ z_p + (1 − λ) z_n: p the anchor's first positive in batch order with each of its negatives (the
    official code's pairing, ``positives="first"``), or every positive with every negative (``"all"``).
    Returns ``(anchors (M,) int64, mixed (M, d))``, anchor-major."""
    name = "mix_positive_negative"
    check_batch(name, embeddings, labels, "none")
    lam = check_number(name, "lam", lam, low=0.0, high=1.0)
    _check_positives(name, positives)
    pos, neg = pair_masks(labels)
    if positives == "first":
        first = torch.zeros_like(pos)
        rows = torch.nonzero(pos.any(1)).squeeze(1)
        first[rows, pos[rows].to(torch.uint8).argmax(1)] = True
        pos = first
    a, p, n = torch.nonzero(pos[:, :, None] & neg[:, None, :], as_tuple=True)
    return a, lam * embeddings[p] + (1 - lam) * embeddings[n]


def _unit_mixed(name: str, embeddings: Tensor, labels: Tensor, reduction: str, lam: float, weight: float,
                positives: str) -> tuple[Tensor, Tensor, Tensor, float, float]:
    """Checks shared by the Metrix losses; the anchors of the mixed triples, the unit anchor and unit mixed
    vectors, λ and w as floats."""
    check_batch(name, embeddings, labels, reduction)
    weight = check_number(name, "weight", weight, low=0.0)
    anchors, mixed = mix_positive_negative(embeddings, labels, lam, positives=positives)
    return anchors, F.normalize(embeddings, dim=1)[anchors], F.normalize(mixed, dim=1), float(lam), weight


@register_method(kind="stateful loss", family="pairs", paper="venkataramanan2022metrix")
def metrix_contrastive_loss(embeddings: Tensor, labels: Tensor, *, lam: float, pos_margin: float = 0.0,
                            neg_margin: float = 0.5, weight: float = 0.4, positives: str = "first",
                            reduction: str = "mean") -> Tensor:
    """Contrastive loss plus ``weight`` × its Metrix term per anchor: the mean over the anchor's mixed
    (positive, negative) pairs of λ[D(e_i, z̃) − m_p]₊ + (1 − λ)[m_n − D(e_i, z̃)]₊, z̃ = λ z_p + (1 − λ) z_n
    (module docstring), the positive being the anchor's first (the official pairing) or each of them
    (``positives="all"``, see :func:`mix_positive_negative`). ``lam`` in [0, 1] (the official code draws it
    from Beta(2, 2) per batch, as :class:`MetrixContrastiveLoss` does); defaults m_p = 0, m_n = 0.5, w = 0.4
    are the official contrastive configuration. An anchor counts when it has a pair; its mixed term is 0
    without both a positive and a negative."""
    _check_contrastive(pos_margin, neg_margin)
    anchors, ua, um, lam, weight = _unit_mixed("metrix_contrastive_loss", embeddings, labels, reduction, lam, weight,
                                               positives)
    d = _safe_sqrt((ua - um).square().sum(1))
    per_mix = lam * (d - pos_margin).clamp_min(0) + (1 - lam) * (neg_margin - d).clamp_min(0)
    n = len(labels)
    count = torch.bincount(anchors, minlength=n).to(embeddings.dtype)
    mix = torch.zeros(n, dtype=embeddings.dtype, device=embeddings.device).index_add(0, anchors, per_mix)
    mix = mix / count.clamp_min(1)
    clean = contrastive_loss(embeddings, labels, pos_margin=pos_margin, neg_margin=neg_margin, reduction="none")
    pos, neg = pair_masks(labels)
    return reduce_anchors(clean + weight * mix, pos.any(1) | neg.any(1), reduction, embeddings)


@register_method(kind="stateful loss", family="pairs", paper="venkataramanan2022metrix")
def metrix_multi_similarity_loss(embeddings: Tensor, labels: Tensor, *, lam: float, alpha: float = 2.0,
                                 beta: float = 40.0, base: float = 0.5, epsilon: float | None = 0.1,
                                 weight: float = 0.4, positives: str = "first", reduction: str = "mean") -> Tensor:
    """Multi-similarity loss plus ``weight`` × its Metrix term per anchor (module docstring): the mixed vectors
    z̃ = λ z_p + (1 − λ) z_n of :func:`mix_positive_negative` enter MS's positive log-sum with weight λ and its
    negative log-sum with weight 1 − λ, (1/α)log(1 + λΣ e^{−α(S − b)}) + (1/β)log(1 + (1 − λ)Σ e^{β(S − b)}).
    The clean term is :func:`~lossbook.pairs.multi_similarity_loss` (α = 2, β = 40, b = 0.5 and ε-mining with
    ε = 0.1 by default, ``epsilon=None`` for every pair); the mixed pairs are not mined. An anchor counts when it
    has a kept clean pair or a mixed pair."""
    name = "metrix_multi_similarity_loss"
    _check_ms(alpha, beta, base, epsilon)
    anchors, ua, um, lam, weight = _unit_mixed(name, embeddings, labels, reduction, lam, weight, positives)
    s = (ua * um).sum(1)
    n = len(labels)
    group = anchors[None, :] == torch.arange(n, device=anchors.device)[:, None]
    mix = torch.zeros(n, dtype=embeddings.dtype, device=embeddings.device)
    if lam > 0:
        mix = mix + masked_logsumexp((-alpha * (s - base) + np.log(lam)).expand(n, -1), group, add_one=True) / alpha
    if lam < 1:
        mix = mix + masked_logsumexp((beta * (s - base) + np.log1p(-lam)).expand(n, -1), group, add_one=True) / beta
    pos, neg = pair_masks(labels) if epsilon is None else multi_similarity_pairs(embeddings, labels, epsilon=epsilon)
    clean = multi_similarity_loss(embeddings, labels, alpha=alpha, beta=beta, base=base, pairs=(pos, neg),
                                  reduction="none")
    return reduce_anchors(clean + weight * mix, pos.any(1) | neg.any(1) | group.any(1), reduction, embeddings)


class _Metrix(nn.Module):
    """λ ~ Beta(α, α) drawn afresh at every call from the module's own generator (``seed``), the last one kept
    in ``last_lam``; ``forward`` applies ``self.loss`` with ``self.kwargs``."""

    loss = staticmethod(metrix_contrastive_loss)

    def __init__(self, alpha: float, positives: str, weight: float, seed: int, reduction: str, /, *,
                 alpha_name: str = "alpha", **kwargs) -> None:
        super().__init__()
        name = type(self).__name__
        self.alpha = check_number(name, alpha_name, alpha, low=0.0, low_open=True)
        _check_positives(name, positives)
        self.positives = positives
        self.weight = check_number(name, "weight", weight, low=0.0)
        check_reduction(name, reduction)
        self.reduction, self.kwargs = reduction, kwargs
        self.rng = np.random.default_rng(seed)
        self.last_lam: float | None = None

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        self.last_lam = float(self.rng.beta(self.alpha, self.alpha))
        return self.loss(embeddings, labels, lam=self.last_lam, weight=self.weight, positives=self.positives,
                         reduction=self.reduction, **self.kwargs)


@register_method(kind="head", family="pairs", paper="venkataramanan2022metrix")
class MetrixContrastiveLoss(_Metrix):
    """:func:`metrix_contrastive_loss` with λ ~ Beta(α, α) drawn afresh at every call from the module's
    own generator (``seed``); α = 2, m_p = 0, m_n = 0.5, w = 0.4 by default (the official code's). The
    last λ drawn is kept in ``last_lam``."""

    def __init__(self, alpha: float = 2.0, *, pos_margin: float = 0.0, neg_margin: float = 0.5, weight: float = 0.4,
                 positives: str = "first", seed: int = 0, reduction: str = "mean") -> None:
        _check_contrastive(pos_margin, neg_margin)
        super().__init__(alpha, positives, weight, seed, reduction, pos_margin=pos_margin, neg_margin=neg_margin)
        self.pos_margin, self.neg_margin = pos_margin, neg_margin


@register_method(kind="head", family="pairs", paper="venkataramanan2022metrix")
class MetrixMultiSimilarityLoss(_Metrix):
    """:func:`metrix_multi_similarity_loss` with λ ~ Beta(``mix_alpha``, ``mix_alpha``) drawn afresh at every
    call from the module's own generator (``seed``); ``mix_alpha`` = 2 and w = 0.4 (the official contrastive
    configuration), MS's α = 2, β = 40, b = 0.5, ε = 0.1 by default. The last λ drawn is kept in ``last_lam``."""

    loss = staticmethod(metrix_multi_similarity_loss)

    def __init__(self, mix_alpha: float = 2.0, *, alpha: float = 2.0, beta: float = 40.0, base: float = 0.5,
                 epsilon: float | None = 0.1, weight: float = 0.4, positives: str = "first", seed: int = 0,
                 reduction: str = "mean") -> None:
        _check_ms(alpha, beta, base, epsilon)
        super().__init__(mix_alpha, positives, weight, seed, reduction, alpha_name="mix_alpha", alpha=alpha, beta=beta,
                         base=base, epsilon=epsilon)
