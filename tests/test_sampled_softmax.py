"""Sampled softmax and NCE with TensorFlow's semantics, the full-softmax path and the layer."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from lossbook.sampled import (
    AllSampler,
    CandidateSample,
    LogUniformSampler,
    SampledSoftmaxLayer,
    UniformSampler,
    UnigramSampler,
    compute_accidental_hits,
    full_softmax_loss,
    nce_loss,
    sampled_softmax_loss,
)

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _problem(D=11, d=4, n=6, T=1, *, seed=0, device="cpu", dtype=F64):
    g = _gen(seed)
    W = torch.randn(D, d, generator=g, dtype=F64)
    b = 0.5 * torch.randn(D, generator=g, dtype=F64)
    h = torch.randn(n, d, generator=g, dtype=F64)
    if T == 1:
        y = torch.randint(0, D, (n,), generator=g)
    else:  # T distinct labels per row
        y = torch.stack([torch.randperm(D, generator=g)[:T] for _ in range(n)])
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (W, b, h)] + [y.to(device)]


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def _close(a, b, tol=1e-12):
    torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), rtol=tol, atol=tol)


# --- exactness: every class sampled --------------------------------------------------------------


@pytest.mark.parametrize("subtract_log_q", [False, True])
@pytest.mark.parametrize("T", [1, 3])
def test_every_class_sampled_equals_full_softmax(device, T, subtract_log_q):
    W, b, h, y = _problem(T=T, device=device)
    D = W.shape[0]
    sample = AllSampler(D, device=device).sample(D, true_classes=y if T > 1 else y[:, None])
    got = sampled_softmax_loss(W, b, y, h, D, sampled_values=sample, subtract_log_q=subtract_log_q,
                               remove_accidental_hits=True, reduction="none")
    z = F.linear(h, W, b)
    if T == 1:
        want = F.cross_entropy(z, y, reduction="none")
    else:
        want = F.cross_entropy(z, torch.zeros_like(z).scatter_(1, y, 1.0 / T), reduction="none")
    _close(got, want)
    for g_got, g_want in zip(_grads(got.sum(), W, b, h), _grads(want.sum(), W, b, h)):
        _close(g_got, g_want)


def test_every_class_sampled_without_hit_removal_double_counts_the_target():
    W, b, h, y = _problem()
    D = W.shape[0]
    got = sampled_softmax_loss(W, b, y, h, D, sampler="all", remove_accidental_hits=False, reduction="none")
    z = F.linear(h, W, b)
    want = torch.logaddexp(torch.logsumexp(z, 1), z.gather(1, y[:, None]).squeeze(1)) - z.gather(1, y[:, None]).squeeze(1)
    _close(got, want)


def test_unique_uniform_sampling_of_every_class_equals_full_softmax():
    # the unique-sampling correction is the same constant for every class under a uniform sampler
    W, b, h, y = _problem(D=9)
    got = sampled_softmax_loss(W, b, y, h, 9, sampler="uniform", unique=True, generator=_gen(3))
    _close(got, F.cross_entropy(F.linear(h, W, b), y))
    for g_got, g_want in zip(_grads(got, W, b, h), _grads(F.cross_entropy(F.linear(h, W, b), y), W, b, h)):
        _close(g_got, g_want)


# --- TensorFlow's semantics, by hand --------------------------------------------------------------------


def _by_hand(W, b, y, h, cand, q_true, q_samp, *, hits: bool, log_q: bool, nce: bool):
    """A loop over rows written from ``_compute_sampled_logits`` + the two TF losses."""
    out = []
    for i in range(h.shape[0]):
        labels = y[i].tolist() if y.dim() == 2 else [int(y[i])]
        t = len(labels)
        logits, targets = [], []
        for j, c in enumerate(labels):
            logits.append(h[i] @ W[c] + b[c] - (math.log(q_true[i, j]) if log_q else 0.0))
            targets.append(1.0 / t)
        for j, c in enumerate(cand.tolist()):
            if hits and c in labels:
                logits.append(None)
            else:
                logits.append(h[i] @ W[c] + b[c] - (math.log(q_samp[j]) if log_q else 0.0))
            targets.append(0.0)
        if nce:
            row = 0.0
            for z, lab in zip(logits, targets):
                if z is not None:
                    row = row + F.binary_cross_entropy_with_logits(z, torch.tensor(lab, dtype=F64))
            out.append(row)
        else:
            zs = torch.stack([z for z in logits if z is not None])
            ts = torch.tensor([lab for z, lab in zip(logits, targets) if z is not None], dtype=F64)
            out.append(-(ts * torch.log_softmax(zs, 0)).sum())
    return torch.stack(out)


@pytest.mark.parametrize("nce", [False, True], ids=["softmax", "nce"])
@pytest.mark.parametrize("hits", [False, True])
@pytest.mark.parametrize("log_q", [False, True])
@pytest.mark.parametrize("T", [1, 2])
def test_matches_tensorflow_semantics_by_hand(T, log_q, hits, nce):
    W, b, h, y = _problem(D=12, T=T, seed=1)
    n = h.shape[0]
    yy = y if T > 1 else y[:, None]
    cand = torch.tensor([int(yy[0, 0]), 5, int(yy[3, -1]), 11, 0])  # hits in rows 0 and 3 (at least)
    cand = torch.unique_consecutive(cand)
    q_true = torch.rand(n, T, generator=_gen(2), dtype=F64) * 0.9 + 0.05
    q_samp = torch.rand(cand.numel(), generator=_gen(3), dtype=F64) * 0.9 + 0.05
    fn = nce_loss if nce else sampled_softmax_loss
    got = fn(W, b, y, h, cand.numel(), sampled_values=(cand, q_true, q_samp), remove_accidental_hits=hits,
             subtract_log_q=log_q, reduction="none")
    want = _by_hand(W, b, y, h, cand, q_true, q_samp, hits=hits, log_q=log_q, nce=nce)
    _close(got, want)
    for g_got, g_want in zip(_grads(got.sum(), W, b, h), _grads(want.sum(), W, b, h)):
        _close(g_got, g_want)
    assert torch.isfinite(got).all()


def test_reductions_and_defaults():
    W, b, h, y = _problem(seed=4)
    kw = {"sampled_values": (torch.tensor([1, 2, 3]), torch.full((6, 1), 0.2, dtype=F64),
                             torch.full((3,), 0.3, dtype=F64))}
    none = sampled_softmax_loss(W, b, y, h, 3, reduction="none", **kw)
    assert none.shape == (6,)
    _close(sampled_softmax_loss(W, b, y, h, 3, **kw), none.mean())
    _close(sampled_softmax_loss(W, b, y, h, 3, reduction="sum", **kw), none.sum())
    # empty batch: an attached zero
    e = sampled_softmax_loss(W, b, y[:0], h[:0], 3, generator=_gen(0))
    assert e.item() == 0.0 and e.requires_grad


# --- accidental hits --------------------------------------------------------------------------------------


def test_accidental_hits_are_removed():
    W, b, h, y = _problem(D=6, n=5, T=2, seed=5)
    out = sampled_softmax_loss(W, b, y, h, 6, sampler="all", return_aux=True)
    hits = compute_accidental_hits(y, torch.arange(6))
    assert torch.equal(out.accidental_hits, hits) and int(hits.sum()) == 2 * 5  # each true class is hit once
    assert (out.logits[:, 2:][hits] == torch.finfo(F64).min).all()  # TensorFlow's −FLOAT_MAX
    assert torch.isfinite(out.logits[:, 2:][~hits]).all()
    torch.testing.assert_close(out.labels.sum(1), torch.ones(5, dtype=F64))
    # a hit candidate gets no gradient from its row: only the true column pulls on W[y]
    h1 = h[:1].detach().requires_grad_()
    loss = sampled_softmax_loss(W, b, y[:1], h1, 1, sampled_values=(y[0, :1], torch.ones(1, 2, dtype=F64),
                                                                   torch.ones(1, dtype=F64)))
    (gb,) = torch.autograd.grad(loss, b)
    # only the two true columns remain, with targets 1/2: the gradient is softmax − 1/2 on them
    p = torch.softmax((h1 @ W[y[0]].T + b[y[0]]).detach(), 1)[0]
    torch.testing.assert_close(gb[y[0]], p - 0.5)


def test_nce_hits_contribute_zero():
    W, b, h, y = _problem(D=6, n=4, seed=6)
    cand = torch.arange(6)
    kw = {"sampled_values": (cand, torch.full((4, 1), 0.5, dtype=F64), torch.full((6,), 0.5, dtype=F64))}
    with_hits = nce_loss(W, b, y, h, 6, remove_accidental_hits=False, reduction="none", **kw)
    without = nce_loss(W, b, y, h, 6, remove_accidental_hits=True, reduction="none", **kw)
    z = (h * W[y]).sum(1) + b[y] - math.log(0.5)
    _close(with_hits - without, F.softplus(z))  # the removed term: label 0 at the true class's own column


# --- only the sampled rows are touched ----------------------------------------------------------------------


def test_sparse_gradient_touches_only_gathered_rows(device):
    W, b, h, y = _problem(D=50, d=3, n=4, seed=7, device=device)
    kw = {"sampler": "log_uniform", "unique": True, "reduction": "mean"}
    loss_s = sampled_softmax_loss(W, b, y, h, 5, generator=_gen(8), sparse_grad=True, return_aux=True, **kw)
    gW, gb, gh = torch.autograd.grad(loss_s.loss, (W, b, h))
    assert gW.is_sparse and gb.is_sparse
    touched = set(torch.cat([y, loss_s.sample.sampled_candidates]).tolist())
    assert set(gW.coalesce().indices()[0].tolist()) <= touched
    loss_d = sampled_softmax_loss(W, b, y, h, 5, generator=_gen(8), sparse_grad=False, **kw)
    dW, db, dh = torch.autograd.grad(loss_d, (W, b, h))
    _close(loss_s.loss, loss_d)
    _close(gW.to_dense(), dW)
    _close(gb.to_dense(), db)
    _close(gh, dh)


def test_gradcheck_float64():
    W, b, h, y = _problem(D=8, d=3, n=4, T=2, seed=9)
    sv = (torch.tensor([0, 3, 5, 7]), torch.rand(4, 2, generator=_gen(1), dtype=F64) + 0.1,
          torch.rand(4, generator=_gen(2), dtype=F64) + 0.1)
    for fn in (sampled_softmax_loss, nce_loss):
        assert torch.autograd.gradcheck(
            lambda W, b, h, fn=fn: fn(W, b, y, h, 4, sampled_values=sv, remove_accidental_hits=True), (W, b, h))
    assert torch.autograd.gradcheck(lambda W, b, h: full_softmax_loss(W, b, y, h, chunk_size=3), (W, b, h))


# --- bias: the corrected gradient approaches the full one as S grows ------------------------------------------


def test_log_q_corrected_gradient_approaches_full_gradient():
    """Monte-Carlo mean of ∂L/∂h over R draws vs the full-softmax gradient, on Zipfian logits with a
    log-uniform proposal. Measured (seed 0, R = 60): relative error ≈ 0.34, 0.13, 0.03, 0.008 for
    S = 10, 40, 160, 640 with the correction, ≈ 0.43, 0.26, 0.15, 0.05 without."""
    g = _gen(0)
    D, d, m = 2000, 16, 8
    W = torch.randn(D, d, generator=g, dtype=F64) * 0.5
    b = -torch.log(torch.arange(1, D + 1, dtype=F64))  # Zipfian prior: classes sorted by frequency
    h = torch.randn(m, d, generator=g, dtype=F64).requires_grad_()
    y = torch.randint(0, 50, (m,), generator=g)
    (g_full,) = torch.autograd.grad(F.cross_entropy(F.linear(h, W, b), y, reduction="sum"), h)

    def error(s, correct, reps=60):
        acc = torch.zeros_like(h)
        for _ in range(reps):
            loss = sampled_softmax_loss(W, b, y, h, s, generator=g, reduction="sum", subtract_log_q=correct)
            acc += torch.autograd.grad(loss, h)[0]
        return float((acc / reps - g_full).norm() / g_full.norm())

    sizes = [10, 40, 160, 640]
    corrected = [error(s, True) for s in sizes]
    for a, b_ in itertools.pairwise(corrected):
        assert b_ <= 1.1 * a + 0.005, corrected  # monotone within tolerance
    assert corrected[-1] < corrected[0] / 10
    assert corrected[-1] < 0.03
    assert error(640, False) > 2 * corrected[-1]  # without the correction the bias stays


# --- full softmax -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 4, 11, 100])
def test_full_softmax_loss_equals_cross_entropy(chunk):
    W, b, h, y = _problem(seed=10)
    _close(full_softmax_loss(W, b, y, h, chunk_size=chunk), F.cross_entropy(F.linear(h, W, b), y))
    W2, b2, h2, y2 = _problem(T=2, seed=11)
    z = F.linear(h2, W2, b2)
    _close(full_softmax_loss(W2, b2, y2, h2, chunk_size=chunk, reduction="none"),
           F.cross_entropy(z, torch.zeros_like(z).scatter_(1, y2, 0.5), reduction="none"))
    _close(full_softmax_loss(W, None, y, h, chunk_size=chunk), F.cross_entropy(h @ W.T, y))


# --- the layer -----------------------------------------------------------------------------------------------------


def test_layer_trains_on_sampled_rows_and_evaluates_full(device):
    layer = SampledSoftmaxLayer(4, 40, 6, sampler="uniform", generator=_gen(12), dtype=F64, device=device)
    h = torch.randn(5, 4, generator=_gen(13), dtype=F64).to(device)
    y = torch.tensor([0, 3, 3, 17, 39], device=device)
    out = layer(h, y, return_aux=True)
    ref = sampled_softmax_loss(layer.weight, layer.bias, y, h, 6, sampler="uniform", generator=_gen(12))
    _close(out.loss, ref)
    before = layer.weight.detach().clone(), layer.bias.detach().clone()
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    out.loss.backward()
    assert layer.weight.grad.is_sparse
    opt.step()
    touched = torch.zeros(40, dtype=torch.bool, device=device)
    touched[torch.cat([y, out.sample.sampled_candidates])] = True
    assert torch.equal(layer.weight.detach()[~touched], before[0][~touched])
    assert torch.equal(layer.bias.detach()[~touched], before[1][~touched])
    assert not torch.equal(layer.weight.detach()[y], before[0][y])
    layer.eval()
    _close(layer(h, y), F.cross_entropy(layer.scores(h), y))
    assert "num_sampled=6" in repr(layer)


def test_layer_nce_and_custom_sampler():
    counts = torch.arange(1, 21, dtype=F64).flip(0)
    layer = SampledSoftmaxLayer(3, 20, 4, loss="nce", sampler=UnigramSampler(counts), generator=_gen(14), dtype=F64)
    assert layer.remove_accidental_hits is False
    h = torch.randn(4, 3, generator=_gen(15), dtype=F64)
    y = torch.tensor([0, 1, 2, 19])
    ref = nce_loss(layer.weight, layer.bias, y, h, 4, sampler=layer.sampler, generator=_gen(14))
    _close(layer(h, y), ref)


# --- a sampler's own draw, passed as sampled_values -----------------------------------------------------


@pytest.mark.parametrize("fn", [sampled_softmax_loss, nce_loss], ids=["sampled_softmax", "nce"])
@pytest.mark.parametrize("as_tuple", [False, True], ids=["CandidateSample", "tuple"])
def test_sampler_draw_for_1d_labels_is_accepted(fn, as_tuple):
    """``sampler.sample(S, true_classes=y)`` with 1-D labels y (N,) gives true_expected_count (N,): the
    losses take it with those labels, as num_true = 1, and give what the same draw gives for (N, 1)."""
    W, b, h, y = _problem(D=30, d=4, n=6)
    sampler = LogUniformSampler(30)
    sample = sampler.sample(5, true_classes=y, generator=_gen(3))
    assert sample.true_expected_count.shape == (6,)
    values = tuple(sample) if as_tuple else sample
    got = fn(W, b, y, h, 5, sampled_values=values, reduction="none", return_aux=True)
    # the same draw, with 2-D labels and counts
    sample_2d = CandidateSample(sample.sampled_candidates, sample.true_expected_count.unsqueeze(1),
                                sample.sampled_expected_count, sample.num_tries, sample.unique)
    want = fn(W, b, y.unsqueeze(1), h, 5, sampled_values=sample_2d, reduction="none")
    _close(got.loss, want)
    # and what the loss draws itself with the same generator
    drawn = fn(W, b, y, h, 5, sampler=LogUniformSampler(30), generator=_gen(3), reduction="none")
    _close(got.loss, drawn)
    assert got.sample.true_expected_count.shape == (6, 1)
    assert sample.true_expected_count.shape == (6,)  # the caller's sample is not modified
    # 2-D labels (N, 1) with the 1-D counts of the same draw are accepted too
    _close(fn(W, b, y.unsqueeze(1), h, 5, sampled_values=values, reduction="none"), want)


# --- errors -------------------------------------------------------------------------------------------------------


def test_errors():
    W, b, h, y = _problem(D=10, d=4, n=6)
    with pytest.raises(ValueError, match=r"sampled_softmax_loss: num_sampled=11 distinct classes cannot be drawn "
                                         r"from 10 classes without replacement"):
        sampled_softmax_loss(W, b, y, h, 11)
    sampled_softmax_loss(W, b, y, h, 11, unique=False)  # with replacement it is fine
    bad = y.clone()
    bad[2] = 10
    with pytest.raises(ValueError, match=r"labels hold class index 10, outside \[0, 10\)"):
        sampled_softmax_loss(W, b, bad, h, 3)
    with pytest.raises(ValueError, match=r"nce_loss: inputs must be a floating tensor of shape \(N, 4\)"):
        nce_loss(W, b, y, h[:, :3], 3)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\) or \(6, num_true\).*got \(5,\)"):
        sampled_softmax_loss(W, b, y[:5], h, 3)
    with pytest.raises(TypeError, match=r"labels must be int64 class indices.*got int32\. Use labels\.long\(\)"):
        sampled_softmax_loss(W, b, y.int(), h, 3)
    with pytest.raises(ValueError, match=r"bias must have shape \(10,\)"):
        sampled_softmax_loss(W, b[:9], y, h, 3)
    with pytest.raises(ValueError, match=r"must share dtype and device"):
        sampled_softmax_loss(W, b, y, h.float(), 3)
    with pytest.raises(ValueError, match=r"num_true=2 but labels has 1 columns"):
        sampled_softmax_loss(W, b, y, h, 3, num_true=2)
    with pytest.raises(ValueError, match=r"num_classes=12 but weight has 10 rows"):
        sampled_softmax_loss(W, b, y, h, 3, num_classes=12)
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        sampled_softmax_loss(W, b, y, h, 3, reduction="avg")
    with pytest.raises(ValueError, match=r"sampler must be one of"):
        sampled_softmax_loss(W, b, y, h, 3, sampler="zipf")
    with pytest.raises(ValueError, match=r"draws from 5 classes but there are 10"):
        sampled_softmax_loss(W, b, y, h, 3, sampler=UniformSampler(5))
    with pytest.raises(ValueError, match=r"num_sampled must be an int ≥ 1; got 0"):
        sampled_softmax_loss(W, b, y, h, 0)
    with pytest.raises(ValueError, match=r"true_expected_count must have the labels' shape \(6,\) or \(6, 1\), "
                                         r"one expected count per true label; got \(5,\)\. Draw the sample with "
                                         r"sampler\.sample\(num_sampled, true_classes=labels\)"):
        sampled_softmax_loss(W, b, y, h, 2, sampled_values=CandidateSample(
            torch.tensor([1, 2]), torch.ones(5, dtype=F64), torch.ones(2, dtype=F64), 2, True))
    with pytest.raises(ValueError, match=r"true_expected_count must have the labels' shape \(6,\) or \(6, 1\).*None"):
        sampled_softmax_loss(W, b, y, h, 2, sampled_values=CandidateSample(
            torch.tensor([1, 2]), None, torch.ones(2, dtype=F64), 2, True))
    y2 = torch.stack([y, (y + 1) % 10], dim=1)
    with pytest.raises(ValueError, match=r"true_expected_count must have the labels' shape \(6, 2\), .*got \(6,\)"):
        nce_loss(W, b, y2, h, 2, sampled_values=CandidateSample(
            torch.tensor([1, 2]), torch.ones(6, dtype=F64), torch.ones(2, dtype=F64), 2, True))
    with pytest.raises(ValueError, match=r"num_sampled=3 but sampled_values holds 2 candidates"):
        sampled_softmax_loss(W, b, y, h, 3, sampled_values=(torch.tensor([1, 2]), torch.ones(6, 1), torch.ones(2)))
    with pytest.raises(ValueError, match=r"SampledSoftmaxLayer: num_sampled=11 > 10 classes"):
        SampledSoftmaxLayer(4, 10, 11)
    with pytest.raises(ValueError, match=r"loss must be 'sampled_softmax' or 'nce'"):
        SampledSoftmaxLayer(4, 10, 3, loss="softmax")
    with pytest.raises(ValueError, match=r"chunk_size must be an int ≥ 1"):
        full_softmax_loss(W, b, y, h, chunk_size=0)
