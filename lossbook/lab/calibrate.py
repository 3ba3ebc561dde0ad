"""Calibration measurements for the chapters: temperature scaling and per-split metrics.

:func:`fit_temperature` (the library's, :func:`lossbook.calibration.fit_temperature`, re-exported
here) fits the single temperature T of temperature scaling (Guo et al. 2017) by minimising the
negative log-likelihood of ``softmax(logits / T)`` on held-out (validation) data;
:func:`split_metrics` measures a trained classifier on its validation and test splits (accuracy,
NLL, ECE and over-confidence), optionally after temperature scaling fitted on the validation split
only, so that a chapter can select on ``val_*`` columns and read ``test_*`` ones
(see :mod:`lossbook.lab.selection`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..calibration import fit_temperature

__all__ = ["fit_temperature", "probability_metrics", "split_metrics"]


def probability_metrics(logits, target, *, temperature: float = 1.0, prefix: str = "", n_bins: int = 15) -> dict:
    """Accuracy, NLL, ECE (``n_bins`` equal-width bins), mean confidence and over-confidence (mean
    confidence − accuracy, > 0 when over-confident) of ``softmax(logits / temperature)``."""
    from .. import metrics

    z = torch.as_tensor(logits).detach().double().cpu() / temperature
    y = torch.as_tensor(target).detach().long().cpu()
    probs = torch.softmax(z, dim=1)
    acc = metrics.accuracy(z, y)
    confidence = float(probs.max(dim=1).values.mean())
    return {f"{prefix}accuracy": acc, f"{prefix}nll": metrics.nll(probs, y),
            f"{prefix}ece": metrics.expected_calibration_error(probs, y, n_bins=n_bins),
            f"{prefix}confidence": confidence, f"{prefix}overconfidence": confidence - acc}


def split_metrics(model: nn.Module, splits, *, temperature_scaling: bool = False, n_bins: int = 15) -> dict:
    """``val_*`` and ``test_*`` metrics of ``model`` (see :func:`probability_metrics`) on a
    :class:`lossbook.lab.data.Splits`.

    With ``temperature_scaling`` the temperature is fitted on the validation split
    (:func:`fit_temperature`) and the test split is measured again after scaling (``test_ts_*``);
    ``temperature`` is the fitted T.
    """
    from .train import predict_logits

    z_val, z_test = predict_logits(model, splits.x_val), predict_logits(model, splits.x_test)
    out = {**probability_metrics(z_val, splits.y_val, prefix="val_", n_bins=n_bins),
           **probability_metrics(z_test, splits.y_test, prefix="test_", n_bins=n_bins)}
    if temperature_scaling:
        t = fit_temperature(z_val, splits.y_val)
        out["temperature"] = t
        out.update(probability_metrics(z_test, splits.y_test, temperature=t, prefix="test_ts_", n_bins=n_bins))
    return out
