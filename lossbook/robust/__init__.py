"""Label-noise-robust losses: reverse/symmetric CE, normalised and active–passive losses, LDR-KL and
ALDR-KL (registered, family ``"robust"``); self-distillation, the Z-Error loss, MOIT's interpolated
SupCon loss and its k-NN noise detector (not registered: they need a teacher, a whole batch or
embedding pairs).

GCE and MAE live in :mod:`lossbook.softmax` (they are comp-sum members) and are re-exported here.
"""

from ..softmax.comp_sum import (  # noqa: I001 - registration order: RCE/SCE, normalised/APL, LDR
    GeneralizedCrossEntropyLoss,
    MeanAbsoluteErrorLoss,
    generalized_cross_entropy,
    mean_absolute_error,
)
from .symmetric import (
    LOG_ZERO,
    ReverseCrossEntropyLoss,
    SymmetricCrossEntropyLoss,
    reverse_cross_entropy,
    symmetric_cross_entropy,
)
from .normalized import (
    ACTIVE_LOSSES,
    PASSIVE_LOSSES,
    ActivePassiveLoss,
    NormalizedCrossEntropyLoss,
    NormalizedFocalLoss,
    NormalizedGeneralizedCrossEntropyLoss,
    NormalizedMeanAbsoluteErrorLoss,
    NormalizedReverseCrossEntropyLoss,
    active_passive_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    normalized_generalized_cross_entropy,
    normalized_mean_absolute_error,
    normalized_reverse_cross_entropy,
)
from .ldr import ALDRKLLoss, ALDROutput, LDRKLLoss, aldr_kl_loss, aldr_lambda, ldr_kl_loss
from ._parts import log1m_softmax, loss_matrix
from .detect import NoiseDetection, knn_label_agreement
from .distill import SelfDistillationLoss, distill, distillation_targets, self_distillation_loss
from .moit import InterpolatedSupConLoss, MixupBatch, interpolated_supcon_loss, mixup_batch
from .z_error import ZErrorLoss, ZErrorOutput, z_error_loss, z_error_mask

__all__ = [
    # registered losses and their Modules
    "reverse_cross_entropy",
    "symmetric_cross_entropy",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "normalized_generalized_cross_entropy",
    "normalized_mean_absolute_error",
    "normalized_reverse_cross_entropy",
    "active_passive_loss",
    "ldr_kl_loss",
    "aldr_kl_loss",
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
    # re-exported from lossbook.softmax
    "generalized_cross_entropy",
    "mean_absolute_error",
    "GeneralizedCrossEntropyLoss",
    "MeanAbsoluteErrorLoss",
    # helpers and unregistered objectives
    "LOG_ZERO",
    "ACTIVE_LOSSES",
    "PASSIVE_LOSSES",
    "ALDROutput",
    "aldr_lambda",
    "loss_matrix",
    "log1m_softmax",
    "distillation_targets",
    "self_distillation_loss",
    "SelfDistillationLoss",
    "distill",
    "z_error_loss",
    "z_error_mask",
    "ZErrorLoss",
    "ZErrorOutput",
    "MixupBatch",
    "mixup_batch",
    "interpolated_supcon_loss",
    "InterpolatedSupConLoss",
    "NoiseDetection",
    "knn_label_agreement",
]
