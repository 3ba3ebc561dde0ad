r"""Two-level hierarchical softmax: an exactly normalised softmax over D classes whose training step
costs O(m·d·(K + D/K)) instead of O(m·d·D) (Morin & Bengio 2005; the two-level, word-class form of
Goodman 2001, with the classes cut by frequency as in Mikolov et al. 2011).

The classes are split into K clusters; class y lies in cluster c(y) and

.. math::

    p(y \mid h) = p(c(y) \mid h)\; p(y \mid c(y), h), \qquad
    p(c \mid h) = \mathrm{softmax}_c(A h + a), \qquad
    p(y \mid c, h) = \mathrm{softmax}_{y \in c}(W_y \cdot h + b_y).

Both factors are softmaxes, so Σ_y p(y | h) = Σ_c p(c | h) Σ_{y∈c} p(y | c, h) = 1: the model is
exactly normalised (not a sampled or approximate softmax), but it is a *different* model from a flat
softmax over W: with one cluster it is the flat softmax itself.

**Clusters by frequency.** With ``class_counts`` the classes are sorted by count (most frequent
first) and cut into K contiguous clusters of about equal total count: a class heavier than the
remaining mass per remaining cluster gets a cluster of its own, the rest are binned by the midpoint
of their cumulative count. Frequent classes therefore sit in small clusters and rare ones in large
clusters, and a target drawn from the counts lands in each cluster with probability ≈ 1/K, so the
expected size of its cluster is ≈ D/K however skewed the counts are. Without counts the clusters
are contiguous ranges of class indices of equal size (±1). The default K is ≈ √D, which balances
the two softmaxes (K + D/K is smallest at K = √D).

**The step.** The cluster softmax (m×K) runs through autograd. The within-cluster part keeps W's
rows ordered by cluster, so that each cluster is a contiguous block; the examples of a batch are
grouped by cluster and each block is multiplied once for all its examples (its backward likewise).
Only the rows of the batch's clusters receive a gradient: with ``sparse=True`` (default) ``weight``
and ``bias`` get sparse gradients holding just those rows, so ``torch.optim.SGD`` (without weight
decay or momentum), ``SparseAdam`` or ``Adagrad`` update O(m·(D/K)·d) numbers per step, never
O(D·d). The loop over the batch's distinct clusters (at most min(m, K)) runs in Python.

Usage::

    layer = HierarchicalSoftmax(512, 800_000, class_counts=counts)   # K ≈ 894 clusters
    loss = layer(hidden, target)            # NLL, mean over the batch
    loss.backward(); optimizer.step()        # e.g. torch.optim.SGD(layer.parameters(), lr)
    layer.log_prob(hidden)                   # (m, D) log-probabilities in class order, O(m·D·d)
"""

from __future__ import annotations

import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .._validation import check_labels, check_reduction, counted_rows, describe, reduce_loss
from ..registry import register_method

__all__ = ["HierarchicalSoftmax"]

_NAME = "HierarchicalSoftmax"


def _frequency_clusters(counts: Tensor, num_clusters: int) -> tuple[Tensor, Tensor]:
    """Cut the classes, most frequent first, into ``num_clusters`` non-empty clusters of about equal
    total count. Returns ``order`` (D,), the classes sorted by decreasing count (ties keep index
    order), and ``sizes`` (K,), the number of classes of each cluster along ``order``.

    Greedy head: while the next class weighs at least the remaining count per remaining cluster, it
    is a cluster of its own (at most K − 1 of them). The rest, total R over K' clusters, is binned by
    the midpoint of each class's cumulative count: class j goes to ⌊K'·(R_<j + c_j/2)/R⌋. Every class
    of the rest weighs less than R/K', so consecutive midpoints are less than one bin apart and no
    bin is empty; a multi-class cluster holds less than 2R/K' ≤ 2N/K.
    """
    D, K = len(counts), num_clusters
    order = torch.sort(counts, descending=True, stable=True).indices
    c = counts[order].to(torch.float64)
    before = torch.cumsum(c, 0) - c  # count of the more frequent classes
    total = float(c.sum())
    j = torch.arange(D, dtype=torch.float64)
    heavy = c[: K - 1] * (K - j[: K - 1]) >= total - before[: K - 1]  # c_j ≥ remaining / remaining clusters
    h = int(torch.cumprod(heavy.to(torch.int64), 0).sum()) if K > 1 else 0
    rest_k = K - h
    rest = c[h:]
    rest_total = float(rest.sum())
    if rest_total > 0:
        mid = (before[h:] - before[h] + 0.5 * rest) * (rest_k / rest_total)
        label = mid.floor().clamp_(0, rest_k - 1).to(torch.int64)
    else:  # only zero counts left: equal contiguous ranges
        label = (torch.arange(D - h, dtype=torch.int64) * rest_k) // (D - h)
    # guards against rounding (the midpoint rule already gives them): start at 0, never skip a
    # cluster (steps of 0 or 1), and reach the last one
    i = torch.arange(D - h, dtype=torch.int64)
    label = torch.minimum(label, i)
    label = i + torch.cummin(label - i, 0).values
    label = torch.maximum(label, i - (D - h - rest_k))
    sizes = torch.cat([torch.ones(h, dtype=torch.int64), torch.bincount(label, minlength=rest_k)])
    return order, sizes


