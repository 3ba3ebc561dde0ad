"""FactoredSphericalLayer: exact agreement with dense training, drift, guards, evaluation."""

from __future__ import annotations

import pytest
import torch

import lossbook.spherical.layer as layer_module
from lossbook.spherical import STATS_LOSSES, FactoredSphericalLayer, output_stats

F64 = torch.float64
LOSSES = [
    ("z_loss", {}, 0.05),
    ("z_loss", {"a_z": 0.5, "b": 2.0}, 0.05),
    ("taylor_softmax", {}, 0.05),
    ("spherical_softmax", {"eps": 1e-3}, 0.01),
    ("squared_error", {}, 0.005),
]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


class DenseReference:
    """The same training with W and b explicit and autograd: the oracle."""

    def __init__(self, layer: FactoredSphericalLayer) -> None:
        W, b = layer.dense_weight()
        self.W, self.b = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
        self.loss, self.kwargs, self.D = layer.loss_name, layer.loss_kwargs, layer.num_classes

    def loss_and_grad(self, h, y):
        h = h.detach().clone().requires_grad_(True)
        a, q, s = output_stats(h @ self.W.T + self.b, y)
        L = STATS_LOSSES[self.loss](a, q, s, self.D, **self.kwargs).mean()
        gW, gb, gh = torch.autograd.grad(L, (self.W, self.b, h))
        return L.detach(), gh, gW, gb

    @torch.no_grad()
    def sgd(self, gW, gb, lr, wd):
        self.W.mul_(1 - lr * wd).sub_(lr * gW)
        self.b.mul_(1 - lr * wd).sub_(lr * gb)

    def full(self):
        return torch.cat([self.W, self.b[:, None]], 1).detach()


def make_batch(g, m, n_in, D, device="cpu", dtype=F64):
    h = torch.randn(m, n_in, generator=g, dtype=dtype).to(device)
    y = torch.randint(0, D, (m,), generator=g).to(device)
    y[1] = y[0]  # a duplicate target in every batch
    return h, y


# m ≥ d/2 updates U^{-T} with a d×d resolvent, m < d/2 with an m×m one (Woodbury); each by the
# Neumann series (where it converges fast enough) or by a factorisation: all four exact
@pytest.mark.parametrize("series", ["series", "factorised"])
@pytest.mark.parametrize("m,n_in", [(8, 7), (4, 15)], ids=["dxd", "woodbury"])
@pytest.mark.parametrize("loss,kwargs,lr", LOSSES, ids=lambda v: str(v))
def test_factored_training_equals_dense_training(loss, kwargs, lr, m, n_in, series, device, monkeypatch):
    # 200 terms: the series is used whenever ‖η S‖ < 1/2; 0: never
    monkeypatch.setattr(layer_module, "SERIES_MAX_TERMS", 200 if series == "series" else 0)
    D, wd = 60, 0.01
    g = torch.Generator().manual_seed(0)
    layer = FactoredSphericalLayer(n_in, D, loss=loss, loss_kwargs=kwargs, dtype=F64, device=device,
                                   generator=torch.Generator().manual_seed(1), stabilize_every=9)
    ref = DenseReference(layer)
    worst = 0.0
    for _ in range(60):
        h, y = make_batch(g, m, n_in, D, device)
        h.requires_grad_(True)
        L = layer(h, y)
        L.backward()
        layer.step(lr, weight_decay=wd)
        Ld, gh, gW, gb = ref.loss_and_grad(h, y)
        ref.sgd(gW, gb, lr, wd)
        W = ref.full()
        Wf = torch.cat([t if t.dim() == 2 else t[:, None] for t in layer.dense_weight()], 1)
        errs = [float(abs(L.detach() - Ld) / abs(Ld)), rel(h.grad, gh), rel(Wf, W), rel(layer.Q, W.T @ W),
                rel(layer.wbar, W.sum(0))]
        worst = max(worst, *errs)
    assert worst <= 1e-9, worst


def test_stabilize_leaves_w_unchanged():
    g = torch.Generator().manual_seed(3)
    layer = FactoredSphericalLayer(6, 50, dtype=F64, generator=g, stabilize_every=0)
    for _ in range(30):
        h, y = make_batch(g, 8, 6, 50)
        layer(h, y).backward()
        layer.step(0.5)
    before = torch.cat([layer.dense_weight()[0], layer.dense_weight()[1][:, None]], 1)
    assert not torch.allclose(layer.U, torch.eye(7, dtype=F64))
    layer.stabilize(max_condition=1.0)  # forces the fold of U and ω into V
    after = torch.cat([layer.dense_weight()[0], layer.dense_weight()[1][:, None]], 1)
    assert torch.equal(layer.U, torch.eye(7, dtype=F64)) and float(layer.omega.abs().max()) == 0.0
    assert rel(after, before) <= 1e-12
    assert rel(layer.UinvT, torch.linalg.inv(layer.U).T) <= 1e-14


