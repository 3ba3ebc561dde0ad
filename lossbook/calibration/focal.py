r"""Focal loss (Lin et al. 2017): cross-entropy with the easy examples turned down.

Multi-class (softmax) form, a registered loss:

.. math::

    \mathrm{FL}(z, y) = -\alpha_y\,(1 - p_y)^\gamma \log p_y,\qquad p = \mathrm{softmax}(z),

with γ ≥ 0 (γ = 0 is cross-entropy) and an optional per-class factor α. Binary (sigmoid) form,
:func:`sigmoid_focal_loss`, with ``torchvision.ops.sigmoid_focal_loss``'s signature and values
(RetinaNet's loss): every element is its own binary problem, p = σ(x), p_t = p·t + (1 − p)(1 − t),
FL = −α_t (1 − p_t)^γ log p_t with α_t = α·t + (1 − α)(1 − t).

Numerics: 1 − p is never formed by subtraction (log(1 − p) comes from a log-sum-exp over the other
classes, or from log σ(∓x)), so values and gradients stay finite at logits of ±1e4, also for γ < 1
where (1 − p)^γ has an infinite slope at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number, check_reduction, format_dtype, format_shape, reduce_loss
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss, register_method
from ..robust import loss_matrix

__all__ = ["focal_loss", "focal_terms", "sigmoid_focal_loss", "FocalLoss"]


def _check_gamma(name: str, gamma) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, Real):
        raise TypeError(f"{name}: gamma must be a real number ≥ 0; got {type(gamma).__name__}.")
    if not (float(gamma) >= 0.0 and float(gamma) != float("inf")):
        raise ValueError(
            f"{name}: gamma must be a finite number ≥ 0 (the focusing exponent; γ = 0 is cross-entropy, "
            f"Lin et al. use γ = 2); got {gamma!r}."
        )
    return float(gamma)


def _check_alpha(name: str, alpha, num_classes: int | None = None):
    """None, a number ≥ 0 (the same factor for every class) or C per-class factors ≥ 0."""
    if alpha is None:
        return None
    if isinstance(alpha, Real) and not isinstance(alpha, bool):
        return check_number(name, "alpha", alpha, low=0.0)
    if isinstance(alpha, Sequence) and not isinstance(alpha, str):
        alpha = torch.as_tensor(alpha, dtype=torch.float64)
    if not isinstance(alpha, Tensor):
        raise TypeError(
            f"{name}: alpha must be None, a number ≥ 0 or a sequence/tensor of one factor per class; "
            f"got {type(alpha).__name__}."
        )
    if not alpha.is_floating_point() or alpha.dim() != 1:
        raise ValueError(
            f"{name}: alpha must be a 1-D floating tensor of per-class factors, shape (C,); got "
            f"{format_dtype(alpha)} of shape {format_shape(alpha)}."
        )
    if num_classes is not None and alpha.shape[0] != num_classes:
        raise ValueError(
            f"{name}: alpha must have one factor per class, shape ({num_classes},); got shape {format_shape(alpha)}."
        )
    if alpha.numel() and not bool(((alpha >= 0) & torch.isfinite(alpha)).all()):
        raise ValueError(f"{name}: alpha's per-class factors must be finite and ≥ 0.")
    return alpha


def focal_terms(logits: Tensor, *, gamma: float = 2.0, alpha: float | Tensor | None = None) -> Tensor:
    r"""The per-class focal terms FL[i, k] = −α_k (1 − p_ik)^γ log p_ik, shape (N, C), p = softmax(z).

    The per-example formula of :func:`focal_loss` (row i, target k is ``FL[i, k]``), without any
    option handling; log(1 − p) is computed without cancellation, so γ ∈ (0, 1) and saturated
    logits keep finite gradients.
    """
    terms = loss_matrix(logits, "focal", gamma=gamma)
    if alpha is None:
        return terms
    if isinstance(alpha, Tensor):
        alpha = alpha.to(dtype=logits.dtype, device=logits.device)
    return terms * alpha


def _check_focal(gamma=2.0, alpha=None):
    return _check_gamma("focal_loss", gamma), _check_alpha("focal_loss", alpha)


@register_loss("focal_loss", family="calibration", paper="lin2017focal", supports=CLASS_OPTIONS, check=_check_focal,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": False, "symmetric": False,
                           "reduces_to_ce_when": {"gamma": 0.0}, "classification_calibrated": True},
               summary="Focal loss −α_y(1 − p_y)^γ log p_y: cross-entropy with easy examples down-weighted "
                       "(γ = 0 is CE).",
               formula=r"\ell(z,y) = -\alpha_y (1 - p_y)^{\gamma} \log p_y,\ p = \mathrm{softmax}(z)")
def focal_loss(input: Tensor, target: Tensor, *, gamma: float = 2.0,
               alpha: float | Sequence[float] | Tensor | None = None, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Multi-class focal loss −α_y (1 − p_y)^γ log p_y of Lin et al. (2017), p = softmax(z).

    ``gamma`` γ ≥ 0 is the focusing exponent (default 2, the paper's choice; 0 gives
    :func:`~lossbook.functional.cross_entropy`). ``alpha`` is the paper's balancing factor: None
    (none), a number (the same factor for every class) or C per-class factors α_k ≥ 0. α belongs to
    the per-example formula, so ``"mean"`` divides by the number of counted rows; ``weight``
    rescales classes with torch's convention instead (``"mean"`` divides by the summed weights).
    For the binary, per-element form of RetinaNet see :func:`sigmoid_focal_loss`.
    """
    gamma, alpha = _check_focal(gamma, alpha)

    def per_class(z: Tensor, y: Tensor | None) -> Tensor:
        return focal_terms(z, gamma=gamma, alpha=_check_alpha("focal_loss", alpha, z.shape[1]))

    return class_loss("focal_loss", input, target, per_class=per_class, prob_target=True, **options)


