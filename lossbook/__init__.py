"""lossbook: classification losses, tested, with an executable book that reproduces their papers.

    import lossbook
    lossbook.list_losses()                      # every registered loss
    loss = lossbook.get_loss("comp_sum", tau=0.5)
    import lossbook.functional as LF            # the functional forms
"""

from . import functional
from . import pairs  # noqa: F401 - registers the pair family's methods (lossbook.pairs)
from .alternatives import DualHeadClassifier, EncouragingLoss, HarmonicLayer, OneVsRestLoss, ReLUOutputLoss
from .calibration import (
    ACLSLoss,
    CorrectnessAwareScaling,
    DualFocalLoss,
    FocalLoss,
    MatrixScaling,
    MbLSLoss,
    RescaledSquareLoss,
    SquentropyLoss,
    TemperatureScaling,
    VectorScaling,
)
from .imbalance import AUCMLoss, BalancedSoftmaxLoss, ClassBalancedLoss, LDAMLoss, LogitAdjustedLoss, VSLoss
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
from .registry import (
    FAMILIES,
    LossInfo,
    MethodInfo,
    get_loss,
    list_losses,
    list_methods,
    loss_info,
    loss_table,
    method_info,
    method_table,
    register_loss,
    register_method,
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
from .sampled import (
    CosineContrastiveLoss,
    DecoupledSoftmaxLoss,
    InBatchSoftmaxLoss,
    PairwiseSoftmaxLoss,
    PartialFC,
    SampledSoftmaxLayer,
)
from .softmax import (
    CompSumLoss,
    CrossEntropyLoss,
    GeneralizedCrossEntropyLoss,
    HierarchicalSoftmax,
    MeanAbsoluteErrorLoss,
    SumExponentialLoss,
)
from .sparse import Entmax15Loss, SparseSoftmaxLoss, SparsemaxLoss
from .spherical import FactoredSphericalLayer, SphericalSoftmaxLoss, SquaredErrorLoss, TaylorSoftmaxLoss, ZLoss
from .spherical.distributed import DistributedFactoredSphericalLayer

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "ACLSLoss",
    "ALDRKLLoss",
    "AUCMLoss",
    "ActivePassiveLoss",
    "ArcFaceLoss",
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "CombinedMarginLoss",
    "CompSumLoss",
    "CorrectnessAwareScaling",
    "CosFaceLoss",
    "CosineContrastiveLoss",
    "CrossEntropyLoss",
    "DecoupledSoftmaxLoss",
    "DistributedFactoredSphericalLayer",
    "DualFocalLoss",
    "DualHeadClassifier",
    "EncouragingLoss",
    "Entmax15Loss",
    "FactoredSphericalLayer",
    "FocalLoss",
    "GeneralizedCrossEntropyLoss",
    "HarmonicLayer",
    "HierarchicalSoftmax",
    "InBatchSoftmaxLoss",
    "LDAMLoss",
    "LDRKLLoss",
    "LogitAdjustedLoss",
    "LossInfo",
    "MarginHead",
    "MatrixScaling",
    "MbLSLoss",
    "MeanAbsoluteErrorLoss",
    "MethodInfo",
    "NormalizedCrossEntropyLoss",
    "NormalizedFocalLoss",
    "NormalizedGeneralizedCrossEntropyLoss",
    "NormalizedMeanAbsoluteErrorLoss",
    "NormalizedReverseCrossEntropyLoss",
    "NormalizedSoftmaxLoss",
    "OneVsRestLoss",
    "PairwiseSoftmaxLoss",
    "PartialFC",
    "ReLUOutputLoss",
    "RescaledSquareLoss",
    "ReverseCrossEntropyLoss",
    "SampledSoftmaxLayer",
    "SparseSoftmaxLoss",
    "SparsemaxLoss",
    "SphereFace2Head",
    "SphereFace2Loss",
    "SphereFaceLoss",
    "SphericalSoftmaxLoss",
    "SquaredErrorLoss",
    "SquentropyLoss",
    "SumExponentialLoss",
    "SymmetricCrossEntropyLoss",
    "TaylorSoftmaxLoss",
    "TemperatureScaling",
    "VSLoss",
    "VectorScaling",
    "ZLoss",
    "functional",
    "get_loss",
    "list_losses",
    "list_methods",
    "loss_info",
    "loss_table",
    "method_info",
    "method_table",
    "register_loss",
    "register_method",
]
