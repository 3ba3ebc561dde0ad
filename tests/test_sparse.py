"""lossbook.sparse: sparsemax, entmax-1.5 and sparse-softmax, their losses.

Each map and loss against its textbook formula in float64 (sparsemax as the Euclidean projection
onto the simplex, solved here by bisection; entmax-1.5 the same way), against the ``entmax``
package (values and gradients), gradcheck, the closed-form Jacobians, the identities of the
papers (two classes: the sparsemax loss is a quarter of the modified Huber loss; k ≥ C:
sparse-softmax is softmax and its loss is cross-entropy), the top-k path of sparsemax, extreme
logits and bad input. The contract tests (``tests/test_contract.py``) cover the torch options and
the declared properties.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import F64, assert_close64, make_logits, make_prob_target, make_target

import lossbook
import lossbook.functional as LF
from lossbook.sparse import (
    entmax15,
    fenchel_young_terms,
    sparse_softmax,
    sparse_softmax_terms,
    sparsemax,
    sparsemax_threshold,
)

entmax = pytest.importorskip("entmax")

N, C = 7, 6


def bisect_threshold(z: torch.Tensor, power: float, scale: float) -> torch.Tensor:
    """τ with Σ_j [scale·z_j − τ]₊^power = 1, by bisection (float64, one row)."""
    lo, hi = (scale * z).min() - 1.0, (scale * z).max()
    for _ in range(200):
        mid = (lo + hi) / 2
        if ((scale * z - mid).clamp_min(0) ** power).sum() > 1:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def textbook_sparsemax(z):
    return torch.stack([(row - bisect_threshold(row, 1.0, 1.0)).clamp_min(0) for row in z])


def textbook_entmax15(z):
    return torch.stack([(row / 2 - bisect_threshold(row, 2.0, 0.5)).clamp_min(0) ** 2 for row in z])


def textbook_sparsemax_loss(z, y):
    """Martins & Astudillo's −z_y + ½Σ_{j∈S}(z_j² − τ²) + ½, one row at a time."""
    out = []
    for row, t in zip(z, y):
        tau = bisect_threshold(row, 1.0, 1.0)
        s = row > tau
        out.append(-row[t] + 0.5 * (row[s] ** 2 - tau**2).sum() + 0.5)
    return torch.stack(out)


# --- the maps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.3, 2.0, 20.0])
def test_maps_match_the_textbook_projection(scale):
    z = make_logits(N, C, seed=1, scale=scale)
    assert_close64(sparsemax(z), textbook_sparsemax(z), atol=1e-10, rtol=1e-10)
    assert_close64(entmax15(z), textbook_entmax15(z), atol=1e-10, rtol=1e-10)
    for p in (sparsemax(z), entmax15(z)):
        assert_close64(p.sum(1), torch.ones(N, dtype=F64))
        assert bool((p >= 0).all())


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_maps_match_the_entmax_package_values_and_gradients(scale):
    z = make_logits(N, C, seed=2, scale=scale, requires_grad=True)
    w = make_logits(N, C, seed=3)
    for ours, theirs in ((sparsemax, entmax.sparsemax), (entmax15, entmax.entmax15)):
        z_ref = z.detach().clone().requires_grad_(True)
        p, q = ours(z), theirs(z_ref, dim=-1)
        assert_close64(p, q)
        (g,) = torch.autograd.grad((p * w).sum(), z)
        (g_ref,) = torch.autograd.grad((q * w).sum(), z_ref)
        assert_close64(g, g_ref)


def test_maps_gradcheck_and_closed_form_jacobians():
    z = make_logits(4, 5, seed=5, requires_grad=True)
    assert torch.autograd.gradcheck(sparsemax, (z,))
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, k=2), (z,))
    assert torch.autograd.gradcheck(entmax15, (z,))
    assert torch.autograd.gradcheck(lambda t: sparse_softmax(t, 3), (z,))
    row = z[0].detach()
    p = sparsemax(row.unsqueeze(0))[0]
    s = (p > 0).to(F64)
    jac = torch.autograd.functional.jacobian(lambda t: sparsemax(t.unsqueeze(0))[0], row)
    assert_close64(jac, torch.diag(s) - torch.outer(s, s) / s.sum())
    p = entmax15(row.unsqueeze(0))[0]
    r = p.sqrt()
    jac = torch.autograd.functional.jacobian(lambda t: entmax15(t.unsqueeze(0))[0], row)
    assert_close64(jac, torch.diag(r) - torch.outer(r, r) / r.sum())


