"""Softmax cross-entropy, written from the textbook formula with torch's exact semantics."""

from __future__ import annotations

from torch import Tensor

from .._module import ClassLossModule
from ..registry import register_loss
from ._per_class import per_class_loss


def _neg(log_p: Tensor) -> Tensor:
    return -log_p


@register_loss(
    "cross_entropy",
    family="softmax",
    paper="mao2023crossentropy",
    target="index_or_prob",
    properties={
        "shift_invariant": True,
        "nonnegative": True,
        "bounded": False,
        "symmetric": False,
        "classification_calibrated": True,
    },
    supports=("weight", "ignore_index", "label_smoothing", "prob_target"),
    summary="Softmax cross-entropy (the logistic loss); the baseline of every chapter.",
    formula=r"\ell(z, y) = -\log \frac{e^{z_y}}{\sum_k e^{z_k}}",
)
def cross_entropy(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Softmax cross-entropy :math:`-\log \mathrm{softmax}(z)_y`.

    Same arguments and results as :func:`torch.nn.functional.cross_entropy` for logits of shape
    ``(N, C)``: ``target`` holds int64 class indices ``(N,)`` or probabilities ``(N, C)``;
    ``weight`` rescales each class; ``ignore_index`` skips rows (index targets); ``label_smoothing``
    ε mixes the target with the uniform distribution, (1−ε)·y + ε/C. ``"mean"`` divides by the summed
    weights of the counted rows (index targets) or by N (probability targets). Unlike torch, an
    empty or fully ignored batch gives 0 (attached to the graph), not NaN.
    """
    return per_class_loss(
        "cross_entropy",
        input,
        target,
        _neg,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


class CrossEntropyLoss(ClassLossModule, loss="cross_entropy"):
    """Module form of :func:`lossbook.functional.cross_entropy` (``weight`` may be positional, as in torch)."""

    def __init__(self, weight: Tensor | None = None, **options) -> None:
        super().__init__(weight=weight, **options)
