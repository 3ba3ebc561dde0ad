r"""SCoRe's submodular losses (Majee et al., ICML 2024, "SCoRe: Submodular Combinatorial Representation
Learning"): Facility-Location (SCoRe-FL) and Graph-Cut (SCoRe-GC), in the form of the authors' code
(amajee11us/SCoRe, ``objectives/combinatorial/FL.py`` and ``GC.py``, with ``objectives/utils.py``).

With s_ij the similarity kernel of the batch (cosine by default, the code's ``cosSim``), P(i) and N(i)
the other samples of i's class and the samples of other classes, and the scale τ/τ₀ (the code's
``temperature / base_temperature``; 1 at its training default ``--temp 0.07``):

.. math::

    \text{SCoRe-FL:}\quad \ell_i &= \tfrac{\tau}{\tau_0}\,\lambda\,
        \log\Bigl(\textstyle\sum_{j\in N(i)} e^{s_{ij}} + |P(i)| + 1\Bigr)\\
    \text{SCoRe-GC:}\quad \ell_i &= \tfrac{\tau}{\tau_0}\Bigl(\log\textstyle\sum_{j\in N(i)} s_{ij}
        - \log\bigl(\lambda\textstyle\sum_{j\in P(i)} s_{ij}\bigr)\Bigr)

FL is the soft maximum (log-sum-exp) over the batch of i's similarities to other classes, in which the
code's masking (a product with the negative mask, not a removal) leaves a 0 for each same-class entry and
for i itself: hence the + |P(i)| + 1 (each e⁰). It pushes other classes away and has no pull between
positives. The similarities are not divided by τ. GC is the log-ratio of i's summed similarity to other
classes over λ times that to its own class. Its logarithms need both sums positive: with cosine
similarities they need not be (NaN where not), so ``kernel="rbf"`` gives s_ij = exp(−‖u_i − u_j‖²/d) of the
L2-normalised embeddings u (d the dimension; the code's ``rbf`` kernel, γ = 1/d, here on unit vectors so that
it stays in (0, 1]). λ = 1 is the code's training setting.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_number
from ..registry import register_method
from .distances import check_batch, pair_masks, pairwise_similarity, reduce_anchors

__all__ = ["score_kernel", "score_fl_loss", "score_gc_loss"]

_KERNELS = ("cosine", "rbf")


@register_method(kind="building block", family="pairs", paper="majee2024score")
def score_kernel(embeddings: Tensor, *, kernel: str = "cosine") -> Tensor:
    """SCoRe's similarity kernel of a batch (N, N): ``"cosine"``, or ``"rbf"`` exp(−‖u_i − u_j‖²/d) of the
    L2-normalised rows u (in (0, 1], 1 on the diagonal)."""
    if kernel not in _KERNELS:
        raise ValueError(f"score_kernel: kernel must be one of {_KERNELS}; got {kernel!r}.")
    s = pairwise_similarity(embeddings)
    if kernel == "rbf":
        s = torch.exp(-(2 - 2 * s).clamp_min(0) / embeddings.shape[1])
    return s


def _check_score(name, temperature, base_temperature, lam):
    t = check_number(name, "temperature", temperature, low=0.0, low_open=True)
    t0 = check_number(name, "base_temperature", base_temperature, low=0.0, low_open=True)
    check_number(name, "lam", lam, low=0.0, low_open=True)
    return t / t0


@register_method(kind="stateful loss", family="pairs", paper="majee2024score")
def score_fl_loss(embeddings: Tensor, labels: Tensor, *, kernel: str = "cosine", temperature: float = 0.07,
                  base_temperature: float = 0.07, lam: float = 1.0, reduction: str = "mean") -> Tensor:
    """SCoRe-FL per anchor: (τ/τ₀)·λ·log(Σ_{j of another class} e^{s_ij} + |P(i)| + 1), the log-sum-exp of the
    anchor's similarities with its own class's entries (itself included) at 0, as the official code's
    masking leaves them (module docstring). Defaults: the code's training setting (τ = τ₀ = 0.07, λ = 1,
    cosine). Every anchor counts."""
    name = "score_fl_loss"
    check_batch(name, embeddings, labels, reduction)
    scale = _check_score(name, temperature, base_temperature, lam)
    s = score_kernel(embeddings, kernel=kernel)
    same = labels[:, None] == labels[None, :]
    per = scale * lam * torch.logsumexp(s.masked_fill(same, 0.0), dim=1)
    return reduce_anchors(per, torch.ones_like(labels, dtype=torch.bool), reduction, embeddings)


@register_method(kind="stateful loss", family="pairs", paper="majee2024score")
def score_gc_loss(embeddings: Tensor, labels: Tensor, *, kernel: str = "rbf", temperature: float = 0.07,
                  base_temperature: float = 0.07, lam: float = 1.0, reduction: str = "mean") -> Tensor:
    """SCoRe-GC per anchor: (τ/τ₀)·(log Σ_{j∈N(i)} s_ij − log(λ Σ_{j∈P(i)} s_ij)), the official code's
    log-ratio form (module docstring), by default on the positive ``"rbf"`` kernel; with ``"cosine"`` (the
    code's) a sum that is not positive raises a ValueError. An anchor counts when it has a positive and a
    negative."""
    name = "score_gc_loss"
    check_batch(name, embeddings, labels, reduction)
    scale = _check_score(name, temperature, base_temperature, lam)
    s = score_kernel(embeddings, kernel=kernel)
    pos, neg = pair_masks(labels)
    counted = pos.any(1) & neg.any(1)
    sum_pos, sum_neg = (s * pos).sum(1), (s * neg).sum(1)
    if bool(((sum_pos <= 0) | (sum_neg <= 0))[counted].any()):
        raise ValueError(f"{name}: an anchor's summed {kernel} similarity to its positives or negatives is ≤ 0, "
                         "where the log-ratio is undefined; use kernel='rbf' (always positive).")
    one = torch.ones_like(sum_pos)
    per = scale * (torch.log(torch.where(counted, sum_neg, one)) - torch.log(lam * torch.where(counted, sum_pos, one)))
    return reduce_anchors(per, counted, reduction, embeddings)
