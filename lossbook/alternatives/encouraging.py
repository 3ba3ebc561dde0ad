r"""Encouraging loss (Zhao et al., AAAI 2022): cross-entropy plus a bonus for well-classified examples.

.. math::

    \ell(z, y) = -\log p_y + b(p_y),\qquad
    b(p) = \begin{cases} \log(1 - p) & p \le e\\
                         \log(1 - e) + \dfrac{p - e}{e - 1} & p > e \end{cases},
    \qquad p = \mathrm{softmax}(z).

The bonus log(1 − p) falls as p → 1, so an example the network already gets right keeps a
gradient, instead of the vanishing one of cross-entropy. The plain loss (``log_end = 1``) has the
bonus everywhere; the **conservative** one linearises it above p = e (``log_end``, the official
default 0.75): the tangent of log(1 − p) at e, so the bonus and its slope are continuous there
and the loss stays bounded below.

As in the official code (lancopku/well-classified-examples-are-underestimated,
``EncouragingLoss.py``), 1 − p is clamped at 1e-5 inside the logarithm: with ``log_end = 1`` the
bonus stops at log 1e-5 (and its gradient at 0) when p > 1 − 1e-5, so the plain loss is bounded
below too. log(1 − p) is computed from the logits without cancellation
(:func:`lossbook.robust.log1m_softmax`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss
from ..robust import log1m_softmax

__all__ = ["encouraging_loss", "encouraging_terms", "EncouragingLoss"]

#: 1 − p is clamped here inside the bonus's logarithm, as in the official code.
_FLOOR = 1e-5


def encouraging_terms(logits: Tensor, *, log_end: float = 0.75) -> Tensor:
    r"""The per-class encouraging-loss terms −log p_ik + b(p_ik), shape (N, C) (no option handling)."""
    log_p = torch.log_softmax(logits, dim=1)
    bonus = log1m_softmax(logits).clamp_min(math.log(_FLOOR))
    if log_end < 1.0:
        p = log_p.exp()
        linear = math.log1p(-log_end) + (p - log_end) / (log_end - 1.0)
        bonus = torch.where(p > log_end, linear, bonus)
    return bonus - log_p


def _check_encouraging(log_end=0.75):
    return check_number("encouraging_loss", "log_end", log_end, low=0.0, high=1.0, low_open=True)


@register_loss("encouraging_loss", family="alternatives", paper="zhao2022encouraging", supports=CLASS_OPTIONS,
               check=_check_encouraging,
               properties={"shift_invariant": True, "nonnegative": False, "bounded": False, "symmetric": False},
               summary="Encouraging loss −log p_y + log(1 − p_y), the bonus linearised above p_y = log_end "
                       "(conservative; log_end = 1 is the plain loss).",
               formula=r"\ell(z,y) = -\log p_y + b(p_y),\ b(p) = \log(1-p)\ (p \le e),\ "
                       r"\log(1-e) + \frac{p-e}{e-1}\ (p > e)")
def encouraging_loss(input: Tensor, target: Tensor, *, log_end: float = 0.75,
                     **options: Unpack[ClassOptions]) -> Tensor:
    r"""Encouraging loss of Zhao et al. (2022): −log p_y + log(1 − p_y), p = softmax(z).

    ``log_end`` e ∈ (0, 1]: above p_y = e the bonus is replaced by its tangent at e (the
    *conservative* loss; 0.75 is the official default); ``log_end = 1`` is the plain loss. As in the
    official code, 1 − p is clamped at 1e-5 inside the logarithm.
    """
    log_end = _check_encouraging(log_end)
    return class_loss("encouraging_loss", input, target,
                      per_class=lambda z, y: encouraging_terms(z, log_end=log_end), prob_target=True, **options)


class EncouragingLoss(LossModule, loss="encouraging_loss"):
    """Module form of :func:`lossbook.functional.encouraging_loss`."""
