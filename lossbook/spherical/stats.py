r"""Spherical losses written once, as functions of three per-example statistics.

A loss on outputs o ∈ ℝ^D with target c belongs to the *spherical family* when it depends on o only
through

* a = o_c            (the target output),
* q = Σ_k o_k² = ‖o‖²,
* s = Σ_k o_k,

and on the number of classes D. Such a loss can be trained without ever forming o
(:class:`lossbook.FactoredSphericalLayer`), because q = hᵀQh and s = w̄ᵀh with Q = WᵀW and
w̄ = Wᵀ1. Every function here takes ``(a, q, s, num_classes)`` and returns per-example losses, so
the dense path (explicit outputs) and the factored layer run the same loss code.

The statistics are combined in float64 (e.g. the Z-loss's variance q/D − (s/D)² cancels badly
in float32); the result is cast back to the dtype of ``a``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.nn.functional import softplus

__all__ = [
    "output_stats",
    "z_loss_stats",
    "taylor_softmax_stats",
    "spherical_softmax_stats",
    "squared_error_stats",
    "STATS_LOSSES",
]


def output_stats(outputs: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(a, q, s) of explicit outputs ``(N, D)`` and int64 targets ``(N,)``; q and s in float64."""
    o64 = outputs.to(torch.float64)
    a = outputs.gather(1, target.unsqueeze(1)).squeeze(1)
    return a, (o64 * o64).sum(dim=1), o64.sum(dim=1)


def _f64(*xs: Tensor) -> list[Tensor]:
    return [x.to(torch.float64) for x in xs]


#: q/D − μ² at or below this fraction of q/D is round-off of the float64 sums, not spread: such a
#: row counts as constant (σ below ~1e-7 of the outputs' RMS, finer than float32 can resolve).
_Z_VAR_RTOL = 64 * torch.finfo(torch.float64).eps


def z_loss_stats(a: Tensor, q: Tensor, s: Tensor, num_classes: int, *, a_z: float = 1.0, b: float = 0.0) -> Tensor:
    r"""Z-loss (de Brébisson & Vincent 2016): (1/a_z)·softplus(a_z·(b − z_c)), z_c = (o_c − μ)/σ,

    with μ = s/D and σ² = q/D − μ². Shift- and scale-invariant in o. A constant output vector
    (σ² at or below round-off, ``_Z_VAR_RTOL``·q/D, which includes all-zero outputs) has no z-score;
    it gets z_c = 0, so its loss is softplus(a_z·b)/a_z and its gradient is exactly 0, never a
    huge number from dividing round-off by round-off, nor NaN.
    """
    a64, q64, s64 = _f64(a, q, s)
    mu = s64 / num_classes
    mean_sq = q64 / num_classes
    var = mean_sq - mu * mu
    spread = var > _Z_VAR_RTOL * mean_sq
    # where() twice: the constant rows' branch sees var = 1, so no inf/NaN reaches autograd
    safe_var = torch.where(spread, var, torch.ones_like(var))
    z = torch.where(spread, (a64 - mu) * safe_var.rsqrt(), torch.zeros_like(var))
    return (softplus(a_z * (b - z)) / a_z).to(a.dtype)


def taylor_softmax_stats(a: Tensor, q: Tensor, s: Tensor, num_classes: int) -> Tensor:
    r"""Log-Taylor softmax: −log[(1 + o_c + o_c²/2) / (D + s + q/2)] (second-order Taylor of exp)."""
    a64, q64, s64 = _f64(a, q, s)
    return (torch.log(num_classes + s64 + q64 / 2) - torch.log(1 + a64 + a64 * a64 / 2)).to(a.dtype)


def spherical_softmax_stats(a: Tensor, q: Tensor, s: Tensor, num_classes: int, *, eps: float = 1e-3) -> Tensor:
    r"""Log-spherical softmax: −log[(o_c² + ε) / (q + D·ε)]."""
    a64, q64, _ = _f64(a, q, s)
    return (torch.log(q64 + num_classes * eps) - torch.log(a64 * a64 + eps)).to(a.dtype)


def squared_error_stats(a: Tensor, q: Tensor, s: Tensor, num_classes: int) -> Tensor:
    r"""Squared error to the one-hot target: ‖o − e_c‖² = q − 2·o_c + 1."""
    a64, q64, _ = _f64(a, q, s)
    return (q64 - 2 * a64 + 1).to(a.dtype)


#: Stats-form losses by registry name; the factored layer looks losses up here.
STATS_LOSSES: dict[str, Callable[..., Tensor]] = {
    "z_loss": z_loss_stats,
    "taylor_softmax": taylor_softmax_stats,
    "spherical_softmax": spherical_softmax_stats,
    "squared_error": squared_error_stats,
}
