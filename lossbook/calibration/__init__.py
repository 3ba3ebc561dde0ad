"""Calibration-aware losses and post-hoc calibrators (the book's calibration chapter).

Registered losses (family ``"calibration"``): focal loss, dual focal loss, margin-based label
smoothing (MbLS), adaptive and conditional label smoothing (ACLS) and squentropy; the binary focal
loss :func:`sigmoid_focal_loss` (torchvision's reference API). Calibrators (methods of kind
``"calibrator"``): :class:`TemperatureScaling`, :class:`VectorScaling`, :class:`MatrixScaling`,
each fitted on validation logits by NLL, and the correctness-aware
:class:`CorrectnessAwareScaling` (a per-input temperature from transformed views, fitted by the
CA objective :func:`correctness_aware_loss`). The calibration metrics are in :mod:`lossbook.metrics`.
"""

from . import calibrators, correctness_aware, dual_focal, margin_smoothing, squentropy
from .calibrators import *  # noqa: F403
from .correctness_aware import *  # noqa: F403
from .dual_focal import *  # noqa: F403
from .focal import FocalLoss, focal_loss, focal_terms, sigmoid_focal_loss
from .margin_smoothing import *  # noqa: F403
from .squentropy import *  # noqa: F403

__all__ = ["focal_loss", "FocalLoss", "focal_terms", "sigmoid_focal_loss"]
__all__ += dual_focal.__all__ + margin_smoothing.__all__ + squentropy.__all__ + calibrators.__all__
__all__ += correctness_aware.__all__
