"""Focal loss: the multi-class registered loss against the textbook formula, and the binary
``sigmoid_focal_loss`` against torchvision's.

torchvision's CPU wheel cannot be installed beside this project's CPU torch (the only wheels at hand
are CUDA builds whose extension fails to load, which makes ``import torchvision`` raise), so
:func:`torchvision_sigmoid_focal_loss` below is a transcription of
``torchvision/ops/focal_loss.py`` (torchvision 0.28) used as the oracle; when torchvision imports,
the test also compares with the real function.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    F64,
    assert_close64,
    assert_per_class_terms,
    make_logits,
    make_prob_target,
    make_target,
    make_weight,
)

import lossbook
import lossbook.functional as LF
from lossbook.calibration import focal_terms

N, C = 7, 5


def textbook_focal(x, y, gamma, alpha=None):
    """Per-row −α_y (1 − p_y)^γ log p_y, one row at a time, straight from the paper's formula."""
    rows = []
    for i in range(x.shape[0]):
        p = torch.exp(x[i]) / torch.exp(x[i]).sum()
        a = 1.0 if alpha is None else (alpha if isinstance(alpha, float) else alpha[y[i]])
        rows.append(-a * (1 - p[y[i]]) ** gamma * torch.log(p[y[i]]))
    return torch.stack(rows)


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (0.28), transcribed."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


def _real_torchvision():
    try:
        from torchvision.ops import sigmoid_focal_loss
    except Exception:  # not installed, or a build whose extension does not load
        return None
    return sigmoid_focal_loss


# --- multi-class focal loss -------------------------------------------------------------------------


def test_registered_in_the_calibration_family():
    info = lossbook.loss_info("focal_loss")
    assert info.family == "calibration" and info.paper == "lin2017focal"
    assert info.function is LF.focal_loss and info.module is lossbook.FocalLoss
    assert info.hyperparameters == {"gamma": 2.0, "alpha": None}
    assert "focal_loss" in lossbook.list_losses(family="calibration")


@pytest.mark.parametrize("alpha", [None, 0.25, "per-class"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_matches_the_textbook_formula(gamma, alpha):
    x, y = make_logits(N, C, seed=4), make_target(N, C)
    if alpha == "per-class":
        alpha = make_weight(C, seed=9) / 2
    want = textbook_focal(x, y, gamma, alpha)
    assert_close64(LF.focal_loss(x, y, gamma=gamma, alpha=alpha, reduction="none"), want)
    # α is part of the per-example formula: "mean" divides by N, not by Σ α_y
    assert_close64(LF.focal_loss(x, y, gamma=gamma, alpha=alpha), want.sum() / N)
    assert_close64(LF.focal_loss(x, y, gamma=gamma, alpha=alpha, reduction="sum"), want.sum())
    # the per-class terms are the same formula for every k
    assert_per_class_terms(focal_terms(x, gamma=gamma, alpha=alpha), lambda t: textbook_focal(x, t, gamma, alpha))


def test_alpha_as_a_list_and_weight_follow_their_conventions():
    x, y = make_logits(N, C, seed=5), make_target(N, C)
    alpha, w = [0.5, 1.0, 2.0, 0.25, 1.5], make_weight(C)
    base = textbook_focal(x, y, 2.0, torch.tensor(alpha, dtype=F64))
    assert_close64(LF.focal_loss(x, y, alpha=alpha, reduction="none"), base)
    # weight: torch's convention, "mean" divides by the summed weights of the rows
    assert_close64(LF.focal_loss(x, y, alpha=alpha, weight=w), (w[y] * base).sum() / w[y].sum())


def test_gamma_zero_is_cross_entropy_with_and_without_alpha():
    x, y = make_logits(N, C, seed=6, requires_grad=True), make_target(N, C)
    y[3] = -100
    ce = LF.cross_entropy(x, y, reduction="none")
    assert_close64(LF.focal_loss(x, y, gamma=0.0, reduction="none"), ce)
    assert_close64(LF.focal_loss(x, y, gamma=0.0), LF.cross_entropy(x, y))
    alpha = make_weight(C, seed=8)
    a_y = torch.where(y >= 0, alpha[y.clamp_min(0)], 0.0)
    assert_close64(LF.focal_loss(x, y, gamma=0.0, alpha=alpha, reduction="none"), a_y * ce)
    assert_close64(LF.focal_loss(x, y, gamma=0.0, alpha=0.3, reduction="none"), 0.3 * ce)
    # with class weights (and label smoothing), γ = 0 is torch's cross-entropy exactly
    w = make_weight(C)
    for ls in (0.0, 0.2):
        got = LF.focal_loss(x, y, gamma=0.0, weight=w, label_smoothing=ls)
        want = F.cross_entropy(x, y, weight=w, label_smoothing=ls)
        assert_close64(got, want)
        assert_close64(torch.autograd.grad(got, x)[0], torch.autograd.grad(want, x)[0])


def test_focusing_turns_easy_examples_down():
    x = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]], dtype=F64)
    y = torch.tensor([0, 0])  # row 0 easy (right and confident), row 1 hard (wrong)
    ratio = LF.focal_loss(x, y, reduction="none") / LF.cross_entropy(x, y, reduction="none")
    assert ratio[0] < 1e-3 and ratio[1] > 0.9


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_gradcheck_float64(gamma):
    x = make_logits(4, 3, seed=7, requires_grad=True)
    y = torch.tensor([0, 2, 1, 2])
    alpha = torch.tensor([0.25, 1.0, 0.5], dtype=F64)
    w = make_weight(3)
    assert torch.autograd.gradcheck(lambda z: LF.focal_loss(z, y, gamma=gamma, alpha=alpha), (x,))
    assert torch.autograd.gradcheck(
        lambda z: LF.focal_loss(z, y, gamma=gamma, weight=w, label_smoothing=0.1, reduction="none"), (x,))
    q = make_prob_target(4, 3)
    assert torch.autograd.gradcheck(lambda z: LF.focal_loss(z, q, gamma=gamma, reduction="sum"), (x,))
    assert torch.autograd.gradgradcheck(lambda z: LF.focal_loss(z, y, gamma=gamma), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_extreme_logits_stay_finite(gamma, dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4], [0.0, 0.0, 0.0]], dtype=dtype,
                     requires_grad=True)
    y = torch.tensor([0, 0, 1, 2])
    out = LF.focal_loss(x, y, gamma=gamma, alpha=[0.25, 0.5, 1.0], label_smoothing=0.1, reduction="none")
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # right and confident: ~0; wrong by 2e4: ~0.25·2e4 (the focal factor is 1 there)
    plain = LF.focal_loss(x.detach(), y, gamma=gamma, alpha=[0.25, 0.5, 1.0], reduction="none")
    assert plain[0].item() == 0.0
    assert abs(plain[1].item() - 0.25 * 2e4) < 1.0


