r"""Z-Error loss (Godin, 2025, "Z-Error Loss for Training Neural Networks", arXiv:2506.02154).

Per batch, each counted sample's loss ℓ_i is turned into a z-score over the batch and samples
whose z-score is out of range are masked out of the loss:

.. math::

    z_i = \frac{\ell_i - \bar\ell}{s_\ell + \epsilon},\qquad
    m_i = \mathbb 1\big[|z_i| \le \tau\big],\qquad
    L = \frac{\sum_i m_i\,\ell_i}{\sum_i m_i},

with ℓ̄ and s_ℓ the batch mean and the unbiased (n − 1) standard deviation of the counted rows'
losses, τ = 2 ("2-sigma") by default. This is the rule of the note's regression loss (``ZMSELoss``:
z-scores of per-sample losses, two-sided, masked mean over inliers). Its binary classification
variant (``ZErrorBCEWithLogitsLoss``) instead z-scores the raw logit within each class; for
multi-class losses this module applies the per-sample-loss rule to any base loss
(cross-entropy by default). ``two_sided=False`` masks only the high tail (z_i > τ), the
samples a mislabelled example produces; the two-sided default also drops unusually *easy* rows.

The mask is computed without gradient (a masked row gets exactly zero gradient; the batch
statistics are constants). Fewer than two counted rows, or a batch whose losses are all equal
(s = 0), masks nothing. Because a row's fate depends on the rest of the batch, this is not a
per-row loss, so it is not in the loss registry (whose contract tests assume per-row losses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._validation import check_logits, check_number, check_reduction, check_weight, reduce_loss, target_kind
from ..registry import register_method

__all__ = ["ZErrorOutput", "z_error_mask", "z_error_loss", "ZErrorLoss"]


@dataclass
class ZErrorOutput:
    """What :func:`z_error_loss` returns with ``return_aux=True``."""

    loss: Tensor
    per_sample: Tensor  #: the base loss of every row, unmasked, shape (N,)
    z: Tensor  #: the batch z-score of every row (0 for rows not counted), shape (N,)
    mask: Tensor  #: True for rows kept in the loss, shape (N,)


@register_method(kind="building block", family="robust", paper="godin2025zerror")
def z_error_mask(per_sample: Tensor, *, threshold: float = 2.0, two_sided: bool = True,
                 valid: Tensor | None = None, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """The (z-scores, keep-mask) of the Z-Error rule for per-sample losses ``per_sample`` (N,).

    ``valid`` marks the rows that count (default: all); statistics use those rows only and
    the other rows are never kept. Returns detached tensors.
    """
    per_sample = per_sample.detach()
    if valid is None:
        valid = torch.ones_like(per_sample, dtype=torch.bool)
    n = int(valid.sum())
    z = torch.zeros_like(per_sample)
    if n >= 2:
        x = per_sample[valid]
        mean = x.mean()
        std = x.std(unbiased=True)
        z = torch.where(valid, (per_sample - mean) / (std + eps), z)
    out = z.abs() if two_sided else z
    keep = valid & (out <= threshold)
    return z, keep


@register_method(kind="stateful loss", family="robust", paper="godin2025zerror")
def z_error_loss(
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    threshold: float = 2.0,
    two_sided: bool = True,
    base: str | Callable[..., Tensor] = "cross_entropy",
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_aux: bool = False,
) -> Tensor | ZErrorOutput:
    r"""Z-Error loss: the base loss with batch outliers masked, L = Σ_i m_i ℓ_i / Σ_i m_i (Godin 2025).

    ℓ_i is ``base``'s per-sample loss (a registered loss name, e.g. ``"cross_entropy"`` or
    ``"generalized_cross_entropy"``, or a callable ``f(input, target, reduction="none", **kw)``),
    z_i its z-score over the counted rows of the batch (unbiased std), and m_i = 𝟙[|z_i| ≤ τ]
    (``two_sided=True``, the note's rule) or 𝟙[z_i ≤ τ] (``two_sided=False``). ``threshold`` = τ > 0.

    ``weight`` and ``ignore_index`` are passed to the base loss; ``"mean"`` divides by the number of
    kept rows (by their summed class weights when ``weight`` is given with index targets);
    ``"none"`` returns m_i·ℓ_i. ``return_aux=True`` returns :class:`ZErrorOutput` (loss,
    per-sample losses, z-scores, mask).
    """
    name = "z_error_loss"
    threshold = check_number(name, "threshold", threshold, low=0.0, low_open=True)
    if not isinstance(two_sided, bool):
        raise TypeError(f"{name}: two_sided must be True or False; got {type(two_sided).__name__}.")
    check_logits(name, input)
    check_reduction(name, reduction)
    kind = target_kind(name, input, target, allow_prob=True)
    weight = check_weight(name, weight, input)
    if isinstance(base, str):
        from ..registry import loss_info

        fn = loss_info(base).function
    elif callable(base):
        fn = base
    else:
        raise TypeError(f"{name}: base must be a registered loss name or a callable; got {type(base).__name__}.")
    kwargs = {}
    if weight is not None:
        kwargs["weight"] = weight
    if kind == "index":
        kwargs["ignore_index"] = ignore_index
    per_sample = fn(input, target, reduction="none", **kwargs)
    if not isinstance(per_sample, Tensor) or per_sample.shape != (input.shape[0],):
        raise ValueError(f"{name}: base must return one loss per row, shape ({input.shape[0]},), with reduction='none'.")
    valid = target != ignore_index if kind == "index" else torch.ones(input.shape[0], dtype=torch.bool, device=input.device)
    z, keep = z_error_mask(per_sample, threshold=threshold, two_sided=two_sided, valid=valid)
    masked = torch.where(keep, per_sample, torch.zeros((), dtype=per_sample.dtype, device=per_sample.device))
    counts = keep.to(per_sample.dtype)
    if weight is not None and kind == "index":
        counts = counts * weight[torch.where(valid, target, 0)]
    loss = reduce_loss(masked, reduction, denominator=counts.sum())
    return ZErrorOutput(loss, per_sample, z, keep) if return_aux else loss


@register_method(kind="stateful loss", family="robust", paper="godin2025zerror")
class ZErrorLoss(nn.Module):
    """Module form of :func:`z_error_loss`: ``ZErrorLoss(threshold=2.0, base="cross_entropy")``."""

    def __init__(self, threshold: float = 2.0, *, two_sided: bool = True,
                 base: str | Callable[..., Tensor] = "cross_entropy", weight: Tensor | None = None,
                 ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__()
        self.threshold = check_number("ZErrorLoss", "threshold", threshold, low=0.0, low_open=True)
        check_reduction("ZErrorLoss", reduction)
        self.two_sided, self.base, self.ignore_index, self.reduction = two_sided, base, ignore_index, reduction
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return z_error_loss(input, target, threshold=self.threshold, two_sided=self.two_sided, base=self.base,
                            weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self) -> str:
        base = self.base if isinstance(self.base, str) else getattr(self.base, "__name__", "callable")
        return f"threshold={self.threshold!r}, two_sided={self.two_sided!r}, base={base!r}"
