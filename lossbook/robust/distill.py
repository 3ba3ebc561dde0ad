r"""Self-distillation with label noise (Das & Sanghavi, ICML 2023, "Understanding Self-Distillation
in the Presence of Label Noise").

A teacher is trained on the (noisy) labels; a student with the same architecture is then trained on

.. math:: \xi\,\ell(\text{teacher's predictions}, \text{student}) + (1-\xi)\,\ell(\text{labels}, \text{student}),

where the paper's point is that the imitation parameter ξ may usefully exceed 1 when many labels
are wrong (it reports ξ > 1 beating ξ ≤ 1 with cross-entropy at 30% and 50% corruption). With
cross-entropy, ℓ is linear in its target, so the objective is cross-entropy against the single
target row t = ξ·p_T + (1 − ξ)·e_y: it sums to 1 but has negative entries when ξ > 1, which
:func:`lossbook.functional.cross_entropy` accepts as a probability-shaped target.

:func:`distillation_targets` builds t, :func:`self_distillation_loss` is the objective for one
batch; :func:`lossbook.lab.distill.distill` trains a student with :func:`lossbook.lab.train.fit`.
With :func:`lossbook.lab.train.train_classifier` the whole recipe is::

    teacher, _ = train_classifier(LF.cross_entropy, splits, y_train=noisy)
    t = distillation_targets(predict_logits(teacher, splits.x_train), noisy, xi=1.5)
    student, scores = train_classifier(LF.cross_entropy, splits, y_train=t)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_logits, check_number, check_reduction, reduce_loss, target_kind
from ..registry import register_method

__all__ = ["distillation_targets", "self_distillation_loss", "SelfDistillationLoss"]


def _teacher_probs(name: str, logits: Tensor, teacher_logits: Tensor | None, teacher_probs: Tensor | None) -> Tensor:
    if (teacher_logits is None) == (teacher_probs is None):
        raise ValueError(
            f"{name}: pass exactly one of teacher_logits= (raw teacher outputs) or teacher_probs= "
            f"(softmax rows); got {'both' if teacher_logits is not None else 'neither'}."
        )
    arg = "teacher_logits" if teacher_logits is not None else "teacher_probs"
    t = teacher_logits if teacher_logits is not None else teacher_probs
    if not isinstance(t, Tensor) or not t.is_floating_point():
        got = type(t).__name__ if not isinstance(t, Tensor) else str(t.dtype).replace("torch.", "")
        raise TypeError(f"{name}: {arg} must be a floating tensor shaped like the logits {tuple(logits.shape)}; got {got}.")
    if t.shape != logits.shape:
        raise ValueError(
            f"{name}: {arg} must have the logits' shape {tuple(logits.shape)}; got {tuple(t.shape)}. "
            "Give one teacher row per student row, over the same classes."
        )
    t = t.detach().to(logits.dtype)
    if teacher_logits is not None:
        return torch.softmax(t, dim=1)
    if t.numel() and (bool((t < 0).any()) or not torch.allclose(t.sum(1), torch.ones_like(t[:, 0]), atol=1e-4)):
        raise ValueError(
            f"{name}: teacher_probs rows must be probabilities (≥ 0, summing to 1). If they are raw "
            "outputs, pass them as teacher_logits= instead."
        )
    return t


@register_method(kind="building block", family="robust", paper="das2023selfdistillation")
def distillation_targets(teacher: Tensor, target: Tensor, *, xi: float, from_logits: bool = True) -> Tensor:
    r"""The student's target rows t = ξ·p_T + (1 − ξ)·e_y, shape (N, C), rows summing to 1.

    ``teacher`` holds the teacher's logits (``from_logits=True``, softmax applied) or probabilities;
    ``target`` the given (possibly noisy) int64 labels. ξ ∈ ℝ (ξ > 1 gives negative entries, as in
    Das & Sanghavi 2023). Cross-entropy against t equals ξ·CE(p_T, student) + (1 − ξ)·CE(y, student).
    """
    name = "distillation_targets"
    xi = check_number(name, "xi", xi)
    check_logits(name, teacher)
    target_kind(name, teacher, target, allow_prob=False)
    c = teacher.shape[1]
    if target.numel() and bool(((target < 0) | (target >= c)).any()):
        raise ValueError(f"{name}: target holds a class index outside [0, {c}); check the labels.")
    p = _teacher_probs(name, teacher, teacher if from_logits else None, None if from_logits else teacher)
    onehot = torch.nn.functional.one_hot(target.to(p.device), c).to(p.dtype)
    return xi * p + (1.0 - xi) * onehot


@register_method(kind="stateful loss", family="robust", paper="das2023selfdistillation")
def self_distillation_loss(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    xi: float,
    teacher_logits: Tensor | None = None,
    teacher_probs: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Self-distillation objective ξ·CE(p_T, p_S) + (1 − ξ)·CE(e_y, p_S) of Das & Sanghavi (2023).

    ``input`` are the student's logits (N, C), ``target`` the given int64 labels (N,), and the
    teacher comes as ``teacher_logits`` (softmax applied) or ``teacher_probs`` (exactly one);
    it is detached. ξ is any real number: ξ = 0 is plain cross-entropy on the labels, ξ = 1 pure
    imitation of the teacher, ξ > 1 pushes the student away from the given label towards the
    teacher (the paper's regime under heavy label noise). Per row this is
    −Σ_k (ξ p_{T,k} + (1 − ξ)𝟙[k = y]) log p_{S,k}. Rows whose target is ``ignore_index`` are
    skipped; ``"mean"`` divides by the number of counted rows.
    """
    name = "self_distillation_loss"
    xi = check_number(name, "xi", xi)
    check_logits(name, input)
    check_reduction(name, reduction)
    target_kind(name, input, target, allow_prob=False)
    p_t = _teacher_probs(name, input, teacher_logits, teacher_probs)
    c = input.shape[1]
    valid = target != ignore_index
    if target.numel():
        bad = valid & ((target < 0) | (target >= c))
        if bool(bad.any()):
            first = int(target[bad][0])
            raise ValueError(
                f"{name}: target holds class index {first}, outside [0, {c}) for {c} classes. Check the "
                f"labels, or pass ignore_index={first} to skip such rows."
            )
    safe = torch.where(valid, target, 0)
    log_p = torch.log_softmax(input, dim=1)
    mix = xi * p_t + (1.0 - xi) * torch.nn.functional.one_hot(safe, c).to(log_p.dtype)
    per_row = -(mix * log_p).sum(dim=1) * valid.to(log_p.dtype)
    return reduce_loss(per_row, reduction, denominator=valid.to(log_p.dtype).sum())


@register_method(kind="stateful loss", family="robust", paper="das2023selfdistillation")
class SelfDistillationLoss(nn.Module):
    """Module form of :func:`self_distillation_loss`: ``SelfDistillationLoss(xi=1.5)(student_logits,
    labels, teacher_logits=...)`` (or ``teacher_probs=...``)."""

    def __init__(self, xi: float, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__()
        self.xi = check_number("SelfDistillationLoss", "xi", xi)
        check_reduction("SelfDistillationLoss", reduction)
        self.ignore_index = ignore_index
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor, teacher_logits: Tensor | None = None,  # noqa: A002
                teacher_probs: Tensor | None = None) -> Tensor:
        return self_distillation_loss(input, target, xi=self.xi, teacher_logits=teacher_logits,
                                      teacher_probs=teacher_probs, ignore_index=self.ignore_index,
                                      reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"xi={self.xi!r}, reduction={self.reduction!r}"