@pytest.mark.parametrize("m", [16, 32], ids=["woodbury", "dxd-inverse"])
def test_float32_drift_after_5000_steps_is_small(m):
    """V in float32 against the same run in float64 (same initial W, same batches): after 5000
    steps, W, Q and w̄ agree to 1e-4 (relative), and the float32 run's Q and w̄ still describe its W."""
    D, n_in, lr = 2000, 32, 0.05
    start = FactoredSphericalLayer(n_in, D, dtype=F64, generator=torch.Generator().manual_seed(1))
    runs = {}
    for dtype in (torch.float32, F64):
        W0, b0 = start.dense_weight()
        layer = FactoredSphericalLayer.from_dense(W0.to(dtype), b0.to(dtype))
        g = torch.Generator().manual_seed(0)
        for _ in range(5000):
            h, y = make_batch(g, m, n_in, D)
            layer(h.to(dtype), y).backward()
            layer.step(lr)
        W, b = layer.dense_weight()
        runs[dtype] = (torch.cat([W, b[:, None]], 1).to(F64), layer.Q.clone(), layer.wbar.clone())
    (W32, Q32, w32), (W64, Q64, w64) = runs[torch.float32], runs[F64]
    errs = {"W": rel(W32, W64), "Q": rel(Q32, Q64), "wbar": rel(w32, w64),
            "Q vs own W": rel(Q32, W32.T @ W32), "wbar vs own W": rel(w32, W32.sum(0))}
    print("float32 drift after 5000 steps:", errs)
    assert max(errs.values()) <= 1e-4, errs


def test_gradient_accumulation_over_two_forwards_is_exact():
    g = torch.Generator().manual_seed(5)
    layer = FactoredSphericalLayer(5, 30, dtype=F64, generator=g)
    ref = DenseReference(layer)
    (h1, y1), (h2, y2) = make_batch(g, 4, 5, 30), make_batch(g, 6, 5, 30)
    (layer(h1, y1) + 2.0 * layer(h2, y2)).backward()
    layer.step(0.1)
    _, _, gW1, gb1 = ref.loss_and_grad(h1, y1)
    _, _, gW2, gb2 = ref.loss_and_grad(h2, y2)
    ref.sgd(gW1 + 2 * gW2, gb1 + 2 * gb2, 0.1, 0.0)
    Wf = torch.cat([layer.dense_weight()[0], layer.dense_weight()[1][:, None]], 1)
    assert rel(Wf, ref.full()) <= 1e-12


