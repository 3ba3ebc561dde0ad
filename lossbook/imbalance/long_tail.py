r"""Long-tail losses: logit adjustment, balanced softmax, class-balanced, LDAM and VS, and the Bayes decision.

Each loss takes the training set's class counts n (``class_counts``, shape (C,)); π = n / Σn are the
training priors. ``class_counts=None`` means equal counts, where every loss here except LDAM with a
margin is cross-entropy. Because they need the counts (an input besides ``(input, target)``), they
are methods of kind "stateful loss", not registered losses; each still takes torch's options
through the engine (:func:`lossbook.engine.class_loss`): ``weight``, ``ignore_index``,
``label_smoothing``, ``reduction``, and probability targets (all but LDAM), with
:func:`torch.nn.functional.cross_entropy`'s semantics. The Modules keep the counts as a buffer.

.. math::

    \text{logit adjustment:}\quad & \ell = \mathrm{CE}(z + \tau\log\pi,\ y) \\
    \text{balanced softmax:}\quad & \ell = -\log\frac{n_y e^{z_y}}{\sum_j n_j e^{z_j}} = \mathrm{CE}(z + \log\pi,\ y) \\
    \text{class-balanced:}\quad & \ell = w_y\,\mathrm{CE}(z, y),\ w_k \propto \frac{1-\beta}{1-\beta^{n_k}},\ \textstyle\sum_k w_k = C \\
    \text{LDAM:}\quad & \ell = \mathrm{CE}(s(z - \Delta_y e_y),\ y),\ \Delta_k \propto n_k^{-1/4},\ \max_k\Delta_k = m \\
    \text{VS:}\quad & \ell = \mathrm{CE}(\delta\odot z + \tau\log\pi,\ y),\ \delta_k = (n_k/n_{\max})^{\gamma}

Logit adjustment is Menon et al. (2021); balanced softmax is Ren et al. (2020), the same loss as
logit adjustment at τ = 1; the class-balanced weights are Cui et al. (2019)'s effective numbers;
LDAM is Cao et al. (2019) (margins normalised as in their code, ``max_margin`` 0.5 and ``scale`` 30);
VS is Kini et al. (2021) (δ multiplies the logits, as in the VS code used by the saddle-point paper,
val-iisc/Saddle-LongTail).

:func:`bayes_decision` is the decision side: the class that minimises the expected cost
Σ_c L(c, k) p(c | x) under a cost matrix L, after moving the posterior from the training priors to
the test priors (default: uniform). With the 0–1 cost and uniform test priors it is
argmax_k z_k − log π_k: post-hoc logit adjustment (Menon et al.), the plug-in decision that the
Bayesian-decision-theory view of long-tailed classification (Li & Zhang, 2023) starts from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._validation import check_logits, check_number, describe
from ..engine import ClassOptions, class_loss
from ..registry import register_method

__all__ = [
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "VSLoss",
    "balanced_softmax_loss",
    "bayes_decision",
    "class_balanced_loss",
    "class_balanced_weights",
    "class_priors",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_loss",
    "vs_loss",
]


def _counts(name: str, class_counts) -> Tensor | None:
    """``class_counts`` as a float64 CPU tensor of positive counts (None stays None)."""
    if class_counts is None:
        return None
    if isinstance(class_counts, Tensor):
        counts = class_counts.detach().to("cpu", torch.float64)
    elif isinstance(class_counts, Sequence) and not isinstance(class_counts, (str, bytes)):
        try:
            counts = torch.tensor([float(v) for v in class_counts], dtype=torch.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: class_counts must hold numbers; got {class_counts!r}.") from None
    else:
        raise TypeError(f"{name}: class_counts must be a tensor or a sequence of C counts (e.g. "
                        f"torch.bincount(y_train, minlength=C)); got {type(class_counts).__name__}.")
    if counts.dim() != 1 or counts.numel() < 1:
        raise ValueError(f"{name}: class_counts must be one count per class, shape (C,); got {describe(counts)}.")
    if not torch.isfinite(counts).all() or bool((counts <= 0).any()):
        raise ValueError(f"{name}: every class count must be finite and > 0 (a class absent from training has "
                         f"no prior); got {counts.tolist()}. Use torch.bincount(y_train, minlength=C).clamp_min(1).")
    return counts


def class_priors(class_counts, *, name: str = "class_priors") -> Tensor:
    """The priors π = n / Σn of the class counts ``class_counts`` (float64, shape (C,))."""
    counts = _counts(name, class_counts)
    if counts is None:
        raise ValueError(f"{name}: class_counts is required; pass torch.bincount(y_train, minlength=C).")
    return counts / counts.sum()


def _log_prior(name: str, counts: Tensor | None, z: Tensor) -> Tensor | None:
    """log π on the logits' device and dtype, checked against their number of classes."""
    if counts is None:
        return None
    if counts.numel() != z.shape[1]:
        raise ValueError(f"{name}: class_counts has {counts.numel()} entries but the logits have {z.shape[1]} "
                         "classes; pass one count per class.")
    return torch.log(counts / counts.sum()).to(device=z.device, dtype=z.dtype)


