"""Sparse probability maps and their losses (the book's sparse chapter).

Maps: :func:`sparsemax` (with a top-k path for many classes), :func:`entmax15` and
:func:`sparse_softmax`, the first two with closed-form Jacobians. Registered losses (family
``"sparse"``): :func:`sparsemax_loss`, :func:`entmax15_loss`, :func:`sparse_softmax_loss`; the
multi-label sparsemax loss with probability targets is :func:`sparsemax_multilabel_loss`.
"""

from . import losses, maps
from .losses import *
from .maps import *

__all__ = maps.__all__ + losses.__all__