def test_module_stores_hyperparameters():
    m = lossbook.FocalLoss(gamma=1.0, alpha=0.5, reduction="sum")
    x, y = make_logits(N, C), make_target(N, C)
    assert torch.equal(m(x, y), LF.focal_loss(x, y, gamma=1.0, alpha=0.5, reduction="sum"))
    assert "gamma=1.0" in repr(m) and isinstance(lossbook.get_loss("focal_loss"), lossbook.FocalLoss)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"gamma": -1.0}, ValueError,
         r"^focal_loss: gamma must be a finite number ≥ 0 .*γ = 0 is cross-entropy.*got -1\.0"),
        ({"gamma": float("inf")}, ValueError, r"gamma must be a finite number ≥ 0"),
        ({"gamma": float("nan")}, ValueError, r"gamma must be a finite number ≥ 0"),
        ({"gamma": "2"}, TypeError, r"^focal_loss: gamma must be a real number ≥ 0; got str"),
        ({"alpha": -0.5}, ValueError, r"^focal_loss: alpha must lie in \[0, inf\); got -0\.5"),
        ({"alpha": [1.0, 1.0]}, ValueError, r"alpha must have one factor per class, shape \(5,\); got shape \(2,\)"),
        ({"alpha": [1.0, -1.0, 1.0, 1.0, 1.0]}, ValueError, r"alpha's per-class factors must be finite and ≥ 0"),
        ({"alpha": torch.ones(1, C)}, ValueError, r"alpha must be a 1-D floating tensor .*shape \(1, 5\)"),
        ({"alpha": "0.25"}, TypeError, r"alpha must be None, a number ≥ 0 or a sequence/tensor"),
    ],
    ids=["gamma-negative", "gamma-inf", "gamma-nan", "gamma-str", "alpha-negative", "alpha-length",
         "alpha-negative-entry", "alpha-2d", "alpha-str"],
)
def test_bad_hyperparameters(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        LF.focal_loss(make_logits(N, C, dtype=torch.float32), make_target(N, C), **kwargs)


def test_module_rejects_bad_hyperparameters_at_construction():
    with pytest.raises(ValueError, match=r"^focal_loss: gamma must be a finite number ≥ 0"):
        lossbook.FocalLoss(gamma=-2)
    with pytest.raises(ValueError, match=r"alpha must lie in"):
        lossbook.get_loss("focal_loss", alpha=-1.0)


# --- sigmoid (binary) focal loss ----------------------------------------------------------------------


def _binary_case(shape, seed, soft=False, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(shape, generator=g, dtype=F64)).to(dtype)
    t = torch.rand(shape, generator=g, dtype=F64) if soft else (torch.rand(shape, generator=g) > 0.7).to(F64)
    return x, t.to(dtype)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.0, 1.0, -1])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("shape, soft", [((11,), False), ((6, 4), False), ((2, 3, 5), False), ((6, 4), True)],
                         ids=["1d", "2d", "3d", "2d-soft"])