def _ce_terms(z: Tensor) -> Tensor:
    return -torch.log_softmax(z, dim=1)


class _CountsLoss(nn.Module):
    """A loss Module that keeps the training class counts as a buffer (it follows ``.to(device)``)
    and its hyper-parameters and torch options as attributes; ``forward(input, target)`` calls the
    function. The losses need the counts, an input besides (input, target), so they are methods of
    kind "stateful loss" rather than registered losses; they use the engine's torch options all the same."""

    _function = None

    def __init__(self, class_counts=None, **kwargs) -> None:
        super().__init__()
        counts = _counts(type(self).__name__, class_counts)
        weight = kwargs.pop("weight", None)
        # validate now, not at the first forward: one call on an empty batch
        self.register_buffer("class_counts", counts)
        self.register_buffer("weight", weight)
        self.kwargs = kwargs
        z = torch.zeros(0, 1 if counts is None else counts.numel(), dtype=torch.float64)
        type(self)._function(z, torch.zeros(0, dtype=torch.long), class_counts=counts, **kwargs)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return type(self)._function(input, target, class_counts=self.class_counts, weight=self.weight, **self.kwargs)

    def extra_repr(self) -> str:
        n = None if self.class_counts is None else self.class_counts.numel()
        return ", ".join([f"classes={n}"] + [f"{k}={v!r}" for k, v in self.kwargs.items()])


# --- logit adjustment and balanced softmax -----------------------------------------------------------------


def _check_la(class_counts=None, tau=1.0):
    return _counts("logit_adjusted_loss", class_counts), check_number("logit_adjusted_loss", "tau", tau)


