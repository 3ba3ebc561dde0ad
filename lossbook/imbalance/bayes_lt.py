r"""Bayes-LT's training objective, and the cosine head it (and LDAM-DRW) trains.

Li & Zhang (2023) view long-tailed classification through Bayesian decision theory: an objective
built on the integrated risk, trained as a deep ensemble (a particle approximation of the posterior
over the classifier). The authors' code (lblaoke/RF-DLC, ``model/loss.py``, class ``VariationalE``;
``model/resnet32.py``) trains M members ("particles"), each ending in a cosine head whose logits are
30·cos, with

.. math::

    \mathcal L = \frac1M\sum_{m=1}^M\Bigl[\mathrm{CE}_w\bigl(s(c_m - \Delta_y e_y),\ y\bigr)
      - \frac{1}{\alpha N}\sum_{i}\sum_k w_k\,U_{y_i k}\log p_{m,ik}\Bigr]
      - \frac{\lambda}{2}\,\frac1J\sum_{j=1}^J \log \operatorname{Var}_m(\theta_{m,j})

where c_m are member m's cosines, Δ the LDAM margins (∝ n^{−1/4}, largest ``max_margin`` = 0.5)
and s = 30; CE_w is cross-entropy with class weights w_k = 1/n_k (a weighted mean, as
``F.cross_entropy(weight=...)``) once re-weighting is on (the code's ``reweight_epoch``, 160 of 200
epochs; before it w = 1 and there is no utility term); U is the utility matrix of the decision loss
(``U[c, k]`` the utility of deciding k when the class is c; the code's tail-sensitive choice is
u·[k < c] with u = −1, classes indexed head first), α its temperature (0.002 in the code's
configs); p_m = softmax of the margined logits; the last term rewards diverse members: θ_m are the
entries of member m's head weights, Var_m their population variance over the members, and
λ = exp(−epoch/τ) (τ = 40 in the configs) anneals it; it is left out for one member. The ensemble
predicts with the mean of the members' logits s·c_m.

The code's default run passes no utility (``utility_option="none"``), so the objective as run is
the members' LDAM-DRW loss (with inverse-frequency weights) plus the diversity term.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._validation import check_number, describe
from ..margin.transforms import cosine_logits
from ..registry import register_method
from .long_tail import _counts, ldam_logits, ldam_loss, ldam_margins

__all__ = ["CosineHead", "bayes_lt_loss", "ensemble_log_variance", "tail_sensitive_utility"]


@register_method(kind="head", family="imbalance", paper="cao2019ldam")
class CosineHead(nn.Module):
    """A bias-free linear layer on unit features and unit class weights: ``forward(x)`` returns the
    cosines cos(x, w_k) (N, C), which the caller scales (LDAM's code: ``NormedLinear``, s = 30)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        for arg, v in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"CosineHead: {arg} must be a positive int; got {v!r}.")
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-1.0, 1.0))

    def forward(self, x: Tensor) -> Tensor:
        return cosine_logits(x, self.weight)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}"


@register_method(kind="building block", family="imbalance", paper="li2023bayesian")
def ensemble_log_variance(weights: Sequence[Tensor]) -> Tensor:
    r"""(1/J) Σ_j log Var_m(θ_{m,j}): the mean log of the population variance over the M ≥ 2
    members of each entry of their parameters ``weights`` (M tensors of one shape). Bayes-LT's
    diversity term (the code's ``logdet``); −∞ where all members agree on an entry."""
    name = "ensemble_log_variance"
    if isinstance(weights, Tensor) or not isinstance(weights, Sequence) or len(weights) < 2:
        raise ValueError(f"{name}: pass a sequence of at least two tensors (one per member); got {describe(weights)}.")
    shape = weights[0].shape
    if any(not isinstance(w, Tensor) or w.shape != shape or not w.is_floating_point() for w in weights):
        raise ValueError(f"{name}: every member's tensor must be floating with the shape {tuple(shape)}.")
    stack = torch.stack(list(weights))
    var = (stack - stack.mean(0)).pow(2).mean(0)
    return var.log().mean()


