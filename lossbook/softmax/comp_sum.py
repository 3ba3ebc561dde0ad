r"""Softmax cross-entropy and the comp-sum family of Mao, Mohri & Zhong (2023), which contains it.

A comp-sum loss composes a function Φ with the sum of exponentiated score differences:

.. math::

    \ell^\tau(z, y) = \Phi^\tau\Big(\sum_{k \ne y} e^{z_k - z_y}\Big),\qquad
    \Phi^\tau(u) = \begin{cases} \log(1+u) & \tau = 1\\
                   \frac{1}{1-\tau}\big((1+u)^{1-\tau} - 1\big) & \tau \ne 1 .\end{cases}

Since :math:`1 + \sum_{k\ne y} e^{z_k - z_y} = 1/p_y` with :math:`p = \mathrm{softmax}(z)`,
every member is a function of the target probability alone,
:math:`\ell^\tau = \frac{1 - p_y^{\tau-1}}{\tau - 1}`, which is how it is computed here (with
``expm1`` on log-probabilities, so τ → 1 is continuous and extreme logits stay finite):

* τ = 0: sum-exponential loss :math:`\sum_{k\ne y} e^{z_k - z_y} = 1/p_y - 1`;
* τ = 1: logistic loss, i.e. cross-entropy :math:`-\log p_y`;
* τ ∈ (1, 2): generalized cross-entropy (Zhang & Sabuncu 2018) with q = τ − 1, :math:`(1-p_y^q)/q`;
* τ = 2: mean absolute error :math:`1 - p_y` (half the L1 distance between one-hot y and p).
"""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss, register_method

__all__ = [
    "cross_entropy",
    "comp_sum_loss",
    "sum_exponential_loss",
    "generalized_cross_entropy",
    "mean_absolute_error",
    "comp_sum_phi",
    "comp_sum_minimizer",
    "comp_sum_conditional_risk",
    "comp_sum_bayes_risk",
    "CrossEntropyLoss",
    "CompSumLoss",
    "SumExponentialLoss",
    "GeneralizedCrossEntropyLoss",
    "MeanAbsoluteErrorLoss",
]


def _check_tau(tau=1.0) -> float:
    return check_number("comp_sum_loss", "tau", tau, low=0.0)


def comp_sum_phi(log_p: Tensor, tau: float) -> Tensor:
    r"""ℓ^τ as a function of the log-probability of the target: (1 − p^{τ−1})/(τ − 1)."""
    if tau == 1.0:
        return -log_p
    return -torch.expm1((tau - 1.0) * log_p) / (tau - 1.0)


@register_loss("cross_entropy", family="softmax", paper="mao2023crossentropy", supports=CLASS_OPTIONS,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": False, "symmetric": False,
                           "classification_calibrated": True},
               summary="Softmax cross-entropy (the logistic loss); the baseline of every chapter.",
               formula=r"\ell(z, y) = -\log \frac{e^{z_y}}{\sum_k e^{z_k}}")
