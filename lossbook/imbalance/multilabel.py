r"""Multi-label losses: the asymmetric loss (ASL) and the univariate, pairwise and re-weighted macro-AUC losses.

Scores z (N, K), one logit per label; labels Y (N, K) of 0/1 (floating). p = σ(z).

**ASL** (Ridnik et al., 2021). Per label, with a probability margin m that shifts the negatives'
probability, p_m = max(p − m, 0):

.. math::

    L_+ = (1-p)^{\gamma_+}\log p,\qquad L_- = p_m^{\gamma_-}\log(1-p_m),\qquad
    \ell = -\sum_k \bigl(y_k L_+ + (1-y_k) L_-\bigr).

The paper's setting is γ₊ = 0, γ₋ = 4, m = 0.05 and these are our defaults. The authors' code
(Alibaba-MIIL/ASL, ``AsymmetricLoss``) defaults to γ₊ = 1 and returns the **sum** over the batch
and labels: ``asymmetric_loss(z, y, gamma_pos=1, reduction="sum")`` is its value. Our ``"mean"``
is the mean over rows of the per-row sum over labels.

**Macro-AUC losses** (Wu et al., 2023, "Towards understanding generalization of macro-AUC in
multi-label learning"), with a surrogate φ of a margin (logistic log(1 + e^{−t}) or squared hinge
(1 − t)₊²), P_k and N_k label k's positive and negative rows in the batch:

.. math::

    \text{univariate:}\ & \frac1{NK}\sum_{i,k} \varphi\bigl((2y_{ik}-1)z_{ik}\bigr) \\
    \text{pairwise:}\ & \frac1K\sum_k \frac{1}{|P_k||N_k|}\sum_{i\in P_k, j\in N_k} \varphi(z_{ik} - z_{jk}) \\
    \text{re-weighted univariate:}\ & \frac1K\sum_k \Bigl(\frac1{|P_k|}\sum_{i\in P_k}\varphi(z_{ik})
        + \frac1{|N_k|}\sum_{j\in N_k}\varphi(-z_{jk})\Bigr)

The paper's point: the univariate loss's bound on the macro-AUC risk grows with the label-wise
imbalance (1/min_k τ_k, τ_k the share of the minority side of label k), the pairwise and
re-weighted losses' do not. These losses read the whole batch, so they are methods, not
registered (per-row) losses.

**PU-MLC** (Yuan, Zhang & Huang, 2023, "Positive label is all you need for multi-label
classification"; the authors' code TAKELAMAG/PU-MLC, ``src/loss_functions/vpu_loss.py``,
``train.py``). Only the annotated positives are used (P_k: label k's annotated rows); every row is
unlabeled data. A per-label temperature s_k = min(α·std_i z_{ik}, 1) (the batch's population
standard deviation, no gradient) sharpens p = σ(z/s), and a re-balance factor
w_k = (mean_i p_{ik})^γ (no gradient) weighs the unlabeled term of the variational PU loss:

.. math::

    \ell = \sum_k w_k \log\Bigl(\frac1N\sum_i p_{ik}\Bigr) - \sum_k \frac1{|P_k|}\sum_{i\in P_k}\log p_{ik}

(a label without annotated positives adds only its unlabeled term). The code adds a mixup
penalty: two halves of the batch are mixed, x̃ = λx_a + (1 − λ)x_b with λ ~ Beta(0.3, 0.3), their
soft targets t = 1 on annotated positives and p = σ(z) elsewhere (:func:`pu_soft_target`) mixed
the same way, and :func:`pu_mixup_penalty` Σ_k (1/N) Σ_i (log t̃_{ik} − log σ(z̃_{ik}))² added.
The code's MS-COCO command uses α = 1, γ = 0.55 (VOC: α = 2, γ = 0.85).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_logits, check_number, check_reduction, describe, format_shape, reduce_loss
from ..registry import register_method

__all__ = ["MACRO_AUC_KINDS", "SURROGATES", "asymmetric_loss", "macro_auc_loss", "pu_mixup_penalty", "pu_mlc_loss",
           "pu_soft_target"]

#: The three losses of the macro-AUC paper.
MACRO_AUC_KINDS = ("univariate", "pairwise", "reweighted")
#: Surrogates φ(t) of a margin t.
SURROGATES = ("logistic", "squared_hinge")


def _check_multilabel(name: str, input: Tensor, target: Tensor) -> Tensor:
    check_logits(name, input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{name}: target must be a 0/1 label tensor shaped like input {format_shape(input)}; "
                        f"got {type(target).__name__}.")
    if target.shape != input.shape:
        raise ValueError(f"{name}: target must be a 0/1 label matrix shaped like input {format_shape(input)}; got "
                         f"{describe(target)}. For class indices use F.one_hot(target, C).float().")
    t = target.to(input.dtype)
    if t.numel() and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name}: target must hold 0/1 labels; got values outside {{0, 1}}. Binarise it: "
                         "(target > 0.5).float().")
    return t


@register_method(kind="stateful loss", family="imbalance", paper="ridnik2021asymmetric")
def asymmetric_loss(input: Tensor, target: Tensor, *, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
                    clip: float = 0.05, reduction: str = "mean") -> Tensor:
    r"""Asymmetric loss (ASL) of Ridnik et al. (2021) for multi-label logits ``input`` (N, K) and 0/1
    ``target`` (N, K): −Σ_k [y (1 − p)^{γ₊} log p + (1 − y) p_m^{γ₋} log(1 − p_m)], p = σ(z),
    p_m = max(p − ``clip``, 0). Negatives are down-weighted (γ₋ > γ₊) and easy negatives (p < m)
    discarded. Defaults are the paper's (γ₊ = 0, γ₋ = 4, m = 0.05); the authors' code defaults to
    γ₊ = 1 and returns the sum (``reduction="sum"``). ``reduction``: ``"none"`` (N,) per-row sums over
    labels, ``"mean"`` over rows, ``"sum"``. γ₊ = γ₋ = γ, m = 0 is the binary focal loss summed over labels.
    """
    name = "asymmetric_loss"
    y = _check_multilabel(name, input, target)
    check_reduction(name, reduction)
    gp = check_number(name, "gamma_pos", gamma_pos, low=0.0)
    gn = check_number(name, "gamma_neg", gamma_neg, low=0.0)
    m = check_number(name, "clip", clip, low=0.0, high=1.0, high_open=True)
    log_p = F.logsigmoid(input)
    q = torch.sigmoid(-input)  # 1 − p, formed without a subtraction
    pos = log_p if gp == 0.0 else q.pow(gp) * log_p
    if m > 0.0:
        one_minus_pm = (q + m).clamp(max=1.0)
        log_neg = torch.log(one_minus_pm)
        pm = 1.0 - one_minus_pm
    else:
        log_neg = F.logsigmoid(-input)
        pm = torch.sigmoid(input)
    neg = log_neg if gn == 0.0 else pm.pow(gn) * log_neg
    per_elem = torch.where(y == 1, -pos, -neg)
    return reduce_loss(per_elem.sum(1), reduction)


def _surrogate(name: str, surrogate: str):
    if surrogate == "logistic":
        return lambda t: F.softplus(-t)
    if surrogate == "squared_hinge":
        return lambda t: (1.0 - t).clamp_min(0.0).square()
    raise ValueError(f"{name}: surrogate must be one of {SURROGATES}; got {surrogate!r}.")


@register_method(kind="stateful loss", family="imbalance", paper="wu2023macroauc")
def macro_auc_loss(input: Tensor, target: Tensor, *, kind: str = "pairwise",
                   surrogate: str = "logistic") -> Tensor:
    r"""A macro-AUC training loss of Wu et al. (2023) on a batch: ``kind`` ``"univariate"`` (the mean
    of φ((2y − 1)z) over all entries, i.e. binary cross-entropy for the logistic φ), ``"pairwise"``
    (per label, the mean of φ(z_pos − z_neg) over its positive–negative pairs, averaged over labels)
    or ``"reweighted"`` (per label, the positives' mean of φ(z) plus the negatives' mean of φ(−z),
    averaged over labels). ``surrogate`` φ: ``"logistic"`` or ``"squared_hinge"``. A label with no
    positive or no negative in the batch adds nothing to the pairwise and re-weighted losses (the
    average is over the labels that have both); returns a scalar.
    """
    name = "macro_auc_loss"
    y = _check_multilabel(name, input, target)
    if kind not in MACRO_AUC_KINDS:
        raise ValueError(f"{name}: kind must be one of {MACRO_AUC_KINDS}; got {kind!r}.")
    phi = _surrogate(name, surrogate)
    if input.numel() == 0:
        return input.sum() * 0.0
    if kind == "univariate":
        return phi((2.0 * y - 1.0) * input).mean()
    pos, neg = y, 1.0 - y
    n_pos, n_neg = pos.sum(0), neg.sum(0)
    both = (n_pos > 0) & (n_neg > 0)
    n_labels = both.sum()
    if kind == "reweighted":
        per_label = ((pos * phi(input)).sum(0) / n_pos.clamp_min(1.0)
                     + (neg * phi(-input)).sum(0) / n_neg.clamp_min(1.0))
    else:
        # label by label over its positive × negative pairs only: O(Σ_k |P_k||N_k|) memory, not O(N²K)
        per_label = torch.stack([
            phi(input[y[:, k] == 1, k].unsqueeze(1) - input[y[:, k] == 0, k].unsqueeze(0)).mean()
            if bool(both[k]) else input[:, k].sum() * 0.0
            for k in range(input.shape[1])])
    total = torch.where(both, per_label, torch.zeros_like(per_label)).sum()
    return torch.where(n_labels > 0, total / n_labels.clamp_min(1), total * 0.0)


def _pu_positives(name: str, input: Tensor, target: Tensor) -> Tensor:
    check_logits(name, input)
    if not isinstance(target, Tensor) or target.shape != input.shape:
        raise ValueError(f"{name}: target must be shaped like input {format_shape(input)}, 1 for an annotated "
                         f"positive and 0 (or -1) for anything else; got {describe(target)}.")
    return (target == 1).to(input.dtype)


@register_method(kind="stateful loss", family="imbalance", paper="yuan2023positive")
def pu_mlc_loss(input: Tensor, target: Tensor, *, gamma: float = 0.55, alpha: float = 1.0) -> Tensor:
    r"""PU-MLC's positive-unlabeled multi-label loss (module docstring) on a batch of logits ``input``
    (N, K): ``target`` (N, K) marks the annotated positives with 1; every other entry (0, or −1 for a
    known negative) is treated as unlabeled, as in the authors' code. ``alpha`` scales the per-label
    temperature s_k = min(α·std_i z_ik, 1) (no gradient; a label whose logits are all equal in the
    batch gets s = 1e-6 instead of 0), ``gamma`` the re-balance factor's exponent (defaults: the
    code's MS-COCO command). Summed over labels; log p by ``logsigmoid`` (the code adds 1e-10 inside
    its logs). Returns a scalar.
    """
    name = "pu_mlc_loss"
    pos = _pu_positives(name, input, target)
    gamma = check_number(name, "gamma", gamma, low=0.0)
    alpha = check_number(name, "alpha", alpha, low=0.0, low_open=True)
    if input.shape[0] == 0:
        return input.sum() * 0.0
    with torch.no_grad():
        temp = (alpha * input.std(0, unbiased=False)).clamp(min=1e-6, max=1.0)
    log_p = F.logsigmoid(input / temp)
    n = input.shape[0]
    log_mean_p = torch.logsumexp(log_p, 0) - math.log(n)
    with torch.no_grad():
        rebalance = log_mean_p.exp().pow(gamma)
    n_pos = pos.sum(0)
    positive = torch.where(n_pos > 0, (pos * log_p).sum(0) / n_pos.clamp_min(1.0), torch.zeros_like(n_pos))
    return (rebalance * log_mean_p).sum() - positive.sum()


@register_method(kind="building block", family="imbalance", paper="yuan2023positive")
def pu_soft_target(input: Tensor, target: Tensor) -> Tensor:
    """PU-MLC's soft targets for its mixup penalty: 1 on the annotated positives (``target == 1``),
    σ(z) (with its gradient, as in the authors' code) on every other entry of ``input`` (N, K)."""
    pos = _pu_positives("pu_soft_target", input, target)
    return torch.where(pos == 1, torch.ones_like(input), torch.sigmoid(input))


@register_method(kind="building block", family="imbalance", paper="yuan2023positive")
def pu_mixup_penalty(input: Tensor, soft_target: Tensor) -> Tensor:
    r"""PU-MLC's mixup penalty Σ_k (1/N) Σ_i (log t_ik − log σ(z_ik))² between the logits ``input``
    (N, K) of mixed inputs and their mixed soft targets ``soft_target`` (N, K) in (0, 1] (mix
    :func:`pu_soft_target` of the two halves with the inputs' λ)."""
    name = "pu_mixup_penalty"
    check_logits(name, input)
    if not isinstance(soft_target, Tensor) or soft_target.shape != input.shape:
        raise ValueError(f"{name}: soft_target must be shaped like input {format_shape(input)}; got "
                         f"{describe(soft_target)}.")
    if soft_target.numel() and not bool(((soft_target > 0) & (soft_target <= 1)).all()):
        raise ValueError(f"{name}: soft_target must lie in (0, 1] (mixed pu_soft_target values).")
    if input.shape[0] == 0:
        return input.sum() * 0.0
    return (torch.log(soft_target) - F.logsigmoid(input)).pow(2).mean(0).sum()
