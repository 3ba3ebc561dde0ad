"""Alternatives to the softmax cross-entropy output (the book's chapter 9).

Registered losses (family ``"alternatives"``): the encouraging loss, plain and conservative
(:func:`encouraging_loss`), cross-entropy on ReLU outputs (:func:`relu_output_loss`) and the
one-vs-the-rest loss (:func:`one_vs_rest_loss`). Methods: the harmonic distance layer and loss
(:class:`HarmonicLayer`, :func:`harmonic_logits`, :func:`harmonic_loss`), SOVR's switch from
cross-entropy to one-vs-the-rest for the smallest-margin samples (:func:`sovr_loss`) and the
logit margin it switches on (:func:`logit_margin`); knowledge distillation at the probability level
(:func:`kd_loss`) and the logit level (:func:`binary_kl_loss`, :func:`binary_kl_norm_loss`) with the
two-headed student of dual-head distillation (:class:`DualHeadClassifier`).
"""

from . import dual_head, encouraging, harmonic, outputs
from .dual_head import *  # noqa: F403
from .encouraging import *  # noqa: F403
from .harmonic import *  # noqa: F403
from .outputs import *  # noqa: F403

__all__ = dual_head.__all__ + encouraging.__all__ + harmonic.__all__ + outputs.__all__
