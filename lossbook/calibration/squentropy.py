r"""Squentropy (Hui, Belkin & Wright, ICML 2023): cross-entropy plus the mean square of the
non-target logits,

.. math::

    \ell(z, y) = -\log p_y + \frac{1}{C - 1} \sum_{k \ne y} z_k^2,\qquad p = \mathrm{softmax}(z),

on the raw logits (no hyper-parameter; there is no official code, so the tests hold it to this
closed form). The square term pins the non-target logits near 0, so the loss is neither shift- nor
scale-invariant. With one class the sum is empty and the loss is CE (0).

The paper's other baseline is the **rescaled square loss** of Hui & Belkin (ICLR 2021),

.. math::

    \ell(z, y) = \frac{1}{C}\Bigl[k\,(z_y - M)^2 + \sum_{j \ne y} z_j^2\Bigr],

the square loss to the one-hot target on the raw logits, with the target's term weighted by k and
its target value raised to M for problems with many classes; k = M = 1 is the plain mean square
error (1/C)·‖z − e_y‖².
"""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss

__all__ = ["squentropy_loss", "squentropy_terms", "SquentropyLoss", "rescaled_square_loss", "rescaled_square_terms",
           "RescaledSquareLoss"]


def squentropy_terms(logits: Tensor) -> Tensor:
    r"""The per-class squentropy terms S[i, k] = −log p_ik + (1/(C − 1))·Σ_{l≠k} z_il², shape (N, C)."""
    squares = logits.square()
    others = squares.sum(dim=1, keepdim=True) - squares
    return others / max(logits.shape[1] - 1, 1) - torch.log_softmax(logits, dim=1)


@register_loss("squentropy_loss", family="calibration", paper="hui2023squentropy", supports=CLASS_OPTIONS,
               properties={"shift_invariant": False, "scale_invariant": False, "nonnegative": True,
                           "bounded": False, "symmetric": False},
               summary="Squentropy −log p_y + (1/(C−1))·Σ_{k≠y} z_k²: cross-entropy plus the mean square of the "
                       "non-target logits.",
               formula=r"\ell(z,y) = -\log p_y + \frac{1}{C-1}\sum_{k\ne y} z_k^2,\ p = \mathrm{softmax}(z)")
def squentropy_loss(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Squentropy of Hui, Belkin & Wright (2023): −log p_y + (1/(C − 1))·Σ_{k≠y} z_k² on the raw logits.

    No hyper-parameter: the paper uses cross-entropy's training settings unchanged.
    """
    return class_loss("squentropy_loss", input, target, per_class=lambda z, y: squentropy_terms(z),
                      prob_target=True, **options)


class SquentropyLoss(LossModule, loss="squentropy_loss"):
    """Module form of :func:`lossbook.functional.squentropy_loss`."""


def rescaled_square_terms(logits: Tensor, *, k: float = 1.0, m: float = 1.0) -> Tensor:
    r"""The per-class terms S[i, c] = (1/C)·[k·(z_ic − M)² + Σ_{j≠c} z_ij²], shape (N, C)."""
    squares = logits.square()
    others = squares.sum(dim=1, keepdim=True) - squares
    return (k * (logits - m).square() + others) / logits.shape[1]


def _check_rescaled_square(k=1.0, m=1.0):
    return (check_number("rescaled_square_loss", "k", k, low=0.0, low_open=True),
            check_number("rescaled_square_loss", "m", m))


@register_loss("rescaled_square_loss", family="calibration", paper="hui2021evaluation", supports=CLASS_OPTIONS,
               check=_check_rescaled_square,
               properties={"shift_invariant": False, "scale_invariant": False, "nonnegative": True,
                           "bounded": False, "symmetric": False},
               summary="Rescaled square loss (1/C)·[k·(z_y − M)² + Σ_{j≠y} z_j²] on the raw logits (k = M = 1: the "
                       "mean square error to the one-hot target).",
               formula=r"\ell(z,y) = \frac{1}{C}\Bigl[k\,(z_y - M)^2 + \sum_{j\ne y} z_j^2\Bigr]")
def rescaled_square_loss(input: Tensor, target: Tensor, *, k: float = 1.0, m: float = 1.0,
                         **options: Unpack[ClassOptions]) -> Tensor:
    r"""Rescaled square loss of Hui & Belkin (2021): (1/C)·[k·(z_y − M)² + Σ_{j≠y} z_j²] on the raw logits.

    ``k`` > 0 weights the target's term and ``m`` is its target value; the defaults k = M = 1 give the
    plain square loss (1/C)·‖z − e_y‖², the setting for problems with few classes. A probability
    target q gives Σ_c q_c·ℓ(z, c), as for every loss of the library.
    """
    k, m = _check_rescaled_square(k, m)
    return class_loss("rescaled_square_loss", input, target, prob_target=True, **options,
                      per_class=lambda z, y: rescaled_square_terms(z, k=k, m=m))


class RescaledSquareLoss(LossModule, loss="rescaled_square_loss"):
    """Module form of :func:`lossbook.functional.rescaled_square_loss`."""
