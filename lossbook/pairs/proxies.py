r"""Proxy-based losses: one learnable vector per class stands in for the class's samples, so a batch
of N costs N·C similarities instead of N² pairs.

* **ProxyAnchor** (Kim et al., 2020): with cosines s(x, p) to the proxies, P⁺ the proxies with a
  sample in the batch,
  (1/|P⁺|) Σ_{p∈P⁺} log(1 + Σ_{x∈X_p⁺} e^{−α(s−δ)}) + (1/C) Σ_p log(1 + Σ_{x∈X_p⁻} e^{α(s+δ)}),
  α = 32, δ = 0.1.
* **ProxyNCA** (Movshovitz-Attias et al., 2017): −log(e^{−d(x, p_y)} / Σ_{z≠y} e^{−d(x, p_z)}) with
  d = ‖σx̂ − σp̂‖², unit vectors scaled by σ (``scale``); ``exclude_positive=False`` puts p_y in the
  denominator too (the softmax form of ProxyNCA++).
* **Mean-field contrastive** (Furusawa, 2024, "Mean Field Theory in Deep Metric Learning"): the
  contrastive loss with each sample's partners replaced by the class vectors (the mean field):
  with d = 1 − x̂ᵀŵ_c,
  Σ_c [𝟙(c = y)·[d − m_p]₊ + 𝟙(c ≠ y)·[m_n − d]₊] per sample, plus
  λ·mean_c Σ_{c'≠c} [m_n − (1 − ŵ_cᵀŵ_{c'})]₊^p keeping the class vectors apart (as the official
  ``MeanFieldContrastiveLoss``); ``reduction="none"`` adds the regulariser to every anchor, so that
  the mean is the official loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_embeddings, check_index_range, check_number, check_reduction, reduce_loss
from ..registry import register_method
from .distances import check_batch, masked_logsumexp

__all__ = [
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "mean_field_contrastive_loss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "MeanFieldContrastiveLoss",
]


def _check_proxies(name: str, embeddings: Tensor, labels: Tensor, proxies, reduction: str) -> None:
    check_batch(name, embeddings, labels, reduction)
    if not isinstance(proxies, Tensor) or not proxies.is_floating_point() or proxies.dim() != 2:
        raise TypeError(f"{name}: proxies must be a floating (C, d) tensor, one row per class; got "
                        f"{type(proxies).__name__ if not isinstance(proxies, Tensor) else tuple(proxies.shape)}.")
    check_embeddings(name, embeddings, proxies.shape[1])
    check_index_range(name, labels, proxies.shape[0], None)


@register_method(kind="stateful loss", family="pairs", paper="kim2020proxy")
def proxy_anchor_loss(embeddings: Tensor, labels: Tensor, proxies: Tensor, *, margin: float = 0.1,
                      alpha: float = 32.0, reduction: str = "mean") -> Tensor:
    """Proxy-Anchor loss (Kim et al., 2020) against ``proxies`` (C, d). ``reduction="none"`` gives the
    (C,) per-proxy contributions pos_c/|P⁺| + neg_c/C, whose sum is the paper's loss; ``"mean"`` and
    ``"sum"`` both return that sum (the paper's two averages are already inside)."""
    name = "proxy_anchor_loss"
    _check_proxies(name, embeddings, labels, proxies, reduction)
    check_number(name, "margin", margin)
    check_number(name, "alpha", alpha, low=0.0, low_open=True)
    cos = F.normalize(embeddings, dim=1) @ F.normalize(proxies, dim=1).T  # (N, C)
    pos = F.one_hot(labels, proxies.shape[0]).bool()
    with_pos = pos.any(0)
    pos_term = masked_logsumexp((-alpha * (cos - margin)).T, pos.T, add_one=True)
    neg_term = masked_logsumexp((alpha * (cos + margin)).T, ~pos.T, add_one=True)
    per = pos_term / with_pos.sum().clamp_min(1).to(cos.dtype) + neg_term / proxies.shape[0]
    per = per + embeddings.sum() * 0.0
    return per if reduction == "none" else per.sum()


@register_method(kind="stateful loss", family="pairs", paper="movshovitz2017no")
def proxy_nca_loss(embeddings: Tensor, labels: Tensor, proxies: Tensor, *, scale: float = 3.0,
                   exclude_positive: bool = True, reduction: str = "mean") -> Tensor:
    """ProxyNCA loss (Movshovitz-Attias et al., 2017) per sample: −log(e^{−d_y} / Σ_{z≠y} e^{−d_z}),
    d_z = ‖σx̂ − σp̂_z‖² (σ = ``scale``); with ``exclude_positive=False`` the denominator sums over every
    proxy (cross-entropy of −d)."""
    name = "proxy_nca_loss"
    _check_proxies(name, embeddings, labels, proxies, reduction)
    check_number(name, "scale", scale, low=0.0, low_open=True)
    d = (scale ** 2) * (2.0 - 2.0 * F.normalize(embeddings, dim=1) @ F.normalize(proxies, dim=1).T)
    logits = -d
    target = logits.gather(1, labels[:, None]).squeeze(1)
    keep = torch.ones_like(logits, dtype=torch.bool)
    if exclude_positive:
        if proxies.shape[0] < 2:
            raise ValueError(f"{name}: excluding the positive proxy needs at least two classes; got 1.")
        keep = ~F.one_hot(labels, proxies.shape[0]).bool()
    return reduce_loss(masked_logsumexp(logits, keep) - target, reduction)


def _check_mean_field(pos_margin=0.0, neg_margin=1.0, mf_reg=1.0, mf_power=2.0):
    name = "mean_field_contrastive_loss"
    check_number(name, "pos_margin", pos_margin, low=0.0, high=2.0)
    check_number(name, "neg_margin", neg_margin, low=0.0, high=2.0)
    check_number(name, "mf_reg", mf_reg, low=0.0)
    check_number(name, "mf_power", mf_power, low=0.0, low_open=True)


@register_method(kind="stateful loss", family="pairs", paper="furusawa2024mean")
def mean_field_contrastive_loss(embeddings: Tensor, labels: Tensor, class_vectors: Tensor, *,
                                pos_margin: float = 0.0, neg_margin: float = 1.0, mf_reg: float = 1.0,
                                mf_power: float = 2.0, reduction: str = "mean") -> Tensor:
    """Mean-field contrastive loss (Furusawa, 2024) per sample, against ``class_vectors`` (C, d): with
    d_c = 1 − x̂ᵀŵ_c, Σ_c [𝟙(c = y)[d_c − m_p]₊ + 𝟙(c ≠ y)[m_n − d_c]₊] + λ·mean_c Σ_{c'≠c}
    [m_n − D_cc']₊^p, D_cc' = 1 − ŵ_cᵀŵ_c'. Cost O(N·C + C²) against the pair losses' O(N²).
    Our defaults (m_p = 0, m_n = 1, λ = 1, p = 2); the paper tunes them per dataset."""
    name = "mean_field_contrastive_loss"
    _check_proxies(name, embeddings, labels, class_vectors, reduction)
    _check_mean_field(pos_margin, neg_margin, mf_reg, mf_power)
    w = F.normalize(class_vectors, dim=1)
    d = 1.0 - F.normalize(embeddings, dim=1) @ w.T
    own = F.one_hot(labels, w.shape[0]).bool()
    per = torch.where(own, (d - pos_margin).clamp_min(0), (neg_margin - d).clamp_min(0)).sum(1)
    between = 1.0 - w @ w.T
    off = ~torch.eye(w.shape[0], dtype=torch.bool, device=w.device)
    reg = mf_reg * torch.where(off, (neg_margin - between).clamp_min(0).pow(mf_power), torch.zeros_like(between)).sum(1).mean()
    return reduce_loss(per + reg, reduction)


class _ProxyModule(nn.Module):
    def __init__(self, num_classes: int, embedding_dim: int, *, reduction: str, init: str) -> None:
        super().__init__()
        for arg, v in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{type(self).__name__}: {arg} must be an int ≥ 1; got {v!r}.")
        check_reduction(type(self).__name__, reduction)
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_dim))
        if init == "kaiming":
            nn.init.kaiming_normal_(self.proxies, mode="fan_out")
        else:
            nn.init.normal_(self.proxies, std=1.0 / math.sqrt(embedding_dim))
        self.reduction = reduction


