"""The spherical family: losses that see the outputs only through o_c, ‖o‖² and Σ_k o_k.

:mod:`.stats` holds each loss once, as a function of those statistics; :mod:`.losses` applies
them to explicit outputs (registered losses with torch-style arguments, and their Modules);
:mod:`.layer` is the factored output layer that never forms the outputs.
"""

from . import layer, losses, stats
from .layer import *  # noqa: F403
from .losses import *  # noqa: F403
from .stats import *  # noqa: F403

__all__ = layer.__all__ + losses.__all__ + stats.__all__
