"""PU-MLC's positive-unlabeled multi-label loss and its mixup penalty.

The loss against its formula written out label by label in float64 (the authors' code,
TAKELAMAG/PU-MLC ``src/loss_functions/vpu_loss.py``: temperature min(α·std, 1), re-balance
factor (mean p)^γ, both without gradient), gradcheck, the properties the paper's terms promise
(the temperature makes the loss blind to the logits' scale; γ = 0 removes the re-balancing; known
negatives count as unlabeled), extreme logits and bad input.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import F64, assert_close64

from lossbook.imbalance import pu_mixup_penalty, pu_mlc_loss, pu_soft_target

N, K = 10, 4


def _data(seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(N, K, generator=g, dtype=F64)
    t = (torch.rand(N, K, generator=g) < 0.3).long()
    t[:, -1] = 0  # a label without annotated positives
    return z, t


def _sig(v):
    return 1 / (1 + math.exp(-v))


def _reference(z, t, gamma, alpha):
    total = 0.0
    for k in range(K):
        col = [row[k] for row in z.tolist()]
        mean = sum(col) / len(col)
        std = math.sqrt(sum((v - mean) ** 2 for v in col) / len(col))
        s = min(alpha * std, 1.0)
        p = [_sig(v / s) for v in col]
        mean_p = sum(p) / len(p)
        total += mean_p ** gamma * math.log(mean_p)
        pos = [math.log(p[i]) for i in range(len(col)) if t[i, k] == 1]
        if pos:
            total -= sum(pos) / len(pos)
    return torch.tensor(total, dtype=F64)


@pytest.mark.parametrize("gamma, alpha, scale", [(0.55, 1.0, 0.3), (0.85, 2.0, 0.3), (0.0, 1.0, 3.0), (1.5, 0.5, 1.0)])
def test_pu_mlc_matches_formula(gamma, alpha, scale):
    z, t = _data(1, scale)
    assert_close64(pu_mlc_loss(z, t, gamma=gamma, alpha=alpha), _reference(z, t, gamma, alpha), rtol=1e-10,
                   atol=1e-10)


def test_pu_mlc_properties():
    z, t = _data(2)
    # known negatives (−1) are unlabeled data, as in the code
    assert_close64(pu_mlc_loss(z, torch.where(t == 1, t, -torch.ones_like(t))), pu_mlc_loss(z, t))
    # while α·std < 1 the temperature divides the scale of the logits away
    assert (z.std(0, unbiased=False) * 2.5 < 1).all()
    assert_close64(pu_mlc_loss(2.5 * z, t), pu_mlc_loss(z, t), rtol=1e-12, atol=1e-12)
    # ... and caps at 1: beyond it the logits are used as they are
    big = 20 * z
    assert not torch.allclose(pu_mlc_loss(big, t), pu_mlc_loss(2 * big, t))
    # the annotated positives pull their own probability up: the gradient on most of their logits is negative
    z_req = z.clone().requires_grad_(True)
    pu_mlc_loss(z_req, t).backward()
    assert (z_req.grad[t == 1] < 0).sum() > (z_req.grad[t == 1] > 0).sum()


def test_pu_mlc_gradcheck():
    # where the temperature is capped at 1 and γ = 0 (no re-balancing) nothing is frozen: plain gradcheck
    big, tb = _data(3, scale=3.0)
    assert (big.std(0, unbiased=False) > 1).all()
    big.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: pu_mlc_loss(a, tb, gamma=0.0, alpha=1.0), (big,))
    z, t = _data(3)
    z.requires_grad_(True)
    # the temperature and the re-balance factor carry no gradient: the gradient is that of the formula with
    # them frozen
    with torch.no_grad():
        s = z.std(0, unbiased=False).clamp(max=1.0)
        w = torch.sigmoid(z / s).mean(0).pow(0.55)
    frozen = lambda a: ((w * torch.log(torch.sigmoid(a / s).mean(0))).sum()
                        - torch.stack([torch.log(torch.sigmoid(a[t[:, k] == 1, k] / s[k])).mean()
                                       if (t[:, k] == 1).any() else a.sum() * 0 for k in range(K)]).sum())
    g1 = torch.autograd.grad(pu_mlc_loss(z, t), z)[0]
    g2 = torch.autograd.grad(frozen(z), z)[0]
    assert_close64(g1, g2, rtol=1e-10, atol=1e-12)


def test_pu_mlc_extreme_logits():
    z, t = _data(4)
    for big in (1e4, -1e4):
        a = (z * big).requires_grad_(True)
        loss = pu_mlc_loss(a, t)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(a.grad).all()
    # a label whose logits are all equal in the batch: temperature 1e-6, still finite
    const = torch.zeros(N, K, dtype=F64, requires_grad=True)
    loss = pu_mlc_loss(const, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(const.grad).all()
    assert torch.isfinite(pu_mlc_loss(z.float() * 1e4, t))


def test_pu_mlc_bad_input():
    z, t = _data()
    with pytest.raises(ValueError, match="target must be shaped like input"):
        pu_mlc_loss(z, t[:, :2])
    with pytest.raises(ValueError, match="gamma"):
        pu_mlc_loss(z, t, gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        pu_mlc_loss(z, t, alpha=0.0)
    with pytest.raises(TypeError, match="alpha"):
        pu_mlc_loss(z, t, alpha="1")


def test_pu_soft_target_and_mixup_penalty():
    z, t = _data(5)
    soft = pu_soft_target(z, t)
    assert_close64(soft, torch.where(t == 1, torch.ones_like(z), torch.sigmoid(z)))
    # zero when the mixed logits predict the soft targets exactly
    assert_close64(pu_mixup_penalty(z, torch.sigmoid(z)), torch.tensor(0.0, dtype=F64), atol=1e-12)
    # the formula: Σ_k mean_i (log t − log σ(z))²
    lam = 0.3
    mixed_t = lam * soft[:5] + (1 - lam) * soft[5:]
    mixed_z = z[:5] * 0.7 + z[5:] * 0.2
    want = sum(sum((math.log(a) - math.log(_sig(b))) ** 2 for a, b in zip(mixed_t[:, k].tolist(), mixed_z[:, k].tolist()))
               / 5 for k in range(K))
    assert_close64(pu_mixup_penalty(mixed_z, mixed_t), torch.tensor(want, dtype=F64), rtol=1e-10, atol=1e-12)
    zr = mixed_z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: pu_mixup_penalty(a, mixed_t.detach()), (zr,))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        pu_mixup_penalty(z, torch.zeros_like(z))
    with pytest.raises(ValueError, match="soft_target must be shaped"):
        pu_mixup_penalty(z, soft[:, :2])