@register_method(kind="head", family="pairs", paper="kim2020proxy")
class ProxyAnchorLoss(_ProxyModule):
    """Proxy-Anchor loss with learnable proxies (C, d) (Kaiming-normal start, as the paper's code);
    forward(embeddings, labels). Train the proxies with a larger learning rate (the paper: ×100)."""

    def __init__(self, num_classes: int, embedding_dim: int, *, margin: float = 0.1, alpha: float = 32.0,
                 reduction: str = "mean") -> None:
        super().__init__(num_classes, embedding_dim, reduction=reduction, init="kaiming")
        check_number("ProxyAnchorLoss", "margin", margin)
        check_number("ProxyAnchorLoss", "alpha", alpha, low=0.0, low_open=True)
        self.margin, self.alpha = float(margin), float(alpha)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return proxy_anchor_loss(embeddings, labels, self.proxies, margin=self.margin, alpha=self.alpha,
                                 reduction=self.reduction)


@register_method(kind="head", family="pairs", paper="movshovitz2017no")
class ProxyNCALoss(_ProxyModule):
    """ProxyNCA loss with learnable proxies (C, d); forward(embeddings, labels)."""

    def __init__(self, num_classes: int, embedding_dim: int, *, scale: float = 3.0, exclude_positive: bool = True,
                 reduction: str = "mean") -> None:
        super().__init__(num_classes, embedding_dim, reduction=reduction, init="normal")
        check_number("ProxyNCALoss", "scale", scale, low=0.0, low_open=True)
        self.scale, self.exclude_positive = float(scale), bool(exclude_positive)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return proxy_nca_loss(embeddings, labels, self.proxies, scale=self.scale,
                              exclude_positive=self.exclude_positive, reduction=self.reduction)


@register_method(kind="head", family="pairs", paper="furusawa2024mean")
class MeanFieldContrastiveLoss(_ProxyModule):
    """Mean-field contrastive loss with learnable class vectors (C, d) (normal start, as the official
    code); forward(embeddings, labels)."""

    def __init__(self, num_classes: int, embedding_dim: int, *, pos_margin: float = 0.0, neg_margin: float = 1.0,
                 mf_reg: float = 1.0, mf_power: float = 2.0, reduction: str = "mean") -> None:
        super().__init__(num_classes, embedding_dim, reduction=reduction, init="normal")
        _check_mean_field(pos_margin, neg_margin, mf_reg, mf_power)
        self.hyperparameters = {"pos_margin": float(pos_margin), "neg_margin": float(neg_margin),
                                "mf_reg": float(mf_reg), "mf_power": float(mf_power)}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return mean_field_contrastive_loss(embeddings, labels, self.proxies, **self.hyperparameters,
                                           reduction=self.reduction)
