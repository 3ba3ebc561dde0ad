"""lossbook.alternatives: the harmonic layer and loss, the encouraging loss, ReLU outputs, one-vs-the-rest
and SOVR, held to their textbook formulas in float64; and the FGSM/PGD attacks of lossbook.lab.adversarial."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossbook
import lossbook.functional as LF
from lossbook.alternatives import (
    HarmonicLayer,
    harmonic_logits,
    harmonic_loss,
    logit_margin,
    one_vs_rest_terms,
    sovr_loss,
)
from lossbook.lab.adversarial import adversarial_training, fgsm, pgd

D64 = torch.float64


def _data(n=7, c=5, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D64)
    w = torch.randn(c, d, generator=g, dtype=D64)
    y = torch.randint(0, c, (n,), generator=g)
    return x, w, y


# --- harmonic ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 8.0])
def test_harmonic_probabilities_are_the_harmonic_max_of_the_distances(n):
    x, w, y = _data()
    eps = 1e-4
    d = torch.stack([torch.sqrt(((w[k] - x) ** 2).sum(1) + eps) for k in range(len(w))], dim=1)
    p = d ** (-n) / (d ** (-n)).sum(1, keepdim=True)
    logits = harmonic_logits(x, w, n=n, eps=eps)
    torch.testing.assert_close(torch.softmax(logits, 1), p)
    ref = -torch.log(p[torch.arange(len(y)), y])
    torch.testing.assert_close(harmonic_loss(x, w, y, n=n, eps=eps, reduction="none"), ref)
    torch.testing.assert_close(harmonic_loss(x, w, y, n=n, eps=eps), ref.mean())
    torch.testing.assert_close(harmonic_loss(x, w, y, n=n, eps=eps, reduction="sum"), ref.sum())


def test_harmonic_matches_the_authors_layer_convention():
    """Their DistLayer returns (d² + ε)^(−n_code); normalised, it is our harmax with n = 2·n_code."""
    x, w, _ = _data()
    sq = ((x[:, None, :] - w[None]) ** 2).sum(-1) + 1e-4
    theirs = sq ** (-1.0)
    theirs = theirs / theirs.sum(1, keepdim=True)
    torch.testing.assert_close(torch.softmax(harmonic_logits(x, w, n=2.0), 1), theirs)


def test_harmonic_is_scale_invariant_without_eps():
    x, w, y = _data()
    a = harmonic_loss(x, w, y, eps=0.0, reduction="none")
    b = harmonic_loss(7.5 * x, 7.5 * w, y, eps=0.0, reduction="none")
    torch.testing.assert_close(a, b)


def test_harmonic_loss_is_minimised_by_moving_the_centre_onto_the_input():
    x, w, _ = _data(n=1)
    y = torch.tensor([2])
    on = w.clone()
    on[2] = x[0]
    assert harmonic_loss(x, on, y) < harmonic_loss(x, w, y)
    assert harmonic_loss(x, on, y) < 1e-2  # d_y² = ε against O(1) distances


def test_harmonic_gradcheck():
    x, w, y = _data(n=4, c=3, d=2)
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: harmonic_loss(a, b, y, n=3.0, reduction="sum"), (x, w))


def test_harmonic_extreme_inputs_stay_finite():
    x, w, y = _data()
    for scale in (1e4, -1e4):
        xx = (x * scale).requires_grad_(True)
        loss = harmonic_loss(xx, w, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(xx.grad).all()
    on = w[y].clone().requires_grad_(True)  # every input on its own centre
    loss = harmonic_loss(on, w, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(on.grad).all()


def test_harmonic_layer_is_ce_on_its_logits():
    torch.manual_seed(0)
    layer = HarmonicLayer(4, 3, n=3.0)
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    torch.testing.assert_close(F.cross_entropy(layer(x), y), harmonic_loss(x, layer.weight, y, n=3.0))
    torch.testing.assert_close(layer.probabilities(x).sum(1), torch.ones(6))
    assert "n=3" in repr(layer)


def test_harmonic_errors_name_the_fix():
    x, w, y = _data()
    with pytest.raises(ValueError, match=r"harmonic_logits: n must lie in \(0"):
        harmonic_logits(x, w, n=0.0)
    with pytest.raises(ValueError, match="eps must lie in"):
        harmonic_logits(x, w, eps=-1.0)
    with pytest.raises(ValueError, match=r"weight must have shape \(C, 3\)"):
        harmonic_logits(x, w[:, :2])
    with pytest.raises(TypeError, match="class indices"):
        harmonic_loss(x, w, y.float())
    with pytest.raises(ValueError, match=r"class indices in \[0, 5\)"):
        harmonic_loss(x, w, torch.full_like(y, 5))
    with pytest.raises(ValueError, match="reduction"):
        harmonic_loss(x, w, y, reduction="avg")
    with pytest.raises(ValueError, match="positive int"):
        HarmonicLayer(0, 3)


# --- encouraging loss -----------------------------------------------------------------------------------


def _encouraging_reference(z, y, log_end):
    p = torch.softmax(z, 1)[torch.arange(len(y)), y]
    bonus = torch.log(torch.clamp(1 - p, min=1e-5))
    if log_end != 1.0:
        linear = (p - log_end) / (log_end - 1) + math.log(1 - log_end)
        bonus = torch.where(p > log_end, linear, bonus)
    return -torch.log(p) + bonus


@pytest.mark.parametrize("log_end", [1.0, 0.75, 0.5])
def test_encouraging_loss_matches_its_formula(log_end):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 6, generator=g, dtype=D64) * 3
    y = torch.randint(0, 6, (64,), generator=g)
    out = LF.encouraging_loss(z, y, log_end=log_end, reduction="none")
    torch.testing.assert_close(out, _encouraging_reference(z, y, log_end))
    assert (torch.softmax(z, 1)[torch.arange(64), y] > 0.75).any()  # the linear branch is exercised


def test_encouraging_conservative_bonus_is_continuous_with_its_slope_at_log_end():
    e = 0.75
    for p in (e - 1e-7, e + 1e-7):
        z = torch.tensor([[math.log(p), math.log(1 - p)]], dtype=D64, requires_grad=True)
        loss = LF.encouraging_loss(z, torch.tensor([0]), log_end=e)
        loss.backward()
        if p < e:
            below, g_below = loss.item(), z.grad.clone()
        else:
            torch.testing.assert_close(loss.item(), below, atol=1e-5, rtol=0)
            torch.testing.assert_close(z.grad, g_below, atol=1e-5, rtol=0)


def test_encouraging_gives_well_classified_examples_more_gradient_than_ce():
    z = torch.tensor([[4.0, 0.0, 0.0]], dtype=D64, requires_grad=True)
    LF.encouraging_loss(z, torch.tensor([0]), log_end=1.0).backward()
    el = z.grad[0, 0].abs().item()
    z.grad = None
    F.cross_entropy(z, torch.tensor([0])).backward()
    assert el > 5 * z.grad[0, 0].abs().item()


def test_encouraging_gradcheck_and_extremes():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(5, 4, generator=g, dtype=D64, requires_grad=True)
    y = torch.randint(0, 4, (5,), generator=g)
    for log_end in (1.0, 0.75):
        assert torch.autograd.gradcheck(lambda a: LF.encouraging_loss(a, y, log_end=log_end), (z,))
    big = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
    for log_end in (1.0, 0.75):
        loss = LF.encouraging_loss(big, torch.tensor([0, 0]), log_end=log_end)
        (grad,) = torch.autograd.grad(loss, big)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_encouraging_errors_and_module():
    z, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"log_end must lie in \(0, 1\]"):
        LF.encouraging_loss(z, y, log_end=1.5)
    with pytest.raises(ValueError, match="log_end"):
        lossbook.EncouragingLoss(log_end=0.0)
    torch.testing.assert_close(lossbook.EncouragingLoss(log_end=0.5)(z, y), LF.encouraging_loss(z, y, log_end=0.5))


# --- ReLU outputs, one-vs-the-rest, SOVR -------------------------------------------------------------------


def test_relu_output_loss_is_ce_on_relu_scores():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 5, generator=g, dtype=D64) * 2
    y = torch.randint(0, 5, (8,), generator=g)
    ref = -torch.log(torch.exp(z.clamp_min(0)) / torch.exp(z.clamp_min(0)).sum(1, keepdim=True))[torch.arange(8), y]
    torch.testing.assert_close(LF.relu_output_loss(z, y, reduction="none"), ref)
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: LF.relu_output_loss(a + 0.5, y), (zz,))  # away from the kink
    dead = torch.tensor([[-1.0, -2.0, 3.0]], requires_grad=True)  # a negative score gets no gradient
    LF.relu_output_loss(dead, torch.tensor([0])).backward()
    assert dead.grad[0, 0] == 0 and dead.grad[0, 1] == 0


def test_one_vs_rest_matches_the_logistic_form():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(6, 4, generator=g, dtype=D64) * 3
    y = torch.randint(0, 4, (6,), generator=g)
    s = torch.sigmoid(z)
    onehot = F.one_hot(y, 4).to(D64)
    ref = -(onehot * torch.log(s) + (1 - onehot) * torch.log(1 - s)).sum(1)
    torch.testing.assert_close(LF.one_vs_rest_loss(z, y, reduction="none"), ref)
    # the same as torch's binary cross-entropy with logits against one-hot targets, summed over classes
    torch.testing.assert_close(F.binary_cross_entropy_with_logits(z, onehot, reduction="none").sum(1), ref)
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: LF.one_vs_rest_loss(a, y), (zz,))
    big = torch.tensor([[1e4, -1e4]], requires_grad=True)
    loss = LF.one_vs_rest_loss(big, torch.tensor([1]))
    (grad,) = torch.autograd.grad(loss, big)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_logit_margin():
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    torch.testing.assert_close(logit_margin(z, torch.tensor([0, 0])), torch.tensor([1.0, -5.0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        logit_margin(torch.zeros(2, 1), torch.tensor([0, 0]))


def test_sovr_switches_the_smallest_margins_to_one_vs_rest():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(10, 4, generator=g, dtype=D64) * 2
    y = torch.randint(0, 4, (10,), generator=g)
    aux = sovr_loss(z, y, fraction=0.3, reduction="none", return_aux=True)
    margin = logit_margin(z, y)
    assert aux.switched.sum() == 3
    assert margin[aux.switched].max() <= margin[~aux.switched].min()
    ce = F.cross_entropy(z, y, reduction="none")
    ovr = one_vs_rest_terms(z)[torch.arange(10), y]
    torch.testing.assert_close(aux.loss, torch.where(aux.switched, ovr, ce))
    torch.testing.assert_close(sovr_loss(z, y, fraction=0.0), F.cross_entropy(z, y))
    torch.testing.assert_close(sovr_loss(z, y, fraction=1.0), LF.one_vs_rest_loss(z, y))
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: sovr_loss(a, y, fraction=0.5), (zz,))
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
        sovr_loss(z, y, fraction=1.2)


def test_registry_entries():
    assert set(lossbook.list_losses("alternatives")) == {"encouraging_loss", "relu_output_loss", "one_vs_rest_loss"}
    assert {"HarmonicLayer", "harmonic_loss", "harmonic_logits", "sovr_loss", "logit_margin"} <= set(
        lossbook.list_methods("alternatives"))
    fams = lossbook.FAMILIES
    assert fams.index("calibration") < fams.index("alternatives") < fams.index("sparse")


# --- FGSM / PGD --------------------------------------------------------------------------------------------


def _linear_model():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    x = torch.randn(8, 5, dtype=D64)
    y = torch.randint(0, 3, (8,))
    return model, x, y


def test_fgsm_is_the_signed_gradient_step():
    model, x, y = _linear_model()
    xx = x.clone().requires_grad_(True)
    F.cross_entropy(model(xx), y, reduction="sum").backward()
    expected = x + 0.1 * xx.grad.sign()
    model.zero_grad(set_to_none=True)
    out = fgsm(model, x, y, 0.1)
    torch.testing.assert_close(out, expected)
    assert not out.requires_grad and model.weight.grad is None
    clipped = fgsm(model, x, y, 0.1, bounds=(-0.5, 0.5))
    assert clipped.min() >= -0.5 and clipped.max() <= 0.5


def test_pgd_stays_in_the_ball_and_raises_the_loss():
    model, x, y = _linear_model()
    eps = 0.2
    x_before = x.clone()
    adv = pgd(model, x, y, eps, steps=10, seed=3)
    assert (adv - x).abs().max() <= eps + 1e-12
    torch.testing.assert_close(x, x_before)  # not modified in place
    clean = F.cross_entropy(model(x), y)
    assert F.cross_entropy(model(adv), y) > clean
    # on a linear model the worst case in the L∞ ball is reached by FGSM's corner; PGD finds it too
    torch.testing.assert_close(F.cross_entropy(model(adv), y), F.cross_entropy(model(fgsm(model, x, y, eps)), y),
                               atol=0.05, rtol=0)
    torch.testing.assert_close(pgd(model, x, y, eps, seed=3), adv)  # seeded start: reproducible
    torch.testing.assert_close(pgd(model, x, y, 0.0), x)


def test_pgd_keeps_the_training_mode_and_checks_inputs():
    model, x, y = _linear_model()
    model.train()
    pgd(model, x, y, 0.1, steps=2)
    assert model.training
    with pytest.raises(ValueError, match="eps must be a number ≥ 0"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        pgd(model, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="int64 class indices"):
        fgsm(model, x, y.float(), 0.1)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fgsm(lambda a: a, x, y, 0.1)


# --- modular addition (the grokking setting) ------------------------------------------------------------


def test_modular_addition_split():
    from lossbook.lab.algorithmic import modular_addition

    s = modular_addition(7, 0.5, seed=0)
    assert len(s.x_train) == 24 and len(s.x_test) == 25
    torch.testing.assert_close(s.y_train, (s.x_train[:, 0] + s.x_train[:, 1]) % 7)
    pairs = {tuple(r) for r in torch.cat([s.x_train, s.x_test]).tolist()}
    assert len(pairs) == 49  # every pair once, train and test disjoint
    torch.testing.assert_close(modular_addition(7, 0.5, seed=0).x_train, s.x_train)
    with pytest.raises(ValueError, match="train_fraction must lie in"):
        modular_addition(7, 1.0, seed=0)
    with pytest.raises(ValueError, match="p must be an int"):
        modular_addition(1, 0.5, seed=0)


def test_modular_mlp_and_training_record():
    from lossbook.lab.algorithmic import ModularMLP, modular_addition, train_to_generalise

    s = modular_addition(5, 0.8, seed=1)
    for head in ("linear", "harmonic"):
        torch.manual_seed(0)
        model = ModularMLP(5, embed_dim=8, hidden=16, head=head)
        assert model(s.x_test).shape == (len(s.x_test), 5)
        out = train_to_generalise(model, s, steps=40, eval_every=10, stop=False)
        assert list(out["history"]["step"]) == [10, 20, 30, 40]
        assert out["fit_step"] is None or out["fit_step"] in (10, 20, 30, 40)
        assert 0.0 <= out["test_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="head must be"):
        ModularMLP(5, head="cosine")


def test_adversarial_training_is_reproducible():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 4, generator=g)
    y = (x[:, 0] > x[:, 1]).long()

    def trained(eps):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        return adversarial_training(model, F.cross_entropy, x, y, eps=eps, epochs=15, bounds=(0, 1), seed=2)

    a, b = trained(0.05), trained(0.05)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    with pytest.raises(ValueError, match="epochs must be an int"):
        adversarial_training(a, F.cross_entropy, x, y, eps=0.1, epochs=-1)