@register_method(kind="building block", family="imbalance", paper="li2023bayesian")
def tail_sensitive_utility(num_classes: int, value: float = -1.0, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The code's tail-sensitive utility matrix U (C, C): ``U[c, k] = value`` when k < c (a class
    nearer the head decided for class c, classes indexed head first), else 0."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"tail_sensitive_utility: num_classes must be a positive int; got {num_classes!r}.")
    value = check_number("tail_sensitive_utility", "value", value)
    k = torch.arange(num_classes)
    return value * (k[None, :] < k[:, None]).to(dtype)


@register_method(kind="stateful loss", family="imbalance", paper="li2023bayesian")
def bayes_lt_loss(member_cosines: Tensor | Sequence[Tensor], target: Tensor, *, class_counts,
                  head_weights: Sequence[Tensor] | None = None, reweight: bool = False, diversity: float = 0.0,
                  max_margin: float = 0.5, scale: float = 30.0, utility: Tensor | None = None,
                  alpha: float = 0.002) -> Tensor:
    r"""Bayes-LT's objective (module docstring): the members' LDAM losses on their cosines
    ``member_cosines`` (M, N, C) (or M tensors (N, C)), with inverse-frequency class weights when
    ``reweight`` (and then the utility term, if ``utility`` (C, C) is given, at temperature
    ``alpha``), minus ``diversity``/2 × :func:`ensemble_log_variance` of ``head_weights`` (the
    members' head weights; needed when ``diversity`` > 0 and M > 1). ``class_counts`` (C,) are the
    training counts. One member, ``reweight=False`` and no utility is :func:`ldam_loss`.
    """
    name = "bayes_lt_loss"
    if not isinstance(member_cosines, Tensor):
        if not isinstance(member_cosines, Sequence) or not member_cosines:
            raise ValueError(f"{name}: member_cosines must be (M, N, C) or a sequence of M (N, C) tensors.")
        member_cosines = torch.stack(list(member_cosines))
    if member_cosines.dim() != 3 or not member_cosines.is_floating_point():
        raise ValueError(f"{name}: member_cosines must be floating (M, N, C); got {describe(member_cosines)}.")
    m, _, c = member_cosines.shape
    counts = _counts(name, class_counts)
    if counts is None or counts.numel() != c:
        raise ValueError(f"{name}: class_counts must give one training count per class ({c}); got "
                         f"{None if counts is None else counts.numel()} entries.")
    if not isinstance(reweight, bool):
        raise TypeError(f"{name}: reweight must be a bool (True after the re-weighting epoch); got {reweight!r}.")
    diversity = check_number(name, "diversity", diversity, low=0.0)
    alpha = check_number(name, "alpha", alpha, low=0.0, low_open=True)
    dev, dt = member_cosines.device, member_cosines.dtype
    w = (1.0 / counts).to(device=dev, dtype=dt) if reweight else None
    if utility is not None and (not isinstance(utility, Tensor) or utility.shape != (c, c)):
        raise ValueError(f"{name}: utility must be a (C, C) = ({c}, {c}) tensor, U[c, k] the utility of deciding k "
                         f"for class c; got {describe(utility)}.")
    with_gain = utility is not None and reweight
    if with_gain:
        delta = ldam_margins(counts, max_margin).to(device=dev, dtype=dt)
        gain_weights = w * utility.to(device=dev, dtype=dt)[target]
    total = member_cosines.new_zeros(())
    for z in member_cosines:
        term = ldam_loss(z, target, class_counts=counts, max_margin=max_margin, scale=scale, weight=w)
        if with_gain:
            gain = (gain_weights * torch.log_softmax(ldam_logits(z, target, delta, scale), 1)).sum()
            term = term - gain / (len(target) * alpha)
        total = total + term
    total = total / m
    if m > 1 and diversity > 0:
        if head_weights is None or len(head_weights) != m:
            raise ValueError(f"{name}: diversity > 0 needs head_weights, one tensor per member ({m}).")
        total = total - 0.5 * diversity * ensemble_log_variance(head_weights)
    return total
