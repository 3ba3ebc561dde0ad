"""The spherical family on explicit outputs: Z-loss, log-Taylor softmax, log-spherical softmax, squared error.

References are the textbook formulas computed directly on the outputs in float64 (no (a, q, s)
statistics), so they check the stats code the dense functions and the factored layer share.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import F64, assert_close64, make_logits, make_target, make_weight
from torch.nn.functional import softplus

import lossbook
import lossbook.functional as LF
from lossbook.spherical import STATS_LOSSES, STATS_PARTIALS, output_stats

N, C = 9, 6


# --- textbook references (float64, on the outputs themselves) -------------------------------------


def ref_z_loss(o, y, a=1.0, b=0.0):
    mu = o.mean(dim=1, keepdim=True)
    sigma = o.std(dim=1, correction=0, keepdim=True)  # population std over the D outputs
    z = (o - mu) / sigma
    z_c = z.gather(1, y[:, None]).squeeze(1)
    return softplus(a * (b - z_c)) / a


def ref_taylor(o, y):
    t = 1 + o + o**2 / 2
    return -torch.log(t.gather(1, y[:, None]).squeeze(1) / t.sum(dim=1))


def ref_spherical(o, y, eps=1e-3):
    t = o**2 + eps
    return -torch.log(t.gather(1, y[:, None]).squeeze(1) / t.sum(dim=1))


def ref_squared_error(o, y):
    return ((o - torch.nn.functional.one_hot(y, o.shape[1]).to(o.dtype)) ** 2).sum(dim=1)


# (registry name, function, reference, hyper-parameters)
CASES = [
    ("z_loss", LF.z_loss, ref_z_loss, {}),
    ("z_loss", LF.z_loss, ref_z_loss, {"a": 0.5, "b": 2.0}),
    ("z_loss", LF.z_loss, ref_z_loss, {"a": 3.0, "b": -1.0}),
    ("taylor_softmax", LF.taylor_softmax_loss, ref_taylor, {}),
    ("spherical_softmax", LF.spherical_softmax_loss, ref_spherical, {}),
    ("spherical_softmax", LF.spherical_softmax_loss, ref_spherical, {"eps": 0.5}),
    ("squared_error", LF.squared_error_loss, ref_squared_error, {}),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in hp.items()) for name, _, _, hp in CASES]
FUNCTIONS = {
    "z_loss": LF.z_loss,
    "taylor_softmax": LF.taylor_softmax_loss,
    "spherical_softmax": LF.spherical_softmax_loss,
    "squared_error": LF.squared_error_loss,
}
MODULES = {
    "z_loss": lossbook.ZLoss,
    "taylor_softmax": lossbook.TaylorSoftmaxLoss,
    "spherical_softmax": lossbook.SphericalSoftmaxLoss,
    "squared_error": lossbook.SquaredErrorLoss,
}
STATS_HP = {"a": "a_z"}  # the dense z_loss's `a` is z_loss_stats's `a_z`


def _stats_kwargs(hp):
    return {STATS_HP.get(k, k): v for k, v in hp.items()}


# --- registry -------------------------------------------------------------------------------------


def test_registry_entries_and_order():
    names = lossbook.list_losses()
    spherical = lossbook.list_losses(family="spherical")
    assert spherical == ["z_loss", "taylor_softmax", "spherical_softmax", "squared_error"]
    assert set(spherical) == set(STATS_LOSSES)
    softmax = lossbook.list_losses(family="softmax")
    assert max(names.index(n) for n in softmax) < min(names.index(n) for n in spherical)
    for name in spherical:
        info = lossbook.loss_info(name)
        assert info.target == "index" and info.supports == ("weight", "ignore_index")
        assert info.function is FUNCTIONS[name] and info.module is MODULES[name]
        assert "reduces_to_ce_when" not in info.properties
    assert lossbook.loss_info("z_loss").hyperparameters == {"a": 1.0, "b": 0.0}
    assert lossbook.loss_info("spherical_softmax").hyperparameters == {"eps": 1e-3}
    assert lossbook.loss_info("z_loss").paper == "debrebisson2016zloss"
    assert not lossbook.loss_info("spherical_softmax").has("scale_invariant")  # only at eps = 0


# --- values against the textbook formulas ----------------------------------------------------------


@pytest.mark.parametrize("name, fn, ref, hp", CASES, ids=CASE_IDS)
def test_matches_textbook_formula(name, fn, ref, hp):
    for seed, scale in [(0, 0.3), (1, 2.0), (2, 8.0)]:
        o, y = make_logits(N, C, seed=seed, scale=scale), make_target(N, C, seed=seed + 10)
        expected = ref(o, y, **hp)
        assert_close64(fn(o, y, reduction="none", **hp), expected)
        assert_close64(fn(o, y, reduction="sum", **hp), expected.sum())
        assert_close64(fn(o, y, **hp), expected.mean())


@pytest.mark.parametrize("name, fn, ref, hp", CASES, ids=CASE_IDS)
def test_weight_and_ignore_index_follow_torch(name, fn, ref, hp):
    o, y, w = make_logits(N, C), make_target(N, C), make_weight(C)
    y = y.clone()
    y[[2, 5]] = 7  # ignored rows
    kept = y != 7
    per_row = w[y[kept]] * ref(o[kept], y[kept], **hp)
    none = fn(o, y, weight=w, ignore_index=7, reduction="none", **hp)
    assert_close64(none[kept], per_row)
    assert torch.equal(none[~kept], torch.zeros(2, dtype=F64))
    assert_close64(fn(o, y, weight=w, ignore_index=7, reduction="sum", **hp), per_row.sum())
    # "mean" divides by the summed weights w_{y_i} of the counted rows
    assert_close64(fn(o, y, weight=w, ignore_index=7, **hp), per_row.sum() / w[y[kept]].sum())


@pytest.mark.parametrize("name, fn, ref, hp", CASES, ids=CASE_IDS)
def test_dense_function_is_the_stats_loss(name, fn, ref, hp):
    """The dense path runs exactly the code the factored layer runs: stats_fn(a, q, s, D)."""
    for dtype in (F64, torch.float32):
        o, y = make_logits(N, C, dtype=dtype), make_target(N, C)
        stats = STATS_LOSSES[name](*output_stats(o, y), C, **_stats_kwargs(hp))
        assert stats.dtype == dtype
        assert torch.equal(fn(o, y, reduction="none", **hp), stats)


@pytest.mark.parametrize("name", ["taylor_softmax", "spherical_softmax"])
def test_likelihood_losses_are_normalised(name):
    """exp(−ℓ(o, k)) over the D classes is a probability distribution."""
    o = make_logits(5, C, scale=3.0)
    probs = torch.stack([torch.exp(-FUNCTIONS[name](o, torch.full((5,), k), reduction="none")) for k in range(C)], 1)
    assert (probs > 0).all() and (probs <= 1).all()
    assert_close64(probs.sum(1), torch.ones(5, dtype=F64))


def test_squared_error_matches_torch_mse():
    o, y = make_logits(N, C), make_target(N, C)
    onehot = torch.nn.functional.one_hot(y, C).to(F64)
    expected = torch.nn.functional.mse_loss(o, onehot, reduction="none").sum(1)
    assert_close64(LF.squared_error_loss(o, y, reduction="none"), expected)


def test_spherical_softmax_is_even_and_rescales_eps():
    o, y = make_logits(N, C), make_target(N, C)
    base = LF.spherical_softmax_loss(o, y, eps=0.01, reduction="none")
    assert_close64(LF.spherical_softmax_loss(-o, y, eps=0.01, reduction="none"), base)
    # L(αo; ε) = L(o; ε/α²): scale-invariant only as ε → 0, hence not declared scale_invariant
    assert_close64(LF.spherical_softmax_loss(3.0 * o, y, eps=0.09, reduction="none"), base)
    assert not torch.allclose(LF.spherical_softmax_loss(3.0 * o, y, eps=0.01, reduction="none"), base)


# --- gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fn, ref, hp", CASES, ids=CASE_IDS)
def test_gradcheck_and_gradgradcheck(name, fn, ref, hp):
    o = make_logits(5, 4, seed=3, requires_grad=True)
    y = torch.tensor([0, 3, -100, 1, 2])
    w = make_weight(4)

    def loss(x):
        return fn(x, y, weight=w, **hp)

    assert torch.autograd.gradcheck(loss, (o,))
    assert torch.autograd.gradgradcheck(loss, (o,))
    assert torch.autograd.gradcheck(lambda x: fn(x, y, reduction="none", **hp), (o,))


@pytest.mark.parametrize("hp", [{}, {"a": 0.5, "b": 2.0}, {"a": 3.0, "b": -1.0}], ids=["default", "a0.5-b2", "a3-b-1"])
def test_z_loss_closed_form_gradient(hp):
    a, b = hp.get("a", 1.0), hp.get("b", 0.0)
    o = make_logits(N, C, scale=1.5, requires_grad=True)
    y = make_target(N, C)
    (grad,) = torch.autograd.grad(LF.z_loss(o, y, reduction="sum", **hp), o)
    x = o.detach()
    mu, sigma = x.mean(1, keepdim=True), x.std(1, correction=0, keepdim=True)
    z = (x - mu) / sigma
    z_c = z.gather(1, y[:, None])
    gamma = torch.sigmoid(a * (b - z_c))
    delta = torch.nn.functional.one_hot(y, C).to(F64)
    # ∂L/∂o_k = −(γ/σ)(δ_kc − (1 + z_c z_k)/D)
    assert_close64(grad, -(gamma / sigma) * (delta - (1 + z_c * z) / C))
    # shift and scale invariance show in the gradient: it is orthogonal to 1 and to o
    assert_close64(grad.sum(1), torch.zeros(N, dtype=F64))
    assert_close64((grad * x).sum(1), torch.zeros(N, dtype=F64))


PARTIALS_CASES = [("z_loss", {}), ("z_loss", {"a_z": 0.5, "b": 2.0}), ("z_loss", {"a_z": 3.0, "b": -1.0}),
                  ("taylor_softmax", {}), ("spherical_softmax", {"eps": 1e-3}), ("spherical_softmax", {"eps": 0.5}),
                  ("squared_error", {})]


@pytest.mark.parametrize("name,hp", PARTIALS_CASES, ids=lambda v: str(v))
def test_closed_form_partials_equal_autograd_of_the_stats_loss(name, hp):
    """STATS_PARTIALS (used by the factored layer) against autograd through STATS_LOSSES, float64,
    on statistics of real output vectors, including a constant row and a zero row for the Z-loss."""
    g = torch.Generator().manual_seed(7)
    o = torch.randn(12, C, generator=g, dtype=F64) * 2 + 0.3
    o[3] = 1.25  # constant outputs
    o[4] = 0.0
    y = torch.randint(0, C, (12,), generator=g)
    a, q, s = (t.detach().requires_grad_(True) for t in output_stats(o, y))
    loss = STATS_LOSSES[name](a, q, s, C, **hp)
    grads = torch.autograd.grad(loss.sum(), (a, q, s), allow_unused=True)
    value, *partials = STATS_PARTIALS[name](a.detach(), q.detach(), s.detach(), C, **hp)
    assert_close64(value, loss.detach())
    for got, want in zip(partials, grads):
        assert_close64(got, torch.zeros_like(a) if want is None else want)
    if name == "z_loss":  # constant rows: zero gradient, not round-off divided by round-off
        assert all(float(p[3:5].abs().max()) == 0.0 for p in partials)


# --- Z-loss invariances and its numerical pitfalls ------------------------------------------------------


@pytest.mark.parametrize("alpha, beta", [(1.0, 5.0), (1.0, -3.0), (0.5, 0.0), (1e-3, 7e-3), (4.0, 1.5), (1e3, -2e3)])
def test_z_loss_shift_and_scale_invariant_float64(alpha, beta):
    # |β| stays within a few σ: float64's q/D − μ² loses (β/σ)²·1e-16, and 1e-12 is asked for here;
    # large shifts are the float32 test below
    o, y = make_logits(N, C, scale=2.0), make_target(N, C)
    for hp in ({}, {"a": 0.5, "b": 2.0}):
        assert_close64(LF.z_loss(alpha * o + beta, y, reduction="none", **hp), LF.z_loss(o, y, reduction="none", **hp))


def test_z_loss_float32_large_shift_has_no_cancellation():
    o, y = make_logits(64, 10, seed=4, scale=2.0), make_target(64, 10, seed=5)
    exact = LF.z_loss(o, y, reduction="none")
    shifted = (o + 1e3).float()  # float32 outputs around 1e3 with spread ~2
    got = LF.z_loss(shifted, y, reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), exact, rtol=1e-4, atol=0)
    # the residual is the rounding of the inputs themselves, not the variance formula
    torch.testing.assert_close(got.double(), LF.z_loss(shifted.double(), y, reduction="none"), rtol=1e-6, atol=0)
    # the pitfall guarded against: the one-pass variance q/D − μ² in float32 is far off here
    mu = shifted.mean(1)
    naive_z = (shifted.gather(1, y[:, None]).squeeze(1) - mu) / ((shifted**2).mean(1) - mu**2).clamp_min(1e-30).sqrt()
    assert ((softplus(-naive_z).double() - exact).abs() / exact).max() > 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("value", [0.0, 0.1, 0.7, -3.0, 1e4])
def test_z_loss_constant_outputs_give_finite_loss_and_zero_gradient(value, dtype):
    o = torch.full((3, C), value, dtype=dtype, requires_grad=True)
    y = torch.tensor([0, 2, 5])
    for a, b in [(1.0, 0.0), (0.5, 2.0)]:
        out = LF.z_loss(o, y, a=a, b=b, reduction="none")
        # no z-score without spread: z_c = 0, so the loss is softplus(a·b)/a
        expected = torch.full((3,), math.log1p(math.exp(a * b)) / a, dtype=F64)
        torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=0)
        (grad,) = torch.autograd.grad(out.sum(), o)
        assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_extreme_outputs_stay_finite(name):
    fn = FUNCTIONS[name]
    signs = torch.tensor([[1, -1, 1, 1, -1, 1], [-1, -1, -1, -1, -1, 1], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, -1]])
    for o in ((1e4 * signs).float(), 1e4 * torch.randn(8, C, generator=torch.Generator().manual_seed(0))):
        o = o.requires_grad_(True)
        y = torch.arange(o.shape[0]) % C
        out = fn(o, y, reduction="none")
        assert torch.isfinite(out).all() and (out >= 0).all(), out
        (grad,) = torch.autograd.grad(out.sum(), o)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_ignored_rows_may_hold_anything(name):
    """Padding rows (ignored) with inf/NaN outputs neither reach the loss nor get a gradient."""
    o = make_logits(4, C).clone()
    o[1] = float("nan")
    o[2, 0] = float("inf")
    o.requires_grad_(True)
    y = torch.tensor([0, -100, -100, 3])
    out = FUNCTIONS[name](o, y)
    assert torch.isfinite(out)
    out.backward()
    assert torch.equal(o.grad[1:3], torch.zeros(2, C, dtype=F64))
    assert torch.isfinite(o.grad).all()


# --- Modules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fn, ref, hp", CASES, ids=CASE_IDS)
def test_module_agrees_with_function(name, fn, ref, hp):
    o, y, w = make_logits(N, C), make_target(N, C), make_weight(C)
    y = y.clone()
    y[0] = -1
    for reduction in ("none", "mean", "sum"):
        module = MODULES[name](**hp, weight=w, ignore_index=-1, reduction=reduction)
        assert isinstance(module, lossbook.get_loss(name).__class__)
        assert torch.equal(module(o, y), fn(o, y, weight=w, ignore_index=-1, reduction=reduction, **hp))
    assert torch.equal(MODULES[name](**hp)(o, y.abs()), fn(o, y.abs(), **hp))


def test_module_positional_hyperparameters_and_repr():
    assert repr(lossbook.ZLoss(0.5, 2.0)) == "ZLoss(ignore_index=-100, reduction='mean', a=0.5, b=2.0)"
    assert lossbook.SphericalSoftmaxLoss(0.1)._kwargs["eps"] == 0.1
    assert lossbook.get_loss("z_loss", a=2.0)._kwargs["a"] == 2.0


# --- errors ------------------------------------------------------------------------------------------


def _x():
    return make_logits(N, C, dtype=torch.float32)


def _y():
    return make_target(N, C)


ERRORS = [
    (LF.z_loss, {"a": 0.0}, ValueError,
     r"^z_loss: a must lie in \(0, inf\); got 0\.0\. a is the softplus sharpness; pass a positive number, e\.g\. a=1\.0"),
    (LF.z_loss, {"a": -1}, ValueError, r"^z_loss: a must lie in \(0, inf\); got -1\.0\."),
    (LF.z_loss, {"a": float("nan")}, ValueError, r"^z_loss: a must lie in \(0, inf\); got nan"),
    (LF.z_loss, {"a": True}, TypeError, r"^z_loss: a must be a real number; got bool\. a is the softplus sharpness"),
    (LF.z_loss, {"b": float("inf")}, ValueError,
     r"^z_loss: b must lie in \(-inf, inf\); got inf\. b is the z-score offset; pass a finite number, e\.g\. b=0\.0"),
    (LF.z_loss, {"b": "1"}, TypeError, r"^z_loss: b must be a real number; got str\."),
    (LF.spherical_softmax_loss, {"eps": 0.0}, ValueError,
     (r"^spherical_softmax_loss: eps must lie in \(0, inf\); got 0\.0\. eps keeps o_c² \+ eps away from 0; "
      r"pass a positive number, e\.g\. eps=1e-3")),
    (LF.spherical_softmax_loss, {"eps": -1e-3}, ValueError, r"^spherical_softmax_loss: eps must lie in \(0, inf\)"),
]


@pytest.mark.parametrize("fn, kwargs, exc, pattern", ERRORS, ids=[f"{e[0].__name__}-{e[1]}" for e in ERRORS])
def test_hyperparameter_errors(fn, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn(_x(), _y(), **kwargs)


@pytest.mark.parametrize("cls, kwargs, pattern", [
    (lossbook.ZLoss, {"a": -0.5}, r"^z_loss: a must lie in \(0, inf\)"),
    (lossbook.ZLoss, {"b": float("nan")}, r"^z_loss: b must lie in"),
    (lossbook.SphericalSoftmaxLoss, {"eps": 0}, r"^spherical_softmax_loss: eps must lie in \(0, inf\)"),
], ids=["ZLoss-a", "ZLoss-b", "SphericalSoftmaxLoss-eps"])
def test_module_hyperparameter_errors_come_at_construction(cls, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(**kwargs)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_target_errors(name):
    fn = FUNCTIONS[name]
    fname = fn.__name__
    with pytest.raises(TypeError, match=rf"^{fname}: target must be int64 class indices of shape \(9,\); got float32 "
                                        r"of shape \(9,\)\. Did you mean target\.long\(\)\?"):
        fn(_x(), _y().float())
    with pytest.raises(TypeError, match=rf"^{fname}: .*got float32 of shape \(9, 6\)\. This loss takes no probability "
                                        r"targets; for one-hot rows use target\.argmax\(1\)\."):
        fn(_x(), torch.full((N, C), 1.0 / C))
    bad = _y().clone()
    bad[3] = C
    with pytest.raises(ValueError, match=rf"^{fname}: target holds class index 6, outside \[0, 6\) for 6 classes\. "
                                         r"Check the labels, or pass ignore_index=6"):
        fn(_x(), bad)
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'label_smoothing'"):
        fn(_x(), _y(), label_smoothing=0.1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['label_smoothing'\]"):
        MODULES[name](label_smoothing=0.1)
