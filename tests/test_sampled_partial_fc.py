"""Margin transforms and Partial FC: r = 1 is the full margin head, sampling keeps the positives,
and the model-parallel form on 2 gloo processes equals the single-process form in float64."""

from __future__ import annotations

import math
import socket
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import lossbook
from lossbook.margin import (
    ArcFace,
    CosFace,
    MarginHead,
    NormalizedSoftmax,
    arcface_logits,
    cosface_logits,
    cosine_logits,
    unit_rows,
)
from lossbook.sampled import PartialFC, partial_fc_loss, partial_fc_sample

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _close(a, b, tol=1e-12):
    torch.testing.assert_close(torch.as_tensor(a).detach().cpu(), torch.as_tensor(b).detach().cpu(),
                               rtol=tol, atol=tol)


def _reference_logits(cos, y, kind, s, m):
    """The margin heads written from their papers / insightface, one row at a time."""
    out = []
    for i in range(cos.shape[0]):
        row = []
        for j in range(cos.shape[1]):
            c = cos[i, j]
            if j == int(y[i]):
                if kind == "cosface":
                    c = c - m
                elif kind == "arcface":
                    theta = torch.acos(c)
                    c = torch.cos(theta + m) if c > math.cos(math.pi - m) else c - math.sin(math.pi - m) * m
            row.append(s * c)
        out.append(torch.stack(row))
    return torch.stack(out)


# --- transforms -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "cosface", "arcface"])
def test_margin_transforms_match_their_formulas(kind):
    cos = torch.rand(6, 5, generator=_gen(1), dtype=F64) * 1.98 - 0.99
    cos[0, 2] = -0.97  # θ + m > π: ArcFace's fallback branch
    y = torch.tensor([2, 0, 4, 1, 1, 3])
    t = {"none": NormalizedSoftmax(scale=10.0), "cosface": CosFace(scale=10.0, margin=0.35),
         "arcface": ArcFace(scale=10.0, margin=0.5)}[kind]
    _close(t(cos, y), _reference_logits(cos, y, kind, 10.0, getattr(t, "margin", 0.0)))
    # −1: no target in this matrix (another rank's class): only scaled
    _close(t(cos, torch.full((6,), -1)), 10.0 * cos)


def test_functional_transforms_and_gradcheck():
    cos = (torch.rand(4, 6, generator=_gen(2), dtype=F64) * 1.6 - 0.8).requires_grad_()
    y = torch.tensor([0, 5, 2, 2])
    _close(cosface_logits(cos, y, margin=0.2, scale=3.0), CosFace(scale=3.0, margin=0.2)(cos, y))
    _close(arcface_logits(cos, y, margin=0.3, scale=3.0), ArcFace(scale=3.0, margin=0.3)(cos, y))
    assert torch.autograd.gradcheck(lambda c: ArcFace(scale=2.0, margin=0.3)(c, y), (cos,))
    assert torch.autograd.gradcheck(lambda c: ArcFace(scale=2.0, margin=0.3, easy_margin=True)(c, y), (cos,))
    with pytest.raises(ValueError, match=r"scale must lie in \(0, inf\)"):
        CosFace(scale=0.0)
    with pytest.raises(ValueError, match=r"ArcFace: margin must lie in \[0, 3\.14159"):
        ArcFace(margin=4.0)


def test_unit_rows_is_normalize_with_a_fused_backward():
    x = torch.randn(7, 5, generator=_gen(3), dtype=F64, requires_grad=True)
    g = torch.randn(7, 5, generator=_gen(4), dtype=F64)
    _close(unit_rows(x), F.normalize(x, dim=1))
    _close(torch.autograd.grad(unit_rows(x), x, g)[0], torch.autograd.grad(F.normalize(x, dim=1), x, g)[0])
    assert torch.autograd.gradcheck(unit_rows, (x,))


# --- Partial FC, one process -----------------------------------------------------------------------------


def _data(n=8, d=5, c=13, seed=0, device="cpu"):
    g = _gen(seed)
    x = torch.randn(n, d, generator=g, dtype=F64).to(device).requires_grad_()
    w = torch.randn(c, d, generator=g, dtype=F64).to(device).requires_grad_()
    y = torch.randint(0, c, (n,), generator=g).to(device)
    return x, w, y