@register_method(kind="stateful loss", family="imbalance", paper="menon2021longtail")
def logit_adjusted_loss(input: Tensor, target: Tensor, *, class_counts: Tensor | Sequence[float] | None = None,
                        tau: float = 1.0, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Logit-adjusted loss of Menon et al. (2021): cross-entropy of z + τ log π, π the training
    priors from ``class_counts`` (C,). Training with it and predicting argmax z targets the balanced
    error: the tail's logits are raised during training, so they need no raise at test time.
    ``tau`` = 1 is the paper's choice; τ = 0 (or ``class_counts=None``) is cross-entropy.
    """
    counts, tau = _check_la(class_counts, tau)

    def per_class(z: Tensor, y: Tensor | None) -> Tensor:
        log_pi = _log_prior("logit_adjusted_loss", counts, z)
        return _ce_terms(z if log_pi is None or tau == 0.0 else z + tau * log_pi)

    return class_loss("logit_adjusted_loss", input, target, per_class=per_class, prob_target=True, **options)


@register_method(kind="stateful loss", family="imbalance", paper="menon2021longtail")
class LogitAdjustedLoss(_CountsLoss):
    """Module form of :func:`lossbook.functional.logit_adjusted_loss`: ``LogitAdjustedLoss(class_counts, ...)`` keeps the counts as a buffer."""

    _function = staticmethod(logit_adjusted_loss)


def _check_bs(class_counts=None):
    return _counts("balanced_softmax_loss", class_counts)


@register_method(kind="stateful loss", family="imbalance", paper="ren2020balanced")
def balanced_softmax_loss(input: Tensor, target: Tensor, *, class_counts: Tensor | Sequence[float] | None = None,
                          **options: Unpack[ClassOptions]) -> Tensor:
    r"""Balanced softmax of Ren et al. (2020): −log(n_y e^{z_y} / Σ_j n_j e^{z_j}) with the training
    class counts n, the log-likelihood of the training labels under the softmax of z re-weighted by
    the priors; the model's own z then estimates the balanced posterior. It equals
    :func:`logit_adjusted_loss` at τ = 1; equal counts (or ``class_counts=None``) give cross-entropy.
    """
    counts = _check_bs(class_counts)
    return logit_adjusted_loss(input, target, class_counts=counts, tau=1.0, **options)


@register_method(kind="stateful loss", family="imbalance", paper="ren2020balanced")
class BalancedSoftmaxLoss(_CountsLoss):
    """Module form of :func:`lossbook.functional.balanced_softmax_loss`: ``BalancedSoftmaxLoss(class_counts, ...)`` keeps the counts as a buffer."""

    _function = staticmethod(balanced_softmax_loss)


# --- class-balanced (effective number) ----------------------------------------------------------------------


def _check_cb(class_counts=None, beta=0.999):
    return (_counts("class_balanced_loss", class_counts),
            check_number("class_balanced_loss", "beta", beta, low=0.0, high=1.0, high_open=True))


@register_method(kind="building block", family="imbalance", paper="cui2019classbalanced")
def class_balanced_weights(class_counts, beta: float = 0.999) -> Tensor:
    r"""Cui et al. (2019)'s class weights w_k ∝ 1/E_{n_k}, E_n = (1 − βⁿ)/(1 − β) the effective number,
    normalised so that Σ_k w_k = C (float64, shape (C,)). β = 0 gives equal weights, β → 1 inverse
    frequencies. LDAM-DRW's deferred re-weighting (kaidic/LDAM-DRW ``cifar_train.py``, ``--train_rule
    DRW``) switches to these weights with β = 0.9999 for the last epochs."""
    counts, beta = _check_cb(class_counts, beta)
    if counts is None:
        raise ValueError("class_balanced_weights: class_counts is required; pass torch.bincount(y_train, minlength=C).")
    # effective number E_n = (1 − β^n)/(1 − β); β = 0 gives E_n = 1 (no re-weighting)
    effective = -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=torch.float64))) / (1 - beta)
    w = 1.0 / effective
    return w * (len(w) / w.sum())


def _effective_weights(counts: Tensor | None, beta: float, z: Tensor) -> Tensor | None:
    if counts is None:
        return None
    if counts.numel() != z.shape[1]:
        raise ValueError(f"class_balanced_loss: class_counts has {counts.numel()} entries but the logits have "
                         f"{z.shape[1]} classes; pass one count per class.")
    return class_balanced_weights(counts, beta).to(device=z.device, dtype=z.dtype)


@register_method(kind="stateful loss", family="imbalance", paper="cui2019classbalanced")
def class_balanced_loss(input: Tensor, target: Tensor, *, class_counts: Tensor | Sequence[float] | None = None,
                        beta: float = 0.999, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Class-balanced softmax cross-entropy of Cui et al. (2019): row i weighted by
    w_{y_i} ∝ 1/E_{n_{y_i}}, the inverse effective number E_n = (1 − βⁿ)/(1 − β), normalised so that
    Σ_k w_k = C. β → 1 approaches inverse-frequency weights; β = 0 (or ``class_counts=None``) is
    cross-entropy. The weights are part of the formula: ``"mean"`` divides by the number of rows
    (as the paper's code does), and torch's ``weight`` multiplies on top.
    """
    counts, beta = _check_cb(class_counts, beta)

    def per_class(z: Tensor, y: Tensor | None) -> Tensor:
        w = _effective_weights(counts, beta, z)
        return _ce_terms(z) if w is None else w * _ce_terms(z)

    return class_loss("class_balanced_loss", input, target, per_class=per_class, prob_target=True, **options)


