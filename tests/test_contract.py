"""The contract every registered loss keeps, parametrised over ``lossbook.list_losses()``.

Shapes per reduction, how the reductions relate, dtype/device, ``ignore_index``, empty batches,
class weights, probability targets, no mutation, Module == function, and every property the
loss declares in the registry (checked generically, so a wrong declaration fails here).
"""

from __future__ import annotations

import pytest
import torch
from conftest import (
    F64,
    assert_close64,
    call_loss,
    hp_kwargs,
    make_input,
    make_logits,
    make_prob_target,
    make_target,
    make_weight,
)
from hypothesis import given
from hypothesis import strategies as st

import lossbook

LOSSES = lossbook.list_losses()
REDUCTIONS = ("none", "mean", "sum")
N, C = 7, 5


def supports(name: str, option: str) -> bool:
    return option in lossbook.loss_info(name).supports


def needs(name: str, option: str) -> None:
    if not supports(name, option):
        pytest.skip(f"{name} does not support {option}")


def smoothing(name: str, value: float) -> dict:
    """``{"label_smoothing": value}`` for a loss that supports it; a loss that does not (e.g. the
    spherical family) runs only the value-0 case, without the keyword."""
    if not supports(name, "label_smoothing"):
        if value:
            pytest.skip(f"{name} does not support label_smoothing")
        return {}
    return {"label_smoothing": value}


def declared(name: str, prop: str):
    """The declared value of ``prop`` (None when the loss says nothing about it)."""
    return lossbook.loss_info(name).properties.get(prop)


# --- shapes and reductions ----------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_output_shape(name, reduction, device):
    x, y = make_input(name, N, C, device=device), make_target(N, C, device=device)
    out = call_loss(name, x, y, reduction=reduction)
    assert out.shape == ((N,) if reduction == "none" else ())


@pytest.mark.parametrize("name", LOSSES)
def test_sum_and_mean_agree_with_none(name):
    x, y = make_input(name, N, C), make_target(N, C)
    none = call_loss(name, x, y, reduction="none")
    assert torch.isfinite(none).all()
    assert_close64(call_loss(name, x, y, reduction="sum"), none.sum())
    assert_close64(call_loss(name, x, y, reduction="mean"), none.sum() / N)
    # the default reduction is "mean"
    assert_close64(call_loss(name, x, y), none.sum() / N)


