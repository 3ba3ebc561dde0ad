r"""Other output functions: ReLU outputs (Agarap, 2018), one-vs-the-rest, and SOVR's switch between
cross-entropy and one-vs-the-rest for the samples with the smallest logit margins (Kanai et al., ICML 2023).

* **ReLU outputs**: the class scores are o = ReLU(z) and the prediction is argmax o; the loss here is
  cross-entropy on o, −log softmax(ReLU(z))_y. A class whose score is negative for every input
  ("dead output") gets no gradient through the ReLU.
* **One-vs-the-rest (OVR)**: C independent logistic problems,

  .. math:: \ell_{\mathrm{OVR}}(z, y) = -\log\sigma(z_y) - \sum_{k\ne y}\log\bigl(1 - \sigma(z_k)\bigr)
            = \mathrm{softplus}(-z_y) + \sum_{k\ne y}\mathrm{softplus}(z_k).

* **SOVR**: in a batch, the samples whose logit margin z_y − max_{k≠y} z_k is among the smallest (a
  fraction ``fraction`` of the batch) get ℓ_OVR, the others cross-entropy; the choice is made on
  the current logits and does not pass gradients. The fraction is a hyper-parameter (the book's
  chapter chooses it on validation data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_logits, check_number, check_reduction, counted_rows, reduce_loss, target_kind
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss, register_method

__all__ = ["relu_output_loss", "ReLUOutputLoss", "one_vs_rest_loss", "one_vs_rest_terms", "OneVsRestLoss",
           "logit_margin", "sovr_loss", "SOVRAux"]


#: What both losses below declare: neither shift- nor scale-invariant, nonnegative, unbounded, not symmetric.
_PROPERTIES = {"shift_invariant": False, "scale_invariant": False, "nonnegative": True, "bounded": False,
               "symmetric": False}


@register_loss("relu_output_loss", family="alternatives", paper="agarap2018relu", supports=CLASS_OPTIONS,
               properties=_PROPERTIES,
               summary="ReLU outputs: cross-entropy on o = ReLU(z), the prediction argmax o.",
               formula=r"\ell(z,y) = -\log \mathrm{softmax}(\mathrm{ReLU}(z))_y")
def relu_output_loss(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Cross-entropy on ReLU outputs, −log softmax(ReLU(z))_y (Agarap, 2018): the class scores are ReLU(z).

    Negative scores are cut to 0, so a class whose score stays negative gets no gradient from this loss.
    """
    return class_loss("relu_output_loss", input, target,
                      per_class=lambda z, y: -torch.log_softmax(F.relu(z), dim=1), prob_target=True, **options)


class ReLUOutputLoss(LossModule, loss="relu_output_loss"):
    """Module form of :func:`lossbook.functional.relu_output_loss`."""


def one_vs_rest_terms(logits: Tensor) -> Tensor:
    r"""The per-class one-vs-the-rest terms softplus(−z_k) + Σ_{j≠k} softplus(z_j), shape (N, C)."""
    pos = F.softplus(logits)
    return F.softplus(-logits) + (pos.sum(dim=1, keepdim=True) - pos)


@register_loss("one_vs_rest_loss", family="alternatives", paper="kanai2023sovr", supports=CLASS_OPTIONS,
               properties=_PROPERTIES,
               summary="One-vs-the-rest −log σ(z_y) − Σ_{k≠y} log(1 − σ(z_k)): one logistic problem per class.",
               formula=r"\ell(z,y) = -\log\sigma(z_y) - \sum_{k\ne y}\log(1-\sigma(z_k))")
def one_vs_rest_loss(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""One-vs-the-rest loss softplus(−z_y) + Σ_{k≠y} softplus(z_k): the target's logit pushed up and every
    other logit down, each by its own logistic loss (the loss SOVR switches to)."""
    return class_loss("one_vs_rest_loss", input, target, per_class=lambda z, y: one_vs_rest_terms(z),
                      prob_target=True, **options)


class OneVsRestLoss(LossModule, loss="one_vs_rest_loss"):
    """Module form of :func:`lossbook.functional.one_vs_rest_loss`."""


@register_method(kind="analysis", family="alternatives", paper="kanai2023sovr")
def logit_margin(input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
    r"""The logit margin z_y − max_{k≠y} z_k of each row, shape (N,) (negative when misclassified)."""
    check_logits("logit_margin", input)
    target_kind("logit_margin", input, target, allow_prob=False)
    if input.shape[1] < 2:
        raise ValueError("logit_margin: needs at least 2 classes; got input of shape "
                         f"{tuple(input.shape)}.")
    counted_rows("logit_margin", target, input.shape[1], None)
    z_y = input.gather(1, target.unsqueeze(1)).squeeze(1)
    others = input.scatter(1, target.unsqueeze(1), float("-inf"))
    return z_y - others.max(dim=1).values


@dataclass(frozen=True)
class SOVRAux:
    """What ``sovr_loss(..., return_aux=True)`` returns besides the loss: ``switched`` (N,) is True for the
    rows that got the one-vs-the-rest loss; ``margin`` (N,) the logit margins the choice was made on."""

    loss: Tensor
    switched: Tensor
    margin: Tensor


@register_method(kind="stateful loss", family="alternatives", paper="kanai2023sovr")
def sovr_loss(input: Tensor, target: Tensor, *, fraction: float = 0.4, reduction: str = "mean",  # noqa: A002
              return_aux: bool = False):
    r"""Switching one-vs-the-rest (SOVR): the ⌈fraction·N⌉ rows with the smallest logit margins
    z_y − max_{k≠y} z_k get :func:`one_vs_rest_loss`, the others cross-entropy.

    The rows are chosen within the batch (so this is not a per-example loss), on the current logits,
    without gradient; ties go to the earlier row. ``fraction`` ∈ [0, 1]: 0 is cross-entropy, 1 is
    one-vs-the-rest; 0.4 is our default, not the paper's (the book chooses it on validation).
    ``reduction`` is ``"none" | "mean" | "sum"``; ``return_aux`` gives a :class:`SOVRAux`.
    """
    fraction = check_number("sovr_loss", "fraction", fraction, low=0.0, high=1.0)
    check_reduction("sovr_loss", reduction)
    margin = logit_margin(input, target).detach()
    n = input.shape[0]
    k = min(n, math.ceil(fraction * n - 1e-9))
    switched = torch.zeros(n, dtype=torch.bool, device=input.device)
    if k > 0:
        order = torch.sort(margin, stable=True).indices
        switched[order[:k]] = True
    ce = -torch.log_softmax(input, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    ovr = one_vs_rest_terms(input).gather(1, target.unsqueeze(1)).squeeze(1)
    loss = reduce_loss(torch.where(switched, ovr, ce), reduction)
    return SOVRAux(loss, switched, margin) if return_aux else loss