@pytest.mark.parametrize("margin", [CosFace(scale=8.0, margin=0.3), ArcFace(scale=8.0, margin=0.4)], ids=["cos", "arc"])
def test_rate_one_equals_full_margin_head(margin, device):
    x, w, y = _data(device=device)
    got = partial_fc_loss(x, y, w, sample_rate=1.0, margin=margin)
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    kind = "cosface" if isinstance(margin, CosFace) else "arcface"
    want = F.cross_entropy(_reference_logits(cos, y, kind, 8.0, margin.margin), y)
    _close(got, want)
    g_want = torch.autograd.grad(want, (x, w))
    for a, b in zip(torch.autograd.grad(got, (x, w)), g_want):
        _close(a, b)
    # the Module (single process) runs the same code
    head = PartialFC(5, 13, margin=margin, dtype=F64, device=device)
    with torch.no_grad():
        head.weight.copy_(w)
    _close(head(x, y), want)
    # and the full margin head of lossbook.margin (same transform, same centres) gives the same loss
    full = MarginHead(5, 13, margin, dtype=F64, device=device)
    with torch.no_grad():
        full.weight.copy_(w)
    x2 = x.detach().clone().requires_grad_()
    got_full = full.loss(x2, y)
    _close(got_full, want)
    g_full = torch.autograd.grad(got_full, (x2, full.weight))
    for a, b in zip(g_full, g_want):
        _close(a, b)


def test_sampling_keeps_positives_and_remaps_labels():
    y = torch.tensor([3, 3, 7, 0, 12])
    idx = partial_fc_sample(y, 20, 8, generator=_gen(3))
    assert idx.numel() == 8 and bool((idx[1:] > idx[:-1]).all())
    assert set(y.tolist()) <= set(idx.tolist())
    assert partial_fc_sample(y, 20, 2, generator=_gen(3)).tolist() == [0, 3, 7, 12]  # positives only
    # −1 labels (other ranks' classes) are not positives
    assert set(partial_fc_sample(torch.tensor([-1, 4]), 10, 3, generator=_gen(4)).tolist()) >= {4}
    # uniform over the negatives
    counts = torch.zeros(20)
    for s in range(2000):
        counts[partial_fc_sample(y, 20, 8, generator=_gen(100 + s))] += 1
    neg = torch.tensor([k for k in range(20) if k not in (0, 3, 7, 12)])
    p = (8 - 4) / 16
    assert float((counts[neg] / 2000 - p).abs().max()) < 5 * math.sqrt(p * (1 - p) / 2000)


def test_sampled_loss_is_margin_softmax_over_the_sampled_centres():
    x, w, y = _data(n=6, c=30, seed=5)
    margin = CosFace(scale=5.0, margin=0.2)
    out = partial_fc_loss(x, y, w, sample_rate=0.3, margin=margin, generator=_gen(6), return_aux=True)
    idx = out.index
    assert idx.numel() == 9 and set(y.tolist()) <= set(idx.tolist())
    local = torch.searchsorted(idx, y)
    want = F.cross_entropy(margin(cosine_logits(x, w[idx]), local), local)
    _close(out.loss, want)
    # sparse gradient: only the sampled centres, equal to the dense one
    loss_s = partial_fc_loss(x, y, w, sample_rate=0.3, margin=margin, generator=_gen(6), sparse_grad=True)
    gs = torch.autograd.grad(loss_s, w)[0]
    gd = torch.autograd.grad(out.loss, w)[0]
    assert gs.is_sparse and set(gs.coalesce().indices()[0].tolist()) <= set(idx.tolist())
    _close(gs.to_dense(), gd)
    assert float(gd[[k for k in range(30) if k not in idx.tolist()]].abs().max()) == 0.0


def test_partial_fc_gradcheck():
    x, w, y = _data(n=4, d=3, c=7, seed=7)
    idx = torch.tensor(sorted(set(y.tolist()) | {0, 6}))
    for margin in (CosFace(scale=3.0, margin=0.2), ArcFace(scale=3.0, margin=0.2)):
        assert torch.autograd.gradcheck(lambda x, w, m=margin: partial_fc_loss(x, y, w, margin=m, index=idx), (x, w))


