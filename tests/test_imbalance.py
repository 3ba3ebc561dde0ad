"""lossbook.imbalance: the long-tail losses, ASL, the macro-AUC losses, AUC-M with PESG, SAM, the Hessian's
spectrum, the Bayes decision, and the chapter's metrics and data helpers.

Each loss against its textbook formula in float64 (written out here, row by row), gradcheck, the
special cases the papers state (logit adjustment at τ = 0, balanced softmax with equal counts, VS at
γ = τ = 0, LDAM at margin 0 and s = 1 are cross-entropy), extreme logits and bad input. AUC-M's
gradients against LibAUC when it is installed. The contract tests (``tests/test_contract.py``)
cover the registered losses' torch options and declared properties.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import F64, assert_close64, make_logits, make_target

import lossbook
import lossbook.functional as LF
from lossbook import metrics
from lossbook.imbalance import (
    PESG,
    SAM,
    AUCMLoss,
    auc_square_loss,
    bayes_decision,
    class_priors,
    lanczos,
    ldam_margins,
    loss_hessian_spectrum,
    per_class_spectrum,
)
from lossbook.lab.data import multilabel_imbalance, one_vs_rest

N, C = 9, 5
COUNTS = torch.tensor([400.0, 120.0, 40.0, 9.0, 2.0], dtype=F64)


def _ce_rows(z, y):
    """−log softmax(z)_y, row by row, with math.log/exp on Python floats."""
    out = []
    for row, t in zip(z.tolist(), y.tolist()):
        m = max(row)
        out.append(m + math.log(sum(math.exp(v - m) for v in row)) - row[t])
    return torch.tensor(out, dtype=F64)


def _x_y(seed=0, scale=3.0):
    return make_logits(N, C, seed=seed, scale=scale), make_target(N, C, seed=seed + 1)


# --- the long-tail losses against their formulas -------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjusted_matches_formula(tau):
    z, y = _x_y()
    pi = COUNTS / COUNTS.sum()
    want = _ce_rows(z + tau * torch.log(pi).double(), y)
    assert_close64(LF.logit_adjusted_loss(z, y, class_counts=COUNTS, tau=tau, reduction="none"), want)


def test_balanced_softmax_is_the_paper_formula_and_logit_adjustment_at_tau_one():
    z, y = _x_y(3)
    n = COUNTS.double()
    want = torch.tensor([-math.log(n[t] * math.exp(row[t]) / sum(n[j] * math.exp(row[j]) for j in range(C)))
                         for row, t in zip(z.tolist(), y.tolist())], dtype=F64)
    got = LF.balanced_softmax_loss(z, y, class_counts=COUNTS, reduction="none")
    assert_close64(got, want, rtol=1e-10, atol=1e-10)
    assert_close64(got, LF.logit_adjusted_loss(z, y, class_counts=COUNTS, tau=1.0, reduction="none"))


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.9999])
def test_class_balanced_matches_effective_numbers(beta):
    z, y = _x_y(5)
    eff = [(1 - beta**n) / (1 - beta) for n in COUNTS.tolist()]
    w = [1 / e for e in eff]
    w = [v * C / sum(w) for v in w]
    want = torch.tensor(w, dtype=F64)[y] * _ce_rows(z, y)
    got = LF.class_balanced_loss(z, y, class_counts=COUNTS, beta=beta, reduction="none")
    assert_close64(got, want, rtol=1e-10, atol=1e-12)
    # "mean" divides by the number of rows (the weights are part of the formula)
    assert_close64(LF.class_balanced_loss(z, y, class_counts=COUNTS, beta=beta), want.mean(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("max_margin, scale", [(0.5, 30.0), (0.3, 1.0), (1.0, 5.0)])
def test_ldam_matches_formula(max_margin, scale):
    z, y = _x_y(7, scale=0.5)
    m = [n ** -0.25 for n in COUNTS.tolist()]
    delta = [v * max_margin / max(m) for v in m]
    shifted = z.clone()
    for i, t in enumerate(y.tolist()):
        shifted[i, t] -= delta[t]
    want = _ce_rows(scale * shifted, y)
    got = LF.ldam_loss(z, y, class_counts=COUNTS, max_margin=max_margin, scale=scale, reduction="none")
    assert_close64(got, want, rtol=1e-10, atol=1e-10)
    assert_close64(ldam_margins(COUNTS, max_margin).max(), torch.tensor(max_margin, dtype=F64))


@pytest.mark.parametrize("gamma, tau", [(0.3, 1.0), (0.2, 0.5), (1.0, 0.0)])
def test_vs_matches_formula(gamma, tau):
    z, y = _x_y(9)
    delta = torch.tensor([(n / COUNTS.max().item()) ** gamma for n in COUNTS.tolist()], dtype=F64)
    iota = tau * torch.log(COUNTS / COUNTS.sum()).double()
    want = _ce_rows(delta * z + iota, y)
    assert_close64(LF.vs_loss(z, y, class_counts=COUNTS, gamma=gamma, tau=tau, reduction="none"), want,
                   rtol=1e-10, atol=1e-10)


def test_special_cases_are_cross_entropy():
    z, y = _x_y(11)
    ce = LF.cross_entropy(z, y, reduction="none")
    uniform = torch.full((C,), 7.0)
    assert_close64(LF.logit_adjusted_loss(z, y, class_counts=COUNTS, tau=0.0, reduction="none"), ce)
    assert_close64(LF.logit_adjusted_loss(z, y, class_counts=uniform, tau=1.7, reduction="none"), ce)
    assert_close64(LF.balanced_softmax_loss(z, y, class_counts=uniform, reduction="none"), ce)
    assert_close64(LF.vs_loss(z, y, class_counts=COUNTS, gamma=0.0, tau=0.0, reduction="none"), ce)
    assert_close64(LF.ldam_loss(z, y, class_counts=COUNTS, max_margin=0.0, scale=1.0, reduction="none"), ce)
    assert_close64(LF.class_balanced_loss(z, y, class_counts=uniform, beta=0.99, reduction="none"), ce)
    # and they are not cross-entropy once the counts are skewed
    for fn in (LF.logit_adjusted_loss, LF.balanced_softmax_loss, LF.vs_loss, LF.ldam_loss, LF.class_balanced_loss):
        assert not torch.allclose(fn(z, y, class_counts=COUNTS, reduction="none"), ce)


def test_adjustment_favours_the_tail_in_the_gradient():
    """Logit adjustment lowers the loss's push on the head: at equal logits the gradient on a tail
    example's own logit is larger than under CE (the tail's logit must grow more)."""
    z = torch.zeros(1, C, dtype=F64, requires_grad=True)
    y_tail = torch.tensor([C - 1])
    g_la = torch.autograd.grad(LF.logit_adjusted_loss(z, y_tail, class_counts=COUNTS), z)[0]
    g_ce = torch.autograd.grad(LF.cross_entropy(z, y_tail), z)[0]
    assert g_la[0, C - 1] < g_ce[0, C - 1] < 0


LOSS_CASES = [
    (LF.logit_adjusted_loss, {"tau": 1.3}),
    (LF.balanced_softmax_loss, {}),
    (LF.class_balanced_loss, {"beta": 0.99}),
    (LF.ldam_loss, {"max_margin": 0.5, "scale": 4.0}),
    (LF.vs_loss, {"gamma": 0.3, "tau": 1.0}),
]


@pytest.mark.parametrize("fn, hp", LOSS_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_gradcheck(fn, hp):
    z = make_logits(4, C, seed=2).requires_grad_(True)
    y = make_target(4, C, seed=3)
    assert torch.autograd.gradcheck(lambda t: fn(t, y, class_counts=COUNTS, reduction="sum", **hp), (z,))
    assert torch.autograd.gradgradcheck(lambda t: fn(t, y, class_counts=COUNTS, reduction="sum", **hp), (z,))


@pytest.mark.parametrize("fn, hp", LOSS_CASES, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_extreme_logits_stay_finite(fn, hp, dtype):
    z = (torch.tensor([[1e4, -1e4, 0.0, 3.0, -2.0], [-1e4, 1e4, 1e4, -1e4, 0.0]], dtype=dtype)).requires_grad_(True)
    y = torch.tensor([1, 4])
    out = fn(z, y, class_counts=COUNTS, reduction="none", **hp)
    (g,) = torch.autograd.grad(out.sum(), z)
    assert torch.isfinite(out).all() and torch.isfinite(g).all()


def test_module_holds_counts_and_matches_function():
    z, y = _x_y(13)
    for cls, fn in ((lossbook.LogitAdjustedLoss, LF.logit_adjusted_loss), (lossbook.VSLoss, LF.vs_loss),
                    (lossbook.LDAMLoss, LF.ldam_loss), (lossbook.ClassBalancedLoss, LF.class_balanced_loss),
                    (lossbook.BalancedSoftmaxLoss, LF.balanced_softmax_loss)):
        assert_close64(cls(class_counts=COUNTS)(z, y), fn(z, y, class_counts=COUNTS))
    module = lossbook.VSLoss(COUNTS.tolist(), gamma=0.2, reduction="sum")
    assert_close64(module(z, y), LF.vs_loss(z, y, class_counts=COUNTS, gamma=0.2, reduction="sum"))
    assert module.class_counts.dtype == F64 and "classes=5" in repr(module)
    w = torch.linspace(0.5, 2.0, C, dtype=F64)
    assert_close64(lossbook.LDAMLoss(COUNTS, weight=w)(z, y), LF.ldam_loss(z, y, class_counts=COUNTS, weight=w))
    for name in ("LogitAdjustedLoss", "BalancedSoftmaxLoss", "ClassBalancedLoss", "LDAMLoss", "VSLoss"):
        assert lossbook.method_info(name).kind == "stateful loss"


@pytest.mark.parametrize("fn, hp", [(LF.logit_adjusted_loss, {"tau": 1.3}), (LF.balanced_softmax_loss, {}),
                                    (LF.class_balanced_loss, {"beta": 0.99}), (LF.vs_loss, {"gamma": 0.3})],
                         ids=["la", "bs", "cb", "vs"])
def test_torch_options_follow_the_engine(fn, hp):
    """weight, ignore_index, label smoothing, probability targets and empty batches, as cross-entropy's."""
    z, y = _x_y(19)
    kw = {"class_counts": COUNTS, **hp}
    terms = torch.stack([fn(z, torch.full((N,), k), reduction="none", **kw) for k in range(C)], 1)  # ℓ(z_i, k)
    w = torch.linspace(0.5, 2.0, C, dtype=F64)
    assert_close64(fn(z, y, weight=w, **kw), (w[y] * terms[torch.arange(N), y]).sum() / w[y].sum())
    eps = 0.2
    want = (1 - eps) * terms[torch.arange(N), y] + eps / C * terms.sum(1)
    assert_close64(fn(z, y, label_smoothing=eps, reduction="none", **kw), want)
    q = torch.softmax(make_logits(N, C, seed=3), 1)
    assert_close64(fn(z, q, reduction="none", **kw), (q * terms).sum(1))
    zg = z.clone().requires_grad_(True)
    y_ign = y.clone()
    y_ign[[0, 3]] = -1
    (g,) = torch.autograd.grad(fn(zg, y_ign, ignore_index=-1, **kw), zg)
    assert (g[[0, 3]] == 0).all() and (g[1] != 0).any()
    empty = torch.zeros(0, C, dtype=F64, requires_grad=True)
    out = fn(empty, torch.zeros(0, dtype=torch.long), **kw)
    assert out.item() == 0.0 and out.requires_grad


