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
:func:`gaussian_neighbours`, :func:`gaussian_neighbour_logits`.
"""

from . import distances, icon, losses, miners, proxies, speaker
from .distances import *
from .icon import *
from .losses import *
from .miners import *
from .proxies import *
from .speaker import *

__all__ = distances.__all__ + miners.__all__ + losses.__all__ + speaker.__all__ + proxies.__all__ + icon.__all__
