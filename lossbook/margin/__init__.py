r"""Margin-based losses on the hypersphere (face recognition and open-set classification).

Margins are **transforms** of cosine logits, not losses (:mod:`lossbook.margin.transforms`):
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

from .._cosine import unit_rows  # noqa: I001 - registration order: cross-entropy losses, then SphereFace2
from .transforms import (
    GRADS,
    AdaFace,
    ArcFace,
    CombinedMargin,
    CosFace,
    CosineMargin,
    ElasticArcFace,
    ElasticCosFace,
    MagFace,
    NormalizedSoftmax,
    SphereFace,
    arc_margin,
    arcface_logits,
    combined_margin_logits,
    cosface_logits,
    cosine_logits,
    magface_regularizer,
    sphereface_logits,
    sphereface_psi,
)
from .losses import (
    ArcFaceLoss,
    CombinedMarginLoss,
    CosFaceLoss,
    NormalizedSoftmaxLoss,
    SphereFaceLoss,
    arcface_loss,
    check_cosines,
    combined_margin_loss,
    cosface_loss,
    normalized_softmax_loss,
    sphereface_loss,
)
from .heads import (
    UNPG_QUARTILES,
    MarginHead,
    MarginHeadOutput,
    SphereFace2Head,
    SphereFace2Loss,
    sphereface2_bias_init,
    sphereface2_loss,
    sphereface2_similarity,
    unpg_logits,
    unpg_negatives,
)

__all__ = [
    # registered losses and their Modules
    "normalized_softmax_loss",
    "sphereface_loss",
    "cosface_loss",
    "arcface_loss",
    "combined_margin_loss",
    "sphereface2_loss",
    "NormalizedSoftmaxLoss",
    "SphereFaceLoss",
    "CosFaceLoss",
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "SphereFace2Loss",
    # transforms
    "GRADS",
    "CosineMargin",
    "NormalizedSoftmax",
    "CosFace",
    "ArcFace",
    "SphereFace",
    "CombinedMargin",
    "ElasticArcFace",
    "ElasticCosFace",
    "AdaFace",
    "MagFace",
    "arc_margin",
    "sphereface_psi",
    "cosine_logits",
    "unit_rows",
    "cosface_logits",
    "arcface_logits",
    "sphereface_logits",
    "combined_margin_logits",
    "magface_regularizer",
    "check_cosines",
    # heads
    "MarginHead",
    "MarginHeadOutput",
    "SphereFace2Head",
    "sphereface2_bias_init",
    "sphereface2_similarity",
    # UNPG
    "unpg_negatives",
    "unpg_logits",
    "UNPG_QUARTILES",
]
