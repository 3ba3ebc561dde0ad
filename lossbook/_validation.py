"""Shared input checks and reduction handling.

Every message says what was expected, what came, and how to fix it, e.g.::

    comp_sum_loss: target must be int64 class indices of shape (32,); got float32 of shape (32, 1).
    Did you mean target.squeeze(1).long()?

Nothing here mutates the caller's tensors.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")

#: How far outside [−1, 1] a cosine input may lie (rounding of a product of unit vectors).
COSINE_TOLERANCE = 1e-6


def format_shape(t: Tensor) -> str:
    """A tensor's shape as a message shows it: ``(32,)``, ``(32, 1)``."""
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.dim() == 1 else "") + ")"


def format_dtype(t: Tensor) -> str:
    """A tensor's dtype as a message shows it: ``float32``, ``int64``."""
    return str(t.dtype).replace("torch.", "")


def describe(value) -> str:
    """What came, for a message: ``float32 of shape (32, 1)`` for a tensor, the type's name otherwise."""
    if isinstance(value, Tensor):
        return f"{format_dtype(value)} of shape {format_shape(value)}"
    return type(value).__name__



def check_reduction(name: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}; got {reduction!r}.")


def check_logits(name: str, logits: Tensor) -> None:
    """Logits must be a floating tensor of shape (N, C) with C ≥ 1."""
    if not isinstance(logits, Tensor):
        raise TypeError(
            f"{name}: logits must be a torch.Tensor of shape (N, C); got {type(logits).__name__}. "
            "Wrap it with torch.as_tensor(x, dtype=torch.float32)."
        )
    if not logits.is_floating_point():
        raise TypeError(
            f"{name}: logits must be a floating tensor; got {format_dtype(logits)}. Use logits.float()."
        )
    if logits.dim() != 2:
        fix = "logits.unsqueeze(0)" if logits.dim() == 1 else "logits.reshape(-1, logits.shape[-1])"
        raise ValueError(
            f"{name}: logits must have shape (N, C); got {format_shape(logits)}. Did you mean {fix}?"
        )
    if logits.shape[1] < 1:
        raise ValueError(f"{name}: logits need at least one class; got shape {format_shape(logits)}.")


def target_kind(name: str, logits: Tensor, target: Tensor, *, allow_prob: bool) -> str:
    """Decide by dtype first: integer → ``"index"``, floating → ``"prob"``; check the shape."""
    if not isinstance(target, Tensor):
        raise TypeError(
            f"{name}: target must be a torch.Tensor; got {type(target).__name__}. "
            "Wrap it with torch.as_tensor(y, dtype=torch.long)."
        )
    n, c = logits.shape
    if target.is_floating_point():
        if not allow_prob:
            if target.shape == (n, c) and c > 1:
                hint = "This loss takes no probability targets; for one-hot rows use target.argmax(1)."
            else:
                hint = f"Did you mean target{'.squeeze(1).long()' if target.shape == (n, 1) else '.long()'}?"
            raise TypeError(
                f"{name}: target must be int64 class indices of shape ({n},); got {format_dtype(target)} "
                f"of shape {format_shape(target)}. {hint}"
            )
        if target.shape != logits.shape:
            hint = (
                " Did you mean target.squeeze(1).long()?"
                if target.shape == (n, 1)
                else " Did you mean target.long()?"
                if target.shape == (n,)
                else ""
            )
            raise ValueError(
                f"{name}: probability targets must have the logits' shape ({n}, {c}); got "
                f"{format_dtype(target)} of shape {format_shape(target)}.{hint}"
            )
        if target.dtype != logits.dtype:
            raise TypeError(
                f"{name}: probability targets must have the logits' dtype {format_dtype(logits)}; got "
                f"{format_dtype(target)}. Use target.to(logits.dtype)."
            )
        return "prob"
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"{name}: target must be int64 class indices; got {format_dtype(target)}.")
    if target.dtype != torch.int64:
        raise TypeError(
            f"{name}: target must be int64 class indices; got {format_dtype(target)}. Use target.long()."
        )
    if target.shape != (n,):
        hint = " Did you mean target.squeeze(1)?" if target.shape == (n, 1) else ""
        raise ValueError(
            f"{name}: target must be int64 class indices of shape ({n},) to match logits of shape "
            f"{format_shape(logits)}; got shape {format_shape(target)}.{hint}"
        )
    return "index"


