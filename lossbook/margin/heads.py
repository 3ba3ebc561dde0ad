r"""Heads that own the class weights: :class:`MarginHead` (any margin transform + cross-entropy,
with MagFace's regulariser and UNPG's extra negatives as options) and SphereFace2's one-vs-all
binary head (:func:`sphereface2_loss`, :class:`SphereFace2Head`).

The weights are visible: ``head.weight`` is the (C, d) matrix of class centres (no hidden ``W``
inside a loss, unlike pytorch-metric-learning's classifier losses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack

from .._validation import (
    check_embeddings,
    check_index_range,
    check_labels,
    check_number,
    check_reduction,
    check_weight,
    describe,
    reduce_loss,
)
from ..engine import INDEX_OPTIONS, IndexOptions, LossModule, class_loss
from ..registry import register_loss, register_method
from ..softmax import cross_entropy
from .losses import _PROPERTIES
from .transforms import GRADS, ArcFace, MagFace, cosine_logits

__all__ = [
    "MarginHead",
    "MarginHeadOutput",
    "unpg_negatives",
    "unpg_logits",
    "UNPG_QUARTILES",
    "sphereface2_loss",
    "sphereface2_bias_init",
    "sphereface2_similarity",
    "SphereFace2Loss",
    "SphereFace2Head",
]


def _check_size(name: str, arg: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: {arg} must be a positive int; got {v!r}.")
    return v


# --- UNPG -----------------------------------------------------------------------------------------------

#: How :func:`unpg_negatives` finds Q1 and Q3: ``"unpg"`` (the official index rule) or one of
#: :func:`torch.quantile`'s interpolations (``"linear"`` is NumPy's default percentile).
UNPG_QUARTILES = ("unpg", "linear", "lower", "higher", "nearest", "midpoint")


@register_method(kind="building block", family="margin", paper="jung2022unpg")
def unpg_negatives(embeddings: Tensor, labels: Tensor, *, whisker: float = 1.0, quartiles: str = "unpg") -> Tensor:
    r"""UNPG's in-batch negative-pair cosines, filtered by a box-and-whisker rule (Jung et al. 2022).

    The cosines x̂_i·x̂_j of every unordered pair i < j of embeddings with different labels (no
    class centres involved), kept when inside [Q1 − w·IQR, Q3 + w·IQR], w = ``whisker``; returned
    sorted ascending, shape (K,). Gradients flow through the kept cosines to the embeddings (the
    official code does not detach them either); the filter itself is not differentiated.

    As Jung-Jun-Uk/UNPG ``recognition/models/build.py`` (``convert_label_to_similarity``,
    ``box_and_whisker_algorithm``): with ``quartiles="unpg"`` (default) Q1 and Q3 are the sorted
    values at indices ⌊0.25·L⌋ and ⌊0.75·L⌋ of the L pairs, exactly as that code; ``"linear"`` etc.
    use :func:`torch.quantile` (``"linear"`` = ``numpy.percentile``'s default). The repository's
    ``head.zoo.yaml`` sets w = 1.5 for its ``unpg`` entry and 1.0 for the others; 1.0 here.
    """
    name = "unpg_negatives"
    check_embeddings(name, embeddings)
    check_labels(name, labels, embeddings.shape[0])
    w = check_number(name, "whisker", whisker, low=0.0)
    if quartiles not in UNPG_QUARTILES:
        raise ValueError(f"{name}: quartiles must be one of {UNPG_QUARTILES}; got {quartiles!r}.")
    x = F.normalize(embeddings, dim=1)
    different = (labels.unsqueeze(1) != labels.unsqueeze(0)).triu(diagonal=1)
    sims = (x @ x.T)[different]
    n = sims.numel()
    if n == 0:
        return sims
    ordered = torch.sort(sims).values
    with torch.no_grad():
        if quartiles == "unpg":
            q1, q3 = ordered[int(0.25 * n)], ordered[int(0.75 * n)]
        else:
            q = torch.tensor([0.25, 0.75], dtype=sims.dtype, device=sims.device)
            q1, q3 = torch.quantile(sims.detach(), q, interpolation=quartiles)
        iqr = q3 - q1
        keep = (ordered >= q1 - w * iqr) & (ordered <= q3 + w * iqr)
    return ordered[keep]


@register_method(kind="building block", family="margin", paper="jung2022unpg")
def unpg_logits(logits: Tensor, negatives: Tensor, scale: float) -> Tensor:
    """Append the negative-pair cosines as K extra logit columns s·cos (no margin) to every row:
    (N, C) → (N, C + K). The targets stay in [0, C), so the extra columns act as negatives only
    (the official ``UNPG.forward``: ``cat([cosine, aux_sn])``, times s, then cross-entropy)."""
    if not isinstance(negatives, Tensor) or negatives.dim() != 1:
        raise ValueError("unpg_logits: negatives must be a 1-D tensor of cosines (from unpg_negatives).")
    s = check_number("unpg_logits", "scale", scale, low=0.0, low_open=True)
    extra = (negatives.to(logits.dtype) * s).unsqueeze(0).expand(logits.shape[0], -1)
    return torch.cat([logits, extra], dim=1)


# --- MarginHead -----------------------------------------------------------------------------------------


@dataclass
class MarginHeadOutput:
    """What :meth:`MarginHead.loss` returns with ``return_aux=True``.

    ``loss = cross_entropy + regularizer`` (reduced as asked); ``regularizer`` is λ_g·g(a) for
    MagFace (None otherwise); ``logits`` are what entered the cross-entropy ((N, C), or
    (N, C + K) with UNPG); ``negatives`` the K kept UNPG cosines (None without UNPG).
    """

    loss: Tensor
    cross_entropy: Tensor
    regularizer: Tensor | None
    logits: Tensor
    negatives: Tensor | None


@register_method(kind="head", family="margin", paper="deng2019arcface")
class MarginHead(nn.Module):
    r"""Class centres plus a margin transform: logits and the margin-softmax loss of embeddings.

    ``weight`` (C, d) holds the class centres (``nn.Parameter``, N(0, init_std²) as insightface);
    :meth:`cosines` gives cos θ = x̂·ŵ (both normalised, clamped to [−1, 1]); ``forward`` the
    transform's logits; :meth:`loss` the cross-entropy of those logits. Transforms that need the
    feature norms (``needs_norms``: AdaFace, MagFace) get ‖x_i‖ of the raw embeddings. A transform
    that is an ``nn.Module`` (AdaFace) is registered as a submodule, so ``.to(device)``,
    ``.train()``/``.eval()`` and ``state_dict`` reach its buffers.

    Args:
        in_features, num_classes: d and C.
        transform: a margin transform (default ``ArcFace()``: s = 64, m = 0.5).
        init_std: standard deviation of the initial centres.
    """

    def __init__(self, in_features: int, num_classes: int, transform=None, *, init_std: float = 0.01,
                 dtype=None, device=None) -> None:
        super().__init__()
        name = "MarginHead"
        self.in_features = _check_size(name, "in_features", in_features)
        self.num_classes = _check_size(name, "num_classes", num_classes)
        transform = ArcFace() if transform is None else transform
        if not callable(transform) or not hasattr(transform, "scale"):
            raise TypeError(f"{name}: transform must be a margin transform (ArcFace(), CosFace(), AdaFace() ...); "
                            f"got {type(transform).__name__}.")
        self.transform = transform
        std = check_number(name, "init_std", init_std, low=0.0, low_open=True)
        self.weight = nn.Parameter(torch.randn(num_classes, in_features, dtype=dtype, device=device).mul_(std))

    @property
    def needs_norms(self) -> bool:
        return bool(getattr(self.transform, "needs_norms", False))

    def extra_repr(self) -> str:
        t = "" if isinstance(self.transform, nn.Module) else f", transform={self.transform}"
        return f"in_features={self.in_features}, num_classes={self.num_classes}{t}"

    def cosines(self, embeddings: Tensor) -> Tensor:
        """cos θ_ij = x̂_i·ŵ_j, (N, C), clamped to [−1, 1]."""
        check_embeddings("MarginHead", embeddings, self.in_features)
        return cosine_logits(embeddings, self.weight)

    def _transform(self, cos: Tensor, target: Tensor, embeddings: Tensor) -> Tensor:
        if self.needs_norms:
            return self.transform(cos, target, torch.linalg.vector_norm(embeddings, dim=1))
        return self.transform(cos, target)

    def forward(self, embeddings: Tensor, target: Tensor) -> Tensor:
        """The transform's logits (N, C) of ``embeddings`` (N, d) with int64 ``target`` (N,) in [0, C)."""
        name = "MarginHead"
        cos = self.cosines(embeddings)
        check_labels(name, target, embeddings.shape[0], "target")
        check_index_range(name, target, self.num_classes, None)
        return self._transform(cos, target, embeddings)

    def loss(
        self,
        embeddings: Tensor,
        target: Tensor,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        unpg: bool = False,
        whisker: float = 1.0,
        return_aux: bool = False,
    ):
        r"""Margin-softmax loss: :func:`~lossbook.functional.cross_entropy` of the transform's logits.

        ``weight``, ``ignore_index``, ``reduction``, ``label_smoothing`` as in cross-entropy
        (ignored rows get no margin and no loss). With a :class:`~lossbook.margin.MagFace`
        transform the loss adds λ_g·g(a_i) of the counted rows, reduced like the cross-entropy
        (``"mean"``: divided by the number of counted rows). With ``unpg=True`` the in-batch
        negative-pair cosines of the counted rows (:func:`unpg_negatives`, ``whisker``) become extra
        negative columns of every row (:func:`unpg_logits`; class weights are padded with ones;
        not combinable with label smoothing, which would put target mass on them). An
        :class:`~lossbook.margin.AdaFace` transform takes its batch statistics from every row,
        ignored ones included. ``return_aux=True`` returns a :class:`MarginHeadOutput`.
        """
        name = "MarginHead.loss"
        check_reduction(name, reduction)
        cos = self.cosines(embeddings)
        check_labels(name, target, embeddings.shape[0], "target")
        valid = check_index_range(name, target, self.num_classes, ignore_index)
        logits = self._transform(cos, torch.where(valid, target, -1), embeddings)
        negatives = None
        if unpg:
            if label_smoothing:
                raise ValueError(f"{name}: unpg=True cannot be combined with label_smoothing (it would put target "
                                 "mass on the negative-pair columns); use label_smoothing=0.")
            negatives = unpg_negatives(embeddings[valid], target[valid], whisker=whisker)
            logits = unpg_logits(logits, negatives, self.transform.scale)
            if weight is not None:
                weight = check_weight(name, weight, cos)
                weight = torch.cat([weight, weight.new_ones(negatives.numel())])
        ce = cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)
        reg = None
        total = ce
        if isinstance(self.transform, MagFace):
            norms = torch.linalg.vector_norm(embeddings, dim=1)
            g = torch.where(valid, self.transform.regularizer(norms), torch.zeros_like(norms))
            reg = self.transform.lambda_g * reduce_loss(g, reduction, denominator=valid.sum().to(g.dtype))
            total = ce + reg
        if return_aux:
            return MarginHeadOutput(total, ce, reg, logits, negatives)
        return total


