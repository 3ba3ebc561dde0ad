"""The calibration family's losses besides focal: dual focal, MbLS, ACLS, squentropy and its baseline, the
rescaled square loss.

Each against its textbook formula in float64 (one row at a time), the official code's batch form
where there is one (Linwei94/ICML2023-DualFocalLoss ``Losses/dual_focal_loss.py``; cvlab-yonsei/ACLS
``calibrate/losses/mbls.py`` and ``calibrate/losses/acls.py``, rewritten here as the batch
formulas they compute), gradcheck, the special cases, extreme logits and bad hyper-parameters.
The contract tests (``tests/test_contract.py``) cover the options and the declared properties.
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
from lossbook.calibration import acls_penalty, dual_focal_terms, mbls_penalty, rescaled_square_terms, squentropy_terms

N, C = 7, 5


def _softmax_row(x):
    return torch.exp(x) / torch.exp(x).sum()


# --- dual focal loss ------------------------------------------------------------------------------------


def textbook_dual_focal(x, y, gamma):
    """−(1 − p_y + p_j)^γ log p_y with p_j the largest probability strictly below p_y (0 if none)."""
    rows = []
    for i in range(x.shape[0]):
        p = _softmax_row(x[i])
        below = p[p < p[y[i]]]
        p_j = below.max() if below.numel() else torch.zeros((), dtype=x.dtype)
        rows.append(-(1 - p[y[i]] + p_j) ** gamma * torch.log(p[y[i]]))
    return torch.stack(rows)


def test_dual_focal_is_registered_in_the_calibration_family():
    info = lossbook.loss_info("dual_focal_loss")
    assert info.family == "calibration" and info.paper == "tao2023dual"
    assert info.function is LF.dual_focal_loss and info.module is lossbook.DualFocalLoss
    assert info.hyperparameters == {"gamma": 5.0}


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_dual_focal_matches_the_textbook_formula(gamma):
    x, y = make_logits(N, C, seed=4), make_target(N, C)
    want = textbook_dual_focal(x, y, gamma)
    assert_close64(LF.dual_focal_loss(x, y, gamma=gamma, reduction="none"), want)
    assert_close64(LF.dual_focal_loss(x, y, gamma=gamma), want.mean())
    assert_close64(LF.dual_focal_loss(x, y, gamma=gamma, reduction="sum"), want.sum())
    terms = dual_focal_terms(x, gamma=gamma)
    for k in range(C):
        assert_close64(terms[:, k], textbook_dual_focal(x, torch.full((N,), k), gamma))


def test_dual_focal_matches_the_official_batch_form():
    # the official forward: a strict p < p_y mask on the probabilities, the top-1 of the masked row
    x, y = make_logits(64, 10, seed=8, scale=3.0), make_target(64, 10, seed=9)
    log_p = F.log_softmax(x, dim=1)
    p, log_py = log_p.exp(), log_p.gather(1, y[:, None]).squeeze(1)
    p_j = torch.topk((p < log_py.exp()[:, None]) * p, 1)[0].squeeze(1)
    official = -(1 - log_py.exp() + p_j) ** 3.0 * log_py
    assert_close64(LF.dual_focal_loss(x, y, gamma=3.0, reduction="sum"), official.sum())


def test_dual_focal_p_j_is_below_the_target_not_the_top_non_target():
    # misclassified: p = (0.6, 0.3, 0.1), y = 1; p_j is 0.1 (below p_y), not 0.6 (the top non-target)
    x = torch.log(torch.tensor([[0.6, 0.3, 0.1]], dtype=F64))
    got = LF.dual_focal_loss(x, torch.tensor([1]), gamma=2.0, reduction="none")
    assert_close64(got, -(1 - 0.3 + 0.1) ** 2 * torch.log(torch.tensor([0.3], dtype=F64)))
    # the target is the smallest probability: p_j = 0 and the loss is the focal loss
    assert_close64(LF.dual_focal_loss(x, torch.tensor([2]), gamma=2.0),
                   LF.focal_loss(x, torch.tensor([2]), gamma=2.0))
    # a class tied with the target is not below it: p = (0.4, 0.4, 0.2), y = 0 gives p_j = 0.2
    x = torch.log(torch.tensor([[0.4, 0.4, 0.2]], dtype=F64))
    got = LF.dual_focal_loss(x, torch.tensor([0]), gamma=2.0)
    assert_close64(got, -(1 - 0.4 + 0.2) ** 2 * torch.log(torch.tensor(0.4, dtype=F64)))


@pytest.mark.parametrize("name, hp", [("dual_focal_loss", {"gamma": 0.0}), ("mbls_loss", {"alpha": 0.0}),
                                      ("acls_loss", {"alpha": 0.0})])
def test_special_cases_equal_to_cross_entropy_are_declared(name, hp):
    # tests/test_contract.py::test_reduces_to_cross_entropy then checks values and gradients against
    # cross_entropy with weights, label smoothing, probability targets and an ignored row
    assert lossbook.loss_info(name).properties["reduces_to_ce_when"] == hp
    x, y = make_logits(N, C, seed=6, scale=5.0), make_target(N, C)
    assert_close64(lossbook.loss_info(name).function(x, y, **hp), F.cross_entropy(x, y))


def test_dual_focal_weighs_a_close_runner_up_more_than_focal_does():
    # a right, confident row whose runner-up is close gets a larger factor than focal's (p_j adds to it)
    x = torch.log(torch.tensor([[0.7, 0.28, 0.02]], dtype=F64))
    y = torch.tensor([0])
    assert LF.dual_focal_loss(x, y, gamma=2.0) > LF.focal_loss(x, y, gamma=2.0)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_dual_focal_gradcheck_float64(gamma):
    x = make_logits(4, 3, seed=7, requires_grad=True)  # no ties among a row's probabilities
    y = torch.tensor([0, 2, 1, 2])
    w = make_weight(3)
    assert torch.autograd.gradcheck(lambda z: LF.dual_focal_loss(z, y, gamma=gamma), (x,))
    assert torch.autograd.gradcheck(
        lambda z: LF.dual_focal_loss(z, y, gamma=gamma, weight=w, label_smoothing=0.1, reduction="none"), (x,))
    q = make_prob_target(4, 3)
    assert torch.autograd.gradcheck(lambda z: LF.dual_focal_loss(z, q, gamma=gamma, reduction="sum"), (x,))
    assert torch.autograd.gradgradcheck(lambda z: LF.dual_focal_loss(z, y, gamma=gamma), (x,))


# --- MbLS -----------------------------------------------------------------------------------------------


def textbook_mbls(x, y, margin, alpha):
    """−log p_y + (α/C)·Σ_k max(0, max_j z_j − z_k − M), one row at a time."""
    rows = []
    for i in range(x.shape[0]):
        z = x[i]
        pen = sum(torch.clamp(z.max() - z[k] - margin, min=0) for k in range(len(z))) / len(z)
        rows.append(-torch.log(_softmax_row(z)[y[i]]) + alpha * pen)
    return torch.stack(rows)


@pytest.mark.parametrize("margin, alpha", [(10.0, 0.1), (2.0, 0.1), (1.0, 0.5), (0.0, 1.0), (3.0, 0.0)])
def test_mbls_matches_the_textbook_formula(margin, alpha):
    x, y = make_logits(N, C, seed=4, scale=3.0), make_target(N, C)
    want = textbook_mbls(x, y, margin, alpha)
    assert_close64(LF.mbls_loss(x, y, margin=margin, alpha=alpha, reduction="none"), want)
    assert_close64(LF.mbls_loss(x, y, margin=margin, alpha=alpha), want.mean())
    if margin < 3 and alpha > 0:
        assert (mbls_penalty(x, margin=margin) > 0).any(), "the penalty must be active in this case"


def test_mbls_matches_the_official_batch_form():
    # official: CE (mean) + α·mean over the N·C entries of relu(max_j z_j − z_k − M)
    x, y = make_logits(32, 6, seed=5, scale=4.0), make_target(32, 6, seed=6)
    official = F.cross_entropy(x, y) + 0.1 * F.relu(x.max(1, keepdim=True).values - x - 2.0).mean()
    assert_close64(LF.mbls_loss(x, y, margin=2.0, alpha=0.1), official)


def test_mbls_alpha_zero_and_inactive_margin_are_cross_entropy():
    x, y = make_logits(N, C, seed=6, requires_grad=True), make_target(N, C)
    for kwargs in ({"alpha": 0.0, "margin": 0.0}, {"margin": 100.0}):  # or every gap inside the margin
        got, want = LF.mbls_loss(x, y, **kwargs), F.cross_entropy(x, y)
        assert_close64(got, want)
        assert_close64(torch.autograd.grad(got, x)[0], torch.autograd.grad(want, x)[0])


def test_mbls_gradcheck_float64():
    x = make_logits(4, 5, seed=7, scale=3.0, requires_grad=True)
    y = torch.tensor([0, 2, 1, 4])
    w = make_weight(5)
    # margin 1.3 keeps every gap away from the hinge's kink
    gaps = x.detach().max(1, keepdim=True).values - x.detach()
    assert ((gaps - 1.3).abs() > 1e-3).all()
    assert torch.autograd.gradcheck(lambda z: LF.mbls_loss(z, y, margin=1.3, alpha=0.5, weight=w,
                                                           label_smoothing=0.1, reduction="none"), (x,))


# --- ACLS -----------------------------------------------------------------------------------------------


def textbook_acls(x, y, alpha, pos_lambda, neg_lambda, margin):
    """−log p_y + α[λ₁ max(0, z_a − M)² + λ₂/(C−1)·Σ_{k≠a} max(0, z_a − z_k − M)²], a = argmax z."""
    rows = []
    for i in range(x.shape[0]):
        z = x[i]
        a = int(z.argmax())
        pos = torch.clamp(z[a] - margin, min=0) ** 2
        neg = sum(torch.clamp(z[a] - z[k] - margin, min=0) ** 2 for k in range(len(z)) if k != a) / (len(z) - 1)
        rows.append(-torch.log(_softmax_row(z)[y[i]]) + alpha * (pos_lambda * pos + neg_lambda * neg))
    return torch.stack(rows)


@pytest.mark.parametrize("alpha, pos_lambda, neg_lambda, margin", [(0.1, 1.0, 0.1, 10.0), (0.5, 1.0, 0.1, 1.0),
                                                                  (1.0, 0.3, 2.0, 2.0), (0.0, 1.0, 1.0, 0.0)])
def test_acls_matches_the_textbook_formula(alpha, pos_lambda, neg_lambda, margin):
    hp = {"alpha": alpha, "pos_lambda": pos_lambda, "neg_lambda": neg_lambda, "margin": margin}
    x, y = make_logits(N, C, seed=4, scale=3.0), make_target(N, C)
    want = textbook_acls(x, y, **hp)
    assert_close64(LF.acls_loss(x, y, reduction="none", **hp), want)
    assert_close64(LF.acls_loss(x, y, **hp), want.mean())


def test_acls_matches_the_official_batch_form():
    # official: CE (mean) + α[λ₁·Σ pos / N + λ₂·Σ neg / (N(C − 1))], with the indicator of the row maximum
    x, y = make_logits(32, 6, seed=5, scale=4.0), make_target(32, 6, seed=6)
    alpha, l1, l2, m = 0.1, 1.0, 0.1, 2.0
    top = x.max(1, keepdim=True).values
    ind = (x == top).to(F64)
    pos = (ind * F.relu(top - m) ** 2).sum() / 32
    neg = ((1 - ind) * F.relu(top - x - m) ** 2).sum() / (32 * 5)
    official = F.cross_entropy(x, y) + alpha * (l1 * pos + l2 * neg)
    assert_close64(LF.acls_loss(x, y, alpha=alpha, pos_lambda=l1, neg_lambda=l2, margin=m), official)
    assert_close64(acls_penalty(x, pos_lambda=l1, neg_lambda=l2, margin=m).mean(), l1 * pos + l2 * neg)


def test_acls_stops_the_gradient_of_the_largest_logit_in_the_negative_term():
    x, y = make_logits(N, C, seed=9, scale=4.0, requires_grad=True), make_target(N, C)
    # λ₁ = 0: only the negative term remains, and it must not push the arg-max logit
    got = LF.acls_loss(x, y, alpha=1.0, pos_lambda=0.0, neg_lambda=1.0, margin=1.0, reduction="sum")
    g = torch.autograd.grad(got, x)[0] - torch.autograd.grad(F.cross_entropy(x, y, reduction="sum"), x)[0]
    a = x.detach().argmax(1)
    assert (g.gather(1, a[:, None]) == 0).all()
    assert (g != 0).any(), "the negative term must be active here"
    # and the positive term pulls the largest logit down when it exceeds M
    got = LF.acls_loss(x, y, alpha=1.0, pos_lambda=1.0, neg_lambda=0.0, margin=1.0, reduction="sum")
    g = torch.autograd.grad(got, x)[0] - torch.autograd.grad(F.cross_entropy(x, y, reduction="sum"), x)[0]
    top = x.detach().max(1).values
    assert_close64(g.gather(1, a[:, None]).squeeze(1), 2 * (top - 1.0).clamp_min(0))


def test_acls_is_not_shift_invariant_but_alpha_zero_is_cross_entropy():
    x, y = make_logits(N, C, seed=3), make_target(N, C)
    assert not torch.allclose(LF.acls_loss(x + 20.0, y), LF.acls_loss(x, y))
    assert_close64(LF.acls_loss(x, y, alpha=0.0), F.cross_entropy(x, y))


def test_acls_gradcheck_float64():
    x = make_logits(4, 5, seed=7, scale=3.0, requires_grad=True)  # no gap or logit within 1e-1 of the margin
    y = torch.tensor([0, 2, 1, 4])
    w = make_weight(5)
    # λ₂ = 0: no stop-gradient, so the gradient is the true one
    assert torch.autograd.gradcheck(lambda z: LF.acls_loss(z, y, alpha=0.5, neg_lambda=0.0, margin=1.3, weight=w,
                                                           label_smoothing=0.1, reduction="none"), (x,))
    # with λ₂ > 0 the negative term stops the gradient of z_a: check the gradient with respect to the
    # other logits, the arg-max ones held fixed
    top, fixed = F.one_hot(x.detach().argmax(1), 5).bool(), x.detach().clone()
    assert torch.autograd.gradcheck(
        lambda v: LF.acls_loss(torch.where(top, fixed, v), y, alpha=0.5, neg_lambda=2.0, margin=1.3, weight=w,
                               label_smoothing=0.1, reduction="none"), (x,))


# --- squentropy -----------------------------------------------------------------------------------------


def textbook_squentropy(x, y):
    """−log p_y + (1/(C − 1))·Σ_{k≠y} z_k², one row at a time."""
    c = x.shape[1]
    return torch.stack([-torch.log(_softmax_row(x[i])[y[i]])
                        + sum(x[i, k] ** 2 for k in range(c) if k != y[i]) / (c - 1) for i in range(x.shape[0])])


def test_squentropy_is_registered_without_hyperparameters():
    info = lossbook.loss_info("squentropy_loss")
    assert info.family == "calibration" and info.paper == "hui2023squentropy"
    assert info.hyperparameters == {} and info.module is lossbook.SquentropyLoss


@pytest.mark.parametrize("c", [2, 3, 10])
def test_squentropy_matches_the_closed_form(c):
    x, y = make_logits(N, c, seed=4), make_target(N, c)
    want = textbook_squentropy(x, y)
    assert_close64(LF.squentropy_loss(x, y, reduction="none"), want)
    assert_close64(LF.squentropy_loss(x, y), want.mean())
    assert_per_class_terms(squentropy_terms(x), lambda t: textbook_squentropy(x, t))


def test_squentropy_gradient_closed_form():
    # ∂ℓ/∂z_k = p_k − 1[k = y] + 2 z_k/(C − 1)·1[k ≠ y]
    x, y = make_logits(N, C, seed=5, requires_grad=True), make_target(N, C)
    g = torch.autograd.grad(LF.squentropy_loss(x, y, reduction="sum"), x)[0]
    onehot = F.one_hot(y, C).to(F64)
    want = torch.softmax(x.detach(), 1) - onehot + 2 * x.detach() * (1 - onehot) / (C - 1)
    assert_close64(g, want)


def test_squentropy_one_class_is_zero_and_gradcheck():
    x = torch.tensor([[3.0], [-2.0]], dtype=F64, requires_grad=True)
    out = LF.squentropy_loss(x, torch.tensor([0, 0]), reduction="none")
    assert torch.equal(out, torch.zeros(2, dtype=F64))
    x, y = make_logits(4, 3, seed=7, requires_grad=True), torch.tensor([0, 2, 1, 2])
    assert torch.autograd.gradcheck(lambda z: LF.squentropy_loss(z, y, weight=make_weight(3), label_smoothing=0.1,
                                                                 reduction="none"), (x,))
    assert torch.autograd.gradgradcheck(lambda z: LF.squentropy_loss(z, y), (x,))


# --- rescaled square loss (squentropy's other baseline) -----------------------------------------------


def textbook_rescaled_square(x, y, k, m):
    """(1/C)·[k·(z_y − M)² + Σ_{j≠y} z_j²], one row at a time."""
    c = x.shape[1]
    return torch.stack([(k * (x[i, y[i]] - m) ** 2 + sum(x[i, j] ** 2 for j in range(c) if j != y[i])) / c
                        for i in range(x.shape[0])])


def test_rescaled_square_is_registered_with_k_and_m():
    info = lossbook.loss_info("rescaled_square_loss")
    assert info.family == "calibration" and info.paper == "hui2021evaluation"
    assert info.hyperparameters == {"k": 1.0, "m": 1.0} and info.module is lossbook.RescaledSquareLoss


@pytest.mark.parametrize("k, m", [(1.0, 1.0), (15.0, 30.0), (0.5, -2.0)])
def test_rescaled_square_matches_the_closed_form(k, m):
    x, y = make_logits(N, C, seed=11), make_target(N, C)
    want = textbook_rescaled_square(x, y, k, m)
    assert_close64(LF.rescaled_square_loss(x, y, k=k, m=m, reduction="none"), want)
    assert_close64(LF.rescaled_square_loss(x, y, k=k, m=m, reduction="sum"), want.sum())
    assert_per_class_terms(rescaled_square_terms(x, k=k, m=m), lambda t: textbook_rescaled_square(x, t, k, m))


def test_rescaled_square_at_k_m_one_is_the_mean_square_error_and_the_spherical_squared_error_over_c():
    x, y = make_logits(N, C, seed=12), make_target(N, C)
    mse = F.mse_loss(x, F.one_hot(y, C).to(F64), reduction="none").mean(1)
    assert_close64(LF.rescaled_square_loss(x, y, reduction="none"), mse)
    assert_close64(LF.rescaled_square_loss(x, y, reduction="none") * C, LF.squared_error_loss(x, y, reduction="none"))


def test_rescaled_square_gradient_closed_form_and_gradcheck():
    # ∂ℓ/∂z_j = (2/C)·k·(z_y − M) for j = y, (2/C)·z_j otherwise
    k, m = 3.0, 2.0
    x, y = make_logits(N, C, seed=13, requires_grad=True), make_target(N, C)
    g = torch.autograd.grad(LF.rescaled_square_loss(x, y, k=k, m=m, reduction="sum"), x)[0]
    onehot = F.one_hot(y, C).to(F64)
    z = x.detach()
    want = (2 / C) * torch.where(onehot.bool(), k * (z - m), z)
    assert_close64(g, want)
    assert torch.autograd.gradcheck(lambda v: LF.rescaled_square_loss(v, y, k=k, m=m, weight=make_weight(C),
                                                                      label_smoothing=0.1, reduction="none"), (x,))
    assert torch.autograd.gradgradcheck(lambda v: LF.rescaled_square_loss(v, y, k=k, m=m), (x,))


def test_rescaled_square_is_zero_exactly_at_m_times_the_one_hot():
    y = make_target(N, C)
    z = 2.5 * F.one_hot(y, C).to(F64)
    assert torch.equal(LF.rescaled_square_loss(z, y, k=4.0, m=2.5, reduction="none"), torch.zeros(N, dtype=F64))


# --- shared: extreme logits, Modules, bad hyper-parameters ------------------------------------------------

LOSSES = ["dual_focal_loss", "mbls_loss", "acls_loss", "squentropy_loss", "rescaled_square_loss"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", LOSSES)
def test_extreme_logits_stay_finite(name, dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4], [0.0, 0.0, 0.0]], dtype=dtype,
                     requires_grad=True)
    y = torch.tensor([0, 0, 1, 2])
    fn = lossbook.loss_info(name).function
    out = fn(x, y, label_smoothing=0.1, reduction="none")
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_modules_equal_functions_with_their_hyperparameters():
    x, y = make_logits(N, C, seed=2, scale=4.0), make_target(N, C)
    assert_close64(lossbook.DualFocalLoss(gamma=2.0)(x, y), LF.dual_focal_loss(x, y, gamma=2.0))
    assert_close64(lossbook.MbLSLoss(margin=2.0, alpha=0.3)(x, y), LF.mbls_loss(x, y, margin=2.0, alpha=0.3))
    assert_close64(lossbook.ACLSLoss(0.2, 1.0, 0.5, 2.0)(x, y),
                   LF.acls_loss(x, y, alpha=0.2, pos_lambda=1.0, neg_lambda=0.5, margin=2.0))
    assert_close64(lossbook.SquentropyLoss(reduction="sum")(x, y), LF.squentropy_loss(x, y, reduction="sum"))


@pytest.mark.parametrize("name, kwargs, exc, match", [
    ("dual_focal_loss", {"gamma": -1.0}, ValueError, r"^dual_focal_loss: gamma must be a finite number ≥ 0"),
    ("dual_focal_loss", {"gamma": True}, TypeError, r"^dual_focal_loss: gamma must be a real number ≥ 0; got bool"),
    ("mbls_loss", {"margin": -1.0}, ValueError, r"^mbls_loss: margin must lie in \[0, inf\); got -1\.0\.$"),
    ("mbls_loss", {"alpha": "0.1"}, TypeError, r"^mbls_loss: alpha must be a real number; got str\.$"),
    ("mbls_loss", {"alpha": float("nan")}, ValueError, r"^mbls_loss: alpha must lie in \[0, inf\)"),
    ("acls_loss", {"alpha": -0.1}, ValueError, r"^acls_loss: alpha must lie in \[0, inf\); got -0\.1\.$"),
    ("acls_loss", {"pos_lambda": -1.0}, ValueError, r"^acls_loss: pos_lambda must lie in \[0, inf\)"),
    ("acls_loss", {"neg_lambda": None}, TypeError, r"^acls_loss: neg_lambda must be a real number; got NoneType"),
    ("acls_loss", {"margin": float("inf")}, ValueError, r"^acls_loss: margin must lie in \[0, inf\); got inf\.$"),
    ("rescaled_square_loss", {"k": 0.0}, ValueError, r"^rescaled_square_loss: k must lie in \(0, inf\); got 0\.0\.$"),
    ("rescaled_square_loss", {"m": "1"}, TypeError, r"^rescaled_square_loss: m must be a real number; got str\.$"),
])
def test_bad_hyperparameters_are_refused_by_function_and_module(name, kwargs, exc, match):
    info = lossbook.loss_info(name)
    with pytest.raises(exc, match=match):
        info.function(make_logits(N, C), make_target(N, C), **kwargs)
    with pytest.raises(exc, match=match):
        info.module(**kwargs)


@pytest.mark.parametrize("name", LOSSES)
def test_bad_inputs_name_the_loss_and_the_fix(name):
    fn = lossbook.loss_info(name).function
    with pytest.raises(TypeError, match=rf"^{name}: target must be int64 class indices.*target.long\(\)"):
        fn(make_logits(N, C), make_target(N, C).int())
    with pytest.raises(ValueError, match=rf"^{name}: logits must have shape \(N, C\).*unsqueeze\(0\)"):
        fn(make_logits(1, C)[0], make_target(1, C))
    with pytest.raises(ValueError, match=rf"^{name}: target holds class index {C}"):
        fn(make_logits(N, C), torch.full((N,), C))