@pytest.mark.parametrize("counts, exc, match", [
    (torch.tensor([3.0, 0.0, 1.0, 1.0, 1.0]), ValueError, r"finite and > 0.*clamp_min\(1\)"),
    (torch.tensor([[3.0, 1.0]]), ValueError, r"one count per class, shape \(C,\)"),
    ("abc", TypeError, r"tensor or a sequence of C counts.*bincount"),
    (torch.ones(4), ValueError, r"class_counts has 4 entries but the logits have 5 classes"),
])
@pytest.mark.parametrize("fn", [LF.logit_adjusted_loss, LF.balanced_softmax_loss, LF.class_balanced_loss,
                                LF.ldam_loss, LF.vs_loss])
def test_bad_counts_raise_with_the_fix(fn, counts, exc, match):
    z, y = _x_y()
    with pytest.raises(exc, match=match):
        fn(z, y, class_counts=counts)


def test_ldam_takes_class_indices_only():
    z, _ = _x_y()
    with pytest.raises((TypeError, ValueError), match="ldam_loss"):
        LF.ldam_loss(z, torch.softmax(z, 1), class_counts=COUNTS)


def test_bad_hyperparameters_raise_at_construction():
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\)"):
        lossbook.ClassBalancedLoss(class_counts=COUNTS, beta=1.0)
    with pytest.raises(ValueError, match="scale must lie in"):
        lossbook.LDAMLoss(class_counts=COUNTS, scale=0.0)
    with pytest.raises(ValueError, match="gamma must lie in"):
        lossbook.VSLoss(class_counts=COUNTS, gamma=-0.1)
    with pytest.raises(TypeError, match="tau must be a real number"):
        lossbook.LogitAdjustedLoss(class_counts=COUNTS, tau="1")


