r"""Label-distributionally robust losses LDR-KL and ALDR-KL (Zhu, Ying & Yang, ICML 2023, "Label
Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness and
Adaptivity").

LDR-KL takes the worst case over label distributions p ∈ Δ_C of the margin-augmented score gaps
d_k = z_k − z_y + c·𝟙[k ≠ y], regularised by λ·KL(p ‖ uniform):

.. math::

    \ell_\lambda(z, y) = \max_{p\in\Delta} \sum_k p_k d_k - \lambda\,\mathrm{KL}(p\,\|\,\tfrac1C\mathbf 1)
                      = \lambda \log\Big(\frac1C \sum_k e^{d_k/\lambda}\Big),

with the maximiser p = softmax(d/λ). λ = 1, c = 0 gives CE − log C; λ → 0 gives the Crammer–Singer
hinge max(0, max_{k≠y} z_k − z_y + c).

ALDR-KL lets each sample choose its own λ. In the official code (Optimization-AI/ICML2023_LDR,
``loss.py``, ``ALDRLoss_V1``) the per-sample λ_i maximises, together with p,

.. math::

    F(p, \lambda) = \sum_k p_k d_k - \lambda\,\mathrm{KL}(p\,\|\,\tfrac1C\mathbf 1)
                  - \frac{\alpha \log C}{2\lambda_0}(\lambda - \lambda_0)^2 ,

whose λ-maximiser for fixed p is λ = λ₀(1 − KL(p‖u)/(α log C)) ∈ [λ₀(1 − 1/α), λ₀]
(the code's ``lambdas = lambda_ref - lambda_ref * kl_reg / (alpha * logK)`` and its ``extra_loss``).
The code takes *one* such step per visit of a sample, starting from that sample's λ stored at
its previous visit, with p = softmax(logits/λ) (without the margin). This module is stateless:
it starts from λ₀ and repeats the step λ ← λ₀(1 − KL(softmax(d/λ)‖u)/(α log C)) (with the margin,
i.e. the true inner maximiser) until λ stops changing or ``max_iter`` steps. The sequence decreases
monotonically to the largest stationary point of λ ↦ max_p F(p, λ), so the loss is never below
LDR-KL at λ₀. As in the code, λ_i is treated as a constant in the backward pass (which is exact at
a stationary point: ∂F/∂λ = 0 there).

The official code also rescales the logits before the loss: LDR ``softplus(z)/mean(softplus(z))``,
ALDR ``z/mean|z|`` (or the softplus form with ``softplus=True``, used for CIFAR-100); pass
``normalize="softplus"`` or ``"l1"`` for these. Its experiments use c = 0.1, λ = 10, α = 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import INDEX_OPTIONS, IndexOptions, LossModule, class_loss
from ..registry import register_loss

__all__ = ["ALDROutput", "ldr_kl_loss", "aldr_kl_loss", "aldr_lambda", "LDRKLLoss", "ALDRKLLoss"]

_NORMALIZE = ("none", "softplus", "l1")


@dataclass
class ALDROutput:
    """What :func:`aldr_kl_loss` returns with ``return_aux=True``."""

    loss: Tensor
    lam: Tensor  #: the per-sample temperature λ_i, shape (N,), detached (λ₀ for ignored rows)


def _check_normalize(name: str, normalize) -> str:
    if normalize not in _NORMALIZE:
        raise ValueError(
            f"{name}: normalize must be one of {_NORMALIZE}; got {normalize!r}. 'softplus' is the official "
            "LDR code's softplus(z)/mean(softplus(z)), 'l1' the ALDR code's z/mean|z|."
        )
    return normalize


def _rescale(z: Tensor, normalize: str) -> Tensor:
    if normalize == "none":
        return z
    if normalize == "softplus":
        z = torch.nn.functional.softplus(z)
        scale = z.mean(dim=1, keepdim=True)
    else:
        scale = z.abs().mean(dim=1, keepdim=True)
    # an all-zero row (e.g. softplus of very negative logits) stays zero instead of 0/0
    tiny = torch.finfo(z.dtype).tiny
    return z / scale.clamp_min(tiny)


def _gaps(z: Tensor, target: Tensor, margin: float) -> Tensor:
    """d_k = z_k − z_y + c·𝟙[k ≠ y], shape (N, C)."""
    z_y = z.gather(1, target.unsqueeze(1))
    not_y = torch.ones_like(z, dtype=torch.bool).scatter_(1, target.unsqueeze(1), False)
    return z - z_y + margin * not_y.to(z.dtype)


def _ldr_value(d: Tensor, lam: Tensor | float) -> Tensor:
    """λ·log((1/C) Σ_k e^{d_k/λ}), per row."""
    c = d.shape[1]
    if isinstance(lam, Tensor):
        lam = lam.unsqueeze(1)
        return lam.squeeze(1) * (torch.logsumexp(d / lam, dim=1) - math.log(c))
    return lam * (torch.logsumexp(d / lam, dim=1) - math.log(c))


# --- LDR-KL ------------------------------------------------------------------------------------------

_PROPERTIES = {"shift_invariant": True, "bounded": False, "symmetric": False, "classification_calibrated": True}


def _check_ldr(lam=1.0, margin=0.1, normalize="none"):
    name = "ldr_kl_loss"
    return (
        check_number(name, "lam", lam, low=0.0, low_open=True),
        check_number(name, "margin", margin),
        _check_normalize(name, normalize),
    )


@register_loss("ldr_kl", family="robust", paper="zhu2023ldr", supports=INDEX_OPTIONS, check=_check_ldr,
               properties=_PROPERTIES,
               summary="LDR-KL λ·log((1/C)Σ_k e^{(z_k−z_y+c𝟙[k≠y])/λ}): CE − log C at λ=1, c=0; Crammer–Singer as λ→0.",
               formula=r"\ell(z,y) = \lambda \log\Big(\frac{1}{C}\sum_k "
                       r"\exp\frac{z_k - z_y + c\,\mathbb{1}[k\neq y]}{\lambda}\Big)")
def ldr_kl_loss(input: Tensor, target: Tensor, *, lam: float = 1.0, margin: float = 0.1, normalize: str = "none",
                **options: Unpack[IndexOptions]) -> Tensor:
    r"""LDR-KL loss λ·log((1/C) Σ_k exp((z_k − z_y + c·𝟙[k≠y])/λ)) of Zhu, Ying & Yang (2023).

    The worst case over label distributions p of Σ_k p_k(z_k − z_y + c𝟙[k≠y]) − λ·KL(p‖uniform).
    ``lam`` = λ > 0 is the temperature, ``margin`` = c the margin (official experiments: c = 0.1,
    λ = 10 on normalised logits; the official ``LDRLoss_V1`` class default is c = 2). λ = 1, c = 0
    is cross-entropy minus log C; λ → 0 is the Crammer–Singer hinge. The loss can be negative
    (its minimum is −λ log C). ``normalize`` rescales each row of logits first: ``"none"`` (the
    paper), ``"softplus"`` (softplus(z)/mean softplus(z), the official LDR code) or ``"l1"``
    (z/mean|z|, the official ALDR code).
    """
    lam, margin, normalize = _check_ldr(lam, margin, normalize)
    return class_loss("ldr_kl_loss", input, target,
                      per_row=lambda z, y: _ldr_value(_gaps(_rescale(z, normalize), y, margin), lam),
                      **options)


# --- ALDR-KL -----------------------------------------------------------------------------------------


def _check_aldr(lam0=1.0, alpha=2.0, margin=0.1, normalize="none", max_iter=50):
    name = "aldr_kl_loss"
    lam0 = check_number(name, "lam0", lam0, low=0.0, low_open=True)
    try:
        alpha = check_number(name, "alpha", alpha, low=1.0)
    except ValueError as err:
        raise ValueError(f"{err} alpha ≥ 1 keeps λ = λ₀(1 − KL/(α log C)) positive; the official experiments "
                         "use 2.") from None
    margin = check_number(name, "margin", margin)
    normalize = _check_normalize(name, normalize)
    max_iter = check_number(name, "max_iter", max_iter, low=1.0)
    if max_iter != int(max_iter):
        raise ValueError(f"{name}: max_iter must be a whole number of steps; got {max_iter!r}.")
    return lam0, alpha, margin, normalize, int(max_iter)


def aldr_lambda(d: Tensor, lam0: float, alpha: float, max_iter: int) -> Tensor:
    r"""The per-row λ of ALDR-KL for score gaps ``d`` (N, C): iterate λ ← λ₀(1 − KL(softmax(d/λ)‖u)/(α log C)).

    Starts at λ₀, stops when no λ moves by more than 4·eps(dtype)·λ₀ or after ``max_iter`` steps.
    Runs without gradient; the result is detached.
    """
    n, c = d.shape
    lam = torch.full((n,), lam0, dtype=d.dtype, device=d.device)
    if c < 2 or n == 0:
        return lam
    log_c = math.log(c)
    floor = lam0 * 1e-6
    tol = 4 * torch.finfo(d.dtype).eps * lam0
    with torch.no_grad():
        d = d.detach()
        for _ in range(max_iter):
            log_p = torch.log_softmax(d / lam.unsqueeze(1), dim=1)
            kl = (log_p.exp() * log_p).sum(dim=1) + log_c
            new = (lam0 * (1.0 - kl / (alpha * log_c))).clamp(min=floor, max=lam0)
            done = bool(((new - lam).abs() <= tol).all())
            lam = new
            if done:
                break
    return lam


@register_loss("aldr_kl", family="robust", paper="zhu2023ldr", supports=INDEX_OPTIONS, check=_check_aldr,
               properties=_PROPERTIES,
               summary="ALDR-KL: LDR-KL with a per-sample λ_i chosen by a KL-regularised inner maximisation "
                       "(official form).",
               formula=r"\ell(z,y) = \max_{\lambda}\ \lambda \log\Big(\frac1C\sum_k e^{d_k/\lambda}\Big)"
                       r" - \frac{\alpha\log C}{2\lambda_0}(\lambda-\lambda_0)^2,"
                       r"\quad d_k = z_k - z_y + c\,\mathbb{1}[k\neq y]")
def aldr_kl_loss(input: Tensor, target: Tensor, *, lam0: float = 1.0, alpha: float = 2.0, margin: float = 0.1,
                 normalize: str = "none", max_iter: int = 50, return_aux: bool = False,
                 **options: Unpack[IndexOptions]) -> Tensor | ALDROutput:
    r"""Adaptive LDR-KL loss (Zhu, Ying & Yang 2023) with a per-sample temperature λ_i.

    Per row, with d_k = z_k − z_y + c𝟙[k≠y]: ℓ = λ_i log((1/C) Σ_k e^{d_k/λ_i}) − (α log C/(2λ₀))(λ_i − λ₀)²,
    where λ_i maximises that expression; found by the fixed-point step
    λ ← λ₀(1 − KL(softmax(d/λ)‖uniform)/(α log C)) from λ₀ (see the module docstring for how
    this relates to the official one-step-per-epoch update). Confident rows (p far from uniform)
    get a small λ_i (a hinge-like loss), uncertain ones keep λ_i ≈ λ₀. α ≥ 1 (default 2, the
    official experiments) keeps λ_i ∈ [λ₀(1 − 1/α), λ₀]; α → ∞ gives LDR-KL at λ₀. λ_i is a
    constant in the backward pass. ``return_aux=True`` returns :class:`ALDROutput` with the λ_i.
    ``normalize`` is as in :func:`ldr_kl_loss`.
    """
    lam0, alpha, margin, normalize, max_iter = _check_aldr(lam0, alpha, margin, normalize, max_iter)
    lams = []

    def per_row(z: Tensor, y: Tensor) -> Tensor:
        d = _gaps(_rescale(z, normalize), y, margin)
        lam = aldr_lambda(d, lam0, alpha, max_iter)
        lams.append(lam)
        rho = alpha * math.log(z.shape[1]) / lam0
        return _ldr_value(d, lam) - 0.5 * rho * (lam - lam0) ** 2

    loss = class_loss("aldr_kl_loss", input, target, per_row=per_row, **options)
    if not return_aux:
        return loss
    counted = target != options.get("ignore_index", -100)
    return ALDROutput(loss, torch.where(counted, lams[0], torch.full_like(lams[0], lam0)))


class LDRKLLoss(LossModule, loss="ldr_kl"):
    """Module form of :func:`lossbook.functional.ldr_kl_loss`."""


class ALDRKLLoss(LossModule, loss="aldr_kl"):
    """Module form of :func:`lossbook.functional.aldr_kl_loss` (stateless: λ_i is re-solved every call)."""