def cross_entropy(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Softmax cross-entropy :math:`-\log \mathrm{softmax}(z)_y` (comp-sum at τ = 1).

    Same arguments and results as :func:`torch.nn.functional.cross_entropy` for logits of shape
    ``(N, C)`` (torch gives NaN for an empty batch).
    """
    return class_loss("cross_entropy", input, target, phi=torch.neg, prob_target=True, **options)


@register_loss("comp_sum", family="softmax", paper="mao2023crossentropy", supports=CLASS_OPTIONS, check=_check_tau,
               properties={"shift_invariant": True, "nonnegative": True, "reduces_to_ce_when": {"tau": 1.0},
                           "classification_calibrated": True},
               summary="Comp-sum family Φ^τ(Σ_{k≠y} e^{z_k−z_y}): sum-exp (τ=0), CE (τ=1), GCE (1<τ<2), MAE (τ=2).",
               formula=r"\ell^\tau(z,y) = \frac{1 - p_y^{\tau-1}}{\tau-1},\ p = \mathrm{softmax}(z)")
def comp_sum_loss(input: Tensor, target: Tensor, *, tau: float = 1.0, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Comp-sum loss ℓ^τ(z, y) = Φ^τ(Σ_{k≠y} e^{z_k − z_y}) = (1 − p_y^{τ−1})/(τ − 1), τ ≥ 0."""
    tau = _check_tau(tau)
    return class_loss("comp_sum_loss", input, target, phi=lambda log_p: comp_sum_phi(log_p, tau), prob_target=True,
                      **options)


@register_loss("sum_exponential", family="softmax", paper="mao2023crossentropy", supports=CLASS_OPTIONS,
               properties={"shift_invariant": True, "nonnegative": True, "classification_calibrated": True},
               summary="Sum-exponential loss Σ_{k≠y} e^{z_k−z_y} = 1/p_y − 1 (comp-sum τ = 0).",
               formula=r"\ell(z,y) = \sum_{k\ne y} e^{z_k - z_y}")
def sum_exponential_loss(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Sum-exponential loss Σ_{k≠y} e^{z_k − z_y}, the multi-class exponential loss (comp-sum τ = 0)."""
    return class_loss("sum_exponential_loss", input, target, phi=lambda log_p: comp_sum_phi(log_p, 0.0),
                      prob_target=True, **options)


def _check_q(q=0.7) -> float:
    return check_number("generalized_cross_entropy", "q", q, low=0.0, high=1.0, low_open=True)


@register_loss("generalized_cross_entropy", family="softmax", paper="zhang2018generalized", supports=CLASS_OPTIONS,
               check=_check_q,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": True,
                           "classification_calibrated": True},
               summary="Generalized cross-entropy (1 − p_y^q)/q: CE as q → 0, MAE at q = 1 (comp-sum τ = 1 + q).",
               formula=r"\ell_q(z,y) = \frac{1 - p_y^{q}}{q}")
def generalized_cross_entropy(input: Tensor, target: Tensor, *, q: float = 0.7,
                              **options: Unpack[ClassOptions]) -> Tensor:
    r"""Generalized cross-entropy (1 − p_y^q)/q of Zhang & Sabuncu (2018), q ∈ (0, 1]; default 0.7."""
    q = _check_q(q)
    return class_loss("generalized_cross_entropy", input, target, phi=lambda log_p: comp_sum_phi(log_p, 1.0 + q),
                      prob_target=True, **options)


@register_loss("mean_absolute_error", family="softmax", paper="ghosh2017robust", supports=CLASS_OPTIONS,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": True, "symmetric": True,
                           "classification_calibrated": True},
               summary="Mean absolute error 1 − p_y = ½‖e_y − p‖₁ (comp-sum τ = 2); symmetric, hence noise-tolerant.",
               formula=r"\ell(z,y) = 1 - p_y = \tfrac12 \lVert e_y - \mathrm{softmax}(z) \rVert_1")
def mean_absolute_error(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Mean absolute error 1 − p_y on softmax outputs, i.e. ½‖e_y − p‖₁ (comp-sum τ = 2).

    Ghosh et al. (2017) write the unhalved ‖e_y − p‖₁ = 2(1 − p_y); the factor does not change
    the minimiser, and this form is the comp-sum member exactly.
    """
    return class_loss("mean_absolute_error", input, target, phi=lambda log_p: comp_sum_phi(log_p, 2.0),
                      prob_target=True, **options)


@register_method(kind="analysis", family="softmax", paper="mao2023crossentropy")
def comp_sum_minimizer(posterior: Tensor, tau: float) -> Tensor:
    r"""The probabilities p* that minimise the conditional risk Σ_y η_y ℓ^τ(p, y) over the simplex.

    For τ < 2, p*_y ∝ η_y^{1/(2−τ)} (a Lagrange condition, unique because the risk is strictly
    convex in p there); τ = 1 gives p* = η. For τ ≥ 2 the risk is concave in p, so its minimum sits
    on the vertex of the most likely class (ties split evenly). The minimiser's log is affine in the
    log-posterior, so when the Bayes log-posterior is affine in x (Gaussian classes with a shared
    covariance), a linear model can reach the Bayes surrogate risk: its minimisability gap is 0.
    """
    tau = _check_tau(tau)
    if tau < 2.0:
        return torch.softmax(torch.log(posterior) / (2.0 - tau), dim=-1)
    top = posterior == posterior.max(dim=-1, keepdim=True).values
    return top.to(posterior.dtype) / top.sum(dim=-1, keepdim=True)


def comp_sum_conditional_risk(probs: Tensor, posterior: Tensor, tau: float) -> Tensor:
    r"""Σ_y η_y ℓ^τ(p, y) per row: the expected comp-sum loss of predicting ``probs`` under ``posterior``."""
    log_p = torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
    terms = comp_sum_phi(log_p, tau)
    return torch.where(posterior > 0, posterior * terms, 0.0).sum(dim=-1)


def comp_sum_bayes_risk(posterior: Tensor, tau: float) -> Tensor:
    r"""The pointwise Bayes comp-sum risk inf_p Σ_y η_y ℓ^τ(p, y), per row of ``posterior``."""
    return comp_sum_conditional_risk(comp_sum_minimizer(posterior, tau), posterior, tau)


class CrossEntropyLoss(LossModule, loss="cross_entropy"):
    """Module form of :func:`lossbook.functional.cross_entropy` (``weight`` may be positional, as in torch)."""

    def __init__(self, weight: Tensor | None = None, **options) -> None:
        super().__init__(weight=weight, **options)


class CompSumLoss(LossModule, loss="comp_sum"):
    """Module form of :func:`lossbook.functional.comp_sum_loss`."""


class SumExponentialLoss(LossModule, loss="sum_exponential"):
    """Module form of :func:`lossbook.functional.sum_exponential_loss`."""


class GeneralizedCrossEntropyLoss(LossModule, loss="generalized_cross_entropy"):
    """Module form of :func:`lossbook.functional.generalized_cross_entropy`."""


class MeanAbsoluteErrorLoss(LossModule, loss="mean_absolute_error"):
    """Module form of :func:`lossbook.functional.mean_absolute_error`."""