# --- the Bayes decision ---------------------------------------------------------------------------------------


def test_bayes_decision_is_post_hoc_logit_adjustment_and_respects_a_cost_matrix():
    z, _ = _x_y(17, scale=2.0)
    pi = class_priors(COUNTS)
    assert torch.equal(bayes_decision(z, class_counts=COUNTS), (z - torch.log(pi)).argmax(1))
    assert torch.equal(bayes_decision(z), z.argmax(1))
    # the 0–1 cost matrix gives the same decisions as the argmax
    zero_one = 1.0 - torch.eye(C, dtype=F64)
    assert torch.equal(bayes_decision(z, class_counts=COUNTS, cost=zero_one), bayes_decision(z, class_counts=COUNTS))
    # a cost matrix: explicit expected risk, row by row
    cost = torch.rand(C, C, generator=torch.Generator().manual_seed(0), dtype=F64) + 5 * zero_one
    post = torch.softmax(z - torch.log(pi), 1)
    want = torch.tensor([min(range(C), key=lambda k: sum(cost[c, k] * post[i, c] for c in range(C)))
                         for i in range(N)])
    assert torch.equal(bayes_decision(z, class_counts=COUNTS, cost=cost), want)
    # test priors equal to the training priors: no change
    assert torch.equal(bayes_decision(z, class_counts=COUNTS, test_priors=COUNTS), z.argmax(1))
    with pytest.raises(ValueError, match=r"cost must be a floating \(C, C\)"):
        bayes_decision(z, cost=torch.eye(3))


