r"""Reverse cross-entropy and symmetric cross-entropy (Wang et al., ICCV 2019).

Reverse cross-entropy swaps the roles of the label and the prediction in cross-entropy,
:math:`\mathrm{RCE}(z, y) = -\sum_k p_k \log e_{y,k}`, where log 0 is undefined; both papers set
log 0 := A < 0, which leaves

.. math:: \mathrm{RCE}(z, y) = -A\,(1 - p_y),

a multiple of the mean absolute error 1 − p_y. The constant A differs between paper and code:

* the SCE paper (and the LDR authors' re-implementation, ``SCELoss(A=4)``) uses **A = −4**;
* the official code (Keras ``symmetric_cross_entropy`` in YisenWang/symmetric_cross_entropy_for_noisy_labels,
  ``ReverseCrossEntropy``/``SCELoss`` in HanxunH/Active-Passive-Losses) clips the one-hot label to
  [1e-4, 1] before the log, i.e. **A = log 1e-4 ≈ −9.2103**. It also clips p to [1e-7, 1], which
  moves the value by at most (C − 1)·1e-7·|A| and zeroes the gradient of tiny p_k; that clip is
  not reproduced here.

This library's default is the official code's A = log(1e-4) (``log_zero``); pass ``log_zero=-4.0``
for the paper's constant. Since Σ_k RCE(z, k) = −A(C − 1) for every z, RCE is symmetric, hence
robust to symmetric label noise (Ghosh et al. 2017).
"""

from __future__ import annotations

import math

from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss
from ..softmax.comp_sum import comp_sum_phi

__all__ = [
    "LOG_ZERO",
    "reverse_cross_entropy",
    "symmetric_cross_entropy",
    "ReverseCrossEntropyLoss",
    "SymmetricCrossEntropyLoss",
]

#: The official code's log 0: log(1e-4) (the label is clipped to [1e-4, 1]). The paper uses −4.
LOG_ZERO = math.log(1e-4)

def _check_log_zero(name: str, log_zero) -> float:
    try:
        return check_number(name, "log_zero", log_zero, high=0.0, high_open=True)
    except (TypeError, ValueError) as err:
        raise type(err)(
            f"{err} log_zero is the constant A that replaces log 0; it must be negative, e.g. "
            f"log_zero=math.log(1e-4) (the official code, the default) or log_zero=-4.0 (the paper)."
        ) from None


def _check_rce(log_zero=LOG_ZERO) -> float:
    return _check_log_zero("reverse_cross_entropy", log_zero)


@register_loss("reverse_cross_entropy", family="robust", paper="wang2019symmetric", supports=CLASS_OPTIONS,
               check=_check_rce,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": True, "symmetric": True,
                           "classification_calibrated": True},
               summary="Reverse cross-entropy −A(1 − p_y), log 0 := A (official code A = log 1e-4; "
                       "paper A = −4); symmetric.",
               formula=r"\ell(z,y) = -\sum_k p_k \log e_{y,k} = -A\,(1 - p_y),\quad \log 0 := A < 0")
def reverse_cross_entropy(input: Tensor, target: Tensor, *, log_zero: float = LOG_ZERO,
                          **options: Unpack[ClassOptions]) -> Tensor:
    r"""Reverse cross-entropy −Σ_k p_k log e_{y,k} = −A·(1 − p_y) of Wang et al. (2019), p = softmax(z).

    ``log_zero`` is the constant A < 0 that stands for log 0. The default, log(1e-4) ≈ −9.21, is
    what the official code computes (it clips the one-hot label to [1e-4, 1]); the paper uses
    A = −4. RCE equals −A times :func:`~lossbook.functional.mean_absolute_error`; it is bounded
    in [0, −A] and symmetric: Σ_k RCE(z, k) = −A(C − 1) for every z.
    """
    a = _check_rce(log_zero)
    return class_loss("reverse_cross_entropy", input, target, phi=lambda log_p: -a * comp_sum_phi(log_p, 2.0),
                      prob_target=True, **options)


def _check_sce(alpha=0.1, beta=1.0, log_zero=LOG_ZERO) -> tuple[float, float, float]:
    name = "symmetric_cross_entropy"
    alpha = check_number(name, "alpha", alpha, low=0.0)
    beta = check_number(name, "beta", beta, low=0.0)
    return alpha, beta, _check_log_zero(name, log_zero)


@register_loss("symmetric_cross_entropy", family="robust", paper="wang2019symmetric", supports=CLASS_OPTIONS,
               check=_check_sce,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": False, "symmetric": False,
                           "reduces_to_ce_when": {"alpha": 1.0, "beta": 0.0}, "classification_calibrated": True},
               summary="Symmetric cross-entropy α·CE + β·RCE (Wang et al. 2019; CIFAR-10 defaults α=0.1, β=1).",
               formula=r"\ell(z,y) = -\alpha \log p_y - \beta A\,(1 - p_y)")
def symmetric_cross_entropy(input: Tensor, target: Tensor, *, alpha: float = 0.1, beta: float = 1.0,
                            log_zero: float = LOG_ZERO, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Symmetric cross-entropy α·CE + β·RCE = −α log p_y − β·A·(1 − p_y) (Wang et al. 2019).

    α, β ≥ 0; the defaults α = 0.1, β = 1 are the paper's and the official configs' CIFAR-10 values
    (CIFAR-100: α = 6, β = 0.1). ``log_zero`` is RCE's A (see :func:`reverse_cross_entropy`).
    α = 1, β = 0 is cross-entropy.
    """
    alpha, beta, a = _check_sce(alpha, beta, log_zero)

    def phi(log_p: Tensor) -> Tensor:
        return alpha * (-log_p) + (-a * beta) * comp_sum_phi(log_p, 2.0)

    return class_loss("symmetric_cross_entropy", input, target, phi=phi, prob_target=True, **options)


class ReverseCrossEntropyLoss(LossModule, loss="reverse_cross_entropy"):
    """Module form of :func:`lossbook.functional.reverse_cross_entropy`."""


class SymmetricCrossEntropyLoss(LossModule, loss="symmetric_cross_entropy"):
    """Module form of :func:`lossbook.functional.symmetric_cross_entropy`."""
