r"""Dual focal loss (Tao, Dong & Xu, ICML 2023): the focal factor looks at two probabilities.

.. math::

    \mathrm{DFL}(z, y) = -\bigl(1 - p_y + p_j\bigr)^\gamma \log p_y,\qquad
    p_j = \max\{p_k : p_k < p_y\}\ (0\text{ when no class is below } p_y),\qquad p = \mathrm{softmax}(z).

p_j is the largest probability *below* the target's, as the official code takes it
(Linwei94/ICML2023-DualFocalLoss, ``Losses/dual_focal_loss.py``: a strict ``p < p_y`` mask, then
the top-1 of the masked probabilities), not the largest non-target probability: when the
example is misclassified, the classes above p_y do not count. γ = 0 is cross-entropy.

Numerics: everything is done on log-probabilities. log(1 − p_y + p_j) is
``logaddexp(log(1 − p_y), log p_j)`` with log(1 − p_y) from :func:`lossbook.robust.log1m_softmax`
(no cancellation), and the factor is exp(γ·that), so logits of ±1e4 keep finite values and
gradients. p_j for every class k at once comes from one sort of the row: the predecessor of
log p_k among the sorted log-probabilities (ties with p_k excluded, as in the official mask).
"""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from ..engine import CLASS_OPTIONS, ClassOptions, LossModule, class_loss
from ..registry import register_loss
from ..robust import log1m_softmax
from .focal import _check_gamma

__all__ = ["dual_focal_loss", "dual_focal_terms", "DualFocalLoss"]


def _log_base(logits: Tensor, log_p: Tensor) -> Tensor:
    """log(1 − p_k + p_j(k)) for every class k, p_j(k) = max{p_l : p_l < p_k} (0 where none is below)."""
    ordered = log_p.sort(dim=1).values
    # number of classes strictly below p_k: the left insertion point of log p_k in the sorted row
    below = torch.searchsorted(ordered.detach().contiguous(), log_p.detach().contiguous(), side="left")
    log_p_j = ordered.gather(1, (below - 1).clamp_min(0))
    log_1m_p = log1m_softmax(logits)
    # where no class is below, p_j = 0 and the base is 1 − p_k: select it rather than adding e^{−inf},
    # whose second derivative through logaddexp is NaN
    return torch.where(below > 0, torch.logaddexp(log_1m_p, log_p_j), log_1m_p)


def dual_focal_terms(logits: Tensor, *, gamma: float = 5.0) -> Tensor:
    r"""The per-class dual focal terms DFL[i, k] = −(1 − p_ik + p_ij(k))^γ log p_ik, shape (N, C).

    The per-example formula of :func:`dual_focal_loss` for every possible target k (row i, target
    y is ``DFL[i, y]``), with p_j(k) the largest probability strictly below p_k (0 if none);
    no option handling.
    """
    log_p = torch.log_softmax(logits, dim=1)
    if gamma == 0.0 or logits.shape[1] < 2:
        # γ = 0 is CE; with one class p = 1 and the loss is 0 (−log 1), whatever the factor
        return -log_p
    return -torch.exp(gamma * _log_base(logits, log_p)) * log_p


def _check_dual_focal(gamma=5.0):
    return _check_gamma("dual_focal_loss", gamma)


@register_loss("dual_focal_loss", family="calibration", paper="tao2023dual", supports=CLASS_OPTIONS,
               check=_check_dual_focal,
               properties={"shift_invariant": True, "nonnegative": True, "bounded": False, "symmetric": False,
                           "reduces_to_ce_when": {"gamma": 0.0}},
               summary="Dual focal loss −(1 − p_y + p_j)^γ log p_y, p_j the largest probability below p_y "
                       "(γ = 0 is CE).",
               formula=r"\ell(z,y) = -(1 - p_y + p_j)^{\gamma} \log p_y,\ p_j = \max\{p_k : p_k < p_y\},"
                       r"\ p = \mathrm{softmax}(z)")
def dual_focal_loss(input: Tensor, target: Tensor, *, gamma: float = 5.0,
                    **options: Unpack[ClassOptions]) -> Tensor:
    r"""Dual focal loss −(1 − p_y + p_j)^γ log p_y of Tao, Dong & Xu (2023), p = softmax(z).

    p_j is the largest probability strictly *below* the target's (0 when p_y is the smallest), as in
    the official code, so a misclassified example's factor ignores the classes above p_y. ``gamma``
    γ ≥ 0 (0 gives :func:`~lossbook.functional.cross_entropy`); the default 5 is ours: the official
    Module's default is 0 (plain CE) and its training script takes γ per run.
    """
    gamma = _check_dual_focal(gamma)
    return class_loss("dual_focal_loss", input, target,
                      per_class=lambda z, y: dual_focal_terms(z, gamma=gamma), prob_target=True, **options)


class DualFocalLoss(LossModule, loss="dual_focal_loss"):
    """Module form of :func:`lossbook.functional.dual_focal_loss`."""
