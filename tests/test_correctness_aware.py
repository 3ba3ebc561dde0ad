"""The correctness-aware (CA) calibrator (lossbook.calibration.correctness_aware): its objective, its
features from transformed views, its fit and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossbook
from lossbook.calibration import CorrectnessAwareScaling, TemperatureScaling, correctness_aware_loss, view_features

F64 = torch.float64


def _reference_ca(logits: np.ndarray, correct: np.ndarray) -> float:
    """The official objective written out: weighted MSE between top-1 softmax and correctness, the
    correct predictions weighted 1 − acc and the wrong ones acc, normalised by the weights' sum."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    conf = (e / e.sum(1, keepdims=True)).max(1)
    acc = correct.mean()
    total = weights = 0.0
    for p, c in zip(conf, correct):
        w = (1 - acc) if c else acc
        total += w * (p - c) ** 2
        weights += w
    return total / weights


def _setting(n=600, c=6, seed=0):
    """An over-confident model (labels drawn at temperature 3) whose three noisy 'views' agree with it
    more when it is right: a setting where the views carry a correctness signal."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, c, generator=g, dtype=F64) * 3
    y = torch.multinomial(torch.softmax(base / 3, 1), 1, generator=g).squeeze(1)
    right = (base.argmax(1) == y).unsqueeze(1)
    views = [torch.where(right, base, base * 0.3) + torch.randn(n, c, generator=g, dtype=F64)
             for _ in range(3)]
    return base, views, y


def test_ca_objective_matches_the_written_out_reference_in_float64():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(50, 7, generator=g, dtype=F64) * 2
    correct = torch.rand(50, generator=g) < 0.7
    got = correctness_aware_loss(z, correct)
    assert got.dtype == F64
    assert float(got) == pytest.approx(_reference_ca(z.numpy(), correct.numpy()), rel=1e-12)
    plain = ((torch.softmax(z, 1).amax(1) - correct.double()) ** 2).mean()
    assert float(correctness_aware_loss(z, correct, balanced=False)) == pytest.approx(float(plain), rel=1e-12)


def test_ca_objective_balances_the_two_groups_and_falls_back_when_one_is_empty():
    z = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 4.0]], dtype=F64)
    correct = torch.tensor([1, 1, 1, 0])
    conf = torch.softmax(z, 1).amax(1)
    expect = (0.25 * ((conf[:3] - 1) ** 2).sum() + 0.75 * conf[3] ** 2) / (3 * 0.25 + 0.75)
    assert float(correctness_aware_loss(z, correct)) == pytest.approx(float(expect), rel=1e-12)
    every = torch.ones(4, dtype=torch.bool)
    assert float(correctness_aware_loss(z, every)) == pytest.approx(float(((conf - 1) ** 2).mean()), rel=1e-12)


def test_ca_objective_gradcheck_and_extreme_logits():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(12, 5, generator=g, dtype=F64, requires_grad=True)
    correct = torch.arange(12) % 3 != 0
    assert torch.autograd.gradcheck(lambda t: correctness_aware_loss(t, correct), (z,))
    big = (torch.randn(8, 5, generator=g, dtype=F64) * 1e4).requires_grad_()
    loss = correctness_aware_loss(big, torch.arange(8) % 2 == 0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()


def test_view_features_are_the_views_probabilities_of_the_top_k_classes():
    z = torch.tensor([[0.0, 3.0, 1.0, 2.0]], dtype=F64)
    v1 = torch.tensor([[1.0, 0.0, 0.0, 2.0]], dtype=F64)
    v2 = torch.zeros(1, 4, dtype=F64)
    feats = view_features(z, [v1, v2], k=2)  # top-2 of z: classes 1 then 3
    p1 = torch.softmax(v1, 1)[0]
    assert torch.allclose(feats, torch.tensor([[p1[1], p1[3], 0.25, 0.25]], dtype=F64))
    assert torch.allclose(view_features(z, torch.stack([v1, v2]), k=2), feats)
    assert view_features(z, [v1], k=10).shape == (1, 4)  # k capped at C


def test_unfitted_calibrator_is_the_identity_and_fit_keeps_the_argmax():
    z, views, y = _setting()
    assert torch.allclose(CorrectnessAwareScaling.fit(z, views, y, steps=0)(z, views), z)
    ca = CorrectnessAwareScaling.fit(z, views, y, steps=200)
    out = ca(z.float(), [v.float() for v in views])
    assert out.dtype == torch.float32 and torch.equal(out.argmax(1), z.float().argmax(1))
    t = ca.temperatures(z, views)
    assert t.shape == (len(z),) and bool((t >= 0.1).all() and (t <= 10).all())


def test_ca_fit_lowers_its_objective_and_the_confidence_of_wrong_predictions():
    z, views, y = _setting()
    correct = z.argmax(1) == y
    ca = CorrectnessAwareScaling.fit(z, views, y)
    nll = CorrectnessAwareScaling.fit(z, views, y, objective="nll")
    ts = TemperatureScaling.fit(z, y)
    before = float(correctness_aware_loss(z, correct))
    after = float(correctness_aware_loss(ca(z, views), correct))
    assert after < 0.7 * before
    assert after < float(correctness_aware_loss(ts(z), correct))

    def wrong_confidence(logits):
        return float(torch.softmax(logits, 1).amax(1)[~correct].mean())

    assert wrong_confidence(ca(z, views)) < wrong_confidence(ts(z)) - 0.05
    # and the NLL-fitted version of the same map attains a lower NLL than the CA-fitted one
    assert float(F.cross_entropy(nll(z, views), y)) < float(F.cross_entropy(ca(z, views), y))


def test_fit_is_reproducible_for_a_seed():
    z, views, y = _setting(n=200)
    a = CorrectnessAwareScaling.fit(z, views, y, steps=50, seed=3)
    b = CorrectnessAwareScaling.fit(z, views, y, steps=50, seed=3)
    assert torch.equal(a.temperatures(z, views), b.temperatures(z, views))


def test_registered_and_exported():
    info = lossbook.method_info("CorrectnessAwareScaling")
    assert info.kind == "calibrator" and info.family == "calibration" and info.paper == "liu2024correctness"
    assert lossbook.CorrectnessAwareScaling is CorrectnessAwareScaling


@pytest.mark.parametrize("call, match", [
    (lambda z, v, y: correctness_aware_loss(z, torch.ones(3)), "shape"),
    (lambda z, v, y: correctness_aware_loss(z, torch.full((len(z),), 0.5)), "0/1"),
    (lambda z, v, y: view_features(z, [v[0][:, :3]]), "view_logits"),
    (lambda z, v, y: view_features(z, []), "view_logits"),
    (lambda z, v, y: view_features(z, v, k=0), "k must"),
    (lambda z, v, y: CorrectnessAwareScaling.fit(z, v, y, objective="mse"), "objective"),
    (lambda z, v, y: CorrectnessAwareScaling.fit(z, v, y, steps=-1), "steps"),
    (lambda z, v, y: CorrectnessAwareScaling.fit(z, v, y[:-1]), "shapes"),
    (lambda z, v, y: CorrectnessAwareScaling(12, temperature_range=(2.0, 10.0)), "temperature_range"),
    (lambda z, v, y: CorrectnessAwareScaling(0), "num_features"),
    (lambda z, v, y: CorrectnessAwareScaling.fit(z, v, y, steps=1)(z, v[:2]), "fitted with"),
])
def test_bad_inputs_name_the_fix(call, match):
    z, views, y = _setting(n=40)
    with pytest.raises(ValueError, match=match):
        call(z, views, y)


def test_labels_must_be_integers():
    z, views, y = _setting(n=40)
    with pytest.raises(TypeError, match="labels"):
        CorrectnessAwareScaling.fit(z, views, y.double())