# --- SphereFace2 -----------------------------------------------------------------------------------------


def sphereface2_similarity(cos: Tensor, t: float = 3.0) -> Tensor:
    """SphereFace2's similarity adjustment g(c) = 2·((c + 1)/2)^t − 1 (maps [−1, 1] onto itself)."""
    return 2.0 * ((cos.clamp(-1.0, 1.0) + 1.0) / 2.0).pow(t) - 1.0


def _check_sf2(name: str, scale, margin, lambda_, t) -> tuple[float, float, float, float]:
    r = check_number(name, "scale", scale, low=0.0, low_open=True)
    m = check_number(name, "margin", margin)
    lam = check_number(name, "lambda_", lambda_, low=0.0, high=1.0, low_open=True, high_open=True)
    t = check_number(name, "t", t, low=0.0, low_open=True)
    return r, m, lam, t


def sphereface2_bias_init(num_classes: int, *, scale: float = 40.0, margin: float = 0.4, lambda_: float = 0.7,
                          t: float = 3.0) -> float:
    r"""SphereFace2's closed-form initial bias (ydwen/opensphere ``SphereFace2``, ``magn_type='C'``).

    With z = λ/((1 − λ)(C − 1)), a_y = r(g(0) − m), a_i = r(g(0) + m), g(0) = 2·0.5^t − 1:
    b = log(2z) − a_i − log(1 − z + √((1 − z)² + 4z·e^{a_y − a_i})) — the root of
    ∂L/∂b = 0 when every cosine is 0 (features orthogonal to every centre, as at initialisation).
    """
    name = "sphereface2_bias_init"
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{name}: num_classes must be an int ≥ 2 (SphereFace2's bias balances one positive "
                         f"against C − 1 negatives); got {num_classes!r}.")
    r, m, lam, t = _check_sf2(name, scale, margin, lambda_, t)
    z = lam / ((1.0 - lam) * (num_classes - 1.0))
    g0 = 2.0 * 0.5**t - 1.0
    ay, ai = r * (g0 - m), r * (g0 + m)
    root = math.sqrt((1.0 - z) ** 2 + 4.0 * z * math.exp(ay - ai))
    return math.log(2.0 * z) - ai - math.log(1.0 - z + root)


