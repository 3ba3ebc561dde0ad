"""lossbook.pairs: distances, miners, pair/speaker/proxy losses and I-Con, against textbook loops in
float64, against pytorch-metric-learning (values and gradients), gradcheck, special cases, extreme
values and errors; and the retrieval metrics against a brute-force reference and PML's calculator."""

from __future__ import annotations

import math
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossbook
from lossbook import metrics as M
from lossbook import pairs as P

F64 = torch.float64


def batch(n_classes=4, per_class=3, d=5, seed=0, shuffle=True):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    if shuffle:
        y = y[torch.randperm(len(y), generator=g)]
    return torch.randn(len(y), d, generator=g, dtype=F64), y


def cos_matrix(e):
    e = e / e.norm(dim=1, keepdim=True)
    return e @ e.T


def dist_matrix(e):
    e = e / e.norm(dim=1, keepdim=True)
    return torch.cdist(e, e)


# --- textbook references (loops over pairs and triplets) --------------------------------------------------


def ref_contrastive(e, y, mp=0.0, mn=1.0):
    d, out = dist_matrix(e), []
    for i in range(len(y)):
        pos = [max(float(d[i, j]) - mp, 0) for j in range(len(y)) if j != i and y[j] == y[i]]
        neg = [max(mn - float(d[i, j]), 0) for j in range(len(y)) if y[j] != y[i]]
        out.append((np.mean(pos) if pos else 0.0) + (np.mean(neg) if neg else 0.0))
    return torch.tensor(out, dtype=F64)


def ref_triplet(e, y, m=0.1):
    d, out = dist_matrix(e), []
    for a in range(len(y)):
        t = [max(float(d[a, p] - d[a, n]) + m, 0) for p in range(len(y)) for n in range(len(y))
             if p != a and y[p] == y[a] and y[n] != y[a]]
        out.append(np.mean(t) if t else 0.0)
    return torch.tensor(out, dtype=F64)


def ref_ms(e, y, alpha=2.0, beta=40.0, lam=0.5, eps=0.1):
    """The official code's loop (msight-tech/research-ms-loss), per anchor, both terms always added."""
    s, out = cos_matrix(e), []
    for i in range(len(y)):
        pos = [float(s[i, j]) for j in range(len(y)) if j != i and y[j] == y[i]]
        neg = [float(s[i, j]) for j in range(len(y)) if y[j] != y[i]]
        if eps is not None and pos and neg:
            neg, pos = [v for v in neg if v + eps > min(pos)], [v for v in pos if v - eps < max(neg)]
        elif eps is not None:
            pos, neg = [], []
        out.append(math.log(1 + sum(math.exp(-alpha * (v - lam)) for v in pos)) / alpha
                   + math.log(1 + sum(math.exp(beta * (v - lam)) for v in neg)) / beta)
    return torch.tensor(out, dtype=F64)


def ref_circle(e, y, m=0.4, gamma=80.0):
    s, out = cos_matrix(e), []
    for i in range(len(y)):
        sp = [float(s[i, j]) for j in range(len(y)) if j != i and y[j] == y[i]]
        sn = [float(s[i, j]) for j in range(len(y)) if y[j] != y[i]]
        a = sum(math.exp(gamma * max(v + m, 0) * (v - m)) for v in sn)
        b = sum(math.exp(-gamma * max(1 + m - v, 0) * (v - 1 + m)) for v in sp)
        out.append(math.log1p(a * b) if sp and sn else 0.0)
    return torch.tensor(out, dtype=F64)


def ref_supcon(e, y, tau=0.1):
    s, out = cos_matrix(e) / tau, []
    for i in range(len(y)):
        den = sum(math.exp(float(s[i, j])) for j in range(len(y)) if j != i)
        terms = [-(float(s[i, p]) - math.log(den)) for p in range(len(y)) if p != i and y[p] == y[i]]
        out.append(np.mean(terms) if terms else 0.0)
    return torch.tensor(out, dtype=F64)


def ref_ge2e(grouped, w=10.0, b=-5.0, variant="softmax"):
    n, m, _ = grouped.shape
    out = []
    for j in range(n):
        for i in range(m):
            sims = []
            for k in range(n):
                if k == j:
                    c = torch.stack([grouped[j, t] for t in range(m) if t != i]).mean(0)
                else:
                    c = grouped[k].mean(0)
                sims.append(w * float(F.cosine_similarity(grouped[j, i], c, dim=0)) + b)
            if variant == "softmax":
                out.append(-sims[j] + math.log(sum(math.exp(v) for v in sims)))
            else:
                sig = [1 / (1 + math.exp(-v)) for v in sims]
                out.append(1 - sig[j] + max(sig[k] for k in range(n) if k != j))
    return torch.tensor(out, dtype=F64)