def test_sparsemax_top_k_path_is_exact_and_doubles_k_when_needed():
    z = make_logits(9, 300, seed=6, scale=0.05)  # flat rows: supports of dozens of classes
    full = sparsemax(z)
    assert int((full > 0).sum(1).max()) > 8
    for k in (1, 4, 16, 299, 300, 10_000):
        assert_close64(sparsemax(z, k=k), full)
    for k in (None, 4):  # the loss's own top-k path (from TOPK_FROM classes on) is the same loss
        assert_close64(fenchel_young_terms(z, "sparsemax", k=k), fenchel_young_terms(z, "sparsemax"))
    wide = make_logits(3, lossbook.sparse.TOPK_FROM, seed=6, scale=0.01)
    assert int((sparsemax(wide) > 0).sum(1).min()) > 64  # the path has to double k
    assert_close64(LF.sparsemax_loss(wide, make_target(3, 5), reduction="none"),
                   entmax.sparsemax_loss(wide, make_target(3, 5)))
    tau, size = sparsemax_threshold(z, k=4)
    assert_close64(size.squeeze(1), (full > 0).sum(1))
    assert_close64(tau, sparsemax_threshold(z)[0])


def test_maps_work_along_any_dim_and_keep_dtype():
    z = make_logits(12, 5, seed=7).reshape(3, 4, 5)
    for fn in (sparsemax, entmax15, lambda t, dim: sparse_softmax(t, 2, dim=dim)):
        assert_close64(fn(z, dim=1), fn(z.transpose(1, 2), dim=-1).transpose(1, 2))
        assert fn(z.float(), dim=-1).dtype == torch.float32


def test_sparse_softmax_keeps_k_entries_and_is_softmax_at_k_ge_c():
    z = make_logits(N, C, seed=8)
    p = sparse_softmax(z, 2)
    assert bool(((p > 0).sum(1) == 2).all())
    assert_close64(p.sum(1), torch.ones(N, dtype=F64))
    assert_close64(sparse_softmax(z, C), torch.softmax(z, 1))
    assert_close64(sparse_softmax(z, 10 * C), torch.softmax(z, 1))


def test_sparsity_grows_with_the_temperature_scale():
    z = make_logits(50, 10, seed=9)
    zeros = [float((sparsemax(z / t) == 0).double().mean()) for t in (0.1, 1.0, 10.0)]
    assert zeros[0] > zeros[1] > zeros[2]
    assert float((entmax15(z) == 0).double().mean()) <= float((sparsemax(z) == 0).double().mean())
    assert float((torch.softmax(z, 1) == 0).double().mean()) == 0.0


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_maps_and_losses_stay_finite_at_extreme_logits(big):
    z = make_logits(N, C, seed=10, dtype=torch.float32)
    z[:, 0] = big
    z[0] = torch.linspace(-big, big, C)
    z.requires_grad_(True)
    y = make_target(N, C)
    for value in (sparsemax(z).sum(), entmax15(z).sum(), sparse_softmax(z, 2).sum(), LF.sparsemax_loss(z, y),
                  LF.entmax15_loss(z, y), LF.sparse_softmax_loss(z, y, k=2),
                  lossbook.sparse.sparsemax_multilabel_loss(z, make_prob_target(N, C, dtype=torch.float32))):
        (g,) = torch.autograd.grad(value, z)
        assert torch.isfinite(value) and bool(torch.isfinite(g).all())


# --- the losses -------------------------------------------------------------------------------------


def test_losses_are_registered_in_the_sparse_family():
    assert set(lossbook.list_losses("sparse")) == {"sparsemax_loss", "entmax15_loss", "sparse_softmax_loss"}
    info = lossbook.loss_info("sparse_softmax_loss")
    assert info.paper == "sun2021sparse" and info.module is lossbook.SparseSoftmaxLoss
    assert info.hyperparameters == {"k": 4}
    assert lossbook.loss_info("sparsemax_loss").paper == "martins2016softmax"
    assert "sparsemax_multilabel_loss" in lossbook.list_methods("sparse")


