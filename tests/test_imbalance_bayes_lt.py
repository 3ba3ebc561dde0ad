"""Bayes-LT's objective, the cosine head, LDAM-DRW's class weights and the False Head Rate.

The objective against its formula written out member by member and row by row in float64 (the
authors' code, lblaoke/RF-DLC ``model/loss.py``: LDAM margins on 30·cos, inverse-frequency weights
after the re-weighting epoch, the utility term, minus the annealed log-variance of the members'
heads), gradcheck, the special cases (one member without re-weighting is LDAM), extreme cosines,
bad input; the False Head Rate against a brute-force count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import F64, assert_close64, make_target

import lossbook
import lossbook.functional as LF
from lossbook import metrics
from lossbook.imbalance import (
    CosineHead,
    bayes_lt_loss,
    class_balanced_weights,
    ensemble_log_variance,
    ldam_margins,
    tail_sensitive_utility,
)

N, C, M, D = 8, 5, 3, 4
COUNTS = torch.tensor([400.0, 120.0, 40.0, 9.0, 2.0], dtype=F64)


def _cosines(seed=0, m=M):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(m, N, C, generator=g, dtype=F64) * 2 - 1


def _heads(seed=1, m=M):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(C, D, generator=g, dtype=F64) for _ in range(m)]


def _reference(cos, y, heads, *, reweight, diversity, utility=None, alpha=0.002, max_margin=0.5, s=30.0):
    """The objective with Python floats: per member a weighted mean of the margined CE rows (and the
    utility gain), averaged over members, minus diversity/2 × mean log population variance."""
    n = COUNTS.tolist()
    m_raw = [v ** -0.25 for v in n]
    delta = [v * max_margin / max(m_raw) for v in m_raw]
    w = [1 / v if reweight else 1.0 for v in n]
    total = 0.0
    for zm in cos.tolist():
        num = den = gain = 0.0
        for row, t in zip(zm, y.tolist()):
            a = [s * (v - (delta[t] if k == t else 0.0)) for k, v in enumerate(row)]
            mx = max(a)
            lse = mx + math.log(sum(math.exp(v - mx) for v in a))
            num += w[t] * (lse - a[t])
            den += w[t]
            if utility is not None and reweight:
                gain += sum(w[k] * utility[t][k] * (a[k] - lse) for k in range(C))
        total += num / den - (gain / (len(y) * alpha) if utility is not None and reweight else 0.0)
    total /= len(cos)
    if diversity > 0 and len(cos) > 1:
        flat = [h.flatten().tolist() for h in heads]
        logs = []
        for j in range(len(flat[0])):
            vals = [f[j] for f in flat]
            mean = sum(vals) / len(vals)
            logs.append(math.log(sum((v - mean) ** 2 for v in vals) / len(vals)))
        total -= 0.5 * diversity * sum(logs) / len(logs)
    return torch.tensor(total, dtype=F64)


@pytest.mark.parametrize("reweight, diversity, with_utility", [(False, 0.0, False), (True, 0.0, False),
                                                               (False, 0.7, False), (True, 0.3, True)])
def test_bayes_lt_matches_formula(reweight, diversity, with_utility):
    cos, y, heads = _cosines(), make_target(N, C, seed=3), _heads()
    u = tail_sensitive_utility(C) if with_utility else None
    got = bayes_lt_loss(cos, y, class_counts=COUNTS, head_weights=heads, reweight=reweight, diversity=diversity,
                        utility=u)
    want = _reference(cos, y, heads, reweight=reweight, diversity=diversity,
                      utility=None if u is None else u.tolist())
    assert_close64(got, want, rtol=1e-10, atol=1e-10)


def test_bayes_lt_special_cases():
    cos, y = _cosines(4), make_target(N, C, seed=5)
    one = cos[:1]
    # one member, no re-weighting: LDAM on s·cos; the diversity term is left out for one member
    assert_close64(bayes_lt_loss(one, y, class_counts=COUNTS, diversity=2.0), LF.ldam_loss(one[0], y, class_counts=COUNTS))
    # re-weighted: LDAM with weight 1/n (a weighted mean, so the weights' scale does not matter)
    w = 1 / COUNTS
    assert_close64(bayes_lt_loss(one, y, class_counts=COUNTS, reweight=True),
                   LF.ldam_loss(one[0], y, class_counts=COUNTS, weight=w * 123.0))
    # the utility term acts only once re-weighting is on (as in the code)
    u = tail_sensitive_utility(C)
    assert_close64(bayes_lt_loss(cos, y, class_counts=COUNTS, utility=u), bayes_lt_loss(cos, y, class_counts=COUNTS))
    assert not torch.allclose(bayes_lt_loss(cos, y, class_counts=COUNTS, reweight=True, utility=u),
                              bayes_lt_loss(cos, y, class_counts=COUNTS, reweight=True))
    # a list of members is the stacked tensor; the mean over members
    assert_close64(bayes_lt_loss(list(cos), y, class_counts=COUNTS), bayes_lt_loss(cos, y, class_counts=COUNTS))
    assert_close64(bayes_lt_loss(cos, y, class_counts=COUNTS),
                   sum(LF.ldam_loss(z, y, class_counts=COUNTS) for z in cos) / M)


def test_bayes_lt_diversity_rewards_spread_members():
    cos, y = _cosines(6), make_target(N, C, seed=7)
    base = _heads(8)
    near = [base[0] + 0.01 * h for h in base]
    far = [base[0] + 1.0 * h for h in base]
    lo = bayes_lt_loss(cos, y, class_counts=COUNTS, head_weights=far, diversity=1.0)
    hi = bayes_lt_loss(cos, y, class_counts=COUNTS, head_weights=near, diversity=1.0)
    assert lo < hi
    # scaling every member's deviation by a multiplies the variance by a²: the term moves by −λ·log a
    assert_close64(hi - lo, torch.tensor(math.log(100.0), dtype=F64), rtol=1e-10, atol=1e-10)


def test_bayes_lt_gradcheck():
    y = make_target(N, C, seed=9)
    cos = (_cosines(10) * 0.9).requires_grad_(True)
    heads = [h.requires_grad_(True) for h in _heads(11)]
    u = tail_sensitive_utility(C)
    assert torch.autograd.gradcheck(
        lambda c, a, b, d: bayes_lt_loss(c, y, class_counts=COUNTS, head_weights=[a, b, d], reweight=True,
                                         diversity=0.4, utility=u, alpha=0.5), (cos, *heads))


def test_bayes_lt_extreme_cosines_stay_finite():
    y = make_target(N, C, seed=12)
    for value in (1.0, -1.0):
        cos = torch.full((M, N, C), value, dtype=F64)
        cos[:, torch.arange(N), y] = -value
        cos.requires_grad_(True)
        loss = bayes_lt_loss(cos, y, class_counts=COUNTS, reweight=True, utility=tail_sensitive_utility(C))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(cos.grad).all()
    # float32 at the extreme: also finite
    cos32 = torch.ones(M, N, C, dtype=torch.float32)
    assert torch.isfinite(bayes_lt_loss(cos32, y, class_counts=COUNTS, reweight=True))


def test_bayes_lt_bad_input():
    cos, y = _cosines(), make_target(N, C, seed=3)
    with pytest.raises(ValueError, match="member_cosines"):
        bayes_lt_loss(cos[0], y, class_counts=COUNTS)
    with pytest.raises(ValueError, match="class_counts"):
        bayes_lt_loss(cos, y, class_counts=COUNTS[:3])
    with pytest.raises(TypeError, match="reweight"):
        bayes_lt_loss(cos, y, class_counts=COUNTS, reweight=1)
    with pytest.raises(ValueError, match="head_weights"):
        bayes_lt_loss(cos, y, class_counts=COUNTS, diversity=1.0)
    with pytest.raises(ValueError, match="diversity"):
        bayes_lt_loss(cos, y, class_counts=COUNTS, diversity=-1.0)
    with pytest.raises(ValueError, match="utility"):
        bayes_lt_loss(cos, y, class_counts=COUNTS, reweight=True, utility=torch.zeros(C, C + 1))
    with pytest.raises(ValueError, match="alpha"):
        bayes_lt_loss(cos, y, class_counts=COUNTS, alpha=0.0)


def test_ensemble_log_variance_formula_and_errors():
    heads = _heads(13)
    stack = torch.stack(heads)
    want = torch.log(stack.var(0, unbiased=False)).mean()
    assert_close64(ensemble_log_variance(heads), want)
    assert ensemble_log_variance([heads[0], heads[0]]) == -math.inf
    with pytest.raises(ValueError, match="at least two"):
        ensemble_log_variance(heads[:1])
    with pytest.raises(ValueError, match="shape"):
        ensemble_log_variance([heads[0], heads[1][:2]])


def test_tail_sensitive_utility():
    u = tail_sensitive_utility(4, -1.0)
    assert u.tolist() == [[0, 0, 0, 0], [-1, 0, 0, 0], [-1, -1, 0, 0], [-1, -1, -1, 0]]
    with pytest.raises(ValueError, match="num_classes"):
        tail_sensitive_utility(0)


def test_cosine_head():
    torch.manual_seed(0)
    head = CosineHead(D, C).double()
    x = torch.randn(N, D, dtype=F64)
    want = torch.tensor([[sum(a * b for a, b in zip(r, w)) / (math.sqrt(sum(a * a for a in r)) *
                                                              math.sqrt(sum(b * b for b in w)))
                          for w in head.weight.tolist()] for r in x.tolist()], dtype=F64)
    assert_close64(head(x), want, rtol=1e-10, atol=1e-12)
    assert_close64(head(3.7 * x), head(x), rtol=1e-10, atol=1e-12)  # features' norm does not matter
    assert (head(x).abs() <= 1).all()
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="CosineHead"):
            CosineHead(bad, C)
    assert "CosineHead" in lossbook.method_table("imbalance")["method"].tolist()


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.9999])
def test_class_balanced_weights(beta):
    eff = [(1 - beta**n) / (1 - beta) for n in COUNTS.tolist()]
    w = [1 / e for e in eff]
    want = torch.tensor([v * C / sum(w) for v in w], dtype=F64)
    assert_close64(class_balanced_weights(COUNTS, beta), want, rtol=1e-10, atol=1e-12)
    # the loss's own weights: class_balanced_loss is w_y · CE row by row
    z, y = _cosines(14)[0], make_target(N, C, seed=15)
    assert_close64(LF.class_balanced_loss(z, y, class_counts=COUNTS, beta=beta, reduction="none"),
                   class_balanced_weights(COUNTS, beta)[y] * LF.cross_entropy(z, y, reduction="none"))
    with pytest.raises(ValueError, match="class_counts is required"):
        class_balanced_weights(None)
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights(COUNTS, 1.0)


def test_ldam_margins_used_in_the_objective_are_the_papers():
    m = ldam_margins(COUNTS, 0.5)
    assert_close64(m / m.max(), (COUNTS ** -0.25) / (COUNTS ** -0.25).max())


# --- the False Head Rate ------------------------------------------------------------------------------------


def _fhr_brute(pred, target, counts, shares):
    order = sorted(range(len(counts)), key=lambda k: (-counts[k], k))
    rank = {k: r for r, k in enumerate(order)}
    rates = []
    for share in shares:
        border = int(len(counts) * share + 0.5)
        tail = [i for i, t in enumerate(target) if rank[t] >= border]
        if tail:
            rates.append(sum(1 for i in tail if rank[pred[i]] < border) / len(tail))
    return sum(rates) / len(rates)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_false_head_rate_matches_a_brute_force_count(seed):
    rng = np.random.default_rng(seed)
    c = 10
    counts = rng.integers(1, 500, c).tolist()
    target, scores = rng.integers(0, c, 300), rng.normal(size=(300, c))
    pred = scores.argmax(1)
    for shares in ((0.25, 0.5, 0.75), (0.3,)):
        want = _fhr_brute(pred.tolist(), target.tolist(), counts, shares)
        assert metrics.false_head_rate(pred, target, counts, tail_shares=shares) == pytest.approx(want, abs=1e-15)
        assert metrics.false_head_rate(scores, target, counts, tail_shares=shares) == pytest.approx(want, abs=1e-15)


def test_false_head_rate_special_cases_and_errors():
    counts = [40, 30, 20, 10]
    y = np.array([0, 1, 2, 3, 3])
    assert metrics.false_head_rate(y, y, counts) == 0.0  # a perfect classifier makes no false head
    assert metrics.false_head_rate(np.zeros(5, dtype=int), y, counts) == 1.0  # everything to the head class
    # relabelling the classes (with their counts) changes nothing
    perm = np.array([2, 0, 3, 1])
    pred = np.array([0, 0, 1, 2, 1])
    assert metrics.false_head_rate(perm[pred], perm[y], np.array(counts)[np.argsort(perm)]) == pytest.approx(
        metrics.false_head_rate(pred, y, counts))
    with pytest.raises(ValueError, match="tail_shares"):
        metrics.false_head_rate(y, y, counts, tail_shares=(1.5,))
    with pytest.raises(ValueError, match="class_counts"):
        metrics.false_head_rate(y, y, [5, 4])
