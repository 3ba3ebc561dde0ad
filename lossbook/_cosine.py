r"""Logit transforms of cosine similarities: the margin heads that Partial FC (and, later, the
margin family) put in front of the softmax.

Each transform maps a matrix of cosines ``cos`` (N, C) and a target column per row to logits:
every entry is multiplied by the scale s, and only the target entry is first replaced by a
function of itself,

    z_{ij} = s·cos_{ij}   (j ≠ y_i),        z_{i,y_i} = s·ψ(cos_{i,y_i}),

with ψ(c) = c (normalised softmax), ψ(c) = c − m (CosFace) or ψ(c) = cos(θ + m), θ = arccos c
(ArcFace). A target of ``-1`` means "this row's class is not among these columns" (a class shard
of another process, in model-parallel Partial FC): the row is only scaled. A later family extends
the set by subclassing :class:`CosineMargin` and overriding :meth:`~CosineMargin.target_logit`.

The gradient is the exact derivative of these formulas (insightface's ``CombinedMarginLoss``
applies the ArcFace margin under ``no_grad``, so its gradient is that of the plain cosine; the two
agree in value, not in gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_number

__all__ = [
    "CosineMargin",
    "NormalizedSoftmax",
    "CosFace",
    "ArcFace",
    "cosine_logits",
    "unit_rows",
    "cosface_logits",
    "arcface_logits",
]


class _UnitRows(torch.autograd.Function):
    """Rows scaled to unit L2 norm, y = x / max(‖x‖, eps), with a fused backward
    r·(g − y·⟨g, y⟩) — the gradient of ``F.normalize`` wherever ‖x‖ > eps, in fewer passes."""

    @staticmethod
    def forward(ctx, x: Tensor, eps: float) -> Tensor:
        r = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(eps).reciprocal_()
        y = x * r
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        y, r = ctx.saved_tensors
        dot = (g * y).sum(dim=1, keepdim=True)
        return torch.addcmul(g, y, dot, value=-1.0).mul_(r), None


def unit_rows(x: Tensor, eps: float = 1e-12) -> Tensor:
    """``F.normalize(x, dim=1)`` with a cheaper backward (one custom autograd node); rows whose
    norm is below ``eps`` are divided by ``eps`` (their gradient then ignores the norm's)."""
    return _UnitRows.apply(x, eps)


def cosine_logits(embeddings: Tensor, weight: Tensor) -> Tensor:
    """Cosine similarities ``normalize(embeddings) @ normalize(weight).T``, clamped to [−1, 1]."""
    return F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1)).clamp(-1.0, 1.0)


@dataclass(frozen=True)
class CosineMargin:
    """Scaled cosine logits with the target entry replaced by :meth:`target_logit` (identity here).

    Call it as ``transform(cos, target)``: ``cos`` (N, C) floating, ``target`` (N,) int64 in
    [0, C) or −1 (no target column in this matrix). Returns the (N, C) logits; nothing is
    modified in place.
    """

    scale: float = 64.0

    def __post_init__(self) -> None:
        check_number(type(self).__name__, "scale", self.scale, low=0.0, low_open=True)

    def target_logit(self, cos_target: Tensor) -> Tensor:
        """ψ(c): the target entry before scaling."""
        return cos_target

    def __call__(self, cos: Tensor, target: Tensor) -> Tensor:
        if cos.shape[1] == 0:
            return cos * self.scale
        cos_target = cos.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1)
        return self._put_target(cos * self.scale, cos_target, target)

    def from_embeddings(self, x_unit: Tensor, w_unit: Tensor, target: Tensor) -> Tensor:
        """The logits of unit-norm embeddings ``x_unit`` (N, d) against unit-norm centres
        ``w_unit`` (C, d): ``self(x_unit @ w_unit.T, target)`` with the scale folded into the
        product, so the N×C matrix is written once (the large-output path of Partial FC)."""
        z = F.linear(x_unit * self.scale, w_unit)
        if w_unit.shape[0] == 0:
            return z
        cos_target = (x_unit * w_unit[target.clamp_min(0)]).sum(dim=1)
        return self._put_target(z, cos_target, target)

    def _put_target(self, scaled: Tensor, cos_target: Tensor, target: Tensor) -> Tensor:
        """Write s·ψ(cos_target) into the target column of ``scaled`` (a fresh s·cos matrix, modified
        in place); rows with target −1 keep their value (``cos_target`` is then their column 0). The target cosine is clamped to [−1, 1]
        (insightface clamps the whole matrix; only the target entry enters a non-linear ψ)."""
        col = target.clamp_min(0).unsqueeze(1)  # a row with target −1 rewrites its column 0 unchanged
        new = torch.where(target >= 0, self.target_logit(cos_target.clamp(-1.0, 1.0)), cos_target) * self.scale
        return scaled.scatter_(1, col, new.unsqueeze(1))


@dataclass(frozen=True)
class NormalizedSoftmax(CosineMargin):
    """No margin: logits s·cos θ (NormFace-style normalised softmax)."""


@dataclass(frozen=True)
class CosFace(CosineMargin):
    """CosFace / large-margin cosine loss: target logit s·(cos θ − m).

    Defaults s = 64, m = 0.4 as in insightface ``arcface_torch/losses.py`` (``CosFace``).
    """

    margin: float = 0.4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("CosFace", "margin", self.margin)

    def target_logit(self, cos_target: Tensor) -> Tensor:
        return cos_target - self.margin


@dataclass(frozen=True)
class ArcFace(CosineMargin):
    """ArcFace / additive angular margin: target logit s·cos(θ + m), θ = arccos(cos).

    As in insightface (``ArcFace`` and the ArcFace branch of ``CombinedMarginLoss``): when
    θ + m would pass π (cos θ ≤ cos(π − m)) the target logit is cos θ − m·sin(π − m) instead,
    which keeps it decreasing in θ; with ``easy_margin`` the margin is applied only where
    cos θ > 0. Defaults s = 64, m = 0.5 (radians).
    """

    margin: float = 0.5
    easy_margin: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("ArcFace", "margin", self.margin, low=0.0, high=math.pi)

    def target_logit(self, cos_target: Tensor) -> Tensor:
        m = self.margin
        # sin θ; the clamp keeps the gradient finite at |cos θ| = 1 (where it is unbounded)
        sin = torch.sqrt((1.0 - cos_target * cos_target).clamp_min(1e-12))
        cos_tm = cos_target * math.cos(m) - sin * math.sin(m)  # cos(θ + m)
        if self.easy_margin:
            return torch.where(cos_target > 0, cos_tm, cos_target)
        return torch.where(cos_target > math.cos(math.pi - m), cos_tm, cos_target - math.sin(math.pi - m) * m)


def cosface_logits(cos: Tensor, target: Tensor, *, margin: float = 0.4, scale: float = 64.0) -> Tensor:
    """Functional :class:`CosFace`: s·cos with s·(cos − m) at the target."""
    return CosFace(scale=scale, margin=margin)(cos, target)


def arcface_logits(cos: Tensor, target: Tensor, *, margin: float = 0.5, scale: float = 64.0,
                   easy_margin: bool = False) -> Tensor:
    """Functional :class:`ArcFace`: s·cos with s·cos(θ + m) at the target (insightface's fallback)."""
    return ArcFace(scale=scale, margin=margin, easy_margin=easy_margin)(cos, target)
