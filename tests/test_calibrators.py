"""Post-hoc calibrators (lossbook.calibration): temperature, vector and matrix scaling, fitted by NLL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossbook
from lossbook import metrics
from lossbook.calibration import MatrixScaling, TemperatureScaling, VectorScaling, fit_temperature
from lossbook.lab import calibrate

F64 = torch.float64


def _calibrated_logits(n=20_000, c=5, seed=0):
    """Logits whose softmax is the true label distribution (labels drawn from it)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, c, generator=g, dtype=F64) * 2
    y = torch.multinomial(torch.softmax(base, 1), 1, generator=g).squeeze(1)
    return base, y


def _nll(z, y):
    return float(F.cross_entropy(z.double(), y))


def test_calibrators_are_registered_methods():
    for cls in (TemperatureScaling, VectorScaling, MatrixScaling):
        info = lossbook.method_info(cls.__name__)
        assert info.kind == "calibrator" and info.family == "calibration" and info.paper == "guo2017calibration"
        assert getattr(lossbook, cls.__name__) is cls


def test_lab_calibrate_keeps_its_public_names_from_the_library():
    assert calibrate.fit_temperature is fit_temperature


@pytest.mark.parametrize("factor", [3.0, 0.5])
def test_temperature_recovers_the_factor_that_distorted_calibrated_logits(factor):
    base, y = _calibrated_logits()
    ts = TemperatureScaling.fit(factor * base, y)
    assert float(ts.temperature) == pytest.approx(factor, rel=0.05)
    # the fitted T is a minimum of the validation NLL
    t = float(ts.temperature)
    def nll(s):
        return _nll(factor * base / s, y)

    assert nll(t) <= min(nll(t * 0.95), nll(t * 1.05))
    torch.testing.assert_close(ts(factor * base), factor * base / t)


def test_temperature_scaling_never_changes_the_argmax_and_keeps_dtype_and_device():
    base, y = _calibrated_logits(2000, 7, seed=1)
    ts = TemperatureScaling.fit(4 * base, y)
    for dtype in (torch.float32, F64):
        z = (4 * base).to(dtype)
        out = ts(z)
        assert out.dtype == dtype and out.device == z.device
        assert torch.equal(out.argmax(1), z.argmax(1))
    assert metrics.accuracy(ts(4 * base), y) == metrics.accuracy(4 * base, y)
    assert metrics.expected_calibration_error(torch.softmax(ts(4 * base), 1), y) < \
        metrics.expected_calibration_error(torch.softmax(4 * base, 1), y)
    assert "temperature=" in repr(ts)


@pytest.mark.parametrize("cls", [VectorScaling, MatrixScaling])
def test_vector_and_matrix_scaling_reduce_the_validation_nll(cls):
    base, y = _calibrated_logits(3000, 4, seed=2)
    # a distortion temperature cannot undo: per-class scales and offsets
    distorted = base * torch.tensor([3.0, 0.5, 1.5, 2.0], dtype=F64) + torch.tensor([1.0, -1.0, 0.0, 0.5], dtype=F64)
    cal = cls.fit(distorted, y)
    before, after = _nll(distorted, y), _nll(cal(distorted), y)
    t_nll = _nll(TemperatureScaling.fit(distorted, y)(distorted), y)
    assert after < before and after <= t_nll + 1e-9
    assert after == pytest.approx(_nll(base, y), abs=0.01)  # about the NLL of the true logits
    # the fit is a stationary point of the NLL in its parameters
    params = [cal.weight.clone().requires_grad_(), cal.bias.clone().requires_grad_()]
    loss = F.cross_entropy(cal._map(distorted, *params), y)
    grads = torch.autograd.grad(loss, params)
    assert max(float(g.abs().max()) for g in grads) < 1e-6


