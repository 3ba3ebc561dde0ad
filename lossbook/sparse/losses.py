r"""Losses of the sparse maps: the sparsemax loss, the entmax-1.5 loss and the sparse-softmax loss.

The sparsemax and entmax-1.5 losses are Fenchel–Young losses: with p* the map's output and H its
entropy (H₂(p) = ½(1 − ‖p‖²) for sparsemax, H₁.₅(p) = (1 − Σ p_j^{3/2})/0.75 for entmax-1.5),

.. math::

    \ell(z, y) = p^{*\top} z + H(p^*) - z_y ,\qquad \nabla_z \ell = p^* - e_y .

For sparsemax this is Martins & Astudillo's (2016) −z_y + ½Σ_{j∈S}(z_j² − τ²) + ½, which for two
classes is a quarter of the modified Huber loss of the margin t = z_y − z_other: 0 for t ≥ 1,
(1 − t)²/4 for |t| < 1, −t for t ≤ −1. The paper's multi-label loss (a probability target q, e.g.
normalised labels) is −qᵀz + ½Σ_{j∈S}(z_j² − τ²) + ½‖q‖², which is 0 exactly when sparsemax(z) = q:
:func:`sparsemax_multilabel_loss`. A probability target given to the registered
:func:`sparsemax_loss` gives instead lossbook's expected loss Σ_k q_k ℓ(z, k), which differs from it
by the constant ½(1 − ‖q‖²) and has the same gradient p* − q.

The sparse-softmax loss (Sun et al., 2021) is cross-entropy over the k largest logits Ω_k, with
the target always kept, so that it is finite and never negative:

.. math::

    \ell_k(z, y) = \log \sum_{j\in\Omega_k\cup\{y\}} e^{z_j} - z_y .

It is the log-loss of the softmax over Ω_k ∪ {y}. Sparse-softmax's own probability of a target
outside Ω_k is 0, so its −log would be infinite; the sum over Ω_k alone, log Σ_{Ω_k} e^{z_j} − z_y,
is also ≥ 0 but is the log-loss of no distribution that contains y and pulls z_y up with the
constant force 1. Keeping y gives p − e_y over the kept set as the gradient. k ≥ C
(or k = None) is cross-entropy.
"""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from .._validation import check_logits, check_reduction, describe, format_shape, reduce_loss
from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss, register_method
from .maps import _check_k, entmax15, sparsemax

__all__ = [
    "TOPK_FROM",
    "Entmax15Loss",
    "SparseSoftmaxLoss",
    "SparsemaxLoss",
    "entmax15_loss",
    "fenchel_young_terms",
    "sparse_softmax_loss",
    "sparse_softmax_terms",
    "sparsemax_loss",
    "sparsemax_multilabel_loss",
]

_ENTROPY = {
    "sparsemax": lambda p: 0.5 * (1.0 - p.square().sum(-1)),
    "entmax15": lambda p: (1.0 - p.pow(1.5).sum(-1)) / 0.75,
}
_MAPS = {"sparsemax": sparsemax, "entmax15": entmax15}


#: From this many classes on, the sparsemax loss finds its threshold by the top-k path (exact).
TOPK_FROM = 2048


def _conjugate(z: Tensor, map_name: str, k: int | None = None) -> tuple[Tensor, Tensor]:
    """Ω*(z) = p*ᵀz + H(p*) per row on the shifted scores (its gradient is p*), and those scores."""
    z = z - z.detach().amax(1, keepdim=True)
    p = sparsemax(z, k=k) if map_name == "sparsemax" else _MAPS[map_name](z)
    return (p * z).sum(1) + _ENTROPY[map_name](p), z


def _auto_k(num_classes: int) -> int | None:
    return 64 if num_classes >= TOPK_FROM else None


def fenchel_young_terms(logits: Tensor, map_name: str = "sparsemax", *, k: int | None = None) -> Tensor:
    r"""The per-class Fenchel–Young terms L[i, k] = p*ᵀz_i + H(p*) − z_ik of ``map_name``
    (``"sparsemax"`` or ``"entmax15"``), shape (N, C); row i, target y is ``L[i, y]``. For sparsemax,
    ``k`` starts the top-k threshold path (:func:`~lossbook.sparse.sparsemax`); None sorts each row."""
    if map_name not in _MAPS:
        raise ValueError(f"fenchel_young_terms: map_name must be one of {tuple(_MAPS)}; got {map_name!r}.")
    conj, z = _conjugate(logits, map_name, k)
    return conj.unsqueeze(1) - z