def _sf2_bias(name: str, bias, num_classes: int, r, m, lam, t) -> Tensor | float:
    if bias is None:
        if num_classes < 2:
            raise ValueError(f"{name}: with bias=None the closed-form initial bias needs at least 2 classes; got "
                             f"{num_classes}. Pass bias= explicitly.")
        return sphereface2_bias_init(num_classes, scale=r, margin=m, lambda_=lam, t=t)
    if isinstance(bias, Tensor):
        if not bias.is_floating_point() or bias.numel() != 1:
            raise ValueError(f"{name}: bias must be a float or a one-element floating tensor; got {describe(bias)}.")
        return bias.reshape(())
    return check_number(name, "bias", bias)


def _sf2_logits(cos: Tensor, onehot: Tensor, bias, r: float, m: float, t: float, grad: str) -> Tensor:
    """r·(g(c) − m) + b at the target, r·(g(c) + m) + b elsewhere; with straight-through the
    adjustment g(c) ∓ m − c carries no gradient (opensphere applies it under ``no_grad``)."""
    adjusted = sphereface2_similarity(cos, t) - m * (2.0 * onehot - 1.0)
    if grad == "straight_through":
        adjusted = cos + (adjusted - cos).detach()
    return r * adjusted + bias


def _check_sphereface2(bias=None, scale=40.0, margin=0.4, lambda_=0.7, t=3.0, loss_weight=1.0, grad="exact"):
    name = "sphereface2_loss"
    r, m, lam, t = _check_sf2(name, scale, margin, lambda_, t)
    lw = check_number(name, "loss_weight", loss_weight, low=0.0)
    if grad not in GRADS:
        raise ValueError(f"{name}: grad must be one of {GRADS}; got {grad!r}.")
    if bias is not None and not isinstance(bias, Tensor):
        check_number(name, "bias", bias)
    return r, m, lam, t, lw