REFERENCES = {
    "contrastive": (P.contrastive_loss, ref_contrastive),
    "triplet": (P.triplet_loss, ref_triplet),
    "multi_similarity": (P.multi_similarity_loss, ref_ms),
    "circle": (P.circle_loss, ref_circle),
    "supcon": (P.supcon_loss, ref_supcon),
}


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_losses_match_the_textbook_loops(name, seed):
    fn, ref = REFERENCES[name]
    e, y = batch(seed=seed)
    y[0] = 9  # an anchor with no positive
    got = fn(e, y, reduction="none")
    assert got.shape == (len(y),) and got.dtype == F64
    torch.testing.assert_close(got, ref(e, y), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", REFERENCES)
def test_reductions_mean_counts_the_anchors_with_pairs(name):
    fn, _ = REFERENCES[name]
    e, y = batch(seed=3)
    y[0] = 9
    none = fn(e, y, reduction="none")
    counted = (fn(e, y, reduction="none") != 0) | (y != 9)
    torch.testing.assert_close(fn(e, y, reduction="sum"), none.sum())
    if name in ("supcon", "circle"):  # these need a positive: anchor 0 does not count
        torch.testing.assert_close(fn(e, y, reduction="mean"), none.sum() / (len(y) - 1))
    else:
        torch.testing.assert_close(fn(e, y, reduction="mean"), none.sum() / int(counted.sum()))


@pytest.mark.parametrize("variant", ["softmax", "contrast"])
def test_ge2e_matches_the_textbook_loop(variant):
    e, y = batch(n_classes=4, per_class=3, shuffle=False)
    grouped = e.reshape(4, 3, -1)
    torch.testing.assert_close(P.ge2e_loss(e, y, variant=variant, reduction="none"), ref_ge2e(grouped, variant=variant))


def test_speaker_losses_group_utterances_by_label_whatever_the_order():
    e, y = batch(n_classes=4, per_class=3, shuffle=False)
    perm = torch.tensor([3, 0, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11])  # interleaved speakers, each in its own order
    for fn in (P.ge2e_loss, P.angular_prototypical_loss, P.prototypical_loss):
        torch.testing.assert_close(fn(e[perm], y[perm]), fn(e, y))


def test_angular_prototypical_and_prototypical_textbook():
    e, y = batch(n_classes=3, per_class=4, shuffle=False)
    g = e.reshape(3, 4, -1)
    q, c = g[:, 0], g[:, 1:].mean(1)
    logits = 10.0 * F.cosine_similarity(q[:, None], c[None], dim=2) - 5.0
    torch.testing.assert_close(P.angular_prototypical_loss(e, y, reduction="none"),
                               F.cross_entropy(logits, torch.arange(3), reduction="none"))
    sq = torch.stack([torch.stack([(q[j] - c[k]).square().sum() for k in range(3)]) for j in range(3)])
    torch.testing.assert_close(P.prototypical_loss(e, y), F.cross_entropy(-sq, torch.arange(3)))


def test_te2e_is_its_tuple_loss_with_the_drawn_negatives():
    e, y = batch(n_classes=4, per_class=3, shuffle=False)
    g = e.reshape(4, 3, -1)
    got = P.te2e_loss(e, y, generator=torch.Generator().manual_seed(5), reduction="none")
    shift = torch.randint(1, 4, (4, 3), generator=torch.Generator().manual_seed(5))
    want = []
    for j in range(4):
        for i in range(3):
            own = torch.stack([g[j, t] for t in range(3) if t != i]).mean(0)
            other = g[(j + int(shift[j, i])) % 4].mean(0)
            sp = 10 * F.cosine_similarity(g[j, i], own, dim=0) - 5
            sn = 10 * F.cosine_similarity(g[j, i], other, dim=0) - 5
            want.append(0.5 * (1 - torch.sigmoid(sp) + torch.sigmoid(sn)))
    torch.testing.assert_close(got, torch.stack(want))


def test_proxy_losses_textbook():
    e, y = batch(seed=4)
    prox = torch.randn(4, 5, dtype=F64, generator=torch.Generator().manual_seed(9))
    cos = F.normalize(e, dim=1) @ F.normalize(prox, dim=1).T
    pos_terms = [math.log1p(sum(math.exp(-32 * (float(cos[i, c]) - 0.1)) for i in range(len(y)) if y[i] == c))
                 for c in range(4)]
    neg_terms = [math.log1p(sum(math.exp(32 * (float(cos[i, c]) + 0.1)) for i in range(len(y)) if y[i] != c))
                 for c in range(4)]
    want = sum(pos_terms) / 4 + sum(neg_terms) / 4
    torch.testing.assert_close(P.proxy_anchor_loss(e, y, prox), torch.tensor(want, dtype=F64))
    assert P.proxy_anchor_loss(e, y, prox, reduction="none").shape == (4,)
    d = 9 * (F.normalize(e, dim=1)[:, None] - F.normalize(prox, dim=1)[None]).square().sum(2)
    nca = [float(d[i, y[i]]) + math.log(sum(math.exp(-float(d[i, z])) for z in range(4) if z != y[i]))
           for i in range(len(y))]
    torch.testing.assert_close(P.proxy_nca_loss(e, y, prox, reduction="none"), torch.tensor(nca, dtype=F64))
    torch.testing.assert_close(P.proxy_nca_loss(e, y, prox, exclude_positive=False), F.cross_entropy(-d, y))


def test_mean_field_matches_the_official_form():
    e, y = batch(seed=5)
    w = torch.randn(4, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    dist = 1 - F.normalize(e, dim=1) @ F.normalize(w, dim=1).T
    mask = F.one_hot(y, 4).to(F64)
    data = ((dist - 0.1).clamp_min(0) * mask + (0.8 - dist).clamp_min(0) * (1 - mask)).sum(1).mean()
    between = 1 - F.normalize(w, dim=1) @ F.normalize(w, dim=1).T
    reg = 0.5 * ((0.8 - between).clamp_min(0) * (1 - torch.eye(4, dtype=F64))).pow(3).sum(1).mean()
    got = P.mean_field_contrastive_loss(e, y, w, pos_margin=0.1, neg_margin=0.8, mf_reg=0.5, mf_power=3)
    torch.testing.assert_close(got, data + reg)


# --- special cases the papers state -------------------------------------------------------------------------


def test_circle_decision_boundary_is_a_circle():
    """One positive and one negative similarity: the loss's argument is zero exactly on
    s_n² + (s_p − 1)² = 2m² (the paper's circle, centre (0, 1), radius √2·m)."""
    m = 0.25
    for theta in np.linspace(0.05, 1.5, 7):
        sn, sp = math.sqrt(2) * m * math.sin(theta), 1 - math.sqrt(2) * m * math.cos(theta)
        an, ap = max(sn + m, 0), max(1 + m - sp, 0)
        assert abs(an * (sn - m) - ap * (sp - 1 + m)) < 1e-12


def test_batch_hard_triplet_is_the_worst_triplet_of_each_anchor():
    e, y = batch(seed=6)
    all_terms = P.triplet_loss(e, y, mining="all", margin=0.3, reduction="none")
    hard = P.triplet_loss(e, y, mining="batch_hard", margin=0.3, reduction="none")
    d = dist_matrix(e)
    for a in range(len(y)):
        worst = max(max(float(d[a, p] - d[a, n]) + 0.3, 0) for p in range(len(y)) for n in range(len(y))
                    if p != a and y[p] == y[a] and y[n] != y[a])
        assert abs(float(hard[a]) - worst) < 1e-12
    assert bool((hard >= all_terms - 1e-12).all())


def test_semi_hard_triplets_lie_inside_the_margin():
    e, y = batch(n_classes=3, per_class=5, seed=7)
    t = P.semi_hard_triplets(e, y, margin=0.2)
    d = dist_matrix(e)
    gap = d[t.anchor, t.negative] - d[t.anchor, t.positive]
    assert len(t.anchor) > 0 and bool(((gap > 0) & (gap <= 0.2)).all())


def test_ms_without_mining_and_with_all_pairs_agree():
    e, y = batch(seed=8)
    pos, neg = P.pair_masks(y)
    torch.testing.assert_close(P.multi_similarity_loss(e, y, epsilon=None),
                               P.multi_similarity_loss(e, y, pairs=(pos, neg)))
    torch.testing.assert_close(P.multi_similarity_loss(e, y, epsilon=None, reduction="none"),
                               ref_ms(e, y, eps=None))


def test_ge2e_loss_is_small_for_separated_speakers_and_large_when_swapped():
    centres = torch.eye(4, 6, dtype=F64) * 5
    y = torch.arange(4).repeat_interleave(3)
    e = centres[y] + 0.01 * torch.randn(12, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert float(P.ge2e_loss(e, y)) < float(P.ge2e_loss(e, y.roll(1)))
    assert float(P.ge2e_loss(e, y, w=50.0, b=0.0)) < 1e-6


# --- I-Con: exact reductions --------------------------------------------------------------------------------


def test_icon_cross_entropy_form_with_supervised_p_is_supcon():
    e, y = batch(seed=10)
    p = P.supervised_neighbours(y, dtype=F64)
    q = P.cosine_neighbour_logits(e, temperature=0.1)
    torch.testing.assert_close(P.icon_loss(p, q, divergence="cross_entropy", reduction="none"),
                               P.supcon_loss(e, y, temperature=0.1, reduction="none"), rtol=1e-12, atol=1e-12)
    counts = p.gt(0).sum(1).to(F64)
    torch.testing.assert_close(P.icon_loss(p, q, reduction="none"),
                               P.supcon_loss(e, y, temperature=0.1, reduction="none") - counts.log(),
                               rtol=1e-12, atol=1e-12)


def test_icon_with_one_hot_p_is_cross_entropy():
    logits = torch.randn(9, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 5, (9,), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(P.icon_loss(F.one_hot(y, 5).to(F64), logits, reduction="none"),
                               F.cross_entropy(logits, y, reduction="none"), rtol=1e-12, atol=1e-12)


def test_icon_with_gaussian_p_and_q_is_sne():
    g = torch.Generator().manual_seed(3)
    x, yl, sigma = torch.randn(8, 6, dtype=F64, generator=g), torch.randn(8, 2, dtype=F64, generator=g), 1.3
    cost = 0.0
    for i in range(8):
        pw = [math.exp(-float((x[i] - x[j]).square().sum()) / (2 * sigma**2)) if j != i else 0.0 for j in range(8)]
        qw = [math.exp(-float((yl[i] - yl[j]).square().sum())) if j != i else 0.0 for j in range(8)]
        pi, qi = np.array(pw) / sum(pw), np.array(qw) / sum(qw)
        cost += sum(pi[j] * math.log(pi[j] / qi[j]) for j in range(8) if j != i)
    got = P.icon_loss(P.gaussian_neighbours(x, sigma), P.gaussian_neighbour_logits(yl), reduction="sum")
    assert abs(float(got) - cost) < 1e-12


def test_icon_rejects_p_outside_q_and_unnormalised_rows():
    p = torch.full((3, 3), 1 / 3, dtype=F64)
    with pytest.raises(ValueError, match="excludes"):
        P.icon_loss(p, P.gaussian_neighbour_logits(torch.randn(3, 2, dtype=F64)))
    with pytest.raises(ValueError, match="probability distribution"):
        P.icon_loss(p * 2, torch.zeros(3, 3, dtype=F64))


# --- parity with pytorch-metric-learning ------------------------------------------------------------------


pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses as pml_losses  # noqa: E402
from pytorch_metric_learning import miners as pml_miners  # noqa: E402
from pytorch_metric_learning.reducers import DoNothingReducer, MeanReducer  # noqa: E402


def _per_anchor(losses, anchors, n):
    total = torch.zeros(n, dtype=losses.dtype).index_add(0, anchors, losses)
    return total / torch.bincount(anchors, minlength=n).clamp_min(1)


def _both(ours_fn, theirs_fn, seed=0):
    e, y = batch(n_classes=5, per_class=4, d=6, seed=seed)
    e1, e2 = e.clone().requires_grad_(), e.clone().requires_grad_()
    a, b = ours_fn(e1, y), theirs_fn(e2, y)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(e1.grad, e2.grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_parity_with_pml(seed):
    loss = pml_losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.9, reducer=DoNothingReducer())

    def theirs(e, y):
        out = loss(e, y)
        pos, neg = out["pos_loss"], out["neg_loss"]
        return _per_anchor(pos["losses"], pos["indices"][0], len(y)) + _per_anchor(neg["losses"], neg["indices"][0], len(y))

    _both(lambda e, y: P.contrastive_loss(e, y, pos_margin=0.1, neg_margin=0.9, reduction="none"), theirs, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_parity_with_pml(seed):
    loss = pml_losses.TripletMarginLoss(margin=0.2, reducer=DoNothingReducer())

    def theirs(e, y):
        out = loss(e, y)["loss"]
        return _per_anchor(out["losses"], out["indices"][0], len(y))

    _both(lambda e, y: P.triplet_loss(e, y, margin=0.2, reduction="none"), theirs, seed)


def test_batch_hard_and_semi_hard_miners_match_pml():
    e, y = batch(n_classes=5, per_class=4, d=6, seed=3)
    a, p, n = pml_miners.BatchHardMiner()(e, y)
    ours = P.batch_hard_triplets(e, y)
    assert torch.equal(ours.anchor, a) and torch.equal(ours.positive, p) and torch.equal(ours.negative, n)
    theirs = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")(e, y)
    ours = P.semi_hard_triplets(e, y, margin=0.2)
    assert set(zip(*(t.tolist() for t in theirs))) == set(zip(*(t.tolist() for t in ours)))


@pytest.mark.parametrize("mining", [False, True])
def test_multi_similarity_parity_with_pml_and_its_miner(mining):
    loss = pml_losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5, reducer=MeanReducer())
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.1)

    def theirs(e, y):
        return loss(e, y, miner(e, y)) if mining else loss(e, y)

    def ours(e, y):
        per = P.multi_similarity_loss(e, y, epsilon=0.1 if mining else None, reduction="none")
        return per.mean()  # PML's element reduction averages over every anchor

    for seed in range(3):
        _both(ours, theirs, seed)


def test_multi_similarity_miner_matches_pml():
    e, y = batch(n_classes=5, per_class=4, d=6, seed=4)
    a1, p, a2, n = pml_miners.MultiSimilarityMiner(epsilon=0.1)(e, y)
    pos, neg = P.multi_similarity_pairs(e, y, epsilon=0.1)
    assert set(zip(a1.tolist(), p.tolist())) == set(map(tuple, torch.nonzero(pos).tolist()))
    assert set(zip(a2.tolist(), n.tolist())) == set(map(tuple, torch.nonzero(neg).tolist()))


def test_circle_parity_with_pml():
    loss = pml_losses.CircleLoss(m=0.4, gamma=80, reducer=MeanReducer())
    _both(lambda e, y: P.circle_loss(e, y, reduction="none").mean(), lambda e, y: loss(e, y))


def test_supcon_parity_with_pml():
    loss = pml_losses.SupConLoss(temperature=0.1, reducer=MeanReducer())
    _both(lambda e, y: P.supcon_loss(e, y, reduction="none").mean(), lambda e, y: loss(e, y))


def test_proxy_anchor_parity_with_pml():
    theirs = pml_losses.ProxyAnchorLoss(5, 6, margin=0.1, alpha=32).double()
    ours = P.ProxyAnchorLoss(5, 6).double()
    with torch.no_grad():
        ours.proxies.copy_(theirs.proxies)
    e, y = batch(n_classes=5, per_class=4, d=6, seed=2)
    y[y == 4] = 3  # a proxy without samples in the batch
    e1, e2 = e.clone().requires_grad_(), e.clone().requires_grad_()
    a, b = ours(e1, y), theirs(e2, y)
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    torch.testing.assert_close(e1.grad, e2.grad)
    torch.testing.assert_close(ours.proxies.grad, theirs.proxies.grad)


# --- gradcheck (float64) -----------------------------------------------------------------------------------


def _grouped_batch():
    return batch(n_classes=3, per_class=3, d=4, seed=11, shuffle=True)


GRADCHECK = {
    "contrastive": lambda e, y: P.contrastive_loss(e, y, pos_margin=0.05, neg_margin=1.2, reduction="none"),
    "triplet": lambda e, y: P.triplet_loss(e, y, margin=0.5, reduction="none"),
    "triplet_batch_hard": lambda e, y: P.triplet_loss(e, y, margin=0.5, mining="batch_hard", reduction="none"),
    "multi_similarity": lambda e, y: P.multi_similarity_loss(e, y, beta=10.0, reduction="none"),
    "supcon": lambda e, y: P.supcon_loss(e, y, temperature=0.5, reduction="none"),
    "ge2e": lambda e, y: P.ge2e_loss(e, y, w=3.0, b=-1.0, reduction="none"),
    "ge2e_contrast": lambda e, y: P.ge2e_loss(e, y, w=3.0, b=-1.0, variant="contrast", reduction="none"),
    "te2e": lambda e, y: P.te2e_loss(e, y, generator=torch.Generator().manual_seed(0), reduction="none"),
    "angular_prototypical": lambda e, y: P.angular_prototypical_loss(e, y, reduction="none"),
    "prototypical": lambda e, y: P.prototypical_loss(e, y, reduction="none"),
    "icon": lambda e, y: P.icon_loss(P.supervised_neighbours(y, dtype=F64), P.cosine_neighbour_logits(e, temperature=0.5)),
}


@pytest.mark.parametrize("name", GRADCHECK)
def test_gradcheck(name):
    e, y = _grouped_batch()
    e.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: GRADCHECK[name](x, y), (e,), eps=1e-6, atol=1e-5)


def test_circle_gradient_holds_the_weights_fixed():
    """Circle loss's α_p, α_n carry no gradient (the paper's and PML's choice), so gradcheck runs on the loss
    with the weights frozen at the evaluation point, written out from the formula."""
    e, y = _grouped_batch()
    m, gamma = 0.4, 8.0
    pos, neg = P.pair_masks(y)
    s0 = cos_matrix(e)
    ap, an = (1 + m - s0).clamp_min(0), (s0 + m).clamp_min(0)

    def frozen(x):
        s = cos_matrix(x)
        lp = (-gamma * ap * (s - 1 + m)).masked_fill(~pos, float("-inf"))
        ln = (gamma * an * (s - m)).masked_fill(~neg, float("-inf"))
        return F.softplus(torch.logsumexp(lp, 1) + torch.logsumexp(ln, 1))

    x = e.clone().requires_grad_()
    P.circle_loss(x, y, margin=m, gamma=gamma, reduction="sum").backward()
    x2 = e.clone().requires_grad_()
    frozen(x2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    assert torch.autograd.gradcheck(lambda z: frozen(z), (e.clone().requires_grad_(),), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("fn", [P.proxy_anchor_loss, P.proxy_nca_loss, P.mean_field_contrastive_loss])
def test_gradcheck_proxies(fn):
    e, y = _grouped_batch()
    prox = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    kwargs = {"alpha": 4.0} if fn is P.proxy_anchor_loss else {"neg_margin": 1.3} if fn is P.mean_field_contrastive_loss else {}
    assert torch.autograd.gradcheck(lambda a, b: fn(a, y, b, **kwargs, reduction="none"),
                                    (e.requires_grad_(), prox.requires_grad_()), eps=1e-6, atol=1e-5)


# --- extreme values, empty batches, modules, no mutation ------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-6, 1e6])
@pytest.mark.parametrize("name", ["contrastive", "triplet", "multi_similarity", "circle", "supcon", "ge2e",
                                  "angular_prototypical"])
def test_extreme_scales_stay_finite(name, scale):
    e, y = _grouped_batch()
    e = (e * scale).float().requires_grad_()
    fn = GRADCHECK.get(name, lambda x, t: P.circle_loss(x, t, margin=0.25, gamma=256.0, reduction="none"))
    out = fn(e, y).sum()
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(e.grad).all()


def test_large_gamma_and_small_temperature_stay_finite():
    e, y = batch(n_classes=5, per_class=4, d=6)
    e = e.float().requires_grad_()
    out = P.circle_loss(e, y, margin=0.25, gamma=256.0) + P.supcon_loss(e, y, temperature=0.01) \
        + P.multi_similarity_loss(e, y, beta=200.0)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(e.grad).all()


@pytest.mark.parametrize("name", list(REFERENCES))
def test_empty_and_pairless_batches_give_an_attached_zero(name):
    fn, _ = REFERENCES[name]
    cases = [(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, dtype=torch.long))]
    if name != "contrastive":  # the contrastive loss still pushes negatives apart when there is no positive
        cases.append((torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 2])))
    for e, y in cases:
        out = fn(e, y)
        assert float(out.detach()) == 0.0 and out.requires_grad
        out.backward()


def test_inputs_are_not_mutated_and_modules_equal_functions():
    e, y = batch(n_classes=4, per_class=3)
    e0, y0 = e.clone(), y.clone()
    pairs = [(P.ContrastiveLoss(neg_margin=0.8), lambda: P.contrastive_loss(e, y, neg_margin=0.8)),
             (P.TripletLoss(margin=0.3, mining="batch_hard"), lambda: P.triplet_loss(e, y, margin=0.3, mining="batch_hard")),
             (P.MultiSimilarityLoss(), lambda: P.multi_similarity_loss(e, y)),
             (P.CircleLoss(margin=0.25, gamma=256.0), lambda: P.circle_loss(e, y, margin=0.25, gamma=256.0)),
             (P.SupConLoss(temperature=0.2), lambda: P.supcon_loss(e, y, temperature=0.2)),
             (P.GE2ELoss().double(), lambda: P.ge2e_loss(e, y)),
             (P.AngularPrototypicalLoss().double(), lambda: P.angular_prototypical_loss(e, y))]
    for module, fn in pairs:
        torch.testing.assert_close(module(e, y), fn())
    assert torch.equal(e, e0) and torch.equal(y, y0)
    assert "margin=0.3" in repr(pairs[1][0])


def test_learnable_w_gets_a_gradient_and_stays_positive():
    e, y = batch(n_classes=4, per_class=3)
    mod = P.GE2ELoss(init_w=-1.0).double()
    mod(e, y).backward()
    assert mod.w.grad is not None and float(mod.scale().detach()) > 0


def test_every_pair_method_is_registered_in_the_pairs_family():
    names = lossbook.list_methods(family="pairs")
    for n in ("contrastive_loss", "triplet_loss", "multi_similarity_loss", "circle_loss", "supcon_loss", "ge2e_loss",
              "te2e_loss", "angular_prototypical_loss", "icon_loss", "ProxyAnchorLoss", "ProxyNCALoss",
              "MeanFieldContrastiveLoss", "batch_hard_triplets", "multi_similarity_pairs", "semi_hard_triplets"):
        assert n in names, n
    assert lossbook.method_info("GE2ELoss").kind == "head"
    assert lossbook.method_info("circle_loss").kind == "stateful loss"


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, err, pattern", [
    (lambda: P.contrastive_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]).int()), TypeError, r"labels\.long\(\)"),
    (lambda: P.triplet_loss(torch.randn(4, 3), torch.tensor([[0], [1], [0], [1]])), ValueError, r"squeeze\(1\)"),
    (lambda: P.circle_loss(torch.randn(4, 3).long(), torch.tensor([0, 1, 0, 1])), TypeError, r"embeddings\.float\(\)"),
    (lambda: P.supcon_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), reduction="avg"), ValueError, "reduction"),
    (lambda: P.supcon_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), temperature=0), ValueError, "temperature"),
    (lambda: P.circle_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), margin=1.5), ValueError, "margin"),
    (lambda: P.triplet_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), mining="hard"), ValueError, "batch_hard"),
    (lambda: P.contrastive_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), distance="l1"), ValueError, "distance"),
    (lambda: P.ge2e_loss(torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 1])), ValueError, "N speakers with M utterances"),
    (lambda: P.ge2e_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), w=-1.0), ValueError, "w must be > 0"),
    (lambda: P.ge2e_loss(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), variant="max"), ValueError, "variant"),
    (lambda: P.multi_similarity_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]),
                                     pairs=(torch.ones(4, 4, dtype=torch.bool),) * 2), ValueError, "build the masks"),
    (lambda: P.multi_similarity_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), pairs="all"), TypeError, "pairs must"),
    (lambda: P.triplet_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]),
                            triplets=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))), ValueError, "y_a = y_p"),
    (lambda: P.proxy_anchor_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 5]), torch.randn(3, 3)), ValueError, "ignore_index"),
    (lambda: P.proxy_nca_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), torch.randn(3, 2)), ValueError, r"\(N, 2\)"),
    (lambda: P.ProxyAnchorLoss(0, 4), ValueError, "num_classes"),
    (lambda: P.mean_field_contrastive_loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), torch.randn(2, 3),
                                           neg_margin=3.0), ValueError, "neg_margin"),
])
def test_bad_inputs_name_the_fix(call, err, pattern):
    with pytest.raises(err, match=pattern):
        call()


