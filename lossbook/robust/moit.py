r"""Interpolated supervised contrastive learning, the representation objective of MOIT (Ortego,
Arazo, Albert, O'Connor & McGuinness, CVPR 2021, "Multi-Objective Interpolation Training for
Robustness to Label Noise").

Inputs are mixed, x̃_i = λx_i + (1 − λ)x_{π(i)} with λ = max(λ', 1 − λ'), λ' ~ Beta(α, α)
(:func:`mixup_batch`), so each mixed sample carries a dominant label y_a = y_i and a minor label
y_b = y_{π(i)}. The interpolated SupCon loss of anchor i is

.. math::

    \ell_i = -\lambda_i \frac{1}{|P_a(i)|}\sum_{p\in P_a(i)} \log q_{ip}
             -(1-\lambda_i) \frac{1}{|P_b(i)|}\sum_{p\in P_b(i)} \log q_{ip},\qquad
    q_{ip} = \frac{e^{s_{ip}/\tau}}{\sum_{k\ne i} e^{s_{ik}/\tau}},

where s is the cosine similarity of the embeddings, P_a(i) = {p ≠ i : y_a(p) = y_a(i)} and
P_b(i) = {p ≠ i : y_a(p) = y_b(i)} (positives are judged by the other samples' dominant labels).
λ = 1 is the SupCon loss of Khosla et al. (2020). τ = 0.1 is the official ``--batch_t``.

Checked against the official code (DiegoOrtego/LabelNoiseMOIT, ``utils_labelNoise/utils_noise.py``:
``mix_data_lab``, ``supervised_masks_estimation``, ``unsupervised_masks_estimation``,
``InterpolatedContrastiveLearning_loss``). Differences: the code's second-term masks count the
mixing partner twice (once through its label in ``mask2Sup``, once through its index in
``mask2Unsup``); here every positive counts once, as in the paper's equation. The code's
cross-batch memory (XBM) is not included; an anchor without positives contributes 0 here (NaN in
the code). MOIT adds a mixup cross-entropy on a classifier head: λ·CE(z, y_a) + (1 − λ)·CE(z, y_b),
which is ``cross_entropy(logits, batch.soft_targets(C))`` with :meth:`MixupBatch.soft_targets`.

These are embedding losses (pairs of samples), so they are not in the loss registry, whose contract
tests assume (logits, class index) losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .._validation import check_number, check_reduction, reduce_loss
from ..registry import register_method

__all__ = ["MixupBatch", "mixup_batch", "interpolated_supcon_loss", "InterpolatedSupConLoss"]


@dataclass
class MixupBatch:
    """A mixed batch: inputs λx + (1 − λ)x[index], dominant labels ``y_a``, minor labels ``y_b``."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    index: Tensor
    lam: float

    def soft_targets(self, num_classes: int, dtype: torch.dtype | None = None) -> Tensor:
        """λ·e_{y_a} + (1 − λ)·e_{y_b}: cross-entropy against these is the mixup cross-entropy."""
        dtype = dtype or (self.x.dtype if self.x.is_floating_point() else torch.get_default_dtype())
        one_a = torch.nn.functional.one_hot(self.y_a, num_classes).to(dtype)
        one_b = torch.nn.functional.one_hot(self.y_b, num_classes).to(dtype)
        return self.lam * one_a + (1.0 - self.lam) * one_b


@register_method(kind="building block", family="robust", paper="ortego2021moit")
def mixup_batch(x: Tensor, y: Tensor, *, alpha: float = 1.0, generator: torch.Generator | None = None) -> MixupBatch:
    """Mix a batch with a random permutation, as MOIT's ``mix_data_lab``: λ' ~ Beta(α, α),
    λ = max(λ', 1 − λ') (the original sample dominates), x̃ = λx + (1 − λ)x[π]. α = 0 gives λ = 1."""
    alpha = check_number("mixup_batch", "alpha", alpha, low=0.0)
    if not isinstance(x, Tensor) or not isinstance(y, Tensor) or len(x) != len(y):
        raise ValueError("mixup_batch: x and y must be tensors with the same first dimension.")
    if alpha > 0:
        # numpy's Beta sampler, seeded from torch's RNG (``generator`` or the global one), so that
        # torch.manual_seed / a torch.Generator make the draw reproducible
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    else:
        lam = 1.0
    lam = max(lam, 1.0 - lam)
    index = torch.randperm(len(x), generator=generator).to(x.device)
    mixed = lam * x + (1.0 - lam) * x[index]
    return MixupBatch(mixed, y, y[index], index, lam)


