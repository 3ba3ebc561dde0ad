"""lossbook: classification losses, tested, with an executable book that reproduces their papers.

    import lossbook
    lossbook.list_losses()                      # every registered loss
    loss = lossbook.get_loss("comp_sum", tau=0.5)
    import lossbook.functional as LF            # the functional forms
"""

from . import functional  # noqa: I001 - families in chapter order (the registry lists losses as imported)
from .registry import FAMILIES, LossInfo, get_loss, list_losses, loss_info, loss_table, register_loss
from .softmax import (
    CompSumLoss,
    CrossEntropyLoss,
    GeneralizedCrossEntropyLoss,
    MeanAbsoluteErrorLoss,
    SumExponentialLoss,
)
from .spherical import FactoredSphericalLayer, SphericalSoftmaxLoss, SquaredErrorLoss, TaylorSoftmaxLoss, ZLoss
from .sampled import (
    CosineContrastiveLoss,
    DecoupledSoftmaxLoss,
    InBatchSoftmaxLoss,
    PairwiseSoftmaxLoss,
    PartialFC,
    SampledSoftmaxLayer,
)
from .margin import (
    ArcFaceLoss,
    CombinedMarginLoss,
    CosFaceLoss,
    MarginHead,
    NormalizedSoftmaxLoss,
    SphereFace2Head,
    SphereFace2Loss,
    SphereFaceLoss,
)
from .robust import (
    ActivePassiveLoss,
    ALDRKLLoss,
    LDRKLLoss,
    NormalizedCrossEntropyLoss,
    NormalizedFocalLoss,
    NormalizedGeneralizedCrossEntropyLoss,
    NormalizedMeanAbsoluteErrorLoss,
    NormalizedReverseCrossEntropyLoss,
    ReverseCrossEntropyLoss,
    SymmetricCrossEntropyLoss,
)

__version__ = "0.1.0"

__all__ = [
    "functional",
    "FAMILIES",
    "LossInfo",
    "register_loss",
    "list_losses",
    "get_loss",
    "loss_info",
    "loss_table",
    "CrossEntropyLoss",
    "CompSumLoss",
    "SumExponentialLoss",
    "GeneralizedCrossEntropyLoss",
    "MeanAbsoluteErrorLoss",
    "ZLoss",
    "TaylorSoftmaxLoss",
    "FactoredSphericalLayer",
    "SphericalSoftmaxLoss",
    "SquaredErrorLoss",
    "InBatchSoftmaxLoss",
    "CosineContrastiveLoss",
    "PairwiseSoftmaxLoss",
    "DecoupledSoftmaxLoss",
    "SampledSoftmaxLayer",
    "PartialFC",
    "NormalizedSoftmaxLoss",
    "SphereFaceLoss",
    "CosFaceLoss",
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "SphereFace2Loss",
    "MarginHead",
    "SphereFace2Head",
    "ReverseCrossEntropyLoss",
    "SymmetricCrossEntropyLoss",
    "NormalizedCrossEntropyLoss",
    "NormalizedFocalLoss",
    "NormalizedGeneralizedCrossEntropyLoss",
    "NormalizedMeanAbsoluteErrorLoss",
    "NormalizedReverseCrossEntropyLoss",
    "ActivePassiveLoss",
    "LDRKLLoss",
    "ALDRKLLoss",
]