@register_method(kind="stateful loss", family="imbalance", paper="cui2019classbalanced")
class ClassBalancedLoss(_CountsLoss):
    """Module form of :func:`lossbook.functional.class_balanced_loss`: ``ClassBalancedLoss(class_counts, ...)`` keeps the counts as a buffer."""

    _function = staticmethod(class_balanced_loss)


# --- LDAM -------------------------------------------------------------------------------------------------


def _check_ldam(class_counts=None, max_margin=0.5, scale=30.0):
    return (_counts("ldam_loss", class_counts), check_number("ldam_loss", "max_margin", max_margin, low=0.0),
            check_number("ldam_loss", "scale", scale, low=0.0, low_open=True))


def ldam_margins(class_counts, max_margin: float = 0.5) -> Tensor:
    """LDAM's margins Δ_k ∝ n_k^{−1/4}, scaled so that the largest (the rarest class's) is ``max_margin``."""
    counts = _counts("ldam_margins", class_counts)
    if counts is None:
        raise ValueError("ldam_margins: class_counts is required; pass torch.bincount(y_train, minlength=C).")
    m = counts.pow(-0.25)
    return m * (max_margin / m.max())


def ldam_logits(z: Tensor, y: Tensor, delta: Tensor, scale: float) -> Tensor:
    """LDAM's logits s·(z − Δ_y e_y): the target logit of each row lowered by its class's margin
    ``delta`` (C,), then scaled by ``scale``."""
    onehot = torch.zeros_like(z).scatter(1, y.unsqueeze(1), 1.0)
    return scale * (z - onehot * delta[y].unsqueeze(1))


