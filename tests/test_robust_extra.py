"""The unregistered label-noise tools: self-distillation, the Z-Error loss, MOIT's interpolated SupCon
loss and mixup, and the k-NN label-noise detector."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from conftest import F64, assert_close64, make_logits, make_target, make_weight

import lossbook.functional as LF
from lossbook.lab.distill import distill
from lossbook.lab.train import fit, mlp, set_seed
from lossbook.robust import (
    InterpolatedSupConLoss,
    SelfDistillationLoss,
    ZErrorLoss,
    distillation_targets,
    interpolated_supcon_loss,
    knn_label_agreement,
    mixup_batch,
    self_distillation_loss,
    z_error_loss,
    z_error_mask,
)

N, C = 8, 5


# --- self-distillation ------------------------------------------------------------------------------


@pytest.mark.parametrize("xi", [0.0, 0.5, 1.0, 1.5, 3.0, -0.5])
def test_self_distillation_is_the_papers_mixture_of_two_cross_entropies(xi):
    x, y = make_logits(N, C, seed=1, requires_grad=True), make_target(N, C, seed=2)
    t = make_logits(N, C, seed=3)
    p_t = torch.softmax(t, 1)
    expected = xi * TF.cross_entropy(x, p_t, reduction="none") + (1 - xi) * TF.cross_entropy(x, y, reduction="none")
    got = self_distillation_loss(x, y, xi=xi, teacher_logits=t, reduction="none")
    assert_close64(got, expected)
    assert_close64(self_distillation_loss(x, y, xi=xi, teacher_probs=p_t), expected.mean())
    # cross-entropy against the built targets is the same objective (CE is linear in its target)
    targets = distillation_targets(t, y, xi=xi)
    assert_close64(targets.sum(1), torch.ones(N, dtype=F64))
    assert_close64(LF.cross_entropy(x, targets, reduction="none"), expected)
    assert_close64(distillation_targets(p_t, y, xi=xi, from_logits=False), targets)
    if xi > 1:
        assert (targets < 0).any()  # ξ > 1 pushes away from the given label


def test_self_distillation_limits_and_teacher_is_constant():
    x, y = make_logits(N, C, seed=4, requires_grad=True), make_target(N, C, seed=5)
    t = make_logits(N, C, seed=6, requires_grad=True)
    assert_close64(self_distillation_loss(x, y, xi=0.0, teacher_logits=t), TF.cross_entropy(x, y))
    loss = self_distillation_loss(x, y, xi=2.0, teacher_logits=t)
    loss.backward()
    assert t.grad is None and x.grad is not None  # the teacher gets no gradient
    y_ign = y.clone()
    y_ign[[1, 4]] = -100
    full = self_distillation_loss(x.detach(), y_ign, xi=1.5, teacher_logits=t.detach(), reduction="none")
    assert full[[1, 4]].eq(0).all()
    keep = torch.tensor([0, 2, 3, 5, 6, 7])
    assert_close64(self_distillation_loss(x.detach(), y_ign, xi=1.5, teacher_logits=t.detach()),
                   self_distillation_loss(x.detach()[keep], y[keep], xi=1.5, teacher_logits=t.detach()[keep]))


def test_self_distillation_gradcheck_and_module():
    x = make_logits(3, 4, seed=7, scale=1.0, requires_grad=True)
    y, t = make_target(3, 4, seed=8), make_logits(3, 4, seed=9)
    assert torch.autograd.gradcheck(lambda x_: self_distillation_loss(x_, y, xi=1.7, teacher_logits=t), (x,))
    m = SelfDistillationLoss(xi=1.7, reduction="sum")
    assert "xi=1.7" in repr(m)
    assert_close64(m(x, y, teacher_logits=t), self_distillation_loss(x, y, xi=1.7, teacher_logits=t, reduction="sum"))


def test_self_distillation_extreme_logits():
    x = (1e4 * (2 * torch.rand(6, 5, generator=torch.Generator().manual_seed(0)) - 1)).requires_grad_(True)
    t = 1e4 * (2 * torch.rand(6, 5, generator=torch.Generator().manual_seed(1)) - 1)
    loss = self_distillation_loss(x, x.detach().argmin(1), xi=1.5, teacher_logits=t)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({}, ValueError, r"^self_distillation_loss: pass exactly one of teacher_logits=.*got neither"),
    ({"teacher_logits": torch.zeros(N, C), "teacher_probs": torch.full((N, C), 0.2)}, ValueError, r"got both"),
    ({"teacher_logits": torch.zeros(N, C + 1)}, ValueError, r"teacher_logits must have the logits' shape \(8, 5\); got \(8, 6\)"),
    ({"teacher_logits": torch.zeros(N, C, dtype=torch.long)}, TypeError, r"teacher_logits must be a floating tensor"),
    ({"teacher_probs": torch.randn(N, C)}, ValueError, r"teacher_probs rows must be probabilities.*pass them as teacher_logits="),
    ({"teacher_logits": torch.zeros(N, C), "xi": float("inf")}, ValueError, r"xi must lie in"),
])
def test_self_distillation_errors(kwargs, exc, pattern):
    kwargs = {"xi": 1.5, **kwargs}
    with pytest.raises(exc, match=pattern):
        self_distillation_loss(torch.zeros(N, C), make_target(N, C), **kwargs)


def test_self_distillation_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"class index 7, outside \[0, 5\).*ignore_index=7"):
        self_distillation_loss(torch.zeros(N, C), torch.full((N,), 7), xi=1.0, teacher_logits=torch.zeros(N, C))
    with pytest.raises(TypeError, match=r"target must be int64"):
        distillation_targets(torch.zeros(N, C), torch.zeros(N), xi=1.0)


def _toy_data(seed=0, n=60, d=4, c=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    return x, y


def test_distill_with_xi_0_is_plain_training_on_the_labels():
    x, y = _toy_data()
    set_seed(0)
    teacher = mlp(4, 3)
    fit(teacher, LF.cross_entropy, x, y, epochs=2, lr=0.1, device="cpu", progress=False)
    set_seed(1)
    student = mlp(4, 3)
    set_seed(1)
    baseline = mlp(4, 3)
    history = distill(teacher, student, x, y, xi=0.0, epochs=3, lr=0.1, seed=2, device="cpu", progress=False)
    fit(baseline, LF.cross_entropy, x, y, epochs=3, lr=0.1, seed=2, device="cpu", progress=False)
    assert len(history.records) == 4
    for a, b in zip(student.parameters(), baseline.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # ξ = 1 imitates the teacher: the student moves towards the teacher's predictions
    set_seed(1)
    student = mlp(4, 3)
    before = TF.kl_div(torch.log_softmax(student(x), 1), torch.softmax(teacher(x), 1), reduction="batchmean")
    distill(teacher, student, x, y, xi=1.0, epochs=30, lr=0.1, device="cpu", progress=False)
    after = TF.kl_div(torch.log_softmax(student(x), 1), torch.softmax(teacher(x), 1), reduction="batchmean")
    assert after < 0.5 * before


# --- Z-Error ---------------------------------------------------------------------------------------------


def _zerror_batch():
    x = make_logits(12, 4, seed=10, scale=1.0)
    y = make_target(12, 4, seed=11)
    x = x.clone()
    x[3] = torch.tensor([-8.0, 8.0, 8.0, 8.0], dtype=F64)  # a gross outlier: its label 0 is very wrong
    y[3] = 0
    return x.requires_grad_(True), y


def test_z_error_masks_the_outlier_and_averages_the_inliers():
    x, y = _zerror_batch()
    out = z_error_loss(x, y, return_aux=True)
    ce = TF.cross_entropy(x, y, reduction="none")
    ce_np = ce.detach().numpy()
    z = (ce_np - ce_np.mean()) / (ce_np.std(ddof=1) + 1e-8)
    assert_close64(out.z, torch.as_tensor(z), rtol=1e-10, atol=1e-12)
    keep = np.abs(z) <= 2.0
    assert not keep[3] and keep.sum() == 11
    assert torch.equal(out.mask, torch.as_tensor(keep))
    assert_close64(out.loss, ce[torch.as_tensor(keep)].mean())
    assert_close64(out.per_sample, ce)
    out.loss.backward()
    assert torch.equal(x.grad[3], torch.zeros(4, dtype=F64))  # the masked row gets no gradient
    assert (x.grad[torch.as_tensor(keep)].abs().sum(1) > 0).all()
    # "sum" and "none"
    assert_close64(z_error_loss(x, y, reduction="sum"), ce[torch.as_tensor(keep)].sum())
    none = z_error_loss(x, y, reduction="none")
    assert none[3] == 0
    assert_close64(none[torch.as_tensor(keep)], ce[torch.as_tensor(keep)])


def test_z_error_one_and_two_sided():
    losses = torch.tensor([0.0, 5.0, 5.1, 4.9, 5.0, 5.2, 4.8, 5.0, 5.1, 4.9, 12.0], dtype=F64)
    _, keep2 = z_error_mask(losses, threshold=1.5)
    _, keep1 = z_error_mask(losses, threshold=1.5, two_sided=False)
    assert not keep2[0] and keep1[0]  # the too-easy row only goes with the two-sided rule
    assert not keep2[-1] and not keep1[-1]
    # equal losses or a single row: nothing is masked
    assert z_error_mask(torch.ones(5, dtype=F64))[1].all()
    assert z_error_mask(torch.tensor([3.0], dtype=F64))[1].all()


def test_z_error_statistics_skip_ignored_rows_and_use_the_base_loss():
    x, y = _zerror_batch()
    y_ign = y.clone()
    y_ign[3] = -100  # the outlier ignored: the rest stays
    out = z_error_loss(x, y_ign, return_aux=True)
    assert not out.mask[3] and out.z[3] == 0
    sub = z_error_loss(x.detach()[torch.arange(12) != 3], y[torch.arange(12) != 3], return_aux=True)
    assert_close64(out.loss, sub.loss)
    gce = z_error_loss(x, y, base="generalized_cross_entropy", return_aux=True)
    assert_close64(gce.per_sample, LF.generalized_cross_entropy(x, y, reduction="none"))
    custom = z_error_loss(x, y, base=lambda i, t, reduction, **kw: LF.mean_absolute_error(i, t, reduction=reduction, **kw))
    assert torch.isfinite(custom)
    w = make_weight(4)
    wout = z_error_loss(x, y, weight=w, return_aux=True)
    kept = wout.mask
    assert_close64(wout.loss, (w[y] * TF.cross_entropy(x, y, reduction="none"))[kept].sum() / w[y][kept].sum())


def test_z_error_empty_batch_module_and_errors():
    x = torch.zeros(0, 4, requires_grad=True)
    out = z_error_loss(x, torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0 and out.requires_grad
    m = ZErrorLoss(threshold=1.0)
    xb, yb = _zerror_batch()
    assert_close64(m(xb, yb), z_error_loss(xb, yb, threshold=1.0))
    assert "threshold=1.0" in repr(m)
    with pytest.raises(ValueError, match=r"^z_error_loss: threshold must lie in \(0, inf\); got 0\.0"):
        z_error_loss(xb, yb, threshold=0.0)
    with pytest.raises(ValueError, match=r"unknown loss 'crossentropy'"):
        z_error_loss(xb, yb, base="crossentropy")
    with pytest.raises(TypeError, match=r"two_sided must be True or False"):
        z_error_loss(xb, yb, two_sided="yes")
    with pytest.raises(ValueError, match=r"base must return one loss per row"):
        z_error_loss(xb, yb, base=lambda i, t, reduction, **kw: i.sum())
    with pytest.raises(TypeError, match=r"^z_error_loss: target must be int64"):
        z_error_loss(xb, yb.int())


# --- MOIT: interpolated SupCon ---------------------------------------------------------------------------


def ref_supcon_terms(e, labels, mix_labels, lam, tau):
    """Loop over anchors, from the paper's equation (NumPy)."""
    e = _unit(e)
    m = len(labels)
    out = np.zeros(m)
    for i in range(m):
        others = [k for k in range(m) if k != i]
        denom = np.log(sum(np.exp(e[i] @ e[k] / tau) for k in others))
        for weight, lab in ((lam[i], labels[i]), (1 - lam[i], mix_labels[i])):
            pos = [p for p in others if labels[p] == lab]
            if pos:
                out[i] -= weight * np.mean([e[i] @ e[p] / tau - denom for p in pos])
    return out


