r"""Metrix (Venkataramanan et al., ICLR 2022, "It Takes Two to Tango: Mixup for Deep Metric Learning"):
mixup of embeddings with interpolated pair labels, here for the contrastive loss.

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
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_number, check_reduction
from ..registry import register_method
from .distances import _safe_sqrt, check_batch, pair_masks, reduce_anchors
from .losses import _check_contrastive, contrastive_loss

__all__ = ["mix_positive_negative", "metrix_contrastive_loss", "MetrixContrastiveLoss"]


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
    name = "metrix_contrastive_loss"
    check_batch(name, embeddings, labels, reduction)
    _check_contrastive(pos_margin, neg_margin)
    weight = check_number(name, "weight", weight, low=0.0)
    anchors, mixed = mix_positive_negative(embeddings, labels, lam, positives=positives)
    lam = float(lam)
    unit = F.normalize(embeddings, dim=1)
    d = _safe_sqrt((unit[anchors] - F.normalize(mixed, dim=1)).square().sum(1))
    per_mix = lam * (d - pos_margin).clamp_min(0) + (1 - lam) * (neg_margin - d).clamp_min(0)
    n = len(labels)
    count = torch.bincount(anchors, minlength=n).to(embeddings.dtype)
    mix = torch.zeros(n, dtype=embeddings.dtype, device=embeddings.device).index_add(0, anchors, per_mix)
    mix = mix / count.clamp_min(1)
    clean = contrastive_loss(embeddings, labels, pos_margin=pos_margin, neg_margin=neg_margin, reduction="none")
    pos, neg = pair_masks(labels)
    return reduce_anchors(clean + weight * mix, pos.any(1) | neg.any(1), reduction, embeddings)


@register_method(kind="head", family="pairs", paper="venkataramanan2022metrix")
class MetrixContrastiveLoss(nn.Module):
    """:func:`metrix_contrastive_loss` with λ ~ Beta(α, α) drawn afresh at every call from the module's
    own generator (``seed``); α = 2, m_p = 0, m_n = 0.5, w = 0.4 by default (the official code's). The
    last λ drawn is kept in ``last_lam``."""

    def __init__(self, alpha: float = 2.0, *, pos_margin: float = 0.0, neg_margin: float = 0.5, weight: float = 0.4,
                 positives: str = "first", seed: int = 0, reduction: str = "mean") -> None:
        super().__init__()
        name = type(self).__name__
        self.alpha = check_number(name, "alpha", alpha, low=0.0, low_open=True)
        _check_contrastive(pos_margin, neg_margin)
        _check_positives(name, positives)
        self.positives = positives
        self.weight = check_number(name, "weight", weight, low=0.0)
        check_reduction(name, reduction)
        self.pos_margin, self.neg_margin, self.reduction = pos_margin, neg_margin, reduction
        self.rng = np.random.default_rng(seed)
        self.last_lam: float | None = None

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        self.last_lam = float(self.rng.beta(self.alpha, self.alpha))
        return metrix_contrastive_loss(embeddings, labels, lam=self.last_lam, pos_margin=self.pos_margin,
                                       neg_margin=self.neg_margin, weight=self.weight, positives=self.positives,
                                       reduction=self.reduction)