# --- retrieval metrics ------------------------------------------------------------------------------------


def brute_force_retrieval(e, y, ks=(1, 2, 4)):
    e = F.normalize(e.double(), dim=1)
    s = (e @ e.T).numpy()
    y = y.numpy()
    recall, mapr, rprec, n = {k: 0.0 for k in ks}, 0.0, 0.0, 0
    for i in range(len(y)):
        others = [j for j in range(len(y)) if j != i]
        ranked = sorted(others, key=lambda j: (-s[i, j], j))
        rel = [y[j] == y[i] for j in ranked]
        r = sum(rel)
        if r == 0:
            continue
        n += 1
        for k in ks:
            recall[k] += any(rel[:k])
        rprec += sum(rel[:r]) / r
        mapr += sum(sum(rel[: t + 1]) / (t + 1) for t in range(r) if rel[t]) / r
    return {**{f"R@{k}": v / n for k, v in recall.items()}, "MAP@R": mapr / n, "R-precision": rprec / n}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_metrics_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    e, y = torch.randn(60, 4, generator=g), torch.randint(0, 6, (60,), generator=g)
    y[0] = 99  # a singleton class: no relevant item, left out
    got, want = M.retrieval_report(e, y), brute_force_retrieval(e, y)
    assert got.keys() == want.keys()
    for k in got:
        assert abs(got[k] - want[k]) < 1e-12, k


