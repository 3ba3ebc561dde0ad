r"""Few-shot classification by the nearest prototype (Snell et al., 2017): the prototype of a class is
the mean of its support embeddings, and a query takes the class of the nearest prototype, by squared
Euclidean distance of the embeddings as they are, or (``normalize=True``) by cosine, with the support
embeddings and the prototypes L2-normalised (the geometry of the losses trained on unit embeddings).
Episodes are drawn by :func:`lossbook.lab.data.few_shot_episodes`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .._validation import check_embeddings, check_labels
from ..registry import register_method
from .distances import class_centroids

__all__ = ["nearest_prototype"]


@register_method(kind="building block", family="pairs", paper="snell2017prototypical")
def nearest_prototype(support: Tensor, support_labels: Tensor, queries: Tensor, *, normalize: bool = False) -> Tensor:
    """The label of each query's nearest class prototype (the mean of that class's support embeddings):
    argmin ‖q − c_k‖², or with ``normalize`` argmax cos(q, c_k), c_k the mean of the unit support embeddings.
    Returns (Q,) int64 labels from ``support_labels``; ties go to the smaller label."""
    name = "nearest_prototype"
    check_embeddings(name, support)
    check_labels(name, support_labels, support.shape[0])
    check_embeddings(name, queries, support.shape[1])
    if not isinstance(normalize, bool):
        raise TypeError(f"{name}: normalize must be True or False; got {type(normalize).__name__}.")
    if len(support) == 0:
        raise ValueError(f"{name}: needs at least one support embedding.")
    if normalize:
        support, queries = F.normalize(support, dim=1), F.normalize(queries, dim=1)
    classes, _, protos = class_centroids(support, support_labels)
    if normalize:
        score = queries @ F.normalize(protos, dim=1).T
    else:
        score = -(queries[:, None, :] - protos[None, :, :]).square().sum(2)
    return classes[score.argmax(1)]