def test_partial_fc_errors():
    x, w, y = _data()
    with pytest.raises(ValueError, match=r"sample_rate must lie in \(0, 1\]; got 1\.5"):
        partial_fc_loss(x, y, w, sample_rate=1.5)
    bad = y.clone()
    bad[0] = 13
    with pytest.raises(ValueError, match=r"labels hold class index 13, outside \[0, 13\)"):
        partial_fc_loss(x, bad, w)
    with pytest.raises(ValueError, match=r"embeddings must be a floating tensor of shape \(N, 5\)"):
        partial_fc_loss(x[:, :4], y, w)
    with pytest.raises(ValueError, match=r"labels must have shape \(8,\).*Did you mean labels\.squeeze\(1\)"):
        partial_fc_loss(x, y[:, None], w)
    with pytest.raises(ValueError, match=r"index must contain every label"):
        partial_fc_loss(x, y, w, index=torch.tensor([100]).clamp_max(12))
    with pytest.raises(RuntimeError, match=r"distributed=True needs torch\.distributed\.init_process_group"):
        PartialFC(5, 13, distributed=True)
    assert "sample_rate=1.0" in repr(lossbook.PartialFC(5, 13))


# --- Partial FC, model parallel over 2 gloo processes -------------------------------------------------------

CASES = [  # (sample_rate, margin, embedding_grad_scale)
    (1.0, ArcFace(scale=16.0, margin=0.5), 1.0),
    (0.5, CosFace(scale=16.0, margin=0.35), 1.0),
    (0.5, ArcFace(scale=16.0, margin=0.5), 2.0),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        data = torch.load(Path(folder) / "data.pt")
        x, w, y = data["x"], data["w"], data["y"]
        n = x.shape[0] // world
        results = []
        for rate, margin, scale in CASES:
            head = PartialFC(x.shape[1], w.shape[0], sample_rate=rate, margin=margin, distributed=True, dtype=F64,
                             embedding_grad_scale=scale, generator=torch.Generator().manual_seed(100 + rank))
            with torch.no_grad():
                head.weight.copy_(w[head.class_start : head.class_start + head.num_local])
            x_local = x[rank * n : (rank + 1) * n].clone().requires_grad_()
            loss = head(x_local, y[rank * n : (rank + 1) * n])
            loss.backward()
            indices = [None] * world
            dist.all_gather_object(indices, None if head.last_index is None else head.last_index.tolist())
            results.append({"loss": loss.detach(), "x_grad": x_local.grad, "w_grad": head.weight.grad,
                            "start": head.class_start, "num_local": head.num_local, "indices": indices})
        torch.save(results, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_equals_single_process():
    world, n, d, c = 2, 4, 6, 23  # uneven shards: 12 + 11 classes
    g = _gen(11)
    x = torch.randn(world * n, d, generator=g, dtype=F64)
    w = torch.randn(c, d, generator=g, dtype=F64)
    y = torch.tensor([0, 3, 3, 12, 15, 20, 0, 12])
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"x": x, "w": w, "y": y}, Path(folder) / "data.pt")
        mp.spawn(_worker, args=(world, _free_port(), folder), nprocs=world, join=True)
        ranks = [torch.load(Path(folder) / f"rank{r}.pt") for r in range(world)]
    for case, (rate, margin, scale) in enumerate(CASES):
        res = [ranks[r][case] for r in range(world)]
        assert [r["num_local"] for r in res] == [12, 11] and [r["start"] for r in res] == [0, 12]
        index = None
        if rate < 1.0:
            index = torch.tensor(sorted(i for part in res[0]["indices"] for i in part))
            assert index.numel() == 6 + 5 and set(y.tolist()) <= set(index.tolist())
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        single = partial_fc_loss(xs, y, ws, margin=margin, index=index)
        single.backward()
        for r in res:  # every rank returns the loss of the whole batch
            _close(r["loss"], single)
        _close(torch.cat([r["x_grad"] for r in res]), scale * xs.grad)
        _close(torch.cat([r["w_grad"] for r in res]), ws.grad)