def _unit(e):
    e = e.detach().double().numpy()
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_interpolated_supcon_matches_loop_reference():
    g = torch.Generator().manual_seed(12)
    e = torch.randn(10, 6, generator=g, dtype=F64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 3, 3])
    mix = labels[torch.randperm(10, generator=g)]
    lam = torch.rand(10, generator=g, dtype=F64)
    got = interpolated_supcon_loss(e, labels, mix, lam, temperature=0.3, reduction="none")
    assert_close64(got, ref_supcon_terms(e, labels.numpy(), mix.numpy(), lam.numpy(), 0.3), rtol=1e-10, atol=1e-12)
    assert_close64(interpolated_supcon_loss(e, labels, mix, lam, temperature=0.3), got.mean())
    m = InterpolatedSupConLoss(temperature=0.3, reduction="sum")
    assert_close64(m(e, labels, mix, lam), got.sum())


def test_interpolated_supcon_at_lambda_1_is_supcon_and_matches_the_official_first_term():
    # official masks for two views of a batch of B (supervised_masks_estimation / unsupervised_...):
    # maskSup = eq(labels) - I, tiled 2x2, diagonal zeroed; maskUnsup = I tiled 2x2, diagonal zeroed
    g = torch.Generator().manual_seed(13)
    bsz = 6
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    emb = TF.normalize(torch.randn(2 * bsz, 5, generator=g, dtype=F64), dim=1)
    tau = 0.1
    mask_sup = (torch.eq(labels[:, None], labels[None, :]).to(F64) - torch.eye(bsz, dtype=F64)).repeat(2, 2)
    mask_sup[torch.eye(2 * bsz) == 1] = 0
    mask_unsup = torch.eye(bsz, dtype=F64).repeat(2, 2)
    mask_unsup[torch.eye(2 * bsz) == 1] = 0
    logits = emb @ emb.T / tau
    logits_mask = 1 - torch.eye(2 * bsz, dtype=F64)
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True))
    official = -((mask_sup + mask_unsup) * log_prob).sum(1) / (mask_sup + mask_unsup).sum(1)
    got = interpolated_supcon_loss(emb, labels.repeat(2), labels.repeat(2), 1.0, temperature=tau, reduction="none")
    assert_close64(got, official, rtol=1e-10, atol=1e-12)
    assert_close64(interpolated_supcon_loss(emb, labels.repeat(2), temperature=tau, reduction="none"), official)