_FY_PROPERTIES = {"shift_invariant": True, "scale_invariant": False, "nonnegative": True, "bounded": False,
                  "symmetric": False}


@register_loss("sparsemax_loss", family="sparse", paper="martins2016softmax", supports=CLASS_OPTIONS,
               properties=_FY_PROPERTIES,
               summary="Sparsemax loss −z_y + ½Σ_{j∈S}(z_j² − τ²) + ½ (gradient sparsemax(z) − e_y; "
                       "two classes: ¼·modified Huber).",
               formula=r"\ell(z,y) = -z_y + \tfrac12\sum_{j\in S(z)}\bigl(z_j^2-\tau(z)^2\bigr) + \tfrac12")
def sparsemax_loss(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Sparsemax loss of Martins & Astudillo (2016): −z_y + ½Σ_{j∈S}(z_j² − τ²) + ½, with S and τ
    the support and threshold of :func:`~lossbook.sparse.sparsemax`; its gradient is
    sparsemax(z) − e_y, and it is 0 once z_y exceeds every other logit by 1. No hyper-parameter;
    from :data:`TOPK_FROM` classes on, the threshold comes from the exact top-k path.
    For the paper's multi-label form (0 at sparsemax(z) = q) use
    :func:`~lossbook.sparse.sparsemax_multilabel_loss`.
    """
    return class_loss("sparsemax_loss", input, target, per_class=lambda z, y: fenchel_young_terms(z, "sparsemax", k=_auto_k(z.shape[1])),
                      prob_target=True, **options)


class SparsemaxLoss(LossModule, loss="sparsemax_loss"):
    """Module form of :func:`lossbook.functional.sparsemax_loss`."""


@register_loss("entmax15_loss", family="sparse", paper="peters2019sparse", supports=CLASS_OPTIONS,
               properties=_FY_PROPERTIES,
               summary="Entmax-1.5 (Tsallis) Fenchel–Young loss p*ᵀz + H₁.₅(p*) − z_y, p* = entmax15(z).",
               formula=r"\ell(z,y) = p^{*\top}z + \frac{1-\sum_j p_j^{*3/2}}{0.75} - z_y,\ "
                       r"p^* = \mathrm{entmax}_{1.5}(z)")
def entmax15_loss(input: Tensor, target: Tensor, **options: Unpack[ClassOptions]) -> Tensor:
    r"""Entmax-1.5 loss (Peters, Niculae & Martins, 2019): p*ᵀz + (1 − Σ_j p*_j^{3/2})/0.75 − z_y with
    p* = :func:`~lossbook.sparse.entmax15` (z); gradient p* − e_y. No hyper-parameter."""
    return class_loss("entmax15_loss", input, target, per_class=lambda z, y: fenchel_young_terms(z, "entmax15"),
                      prob_target=True, **options)


class Entmax15Loss(LossModule, loss="entmax15_loss"):
    """Module form of :func:`lossbook.functional.entmax15_loss`."""


@register_method(kind="stateful loss", family="sparse", paper="martins2016softmax")
def sparsemax_multilabel_loss(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""Multi-label sparsemax loss of Martins & Astudillo (2016): −qᵀz + ½Σ_{j∈S}(z_j² − τ²) + ½‖q‖²
    for a probability target q (N, C) (labels normalised to sum to one), 0 exactly when
    sparsemax(z) = q; gradient sparsemax(z) − q. It is :func:`sparsemax_loss` with the same q minus
    the constant ½(1 − ‖q‖²). The predicted label set is the support of sparsemax(z).
    ``reduction``: ``"none"``, ``"mean"`` (over rows) or ``"sum"``.
    """
    name = "sparsemax_multilabel_loss"
    check_logits(name, input)
    check_reduction(name, reduction)
    if not isinstance(target, Tensor) or not target.is_floating_point() or target.shape != input.shape:
        raise ValueError(f"{name}: target must be a floating probability tensor shaped like input "
                         f"{format_shape(input)}; got {describe(target)}. Normalise the 0/1 label matrix: "
                         "labels / labels.sum(1, keepdim=True).")
    if target.numel() and (bool((target < 0).any()) or not torch.allclose(
            target.sum(1), torch.ones((), dtype=target.dtype, device=target.device), atol=1e-4)):
        raise ValueError(f"{name}: each target row must be a probability vector (≥ 0, summing to 1). "
                         "Normalise the label matrix: labels / labels.sum(1, keepdim=True).")
    if input.shape[0] == 0:
        return reduce_loss(input.sum(1), reduction)
    conj, z = _conjugate(input, "sparsemax", _auto_k(input.shape[1]))
    q = target.to(input.dtype)
    per_row = conj - (q * z).sum(1) - 0.5 * (1.0 - q.square().sum(1))
    return reduce_loss(per_row, reduction)


def _check_sparse_softmax(k=4):
    return _check_k("sparse_softmax_loss", k)


def sparse_softmax_rows(z: Tensor, y: Tensor, k: int | None) -> Tensor:
    """ℓ_k(z_i, y_i) = log Σ_{Ω_k ∪ {y_i}} e^z − z_{y_i} per row (no option handling)."""
    c = z.shape[1]
    z_y = z.gather(1, y.unsqueeze(1)).squeeze(1)
    if k is None or k >= c:
        return torch.logsumexp(z, dim=1) - z_y
    top = z.topk(k, dim=1)
    lse = torch.logsumexp(top.values, dim=1)
    kept = (top.indices == y.unsqueeze(1)).any(1)
    # a target outside the top k joins the sum: log(e^lse + e^{z_y})
    return torch.where(kept, lse, torch.logaddexp(lse, z_y)) - z_y


def sparse_softmax_terms(z: Tensor, k: int | None) -> Tensor:
    """ℓ_k(z_i, j) for every class j, shape (N, C) (no option handling)."""
    c = z.shape[1]
    if k is None or k >= c or z.shape[0] == 0:
        return -torch.log_softmax(z, dim=1)
    top = z.topk(k, dim=1)
    lse = torch.logsumexp(top.values, dim=1, keepdim=True)
    kept = torch.zeros_like(z, dtype=torch.bool).scatter(1, top.indices, True)
    return torch.where(kept, lse, torch.logaddexp(lse, z)) - z


def _check_sparse_softmax(k=4):
    return _check_k("sparse_softmax_loss", k)


@register_loss("sparse_softmax_loss", family="sparse", paper="sun2021sparse", supports=CLASS_OPTIONS,
               check=_check_sparse_softmax,
               properties={"shift_invariant": True, "scale_invariant": False, "nonnegative": True,
                           "bounded": False, "symmetric": False, "reduces_to_ce_when": {"k": None}},
               summary="Sparse-softmax loss log Σ_{Ω_k∪{y}} e^{z_j} − z_y: cross-entropy over the top k logits "
                       "and the target (k ≥ C: CE).",
               formula=r"\ell_k(z,y) = \log\sum_{j\in\Omega_k(z)\cup\{y\}} e^{z_j} - z_y")
def sparse_softmax_loss(input: Tensor, target: Tensor, *, k: int | None = 4,
                        **options: Unpack[ClassOptions]) -> Tensor:
    r"""Sparse-softmax loss (Sun et al., 2021): log Σ_{j∈Ω_k∪{y}} e^{z_j} − z_y, Ω_k the indices of the
    k largest logits. The target is always in the sum, so the loss is ≥ 0 and pulls z_y up even
    when y is outside the top k. ``k`` ≥ 1 (None or k ≥ C: cross-entropy); the default 4 is ours (we
    could not check a single value in the paper), the chapter sweeps k. Class-index targets without
    label smoothing take one top-k and one gather per row; the other options build the (N, C) terms.
    """
    k = _check_sparse_softmax(k)
    if isinstance(target, Tensor) and not target.is_floating_point() and not options.get("label_smoothing"):
        options.pop("label_smoothing", None)
        return class_loss("sparse_softmax_loss", input, target,
                          per_row=lambda z, y: sparse_softmax_rows(z, y, k), **options)
    return class_loss("sparse_softmax_loss", input, target, per_class=lambda z, y: sparse_softmax_terms(z, k),
                      prob_target=True, **options)


class SparseSoftmaxLoss(LossModule, loss="sparse_softmax_loss"):
    """Module form of :func:`lossbook.functional.sparse_softmax_loss`."""
