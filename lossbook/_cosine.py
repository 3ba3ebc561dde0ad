r"""Logit transforms of cosine similarities: the margin heads that Partial FC and the margin family
(:mod:`lossbook.margin`) put in front of the softmax.

Each transform maps a matrix of cosines ``cos`` (N, C) and a target column per row to logits:
every entry is multiplied by the scale s, and only the target entry is first replaced by a
function of itself,

    z_{ij} = s·cos_{ij}   (j ≠ y_i),        z_{i,y_i} = s·ψ(cos_{i,y_i}),

with ψ(c) = c (normalised softmax), ψ(c) = c − m (CosFace) or ψ(c) = cos(θ + m), θ = arccos c
(ArcFace). A target of ``-1`` means "this row's class is not among these columns" (a class shard
of another process, in model-parallel Partial FC, or an ignored row): the row is only scaled.
:mod:`lossbook.margin` extends the set by subclassing :class:`CosineMargin` (SphereFace, the
combined margin, ElasticFace, MagFace).

**Gradients.** By default (``grad="exact"``) the gradient is the exact derivative of these
formulas. insightface's ``CombinedMarginLoss`` applies the ArcFace margin under ``no_grad`` (in
place on the logits), so its gradient is that of the plain scaled cosine; the transforms that
offer it take ``grad="straight_through"`` for that behaviour (see :class:`ArcFace`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_number

__all__ = [
    "CosineMargin",
    "NormalizedSoftmax",
    "CosFace",
    "ArcFace",
    "GRADS",
    "arc_margin",
    "cosine_logits",
    "unit_rows",
    "cosface_logits",
    "arcface_logits",
]

#: The gradient modes of the transforms that offer a surrogate gradient.
GRADS = ("exact", "straight_through")


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


def _sin(cos: Tensor) -> Tensor:
    """sin θ = √(1 − cos²θ); the clamp keeps the gradient finite at |cos θ| = 1 (where it is unbounded)."""
    return torch.sqrt((1.0 - cos * cos).clamp_min(1e-12))


def arc_margin(cos: Tensor, margin: float | Tensor, *, easy_margin: bool = False) -> Tensor:
    """ArcFace's ψ(c) = cos(θ + m), θ = arccos c, with insightface's fallback.

    Where θ + m would pass π (c ≤ cos(π − m)) the value is c − m·sin(π − m) instead, which keeps
    ψ decreasing in θ; with ``easy_margin`` the margin is applied only where c > 0 (ψ = c
    elsewhere). ``margin`` is a float or a tensor broadcastable to ``cos`` (one margin per row:
    ElasticFace, MagFace).
    """
    sin = _sin(cos)
    if isinstance(margin, Tensor):
        cos_tm = cos * torch.cos(margin) - sin * torch.sin(margin)
        if easy_margin:
            return torch.where(cos > 0, cos_tm, cos)
        return torch.where(cos > torch.cos(math.pi - margin), cos_tm, cos - torch.sin(math.pi - margin) * margin)
    m = float(margin)
    cos_tm = cos * math.cos(m) - sin * math.sin(m)  # cos(θ + m)
    if easy_margin:
        return torch.where(cos > 0, cos_tm, cos)
    return torch.where(cos > math.cos(math.pi - m), cos_tm, cos - math.sin(math.pi - m) * m)


def _check_grad(name: str, grad: str) -> None:
    if grad not in GRADS:
        raise ValueError(f"{name}: grad must be one of {GRADS}; got {grad!r}.")


@dataclass(frozen=True)
class CosineMargin:
    """Scaled cosine logits with the target entry replaced by :meth:`target_logit` (identity here).

    Call it as ``transform(cos, target)``: ``cos`` (N, C) floating, ``target`` (N,) int64 in
    [0, C) or −1 (no target column in this matrix). Returns the (N, C) logits; nothing is
    modified in place. ``needs_norms`` is True for the transforms that also take the embeddings'
    norms (``transform(cos, target, norms)``: MagFace, AdaFace).
    """

    needs_norms: ClassVar[bool] = False

    scale: float = 64.0

    def __post_init__(self) -> None:
        check_number(type(self).__name__, "scale", self.scale, low=0.0, low_open=True)
        if hasattr(self, "grad"):
            _check_grad(type(self).__name__, self.grad)

    def target_logit(self, cos_target: Tensor) -> Tensor:
        """ψ(c): the target entry before scaling."""
        return cos_target

    def _psi(self, cos_target: Tensor, target: Tensor, ctx: dict[str, Any]) -> Tensor:
        """ψ of every row's target cosine (clamped to [−1, 1]); ``ctx`` carries per-call data
        (a generator, the norms) for the transforms that need it."""
        return self.target_logit(cos_target)

    def __call__(self, cos: Tensor, target: Tensor) -> Tensor:
        return self._apply(cos, target, {})

    def _apply(self, cos: Tensor, target: Tensor, ctx: dict[str, Any]) -> Tensor:
        if cos.shape[1] == 0:
            return cos * self.scale
        cos_target = cos.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1)
        return self._put_target(cos * self.scale, cos_target, target, ctx)

    def from_embeddings(self, x_unit: Tensor, w_unit: Tensor, target: Tensor) -> Tensor:
        """The logits of unit-norm embeddings ``x_unit`` (N, d) against unit-norm centres
        ``w_unit`` (C, d): ``self(x_unit @ w_unit.T, target)`` with the scale folded into the
        product, so the N×C matrix is written once (the large-output path of Partial FC)."""
        z = F.linear(x_unit * self.scale, w_unit)
        if w_unit.shape[0] == 0:
            return z
        cos_target = (x_unit * w_unit[target.clamp_min(0)]).sum(dim=1)
        return self._put_target(z, cos_target, target, {})

    def _put_target(self, scaled: Tensor, cos_target: Tensor, target: Tensor, ctx: dict[str, Any]) -> Tensor:
        """Write s·ψ(cos_target) into the target column of ``scaled`` (a fresh s·cos matrix, modified
        in place); rows with target −1 keep their value (``cos_target`` is then their column 0).
        The target cosine is clamped to [−1, 1] (insightface clamps the whole matrix; only the
        target entry enters a non-linear ψ). With ``grad="straight_through"`` the value is s·ψ and
        the gradient that of s·cos (insightface's ``CombinedMarginLoss``)."""
        col = target.clamp_min(0).unsqueeze(1)  # a row with target −1 rewrites its column 0 unchanged
        psi = self._psi(cos_target.clamp(-1.0, 1.0), target, ctx)
        if getattr(self, "grad", "exact") == "straight_through":
            psi = cos_target + (psi - cos_target).detach()
        new = torch.where(target >= 0, psi, cos_target) * self.scale
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
    r"""ArcFace / additive angular margin: target logit s·cos(θ + m), θ = arccos(cos).

    As in insightface (``ArcFace`` and the ArcFace branch of ``CombinedMarginLoss``): when
    θ + m would pass π (cos θ ≤ cos(π − m)) the target logit is cos θ − m·sin(π − m) instead,
    which keeps it decreasing in θ; with ``easy_margin`` the margin is applied only where
    cos θ > 0. Defaults s = 64, m = 0.5 (radians, in [0, π)).

    ``grad`` chooses the gradient of the target logit z_y = s·ψ(c) (c = cos θ_y):

    * ``"exact"`` (default): ∂z_y/∂c = s·ψ'(c) = s·sin(θ + m)/sin θ in the main branch, s in the
      fallback branch (and where ``easy_margin`` leaves c unchanged);
    * ``"straight_through"``: ∂z_y/∂c = s everywhere — insightface's ``CombinedMarginLoss``, which
      applies the margin under ``torch.no_grad`` (insightface #2218, #2255, #2309).

    The two agree in value everywhere and in gradient on every non-target entry (s) and at a
    target in the fallback branch; they differ only at a target in the main branch.
    ``CombinedMarginLoss`` itself has no fallback (its value is cos(θ + m) even past π); ours
    keeps the fallback in both modes.
    """

    margin: float = 0.5
    easy_margin: bool = False
    grad: str = "exact"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("ArcFace", "margin", self.margin, low=0.0, high=math.pi, high_open=True)

    def target_logit(self, cos_target: Tensor) -> Tensor:
        return arc_margin(cos_target, self.margin, easy_margin=self.easy_margin)


def cosface_logits(cos: Tensor, target: Tensor, *, margin: float = 0.4, scale: float = 64.0) -> Tensor:
    """Functional :class:`CosFace`: s·cos with s·(cos − m) at the target."""
    return CosFace(scale=scale, margin=margin)(cos, target)


def arcface_logits(cos: Tensor, target: Tensor, *, margin: float = 0.5, scale: float = 64.0,
                   easy_margin: bool = False, grad: str = "exact") -> Tensor:
    """Functional :class:`ArcFace`: s·cos with s·cos(θ + m) at the target (insightface's fallback)."""
    return ArcFace(scale=scale, margin=margin, easy_margin=easy_margin, grad=grad)(cos, target)