def test_interpolated_supcon_gradcheck_edge_cases_and_errors():
    e = make_logits(6, 3, seed=14, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    mix = torch.tensor([1, 2, 0, 3, 0, 1])
    assert torch.autograd.gradcheck(lambda e_: interpolated_supcon_loss(e_, labels, mix, 0.7, temperature=0.5), (e,))
    # an anchor without positives contributes 0, not NaN; fewer than 2 rows give an attached zero
    out = interpolated_supcon_loss(e, torch.tensor([0, 1, 2, 3, 4, 5]), reduction="none")
    assert torch.equal(out.detach(), torch.zeros(6, dtype=F64))
    one = interpolated_supcon_loss(e[:1], labels[:1])
    assert one.item() == 0.0 and one.requires_grad
    x32 = (1e4 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    loss = interpolated_supcon_loss(x32, torch.tensor([0, 1] * 4), torch.tensor([1, 0] * 4), 0.6,
                                    temperature=0.01, normalize=False)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x32.grad).all()
    with pytest.raises(TypeError, match=r"labels must be int64 labels of shape \(6,\); got int32\. Use labels\.long\(\)"):
        interpolated_supcon_loss(e, labels.int())
    with pytest.raises(ValueError, match=r"mix_labels must have shape \(6,\)"):
        interpolated_supcon_loss(e, labels, labels[:3])
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\]"):
        interpolated_supcon_loss(e, labels, mix, 1.5)
    with pytest.raises(ValueError, match=r"temperature must lie in \(0, inf\)"):
        interpolated_supcon_loss(e, labels, temperature=0.0)


