"""Cross-entropy and its relatives: the comp-sum family, label smoothing, GCE, MAE, and the
two-level hierarchical softmax layer.

Each module lists its public names in ``__all__``; this package exports them all.
"""

from . import comp_sum, consistency, hierarchical
from .comp_sum import *  # noqa: F403
from .consistency import *  # noqa: F403
from .hierarchical import *  # noqa: F403

__all__ = comp_sum.__all__ + consistency.__all__ + hierarchical.__all__
