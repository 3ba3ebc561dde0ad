r"""Losses on a score matrix over sampled candidates, from retrieval and recommendation:
SimpleX's cosine contrastive loss, PSL (pairwise softmax loss) and DEXML's decoupled softmax.

Every function takes ``input`` (N, C): scores of N queries against C candidates (cosines for CCL
and PSL), and ``target`` (N,): the column of each row's positive; the other columns are its
negatives (in-batch items, sampled items, or both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_logits, check_number, check_reduction, describe, format_shape, reduce_loss
from ..engine import INDEX_OPTIONS, IndexOptions, LossModule, class_loss
from ..registry import register_loss, register_method

__all__ = [
    "cosine_contrastive_loss",
    "pairwise_softmax_loss",
    "psl_activation",
    "decoupled_softmax_loss",
    "decoupled_softmax_multilabel_loss",
    "CosineContrastiveLoss",
    "PairwiseSoftmaxLoss",
    "DecoupledSoftmaxLoss",
]


def _negatives(name: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:  # noqa: A002
    """(positive score (N,), is-negative mask (N, C)) of scores ``input`` with positives in column ``target``;
    needs one negative column at least."""
    if input.shape[1] < 2:
        raise ValueError(f"{name}: needs at least one negative column besides the positive; got scores of shape "
                         f"{format_shape(input)}.")
    pos = input.gather(1, target.unsqueeze(1)).squeeze(1)
    neg = torch.arange(input.shape[1], device=input.device).unsqueeze(0) != target.unsqueeze(1)
    return pos, neg


def _pairwise_loss(name: str, per_row, input: Tensor, target: Tensor, options: IndexOptions) -> Tensor:  # noqa: A002
    """:func:`~lossbook.engine.class_loss` of ``per_row(z, positive, negative mask)``."""
    return class_loss(name, input, target, per_row=lambda z, y: per_row(z, *_negatives(name, z, y)),
                      **options)


# --- SimpleX: cosine contrastive loss ------------------------------------------------------------------


def _check_ccl(margin=0.5, negative_weight=10.0):
    check_number("cosine_contrastive_loss", "margin", margin)
    check_number("cosine_contrastive_loss", "negative_weight", negative_weight, low=0.0)


@register_loss("cosine_contrastive", family="sampled", paper="mao2021simplex", supports=INDEX_OPTIONS, check=_check_ccl,
               properties={"nonnegative": True, "shift_invariant": False, "symmetric": False},
               summary="SimpleX's cosine contrastive loss: ReLU(1 − ŷ⁺) + (w/|N|) Σ_j ReLU(ŷ_j⁻ − m) on cosines.",
               formula=r"\ell = \max(0, 1 - \hat y^+) + \frac{w}{|\mathcal N|}\sum_{j\in\mathcal N}"
                       r"\max(0, \hat y_j^- - m)")
def cosine_contrastive_loss(input: Tensor, target: Tensor, *, margin: float = 0.5, negative_weight: float = 10.0,
                            **options: Unpack[IndexOptions]) -> Tensor:
    r"""SimpleX's cosine contrastive loss (CCL; Mao et al. 2021).

    With ŷ the cosine scores, per row: ReLU(1 − ŷ⁺) + (w/|N|)·Σ_{j∈N} ReLU(ŷ_j − m), where ŷ⁺ is the
    target column and N the other columns: negatives only count above the margin m, and their
    mean is weighted by w. As in RecBole's ``SimpleX`` (``pos_loss + neg_loss.mean(1) * w``);
    defaults m = 0.5, w = 10 are RecBole's ``SimpleX.yaml``.
    """
    _check_ccl(margin, negative_weight)

    def per_row(z: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        neg_term = torch.where(neg, F.relu(z - margin), torch.zeros_like(z)).sum(1) / (z.shape[1] - 1)
        return F.relu(1.0 - pos) + negative_weight * neg_term

    return _pairwise_loss("cosine_contrastive_loss", per_row, input, target, options)


class CosineContrastiveLoss(LossModule, loss="cosine_contrastive"):
    """Module form of :func:`lossbook.functional.cosine_contrastive_loss`."""


# --- PSL: pairwise softmax loss ----------------------------------------------------------------------------

_ACTIVATIONS = ("tanh", "atan", "relu", "identity")


def psl_activation(d: Tensor, activation: str = "tanh") -> Tensor:
    r"""PSL's σ(d), which replaces d in exp(d) by a tighter surrogate of the step function:

    * ``"tanh"``: log(tanh d + 1) = log 2 + log sigmoid(2d) (computed in this stable form);
    * ``"atan"``: log(arctan d + 1), −inf where arctan d + 1 ≤ 0 (d ≤ −tan 1);
    * ``"relu"``: log ReLU(d + 1), −inf where d ≤ −1;
    * ``"identity"``: d (PSL becomes the softmax loss over the negatives).

    All satisfy 𝟙(d ≥ 0) ≤ exp σ(d) ≤ exp d on d ∈ [−1, 1] (the paper's condition, which
    cosine scores with temperature τ ≥ 2 meet).
    """
    if activation == "tanh":
        return math.log(2.0) + F.logsigmoid(2.0 * d)
    if activation == "identity":
        return d
    if activation == "relu":
        arg = d + 1.0
    elif activation == "atan":
        arg = torch.atan(d) + 1.0
    else:
        raise ValueError(f"psl_activation: activation must be one of {_ACTIVATIONS}; got {activation!r}.")
    ok = arg > 0
    return torch.where(ok, torch.log(torch.where(ok, arg, torch.ones_like(arg))), torch.full_like(arg, -math.inf))


def _check_psl(temperature=2.0, robust_temperature=1.0, activation="tanh"):
    check_number("pairwise_softmax_loss", "temperature", temperature, low=0.0, low_open=True)
    check_number("pairwise_softmax_loss", "robust_temperature", robust_temperature, low=0.0, low_open=True)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"pairwise_softmax_loss: activation must be one of {_ACTIVATIONS}; got {activation!r}.")


@register_loss("pairwise_softmax", family="sampled", paper="yang2024psl", supports=INDEX_OPTIONS, check=_check_psl,
               properties={"shift_invariant": True, "symmetric": False},
               summary="PSL: log Σ_j exp(σ(d_j)/τ*), d_j = (ŷ_j − ŷ⁺)/τ, σ a surrogate activation (tanh, atan, relu).",
               formula=r"\ell = \log \sum_{j\in\mathcal N} \exp\!\big(\sigma(d_j)/\tau^*\big),\ "
                       r"d_j = (\hat y_j - \hat y^+)/\tau")
def pairwise_softmax_loss(input: Tensor, target: Tensor, *, temperature: float = 2.0, robust_temperature: float = 1.0,
                          activation: str = "tanh", **options: Unpack[IndexOptions]) -> Tensor:
    r"""Pairwise softmax loss PSL1 (Yang et al. 2024).

    With d_j = (ŷ_j − ŷ⁺)/τ over the negative columns j (ŷ cosine scores, τ = ``temperature``) and
    τ* = ``robust_temperature``, per row: log Σ_j exp(σ(d_j)/τ*), σ from :func:`psl_activation`.
    σ = identity gives the softmax loss over the negatives, log Σ_j e^{(ŷ_j − ŷ⁺)/(τ τ*)}. As in the
    authors' ``optim_PSL.py`` (method 1, ``logsumexp(sigma(d) / tau_star)`` over sampled
    negatives); defaults τ = 2, τ* = 1, tanh are that code's CLI defaults (the authors tune τ*).
    The BPR-like PSL2 = log mean_j exp(σ(d_j)/τ*) equals this minus log|N| for one positive per row.
    Each σ(d_j)/τ* is floored at log of the dtype's smallest normal number, so a row where every
    exp σ vanishes (``relu``/``atan`` with d_j below −1 / −tan 1) has a finite loss and zero gradient.
    """
    _check_psl(temperature, robust_temperature, activation)

    def per_row(z: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        d = (z - pos.unsqueeze(1)) / temperature
        # floor at log(tiny): a row whose every exp σ(d_j) is 0 (relu/atan with d_j below their zero, e.g.
        # τ < 2) gets the finite loss log(|N|·tiny) and a zero gradient instead of −inf and NaN
        s = (psl_activation(d, activation) / robust_temperature).clamp_min(math.log(torch.finfo(z.dtype).tiny))
        return torch.logsumexp(s.masked_fill(~neg, -math.inf), dim=1)

    return _pairwise_loss("pairwise_softmax_loss", per_row, input, target, options)


class PairwiseSoftmaxLoss(LossModule, loss="pairwise_softmax"):
    """Module form of :func:`lossbook.functional.pairwise_softmax_loss`."""


# --- DEXML: decoupled softmax ------------------------------------------------------------------------------


def _check_positives(name: str, positives, input: Tensor) -> Tensor:
    if not isinstance(positives, Tensor) or positives.dtype != torch.bool or positives.shape != input.shape:
        raise ValueError(f"{name}: positives must be a bool mask of the scores' shape {format_shape(input)} (True "
                         f"at every positive label of the row); got {describe(positives)}. Use positives.bool().")
    if positives.device != input.device:
        raise ValueError(f"{name}: positives are on {positives.device} but the scores on {input.device}.")
    return positives


@register_loss("decoupled_softmax", family="sampled", paper="gupta2024dexml", supports=INDEX_OPTIONS,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": False, "symmetric": False},
               summary="DEXML's decoupled softmax: each positive in its own softmax against the negatives only.",
               formula=r"\ell = -\log \frac{e^{s_y}}{e^{s_y} + \sum_{n \notin P} e^{s_n}}")
def decoupled_softmax_loss(input: Tensor, target: Tensor, positives: Tensor | None = None,
                           **options: Unpack[IndexOptions]) -> Tensor:
    r"""Decoupled softmax of DEXML (Gupta et al. 2024), one row per (query, positive) pair.

    Row i scores a query against C labels; ``target`` is the positive this row trains, and
    ``positives`` (N, C) bool marks every positive label of the query: those other than the
    target are removed from the denominator, −log(e^{s_y} / (e^{s_y} + Σ_{n∉P} e^{s_n})). Without
    ``positives`` this is cross-entropy. For DEXML's per-query average over all positives use
    :func:`decoupled_softmax_multilabel_loss`.
    """
    name = "decoupled_softmax_loss"

    def per_row(z: Tensor, y: Tensor) -> Tensor:
        if positives is not None:
            others = torch.arange(z.shape[1], device=z.device).unsqueeze(0) != y.unsqueeze(1)
            z = z.masked_fill(_check_positives(name, positives, z) & others, -math.inf)
        return F.cross_entropy(z, y, reduction="none")

    return class_loss(name, input, target, per_row=per_row, **options)


class DecoupledSoftmaxLoss(LossModule, loss="decoupled_softmax"):
    """Module form of :func:`lossbook.functional.decoupled_softmax_loss`;
    ``forward(scores, target, positives=None)``."""


@register_method(kind="stateful loss", family="sampled", paper="gupta2024dexml")
def decoupled_softmax_multilabel_loss(input: Tensor, positives: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""DEXML's decoupled softmax over multi-label rows (``losses.py``, ``decoupled-softmax``).

    For query i with positive set P_i (``positives`` (N, C) bool) and negatives N_i = the other
    columns: ℓ_i = (1/|P_i|)·Σ_{l∈P_i} −log(e^{s_l} / (e^{s_l} + Σ_{n∈N_i} e^{s_n})); a query
    without positives gives 0 and still counts in the ``"mean"`` (DEXML divides by the batch
    size). Returns (N,) for ``reduction="none"``.
    """
    name = "decoupled_softmax_multilabel_loss"
    check_logits(name, input)
    check_reduction(name, reduction)
    positives = _check_positives(name, positives, input)
    has_neg = (~positives).any(dim=1, keepdim=True)
    # log Σ_{n∈N_i} e^{s_n}; rows without negatives get −inf (computed on a safe copy: no NaN gradient)
    safe = torch.where(has_neg, input.masked_fill(positives, -math.inf), torch.zeros_like(input))
    lse_neg = torch.where(has_neg.squeeze(1), torch.logsumexp(safe, dim=1), torch.full_like(input[:, 0], -math.inf))
    pair = F.softplus(lse_neg.unsqueeze(1) - input)  # −log(e^{s_l} / (e^{s_l} + e^{lse_neg}))
    num_pos = positives.sum(dim=1)
    per_row = torch.where(positives, pair, torch.zeros_like(pair)).sum(dim=1) / num_pos.clamp_min(1).to(input.dtype)
    return reduce_loss(per_row, reduction)
