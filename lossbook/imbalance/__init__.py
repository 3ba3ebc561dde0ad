"""Long-tail, multi-label and AUC losses (the book's imbalance chapter).

Registered losses (family ``"imbalance"``): :func:`logit_adjusted_loss`, :func:`balanced_softmax_loss`,
:func:`class_balanced_loss`, :func:`ldam_loss`, :func:`vs_loss`. Methods: the multi-label
:func:`asymmetric_loss` (ASL) and :func:`macro_auc_loss` (univariate, pairwise, re-weighted);
:class:`AUCMLoss` with its optimiser :class:`PESG` and :func:`auc_square_loss`; the decision
:func:`bayes_decision`; Bayes-LT's training objective :func:`bayes_lt_loss` (with
:func:`ensemble_log_variance`, :func:`tail_sensitive_utility`) and the :class:`CosineHead` it and LDAM-DRW
train (with :func:`class_balanced_weights` for the deferred re-weighting); :class:`SAM` around any optimiser; the Hessian's spectrum by Lanczos
(:func:`lanczos`, :func:`per_class_spectrum`). The metrics (balanced and per-class accuracy,
mAP, macro-AUC, neural collapse) are in :mod:`lossbook.metrics`.
"""

from . import auc, bayes_lt, landscape, long_tail, multilabel
from .auc import *
from .bayes_lt import *
from .landscape import *
from .long_tail import *
from .multilabel import *

__all__ = long_tail.__all__ + multilabel.__all__ + auc.__all__ + landscape.__all__ + bayes_lt.__all__
