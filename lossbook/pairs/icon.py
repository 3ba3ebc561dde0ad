r"""I-Con (Alshammari et al., 2025): one loss, Σ_i KL(p(·|i) ‖ q_θ(·|i)), whose choice of the
supervisory neighbour distribution p and the learned one q gives many representation losses.

:func:`icon_loss` takes p as rows of probabilities (N, M) and q as logits (N, M) (entries that are
not neighbours set to −inf, e.g. the point itself) and returns per row KL(p_i ‖ softmax(q_i)), or
the cross-entropy −Σ_j p_ij log q_ij (``divergence="cross_entropy"``), which differs from the KL by
the entropy of p, a constant of the data. Three choices reduce it to known losses, exactly:

* **SupCon**: p(j|i) uniform over i's same-label neighbours (:func:`supervised_neighbours`), q the
  softmax of cosine/τ over j ≠ i (:func:`cosine_neighbour_logits`): the cross-entropy form is
  :func:`~lossbook.pairs.supcon_loss`, the KL form is it minus log|P(i)|.
* **Cross-entropy**: p(·|i) the one-hot of the label over classes and q the classifier's softmax:
  the KL is cross-entropy (one-hot p has zero entropy).
* **SNE** (Hinton & Roweis, 2002): p(j|i) ∝ exp(−‖x_i − x_j‖²/2σ_i²) over j ≠ i in the data
  (:func:`gaussian_neighbours`) and q(j|i) ∝ exp(−‖y_i − y_j‖²) in the embedding
  (:func:`gaussian_neighbour_logits`): the KL is SNE's cost.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_embeddings, check_labels, check_number, check_reduction, describe, reduce_loss
from ..registry import register_method
from .distances import pair_masks, pairwise_similarity

__all__ = [
    "icon_loss",
    "supervised_neighbours",
    "cosine_neighbour_logits",
    "gaussian_neighbours",
    "gaussian_neighbour_logits",
]

_DIVERGENCES = ("kl", "cross_entropy")


@register_method(kind="stateful loss", family="pairs", paper="alshammari2025icon")
def icon_loss(p: Tensor, q_logits: Tensor, *, divergence: str = "kl", reduction: str = "mean") -> Tensor:
    """I-Con loss per row i: KL(p_i ‖ softmax(q_i)) (or the cross-entropy −Σ_j p_ij log softmax(q_i)_j).
    ``p`` (N, M) rows of probabilities (each summing to 1; entries 0 where j is no neighbour);
    ``q_logits`` (N, M), −inf where j is no neighbour (p must be 0 there). Terms with p_ij = 0 add 0."""
    name = "icon_loss"
    for arg, t in (("p", p), ("q_logits", q_logits)):
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() != 2:
            raise TypeError(f"{name}: {arg} must be a floating (N, M) tensor; got {describe(t)}.")
    if p.shape != q_logits.shape:
        raise ValueError(f"{name}: p and q_logits must have one shape; got {tuple(p.shape)} and "
                         f"{tuple(q_logits.shape)}.")
    if divergence not in _DIVERGENCES:
        raise ValueError(f"{name}: divergence must be one of {_DIVERGENCES}; got {divergence!r}.")
    check_reduction(name, reduction)
    if p.numel():
        sums = p.detach().sum(1)
        if bool((p.detach() < 0).any()) or not torch.allclose(sums, torch.ones_like(sums), atol=1e-6):
            raise ValueError(f"{name}: every row of p must be a probability distribution (≥ 0, summing to 1); got "
                             f"row sums in [{float(sums.min()):.4g}, {float(sums.max()):.4g}]. Normalise p per row.")
        if bool(((p.detach() > 0) & torch.isneginf(q_logits.detach())).any()):
            raise ValueError(f"{name}: p puts mass on a neighbour that q_logits excludes (−inf); q must cover p's "
                             "support.")
    log_q = torch.log_softmax(q_logits, 1)
    has = p > 0
    cross = -torch.where(has, p * torch.where(has, log_q, torch.zeros_like(log_q)), torch.zeros_like(p)).sum(1)
    if divergence == "kl":
        cross = cross + torch.where(has, p * torch.where(has, p, torch.ones_like(p)).log(), torch.zeros_like(p)).sum(1)
    return reduce_loss(cross, reduction)


@register_method(kind="building block", family="pairs", paper="alshammari2025icon")
def supervised_neighbours(labels: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """p(j|i) uniform over the samples j ≠ i with i's label, (N, N); a row without such j is all zero
    (drop it: it has no supervised neighbour)."""
    check_labels("supervised_neighbours", labels, len(labels) if isinstance(labels, Tensor) else 0)
    pos, _ = pair_masks(labels)
    pos = pos.to(dtype)
    return pos / pos.sum(1, keepdim=True).clamp_min(1)


@register_method(kind="building block", family="pairs", paper="alshammari2025icon")
def cosine_neighbour_logits(embeddings: Tensor, *, temperature: float = 0.1) -> Tensor:
    """q's logits cos(e_i, e_j)/τ for j ≠ i, −inf on the diagonal, (N, N)."""
    check_embeddings("cosine_neighbour_logits", embeddings)
    check_number("cosine_neighbour_logits", "temperature", temperature, low=0.0, low_open=True)
    logits = pairwise_similarity(embeddings) / temperature
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    return logits.masked_fill(eye, float("-inf"))


def _squared_distances(x: Tensor) -> Tensor:
    return (x[:, None, :] - x[None, :, :]).square().sum(2)


@register_method(kind="building block", family="pairs", paper="alshammari2025icon")
def gaussian_neighbour_logits(y: Tensor) -> Tensor:
    """SNE's q logits −‖y_i − y_j‖² for j ≠ i, −inf on the diagonal, (N, N)."""
    check_embeddings("gaussian_neighbour_logits", y)
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    return (-_squared_distances(y)).masked_fill(eye, float("-inf"))


@register_method(kind="building block", family="pairs", paper="alshammari2025icon")
def gaussian_neighbours(x: Tensor, sigma) -> Tensor:
    """SNE's p(j|i) ∝ exp(−‖x_i − x_j‖²/2σ_i²) over j ≠ i, (N, N); ``sigma`` a float or (N,) per point."""
    check_embeddings("gaussian_neighbours", x)
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.dim() > 1 or (sigma.dim() == 1 and sigma.shape != (len(x),)) or not bool((sigma > 0).all()):
        raise ValueError(f"gaussian_neighbours: sigma must be > 0, a float or one value per point ({len(x)},); "
                         f"got {describe(sigma)}.")
    s = sigma.reshape(-1, 1) if sigma.dim() else sigma
    logits = -_squared_distances(x) / (2 * s * s)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    return torch.softmax(logits.masked_fill(eye, float("-inf")), 1)

