"""DistributedFactoredSphericalLayer: exact agreement with the single-process layer on 2 and 4 gloo
processes, top-k and scores across shards, bytes per step, errors.

Each world size runs once (a module fixture: one launch of P local processes runs every case and
returns its measurements); the tests then read them. The processes are forked where the platform
allows it (a spawned process re-imports torch, seconds each on a busy machine).
"""

from __future__ import annotations

import sys

import pytest
import torch

from lossbook.spherical import FactoredSphericalLayer
from lossbook.spherical.distributed import DistributedFactoredSphericalLayer, launch_local, shard_bounds

F64 = torch.float64
N_IN, M, STEPS = 6, 8, 50
# (name, loss, loss_kwargs, lr, weight_decay, stabilize_every): every loss, with and without weight
# decay; squared error also at a large rate, where the conditioning guard re-inverts and folds
CASES = [
    ("z_loss", "z_loss", {}, 0.05, 0.01, 100),
    ("z_loss_ab", "z_loss", {"a_z": 0.5, "b": 2.0}, 0.05, 0.0, 100),
    ("taylor", "taylor_softmax", {}, 0.05, 0.02, 100),
    ("spherical", "spherical_softmax", {"eps": 1e-3}, 0.01, 0.0, 10),
    ("squared", "squared_error", {}, 0.005, 0.01, 100),
    ("squared_large_lr", "squared_error", {}, 0.3, 0.0, 100),
]
D_SMALL, D_LARGE = 37, 370  # not multiples of 2 or 4: shards of unequal size


def _batch(g: torch.Generator, D: int) -> tuple[torch.Tensor, torch.Tensor]:
    h = torch.randn(M, N_IN, generator=g, dtype=F64)
    y = torch.randint(0, D, (M,), generator=g)
    y[1] = y[0]  # duplicate targets in every batch
    y[2], y[3] = 0, D - 1  # targets on the first and the last shard in every batch
    return h, y


def _full(layer) -> torch.Tensor:
    W, b = layer.dense_weight()
    return torch.cat([W, b[:, None]], 1)


def _run_case(loss: str, kwargs: dict, lr: float, wd: float, stabilize_every: int, D: int) -> dict:
    ref = FactoredSphericalLayer(N_IN, D, loss=loss, loss_kwargs=kwargs, dtype=F64, stabilize_every=stabilize_every,
                                 generator=torch.Generator().manual_seed(0))
    lay = DistributedFactoredSphericalLayer.from_layer(ref)
    g = torch.Generator().manual_seed(1)
    loss_diff = grad_diff = 0.0
    comm_per_step = []
    for _ in range(STEPS):
        h, y = _batch(g, D)
        out = []
        for layer in (ref, lay):
            hh = h.clone().requires_grad_(True)
            before = lay.comm.payload_bytes
            L = layer(hh, y)
            L.backward()
            layer.step(lr, weight_decay=wd)
            out.append((L.detach(), hh.grad))
        comm_per_step.append(lay.comm.payload_bytes - before)
        loss_diff = max(loss_diff, float((out[0][0] - out[1][0]).abs() / out[0][0].abs().clamp_min(1e-300)))
        grad_diff = max(grad_diff, float((out[0][1] - out[1][1]).abs().max() / out[0][1].abs().max()))
    W_ref, W = _full(ref), _full(lay)
    h, _ = _batch(g, D)
    k = 5
    ref_v, ref_i = ref.topk(h, k)
    v, i = lay.topk(h, k)
    local = lay.scores(h, local=True)
    return {
        "rel_W": float((W - W_ref).abs().max() / W_ref.abs().max()),
        "loss": loss_diff,
        "grad_h": grad_diff,
        "spread": lay.replica_spread(),
        "folds": (ref.fold_count, lay.fold_count),
        "guards": (ref.guard_count, lay.guard_count),
        "bytes_per_step": comm_per_step,
        "topk_equal": bool(torch.equal(i, ref_i)),
        "topk_values": float((v - ref_v).abs().max()),
        "scores": float((lay.scores(h) - ref.scores(h)).abs().max() / ref.scores(h).abs().max()),
        "local_scores_shape": tuple(local.shape),
        "local_rows": (lay.lo, lay.hi, len(lay.V)),
        "consistency": lay.consistency(),
    }


def _errors() -> dict[str, str]:
    """The messages of the errors raised inside an initialised process group."""
    found = {}
    for key, call in [("group", lambda: DistributedFactoredSphericalLayer(4, 10, group="world")),
                      ("too_few_classes", lambda: DistributedFactoredSphericalLayer(4, 1)),
                      ("from_layer", lambda: DistributedFactoredSphericalLayer.from_layer("layer")),
                      ("k", lambda: DistributedFactoredSphericalLayer(4, 10, dtype=F64).topk(torch.zeros(1, 4), 11))]:
        try:
            call()
        except (TypeError, ValueError) as e:
            found[key] = f"{type(e).__name__}: {e}"
    return found


