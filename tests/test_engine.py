"""The engine for torch's options (:mod:`lossbook.engine`): one behaviour for every registered loss.

Parametrised over the registry where the behaviour is a promise of every loss (ignored rows never
reach the result or the gradient, whatever they hold); the rest pins the engine's own API: the three
kinds of formula, torch's semantics for weights, smoothing and reductions, and its errors.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import F64, assert_close64, call_loss, make_input, make_logits, make_prob_target, make_target, make_weight

import lossbook
from lossbook.engine import LossModule, class_loss

N, C = 7, 5
IGNORED = torch.tensor([1, 4, 5])
WITH_IGNORE = lossbook.list_losses(filter="ignore_index")


def _poisoned(name: str, value: float, dtype=F64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs whose ignored rows hold ``value`` (NaN, ±inf, or a huge number), and the targets."""
    x = make_input(name, N, C, dtype=dtype).detach().clone()
    x[IGNORED] = value
    x[5, 2] = 1.0  # a row that is only partly poisoned
    y = make_target(N, C)
    y_ign = y.clone()
    y_ign[IGNORED] = -7
    return x.requires_grad_(True), y, y_ign


def test_every_registered_loss_supports_ignore_index():
    assert WITH_IGNORE == lossbook.list_losses()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e30], ids=["nan", "inf", "-inf", "huge"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", WITH_IGNORE)
def test_what_an_ignored_row_holds_reaches_neither_result_nor_gradient(name, reduction, value):
    x, y, y_ign = _poisoned(name, value)
    info = lossbook.loss_info(name)
    kwargs = {"ignore_index": -7}
    if "weight" in info.supports:
        kwargs["weight"] = make_weight(C)
    if "label_smoothing" in info.supports:
        kwargs["label_smoothing"] = 0.1
    out = call_loss(name, x, y_ign, reduction=reduction, **kwargs)
    assert torch.isfinite(out).all(), f"{name}: an ignored row put {value} into the result"
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all(), f"{name}: an ignored row put {value} into the gradient"
    assert torch.equal(grad[IGNORED], torch.zeros_like(grad[IGNORED])), "ignored rows got a gradient"
    kept = torch.ones(N, dtype=torch.bool)
    kept[IGNORED] = False
    clean = x.detach()[kept]
    if reduction == "none":
        assert torch.equal(out[IGNORED].detach(), torch.zeros(len(IGNORED), dtype=F64))
        assert_close64(out[kept], call_loss(name, clean, y[kept], reduction="none", **kwargs))
    else:
        assert_close64(out, call_loss(name, clean, y[kept], reduction=reduction, **kwargs))


@pytest.mark.parametrize("name", WITH_IGNORE)
def test_a_fully_ignored_batch_of_nan_gives_an_attached_zero(name):
    x = torch.full((3, C), float("nan"), dtype=F64, requires_grad=True)
    out = call_loss(name, x, torch.full((3,), -100))
    assert out.item() == 0.0 and out.requires_grad
    (grad,) = torch.autograd.grad(out, x)
    assert torch.equal(grad, torch.zeros_like(x))


@pytest.mark.parametrize("name", lossbook.list_losses())
def test_loss_rejects_an_unknown_keyword_naming_itself(name):
    fn = lossbook.loss_info(name).function
    x, y = make_input(name, N, C), make_target(N, C)
    with pytest.raises(TypeError, match=rf"^{fn.__name__}\(\) got an unexpected keyword argument 'weights'"):
        fn(x, y, weights=torch.ones(C, dtype=F64))


WITHOUT_SMOOTHING = [n for n in lossbook.list_losses() if "label_smoothing" not in lossbook.loss_info(n).supports]


@pytest.mark.parametrize("name", WITHOUT_SMOOTHING)
def test_a_loss_without_smoothing_rejects_the_keyword(name):
    fn = lossbook.loss_info(name).function
    x, y = make_input(name, N, C), make_target(N, C)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'label_smoothing'"):
        fn(x, y, label_smoothing=0.0)


# --- the engine's API, on a formula of each kind ----------------------------------------------------------


def _ce_phi(x, y, **options):
    return class_loss("ce_phi", x, y, phi=torch.neg, prob_target=True, **options)


def _ce_per_class(x, y, **options):
    return class_loss("ce_per_class", x, y, per_class=lambda z, t: -torch.log_softmax(z, dim=1), prob_target=True,
                      **options)


def _ce_per_row(x, y, **options):
    def per_row(z, t):
        return torch.nn.functional.cross_entropy(z, t, reduction="none")

    return class_loss("ce_per_row", x, y, per_row=per_row, **options)


KINDS = {"phi": _ce_phi, "per_class": _ce_per_class, "per_row": _ce_per_row}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_formula_is_torch_cross_entropy(kind, reduction):
    fn = KINDS[kind]
    x, y, w = make_logits(N, C, requires_grad=True), make_target(N, C), make_weight(C)
    y = y.clone()
    y[2] = -100
    for options in ({}, {"weight": w}):
        got = fn(x, y, reduction=reduction, **options)
        want = torch.nn.functional.cross_entropy(x, y, reduction=reduction, **options)
        assert_close64(got, want)
        assert_close64(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0])
    if kind != "per_row":  # the formulas that give every class's loss take smoothing and probability targets
        for eps in (0.0, 0.3):
            got = fn(x, y, reduction=reduction, weight=w, label_smoothing=eps)
            assert_close64(got, torch.nn.functional.cross_entropy(x, y, reduction=reduction, weight=w,
                                                                  label_smoothing=eps))
            q = make_prob_target(N, C)
            assert_close64(fn(x, q, reduction=reduction, weight=w, label_smoothing=eps),
                           torch.nn.functional.cross_entropy(x, q, reduction=reduction, weight=w,
                                                             label_smoothing=eps))