@pytest.mark.parametrize("name", LOSSES)
def test_none_is_per_row_and_permutes_with_the_batch(name):
    x, y = make_input(name, N, C), make_target(N, C)
    none = call_loss(name, x, y, reduction="none")
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(5))
    assert_close64(call_loss(name, x[perm], y[perm], reduction="none"), none[perm])
    # each row's loss depends on that row only
    for i in (0, N - 1):
        assert_close64(call_loss(name, x[i : i + 1], y[i : i + 1], reduction="none"), none[i : i + 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_dtype_and_device_kept(name, reduction, dtype, device):
    x = make_input(name, N, C, dtype=dtype, device=device, requires_grad=True)
    y = make_target(N, C, device=device)
    kwargs = {"weight": make_weight(C, dtype=dtype, device=device)} if supports(name, "weight") else {}
    out = call_loss(name, x, y, reduction=reduction, **kwargs)
    assert out.dtype == dtype and out.device == x.device
    out.sum().backward()
    assert x.grad.dtype == dtype and x.grad.device == x.device
    # float32 and float64 agree to float32 precision
    ref = call_loss(name, x.detach().double().cpu(), y.cpu(), reduction=reduction,
                    **{k: v.double().cpu() for k, v in kwargs.items()})
    torch.testing.assert_close(out.detach().double().cpu(), ref, rtol=1e-5, atol=1e-6)


# --- ignore_index ---------------------------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_ignored_rows_get_exactly_zero_gradient(name, reduction, label_smoothing):
    needs(name, "ignore_index")
    x = make_input(name, N, C, requires_grad=True)
    y = make_target(N, C)
    ignored = torch.tensor([1, 4])
    y_ign = y.clone()
    y_ign[ignored] = -3
    kwargs = {"ignore_index": -3, **smoothing(name, label_smoothing)}
    if supports(name, "weight"):
        kwargs["weight"] = make_weight(C)
    out = call_loss(name, x, y_ign, reduction=reduction, **kwargs)
    out.sum().backward()
    kept = torch.ones(N, dtype=torch.bool)
    kept[ignored] = False
    assert torch.equal(x.grad[ignored], torch.zeros_like(x.grad[ignored])), "ignored rows got a gradient"
    assert (x.grad[kept].abs().sum(1) > 0).all(), "counted rows got no gradient"
    if reduction == "none":
        assert torch.equal(out[ignored].detach(), torch.zeros(2, dtype=F64))
    else:
        # the same as dropping the ignored rows
        sub = call_loss(name, x.detach()[kept], y[kept], reduction=reduction, **kwargs)
        assert_close64(out, sub)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", LOSSES)
def test_fully_ignored_batch_gives_attached_zero(name, reduction):
    needs(name, "ignore_index")
    x = make_input(name, 4, C, requires_grad=True)
    y = torch.full((4,), -100, dtype=torch.long)
    out = call_loss(name, x, y, reduction=reduction)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


# --- empty batch ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_empty_batch(name, reduction, device):
    x = torch.zeros(0, C, dtype=F64, device=device, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long, device=device)
    out = call_loss(name, x, y, reduction=reduction)
    if reduction == "none":
        assert out.shape == (0,)
        return
    assert out.shape == () and torch.isfinite(out) and out.item() == 0.0
    assert out.requires_grad and out.grad_fn is not None
    out.backward()
    assert x.grad is not None and x.grad.shape == (0, C)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", LOSSES)
def test_empty_batch_with_prob_targets(name, reduction):
    needs(name, "prob_target")
    x = torch.zeros(0, C, dtype=F64, requires_grad=True)
    out = call_loss(name, x, torch.zeros(0, C, dtype=F64), reduction=reduction)
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()


# --- class weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_weight_of_ones_equals_no_weight(name, reduction, label_smoothing):
    needs(name, "weight")
    x, y = make_input(name, N, C), make_target(N, C)
    ls = smoothing(name, label_smoothing)
    plain = call_loss(name, x, y, reduction=reduction, **ls)
    ones = call_loss(name, x, y, reduction=reduction, **ls, weight=torch.ones(C, dtype=F64))
    assert_close64(ones, plain)
    if supports(name, "prob_target"):
        q = make_prob_target(N, C)
        assert_close64(call_loss(name, x, q, reduction=reduction, weight=torch.ones(C, dtype=F64)),
                       call_loss(name, x, q, reduction=reduction))


@pytest.mark.parametrize("name", LOSSES)
def test_weight_scales_each_row_by_its_class_weight(name):
    needs(name, "weight")
    x, y, w = make_input(name, N, C), make_target(N, C), make_weight(C)
    plain = call_loss(name, x, y, reduction="none")
    weighted = call_loss(name, x, y, reduction="none", weight=w)
    assert_close64(weighted, w[y] * plain)
    # "mean" divides by the summed weights of the rows (torch's convention)
    assert_close64(call_loss(name, x, y, reduction="mean", weight=w), (w[y] * plain).sum() / w[y].sum())


# --- probability targets ---------------------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.7])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_one_hot_prob_target_equals_index_target(name, reduction, label_smoothing):
    needs(name, "prob_target")
    x, y = make_input(name, N, C, requires_grad=True), make_target(N, C)
    onehot = torch.nn.functional.one_hot(y, C).to(F64)
    by_index = call_loss(name, x, y, reduction=reduction, label_smoothing=label_smoothing)
    by_prob = call_loss(name, x, onehot, reduction=reduction, label_smoothing=label_smoothing)
    assert_close64(by_prob, by_index)
    (g_index,) = torch.autograd.grad(by_index.sum(), x)
    (g_prob,) = torch.autograd.grad(by_prob.sum(), x)
    assert_close64(g_prob, g_index)
    if supports(name, "weight") and reduction == "none":  # "mean" divides differently with weights
        w = make_weight(C)
        assert_close64(call_loss(name, x, onehot, reduction="none", weight=w, label_smoothing=label_smoothing),
                       call_loss(name, x, y, reduction="none", weight=w, label_smoothing=label_smoothing))


@pytest.mark.parametrize("name", LOSSES)
def test_prob_target_is_the_expected_index_loss(name):
    needs(name, "prob_target")
    x, q = make_input(name, N, C), make_prob_target(N, C)
    expected = sum(q[:, k] * call_loss(name, x, torch.full((N,), k), reduction="none") for k in range(C))
    assert_close64(call_loss(name, x, q, reduction="none"), expected)


# --- no mutation, Module == function, hyper-parameters --------------------------------------------------


@pytest.mark.parametrize("name", LOSSES)
def test_caller_tensors_not_mutated(name):
    x = make_input(name, N, C, requires_grad=True)
    y = make_target(N, C)
    y[0] = -100
    w = make_weight(C)
    q = make_prob_target(N, C)
    saved = [t.detach().clone() for t in (x, y, w, q)]
    kwargs = {"weight": w} if supports(name, "weight") else {}
    if supports(name, "label_smoothing"):
        kwargs["label_smoothing"] = 0.2
    call_loss(name, x, y, **kwargs).backward()
    if supports(name, "prob_target"):
        call_loss(name, x, q, **kwargs).backward()
    for before, after in zip(saved, (x, y, w, q)):
        assert torch.equal(before, after.detach())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_module_agrees_with_function(name, reduction, device):
    x, y = make_input(name, N, C, device=device), make_target(N, C, device=device)
    info = lossbook.loss_info(name)
    module = lossbook.get_loss(name, reduction=reduction).to(device)
    assert isinstance(module, torch.nn.Module)
    assert torch.equal(module(x, y), info.function(x, y, reduction=reduction))
    if supports(name, "weight"):
        w = make_weight(C)
        weighted = lossbook.get_loss(name, weight=w, reduction=reduction).to(device)
        assert weighted.weight.device == x.device
        assert torch.equal(weighted(x, y), info.function(x, y, weight=w.to(device), reduction=reduction))
        assert not torch.equal(weighted(x, y), module(x, y))


def _non_default(value):
    """A different valid value for a numeric hyper-parameter (half its default)."""
    return value / 2 if isinstance(value, (int, float)) and not isinstance(value, bool) and value else value


@pytest.mark.parametrize("name", LOSSES)
def test_hyperparameters_round_trip_through_get_loss(name):
    defaults = hp_kwargs(name)
    x, y = make_input(name, N, C), make_target(N, C)
    fn = lossbook.loss_info(name).function
    assert torch.equal(lossbook.get_loss(name, **defaults)(x, y), fn(x, y, **defaults))
    changed = {k: _non_default(v) for k, v in defaults.items()}
    module = lossbook.get_loss(name, **changed)
    for k, v in changed.items():
        assert module._kwargs[k] == v
        assert f"{k}={v!r}" in repr(module)
    assert torch.equal(module(x, y), fn(x, y, **changed))
    if changed != defaults:
        assert not torch.allclose(module(x, y), fn(x, y, **defaults)), "hyper-parameter had no effect"


# --- declared properties -----------------------------------------------------------------------------


def _names_with(prop, value=True):
    return [n for n in LOSSES if declared(n, prop) == value] or [pytest.param("-", marks=pytest.mark.skip)]


def _logit_inputs_only(name, prop):
    """Properties about moving the inputs freely in R^C (shifts, scalings, reaching CE's logits, an
    unconstrained minimiser) cannot hold for a loss on cosines; declaring one is a registry error."""
    assert lossbook.loss_info(name).inputs == "logits", f"{name} takes cosine inputs and cannot declare {prop}"


@pytest.mark.parametrize("name", _names_with("shift_invariant"))
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), c=st.integers(2, 6),
       shift=st.floats(-50, 50, allow_nan=False), per_row=st.booleans())
