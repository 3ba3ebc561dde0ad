r"""Per-class loss matrices: the per-example formulas of the normalised and active–passive losses.

Every label-noise loss of Ma et al. (2020) is built from a *part*, a loss ℓ(z, k) that can be
evaluated for every class k at once, giving an (N, C) matrix M with M[i, k] = ℓ(z_i, k):

==========  =============================================  ==================================
part        ℓ(z, k), p = softmax(z)                        note
==========  =============================================  ==================================
``ce``      −log p_k                                       cross-entropy
``focal``   −(1 − p_k)^γ log p_k                           focal loss (Lin et al. 2017)
``gce``     (1 − p_k^q)/q                                  generalized CE (Zhang & Sabuncu 2018)
``mae``     1 − p_k                                        = ½‖e_k − p‖₁ (the APL code's MAE)
``rce``     −A (1 − p_k)                                   reverse CE with log 0 := A < 0
==========  =============================================  ==================================

The *normalised* version of a part divides by the sum over all labels,
ℓ_norm(z, k) = ℓ(z, k) / Σ_j ℓ(z, j), so that Σ_k ℓ_norm(z, k) = 1 for every z.

Numerics: log(1 − p_k) is computed without cancellation (for the arg-max class, where p_k may
round to 1, as log Σ_{j≠k} e^{z_j} − log Σ_j e^{z_j}), so the focal factor (1 − p)^γ has a finite
gradient even at logits of ±1e4 in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..softmax.comp_sum import comp_sum_phi

__all__ = ["PARTS", "NORMALIZED_PARTS", "log1m_softmax", "loss_matrix"]

#: Names of the per-class parts (see the module docstring).
PARTS = ("ce", "focal", "gce", "mae", "rce")
#: Normalised parts: the name of a part with an ``n`` in front.
NORMALIZED_PARTS = ("nce", "nfl", "ngce", "nmae", "nrce")
_NORMALIZED_BASE = {"nce": "ce", "nfl": "focal", "ngce": "gce", "nmae": "mae", "nrce": "rce"}


def log1m_softmax(logits: Tensor) -> Tensor:
    r"""log(1 − softmax(z)_k) for every k, accurate and with finite gradients for C ≥ 2.

    Only the arg-max class can have p_k > ½; there log(1 − p_k) = log Σ_{j≠k} e^{z_j} − logsumexp(z)
    (no cancellation). Every other class has p_k ≤ ½, where log(−expm1(log p_k)) is accurate.
    """
    log_p = torch.log_softmax(logits, dim=1)
    if logits.shape[1] < 2 or logits.shape[0] == 0:
        return torch.log(-torch.expm1(log_p))
    top = logits.argmax(dim=1, keepdim=True)
    is_top = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, top, True)
    others = torch.where(is_top, torch.full_like(logits, float("-inf")), logits)
    top_value = torch.logsumexp(others, dim=1, keepdim=True) - torch.logsumexp(logits, dim=1, keepdim=True)
    # the unselected branch must not see log(0): give it a harmless input there
    safe_log_p = torch.where(is_top, torch.full_like(log_p, -1.0), log_p)
    rest = torch.log(-torch.expm1(safe_log_p))
    return torch.where(is_top, top_value.expand_as(logits), rest)


def _part_matrix(part: str, logits: Tensor, *, gamma: float, q: float, log_zero: float) -> Tensor:
    log_p = torch.log_softmax(logits, dim=1)
    if part == "ce":
        return -log_p
    if part == "focal":
        if gamma == 0.0:
            return -log_p
        return -torch.exp(gamma * log1m_softmax(logits)) * log_p
    if part == "gce":
        return comp_sum_phi(log_p, 1.0 + q)
    if part == "mae":
        return comp_sum_phi(log_p, 2.0)
    if part == "rce":
        return -log_zero * comp_sum_phi(log_p, 2.0)
    raise ValueError(f"unknown part {part!r}; expected one of {PARTS + NORMALIZED_PARTS}.")


def loss_matrix(
    logits: Tensor,
    part: str = "nce",
    *,
    gamma: float = 0.5,
    q: float = 0.7,
    log_zero: float = -9.210340371976182,
) -> Tensor:
    r"""The (N, C) matrix M[i, k] = ℓ(z_i, k) of a part or a normalised part, for every label k.

    ``part`` is one of ``"ce"``, ``"focal"``, ``"gce"``, ``"mae"``, ``"rce"`` or their normalised
    forms ``"nce"``, ``"nfl"``, ``"ngce"``, ``"nmae"``, ``"nrce"`` (rows of a normalised part sum
    to 1). ``gamma`` is the focal exponent, ``q`` the GCE exponent, ``log_zero`` the constant A
    that reverse cross-entropy uses for log 0. Useful to plot Σ_k ℓ(z, k) against z.
    """
    if part in _NORMALIZED_BASE:
        base = _NORMALIZED_BASE[part]
        num = _part_matrix(base, logits, gamma=gamma, q=q, log_zero=log_zero)
        c = logits.shape[1]
        if base in ("mae", "rce"):
            # Σ_k (1 − p_k) = C − 1 exactly: divide by the constant, not by a rounded sum
            scale = (c - 1) * (1.0 if base == "mae" else -log_zero)
            return num / scale
        return num / num.sum(dim=1, keepdim=True)
    if part in PARTS:
        return _part_matrix(part, logits, gamma=gamma, q=q, log_zero=log_zero)
    raise ValueError(
        f"loss_matrix: part must be one of {PARTS + NORMALIZED_PARTS}; got {part!r}."
    )
