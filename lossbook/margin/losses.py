r"""The registered margin losses on cosine inputs: a margin transform followed by cross-entropy.

The per-class formula is −log softmax(transform(cos, y)); :func:`lossbook.engine.class_loss` adds
``weight``, ``ignore_index``, ``reduction`` and ``label_smoothing`` exactly as for
:func:`~lossbook.functional.cross_entropy`. Each takes ``input`` (N, C): cosine similarities of
unit embeddings and unit class weights, in [−1, 1] (a tolerance of 10⁻⁶ for rounding); unnormalised
scores raise a ``ValueError`` that names the fix (:func:`check_cosines`, on the counted rows).
:class:`~lossbook.margin.MarginHead` holds the class weights and normalises for you.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._validation import COSINE_TOLERANCE, check_cosines, check_number
from ..engine import ClassOptions, LossModule, class_loss
from ..registry import register_loss
from .transforms import GRADS, ArcFace, CombinedMargin, CosFace, NormalizedSoftmax, SphereFace, _integer_margin

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

_PROPERTIES = {"nonnegative": True, "bounded": True}
_SUPPORTS = ("weight", "ignore_index", "label_smoothing")


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


def _margin_cross_entropy(name: str, transform, input: Tensor, target: Tensor, options: ClassOptions) -> Tensor:  # noqa: A002
    """:func:`~lossbook.engine.class_loss` of the per-class formula −log softmax(transform(cos, y))."""
    return class_loss(name, input, target, per_class=lambda z, y: -torch.log_softmax(transform(z, y), dim=1),
                      cosine=True, **options)


_FORMULA_CE = r"\ell = -\log\frac{e^{s\,\psi(\cos\theta_y)}}{e^{s\,\psi(\cos\theta_y)} + \sum_{j\ne y} e^{s\cos\theta_j}}"


# --- normalised softmax ---------------------------------------------------------------------------


def _check_normalized(scale=64.0) -> NormalizedSoftmax:
    return NormalizedSoftmax(scale=_check_scale("normalized_softmax_loss", scale))


@register_loss("normalized_softmax", family="margin", paper="wang2017normface", inputs="cosine", supports=_SUPPORTS,
               check=_check_normalized, properties=_PROPERTIES,
               summary="Normalised softmax (NormFace): cross-entropy of s·cos θ, no margin.",
               formula=_FORMULA_CE + r",\quad \psi(c) = c")
def normalized_softmax_loss(input: Tensor, target: Tensor, *, scale: float = 64.0,
                            **options: Unpack[ClassOptions]) -> Tensor:
    r"""Normalised softmax (NormFace, Wang et al. 2017): ``cross_entropy(s·cos, target)``.

    ``input`` (N, C) holds cosines in [−1, 1]; s = ``scale`` (64, insightface's). Every margin loss
    here reduces to this one at margin 0.
    """
    transform = _check_normalized(scale)
    return _margin_cross_entropy("normalized_softmax_loss", transform, input, target, options)


class NormalizedSoftmaxLoss(LossModule, loss="normalized_softmax"):
    """Module form of :func:`lossbook.functional.normalized_softmax_loss`."""


# --- SphereFace ----------------------------------------------------------------------------------------


def _check_sphereface(scale=64.0, margin=4, lambda_=0.0) -> SphereFace:
    name = "sphereface_loss"
    scale = _check_scale(name, scale)
    margin = _integer_margin(name, margin)
    lambda_ = check_number(name, "lambda_", lambda_, low=0.0)
    return SphereFace(scale=scale, margin=margin, lambda_=lambda_)


@register_loss("sphereface", family="margin", paper="liu2017sphereface", inputs="cosine", supports=_SUPPORTS,
               check=_check_sphereface, properties=_PROPERTIES,
               summary="SphereFace (A-Softmax) on normalised cosines: target logit s·ψ(θ), ψ = (−1)^k cos(mθ) − 2k.",
               formula=_FORMULA_CE + r",\quad \psi = (-1)^k\cos(m\theta) - 2k,\ \theta\in[\tfrac{k\pi}{m}, "
                                     r"\tfrac{(k+1)\pi}{m}]")
def sphereface_loss(input: Tensor, target: Tensor, *, scale: float = 64.0, margin: int = 4, lambda_: float = 0.0,
                    **options: Unpack[ClassOptions]) -> Tensor:
    r"""SphereFace's multiplicative angular margin (Liu et al. 2017) on normalised cosines.

    Target logit s·ψ(θ_y) (:class:`~lossbook.margin.SphereFace`: m a positive integer, paper 4;
    ``lambda_`` the paper's annealing weight, target (λ cos θ + ψ)/(1 + λ)). The paper and
    pytorch-metric-learning scale by the feature norm ‖x‖ instead of a fixed s; on unit
    embeddings with PML's ``scale=s`` the two agree.
    """
    transform = _check_sphereface(scale, margin, lambda_)
    return _margin_cross_entropy("sphereface_loss", transform, input, target, options)


class SphereFaceLoss(LossModule, loss="sphereface"):
    """Module form of :func:`lossbook.functional.sphereface_loss`."""


# --- CosFace -------------------------------------------------------------------------------------------


def _check_cosface(scale=64.0, margin=0.4) -> CosFace:
    name = "cosface_loss"
    return CosFace(scale=_check_scale(name, scale), margin=check_number(name, "margin", margin))


@register_loss("cosface", family="margin", paper="wang2018cosface", inputs="cosine", supports=_SUPPORTS,
               check=_check_cosface, properties=_PROPERTIES,
               summary="CosFace (large-margin cosine loss): target logit s·(cos θ − m).",
               formula=_FORMULA_CE + r",\quad \psi(c) = c - m")
def cosface_loss(input: Tensor, target: Tensor, *, scale: float = 64.0, margin: float = 0.4,
                 **options: Unpack[ClassOptions]) -> Tensor:
    r"""CosFace (Wang et al. 2018): cross-entropy of s·cos θ with s·(cos θ_y − m) at the target.

    Defaults s = 64, m = 0.4 (insightface's; the paper and PML use m = 0.35).
    """
    transform = _check_cosface(scale, margin)
    return _margin_cross_entropy("cosface_loss", transform, input, target, options)


class CosFaceLoss(LossModule, loss="cosface"):
    """Module form of :func:`lossbook.functional.cosface_loss`."""


# --- ArcFace -------------------------------------------------------------------------------------------


def _check_arcface(scale=64.0, margin=0.5, easy_margin=False, grad="exact") -> ArcFace:
    name = "arcface_loss"
    return ArcFace(scale=_check_scale(name, scale),
                   margin=check_number(name, "margin", margin, low=0.0, high=math.pi, high_open=True),
                   easy_margin=_check_bool(name, "easy_margin", easy_margin), grad=_check_grad(name, grad))


@register_loss("arcface", family="margin", paper="deng2019arcface", inputs="cosine", supports=_SUPPORTS,
               check=_check_arcface, properties=_PROPERTIES,
               summary="ArcFace (additive angular margin): target logit s·cos(θ + m).",
               formula=_FORMULA_CE + r",\quad \psi(c) = \cos(\arccos c + m)")
def arcface_loss(input: Tensor, target: Tensor, *, scale: float = 64.0, margin: float = 0.5, easy_margin: bool = False,
                 grad: str = "exact", **options: Unpack[ClassOptions]) -> Tensor:
    r"""ArcFace (Deng et al. 2019): cross-entropy of s·cos θ with s·cos(θ_y + m) at the target.

    m in radians (PML's ``ArcFaceLoss`` takes degrees: 28.6° ≈ 0.5 rad), with insightface's
    fallback c − m·sin(π − m) where θ + m > π; ``easy_margin`` applies the margin only where
    cos θ > 0. ``grad="straight_through"`` is insightface's ``CombinedMarginLoss`` gradient (that of
    s·cos θ at the target; see :class:`~lossbook.margin.ArcFace`). Defaults s = 64, m = 0.5.
    """
    transform = _check_arcface(scale, margin, easy_margin, grad)
    return _margin_cross_entropy("arcface_loss", transform, input, target, options)


class ArcFaceLoss(LossModule, loss="arcface"):
    """Module form of :func:`lossbook.functional.arcface_loss`."""


# --- combined margin -----------------------------------------------------------------------------------


def _check_combined(scale=64.0, m1=1.0, m2=0.3, m3=0.2, grad="exact") -> CombinedMargin:
    name = "combined_margin_loss"
    return CombinedMargin(scale=_check_scale(name, scale), m1=check_number(name, "m1", m1, low=0.0, low_open=True),
                          m2=check_number(name, "m2", m2, low=0.0, high=math.pi, high_open=True),
                          m3=check_number(name, "m3", m3), grad=_check_grad(name, grad))


@register_loss("combined_margin", family="margin", paper="deng2019arcface", inputs="cosine", supports=_SUPPORTS,
               check=_check_combined, properties=_PROPERTIES,
               summary="The ArcFace paper's combined margin: target logit s·(cos(m₁θ + m₂) − m₃).",
               formula=_FORMULA_CE + r",\quad \psi(c) = \cos(m_1\arccos c + m_2) - m_3")
def combined_margin_loss(input: Tensor, target: Tensor, *, scale: float = 64.0, m1: float = 1.0, m2: float = 0.3,
                         m3: float = 0.2, grad: str = "exact", **options: Unpack[ClassOptions]) -> Tensor:
    r"""Combined margin (ArcFace paper, §"combined margin"): target logit s·(cos(m₁θ + m₂) − m₃).

    (1, m, 0) is ArcFace, (1, 0, m) CosFace; default (1, 0.3, 0.2) is the paper's CM1. Fallback
    past π and ``grad`` as in :class:`~lossbook.margin.CombinedMargin`.
    """
    transform = _check_combined(scale, m1, m2, m3, grad)
    return _margin_cross_entropy("combined_margin_loss", transform, input, target, options)


class CombinedMarginLoss(LossModule, loss="combined_margin"):
    """Module form of :func:`lossbook.functional.combined_margin_loss`."""
