r"""Speaker-verification losses over batches of N speakers × M utterances: GE2E and its TE2E
baseline, angular prototypical and prototypical.

The batch comes as ``(embeddings (N·M, d), labels)`` with every label present the same number of
times M ≥ 2 (the utterances of a speaker need not be adjacent: they are grouped by label, in order
of first appearance, and within a speaker in batch order).

* **GE2E** (Wan et al., 2018): with the centroid c_k of speaker k's utterances, and for a speaker's
  own utterance the centroid without it, c_j^{(−i)} = (M c_j − e_ji)/(M − 1), the similarity
  S_ji,k = w·cos(e_ji, c_k) + b (w > 0; w = 10, b = −5 at the start). The softmax variant is
  −S_ji,j + log Σ_k e^{S_ji,k}; the contrast variant 1 − σ(S_ji,j) + max_{k≠j} σ(S_ji,k).
* **TE2E** (Heigold et al., 2016), GE2E's baseline: one tuple (an evaluation utterance and one
  speaker's enrolment centroid) at a time, scored by σ(w·cos + b) and trained with the loss
  1 − σ(s) for the own speaker and σ(s) for another; here each utterance gets its positive tuple and
  one negative tuple (a speaker drawn uniformly from the others by ``generator``), averaged.
* **Angular prototypical** (Chung et al., 2020): the first utterance of each speaker is its query and
  the mean of the other M − 1 its prototype; cross-entropy over speakers of w·cos(query, prototype) + b.
  One value per speaker.
* **Prototypical** (Snell et al., 2017, as the same authors' speaker baseline): the same with
  −‖query − prototype‖² as the logit.
* **Prototypical triplet** (Doras & Peeters, 2020): the triplet loss with the positive and the negative
  replaced by class centroids of the batch, [‖x − c_y‖² − ‖x − c_n‖² + m]₊, the negative centroid mined
  semi-hard (optionally on unit embeddings and unit centroids, as the first author's implementation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_number, check_reduction, reduce_loss
from ..registry import register_method
from .distances import check_batch, class_centroids

__all__ = [
    "group_by_label",
    "ge2e_loss",
    "te2e_loss",
    "angular_prototypical_loss",
    "prototypical_loss",
    "proto_triplet_loss",
    "GE2ELoss",
    "TE2ELoss",
    "AngularPrototypicalLoss",
]

_VARIANTS = ("softmax", "contrast")


@register_method(kind="building block", family="pairs", paper="wan2018generalized")
def group_by_label(embeddings: Tensor, labels: Tensor, *, name: str = "group_by_label") -> tuple[Tensor, Tensor]:
    """Arrange a batch of N speakers × M utterances as (N, M, d), speakers in order of first appearance,
    utterances in batch order; also returns the (N·M,) permutation used. Every label must appear
    the same number of times M ≥ 2."""
    check_batch(name, embeddings, labels, "mean")
    uniq, first = _first_appearance(labels)
    counts = torch.bincount(torch.searchsorted(uniq, labels), minlength=len(uniq))
    if len(labels) == 0 or int(counts.min()) != int(counts.max()) or int(counts.min()) < 2:
        got = sorted(set(counts.tolist()))
        raise ValueError(f"{name}: needs every speaker (label) the same number of times M ≥ 2 in the batch "
                         f"(N speakers × M utterances); got counts {got}. Sample the batch as N speakers with "
                         "M utterances each.")
    order = torch.argsort(first[torch.searchsorted(uniq, labels)] * len(labels)
                          + torch.arange(len(labels), device=labels.device))
    m = int(counts[0])
    return embeddings[order].reshape(len(uniq), m, -1), order


def _first_appearance(labels: Tensor) -> tuple[Tensor, Tensor]:
    uniq = torch.unique(labels)
    first = torch.full((len(uniq),), len(labels), dtype=torch.long, device=labels.device)
    first = first.scatter_reduce(0, torch.searchsorted(uniq, labels), torch.arange(len(labels), device=labels.device),
                                 reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(len(uniq), device=labels.device)
    return uniq, rank


def _affine(name: str, w, b, like: Tensor) -> tuple[Tensor, Tensor]:
    w = torch.as_tensor(w, dtype=like.dtype, device=like.device)
    b = torch.as_tensor(b, dtype=like.dtype, device=like.device)
    if w.dim() or b.dim():
        raise ValueError(f"{name}: w and b must be scalars (floats or 0-d tensors); got shapes {tuple(w.shape)} "
                         f"and {tuple(b.shape)}.")
    if not bool(w > 0):
        raise ValueError(f"{name}: the scale w must be > 0 (GE2E keeps it positive; the modules clamp it); got "
                         f"{float(w)}.")
    return w, b


def ge2e_similarity(grouped: Tensor, w, b) -> Tensor:
    """S[j, i, k] = w·cos(e_ji, c_k) + b for grouped (N, M, d) embeddings, with the leave-self-out
    centroid for k = j. Shape (N, M, N)."""
    n, m, _ = grouped.shape
    centroids = grouped.mean(1)
    own = (grouped.sum(1, keepdim=True) - grouped) / (m - 1)
    e = F.normalize(grouped, dim=2)
    cos = torch.einsum("jid,kd->jik", e, F.normalize(centroids, dim=1))
    own_cos = (e * F.normalize(own, dim=2)).sum(2)
    eye = torch.eye(n, dtype=torch.bool, device=grouped.device)[:, None, :]
    cos = torch.where(eye, own_cos[:, :, None], cos)
    return w * cos + b


@register_method(kind="stateful loss", family="pairs", paper="wan2018generalized")
def ge2e_loss(embeddings: Tensor, labels: Tensor, *, w=10.0, b=-5.0, variant: str = "softmax",
              reduction: str = "mean") -> Tensor:
    """GE2E loss (Wan et al., 2018) per utterance, in the order of ``group_by_label`` (speaker-major):
    softmax −S_ji,j + log Σ_k e^{S_ji,k}, or contrast 1 − σ(S_ji,j) + max_{k≠j} σ(S_ji,k), with
    S = w·cos(e, c) + b and the own speaker's centroid computed without the utterance. ``w`` > 0 and
    ``b``: floats or 0-d tensors (learnable in :class:`GE2ELoss`)."""
    name = "ge2e_loss"
    check_batch(name, embeddings, labels, reduction)
    if variant not in _VARIANTS:
        raise ValueError(f"{name}: variant must be one of {_VARIANTS}; got {variant!r}.")
    grouped, _ = group_by_label(embeddings, labels, name=name)
    w, b = _affine(name, w, b, embeddings)
    s = ge2e_similarity(grouped, w, b)
    n = s.shape[0]
    target = s.diagonal(dim1=0, dim2=2).T  # (N, M): S_ji,j
    if variant == "softmax":
        per = torch.logsumexp(s, 2) - target
    else:
        if n < 2:
            raise ValueError(f"{name}: the contrast variant needs at least two speakers; got {n}.")
        eye = torch.eye(n, dtype=torch.bool, device=s.device)[:, None, :]
        per = 1 - torch.sigmoid(target) + torch.sigmoid(s.masked_fill(eye, float("-inf"))).amax(2)
    return reduce_loss(per.reshape(-1), reduction)


@register_method(kind="stateful loss", family="pairs", paper="heigold2016end")
def te2e_loss(embeddings: Tensor, labels: Tensor, *, w=10.0, b=-5.0, generator: torch.Generator | None = None,
              reduction: str = "mean") -> Tensor:
    """TE2E loss (Heigold et al., 2016) per utterance, GE2E's baseline: ½[(1 − σ(s_pos)) + σ(s_neg)] with
    s = w·cos(e, c) + b, the positive tuple against the own speaker's centroid (without the utterance)
    and the negative against the centroid of one other speaker drawn uniformly (``generator``)."""
    name = "te2e_loss"
    check_batch(name, embeddings, labels, reduction)
    grouped, _ = group_by_label(embeddings, labels, name=name)
    w, b = _affine(name, w, b, embeddings)
    n, m, _ = grouped.shape
    if n < 2:
        raise ValueError(f"{name}: needs at least two speakers for the negative tuples; got {n}.")
    s = ge2e_similarity(grouped, w, b)
    shift = torch.randint(1, n, (n, m), generator=generator, device="cpu").to(s.device)
    other = (torch.arange(n, device=s.device)[:, None] + shift) % n
    s_pos = s.diagonal(dim1=0, dim2=2).T
    s_neg = s.gather(2, other[:, :, None]).squeeze(2)
    return reduce_loss((0.5 * (1 - torch.sigmoid(s_pos) + torch.sigmoid(s_neg))).reshape(-1), reduction)


def _query_and_prototypes(name: str, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    grouped, _ = group_by_label(embeddings, labels, name=name)
    return grouped[:, 0], grouped[:, 1:].mean(1)


@register_method(kind="stateful loss", family="pairs", paper="chung2020defence")
def angular_prototypical_loss(embeddings: Tensor, labels: Tensor, *, w=10.0, b=-5.0,
                              reduction: str = "mean") -> Tensor:
    """Angular prototypical loss (Chung et al., 2020) per speaker: cross-entropy over the N speakers of
    w·cos(q_j, c_k) + b, q_j the speaker's first utterance and c_k the mean of speaker k's other M − 1."""
    name = "angular_prototypical_loss"
    check_batch(name, embeddings, labels, reduction)
    query, proto = _query_and_prototypes(name, embeddings, labels)
    w, b = _affine(name, w, b, embeddings)
    logits = w * F.normalize(query, dim=1) @ F.normalize(proto, dim=1).T + b
    return F.cross_entropy(logits, torch.arange(len(query), device=logits.device), reduction=reduction)


@register_method(kind="stateful loss", family="pairs", paper="snell2017prototypical")
def prototypical_loss(embeddings: Tensor, labels: Tensor, *, reduction: str = "mean") -> Tensor:
    """Prototypical loss (Snell et al., 2017) per speaker: cross-entropy over the N speakers of
    −‖q_j − c_k‖², with q_j and c_k as in :func:`angular_prototypical_loss`."""
    name = "prototypical_loss"
    check_batch(name, embeddings, labels, reduction)
    check_reduction(name, reduction)
    query, proto = _query_and_prototypes(name, embeddings, labels)
    logits = -(query[:, None, :] - proto[None, :, :]).square().sum(2)
    return F.cross_entropy(logits, torch.arange(len(query), device=logits.device), reduction=reduction)


def _check_proto_triplet(margin=1.0, mining="semi_hard"):
    check_number("proto_triplet_loss", "margin", margin, low=0.0)
    if mining not in ("semi_hard", "hardest"):
        raise ValueError(f"proto_triplet_loss: mining must be 'semi_hard' or 'hardest'; got {mining!r}.")


@register_method(kind="stateful loss", family="pairs", paper="doras2020prototypical")
def proto_triplet_loss(embeddings: Tensor, labels: Tensor, *, margin: float = 1.0, mining: str = "semi_hard",
                       normalize: bool = False, reduction: str = "mean") -> Tensor:
    """Prototypical triplet loss per sample: [‖x − c_y‖² − ‖x − c_n‖² + m]₊ with c_k the centroid of class k's
    embeddings in the batch (the anchor's own included), and the negative prototype c_n chosen by semi-hard
    mining as TensorFlow's ``triplet_semihard_loss`` (the closest prototype farther than c_y; when there is
    none, the farthest), or the closest other prototype (``"hardest"``). Classes need not be balanced;
    a batch needs two classes. Default margin 1.0 (TensorFlow's). With ``normalize`` the embeddings and the
    centroids are L2-normalised first, as in the TensorFlow Addons ``PrototypicalTripletLoss`` written by the
    paper's first author (Doras & Peeters, 2020, "A Prototypical Triplet Loss for Cover Detection",
    arXiv:1910.09862), which expects unit embeddings and normalises the centroids it computes."""
    name = "proto_triplet_loss"
    check_batch(name, embeddings, labels, reduction)
    _check_proto_triplet(margin, mining)
    if not isinstance(normalize, bool):
        raise TypeError(f"{name}: normalize must be True or False; got {type(normalize).__name__}.")
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    uniq, onehot, centroids = class_centroids(embeddings, labels)
    if len(uniq) < 2:
        raise ValueError(f"{name}: needs at least two classes in the batch; got {len(uniq)}.")
    if normalize:
        centroids = F.normalize(centroids, dim=1)
    d = (embeddings[:, None, :] - centroids[None, :, :]).square().sum(2)  # (N, K)
    own = onehot.bool()
    d_pos = d[own]
    with torch.no_grad():
        neg = d.masked_fill(own, float("nan"))
        if mining == "hardest":
            pick = neg.nan_to_num(float("inf")).argmin(1)
        else:
            farther = neg > d_pos[:, None]
            closest_farther = neg.masked_fill(~farther, float("inf")).argmin(1)
            pick = torch.where(farther.any(1), closest_farther, neg.nan_to_num(float("-inf")).argmax(1))
    per = (d_pos - d.gather(1, pick[:, None]).squeeze(1) + margin).clamp_min(0)
    return reduce_loss(per, reduction)


class _ScaledCosineLoss(nn.Module):
    """Holds the learnable w (kept ≥ 10⁻⁶, as GE2E's and voxceleb_trainer's clamp) and b."""

    def __init__(self, init_w: float = 10.0, init_b: float = -5.0, *, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(type(self).__name__, reduction)
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))
        self.reduction = reduction

    def scale(self) -> Tensor:
        return self.w.clamp_min(1e-6)


@register_method(kind="head", family="pairs", paper="wan2018generalized")
class GE2ELoss(_ScaledCosineLoss):
    """GE2E loss with learnable w (init 10) and b (init −5); ``variant`` ``"softmax"`` or ``"contrast"``."""

    def __init__(self, init_w: float = 10.0, init_b: float = -5.0, *, variant: str = "softmax",
                 reduction: str = "mean") -> None:
        super().__init__(init_w, init_b, reduction=reduction)
        if variant not in _VARIANTS:
            raise ValueError(f"GE2ELoss: variant must be one of {_VARIANTS}; got {variant!r}.")
        self.variant = variant

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return ge2e_loss(embeddings, labels, w=self.scale(), b=self.b, variant=self.variant, reduction=self.reduction)


@register_method(kind="head", family="pairs", paper="heigold2016end")
class TE2ELoss(_ScaledCosineLoss):
    """TE2E loss with learnable w and b; its negative speakers come from its own generator (``seed``)."""

    def __init__(self, init_w: float = 10.0, init_b: float = -5.0, *, seed: int = 0, reduction: str = "mean") -> None:
        super().__init__(init_w, init_b, reduction=reduction)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return te2e_loss(embeddings, labels, w=self.scale(), b=self.b, generator=self.generator,
                         reduction=self.reduction)


@register_method(kind="head", family="pairs", paper="chung2020defence")
class AngularPrototypicalLoss(_ScaledCosineLoss):
    """Angular prototypical loss with learnable w (init 10) and b (init −5)."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return angular_prototypical_loss(embeddings, labels, w=self.scale(), b=self.b, reduction=self.reduction)