def test_scores_topk_and_dense_loss_match_explicit_outputs():
    g = torch.Generator().manual_seed(2)
    layer = FactoredSphericalLayer(6, 300, dtype=F64, generator=g)
    for _ in range(5):
        h, y = make_batch(g, 8, 6, 300)
        layer(h, y).backward()
        layer.step(0.1)
    W, b = layer.dense_weight()
    h, y = make_batch(g, 5, 6, 300)
    o = h @ W.T + b
    torch.testing.assert_close(layer.scores(h, chunk_size=37), o, rtol=1e-12, atol=1e-12)
    v, i = layer.topk(h, 7, chunk_size=41)
    ov, oi = o.topk(7, dim=1)
    torch.testing.assert_close(v, ov, rtol=1e-12, atol=1e-12)
    assert torch.equal(i, oi)
    with torch.no_grad():
        torch.testing.assert_close(layer(h, y), layer.loss_dense(h, y), rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_and_from_dense():
    g = torch.Generator().manual_seed(4)
    layer = FactoredSphericalLayer(4, 20, dtype=F64, generator=g)
    h, y = make_batch(g, 5, 4, 20)
    layer(h, y).backward()
    layer.step(0.2)
    clone = FactoredSphericalLayer(4, 20, dtype=F64)
    clone.load_state_dict(layer.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(h, y), layer(h, y))
    W, b = layer.dense_weight()
    again = FactoredSphericalLayer.from_dense(W, b)
    torch.testing.assert_close(again.scores(h), layer.scores(h), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(again.Q, layer.Q, rtol=1e-10, atol=1e-12)


def test_gradient_reaches_a_network_below():
    g = torch.Generator().manual_seed(6)
    net = torch.nn.Linear(3, 5).double()
    layer = FactoredSphericalLayer(5, 40, dtype=F64, generator=g)
    x, y = torch.randn(8, 3, dtype=F64, generator=g), torch.randint(0, 40, (8,), generator=g)
    layer(net(x), y).backward()
    W, b = layer.dense_weight()
    out = net(x) @ W.T + b
    a, q, s = output_stats(out, y)
    ref = torch.autograd.grad(STATS_LOSSES["z_loss"](a, q, s, 40).mean(), net.weight)[0]
    torch.testing.assert_close(net.weight.grad, ref, rtol=1e-10, atol=1e-12)


def test_guards_against_double_and_stale_updates():
    g = torch.Generator().manual_seed(7)
    layer = FactoredSphericalLayer(4, 10, dtype=F64, generator=g)
    h, y = make_batch(g, 3, 4, 10)
    with pytest.raises(RuntimeError, match="no gradient is pending"):
        layer.step(0.1)
    loss = layer(h, y)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()
    layer.step(0.1)
    with pytest.raises(RuntimeError, match="no gradient is pending"):
        layer.step(0.1)
    stale = layer(h, y)
    fresh = layer(h, y)
    fresh.backward()
    layer.step(0.1)
    with pytest.raises(RuntimeError, match="stale"):
        stale.backward()


def test_no_grad_forward_leaves_nothing_pending_and_empty_batch_is_finite():
    layer = FactoredSphericalLayer(4, 10, dtype=F64)
    with torch.no_grad():
        layer(torch.randn(3, 4, dtype=F64), torch.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match="no gradient is pending"):
        layer.step(0.1)
    h = torch.zeros(0, 4, dtype=F64, requires_grad=True)
    loss = layer(h, torch.zeros(0, dtype=torch.long))
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "h, y, exc, match",
    [
        (torch.randn(3, 5), torch.tensor([0, 1, 2]), ValueError, r"shape \(m, 4\); got float32 of shape \(3, 5\)"),
        (torch.randn(3, 4), torch.tensor([0, 1, 10]), ValueError, r"class index 10, outside \[0, 10\)"),
        (torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0]), TypeError,
         r"target must be int64 class indices of shape \(3,\)"),
        (torch.randn(3, 4), torch.tensor([[0], [1], [2]]), ValueError, r"target must have shape \(3,\)"),
        (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), torch.tensor([1]), ValueError, "NaN or inf"),
        (torch.randint(0, 3, (2, 4)), torch.tensor([1, 2]), TypeError, "floating tensor.*got int64"),
        ([[0.0] * 4], torch.tensor([1]), TypeError, "floating tensor.*got list"),
    ],
)
def test_bad_inputs_raise_clear_errors(h, y, exc, match):
    layer = FactoredSphericalLayer(4, 10)
    with pytest.raises(exc, match=rf"^FactoredSphericalLayer: .*{match}"):
        layer(h, y)


def test_bad_construction_and_step_arguments():
    with pytest.raises(ValueError, match="loss must be one of"):
        FactoredSphericalLayer(4, 10, loss="cross_entropy")
    with pytest.raises(ValueError, match="num_classes"):
        FactoredSphericalLayer(4, 1)
    with pytest.raises(ValueError):
        FactoredSphericalLayer(4, 10, loss="z_loss", loss_kwargs={"a_z": -1.0})
    layer = FactoredSphericalLayer(4, 10)
    layer(torch.randn(2, 4), torch.tensor([1, 2])).backward()
    with pytest.raises(ValueError, match="lr"):
        layer.step(0.0)


def test_runs_on_the_test_device_in_float32(device):
    layer = FactoredSphericalLayer(8, 100, device=device)
    h = torch.randn(16, 8, device=device, requires_grad=True)
    y = torch.randint(0, 100, (16,), device=device)
    layer(h, y).backward()
    layer.step(0.05)
    assert h.grad.device.type == torch.device(device).type and h.grad.dtype == torch.float32
    assert layer.V.device.type == torch.device(device).type and torch.isfinite(layer.V).all()