# --- ASL and the macro-AUC losses ------------------------------------------------------------------------------


def _asl_reference(z, y, gp, gn, m):
    total = []
    for zr, yr in zip(z.tolist(), y.tolist()):
        s = 0.0
        for v, t in zip(zr, yr):
            p = 1 / (1 + math.exp(-v))
            if t == 1:
                s += (1 - p) ** gp * math.log(p)
            else:
                pm = max(p - m, 0.0)
                s += pm ** gn * math.log(1 - pm)
        total.append(-s)
    return torch.tensor(total, dtype=F64)


def _labels(n=8, k=6, seed=0, rate=0.3):
    return (torch.rand(n, k, generator=torch.Generator().manual_seed(seed)) < rate).to(F64)


@pytest.mark.parametrize("gp, gn, m", [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (2.0, 2.0, 0.0), (0.0, 0.0, 0.2)])
def test_asl_matches_formula(gp, gn, m):
    z, y = make_logits(8, 6, seed=4), _labels()
    got = LF.asymmetric_loss(z, y, gamma_pos=gp, gamma_neg=gn, clip=m, reduction="none")
    assert_close64(got, _asl_reference(z, y, gp, gn, m), rtol=1e-10, atol=1e-12)


def test_asl_paper_default_and_the_code_default():
    """Our defaults are the paper's (γ₊ = 0, γ₋ = 4, m = 0.05, mean over rows); the authors' code
    (γ₊ = 1, the sum) is reached with gamma_pos=1, reduction="sum"."""
    z, y = make_logits(8, 6, seed=5), _labels(seed=1)
    assert_close64(LF.asymmetric_loss(z, y), _asl_reference(z, y, 0.0, 4.0, 0.05).mean(), rtol=1e-10, atol=1e-12)
    code = LF.asymmetric_loss(z, y, gamma_pos=1.0, reduction="sum")
    assert_close64(code, _asl_reference(z, y, 1.0, 4.0, 0.05).sum(), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(code, LF.asymmetric_loss(z, y, reduction="sum"))


def test_asl_symmetric_without_clip_is_the_focal_loss():
    z, y = make_logits(8, 6, seed=6), _labels(seed=2)
    focal = LF.sigmoid_focal_loss(z, y, alpha=None, gamma=2.0, reduction="none").sum(1)
    assert_close64(LF.asymmetric_loss(z, y, gamma_pos=2.0, gamma_neg=2.0, clip=0.0, reduction="none"), focal,
                   rtol=1e-10, atol=1e-12)
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(1)
    assert_close64(LF.asymmetric_loss(z, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.0, reduction="none"), bce)


def test_asl_gradcheck_and_extreme_logits():
    z = make_logits(4, 5, seed=7).requires_grad_(True)
    y = _labels(4, 5, seed=3, rate=0.4)
    assert torch.autograd.gradcheck(lambda t: LF.asymmetric_loss(t, y, clip=0.05), (z,))
    big = torch.tensor([[1e4, -1e4, 30.0], [-1e4, 1e4, -30.0]], dtype=torch.float32, requires_grad=True)
    yb = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    out = LF.asymmetric_loss(big, yb, gamma_pos=1.0)
    (g,) = torch.autograd.grad(out, big)
    assert torch.isfinite(out) and torch.isfinite(g).all()


def test_asl_bad_input():
    z = make_logits(4, 5)
    with pytest.raises(ValueError, match=r"0/1 label matrix shaped like input \(4, 5\).*one_hot"):
        LF.asymmetric_loss(z, make_target(4, 5))
    with pytest.raises(ValueError, match="must hold 0/1 labels.*Binarise"):
        LF.asymmetric_loss(z, torch.full((4, 5), 0.5, dtype=F64))
    with pytest.raises(ValueError, match=r"clip must lie in \[0, 1\)"):
        LF.asymmetric_loss(z, torch.zeros(4, 5, dtype=F64), clip=1.0)


def _per_label_mean(z, y, term):
    """The mean over labels with a positive and a negative row of term(positive scores, negative scores)."""
    per = []
    for k in range(len(z[0])):
        pos = [z[i][k] for i in range(len(z)) if y[i][k] == 1]
        neg = [z[i][k] for i in range(len(z)) if y[i][k] == 0]
        if pos and neg:
            per.append(term(pos, neg))
    return sum(per) / len(per)


def _pairwise_reference(z, y, phi):
    return _per_label_mean(z, y, lambda pos, neg: sum(phi(a - b) for a in pos for b in neg) / (len(pos) * len(neg)))


def _reweighted_reference(z, y, phi):
    return _per_label_mean(z, y, lambda pos, neg: sum(map(phi, pos)) / len(pos) + sum(phi(-b) for b in neg) / len(neg))


@pytest.mark.parametrize("surrogate", ["logistic", "squared_hinge"])
def test_macro_auc_losses_match_their_definitions(surrogate):
    phi = (lambda t: math.log1p(math.exp(-t))) if surrogate == "logistic" else (lambda t: max(0.0, 1 - t) ** 2)
    z, y = make_logits(10, 4, seed=8), _labels(10, 4, seed=4)
    y[:, 3] = 1.0  # a label without negatives is left out of the pairwise and re-weighted losses
    zl = z.tolist()
    want_pair = _pairwise_reference(zl, y.tolist(), phi)
    want_rw = _reweighted_reference(zl, y.tolist(), phi)
    assert math.isclose(LF.macro_auc_loss(z, y, kind="pairwise", surrogate=surrogate).item(), want_pair, rel_tol=1e-10)
    assert math.isclose(LF.macro_auc_loss(z, y, kind="reweighted", surrogate=surrogate).item(), want_rw, rel_tol=1e-10)
    if surrogate == "logistic":
        assert_close64(LF.macro_auc_loss(z, y, kind="univariate"), F.binary_cross_entropy_with_logits(z, y))
    zg = z.clone().requires_grad_(True)
    for kind in ("univariate", "pairwise", "reweighted"):
        assert torch.autograd.gradcheck(lambda t, k=kind: LF.macro_auc_loss(t, y, kind=k, surrogate=surrogate), (zg,))


def test_macro_auc_loss_bad_input():
    z, y = make_logits(4, 3), _labels(4, 3)
    with pytest.raises(ValueError, match="kind must be one of"):
        LF.macro_auc_loss(z, y, kind="listwise")
    with pytest.raises(ValueError, match="surrogate must be one of"):
        LF.macro_auc_loss(z, y, surrogate="hinge")
    empty = torch.zeros(0, 3, dtype=F64, requires_grad=True)
    out = LF.macro_auc_loss(empty, torch.zeros(0, 3, dtype=F64))
    assert out.item() == 0.0 and out.requires_grad


# --- AUC-M, the AUC square loss and PESG ------------------------------------------------------------------------


def _scores(n=40, seed=0, pos_rate=0.2):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < pos_rate).long()
    y[0], y[1] = 1, 0
    return torch.rand(n, generator=g, dtype=F64), y