def test_sparsemax_loss_matches_the_textbook_formula():
    z, y = make_logits(N, C, seed=11, scale=3.0), make_target(N, C)
    assert_close64(LF.sparsemax_loss(z, y, reduction="none"), textbook_sparsemax_loss(z, y), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_losses_match_the_entmax_package_and_their_gradient_is_p_minus_e_y(name):
    ours_fn, theirs_fn, prob = {"sparsemax": (LF.sparsemax_loss, entmax.sparsemax_loss, sparsemax),
                                "entmax15": (LF.entmax15_loss, entmax.entmax15_loss, entmax15)}[name]
    z = make_logits(N, C, seed=12, scale=3.0, requires_grad=True)
    y = make_target(N, C)
    ours = ours_fn(z, y, reduction="none")
    z_ref = z.detach().clone().requires_grad_(True)
    theirs = theirs_fn(z_ref, y)
    assert_close64(ours, theirs)
    (g,) = torch.autograd.grad(ours.sum(), z)
    (g_ref,) = torch.autograd.grad(theirs.sum(), z_ref)
    assert_close64(g, g_ref)
    assert_close64(g, prob(z.detach()) - F.one_hot(y, C).to(F64))


def test_losses_gradcheck():
    z = make_logits(4, 5, seed=13, requires_grad=True)
    y = make_target(4, 5)
    q = make_prob_target(4, 5)
    assert torch.autograd.gradcheck(lambda t: LF.sparsemax_loss(t, y, reduction="none"), (z,))
    assert torch.autograd.gradcheck(lambda t: LF.entmax15_loss(t, y, reduction="none"), (z,))
    assert torch.autograd.gradcheck(lambda t: LF.sparse_softmax_loss(t, y, k=2, reduction="none"), (z,))
    assert torch.autograd.gradcheck(lambda t: lossbook.sparse.sparsemax_multilabel_loss(t, q, reduction="none"), (z,))


def modified_huber(t):
    """Zhang's (2004) modified Huber loss of a margin t: max(0, 1 − t)² for t ≥ −1, −4t below."""
    return torch.where(t >= -1, (1 - t).clamp_min(0) ** 2, -4 * t)


def test_two_class_sparsemax_loss_is_a_quarter_of_the_modified_huber_loss():
    t = torch.linspace(-4, 4, 81, dtype=F64)
    offset = torch.randn(81, generator=torch.Generator().manual_seed(0), dtype=F64)
    z = torch.stack([offset + t, offset], dim=1)  # margin z_y − z_other = t with y = 0
    assert_close64(LF.sparsemax_loss(z, torch.zeros(81, dtype=torch.long), reduction="none"), modified_huber(t) / 4)
    assert_close64(LF.sparsemax_loss(z.flip(1), torch.ones(81, dtype=torch.long), reduction="none"),
                   modified_huber(t) / 4)


def test_multilabel_sparsemax_loss_is_zero_at_its_target_and_shares_the_gradient():
    z = make_logits(N, C, seed=14, requires_grad=True)
    labels = (torch.rand(N, C, generator=torch.Generator().manual_seed(1)) < 0.4).to(F64)
    labels[:, 0] = 1
    q = labels / labels.sum(1, keepdim=True)
    ml = lossbook.sparse.sparsemax_multilabel_loss(z, q, reduction="none")
    want = []
    for row, qr in zip(z.detach(), q):  # −qᵀz + ½Σ_S(z_j² − τ²) + ½‖q‖²
        tau = bisect_threshold(row, 1.0, 1.0)
        want.append(-(qr * row).sum() + 0.5 * (row[row > tau] ** 2 - tau**2).sum() + 0.5 * (qr**2).sum())
    assert_close64(ml, torch.stack(want), atol=1e-10, rtol=1e-10)
    expected = LF.sparsemax_loss(z, q, reduction="none")  # lossbook's expected loss Σ q_k ℓ(z, k)
    assert_close64(expected - ml, 0.5 * (1 - (q**2).sum(1)))
    g1, = torch.autograd.grad(ml.sum(), z)
    g2, = torch.autograd.grad(expected.sum(), z)
    assert_close64(g1, g2)
    assert_close64(g1, sparsemax(z.detach()) - q)
    # at scores whose sparsemax is q the loss is 0 (q itself: its support has τ = 0 ... shifted)
    assert_close64(lossbook.sparse.sparsemax_multilabel_loss(q, q, reduction="none"), torch.zeros(N, dtype=F64))
    one_hot = F.one_hot(make_target(N, C), C).to(F64)
    assert_close64(lossbook.sparse.sparsemax_multilabel_loss(z, one_hot, reduction="none"),
                   LF.sparsemax_loss(z, one_hot.argmax(1), reduction="none"))


def test_fenchel_young_terms_hold_every_target():
    z = make_logits(N, C, seed=15)
    for name, loss in (("sparsemax", LF.sparsemax_loss), ("entmax15", LF.entmax15_loss)):
        terms = fenchel_young_terms(z, name)
        for k in range(C):
            assert_close64(terms[:, k], loss(z, torch.full((N,), k), reduction="none"))
    with pytest.raises(ValueError, match="map_name must be one of"):
        fenchel_young_terms(z, "softmax")


def test_sparse_softmax_loss_matches_the_textbook_formula():
    z = make_logits(N, C, seed=16)
    y = make_target(N, C)
    for k in (1, 2, 3, C - 1):
        want = []
        for row, t in zip(z, y):
            kept = set(row.topk(k).indices.tolist()) | {int(t)}
            want.append(torch.logsumexp(row[sorted(kept)], 0) - row[t])
        got = LF.sparse_softmax_loss(z, y, k=k, reduction="none")
        assert_close64(got, torch.stack(want))
        assert bool((got >= 0).all())
        terms = sparse_softmax_terms(z, k)
        assert_close64(terms.gather(1, y.unsqueeze(1)).squeeze(1), got)
        q = make_prob_target(N, C)  # a probability target: the expected loss over the terms
        assert_close64(LF.sparse_softmax_loss(z, q, k=k, reduction="none"), (q * terms).sum(1))
    for k in (None, C, 10 * C):
        assert_close64(LF.sparse_softmax_loss(z, y, k=k), F.cross_entropy(z, y))
        assert_close64(LF.sparse_softmax_loss(z, y, k=k, label_smoothing=0.2), F.cross_entropy(z, y, label_smoothing=0.2))


def test_sparse_softmax_loss_is_the_log_loss_of_softmax_over_the_top_k_and_the_target():
    z = torch.tensor([[3.0, 2.0, 1.0, 0.0]], dtype=F64, requires_grad=True)
    y = torch.tensor([3])
    loss = LF.sparse_softmax_loss(z, y, k=2)
    # −log of softmax over {0, 1, 3}: finite, where −log sparse_softmax(z, 2)[y] is +inf
    assert_close64(loss, -torch.log_softmax(z[0, [0, 1, 3]], 0)[2])
    assert float(sparse_softmax(z.detach(), 2)[0, 3]) == 0.0
    (g,) = torch.autograd.grad(loss, z)
    # the gradient is p − e_y over the kept set: it pulls z_y up with a force in (−1, 0), zero on the dropped class
    assert -1.0 < float(g[0, 3]) < 0.0 and float(g[0, 2]) == 0.0
    assert_close64(g.sum(), torch.zeros((), dtype=F64))


def test_modules_agree_with_functions():
    z, y = make_logits(N, C, seed=17), make_target(N, C)
    assert_close64(lossbook.SparsemaxLoss()(z, y), LF.sparsemax_loss(z, y))
    assert_close64(lossbook.Entmax15Loss(reduction="sum")(z, y), LF.entmax15_loss(z, y, reduction="sum"))
    assert_close64(lossbook.SparseSoftmaxLoss(3)(z, y), LF.sparse_softmax_loss(z, y, k=3))
    assert_close64(lossbook.get_loss("sparse_softmax_loss", k=2)(z, y), LF.sparse_softmax_loss(z, y, k=2))


# --- bad input ----------------------------------------------------------------------------------------


def test_bad_input_names_the_fix():
    z = make_logits(N, C)
    y = make_target(N, C)
    with pytest.raises(TypeError, match="floating tensor"):
        sparsemax(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="scalar"):
        entmax15(torch.tensor(1.0))
    with pytest.raises(ValueError, match="out of range"):
        sparsemax(z, dim=3)
    with pytest.raises(ValueError, match="k must be ≥ 1"):
        sparsemax(z, k=0)
    with pytest.raises(TypeError, match="k must be a positive int"):
        sparse_softmax(z, 2.5)
    assert_close64(sparse_softmax(z, 2.0), sparse_softmax(z, 2))
    with pytest.raises(ValueError, match="k must be ≥ 1"):
        LF.sparse_softmax_loss(z, y, k=0)
    with pytest.raises(ValueError, match="k must be ≥ 1"):
        lossbook.SparseSoftmaxLoss(k=-1)
    with pytest.raises(ValueError, match="labels / labels.sum"):
        lossbook.sparse.sparsemax_multilabel_loss(z, y)
    with pytest.raises(ValueError, match="probability vector"):
        lossbook.sparse.sparsemax_multilabel_loss(z, torch.ones(N, C, dtype=F64))
    with pytest.raises(ValueError, match="reduction"):
        lossbook.sparse.sparsemax_multilabel_loss(z, make_prob_target(N, C), reduction="avg")


def test_empty_batch_gives_an_attached_zero():
    z = torch.zeros(0, C, dtype=F64, requires_grad=True)
    for value in (LF.sparsemax_loss(z, torch.zeros(0, dtype=torch.long)),
                  lossbook.sparse.sparsemax_multilabel_loss(z, torch.zeros(0, C, dtype=F64))):
        assert float(value.detach()) == 0.0 and value.requires_grad
