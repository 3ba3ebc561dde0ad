r"""Squentropy (Hui, Belkin & Wright, ICML 2023): cross-entropy plus the mean square of the
non-target logits,

.. math::

    \ell(z, y) = -\log p_y + \frac{1}{C - 1} \sum_{k \ne y} z_k^2,\qquad p = \mathrm{softmax}(z),

on the raw logits (no hyper-parameter; there is no official code, so the tests hold it to this
closed form). The square term pins the non-target logits near 0, so the loss is neither shift- nor
scale-invariant. With one class the sum is empty and the loss is CE (0).
"""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss

__all__ = ["squentropy_loss", "squentropy_terms", "SquentropyLoss"]


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
