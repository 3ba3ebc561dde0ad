r"""Partial FC (An et al. 2021, 2022): a margin-softmax head over a per-step sample of the class
centres, in one process or model-parallel over ``torch.distributed``.

Each step keeps every class centre that is a positive in the batch and fills up to
S = ⌊r·C⌋ centres with uniformly drawn negatives (without replacement, no logQ correction); the
labels are remapped to the sampled columns and the loss is a margin softmax (ArcFace, CosFace ...
from :mod:`lossbook.margin.transforms`) over the sampled cosines. When the positives alone exceed S, only
the positives are used (as insightface does).

Model parallel (``distributed=True``), as insightface's ``PartialFC_V2``: rank k owns the class
shard [start_k, start_k + C_k) with C_k = C//W + (k < C mod W); embeddings and labels are
all-gathered (the embeddings with a gradient: its backward sums the slices of every rank and keeps
this rank's); each rank samples ⌊r·C_k⌋ centres of its own shard; the softmax normaliser is reduced
across ranks (max, then Σexp) and the target logit comes from the rank owning it. Only two numbers
per example cross processes in the forward. The single-process form runs the *same* code with
every reduction the identity, so the two cannot drift apart.

Every rank returns the loss of the whole (gathered) batch; the gradient each rank receives for its
own embeddings is that of this loss. Under ``DistributedDataParallel`` (which averages the
backbone's gradients over ranks) pass ``embedding_grad_scale=world_size`` to get the gradient of
the loss itself, as insightface does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_embeddings, check_labels, check_number, check_reduction, reduce_loss
from ..margin.transforms import ArcFace, CosineMargin, unit_rows
from ..registry import register_method
from ._sparse import gather_rows

__all__ = [
    "partial_fc_sample",
    "partial_fc_loss",
    "PartialFC",
    "PartialFCOutput",
]


def partial_fc_sample(labels: Tensor, num_local: int, num_sample: int, *,
                      generator: torch.Generator | None = None) -> Tensor:
    """Sorted indices of the centres to use: every local positive (``labels`` ≥ 0) and uniformly
    drawn others, ``num_sample`` in all; just the positives when they are more than ``num_sample``.

    As insightface's ``sample``: ``perm = rand(num_local)``, ``perm[positives] = 2``, top-k.
    """
    device = labels.device
    positive = torch.unique(labels[labels >= 0], sorted=True)
    if num_sample < positive.numel():
        return positive
    src = device if generator is None else generator.device
    perm = torch.rand(num_local, generator=generator, device=src).to(device)
    perm[positive] = 2.0
    return torch.topk(perm, k=num_sample).indices.sort().values


class _AllGather(torch.autograd.Function):
    """All-gather of equal-sized row blocks; the backward sums every rank's gradient of the
    gathered tensor and keeps this rank's rows (times ``scale``)."""

    @staticmethod
    def forward(ctx, x: Tensor, group, scale: float) -> Tensor:
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.group, ctx.rank, ctx.n, ctx.scale = group, rank, x.shape[0], scale
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        mine = grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]
        return (mine * ctx.scale if ctx.scale != 1.0 else mine), None, None


