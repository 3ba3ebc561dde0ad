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
    "STATS_PARTIALS",
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


# --- closed-form partials, for the factored layer -------------------------------------------------
# Each returns (loss, ∂loss/∂a, ∂loss/∂q, ∂loss/∂s) per example, in float64, for the loss of the
# same name above. The factored layer needs exactly these four vectors per step; computing them in
# closed form avoids an autograd pass per step. tests/test_spherical_losses.py holds each against
# autograd through the function above, so the two forms cannot drift apart.

Partials = tuple[Tensor, Tensor, Tensor, Tensor]


def z_loss_partials(a: Tensor, q: Tensor, s: Tensor, num_classes: int, *, a_z: float = 1.0,
                    b: float = 0.0) -> Partials:
    """:func:`z_loss_stats` and its partials: with z = (a − μ)/σ and ℓ'(z) = −sigmoid(a_z(b − z)),
    ∂ℓ/∂a = ℓ'/σ, ∂ℓ/∂q = −ℓ'·z/(2Dσ²), ∂ℓ/∂s = ℓ'·(zμ/σ − 1)/(Dσ); 0 for a constant row."""
    a64, q64, s64 = _f64(a, q, s)
    D = num_classes
    mu = s64 / D
    mean_sq = q64 / D
    var = mean_sq - mu * mu
    spread = var > _Z_VAR_RTOL * mean_sq
    inv_sigma = torch.where(spread, var, torch.ones_like(var)).rsqrt_().mul_(spread)  # 0 on constant rows
    z = (a64 - mu) * inv_sigma
    u = a_z * (b - z)
    dz = -torch.sigmoid(u)  # ∂ℓ/∂z
    g_a = dz * inv_sigma
    g_q = dz * z * inv_sigma * inv_sigma * (-0.5 / D)
    g_s = dz * (z * mu * inv_sigma - 1) * inv_sigma / D
    return softplus(u) / a_z, g_a, g_q, g_s


def taylor_softmax_partials(a: Tensor, q: Tensor, s: Tensor, num_classes: int) -> Partials:
    """:func:`taylor_softmax_stats` and its partials."""
    a64, q64, s64 = _f64(a, q, s)
    den = num_classes + s64 + q64 / 2
    num = 1 + a64 + a64 * a64 / 2
    return torch.log(den) - torch.log(num), -(1 + a64) / num, 0.5 / den, 1 / den


def spherical_softmax_partials(a: Tensor, q: Tensor, s: Tensor, num_classes: int, *,
                               eps: float = 1e-3) -> Partials:
    """:func:`spherical_softmax_stats` and its partials (∂/∂s = 0)."""
    a64, q64, _ = _f64(a, q, s)
    num, den = a64 * a64 + eps, q64 + num_classes * eps
    return torch.log(den) - torch.log(num), -2 * a64 / num, 1 / den, torch.zeros_like(a64)


def squared_error_partials(a: Tensor, q: Tensor, s: Tensor, num_classes: int) -> Partials:
    """:func:`squared_error_stats` and its partials: (q − 2a + 1, −2, 1, 0)."""
    a64, q64, _ = _f64(a, q, s)
    return q64 - 2 * a64 + 1, torch.full_like(a64, -2.0), torch.ones_like(a64), torch.zeros_like(a64)


#: Closed-form (loss, ∂/∂a, ∂/∂q, ∂/∂s) by registry name; the factored layer uses these.
STATS_PARTIALS: dict[str, Callable[..., Partials]] = {
    "z_loss": z_loss_partials,
    "taylor_softmax": taylor_softmax_partials,
    "spherical_softmax": spherical_softmax_partials,
    "squared_error": squared_error_partials,
}