def test_retrieval_metrics_match_pml_accuracy_calculator():
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    g = torch.Generator().manual_seed(4)
    e, y = torch.randn(150, 6, generator=g, dtype=F64), torch.randint(0, 8, (150,), generator=g)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
                              knn_func=CustomKNN(CosineSimilarity()))
    theirs = calc.get_accuracy(e, y, e, y, ref_includes_query=True)
    assert abs(M.retrieval_recall_at_k(e, y, 1) - theirs["precision_at_1"]) < 1e-12
    assert abs(M.map_at_r(e, y) - theirs["mean_average_precision_at_r"]) < 1e-12
    assert abs(M.r_precision(e, y) - theirs["r_precision"]) < 1e-12


def test_retrieval_perfect_clusters_and_errors():
    y = torch.arange(5).repeat_interleave(4)
    e = torch.eye(5)[y] + 0.01 * torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    rep = M.retrieval_report(e, y)
    assert all(abs(v - 1.0) < 1e-12 for v in rep.values())
    assert M.retrieval_recall_at_k(e, y, [1, 3]) == {1: 1.0, 3: 1.0}
    with pytest.raises(ValueError, match="k must be"):
        M.retrieval_recall_at_k(e, y, 0)
    with pytest.raises(ValueError, match="labels must be integer"):
        M.map_at_r(e, y.float())
    with pytest.raises(ValueError, match="at least two"):
        M.r_precision(e[:1], y[:1])


