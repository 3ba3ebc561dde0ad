"""The softmax family: cross-entropy against torch, comp-sum against its textbook definition,
gradients, extreme logits, the comp-sum minimiser and the margin profile."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from conftest import F64, assert_close64, hp_kwargs, make_logits, make_prob_target, make_target, make_weight
from scipy import optimize

import lossbook
import lossbook.functional as LF
from lossbook.softmax import comp_sum_bayes_risk, comp_sum_conditional_risk, comp_sum_minimizer, margin_profile

N, C = 8, 5
TAUS = (0.0, 0.3, 0.5, 1.0, 1.5, 1.9, 2.0, 3.0)


# --- cross-entropy == torch.nn.functional.cross_entropy ----------------------------------------------

CE_GRID = [
    pytest.param(kind, weighted, ignore, eps, reduction,
                 id=f"{kind}-{'w' if weighted else 'nw'}-{'ign' if ignore else 'all'}-ls{eps}-{reduction}")
    for kind, weighted, ignore, eps, reduction in itertools.product(
        ("index", "prob"), (False, True), (False, True), (0.0, 0.1, 0.7), ("none", "mean", "sum"))
    if not (kind == "prob" and ignore)  # ignore_index applies to index targets only
]


@pytest.mark.parametrize("kind, weighted, ignore, eps, reduction", CE_GRID)
def test_cross_entropy_matches_torch(kind, weighted, ignore, eps, reduction):
    x = make_logits(N, C, seed=7, requires_grad=True)
    if kind == "index":
        target = make_target(N, C, seed=8)
        if ignore:
            target[[0, 3, 5]] = -7
    else:
        target = make_prob_target(N, C, seed=9)
    kwargs = {"reduction": reduction, "label_smoothing": eps}
    if weighted:
        kwargs["weight"] = make_weight(C, seed=10)
    if ignore:
        kwargs["ignore_index"] = -7
    ours = LF.cross_entropy(x, target, **kwargs)
    theirs = TF.cross_entropy(x, target, **kwargs)
    assert ours.shape == theirs.shape
    assert_close64(ours, theirs, rtol=1e-10, atol=1e-10)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    assert_close64(g_ours, g_theirs, rtol=1e-10, atol=1e-10)


def test_cross_entropy_empty_batch_is_zero_where_torch_gives_nan():
    x = torch.zeros(0, C, dtype=F64, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    assert torch.isnan(TF.cross_entropy(x, y))
    assert LF.cross_entropy(x, y).item() == 0.0


# --- comp-sum against the textbook formula ------------------------------------------------------------


def textbook_comp_sum(z: np.ndarray, y: np.ndarray, tau: float) -> np.ndarray:
    """Φ^τ(Σ_{k≠y} exp(z_k − z_y)) computed term by term in float64."""
    out = np.empty(len(y))
    for i, (row, t) in enumerate(zip(z, y)):
        u = sum(np.exp(row[k] - row[t]) for k in range(len(row)) if k != t)
        out[i] = np.log1p(u) if tau == 1.0 else ((1.0 + u) ** (1.0 - tau) - 1.0) / (1.0 - tau)
    return out


@pytest.mark.parametrize("tau", TAUS)
def test_comp_sum_matches_textbook_definition(tau):
    x, y = make_logits(N, C, seed=21, scale=3.0), make_target(N, C, seed=22)
    expected = textbook_comp_sum(x.numpy(), y.numpy(), tau)
    got = LF.comp_sum_loss(x, y, tau=tau, reduction="none")
    assert_close64(got, torch.from_numpy(expected), rtol=1e-11, atol=1e-12)
    assert_close64(LF.comp_sum_loss(x, y, tau=tau), expected.mean(), rtol=1e-11, atol=1e-12)


def _p_target(x, y):
    return torch.softmax(x, dim=1).gather(1, y[:, None]).squeeze(1)


def test_sum_exponential_is_comp_sum_tau_0():
    x, y = make_logits(N, C, seed=23), make_target(N, C, seed=24)
    direct = torch.stack([sum(torch.exp(x[i, k] - x[i, y[i]]) for k in range(C) if k != y[i]) for i in range(N)])
    se = LF.sum_exponential_loss(x, y, reduction="none")
    assert_close64(se, direct)
    assert_close64(se, LF.comp_sum_loss(x, y, tau=0.0, reduction="none"))
    assert_close64(se, 1 / _p_target(x, y) - 1)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.7, 1.0])
def test_generalized_cross_entropy(q):
    x, y = make_logits(N, C, seed=25), make_target(N, C, seed=26)
    gce = LF.generalized_cross_entropy(x, y, q=q, reduction="none")
    assert_close64(gce, (1 - _p_target(x, y) ** q) / q)
    assert_close64(gce, LF.comp_sum_loss(x, y, tau=1.0 + q, reduction="none"))
    assert torch.all(gce <= 1 / q)


def test_mean_absolute_error():
    x, y = make_logits(N, C, seed=27), make_target(N, C, seed=28)
    mae = LF.mean_absolute_error(x, y, reduction="none")
    assert_close64(mae, 1 - _p_target(x, y))
    assert_close64(mae, 0.5 * (TF.one_hot(y, C) - torch.softmax(x, 1)).abs().sum(1))
    assert_close64(mae, LF.comp_sum_loss(x, y, tau=2.0, reduction="none"))
    assert_close64(mae, LF.generalized_cross_entropy(x, y, q=1.0, reduction="none"))


@pytest.mark.parametrize("delta", [1e-7, -1e-7])
def test_comp_sum_is_continuous_at_tau_1(delta):
    # moderate logits: ℓ^τ − CE ≈ −(τ−1)·(log p_y)²/2, which is below 1e-6 only while |log p_y| < ~4
    x, y = make_logits(N, C, seed=29, scale=1.0), make_target(N, C, seed=30)
    ce = LF.cross_entropy(x, y, reduction="none")
    near = LF.comp_sum_loss(x, y, tau=1.0 + delta, reduction="none")
    assert (near - ce).abs().max() < 1e-6
    assert not torch.equal(near, ce)  # really the τ ≠ 1 branch of the formula
    # and the gap is exactly the first-order term, at any logit scale (no jump at τ = 1)
    x = make_logits(N, C, seed=29, scale=4.0)
    log_p = torch.log_softmax(x, 1).gather(1, y[:, None]).squeeze(1)
    gap = LF.comp_sum_loss(x, y, tau=1.0 + delta, reduction="none") - LF.cross_entropy(x, y, reduction="none")
    assert_close64(gap, -delta * log_p**2 / 2, rtol=1e-5, atol=1e-12)


# --- gradcheck / gradgradcheck ----------------------------------------------------------------------------

GRAD_CASES = [
    pytest.param(name, kind, opts, id=f"{name}-{kind}-{tag}")
    for name in lossbook.list_losses(family="softmax")
    for kind in ("index", "prob")
    for tag, opts in (("plain", {}), ("weight-ls", {"weight": True, "label_smoothing": 0.2}))
]


@pytest.mark.parametrize("name, kind, opts", GRAD_CASES)
def test_gradcheck_and_gradgradcheck(name, kind, opts):
    fn = lossbook.loss_info(name).function
    kwargs = {**hp_kwargs(name), "label_smoothing": opts.get("label_smoothing", 0.0)}
    if opts.get("weight"):
        kwargs["weight"] = make_weight(4, seed=31)
    x = make_logits(3, 4, seed=32, scale=1.0, requires_grad=True)
    if kind == "index":
        y = make_target(3, 4, seed=33)
        inputs, f = (x,), (lambda x_: fn(x_, y, **kwargs))
    else:
        q = make_prob_target(3, 4, seed=34).requires_grad_(True)
        inputs, f = (x, q), (lambda x_, q_: fn(x_, q_, **kwargs))
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


# --- extreme logits -------------------------------------------------------------------------------------

EXTREME = [("cross_entropy", {}), ("generalized_cross_entropy", {}), ("mean_absolute_error", {}),
           ("comp_sum", {"tau": 1.5}), ("sum_exponential", {})]


def _extreme_logits():
    g = torch.Generator().manual_seed(40)
    x = 1e4 * (2 * torch.rand(16, 6, generator=g) - 1)  # float32 in ±1e4
    return x


@pytest.mark.parametrize("name, hp", EXTREME, ids=[n for n, _ in EXTREME])
def test_extreme_logits_target_is_top_class(name, hp):
    x = _extreme_logits().requires_grad_(True)
    y = x.detach().argmax(1)
    loss = lossbook.loss_info(name).function(x, y, reduction="none", **hp)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    assert loss.max() < 1e-3  # confidently right
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name, hp", EXTREME[:4], ids=[n for n, _ in EXTREME[:4]])
def test_extreme_logits_target_is_not_top_class(name, hp):
    x = _extreme_logits().requires_grad_(True)
    y = x.detach().argmin(1)
    loss = lossbook.loss_info(name).function(x, y, reduction="none", **hp)
    assert torch.isfinite(loss).all() and (loss > 0.5).all()
    loss.mean().backward()
    assert torch.isfinite(x.grad).all()
    if name == "cross_entropy":  # -log p_y = logsumexp(z) - z_y ≈ max(z) - z_y
        assert_close64(loss.double(), (x.max(1).values - x.min(1).values).detach().double(), rtol=1e-5, atol=1.0)


def test_sum_exponential_overflows_to_inf_not_nan_when_badly_wrong():
    x = _extreme_logits()
    y = x.argmin(1)
    loss = LF.sum_exponential_loss(x, y, reduction="none")
    assert not torch.isnan(loss).any()
    assert torch.isinf(loss).all() and (loss > 0).all()


# --- the comp-sum minimiser and Bayes risk ----------------------------------------------------------------

POSTERIORS = torch.tensor(
    [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33], [0.05, 0.6, 0.35]], dtype=F64
)


def textbook_risk(p: np.ndarray, eta: np.ndarray, tau: float) -> float:
    """Σ_y η_y Φ^τ(1/p_y − 1), an independent computation of the conditional comp-sum risk."""
    u = 1.0 / p - 1.0
    phi = np.log1p(u) if tau == 1.0 else ((1.0 + u) ** (1.0 - tau) - 1.0) / (1.0 - tau)
    return float((eta * phi).sum())


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_minimizer_beats_random_points_on_the_simplex(tau):
    p_star = comp_sum_minimizer(POSTERIORS, tau)
    assert_close64(p_star.sum(1), torch.ones(len(POSTERIORS)))
    rng = np.random.default_rng(0)
    candidates = rng.dirichlet(np.ones(3), size=2000)
    for eta, p in zip(POSTERIORS.numpy(), p_star.numpy()):
        best = textbook_risk(np.clip(p, 1e-300, None), eta, tau) if tau < 2 else \
            float(comp_sum_conditional_risk(torch.from_numpy(p)[None], torch.from_numpy(eta)[None], tau))
        others = [textbook_risk(c, eta, tau) for c in candidates]
        assert best <= min(others) + 1e-12


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.5])
def test_minimizer_matches_scipy(tau):
    p_star = comp_sum_minimizer(POSTERIORS, tau)
    for eta, p in zip(POSTERIORS.numpy(), p_star.numpy()):
        def risk(z, eta=eta):
            e = np.exp(z - z.max())
            return textbook_risk(e / e.sum(), eta, tau)

        res = optimize.minimize(risk, np.zeros(3), method="BFGS", options={"gtol": 1e-10})
        e = np.exp(res.x - res.x.max())
        np.testing.assert_allclose(p, e / e.sum(), atol=1e-4)
        assert textbook_risk(p, eta, tau) <= res.fun + 1e-10
        # the library's conditional risk is the same function
        assert abs(float(comp_sum_conditional_risk(torch.from_numpy(p)[None], torch.from_numpy(eta)[None], tau))
                   - textbook_risk(p, eta, tau)) < 1e-12


def test_minimizer_closed_forms():
    assert_close64(comp_sum_minimizer(POSTERIORS, 1.0), POSTERIORS)
    root = POSTERIORS.sqrt()
    assert_close64(comp_sum_minimizer(POSTERIORS, 0.0), root / root.sum(1, keepdim=True))
    vertex = comp_sum_minimizer(POSTERIORS[:2], 2.0)
    assert torch.equal(vertex, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]], dtype=F64))
    # ties at the top split evenly for τ ≥ 2
    assert_close64(comp_sum_minimizer(torch.tensor([[0.4, 0.4, 0.2]], dtype=F64), 3.0),
                   torch.tensor([[0.5, 0.5, 0.0]]))


def test_bayes_risk_at_tau_1_is_entropy():
    entropy = -(POSTERIORS * POSTERIORS.log()).sum(1)
    assert_close64(comp_sum_bayes_risk(POSTERIORS, 1.0), entropy)


def test_bayes_risk_at_tau_2_is_one_minus_max_posterior():
    # τ = 2: Bayes risk of MAE is 1 − max η
    assert_close64(comp_sum_bayes_risk(POSTERIORS, 2.0), 1 - POSTERIORS.max(1).values)


# --- margin profile -------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_fn, kwargs", [
    (LF.cross_entropy, {}), (LF.comp_sum_loss, {"tau": 0.5}), (LF.generalized_cross_entropy, {"q": 0.7}),
    (LF.mean_absolute_error, {}), (LF.sum_exponential_loss, {}),
], ids=["ce", "comp_sum", "gce", "mae", "sumexp"])
def test_margin_profile_matches_finite_differences(loss_fn, kwargs):
    margins = np.linspace(-3, 3, 13)
    h = 1e-5
    df = margin_profile(loss_fn, margins, num_classes=4, **kwargs)
    assert list(df.columns) == ["margin", "loss", "grad"]
    np.testing.assert_array_equal(df["margin"], margins)
    up = margin_profile(loss_fn, margins + h, num_classes=4, **kwargs)["loss"].to_numpy()
    down = margin_profile(loss_fn, margins - h, num_classes=4, **kwargs)["loss"].to_numpy()
    np.testing.assert_allclose(df["grad"], (up - down) / (2 * h), rtol=1e-6, atol=1e-8)
    assert (df["grad"] < 0).all()  # a larger margin always lowers these losses


def test_margin_profile_loss_column_is_the_margin_loss():
    margins = np.array([-2.0, 0.0, 1.5])
    df = margin_profile(LF.cross_entropy, margins, num_classes=5)
    np.testing.assert_allclose(df["loss"], np.log1p(4 * np.exp(-margins)), rtol=1e-13)
    np.testing.assert_allclose(df["grad"], -4 * np.exp(-margins) / (1 + 4 * np.exp(-margins)), rtol=1e-13)


def test_margin_profile_rejects_one_class():
    with pytest.raises(ValueError, match="num_classes must be ≥ 2"):
        margin_profile(LF.cross_entropy, [0.0], num_classes=1)
