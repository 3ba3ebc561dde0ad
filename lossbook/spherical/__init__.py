"""The spherical family: losses that see the outputs only through o_c, ‖o‖² and Σ_k o_k.

:mod:`.stats` holds each loss once, as a function of those statistics; :mod:`.losses` applies
them to explicit outputs (registered losses with torch-style arguments, and their Modules).
"""

from .losses import (  # noqa: I001 - registration order: the registry lists losses as imported
    SphericalSoftmaxLoss,
    SquaredErrorLoss,
    TaylorSoftmaxLoss,
    ZLoss,
    spherical_softmax_loss,
    squared_error_loss,
    taylor_softmax_loss,
    z_loss,
)
from .layer import FactoredSphericalLayer
from .stats import (
    STATS_LOSSES,
    STATS_PARTIALS,
    output_stats,
    spherical_softmax_stats,
    squared_error_stats,
    taylor_softmax_stats,
    z_loss_stats,
)

__all__ = [
    "FactoredSphericalLayer",
    "ZLoss",
    "TaylorSoftmaxLoss",
    "SphericalSoftmaxLoss",
    "SquaredErrorLoss",
    "z_loss",
    "taylor_softmax_loss",
    "spherical_softmax_loss",
    "squared_error_loss",
    "output_stats",
    "z_loss_stats",
    "taylor_softmax_stats",
    "spherical_softmax_stats",
    "squared_error_stats",
    "STATS_LOSSES",
    "STATS_PARTIALS",
]