def test_pairwise_helpers():
    e, y = batch()
    torch.testing.assert_close(P.pairwise_distance(e), dist_matrix(e).fill_diagonal_(0), atol=1e-7, rtol=0)
    torch.testing.assert_close(P.pairwise_distance(e, metric="squared_euclidean"), 2 - 2 * cos_matrix(e).fill_diagonal_(1))
    torch.testing.assert_close(P.pairwise_distance(e, metric="euclidean_raw"), torch.cdist(e, e).fill_diagonal_(0),
                               atol=1e-7, rtol=0)
    torch.testing.assert_close(P.pairwise_similarity(e), cos_matrix(e))
    pos, neg = P.pair_masks(y)
    assert not bool(pos.diagonal().any()) and not bool((pos & neg).any())
    assert len(P.all_triplets(y).anchor) == sum(1 for a, p, n in itertools.product(range(12), repeat=3)
                                                if a != p and y[a] == y[p] and y[n] != y[a])


# --- prototypical triplet ------------------------------------------------------------------------------------


def ref_proto_triplet(e, y, m=1.0, mining="semi_hard"):
    classes = sorted(set(y.tolist()))
    cent = {c: e[y == c].mean(0) for c in classes}
    out = []
    for i in range(len(y)):
        dp = float((e[i] - cent[int(y[i])]).square().sum())
        dn = {c: float((e[i] - cent[c]).square().sum()) for c in classes if c != int(y[i])}
        if mining == "hardest":
            pick = min(dn.values())
        else:
            farther = [v for v in dn.values() if v > dp]
            pick = min(farther) if farther else max(dn.values())
        out.append(max(dp - pick + m, 0.0))
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("mining", ["semi_hard", "hardest"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proto_triplet_matches_the_loop(mining, seed):
    e, y = batch(n_classes=4, per_class=3, seed=seed)
    y[0] = 3 if int(y[0]) != 3 else 2  # unbalanced classes are fine
    torch.testing.assert_close(P.proto_triplet_loss(e, y, mining=mining, reduction="none"),
                               ref_proto_triplet(e, y, mining=mining))


def test_proto_triplet_gradcheck_and_errors():
    e, y = _grouped_batch()
    assert torch.autograd.gradcheck(lambda x: P.proto_triplet_loss(x, y, margin=2.0, reduction="none"),
                                    (e.requires_grad_(),), eps=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="two classes"):
        P.proto_triplet_loss(torch.randn(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="mining"):
        P.proto_triplet_loss(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), mining="easy")
