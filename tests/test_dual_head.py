"""Dual-head knowledge distillation (lossbook.alternatives.dual_head): KD, BinaryKL and BinaryKL-Norm held
to their textbook formulas in float64 and to the official code's batch form (penghui-yang/DHKD
``distiller_zoo/BinaryKL.py``, ``BinaryKLNorm.py``, rewritten here as the formulas they compute, with
their probability clamp), gradcheck, their stated special cases, extreme logits, bad input, and the
two-headed classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import F64, assert_close64, make_logits
from torch import nn

import lossbook
from lossbook.alternatives import DualHeadClassifier, binary_kl_loss, binary_kl_norm_loss, kd_loss

N, C = 6, 5
LOSSES = {"kd_loss": kd_loss, "binary_kl_loss": binary_kl_loss, "binary_kl_norm_loss": binary_kl_norm_loss}


def _bernoulli_kl(p, q):
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def textbook_kd(s, t, T):
    rows = []
    for i in range(s.shape[0]):
        p, q = torch.softmax(t[i] / T, 0), torch.softmax(s[i] / T, 0)
        rows.append(T * T * (p * torch.log(p / q)).sum())
    return torch.stack(rows)


def textbook_binary_kl(s, t, T):
    return T * T * _bernoulli_kl(torch.sigmoid(t / T), torch.sigmoid(s / T)).sum(1)


def textbook_binary_kl_norm(s, t, T):
    return T * T * _bernoulli_kl(torch.full_like(s, 0.5), torch.sigmoid((s - t) / T)).sum(1)


def official_binary_kl(s, t, T, eps=1e-8):
    """The official batch form: KLDivLoss(log σ(s/T), σ(t/T)) + the same for 1 − σ, clamped, T²·sum/N."""
    ps, pt = torch.sigmoid(s / T).clamp(eps, 1 - eps), torch.sigmoid(t / T).clamp(eps, 1 - eps)
    kl = F.kl_div(torch.log(ps), pt, reduction="none") + F.kl_div(torch.log(1 - ps), 1 - pt, reduction="none")
    return T * T * kl.sum() / s.shape[0]


def official_binary_kl_norm(s, t, T, eps=1e-8):
    d = torch.sigmoid((s - t) / T).clamp(eps, 1 - eps)
    half = torch.full_like(d, 0.5)
    kl = F.kl_div(torch.log(d), half, reduction="none") + F.kl_div(torch.log(1 - d), 1 - half, reduction="none")
    return T * T * kl.sum() / s.shape[0]


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_each_loss_matches_its_textbook_formula(T):
    s, t = make_logits(N, C, seed=1), make_logits(N, C, seed=2)
    for fn, ref in ((kd_loss, textbook_kd), (binary_kl_loss, textbook_binary_kl),
                    (binary_kl_norm_loss, textbook_binary_kl_norm)):
        want = ref(s, t, T)
        assert_close64(fn(s, t, temperature=T, reduction="none"), want)
        assert_close64(fn(s, t, temperature=T), want.mean())
        assert_close64(fn(s, t, temperature=T, reduction="sum"), want.sum())


def test_kd_matches_torch_kl_div_batchmean():
    s, t, T = make_logits(N, C, seed=3), make_logits(N, C, seed=4), 4.0
    want = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean", log_target=True) * T * T
    assert_close64(kd_loss(s, t, temperature=T), want)


def test_binary_kl_and_norm_match_the_official_batch_form():
    s, t = make_logits(N, C, seed=5), make_logits(N, C, seed=6)
    assert_close64(binary_kl_loss(s, t), official_binary_kl(s, t, 2.0))
    assert_close64(binary_kl_norm_loss(s, t), official_binary_kl_norm(s, t, 2.0))


def test_zero_exactly_when_the_student_matches_the_teacher():
    t = make_logits(N, C, seed=7)
    for fn in LOSSES.values():
        assert torch.allclose(fn(t.clone(), t, reduction="none"), torch.zeros(N, dtype=F64), atol=1e-12)
        assert (fn(make_logits(N, C, seed=8), t, reduction="none") > 0).all()


def test_kd_is_shift_invariant_and_binary_kl_is_not():
    s, t = make_logits(N, C, seed=9), make_logits(N, C, seed=10)
    shift = torch.linspace(-3, 3, N, dtype=F64)[:, None]
    assert_close64(kd_loss(s + shift, t - shift, reduction="none"), kd_loss(s, t, reduction="none"))
    assert (binary_kl_loss(s + 1.0, t, reduction="none") - binary_kl_loss(s, t, reduction="none")).abs().max() > 1e-3
    # the norm form sees only s − t: shifting both together changes nothing
    assert_close64(binary_kl_norm_loss(s + shift, t + shift, reduction="none"), binary_kl_norm_loss(s, t, reduction="none"))


def test_gradients_closed_form_and_gradcheck():
    T = 2.0
    s, t = make_logits(N, C, seed=11, requires_grad=True), make_logits(N, C, seed=12)
    # BinaryKL: ∂/∂s_k = T·(σ(s_k/T) − σ(t_k/T)) per row (sum over rows); BinaryKL-Norm: T·(σ((s−t)/T) − ½)
    g = torch.autograd.grad(binary_kl_loss(s, t, temperature=T, reduction="sum"), s)[0]
    assert_close64(g, T * (torch.sigmoid(s.detach() / T) - torch.sigmoid(t / T)))
    g = torch.autograd.grad(binary_kl_norm_loss(s, t, temperature=T, reduction="sum"), s)[0]
    assert_close64(g, T * (torch.sigmoid((s.detach() - t) / T) - 0.5))
    # KD: T·(softmax(s/T) − softmax(t/T))
    g = torch.autograd.grad(kd_loss(s, t, temperature=T, reduction="sum"), s)[0]
    assert_close64(g, T * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1)))
    for fn in LOSSES.values():
        assert torch.autograd.gradcheck(lambda v, fn=fn: fn(v, t, temperature=1.5, reduction="none"), (s,))


def test_the_teacher_gets_no_gradient():
    s, t = make_logits(N, C, seed=13, requires_grad=True), make_logits(N, C, seed=14, requires_grad=True)
    for fn in LOSSES.values():
        fn(s, t).backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_extreme_logits_stay_finite(name, dtype):
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0], [1e4, 1e4, -1e4], [0.0, 0.0, 0.0]], dtype=dtype)
    out = LOSSES[name](s, t, reduction="none")
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_bad_input_names_the_fix(name):
    fn, s = LOSSES[name], make_logits(N, C)
    with pytest.raises(ValueError, match=rf"^{name}: teacher logits must have the student's shape \(6, 5\); got \(6, 4\)"):
        fn(s, make_logits(N, C - 1))
    with pytest.raises(ValueError, match=rf"^{name}: temperature must lie in \(0, inf\); got 0\.0\.$"):
        fn(s, s, temperature=0.0)
    with pytest.raises(ValueError, match=rf"^{name}: reduction must be one of"):
        fn(s, s, reduction="batchmean")
    with pytest.raises(TypeError, match=rf"^{name}: logits must be a floating tensor"):
        fn(s.long(), s)
    with pytest.raises(ValueError, match=rf"^{name}: logits must have shape \(N, C\).*unsqueeze\(0\)"):
        fn(s[0], s[0])


def test_dual_head_classifier_shares_the_backbone_not_the_head():
    torch.manual_seed(0)
    model = DualHeadClassifier(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), 8, 3)
    main, aux = model(torch.randn(5, 4))
    assert main.shape == aux.shape == (5, 3) and not torch.equal(main, aux)
    aux.sum().backward()  # the auxiliary loss reaches the backbone and its own head only
    assert model.head.weight.grad is None
    assert model.aux_head.weight.grad is not None and model.backbone[0].weight.grad is not None
    assert lossbook.method_info("DualHeadClassifier").paper == "yang2024dualhead"


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"backbone": "mlp", "features": 8, "num_classes": 3}, TypeError, r"backbone must be an nn.Module; got str"),
    ({"backbone": nn.Identity(), "features": 0, "num_classes": 3}, ValueError, r"features must be an int ≥ 1; got 0"),
    ({"backbone": nn.Identity(), "features": 8, "num_classes": 2.0}, ValueError, r"num_classes must be an int ≥ 1"),
])
def test_dual_head_classifier_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DualHeadClassifier(**kwargs)
