"""Verification and top-k recommendation metrics (against brute force), and the synthetic identities
and recommender generators of :mod:`lossbook.data`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ive

from lossbook import data, metrics

# --- pair_scores / tar_at_far ---------------------------------------------------------------------------


def test_pair_scores_against_loops():
    rng = np.random.default_rng(0)
    e, y = rng.normal(size=(7, 3)), np.array([0, 0, 1, 2, 1, 0, 2])
    s, g = metrics.pair_scores(torch.from_numpy(e), torch.from_numpy(y))
    expected = [(e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j]), y[i] == y[j])
                for i in range(7) for j in range(i + 1, 7)]
    assert len(s) == 21
    np.testing.assert_allclose(s, [a for a, _ in expected], rtol=1e-12)
    assert g.tolist() == [b for _, b in expected]


def _tar_brute(scores, genuine, far):
    best = 0.0
    impostor, gen = scores[~genuine], scores[genuine]
    for t in np.concatenate([np.unique(scores), [np.inf]]):
        if (impostor >= t).mean() <= far:
            best = max(best, (gen >= t).mean())
    return best


@pytest.mark.parametrize("far", [0.0, 1e-2, 0.05, 0.3, 1.0])
def test_tar_at_far_against_brute_force(far):
    rng = np.random.default_rng(1)
    genuine = rng.random(400) < 0.3
    scores = np.round(rng.normal(size=400) + 1.5 * genuine, 1)  # rounding makes ties
    assert metrics.tar_at_far(scores, genuine, far) == pytest.approx(_tar_brute(scores, genuine, far), abs=1e-15)


def test_tar_at_far_tuple_and_perfect_separation():
    scores, genuine = np.array([0.9, 0.8, 0.1, 0.2, 0.3]), np.array([True, True, False, False, False])
    assert metrics.tar_at_far(scores, genuine, (0.0, 0.5)) == {0.0: 1.0, 0.5: 1.0}
    # reversed scores: accepting any genuine pair accepts every impostor first
    assert metrics.tar_at_far(-scores, genuine, 0.0) == 0.0


def test_tar_at_far_errors():
    with pytest.raises(ValueError, match="genuine"):
        metrics.tar_at_far([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="far"):
        metrics.tar_at_far([0.1, 0.2], [True, False], far=2.0)
    with pytest.raises(ValueError, match="same length"):
        metrics.tar_at_far([0.1, 0.2, 0.3], [True, False])


# --- recall@k / NDCG@k ----------------------------------------------------------------------------------


def _rank_metrics_brute(scores, relevant, exclude, k):
    recalls, ndcgs = [], []
    for s, rel, ex in zip(scores, relevant, exclude):
        order = [i for i in np.argsort(-s, kind="stable") if i not in set(ex)][:k]
        hits = [1.0 if i in set(rel) else 0.0 for i in order]
        recalls.append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
        ndcgs.append(dcg / idcg)
    return np.mean(recalls), np.mean(ndcgs)


@pytest.mark.parametrize("k", [1, 3, 5, 20])
def test_recall_and_ndcg_against_brute_force(k):
    rng = np.random.default_rng(2)
    users, items = 30, 12
    scores = rng.normal(size=(users, items))
    perm = np.argsort(rng.random((users, items)), axis=1)
    relevant, exclude = perm[:, :3], perm[:, 3:5]
    recall, ndcg = _rank_metrics_brute(scores, relevant, exclude, k)
    assert metrics.recall_at_k(torch.from_numpy(scores), torch.from_numpy(relevant), k,
                               exclude=torch.from_numpy(exclude)) == pytest.approx(recall, abs=1e-12)
    assert metrics.ndcg_at_k(scores, relevant, k, exclude=exclude) == pytest.approx(ndcg, abs=1e-12)


def test_rank_metrics_perfect_and_errors():
    scores = np.array([[3.0, 2.0, 1.0, 0.0]])
    assert metrics.recall_at_k(scores, np.array([[0, 1]]), 2) == 1.0
    assert metrics.ndcg_at_k(scores, np.array([[0, 1]]), 2) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(scores, np.array([[2, 3]]), 2, exclude=np.array([[0, 1]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        metrics.recall_at_k(scores, np.array([[4]]), 2)
    with pytest.raises(ValueError, match="k must"):
        metrics.ndcg_at_k(scores, np.array([[0]]), 0)


# --- vmf_identities ------------------------------------------------------------------------------------


def test_vmf_identities_shapes_and_concentration():
    ids = data.vmf_identities(300, 20, dim=8, kappa=15.0, observed_dim=24, nuisance_dim=4, seed=3)
    assert ids.x.shape == (6000, 24) and ids.x.dtype == torch.float32
    assert ids.y.dtype == torch.int64 and ids.y.tolist() == [k for k in range(300) for _ in range(20)]
    assert ids.num_identities == 300
    torch.testing.assert_close(ids.centres.norm(dim=1), torch.ones(300, dtype=torch.float64))
    torch.testing.assert_close(ids.latent.norm(dim=1), torch.ones(6000, dtype=torch.float64))
    # mean resultant length of a vMF in d dimensions: A_d(κ) = I_{d/2}(κ) / I_{d/2−1}(κ)
    cos = (ids.latent * ids.centres[ids.y]).sum(1)
    expected = ive(4, 15.0) / ive(3, 15.0)
    assert abs(float(cos.mean()) - expected) < 4 * float(cos.std()) / math.sqrt(6000)


def test_vmf_identities_seeds_share_the_world_but_not_the_identities():
    a = data.vmf_identities(5, 3, seed=0)
    assert torch.equal(a.x, data.vmf_identities(5, 3, seed=0).x)
    b = data.vmf_identities(5, 3, seed=1)
    assert not torch.allclose(a.centres, b.centres)
    # without nuisance, equal latent vectors map to equal observations through the same world map
    c = data.vmf_identities(2, 1, nuisance_scale=0.0, seed=4)
    d = data.vmf_identities(2, 1, nuisance_scale=0.0, seed=4, world_seed=1)
    assert torch.equal(c.latent, d.latent) and not torch.allclose(c.x, d.x)


def test_vmf_identities_errors():
    with pytest.raises(ValueError, match="kappa"):
        data.vmf_identities(3, 2, kappa=0.0)
    with pytest.raises(ValueError, match="dim"):
        data.vmf_identities(3, 2, dim=1)


# --- latent_factor_interactions ---------------------------------------------------------------------------


def test_latent_factor_interactions():
    r = data.latent_factor_interactions(200, 300, per_user=12, test_per_user=3, seed=0)
    assert r.train.shape == (200, 9) and r.test.shape == (200, 3) and r.num_items == 300
    both = torch.cat([r.train, r.test], dim=1)
    assert all(len(set(row)) == 12 for row in both.tolist())  # distinct items per user
    assert torch.equal(r.train, data.latent_factor_interactions(200, 300, per_user=12, test_per_user=3, seed=0).train)
    users, items = r.pairs()
    assert users.shape == items.shape == (1800,) and torch.equal(items.view(200, 9), r.train)
    counts = r.item_counts()
    assert counts.sum() == 1800
    # Zipfian popularity: the 30 most popular items are chosen more often than the 30 least, and more
    # so when the personal signal is weaker
    assert counts[:30].sum() > 3 * counts[-30:].sum()
    weak = data.latent_factor_interactions(200, 300, per_user=12, test_per_user=3, signal=1.0, seed=0).item_counts()
    assert weak[:30].sum() > 10 * weak[-30:].sum()
    # preference_logits are the logits the choices were drawn from: chosen items score higher on average
    logits = r.preference_logits()
    assert logits.gather(1, both).mean() > logits.mean() + 1.0
    torch.testing.assert_close(r.preference_logits(torch.tensor([3, 5])), logits[[3, 5]])
    # signal 0: choices follow popularity alone
    flat = data.latent_factor_interactions(2000, 50, per_user=2, test_per_user=1, signal=0.0, zipf=0.0, seed=1)
    assert flat.item_counts().std() < 0.25 * flat.item_counts().mean()


def test_latent_factor_interactions_errors():
    with pytest.raises(ValueError, match="test_per_user"):
        data.latent_factor_interactions(10, 20, per_user=5, test_per_user=5)
    with pytest.raises(ValueError, match="num_items"):
        data.latent_factor_interactions(10, 1)