def test_mixup_batch():
    x = torch.arange(12, dtype=F64).reshape(6, 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    a = mixup_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(3))
    b = mixup_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(3))
    assert a.lam == b.lam and torch.equal(a.index, b.index)  # reproducible with a generator
    assert 0.5 <= a.lam <= 1.0
    assert_close64(a.x, a.lam * x + (1 - a.lam) * x[a.index])
    assert torch.equal(a.y_b, y[a.index]) and torch.equal(a.y_a, y)
    t = a.soft_targets(3)
    assert_close64(t.sum(1), torch.ones(6, dtype=F64))
    logits = make_logits(6, 3, seed=15)
    assert_close64(LF.cross_entropy(logits, t),
                   a.lam * TF.cross_entropy(logits, a.y_a) + (1 - a.lam) * TF.cross_entropy(logits, a.y_b))
    assert mixup_batch(x, y, alpha=0.0).lam == 1.0
    lams = [mixup_batch(x, y, alpha=0.2, generator=torch.Generator().manual_seed(s)).lam for s in range(200)]
    assert np.mean(lams) > 0.85  # Beta(0.2, 0.2) folded to [0.5, 1] piles up near 1
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, inf\)"):
        mixup_batch(x, y, alpha=-1.0)


# --- k-NN noise detector ---------------------------------------------------------------------------------


