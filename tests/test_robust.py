"""The registered label-noise-robust losses (family "robust"): RCE/SCE, the normalised and
active–passive losses, LDR-KL and ALDR-KL.

References are written in float64 NumPy from the papers' formulas (and, where the code differs, from
the official code's formula), independently of the library's engine.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from conftest import F64, assert_close64, hp_kwargs, make_logits, make_prob_target, make_target, make_weight
from hypothesis import given
from hypothesis import strategies as st

import lossbook
import lossbook.functional as LF
from lossbook.robust import ACTIVE_LOSSES, LOG_ZERO, PASSIVE_LOSSES, aldr_lambda, log1m_softmax, loss_matrix

N, C = 8, 5
ROBUST = lossbook.list_losses(family="robust")


# --- NumPy references ---------------------------------------------------------------------------------


def _np(t):
    return t.detach().cpu().double().numpy()


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ref_parts(z, y, *, gamma=0.5, q=0.7, log_zero=LOG_ZERO):
    """Per-row value of every part at label y, straight from the formulas (NumPy, float64)."""
    z, y = _np(z), _np(y).astype(int)
    p = _softmax(z)
    n, c = z.shape
    onehot = np.eye(c)[y]
    rows = np.arange(n)

    def fl(k):  # focal loss at label k
        return -((1 - p[rows, k]) ** gamma) * np.log(p[rows, k])

    def gce(k):
        return (1 - p[rows, k] ** q) / q

    def rce_at(k):  # -Σ_j p_j log(clip(e_k, 1e-4, 1)) with log 0 := log_zero: the code's clip
        lab = np.eye(c)[k]
        log_lab = np.where(lab > 0, np.log(np.maximum(lab, 1e-300)), log_zero)
        return -(p * log_lab).sum(axis=1)

    def mae_l1(k):  # the paper's MAE, ‖e_k − p‖₁
        return np.abs(np.eye(c)[k] - p).sum(axis=1)

    allk = [np.full(n, k) for k in range(c)]
    return {
        "ce": -np.log(p[rows, y]),
        "focal": fl(y),
        "gce": gce(y),
        "mae": 1 - (onehot * p).sum(axis=1),
        "rce": rce_at(y),
        "nce": np.log(p[rows, y]) / np.log(p).sum(axis=1),
        "nfl": fl(y) / sum(fl(k) for k in allk),
        "ngce": (1 - p[rows, y] ** q) / (c - (p**q).sum(axis=1)),
        "nmae": mae_l1(y) / sum(mae_l1(k) for k in allk),
        "nrce": rce_at(y) / sum(rce_at(k) for k in allk),
    }


def _as(t, ref):
    return torch.as_tensor(ref, dtype=F64)


# --- values against the references -----------------------------------------------------------------

SINGLE = {
    "reverse_cross_entropy": "rce",
    "normalized_cross_entropy": "nce",
    "normalized_focal_loss": "nfl",
    "normalized_generalized_cross_entropy": "ngce",
    "normalized_mean_absolute_error": "nmae",
    "normalized_reverse_cross_entropy": "nrce",
}


@pytest.mark.parametrize("scale", [0.5, 3.0, 20.0])
@pytest.mark.parametrize("name", SINGLE)
def test_single_losses_match_reference(name, scale):
    x, y = make_logits(N, C, seed=1, scale=scale), make_target(N, C, seed=2)
    got = lossbook.loss_info(name).function(x, y, reduction="none")
    assert_close64(got, ref_parts(x, y)[SINGLE[name]], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_normalized_focal_gamma(gamma):
    x, y = make_logits(N, C, seed=3), make_target(N, C, seed=4)
    got = LF.normalized_focal_loss(x, y, gamma=gamma, reduction="none")
    assert_close64(got, ref_parts(x, y, gamma=gamma)["nfl"], rtol=1e-10, atol=1e-12)
    if gamma == 0.0:
        assert_close64(got, LF.normalized_cross_entropy(x, y, reduction="none"))


@pytest.mark.parametrize("q", [0.1, 0.7, 1.0])
def test_normalized_gce_q(q):
    x, y = make_logits(N, C, seed=5), make_target(N, C, seed=6)
    got = LF.normalized_generalized_cross_entropy(x, y, q=q, reduction="none")
    assert_close64(got, ref_parts(x, y, q=q)["ngce"], rtol=1e-10, atol=1e-12)


def test_reverse_cross_entropy_constants():
    x, y = make_logits(N, C, seed=7), make_target(N, C, seed=8)
    p_y = torch.softmax(x, 1).gather(1, y[:, None]).squeeze(1)
    # default: the official code's clip of the label to [1e-4, 1]
    assert LOG_ZERO == pytest.approx(math.log(1e-4))
    assert_close64(LF.reverse_cross_entropy(x, y, reduction="none"), -math.log(1e-4) * (1 - p_y))
    # the paper's A = -4
    assert_close64(LF.reverse_cross_entropy(x, y, log_zero=-4.0, reduction="none"), 4 * (1 - p_y))
    # RCE = -A * MAE
    assert_close64(LF.reverse_cross_entropy(x, y, reduction="none"),
                   -LOG_ZERO * LF.mean_absolute_error(x, y, reduction="none"))


def test_reverse_cross_entropy_close_to_official_code_with_its_prediction_clip():
    # the official code also clamps p to [1e-7, 1]; the difference is below (C-1)·1e-7·|A|
    x, y = make_logits(N, C, seed=9, scale=10.0), make_target(N, C, seed=10)
    p = torch.softmax(x, 1).clamp(1e-7, 1.0)
    label = TF.one_hot(y, C).to(F64).clamp(1e-4, 1.0)
    official = -(p * torch.log(label)).sum(1)
    got = LF.reverse_cross_entropy(x, y, reduction="none")
    assert (got - official).abs().max() <= (C - 1) * 1e-7 * abs(LOG_ZERO) + 1e-12


@pytest.mark.parametrize("alpha, beta", [(0.1, 1.0), (6.0, 0.1), (0.0, 1.0), (1.0, 0.0)])
def test_symmetric_cross_entropy(alpha, beta):
    x, y = make_logits(N, C, seed=11), make_target(N, C, seed=12)
    ref = ref_parts(x, y)
    got = LF.symmetric_cross_entropy(x, y, alpha=alpha, beta=beta, reduction="none")
    assert_close64(got, alpha * ref["ce"] + beta * ref["rce"], rtol=1e-10, atol=1e-12)
    # the official SCELoss takes the mean of both terms over the batch (torch CE for the first)
    official = alpha * TF.cross_entropy(x, y) + beta * torch.as_tensor(ref["rce"]).mean()
    assert_close64(LF.symmetric_cross_entropy(x, y, alpha=alpha, beta=beta), official)


@pytest.mark.parametrize("active, passive", list(itertools.product(ACTIVE_LOSSES, PASSIVE_LOSSES)))
def test_active_passive_every_combination(active, passive):
    x, y = make_logits(N, C, seed=13), make_target(N, C, seed=14)
    ref = ref_parts(x, y, gamma=0.5, q=0.7)
    alpha, beta = 0.7, 2.5
    got = LF.active_passive_loss(x, y, active=active, passive=passive, alpha=alpha, beta=beta, reduction="none")
    assert_close64(got, alpha * ref[active] + beta * ref[passive], rtol=1e-10, atol=1e-12)


def test_active_passive_reductions():
    x, y = make_logits(N, C, seed=15), make_target(N, C, seed=16)
    nce = LF.normalized_cross_entropy(x, y, reduction="none")
    rce = LF.reverse_cross_entropy(x, y, reduction="none")
    apl = LF.active_passive_loss
    assert_close64(apl(x, y, beta=0.0, alpha=3.0, reduction="none"), 3.0 * nce)
    assert_close64(apl(x, y, alpha=0.0, beta=2.0, reduction="none"), 2.0 * rce)
    assert_close64(apl(x, y, reduction="none"), nce + rce)
    # CE + 0·MAE is cross-entropy, with every torch option
    w = make_weight(C)
    assert_close64(apl(x, y, active="ce", passive="mae", beta=0.0, weight=w, label_smoothing=0.2),
                   TF.cross_entropy(x, y, weight=w, label_smoothing=0.2))
    # NFL with γ = 0 is NCE, NRCE is NMAE, and the official combination's γ/q reach the parts
    assert_close64(apl(x, y, active="nfl", gamma=0.0, beta=0.0, reduction="none"), nce)
    assert_close64(LF.normalized_reverse_cross_entropy(x, y, reduction="none"),
                   LF.normalized_mean_absolute_error(x, y, reduction="none"))
    assert_close64(apl(x, y, active="ngce", q=0.1, beta=0.0, reduction="none"),
                   LF.normalized_generalized_cross_entropy(x, y, q=0.1, reduction="none"))


def test_generalized_cross_entropy_limits():
    x, y = make_logits(N, C, seed=17, scale=1.0), make_target(N, C, seed=18)
    ce = LF.cross_entropy(x, y, reduction="none")
    gce_small = LF.generalized_cross_entropy(x, y, q=1e-7, reduction="none")
    assert (gce_small - ce).abs().max() < 1e-5 and not torch.equal(gce_small, ce)
    assert_close64(LF.active_passive_loss(x, y, active="gce", q=1.0, beta=0.0, reduction="none"),
                   LF.mean_absolute_error(x, y, reduction="none"))


def test_nmae_differs_from_official_code_by_the_documented_factor():
    # official NormalizedMeanAbsoluteError: (1 - p_y) / (2 (C - 1)), which sums to 1/2 over labels
    x, y = make_logits(N, C, seed=19), make_target(N, C, seed=20)
    p_y = torch.softmax(x, 1).gather(1, y[:, None]).squeeze(1)
    official = (1 - p_y) / (2 * (C - 1))
    assert_close64(LF.normalized_mean_absolute_error(x, y, reduction="none"), 2 * official)


# --- normalisation and symmetry --------------------------------------------------------------------


def _sum_over_labels(fn, x, **kw):
    n, c = x.shape
    return sum(fn(x, torch.full((n,), k), reduction="none", **kw) for k in range(c))


NORMALIZED = ["normalized_cross_entropy", "normalized_focal_loss", "normalized_generalized_cross_entropy",
              "normalized_mean_absolute_error", "normalized_reverse_cross_entropy"]


@pytest.mark.parametrize("name", NORMALIZED)
@given(seed=st.integers(0, 2**16), c=st.integers(2, 9), scale=st.sampled_from([1e-3, 0.3, 3.0, 30.0, 300.0]))
def test_normalized_losses_sum_to_one_over_labels(name, seed, c, scale):
    x = make_logits(6, c, seed=seed, scale=scale)
    fn = lossbook.loss_info(name).function
    sums = _sum_over_labels(fn, x, **hp_kwargs(name))
    assert_close64(sums, torch.ones(6, dtype=F64), rtol=1e-10, atol=1e-10)
    out = fn(x, make_target(6, c, seed=seed + 1), reduction="none")
    assert ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize("part", ["nce", "nfl", "ngce", "nmae", "nrce"])
def test_loss_matrix_rows_sum_to_one_in_float32_at_extreme_logits(part):
    x = 1e4 * (2 * torch.rand(16, 6, generator=torch.Generator().manual_seed(0)) - 1)
    m = loss_matrix(x, part)
    assert m.dtype == torch.float32 and torch.isfinite(m).all()
    torch.testing.assert_close(m.sum(1), torch.ones(16), rtol=1e-5, atol=1e-5)


def test_unnormalized_losses_are_not_normalized():
    # the property is a real constraint: CE, FL, GCE fail it
    x = make_logits(6, 4, seed=21, scale=3.0)
    for part in ("ce", "focal", "gce"):
        s = loss_matrix(x, part).sum(1)
        assert s.max() - s.min() > 1e-2, part


@pytest.mark.parametrize("passive, per_label", [("rce", -LOG_ZERO), ("mae", 1.0), ("nmae", None), ("nrce", None)])
def test_active_passive_sum_over_labels_is_the_stated_constant(passive, per_label):
    alpha, beta, c = 0.5, 2.0, 6
    x = make_logits(7, c, seed=22, scale=4.0)
    sums = _sum_over_labels(LF.active_passive_loss, x, passive=passive, alpha=alpha, beta=beta)
    const = alpha + beta * (1.0 if per_label is None else per_label * (c - 1))
    assert_close64(sums, torch.full((7,), const, dtype=F64), rtol=1e-10, atol=1e-10)
    # with an unnormalised active loss the sum varies
    s = _sum_over_labels(LF.active_passive_loss, x, active="ce", passive=passive)
    assert s.max() - s.min() > 1e-2


def test_log1m_softmax_is_accurate_where_the_naive_form_is_not():
    x = torch.tensor([[40.0, 0.0, -3.0], [0.0, 0.0, 0.0], [1e4, -1e4, 0.0]], dtype=F64)
    got = log1m_softmax(x)
    p = torch.softmax(x, 1)
    # the top class of row 0: log(1 - p) = log(e^0 + e^-3) - logsumexp
    assert_close64(got[0, 0], torch.logsumexp(x[0, 1:], 0) - torch.logsumexp(x[0], 0))
    assert torch.log1p(-p[0, 0]).item() == float("-inf") or abs(torch.log1p(-p[0, 0]) - got[0, 0]) > 1
    assert_close64(got[1], torch.full((3,), math.log(2 / 3), dtype=F64))
    assert torch.isfinite(got).all() and got[2, 0] == pytest.approx(-1e4)


# --- LDR-KL ----------------------------------------------------------------------------------------------


def ref_ldr(z, y, lam, c_margin):
    z, y = _np(z), _np(y).astype(int)
    n, k = z.shape
    out = np.empty(n)
    for i in range(n):
        d = z[i] - z[i, y[i]] + c_margin * (np.arange(k) != y[i])
        m = d.max()
        out[i] = lam * (m / lam + np.log(np.mean(np.exp((d - m) / lam))))
    return out


def ref_ldr_dro(z, y, lam, c_margin):
    """The DRO definition max_p Σ p_k d_k − λ KL(p‖u), evaluated at its maximiser p = softmax(d/λ)."""
    z, y = _np(z), _np(y).astype(int)
    n, k = z.shape
    d = z - z[np.arange(n), y][:, None] + c_margin * (np.arange(k)[None, :] != y[:, None])
    p = _softmax(d / lam)
    return (p * d).sum(1) - lam * (p * np.log(k * p)).sum(1)


@pytest.mark.parametrize("lam, margin", [(1.0, 0.0), (1.0, 0.1), (0.3, 2.0), (10.0, 0.1)])
def test_ldr_kl_matches_formula_and_dro_definition(lam, margin):
    x, y = make_logits(N, C, seed=23, scale=3.0), make_target(N, C, seed=24)
    got = LF.ldr_kl_loss(x, y, lam=lam, margin=margin, reduction="none")
    assert_close64(got, ref_ldr(x, y, lam, margin), rtol=1e-10, atol=1e-12)
    assert_close64(got, ref_ldr_dro(x, y, lam, margin), rtol=1e-9, atol=1e-10)


def test_ldr_kl_at_lambda_1_margin_0_is_ce_minus_log_k():
    x, y = make_logits(N, C, seed=25), make_target(N, C, seed=26)
    w = make_weight(C)
    got = LF.ldr_kl_loss(x, y, lam=1.0, margin=0.0, reduction="none")
    assert_close64(got, TF.cross_entropy(x, y, reduction="none") - math.log(C))
    assert_close64(LF.ldr_kl_loss(x, y, lam=1.0, margin=0.0, weight=w, reduction="none"),
                   w[y] * (TF.cross_entropy(x, y, reduction="none") - math.log(C)))


def test_ldr_kl_small_lambda_is_crammer_singer():
    x, y = make_logits(N, C, seed=27, scale=3.0), make_target(N, C, seed=28)
    margin = 0.5
    d = x - x.gather(1, y[:, None]) + margin * (1 - TF.one_hot(y, C).to(F64))
    hinge = d.max(1).values  # max(0, max_{k≠y} z_k − z_y + c), since d_y = 0
    lam = 1e-3
    got = LF.ldr_kl_loss(x, y, lam=lam, margin=margin, reduction="none")
    assert ((got - hinge).abs() <= lam * math.log(C) + 1e-9).all()
    assert ((got - hinge).abs() > 1e-6).any()  # really a smoothed hinge


def test_ldr_kl_softplus_normalisation_matches_official_ldr_loss_v1():
    # transliteration of the formula of the official LDRLoss_V1 (ICML2023_LDR loss.py)
    x, y = make_logits(N, C, seed=29, scale=3.0), make_target(N, C, seed=30)
    lam, thr = 2.0, 0.1
    onehot = TF.one_hot(y, C).to(F64)
    s = TF.softplus(x)
    s = s / s.mean(1, keepdim=True)
    diff = thr * (1 - onehot) + s - (s * onehot).sum(1, keepdim=True)
    official = lam * torch.log(torch.exp(diff / lam).mean(1))
    assert_close64(LF.ldr_kl_loss(x, y, lam=lam, margin=thr, normalize="softplus", reduction="none"), official)
    # and the ALDR code's default rescaling z / mean|z|
    z = x / x.abs().mean(1, keepdim=True)
    assert_close64(LF.ldr_kl_loss(x, y, lam=lam, margin=thr, normalize="l1", reduction="none"),
                   torch.as_tensor(ref_ldr(z, y, lam, thr)))


def test_ldr_kl_softplus_normalisation_survives_all_negative_rows():
    x = torch.full((2, 4), -1e4, requires_grad=True)  # softplus underflows to 0 in float32
    out = LF.ldr_kl_loss(x, torch.tensor([0, 3]), normalize="softplus", reduction="none")
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


# --- ALDR-KL -------------------------------------------------------------------------------------------


def _aldr_objective(d, lam, lam0, alpha):
    """λ ↦ λ·log mean exp(d/λ) − (α log C / (2λ₀))(λ − λ₀)², for one row d (NumPy)."""
    k = d.shape[0]
    m = d.max()
    v = m + lam * np.log(np.mean(np.exp((d[None, :] - m) / lam[:, None]), axis=1))
    return v - alpha * math.log(k) / (2 * lam0) * (lam - lam0) ** 2


@pytest.mark.parametrize("lam0, alpha, margin", [(1.0, 2.0, 0.1), (2.0, 1.5, 0.0), (0.5, 4.0, 1.0)])
def test_aldr_kl_maximises_its_objective_over_lambda(lam0, alpha, margin):
    x, y = make_logits(N, C, seed=31, scale=1.5), make_target(N, C, seed=32)
    out = LF.aldr_kl_loss(x, y, lam0=lam0, alpha=alpha, margin=margin, reduction="none", return_aux=True)
    xs, ys = _np(x), _np(y).astype(int)
    grid = np.linspace(lam0 * (1 - 1 / alpha) + 1e-9, lam0, 200001)
    for i in range(N):
        d = xs[i] - xs[i, ys[i]] + margin * (np.arange(C) != ys[i])
        values = _aldr_objective(d, grid, lam0, alpha)
        assert out.loss[i].item() == pytest.approx(values.max(), abs=1e-8)
        assert out.lam[i].item() == pytest.approx(grid[values.argmax()], abs=1e-3 * lam0)
    # never below LDR-KL at λ₀ (λ = λ₀ is a feasible choice)
    ldr = LF.ldr_kl_loss(x, y, lam=lam0, margin=margin, reduction="none")
    assert (out.loss >= ldr - 1e-12).all() and (out.loss > ldr + 1e-6).any()


def test_aldr_kl_lambda_is_a_fixed_point_and_adapts_to_confidence():
    x, y = make_logits(N, C, seed=33, scale=3.0), make_target(N, C, seed=34)
    lam0, alpha, margin = 1.0, 2.0, 0.1
    out = LF.aldr_kl_loss(x, y, lam0=lam0, alpha=alpha, margin=margin, reduction="none", return_aux=True)
    d = x - x.gather(1, y[:, None]) + margin * (1 - TF.one_hot(y, C).to(F64))
    p = torch.softmax(d / out.lam[:, None], 1)
    kl = (p * torch.log(C * p)).sum(1)
    assert_close64(out.lam, lam0 * (1 - kl / (alpha * math.log(C))), rtol=1e-10, atol=1e-12)
    assert ((out.lam >= lam0 * (1 - 1 / alpha)) & (out.lam <= lam0)).all()
    # a confident row (far from uniform) gets a smaller temperature than a nearly uniform one
    z = torch.tensor([[8.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]], dtype=F64)
    lam = LF.aldr_kl_loss(z, torch.tensor([0, 0]), reduction="none", return_aux=True).lam
    assert lam[0] < lam[1] - 0.1


def test_aldr_kl_large_alpha_is_ldr_kl():
    x, y = make_logits(N, C, seed=35), make_target(N, C, seed=36)
    got = LF.aldr_kl_loss(x, y, lam0=2.0, alpha=1e9, margin=0.3, reduction="none")
    assert_close64(got, LF.ldr_kl_loss(x, y, lam=2.0, margin=0.3, reduction="none"), rtol=1e-7, atol=1e-8)


def test_aldr_kl_one_step_is_the_official_first_visit_update():
    # official ALDRLoss_V1, first visit (stored λ = λ₀), margin 0, no logit rescaling (softplus=False
    # divides by mean|z|, so feed it logits with mean|z| = 1): p = normalise(softmax(z/λ₀) + 1e-5)
    x, y = make_logits(N, C, seed=37), make_target(N, C, seed=38)
    x = x / x.abs().mean(1, keepdim=True)
    lam0, alpha = 1.0, 2.0
    p = torch.softmax(x / lam0, 1) + 1e-5
    p = p / p.sum(1, keepdim=True)
    kl = (p * torch.log(C * p)).sum(1)
    lam1 = lam0 - lam0 * kl / (alpha * math.log(C))
    diff = x - x.gather(1, y[:, None])
    official = lam1 * torch.log(torch.exp(diff / lam1[:, None]).mean(1)) - 0.5 * alpha * math.log(C) / lam0 * (lam1 - lam0) ** 2
    got = LF.aldr_kl_loss(x, y, lam0=lam0, alpha=alpha, margin=0.0, normalize="l1", max_iter=1, reduction="none")
    assert_close64(got, official, rtol=1e-4, atol=1e-5)  # the 1e-5 smoothing of p is the only difference


def test_aldr_lambda_helper_and_single_class():
    d = torch.zeros(3, 1, dtype=F64)
    assert_close64(aldr_lambda(d, 2.0, 2.0, 10), torch.full((3,), 2.0, dtype=F64))
    out = LF.aldr_kl_loss(torch.zeros(3, 1, dtype=F64), torch.zeros(3, dtype=torch.long), reduction="none")
    assert_close64(out, torch.zeros(3, dtype=F64))


# --- gradients, extreme logits, options ---------------------------------------------------------------

GRAD_CASES = [
    pytest.param(name, kind, opts, id=f"{name}-{kind}-{tag}")
    for name in ROBUST
    for kind in ("index", "prob")
    for tag, opts in (("plain", {}), ("weight-ls", {"weight": True, "label_smoothing": 0.2}))
    if kind == "index" or "prob_target" in lossbook.loss_info(name).supports
    if not opts or "label_smoothing" in lossbook.loss_info(name).supports or tag == "plain"
]


@pytest.mark.parametrize("name, kind, opts", GRAD_CASES)
def test_gradcheck(name, kind, opts):
    fn = lossbook.loss_info(name).function
    kwargs = dict(hp_kwargs(name))
    if opts:
        kwargs.update(weight=make_weight(4, seed=39), label_smoothing=opts["label_smoothing"])
    x = make_logits(3, 4, seed=40, scale=1.0, requires_grad=True)
    if kind == "index":
        y = make_target(3, 4, seed=41)
        assert torch.autograd.gradcheck(lambda x_: fn(x_, y, **kwargs), (x,))
    else:
        q = make_prob_target(3, 4, seed=42).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x_, q_: fn(x_, q_, **kwargs), (x, q))


@pytest.mark.parametrize("hp", [{"active": a, "passive": p} for a, p in itertools.product(ACTIVE_LOSSES, PASSIVE_LOSSES)],
                         ids=lambda hp: f"{hp['active']}+{hp['passive']}")
def test_gradcheck_active_passive_combinations(hp):
    x = make_logits(3, 4, seed=43, scale=1.0, requires_grad=True)
    y = make_target(3, 4, seed=44)
    assert torch.autograd.gradcheck(lambda x_: LF.active_passive_loss(x_, y, **hp), (x,))


@pytest.mark.parametrize("normalize", ["softplus", "l1"])
@pytest.mark.parametrize("name", ["ldr_kl", "aldr_kl"])
def test_gradcheck_ldr_with_normalised_logits(name, normalize):
    x = make_logits(3, 4, seed=45, scale=1.0, requires_grad=True)
    y = make_target(3, 4, seed=46)
    fn = lossbook.loss_info(name).function
    assert torch.autograd.gradcheck(lambda x_: fn(x_, y, normalize=normalize), (x,))


EXTREME_HP = [(name, {}) for name in ROBUST] + [
    ("active_passive", {"active": a, "passive": "mae"}) for a in ("ce", "focal", "gce", "nfl", "ngce")
] + [("normalized_focal_loss", {"gamma": 0.3}), ("aldr_kl", {"normalize": "l1"}), ("ldr_kl", {"lam": 1e-2})]


@pytest.mark.parametrize("target_is", ["top", "bottom"])
@pytest.mark.parametrize("name, hp", EXTREME_HP, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXTREME_HP)])
def test_extreme_logits_float32(name, hp, target_is):
    g = torch.Generator().manual_seed(47)
    x = (1e4 * (2 * torch.rand(16, 6, generator=g) - 1)).requires_grad_(True)
    x_ties = torch.tensor([[1e4, 1e4, -1e4, -1e4, 0.0, 0.0]]).requires_grad_(True)
    for logits in (x, x_ties):
        y = logits.detach().argmax(1) if target_is == "top" else logits.detach().argmin(1)
        loss = lossbook.loss_info(name).function(logits, y, reduction="none", **hp)
        assert loss.dtype == torch.float32 and torch.isfinite(loss).all(), loss
        loss.sum().backward()
        assert torch.isfinite(logits.grad).all(), logits.grad


def test_normalized_losses_right_and_wrong_at_extreme_logits():
    x = 1e4 * (2 * torch.rand(16, 6, generator=torch.Generator().manual_seed(48)) - 1)
    for name in NORMALIZED:
        fn = lossbook.loss_info(name).function
        right = fn(x, x.argmax(1), reduction="none")
        wrong = fn(x, x.argmin(1), reduction="none")
        assert right.max() < 1e-3, name
        assert (wrong > 1 / 6).all(), name  # the worst label takes more than its uniform share


def test_modules_and_registry_metadata():
    m = lossbook.get_loss("active_passive", active="nfl", passive="rce", alpha=2.0, gamma=0.3)
    assert isinstance(m, lossbook.ActivePassiveLoss) and "active='nfl'" in repr(m)
    x, y = make_logits(N, C, seed=49), make_target(N, C, seed=50)
    assert_close64(m(x, y), LF.active_passive_loss(x, y, active="nfl", passive="rce", alpha=2.0, gamma=0.3))
    assert lossbook.loss_info("reverse_cross_entropy").hyperparameters == {"log_zero": LOG_ZERO}
    assert set(ROBUST) >= {"reverse_cross_entropy", "symmetric_cross_entropy", "normalized_cross_entropy",
                           "active_passive", "ldr_kl", "aldr_kl"}
    # GCE and MAE stay registered once, in the softmax family, and are re-exported by robust
    from lossbook import robust

    assert robust.generalized_cross_entropy is LF.generalized_cross_entropy
    assert lossbook.loss_info("generalized_cross_entropy").family == "softmax"
    assert lossbook.list_losses(filter="symmetric")  # the robust family declares symmetric losses
    for name in NORMALIZED + ["reverse_cross_entropy", "active_passive"]:
        assert lossbook.loss_info(name).has("symmetric") and lossbook.loss_info(name).has("bounded")


# --- bad inputs -------------------------------------------------------------------------------------------

_X = make_logits(4, 3, seed=51)
_Y = make_target(4, 3, seed=52)

BAD = [
    (LF.reverse_cross_entropy, {"log_zero": 0.0}, ValueError,
     r"^reverse_cross_entropy: log_zero must lie in \(-inf, 0\); got 0\.0\. .*log_zero=-4\.0 \(the paper\)"),
    (LF.reverse_cross_entropy, {"log_zero": "-4"}, TypeError, r"log_zero must be a real number; got str"),
    (LF.symmetric_cross_entropy, {"alpha": -1.0}, ValueError, r"^symmetric_cross_entropy: alpha must lie in \[0, inf\)"),
    (LF.symmetric_cross_entropy, {"log_zero": 2.0}, ValueError, r"log_zero must lie in \(-inf, 0\)"),
    (LF.normalized_focal_loss, {"gamma": -0.5}, ValueError, r"^normalized_focal_loss: gamma must lie in \[0, inf\)"),
    (LF.normalized_generalized_cross_entropy, {"q": 0.0}, ValueError, r"q must lie in \(0, 1\]; got 0\.0"),
    (LF.active_passive_loss, {"active": "rce"}, ValueError,
     r"^active_passive_loss: active must be one of .*; got 'rce' \(passive losses go in passive=\)"),
    (LF.active_passive_loss, {"passive": "nce"}, ValueError, r"passive must be one of .*\(active losses go in active=\)"),
    (LF.active_passive_loss, {"active": "NCE"}, ValueError, r"active must be one of \('ce', 'focal'"),
    (LF.active_passive_loss, {"beta": float("nan")}, ValueError, r"beta must lie in \[0, inf\)"),
    (LF.ldr_kl_loss, {"lam": 0.0}, ValueError, r"^ldr_kl_loss: lam must lie in \(0, inf\); got 0\.0"),
    (LF.ldr_kl_loss, {"normalize": "mean"}, ValueError, r"normalize must be one of \('none', 'softplus', 'l1'\); got 'mean'"),
    (LF.aldr_kl_loss, {"alpha": 0.5}, ValueError, r"^aldr_kl_loss: alpha must lie in \[1, inf\); got 0\.5\. alpha ≥ 1 keeps"),
    (LF.aldr_kl_loss, {"max_iter": 2.5}, ValueError, r"max_iter must be a whole number of steps; got 2\.5"),
    (LF.aldr_kl_loss, {"lam0": -1}, ValueError, r"lam0 must lie in \(0, inf\)"),
]


@pytest.mark.parametrize("fn, kwargs, exc, pattern", BAD, ids=[f"{f.__name__}-{next(iter(k))}" for f, k, _, _ in BAD])
def test_bad_hyperparameters(fn, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn(_X, _Y, **kwargs)


@pytest.mark.parametrize("module, kwargs", [
    (lossbook.ReverseCrossEntropyLoss, {"log_zero": 1.0}),
    (lossbook.ActivePassiveLoss, {"passive": "ce"}),
    (lossbook.NormalizedFocalLoss, {"gamma": -1.0}),
    (lossbook.ALDRKLLoss, {"alpha": 0.9}),
    (lossbook.LDRKLLoss, {"normalize": "softmax"}),
])
def test_module_hyperparameter_errors_at_construction(module, kwargs):
    with pytest.raises(ValueError):
        module(**kwargs)


@pytest.mark.parametrize("name", NORMALIZED + ["active_passive"])
def test_normalized_losses_need_two_classes(name):
    fn = lossbook.loss_info(name).function
    with pytest.raises(ValueError, match=rf"^{fn.__name__}: needs at least 2 classes .*got logits of shape \(3, 1\)"):
        fn(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    # an unnormalised active + passive pair is fine with one class
    assert LF.active_passive_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), active="ce",
                                  passive="mae").item() == 0.0
