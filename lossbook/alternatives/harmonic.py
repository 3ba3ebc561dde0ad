r"""Harmonic loss (Baek, Liu, Tyagi & Tegmark, 2025): distances to class centres instead of dot products.

The harmonic logit of class i is the Euclidean distance from the input x to the class's weight
vector w_i, and the **harmonic max** turns distances into probabilities with an exponent n:

.. math::

    d_i = \sqrt{\lVert w_i - x\rVert_2^2 + \varepsilon},\qquad
    p_i = \frac{d_i^{-n}}{\sum_j d_j^{-n}} = \mathrm{softmax}(-n \log d)_i,\qquad
    \ell(x, y) = -\log p_y .

So the harmonic loss is cross-entropy on the logits −n·log d (:func:`harmonic_logits`), which is
how it is computed here (log-sum-exp, no division by a distance). The probabilities do not change
when x and every w_i are scaled together (scale invariance), and the loss is minimised, for one
example, by moving w_y onto x: the weight vectors are class centres.

ε follows the authors' code (``DistLayer`` in KindXiaoming/grow-crystals, ε = 1e-4, added to the
**squared** distance); it keeps log d finite when x sits on a centre. Their layer returns
(d² + ε)^{−n}, so their ``n`` is half the exponent of the paper's formula above; here ``n`` is the
paper's exponent (``n = 2`` here is their ``n = 1``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import check_embeddings, check_labels, check_number, check_reduction, reduce_loss
from ..registry import register_method

__all__ = ["harmonic_logits", "harmonic_loss", "HarmonicLayer"]


def _check(name: str, n, eps) -> tuple[float, float]:
    n = check_number(name, "n", n, low=0.0, low_open=True)
    eps = check_number(name, "eps", eps, low=0.0)
    return n, eps


def _check_weight(name: str, x: Tensor, weight) -> None:
    if not isinstance(weight, Tensor) or not weight.is_floating_point() or weight.dim() != 2:
        raise TypeError(f"{name}: weight must be a floating tensor of class centres, shape (C, {x.shape[1]}); "
                        f"got {type(weight).__name__ if not isinstance(weight, Tensor) else tuple(weight.shape)}.")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{name}: weight must have shape (C, {x.shape[1]}) to match the input's {x.shape[1]} "
                         f"features; got {tuple(weight.shape)}. Use weight of shape (num_classes, in_features).")


@register_method(kind="building block", family="alternatives", paper="baek2025harmonic")
def harmonic_logits(input: Tensor, weight: Tensor, *, n: float = 2.0, eps: float = 1e-4) -> Tensor:  # noqa: A002
    r"""The harmonic logits −n·log d_i, d_i = sqrt(‖w_i − x‖² + ε), shape (N, C).

    ``softmax`` of them is the harmonic max d_i^{−n} / Σ_j d_j^{−n}; cross-entropy on them is the
    harmonic loss. ``input`` x is (N, D), ``weight`` the class centres (C, D); ``n`` > 0 is the
    harmonic exponent (the paper's; the authors' code's ``n`` is half of it), ``eps`` ≥ 0 is
    added to the squared distance (the authors' 1e-4).
    """
    n, eps = _check("harmonic_logits", n, eps)
    check_embeddings("harmonic_logits", input)
    _check_weight("harmonic_logits", input, weight)
    # ‖w − x‖² expanded as ‖x‖² + ‖w‖² − 2 x·w would cancel near a centre; the direct difference is exact
    sq = (input.unsqueeze(1) - weight.unsqueeze(0)).square().sum(dim=2)
    if eps == 0.0:
        # without ε an input on a centre has distance 0: log 0 = −inf, the logit +inf; keep sqrt's
        # gradient finite elsewhere by working on the squared distance
        return -0.5 * n * torch.log(sq)
    return -0.5 * n * torch.log(sq + eps)


@register_method(kind="stateful loss", family="alternatives", paper="baek2025harmonic")
def harmonic_loss(input: Tensor, weight: Tensor, target: Tensor, *, n: float = 2.0, eps: float = 1e-4,  # noqa: A002
                  reduction: str = "mean") -> Tensor:
    r"""Harmonic loss −log p_y with p = harmonic max of the distances from ``input`` (N, D) to the class
    centres ``weight`` (C, D): cross-entropy on :func:`harmonic_logits`.

    It takes the embeddings and the centres (not logits), so it is a method rather than a registered
    loss; ``reduction`` is ``"none" | "mean" | "sum"``.
    """
    check_reduction("harmonic_loss", reduction)
    check_embeddings("harmonic_loss", input)
    check_labels("harmonic_loss", target, input.shape[0], arg="target")
    logits = harmonic_logits(input, weight, n=n, eps=eps)
    if len(target) and (target.min() < 0 or target.max() >= weight.shape[0]):
        raise ValueError(f"harmonic_loss: target must hold class indices in [0, {weight.shape[0]}); got values in "
                         f"[{int(target.min())}, {int(target.max())}].")
    per_row = -torch.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    return reduce_loss(per_row, reduction)


@register_method(kind="layer", family="alternatives", paper="baek2025harmonic")
class HarmonicLayer(nn.Module):
    """Distance output layer: ``forward(x)`` gives the harmonic logits −n·log d (train them with
    cross-entropy: that is the harmonic loss); ``weight`` (C, D) holds the class centres.

    The centres start as N(0, 1/D) draws (a linear layer's scale); ``probabilities(x)`` is the harmonic max.
    """

    def __init__(self, in_features: int, num_classes: int, *, n: float = 2.0, eps: float = 1e-4) -> None:
        super().__init__()
        for arg, v in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"HarmonicLayer: {arg} must be a positive int; got {v!r}.")
        self.n, self.eps = _check("HarmonicLayer", n, eps)
        self.weight = nn.Parameter(torch.randn(num_classes, in_features) / math.sqrt(in_features))

    def forward(self, x: Tensor) -> Tensor:
        return harmonic_logits(x, self.weight, n=self.n, eps=self.eps)

    def probabilities(self, x: Tensor) -> Tensor:
        """The harmonic max d_i^{−n} / Σ_j d_j^{−n}, shape (N, C)."""
        return torch.softmax(self(x), dim=1)

    def extra_repr(self) -> str:
        c, d = self.weight.shape
        return f"in_features={d}, num_classes={c}, n={self.n:g}, eps={self.eps:g}"