def test_shift_invariant(name, seed, n, c, shift, per_row):
    _logit_inputs_only(name, "shift_invariant")
    x, y = make_logits(n, c, seed=seed), make_target(n, c, seed=seed + 1)
    consts = shift * (torch.arange(n, dtype=F64) - 1.5 if per_row else torch.ones(n, dtype=F64))
    assert_close64(call_loss(name, x + consts[:, None], y, reduction="none"),
                   call_loss(name, x, y, reduction="none"), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", _names_with("scale_invariant"))
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), c=st.integers(2, 6),
       scale=st.floats(1e-3, 1e3), per_row=st.booleans())
def test_scale_invariant(name, seed, n, c, scale, per_row):
    _logit_inputs_only(name, "scale_invariant")
    x, y = make_logits(n, c, seed=seed), make_target(n, c, seed=seed + 1)
    # one positive factor for the batch, or a different one per row (scale**t, t from -1 to 1)
    factors = scale ** torch.linspace(-1, 1, n, dtype=F64) if per_row else torch.full((n,), scale, dtype=F64)
    assert_close64(call_loss(name, x * factors[:, None], y, reduction="none"),
                   call_loss(name, x, y, reduction="none"), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", _names_with("nonnegative"))
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([0.1, 1.0, 10.0, 1e3]),
       dtype=st.sampled_from([torch.float32, F64]), smoothing=st.sampled_from([0.0, 0.4]))
