r"""Knowledge distillation at the probability and at the logit level, and the dual head that lets
both train one backbone (Yang et al., "Dual-Head Knowledge Distillation: Enhancing Logits
Utilization with an Auxiliary Head", 2024; official code penghui-yang/DHKD).

With student logits s and teacher logits t (both (N, C)) and a temperature T:

* **KD** (Hinton et al.), probability level:
  :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(s/T))`, averaged over rows.
* **BinaryKL**, logit level: each class as its own Bernoulli through the sigmoid,
  :math:`T^2 \sum_k \mathrm{KL}(\mathrm{Ber}(\sigma(t_k/T))\,\|\,\mathrm{Ber}(\sigma(s_k/T)))`, averaged
  over rows. Unlike softmax, σ is not shift-invariant, so the loss sees the logits' level as well
  as their differences.
* **BinaryKL-Norm**, the form the official DHKD training uses on the auxiliary head: the
  Bernoulli of the *difference*, :math:`T^2 \sum_k \mathrm{KL}(\mathrm{Ber}(\tfrac12)\,\|\,
  \mathrm{Ber}(\sigma((s_k - t_k)/T)))`, zero exactly when s = t.

The paper's finding is that cross-entropy plus BinaryKL on **one** linear classifier degrades the
student (the two gradients conflict in the classifier, not in the backbone), and that a second,
auxiliary head taking the logit-level loss (:class:`DualHeadClassifier`) keeps the backbone's gain.
Every function is computed in log-space (``logsigmoid``, ``log_softmax``), so extreme logits stay
finite; the official code clamps probabilities to [1e-8, 1 − 1e-8] instead, which agrees wherever
no probability reaches the clamp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_logits, check_number, check_reduction, format_shape, reduce_loss
from ..registry import register_method

__all__ = ["kd_loss", "binary_kl_loss", "binary_kl_norm_loss", "DualHeadClassifier"]


def _check_pair(name: str, student: Tensor, teacher: Tensor, temperature: float, reduction: str) -> float:
    check_logits(name, student)
    check_logits(name, teacher)
    if teacher.shape != student.shape:
        raise ValueError(f"{name}: teacher logits must have the student's shape {format_shape(student)}; got "
                         f"{format_shape(teacher)}. Pass the teacher's logits on the same batch.")
    check_reduction(name, reduction)
    return check_number(name, "temperature", temperature, low=0.0, low_open=True)


def _bernoulli_kl(log_p: Tensor, log_1mp: Tensor, log_q: Tensor, log_1mq: Tensor) -> Tensor:
    """KL(Ber(p) ‖ Ber(q)) from the four logs, elementwise (0·log 0 = 0)."""
    return log_p.exp() * (log_p - log_q) + log_1mp.exp() * (log_1mp - log_1mq)


@register_method(kind="stateful loss", family="alternatives", paper="hinton2015distilling")
def kd_loss(student: Tensor, teacher: Tensor, *, temperature: float = 4.0, reduction: str = "mean") -> Tensor:
    r"""Hinton's distillation loss T²·KL(softmax(t/T) ‖ softmax(s/T)) per row (the teacher is not
    differentiated); ``reduction`` over rows: ``"none"``, ``"mean"`` (default, the usual batchmean) or
    ``"sum"``. T = 4 is the CIFAR-100 default of the DHKD code."""
    name = "kd_loss"
    t = _check_pair(name, student, teacher, temperature, reduction)
    log_q = F.log_softmax(student / t, dim=1)
    log_p = F.log_softmax(teacher.detach() / t, dim=1)
    per_row = (log_p.exp() * (log_p - log_q)).sum(dim=1) * t * t
    return reduce_loss(per_row, reduction)


@register_method(kind="stateful loss", family="alternatives", paper="yang2024dualhead")
def binary_kl_loss(student: Tensor, teacher: Tensor, *, temperature: float = 2.0, reduction: str = "mean") -> Tensor:
    r"""BinaryKL of Yang et al. (2024): T²·Σ_k KL(Ber(σ(t_k/T)) ‖ Ber(σ(s_k/T))) per row, a logit-level
    distillation loss (each class a sigmoid, so the level of the logits counts, not only their
    differences). ``temperature`` T = 2 is the official default; ``reduction`` over rows."""
    name = "binary_kl_loss"
    t = _check_pair(name, student, teacher, temperature, reduction)
    s, u = student / t, teacher.detach() / t
    kl = _bernoulli_kl(F.logsigmoid(u), F.logsigmoid(-u), F.logsigmoid(s), F.logsigmoid(-s))
    return reduce_loss(kl.sum(dim=1) * t * t, reduction)


@register_method(kind="stateful loss", family="alternatives", paper="yang2024dualhead")
def binary_kl_norm_loss(student: Tensor, teacher: Tensor, *, temperature: float = 2.0,
                        reduction: str = "mean") -> Tensor:
    r"""BinaryKL-Norm of Yang et al. (2024), the official DHKD auxiliary-head loss:
    T²·Σ_k KL(Ber(½) ‖ Ber(σ((s_k − t_k)/T))) per row, minimal (zero) exactly at s = t.
    ``temperature`` T = 2 is the official default; ``reduction`` over rows."""
    name = "binary_kl_norm_loss"
    t = _check_pair(name, student, teacher, temperature, reduction)
    d = (student - teacher.detach()) / t
    half = torch.full_like(d, 0.5).log()
    kl = _bernoulli_kl(half, half, F.logsigmoid(d), F.logsigmoid(-d))
    return reduce_loss(kl.sum(dim=1) * t * t, reduction)


@register_method(kind="building block", family="alternatives", paper="yang2024dualhead")
class DualHeadClassifier(nn.Module):
    """A backbone with two linear heads on its features: ``forward`` returns ``(main, auxiliary)``
    logits. The main head takes cross-entropy (and is the one evaluated); the auxiliary head takes the
    logit-level distillation loss, so that the two losses share the backbone but not a classifier.

    ``backbone`` maps inputs to ``features``-dimensional vectors; ``num_classes`` ≥ 1.
    """

    def __init__(self, backbone: nn.Module, features: int, num_classes: int):
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"DualHeadClassifier: backbone must be an nn.Module; got {type(backbone).__name__}.")
        for arg, value in (("features", features), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DualHeadClassifier: {arg} must be an int ≥ 1; got {value!r}.")
        self.backbone = backbone
        self.head = nn.Linear(features, num_classes)
        self.aux_head = nn.Linear(features, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)
        return self.head(h), self.aux_head(h)