def test_weighted_mean_divides_by_the_weights_of_the_counted_rows():
    x, y, w = make_logits(N, C), make_target(N, C), make_weight(C)
    y = y.clone()
    y[0] = -100
    per_row = _ce_phi(x, y, weight=w, reduction="none")
    kept = y != -100
    assert_close64(_ce_phi(x, y, weight=w), per_row.sum() / w[y[kept]].sum())


def test_a_probability_target_with_zero_mass_on_an_infinite_class_stays_finite():
    x = torch.tensor([[0.0, -float("inf"), 1.0]], dtype=F64, requires_grad=True)
    q = torch.tensor([[0.5, 0.0, 0.5]], dtype=F64)
    out = _ce_phi(x, q)
    assert torch.isfinite(out)
    (grad,) = torch.autograd.grad(out, x)
    assert torch.isfinite(grad).all()


def test_engine_errors():
    x, y = make_logits(N, C), make_target(N, C)
    with pytest.raises(TypeError, match=r"exactly one formula"):
        class_loss("f", x, y, phi=torch.neg, per_row=lambda z, t: z[:, 0])
    with pytest.raises(TypeError, match=r"^f\(\) got an unexpected keyword argument 'label_smoothing'"):
        class_loss("f", x, y, per_row=lambda z, t: z[:, 0], label_smoothing=0.1)
    with pytest.raises(TypeError, match=r"^f: target must be int64 class indices .*This loss takes no probability"):
        class_loss("f", x, make_prob_target(N, C), phi=torch.neg)
    with pytest.raises(ValueError, match=r"^f: input must hold cosine similarities in \[-1, 1\]"):
        class_loss("f", x * 10, y, phi=torch.neg, cosine=True)
    # the cosine check looks at the counted rows only
    bad = torch.tanh(x).detach().clone()
    bad[0] = 5.0
    y_ign = y.clone()
    y_ign[0] = -100
    assert torch.isfinite(class_loss("f", bad, y_ign, phi=torch.neg, cosine=True))


# --- the Module form ---------------------------------------------------------------------------------------


def test_module_takes_hyperparameters_positionally_and_shows_its_signature():
    module = lossbook.CompSumLoss(0.5, reduction="sum")
    assert module._kwargs["tau"] == 0.5 and module._kwargs["reduction"] == "sum"
    params = inspect.signature(lossbook.CompSumLoss).parameters
    assert list(params) == ["tau", "weight", "ignore_index", "reduction", "label_smoothing"]
    assert params["tau"].default == 1.0 and params["reduction"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError, match=r"got multiple values for argument 'tau'"):
        lossbook.CompSumLoss(0.5, tau=0.7)
    with pytest.raises(TypeError, match=r"takes at most 1 positional argument"):
        lossbook.CompSumLoss(0.5, 0.7)
    assert issubclass(lossbook.CompSumLoss, LossModule)


def test_module_passes_extra_per_call_tensors_to_the_function():
    scores, target = make_logits(4, 4), torch.arange(4)
    log_q = torch.log(torch.full((4,), 0.25, dtype=F64))
    module = lossbook.InBatchSoftmaxLoss(temperature=0.5)
    assert torch.equal(module(scores, target, log_q=log_q),
                       lossbook.functional.in_batch_softmax_loss(scores, target, log_q, temperature=0.5))
