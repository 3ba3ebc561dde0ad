r"""Sampled softmax and NCE with TensorFlow's semantics, a full-softmax evaluation path, and a
layer that owns the output weights and keeps their gradient sparse.

The training losses follow ``_compute_sampled_logits`` in ``tensorflow/python/ops/nn_impl.py``:

1. One set of S candidates is drawn for the whole batch (default: log-uniform, ``unique=True``);
   the sampler also returns the expected counts Q of the true classes and of the candidates.
2. Only the rows ``labels ∪ candidates`` of W and b are gathered: true logits
   z_{i,t} = ⟨h_i, w_{y_it}⟩ + b_{y_it} (N×T) and sampled logits h·W_Sᵀ + b_S (N×S), so one step
   costs O(N·(T + S)·d), never O(N·D·d).
3. ``remove_accidental_hits``: a candidate equal to one of row i's true classes is removed from
   row i (TensorFlow adds −FLOAT_MAX to its logit; here the logit is set to the dtype's lowest
   finite value: the same loss, and no gradient reaches it).
4. ``subtract_log_q``: every logit loses log Q of its class (true and sampled alike).
5. The targets are 1/T on the T true columns, 0 on the sampled ones. Sampled softmax is the
   softmax cross-entropy of that row; NCE is the sum over the T + S columns of the sigmoid
   cross-entropy. Both are written in closed form on the two blocks of columns (no N×(T+S)
   concatenation), and only the few hit positions are touched, so the N×S work is one matrix
   product (bias and −log Q fused in) and one log-sum-exp.

TensorFlow returns the per-example loss (``reduction="none"`` here); the default reduction is the
library's ``"mean"``. ``sampled_softmax_loss`` removes accidental hits by default, ``nce_loss``
does not (TensorFlow's defaults); NCE with hits removed is TensorFlow's "sampled logistic" loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_reduction, describe, format_dtype, format_shape, reduce_loss
from ..registry import register_method
from ._sparse import gather_rows
from .samplers import CandidateSample, CandidateSampler, make_sampler

__all__ = [
    "SampledLossOutput",
    "compute_accidental_hits",
    "sampled_softmax_loss",
    "nce_loss",
    "full_softmax_loss",
    "SampledSoftmaxLayer",
]


@dataclass
class SampledLossOutput:
    """Extra outputs of :func:`sampled_softmax_loss` / :func:`nce_loss` with ``return_aux=True``.

    ``logits`` (N, T + S): true columns first, then the candidates, after hit removal (the dtype's
    lowest finite value, TensorFlow's −FLOAT_MAX) and the log Q correction; ``labels`` (N, T + S): 1/T on the true columns; ``accidental_hits``
    (N, S) bool; ``sample``: the candidates and their expected counts.
    """

    loss: Tensor
    logits: Tensor
    labels: Tensor
    accidental_hits: Tensor
    sample: CandidateSample


def compute_accidental_hits(labels: Tensor, sampled_candidates: Tensor) -> Tensor:
    """Boolean (N, S) mask: candidate j equals one of row i's true classes (``labels`` (N, T)).

    The dense form of TensorFlow's ``compute_accidental_hits``; O(N·T·S) booleans.
    """
    if labels.dim() == 1:
        labels = labels.unsqueeze(1)
    return (labels.unsqueeze(2) == sampled_candidates.view(1, 1, -1)).any(dim=1)


def _check_linear(name: str, weight: Tensor, bias: Tensor | None, inputs: Tensor) -> tuple[int, int]:
    if not isinstance(weight, Tensor) or not weight.is_floating_point() or weight.dim() != 2:
        raise ValueError(f"{name}: weight must be a floating tensor of shape (num_classes, dim); got "
                         f"{describe(weight)}.")
    num_classes, dim = weight.shape
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point() or inputs.dim() != 2 or inputs.shape[1] != dim:
        raise ValueError(f"{name}: inputs must be a floating tensor of shape (N, {dim}) to match weight of shape "
                         f"{format_shape(weight)}; got {describe(inputs)}.")
    if inputs.dtype != weight.dtype or inputs.device != weight.device:
        raise ValueError(f"{name}: inputs ({format_dtype(inputs)} on {inputs.device}) and weight "
                         f"({format_dtype(weight)} on {weight.device}) must share dtype and device. "
                         "Use inputs.to(weight).")
    if bias is not None:
        if not isinstance(bias, Tensor) or bias.shape != (num_classes,):
            got = format_shape(bias) if isinstance(bias, Tensor) else type(bias).__name__
            raise ValueError(f"{name}: bias must have shape ({num_classes},), one per class; got {got}.")
        if bias.dtype != weight.dtype or bias.device != weight.device:
            raise ValueError(f"{name}: bias must share weight's dtype and device ({format_dtype(weight)} on "
                             f"{weight.device}).")
    return num_classes, dim


def _check_labels(name: str, labels: Tensor, n: int, num_classes: int, num_true: int | None) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64:
        got = format_dtype(labels) if isinstance(labels, Tensor) else type(labels).__name__
        raise TypeError(f"{name}: labels must be int64 class indices of shape (N,) or (N, num_true); got {got}. "
                        "Use labels.long().")
    if labels.dim() not in (1, 2) or labels.shape[0] != n:
        raise ValueError(f"{name}: labels must have shape ({n},) or ({n}, num_true) to match inputs with {n} rows; "
                         f"got {format_shape(labels)}.")
    if labels.dim() == 1:
        labels = labels.unsqueeze(1)
    if num_true is not None and labels.shape[1] != num_true:
        raise ValueError(f"{name}: num_true={num_true} but labels has {labels.shape[1]} columns.")
    if labels.numel() and bool(((labels < 0) | (labels >= num_classes)).any()):
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        raise ValueError(f"{name}: labels hold class index {bad}, outside [0, {num_classes}) for {num_classes} "
                         "classes.")
    return labels


def _sampled_values(name: str, sampled_values, sampler, num_sampled, labels, num_classes, unique, generator,
                    device) -> CandidateSample:
    if sampled_values is not None:
        if isinstance(sampled_values, CandidateSample):
            sample = sampled_values
        else:
            try:
                cand, true_ec, samp_ec = sampled_values
            except (TypeError, ValueError):
                raise TypeError(f"{name}: sampled_values must be a CandidateSample or a tuple (sampled_candidates, "
                                "true_expected_count, sampled_expected_count).") from None
            sample = CandidateSample(cand, true_ec, samp_ec, -1, False)
        cand = sample.sampled_candidates
        if not isinstance(cand, Tensor) or cand.dtype != torch.int64 or cand.dim() != 1:
            raise TypeError(f"{name}: sampled_candidates must be a 1-D int64 tensor.")
        if num_sampled is not None and cand.numel() != num_sampled:
            raise ValueError(f"{name}: num_sampled={num_sampled} but sampled_values holds {cand.numel()} candidates.")
        if cand.numel() and bool(((cand < 0) | (cand >= num_classes)).any()):
            raise ValueError(f"{name}: sampled candidates must lie in [0, {num_classes}).")
        true_ec = sample.true_expected_count
        n, t = labels.shape  # (N, num_true): 1-D labels were made (N, 1)
        if isinstance(true_ec, Tensor) and t == 1 and tuple(true_ec.shape) == (n,):
            # what sampler.sample(S, true_classes=y) gives for 1-D labels y: one count per row, num_true = 1
            sample = replace(sample, true_expected_count=true_ec.unsqueeze(1))
        elif not isinstance(true_ec, Tensor) or tuple(true_ec.shape) != (n, t):
            expected = f"({n},) or ({n}, 1)" if t == 1 else f"({n}, {t})"
            got = format_shape(true_ec) if isinstance(true_ec, Tensor) else repr(true_ec)
            raise ValueError(f"{name}: true_expected_count must have the labels' shape {expected}, one expected count "
                             f"per true label; got {got}. Draw the sample with "
                             "sampler.sample(num_sampled, true_classes=labels).")
        if tuple(sample.sampled_expected_count.shape) != (cand.numel(),):
            raise ValueError(f"{name}: sampled_expected_count must have shape ({cand.numel()},).")
        return sample
    if isinstance(num_sampled, bool) or not isinstance(num_sampled, int) or num_sampled < 1:
        raise ValueError(f"{name}: num_sampled must be an int ≥ 1; got {num_sampled!r}.")
    smp = make_sampler(sampler, num_classes, device=device, name=name)
    if unique and num_sampled > smp._num_support():
        raise ValueError(
            f"{name}: num_sampled={num_sampled} distinct classes cannot be drawn from {smp._num_support()} classes "
            f"without replacement (unique=True). Use num_sampled ≤ {smp._num_support()}, or unique=False."
        )
    return smp.sample(num_sampled, true_classes=labels, unique=unique, generator=generator, device=device)


def _compute_sampled_logits(name, weight, bias, labels, inputs, num_sampled, num_classes, num_true, sampled_values,
                            sampler, unique, remove_accidental_hits, subtract_log_q, generator, sparse_grad):
    """TensorFlow's ``_compute_sampled_logits``, returned in parts: true logits (N, T), sampled
    logits (N, S), the (row, column) positions of the removed accidental hits (or None), the
    sample and the (N, T) labels."""
    d_classes, dim = _check_linear(name, weight, bias, inputs)
    if num_classes is not None and num_classes != d_classes:
        raise ValueError(f"{name}: num_classes={num_classes} but weight has {d_classes} rows.")
    labels = _check_labels(name, labels, inputs.shape[0], d_classes, num_true)
    n, t = labels.shape
    sample = _sampled_values(name, sampled_values, sampler, num_sampled, labels, d_classes, unique, generator,
                             weight.device)
    sampled = sample.sampled_candidates.to(weight.device)
    # two gathers rather than one sliced in two: a slice's backward would allocate the whole block
    true_ids = labels.reshape(-1)
    true_w = gather_rows(weight, true_ids, sparse=sparse_grad)
    sampled_w = gather_rows(weight, sampled, sparse=sparse_grad)
    true_logits = (inputs.unsqueeze(1) * true_w.view(n, t, dim)).sum(-1)
    # one (S,) shift per candidate column, b_s − log Q_s, fused into the matrix product
    shift = None
    if bias is not None:
        true_logits = true_logits + gather_rows(bias, true_ids, sparse=sparse_grad).view(n, t)
        shift = gather_rows(bias, sampled, sparse=sparse_grad)
    if subtract_log_q:
        true_logits = true_logits - torch.log(sample.true_expected_count.detach()).to(inputs)
        log_q = torch.log(sample.sampled_expected_count.detach()).to(inputs)
        shift = -log_q if shift is None else shift - log_q
    sampled_logits = inputs @ sampled_w.T if shift is None else torch.addmm(shift, inputs, sampled_w.T)
    hits = None
    if remove_accidental_hits and n and sampled.numel():
        hit_cols = torch.isin(sampled, labels).nonzero().squeeze(1)  # usually a handful of columns
        if hit_cols.numel():
            rows, j = (labels.unsqueeze(2) == sampled[hit_cols].view(1, 1, -1)).any(dim=1).nonzero(as_tuple=True)
            hits = (rows, hit_cols[j])
            # TensorFlow adds −FLOAT_MAX; the lowest finite value gives the same loss and a zero gradient
            low = torch.tensor(torch.finfo(sampled_logits.dtype).min, dtype=sampled_logits.dtype,
                               device=sampled_logits.device)
            sampled_logits.index_put_(hits, low)  # in place: the product's backward does not need its output
    return true_logits, sampled_logits, hits, sample, labels


_COMMON_DOC = r"""
    Args:
        weight: (D, d) class embeddings; bias: (D,) or None.
        labels: int64 (N,) or (N, num_true) true classes; inputs: (N, d) activations.
        num_sampled: S, the number of candidates drawn for the whole batch.
        num_classes: D (checked against ``weight``; optional).
        num_true: T (checked against ``labels``; optional, inferred).
        sampled_values: a :class:`~lossbook.sampled.samplers.CandidateSample` or TensorFlow's
            3-tuple ``(sampled_candidates, true_expected_count, sampled_expected_count)``; when
            given, nothing is drawn.
        sampler: ``"log_uniform"`` (TensorFlow's default), ``"uniform"``, ``"all"`` or a
            :class:`~lossbook.sampled.samplers.CandidateSampler` (e.g. ``UnigramSampler(counts)``).
        unique: sample without replacement (TensorFlow's default sampler uses ``unique=True``).
        remove_accidental_hits, subtract_log_q: see the module docstring.
        generator: a ``torch.Generator`` for the draw (reproducibility).
        sparse_grad: the gradients of ``weight`` and ``bias`` are sparse COO tensors touching only
            the gathered rows (for ``torch.optim.SGD`` without weight decay, ``SparseAdam``, ...).
        reduction: ``"none"`` (per example, TensorFlow's output), ``"mean"`` or ``"sum"``.
        return_aux: also return a :class:`SampledLossOutput`.
"""


def _finish(loss, true_logits, sampled_logits, hits, sample, labels, return_aux):
    if not return_aux:
        return loss
    n, t = true_logits.shape
    s = sampled_logits.shape[1]
    logits = torch.cat([true_logits, sampled_logits], dim=1)
    out_labels = torch.cat([torch.full((n, t), 1.0 / t, dtype=logits.dtype, device=logits.device),
                            torch.zeros(n, s, dtype=logits.dtype, device=logits.device)], dim=1)
    mask = torch.zeros(n, s, dtype=torch.bool, device=logits.device)
    if hits is not None:
        mask[hits] = True
    return SampledLossOutput(loss, logits, out_labels, mask, sample)


@register_method(kind="reference-API function", family="sampled", paper="jean2015large")
def sampled_softmax_loss(
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    inputs: Tensor,
    num_sampled: int | None = None,
    num_classes: int | None = None,
    *,
    num_true: int | None = None,
    sampled_values=None,
    sampler: str | CandidateSampler = "log_uniform",
    unique: bool = True,
    remove_accidental_hits: bool = True,
    subtract_log_q: bool = True,
    generator: torch.Generator | None = None,
    sparse_grad: bool = False,
    reduction: str = "mean",
    return_aux: bool = False,
):
    r"""Sampled softmax loss (Jean et al. 2015) with TensorFlow's ``tf.nn.sampled_softmax_loss`` semantics.

    Per example: the softmax cross-entropy over the T true columns and the S shared candidates,
    logits corrected by −log Q and with accidental hits removed, targets 1/T on the true columns:
    log(Σ_t e^{z_t} + Σ_s e^{z_s}) − (1/T)·Σ_t z_t, computed without concatenating the columns
    (for T = 1, softplus(LSE_s z_s − z_t)). It is a biased estimate of the full softmax loss (an
    underestimate on average); use :func:`full_softmax_loss` to evaluate.
    """
    name = "sampled_softmax_loss"
    check_reduction(name, reduction)
    true_logits, sampled_logits, hits, sample, labels = _compute_sampled_logits(
        name, weight, bias, labels, inputs, num_sampled, num_classes, num_true, sampled_values, sampler, unique,
        remove_accidental_hits, subtract_log_q, generator, sparse_grad)
    if sampled_logits.shape[1] == 0:
        lse_sampled = torch.full_like(true_logits[:, 0], float("-inf"))
    else:
        lse_sampled = torch.logsumexp(sampled_logits, dim=1)
    if true_logits.shape[1] == 1:
        per_example = F.softplus(lse_sampled - true_logits[:, 0])
    else:
        per_example = torch.logaddexp(torch.logsumexp(true_logits, dim=1), lse_sampled) - true_logits.mean(dim=1)
    loss = reduce_loss(per_example, reduction)
    return _finish(loss, true_logits, sampled_logits, hits, sample, labels, return_aux)


@register_method(kind="reference-API function", family="sampled", paper="gutmann2010nce")
def nce_loss(
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    inputs: Tensor,
    num_sampled: int | None = None,
    num_classes: int | None = None,
    *,
    num_true: int | None = None,
    sampled_values=None,
    sampler: str | CandidateSampler = "log_uniform",
    unique: bool = True,
    remove_accidental_hits: bool = False,
    subtract_log_q: bool = True,
    generator: torch.Generator | None = None,
    sparse_grad: bool = False,
    reduction: str = "mean",
    return_aux: bool = False,
):
    r"""Noise-contrastive estimation loss (Gutmann & Hyvärinen 2010) with ``tf.nn.nce_loss`` semantics.

    Per example: Σ over the T + S columns of the sigmoid cross-entropy between the corrected
    logit z − log Q and the label (1/T on true columns, 0 on candidates):
    Σ_t [softplus(z_t) − z_t/T] + Σ_s softplus(z_s). With ``remove_accidental_hits=True`` it is
    TensorFlow's "sampled logistic" loss (a hit column adds 0); with ``subtract_log_q=False`` it is
    negative sampling.
    """
    name = "nce_loss"
    check_reduction(name, reduction)
    true_logits, sampled_logits, hits, sample, labels = _compute_sampled_logits(
        name, weight, bias, labels, inputs, num_sampled, num_classes, num_true, sampled_values, sampler, unique,
        remove_accidental_hits, subtract_log_q, generator, sparse_grad)
    t = true_logits.shape[1]
    per_example = (F.softplus(true_logits) - true_logits / t).sum(dim=1) + F.softplus(sampled_logits).sum(dim=1)
    loss = reduce_loss(per_example, reduction)
    return _finish(loss, true_logits, sampled_logits, hits, sample, labels, return_aux)


sampled_softmax_loss.__doc__ += _COMMON_DOC
nce_loss.__doc__ += _COMMON_DOC


@register_method(kind="reference-API function", family="sampled", paper="jean2015large")
def full_softmax_loss(
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    inputs: Tensor,
    *,
    chunk_size: int = 65536,
    reduction: str = "mean",
) -> Tensor:
    r"""The full softmax cross-entropy over all D classes, streamed over chunks of classes.

    log Σ_k e^{z_k} is accumulated chunk by chunk (a running log-sum-exp), so without autograd
    the memory is O(N·chunk_size), not O(N·D); the time is O(N·D·d). ``labels`` (N,) or (N, T)
    (targets 1/T on each true class, as in :func:`sampled_softmax_loss`). This is the evaluation
    loss that the sampled losses estimate.
    """
    name = "full_softmax_loss"
    check_reduction(name, reduction)
    num_classes, _ = _check_linear(name, weight, bias, inputs)
    labels = _check_labels(name, labels, inputs.shape[0], num_classes, None)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{name}: chunk_size must be an int ≥ 1; got {chunk_size!r}.")
    n, t = labels.shape
    lse = None
    for i in range(0, num_classes, chunk_size):
        z = inputs @ weight[i : i + chunk_size].T
        if bias is not None:
            z = z + bias[i : i + chunk_size]
        part = torch.logsumexp(z, dim=1)
        lse = part if lse is None else torch.logaddexp(lse, part)
    true = (inputs.unsqueeze(1) * weight[labels.reshape(-1)].view(n, t, inputs.shape[1])).sum(-1)
    if bias is not None:
        true = true + bias[labels]
    return reduce_loss(lse - true.mean(dim=1), reduction)


@register_method(kind="layer", family="sampled", paper="jean2015large")
class SampledSoftmaxLayer(nn.Module):
    """An output layer ``in_features → num_classes`` trained with sampled softmax or NCE.

    It owns ``weight`` (D, d) and ``bias`` (D,). In training mode ``forward(inputs, labels)``
    returns :func:`sampled_softmax_loss` (or :func:`nce_loss`), gathering only the rows of the
    labels and of the S candidates; with ``sparse=True`` (default) their gradients are sparse, so
    an optimiser that takes sparse gradients (``torch.optim.SGD`` without weight decay,
    ``SparseAdam``, ``Adagrad``) updates O(S·d) numbers per step. In eval mode ``forward``
    returns the full softmax loss (:func:`full_softmax_loss`, streamed over class chunks).

    Args:
        in_features, num_classes: d and D.
        num_sampled: S, candidates per step (shared by the batch).
        loss: ``"sampled_softmax"`` or ``"nce"``.
        sampler: a name (``"log_uniform"``, ``"uniform"``) or a :class:`CandidateSampler`
            (registered as a submodule, so its buffers follow ``.to()``).
        unique, subtract_log_q: as in :func:`sampled_softmax_loss`.
        remove_accidental_hits: default True for sampled softmax, False for NCE (TensorFlow's).
        bias: learn a bias per class.
        sparse: sparse gradients for ``weight`` and ``bias``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        init_std: weight ~ N(0, init_std²), default 1/√d; the bias starts at 0.
        generator: a ``torch.Generator`` used for every draw (reproducible runs).
        chunk_size: classes per chunk in the full-softmax evaluation.
    """

    def __init__(self, in_features: int, num_classes: int, num_sampled: int, *, loss: str = "sampled_softmax",
                 sampler: str | CandidateSampler = "log_uniform", unique: bool = True,
                 remove_accidental_hits: bool | None = None, subtract_log_q: bool = True, bias: bool = True,
                 sparse: bool = True, reduction: str = "mean", init_std: float | None = None,
                 generator: torch.Generator | None = None, chunk_size: int = 65536, dtype=None, device=None) -> None:
        super().__init__()
        name = "SampledSoftmaxLayer"
        for arg, v in (("in_features", in_features), ("num_classes", num_classes), ("num_sampled", num_sampled)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int; got {v!r}.")
        if loss not in ("sampled_softmax", "nce"):
            raise ValueError(f"{name}: loss must be 'sampled_softmax' or 'nce'; got {loss!r}.")
        check_reduction(name, reduction)
        self.in_features, self.num_classes, self.num_sampled = in_features, num_classes, num_sampled
        self.loss, self.unique, self.subtract_log_q = loss, bool(unique), bool(subtract_log_q)
        self.remove_accidental_hits = (loss == "sampled_softmax") if remove_accidental_hits is None else bool(
            remove_accidental_hits)
        self.sparse, self.reduction, self.chunk_size, self.generator = bool(sparse), reduction, chunk_size, generator
        self.sampler = make_sampler(sampler, num_classes, device=device, name=name)
        if unique and num_sampled > self.sampler._num_support():
            raise ValueError(f"{name}: num_sampled={num_sampled} > {self.sampler._num_support()} classes; "
                             "unique=True samples without replacement. Lower num_sampled or use unique=False.")
        std = in_features**-0.5 if init_std is None else float(init_std)
        factory = {"dtype": dtype, "device": device}
        self.weight = nn.Parameter(torch.randn(num_classes, in_features, **factory).mul_(std))  # in place: no second D×d copy
        self.bias = nn.Parameter(torch.zeros(num_classes, **factory)) if bias else None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, num_sampled={self.num_sampled}, "
                f"loss={self.loss!r}, sampler={self.sampler.kind!r}, unique={self.unique}, "
                f"remove_accidental_hits={self.remove_accidental_hits}, subtract_log_q={self.subtract_log_q}, "
                f"sparse={self.sparse}")

    def forward(self, inputs: Tensor, labels: Tensor, *, return_aux: bool = False):
        if not self.training:
            return self.full_loss(inputs, labels)
        fn = sampled_softmax_loss if self.loss == "sampled_softmax" else nce_loss
        return fn(self.weight, self.bias, labels, inputs, self.num_sampled, sampler=self.sampler, unique=self.unique,
                  remove_accidental_hits=self.remove_accidental_hits, subtract_log_q=self.subtract_log_q,
                  generator=self.generator, sparse_grad=self.sparse, reduction=self.reduction, return_aux=return_aux)

    def full_loss(self, inputs: Tensor, labels: Tensor) -> Tensor:
        """The full softmax loss over all classes (O(N·D·d), streamed over class chunks)."""
        return full_softmax_loss(self.weight, self.bias, labels, inputs, chunk_size=self.chunk_size,
                                 reduction=self.reduction)

    def scores(self, inputs: Tensor) -> Tensor:
        """All logits h·Wᵀ + b (N, D)."""
        return F.linear(inputs, self.weight, self.bias)