def test_sigmoid_focal_matches_torchvision(shape, soft, gamma, alpha, reduction):
    x, t = _binary_case(shape, seed=len(shape), soft=soft)
    x.requires_grad_()
    got = LF.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction=reduction)
    want = torchvision_sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction=reduction)
    assert_close64(got, want)
    assert_close64(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0], rtol=1e-10, atol=1e-12)
    real = _real_torchvision()
    if real is not None:
        assert_close64(got, real(x, t, alpha=alpha, gamma=gamma, reduction=reduction))


def test_sigmoid_focal_defaults_are_torchvisions():
    x, t = _binary_case((5, 3), seed=3, dtype=torch.float32)
    got = LF.sigmoid_focal_loss(x, t)
    assert got.shape == (5, 3) and got.dtype == torch.float32  # reduction="none", alpha=0.25, gamma=2
    torch.testing.assert_close(got, torchvision_sigmoid_focal_loss(x, t))
    # alpha=None is torchvision's alpha=-1 (no balancing); gamma=0 and no alpha is BCE with logits
    assert torch.equal(LF.sigmoid_focal_loss(x, t, alpha=None), LF.sigmoid_focal_loss(x, t, alpha=-1))
    torch.testing.assert_close(LF.sigmoid_focal_loss(x, t, alpha=None, gamma=0.0),
                               F.binary_cross_entropy_with_logits(x, t, reduction="none"))


def test_sigmoid_focal_gradcheck_float64():
    x, t = _binary_case((4, 3), seed=5)
    x.requires_grad_()
    _, soft = _binary_case((4, 3), seed=6, soft=True)
    for gamma in (0.5, 2.0):
        assert torch.autograd.gradcheck(lambda z: LF.sigmoid_focal_loss(z, t, gamma=gamma, reduction="sum"), (x,))
        assert torch.autograd.gradcheck(lambda z: LF.sigmoid_focal_loss(z, soft, gamma=gamma), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_extreme_logits_stay_finite(gamma, dtype):
    x = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.0], dtype=dtype, requires_grad=True)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0], dtype=dtype)
    out = LF.sigmoid_focal_loss(x, t, gamma=gamma)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # right and confident: 0; wrong by 1e4: α_t·1e4 (the focal factor is 1)
    assert out[0].item() == 0.0 and out[1].item() == 0.0
    assert out[2].item() == pytest.approx(0.75 * 1e4) and out[3].item() == pytest.approx(0.25 * 1e4)


def test_sigmoid_focal_empty_mean_is_an_attached_zero():
    x = torch.zeros(0, 3, dtype=F64, requires_grad=True)
    out = LF.sigmoid_focal_loss(x, torch.zeros(0, 3, dtype=F64), reduction="mean")
    assert out.item() == 0.0 and out.requires_grad


def test_sigmoid_focal_does_not_mutate():
    x, t = _binary_case((4, 3), seed=7, soft=True)
    saved = x.clone(), t.clone()
    LF.sigmoid_focal_loss(x, t, gamma=0.5, reduction="mean")
    assert torch.equal(x, saved[0]) and torch.equal(t, saved[1])


@pytest.mark.parametrize(
    "args, kwargs, exc, pattern",
    [
        ((torch.zeros(3, dtype=torch.long), torch.zeros(3)), {}, TypeError, r"inputs must be a floating tensor"),
        ((torch.zeros(3), [0.0, 1.0, 0.0]), {}, TypeError, r"targets must be a torch\.Tensor.*torch\.as_tensor"),
        ((torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])), {}, ValueError,
         r"targets must have the inputs' shape \(4, 3\).*got \(4,\)\. "
         r"For class indices use lossbook\.functional\.focal_loss"),
        ((torch.zeros(3), torch.zeros(3, dtype=torch.float64)), {}, TypeError,
         r"targets must have the inputs' dtype float32.*got float64\. Use targets\.to\(inputs\.dtype\)"),
        ((torch.zeros(3), torch.tensor([0.0, 2.0, 1.0])), {}, ValueError, r"targets must lie in \[0, 1\]"),
        ((torch.zeros(3), torch.zeros(3)), {"gamma": -1.0}, ValueError, r"gamma must be a finite number ≥ 0"),
        ((torch.zeros(3), torch.zeros(3)), {"alpha": 1.5}, ValueError, r"alpha must lie in \[0, 1\]; got 1\.5"),
        ((torch.zeros(3), torch.zeros(3)), {"reduction": "avg"}, ValueError, r"reduction must be one of"),
    ],
    ids=["inputs-int", "targets-list", "targets-shape", "targets-dtype", "targets-range", "gamma", "alpha",
         "reduction"],
)
def test_sigmoid_focal_bad_input(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=r"^sigmoid_focal_loss: .*" + pattern):
        LF.sigmoid_focal_loss(*args, **kwargs)