def test_vector_scaling_recovers_per_class_scales_and_matrix_scaling_contains_it():
    base, y = _calibrated_logits(20_000, 3, seed=3)
    scales = torch.tensor([2.0, 0.5, 1.0], dtype=F64)
    vs = VectorScaling.fit(base * scales, y)
    # w ⊙ (s ⊙ z) + b = z + const: w ≈ 1/s up to noise, b equal across classes (a shift changes nothing)
    torch.testing.assert_close(vs.weight * scales, torch.ones(3, dtype=F64), atol=0.06, rtol=0)
    ms = MatrixScaling.fit(base * scales, y)
    assert ms.weight.shape == (3, 3) and ms.bias.shape == (3,)
    assert _nll(ms(base * scales), y) <= _nll(vs(base * scales), y) + 1e-9


def test_identity_at_construction_and_buffers_follow_the_module():
    z = torch.randn(5, 3, dtype=F64)
    for cal in (TemperatureScaling(), VectorScaling(3), MatrixScaling(3)):
        torch.testing.assert_close(cal(z), z)
        assert not list(cal.parameters()) and len(list(cal.buffers())) >= 1
    assert TemperatureScaling(2.0).to(F64)(z).dtype == F64


def test_numpy_inputs_are_accepted():
    base, y = _calibrated_logits(500, 3, seed=4)
    t_np = fit_temperature((2 * base).numpy(), y.numpy())
    assert t_np == pytest.approx(fit_temperature(2 * base, y))
    assert isinstance(VectorScaling.fit(base.numpy(), y.numpy()), VectorScaling)


@pytest.mark.parametrize("fit", [TemperatureScaling.fit, VectorScaling.fit, MatrixScaling.fit, fit_temperature])
def test_bad_fit_inputs_are_refused_with_the_fix(fit):
    z, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(TypeError, match=r"logits must be a floating tensor.*torch\.as_tensor"):
        fit(z.long(), y)
    with pytest.raises(TypeError, match=r"labels must be integer class indices.*labels\.long\(\)"):
        fit(z, y.float())
    with pytest.raises(ValueError, match=r"logits must be \(N, C\) and labels \(N,\) with N ≥ 1; got shapes \(6,\)"):
        fit(z[:, 0], y)
    with pytest.raises(ValueError, match=r"got shapes \(6, 3\) and \(5,\)"):
        fit(z, y[:5])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        fit(z, y + 1)
    z_bad = z.clone()
    z_bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        fit(z_bad, y)


def test_bad_construction_and_call_are_refused():
    with pytest.raises(ValueError, match=r"^TemperatureScaling: temperature must lie in \(0, inf\); got -1\.0\.$"):
        TemperatureScaling(-1.0)
    with pytest.raises(TypeError, match=r"^TemperatureScaling: temperature must be a real number; got bool\.$"):
        TemperatureScaling(True)
    with pytest.raises(ValueError, match=r"^VectorScaling: num_classes must be an int ≥ 1; got 0\.$"):
        VectorScaling(0)
    with pytest.raises(ValueError, match=r"bounds must satisfy 0 < low < high < inf"):
        TemperatureScaling.fit(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), bounds=(0.0, 1.0))
    vs = VectorScaling(3)
    with pytest.raises(ValueError, match=r"^VectorScaling: was fitted on 3 classes; got logits of shape \(2, 4\)"):
        vs(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"^MatrixScaling: logits must have shape \(N, C\).*unsqueeze\(0\)"):
        MatrixScaling(3)(torch.randn(3))
    with pytest.raises(TypeError, match=r"^TemperatureScaling: logits must be a floating tensor"):
        TemperatureScaling()(torch.zeros(2, 3, dtype=torch.long))


def test_matrix_scaling_stays_near_the_identity_on_calibrated_logits():
    # matrix scaling starts at W = I: on already calibrated logits the fit stays close to it
    base, y = _calibrated_logits(20_000, 3, seed=5)
    ms = MatrixScaling.fit(base, y)
    assert np.allclose(ms.weight.numpy(), np.eye(3), atol=0.08)