def check_embeddings(name: str, embeddings, d: int | None = None) -> None:
    """``embeddings`` must be a floating (N, d) tensor (any d when ``d`` is None).

    TypeError for a non-tensor or a non-floating dtype, ValueError for a wrong shape.
    """
    shape = "(N, d)" if d is None else f"(N, {d})"
    if not isinstance(embeddings, Tensor) or not embeddings.is_floating_point():
        fix = " Use embeddings.float()." if isinstance(embeddings, Tensor) else \
            " Wrap it with torch.as_tensor(x, dtype=torch.float32)."
        raise TypeError(f"{name}: embeddings must be a floating tensor of shape {shape}; got "
                        f"{describe(embeddings)}.{fix}")
    if embeddings.dim() != 2 or (d is not None and embeddings.shape[1] != d):
        raise ValueError(f"{name}: embeddings must be a floating tensor of shape {shape}; got {describe(embeddings)}.")


def check_labels(name: str, labels, n: int, arg: str = "labels") -> None:
    """``labels`` (called ``arg`` in messages) must be int64 class indices of shape (n,), one per embedding."""
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64:
        got = format_dtype(labels) if isinstance(labels, Tensor) else type(labels).__name__
        raise TypeError(f"{name}: {arg} must be int64 class indices of shape ({n},); got {got}. Use {arg}.long().")
    if labels.shape != (n,):
        hint = f" Did you mean {arg}.squeeze(1)?" if labels.shape == (n, 1) else ""
        raise ValueError(f"{name}: {arg} must have shape ({n},) to match the embeddings; got "
                         f"{format_shape(labels)}.{hint}")


def check_index_range(name: str, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    """Return the mask of rows that count; raise if a counted target is out of [0, C)."""
    return counted_rows(name, target, num_classes, ignore_index)[0]


def counted_rows(name: str, target: Tensor, num_classes: int, ignore_index: int | None) -> tuple[Tensor, bool]:
    """:func:`check_index_range`, and whether every row counts, with one read from the device."""
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    if not target.numel():
        return valid, True
    bad = valid & ((target < 0) | (target >= num_classes))
    any_bad, all_counted = torch.stack([bad.any(), valid.all()]).tolist()
    if any_bad:
        first = int(target[bad][0])
        raise ValueError(
            f"{name}: target holds class index {first}, outside [0, {num_classes}) for "
            f"{num_classes} classes. Check the labels, or pass ignore_index={first} to skip such rows."
        )
    return valid, all_counted


def check_cosines(name: str, input: Tensor) -> None:  # noqa: A002 - torch's name
    """``input`` must hold cosines: every entry in [−1 − 10⁻⁶, 1 + 10⁻⁶] (NaN fails too).

    Reads one number back from the device, like the class-index range check. The engine calls it on
    the counted rows only (ignored rows never reach it).
    """
    if input.numel() == 0:
        return
    worst = input.detach().abs().max()
    if not bool(worst <= 1.0 + COSINE_TOLERANCE):
        raise ValueError(
            f"{name}: input must hold cosine similarities in [-1, 1] (unit embeddings times unit class "
            f"weights); got an entry of absolute value {float(worst):.4g}. Normalise the embeddings and the "
            "class weights first (lossbook.margin.cosine_logits(embeddings, weight)), or use "
            "lossbook.MarginHead, which holds the class weights and normalises both."
        )


def check_weight(name: str, weight: Tensor | None, logits: Tensor) -> Tensor | None:
    if weight is None:
        return None
    c = logits.shape[1]
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise TypeError(
            f"{name}: weight must be a floating tensor of shape ({c},), one weight per class; got "
            f"{type(weight).__name__ if not isinstance(weight, Tensor) else format_dtype(weight)}."
        )
    if weight.shape != (c,):
        raise ValueError(
            f"{name}: weight must have shape ({c},), one weight per class; got {format_shape(weight)}."
        )
    if weight.device != logits.device:
        raise ValueError(
            f"{name}: weight is on {weight.device} but logits are on {logits.device}. "
            f"Use weight.to(logits.device)."
        )
    return weight.to(logits.dtype)


def check_number(
    name: str,
    arg: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real hyper-parameter in the stated interval."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: {arg} must be a real number; got {type(value).__name__}.")
    value = float(value)
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not math.isfinite(value) or not (lo_ok and hi_ok):
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name}: {arg} must lie in {lo}, {hi}; got {value!r}.")
    return value


def reduce_loss(per_sample: Tensor, reduction: str, *, denominator: Tensor | None = None) -> Tensor:
    """Apply ``reduction`` to weighted per-sample losses.

    ``per_sample`` already carries its weights; ``denominator`` is what ``"mean"`` divides by
    (torch's convention: the summed weights of the counted rows for index targets, N for
    probability targets). A zero denominator (empty or fully ignored batch) gives a zero that is
    still attached to the graph, never NaN.
    """
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    if reduction == "sum":
        return total
    if denominator is None:
        denominator = torch.tensor(float(per_sample.numel()), dtype=per_sample.dtype, device=per_sample.device)
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, total / safe, total * 0.0)