def _clusters(noise_rate=0.2, per_class=60, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.randn(c, 8, generator=g)
    clean = torch.arange(c).repeat_interleave(per_class)
    emb = centres[clean] + torch.randn(len(clean), 8, generator=g)
    noisy = clean.clone()
    flip = torch.rand(len(clean), generator=g) < noise_rate
    noisy[flip] = (clean[flip] + torch.randint(1, c, (int(flip.sum()),), generator=g)) % c
    return emb, clean, noisy, flip


@pytest.mark.parametrize("corrected", [True, False])
@pytest.mark.parametrize("balance", ["median", None])
def test_knn_detector_finds_flipped_labels(corrected, balance):
    emb, clean_labels, noisy, flip = _clusters()
    det = knn_label_agreement(emb, noisy, k=15, corrected=corrected, balance=balance)
    predicted_noisy = ~det.clean
    tp = (predicted_noisy & flip).sum().item()
    precision = tp / max(predicted_noisy.sum().item(), 1)
    recall = tp / flip.sum().item()
    assert precision > 0.9 and recall > 0.9, (precision, recall)
    assert torch.equal(det.knn_labels, clean_labels)  # the neighbours' vote recovers the true labels here
    if balance is None:
        assert torch.equal(det.clean, det.agreement)
    assert_close64(det.knn_probs.sum(1).double(), torch.ones(len(noisy), dtype=F64), rtol=1e-6, atol=1e-6)


def test_knn_detector_by_hand():
    # two tight groups of directions: rows 0-2 labelled 0, 0, 1 and rows 3-5 labelled 1, 1, 1
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2], [0.0, 1.0], [0.1, 1.0], [0.2, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    det = knn_label_agreement(emb, labels, k=2, corrected=False, balance=None)
    # sample 2's neighbours are 1 and 0 (labels 0, 0): q = (1, 0), it disagrees; discrepancy −log 0.01
    # sample 0's neighbours are 1 and 2 (labels 0, 1): a tie, broken towards the lower class, as torch.max
    assert det.agreement.tolist() == [True, True, False, True, True, True]
    assert det.discrepancy[2].item() == pytest.approx(-math.log(0.01))
    assert det.knn_probs[0].tolist() == [0.5, 0.5]
    assert det.discrepancy[0].item() == pytest.approx(-math.log(0.5))
    assert det.discrepancy[3].item() == pytest.approx(-math.log(0.99))  # q_y = 1, clipped to 0.99
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, N\) = \[1, 6\); got 6"):
        knn_label_agreement(emb, labels, k=6)
    with pytest.raises(TypeError, match=r"labels must be int64 of shape \(6,\)"):
        knn_label_agreement(emb, labels.int(), k=2)
    with pytest.raises(ValueError, match=r"balance must be one of"):
        knn_label_agreement(emb, labels, k=2, balance="mean")


def test_knn_detector_balance_selects_the_median_count_per_class():
    emb, _, noisy, _ = _clusters(noise_rate=0.3, seed=1)
    det = knn_label_agreement(emb, noisy, k=15, balance="median")
    per_class = torch.stack([det.agreement[noisy == j].sum() for j in range(4)])
    n_star = int(per_class.median())
    for j in range(4):
        members = noisy == j
        assert det.clean[members].sum().item() == min(n_star, int(members.sum()))
        # the chosen ones have the smallest discrepancy in their class
        chosen, rest = det.discrepancy[members & det.clean], det.discrepancy[members & ~det.clean]
        if len(rest):
            assert chosen.max() <= rest.min()