def test_auc_square_loss_is_the_pairwise_mean():
    h, y = _scores()
    pos, neg = h[y == 1].tolist(), h[y == 0].tolist()
    want = sum((1.0 - a + b) ** 2 for a in pos for b in neg) / (len(pos) * len(neg))
    assert math.isclose(auc_square_loss(h, y, margin=1.0).item(), want, rel_tol=1e-12)
    assert auc_square_loss(h[y == 1], y[y == 1]).item() == 0.0


def test_aucm_matches_formula():
    h, y = _scores(seed=1)
    loss = AUCMLoss(margin=0.7, imratio=0.25).double()
    with torch.no_grad():
        loss.a.fill_(0.6), loss.b.fill_(0.2), loss.alpha.fill_(0.3)
    p, a, b, al, m = 0.25, 0.6, 0.2, 0.3, 0.7
    terms = [((1 - p) * (v - a) ** 2 if t == 1 else p * (v - b) ** 2)
             + 2 * al * (p * (1 - p) * m + (p * v if t == 0 else -(1 - p) * v)) - p * (1 - p) * al**2
             for v, t in zip(h.tolist(), y.tolist())]
    assert math.isclose(loss(h, y).item(), sum(terms) / len(terms), rel_tol=1e-12)
    # imratio=None uses the batch's share of positives
    auto = AUCMLoss(margin=0.7).double()
    manual = AUCMLoss(margin=0.7, imratio=float(y.double().mean())).double()
    assert math.isclose(auto(h, y).item(), manual(h, y).item(), rel_tol=1e-12)


def test_aucm_gradients_match_libauc():
    libauc_losses = pytest.importorskip("libauc.losses")
    h, y = _scores(n=32, seed=2)
    ours = AUCMLoss(margin=1.0, imratio=None).double()
    theirs = libauc_losses.AUCMLoss(margin=1.0, device="cpu").double()
    for m in (ours, theirs):
        with torch.no_grad():
            m.a.fill_(0.4), m.b.fill_(0.1), m.alpha.fill_(0.2)
    hs = [h.clone().requires_grad_(True) for _ in range(2)]
    lo = ours(hs[0], y)
    lt = theirs(hs[1].reshape(-1, 1), y.reshape(-1, 1))
    g_ours = torch.autograd.grad(lo, [hs[0], ours.a, ours.b, ours.alpha])
    g_theirs = torch.autograd.grad(lt, [hs[1], theirs.a, theirs.b, theirs.alpha])
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a.reshape(-1), b.reshape(-1).to(F64), rtol=1e-10, atol=1e-12)