def test_statistics_match_explicit_outputs():
    g = torch.Generator().manual_seed(8)
    layer = FactoredSphericalLayer(5, 40, dtype=F64, generator=g)
    h, y = make_batch(g, 6, 5, 40)
    a, q, s = layer.statistics(h, y)
    ra, rq, rs = output_stats(layer.scores(h), y)
    for got, ref in ((a, ra), (q, rq), (s, rs)):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_step_is_exact_when_i_minus_eta_s_is_not_positive_definite():
    """A learning rate so large that I − η·S_d is indefinite: the Cholesky path must hand over to the
    general inverse, and the step must still equal dense SGD."""
    g = torch.Generator().manual_seed(11)
    layer = FactoredSphericalLayer(3, 20, loss="squared_error", dtype=F64, generator=g, stabilize_every=0)
    ref = DenseReference(layer)
    h, y = make_batch(g, 8, 3, 20)
    H = torch.cat([h, torch.ones(8, 1, dtype=F64)], 1)
    lr = 5.0
    S_d = H.T @ (2 * H / 8)  # squared error: g_q = 1/m for every example
    assert float(torch.linalg.eigvalsh(torch.eye(4, dtype=F64) - lr * S_d).min()) < 0
    layer(h, y).backward()
    layer.step(lr)
    _, _, gW, gb = ref.loss_and_grad(h, y)
    ref.sgd(gW, gb, lr, 0.0)
    Wf = torch.cat([t if t.dim() == 2 else t[:, None] for t in layer.dense_weight()], 1)
    assert rel(Wf, ref.full()) <= 1e-10


def test_series_terms_reach_the_dtype_rounding_or_hand_over():
    """k terms of E + … + E^k leave ‖E‖^{k+1}/(1 − ‖E‖), asked to be ≤ ¼·eps·‖E‖."""
    for dtype in (torch.float32, F64):
        eps = torch.finfo(dtype).eps
        for norm in (0.0, 1e-12, 1e-8, 5e-7, 1e-4, 1e-3):
            k = layer_module._series_terms(norm, dtype)
            if k:
                assert norm**k <= 0.25 * eps * (1 - norm) and (k == 1 or norm ** (k - 1) > 0.25 * eps * (1 - norm))
            else:  # handed over to the factorisation: the series would need too many terms
                assert norm ** layer_module.SERIES_MAX_TERMS > 0.25 * eps * (1 - norm)
    assert layer_module._series_terms(5e-7, torch.float32) == 2
    assert layer_module._series_terms(0.5, F64) == 0 and layer_module._series_terms(float("nan"), F64) == 0


@pytest.mark.parametrize("m", [16, 4], ids=["dxd", "woodbury"])
def test_many_classes_take_the_series_and_no_factorisation(m, monkeypatch):
    """With many classes η·S_d is tiny (O(η/D)): a float32 step needs no Cholesky or inverse."""
    def refuse(*args, **kwargs):
        raise AssertionError("a factorisation ran where the series suffices")

    for name in ("cholesky_ex", "inv"):
        monkeypatch.setattr(torch.linalg, name, refuse)
    g = torch.Generator().manual_seed(12)
    layer = FactoredSphericalLayer(16, 20_000, generator=g, stabilize_every=0)
    for _ in range(3):
        h, y = make_batch(g, m, 16, 20_000, dtype=torch.float32)
        layer(h, y).backward()
        layer.step(0.05)
    assert torch.isfinite(layer.U).all() and torch.isfinite(layer.V).all()


def test_float32_statistics_keep_the_spread_when_outputs_share_a_large_offset():
    """Outputs o = W h + 1000: q/D − μ² would cancel away the spread in float32. The layer computes
    D·Var(o) = hᵀ(Q − w̄w̄ᵀ/D)h from the centred Gram, so the Z-loss keeps float32 accuracy."""
    g = torch.Generator().manual_seed(13)
    D, n_in = 500, 12
    W = torch.randn(D, n_in, generator=g, dtype=F64) / n_in**0.5
    b = torch.full((D,), 1000.0, dtype=F64) + 0.1 * torch.randn(D, generator=g, dtype=F64)
    h, y = make_batch(g, 32, n_in, D)
    exact = STATS_LOSSES["z_loss"](*output_stats(h @ W.T + b, y), D)
    layer = FactoredSphericalLayer.from_dense(W.float(), b.float())
    with torch.no_grad():
        a, q, s = layer.statistics(h.float(), y)
    var = q / D - (s / D) ** 2
    ref_var = (h.float().double() @ W.float().double().T + b.float().double()).var(dim=1, unbiased=False)
    assert float(((var - ref_var) / ref_var).abs().max()) <= 1e-4
    got = STATS_LOSSES["z_loss"](a, q, s, D)
    assert float(((got - exact) / exact).abs().max()) <= 1e-3  # W, b rounded to float32 move it by ~1e-4
