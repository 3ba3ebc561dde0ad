r"""Normalised losses and active–passive losses (Ma et al., ICML 2020, "Normalized Loss Functions
for Deep Learning with Noisy Labels").

Normalising a loss by its sum over all labels,

.. math:: \ell_{\mathrm{norm}}(z, y) = \frac{\ell(z, y)}{\sum_{k=1}^{C} \ell(z, k)},

makes Σ_k ℓ_norm(z, k) = 1 for every z, so any loss becomes *symmetric* and hence robust to
symmetric label noise. Normalised losses underfit, so the paper pairs an *active* loss (one that
only looks at the labelled class: CE, FL, NCE, NFL, NGCE) with a *passive* one (one that also pushes
down other classes: MAE, RCE, NMAE, NRCE) in an active–passive loss APL = α·active + β·passive.
:func:`active_passive_loss` builds every combination from its two names.

Checked against the official code (HanxunH/Active-Passive-Losses ``loss.py``); where it differs
from the paper, this library follows the paper and says so:

* **NCE** −log p_y / Σ_k −log p_k: as in the code.
* **NFL**: the code computes the normaliser with ``logpt.data`` and the modulating factor
  (1 − p_t)^γ with ``pt = logpt.data.exp()``, i.e. both *detached*: its gradient is not the
  gradient of its loss value. Here the whole ratio is differentiated (same value).
* **NGCE** (1 − p_y^q)/(C − Σ_k p_k^q): as in the code (which also clips p ≥ 1e-7; not here).
* **NMAE**: the paper's MAE is ‖e_y − p‖₁ = 2(1 − p_y), so NMAE = (1 − p_y)/(C − 1). The code's
  ``NormalizedMeanAbsoluteError`` uses 1/(2(C − 1)), which sums to ½ over labels, not 1.
* **NRCE**: RCE = −A(1 − p_y) normalises to the same (1 − p_y)/(C − 1) as NMAE, for every A. The
  code's ``NormalizedReverseCrossEntropy`` multiplies RCE by ``1 / 4 * (num_classes - 1)``, i.e.
  (C − 1)/4, which is not a normalisation.
* **MAE** in the APL combinations is 1 − p_y (the code's "reduced MAE", and
  :func:`~lossbook.functional.mean_absolute_error`), **RCE** uses A = log 1e-4 (the code's clip).

Default hyper-parameters are the official class defaults: γ = 0.5 (``NFLandRCE``), q = 0.7
(``NormalizedGeneralizedCrossEntropy``; the CIFAR configs use q = 0.1), α = β = 1 (CIFAR-10 configs;
CIFAR-100 uses α = 10, β = 0.1).
"""

from __future__ import annotations

from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss
from ._parts import loss_matrix
from .symmetric import LOG_ZERO, _check_log_zero

__all__ = [
    "ACTIVE_LOSSES",
    "PASSIVE_LOSSES",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "normalized_generalized_cross_entropy",
    "normalized_mean_absolute_error",
    "normalized_reverse_cross_entropy",
    "active_passive_loss",
    "NormalizedCrossEntropyLoss",
    "NormalizedFocalLoss",
    "NormalizedGeneralizedCrossEntropyLoss",
    "NormalizedMeanAbsoluteErrorLoss",
    "NormalizedReverseCrossEntropyLoss",
    "ActivePassiveLoss",
]

#: Names accepted by :func:`active_passive_loss` (``active=``), after Ma et al. (2020).
ACTIVE_LOSSES = ("ce", "focal", "gce", "nce", "nfl", "ngce")
#: Names accepted by :func:`active_passive_loss` (``passive=``).
PASSIVE_LOSSES = ("mae", "rce", "nmae", "nrce")

_NORMALIZED_PROPERTIES = {
    "shift_invariant": True,
    "nonnegative": True,
    "bounded": True,
    "symmetric": True,
}


def _check_gamma(name: str, gamma) -> float:
    return check_number(name, "gamma", gamma, low=0.0)


def _check_q(name: str, q) -> float:
    return check_number(name, "q", q, low=0.0, high=1.0, low_open=True)


def _matrix_loss(name: str, matrix, input: Tensor, target: Tensor, options: ClassOptions, *,  # noqa: A002
                 normalized: bool = True) -> Tensor:
    """:func:`~lossbook.engine.class_loss` of a per-class matrix ``matrix(z)``; a normalised loss needs
    C ≥ 2 (it divides by the sum over classes)."""

    def per_class(z: Tensor, y: Tensor | None) -> Tensor:
        if normalized and z.shape[1] < 2:
            raise ValueError(f"{name}: needs at least 2 classes (a normalised loss divides by the sum over "
                             f"classes); got logits of shape {tuple(z.shape)}.")
        return matrix(z)

    return class_loss(name, input, target, per_class=per_class, prob_target=True, **options)


def _normalized(name: str, part: str, input: Tensor, target: Tensor, options: ClassOptions, **hp) -> Tensor:  # noqa: A002
    return _matrix_loss(name, lambda z: loss_matrix(z, part, **hp), input, target, options)


