r"""Margin transforms of cosine logits: only the target logit changes, every logit is scaled by s.

With c_{ij} = cos θ_{ij} the cosine between the unit embedding x̂_i and the unit class centre ŵ_j,
a transform returns z_{ij} = s·c_{ij} for j ≠ y_i and z_{i,y_i} = s·ψ(c_{i,y_i}); the loss is the
softmax cross-entropy of z (see :class:`~lossbook.margin.MarginHead`). Angles are in radians.

=====================  =========================================================================
transform              ψ(c), θ = arccos c
=====================  =========================================================================
NormalizedSoftmax      c
CosFace                c − m
ArcFace                cos(θ + m)   (insightface's fallback past π; ``grad`` exact / straight-through)
SphereFace             (−1)^k cos(mθ) − 2k on θ ∈ [kπ/m, (k+1)π/m], m a positive integer
CombinedMargin         cos(m₁θ + m₂) − m₃   (insightface's fallback past π)
ElasticArcFace         cos(θ + m_i),  m_i ~ N(m, σ²) drawn per row and call
ElasticCosFace         c − m_i,       m_i ~ N(m, σ²)
AdaFace                cos(θ − m·ẑ_i) − (m + m·ẑ_i),  ẑ_i from the feature norm (stateful Module)
MagFace                cos(θ + m(a_i)),  m(a) linear in the feature norm a_i (+ regulariser g(a))
=====================  =========================================================================

Every transform subclasses :class:`CosineMargin`, except :class:`AdaFace`, an ``nn.Module``
because it keeps running statistics in buffers. Partial FC (:mod:`lossbook.sampled`) takes them
too. Transforms with ``needs_norms = True`` (AdaFace, MagFace) are called as
``transform(cos, target, norms)`` with the embeddings' L2 norms (N,); the others as
``transform(cos, target)``.

A target of ``-1`` means "this row's class is not among these columns" (a class shard
of another process, in model-parallel Partial FC, or an ignored row): the row is only scaled.

**Gradients.** By default (``grad="exact"``) the gradient is the exact derivative of these
formulas. insightface's ``CombinedMarginLoss`` applies the ArcFace margin under ``no_grad`` (in
place on the logits), so its gradient is that of the plain scaled cosine; the transforms that
offer it take ``grad="straight_through"`` for that behaviour (see :class:`ArcFace`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_number, check_reduction, format_dtype, format_shape, reduce_loss
from ..registry import register_method

__all__ = [
    "GRADS",
    "CosineMargin",
    "NormalizedSoftmax",
    "CosFace",
    "ArcFace",
    "SphereFace",
    "CombinedMargin",
    "ElasticArcFace",
    "ElasticCosFace",
    "AdaFace",
    "MagFace",
    "arc_margin",
    "sphereface_psi",
    "cosine_logits",
    "unit_rows",
    "cosface_logits",
    "arcface_logits",
    "sphereface_logits",
    "combined_margin_logits",
    "magface_regularizer",
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


@register_method(kind="transform", family="margin", paper="wang2017normface")
@dataclass(frozen=True)
class NormalizedSoftmax(CosineMargin):
    """No margin: logits s·cos θ (NormFace-style normalised softmax)."""


@register_method(kind="transform", family="margin", paper="wang2018cosface")
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


@register_method(kind="transform", family="margin", paper="deng2019arcface")
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


# --- transforms beyond the three above -----------------------------------------------------------


def _check_norms(name: str, norms, n: int) -> None:
    if not isinstance(norms, Tensor) or not norms.is_floating_point():
        got = format_dtype(norms) if isinstance(norms, Tensor) else type(norms).__name__
        raise TypeError(f"{name}: norms must be a floating tensor of shape ({n},), the L2 norms of the embeddings "
                        f"before normalisation; got {got}. Use embeddings.norm(dim=1).")
    if norms.shape != (n,):
        hint = " Did you mean norms.squeeze(1)?" if norms.shape == (n, 1) else ""
        raise ValueError(f"{name}: norms must have shape ({n},), one norm per row of cos; got "
                         f"{format_shape(norms)}.{hint}")


def _integer_margin(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: margin must be a positive integer (the multiplicative angular margin); "
                        f"got {type(value).__name__}.")
    if not math.isfinite(float(value)) or float(value) != int(value) or int(value) < 1:
        raise ValueError(f"{name}: margin must be a positive integer (the multiplicative angular margin m in cos(mθ), "
                         f"e.g. 4 as in the paper); got {value!r}. For a non-integer multiplicative margin use "
                         f"CombinedMargin(m1=...).")
    return int(value)


# --- SphereFace ---------------------------------------------------------------------------------------


def _chebyshev(c: Tensor, m: int) -> Tensor:
    """T_m(c) = cos(m·arccos c), by the three-term recurrence (a polynomial: exact gradient at c = ±1)."""
    prev, cur = torch.ones_like(c), c
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * c * cur - prev
    return cur


def sphereface_psi(cos: Tensor, margin: int) -> Tensor:
    r"""SphereFace's ψ(θ) = (−1)^k cos(mθ) − 2k for θ = arccos(c) ∈ [kπ/m, (k+1)π/m], k = 0 … m−1.

    ψ is continuous and decreasing from 1 (θ = 0) to 1 − 2m (θ = π), with zero slope in θ at
    every θ = kπ/m. cos(mθ) is computed as the Chebyshev polynomial T_m(c) (as the paper's
    multiple-angle formula and pytorch-metric-learning's ``LargeMarginSoftmaxLoss`` do); k is a
    piecewise constant (no gradient).
    """
    m = int(margin)
    t_m = _chebyshev(cos, m)
    if m == 1:
        return t_m
    with torch.no_grad():
        k = torch.floor(torch.acos(cos.clamp(-1.0, 1.0)) * (m / math.pi)).clamp_(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * t_m - 2.0 * k


@register_method(kind="transform", family="margin", paper="liu2017sphereface")
@dataclass(frozen=True)
class SphereFace(CosineMargin):
    r"""SphereFace / A-Softmax (Liu et al. 2017) on normalised cosines: target logit s·ψ(θ_y).

    ψ(θ) = (−1)^k cos(mθ) − 2k on θ ∈ [kπ/m, (k+1)π/m] (:func:`sphereface_psi`), m a positive
    integer (paper: 4). With ``lambda_`` = λ > 0 the target logit is the paper's annealed
    s·(λ cos θ + ψ(θ))/(1 + λ) (λ → 0 during training in the paper; λ = 0 here by default).

    **Feature norm.** The paper and pytorch-metric-learning's ``SphereFaceLoss`` normalise the class
    weights only, so the logits are ‖x‖·ψ and ‖x‖·cos: the feature norm plays the role of s
    (PML's ``scale``, default 1, multiplies it further). Here the embeddings are normalised too
    and s is a fixed hyper-parameter, so PML's loss on embeddings of norm s (or on unit embeddings
    with ``scale=s``) equals ours; on raw embeddings it is ours with a per-row scale ‖x_i‖·scale.
    Defaults s = 64 (as the other transforms), m = 4. ``margin`` = 1 is the normalised softmax.
    """

    margin: int = 4
    lambda_: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "margin", _integer_margin("SphereFace", self.margin))
        check_number("SphereFace", "lambda_", self.lambda_, low=0.0)

    def target_logit(self, cos_target: Tensor) -> Tensor:
        psi = sphereface_psi(cos_target, self.margin)
        if self.lambda_:
            psi = (self.lambda_ * cos_target + psi) / (1.0 + self.lambda_)
        return psi


def sphereface_logits(cos: Tensor, target: Tensor, *, margin: int = 4, scale: float = 64.0) -> Tensor:
    """Functional :class:`SphereFace`: s·cos with s·ψ(θ) at the target."""
    return SphereFace(scale=scale, margin=margin)(cos, target)


# --- combined margin ---------------------------------------------------------------------------------


@register_method(kind="transform", family="margin", paper="deng2019arcface")
@dataclass(frozen=True)
class CombinedMargin(CosineMargin):
    r"""The combined margin of the ArcFace paper: target logit s·(cos(m₁θ + m₂) − m₃).

    (m₁, m₂, m₃) = (1, m, 0) is ArcFace, (1, 0, m) CosFace, (m, 0, 0) a SphereFace-like
    multiplicative margin without SphereFace's (−1)^k trick; the paper's combinations are
    CM1 = (1, 0.3, 0.2) (our default) and CM2 = (0.9, 0.4, 0.15). m₁ > 0, m₂ ∈ [0, π).

    **Fallback** (insightface's, generalised): where m₁θ + m₂ would pass π, i.e. θ > θ* = (π − m₂)/m₁,
    the target logit is cos θ − m₃ − p with p = max(m₂·sin(π − m₂), 1 + cos θ*). For m₁ = 1,
    p = m₂·sin(π − m₂) is insightface's ArcFace fallback (the max only matters for m₂ > 2.33 rad),
    so CombinedMargin(1, m, 0) equals :class:`ArcFace` (m); for m₁ ≠ 1 the max keeps the target
    logit decreasing in θ across the switch. When m₁π + m₂ ≤ π there is no fallback region.

    insightface's ``CombinedMarginLoss`` differs in three ways, all documented here rather than
    copied: it implements only the ArcFace case (m₁ = 1, m₃ = 0, margin under ``no_grad`` =
    our ``grad="straight_through"``, no fallback) and the CosFace case (any m₃ > 0 — then m₁ and m₂
    are silently ignored), and raises for anything else. ``grad`` is as in :class:`ArcFace`:
    ``"exact"`` differentiates the formula, ``"straight_through"`` gives the target logit the
    gradient of s·cos θ.
    """

    m1: float = 1.0
    m2: float = 0.3
    m3: float = 0.2
    grad: str = "exact"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("CombinedMargin", "m1", self.m1, low=0.0, low_open=True)
        check_number("CombinedMargin", "m2", self.m2, low=0.0, high=math.pi, high_open=True)
        check_number("CombinedMargin", "m3", self.m3)

    @property
    def theta_star(self) -> float:
        """The angle beyond which the fallback applies, (π − m₂)/m₁ (≥ π: no fallback)."""
        return (math.pi - self.m2) / self.m1

    def target_logit(self, cos_target: Tensor) -> Tensor:
        c, m1, m2, m3 = cos_target, float(self.m1), float(self.m2), float(self.m3)
        sin = _sin(c)
        if m1 == 1.0:
            main = c * math.cos(m2) - sin * math.sin(m2)  # cos(θ + m₂), the ArcFace expression
        else:
            theta = torch.atan2(sin, c)  # arccos c with a finite gradient at c = ±1
            main = torch.cos(m1 * theta + m2)
        main = main - m3
        theta_star = self.theta_star
        if theta_star >= math.pi:
            return main
        threshold = math.cos(theta_star)
        penalty = max(math.sin(math.pi - m2) * m2, 1.0 + threshold)
        return torch.where(c > threshold, main, c - m3 - penalty)


def combined_margin_logits(cos: Tensor, target: Tensor, *, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2,
                           scale: float = 64.0, grad: str = "exact") -> Tensor:
    """Functional :class:`CombinedMargin`: s·cos with s·(cos(m₁θ + m₂) − m₃) at the target."""
    return CombinedMargin(scale=scale, m1=m1, m2=m2, m3=m3, grad=grad)(cos, target)


# --- ElasticFace ---------------------------------------------------------------------------------------


class _ElasticMargins:
    """Per-row margins m_i ~ N(margin, std²), drawn at every call (ElasticFace, Boutros et al. 2022)."""

    margin: float
    std: float
    plus: bool
    generator: torch.Generator | None

    def _check(self, name: str) -> None:
        check_number(name, "std", self.std, low=0.0)
        if not isinstance(self.plus, bool):
            raise TypeError(f"{name}: plus must be a bool; got {type(self.plus).__name__}.")
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise TypeError(f"{name}: generator must be a torch.Generator or None; got {type(self.generator).__name__}.")

    def draw_margins(self, n: int, *, generator: torch.Generator | None = None, device=None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
        """n margins drawn from N(margin, std²) (``generator`` overrides the transform's own;
        with std = 0 every margin is ``margin`` and nothing is drawn)."""
        g = generator if generator is not None else self.generator
        if self.std == 0.0:
            return torch.full((n,), float(self.margin), dtype=dtype, device=device)
        src = device if g is None else g.device
        m = torch.normal(float(self.margin), float(self.std), size=(n,), generator=g, dtype=dtype, device=src)
        return m.to(device)

    def margins(self, cos_target: Tensor, target: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The margins of one call, one per row (N,).

        ElasticFace: independent draws. ElasticFace+ (``plus=True``): the draws of the rows that
        have a target are sorted and handed out by target cosine, **the row with the highest
        target cosine gets the smallest margin** and the row farthest from its centre the largest
        (what the official code's ``plus`` branch sorts for: cosines in descending order, margins
        in ascending order). The official code indexes ``margin[argsort(cos, descending)]``, which
        is this assignment only when that permutation is its own inverse; we assign by rank
        (``out[argsort(cos, descending)] = sort(margins)``), so the order always holds.
        """
        m = self.draw_margins(cos_target.shape[0], generator=generator, device=cos_target.device,
                              dtype=cos_target.dtype)
        if not self.plus:
            return m
        rows = (target >= 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return m
        order = torch.argsort(cos_target.detach()[rows], descending=True, stable=True)
        out = m.clone()
        out[rows[order]] = torch.sort(m[rows]).values
        return out

    def __call__(self, cos: Tensor, target: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        return self._apply(cos, target, {"generator": generator})

    def _psi(self, cos_target: Tensor, target: Tensor, ctx: dict[str, Any]) -> Tensor:
        return self.target_logit(cos_target, self.margins(cos_target, target, generator=ctx.get("generator")))


@register_method(kind="transform", family="margin", paper="boutros2022elasticface")
@dataclass(frozen=True)
class ElasticArcFace(_ElasticMargins, CosineMargin):
    r"""ElasticFace-Arc (Boutros et al. 2022): target logit s·cos(θ + m_i), m_i ~ N(m, σ²) per row.

    A fresh margin per row at every call (pass ``generator=`` to the call, or give the transform
    one, for reproducible draws); ``plus=True`` is ElasticFace-Arc+ (see :meth:`margins`).
    Defaults s = 64, m = 0.5, σ = 0.0125 are the official class defaults (``utils/losses.py``);
    the official ``config.py`` trains with σ = 0.05 (ElasticFace-Arc) and σ = 0.0175 (Arc+).
    The official code has no θ + m > π fallback; ours uses :class:`ArcFace`'s, so std = 0 is
    exactly ArcFace(m). Gradient: exact (as the official in-place ``acos_``/``cos_``).
    """

    margin: float = 0.5
    std: float = 0.0125
    plus: bool = False
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("ElasticArcFace", "margin", self.margin, low=0.0, high=math.pi, high_open=True)
        self._check("ElasticArcFace")

    def target_logit(self, cos_target: Tensor, margin: Tensor | float | None = None) -> Tensor:
        """cos(θ + m) with ArcFace's fallback; ``margin`` per row (default: the mean margin)."""
        return arc_margin(cos_target, self.margin if margin is None else margin)


@register_method(kind="transform", family="margin", paper="boutros2022elasticface")
@dataclass(frozen=True)
class ElasticCosFace(_ElasticMargins, CosineMargin):
    r"""ElasticFace-Cos (Boutros et al. 2022): target logit s·(cos θ − m_i), m_i ~ N(m, σ²) per row.

    Defaults s = 64, m = 0.35, σ = 0.0125 (official class defaults; ``config.py`` trains with
    σ = 0.05 for ElasticFace-Cos and 0.02 for Cos+). ``plus=True`` is ElasticFace-Cos+.
    """

    margin: float = 0.35
    std: float = 0.0125
    plus: bool = False
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("ElasticCosFace", "margin", self.margin)
        self._check("ElasticCosFace")

    def target_logit(self, cos_target: Tensor, margin: Tensor | float | None = None) -> Tensor:
        return cos_target - (self.margin if margin is None else margin)


# --- AdaFace --------------------------------------------------------------------------------------------


@register_method(kind="transform", family="margin", paper="kim2022adaface")
class AdaFace(nn.Module):
    r"""AdaFace (Kim et al. 2022): a margin that adapts to image quality, read off the feature norm.

    Called as ``transform(cos, target, norms)`` with the embeddings' norms ‖f_i‖ (before
    normalisation). With the batch statistics μ_B, σ_B of the norms,

        ẑ_i = clip(h·(‖f_i‖ − μ_B)/(σ_B + ε), −1, 1),
        z_{i,y_i} = s·[cos(clip(θ_i − m·ẑ_i, ε, π − ε)) − (m + m·ẑ_i)],   θ_i = arccos(clip(c, −1+ε, 1−ε)),

    so a high-norm (good quality) sample, ẑ → 1, gets cos(θ − m) − 2m, an average one (ẑ = 0)
    CosFace's cos θ − m, and a low-norm one (ẑ → −1) ArcFace's cos(θ + m).

    As mk-minchul/AdaFace ``head.py``: the norms are clipped to [0.001, 100] and **detached** (ẑ
    carries no gradient; nor do μ_B, σ_B); σ_B is the unbiased batch standard deviation; the
    buffers ``batch_mean`` (start 20) and ``batch_std`` (start 100) are updated *before* use by
    batch_mean ← α·mean + (1 − α)·batch_mean (same for std) with α = ``t_alpha``. The official
    class default ``t_alpha = 1.0`` (our default, the released training scripts' value) means the
    current batch's statistics are used as they are — no moving average; the paper describes
    α = 0.01. ε = 10⁻³. Defaults m = 0.4, h = 0.333, s = 64.

    Differences from the official head: the official code clamps the *whole* cosine matrix to
    [−1+ε, 1−ε] (changing non-target logits within ε of ±1 and cutting their gradient there); ours
    clamps only the target cosine that enters arccos. In ``eval()`` mode the statistics are
    frozen (the official head updates them on every call); a training batch of fewer than two
    rows (no standard deviation) leaves them unchanged instead of writing NaN.
    """

    needs_norms: ClassVar[bool] = True

    def __init__(self, scale: float = 64.0, margin: float = 0.4, h: float = 0.333, t_alpha: float = 1.0,
                 eps: float = 1e-3) -> None:
        super().__init__()
        name = "AdaFace"
        self.scale = check_number(name, "scale", scale, low=0.0, low_open=True)
        self.margin = check_number(name, "margin", margin, low=0.0, high=math.pi, high_open=True)
        self.h = check_number(name, "h", h, low=0.0)
        self.t_alpha = check_number(name, "t_alpha", t_alpha, low=0.0, high=1.0)
        self.eps = check_number(name, "eps", eps, low=0.0, high=0.5, low_open=True)
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, margin={self.margin}, h={self.h}, t_alpha={self.t_alpha}, eps={self.eps}"

    @staticmethod
    def _safe(norms: Tensor) -> Tensor:
        return norms.detach().clamp(0.001, 100.0)

    @torch.no_grad()
    def update_statistics(self, norms: Tensor) -> None:
        """One EMA step of ``batch_mean`` and ``batch_std`` towards the batch's (clipped) norms."""
        safe = self._safe(norms)
        if safe.numel() < 2:
            return
        a = self.t_alpha
        mean = safe.mean().to(self.batch_mean.dtype)
        std = safe.std().to(self.batch_std.dtype)
        self.batch_mean.copy_(mean * a + (1.0 - a) * self.batch_mean)
        self.batch_std.copy_(std * a + (1.0 - a) * self.batch_std)

    def margin_scaler(self, norms: Tensor) -> Tensor:
        """ẑ = clip(h·(‖f‖ − μ_B)/(σ_B + ε), −1, 1) with the current buffers (no gradient)."""
        safe = self._safe(norms)
        z = (safe - self.batch_mean) / (self.batch_std + self.eps) * self.h
        return z.clamp(-1.0, 1.0).to(norms.dtype)

    def target_logit(self, cos_target: Tensor, scaler: Tensor) -> Tensor:
        """ψ(c) = cos(clip(θ − m·ẑ, ε, π − ε)) − (m + m·ẑ), θ = arccos(clip(c, −1+ε, 1−ε))."""
        m, eps = self.margin, self.eps
        theta = torch.acos(cos_target.clamp(-1.0 + eps, 1.0 - eps))
        return torch.cos((theta - m * scaler).clamp(eps, math.pi - eps)) - (m + m * scaler)

    def forward(self, cos: Tensor, target: Tensor, norms: Tensor) -> Tensor:
        _check_norms("AdaFace", norms, cos.shape[0])
        if self.training:
            self.update_statistics(norms)
        scaler = self.margin_scaler(norms)
        if cos.shape[1] == 0:
            return cos * self.scale
        col = target.clamp_min(0).unsqueeze(1)
        c = cos.gather(1, col).squeeze(1)
        new = torch.where(target >= 0, self.target_logit(c, scaler), c) * self.scale
        return (cos * self.scale).scatter_(1, col, new.unsqueeze(1))


# --- MagFace -------------------------------------------------------------------------------------------


def _magface_g(norms: Tensor, l_a: float, u_a: float) -> Tensor:
    a = norms.clamp(l_a, u_a)
    return a / (u_a * u_a) + 1.0 / a


@register_method(kind="building block", family="margin", paper="meng2021magface")
def magface_regularizer(norms: Tensor, *, l_a: float = 10.0, u_a: float = 110.0, reduction: str = "mean") -> Tensor:
    r"""MagFace's magnitude regulariser g(a) = a/u_a² + 1/a, a = clip(‖f‖, l_a, u_a) (unweighted).

    Convex on (0, ∞) with g'(a) = 1/u_a² − 1/a² < 0 below a* = u_a: on [l_a, u_a] it is
    decreasing, so it rewards large norms up to u_a. As IrvingMeng/MagFace ``MagLoss.calc_loss_G``
    (which averages over the batch and is weighted by λ_g in the trainer): g is evaluated on the
    *clipped* norm, so it has no gradient outside [l_a, u_a].
    """
    name = "magface_regularizer"
    check_reduction(name, reduction)
    l_a = check_number(name, "l_a", l_a, low=0.0, low_open=True)
    u_a = check_number(name, "u_a", u_a, low=l_a, low_open=True)
    if not isinstance(norms, Tensor) or not norms.is_floating_point() or norms.dim() != 1:
        raise ValueError(f"{name}: norms must be a floating tensor of shape (N,), the embeddings' L2 norms.")
    return reduce_loss(_magface_g(norms, l_a, u_a), reduction)


@register_method(kind="transform", family="margin", paper="meng2021magface")
@dataclass(frozen=True)
class MagFace(CosineMargin):
    r"""MagFace (Meng et al. 2021): an ArcFace margin that grows with the feature magnitude.

    Called as ``transform(cos, target, norms)``. With a_i = clip(‖f_i‖, l_a, u_a),
    m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m and the target logit s·cos(θ + m(a_i)); the
    full MagFace loss adds λ_g·mean g(a_i), g(a) = a/u_a² + 1/a (:meth:`regularizer`,
    :func:`magface_regularizer`; :class:`~lossbook.margin.MarginHead` adds it for you).

    As IrvingMeng/MagFace ``models/magface.py`` (``MagLinear``, ``MagLoss``) and ``run/run.sh``:
    l_a = 10, u_a = 110, l_m = 0.45, u_m = 0.8, λ_g = 35 (the trainer's argparse default is 20),
    s = 64; the norm is clipped to [l_a, u_a] and **not detached**: the cross-entropy reaches the
    norm through the margin (that gradient, against g's, is the paper's mechanism). ``MagLinear``
    defaults to ``easy_margin=True`` (margin only where cos θ > 0), and so do we; with
    ``easy_margin=False`` insightface's θ + m > π fallback applies instead. :attr:`min_lambda_g`
    is the trainer's lower bound on λ_g for a unique optimum.
    """

    needs_norms: ClassVar[bool] = True

    l_a: float = 10.0
    u_a: float = 110.0
    l_m: float = 0.45
    u_m: float = 0.8
    lambda_g: float = 35.0
    easy_margin: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        name = "MagFace"
        check_number(name, "l_a", self.l_a, low=0.0, low_open=True)
        check_number(name, "u_a", self.u_a, low=self.l_a, low_open=True)
        check_number(name, "l_m", self.l_m, low=0.0, high=math.pi, high_open=True)
        check_number(name, "u_m", self.u_m, low=self.l_m, high=math.pi, high_open=True)
        check_number(name, "lambda_g", self.lambda_g, low=0.0)

    @property
    def min_lambda_g(self) -> float:
        """s·k·u_a²·l_a²/(u_a² − l_a²), k = (u_m − l_m)/(u_a − l_a): the smallest λ_g for which the
        paper's optimum is unique (printed by the official trainer)."""
        k = (self.u_m - self.l_m) / (self.u_a - self.l_a)
        return self.scale * k * self.u_a**2 * self.l_a**2 / (self.u_a**2 - self.l_a**2)

    def adaptive_margin(self, norms: Tensor) -> Tensor:
        """m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m with a = clip(norms, l_a, u_a)."""
        a = norms.clamp(self.l_a, self.u_a)
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def regularizer(self, norms: Tensor) -> Tensor:
        """g(a) per row (unweighted; the loss adds λ_g times its mean)."""
        return _magface_g(norms, self.l_a, self.u_a)

    def target_logit(self, cos_target: Tensor, norms: Tensor) -> Tensor:
        return arc_margin(cos_target, self.adaptive_margin(norms), easy_margin=self.easy_margin)

    def __call__(self, cos: Tensor, target: Tensor, norms: Tensor) -> Tensor:  # type: ignore[override]
        _check_norms("MagFace", norms, cos.shape[0])
        return self._apply(cos, target, {"norms": norms})

    def _psi(self, cos_target: Tensor, target: Tensor, ctx: dict[str, Any]) -> Tensor:
        return self.target_logit(cos_target, ctx["norms"].to(cos_target.dtype))

    def from_embeddings(self, x_unit: Tensor, w_unit: Tensor, target: Tensor) -> Tensor:
        raise ValueError("MagFace: from_embeddings gets unit embeddings, but MagFace needs their norms; "
                         "call transform(cos, target, norms) or use lossbook.MarginHead.")
