r"""The comp-sum family of Mao, Mohri & Zhong (2023).

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

from .._module import ClassLossModule
from .._validation import check_number
from ..registry import register_loss
from ._per_class import per_class_loss

__all__ = [
    "comp_sum_loss",
    "sum_exponential_loss",
    "generalized_cross_entropy",
    "mean_absolute_error",
    "comp_sum_phi",
    "comp_sum_minimizer",
    "comp_sum_conditional_risk",
    "comp_sum_bayes_risk",
    "CompSumLoss",
    "SumExponentialLoss",
    "GeneralizedCrossEntropyLoss",
    "MeanAbsoluteErrorLoss",
]


def _check_tau(tau) -> float:
    return check_number("comp_sum_loss", "tau", tau, low=0.0)


def comp_sum_phi(log_p: Tensor, tau: float) -> Tensor:
    r"""ℓ^τ as a function of the log-probability of the target: (1 − p^{τ−1})/(τ − 1)."""
    if tau == 1.0:
        return -log_p
    return -torch.expm1((tau - 1.0) * log_p) / (tau - 1.0)


def _kwargs_doc(fn):
    fn.__doc__ = (fn.__doc__ or "") + (
        "\n\n    ``weight``, ``ignore_index``, ``reduction``, ``label_smoothing`` and probability "
        "targets\n    behave as in :func:`lossbook.functional.cross_entropy` (a probability target "
        "gives the\n    expected loss Σ_k q_k ℓ(z, k))."
    )
    return fn


@register_loss(
    "comp_sum",
    family="softmax",
    paper="mao2023crossentropy",
    target="index_or_prob",
    properties={
        "shift_invariant": True,
        "nonnegative": True,
        "reduces_to_ce_when": {"tau": 1.0},
        "classification_calibrated": True,
    },
    supports=("weight", "ignore_index", "label_smoothing", "prob_target"),
    summary="Comp-sum family Φ^τ(Σ_{k≠y} e^{z_k−z_y}): sum-exp (τ=0), CE (τ=1), GCE (1<τ<2), MAE (τ=2).",
    formula=r"\ell^\tau(z,y) = \frac{1 - p_y^{\tau-1}}{\tau-1},\ p = \mathrm{softmax}(z)",
)
@_kwargs_doc
def comp_sum_loss(
    input: Tensor,  # noqa: A002
    target: Tensor,
    *,
    tau: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Comp-sum loss ℓ^τ(z, y) = Φ^τ(Σ_{k≠y} e^{z_k − z_y}) = (1 − p_y^{τ−1})/(τ − 1), τ ≥ 0."""
    tau = _check_tau(tau)
    return per_class_loss(
        "comp_sum_loss",
        input,
        target,
        lambda log_p: comp_sum_phi(log_p, tau),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


comp_sum_loss.check_hyperparameters = lambda tau=1.0: _check_tau(tau)


@register_loss(
    "sum_exponential",
    family="softmax",
    paper="mao2023crossentropy",
    target="index_or_prob",
    properties={"shift_invariant": True, "nonnegative": True, "classification_calibrated": True},
    supports=("weight", "ignore_index", "label_smoothing", "prob_target"),
    summary="Sum-exponential loss Σ_{k≠y} e^{z_k−z_y} = 1/p_y − 1 (comp-sum τ = 0).",
    formula=r"\ell(z,y) = \sum_{k\ne y} e^{z_k - z_y}",
)
@_kwargs_doc
def sum_exponential_loss(
    input: Tensor,  # noqa: A002
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Sum-exponential loss Σ_{k≠y} e^{z_k − z_y}, the multi-class exponential loss (comp-sum τ = 0)."""
    return per_class_loss(
        "sum_exponential_loss",
        input,
        target,
        lambda log_p: comp_sum_phi(log_p, 0.0),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


def _check_q(q) -> float:
    return check_number("generalized_cross_entropy", "q", q, low=0.0, high=1.0, low_open=True)


@register_loss(
    "generalized_cross_entropy",
    family="softmax",
    paper="zhang2018generalized",
    target="index_or_prob",
    properties={
        "shift_invariant": True,
        "nonnegative": True,
        "bounded": True,
        "classification_calibrated": True,
    },
    supports=("weight", "ignore_index", "label_smoothing", "prob_target"),
    summary="Generalized cross-entropy (1 − p_y^q)/q: CE as q → 0, MAE at q = 1 (comp-sum τ = 1 + q).",
    formula=r"\ell_q(z,y) = \frac{1 - p_y^{q}}{q}",
)
@_kwargs_doc
def generalized_cross_entropy(
    input: Tensor,  # noqa: A002
    target: Tensor,
    *,
    q: float = 0.7,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Generalized cross-entropy (1 − p_y^q)/q of Zhang & Sabuncu (2018), q ∈ (0, 1]; default 0.7."""
    q = _check_q(q)
    return per_class_loss(
        "generalized_cross_entropy",
        input,
        target,
        lambda log_p: comp_sum_phi(log_p, 1.0 + q),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


generalized_cross_entropy.check_hyperparameters = lambda q=0.7: _check_q(q)


@register_loss(
    "mean_absolute_error",
    family="softmax",
    paper="ghosh2017robust",
    target="index_or_prob",
    properties={
        "shift_invariant": True,
        "nonnegative": True,
        "bounded": True,
        "symmetric": True,
        "classification_calibrated": True,
    },
    supports=("weight", "ignore_index", "label_smoothing", "prob_target"),
    summary="Mean absolute error 1 − p_y = ½‖e_y − p‖₁ (comp-sum τ = 2); symmetric, hence noise-tolerant.",
    formula=r"\ell(z,y) = 1 - p_y = \tfrac12 \lVert e_y - \mathrm{softmax}(z) \rVert_1",
)
@_kwargs_doc
def mean_absolute_error(
    input: Tensor,  # noqa: A002
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Mean absolute error 1 − p_y on softmax outputs, i.e. ½‖e_y − p‖₁ (comp-sum τ = 2).

    Ghosh et al. (2017) write the unhalved ‖e_y − p‖₁ = 2(1 − p_y); the factor does not change
    the minimiser, and this form is the comp-sum member exactly.
    """
    return per_class_loss(
        "mean_absolute_error",
        input,
        target,
        lambda log_p: comp_sum_phi(log_p, 2.0),
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


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


class CompSumLoss(ClassLossModule, loss="comp_sum"):
    """Module form of :func:`lossbook.functional.comp_sum_loss`."""

    def __init__(self, tau: float = 1.0, **options) -> None:
        super().__init__(tau=tau, **options)


class SumExponentialLoss(ClassLossModule, loss="sum_exponential"):
    """Module form of :func:`lossbook.functional.sum_exponential_loss`."""


class GeneralizedCrossEntropyLoss(ClassLossModule, loss="generalized_cross_entropy"):
    """Module form of :func:`lossbook.functional.generalized_cross_entropy`."""

    def __init__(self, q: float = 0.7, **options) -> None:
        super().__init__(q=q, **options)


class MeanAbsoluteErrorLoss(ClassLossModule, loss="mean_absolute_error"):
    """Module form of :func:`lossbook.functional.mean_absolute_error`."""
