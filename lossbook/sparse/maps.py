r"""Sparse probability maps: sparsemax, entmax-1.5 and sparse-softmax (softmax over the top k).

All three map scores z to the probability simplex and can put exact zeros there:

.. math::

    \mathrm{sparsemax}(z)_i = [z_i - \tau(z)]_+ ,\qquad
    \mathrm{entmax}_{1.5}(z)_i = [z_i/2 - \tau(z)]_+^2 ,\qquad
    \mathrm{sparse\_softmax}_k(z)_i = \frac{e^{z_i}\,[i \in \Omega_k]}{\sum_{j\in\Omega_k} e^{z_j}},

with τ(z) the threshold that makes the output sum to one and Ω_k the indices of the k largest
scores. Sparsemax (Martins & Astudillo, 2016) is the Euclidean projection onto the simplex;
entmax-1.5 (Peters, Niculae & Martins, 2019) sits between it and softmax. Both are private
:class:`torch.autograd.Function` s with their closed-form Jacobians,

.. math::

    J_{\mathrm{sparsemax}} = \mathrm{diag}(s) - \frac{s s^\top}{|S|},\qquad
    J_{\mathrm{entmax}_{1.5}} = \mathrm{diag}(\sqrt p) - \frac{\sqrt p \sqrt p^\top}{\sum_j \sqrt{p_j}},

s the indicator of the support S = {i : p_i > 0}. The thresholds come from one sort of the row
(for sparsemax, the largest k with 1 + k·z_(k) > Σ_{j≤k} z_(j); for entmax-1.5, the root of
Σ_{j≤k} (z_(j)/2 − τ)² = 1 on the largest consistent support). For many classes, ``sparsemax(z, k=...)``
sorts only the top k of each row (``torch.topk``) and doubles k for the rows whose support could
be larger, which is exact and much cheaper than a full sort when the support is small.
Every map subtracts the row maximum first (all three are shift-invariant), so logits of ±1e4
give finite outputs and gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import describe
from ..registry import register_method

__all__ = ["entmax15", "sparse_softmax", "sparsemax", "sparsemax_threshold"]


def _check_map_input(name: str, z: Tensor, dim: int) -> int:
    if not isinstance(z, Tensor) or not z.is_floating_point():
        raise TypeError(f"{name}: input must be a floating tensor; got {describe(z)}. Use input.float().")
    if z.dim() == 0:
        raise ValueError(f"{name}: input must have at least one dimension; got a scalar. Use input.reshape(1, -1).")
    if not -z.dim() <= dim < z.dim():
        raise ValueError(f"{name}: dim={dim} is out of range for a tensor of {z.dim()} dimensions.")
    return dim % z.dim()


def _check_k(name: str, k, allow_none: bool = True) -> int | None:
    if k is None and allow_none:
        return None
    if isinstance(k, float) and k.is_integer():
        k = int(k)  # 4.0 is the count 4
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{name}: k must be a positive int{' or None' if allow_none else ''}; "
                        f"got {type(k).__name__}. Use k=int(k).")
    if k < 1:
        raise ValueError(f"{name}: k must be ≥ 1 (the number of kept classes); got {k}.")
    return k


def _threshold_sorted(top: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Sparsemax threshold from the descending scores ``top`` (…, k) of rows with ``num_classes``
    entries: τ and the support size found within these k."""
    k = top.shape[-1]
    ranks = torch.arange(1, k + 1, dtype=top.dtype, device=top.device)
    cumsum = top.cumsum(-1) - 1.0
    size = (ranks * top > cumsum).sum(-1, keepdim=True)  # ≥ 1: the largest score always qualifies
    tau = cumsum.gather(-1, size - 1) / size.to(top.dtype)
    return tau, size


def sparsemax_threshold(z: Tensor, *, k: int | None = None) -> tuple[Tensor, Tensor]:
    """τ(z) and the support size |S| of sparsemax along the last dimension, each of shape (…, 1).

    ``k`` None sorts the whole row; an int sorts the top k and doubles k for the rows whose
    support may not fit (exact either way).
    """
    c = z.shape[-1]
    k = c if k is None else min(k, c)
    while True:
        top = z.topk(k, dim=-1).values if k < c else z.sort(dim=-1, descending=True).values
        tau, size = _threshold_sorted(top, c)
        if k == c or not bool((size == k).any()):
            return tau, size
        k = min(2 * k, c)


