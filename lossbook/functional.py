"""Every functional loss in one namespace, in the style of ``torch.nn.functional``::

    import lossbook.functional as LF
    loss = LF.comp_sum_loss(logits, target, tau=0.5)
"""

from . import registry as _registry
from .alternatives import encouraging_loss, one_vs_rest_loss, relu_output_loss
from .calibration import (
    acls_loss,
    dual_focal_loss,
    focal_loss,
    mbls_loss,
    rescaled_square_loss,
    sigmoid_focal_loss,
    squentropy_loss,
)
from .imbalance import (
    asymmetric_loss,
    balanced_softmax_loss,
    class_balanced_loss,
    ldam_loss,
    logit_adjusted_loss,
    macro_auc_loss,
    vs_loss,
)
from .margin import (
    arcface_loss,
    combined_margin_loss,
    cosface_loss,
    normalized_softmax_loss,
    sphereface2_loss,
    sphereface_loss,
)
from .robust import (
    active_passive_loss,
    aldr_kl_loss,
    ldr_kl_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    normalized_generalized_cross_entropy,
    normalized_mean_absolute_error,
    normalized_reverse_cross_entropy,
    reverse_cross_entropy,
    symmetric_cross_entropy,
)
from .sampled import (
    cosine_contrastive_loss,
    decoupled_softmax_loss,
    decoupled_softmax_multilabel_loss,
    full_softmax_loss,
    in_batch_softmax_loss,
    nce_loss,
    pairwise_softmax_loss,
    partial_fc_loss,
    sampled_softmax_loss,
)
from .softmax import (
    comp_sum_loss,
    cross_entropy,
    generalized_cross_entropy,
    mean_absolute_error,
    sum_exponential_loss,
)
from .sparse import entmax15_loss, sparse_softmax_loss, sparsemax_loss, sparsemax_multilabel_loss
from .spherical import spherical_softmax_loss, squared_error_loss, taylor_softmax_loss, z_loss

__all__ = [
    "acls_loss",
    "active_passive_loss",
    "aldr_kl_loss",
    "arcface_loss",
    "asymmetric_loss",
    "balanced_softmax_loss",
    "class_balanced_loss",
    "combined_margin_loss",
    "comp_sum_loss",
    "cosface_loss",
    "cosine_contrastive_loss",
    "cross_entropy",
    "decoupled_softmax_loss",
    "decoupled_softmax_multilabel_loss",
    "dual_focal_loss",
    "encouraging_loss",
    "entmax15_loss",
    "focal_loss",
    "full_softmax_loss",
    "generalized_cross_entropy",
    "in_batch_softmax_loss",
    "ldam_loss",
    "ldr_kl_loss",
    "logit_adjusted_loss",
    "macro_auc_loss",
    "mbls_loss",
    "mean_absolute_error",
    "nce_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "normalized_generalized_cross_entropy",
    "normalized_mean_absolute_error",
    "normalized_reverse_cross_entropy",
    "normalized_softmax_loss",
    "one_vs_rest_loss",
    "pairwise_softmax_loss",
    "partial_fc_loss",
    "relu_output_loss",
    "rescaled_square_loss",
    "reverse_cross_entropy",
    "sampled_softmax_loss",
    "sigmoid_focal_loss",
    "sparse_softmax_loss",
    "sparsemax_loss",
    "sparsemax_multilabel_loss",
    "sphereface2_loss",
    "sphereface_loss",
    "spherical_softmax_loss",
    "squared_error_loss",
    "squentropy_loss",
    "sum_exponential_loss",
    "symmetric_cross_entropy",
    "taylor_softmax_loss",
    "vs_loss",
    "z_loss",
]


def _check_complete() -> None:
    """Every registered loss must be reachable here under its function's name."""
    missing = [n for n in _registry.list_losses() if _registry.loss_info(n).function.__name__ not in __all__]
    if missing:
        raise ImportError(f"lossbook.functional does not export the registered losses {missing}.")


_check_complete()
