"""Training with huge output spaces: candidate samplers, sampled softmax and NCE (TensorFlow's
semantics), in-batch softmax with logQ correction, SimpleX's CCL, PSL, DEXML's decoupled softmax,
and Partial FC (single process or model-parallel over ``torch.distributed``).

Registered losses (family ``"sampled"``) are those on a score matrix over candidates,
``loss(scores, target)``: ``in_batch_softmax``, ``cosine_contrastive``, ``pairwise_softmax``,
``decoupled_softmax``. The losses that own or gather class weights (``sampled_softmax_loss``,
``nce_loss``, ``full_softmax_loss``, ``partial_fc_loss`` and the layers) take
``(weight, bias, labels, inputs)`` or ``(embeddings, labels, weight)`` and are exported here and
in :mod:`lossbook.functional` without being registered (the registry's contract is
``loss(logits, target)``). Partial FC's margins are the transforms of :mod:`lossbook.margin`.
"""

from . import in_batch, partial_fc, retrieval, samplers, softmax
from .in_batch import *  # noqa: F403
from .partial_fc import *  # noqa: F403
from .retrieval import *  # noqa: F403
from .samplers import *  # noqa: F403
from .softmax import *  # noqa: F403

__all__ = samplers.__all__ + softmax.__all__ + in_batch.__all__ + retrieval.__all__ + partial_fc.__all__
