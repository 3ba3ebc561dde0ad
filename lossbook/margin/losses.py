r"""The registered margin losses on cosine inputs: a margin transform followed by our
:func:`~lossbook.functional.cross_entropy` (so ``weight``, ``ignore_index``, ``reduction`` and
``label_smoothing`` behave exactly as there).

Each takes ``input`` (N, C): cosine similarities of unit embeddings and unit class weights, in
[−1, 1] (a tolerance of 10⁻⁶ for rounding); unnormalised scores raise a ``ValueError`` that names the
fix (the check reads one number back from the device, like the class-index range check). :class:`~lossbook.margin.MarginHead` holds the class weights and normalises for you.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._cosine import GRADS, ArcFace, CosFace, NormalizedSoftmax
from .._module import ClassLossModule
from .._validation import (
    check_index_range,
    check_logits,
    check_number,
    check_reduction,
    check_weight,
    target_kind,
)
from ..registry import register_loss
from ..softmax.cross_entropy import cross_entropy
from .transforms import CombinedMargin, SphereFace, _integer_margin

__all__ = [
    "normalized_softmax_loss",
    "sphereface_loss",
    "cosface_loss",
    "arcface_loss",
    "combined_margin_loss",
    "NormalizedSoftmaxLoss",
    "SphereFaceLoss",
    "CosFaceLoss",
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "COSINE_TOLERANCE",
    "check_cosines",
]

#: How far outside [−1, 1] a cosine input may lie (rounding of a product of unit vectors).
COSINE_TOLERANCE = 1e-6

_PROPERTIES = {"nonnegative": True, "bounded": True}
_SUPPORTS = ("weight", "ignore_index", "label_smoothing")


def check_cosines(name: str, input: Tensor) -> None:  # noqa: A002 - torch's name
    """``input`` must hold cosines: every entry in [−1 − 10⁻⁶, 1 + 10⁻⁶] (NaN fails too)."""
    if input.numel() == 0:
        return
    worst = input.detach().abs().max()
    if not bool(worst <= 1.0 + COSINE_TOLERANCE):
        raise ValueError(
            f"{name}: input must hold cosine similarities in [-1, 1] (unit embeddings times unit class "
            f"weights); got an entry of absolute value {float(worst):.4g}. Normalise the embeddings and the "
            "class weights first (lossbook.margin.cosine_logits(embeddings, weight)), or use "
            "lossbook.MarginHead, which holds the class weights and normalises both."
        )


def _check_scale(name: str, scale) -> float:
    return check_number(name, "scale", scale, low=0.0, low_open=True)


def _check_grad(name: str, grad) -> str:
    if grad not in GRADS:
        raise ValueError(f"{name}: grad must be one of {GRADS}; got {grad!r}.")
    return grad


def _check_bool(name: str, arg: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: {arg} must be a bool; got {type(value).__name__}.")
    return value


def _margin_cross_entropy(name: str, transform, input: Tensor, target: Tensor, *,  # noqa: A002
                          weight, ignore_index: int, reduction: str, label_smoothing: float) -> Tensor:
    """Validate, apply the transform (ignored rows get no margin), then our cross-entropy."""
    check_logits(name, input)
    check_reduction(name, reduction)
    target_kind(name, input, target, allow_prob=False)
    weight = check_weight(name, weight, input)
    check_number(name, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    valid = check_index_range(name, target, input.shape[1], ignore_index)
    check_cosines(name, input)
    logits = transform(input, torch.where(valid, target, -1))
    return cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)


_FORMULA_CE = r"\ell = -\log\frac{e^{s\,\psi(\cos\theta_y)}}{e^{s\,\psi(\cos\theta_y)} + \sum_{j\ne y} e^{s\cos\theta_j}}"


# --- normalised softmax ---------------------------------------------------------------------------


def _check_normalized(scale=64.0) -> NormalizedSoftmax:
    return NormalizedSoftmax(scale=_check_scale("normalized_softmax_loss", scale))


@register_loss(
    "normalized_softmax",
    family="margin",
    paper="wang2017normface",
    target="index",
    inputs="cosine",
    properties=_PROPERTIES,
    supports=_SUPPORTS,
    summary="Normalised softmax (NormFace): cross-entropy of s·cos θ, no margin.",
    formula=_FORMULA_CE + r",\quad \psi(c) = c",
)
def normalized_softmax_loss(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    scale: float = 64.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Normalised softmax (NormFace, Wang et al. 2017): ``cross_entropy(s·cos, target)``.

    ``input`` (N, C) holds cosines in [−1, 1]; s = ``scale`` (64, insightface's). Every margin loss
    here reduces to this one at margin 0.
    """
    transform = _check_normalized(scale)
    return _margin_cross_entropy("normalized_softmax_loss", transform, input, target, weight=weight,
                                 ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)