def _worker() -> dict:
    """Every case on this rank (one launch per world size)."""
    results = {name: _run_case(loss, kw, lr, wd, st, D_SMALL) for name, loss, kw, lr, wd, st in CASES}
    results["large_D"] = _run_case("z_loss", {}, 0.05, 0.01, 100, D_LARGE)
    # from_dense: the same W as the single-process layer built from it
    torch.manual_seed(3)
    Wd, bd = torch.randn(D_SMALL, N_IN, dtype=F64), torch.randn(D_SMALL, dtype=F64)
    a, b = FactoredSphericalLayer.from_dense(Wd, bd), DistributedFactoredSphericalLayer.from_dense(Wd, bd)
    results["from_dense"] = {"Q": float((a.Q - b.Q).abs().max()), "W": float((_full(b) - torch.cat([Wd, bd[:, None]], 1))
                                                                              .abs().max())}
    results["errors"] = _errors()
    return results


@pytest.fixture(scope="module", params=[2, 4], ids=lambda p: f"P{p}")
def world(request):
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return request.param, launch_local(_worker, request.param, start_method=method, timeout=600)


@pytest.mark.parametrize("case", [c[0] for c in CASES] + ["large_D"])
def test_exact_against_single_process(world, case):
    P, results = world
    for rank, res in enumerate(results):
        r = res[case]
        assert r["rel_W"] <= 1e-9, (P, rank, r)
        assert r["loss"] <= 1e-9 and r["grad_h"] <= 1e-9, (P, rank, r)
        assert r["spread"] == 0.0, (P, rank, r)  # the replicas of the d×d state stay bitwise identical
        assert r["consistency"]["Q"] <= 1e-9 and r["consistency"]["wbar"] <= 1e-9, r


def test_guard_folds_shards_in_step(world):
    _, results = world
    r = results[0]["squared_large_lr"]
    assert r["guards"][1] > 0 and r["folds"][1] > 0  # the large rate exercises the guard and the local folds
    assert r["guards"][0] == r["guards"][1]
    assert {res["squared_large_lr"]["folds"][1] for res in results} == {r["folds"][1]}  # every rank folds together


@pytest.mark.parametrize("case", [c[0] for c in CASES] + ["large_D"])
def test_topk_and_scores_across_shards(world, case):
    _, results = world
    for res in results:
        r = res[case]
        assert r["topk_equal"], r
        assert r["topk_values"] <= 1e-9 and r["scores"] <= 1e-9, r


def test_shards_are_contiguous_ranges(world):
    P, results = world
    bounds = shard_bounds(D_SMALL, P)
    for rank, res in enumerate(results):
        lo, hi, rows = res["z_loss"]["local_rows"]
        assert (lo, hi, rows) == (bounds[rank], bounds[rank + 1], bounds[rank + 1] - bounds[rank])
        assert res["z_loss"]["local_scores_shape"] == (M, rows)


def test_bytes_per_step_are_m_times_d_whatever_D(world):
    _, results = world
    d = N_IN + 1
    for res in results:
        for case in [c[0] for c in CASES if c[5] == 100 and c[0] != "squared_large_lr"] + ["large_D"]:
            # one all-reduce of the m×d target rows per step, the same at D = 37 and 370
            assert set(res[case]["bytes_per_step"]) == {M * d * 8}, (case, res[case]["bytes_per_step"])


def test_from_dense(world):
    _, results = world
    for res in results:
        assert res["from_dense"]["Q"] <= 1e-12 and res["from_dense"]["W"] == 0.0


def test_errors_inside_a_group(world):
    _, results = world
    e = results[0]["errors"]
    assert e["group"].startswith("TypeError") and "ProcessGroup" in e["group"]
    assert e["too_few_classes"].startswith("ValueError") and "num_classes" in e["too_few_classes"]
    assert e["from_layer"].startswith("TypeError") and "FactoredSphericalLayer" in e["from_layer"]
    assert e["k"].startswith("ValueError") and "k must be" in e["k"]


def test_errors_without_a_group():
    with pytest.raises(ValueError, match="init_process_group"):
        DistributedFactoredSphericalLayer(4, 10)
    with pytest.raises(ValueError, match="fewer ranks"):
        shard_bounds(3, 4)
    with pytest.raises(ValueError, match="world_size"):
        launch_local(_worker, 0)
    with pytest.raises(ValueError, match="start_method"):
        launch_local(_worker, 1, start_method="thread")


def test_shard_bounds():
    assert shard_bounds(10, 4) == [0, 2, 5, 7, 10]
    assert shard_bounds(8, 1) == [0, 8]