class _WithinCluster(torch.autograd.Function):
    """−log p(y | c(y), h) per example, the examples grouped by cluster; see the module docstring.

    The logits of every (example, class of its cluster) pair go into one flat buffer, one product
    per distinct cluster; the per-example normalisation runs on the whole buffer at once
    (segment reductions). Forward keeps the softmax minus the one-hot target in that buffer, so the
    backward is two products per distinct cluster. The gradients of ``weight`` and ``bias`` cover
    only the rows of the batch's clusters (sorted, unique): sparse COO tensors when ``sparse`` is
    set, else dense tensors with zeros elsewhere.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, rows: Tensor, clusters: Tensor,
                start: Tensor, size: Tensor, sparse: bool) -> Tensor:
        m, dev = len(h), h.device
        sorted_clusters, perm = torch.sort(clusters, stable=True)
        uniq, counts = torch.unique_consecutive(sorted_clusters, return_counts=True)
        starts_t, sizes_t = start[uniq], size[uniq]
        blocks_t = counts * sizes_t  # entries of the flat buffer per distinct cluster
        lengths = torch.repeat_interleave(sizes_t, counts, output_size=m)  # cluster size of each sorted example
        counts_l, starts_l, sizes_l, blocks_l = (t.tolist() for t in (counts, starts_t, sizes_t, blocks_t))
        total = sum(blocks_l)
        hs = h[perm]
        Z = torch.empty(total, dtype=h.dtype, device=dev)  # logits, example-major within each cluster block
        for hp, zp, st, sz in zip(hs.split(counts_l), Z.split(blocks_l), starts_l, sizes_l):
            w = weight.narrow(0, st, sz).T
            if bias is None:
                torch.mm(hp, w, out=zp.view(-1, sz))
            else:
                torch.addmm(bias.narrow(0, st, sz), hp, w, out=zp.view(-1, sz))
        # where each sorted example's target lies in Z
        group = torch.repeat_interleave(torch.arange(len(uniq), device=dev), counts, output_size=m)
        offsets_t = torch.cumsum(blocks_t, 0) - blocks_t
        firsts_t = torch.cumsum(counts, 0) - counts
        pos = offsets_t[group] + (torch.arange(m, device=dev) - firsts_t[group]) * sizes_t[group] + rows[perm] \
            - starts_t[group]
        nll = torch.empty(m, dtype=h.dtype, device=dev)
        if m:  # log-sum-exp of each example's segment of Z
            shift = torch.segment_reduce(Z, "max", lengths=lengths)
            E = (Z - torch.repeat_interleave(shift, lengths, output_size=total)).exp_()
            sums = torch.segment_reduce(E, "sum", lengths=lengths)
            nll[perm] = shift + sums.log() - Z[pos]
        G = None
        if m and any(ctx.needs_input_grad[:3]):
            G = E.div_(torch.repeat_interleave(sums, lengths, output_size=total))  # p, then p − onehot
            G[pos] -= 1.0
        ctx.save_for_backward(hs, weight, bias, perm, G, lengths, starts_t, sizes_t)
        ctx.meta = (counts_l, starts_l, sizes_l, blocks_l, sparse)
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_nll: Tensor):
        hs, weight, bias, perm, G, lengths, starts_t, sizes_t = ctx.saved_tensors
        counts_l, starts_l, sizes_l, blocks_l, sparse = ctx.meta
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        D, d, m, R, dev = weight.shape[0], weight.shape[1], len(hs), sum(sizes_l), weight.device
        gh = torch.empty_like(hs) if need_h else None  # every sorted example is in one group
        gw = torch.empty(R, d, dtype=weight.dtype, device=dev) if need_w else None
        gb = torch.empty(R, dtype=weight.dtype, device=dev) if need_b else None
        if m:
            # ∂L/∂z: (p − onehot) scaled by each example's incoming gradient
            G = G * torch.repeat_interleave(grad_nll[perm], lengths, output_size=len(G))
            nothing = [None] * len(counts_l)
            gh_parts = gh.split(counts_l) if need_h else nothing
            gw_parts = gw.split(sizes_l) if need_w else nothing
            gb_parts = gb.split(sizes_l) if need_b else nothing
            for i, (g, hp, st, sz) in enumerate(zip(G.split(blocks_l), hs.split(counts_l), starts_l, sizes_l)):
                g = g.view(-1, sz)
                if need_h:
                    torch.mm(g, weight.narrow(0, st, sz), out=gh_parts[i])
                if need_w:
                    torch.mm(g.T, hp, out=gw_parts[i])
                if need_b:
                    torch.sum(g, 0, out=gb_parts[i])
        grad_h = grad_w = grad_b = None
        if need_h:
            grad_h = torch.empty_like(gh)
            grad_h[perm] = gh
        if need_w or need_b:
            first_rows = torch.cumsum(sizes_t, 0) - sizes_t
            rows = torch.arange(R, device=dev) + torch.repeat_interleave(starts_t - first_rows, sizes_t, output_size=R)
            if sparse:
                idx = rows[None]
                if need_w:
                    grad_w = torch.sparse_coo_tensor(idx, gw, (D, d), is_coalesced=True, check_invariants=False)
                if need_b:
                    grad_b = torch.sparse_coo_tensor(idx, gb, (D,), is_coalesced=True, check_invariants=False)
            else:
                if need_w:
                    grad_w = torch.zeros_like(weight).index_copy_(0, rows, gw)
                if need_b:
                    grad_b = torch.zeros_like(bias).index_copy_(0, rows, gb)
        return grad_h, grad_w, grad_b, None, None, None, None, None


@register_method(kind="layer", family="softmax", paper="morin2005hierarchical")
class HierarchicalSoftmax(nn.Module):
    """Two-level hierarchical softmax ``in_features → num_classes``, classes clustered by frequency,
    exactly normalised; a step costs O(m·d·(K + D/K)) (see the module docstring).

    Args:
        in_features: size d of the hidden states.
        num_classes: number of classes D.
        num_clusters: K, in [1, D]; default round(√D).
        class_counts: (D,) nonnegative counts (or frequencies) of the classes: clusters of about
            equal total count, frequent classes in small clusters. Default: K contiguous ranges of
            class indices of equal size.
        bias: learn a bias per cluster and per class.
        sparse: sparse gradients for ``weight`` and ``bias`` (only the rows of the batch's clusters).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``; ``forward`` may override it.
        init_std: weights ~ N(0, init_std²), default 1/√d; biases start at 0.
        dtype, device, generator: of the parameters and of their initial draw.

    Parameters: ``cluster_weight`` (K, d) and ``cluster_bias`` (K,) of the cluster softmax;
    ``weight`` (D, d) and ``bias`` (D,) of the within-cluster softmaxes, **rows ordered by cluster**:
    class k's row is ``weight[row_of[k]]``. Buffers: ``cluster_of`` (D,) the cluster of each class,
    ``row_of`` (D,), ``class_of_row`` (D,) its inverse, ``cluster_start`` and ``cluster_size`` (K,)
    each cluster's first row and number of classes.
    """

    def __init__(self, in_features: int, num_classes: int, *, num_clusters: int | None = None,
                 class_counts=None, bias: bool = True, sparse: bool = True, reduction: str = "mean",
                 init_std: float | None = None, dtype: torch.dtype | None = None, device=None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for arg, v, low in (("in_features", in_features, 1), ("num_classes", num_classes, 2)):
            if isinstance(v, bool) or not isinstance(v, Integral) or v < low:
                raise ValueError(f"{_NAME}: {arg} must be an int ≥ {low}; got {v!r}.")
        D = int(num_classes)
        if num_clusters is None:
            K = max(1, min(D, round(math.sqrt(D))))
        elif isinstance(num_clusters, bool) or not isinstance(num_clusters, Integral):
            raise TypeError(f"{_NAME}: num_clusters must be an int in [1, {D}] or None (≈√D); "
                            f"got {type(num_clusters).__name__}.")
        elif not 1 <= num_clusters <= D:
            raise ValueError(f"{_NAME}: num_clusters must lie in [1, num_classes={D}]; got {num_clusters}. "
                             f"Use num_clusters=None for ≈√D = {max(1, round(math.sqrt(D)))}.")
        else:
            K = int(num_clusters)
        check_reduction(_NAME, reduction)
        counts = self._check_counts(class_counts, D)
        self.in_features, self.num_classes, self.num_clusters = int(in_features), D, K
        self.sparse, self.reduction = bool(sparse), reduction
        self.frequency_clustered = class_counts is not None

        order, sizes = _frequency_clusters(counts, K)
        row_of = torch.empty(D, dtype=torch.int64)
        row_of[order] = torch.arange(D)
        cluster_of_row = torch.repeat_interleave(torch.arange(K), sizes)
        for name, t in (("cluster_of", cluster_of_row[row_of]), ("row_of", row_of), ("class_of_row", order),
                        ("cluster_of_row", cluster_of_row), ("cluster_start", torch.cumsum(sizes, 0) - sizes),
                        ("cluster_size", sizes)):
            self.register_buffer(name, t.to(device))

        d = self.in_features
        std = d**-0.5 if init_std is None else float(init_std)
        factory = {"dtype": dtype, "device": device}

        def draw(*shape):
            src = "cpu" if generator is None else generator.device
            return torch.randn(*shape, generator=generator, dtype=dtype, device=src).mul_(std).to(device)

        self.cluster_weight = nn.Parameter(draw(K, d))
        self.weight = nn.Parameter(draw(D, d))
        self.cluster_bias = nn.Parameter(torch.zeros(K, **factory)) if bias else None
        self.bias = nn.Parameter(torch.zeros(D, **factory)) if bias else None

    @staticmethod
    def _check_counts(class_counts, D: int) -> Tensor:
        if class_counts is None:
            return torch.ones(D, dtype=torch.float64)
        try:
            counts = torch.as_tensor(class_counts).detach().to("cpu")
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{_NAME}: class_counts must be a sequence of {D} nonnegative numbers (one per class) "
                            f"or None; got {type(class_counts).__name__}.") from None
        if counts.dtype == torch.bool or counts.is_complex():
            raise TypeError(f"{_NAME}: class_counts must hold real numbers; got {describe(counts)}.")
        if counts.shape != (D,):
            raise ValueError(f"{_NAME}: class_counts must have shape ({D},), one count per class; got "
                             f"{describe(counts)}. Pass the count of every class, 0 for unseen ones.")
        counts = counts.to(torch.float64)
        if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
            bad = counts[~torch.isfinite(counts) | (counts < 0)][0].item()
            raise ValueError(f"{_NAME}: class_counts must be finite and ≥ 0; got {bad!r}. "
                             "Pass raw counts (or frequencies), not log-counts.")
        if not float(counts.sum()) > 0:
            raise ValueError(f"{_NAME}: class_counts sum to 0; give at least one class a positive count, "
                             "or pass class_counts=None for equal clusters.")
        return counts

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, num_clusters={self.num_clusters}, "
                f"frequency_clustered={self.frequency_clustered}, bias={self.bias is not None}, sparse={self.sparse}, "
                f"reduction={self.reduction!r}")

    # ------------------------------------------------------------------ checks
    def _check_hidden(self, hidden: Tensor, where: str) -> None:
        name = f"{_NAME}.{where}" if where != "forward" else _NAME
        shape = f"(m, {self.in_features})"
        if not isinstance(hidden, Tensor) or not hidden.is_floating_point():
            raise TypeError(f"{name}: hidden must be a floating tensor of shape {shape}; got {describe(hidden)}.")
        if hidden.dim() != 2 or hidden.shape[1] != self.in_features:
            fix = " Did you mean hidden.reshape(-1, hidden.shape[-1])?" if hidden.dim() > 2 and \
                hidden.shape[-1] == self.in_features else ""
            raise ValueError(f"{name}: hidden must have shape {shape}; got {describe(hidden)}.{fix}")
        if hidden.dtype != self.weight.dtype:
            raise TypeError(f"{name}: hidden is {describe(hidden)} but the layer's parameters are "
                            f"{str(self.weight.dtype).replace('torch.', '')}; use hidden.to({self.weight.dtype}) "
                            f"or layer.to({hidden.dtype}).")
        if hidden.device != self.weight.device:
            raise ValueError(f"{name}: hidden is on {hidden.device} but the layer is on {self.weight.device}; "
                             f"use layer.to({str(hidden.device)!r}) or hidden.to({str(self.weight.device)!r}).")

    # ------------------------------------------------------------------ training
    def forward(self, hidden: Tensor, target: Tensor, *, reduction: str | None = None) -> Tensor:
        """Negative log-likelihood −log p(target | hidden): ``"mean"`` over the batch, ``"sum"``,
        or one value per example (``"none"``); the layer's ``reduction`` when None. Costs
        O(m·d·(K + D/K)) on average: the cluster softmax and the softmax of each target's cluster."""
        reduction = self.reduction if reduction is None else reduction
        check_reduction(_NAME, reduction)
        self._check_hidden(hidden, "forward")
        check_labels(_NAME, target, hidden.shape[0], "target")
        if target.device != hidden.device:
            raise ValueError(f"{_NAME}: target is on {target.device} but hidden is on {hidden.device}; "
                             f"use target.to({str(hidden.device)!r}).")
        counted_rows(_NAME, target, self.num_classes, None)  # raises on an index outside [0, D)
        clusters = self.cluster_of[target]
        top = F.log_softmax(F.linear(hidden, self.cluster_weight, self.cluster_bias), dim=1)
        top = top.gather(1, clusters[:, None]).squeeze(1)
        low = _WithinCluster.apply(hidden, self.weight, self.bias, self.row_of[target], clusters,
                                   self.cluster_start, self.cluster_size, self.sparse)
        return reduce_loss(low - top, reduction)

    # ------------------------------------------------------------------ evaluation
    def log_prob(self, hidden: Tensor) -> Tensor:
        """log p(y | hidden) for every class, (m, D) in class order: O(m·D·d). Differentiable
        (autograd through the explicit formula); each row's probabilities sum to 1."""
        self._check_hidden(hidden, "log_prob")
        m, K = hidden.shape[0], self.num_clusters
        top = F.log_softmax(F.linear(hidden, self.cluster_weight, self.cluster_bias), dim=1)  # (m, K)
        z = F.linear(hidden, self.weight, self.bias)  # (m, D), rows in cluster order
        cl = self.cluster_of_row
        with torch.no_grad():  # the shift of each cluster's log-sum-exp (its gradient cancels)
            shift = torch.full((m, K), -math.inf, dtype=z.dtype, device=z.device)
            shift = shift.scatter_reduce(1, cl.expand(m, -1), z, "amax")
            shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        sums = torch.zeros(m, K, dtype=z.dtype, device=z.device).index_add(1, cl, torch.exp(z - shift[:, cl]))
        lse = shift + torch.log(sums)
        return (z + (top - lse)[:, cl])[:, self.row_of]

    @torch.no_grad()
    def topk(self, hidden: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k most probable classes per example and their log-probabilities (O(m·D·d))."""
        if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= self.num_classes:
            raise ValueError(f"{_NAME}.topk: k must be an int in [1, {self.num_classes}]; got {k!r}.")
        return self.log_prob(hidden).topk(int(k), dim=1)

    @torch.no_grad()
    def predict(self, hidden: Tensor) -> Tensor:
        """The most probable class per example (m,) (O(m·D·d))."""
        return self.log_prob(hidden).argmax(dim=1)
