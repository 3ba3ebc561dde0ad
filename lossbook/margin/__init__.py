r"""Margin-based losses on the hypersphere (face recognition and open-set classification).

Margins are **transforms** of cosine logits, not losses (:mod:`lossbook.margin.transforms`, their one
home; Partial FC in :mod:`lossbook.sampled` takes them too):
``NormalizedSoftmax``, ``CosFace``, ``ArcFace`` (``grad="exact" | "straight_through"``),
``SphereFace``, ``CombinedMargin``, ``ElasticArcFace`` / ``ElasticCosFace`` (ElasticFace, ElasticFace+),
``AdaFace`` (a stateful ``nn.Module``) and ``MagFace``. :class:`MarginHead` holds the class
weights, feeds a transform (with the feature norms when it ``needs_norms``) and takes the
cross-entropy, adding MagFace's regulariser or UNPG's in-batch negatives when asked.

Registered losses (family ``"margin"``, ``inputs="cosine"``: ``loss(cos, target)`` with cosines in
[−1, 1]): ``normalized_softmax``, ``sphereface``, ``cosface``, ``arcface``, ``combined_margin`` (a
transform + cross-entropy) and ``sphereface2`` (one-vs-all binary losses). Not registered, because
the registry's contract is a deterministic ``loss(input, target)``: ElasticFace (random margins
per call), AdaFace and MagFace (they need the feature norms, which cosines have lost; MagFace also
a regulariser on them) and UNPG (it needs the embeddings' pairwise cosines). Use them through
:class:`MarginHead` (or call the transforms and :func:`~lossbook.functional.cross_entropy`).
"""

from . import heads, losses, transforms
from .heads import *  # noqa: F403
from .losses import *  # noqa: F403
from .transforms import *  # noqa: F403

__all__ = losses.__all__ + heads.__all__ + transforms.__all__
