"""One engine for every loss of the form ℓ(z, y) = φ(log softmax(z)_y).

Cross-entropy (φ(l) = −l) and the whole comp-sum family share it, so they share torch's
semantics for ``weight``, ``ignore_index``, ``label_smoothing``, probability targets and the
reductions:

* index targets: loss_i = w_{y_i}·[(1−ε)·φ(l_{i,y_i})] + (ε/C)·Σ_k w_k φ(l_{ik}); ``"mean"`` divides by
  Σ_i w_{y_i} over the counted rows;
* probability targets q: loss_i = Σ_k w_k q̃_{ik} φ(l_{ik}) with q̃ = (1−ε)q + ε/C; ``"mean"`` divides
  by N.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._validation import (
    check_index_range,
    check_logits,
    check_number,
    check_reduction,
    check_weight,
    reduce_loss,
    target_kind,
)


def per_class_loss(
    name: str,
    logits: Tensor,
    target: Tensor,
    phi: Callable[[Tensor], Tensor],
    *,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    check_logits(name, logits)
    check_reduction(name, reduction)
    kind = target_kind(name, logits, target, allow_prob=True)
    weight = check_weight(name, weight, logits)
    eps = check_number(name, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    n, c = logits.shape
    log_p = torch.log_softmax(logits, dim=1)

    if kind == "prob":
        q = target if eps == 0.0 else (1.0 - eps) * target + eps / c
        if weight is not None:
            q = q * weight
        # where(q > 0, ·, 0) twice: a class with zero target mass contributes 0, even when φ = inf,
        # and passes no NaN back through autograd.
        present = q != 0
        per_sample = torch.where(present, q * phi(torch.where(present, log_p, 0.0)), 0.0).sum(dim=1)
        denom = torch.tensor(float(n), dtype=logits.dtype, device=logits.device)
        return reduce_loss(per_sample, reduction, denominator=denom)

    valid = check_index_range(name, target, c, ignore_index)
    safe_target = torch.where(valid, target, 0)
    w_y = valid.to(logits.dtype)
    if weight is not None:
        w_y = w_y * weight[safe_target]
    per_sample = w_y * phi(log_p.gather(1, safe_target.unsqueeze(1)).squeeze(1))
    if eps > 0.0:
        per_class = phi(log_p)
        if weight is not None:
            per_class = per_class * weight
        smooth = per_class.sum(dim=1) * valid.to(logits.dtype)
        per_sample = (1.0 - eps) * per_sample + (eps / c) * smooth
    return reduce_loss(per_sample, reduction, denominator=w_y.sum())
