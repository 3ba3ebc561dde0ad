"""Training with huge output spaces: candidate samplers, sampled softmax and NCE (TensorFlow's
semantics), in-batch softmax with logQ correction, SimpleX's CCL, PSL, DEXML's decoupled softmax,
and Partial FC (single process or model-parallel over ``torch.distributed``).

Registered losses (family ``"sampled"``) are those on a score matrix over candidates,
``loss(scores, target)``: ``in_batch_softmax``, ``cosine_contrastive``, ``pairwise_softmax``,
``decoupled_softmax``. The losses that own or gather class weights (``sampled_softmax_loss``,
``nce_loss``, ``full_softmax_loss``, ``partial_fc_loss`` and the layers) take
``(weight, bias, labels, inputs)`` or ``(embeddings, labels, weight)`` and are exported here and
in :mod:`lossbook.functional` without being registered (the registry's contract is
``loss(logits, target)``).
"""

from .._cosine import ArcFace, CosFace, CosineMargin, NormalizedSoftmax
from .in_batch import (
    InBatchCandidates,
    InBatchSoftmaxLoss,
    StreamingFrequencyEstimator,
    in_batch_softmax_loss,
    mixed_negative_batch,
)
from .partial_fc import PartialFC, PartialFCOutput, partial_fc_loss, partial_fc_sample
from .retrieval import (
    CosineContrastiveLoss,
    DecoupledSoftmaxLoss,
    PairwiseSoftmaxLoss,
    cosine_contrastive_loss,
    decoupled_softmax_loss,
    decoupled_softmax_multilabel_loss,
    pairwise_softmax_loss,
    psl_activation,
)
from .samplers import (
    AllSampler,
    CandidateSample,
    CandidateSampler,
    LearnedUnigramSampler,
    LogUniformSampler,
    UniformSampler,
    UnigramSampler,
    make_sampler,
    tf_expected_count,
)
from .softmax import (
    SampledLossOutput,
    SampledSoftmaxLayer,
    compute_accidental_hits,
    full_softmax_loss,
    nce_loss,
    sampled_softmax_loss,
)

__all__ = [
    "ArcFace",
    "CosFace",
    "CosineMargin",
    "NormalizedSoftmax",
    # samplers
    "CandidateSample",
    "CandidateSampler",
    "UniformSampler",
    "LogUniformSampler",
    "UnigramSampler",
    "LearnedUnigramSampler",
    "AllSampler",
    "make_sampler",
    "tf_expected_count",
    # sampled softmax / NCE
    "sampled_softmax_loss",
    "nce_loss",
    "full_softmax_loss",
    "compute_accidental_hits",
    "SampledLossOutput",
    "SampledSoftmaxLayer",
    # in-batch and retrieval losses
    "StreamingFrequencyEstimator",
    "in_batch_softmax_loss",
    "InBatchSoftmaxLoss",
    "InBatchCandidates",
    "mixed_negative_batch",
    "cosine_contrastive_loss",
    "CosineContrastiveLoss",
    "pairwise_softmax_loss",
    "PairwiseSoftmaxLoss",
    "psl_activation",
    "decoupled_softmax_loss",
    "DecoupledSoftmaxLoss",
    "decoupled_softmax_multilabel_loss",
    # Partial FC
    "partial_fc_loss",
    "partial_fc_sample",
    "PartialFC",
    "PartialFCOutput",
]
