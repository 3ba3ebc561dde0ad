r"""Label-noise detection by k-nearest-neighbour label agreement in embedding space (MOIT, Ortego
et al., CVPR 2021), as in the official ``LabelNoiseDetection`` (DiegoOrtego/LabelNoiseMOIT,
``utils_labelNoise/utils_noise.py``).

1. Embeddings are L2-normalised; each sample's k nearest neighbours (largest cosine similarity,
   itself excluded) vote with their (noisy) labels, unweighted: q_i = counts/k.
2. ``corrected=True`` (the official ``--discrepancy_corrected 1``): every sample is first relabelled
   with its neighbours' majority label, and the vote is taken again with these corrected labels.
3. Discrepancy d_i = −log(clip(q_i[y_i], 0.01, 0.99)); agreement a_i = 𝟙[argmax q_i = y_i].
4. ``balance="median"`` (official ``--balance_crit median``): count the agreeing samples of each
   (given) class, take the median n* of these counts over classes (``"max"``/``"min"`` also), and
   in every class call clean the min(n*, class size) samples with the smallest discrepancy.
   ``balance=None`` calls clean exactly the agreeing samples.

The official default is k = 250 for CIFAR's 50 000 images; scale k with the data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..registry import register_method

__all__ = ["NoiseDetection", "knn_label_agreement"]

_BALANCE = ("median", "max", "min", None)


@dataclass
class NoiseDetection:
    """What :func:`knn_label_agreement` finds, one entry per sample."""

    clean: Tensor  #: bool (N,): True for samples judged correctly labelled
    agreement: Tensor  #: bool (N,): the neighbours' majority label equals the given label
    discrepancy: Tensor  #: (N,): −log of the neighbours' (clipped) vote for the given label
    knn_probs: Tensor  #: (N, C): the neighbours' label distribution
    knn_labels: Tensor  #: int64 (N,): the neighbours' majority label (a corrected label)


def _votes(sim_topk_idx: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    neighbour_labels = labels[sim_topk_idx]  # (N, k)
    counts = torch.zeros(sim_topk_idx.shape[0], num_classes, dtype=torch.float64, device=labels.device)
    counts.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels, dtype=torch.float64))
    return counts / sim_topk_idx.shape[1]


@register_method(kind="building block", family="robust", paper="ortego2021moit")
def knn_label_agreement(
    embeddings: Tensor,
    labels: Tensor,
    *,
    k: int = 250,
    num_classes: int | None = None,
    corrected: bool = True,
    balance: str | None = "median",
    chunk_size: int = 1024,
) -> NoiseDetection:
    """Flag noisy labels by how well each sample's label agrees with its k nearest neighbours' labels.

    ``embeddings`` (N, D) float, ``labels`` (N,) int64 (the given, possibly noisy, labels); see the
    module docstring for the rule. ``num_classes`` defaults to ``labels.max() + 1``. Similarities
    are computed ``chunk_size`` rows at a time, so memory is O(chunk_size·N). Runs without gradient.
    """
    name = "knn_label_agreement"
    if not isinstance(embeddings, Tensor) or not embeddings.is_floating_point() or embeddings.dim() != 2:
        raise TypeError(f"{name}: embeddings must be a floating tensor of shape (N, D).")
    n = embeddings.shape[0]
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != (n,):
        raise TypeError(f"{name}: labels must be int64 of shape ({n},), one label per embedding. Use labels.long().")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"{name}: k must be an integer in [1, N) = [1, {n}); got {k!r}. Use fewer neighbours.")
    if balance not in _BALANCE:
        raise ValueError(f"{name}: balance must be one of {_BALANCE}; got {balance!r}.")
    if n and int(labels.min()) < 0:
        raise ValueError(f"{name}: labels must be class indices ≥ 0.")
    c = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if n and int(labels.max()) >= c:
        raise ValueError(f"{name}: labels hold class {int(labels.max())} but num_classes={c}.")

    with torch.no_grad():
        e = torch.nn.functional.normalize(embeddings.detach(), dim=1)
        labels = labels.to(e.device)
        idx = []
        for start in range(0, n, chunk_size):
            sim = e[start : start + chunk_size] @ e.T
            rows = torch.arange(sim.shape[0], device=e.device)
            sim[rows, rows + start] = float("-inf")  # never one's own neighbour
            idx.append(sim.topk(k, dim=1).indices)
        neighbours = torch.cat(idx)
        probs = _votes(neighbours, labels, c)
        if corrected:
            probs = _votes(neighbours, probs.argmax(dim=1), c)
        knn_labels = probs.argmax(dim=1)
        agreement = knn_labels == labels
        discrepancy = -torch.log(probs.gather(1, labels.unsqueeze(1)).squeeze(1).clamp(0.01, 0.99))

        if balance is None:
            clean = agreement.clone()
        else:
            per_class = torch.stack([agreement[labels == j].sum() for j in range(c)]).to(torch.float64)
            target = {"median": per_class.median(), "max": per_class.max(), "min": per_class.min()}[balance]
            clean = torch.zeros(n, dtype=torch.bool, device=e.device)
            for j in range(c):
                members = (labels == j).nonzero().squeeze(1)
                take = min(int(target), members.numel())
                if take:
                    order = torch.topk(discrepancy[members], take, largest=False).indices
                    clean[members[order]] = True
    return NoiseDetection(clean, agreement, discrepancy.to(embeddings.dtype), probs.to(embeddings.dtype), knn_labels)