@register_loss("sphereface2", family="margin", paper="wen2022sphereface2", inputs="cosine", supports=INDEX_OPTIONS,
               check=_check_sphereface2, properties=_PROPERTIES,
               summary="SphereFace2: one-vs-all binary losses on r·(g(cos θ) ∓ m) + b, weighted λ / (1 − λ).",
               formula=r"\ell = \tfrac{w}{r}\Big[\lambda\log\big(1+e^{-(r(g(\cos\theta_y)-m)+b)}\big) + "
                       r"(1-\lambda)\sum_{j\ne y}\log\big(1+e^{r(g(\cos\theta_j)+m)+b}\big)\Big],\ "
                       r"g(c) = 2\big(\tfrac{c+1}{2}\big)^t - 1")
def sphereface2_loss(input: Tensor, target: Tensor, *, bias: float | Tensor | None = None, scale: float = 40.0,
                     margin: float = 0.4, lambda_: float = 0.7, t: float = 3.0, loss_weight: float = 1.0,
                     grad: str = "exact", **options: Unpack[IndexOptions]) -> Tensor:
    r"""SphereFace2 (Wen et al. 2022): C binary (one-vs-all) logistic losses per row, no softmax.

    Per row, with c_j = cos θ_j, r = ``scale``, g(c) = 2((c + 1)/2)^t − 1
    (:func:`sphereface2_similarity`) and the bias b,

        ℓ = (w/r)·[λ·softplus(−(r(g(c_y) − m) + b)) + (1 − λ)·Σ_{j≠y} softplus(r(g(c_j) + m) + b)].

    As ydwen/opensphere ``model/head/sphereface2.py`` (``magn_type='C'``, the paper's default):
    the margin enters *after* g, subtracted at the target and added elsewhere; b is one scalar
    shared by all classes (learnable in :class:`SphereFace2Head`; ``bias=None`` uses the closed-form
    initial value of :func:`sphereface2_bias_init` for this C); the 1/r is opensphere's
    ``weight = lw·C/r·(λ·onehot + (1 − λ)(1 − onehot))`` in a ``binary_cross_entropy_with_logits``
    averaged over the N·C entries, i.e. per row (lw/r)·Σ_j. Its ``lw`` (50 in every config) is our
    ``loss_weight`` (default 1). Defaults λ = 0.7, r = 40, m = 0.4, t = 3 (the class defaults;
    the MS1M config uses λ = 0.8, r = 64, m = 0.5).

    ``grad``: opensphere computes g and the margin under ``no_grad`` (the gradient is that of
    r·c + b): ``"straight_through"``; ``"exact"`` (default) differentiates g too. ``weight`` (C,)
    scales row i by w_{y_i} and ``"mean"`` divides by Σ w_{y_i} (cross-entropy's convention).
    """
    name = "sphereface2_loss"
    r, m, lam, t, lw = _check_sphereface2(bias, scale, margin, lambda_, t, loss_weight, grad)

    def per_row(z: Tensor, y: Tensor) -> Tensor:
        n, c = z.shape
        b = _sf2_bias(name, bias, c, r, m, lam, t)
        onehot = F.one_hot(y, c).to(z.dtype) if n else z.new_zeros(0, c)
        logits = _sf2_logits(z, onehot, b, r, m, t, grad)
        per_entry = lam * onehot * F.softplus(-logits) + (1.0 - lam) * (1.0 - onehot) * F.softplus(logits)
        return per_entry.sum(dim=1) * (lw / r)

    return class_loss(name, input, target, per_row=per_row, cosine=True, **options)


