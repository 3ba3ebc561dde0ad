"""Pair and proxy losses for metric learning (the book's chapter 8, family ``"pairs"``).

Every loss takes ``(embeddings (N, d), labels (N,) int64)`` and, with ``reduction="none"``, gives one
value per anchor. Distances and pair masks: :func:`pairwise_similarity`, :func:`pairwise_distance`,
:func:`pair_masks`. Miners: :func:`all_triplets`, :func:`batch_hard_triplets`,
:func:`semi_hard_triplets`, :func:`multi_similarity_pairs`. Pair losses: :func:`contrastive_loss`,
:func:`triplet_loss`, :func:`multi_similarity_loss`, :func:`circle_loss`, :func:`supcon_loss`.
Speaker losses (N speakers × M utterances): :func:`ge2e_loss`, :func:`te2e_loss`,
:func:`angular_prototypical_loss`, :func:`prototypical_loss`. Proxies: :func:`proxy_anchor_loss`,
:func:`proxy_nca_loss`, :func:`mean_field_contrastive_loss` and their Modules. I-Con:
:func:`icon_loss` with :func:`supervised_neighbours`, :func:`cosine_neighbour_logits`,
:func:`gaussian_neighbours`, :func:`gaussian_neighbour_logits`. Metrix (mixup for metric learning):
:func:`metrix_contrastive_loss`, :class:`MetrixContrastiveLoss`, :func:`metrix_multi_similarity_loss`,
:class:`MetrixMultiSimilarityLoss`, :func:`mix_positive_negative`. Few-shot
episodes: :func:`nearest_prototype`. SCoRe's submodular losses: :func:`score_fl_loss`, :func:`score_gc_loss`
(with :func:`score_kernel`).
"""

from . import distances, fewshot, icon, losses, miners, mixup, proxies, speaker, submodular
from .distances import *
from .fewshot import *
from .icon import *
from .losses import *
from .miners import *
from .mixup import *
from .proxies import *
from .speaker import *
from .submodular import *

__all__ = (distances.__all__ + miners.__all__ + losses.__all__ + speaker.__all__ + proxies.__all__ + icon.__all__
           + mixup.__all__ + fewshot.__all__ + submodular.__all__)