@register_loss("normalized_cross_entropy", family="robust", paper="ma2020normalized", supports=CLASS_OPTIONS,
               properties=_NORMALIZED_PROPERTIES,
               summary="Normalised cross-entropy log p_y / Σ_k log p_k: bounded in [0, 1], Σ_k NCE(z, k) = 1.",
               formula=r"\ell(z,y) = \frac{-\log p_y}{-\sum_k \log p_k}")
def normalized_cross_entropy(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Normalised cross-entropy (−log p_y)/(−Σ_k log p_k) of Ma et al. (2020), p = softmax(z)."""
    return _normalized("normalized_cross_entropy", "nce", input, target, options)


def _check_nfl(gamma=0.5) -> float:
    return _check_gamma("normalized_focal_loss", gamma)


@register_loss("normalized_focal_loss", family="robust", paper="ma2020normalized", supports=CLASS_OPTIONS,
               check=_check_nfl, properties=_NORMALIZED_PROPERTIES,
               summary="Normalised focal loss FL(z, y)/Σ_k FL(z, k), FL = −(1−p)^γ log p; γ = 0 is NCE.",
               formula=r"\ell(z,y) = \frac{-(1-p_y)^\gamma \log p_y}{-\sum_k (1-p_k)^\gamma \log p_k}")
def normalized_focal_loss(input: Tensor, target: Tensor, *, gamma: float = 0.5,
                          **options: Unpack[ClassOptions]) -> Tensor:
    r"""Normalised focal loss FL(z, y)/Σ_k FL(z, k), FL(z, k) = −(1 − p_k)^γ log p_k (Ma et al. 2020).

    γ ≥ 0 (default 0.5, the official NFL+RCE config); γ = 0 is :func:`normalized_cross_entropy`.
    Unlike the official code, the normaliser and the factor (1 − p)^γ are not detached, so the
    gradient is the gradient of the value.
    """
    gamma = _check_nfl(gamma)
    return _normalized("normalized_focal_loss", "nfl", input, target, options, gamma=gamma)


def _check_ngce(q=0.7) -> float:
    return _check_q("normalized_generalized_cross_entropy", q)


@register_loss("normalized_generalized_cross_entropy", family="robust", paper="ma2020normalized",
               supports=CLASS_OPTIONS, check=_check_ngce, properties=_NORMALIZED_PROPERTIES,
               summary="Normalised GCE (1 − p_y^q)/(C − Σ_k p_k^q): GCE divided by its sum over labels.",
               formula=r"\ell(z,y) = \frac{1 - p_y^{q}}{C - \sum_k p_k^{q}}")
def normalized_generalized_cross_entropy(input: Tensor, target: Tensor, *, q: float = 0.7,
                                         **options: Unpack[ClassOptions]) -> Tensor:
    r"""Normalised generalized cross-entropy (1 − p_y^q)/(C − Σ_k p_k^q) (Ma et al. 2020), q ∈ (0, 1].

    Default q = 0.7 (the official class default; the official CIFAR configs use q = 0.1).
    """
    q = _check_ngce(q)
    return _normalized("normalized_generalized_cross_entropy", "ngce", input, target, options, q=q)


@register_loss("normalized_mean_absolute_error", family="robust", paper="ma2020normalized", supports=CLASS_OPTIONS,
               properties={**_NORMALIZED_PROPERTIES, "classification_calibrated": True},
               summary="Normalised MAE (1 − p_y)/(C − 1) (the paper's; the official code divides by 2(C − 1)).",
               formula=r"\ell(z,y) = \frac{1 - p_y}{C - 1}")
def normalized_mean_absolute_error(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Normalised mean absolute error ‖e_y − p‖₁ / Σ_k ‖e_k − p‖₁ = (1 − p_y)/(C − 1) (Ma et al. 2020).

    The official ``NormalizedMeanAbsoluteError`` multiplies 1 − p_y by 1/(2(C − 1)) (sums to ½ over
    labels); this is the paper's definition, which sums to 1.
    """
    return _normalized("normalized_mean_absolute_error", "nmae", input, target, options)


@register_loss("normalized_reverse_cross_entropy", family="robust", paper="ma2020normalized", supports=CLASS_OPTIONS,
               properties={**_NORMALIZED_PROPERTIES, "classification_calibrated": True},
               summary="Normalised RCE RCE(z, y)/Σ_k RCE(z, k) = (1 − p_y)/(C − 1), equal to NMAE for every A.",
               formula=r"\ell(z,y) = \frac{-A(1 - p_y)}{-A\sum_k (1 - p_k)} = \frac{1 - p_y}{C - 1}")
def normalized_reverse_cross_entropy(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Normalised reverse cross-entropy RCE(z, y)/Σ_k RCE(z, k) = (1 − p_y)/(C − 1) (Ma et al. 2020).

    The constant A of RCE cancels, so NRCE equals :func:`normalized_mean_absolute_error`. (The
    official ``NormalizedReverseCrossEntropy`` multiplies RCE by ``1 / 4 * (num_classes - 1)`` =
    (C − 1)/4 instead of dividing by Σ_k RCE(z, k).)
    """
    return _normalized("normalized_reverse_cross_entropy", "nrce", input, target, options)


# --- active–passive losses -------------------------------------------------------------------------


def _check_apl(active="nce", passive="rce", alpha=1.0, beta=1.0, gamma=0.5, q=0.7, log_zero=LOG_ZERO):
    name = "active_passive_loss"
    if active not in ACTIVE_LOSSES:
        hint = " (passive losses go in passive=)" if active in PASSIVE_LOSSES else ""
        raise ValueError(f"{name}: active must be one of {ACTIVE_LOSSES}; got {active!r}{hint}.")
    if passive not in PASSIVE_LOSSES:
        hint = " (active losses go in active=)" if passive in ACTIVE_LOSSES else ""
        raise ValueError(f"{name}: passive must be one of {PASSIVE_LOSSES}; got {passive!r}{hint}.")
    return (
        active,
        passive,
        check_number(name, "alpha", alpha, low=0.0),
        check_number(name, "beta", beta, low=0.0),
        _check_gamma(name, gamma),
        _check_q(name, q),
        _check_log_zero(name, log_zero),
    )


_ACTIVE_PART = {"ce": "ce", "focal": "focal", "gce": "gce", "nce": "nce", "nfl": "nfl", "ngce": "ngce"}


@register_loss("active_passive", family="robust", paper="ma2020normalized", supports=CLASS_OPTIONS, check=_check_apl,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": True, "symmetric": True},
               summary="Active–passive loss α·active + β·passive (default NCE+RCE); properties hold "
                       "for normalised actives.",
               formula=r"\ell(z,y) = \alpha\,\ell_{\mathrm{active}}(z,y) + \beta\,\ell_{\mathrm{passive}}(z,y)")
def active_passive_loss(input: Tensor, target: Tensor, *, active: str = "nce", passive: str = "rce", alpha: float = 1.0,
                        beta: float = 1.0, gamma: float = 0.5, q: float = 0.7, log_zero: float = LOG_ZERO,
                        **options: Unpack[ClassOptions]) -> Tensor:
    r"""Active–passive loss α·ℓ_active + β·ℓ_passive of Ma et al. (2020), built from two names.

    ``active`` ∈ {``"ce"``, ``"focal"``, ``"gce"``, ``"nce"``, ``"nfl"``, ``"ngce"``} and
    ``passive`` ∈ {``"mae"``, ``"rce"``, ``"nmae"``, ``"nrce"``}, e.g. NCE+RCE (the default),
    NCE+MAE, NFL+RCE, NFL+MAE, NGCE+RCE, NGCE+MAE. ``gamma`` is the focal exponent (FL, NFL),
    ``q`` the GCE exponent (GCE, NGCE), ``log_zero`` RCE's constant A (default log 1e-4, the
    official code; the paper uses −4). MAE is 1 − p_y, as in the official code. β = 0 gives
    α·active alone. With a normalised active the sum over labels is α + β·Σ_k passive(z, k), a
    constant, so the loss is symmetric and bounded (the registry declares the default NCE+RCE).
    """
    active, passive, alpha, beta, gamma, q, a = _check_apl(active, passive, alpha, beta, gamma, q, log_zero)
    hp = {"gamma": gamma, "q": q, "log_zero": a}

    def matrix(z: Tensor) -> Tensor:
        return alpha * loss_matrix(z, _ACTIVE_PART[active], **hp) + beta * loss_matrix(z, passive, **hp)

    normalized = active.startswith("n") or passive.startswith("n")
    return _matrix_loss("active_passive_loss", matrix, input, target, options, normalized=normalized)


class NormalizedCrossEntropyLoss(LossModule, loss="normalized_cross_entropy"):
    """Module form of :func:`lossbook.functional.normalized_cross_entropy`."""


class NormalizedFocalLoss(LossModule, loss="normalized_focal_loss"):
    """Module form of :func:`lossbook.functional.normalized_focal_loss`."""


class NormalizedGeneralizedCrossEntropyLoss(LossModule, loss="normalized_generalized_cross_entropy"):
    """Module form of :func:`lossbook.functional.normalized_generalized_cross_entropy`."""


class NormalizedMeanAbsoluteErrorLoss(LossModule, loss="normalized_mean_absolute_error"):
    """Module form of :func:`lossbook.functional.normalized_mean_absolute_error`."""


class NormalizedReverseCrossEntropyLoss(LossModule, loss="normalized_reverse_cross_entropy"):
    """Module form of :func:`lossbook.functional.normalized_reverse_cross_entropy`."""


class ActivePassiveLoss(LossModule, loss="active_passive"):
    """Module form of :func:`lossbook.functional.active_passive_loss`, e.g.
    ``ActivePassiveLoss(active="nfl", passive="rce", alpha=1.0, beta=1.0)``."""
