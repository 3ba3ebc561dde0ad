r"""Label smoothing as a penalty on logit distances: MbLS (Liu et al., CVPR 2022) and ACLS (Park et
al., ICCV 2023). Both add to cross-entropy a term that only acts on logits further than a margin
M from the largest one, d_k = max_j z_j − z_k.

MbLS, margin-based label smoothing (official code: cvlab-yonsei/ACLS ``calibrate/losses/mbls.py``,
``configs/loss/mbls.yaml``: margin 10, α 0.1; the paper writes α as λ):

.. math::

    \ell(z, y) = -\log p_y + \frac{\alpha}{C} \sum_k \max(0,\ \max_j z_j - z_k - M).

The official code averages the penalty over the N·C entries (``F.relu(diff - margin).mean()``),
hence the 1/C per row; the gradient flows through max_j z_j too.

ACLS, adaptive and conditional label smoothing (official code: cvlab-yonsei/ACLS
``calibrate/losses/acls.py``, ``configs/loss/acls.yaml``: α 0.1, λ₁ 1, λ₂ 0.1, M 10), with
a = argmax_j z_j (the prediction, not the target) and sg the stop-gradient:

.. math::

    \ell(z, y) = -\log p_y + \alpha\Bigl[\lambda_1 \max(0, z_a - M)^2
        + \frac{\lambda_2}{C - 1} \sum_{k \ne a} \max(0,\ \mathrm{sg}(z_a) - z_k - M)^2\Bigr].

The first term acts on the raw value of the largest logit, so ACLS is not shift-invariant. As in
the official code, every class tied with the maximum counts as "a" (its positive term once per tied
class; none in the negative sum).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_number
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss

__all__ = ["mbls_loss", "mbls_penalty", "acls_loss", "acls_penalty", "MbLSLoss", "ACLSLoss"]


def mbls_penalty(logits: Tensor, *, margin: float = 10.0) -> Tensor:
    r"""MbLS's per-row penalty (1/C) Σ_k max(0, max_j z_j − z_k − M), shape (N,), not yet times α."""
    top = logits.max(dim=1, keepdim=True).values
    return F.relu(top - logits - margin).mean(dim=1)


def acls_penalty(logits: Tensor, *, pos_lambda: float = 1.0, neg_lambda: float = 0.1,
                 margin: float = 10.0) -> Tensor:
    r"""ACLS's per-row regulariser λ₁·max(0, z_a − M)² + λ₂/(C − 1)·Σ_{k≠a} max(0, sg(z_a) − z_k − M)²,
    shape (N,), not yet times α; a is the arg-max class (every class tied with the maximum)."""
    top = logits.max(dim=1, keepdim=True).values
    is_top = (logits.detach() == top.detach()).to(logits.dtype)
    pos = (is_top * F.relu(top - margin) ** 2).sum(dim=1)
    neg = ((1.0 - is_top) * F.relu(top.detach() - logits - margin) ** 2).sum(dim=1)
    return pos_lambda * pos + neg_lambda * neg / max(logits.shape[1] - 1, 1)


def _with_row_penalty(z: Tensor, penalty: Tensor) -> Tensor:
    """ℓ(z_i, k) = −log p_ik + penalty_i for every k: the (N, C) matrix the engine smooths and weights."""
    return penalty.unsqueeze(1) - torch.log_softmax(z, dim=1)


def _check_mbls(margin=10.0, alpha=0.1):
    return (check_number("mbls_loss", "margin", margin, low=0.0),
            check_number("mbls_loss", "alpha", alpha, low=0.0))


@register_loss("mbls_loss", family="calibration", paper="liu2022devil", supports=CLASS_OPTIONS, check=_check_mbls,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": False, "symmetric": False,
                           "reduces_to_ce_when": {"alpha": 0.0}},
               summary="Margin-based label smoothing: CE + (α/C)·Σ_k max(0, max_j z_j − z_k − M) "
                       "(α = 0 is CE).",
               formula=r"\ell(z,y) = -\log p_y + \frac{\alpha}{C}\sum_k \max(0, \max_j z_j - z_k - M)")
