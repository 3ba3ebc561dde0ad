"""Calibration-aware losses (the book's calibration chapter): focal loss (registered, family
``"calibration"``) and its binary form :func:`sigmoid_focal_loss` (torchvision's reference API).
"""

from .focal import FocalLoss, focal_loss, focal_terms, sigmoid_focal_loss

__all__ = ["focal_loss", "FocalLoss", "focal_terms", "sigmoid_focal_loss"]