def test_pesg_descends_on_the_model_and_ascends_on_alpha():
    h, y = _scores(seed=3)
    w = torch.nn.Parameter(torch.tensor(0.0, dtype=F64))
    loss = AUCMLoss(margin=1.0).double()
    opt = PESG([w], loss, lr=0.1, weight_decay=0.0, clip_value=10.0)
    value = loss(torch.sigmoid(h + w), y)
    value.backward()
    grads = {k: v.grad.clone() for k, v in (("w", w), ("a", loss.a), ("b", loss.b), ("alpha", loss.alpha))}
    before = {k: v.detach().clone() for k, v in (("w", w), ("a", loss.a), ("b", loss.b), ("alpha", loss.alpha))}
    opt.step()
    for k, v in (("w", w), ("a", loss.a), ("b", loss.b)):
        assert_close64(v.detach(), before[k] - 0.1 * grads[k])
    assert_close64(loss.alpha.detach(), (before["alpha"] + 0.1 * grads["alpha"]).clamp_min(0))
    assert grads["alpha"] > 0  # α = 0 and a positive margin term: the dual variable grows
    # the dual variable never goes negative
    with torch.no_grad():
        loss.alpha.fill_(0.01)
    opt.zero_grad()
    loss.alpha.grad = torch.tensor(-5.0, dtype=F64)
    opt.step()
    assert loss.alpha.item() == 0.0


def test_pesg_epoch_decay_pulls_towards_the_reference():
    loss = AUCMLoss().double()
    w = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))
    opt = PESG([w], loss, lr=0.5, weight_decay=0.0, epoch_decay=0.2)
    with torch.no_grad():
        w.fill_(3.0)  # reference stays at 1.0
    w.grad = torch.tensor(0.0, dtype=F64)
    opt.step()
    assert math.isclose(w.item(), 3.0 - 0.5 * 0.2 * 2.0)
    opt.update_regularizer(decay_factor=10.0)
    assert math.isclose(opt.param_groups[0]["lr"], 0.05)
    assert math.isclose(opt.state[w]["ref"].item(), w.item())


def test_pesg_trains_a_scorer_to_a_high_auc():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = (x[:, 0] + 0.3 * torch.randn(400, generator=g) > 1.2).long()
    torch.manual_seed(0)  # the initial weights, independent of the tests run before this one
    model = torch.nn.Linear(5, 1)
    loss = AUCMLoss(margin=1.0)
    opt = PESG(model.parameters(), loss, lr=0.1, weight_decay=1e-4)
    for _ in range(500):  # converged from any of the initial weights tried (AUC 0.987-0.991 for seeds 0-5)
        opt.zero_grad()
        loss(torch.sigmoid(model(x)), y).backward()
        opt.step()
    with torch.no_grad():
        assert metrics.macro_auc(model(x).squeeze(1), y) > 0.95


def test_auc_errors():
    with pytest.raises(ValueError, match=r"0/1 labels.*\(target > 0\)"):
        auc_square_loss(torch.rand(4), torch.tensor([1, -1, 1, -1]))
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(N, 1\)"):
        AUCMLoss()(torch.rand(4, 2), torch.tensor([1, 0, 1, 0]))
    with pytest.raises(TypeError, match="loss must be the AUCMLoss"):
        PESG([torch.nn.Parameter(torch.zeros(1))], torch.nn.MSELoss())
    with pytest.raises(ValueError, match="imratio must lie in"):
        AUCMLoss(imratio=1.5)


# --- SAM ------------------------------------------------------------------------------------------------------


def test_sam_step_is_the_gradient_at_the_perturbed_point():
    A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=F64)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=F64))
    opt = SAM(torch.optim.SGD([w], lr=0.1), rho=0.2)

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ A @ w
        loss.backward()
        return loss

    w0 = w.detach().clone()
    g = A @ w0
    eps = 0.2 * g / g.norm()
    loss = opt.step(closure)
    assert_close64(w.detach(), w0 - 0.1 * (A @ (w0 + eps)))
    assert math.isclose(loss.item(), (0.5 * w0 @ A @ w0).item())


def test_sam_with_rho_zero_is_the_base_optimiser():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(6, 3, dtype=F64), torch.tensor([0, 1, 0, 1, 1, 0])
    sam, base = SAM(torch.optim.SGD(a.parameters(), lr=0.3, momentum=0.9), rho=0.0), torch.optim.SGD(b.parameters(), lr=0.3, momentum=0.9)
    for _ in range(3):
        def closure():
            sam.zero_grad()
            loss = F.cross_entropy(a(x), y)
            loss.backward()
            return loss
        sam.step(closure)
        base.zero_grad()
        F.cross_entropy(b(x), y).backward()
        base.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert_close64(p.detach(), q.detach())