normalized_softmax_loss.check_hyperparameters = _check_normalized


class NormalizedSoftmaxLoss(ClassLossModule, loss="normalized_softmax"):
    """Module form of :func:`lossbook.functional.normalized_softmax_loss`."""


# --- SphereFace ----------------------------------------------------------------------------------------


def _check_sphereface(scale=64.0, margin=4, lambda_=0.0) -> SphereFace:
    name = "sphereface_loss"
    scale = _check_scale(name, scale)
    margin = _integer_margin(name, margin)
    lambda_ = check_number(name, "lambda_", lambda_, low=0.0)
    return SphereFace(scale=scale, margin=margin, lambda_=lambda_)


@register_loss(
    "sphereface",
    family="margin",
    paper="liu2017sphereface",
    target="index",
    inputs="cosine",
    properties=_PROPERTIES,
    supports=_SUPPORTS,
    summary="SphereFace (A-Softmax) on normalised cosines: target logit s·ψ(θ), ψ = (−1)^k cos(mθ) − 2k.",
    formula=_FORMULA_CE + r",\quad \psi = (-1)^k\cos(m\theta) - 2k,\ \theta\in[\tfrac{k\pi}{m}, \tfrac{(k+1)\pi}{m}]",
)
def sphereface_loss(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    scale: float = 64.0,
    margin: int = 4,
    lambda_: float = 0.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""SphereFace's multiplicative angular margin (Liu et al. 2017) on normalised cosines.

    Target logit s·ψ(θ_y) (:class:`~lossbook.margin.SphereFace`: m a positive integer, paper 4;
    ``lambda_`` the paper's annealing weight, target (λ cos θ + ψ)/(1 + λ)). The paper and
    pytorch-metric-learning scale by the feature norm ‖x‖ instead of a fixed s; on unit
    embeddings with PML's ``scale=s`` the two agree.
    """
    transform = _check_sphereface(scale, margin, lambda_)
    return _margin_cross_entropy("sphereface_loss", transform, input, target, weight=weight,
                                 ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)


sphereface_loss.check_hyperparameters = _check_sphereface


class SphereFaceLoss(ClassLossModule, loss="sphereface"):
    """Module form of :func:`lossbook.functional.sphereface_loss`."""


# --- CosFace -------------------------------------------------------------------------------------------


def _check_cosface(scale=64.0, margin=0.4) -> CosFace:
    name = "cosface_loss"
    return CosFace(scale=_check_scale(name, scale), margin=check_number(name, "margin", margin))


@register_loss(
    "cosface",
    family="margin",
    paper="wang2018cosface",
    target="index",
    inputs="cosine",
    properties=_PROPERTIES,
    supports=_SUPPORTS,
    summary="CosFace (large-margin cosine loss): target logit s·(cos θ − m).",
    formula=_FORMULA_CE + r",\quad \psi(c) = c - m",
)
def cosface_loss(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    scale: float = 64.0,
    margin: float = 0.4,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""CosFace (Wang et al. 2018): cross-entropy of s·cos θ with s·(cos θ_y − m) at the target.

    Defaults s = 64, m = 0.4 (insightface's; the paper and PML use m = 0.35).
    """
    transform = _check_cosface(scale, margin)
    return _margin_cross_entropy("cosface_loss", transform, input, target, weight=weight,
                                 ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)


cosface_loss.check_hyperparameters = _check_cosface


class CosFaceLoss(ClassLossModule, loss="cosface"):
    """Module form of :func:`lossbook.functional.cosface_loss`."""


# --- ArcFace -------------------------------------------------------------------------------------------


def _check_arcface(scale=64.0, margin=0.5, easy_margin=False, grad="exact") -> ArcFace:
    name = "arcface_loss"
    return ArcFace(scale=_check_scale(name, scale),
                   margin=check_number(name, "margin", margin, low=0.0, high=math.pi, high_open=True),
                   easy_margin=_check_bool(name, "easy_margin", easy_margin), grad=_check_grad(name, grad))


@register_loss(
    "arcface",
    family="margin",
    paper="deng2019arcface",
    target="index",
    inputs="cosine",
    properties=_PROPERTIES,
    supports=_SUPPORTS,
    summary="ArcFace (additive angular margin): target logit s·cos(θ + m).",
    formula=_FORMULA_CE + r",\quad \psi(c) = \cos(\arccos c + m)",
)
def arcface_loss(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    scale: float = 64.0,
    margin: float = 0.5,
    easy_margin: bool = False,
    grad: str = "exact",
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""ArcFace (Deng et al. 2019): cross-entropy of s·cos θ with s·cos(θ_y + m) at the target.

    m in radians (PML's ``ArcFaceLoss`` takes degrees: 28.6° ≈ 0.5 rad), with insightface's
    fallback c − m·sin(π − m) where θ + m > π; ``easy_margin`` applies the margin only where
    cos θ > 0. ``grad="straight_through"`` is insightface's ``CombinedMarginLoss`` gradient (that of
    s·cos θ at the target; see :class:`~lossbook.margin.ArcFace`). Defaults s = 64, m = 0.5.
    """
    transform = _check_arcface(scale, margin, easy_margin, grad)
    return _margin_cross_entropy("arcface_loss", transform, input, target, weight=weight,
                                 ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)


arcface_loss.check_hyperparameters = _check_arcface


class ArcFaceLoss(ClassLossModule, loss="arcface"):
    """Module form of :func:`lossbook.functional.arcface_loss`."""


# --- combined margin -----------------------------------------------------------------------------------


def _check_combined(scale=64.0, m1=1.0, m2=0.3, m3=0.2, grad="exact") -> CombinedMargin:
    name = "combined_margin_loss"
    return CombinedMargin(scale=_check_scale(name, scale), m1=check_number(name, "m1", m1, low=0.0, low_open=True),
                          m2=check_number(name, "m2", m2, low=0.0, high=math.pi, high_open=True),
                          m3=check_number(name, "m3", m3), grad=_check_grad(name, grad))


@register_loss(
    "combined_margin",
    family="margin",
    paper="deng2019arcface",
    target="index",
    inputs="cosine",
    properties=_PROPERTIES,
    supports=_SUPPORTS,
    summary="The ArcFace paper's combined margin: target logit s·(cos(m₁θ + m₂) − m₃).",
    formula=_FORMULA_CE + r",\quad \psi(c) = \cos(m_1\arccos c + m_2) - m_3",
)
def combined_margin_loss(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    scale: float = 64.0,
    m1: float = 1.0,
    m2: float = 0.3,
    m3: float = 0.2,
    grad: str = "exact",
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Combined margin (ArcFace paper, §"combined margin"): target logit s·(cos(m₁θ + m₂) − m₃).

    (1, m, 0) is ArcFace, (1, 0, m) CosFace; default (1, 0.3, 0.2) is the paper's CM1. Fallback
    past π and ``grad`` as in :class:`~lossbook.margin.CombinedMargin`.
    """
    transform = _check_combined(scale, m1, m2, m3, grad)
    return _margin_cross_entropy("combined_margin_loss", transform, input, target, weight=weight,
                                 ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)


combined_margin_loss.check_hyperparameters = _check_combined


class CombinedMarginLoss(ClassLossModule, loss="combined_margin"):
    """Module form of :func:`lossbook.functional.combined_margin_loss`."""
