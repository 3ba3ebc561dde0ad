"""Label-noise-robust losses: reverse/symmetric CE, normalised and active–passive losses, LDR-KL and
ALDR-KL (registered, family ``"robust"``); self-distillation, the Z-Error loss, MOIT's interpolated
SupCon loss and its k-NN noise detector (not registered: they need a teacher, a whole batch or
embedding pairs).

GCE and MAE live in :mod:`lossbook.softmax` (they are comp-sum members) and are re-exported here.
"""

from ..softmax.comp_sum import (
    GeneralizedCrossEntropyLoss,
    MeanAbsoluteErrorLoss,
    generalized_cross_entropy,
    mean_absolute_error,
)
from . import _parts, detect, distill, ldr, moit, normalized, symmetric, z_error
from ._parts import *  # noqa: F403
from .detect import *  # noqa: F403
from .distill import *  # noqa: F403
from .ldr import *  # noqa: F403
from .moit import *  # noqa: F403
from .normalized import *  # noqa: F403
from .symmetric import *  # noqa: F403
from .z_error import *  # noqa: F403

__all__ = symmetric.__all__ + normalized.__all__ + ldr.__all__ + _parts.__all__ + distill.__all__ + z_error.__all__
__all__ += moit.__all__ + detect.__all__
# GCE and MAE are registered once, in lossbook.softmax, and re-exported here
__all__ += ["generalized_cross_entropy", "mean_absolute_error", "GeneralizedCrossEntropyLoss", "MeanAbsoluteErrorLoss"]