class _Sparsemax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, k: int | None) -> Tensor:
        z = z - z.amax(-1, keepdim=True)
        tau, _ = sparsemax_threshold(z, k=k)
        p = (z - tau).clamp_min(0.0)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor):
        (p,) = ctx.saved_tensors
        s = (p > 0).to(grad.dtype)
        g = grad * s
        mean = g.sum(-1, keepdim=True) / s.sum(-1, keepdim=True)
        return s * (grad - mean), None


def _entmax15_threshold(x: Tensor) -> Tensor:
    """τ of entmax-1.5 for x = (z − max z)/2 along the last dimension, shape (…, 1)."""
    xs = x.sort(dim=-1, descending=True).values
    ranks = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    mean = xs.cumsum(-1) / ranks
    mean_sq = (xs * xs).cumsum(-1) / ranks
    spread = ranks * (mean_sq - mean * mean)  # Σ (x_j − mean)² over the top k
    delta = ((1.0 - spread) / ranks).clamp_min(0.0)
    tau = mean - delta.sqrt()  # root of Σ_{j≤k} (x_j − τ)² = 1 on the support of size k
    size = (tau <= xs).sum(-1, keepdim=True)
    return tau.gather(-1, size - 1)


class _Entmax15(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        x = (z - z.amax(-1, keepdim=True)) / 2.0
        p = (x - _entmax15_threshold(x)).clamp_min(0.0).square()
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: Tensor):
        (p,) = ctx.saved_tensors
        r = p.sqrt()
        g = grad * r
        return g - r * (g.sum(-1, keepdim=True) / r.sum(-1, keepdim=True))


def _along_last(fn, z: Tensor, dim: int) -> Tensor:
    if dim == z.dim() - 1:
        return fn(z)
    return fn(z.transpose(dim, -1)).transpose(dim, -1)


@register_method(kind="building block", family="sparse", paper="martins2016softmax")
def sparsemax(input: Tensor, dim: int = -1, *, k: int | None = None) -> Tensor:
    r"""Sparsemax of Martins & Astudillo (2016): the Euclidean projection of ``input`` onto the
    probability simplex along ``dim``, p = [z − τ(z)]₊.

    ``k`` (optional) sorts only the top k scores of each row first and doubles k where the support
    may be larger: exact, and faster than the full sort when C is large and the support small.
    The backward pass is the closed form diag(s) − ssᵀ/|S|.
    """
    dim = _check_map_input("sparsemax", input, dim)
    k = _check_k("sparsemax", k)
    return _along_last(lambda t: _Sparsemax.apply(t, k), input, dim)


@register_method(kind="building block", family="sparse", paper="peters2019sparse")
def entmax15(input: Tensor, dim: int = -1) -> Tensor:
    r"""1.5-entmax of Peters, Niculae & Martins (2019) along ``dim``: p = [z/2 − τ(z)]₊², sparse like
    sparsemax but smoother. Exact sort-based threshold; backward diag(√p) − √p√pᵀ/Σ√p."""
    dim = _check_map_input("entmax15", input, dim)
    return _along_last(_Entmax15.apply, input, dim)


@register_method(kind="building block", family="sparse", paper="sun2021sparse")
def sparse_softmax(input: Tensor, k: int, dim: int = -1) -> Tensor:
    r"""Sparse-softmax of Sun et al. (2021): softmax over the k largest scores along ``dim``, exact
    zeros elsewhere (k ≥ C gives softmax)."""
    dim = _check_map_input("sparse_softmax", input, dim)
    k = _check_k("sparse_softmax", k, allow_none=False)
    if k >= input.shape[dim]:
        return torch.softmax(input, dim=dim)
    top = input.topk(k, dim=dim)
    return torch.zeros_like(input).scatter(dim, top.indices, torch.softmax(top.values, dim=dim))