def test_nonnegative(name, seed, scale, dtype, smoothing):
    x, y = make_input(name, 16, 4, seed=seed, scale=scale, dtype=dtype), make_target(16, 4, seed=seed + 1)
    kwargs = {"label_smoothing": smoothing} if supports(name, "label_smoothing") else {}
    out = call_loss(name, x, y, reduction="none", **kwargs)
    assert not torch.isnan(out).any()
    assert (out >= 0).all(), out


def _max_loss_at_scale(name, scale):
    x, y = make_input(name, 64, 5, seed=11, scale=scale), make_target(64, 5, seed=12)
    return call_loss(name, x, y, reduction="none")


@pytest.mark.parametrize("name", _names_with("bounded"))
def test_bounded(name):
    at_10 = _max_loss_at_scale(name, 10.0)
    at_1e3 = _max_loss_at_scale(name, 1e3)
    assert torch.isfinite(at_1e3).all()
    # an unbounded loss (e.g. CE) grows ~100x from scale 10 to 1e3; a bounded one has saturated
    assert at_1e3.max() <= 2 * at_10.max() + 1e-9


@pytest.mark.parametrize("name", _names_with("bounded", False))
def test_declared_unbounded_grows(name):
    assert _max_loss_at_scale(name, 1e3).max() > 10 * _max_loss_at_scale(name, 10.0).max()


def _sum_over_targets(name, x):
    n, c = x.shape
    return sum(call_loss(name, x, torch.full((n,), k), reduction="none") for k in range(c))


