"""Cross-entropy and its relatives: the comp-sum family, label smoothing, GCE, MAE."""

from .cross_entropy import CrossEntropyLoss, cross_entropy  # noqa: I001 - registered first
from .comp_sum import (
    CompSumLoss,
    GeneralizedCrossEntropyLoss,
    MeanAbsoluteErrorLoss,
    SumExponentialLoss,
    comp_sum_bayes_risk,
    comp_sum_conditional_risk,
    comp_sum_loss,
    comp_sum_minimizer,
    comp_sum_phi,
    generalized_cross_entropy,
    mean_absolute_error,
    sum_exponential_loss,
)
from .consistency import (
    comp_sum_bound,
    comp_sum_calibration,
    consistency_trajectory,
    excess_risks,
    margin_profile,
)

__all__ = [
    "CrossEntropyLoss",
    "CompSumLoss",
    "GeneralizedCrossEntropyLoss",
    "MeanAbsoluteErrorLoss",
    "SumExponentialLoss",
    "cross_entropy",
    "comp_sum_loss",
    "sum_exponential_loss",
    "generalized_cross_entropy",
    "mean_absolute_error",
    "comp_sum_phi",
    "comp_sum_minimizer",
    "comp_sum_conditional_risk",
    "comp_sum_bayes_risk",
    "margin_profile",
    "excess_risks",
    "comp_sum_calibration",
    "comp_sum_bound",
    "consistency_trajectory",
]