def _check_labels(name: str, arg: str, labels, m: int, device) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64:
        got = type(labels).__name__ if not isinstance(labels, Tensor) else str(labels.dtype).replace("torch.", "")
        raise TypeError(f"{name}: {arg} must be int64 labels of shape ({m},); got {got}. Use {arg}.long().")
    if labels.shape != (m,):
        raise ValueError(f"{name}: {arg} must have shape ({m},), one label per embedding; got {tuple(labels.shape)}.")
    return labels.to(device)


@register_method(kind="stateful loss", family="robust", paper="ortego2021moit")
def interpolated_supcon_loss(
    embeddings: Tensor,
    labels: Tensor,
    mix_labels: Tensor | None = None,
    lam: float | Tensor = 1.0,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    reduction: str = "mean",
) -> Tensor:
    r"""Interpolated supervised contrastive loss of MOIT (Ortego et al. 2021); SupCon when λ = 1.

    ``embeddings`` (M, D) are the embeddings of mixed samples (stack several augmented views along
    the first dimension), ``labels`` (M,) their dominant labels y_a, ``mix_labels`` (M,) their minor
    labels y_b (None: no mixing), ``lam`` the mixing weight λ (a float or an (M,) tensor). Per
    anchor: −λ·mean_{p∈P_a} log q_ip − (1 − λ)·mean_{p∈P_b} log q_ip with q the softmax over all
    other rows of cosine similarity / ``temperature`` (dot products if ``normalize=False``).
    ``reduction``: ``"mean"`` over anchors (the code's), ``"sum"`` or ``"none"`` (M,). An anchor with
    no positive in a term gets 0 from that term.
    """
    name = "interpolated_supcon_loss"
    if not isinstance(embeddings, Tensor) or not embeddings.is_floating_point() or embeddings.dim() != 2:
        raise TypeError(f"{name}: embeddings must be a floating tensor of shape (M, D).")
    check_reduction(name, reduction)
    temperature = check_number(name, "temperature", temperature, low=0.0, low_open=True)
    m = embeddings.shape[0]
    labels = _check_labels(name, "labels", labels, m, embeddings.device)
    mix_labels = labels if mix_labels is None else _check_labels(name, "mix_labels", mix_labels, m, embeddings.device)
    if isinstance(lam, Tensor):
        if lam.shape not in ((), (m,)):
            raise ValueError(f"{name}: lam must be a number or a tensor of shape ({m},); got {tuple(lam.shape)}.")
        if lam.numel() and bool(((lam < 0) | (lam > 1)).any()):
            raise ValueError(f"{name}: lam must lie in [0, 1].")
        lam = lam.to(embeddings.dtype).to(embeddings.device).expand(m)
    else:
        lam = torch.full((m,), check_number(name, "lam", lam, low=0.0, high=1.0), dtype=embeddings.dtype,
                         device=embeddings.device)

    if m < 2:  # no other sample, no positive: a zero attached to the graph
        return reduce_loss(embeddings.sum(dim=1) * 0.0, reduction)
    e = torch.nn.functional.normalize(embeddings, dim=1) if normalize else embeddings
    logits = e @ e.T / temperature
    self_mask = torch.eye(m, dtype=torch.bool, device=e.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_q = torch.log_softmax(logits, dim=1).masked_fill(self_mask, 0.0)

    def term(anchor_labels: Tensor) -> Tensor:
        pos = (anchor_labels.unsqueeze(1) == labels.unsqueeze(0)) & ~self_mask
        count = pos.sum(dim=1)
        total = torch.where(pos, log_q, torch.zeros((), dtype=log_q.dtype, device=log_q.device)).sum(dim=1)
        return torch.where(count > 0, -total / count.clamp_min(1).to(log_q.dtype), torch.zeros_like(total))

    per_anchor = lam * term(labels) + (1.0 - lam) * term(mix_labels)
    return reduce_loss(per_anchor, reduction)


@register_method(kind="stateful loss", family="robust", paper="ortego2021moit")
class InterpolatedSupConLoss(nn.Module):
    """Module form of :func:`interpolated_supcon_loss`:
    ``InterpolatedSupConLoss(temperature=0.1)(embeddings, labels, mix_labels, lam)``."""

    def __init__(self, temperature: float = 0.1, *, normalize: bool = True, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = check_number("InterpolatedSupConLoss", "temperature", temperature, low=0.0, low_open=True)
        check_reduction("InterpolatedSupConLoss", reduction)
        self.normalize, self.reduction = normalize, reduction

    def forward(self, embeddings: Tensor, labels: Tensor, mix_labels: Tensor | None = None,
                lam: float | Tensor = 1.0) -> Tensor:
        return interpolated_supcon_loss(embeddings, labels, mix_labels, lam, temperature=self.temperature,
                                        normalize=self.normalize, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature!r}, normalize={self.normalize!r}"
