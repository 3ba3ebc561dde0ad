"""The margin transforms and the registered margin losses (family "margin").

References are written in float64 NumPy from the papers' formulas and the official code (insightface
``arcface_torch/losses.py``, fdbtrs/ElasticFace ``utils/losses.py``, pytorch-metric-learning's
``LargeMarginSoftmaxLoss``/``SphereFaceLoss``), independently of the library; pytorch-metric-learning's
ArcFace, CosFace and SphereFace losses are a second oracle. Heads, AdaFace, MagFace, SphereFace2 and
UNPG are in ``test_margin_heads.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import F64, assert_close64, make_target, make_weight

import lossbook
import lossbook.functional as LF
from lossbook.margin import (
    GRADS,
    ArcFace,
    CombinedMargin,
    CosFace,
    ElasticArcFace,
    ElasticCosFace,
    MagFace,
    NormalizedSoftmax,
    SphereFace,
    arcface_logits,
    combined_margin_logits,
    cosine_logits,
    sphereface_logits,
    sphereface_psi,
)

N, C = 9, 6
MARGIN_LOSSES = lossbook.list_losses(family="margin")
CE_LOSSES = ["normalized_softmax", "sphereface", "cosface", "arcface", "combined_margin"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _cos(n=N, c=C, seed=0, low=-0.95, high=0.95, dtype=F64):
    """Uniform cosines in [low, high] (away from ±1, where arccos has an infinite slope)."""
    return (low + (high - low) * torch.rand(n, c, generator=_gen(seed), dtype=F64)).to(dtype)


def _np(t):
    return t.detach().cpu().double().numpy()


# --- NumPy references: ψ(c) of the target entry --------------------------------------------------------


def np_arcface(c, m, easy=False):
    """insightface ArcFace: cos(θ + m), fallback c − sin(π − m)·m where c ≤ cos(π − m)."""
    main = np.cos(np.arccos(c) + m)
    if easy:
        return np.where(c > 0, main, c)
    return np.where(c > math.cos(math.pi - m), main, c - math.sin(math.pi - m) * m)


def np_sphereface(c, m, lam=0.0):
    """SphereFace paper eq.: (−1)^k cos(mθ) − 2k, θ ∈ [kπ/m, (k+1)π/m]; annealed (λc + ψ)/(1 + λ)."""
    theta = np.arccos(c)
    k = np.minimum(np.floor(theta * m / math.pi), m - 1)
    psi = (-1.0) ** k * np.cos(m * theta) - 2 * k
    return (lam * c + psi) / (1 + lam)


def np_combined(c, m1, m2, m3):
    """cos(m1 θ + m2) − m3, and past θ* = (π − m2)/m1 the documented fallback."""
    theta = np.arccos(c)
    main = np.cos(m1 * theta + m2) - m3
    theta_star = (math.pi - m2) / m1
    if theta_star >= math.pi:
        return main
    penalty = max(math.sin(math.pi - m2) * m2, 1 + math.cos(theta_star))
    return np.where(theta < theta_star, main, c - m3 - penalty)


def ref_logits(cos, y, psi, s):
    """s·cos with s·ψ(cos) at the target column; a target of −1 leaves the row scaled only."""
    z = s * np.array(cos, dtype=np.float64)
    for i, t in enumerate(np.asarray(y).astype(int)):
        if t >= 0:
            z[i, t] = s * psi(np.array(cos[i, t]))
    return z


def ref_ce(z, y):
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), np.asarray(y).astype(int)]


# (id, transform, ψ reference)
TRANSFORMS = [
    ("normalized", NormalizedSoftmax(scale=10.0), lambda c: c),
    ("cosface", CosFace(scale=10.0, margin=0.35), lambda c: c - 0.35),
    ("arcface", ArcFace(scale=10.0, margin=0.5), lambda c: np_arcface(c, 0.5)),
    ("arcface-easy", ArcFace(scale=10.0, margin=0.5, easy_margin=True), lambda c: np_arcface(c, 0.5, True)),
    ("arcface-st", ArcFace(scale=10.0, margin=0.5, grad="straight_through"), lambda c: np_arcface(c, 0.5)),
    ("sphereface-4", SphereFace(scale=10.0, margin=4), lambda c: np_sphereface(c, 4)),
    ("sphereface-3-anneal", SphereFace(scale=10.0, margin=3, lambda_=2.0), lambda c: np_sphereface(c, 3, 2.0)),
    ("combined-cm1", CombinedMargin(scale=10.0, m1=1.0, m2=0.3, m3=0.2), lambda c: np_combined(c, 1.0, 0.3, 0.2)),
    ("combined-cm2", CombinedMargin(scale=10.0, m1=0.9, m2=0.4, m3=0.15), lambda c: np_combined(c, 0.9, 0.4, 0.15)),
    ("combined-sphere", CombinedMargin(scale=10.0, m1=1.35, m2=0.0, m3=0.0), lambda c: np_combined(c, 1.35, 0.0, 0.0)),
    ("combined-all", CombinedMargin(scale=10.0, m1=1.2, m2=0.3, m3=0.1), lambda c: np_combined(c, 1.2, 0.3, 0.1)),
    ("elastic-arc-std0", ElasticArcFace(scale=10.0, margin=0.5, std=0.0), lambda c: np_arcface(c, 0.5)),
    ("elastic-cos-std0", ElasticCosFace(scale=10.0, margin=0.35, std=0.0), lambda c: c - 0.35),
]


@pytest.mark.parametrize("tid, transform, psi", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_transform_matches_numpy_reference(tid, transform, psi):
    cos = _cos(seed=1, low=-0.999, high=0.999)
    cos[0, 2], cos[1, 0] = -0.97, -0.9  # arcface / combined fallback region (θ + m > π)
    cos[2, 3] = 0.0  # easy_margin boundary side
    y = torch.tensor([2, 0, 3, 1, 5, 4, 4, 0, 1])
    got = transform(cos, y)
    assert_close64(got, ref_logits(_np(cos), _np(y), psi, 10.0), rtol=1e-12, atol=1e-11)
    # −1: no target column in this matrix: the row is only scaled
    assert_close64(transform(cos, torch.full((N,), -1)), 10.0 * cos)
    assert not torch.equal(cos, got / 10.0) or tid.startswith(("normalized",))


@pytest.mark.parametrize("tid, transform, psi", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_transform_leaves_input_alone_and_keeps_dtype(tid, transform, psi):
    cos = _cos(seed=2, dtype=torch.float32).requires_grad_()
    before = cos.detach().clone()
    out = transform(cos, make_target(N, C))
    out.sum().backward()
    assert torch.equal(cos.detach(), before)
    assert out.dtype == torch.float32 and cos.grad.dtype == torch.float32


# --- gradients ----------------------------------------------------------------------------------------------


GRADCHECK = [
    ("arcface", lambda: ArcFace(scale=3.0, margin=0.5)),
    ("arcface-easy", lambda: ArcFace(scale=3.0, margin=0.5, easy_margin=True)),
    ("sphereface-4", lambda: SphereFace(scale=3.0, margin=4)),
    ("sphereface-2-anneal", lambda: SphereFace(scale=3.0, margin=2, lambda_=1.5)),
    ("combined-cm1", lambda: CombinedMargin(scale=3.0, m1=1.0, m2=0.3, m3=0.2)),
    ("combined-cm2", lambda: CombinedMargin(scale=3.0, m1=0.9, m2=0.4, m3=0.15)),
    ("combined-sphere", lambda: CombinedMargin(scale=3.0, m1=1.35, m2=0.0, m3=0.1)),
    ("cosface", lambda: CosFace(scale=3.0, margin=0.2)),
    ("elastic-cos", lambda: ElasticCosFace(scale=3.0, std=0.0)),
    ("elastic-arc", lambda: ElasticArcFace(scale=3.0, std=0.0)),
]


@pytest.mark.parametrize("make", [g[1] for g in GRADCHECK], ids=[g[0] for g in GRADCHECK])
def test_gradcheck_away_from_kinks(make):
    t = make()
    # interior cosines; kinks avoided: θ = 0, π, the fallback boundaries (−0.878, −0.995, −0.69 here),
    # SphereFace's kπ/m (C¹ there anyway) and easy_margin's c = 0
    cos = torch.tensor([[0.31, -0.42, 0.77, 0.05],
                        [-0.93, 0.2, -0.55, 0.61],   # target −0.93: in ArcFace's fallback branch
                        [0.12, 0.83, -0.25, -0.6],
                        [0.45, -0.15, 0.33, -0.81]], dtype=F64, requires_grad=True)
    y = torch.tensor([1, 0, 3, 2])
    assert torch.autograd.gradcheck(lambda c: t(c, y), (cos,))
    assert torch.autograd.gradgradcheck(lambda c: t(c, y), (cos,))


@pytest.mark.parametrize("make", [lambda: ElasticArcFace(scale=3.0, std=0.05),
                                  lambda: ElasticArcFace(scale=3.0, std=0.05, plus=True),
                                  lambda: ElasticCosFace(scale=3.0, std=0.05, plus=True)],
                         ids=["arc", "arc-plus", "cos-plus"])
def test_elastic_gradcheck_with_fixed_draws(make):
    t = make()
    cos = (0.8 * (2 * torch.rand(6, 4, generator=_gen(30), dtype=F64) - 1)).requires_grad_()
    y = torch.tensor([1, 0, 3, 2, 2, 0])
    # the same draws at every evaluation: a generator seeded afresh per call
    assert torch.autograd.gradcheck(lambda c: t(c, y, generator=_gen(31)), (cos,))


@pytest.mark.parametrize("name", CE_LOSSES + ["sphereface2"])
def test_registered_loss_gradcheck(name):
    fn = lossbook.loss_info(name).function
    cos = _cos(5, 4, seed=3, low=-0.8, high=0.8).requires_grad_()
    y = torch.tensor([0, 3, 1, 2, 2])
    kwargs = {"scale": 4.0}
    assert torch.autograd.gradcheck(lambda c: fn(c, y, reduction="sum", **kwargs), (cos,))


def _arc_dpsi(c, m):
    """dψ/dc of cos(θ + m) = sin(θ + m)/sin θ."""
    theta = np.arccos(c)
    return np.sin(theta + m) / np.sin(theta)


@pytest.mark.parametrize("make", [lambda g: ArcFace(scale=7.0, margin=0.5, grad=g),
                                  lambda g: CombinedMargin(scale=7.0, m1=1.0, m2=0.5, m3=0.0, grad=g)],
                         ids=["arcface", "combined"])
def test_straight_through_vs_exact(make):
    exact, st = make("exact"), make("straight_through")
    cos = _cos(6, 5, seed=4, low=-0.85, high=0.95)
    cos[1, 2] = -0.95  # a target in the fallback branch (c ≤ cos(π − m) = −0.878)
    y = torch.tensor([0, 2, 4, 1, 3, 3])
    g_out = torch.randn(6, 5, generator=_gen(5), dtype=F64)
    grads = {}
    for label, t in (("exact", exact), ("st", st)):
        c = cos.clone().requires_grad_()
        z = t(c, y)
        grads[label] = torch.autograd.grad(z, c, g_out)[0]
        grads[label + "_value"] = z.detach()
    # same forward value
    assert torch.equal(grads["exact_value"], grads["st_value"])
    target = torch.zeros(6, 5, dtype=torch.bool)
    target[torch.arange(6), y] = True
    # non-target entries: both the gradient of s·cos, i.e. s·g
    assert_close64(grads["exact"][~target], 7.0 * g_out[~target])
    assert_close64(grads["st"][~target], 7.0 * g_out[~target])
    # straight-through at the target: s·g, everywhere (insightface's CombinedMarginLoss)
    assert_close64(grads["st"][target], 7.0 * g_out[target])
    # exact at the target: s·ψ'(c)·g with ψ' = sin(θ+m)/sin θ (main branch), 1 (fallback branch)
    c_t = _np(cos[target])
    dpsi = np.where(c_t > math.cos(math.pi - 0.5), _arc_dpsi(c_t, 0.5), 1.0)
    assert_close64(grads["exact"][target], 7.0 * dpsi * _np(g_out[target]), rtol=1e-10, atol=1e-10)
    fallback = torch.tensor(c_t <= math.cos(math.pi - 0.5))
    assert fallback.sum() == 1  # and there the two modes agree
    assert torch.equal(grads["exact"][target][fallback], grads["st"][target][fallback])
    assert not torch.allclose(grads["exact"][target][~fallback], grads["st"][target][~fallback])


def test_straight_through_is_insightface_no_grad_trick():
    """insightface CombinedMarginLoss (ArcFace branch): arccos/+m/cos in place under no_grad, then ×s."""
    cos = _cos(5, 4, seed=6, low=-0.8, high=0.95)
    y = torch.tensor([3, 0, 1, 2, 2])
    g_out = torch.randn(5, 4, generator=_gen(7), dtype=F64)

    c1 = cos.clone().requires_grad_()
    logits = c1 * 1.0  # a non-leaf, as the linear layer's output in insightface
    with torch.no_grad():
        rows = torch.arange(5)
        logits.arccos_()
        logits[rows, y] += 0.5
        logits.cos_()
    insight = logits * 64.0
    g_insight = torch.autograd.grad(insight, c1, g_out)[0]

    c2 = cos.clone().requires_grad_()
    ours = ArcFace(scale=64.0, margin=0.5, grad="straight_through")(c2, y)
    g_ours = torch.autograd.grad(ours, c2, g_out)[0]
    assert_close64(ours, insight, rtol=1e-12, atol=1e-10)  # no fallback needed: every θ + m < π here
    assert_close64(g_ours, g_insight)


# --- reductions to simpler transforms -----------------------------------------------------------------------


ZERO_MARGIN = [
    ("cosface-0", CosFace(scale=12.0, margin=0.0)),
    ("arcface-0", ArcFace(scale=12.0, margin=0.0)),
    ("arcface-0-easy", ArcFace(scale=12.0, margin=0.0, easy_margin=True)),
    ("combined-1-0-0", CombinedMargin(scale=12.0, m1=1.0, m2=0.0, m3=0.0)),
    ("sphereface-1", SphereFace(scale=12.0, margin=1)),
    ("elastic-arc-0", ElasticArcFace(scale=12.0, margin=0.0, std=0.0)),
    ("elastic-cos-0", ElasticCosFace(scale=12.0, margin=0.0, std=0.0)),
    ("elastic-cos-0-plus", ElasticCosFace(scale=12.0, margin=0.0, std=0.0, plus=True)),
]


@pytest.mark.parametrize("transform", [z[1] for z in ZERO_MARGIN], ids=[z[0] for z in ZERO_MARGIN])
def test_margin_zero_is_the_normalised_softmax(transform):
    cos = _cos(seed=8, low=-1.0, high=1.0)
    cos[0, 0], cos[1, 1] = 1.0, -1.0
    y = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2])
    assert_close64(transform(cos, y), NormalizedSoftmax(scale=12.0)(cos, y), rtol=1e-13, atol=1e-10)


def test_combined_margin_special_cases_are_arcface_and_cosface():
    cos = _cos(seed=9, low=-1.0, high=1.0)
    cos[0, 0], cos[1, 1], cos[2, 2] = -0.95, 1.0, -1.0  # fallback branch and the ends
    y = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2])
    for m in (0.1, 0.5, 1.2, 2.3):
        assert torch.equal(CombinedMargin(scale=30.0, m1=1.0, m2=m, m3=0.0)(cos, y), ArcFace(scale=30.0, margin=m)(cos, y))
    for m in (0.0, 0.35, 0.4):
        assert torch.equal(CombinedMargin(scale=30.0, m1=1.0, m2=0.0, m3=m)(cos, y), CosFace(scale=30.0, margin=m)(cos, y))
    # and the gradients agree as well
    c1, c2 = cos.clone().requires_grad_(), cos.clone().requires_grad_()
    g1 = torch.autograd.grad(CombinedMargin(scale=3.0, m1=1.0, m2=0.5, m3=0.0)(c1, y).sum(), c1)[0]
    g2 = torch.autograd.grad(ArcFace(scale=3.0, margin=0.5)(c2, y).sum(), c2)[0]
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("m1, m2, m3", [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2), (0.9, 0.4, 0.15), (1.35, 0.0, 0.0),
                                        (1.2, 0.3, 0.1), (2.0, 0.5, 0.0), (0.5, 0.2, 0.0)])
def test_combined_margin_target_logit_decreases_in_theta(m1, m2, m3):
    theta = torch.linspace(0.0, math.pi, 2001, dtype=F64)
    psi = CombinedMargin(m1=m1, m2=m2, m3=m3).target_logit(torch.cos(theta))
    assert (psi[1:] <= psi[:-1] + 1e-12).all()
    assert psi[0] <= 1.0 - m3 + 1e-12


def test_sphereface_psi_properties():
    theta = torch.linspace(0.0, math.pi, 3001, dtype=F64)
    c = torch.cos(theta)
    for m in (1, 2, 3, 4, 5):
        psi = sphereface_psi(c, m)
        assert (psi[1:] <= psi[:-1] + 1e-12).all()  # decreasing in θ
        assert abs(psi[0] - 1.0) < 1e-12 and abs(psi[-1] - (1 - 2 * m)) < 1e-9
        # continuous at the joints θ = kπ/m, where the value is 1 − 2k
        for k in range(1, m):
            joint = torch.tensor([math.cos(k * math.pi / m - 1e-9), math.cos(k * math.pi / m + 1e-9)], dtype=F64)
            assert_close64(sphereface_psi(joint, m), torch.full((2,), 1.0 - 2 * k, dtype=F64), atol=1e-7)
        # cos(mθ) is the Chebyshev polynomial: agrees with cos(m arccos c) on the first piece
        first = theta < math.pi / m
        assert_close64(psi[first], torch.cos(m * theta[first]), rtol=1e-10, atol=1e-10)
    assert_close64(sphereface_logits(_cos(), make_target(N, C), margin=3, scale=2.0),
                   SphereFace(scale=2.0, margin=3)(_cos(), make_target(N, C)))


# --- ElasticFace -----------------------------------------------------------------------------------------


def test_elastic_draws_are_reproducible_with_a_generator():
    cos, y = _cos(seed=10), make_target(N, C)
    for cls in (ElasticArcFace, ElasticCosFace):
        t = cls(scale=10.0, std=0.05)
        a = t(cos, y, generator=_gen(3))
        assert torch.equal(a, t(cos, y, generator=_gen(3)))
        assert not torch.equal(a, t(cos, y, generator=_gen(4)))
        # a generator held by the transform gives a stream of different draws, reproducible from the seed
        held = cls(scale=10.0, std=0.05, generator=_gen(3))
        first, second = held(cos, y), held(cos, y)
        assert torch.equal(first, a) and not torch.equal(first, second)
        # the global RNG when nothing is given
        torch.manual_seed(0)
        g1 = t(cos, y)
        torch.manual_seed(0)
        assert torch.equal(g1, t(cos, y))


def test_elastic_margins_have_the_stated_distribution():
    n = 40000
    cos = _cos(n, 3, seed=11, low=-0.9, high=0.9)
    y = torch.randint(0, 3, (n,), generator=_gen(12))
    z = ElasticCosFace(scale=1.0, margin=0.35, std=0.05)(cos, y, generator=_gen(13))
    m = cos[torch.arange(n), y] - z[torch.arange(n), y]
    assert abs(m.mean().item() - 0.35) < 4 * 0.05 / math.sqrt(n)
    assert abs(m.std().item() - 0.05) < 0.05 * 0.03
    # non-target entries untouched
    mask = torch.ones(n, 3, dtype=torch.bool)
    mask[torch.arange(n), y] = False
    assert torch.equal(z[mask], cos[mask])
    # ElasticArcFace: θ + m_i recovered from the logits
    za = ElasticArcFace(scale=1.0, margin=0.5, std=0.05)(cos, y, generator=_gen(13))
    theta = torch.acos(cos[torch.arange(n), y])
    ok = theta + 0.5 + 0.3 < math.pi  # away from the fallback
    ma = torch.acos(za[torch.arange(n), y])[ok] - theta[ok]
    assert abs(ma.mean().item() - 0.5) < 4 * 0.05 / math.sqrt(int(ok.sum()))
    assert abs(ma.std().item() - 0.05) < 0.05 * 0.03
    # the same seed draws the same margins for Arc and Cos
    assert_close64(ma, m[ok] + 0.15, rtol=1e-9, atol=1e-9)


def test_elastic_plus_gives_the_largest_margins_to_the_hardest_rows():
    n = 50
    cos = _cos(n, 4, seed=14)
    y = torch.randint(0, 4, (n,), generator=_gen(15))
    y[[3, 17]] = -1  # rows without a target take no part in the sorting
    rows = torch.arange(n)
    t_plus = ElasticCosFace(scale=1.0, std=0.1, plus=True)
    t_flat = ElasticCosFace(scale=1.0, std=0.1)
    c_y = cos[rows, y.clamp_min(0)]
    m_plus = t_plus.margins(c_y, y, generator=_gen(16))
    m_flat = t_flat.margins(c_y, y, generator=_gen(16))
    valid = y >= 0
    # the same draws, handed out by rank: highest target cosine ↔ smallest margin
    assert torch.equal(torch.sort(m_plus[valid]).values, torch.sort(m_flat[valid]).values)
    order = torch.argsort(c_y[valid], descending=True)
    assert (torch.diff(m_plus[valid][order]) >= 0).all()
    assert torch.equal(m_plus[~valid], m_flat[~valid])
    # and the logits use exactly those margins
    z = t_plus(cos, y, generator=_gen(16))
    assert_close64(z[rows[valid], y[valid]], c_y[valid] - m_plus[valid])
    assert torch.equal(z[~valid], cos[~valid])


def test_elastic_plus_official_indexing_holds_only_for_involutions():
    """The official code hands row i the margin ``sorted_m[order[i]]`` (order = argsort of the target
    cosines, descending): the intended rank assignment when ``order`` is its own inverse, not otherwise."""
    t = ElasticCosFace(scale=1.0, std=0.1, plus=True)
    y = torch.zeros(3, dtype=torch.long)
    for c_y, involution in ((torch.tensor([0.9, 0.1, 0.5], dtype=F64), True),
                            (torch.tensor([0.5, 0.1, 0.9], dtype=F64), False)):
        ours = t.margins(c_y, y, generator=_gen(17))
        drawn = t.draw_margins(3, generator=_gen(17), dtype=F64)
        order = torch.argsort(c_y, descending=True)
        official = torch.sort(drawn).values[order]
        assert (torch.diff(ours[order]) >= 0).all()
        assert torch.equal(ours, official) is involution


def test_elastic_std_zero_is_the_fixed_margin_transform():
    cos = _cos(seed=18, low=-1.0, high=1.0)
    y = make_target(N, C)
    assert torch.equal(ElasticArcFace(scale=9.0, margin=0.45, std=0.0)(cos, y), ArcFace(scale=9.0, margin=0.45)(cos, y))
    assert torch.equal(ElasticCosFace(scale=9.0, margin=0.3, std=0.0)(cos, y), CosFace(scale=9.0, margin=0.3)(cos, y))


# --- registered losses -------------------------------------------------------------------------------------


def _psi_of(name, hp):
    return {
        "normalized_softmax": lambda c: c,
        "cosface": lambda c: c - hp["margin"],
        "arcface": lambda c: np_arcface(c, hp["margin"], hp.get("easy_margin", False)),
        "sphereface": lambda c: np_sphereface(c, hp["margin"], hp.get("lambda_", 0.0)),
        "combined_margin": lambda c: np_combined(c, hp["m1"], hp["m2"], hp["m3"]),
    }[name]


LOSS_CASES = [
    ("normalized_softmax", {"scale": 16.0}),
    ("cosface", {"scale": 16.0, "margin": 0.35}),
    ("arcface", {"scale": 16.0, "margin": 0.5}),
    ("arcface", {"scale": 16.0, "margin": 0.3, "easy_margin": True}),
    ("sphereface", {"scale": 16.0, "margin": 4}),
    ("sphereface", {"scale": 16.0, "margin": 2, "lambda_": 3.0}),
    ("combined_margin", {"scale": 16.0, "m1": 0.9, "m2": 0.4, "m3": 0.15}),
    ("combined_margin", {"scale": 16.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}),
]


@pytest.mark.parametrize("name, hp", LOSS_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LOSS_CASES)])
def test_registered_loss_is_cross_entropy_of_the_reference_logits(name, hp):
    fn = lossbook.loss_info(name).function
    cos = _cos(seed=19, low=-1.0, high=1.0)
    cos[0, 3] = -0.99
    y = torch.tensor([3, 0, 1, 5, 2, 2, 4, 0, 1])
    z = ref_logits(_np(cos), _np(y), _psi_of(name, hp), hp["scale"])
    per_row = ref_ce(z, _np(y))
    assert_close64(fn(cos, y, reduction="none", **hp), per_row, rtol=1e-11, atol=1e-11)
    # weight, ignore_index and label smoothing are cross-entropy's, applied to the margin logits
    w = make_weight(C)
    y_ign = y.clone()
    y_ign[4] = -100
    logits = torch.as_tensor(ref_logits(_np(cos), _np(y_ign), _psi_of(name, hp), hp["scale"]))
    for opts in ({"weight": w}, {"label_smoothing": 0.2}, {"weight": w, "label_smoothing": 0.1}):
        for red in ("none", "mean", "sum"):
            assert_close64(fn(cos, y_ign, reduction=red, **hp, **opts),
                           LF.cross_entropy(logits, y_ign, reduction=red, **opts), rtol=1e-11, atol=1e-11)


def test_registered_losses_and_metadata():
    assert MARGIN_LOSSES == CE_LOSSES + ["sphereface2"]
    for name in MARGIN_LOSSES:
        info = lossbook.loss_info(name)
        assert info.inputs == "cosine" and info.target == "index"
        assert info.has("nonnegative") and info.has("bounded")
        assert "reduces_to_ce_when" not in info.properties and "prob_target" not in info.supports
        assert info.module.__name__ in lossbook.__all__
    assert lossbook.loss_info("arcface").hyperparameters == {"scale": 64.0, "margin": 0.5, "easy_margin": False,
                                                             "grad": "exact"}
    assert lossbook.loss_info("sphereface").hyperparameters == {"scale": 64.0, "margin": 4, "lambda_": 0.0}
    assert lossbook.loss_info("combined_margin").hyperparameters == {"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2,
                                                                     "grad": "exact"}
    assert lossbook.loss_info("cosface").paper == "wang2018cosface"
    assert lossbook.loss_info("arcface").paper == "deng2019arcface"
    assert lossbook.loss_info("sphereface2").supports == ("weight", "ignore_index")
    # family chapter order in the registry: softmax, spherical, sampled, margin, robust
    families = [lossbook.loss_info(n).family for n in lossbook.list_losses()]
    firsts = [families.index(f) for f in ("softmax", "spherical", "sampled", "margin", "robust")]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize("name", CE_LOSSES)
def test_margin_zero_losses_equal_normalized_softmax(name):
    zero = {"normalized_softmax": {}, "cosface": {"margin": 0.0}, "arcface": {"margin": 0.0},
            "sphereface": {"margin": 1}, "combined_margin": {"m1": 1.0, "m2": 0.0, "m3": 0.0}}[name]
    cos, y = _cos(seed=20, low=-1.0, high=1.0), make_target(N, C)
    fn = lossbook.loss_info(name).function
    assert_close64(fn(cos, y, scale=20.0, **zero), LF.normalized_softmax_loss(cos, y, scale=20.0), rtol=1e-12)


def test_normalized_softmax_is_scaled_cross_entropy():
    cos, y = _cos(seed=21), make_target(N, C)
    assert torch.equal(LF.normalized_softmax_loss(cos, y, scale=5.0), LF.cross_entropy(5.0 * cos, y))


def test_margins_raise_the_loss_of_a_correct_prediction():
    cos = torch.tensor([[0.8, 0.1, -0.2], [0.6, 0.55, 0.0]], dtype=F64)
    y = torch.tensor([0, 0])
    base = LF.normalized_softmax_loss(cos, y, reduction="none", scale=10.0)
    for name in ("cosface", "arcface", "sphereface", "combined_margin"):
        fn = lossbook.loss_info(name).function
        assert (fn(cos, y, reduction="none", scale=10.0) > base).all(), name


# --- pytorch-metric-learning as a second oracle -----------------------------------------------------------------


def _pml_setup(seed=22, n=10, d=7, c=6):
    g = _gen(seed)
    x = torch.randn(n, d, generator=g, dtype=F64) * 3.0
    w = torch.randn(c, d, generator=g, dtype=F64)
    y = torch.randint(0, c, (n,), generator=g)
    return x, w, y


@pytest.mark.parametrize("scale", [1.0, 16.0, 64.0])
@pytest.mark.parametrize("margin", [0.2, 0.5, 1.0])
def test_arcface_agrees_with_pytorch_metric_learning(scale, margin):
    """PML's ArcFaceLoss takes the margin in degrees (default 28.6° ≈ 0.5 rad); same fallback
    (θ + m > π → cos θ − m·sin m = insightface's c − m·sin(π − m))."""
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    x, w, y = _pml_setup()
    pml = pml_losses.ArcFaceLoss(num_classes=6, embedding_size=7, margin=math.degrees(margin), scale=scale).double()
    with torch.no_grad():
        pml.W.copy_(w.T)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    theirs = pml(x1, y)
    ours = LF.arcface_loss(cosine_logits(x2, w), y, scale=scale, margin=margin)
    assert_close64(ours, theirs, rtol=1e-10, atol=1e-10)
    assert_close64(torch.autograd.grad(ours, x2)[0], torch.autograd.grad(theirs, x1)[0], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("scale", [1.0, 64.0])
@pytest.mark.parametrize("margin", [0.1, 0.35])
def test_cosface_agrees_with_pytorch_metric_learning(scale, margin):
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    x, w, y = _pml_setup(23)
    pml = pml_losses.CosFaceLoss(num_classes=6, embedding_size=7, margin=margin, scale=scale).double()
    with torch.no_grad():
        pml.W.copy_(w.T)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    theirs = pml(x1, y)
    ours = LF.cosface_loss(cosine_logits(x2, w), y, scale=scale, margin=margin)
    assert_close64(ours, theirs, rtol=1e-10, atol=1e-10)
    assert_close64(torch.autograd.grad(ours, x2)[0], torch.autograd.grad(theirs, x1)[0], rtol=1e-8, atol=1e-10)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # PML's scipy.special.binom on tensors (NumPy 2)
@pytest.mark.parametrize("margin", [1, 2, 3, 4])
def test_sphereface_agrees_with_pytorch_metric_learning(margin):
    """PML's SphereFaceLoss normalises W but not x: its logits are ‖x‖·scale·ψ and ‖x‖·scale·cos.
    On unit embeddings with scale=s it is ours with scale s; on raw embeddings ours with a per-row
    scale ‖x_i‖ (row by row, since our scale is one number)."""
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    x, w, y = _pml_setup(24)
    pml = pml_losses.SphereFaceLoss(num_classes=6, embedding_size=7, margin=margin, scale=2.5).double()
    with torch.no_grad():
        pml.W.copy_(w.T)
    unit = torch.nn.functional.normalize(x, dim=1)
    cos = cosine_logits(x, w)
    assert_close64(LF.sphereface_loss(cos, y, scale=2.5, margin=margin), pml(unit, y), rtol=1e-10, atol=1e-10)
    # raw embeddings: PML scales each row by its norm
    norms = x.norm(dim=1)
    per_row = torch.stack([LF.sphereface_loss(cos[i : i + 1], y[i : i + 1], scale=2.5 * float(norms[i]), margin=margin)
                           for i in range(x.shape[0])])
    assert_close64(per_row.mean(), pml(x, y), rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pml_large_margin_softmax_uses_the_same_psi():
    """PML's LargeMarginSoftmaxLoss.modify_cosine_of_target_classes is SphereFace's ψ."""
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    c = _cos(1, 200, seed=25, low=-1.0, high=1.0)[0]
    for m in (1, 2, 3, 4, 5):
        pml = pml_losses.LargeMarginSoftmaxLoss(num_classes=3, embedding_size=2, margin=m)
        pml.cast_types(F64, c.device)
        assert_close64(pml.modify_cosine_of_target_classes(c), sphereface_psi(c, m), rtol=1e-9, atol=1e-9)


# --- extreme inputs ------------------------------------------------------------------------------------------


EXTREME = [
    NormalizedSoftmax(), CosFace(), ArcFace(), ArcFace(easy_margin=True), ArcFace(grad="straight_through"),
    SphereFace(), SphereFace(margin=3, lambda_=1.0), CombinedMargin(), CombinedMargin(m1=1.35, m2=0.0, m3=0.0),
    CombinedMargin(m1=0.9, m2=0.4, m3=0.15), ElasticArcFace(), ElasticCosFace(plus=True),
]


@pytest.mark.parametrize("transform", EXTREME, ids=[repr(t) for t in EXTREME])
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_extreme_cosines_stay_finite(transform, dtype):
    cos = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, -1.0, 1.0], [1.0 + 3e-7, -1.0 - 3e-7, 0.5]],
                       dtype=dtype, requires_grad=True)
    y = torch.tensor([0, 0, 2, 1])
    z = transform(cos, y)
    assert torch.isfinite(z).all() and z.dtype == dtype
    loss = LF.cross_entropy(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(cos.grad).all()


# --- errors -----------------------------------------------------------------------------------------------------


TRANSFORM_ERRORS = [
    (lambda: ArcFace(margin=math.pi), ValueError, r"^ArcFace: margin must lie in \[0, 3\.14159\)"),
    (lambda: ArcFace(margin=-0.1), ValueError, r"^ArcFace: margin must lie in \[0, 3\.14159\); got -0\.1"),
    (lambda: ArcFace(grad="surrogate"), ValueError,
     r"^ArcFace: grad must be one of \('exact', 'straight_through'\); got 'surrogate'"),
    (lambda: CosFace(scale=-1.0), ValueError, r"^CosFace: scale must lie in \(0, inf\); got -1\.0"),
    (lambda: SphereFace(margin=1.5), ValueError,
     (r"^SphereFace: margin must be a positive integer .* got 1\.5\. For a non-integer multiplicative margin use "
      r"CombinedMargin")),
    (lambda: SphereFace(margin=0), ValueError, r"^SphereFace: margin must be a positive integer"),
    (lambda: SphereFace(margin=True), TypeError, r"^SphereFace: margin must be a positive integer .*got bool"),
    (lambda: SphereFace(margin=2, lambda_=-1.0), ValueError, r"^SphereFace: lambda_ must lie in \[0, inf\)"),
    (lambda: CombinedMargin(m1=0.0), ValueError, r"^CombinedMargin: m1 must lie in \(0, inf\); got 0\.0"),
    (lambda: CombinedMargin(m2=3.5), ValueError, r"^CombinedMargin: m2 must lie in \[0, 3\.14159\)"),
    (lambda: CombinedMargin(grad="st"), ValueError, r"^CombinedMargin: grad must be one of"),
    (lambda: ElasticArcFace(std=-0.1), ValueError, r"^ElasticArcFace: std must lie in \[0, inf\); got -0\.1"),
    (lambda: ElasticArcFace(margin=4.0), ValueError, r"^ElasticArcFace: margin must lie in \[0, 3\.14159\)"),
    (lambda: ElasticCosFace(plus=1), TypeError, r"^ElasticCosFace: plus must be a bool; got int"),
    (lambda: ElasticCosFace(generator=3), TypeError, r"^ElasticCosFace: generator must be a torch\.Generator"),
    (lambda: MagFace(l_a=20.0, u_a=10.0), ValueError, r"^MagFace: u_a must lie in \(20, inf\); got 10\.0"),
    (lambda: MagFace(l_m=0.8, u_m=0.45), ValueError, r"^MagFace: u_m must lie in \[0\.8, 3\.14159\)"),
]


@pytest.mark.parametrize("make, exc, pattern", TRANSFORM_ERRORS, ids=[str(i) for i in range(len(TRANSFORM_ERRORS))])
def test_transform_construction_errors(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def _x():
    return _cos(6, 5, seed=26)


def _y():
    return torch.tensor([0, 1, 2, 3, 4, 0])


LOSS_ERRORS = [
    ("arcface-unnormalised", LF.arcface_loss, (_x() * 3.0, _y()), {}, ValueError,
     (r"^arcface_loss: input must hold cosine similarities in \[-1, 1\] \(unit embeddings times unit class "
      r"weights\); got an entry of absolute value 2\.\d+\. Normalise the embeddings and the class weights first "
      r"\(lossbook\.margin\.cosine_logits\(embeddings, weight\)\), or use lossbook\.MarginHead")),
    ("sphereface2-unnormalised", LF.sphereface2_loss, (_x() + 1.5, _y()), {}, ValueError,
     r"^sphereface2_loss: input must hold cosine similarities"),
    ("arcface-margin-pi", LF.arcface_loss, (_x(), _y()), {"margin": 3.2}, ValueError,
     r"^arcface_loss: margin must lie in \[0, 3\.14159\); got 3\.2"),
    ("arcface-margin-negative", LF.arcface_loss, (_x(), _y()), {"margin": -0.5}, ValueError,
     r"^arcface_loss: margin must lie in \[0, 3\.14159\); got -0\.5"),
    ("arcface-grad", LF.arcface_loss, (_x(), _y()), {"grad": "approx"}, ValueError,
     r"^arcface_loss: grad must be one of \('exact', 'straight_through'\); got 'approx'"),
    ("arcface-easy-margin", LF.arcface_loss, (_x(), _y()), {"easy_margin": 1}, TypeError,
     r"^arcface_loss: easy_margin must be a bool; got int"),
    ("sphereface-float-margin", LF.sphereface_loss, (_x(), _y()), {"margin": 2.5}, ValueError,
     (r"^sphereface_loss: margin must be a positive integer \(the multiplicative angular margin m in cos\(mθ\), "
      r"e\.g\. 4 as in the paper\); got 2\.5")),
    ("sphereface-zero", LF.sphereface_loss, (_x(), _y()), {"margin": 0}, ValueError,
     r"^sphereface_loss: margin must be a positive integer"),
    ("cosface-scale", LF.cosface_loss, (_x(), _y()), {"scale": 0.0}, ValueError,
     r"^cosface_loss: scale must lie in \(0, inf\); got 0\.0"),
    ("combined-m1", LF.combined_margin_loss, (_x(), _y()), {"m1": -1.0}, ValueError,
     r"^combined_margin_loss: m1 must lie in \(0, inf\)"),
    ("combined-m2", LF.combined_margin_loss, (_x(), _y()), {"m2": 4.0}, ValueError,
     r"^combined_margin_loss: m2 must lie in \[0, 3\.14159\)"),
    ("normalized-scale-str", LF.normalized_softmax_loss, (_x(), _y()), {"scale": "64"}, TypeError,
     r"^normalized_softmax_loss: scale must be a real number; got str"),
    ("sphereface2-lambda", LF.sphereface2_loss, (_x(), _y()), {"lambda_": 1.0}, ValueError,
     r"^sphereface2_loss: lambda_ must lie in \(0, 1\); got 1\.0"),
    ("sphereface2-t", LF.sphereface2_loss, (_x(), _y()), {"t": 0.0}, ValueError,
     r"^sphereface2_loss: t must lie in \(0, inf\)"),
    ("sphereface2-bias-shape", LF.sphereface2_loss, (_x(), _y()), {"bias": torch.zeros(2)}, ValueError,
     r"^sphereface2_loss: bias must be a float or a one-element floating tensor; got float32 of shape \(2,\)"),
    ("sphereface2-one-class", LF.sphereface2_loss, (_x()[:, :1], torch.zeros(6, dtype=torch.long)), {}, ValueError,
     (r"^sphereface2_loss: with bias=None the closed-form initial bias needs at least 2 classes; got 1\. "
      r"Pass bias= explicitly")),
    ("module-arcface-margin", lossbook.ArcFaceLoss, (), {"margin": 5.0}, ValueError,
     r"^arcface_loss: margin must lie in \[0, 3\.14159\)"),
    ("module-sphereface-margin", lossbook.SphereFaceLoss, (), {"margin": 1.5}, ValueError,
     r"^sphereface_loss: margin must be a positive integer"),
    ("module-sphereface2-grad", lossbook.SphereFace2Loss, (), {"grad": "none"}, ValueError,
     r"^sphereface2_loss: grad must be one of"),
]


@pytest.mark.parametrize("row", LOSS_ERRORS, ids=[r[0] for r in LOSS_ERRORS])
def test_registered_loss_errors(row):
    _, fn, args, kwargs, exc, pattern = row
    with pytest.raises(exc, match=pattern):
        fn(*args, **kwargs)


def test_sphereface2_one_class_with_explicit_bias_is_fine():
    out = LF.sphereface2_loss(_x()[:, :1], torch.zeros(6, dtype=torch.long), bias=0.0)
    assert torch.isfinite(out)


def test_functional_transform_wrappers():
    cos, y = _cos(seed=27), make_target(N, C)
    assert torch.equal(arcface_logits(cos, y, margin=0.3, scale=3.0, grad="straight_through"),
                       ArcFace(scale=3.0, margin=0.3, grad="straight_through")(cos, y))
    assert torch.equal(combined_margin_logits(cos, y, m1=0.9, m2=0.4, m3=0.15, scale=3.0),
                       CombinedMargin(scale=3.0, m1=0.9, m2=0.4, m3=0.15)(cos, y))
    assert GRADS == ("exact", "straight_through")
    # the transforms are frozen dataclasses: hashable, comparable, printable
    assert ArcFace(margin=0.3) == ArcFace(margin=0.3) and "margin=0.3" in repr(ArcFace(margin=0.3))
    assert not ArcFace.needs_norms and MagFace.needs_norms
