"""Verification and top-k recommendation metrics (against brute force), and the synthetic identities
and recommender generators of :mod:`lossbook.lab.data`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ive

from lossbook import metrics
from lossbook.lab import data

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


# --- pair_scores with a subset; memory -------------------------------------------------------------------


def _pairs_brute(e, y, keep):
    out = [(e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j]), y[i] == y[j])
           for i in range(len(y)) for j in range(i + 1, len(y)) if keep(i, j)]
    return np.array([a for a, _ in out]), np.array([b for _, b in out], dtype=bool)


@pytest.mark.parametrize("block", [None, 16])  # 16 entries: blocks of 2 rows, many block boundaries
def test_pair_scores_subset_against_loops(block, monkeypatch):
    if block is not None:
        monkeypatch.setattr(metrics, "_PAIR_BLOCK", block)
    rng = np.random.default_rng(3)
    n = 23
    e, y = rng.normal(size=(n, 4)), rng.integers(0, 5, size=n)
    sub = rng.random(n) < 0.3
    cases = [(None, "any", lambda i, j: True),
             (sub, "any", lambda i, j: sub[i] or sub[j]),
             (sub, "both", lambda i, j: sub[i] and sub[j])]
    for subset, require, keep in cases:
        s, g = metrics.pair_scores(e, torch.from_numpy(y), subset=subset, require=require)
        s_ref, g_ref = _pairs_brute(e, y, keep)
        assert s.dtype == np.float64 and g.dtype == bool
        np.testing.assert_allclose(s, s_ref, rtol=1e-12, atol=1e-15)
        assert np.array_equal(g, g_ref)
    m = int(sub.sum())
    assert len(metrics.pair_scores(e, y, subset=sub, require="both")[0]) == m * (m - 1) // 2
    assert len(metrics.pair_scores(e, y, subset=sub)[0]) == n * (n - 1) // 2 - (n - m) * (n - m - 1) // 2
    # integer indices select the same pairs as the boolean mask
    for require in ("any", "both"):
        a = metrics.pair_scores(e, y, subset=np.flatnonzero(sub), require=require)
        b = metrics.pair_scores(e, y, subset=torch.from_numpy(sub), require=require)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_pair_scores_small_and_empty_inputs():
    for n in (0, 1):
        s, g = metrics.pair_scores(np.ones((n, 3)), np.zeros(n, dtype=int))
        assert s.shape == g.shape == (0,)
    s, _ = metrics.pair_scores(np.ones((4, 3)), np.arange(4), subset=np.zeros(4, dtype=bool))
    assert s.shape == (0,)


def test_pair_scores_memory_for_3000_embeddings():
    import tracemalloc

    n = 3000
    e = torch.randn(n, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(n) // 10
    tracemalloc.start()
    try:
        s, g = metrics.pair_scores(e, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert s.shape == g.shape == (n * (n - 1) // 2,)
    assert int(g.sum()) == 300 * 45
    output = s.nbytes + g.nbytes  # 40.5 MB; an N×N float64 matrix alone would be 72 MB
    assert peak < output + 80e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("kwargs, pattern", [
    ({"require": "all"}, "require must be 'any'"),
    ({"subset": np.ones(4, dtype=bool)}, r"shape \(5,\)"),
    ({"subset": np.array([0, 5])}, r"outside \[0, 5\)"),
    ({"subset": np.array([0.5, 1.0])}, "boolean mask"),
])
def test_pair_scores_errors(kwargs, pattern):
    e, y = np.random.default_rng(0).normal(size=(5, 3)), np.arange(5)
    with pytest.raises(ValueError, match=pattern):
        metrics.pair_scores(e, y, **kwargs)


def test_pair_scores_shape_and_nan_errors():
    with pytest.raises(ValueError, match="labels"):
        metrics.pair_scores(np.ones((5, 3)), np.arange(4))
    with pytest.raises(ValueError, match=r"2-D \(N, d\)"):
        metrics.pair_scores(np.ones(5), np.arange(5))
    with pytest.raises(ValueError, match="NaN"):
        metrics.pair_scores(np.array([[1.0, np.nan], [1.0, 0.0]]), np.arange(2))


# --- verification_roc / equal_error_rate --------------------------------------------------------------------


def _noisy_scores(seed, n=300, rounding=1):
    rng = np.random.default_rng(seed)
    genuine = rng.random(n) < 0.3
    return np.round(rng.normal(size=n) + 1.2 * genuine, rounding), genuine  # rounding makes ties


def _roc_brute(scores, genuine):
    """(threshold, FAR, FRR) for +inf and every distinct score, strictest first, by counting."""
    imp, gen = scores[~genuine], scores[genuine]
    ts = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    return [(t, (imp >= t).mean(), (gen < t).mean()) for t in ts]


def _eer_brute(scores, genuine):
    """The documented convention, by a threshold sweep with Fractions (exact crossing)."""
    from fractions import Fraction

    imp, gen = scores[~genuine], scores[genuine]
    pts = [(t, Fraction(int((imp >= t).sum()), len(imp)), Fraction(int((gen < t).sum()), len(gen)))
           for t in np.concatenate([[np.inf], np.unique(scores)[::-1]])]
    for k, (t, far, frr) in enumerate(pts):
        if far >= frr:
            if far == frr:
                return float(far), t
            t0, far0, frr0 = pts[k - 1]
            d0, d1 = far0 - frr0, far - frr
            w = -d0 / (d1 - d0)
            thr = t if np.isinf(t0) else t0 + float(w) * (t - t0)
            return float(far0 + w * (far - far0)), thr
    raise AssertionError("no crossing")


@pytest.mark.parametrize("seed", range(4))
def test_verification_roc_against_counting(seed):
    scores, genuine = _noisy_scores(seed)
    roc = metrics.verification_roc(torch.from_numpy(scores), torch.from_numpy(genuine))
    brute = _roc_brute(scores, genuine)
    assert roc.num_genuine == genuine.sum() and roc.num_impostor == (~genuine).sum()
    np.testing.assert_array_equal(roc.thresholds, [t for t, _, _ in brute])
    np.testing.assert_allclose(roc.far, [f for _, f, _ in brute], rtol=0, atol=1e-15)
    np.testing.assert_allclose(roc.frr, [r for _, _, r in brute], rtol=0, atol=1e-15)
    frame = roc.to_frame()
    assert list(frame.columns) == ["threshold", "far", "tar", "frr"] and len(frame) == len(brute)


@pytest.mark.parametrize("seed", range(4))
def test_tar_at_far_is_read_off_verification_roc(seed):
    scores, genuine = _noisy_scores(seed)
    roc = metrics.verification_roc(scores, genuine)
    fars = (0.0, 1e-3, 0.01, 0.1, 0.5, 1.0)
    tars = metrics.tar_at_far(scores, genuine, fars)
    for f in fars:
        assert tars[f] == roc.tar[roc.far <= f].max() == pytest.approx(_tar_brute(scores, genuine, f), abs=1e-15)


@pytest.mark.parametrize("seed, rounding", [(0, 1), (1, 1), (2, 2), (3, 0), (4, 6)])
def test_equal_error_rate_against_threshold_sweep(seed, rounding):
    scores, genuine = _noisy_scores(seed, n=200, rounding=rounding)
    eer, thr = metrics.equal_error_rate(scores, genuine, return_threshold=True)
    eer_ref, thr_ref = _eer_brute(scores, genuine)
    assert eer == pytest.approx(eer_ref, abs=1e-12)
    assert thr == pytest.approx(thr_ref, abs=1e-12)
    assert metrics.equal_error_rate(scores, genuine) == eer
    # convention-free bounds: no single threshold does better on max(FAR, FRR), and no better on the mean
    brute = _roc_brute(scores, genuine)
    assert eer <= min(max(far, frr) for _, far, frr in brute) + 1e-12
    assert eer >= min((far + frr) / 2 for _, far, frr in brute) - 1e-12


def test_equal_error_rate_known_cases():
    genuine = np.array([True, True, True, False, False])
    # perfect separation: 0 at the lowest genuine score; perfectly reversed: 1
    assert metrics.equal_error_rate([0.9, 0.8, 0.7, 0.2, 0.1], genuine, return_threshold=True) == (0.0, 0.7)
    assert metrics.equal_error_rate([0.1, 0.2, 0.3, 0.8, 0.9], genuine) == 1.0
    # all scores equal: the ROC is the chance diagonal, EER exactly 0.5
    assert metrics.equal_error_rate(np.zeros(5), genuine) == 0.5
    # FAR = FRR at an ROC point: genuine 0.9, 0.4; impostor 0.6, 0.1 -> threshold 0.6 gives 1/2 and 1/2
    assert metrics.equal_error_rate([0.9, 0.4, 0.6, 0.1], [True, True, False, False],
                                    return_threshold=True) == (0.5, 0.6)
    # interpolated: FRR stays 1/3 while FAR goes 0 -> 1/2 between thresholds 0.8 and 0.7
    eer, thr = metrics.equal_error_rate([0.9, 0.8, 0.3, 0.7, 0.2], genuine, return_threshold=True)
    assert eer == pytest.approx(1 / 3, abs=1e-15) and thr == pytest.approx(0.8 - 0.1 * 2 / 3, abs=1e-15)


def test_equal_error_rate_is_one_half_for_identical_distributions():
    rng = np.random.default_rng(5)
    genuine = rng.random(20_000) < 0.2
    eer = metrics.equal_error_rate(rng.normal(size=20_000), genuine)
    assert abs(eer - 0.5) < 0.02  # KS-type fluctuation ~ 1/sqrt(4000)


@pytest.mark.parametrize("fn", [metrics.verification_roc, metrics.equal_error_rate])
def test_roc_and_eer_errors(fn):
    with pytest.raises(ValueError, match="both genuine .* and impostor"):
        fn([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="same length"):
        fn([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn([0.1, np.nan], [True, False])


# --- verification_report ------------------------------------------------------------------------------------


def test_verification_report_matches_its_parts():
    ids = data.vmf_identities(12, 5, dim=6, kappa=10.0, seed=2)
    rep = metrics.verification_report(ids.latent, ids.y, far=(1e-3, 0.05))
    s, g = metrics.pair_scores(ids.latent, ids.y)
    assert list(rep) == ["tar@far=0.001", "tar@far=0.05", "eer", "eer_threshold", "genuine_mean", "impostor_mean",
                         "genuine_pairs", "impostor_pairs", "pairs"]
    assert rep["pairs"] == 60 * 59 // 2 and rep["genuine_pairs"] == 12 * 10
    assert rep["impostor_pairs"] == rep["pairs"] - rep["genuine_pairs"]
    assert rep["tar@far=0.05"] == metrics.tar_at_far(s, g, 0.05)
    assert (rep["eer"], rep["eer_threshold"]) == metrics.equal_error_rate(s, g, return_threshold=True)
    assert rep["genuine_mean"] == pytest.approx(s[g].mean()) and rep["impostor_mean"] == pytest.approx(s[~g].mean())
    assert rep["genuine_mean"] > rep["impostor_mean"] + 0.3
    # a subset: the pairs touching the first identity's samples
    sub = ids.y == 0
    part = metrics.verification_report(ids.latent, ids.y, far=1e-2, subset=sub)
    assert part["pairs"] == 60 * 59 // 2 - 55 * 54 // 2 and part["genuine_pairs"] == 10
    s_sub, g_sub = metrics.pair_scores(ids.latent, ids.y, subset=sub)
    assert part["tar@far=0.01"] == metrics.tar_at_far(s_sub, g_sub, 1e-2)


def test_verification_report_errors():
    e, y = np.random.default_rng(0).normal(size=(6, 3)), np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="larger subset"):  # the "both" pairs of {0, 2} are all impostors
        metrics.verification_report(e, y, subset=np.array([0, 2]), require="both")
    with pytest.raises(ValueError, match="far must lie"):
        metrics.verification_report(e, y, far=1.5)


# --- feature_norm_stats -------------------------------------------------------------------------------------


def _norm_data(seed=0, n=600, slope=4.0):
    rng = np.random.default_rng(seed)
    q = rng.random(n)
    direction = rng.normal(size=(n, 8))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    norm = 5.0 + slope * q + 0.5 * rng.normal(size=n)
    return direction * norm[:, None], q, norm


def test_feature_norm_stats_summary_and_spearman():
    from scipy.stats import spearmanr

    emb, q, norm = _norm_data()
    st = metrics.feature_norm_stats(torch.from_numpy(emb).float(), torch.from_numpy(q), n_bins=4)
    assert st.mean == pytest.approx(norm.mean(), rel=1e-6) and st.std == pytest.approx(norm.std(), rel=1e-5)
    assert list(st.quantiles) == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert st.quantiles[0.5] == pytest.approx(np.median(norm), rel=1e-6)
    assert st.spearman == pytest.approx(spearmanr(norm, q).statistic, rel=1e-6) and st.spearman > 0.8
    assert st.spearman_pvalue < 1e-10
    assert st.bins["count"].tolist() == [150] * 4 and st.bins["bin"].tolist() == [0, 1, 2, 3]
    assert (st.bins["quality_max"].to_numpy()[:-1] <= st.bins["quality_min"].to_numpy()[1:]).all()
    assert st.monotone and st.kendall_tau == pytest.approx(1.0)
    row = st.as_dict()
    assert row["norm_q50"] == st.quantiles[0.5] and row["spearman"] == st.spearman and row["monotone"] is True
    # norms falling with quality: negative Spearman, not monotone increasing, tau = -1
    down = metrics.feature_norm_stats(*_norm_data(slope=-4.0)[:2])
    assert down.spearman < -0.8 and down.monotone is False and down.kendall_tau == pytest.approx(-1.0)


def test_feature_norm_stats_detects_a_non_monotone_profile():
    q = np.repeat([0.1, 0.5, 0.9], 10)
    norms = np.repeat([1.0, 3.0, 2.0], 10)
    st = metrics.feature_norm_stats(norms[:, None] * np.array([[0.6, 0.8]]), q, n_bins=3)
    np.testing.assert_allclose(st.bins["norm_mean"], [1.0, 3.0, 2.0])
    assert st.monotone is False and st.kendall_tau == pytest.approx(1 / 3)


def test_feature_norm_stats_without_quality_and_constant_quality():
    emb = np.random.default_rng(1).normal(size=(50, 4))
    st = metrics.feature_norm_stats(emb)
    assert math.isnan(st.spearman) and st.bins is None and st.monotone is None
    flat = metrics.feature_norm_stats(emb, np.ones(50), n_bins=2)
    assert math.isnan(flat.spearman) and flat.bins["count"].sum() == 50


@pytest.mark.parametrize("args, kwargs, pattern", [
    ((np.ones(5),), {}, r"2-D \(N, d\)"),
    ((np.ones((5, 2)), np.ones(4)), {}, r"shape \(5,\)"),
    ((np.ones((5, 2)), np.ones(5)), {"n_bins": 6}, r"n_bins must be an int in \[2, N = 5\]"),
    ((np.ones((5, 2)), np.ones(5)), {"n_bins": 1}, "n_bins"),
    ((np.ones((5, 2)), np.array([1, 2, np.nan, 4, 5])), {}, "quality holds NaN"),
])
def test_feature_norm_stats_errors(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        metrics.feature_norm_stats(*args, **kwargs)


# --- angle_stats / ks_distance --------------------------------------------------------------------------------


def _unit(deg):
    r = np.radians(deg)
    return np.array([np.cos(r), np.sin(r), 0.0])


def test_angle_stats_with_given_centres():
    centres = np.stack([_unit(0), _unit(90), _unit(135)]) * np.array([[2.0], [1.0], [3.0]])  # norms do not matter
    emb = np.stack([_unit(10), 5 * _unit(-20), _unit(100), 0.1 * _unit(150), np.array([0.0, 0.0, 1.0])])
    labels = np.array([0, 0, 1, 2, 0])
    st = metrics.angle_stats(torch.from_numpy(emb), torch.from_numpy(labels), torch.from_numpy(centres))
    np.testing.assert_allclose(st.intra, [10, 20, 10, 15, 90], atol=1e-9)
    np.testing.assert_allclose(st.inter, [90, 135, 45], atol=1e-9)  # pairs (0,1), (0,2), (1,2)
    np.testing.assert_allclose(st.nearest_inter, [90, 45, 45], atol=1e-9)
    assert st.classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(np.linalg.norm(st.centres, axis=1), 1.0)
    summary = st.summary()
    assert summary["intra_mean"] == pytest.approx(29.0) and summary["inter_min"] == pytest.approx(45.0)


def test_angle_stats_class_mean_centres():
    # class 7: ±25° around 60°, so its centre is 60°; class 3: a single sample at 200°
    emb = np.stack([_unit(35), 3 * _unit(85), _unit(200)])
    st = metrics.angle_stats(emb, np.array([7, 7, 3]))
    assert st.classes.tolist() == [3, 7]
    np.testing.assert_allclose(st.intra, [25, 25, 0], atol=1e-9)
    np.testing.assert_allclose(st.inter, [140], atol=1e-9)
    np.testing.assert_allclose(st.centres[1], _unit(60), atol=1e-12)


def test_angle_stats_errors():
    emb, y = np.random.default_rng(0).normal(size=(4, 3)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="transpose"):
        metrics.angle_stats(emb, y, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        metrics.angle_stats(emb, np.array([0, 1, 2, 1]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="integers"):
        metrics.angle_stats(emb, y.astype(float))


def test_ks_distance_against_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.3, 1.2, size=(20, 10))
    assert metrics.ks_distance(torch.from_numpy(a), b) == pytest.approx(ks_2samp(a, b.ravel()).statistic, abs=1e-15)
    assert metrics.ks_distance([0.0, 0.1], [0.5, 0.6, 0.7]) == 1.0
    assert metrics.ks_distance(a, a) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        metrics.ks_distance([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.ks_distance([np.nan], [1.0])