def mbls_loss(input: Tensor, target: Tensor, *, margin: float = 10.0, alpha: float = 0.1,
              **options: Unpack[ClassOptions]) -> Tensor:
    r"""Margin-based label smoothing of Liu et al. (2022): CE + (α/C)·Σ_k max(0, max_j z_j − z_k − M).

    ``margin`` M ≥ 0 is the logit distance left free (default 10) and ``alpha`` α ≥ 0 the weight of
    the penalty (the paper's λ, default 0.1; 0 gives cross-entropy), the official code's names and
    defaults. The penalty is averaged over the C classes, as the official code's ``mean()`` does.
    """
    margin, alpha = _check_mbls(margin, alpha)
    return class_loss("mbls_loss", input, target, prob_target=True, **options,
                      per_class=lambda z, y: _with_row_penalty(z, alpha * mbls_penalty(z, margin=margin)))


class MbLSLoss(LossModule, loss="mbls_loss"):
    """Module form of :func:`lossbook.functional.mbls_loss`."""


def _check_acls(alpha=0.1, pos_lambda=1.0, neg_lambda=0.1, margin=10.0):
    return tuple(check_number("acls_loss", arg, value, low=0.0) for arg, value in
                 (("alpha", alpha), ("pos_lambda", pos_lambda), ("neg_lambda", neg_lambda), ("margin", margin)))


@register_loss("acls_loss", family="calibration", paper="park2023acls", supports=CLASS_OPTIONS, check=_check_acls,
               properties={"shift_invariant": False, "nonnegative": True, "bounded": False, "symmetric": False,
                           "reduces_to_ce_when": {"alpha": 0.0}},
               summary="ACLS: CE + α[λ₁·max(0, z_a − M)² + λ₂/(C−1)·Σ_{k≠a} max(0, sg(z_a) − z_k − M)²], "
                       "a = argmax z (α = 0 is CE).",
               formula=r"\ell(z,y) = -\log p_y + \alpha\Big[\lambda_1 \max(0, z_a - M)^2 + "
                       r"\tfrac{\lambda_2}{C-1}\sum_{k\ne a}\max(0, \mathrm{sg}(z_a) - z_k - M)^2\Big],"
                       r"\ a = \arg\max_j z_j")
def acls_loss(input: Tensor, target: Tensor, *, alpha: float = 0.1, pos_lambda: float = 1.0,
              neg_lambda: float = 0.1, margin: float = 10.0, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Adaptive and conditional label smoothing of Park et al. (2023).

    CE + α[λ₁·max(0, z_a − M)² + λ₂/(C − 1)·Σ_{k≠a} max(0, sg(z_a) − z_k − M)²] with a the arg-max
    (predicted) class and sg the stop-gradient: the largest logit is pulled below M and the others
    toward within M of it. Defaults are the official code's: ``alpha`` α = 0.1 (0 gives
    cross-entropy), ``pos_lambda`` λ₁ = 1, ``neg_lambda`` λ₂ = 0.1, ``margin`` M = 10. Not
    shift-invariant: λ₁'s term reads the raw largest logit.
    """
    alpha, pos_lambda, neg_lambda, margin = _check_acls(alpha, pos_lambda, neg_lambda, margin)

    def per_class(z: Tensor, y: Tensor | None) -> Tensor:
        return _with_row_penalty(z, alpha * acls_penalty(z, pos_lambda=pos_lambda, neg_lambda=neg_lambda,
                                                          margin=margin))

    return class_loss("acls_loss", input, target, per_class=per_class, prob_target=True, **options)


class ACLSLoss(LossModule, loss="acls_loss"):
    """Module form of :func:`lossbook.functional.acls_loss`."""