class FocalLoss(LossModule, loss="focal_loss"):
    """Module form of :func:`lossbook.functional.focal_loss`."""


def _check_binary(name: str, inputs, targets) -> None:
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        got = format_dtype(inputs) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise TypeError(f"{name}: inputs must be a floating tensor of logits (any shape); got {got}. "
                        "Use torch.as_tensor(x, dtype=torch.float32).")
    if not isinstance(targets, Tensor):
        raise TypeError(f"{name}: targets must be a torch.Tensor shaped like inputs {format_shape(inputs)}; got "
                        f"{type(targets).__name__}. Wrap it with torch.as_tensor(t, dtype=inputs.dtype).")
    if targets.shape != inputs.shape:
        raise ValueError(f"{name}: targets must have the inputs' shape {format_shape(inputs)} (one 0/1 label per "
                         f"logit); got {format_shape(targets)}. For class indices use lossbook.functional.focal_loss, "
                         "or one-hot them with F.one_hot(y, C).to(inputs.dtype).")
    if targets.dtype != inputs.dtype:
        raise TypeError(f"{name}: targets must have the inputs' dtype {format_dtype(inputs)} (0/1 labels or "
                        f"probabilities); got {format_dtype(targets)}. Use targets.to(inputs.dtype).")
    if targets.numel() and not bool(((targets >= 0) & (targets <= 1)).all()):
        raise ValueError(f"{name}: targets must lie in [0, 1] (binary labels or probabilities).")


@register_method(kind="reference-API function", family="calibration", paper="lin2017focal")
def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    r"""Binary focal loss of RetinaNet, per element: ``torchvision.ops.sigmoid_focal_loss``'s values.

    A reference-API function (torchvision's argument names and defaults, including
    ``reduction="none"``): ``inputs`` are logits of any shape, ``targets`` 0/1 labels (or
    probabilities) of the same shape and dtype. With p = σ(x) and p_t = p·t + (1 − p)(1 − t),
    the loss is −α_t (1 − p_t)^γ log p_t, α_t = α·t + (1 − α)(1 − t); ``alpha`` ∈ [0, 1], or −1
    (torchvision's "ignore") or None for no balancing; γ ≥ 0. ``"mean"`` averages over every
    element. Unlike torchvision, an empty input gives 0 (attached to the graph) under ``"mean"``,
    and (1 − p_t)^γ is computed as exp(γ·log(1 − p_t)) with log(1 − p_t) from log σ(∓x), so
    saturated logits keep finite gradients for every γ ≥ 0.
    """
    name = "sigmoid_focal_loss"
    _check_binary(name, inputs, targets)
    gamma = _check_gamma(name, gamma)
    if alpha is not None and alpha != -1:
        alpha = check_number(name, "alpha", alpha, low=0.0, high=1.0)
    check_reduction(name, reduction)
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    if gamma != 0.0:
        # log(1 − p_t) = log(t·σ(−x) + (1 − t)·σ(x)); a term with t = 0 (or 1 − t = 0) is −inf, not log 0
        pos, neg = targets > 0, targets < 1
        minus_inf = torch.tensor(float("-inf"), dtype=inputs.dtype, device=inputs.device)
        log_pos = torch.where(pos, torch.log(torch.where(pos, targets, 1.0)) + F.logsigmoid(-inputs), minus_inf)
        log_neg = torch.where(neg, torch.log1p(-torch.where(neg, targets, 0.0)) + F.logsigmoid(inputs), minus_inf)
        loss = loss * torch.exp(gamma * torch.logaddexp(log_pos, log_neg))
    if alpha is not None and alpha != -1:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
    return reduce_loss(loss, reduction)