def test_sam_errors():
    with pytest.raises(TypeError, match="base must be a torch.optim.Optimizer"):
        SAM(torch.nn.Linear(2, 2))
    opt = SAM(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
    with pytest.raises(ValueError, match="call loss.backward"):
        opt.first_step()
    with pytest.raises(ValueError, match=r"rho must lie in \[0, inf\)"):
        SAM(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1), rho=-1)


# --- the Hessian's spectrum -------------------------------------------------------------------------------------


def _tiny():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    x = torch.randn(12, 3, dtype=F64)
    y = torch.tensor([0, 1, 2] * 4)
    return model, x, y


def _dense_hessian(model, x, y):
    from torch.func import functional_call, hessian

    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]
    sizes, shapes = [p.numel() for p in params], [p.shape for p in params]

    def f(flat):
        parts = dict(zip(names, (t.reshape(s) for t, s in zip(flat.split(sizes), shapes))))
        return F.cross_entropy(functional_call(model, parts, (x,)), y)

    return hessian(f)(torch.cat([p.reshape(-1) for p in params]))


def test_lanczos_matches_the_dense_hessian():
    model, x, y = _tiny()
    H = _dense_hessian(model, x, y)
    exact = torch.linalg.eigvalsh(H)
    full = loss_hessian_spectrum(model, F.cross_entropy, x, y, iters=H.shape[0])
    # the Krylov space holds each distinct eigenvalue once (CE's Hessian has a repeated 0: softmax's
    # shift invariance), so Lanczos may stop early: every Ritz value is an eigenvalue, the extremes agree
    assert (torch.cdist(full[:, None], exact[:, None]).min(1).values < 1e-8).all()
    assert_close64(full[[0, -1]], exact[[0, -1]], rtol=1e-8, atol=1e-10)
    few = loss_hessian_spectrum(model, F.cross_entropy, x, y, iters=15)
    assert math.isclose(few[-1].item(), exact[-1].item(), rel_tol=1e-6)  # the extreme values converge first
    assert few[0].item() >= exact[0].item() - 1e-9  # Ritz values lie inside the spectrum


def test_lanczos_on_a_known_matrix():
    d = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0, 10.0], dtype=F64)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=F64))
    M = Q @ torch.diag(d) @ Q.T
    assert_close64(lanczos(lambda v: M @ v, 6, iters=6), d, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="iters must be a positive int"):
        lanczos(lambda v: M @ v, 6, iters=0)


def test_per_class_spectrum_matches_dense_per_class_hessians():
    model, x, y = _tiny()
    df = per_class_spectrum(model, F.cross_entropy, x, y, num_classes=4, iters=31, top=2)
    assert list(df["class"]) == [0, 1, 2] and list(df["n"]) == [4, 4, 4]
    for _, row in df.iterrows():
        mask = y == row["class"]
        ev = torch.linalg.eigvalsh(_dense_hessian(model, x[mask], y[mask]))
        assert math.isclose(row["lambda_max"], ev[-1].item(), rel_tol=1e-7)
        assert math.isclose(row["lambda_min"], ev[0].item(), rel_tol=1e-6, abs_tol=1e-9)
        assert math.isclose(row["ratio"], ev[0].item() / ev[-1].item(), rel_tol=1e-6, abs_tol=1e-9)
        assert len(row["top"]) == 2
    # the caller's model is untouched (still float64 here, and its weights unchanged)
    assert all(p.dtype == F64 for p in model.parameters())


# --- metrics ----------------------------------------------------------------------------------------------------


def test_accuracy_metrics_against_sklearn():
    from sklearn.metrics import balanced_accuracy_score, recall_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 300)
    s = rng.normal(size=(300, 6)) + 1.5 * np.eye(6)[y]
    pred = s.argmax(1)
    assert math.isclose(metrics.balanced_accuracy(s, y), balanced_accuracy_score(y, pred), rel_tol=1e-12)
    np.testing.assert_allclose(metrics.per_class_accuracy(s, y), recall_score(y, pred, average=None), rtol=1e-12)
    np.testing.assert_allclose(metrics.per_class_accuracy(pred, y), recall_score(y, pred, average=None), rtol=1e-12)
    counts = np.array([500, 300, 100, 50, 10, 2])
    acc = recall_score(y, pred, average=None)
    groups = metrics.group_accuracy(s, y, counts)
    assert math.isclose(groups["many"], acc[:2].mean()) and math.isclose(groups["few"], acc[4:].mean())
    groups = metrics.group_accuracy(s, y, counts, many=100, few=20)
    assert math.isclose(groups["many"], acc[:2].mean()) and math.isclose(groups["medium"], acc[2:4].mean())
    assert math.isclose(groups["few"], acc[4:].mean())
    # a class absent from the targets is NaN and does not count
    assert np.isnan(metrics.per_class_accuracy(s[y != 5], y[y != 5])[5])
    with pytest.raises(ValueError, match="few ≤ many"):
        metrics.group_accuracy(s, y, counts, many=10, few=20)


