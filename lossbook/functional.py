"""Every functional loss in one namespace, in the style of ``torch.nn.functional``::

    import lossbook.functional as LF
    loss = LF.comp_sum_loss(logits, target, tau=0.5)
"""

from .registry import list_losses, loss_info  # noqa: I001 - families in chapter order: the registry lists losses as imported
from .softmax import (
    comp_sum_loss,
    cross_entropy,
    generalized_cross_entropy,
    mean_absolute_error,
    sum_exponential_loss,
)
from .spherical import spherical_softmax_loss, squared_error_loss, taylor_softmax_loss, z_loss
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

__all__ = [
    "cross_entropy",
    "comp_sum_loss",
    "sum_exponential_loss",
    "generalized_cross_entropy",
    "mean_absolute_error",
    "z_loss",
    "taylor_softmax_loss",
    "spherical_softmax_loss",
    "squared_error_loss",
    "in_batch_softmax_loss",
    "cosine_contrastive_loss",
    "pairwise_softmax_loss",
    "decoupled_softmax_loss",
    "decoupled_softmax_multilabel_loss",
    "sampled_softmax_loss",
    "nce_loss",
    "full_softmax_loss",
    "partial_fc_loss",
    "normalized_softmax_loss",
    "sphereface_loss",
    "cosface_loss",
    "arcface_loss",
    "combined_margin_loss",
    "sphereface2_loss",
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
]


def _check_complete() -> None:
    """Every registered loss must be reachable here under its function's name."""
    missing = [n for n in list_losses() if loss_info(n).function.__name__ not in globals()]
    if missing:
        raise ImportError(f"lossbook.functional does not export the registered losses {missing}.")


_check_complete()