class SphereFace2Loss(LossModule, loss="sphereface2"):
    """Module form of :func:`lossbook.functional.sphereface2_loss` (a fixed bias; for a learnable
    one, and the class weights, use :class:`SphereFace2Head`)."""


@register_method(kind="head", family="margin", paper="wen2022sphereface2")
class SphereFace2Head(nn.Module):
    r"""SphereFace2's head: class centres ``weight`` (C, d) and the learnable scalar ``bias``.

    The bias starts at :func:`sphereface2_bias_init` (C ≥ 2); the centres are Xavier-normal as
    opensphere's. ``forward(embeddings, target)`` gives the binary logits r·(g(cos θ) ∓ m) + b (N, C);
    :meth:`loss` the SphereFace2 loss. opensphere re-normalises the centres in place under
    ``no_grad`` before each step; we normalise them inside the forward (differentiably), which gives
    the same cosines.
    """

    def __init__(self, in_features: int, num_classes: int, *, scale: float = 40.0, margin: float = 0.4,
                 lambda_: float = 0.7, t: float = 3.0, loss_weight: float = 1.0, grad: str = "exact",
                 dtype=None, device=None) -> None:
        super().__init__()
        name = "SphereFace2Head"
        self.in_features = _check_size(name, "in_features", in_features)
        self.num_classes = _check_size(name, "num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"{name}: num_classes must be at least 2; got {num_classes}.")
        self.scale, self.margin, self.lambda_, self.t = _check_sf2(name, scale, margin, lambda_, t)
        self.loss_weight = check_number(name, "loss_weight", loss_weight, low=0.0)
        if grad not in GRADS:
            raise ValueError(f"{name}: grad must be one of {GRADS}; got {grad!r}.")
        self.grad = grad
        self.weight = nn.Parameter(torch.empty(num_classes, in_features, dtype=dtype, device=device))
        nn.init.xavier_normal_(self.weight)
        b0 = sphereface2_bias_init(num_classes, scale=self.scale, margin=self.margin, lambda_=self.lambda_, t=self.t)
        self.bias = nn.Parameter(torch.full((1,), b0, dtype=dtype, device=device))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, scale={self.scale}, "
                f"margin={self.margin}, lambda_={self.lambda_}, t={self.t}, loss_weight={self.loss_weight}, "
                f"grad={self.grad!r}")

    def cosines(self, embeddings: Tensor) -> Tensor:
        check_embeddings("SphereFace2Head", embeddings, self.in_features)
        return cosine_logits(embeddings, self.weight)

    def forward(self, embeddings: Tensor, target: Tensor) -> Tensor:
        cos = self.cosines(embeddings)
        check_labels("SphereFace2Head", target, embeddings.shape[0], "target")
        check_index_range("SphereFace2Head", target, self.num_classes, None)
        onehot = F.one_hot(target, self.num_classes).to(cos.dtype)
        return _sf2_logits(cos, onehot, self.bias.reshape(()), self.scale, self.margin, self.t, self.grad)

    def loss(self, embeddings: Tensor, target: Tensor, **options: Unpack[IndexOptions]) -> Tensor:
        """The SphereFace2 loss of ``embeddings`` (N, d) with targets (N,); torch's options as in
        :func:`sphereface2_loss`."""
        cos = self.cosines(embeddings)
        return sphereface2_loss(cos, target, bias=self.bias, scale=self.scale, margin=self.margin,
                                lambda_=self.lambda_, t=self.t, loss_weight=self.loss_weight, grad=self.grad,
                                **options)