@register_method(kind="stateful loss", family="imbalance", paper="cao2019ldam")
def ldam_loss(input: Tensor, target: Tensor, *, class_counts: Tensor | Sequence[float] | None = None,
              max_margin: float = 0.5, scale: float = 30.0, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Label-distribution-aware margin loss of Cao et al. (2019): cross-entropy of s·(z − Δ_y e_y),
    the target logit lowered by a class margin Δ_y ∝ n_y^{−1/4} (rarer classes get larger margins),
    normalised so that max Δ = ``max_margin``; ``scale`` s multiplies the logits (the paper's code
    uses normalised features and s = 30). ``class_counts=None`` gives every class the margin
    ``max_margin``; ``max_margin=0, scale=1`` is cross-entropy. Class-index targets only.
    """
    counts, max_margin, scale = _check_ldam(class_counts, max_margin, scale)

    def per_class(z: Tensor, y: Tensor) -> Tensor:
        if counts is None:
            delta = torch.full((z.shape[1],), max_margin, dtype=z.dtype, device=z.device)
        else:
            if counts.numel() != z.shape[1]:
                raise ValueError(f"ldam_loss: class_counts has {counts.numel()} entries but the logits have "
                                 f"{z.shape[1]} classes; pass one count per class.")
            delta = ldam_margins(counts, max_margin).to(device=z.device, dtype=z.dtype)
        return _ce_terms(ldam_logits(z, y, delta, scale))

    return class_loss("ldam_loss", input, target, per_class=per_class, **options)


@register_method(kind="stateful loss", family="imbalance", paper="cao2019ldam")
class LDAMLoss(_CountsLoss):
    """Module form of :func:`lossbook.functional.ldam_loss`: ``LDAMLoss(class_counts, ...)`` keeps the counts as a buffer."""

    _function = staticmethod(ldam_loss)


# --- VS ---------------------------------------------------------------------------------------------------


def _check_vs(class_counts=None, gamma=0.3, tau=1.0):
    return (_counts("vs_loss", class_counts), check_number("vs_loss", "gamma", gamma, low=0.0),
            check_number("vs_loss", "tau", tau))


@register_method(kind="stateful loss", family="imbalance", paper="kini2021vs")
def vs_loss(input: Tensor, target: Tensor, *, class_counts: Tensor | Sequence[float] | None = None,
            gamma: float = 0.3, tau: float = 1.0, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Vector-scaling loss of Kini et al. (2021): cross-entropy of δ ⊙ z + τ log π, a multiplicative
    logit scale δ_k = (n_k/n_max)^γ (rare classes' logits shrunk, so they must grow larger: a margin
    that acts late in training) and the additive logit adjustment τ log π. γ = 0, τ = 0 (or
    ``class_counts=None``) is cross-entropy; the defaults γ = 0.3, τ = 1 are those the saddle-point
    paper's VS baseline uses (val-iisc/Saddle-LongTail). Predict with argmax z.
    """
    counts, gamma, tau = _check_vs(class_counts, gamma, tau)

    def per_class(z: Tensor, y: Tensor | None) -> Tensor:
        log_pi = _log_prior("vs_loss", counts, z)
        if log_pi is None:
            return _ce_terms(z)
        delta = torch.exp(gamma * (log_pi - log_pi.max()))  # (n_k/n_max)^γ
        return _ce_terms(delta * z + tau * log_pi)

    return class_loss("vs_loss", input, target, per_class=per_class, prob_target=True, **options)


@register_method(kind="stateful loss", family="imbalance", paper="kini2021vs")
class VSLoss(_CountsLoss):
    """Module form of :func:`lossbook.functional.vs_loss`: ``VSLoss(class_counts, ...)`` keeps the counts as a buffer."""

    _function = staticmethod(vs_loss)


# --- the Bayes decision -------------------------------------------------------------------------------------


@register_method(kind="building block", family="imbalance", paper="li2023bayesian")
def bayes_decision(logits: Tensor, *, class_counts=None, test_priors=None, cost: Tensor | None = None,
                   tau: float = 1.0) -> Tensor:
    r"""The Bayes decision argmin_k Σ_c L(c, k) p̃(c | x) of a model trained on long-tailed data.

    ``logits`` (N, C) of a model trained with plain cross-entropy estimate the training posterior;
    with the training ``class_counts`` the posterior is moved to ``test_priors`` (default uniform):
    p̃(c | x) ∝ p(c | x) (π_test,c / π_c)^τ (τ = 1: Bayes' rule; other τ temper the correction).
    ``cost`` L (C, C), L[c, k] the cost of deciding k when the class is c, defaults to the 0–1 cost,
    where the decision is argmax_k z_k − τ log π_k + τ log π_test,k (post-hoc logit adjustment).
    Returns int64 decisions (N,). ``class_counts=None`` leaves the posterior as it is.
    """
    name = "bayes_decision"
    check_logits(name, logits)
    tau = check_number(name, "tau", tau)
    c = logits.shape[1]
    z = logits.detach()
    if class_counts is not None:
        log_pi = _log_prior(name, _counts(name, class_counts), z)
        log_test = 0.0 if test_priors is None else torch.log(class_priors(test_priors, name=name)).to(z)
        if test_priors is not None and log_test.numel() != c:
            raise ValueError(f"{name}: test_priors has {log_test.numel()} entries but the logits have {c} classes.")
        z = z + tau * (log_test - log_pi)
    if cost is None:
        return z.argmax(1)
    if not isinstance(cost, Tensor) or cost.shape != (c, c) or not cost.is_floating_point():
        raise ValueError(f"{name}: cost must be a floating (C, C) = ({c}, {c}) matrix, cost[c, k] the cost of "
                         f"deciding k for class c; got {describe(cost)}.")
    risk = torch.softmax(z, 1) @ cost.to(z)
    return risk.argmin(1)