def test_label_metrics_against_sklearn_and_torchmetrics():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    t = (rng.random((200, 7)) < 0.2).astype(int)
    s = rng.normal(size=(200, 7)) + t
    assert math.isclose(metrics.mean_average_precision(s, t), average_precision_score(t, s, average="macro"), rel_tol=1e-12)
    assert math.isclose(metrics.macro_auc(s, t), roc_auc_score(t, s, average="macro"), rel_tol=1e-12)
    assert math.isclose(metrics.micro_auc(s, t), roc_auc_score(t, s, average="micro"), rel_tol=1e-12)
    tm = pytest.importorskip("torchmetrics.functional.classification")
    got = tm.multilabel_auroc(torch.tensor(s), torch.tensor(t), num_labels=7, average="macro", thresholds=None)
    assert math.isclose(metrics.macro_auc(s, t), got.item(), rel_tol=1e-6)
    got = tm.multilabel_average_precision(torch.tensor(s), torch.tensor(t), num_labels=7, average="macro", thresholds=None)
    assert math.isclose(metrics.mean_average_precision(s, t), got.item(), rel_tol=1e-6)
    # a label without positives is left out of the mAP, without both classes out of the macro-AUC
    t[:, 0] = 0
    assert math.isclose(metrics.mean_average_precision(s, t), average_precision_score(t[:, 1:], s[:, 1:]), rel_tol=1e-12)
    assert math.isclose(metrics.macro_auc(s, t), roc_auc_score(t[:, 1:], s[:, 1:]), rel_tol=1e-12)
    # one binary task
    assert math.isclose(metrics.macro_auc(s[:, 1], t[:, 1]), roc_auc_score(t[:, 1], s[:, 1]))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        metrics.macro_auc(s, t * 2)


def test_neural_collapse_measures():
    k, d = 4, 6
    etf = np.sqrt(k / (k - 1)) * (np.eye(k) - 1.0 / k)  # simplex ETF in R^k (rows)
    means = np.pad(etf, ((0, 0), (0, d - k)))
    labels = np.repeat(np.arange(k), 5)
    collapsed = metrics.neural_collapse(means[labels], labels)
    assert collapsed.nc1 == pytest.approx(0.0, abs=1e-12)
    assert collapsed.equinorm == pytest.approx(0.0, abs=1e-12)
    assert collapsed.equiangularity == pytest.approx(0.0, abs=1e-12)
    assert collapsed.max_angle_gap == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    h = means[labels] + 0.3 * rng.normal(size=(len(labels), d))
    noisy = metrics.neural_collapse(h, labels)
    # NC1 = Tr(Σ_W Σ_B⁺)/K written out
    mu = np.stack([h[labels == c].mean(0) for c in range(k)])
    sb = (mu - h.mean(0)).T @ (mu - h.mean(0)) / k
    sw = sum((h[labels == c] - mu[c]).T @ (h[labels == c] - mu[c]) for c in range(k)) / len(h)
    assert noisy.nc1 == pytest.approx(np.trace(sw @ np.linalg.pinv(sb)) / k, rel=1e-10)
    assert noisy.nc1 > 0.01 and noisy.equiangularity > 0
    with pytest.raises(ValueError, match="at least two classes"):
        metrics.neural_collapse(h[:5], labels[:5])


# --- data helpers ------------------------------------------------------------------------------------------------


def test_one_vs_rest_fraction_and_noise():
    x = torch.randn(1000, 3)
    y = torch.arange(1000) % 10
    _, yb, flip = one_vs_rest(x, y, 3, positive_fraction=0.02, seed=0)
    assert int(yb.sum()) == round(0.02 * 900 / 0.98) and len(yb) == 900 + int(yb.sum()) and not flip.any()
    _, yb, flip = one_vs_rest(x, y, 3, noise=0.1, seed=1)
    clean = (y == 3).long()
    assert torch.equal(yb[~flip], clean[~flip]) and torch.equal(yb[flip], 1 - clean[flip])
    assert 0.05 < flip.double().mean() < 0.15
    with pytest.raises(ValueError, match="class 11 has no rows"):
        one_vs_rest(x, y, 11, seed=0)


def test_multilabel_imbalance_rates():
    x, t = multilabel_imbalance(20000, 5, max_rate=0.4, imbalance=20.0, seed=0)
    rates = t.mean(0)
    want = 0.4 * 20.0 ** (-torch.arange(5) / 4)
    torch.testing.assert_close(rates, want.float(), rtol=0.15, atol=0.005)
    assert x.shape == (20000, 20)
    with pytest.raises(ValueError, match="imbalance is max rate / min rate"):
        multilabel_imbalance(10, 3, imbalance=0.5, seed=0)
