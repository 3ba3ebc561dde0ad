"""Views of a loss used by the chapter: its profile along the true-class margin."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..registry import register_method

__all__ = ["margin_profile", "excess_risks", "comp_sum_calibration", "comp_sum_bound"]


@register_method(kind="analysis", family="softmax")
def margin_profile(loss_fn: Callable[[Tensor, Tensor], Tensor], margins, *, num_classes: int = 10,
                   **kwargs) -> pd.DataFrame:
    r"""Loss and its derivative along the true-class margin m = z_y − max_{k≠y} z_k.

    Logits are z_y = m and z_k = 0 for the other C − 1 classes, so m is exactly the margin.
    Returns columns ``margin``, ``loss`` and ``grad`` (dℓ/dm, computed by autograd in float64).
    """
    if num_classes < 2:
        raise ValueError(f"margin_profile: num_classes must be ≥ 2; got {num_classes}.")
    m = torch.as_tensor(np.asarray(margins, dtype=np.float64)).requires_grad_(True)
    logits = torch.zeros(len(m), num_classes, dtype=torch.float64)
    logits = logits + torch.nn.functional.one_hot(torch.zeros(len(m), dtype=torch.long), num_classes) * m[:, None]
    target = torch.zeros(len(m), dtype=torch.long)
    loss = loss_fn(logits, target, reduction="none", **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), m)
    return pd.DataFrame({"margin": m.detach().numpy(), "loss": loss.detach().numpy(), "grad": grad.numpy()})


@register_method(kind="analysis", family="softmax", paper="mao2023crossentropy")
def excess_risks(logits: Tensor, posterior: Tensor, tau: float) -> dict[str, float]:
    r"""Excess comp-sum and zero-one risks of scores ``logits`` when the true posterior is known.

    * excess surrogate risk  E_x[ Σ_y η_y ℓ^τ(h(x), y) − inf_h Σ_y η_y ℓ^τ(h, y) ];
    * excess zero-one risk   E_x[ max_y η_y − η_{argmax h(x)} ];

    both averaged over the rows (points x) given. Computed in float64.
    """
    from .comp_sum import comp_sum_bayes_risk, comp_sum_conditional_risk

    eta = posterior.to(torch.float64)
    probs = torch.softmax(logits.detach().to(torch.float64).cpu(), dim=1)
    eta = eta.cpu()
    surrogate = comp_sum_conditional_risk(probs, eta, tau) - comp_sum_bayes_risk(eta, tau)
    zero_one = eta.max(dim=1).values - eta.gather(1, probs.argmax(dim=1, keepdim=True)).squeeze(1)
    return {"excess_surrogate": float(surrogate.mean()), "excess_zero_one": float(zero_one.mean())}


def _power_mean_term(t: np.ndarray, tau: float) -> np.ndarray:
    """f_τ(t) = [((1+t)^{1/(2−τ)} + (1−t)^{1/(2−τ)})/2]^{2−τ}, for τ < 2."""
    a = 1.0 / (2.0 - tau)
    return (((1.0 + t) ** a + (1.0 - t) ** a) / 2.0) ** (2.0 - tau)


@register_method(kind="analysis", family="softmax", paper="mao2023crossentropy")
def comp_sum_calibration(t, tau: float, num_classes: int) -> np.ndarray:
    r"""T_τ(t): the least excess comp-sum risk that an excess zero-one risk t ∈ [0, 1] can cost.

    The H-consistency bounds of Mao, Mohri & Zhong (2023, Theorem 3.1) for complete hypothesis sets:

    * τ ∈ [0, 1):  T(t) = 2^{1−τ}/(1−τ) · (1 − f_τ(t));  τ = 0 gives 1 − √(1 − t²);
    * τ = 1:       T(t) = (1+t)/2 · log(1+t) + (1−t)/2 · log(1−t)  (so Γ(ε) ≤ √(2ε));
    * τ ∈ (1, 2):  T(t) = (f_τ(t) − 1) / ((τ−1) n^{τ−1});
    * τ ≥ 2:       T(t) = t / ((τ−1) n^{τ−1})  (MAE: t/n);

    with f_τ(t) = [((1+t)^{1/(2−τ)} + (1−t)^{1/(2−τ)})/2]^{2−τ} and n classes. Only τ > 1 depends
    on n. The test suite checks that T_τ never exceeds the excess risk of any (posterior,
    prediction) pair, i.e. that the bound is valid, and that it is attained for τ ≤ 1, n = 2.
    """
    if num_classes < 2:
        raise ValueError(f"comp_sum_calibration: num_classes must be ≥ 2; got {num_classes}.")
    if tau < 0:
        raise ValueError(f"comp_sum_calibration: tau must be ≥ 0; got {tau}.")
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    n = float(num_classes)
    if tau == 1.0:
        with np.errstate(divide="ignore", invalid="ignore"):
            one_minus = np.where(t < 1.0, (1.0 - t) / 2.0 * np.log1p(-np.minimum(t, 1.0 - 1e-300)), 0.0)
        return (1.0 + t) / 2.0 * np.log1p(t) + one_minus
    if tau < 1.0:
        return 2.0 ** (1.0 - tau) / (1.0 - tau) * (1.0 - _power_mean_term(t, tau))
    if tau < 2.0:
        return (_power_mean_term(t, tau) - 1.0) / ((tau - 1.0) * n ** (tau - 1.0))
    return t / ((tau - 1.0) * n ** (tau - 1.0))


@register_method(kind="analysis", family="softmax", paper="mao2023crossentropy")
def comp_sum_bound(excess_surrogate, tau: float, num_classes: int) -> np.ndarray:
    r"""Γ_τ(ε) = T_τ^{-1}(ε): the bound on the excess zero-one risk implied by an excess comp-sum
    risk ε when minimisability gaps vanish (capped at 1). T_τ is increasing, so it is inverted by
    bisection to machine precision."""
    eps = np.maximum(np.asarray(excess_surrogate, dtype=np.float64), 0.0)
    lo, hi = np.zeros_like(eps), np.ones_like(eps)
    for _ in range(80):
        mid = (lo + hi) / 2.0
        below = comp_sum_calibration(mid, tau, num_classes) < eps
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.where(eps >= comp_sum_calibration(1.0, tau, num_classes), 1.0, hi)
