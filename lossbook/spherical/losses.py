r"""The spherical family on explicit outputs: Z-loss, log-Taylor softmax, log-spherical softmax,
squared error.

Each loss here depends on the outputs o ∈ ℝ^D of a row only through a = o_c, q = ‖o‖² and
s = Σ_k o_k (see :mod:`lossbook.spherical.stats`). The functions below validate their inputs,
compute (a, q, s) with :func:`~lossbook.spherical.stats.output_stats`, and call the stats-form loss
of :data:`~lossbook.spherical.stats.STATS_LOSSES`, the same code the factored output layer runs,
so the dense and the factored paths cannot drift apart.

Targets are int64 class indices ``(N,)``; ``weight``, ``ignore_index`` and ``reduction`` come from
:func:`lossbook.engine.class_loss` (``"mean"`` divides by the summed weights w_{y_i} of the counted
rows). There is no label smoothing and no probability target: a spherical loss sees one target
output per row.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import INDEX_OPTIONS, IndexOptions, LossModule, class_loss
from ..registry import register_loss
from .stats import (
    output_stats,
    spherical_softmax_stats,
    squared_error_stats,
    taylor_softmax_stats,
    z_loss_stats,
)

__all__ = [
    "z_loss",
    "taylor_softmax_loss",
    "spherical_softmax_loss",
    "squared_error_loss",
    "ZLoss",
    "TaylorSoftmaxLoss",
    "SphericalSoftmaxLoss",
    "SquaredErrorLoss",
]


def _hyperparameter(name: str, arg: str, value, fix: str, **interval) -> float:
    """:func:`check_number`, with a sentence saying how to fix a bad value appended to its message."""
    try:
        return check_number(name, arg, value, **interval)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{err} {fix}") from None


def _spherical_loss(name: str, stats_fn: Callable[..., Tensor], input: Tensor, target: Tensor,  # noqa: A002
                    options: IndexOptions, **hyperparameters) -> Tensor:
    """:func:`~lossbook.engine.class_loss` with the per-row formula ``stats_fn(a, q, s, D)``."""
    return class_loss(name, input, target, **options,
                      per_row=lambda z, y: stats_fn(*output_stats(z, y), z.shape[1], **hyperparameters))


# --- Z-loss ---------------------------------------------------------------------------------------


def _check_z(a=1.0, b=0.0) -> tuple[float, float]:
    a = _hyperparameter(
        "z_loss", "a", a, "a is the softplus sharpness; pass a positive number, e.g. a=1.0 (the default).",
        low=0.0, low_open=True,
    )
    b = _hyperparameter("z_loss", "b", b, "b is the z-score offset; pass a finite number, e.g. b=0.0 (the default).")
    return a, b


@register_loss("z_loss", family="spherical", paper="debrebisson2016zloss", supports=INDEX_OPTIONS, check=_check_z,
               properties={"shift_invariant": True, "scale_invariant": True, "nonnegative": True, "bounded": True},
               summary="Z-loss: a softplus of the target output's z-score within its row; shift- and scale-invariant.",
               formula=r"\ell(o, c) = \tfrac{1}{a}\,\mathrm{softplus}\big(a\,(b - z_c)\big),\quad "
                       r"z_c = \frac{o_c - \mu}{\sigma},\ \mu = \tfrac{1}{D}\sum_k o_k,\ "
                       r"\sigma^2 = \tfrac{1}{D}\sum_k o_k^2 - \mu^2")
def z_loss(input: Tensor, target: Tensor, *, a: float = 1.0, b: float = 0.0,
           **options: Unpack[IndexOptions]) -> Tensor:
    r"""Z-loss of de Brébisson & Vincent (2016): (1/a)·softplus(a·(b − z_c)) with z_c = (o_c − μ)/σ.

    μ and σ are the mean and the population standard deviation of the row's D outputs, so the loss
    is unchanged by o → α·o + β (α > 0) and bounded (|z_c| ≤ √(D−1)). ``a`` > 0 sets how sharply
    the softplus turns, ``b`` the z-score beyond which a row stops being pushed; a = 1, b = 0 is
    the authors' code. A constant row has no z-score: it gets z_c = 0 and zero gradient.

    Not the PaLM/T5 "z-loss" (a log²Z penalty on the softmax normaliser).
    """
    a, b = _check_z(a, b)
    return _spherical_loss("z_loss", z_loss_stats, input, target, options, a_z=a, b=b)


# --- log-Taylor softmax ---------------------------------------------------------------------------


@register_loss("taylor_softmax", family="spherical", paper="debrebisson2016exploration", supports=INDEX_OPTIONS,
               properties={"nonnegative": True},
               summary="Log-Taylor softmax: cross-entropy with exp replaced by its 2nd-order Taylor 1 + o + o²/2.",
               formula=r"\ell(o, c) = -\log \frac{1 + o_c + o_c^2/2}{\sum_k \big(1 + o_k + o_k^2/2\big)}")
def taylor_softmax_loss(input: Tensor, target: Tensor, **options: Unpack[IndexOptions]) -> Tensor:
    r"""Log-Taylor softmax −log[(1 + o_c + o_c²/2) / Σ_k (1 + o_k + o_k²/2)] (de Brébisson & Vincent 2016).

    Every term 1 + x + x²/2 = ((1 + x)² + 1)/2 is ≥ ½, so the "probabilities" are positive and sum
    to 1 without any ε, and the loss is ≥ 0. Unlike the spherical softmax it is not even in o.
    """
    return _spherical_loss("taylor_softmax_loss", taylor_softmax_stats, input, target, options)


# --- log-spherical softmax ------------------------------------------------------------------------


def _check_eps(eps=1e-3) -> float:
    return _hyperparameter(
        "spherical_softmax_loss", "eps", eps,
        "eps keeps o_c² + eps away from 0; pass a positive number, e.g. eps=1e-3 (the default).",
        low=0.0, low_open=True,
    )


@register_loss("spherical_softmax", family="spherical", paper="vincent2015efficient", supports=INDEX_OPTIONS,
               check=_check_eps, properties={"nonnegative": True},
               summary="Log-spherical softmax: cross-entropy with p_k ∝ o_k² + ε; even in o, scale-invariant "
                       "only as ε → 0.",
               formula=r"\ell(o, c) = -\log \frac{o_c^2 + \varepsilon}{\sum_k \big(o_k^2 + \varepsilon\big)}")
def spherical_softmax_loss(input: Tensor, target: Tensor, *, eps: float = 1e-3,
                           **options: Unpack[IndexOptions]) -> Tensor:
    r"""Log-spherical softmax −log[(o_c² + ε) / Σ_k (o_k² + ε)], ε > 0 (Vincent et al. 2015).

    Suggested by Vincent et al. (2015) and studied by de Brébisson & Vincent (ICLR 2016). It is
    even in o (the sign of an output carries no information) and scale-invariant only at ε = 0,
    which is excluded: ε keeps the loss finite when o_c = 0 and has to be tuned.
    """
    eps = _check_eps(eps)
    return _spherical_loss("spherical_softmax_loss", spherical_softmax_stats, input, target, options, eps=eps)


# --- squared error --------------------------------------------------------------------------------


@register_loss("squared_error", family="spherical", paper="vincent2015efficient", supports=INDEX_OPTIONS,
               properties={"nonnegative": True, "bounded": False},
               summary="Squared error ‖o − e_c‖² between the raw outputs and the one-hot target.",
               formula=r"\ell(o, c) = \lVert o - e_c \rVert^2 = \sum_k o_k^2 - 2\,o_c + 1")
def squared_error_loss(input: Tensor, target: Tensor, **options: Unpack[IndexOptions]) -> Tensor:
    r"""Squared error ‖o − e_c‖² = q − 2·o_c + 1 to the one-hot target, summed over the D outputs.

    The per-row loss is a sum over classes (not a mean, unlike :func:`torch.nn.functional.mse_loss`
    with ``reduction="mean"``, which also divides by D); it is the loss of Vincent et al. (2015).
    """
    return _spherical_loss("squared_error_loss", squared_error_stats, input, target, options)


# --- Modules --------------------------------------------------------------------------------------


class ZLoss(LossModule, loss="z_loss"):
    """Module form of :func:`lossbook.functional.z_loss`."""


class TaylorSoftmaxLoss(LossModule, loss="taylor_softmax"):
    """Module form of :func:`lossbook.functional.taylor_softmax_loss`."""


class SphericalSoftmaxLoss(LossModule, loss="spherical_softmax"):
    """Module form of :func:`lossbook.functional.spherical_softmax_loss`."""


class SquaredErrorLoss(LossModule, loss="squared_error"):
    """Module form of :func:`lossbook.functional.squared_error_loss`."""