@pytest.mark.parametrize("name", _names_with("symmetric"))
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]))
def test_symmetric(name, seed, scale):
    reference = _sum_over_targets(name, make_input(name, 1, 4, seed=0))[0]
    sums = _sum_over_targets(name, make_input(name, 8, 4, seed=seed, scale=scale))
    assert_close64(sums, reference.expand(8), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", _names_with("symmetric", False))
def test_declared_not_symmetric_varies(name):
    sums = _sum_over_targets(name, make_input(name, 8, 4, seed=3, scale=3.0))
    assert sums.max() - sums.min() > 1e-3


def _reduction_cases():
    cases = [(n, hp) for n in LOSSES if (hp := declared(n, "reduces_to_ce_when"))]
    return [pytest.param(n, hp, id=n) for n, hp in cases] or [pytest.param("-", {}, marks=pytest.mark.skip)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, hp", _reduction_cases())
def test_reduces_to_cross_entropy(name, hp, reduction):
    _logit_inputs_only(name, "reduces_to_ce_when")
    fn, ce = lossbook.loss_info(name).function, lossbook.functional.cross_entropy
    x = make_logits(N, C, requires_grad=True)
    y = make_target(N, C)
    y[2] = -100
    options = [{}, {"weight": make_weight(C)}, {"label_smoothing": 0.25}, {"weight": make_weight(C), "label_smoothing": 0.1}]
    for opts in options:
        for target in (y, make_prob_target(N, C)):
            got, want = fn(x, target, reduction=reduction, **hp, **opts), ce(x, target, reduction=reduction, **opts)
            assert_close64(got, want)
            g_got, g_want = (torch.autograd.grad(v.sum(), x)[0] for v in (got, want))
            assert_close64(g_got, g_want)


@pytest.mark.parametrize("name", _names_with("classification_calibrated"))
def test_classification_calibrated_pointwise_minimiser_picks_bayes_class(name):
    # minimise the conditional risk Σ_k η_k ℓ(z, k) over z; its argmax must be argmax η
    _logit_inputs_only(name, "classification_calibrated")
    eta = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.25, 0.3, 0.45], [0.1, 0.15, 0.75]], dtype=F64)
    def risk_fn(z):
        if supports(name, "prob_target"):  # one call: a probability target gives the expected loss
            return call_loss(name, z, eta, reduction="sum")
        return sum((eta[:, k] * call_loss(name, z, torch.full((4,), k), reduction="none")).sum() for k in range(3))

    z = torch.zeros_like(eta, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.2)
    for _ in range(80):
        opt.zero_grad()
        risk_fn(z).backward()
        opt.step()
    assert torch.equal(z.argmax(1), eta.argmax(1))
    # and the risk went down from the uniform prediction
    assert risk_fn(z.detach()) < risk_fn(torch.zeros_like(eta))


# --- losses on cosine inputs (registered with inputs="cosine": the margin family) -----------------------

COSINE = [n for n in LOSSES if lossbook.loss_info(n).inputs == "cosine"] or [pytest.param("-", marks=pytest.mark.skip)]


def test_input_kinds_are_known():
    assert {lossbook.loss_info(n).inputs for n in LOSSES} <= {"logits", "cosine"}
    assert lossbook.loss_info("cross_entropy").inputs == "logits"


@pytest.mark.parametrize("name", COSINE)
def test_cosine_inputs_reject_unnormalised_scores(name):
    fn = lossbook.loss_info(name).function
    y = make_target(N, C)
    raw = make_logits(N, C, scale=3.0)  # unnormalised scores: some |x| > 1
    assert raw.abs().max() > 1.5
    with pytest.raises(ValueError, match=rf"^{fn.__name__}: input must hold cosine similarities in \[-1, 1\].*"
                                         r"Normalise the embeddings and the class weights.*lossbook\.MarginHead"):
        call_loss(name, raw, y)
    nan = make_input(name, N, C)
    nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match="cosine similarities"):
        call_loss(name, nan, y)
    # rounding slack of a product of unit vectors is accepted
    edge = make_input(name, N, C)
    edge[0, 0] = 1.0 + 5e-7
    assert torch.isfinite(call_loss(name, edge, y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", COSINE)
def test_cosine_extremes_stay_finite(name, dtype):
    # cos = ±1 exactly (θ = 0, π: where arccos has an infinite slope) and 0, at the default scale
    x = torch.tensor([[1.0, -1.0, 0.0, 1.0, -1.0]] * 4 + [[-1.0, 1.0, 1.0, 0.0, -1.0]] * 2, dtype=dtype)
    x.requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    out = call_loss(name, x, y, reduction="none")
    assert out.dtype == dtype and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
