"""Margin heads and the norm-aware margins: MarginHead, AdaFace, MagFace, SphereFace2, UNPG.

References are float64 NumPy transcriptions of the official code: mk-minchul/AdaFace ``head.py``,
IrvingMeng/MagFace ``models/magface.py`` (``MagLinear`` + ``MagLoss``), ydwen/opensphere
``model/head/sphereface2.py`` and Jung-Jun-Uk/UNPG ``recognition/models/{build,head}.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import F64, assert_close64, make_weight

import lossbook
import lossbook.functional as LF
from lossbook.margin import (
    AdaFace,
    ArcFace,
    CosFace,
    ElasticArcFace,
    MagFace,
    MarginHead,
    MarginHeadOutput,
    NormalizedSoftmax,
    SphereFace,
    SphereFace2Head,
    cosine_logits,
    magface_regularizer,
    sphereface2_bias_init,
    sphereface2_similarity,
    unpg_logits,
    unpg_negatives,
)
from lossbook.sampled import PartialFC, partial_fc_loss


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _np(t):
    return t.detach().cpu().double().numpy()


def _data(n=8, d=5, c=7, seed=0, norm_scale=1.0):
    g = _gen(seed)
    x = torch.randn(n, d, generator=g, dtype=F64) * norm_scale
    y = torch.randint(0, c, (n,), generator=g)
    return x, y


def _head(transform, d=5, c=7, seed=1):
    head = MarginHead(d, c, transform, dtype=F64)
    with torch.no_grad():
        head.weight.copy_(torch.randn(c, d, generator=_gen(seed), dtype=F64))
    return head


def _np_softmax_ce(z, y):
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), np.asarray(y).astype(int)]


# --- MarginHead ---------------------------------------------------------------------------------------------


def test_margin_head_holds_visible_weights_and_computes_cosines():
    head = MarginHead(5, 7, dtype=F64)
    assert isinstance(head.weight, torch.nn.Parameter) and head.weight.shape == (7, 5)
    assert isinstance(head.transform, ArcFace) and head.transform == ArcFace()
    assert [n for n, _ in head.named_parameters()] == ["weight"]
    x, _ = _data()
    cos = head.cosines(x)
    ref = _np(F.normalize(x, dim=1)) @ _np(F.normalize(head.weight, dim=1)).T
    assert_close64(cos, ref)
    assert "in_features=5, num_classes=7" in repr(head) and "ArcFace" in repr(head)


TRANSFORMS = [ArcFace(scale=16.0), CosFace(scale=16.0, margin=0.3), SphereFace(scale=8.0, margin=3),
              NormalizedSoftmax(scale=4.0), ArcFace(scale=16.0, grad="straight_through")]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=[repr(t) for t in TRANSFORMS])
def test_margin_head_loss_is_cross_entropy_of_the_transform(transform):
    head = _head(transform)
    x, y = _data(seed=2)
    x.requires_grad_()
    cos = cosine_logits(x, head.weight)
    assert_close64(head(x, y), transform(cos, y))
    w = make_weight(7)
    y_ign = y.clone()
    y_ign[3] = -100
    for opts in ({}, {"weight": w}, {"label_smoothing": 0.1}, {"reduction": "none"}, {"reduction": "sum"}):
        got = head.loss(x, y_ign, **opts)
        want = LF.cross_entropy(transform(cos, torch.where(y_ign >= 0, y_ign, -1)), y_ign, **opts)
        assert_close64(got, want)
    # the registered loss on the head's cosines is the same number
    name = {ArcFace: "arcface", CosFace: "cosface", SphereFace: "sphereface", NormalizedSoftmax: "normalized_softmax"}
    fn = lossbook.loss_info(name[type(transform)]).function
    hp = {k: getattr(transform, k) for k in lossbook.loss_info(name[type(transform)]).hyperparameters}
    assert_close64(head.loss(x, y), fn(cos, y, **hp))
    # gradients reach the embeddings and the class centres
    head.loss(x, y).backward()
    assert x.grad is not None and head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    out = head.loss(x, y, return_aux=True)
    assert isinstance(out, MarginHeadOutput) and out.regularizer is None and out.negatives is None
    assert torch.equal(out.loss, out.cross_entropy) and out.logits.shape == (8, 7)


def test_margin_head_ignored_rows_get_no_gradient():
    head = _head(ArcFace(scale=8.0))
    x, y = _data(seed=3)
    x.requires_grad_()
    y[[1, 5]] = -100
    head.loss(x, y).backward()
    assert torch.equal(x.grad[[1, 5]], torch.zeros(2, 5, dtype=F64))
    assert (x.grad[[0, 2, 3, 4, 6, 7]].abs().sum(1) > 0).all()


def test_margin_head_with_partial_fc_rate_one():
    """PartialFC(margin=ArcFace(...)) with sample_rate=1 is MarginHead with the same ArcFace (the
    detailed r = 1 check, with gradients, is in test_sampled_partial_fc.py)."""
    x, y = _data(n=10, d=6, c=9, seed=4)
    margin = ArcFace(scale=8.0, margin=0.4)
    head = MarginHead(6, 9, margin, dtype=F64)
    pfc = PartialFC(6, 9, margin=margin, dtype=F64)
    with torch.no_grad():
        pfc.weight.copy_(head.weight)
    assert_close64(pfc(x, y), head.loss(x, y))
    assert_close64(partial_fc_loss(x, y, head.weight, margin=margin), head.loss(x, y))


def test_partial_fc_rejects_margins_that_need_norms():
    x, y = _data(c=7, seed=5)
    for margin in (MagFace(), AdaFace()):
        with pytest.raises(ValueError, match=r"needs the embeddings' norms.*use lossbook\.MarginHead"):
            partial_fc_loss(x, y, torch.randn(7, 5, dtype=F64), margin=margin)
        with pytest.raises(ValueError, match=r"PartialFC: the margin .* needs the embeddings' norms"):
            PartialFC(5, 7, margin=margin)


def test_margin_head_errors():
    head = MarginHead(5, 7)
    x, y = _data()
    x = x.float()
    with pytest.raises(ValueError, match=r"^MarginHead: embeddings must be a floating tensor of shape \(N, 5\); "
                                         r"got float32 of shape \(8, 4\)"):
        head(x[:, :4], y)
    with pytest.raises(TypeError, match=r"^MarginHead: target must be int64 class indices of shape \(8,\); got int32"):
        head(x, y.int())
    with pytest.raises(ValueError, match=r"target must have shape \(8,\) .*got \(8, 1\)\. Did you mean target\.squeeze"):
        head(x, y[:, None])
    y_bad = y.clone()
    y_bad[0] = 7
    with pytest.raises(ValueError, match=r"^MarginHead: target holds class index 7, outside \[0, 7\)"):
        head(x, y_bad)
    with pytest.raises(ValueError, match=r"^MarginHead\.loss: target holds class index 7, outside \[0, 7\).*"
                                         r"ignore_index=7"):
        head.loss(x, y_bad)
    with pytest.raises(ValueError, match=r"^MarginHead\.loss: reduction must be one of"):
        head.loss(x, y, reduction="avg")
    with pytest.raises(ValueError, match=r"^MarginHead: num_classes must be a positive int; got 0"):
        MarginHead(5, 0)
    with pytest.raises(TypeError, match=r"^MarginHead: transform must be a margin transform"):
        MarginHead(5, 7, transform="arcface")
    with pytest.raises(ValueError, match=r"^MarginHead\.loss: unpg=True cannot be combined with label_smoothing"):
        head.loss(x, y, unpg=True, label_smoothing=0.1)


# --- AdaFace -----------------------------------------------------------------------------------------------


class OfficialAdaFace:
    """mk-minchul/AdaFace head.py ``AdaFace.forward``, in NumPy float64, on given cosines."""

    def __init__(self, m=0.4, h=0.333, s=64.0, t_alpha=1.0):
        self.m, self.h, self.s, self.t_alpha, self.eps = m, h, s, t_alpha, 1e-3
        self.batch_mean, self.batch_std = 20.0, 100.0

    def __call__(self, cos, norms, label):
        cosine = np.clip(cos, -1 + self.eps, 1 - self.eps)
        safe = np.clip(norms, 0.001, 100)
        self.batch_mean = safe.mean() * self.t_alpha + (1 - self.t_alpha) * self.batch_mean
        self.batch_std = safe.std(ddof=1) * self.t_alpha + (1 - self.t_alpha) * self.batch_std
        scaler = np.clip((safe - self.batch_mean) / (self.batch_std + self.eps) * self.h, -1, 1)[:, None]
        onehot = np.eye(cos.shape[1])[label]
        theta = np.arccos(cosine)
        theta_m = np.clip(theta + onehot * (-self.m * scaler), self.eps, math.pi - self.eps)
        cosine = np.cos(theta_m) - onehot * (self.m + self.m * scaler)
        return cosine * self.s


@pytest.mark.parametrize("t_alpha", [1.0, 0.01, 0.3])
def test_adaface_matches_the_official_head(t_alpha):
    ada = AdaFace(t_alpha=t_alpha).double()
    ref = OfficialAdaFace(t_alpha=t_alpha)
    for step in range(4):
        g = _gen(10 + step)
        cos = torch.rand(12, 6, generator=g, dtype=F64) * 1.9 - 0.95
        norms = torch.rand(12, generator=g, dtype=F64) * 40 + 5 + 10 * step  # drifting norms
        y = torch.randint(0, 6, (12,), generator=g)
        assert_close64(ada(cos, y, norms), ref(_np(cos), _np(norms), _np(y).astype(int)), rtol=1e-11, atol=1e-10)
        assert_close64(ada.batch_mean, ref.batch_mean) and assert_close64(ada.batch_std, ref.batch_std)


def test_adaface_ema_rule_eval_freeze_and_small_batches():
    ada = AdaFace(t_alpha=0.25).double()
    assert float(ada.batch_mean) == 20.0 and float(ada.batch_std) == 100.0
    norms = torch.tensor([10.0, 14.0, 30.0, 26.0], dtype=F64)
    cos = torch.zeros(4, 3, dtype=F64)
    y = torch.tensor([0, 1, 2, 0])
    ada(cos, y, norms)
    assert_close64(ada.batch_mean, 0.25 * 20.0 + 0.75 * 20.0)  # batch mean 20
    assert_close64(ada.batch_std, 0.25 * float(norms.std()) + 0.75 * 100.0)
    # eval(): the statistics are frozen and used as they are
    ada.eval()
    before = (ada.batch_mean.clone(), ada.batch_std.clone())
    out = ada(cos, y, norms * 3)
    assert torch.equal(ada.batch_mean, before[0]) and torch.equal(ada.batch_std, before[1])
    scaler = ada.margin_scaler(norms * 3)
    assert_close64(scaler, ((norms * 3 - before[0]) / (before[1] + 1e-3) * 0.333).clamp(-1, 1))
    assert_close64(out[torch.arange(4), y], 64.0 * (torch.cos(torch.full((4,), math.pi / 2, dtype=F64)
                                                              - 0.4 * scaler) - 0.4 - 0.4 * scaler))
    # a training batch of one row has no standard deviation: the statistics stay as they were
    ada.train()
    ada(cos[:1], y[:1], norms[:1])
    assert torch.equal(ada.batch_mean, before[0]) and torch.isfinite(ada.batch_std)


def test_adaface_margin_interpolates_arcface_cosface():
    ada = AdaFace(scale=1.0, margin=0.4, h=1.0).double()
    c = torch.tensor([0.3, -0.2, 0.7], dtype=F64)
    assert_close64(ada.target_logit(c, torch.full((3,), -1.0, dtype=F64)), torch.cos(torch.acos(c) + 0.4))  # ArcFace
    assert_close64(ada.target_logit(c, torch.zeros(3, dtype=F64)), c - 0.4)  # CosFace
    assert_close64(ada.target_logit(c, torch.ones(3, dtype=F64)), torch.cos(torch.acos(c) - 0.4) - 0.8)


def test_adaface_norms_are_detached_and_gradcheck():
    ada = AdaFace(scale=3.0).double()
    ada.eval()
    cos = (torch.rand(5, 4, generator=_gen(20), dtype=F64) * 1.6 - 0.8).requires_grad_()
    norms = (torch.rand(5, generator=_gen(21), dtype=F64) * 30 + 5).requires_grad_()
    y = torch.tensor([0, 3, 1, 2, 2])
    out = ada(cos, y, norms)
    assert torch.autograd.grad(out.sum(), norms, allow_unused=True)[0] is None
    assert torch.autograd.gradcheck(lambda c: ada(c, y, norms), (cos,))


def test_adaface_margin_zero_is_the_normalised_softmax():
    ada = AdaFace(scale=10.0, margin=0.0).double()
    cos = torch.rand(6, 4, generator=_gen(22), dtype=F64) * 1.9 - 0.95
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    norms = torch.rand(6, generator=_gen(23), dtype=F64) * 50
    assert_close64(ada(cos, y, norms), NormalizedSoftmax(scale=10.0)(cos, y), rtol=1e-12, atol=1e-11)


def test_adaface_buffers_follow_the_head_to_the_device(device):
    head = MarginHead(5, 7, AdaFace(t_alpha=0.5)).to(device)
    assert head.transform.batch_mean.device == torch.device(device)
    assert set(head.state_dict()) == {"weight", "transform.batch_mean", "transform.batch_std"}
    x, y = _data(seed=24)
    x, y = x.float().to(device) * 20, y.to(device)
    loss = head.loss(x, y)
    assert torch.isfinite(loss) and loss.device == torch.device(device)
    assert float(head.transform.batch_mean) != 20.0  # updated, on the device
    head.eval()
    before = head.transform.batch_mean.clone()
    head.loss(x * 2, y)
    assert torch.equal(head.transform.batch_mean, before)
    # the head passes the raw embeddings' norms
    ada = AdaFace().to(device).eval()
    cos = cosine_logits(x, head.weight)
    head2 = MarginHead(5, 7, ada).to(device)
    with torch.no_grad():
        head2.weight.copy_(head.weight)
    assert torch.equal(head2(x, y), ada(cos, y, x.norm(dim=1)))


def test_adaface_errors():
    ada = AdaFace()
    cos, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^AdaFace: norms must have shape \(4,\), one norm per row of cos; got "
                                         r"\(4, 1\)\. Did you mean norms\.squeeze\(1\)\?"):
        ada(cos, y, torch.ones(4, 1))
    with pytest.raises(TypeError, match=r"^AdaFace: norms must be a floating tensor of shape \(4,\)"):
        ada(cos, y, torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^AdaFace: t_alpha must lie in \[0, 1\]; got 2\.0"):
        AdaFace(t_alpha=2.0)
    with pytest.raises(ValueError, match=r"^AdaFace: margin must lie in \[0, 3\.14159\)"):
        AdaFace(margin=-0.1)
    assert AdaFace.needs_norms and "t_alpha=1.0" in repr(AdaFace())


# --- MagFace ------------------------------------------------------------------------------------------------


def official_magface_loss(x, w, y, *, l_a=10.0, u_a=110.0, l_m=0.45, u_m=0.8, lambda_g=35.0, s=64.0, easy=True):
    """IrvingMeng/MagFace MagLinear.forward + MagLoss.forward + the trainer's loss_id + λ_g·loss_g."""
    x_norm = np.clip(np.linalg.norm(x, axis=1, keepdims=True), l_a, u_a)
    ada = (u_m - l_m) / (u_a - l_a) * (x_norm - l_a) + l_m
    cos = np.clip((x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T,
                  -1, 1)
    sin = np.sqrt(1.0 - cos**2)
    cos_m = cos * np.cos(ada) - sin * np.sin(ada)
    if easy:
        cos_m = np.where(cos > 0, cos_m, cos)
    else:
        cos_m = np.where(cos > np.cos(math.pi - ada), cos_m, cos - np.sin(math.pi - ada) * ada)
    onehot = np.eye(w.shape[0])[y]
    out = onehot * s * cos_m + (1 - onehot) * s * cos
    loss_id = _np_softmax_ce(out, y).mean()
    loss_g = np.mean(x_norm / u_a**2 + 1 / x_norm)
    return loss_id + lambda_g * loss_g, loss_id, lambda_g * loss_g


@pytest.mark.parametrize("easy", [True, False])
def test_magface_head_matches_the_official_loss(easy):
    x, y = _data(n=12, d=5, c=7, seed=30, norm_scale=25.0)  # norms around 10–100, some clipped
    x[0] *= 0.1
    x[1] *= 10.0
    head = _head(MagFace(easy_margin=easy))
    total, loss_id, reg = official_magface_loss(_np(x), _np(head.weight), _np(y).astype(int), easy=easy)
    out = head.loss(x, y, return_aux=True)
    assert_close64(out.loss, total, rtol=1e-11, atol=1e-11)
    assert_close64(out.cross_entropy, loss_id, rtol=1e-11, atol=1e-11)
    assert_close64(out.regularizer, reg, rtol=1e-12, atol=1e-12)
    assert_close64(head.loss(x, y), total, rtol=1e-11, atol=1e-11)
    # reduction "none" / "sum" are row-wise CE + λ_g g(a)
    none = head.loss(x, y, reduction="none")
    a = x.norm(dim=1).clamp(10, 110)
    g = a / 110**2 + 1 / a
    assert_close64(none, head.loss(x, y, reduction="none", return_aux=True).cross_entropy + 35 * g)
    assert_close64(head.loss(x, y, reduction="sum"), none.sum())
    # ignored rows: no cross-entropy and no regulariser; "mean" over the counted rows
    y_ign = y.clone()
    y_ign[[2, 7]] = -100
    kept = y_ign >= 0
    assert_close64(head.loss(x, y_ign), head.loss(x[kept], y[kept]))


def test_magface_margin_and_regulariser():
    mag = MagFace()
    a = torch.linspace(1.0, 200.0, 400, dtype=F64, requires_grad=True)
    m = mag.adaptive_margin(a)
    assert (torch.diff(m) >= 0).all()  # monotone in the norm
    assert_close64(m[a.detach() <= 10], torch.full_like(m[a.detach() <= 10], 0.45))
    assert_close64(m[a.detach() >= 110], torch.full_like(m[a.detach() >= 110], 0.8))
    assert_close64(mag.adaptive_margin(torch.tensor([60.0], dtype=F64)), [0.45 + 0.35 * 0.5])
    g = mag.regularizer(a)
    (dg,) = torch.autograd.grad(g.sum(), a)
    inside = (a > 10) & (a < 110)
    assert_close64(dg[inside], 1 / 110**2 - 1 / a.detach()[inside] ** 2)  # g'(a) = 1/u_a² − 1/a²
    assert (dg[inside] < 0).all() and torch.equal(dg[~inside], torch.zeros_like(dg[~inside]))
    # unclipped, g(a) = a/u_a² + 1/a is minimal at a* = u_a
    grid = torch.linspace(50, 200, 15001, dtype=F64)
    g_free = grid / 110**2 + 1 / grid
    assert abs(float(grid[g_free.argmin()]) - 110.0) < 0.02
    assert_close64(magface_regularizer(a.detach(), reduction="none"), g.detach())
    assert_close64(magface_regularizer(a.detach()), g.detach().mean())
    assert_close64(magface_regularizer(a.detach(), reduction="sum"), g.detach().sum())
    # the trainer's lower bound on λ_g: s·k·u_a²·l_a²/(u_a² − l_a²)
    assert_close64(mag.min_lambda_g, 64 * 0.35 / 100 * 110**2 * 10**2 / (110**2 - 10**2))
    assert mag.lambda_g > mag.min_lambda_g


def test_magface_gradient_reaches_the_norm_through_the_margin():
    mag = MagFace(scale=4.0, easy_margin=False)
    cos = (torch.rand(5, 4, generator=_gen(31), dtype=F64) * 1.6 - 0.8).requires_grad_()
    norms = torch.tensor([5.0, 20.0, 55.0, 90.0, 150.0], dtype=F64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda c, a: mag(c, y, a), (cos, norms))
    (gn,) = torch.autograd.grad(mag(cos, y, norms).sum(), norms)
    assert (gn[1:4] != 0).all() and gn[0] == 0 and gn[4] == 0  # clipped outside [l_a, u_a]


def test_magface_zero_margins_is_the_normalised_softmax():
    mag = MagFace(scale=10.0, l_m=0.0, u_m=0.0)
    cos = torch.rand(6, 4, generator=_gen(32), dtype=F64) * 2 - 1
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    norms = torch.rand(6, generator=_gen(33), dtype=F64) * 200
    for easy in (True, False):
        m = MagFace(scale=10.0, l_m=0.0, u_m=0.0, easy_margin=easy)
        assert_close64(m(cos, y, norms), NormalizedSoftmax(scale=10.0)(cos, y), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"^MagFace: from_embeddings gets unit embeddings"):
        mag.from_embeddings(cos, cos, y)


# --- SphereFace2 ------------------------------------------------------------------------------------------


def official_sphereface2(cos, y, *, alpha=0.7, r=40.0, m=0.4, t=3.0, lw=50.0, b=None):
    """ydwen/opensphere SphereFace2.forward (magn_type 'C') after the cosines, in NumPy."""
    c = cos.shape[1]
    if b is None:
        z = alpha / ((1.0 - alpha) * (c - 1.0))
        ay = r * (2.0 * 0.5**t - 1.0 - m)
        ai = r * (2.0 * 0.5**t - 1.0 + m)
        temp = (1.0 - z) ** 2 + 4.0 * z * math.exp(ay - ai)
        b = math.log(2.0 * z) - ai - math.log(1.0 - z + math.sqrt(temp))
    onehot = np.eye(c)[y]
    g = 2.0 * ((cos + 1.0) / 2.0) ** t - 1.0
    g = g - m * (2.0 * onehot - 1.0)
    logits = r * g + b
    weight = lw * c / r * (alpha * onehot + (1.0 - alpha) * (1.0 - onehot))
    bce = onehot * np.logaddexp(0, -logits) + (1 - onehot) * np.logaddexp(0, logits)
    return (weight * bce).mean(), b


@pytest.mark.parametrize("hp", [{}, {"alpha": 0.8, "r": 64.0, "m": 0.5}, {"t": 1.0, "m": 0.0}])
def test_sphereface2_matches_the_official_head(hp):
    cos = torch.rand(10, 6, generator=_gen(40), dtype=F64) * 2 - 1
    y = torch.randint(0, 6, (10,), generator=_gen(41))
    want, b = official_sphereface2(_np(cos), _np(y).astype(int), **hp)
    ours = {"lambda_": hp.get("alpha", 0.7), "scale": hp.get("r", 40.0), "margin": hp.get("m", 0.4),
            "t": hp.get("t", 3.0)}
    assert_close64(LF.sphereface2_loss(cos, y, loss_weight=50.0, **ours), want, rtol=1e-11, atol=1e-11)
    assert_close64(sphereface2_bias_init(6, **ours), b, rtol=1e-14)
    # per row: (w/r)[λ softplus(−z_y) + (1−λ) Σ_{j≠y} softplus(z_j)]
    none = LF.sphereface2_loss(cos, y, bias=0.3, reduction="none", **ours)
    want_rows = [official_sphereface2(_np(cos[i : i + 1]), _np(y[i : i + 1]).astype(int), lw=1.0, b=0.3,
                                      **hp)[0] for i in range(10)]
    assert_close64(none, want_rows, rtol=1e-11, atol=1e-11)


def test_sphereface2_bias_init_zeroes_the_bias_gradient_at_orthogonal_features():
    for c, hp in ((10, {}), (1000, {}), (50, {"lambda_": 0.8, "scale": 64.0, "margin": 0.5}), (7, {"t": 2.0})):
        b = torch.tensor(sphereface2_bias_init(c, **hp), dtype=F64, requires_grad=True)
        cos = torch.zeros(3, c, dtype=F64)
        loss = LF.sphereface2_loss(cos, torch.tensor([0, 1, 2]), bias=b, **hp)
        (gb,) = torch.autograd.grad(loss, b)
        assert abs(float(gb)) < 1e-9
    assert sphereface2_bias_init(2) == pytest.approx(official_sphereface2(np.zeros((1, 2)), [0])[1], rel=1e-14)


def test_sphereface2_gradients():
    cos = (torch.rand(5, 4, generator=_gen(42), dtype=F64) * 1.8 - 0.9).requires_grad_()
    y = torch.tensor([0, 3, 1, 2, 2])
    b = torch.tensor(-3.0, dtype=F64, requires_grad=True)
    kw = {"scale": 5.0, "t": 3.0}
    assert torch.autograd.gradcheck(lambda c, bb: LF.sphereface2_loss(c, y, bias=bb, reduction="sum", **kw), (cos, b))
    # straight-through = opensphere: g and the margin under no_grad, the gradient of r·cos + b
    onehot = F.one_hot(y, 4).to(F64)

    def opensphere(c):
        with torch.no_grad():
            d_theta = 2 * ((c + 1) / 2) ** 3 - 1 - 0.4 * (2 * onehot - 1) - c
        logits = 5.0 * (c + d_theta) + b
        weight = 1.0 * 4 / 5.0 * (0.7 * onehot + 0.3 * (1 - onehot))
        return F.binary_cross_entropy_with_logits(logits, onehot, weight=weight)

    ours = LF.sphereface2_loss(cos, y, bias=b, grad="straight_through", **kw)
    assert_close64(ours, opensphere(cos))
    g_st = torch.autograd.grad(ours, (cos, b))
    for a, bb in zip(g_st, torch.autograd.grad(opensphere(cos), (cos, b))):
        assert_close64(a, bb)
    exact = LF.sphereface2_loss(cos, y, bias=b, **kw)
    assert torch.equal(exact.detach(), ours.detach())
    assert not torch.allclose(torch.autograd.grad(exact, cos)[0], g_st[0])


def test_sphereface2_similarity_adjustment():
    c = torch.linspace(-1, 1, 101, dtype=F64)
    g = sphereface2_similarity(c, 3.0)
    assert_close64(g[[0, 50, -1]], [-1.0, 2 * 0.5**3 - 1, 1.0])
    assert (torch.diff(g) > 0).all()
    assert_close64(sphereface2_similarity(c, 1.0), c, rtol=1e-15, atol=1e-15)


def test_sphereface2_head():
    head = SphereFace2Head(5, 7, dtype=F64)
    assert head.weight.shape == (7, 5) and isinstance(head.bias, torch.nn.Parameter) and head.bias.shape == (1,)
    assert_close64(head.bias, [sphereface2_bias_init(7)])
    x, y = _data(seed=43)
    cos = cosine_logits(x, head.weight)
    assert_close64(head.loss(x, y), LF.sphereface2_loss(cos, y, bias=float(head.bias.detach())))
    z = head(x, y)
    onehot = F.one_hot(y, 7).to(F64)
    assert_close64(z, 40.0 * (sphereface2_similarity(cos) - 0.4 * (2 * onehot - 1)) + head.bias)
    head.loss(x, y).backward()
    assert head.bias.grad is not None and head.weight.grad.abs().sum() > 0
    w = make_weight(7)
    assert_close64(head.loss(x, y, weight=w, reduction="none"), w[y] * head.loss(x, y, reduction="none"))
    with pytest.raises(ValueError, match=r"^SphereFace2Head: num_classes must be at least 2; got 1"):
        SphereFace2Head(5, 1)
    assert isinstance(lossbook.get_loss("sphereface2"), lossbook.SphereFace2Loss)


# --- UNPG -----------------------------------------------------------------------------------------------------


def official_unpg_negatives(x, labels, wisk):
    """Jung-Jun-Uk/UNPG build.py: convert_label_to_similarity (upper triangle) + box_and_whisker_algorithm."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    neg = np.triu(labels[:, None] != labels[None, :], k=1)
    sn = sim.reshape(-1)[neg.reshape(-1)]
    sorted_x = np.sort(sn)
    n = len(sorted_x)
    q1, q3 = sorted_x[int(0.25 * n)], sorted_x[int(0.75 * n)]
    iqr = q3 - q1
    return sorted_x[(sorted_x <= q3 + wisk * iqr) & (sorted_x >= q1 - wisk * iqr)]


def _unpg_data(n=24, d=16, seed=50):
    g = _gen(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    x[0] = x[1] * 3.0 + 0.01  # an outlying, near-duplicate pair (cosine ≈ 1)
    labels = torch.randint(0, 5, (n,), generator=g)
    labels[0], labels[1] = 0, 1
    return x, labels


@pytest.mark.parametrize("whisker", [0.0, 0.5, 1.0, 1.5])
def test_unpg_negatives_match_the_official_filter(whisker):
    x, labels = _unpg_data()
    got = unpg_negatives(x, labels, whisker=whisker)
    want = official_unpg_negatives(_np(x), _np(labels).astype(int), whisker)
    assert_close64(got, want)
    if whisker == 1.0:
        assert got.numel() < int((labels[:, None] != labels[None, :]).triu(1).sum())  # something was filtered


@pytest.mark.parametrize("method", ["linear", "lower", "higher", "nearest", "midpoint"])
def test_unpg_quartiles_against_numpy_percentile(method):
    x, labels = _unpg_data(seed=51)
    xn = _np(F.normalize(x, dim=1))
    neg = np.triu(_np(labels)[:, None] != _np(labels)[None, :], k=1)
    sims = (xn @ xn.T)[neg]
    q1, q3 = np.percentile(sims, [25, 75], method=method)
    want = np.sort(sims[(sims >= q1 - 1.0 * (q3 - q1)) & (sims <= q3 + 1.0 * (q3 - q1))])
    assert_close64(unpg_negatives(x, labels, quartiles=method), want)


def test_unpg_negatives_carry_gradients_and_edge_cases():
    x, labels = _unpg_data(seed=52)
    x.requires_grad_()
    neg = unpg_negatives(x, labels)
    (g,) = torch.autograd.grad(neg.sum(), x)
    assert g.abs().sum() > 0
    # one label only: no negative pairs
    assert unpg_negatives(x, torch.zeros(24, dtype=torch.long)).numel() == 0
    assert unpg_negatives(x[:1], labels[:1]).numel() == 0
    with pytest.raises(ValueError, match=r"^unpg_negatives: whisker must lie in \[0, inf\)"):
        unpg_negatives(x, labels, whisker=-1.0)
    with pytest.raises(ValueError, match=r"^unpg_negatives: quartiles must be one of"):
        unpg_negatives(x, labels, quartiles="median")
    with pytest.raises(TypeError, match=r"^unpg_negatives: labels must be int64"):
        unpg_negatives(x, labels.int())


def test_unpg_logits_and_margin_head_loss():
    logits = torch.randn(3, 4, generator=_gen(53), dtype=F64)
    neg = torch.tensor([0.1, -0.2], dtype=F64)
    out = unpg_logits(logits, neg, 10.0)
    assert out.shape == (3, 6) and torch.equal(out[:, :4], logits)
    assert_close64(out[:, 4:], torch.tensor([[1.0, -2.0]] * 3, dtype=F64))
    x, labels = _unpg_data(seed=54)
    head = _head(ArcFace(scale=16.0), d=16, c=5)
    aux = head.loss(x, labels, unpg=True, return_aux=True)
    negatives = unpg_negatives(x, labels)
    assert torch.equal(aux.negatives, negatives) and aux.logits.shape == (24, 5 + negatives.numel())
    want = LF.cross_entropy(unpg_logits(head(x, labels), negatives, 16.0), labels)
    assert_close64(aux.loss, want)
    assert aux.loss > head.loss(x, labels)  # extra negatives only add to the normaliser
    # with class weights (padded with ones for the extra columns)
    w = make_weight(5)
    assert_close64(head.loss(x, labels, unpg=True, weight=w),
                   LF.cross_entropy(aux.logits, labels, weight=torch.cat([w, torch.ones(negatives.numel(), dtype=F64)])))
    # no kept negatives (one identity in the batch): the plain loss
    same = torch.full((24,), 2, dtype=torch.long)
    assert torch.equal(head.loss(x, same, unpg=True), head.loss(x, same))
    # ignored rows take no part in the pairs
    ign = labels.clone()
    ign[:6] = -100
    kept = ign >= 0
    assert torch.equal(head.loss(x, ign, unpg=True, return_aux=True).negatives, unpg_negatives(x[kept], labels[kept]))


def test_margin_head_with_elastic_and_sphereface_transforms():
    x, y = _data(seed=60)
    head = _head(ElasticArcFace(scale=8.0, std=0.05, generator=_gen(1)))
    a = head.loss(x, y)
    head.transform = ElasticArcFace(scale=8.0, std=0.05, generator=_gen(1))
    assert torch.equal(head.loss(x, y), a)
    cos = cosine_logits(x, head.weight)
    assert_close64(a, LF.cross_entropy(ElasticArcFace(scale=8.0, std=0.05)(cos, y, generator=_gen(1)), y))


TRANSFORMS_ALL = [ArcFace(), AdaFace(), MagFace(), ElasticArcFace(plus=True), SphereFace(), CosFace()]


@pytest.mark.parametrize("transform", TRANSFORMS_ALL, ids=[type(t).__name__ for t in TRANSFORMS_ALL])
def test_margin_head_empty_batch_gives_an_attached_zero(transform):
    head = MarginHead(5, 7, transform)
    x = torch.zeros(0, 5, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    assert head(x, y).shape == (0, 7)
    for kw in ({}, {"unpg": True}, {"reduction": "sum"}):
        out = head.loss(x, y, **kw)
        assert out.item() == 0.0 and out.grad_fn is not None
        out.backward()
    assert head.loss(x, y, reduction="none").shape == (0,)
    sf2 = SphereFace2Head(5, 7)
    out = sf2.loss(x, y)
    assert out.item() == 0.0 and out.grad_fn is not None


def test_partial_fc_takes_the_margin_family_transforms():
    from lossbook.margin import CombinedMargin, ElasticCosFace

    x, y = _data(n=10, d=6, c=9, seed=61)
    w = torch.randn(9, 6, generator=_gen(62), dtype=F64)
    for margin in (SphereFace(scale=4.0, margin=2), CombinedMargin(scale=8.0, m1=0.9, m2=0.4, m3=0.15),
                   ElasticCosFace(scale=8.0, std=0.05, generator=_gen(63))):
        head = MarginHead(6, 9, margin, dtype=F64)
        with torch.no_grad():
            head.weight.copy_(w)
        if isinstance(margin, ElasticCosFace):  # the same draws on both sides
            pfc = partial_fc_loss(x, y, w, margin=margin)
            margin2 = ElasticCosFace(scale=8.0, std=0.05, generator=_gen(63))
            head.transform = margin2
            assert_close64(pfc, head.loss(x, y))
        else:
            assert_close64(partial_fc_loss(x, y, w, margin=margin), head.loss(x, y))
