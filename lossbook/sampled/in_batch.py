r"""In-batch softmax with the logQ correction (Yi et al. 2019), its streaming frequency estimator,
and mixed negative sampling (Yang et al. 2020).

A two-tower retrieval model scores queries against the items of the same batch: with
s_{ij} = ⟨u(x_i), v(y_j)⟩/τ, row i's positive is column i and the other items of the batch are its
negatives. Popular items appear as in-batch negatives more often than rare ones, so the batch
softmax is biased towards punishing them; Yi et al. subtract the log of each item's sampling
probability p_j,

    s^c_{ij} = s_{ij} − log p_j,      ℓ_i = −log( e^{s^c_{ii}} / Σ_j e^{s^c_{ij}} ),

the same correction as TensorFlow's ``subtract_log_q`` with p_j the expected count of item j in a
batch. :class:`StreamingFrequencyEstimator` estimates p_j from the stream of batches with hashed
arrays, without a vocabulary. Mixed negative sampling appends B′ items drawn uniformly from the
corpus (expected count B′/|corpus| each) to the in-batch candidates.

:func:`in_batch_softmax_loss` takes the score matrix (N, C) and the column of each row's positive,
so in-batch, mixed and any other candidate sets go through the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack

from .._validation import check_number, format_dtype, format_shape
from ..engine import INDEX_OPTIONS, IndexOptions, LossModule, class_loss
from ..registry import register_loss, register_method

__all__ = [
    "StreamingFrequencyEstimator",
    "in_batch_softmax_loss",
    "InBatchSoftmaxLoss",
    "InBatchCandidates",
    "mixed_negative_batch",
]


@register_method(kind="building block", family="sampled", paper="yi2019sampling")
class StreamingFrequencyEstimator(nn.Module):
    r"""Streaming estimate of each item's per-batch sampling probability (Yi et al. 2019, §4).

    Two hashed arrays per hash function: A[h] the last step at which an item of bucket h was seen,
    B[h] an exponential moving average of the gap between sightings. At step t (one call of
    :meth:`update` per batch), for every distinct bucket h hit by the batch,

        B[h] ← (1 − α)·B[h] + α·(t − A[h]),     A[h] ← t,

    and the estimate is p̂ = 1/B[h], the inverse of the average number of steps between two
    batches containing the item. With several hash functions the estimate uses max_k B_k (a
    collision only shortens the observed gap, so the largest gap is the least contaminated) —
    p̂ = 1 / max_k B_k[h_k(y)].

    A and B start at 0 (an item first seen at step t gets B = α·t); p̂ is clipped to at most 1.
    Items seen twice in one batch count once for that step.

    Args:
        num_buckets: H, the size of each hashed array.
        num_hashes: number of independent hash functions (arrays).
        alpha: α, the learning rate of the moving average.
        seed: seeds the hash functions (they are part of the state).
    """

    def __init__(self, num_buckets: int, *, num_hashes: int = 1, alpha: float = 0.01, seed: int = 0,
                 device=None) -> None:
        super().__init__()
        name = "StreamingFrequencyEstimator"
        for arg, v in (("num_buckets", num_buckets), ("num_hashes", num_hashes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int; got {v!r}.")
        self.alpha = check_number(name, "alpha", alpha, low=0.0, high=1.0, low_open=True)
        self.num_buckets, self.num_hashes = num_buckets, num_hashes
        g = torch.Generator().manual_seed(int(seed))
        mult = torch.randint(1, 2**31 - 1, (num_hashes,), generator=g) * 2 + 1  # odd multipliers
        add = torch.randint(0, 2**31 - 1, (num_hashes,), generator=g)
        self.register_buffer("hash_mult", mult.to(device))
        self.register_buffer("hash_add", add.to(device))
        self.register_buffer("last_step", torch.zeros(num_hashes, num_buckets, dtype=torch.int64, device=device))
        self.register_buffer("gap", torch.zeros(num_hashes, num_buckets, dtype=torch.float64, device=device))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64, device=device))

    def extra_repr(self) -> str:
        return f"num_buckets={self.num_buckets}, num_hashes={self.num_hashes}, alpha={self.alpha}"

    def buckets(self, ids: Tensor) -> Tensor:
        """The bucket of every id under every hash function: (num_hashes, *ids.shape)."""
        if not isinstance(ids, Tensor) or ids.dtype != torch.int64:
            raise TypeError("StreamingFrequencyEstimator: ids must be an int64 tensor of item ids.")
        x = ids.to(self.gap.device).reshape(1, -1) * self.hash_mult[:, None] + self.hash_add[:, None]  # wraps mod 2^64
        x = x ^ (x >> 29)
        return x.remainder(self.num_buckets).view(self.num_hashes, *ids.shape)

    @torch.no_grad()
    def update(self, ids: Tensor) -> None:
        """Advance one step and record the items of this batch (``ids``, any shape)."""
        self.step += 1
        t = self.step
        for k, h in enumerate(self.buckets(ids.reshape(-1))):
            h = torch.unique(h)
            gap = t - self.last_step[k, h]
            self.gap[k, h] = (1.0 - self.alpha) * self.gap[k, h] + self.alpha * gap.to(torch.float64)
            self.last_step[k, h] = t

    @torch.no_grad()
    def probability(self, ids: Tensor) -> Tensor:
        """p̂ = 1 / max_k B_k[h_k(id)], clipped to (0, 1]; float64, shaped like ``ids``."""
        b = self.buckets(ids)
        gaps = torch.stack([self.gap[k, b[k]] for k in range(self.num_hashes)]).amax(dim=0)
        return (1.0 / gaps.clamp_min(1.0)).to(ids.device)

    def log_probability(self, ids: Tensor) -> Tensor:
        """log p̂ (the logQ correction of :func:`in_batch_softmax_loss`)."""
        return torch.log(self.probability(ids))


def _check_candidate_tensor(name: str, arg: str, value, input: Tensor, *, integer: bool, allow_2d: bool):
    if value is None:
        return None
    n, c = input.shape
    shapes = f"({c},)" + (f" or ({n}, {c})" if allow_2d else "")
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: {arg} must be a tensor of shape {shapes}; got {type(value).__name__}.")
    if integer and value.dtype != torch.int64:
        raise TypeError(f"{name}: {arg} must be int64 of shape {shapes}; got {format_dtype(value)}. Use {arg}.long().")
    if not integer and not value.is_floating_point():
        raise TypeError(f"{name}: {arg} must be a floating tensor of shape {shapes}; got {format_dtype(value)}.")
    if value.shape != (c,) and not (allow_2d and value.shape == (n, c)):
        raise ValueError(f"{name}: {arg} must have shape {shapes}, one entry per candidate column; "
                         f"got {format_shape(value)}.")
    if value.device != input.device:
        raise ValueError(f"{name}: {arg} is on {value.device} but the scores are on {input.device}. "
                         f"Use {arg}.to(input.device).")
    return value


def accidental_hit_mask(target: Tensor, candidate_ids: Tensor) -> Tensor:
    """(N, C) bool: column j holds the same item as row i's positive column, j ≠ target_i
    (``target``: class indices in [0, C))."""
    c = candidate_ids.numel()
    same = candidate_ids.unsqueeze(0) == candidate_ids[target].unsqueeze(1)
    not_self = torch.arange(c, device=target.device).unsqueeze(0) != target.unsqueeze(1)
    return same & not_self


def _check_in_batch(temperature=1.0, remove_accidental_hits=True) -> tuple[float, bool]:
    tau = check_number("in_batch_softmax_loss", "temperature", temperature, low=0.0, low_open=True)
    if not isinstance(remove_accidental_hits, bool):
        raise TypeError("in_batch_softmax_loss: remove_accidental_hits must be True or False; got "
                        f"{type(remove_accidental_hits).__name__}.")
    return tau, remove_accidental_hits


@register_loss("in_batch_softmax", family="sampled", paper="yi2019sampling", supports=INDEX_OPTIONS,
               check=_check_in_batch,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": False, "symmetric": False},
               summary="Softmax over a batch's candidates with logQ correction s_ij/τ − log p_j and accidental "
                       "hits removed.",
               formula=r"\ell_i = -\log \frac{e^{s_{i y_i}/\tau - \log p_{y_i}}}{\sum_{j} e^{s_{ij}/\tau - \log p_j}}")
def in_batch_softmax_loss(input: Tensor, target: Tensor, log_q: Tensor | None = None,
                          candidate_ids: Tensor | None = None, *, temperature: float = 1.0,
                          remove_accidental_hits: bool = True, **options: Unpack[IndexOptions]) -> Tensor:
    r"""In-batch (or any candidate-set) softmax with the logQ correction of Yi et al. (2019).

    Args:
        input: scores s (N, C) of N queries against C candidates (for in-batch training,
            ``query @ items.T`` with C = N and ``target = arange(N)``).
        target: int64 (N,), the column of each row's positive; ``ignore_index`` skips a row, and
            ``weight`` (C,) weighs row i by w_{target_i} (with ``target = arange(N)``: per-row weights).
        log_q: log of each candidate's sampling probability (expected count per batch), (C,) or
            (N, C); subtracted from the scaled scores. None: no correction (plain in-batch softmax).
        candidate_ids: int64 (C,) item ids of the columns; with ``remove_accidental_hits``, a column
            holding the same item as row i's positive (other than the positive itself) is removed
            from row i's softmax, as TensorFlow Recommenders does.
        temperature: τ, the scores are divided by it before the correction.

    With ``log_q=None`` and no ids this is :func:`~lossbook.functional.cross_entropy` of s/τ.
    """
    name = "in_batch_softmax_loss"
    tau, remove_accidental_hits = _check_in_batch(temperature, remove_accidental_hits)

    def per_row(z: Tensor, y: Tensor) -> Tensor:
        q = _check_candidate_tensor(name, "log_q", log_q, z, integer=False, allow_2d=True)
        ids = _check_candidate_tensor(name, "candidate_ids", candidate_ids, z, integer=True, allow_2d=False)
        logits = z / tau if tau != 1.0 else z
        if q is not None:
            logits = logits - q.to(z.dtype)
        if ids is not None and remove_accidental_hits:
            logits = logits.masked_fill(accidental_hit_mask(y, ids), float("-inf"))
        return F.cross_entropy(logits, y, reduction="none")

    return class_loss(name, input, target, per_row=per_row, **options)


class InBatchSoftmaxLoss(LossModule, loss="in_batch_softmax"):
    """Module form of :func:`lossbook.functional.in_batch_softmax_loss`;
    ``forward(scores, target, log_q=None, candidate_ids=None)``."""


@dataclass
class InBatchCandidates:
    """Scores and bookkeeping for :func:`in_batch_softmax_loss` (see :func:`mixed_negative_batch`)."""

    scores: Tensor  # (B, B + B′)
    target: Tensor  # (B,) = arange(B)
    log_q: Tensor | None  # (B + B′,)
    candidate_ids: Tensor | None  # (B + B′,)


@register_method(kind="building block", family="sampled", paper="yang2020mixed")
def mixed_negative_batch(
    query: Tensor,
    items: Tensor,
    extra_items: Tensor | None = None,
    *,
    item_log_q: Tensor | None = None,
    extra_log_q: Tensor | float | None = None,
    item_ids: Tensor | None = None,
    extra_ids: Tensor | None = None,
) -> InBatchCandidates:
    r"""Candidates for mixed negative sampling (Yang et al. 2020): the batch's own items plus B′
    extra items (typically drawn uniformly from the corpus with a :class:`UniformSampler`).

    Row i of ``query`` (B, d) has its positive in row i of ``items`` (B, d); ``extra_items``
    (B′, d) are negatives for every row. The log-probabilities are each source's own: ``item_log_q``
    (B,) for the in-batch items (e.g. :meth:`StreamingFrequencyEstimator.log_probability`) and
    ``extra_log_q`` for the extra ones (a tensor (B′,) or one number, log(B′/|corpus|) for a
    uniform draw). Pass the result to :func:`in_batch_softmax_loss`::

        c = mixed_negative_batch(u, v, v_extra, item_log_q=lq, extra_log_q=math.log(B2 / n_items),
                                 item_ids=ids, extra_ids=extra_ids)
        loss = in_batch_softmax_loss(c.scores, c.target, c.log_q, c.candidate_ids, temperature=0.05)
    """
    name = "mixed_negative_batch"
    if not isinstance(query, Tensor) or not isinstance(items, Tensor) or query.dim() != 2 or items.shape != query.shape:
        raise ValueError(f"{name}: query and items must be tensors of the same shape (B, d); got "
                         f"{format_shape(query) if isinstance(query, Tensor) else type(query).__name__} and "
                         f"{format_shape(items) if isinstance(items, Tensor) else type(items).__name__}.")
    b = query.shape[0]
    cands, log_q, ids = [items], None, None
    n_extra = 0
    if extra_items is not None:
        if not isinstance(extra_items, Tensor) or extra_items.dim() != 2 or extra_items.shape[1] != query.shape[1]:
            raise ValueError(f"{name}: extra_items must have shape (B′, {query.shape[1]}).")
        cands.append(extra_items)
        n_extra = extra_items.shape[0]
    scores = query @ torch.cat(cands).T
    if item_log_q is not None or extra_log_q is not None:
        if item_log_q is None or (n_extra and extra_log_q is None):
            raise ValueError(f"{name}: give item_log_q and extra_log_q together (one per source of candidates).")
        parts = [item_log_q.to(scores.dtype)]
        if n_extra:
            if isinstance(extra_log_q, Tensor):
                extra = extra_log_q.to(scores)
            else:
                extra = torch.full((n_extra,), float(extra_log_q), dtype=scores.dtype, device=scores.device)
            parts.append(extra)
        log_q = torch.cat(parts)
    if item_ids is not None:
        if n_extra and extra_ids is None:
            raise ValueError(f"{name}: give extra_ids with item_ids, so that hits among the extra items are removed.")
        ids = torch.cat([item_ids, extra_ids]) if n_extra else item_ids
    return InBatchCandidates(scores, torch.arange(b, device=scores.device), log_q, ids)