class _ShardedCrossEntropy(torch.autograd.Function):
    """Per-row softmax cross-entropy over logits split by columns across the ranks of ``group``
    (None: one process). ``target`` holds the local column of the row's class, or −1 when another
    rank owns it. Forward: all-reduce MAX of the row max, SUM of Σexp and of the target logit.
    Backward (local, exact): (softmax − onehot)·grad_row."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, group) -> Tensor:
        n, s = logits.shape
        z = logits.detach()
        row_max = z.amax(dim=1) if s else torch.full((n,), float("-inf"), dtype=z.dtype, device=z.device)
        if group is not None:
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        e = (z - row_max.unsqueeze(1)).exp_()
        sum_exp = e.sum(dim=1)
        owned = target >= 0
        tgt = torch.zeros_like(row_max)
        if s:
            tgt = torch.where(owned, z.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1) - row_max, tgt)
        if group is not None:
            dist.all_reduce(sum_exp, op=dist.ReduceOp.SUM, group=group)
            dist.all_reduce(tgt, op=dist.ReduceOp.SUM, group=group)
        ctx.save_for_backward(e, sum_exp, target)
        return torch.log(sum_exp) - tgt

    @staticmethod
    def backward(ctx, grad: Tensor):
        e, sum_exp, target = ctx.saved_tensors
        g = e * (grad / sum_exp).unsqueeze(1)  # softmax · grad, in one pass
        if e.shape[1]:
            rows = (target >= 0).nonzero().squeeze(1)
            g[rows, target[rows]] -= grad[rows]
        return g, None, None


def _partial_fc_rows(embeddings: Tensor, labels: Tensor, weight: Tensor, index: Tensor | None, margin,
                     group, sparse: bool) -> Tensor:
    """The one code path: per-row loss of the (gathered) batch against this process's centres.

    ``labels`` are local class ids (−1: owned elsewhere); ``index`` the sorted local centres to
    use (None: all of them).
    """
    if index is not None:
        w = gather_rows(weight, index, sparse=sparse)
        owned = labels >= 0
        local = torch.where(owned, torch.searchsorted(index, labels.clamp_min(0)), labels)
    else:
        w, local = weight, labels
    x_unit, w_unit = unit_rows(embeddings), unit_rows(w)
    if isinstance(margin, CosineMargin):  # scale folded into the product: one pass over the N×S matrix
        logits = margin.from_embeddings(x_unit, w_unit, local)
    else:  # any callable transform of the cosine matrix
        logits = margin(F.linear(x_unit, w_unit).clamp(-1.0, 1.0), local)
    return _ShardedCrossEntropy.apply(logits, local, group)


class PartialFCOutput:
    """Extra outputs with ``return_aux=True``: ``loss`` and ``index``, the (global) class ids of
    the centres this process used, sorted (None when all were used)."""

    __slots__ = ("index", "loss")

    def __init__(self, loss: Tensor, index: Tensor | None) -> None:
        self.loss, self.index = loss, index


def _check_inputs(name: str, embeddings: Tensor, labels: Tensor, d: int) -> None:
    check_embeddings(name, embeddings, d)
    check_labels(name, labels, embeddings.shape[0])


def _check_label_range(name: str, labels: Tensor, num_classes: int) -> None:
    if labels.numel() and bool(((labels < 0) | (labels >= num_classes)).any()):
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        raise ValueError(f"{name}: labels hold class index {bad}, outside [0, {num_classes}) for {num_classes} classes.")


def _check_margin(name: str, margin) -> None:
    if getattr(margin, "needs_norms", False):
        raise ValueError(
            f"{name}: the margin {type(margin).__name__} needs the embeddings' norms, which Partial FC does not "
            "pass (it normalises the embeddings itself); use lossbook.MarginHead for it, or a margin that takes "
            "cosines only (ArcFace, CosFace, ...).")


def _num_sample(name: str, sample_rate, num_local: int) -> int | None:
    r = check_number(name, "sample_rate", sample_rate, low=0.0, high=1.0, low_open=True)
    return None if r >= 1.0 else int(r * num_local)


@register_method(kind="stateful loss", family="sampled", paper="an2021partialfc")
def partial_fc_loss(
    embeddings: Tensor,
    labels: Tensor,
    weight: Tensor,
    *,
    sample_rate: float = 1.0,
    margin: CosineMargin | None = None,
    index: Tensor | None = None,
    generator: torch.Generator | None = None,
    sparse_grad: bool = False,
    reduction: str = "mean",
    return_aux: bool = False,
):
    r"""Partial FC loss in one process: a margin softmax over the positives and ⌊r·C⌋ − #positives
    uniformly sampled other class centres.

    Args:
        embeddings: (N, d); labels: int64 (N,) in [0, C); weight: (C, d) class centres (they are
            L2-normalised here, as are the embeddings).
        sample_rate: r ∈ (0, 1]; r = 1 uses every centre (the full margin head).
        margin: a transform of the cosine logits (default ``ArcFace()``: s = 64, m = 0.5).
        index: the sorted class ids to use instead of sampling (must contain every label).
        generator: for the draw of the negatives.
        sparse_grad: the gradient of ``weight`` is sparse (only the used rows).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``; return_aux: also return the index used.
    """
    name = "partial_fc_loss"
    check_reduction(name, reduction)
    if not isinstance(weight, Tensor) or not weight.is_floating_point() or weight.dim() != 2:
        raise ValueError(f"{name}: weight must be a floating tensor of shape (num_classes, d).")
    num_classes, d = weight.shape
    _check_inputs(name, embeddings, labels, d)
    _check_label_range(name, labels, num_classes)
    margin = ArcFace() if margin is None else margin
    _check_margin(name, margin)
    if index is None:
        num_sample = _num_sample(name, sample_rate, num_classes)
        if num_sample is not None:
            index = partial_fc_sample(labels, num_classes, num_sample, generator=generator)
    else:
        if not isinstance(index, Tensor) or index.dtype != torch.int64 or index.dim() != 1:
            raise TypeError(f"{name}: index must be a sorted 1-D int64 tensor of class ids.")
        if index.numel() and (bool((index[1:] <= index[:-1]).any()) or int(index[0]) < 0
                              or int(index[-1]) >= num_classes):
            raise ValueError(f"{name}: index must be strictly increasing class ids in [0, {num_classes}).")
        if not bool(torch.isin(labels, index).all()):
            raise ValueError(f"{name}: index must contain every label of the batch.")
    rows = _partial_fc_rows(embeddings, labels, weight, index, margin, None, sparse_grad)
    loss = reduce_loss(rows, reduction)
    return PartialFCOutput(loss, index) if return_aux else loss


@register_method(kind="layer", family="sampled", paper="an2021partialfc")
class PartialFC(nn.Module):
    r"""A Partial FC margin-softmax head that owns the class centres.

    ``forward(embeddings, labels)`` returns the loss (see the module docstring). In one process
    it is :func:`partial_fc_loss`; with ``distributed=True`` each rank holds its shard of the
    centres (``weight`` is (C_k, d)), passes its own embeddings (N, d) and labels (global ids),
    and gets the loss of the gathered batch (W·N rows). Every rank must pass the same N.

    Args:
        in_features, num_classes: d and C (all classes, over all ranks).
        sample_rate: r ∈ (0, 1]: ⌊r·C_k⌋ centres per step and rank (1: all of them).
        margin: cosine-logit transform (default ``ArcFace()``, insightface's default config).
        distributed: shard the classes over ``process_group`` (default: the world group).
        sparse: sparse gradient for ``weight`` when sampling (SGD without weight decay, SparseAdam ...).
        embedding_grad_scale: multiplies the gradient of the local embeddings (distributed only;
            ``world_size`` cancels DistributedDataParallel's averaging, as insightface does).
        init_std: centres start as N(0, init_std²) (insightface: 0.01).
        generator: for the draws (seed it differently on each rank).
    """

    def __init__(self, in_features: int, num_classes: int, *, sample_rate: float = 1.0,
                 margin: CosineMargin | None = None, distributed: bool = False, process_group=None,
                 sparse: bool = False, embedding_grad_scale: float = 1.0, reduction: str = "mean",
                 init_std: float = 0.01, generator: torch.Generator | None = None, dtype=None, device=None) -> None:
        super().__init__()
        name = "PartialFC"
        for arg, v in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int; got {v!r}.")
        check_reduction(name, reduction)
        self.sample_rate = check_number(name, "sample_rate", sample_rate, low=0.0, high=1.0, low_open=True)
        self.in_features, self.num_classes = in_features, num_classes
        self.margin = ArcFace() if margin is None else margin
        _check_margin(name, self.margin)
        self.sparse, self.reduction, self.generator = bool(sparse), reduction, generator
        self.embedding_grad_scale = float(embedding_grad_scale)
        self.distributed = bool(distributed)
        if self.distributed:
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError(f"{name}: distributed=True needs torch.distributed.init_process_group() first.")
            self.group = process_group if process_group is not None else dist.group.WORLD
            self.world_size, self.rank = dist.get_world_size(self.group), dist.get_rank(self.group)
        else:
            self.group, self.world_size, self.rank = None, 1, 0
        w, k = self.world_size, self.rank
        self.num_local = num_classes // w + int(k < num_classes % w)
        self.class_start = num_classes // w * k + min(k, num_classes % w)
        if self.num_local < 1:
            raise ValueError(f"{name}: {num_classes} classes cannot be sharded over {w} ranks.")
        self.num_sample = None if self.sample_rate >= 1.0 else int(self.sample_rate * self.num_local)
        self.weight = nn.Parameter(torch.randn(self.num_local, in_features, dtype=dtype, device=device).mul_(init_std))
        self.last_index: Tensor | None = None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, sample_rate={self.sample_rate}, "
                f"margin={self.margin}, rank={self.rank}/{self.world_size}, classes=[{self.class_start}, "
                f"{self.class_start + self.num_local}), sparse={self.sparse}")

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        name = "PartialFC"
        _check_inputs(name, embeddings, labels, self.in_features)
        _check_label_range(name, labels, self.num_classes)
        if self.distributed:
            sizes = [torch.zeros(1, dtype=torch.int64, device=labels.device) for _ in range(self.world_size)]
            dist.all_gather(sizes, torch.tensor([labels.numel()], device=labels.device), group=self.group)
            if len({int(s) for s in sizes}) != 1:
                raise ValueError(f"{name}: every rank must pass the same batch size; got {[int(s) for s in sizes]}.")
            parts = [torch.empty_like(labels) for _ in range(self.world_size)]
            dist.all_gather(parts, labels.contiguous(), group=self.group)
            labels = torch.cat(parts)
            embeddings = _AllGather.apply(embeddings, self.group, self.embedding_grad_scale)
        start, n_local = self.class_start, self.num_local
        mine = (labels >= start) & (labels < start + n_local)
        local = torch.where(mine, labels - start, torch.full_like(labels, -1))
        index = None
        if self.num_sample is not None:
            index = partial_fc_sample(local, n_local, self.num_sample, generator=self.generator)
        self.last_index = None if index is None else index + start
        rows = _partial_fc_rows(embeddings, local, self.weight, index, self.margin, self.group, self.sparse)
        return reduce_loss(rows, self.reduction)
