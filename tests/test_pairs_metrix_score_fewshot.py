"""Metrix (lossbook.pairs.metrix_contrastive_loss and metrix_multi_similarity_loss), the nearest-prototype rule, the few-shot episode sampler
(lossbook.lab.data.few_shot_episodes) and proto-triplet on unit embeddings: float64 loops, gradcheck, the
special cases (λ = 1 and λ = 0 give the clean loss's positive and negative terms; w = 0 the clean loss),
extreme scales and errors."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossbook import pairs as P
from lossbook.lab.data import few_shot_episodes

F64 = torch.float64


def batch(n_classes=3, per_class=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    y = y[torch.randperm(len(y), generator=g)]
    return torch.randn(len(y), d, generator=g, dtype=F64), y


def unit(v):
    return v / v.norm()


def ref_metrix(e, y, lam, mp=0.0, mn=0.5, w=0.4, positives="first"):
    """Loop over anchors, positives (the first, or all) and negatives, textbook formula (module docstring)."""
    out = []
    for i in range(len(y)):
        pos = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        mixed_pos = pos[:1] if positives == "first" else pos
        neg = [n for n in range(len(y)) if y[n] != y[i]]
        d = lambda a, b: float((unit(a) - unit(b)).norm())
        clean = 0.0
        if pos:
            clean += np.mean([max(d(e[i], e[p]) - mp, 0.0) for p in pos])
        if neg:
            clean += np.mean([max(mn - d(e[i], e[n]), 0.0) for n in neg])
        mixed = [lam * max(d(e[i], lam * e[p] + (1 - lam) * e[n]) - mp, 0.0)
                 + (1 - lam) * max(mn - d(e[i], lam * e[p] + (1 - lam) * e[n]), 0.0) for p in mixed_pos for n in neg]
        out.append(clean + w * (np.mean(mixed) if mixed else 0.0))
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("positives", ["first", "all"])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.77, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_metrix_matches_the_loop(lam, seed, positives):
    e, y = batch(n_classes=3, per_class=3, seed=seed)
    y[0] = 2 if int(y[0]) != 2 else 1  # unbalanced classes
    got = P.metrix_contrastive_loss(e, y, lam=lam, neg_margin=1.1, pos_margin=0.05, weight=0.7, positives=positives,
                                    reduction="none")
    torch.testing.assert_close(got, ref_metrix(e, y, lam, mp=0.05, mn=1.1, w=0.7, positives=positives))


def test_metrix_special_cases_reduce_to_the_clean_terms():
    e, y = batch(n_classes=4, per_class=3, seed=3)
    clean = P.contrastive_loss(e, y, neg_margin=0.5, reduction="none")
    torch.testing.assert_close(P.metrix_contrastive_loss(e, y, lam=0.4, weight=0.0, reduction="none"), clean)
    pos, neg = P.pair_masks(y)
    d = P.pairwise_distance(e)
    pos_term = ((d * pos).sum(1) / pos.sum(1))
    neg_term = (((0.5 - d).clamp_min(0) * neg).sum(1) / neg.sum(1))
    # λ = 1: the mixed vector is the positive, and only the positive term acts; λ = 0: the negative, only its term
    torch.testing.assert_close(P.metrix_contrastive_loss(e, y, lam=1.0, weight=1.0, positives="all", reduction="none"),
                               clean + pos_term)
    first = pos.to(torch.uint8).argmax(1)
    torch.testing.assert_close(P.metrix_contrastive_loss(e, y, lam=1.0, weight=1.0, reduction="none"),
                               clean + d[torch.arange(12), first])
    for positives in ("first", "all"):
        torch.testing.assert_close(P.metrix_contrastive_loss(e, y, lam=0.0, weight=1.0, positives=positives,
                                                             reduction="none"), clean + neg_term)
    assert float(P.metrix_contrastive_loss(e, y, lam=0.5, reduction="sum")) == pytest.approx(
        float(P.metrix_contrastive_loss(e, y, lam=0.5, reduction="none").sum()))


@pytest.mark.parametrize("positives", ["first", "all"])
def test_mix_positive_negative_lists_the_triples(positives):
    e, y = batch(n_classes=3, per_class=3, seed=5)
    a, mixed = P.mix_positive_negative(e, y, 0.25, positives=positives)
    first = {i: min(p for p in range(9) if p != i and y[p] == y[i]) for i in range(9)}
    expected = [(i, p, n) for i in range(9) for p in range(9) for n in range(9)
                if p != i and y[p] == y[i] and y[n] != y[i] and (positives == "all" or p == first[i])]
    assert a.tolist() == [t[0] for t in expected]
    torch.testing.assert_close(mixed, torch.stack([0.25 * e[p] + 0.75 * e[n] for _, p, n in expected]))


def test_metrix_gradcheck():
    e, y = batch(n_classes=3, per_class=3, seed=7)
    assert torch.autograd.gradcheck(
        lambda x: P.metrix_contrastive_loss(x, y, lam=0.37, pos_margin=0.1, neg_margin=1.3, reduction="none"),
        (e.requires_grad_(),), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("loss", [P.metrix_contrastive_loss,
                                  # β = 400: e^{β(S − b)} far beyond float32's range
                                  partial(P.metrix_multi_similarity_loss, beta=400.0)])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_metrix_extreme_scales_stay_finite(scale, lam, loss):
    e, y = batch(n_classes=3, per_class=3, seed=2)
    e = (e * scale).float().requires_grad_()
    out = loss(e, y, lam=lam)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(e.grad).all()


@pytest.mark.parametrize("module, loss", [(P.MetrixContrastiveLoss, P.metrix_contrastive_loss),
                                          (P.MetrixMultiSimilarityLoss, P.metrix_multi_similarity_loss)])
def test_metrix_module_draws_beta_lambdas_reproducibly(module, loss):
    e, y = batch(n_classes=3, per_class=3, seed=4)
    a, b = module(seed=3), module(seed=3)
    values = [(float(a(e, y)), a.last_lam) for _ in range(3)]
    assert values == [(float(b(e, y)), b.last_lam) for _ in range(3)]
    lams = [v[1] for v in values]
    assert len(set(lams)) == 3 and all(0 < v < 1 for v in lams)
    assert values[0][0] == pytest.approx(float(loss(e, y, lam=lams[0])))
    rng = np.random.default_rng(3)
    assert lams == [float(rng.beta(2.0, 2.0)) for _ in range(3)]  # Beta(α, α) with the default α = 2


def test_metrix_errors_name_the_fix():
    e, y = batch()
    with pytest.raises(ValueError, match="lam"):
        P.metrix_contrastive_loss(e, y, lam=1.5)
    with pytest.raises(ValueError, match="weight"):
        P.metrix_contrastive_loss(e, y, lam=0.5, weight=-1.0)
    with pytest.raises(TypeError, match="lam"):
        P.metrix_contrastive_loss(e, y, lam="half")
    with pytest.raises(ValueError, match="alpha"):
        P.MetrixContrastiveLoss(alpha=0.0)
    with pytest.raises(ValueError, match="positives"):
        P.metrix_contrastive_loss(e, y, lam=0.5, positives="hardest")
    with pytest.raises(TypeError, match="int64"):
        P.metrix_contrastive_loss(e, y.float(), lam=0.5)


# --- Metrix on the multi-similarity loss -------------------------------------------------------------------


def cos(a, b):
    return float(unit(a) @ unit(b))


def ref_metrix_ms(e, y, lam, a=2.0, b=40.0, base=0.5, eps=None, w=0.4, positives="first"):
    """Loop: clean MS (every pair, or the ε-mined ones) + w × the label-weighted MS sums over the mixed vectors."""
    out = []
    for i in range(len(y)):
        pos = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        neg = [n for n in range(len(y)) if y[n] != y[i]]
        kept_pos, kept_neg = pos, neg
        if eps is not None and pos and neg:
            max_n, min_p = max(cos(e[i], e[n]) for n in neg), min(cos(e[i], e[p]) for p in pos)
            kept_pos = [p for p in pos if cos(e[i], e[p]) - eps < max_n]
            kept_neg = [n for n in neg if cos(e[i], e[n]) + eps > min_p]
        elif eps is not None:
            kept_pos, kept_neg = [], []
        clean = (np.log1p(sum(np.exp(-a * (cos(e[i], e[p]) - base)) for p in kept_pos)) / a
                 + np.log1p(sum(np.exp(b * (cos(e[i], e[n]) - base)) for n in kept_neg)) / b)
        mixed = [lam * e[p] + (1 - lam) * e[n] for p in (pos[:1] if positives == "first" else pos) for n in neg]
        mix = (np.log1p(lam * sum(np.exp(-a * (cos(e[i], z) - base)) for z in mixed)) / a
               + np.log1p((1 - lam) * sum(np.exp(b * (cos(e[i], z) - base)) for z in mixed)) / b)
        out.append(clean + w * mix)
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("positives", ["first", "all"])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.77, 1.0])
@pytest.mark.parametrize("eps", [None, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_metrix_ms_matches_the_loop(lam, eps, seed, positives):
    e, y = batch(n_classes=3, per_class=3, seed=seed)
    y[0] = 2 if int(y[0]) != 2 else 1  # unbalanced classes
    got = P.metrix_multi_similarity_loss(e, y, lam=lam, alpha=3.0, beta=7.0, base=0.2, epsilon=eps, weight=0.7,
                                         positives=positives, reduction="none")
    torch.testing.assert_close(got, ref_metrix_ms(e, y, lam, a=3.0, b=7.0, base=0.2, eps=eps, w=0.7,
                                                  positives=positives))


def test_metrix_ms_special_cases_reduce_to_the_clean_loss():
    e, y = batch(n_classes=4, per_class=3, seed=3)
    for eps in (None, 0.1):
        clean = P.multi_similarity_loss(e, y, epsilon=eps, reduction="none")
        torch.testing.assert_close(P.metrix_multi_similarity_loss(e, y, lam=0.4, epsilon=eps, weight=0.0,
                                                                  reduction="none"), clean)
    torch.testing.assert_close(P.metrix_multi_similarity_loss(e, y, lam=0.6, epsilon=None, weight=0.0),
                               P.multi_similarity_loss(e, y, epsilon=None))
    pos, neg = P.pair_masks(y)
    s = P.pairwise_similarity(e)
    clean = P.multi_similarity_loss(e, y, epsilon=None, reduction="none")
    # λ = 1 with every positive mixed: each positive appears once per negative (|N| = 9), only the positive sum acts,
    # i.e. MS's positive term with its sum scaled by |N|; λ = 0: the negative term with its sum scaled by |P| = 2
    pos_sum = (torch.exp(-2.0 * (s - 0.5)) * pos).sum(1)
    neg_sum = (torch.exp(40.0 * (s - 0.5)) * neg).sum(1)
    torch.testing.assert_close(P.metrix_multi_similarity_loss(e, y, lam=1.0, epsilon=None, weight=1.0, positives="all",
                                                              reduction="none"), clean + torch.log1p(9 * pos_sum) / 2.0)
    torch.testing.assert_close(P.metrix_multi_similarity_loss(e, y, lam=0.0, epsilon=None, weight=1.0, positives="all",
                                                              reduction="none"), clean + torch.log1p(2 * neg_sum) / 40.0)
    # λ = 0 with the first positive only: each negative once, the clean negative term exactly
    torch.testing.assert_close(P.metrix_multi_similarity_loss(e, y, lam=0.0, epsilon=None, weight=1.0, reduction="none"),
                               clean + torch.log1p(neg_sum) / 40.0)
    assert float(P.metrix_multi_similarity_loss(e, y, lam=0.5, reduction="sum")) == pytest.approx(
        float(P.metrix_multi_similarity_loss(e, y, lam=0.5, reduction="none").sum()))


def test_metrix_ms_anchor_without_negatives_or_mixed_pairs():
    e = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(9))
    y = torch.tensor([0, 0, 0, 0, 1])  # anchor 4 has no positive: no mixed pair, only clean negatives
    got = P.metrix_multi_similarity_loss(e, y, lam=0.3, epsilon=None, reduction="none")
    torch.testing.assert_close(got, ref_metrix_ms(e, y, 0.3))
    single = P.metrix_multi_similarity_loss(e[:4], y[:4], lam=0.3)  # one class: no pair at all
    assert float(single) == 0.0


def test_metrix_ms_gradcheck():
    e, y = batch(n_classes=3, per_class=3, seed=7)
    assert torch.autograd.gradcheck(
        lambda x: P.metrix_multi_similarity_loss(x, y, lam=0.37, alpha=2.0, beta=5.0, epsilon=None, reduction="none"),
        (e.requires_grad_(),), eps=1e-6, atol=1e-5)


def test_metrix_ms_errors_name_the_fix():
    e, y = batch()
    with pytest.raises(ValueError, match="lam"):
        P.metrix_multi_similarity_loss(e, y, lam=-0.1)
    with pytest.raises(TypeError, match="lam"):
        P.metrix_multi_similarity_loss(e, y, lam=None)
    with pytest.raises(ValueError, match="weight"):
        P.metrix_multi_similarity_loss(e, y, lam=0.5, weight=-1.0)
    with pytest.raises(ValueError, match="beta"):
        P.metrix_multi_similarity_loss(e, y, lam=0.5, beta=0.0)
    with pytest.raises(ValueError, match="base"):
        P.metrix_multi_similarity_loss(e, y, lam=0.5, base=2.0)
    with pytest.raises(ValueError, match="positives"):
        P.metrix_multi_similarity_loss(e, y, lam=0.5, positives="hardest")
    with pytest.raises(ValueError, match="reduction"):
        P.metrix_multi_similarity_loss(e, y, lam=0.5, reduction="max")
    with pytest.raises(TypeError, match="int64"):
        P.metrix_multi_similarity_loss(e, y.float(), lam=0.5)
    with pytest.raises(ValueError, match="mix_alpha"):
        P.MetrixMultiSimilarityLoss(mix_alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        P.MetrixMultiSimilarityLoss(alpha=-1.0)
    with pytest.raises(ValueError, match="positives"):
        P.MetrixMultiSimilarityLoss(positives="hardest")


# --- nearest prototype and episodes ------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_nearest_prototype_matches_the_loop(normalize):
    g = torch.Generator().manual_seed(0)
    s, sy = torch.randn(10, 3, generator=g, dtype=F64), torch.tensor([4, 4, 7, 7, 7, 9, 9, 1, 1, 1])
    q = torch.randn(6, 3, generator=g, dtype=F64)
    got = P.nearest_prototype(s, sy, q, normalize=normalize)
    classes = sorted(set(sy.tolist()))
    for qi, pred in zip(q, got.tolist()):
        if normalize:
            protos = {c: unit(torch.stack([unit(v) for v in s[sy == c]]).mean(0)) for c in classes}
            best = max(classes, key=lambda c: float(unit(qi) @ protos[c]))
        else:
            best = min(classes, key=lambda c: float((qi - s[sy == c].mean(0)).square().sum()))
        assert pred == best


def test_nearest_prototype_classifies_separated_clusters_and_errors():
    centres = torch.eye(4, dtype=F64) * 5
    s = centres.repeat_interleave(2, 0) + 0.1
    sy = torch.arange(4).repeat_interleave(2)
    assert P.nearest_prototype(s, sy, centres - 0.05).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="at least one"):
        P.nearest_prototype(s[:0], sy[:0], centres)
    with pytest.raises(TypeError, match="normalize"):
        P.nearest_prototype(s, sy, centres, normalize=1)


def test_few_shot_episodes_hold_n_way_k_shot_disjoint_support_and_query():
    y = torch.arange(6).repeat_interleave(7)[torch.randperm(42, generator=torch.Generator().manual_seed(1))]
    eps = few_shot_episodes(y, 5, 2, n_query=3, n_episodes=20, generator=torch.Generator().manual_seed(0))
    assert len(eps) == 20
    for s, q in eps:
        assert len(s) == 10 and len(q) == 15 and not set(s.tolist()) & set(q.tolist())
        ys, yq = y[s].reshape(5, 2), y[q].reshape(5, 3)
        assert (ys == ys[:, :1]).all() and (yq == ys[:, :1]).all() and len(set(ys[:, 0].tolist())) == 5
    again = few_shot_episodes(y, 5, 2, n_query=3, n_episodes=20, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(eps, again))
    assert len({tuple(sorted(y[s].unique().tolist())) for s, _ in eps}) > 1  # the classes vary


def test_few_shot_episodes_errors():
    y = torch.arange(3).repeat_interleave(4)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="n_way"):
        few_shot_episodes(y, 4, 1, n_query=1, n_episodes=1, generator=g)
    with pytest.raises(ValueError, match="fewer than"):
        few_shot_episodes(y, 3, 2, n_query=3, n_episodes=1, generator=g)
    with pytest.raises(ValueError, match="k_shot"):
        few_shot_episodes(y, 3, 0, n_query=1, n_episodes=1, generator=g)
    with pytest.raises(TypeError, match="int64"):
        few_shot_episodes(y.float(), 3, 1, n_query=1, n_episodes=1, generator=g)


# --- proto-triplet on unit embeddings (the first author's implementation) ----------------------------------


def test_proto_triplet_normalized_is_the_loss_of_unit_embeddings_with_unit_centroids():
    e, y = batch(n_classes=4, per_class=3, seed=6)
    u = F.normalize(e, dim=1)
    out = []
    for i in range(len(y)):
        cent = {c: unit(u[y == c].mean(0)) for c in range(4)}
        dp = float((u[i] - cent[int(y[i])]).square().sum())
        dn = [float((u[i] - cent[c]).square().sum()) for c in range(4) if c != int(y[i])]
        farther = [v for v in dn if v > dp]
        out.append(max(dp - (min(farther) if farther else max(dn)) + 1.0, 0.0))
    torch.testing.assert_close(P.proto_triplet_loss(e, y, normalize=True, reduction="none"),
                               torch.tensor(out, dtype=F64))
    assert torch.autograd.gradcheck(lambda x: P.proto_triplet_loss(x, y, normalize=True, reduction="none"),
                                    (e.clone().requires_grad_(),), eps=1e-6, atol=1e-5)
    with pytest.raises(TypeError, match="normalize"):
        P.proto_triplet_loss(e, y, normalize="yes")


# --- SCoRe: facility location and graph cut (the official code's forms) ------------------------------------


def ref_score(e, y, kind, kernel, t=0.07, t0=0.07, lam=1.0):
    u = [unit(v) for v in e]
    n, d = len(y), e.shape[1]

    def s(i, j):
        c = float(u[i] @ u[j])
        return c if kernel == "cosine" else float(np.exp(-float((u[i] - u[j]).square().sum()) / d))

    out = []
    for i in range(n):
        same = [j for j in range(n) if y[j] == y[i]]  # i itself included
        other = [j for j in range(n) if y[j] != y[i]]
        if kind == "fl":
            out.append(t / t0 * lam * np.log(sum(np.exp(s(i, j)) for j in other) + len(same)))
        else:
            pos = [j for j in same if j != i]
            out.append(t / t0 * (np.log(sum(s(i, j) for j in other)) - np.log(lam * sum(s(i, j) for j in pos)))
                       if pos and other else 0.0)
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("kernel", ["cosine", "rbf"])
@pytest.mark.parametrize("seed", [0, 1])
def test_score_fl_matches_the_loop(kernel, seed):
    e, y = batch(n_classes=3, per_class=3, seed=seed)
    y[0] = 2 if int(y[0]) != 2 else 1
    torch.testing.assert_close(P.score_fl_loss(e, y, kernel=kernel, temperature=0.5, lam=0.7, reduction="none"),
                               ref_score(e, y, "fl", kernel, t=0.5, lam=0.7))


@pytest.mark.parametrize("seed", [0, 1])
def test_score_gc_matches_the_loop_and_skips_anchors_without_pairs(seed):
    e, y = batch(n_classes=3, per_class=3, seed=seed)
    y[0] = 5  # a singleton: no positive, not counted
    got = P.score_gc_loss(e, y, temperature=0.2, lam=2.0, reduction="none")
    torch.testing.assert_close(got, ref_score(e, y, "gc", "rbf", t=0.2, lam=2.0))
    assert float(got[0]) == 0.0
    mean = P.score_gc_loss(e, y, temperature=0.2, lam=2.0, reduction="mean")
    assert float(mean) == pytest.approx(float(got.sum()) / 8)  # the mean over the 8 counted anchors


def test_score_special_cases():
    e, y = batch(n_classes=4, per_class=3, seed=8)
    # one class only: FL is log N for every anchor, whatever the embeddings, with zero gradient
    x = e.clone().requires_grad_()
    out = P.score_fl_loss(x, torch.zeros(12, dtype=torch.long), reduction="none")
    torch.testing.assert_close(out, torch.full((12,), np.log(12.0), dtype=F64))
    out.sum().backward()
    assert float(x.grad.abs().max()) == 0.0
    # λ and τ/τ₀ enter as stated: GC shifts by −(τ/τ₀)·log λ, FL scales by λ·τ/τ₀
    base = P.score_gc_loss(e, y, reduction="none")
    torch.testing.assert_close(P.score_gc_loss(e, y, lam=3.0, reduction="none"), base - np.log(3.0))
    torch.testing.assert_close(P.score_fl_loss(e, y, temperature=0.14, lam=0.5, reduction="none"),
                               P.score_fl_loss(e, y, reduction="none"))
    # the rbf kernel is in (0, 1] with ones on the diagonal
    k = P.score_kernel(e, kernel="rbf")
    assert bool((k > 0).all() and (k <= 1 + 1e-12).all()) and torch.allclose(k.diagonal(), torch.ones(12, dtype=F64))


@pytest.mark.parametrize("fn", [P.score_fl_loss, P.score_gc_loss])
def test_score_gradcheck_and_extremes(fn):
    e, y = batch(n_classes=3, per_class=3, seed=9)
    assert torch.autograd.gradcheck(lambda x: fn(x, y, reduction="none"), (e.clone().requires_grad_(),),
                                    eps=1e-6, atol=1e-5)
    for scale in (1e-6, 1e6):
        x = (e * scale).float().requires_grad_()
        out = fn(x, y)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_score_errors_name_the_fix():
    e, y = batch()
    with pytest.raises(ValueError, match="kernel"):
        P.score_fl_loss(e, y, kernel="linear")
    with pytest.raises(ValueError, match="temperature"):
        P.score_fl_loss(e, y, temperature=0.0)
    with pytest.raises(ValueError, match="lam"):
        P.score_gc_loss(e, y, lam=-1.0)
    opposite = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], dtype=F64)
    with pytest.raises(ValueError, match="rbf"):  # cosine sums ≤ 0: the log-ratio is undefined
        P.score_gc_loss(opposite, torch.tensor([0, 0, 1, 1]), kernel="cosine")
