"""Self-distillation as a training recipe: fit a student against a teacher with the objective of
:mod:`lossbook.robust.distill` (Das & Sanghavi, ICML 2023)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..robust import distillation_targets
from ..softmax import cross_entropy
from .train import fit, predict_logits

__all__ = ["distill"]


def distill(teacher: nn.Module, student: nn.Module, x: Tensor, y: Tensor, *, xi: float, epochs: int,
            **fit_kwargs: Any):
    r"""Train ``student`` on ``(x, y)`` against ``teacher`` with the self-distillation objective.

    The teacher's probabilities on ``x`` are computed once (evaluation mode, no gradient), turned
    into the targets ξ·p_T + (1 − ξ)·e_y by :func:`distillation_targets`, and the student is fitted
    on them with cross-entropy by :func:`lossbook.lab.train.fit` (``fit_kwargs``: ``batch_size``,
    ``optimizer``, ``lr``, ``seed``, ``device``, ``evaluate`` …). Returns fit's
    :class:`~lossbook.lab.train.History`.
    """
    if not isinstance(teacher, nn.Module) or not isinstance(student, nn.Module):
        raise TypeError("distill: teacher and student must be torch.nn.Module instances.")
    dtype = next(student.parameters()).dtype
    teacher_logits = predict_logits(teacher, x).to("cpu", dtype)
    targets = distillation_targets(teacher_logits, y.to("cpu"), xi=xi)
    return fit(student, cross_entropy, x, targets, epochs=epochs, **fit_kwargs)
