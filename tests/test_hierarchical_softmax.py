"""HierarchicalSoftmax: exact normalisation, the flat softmax it reduces to with one cluster, its
hand-written gradient against autograd of the explicit two-level formula, frequency clustering,
and input errors (float64 on CPU, tiny sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossbook
from lossbook.softmax import HierarchicalSoftmax

F64 = torch.float64


def zipf_counts(D: int) -> torch.Tensor:
    return 1.0 / torch.arange(1, D + 1, dtype=F64)


def make(D=40, d=6, K=None, counts=None, seed=0, **kwargs) -> HierarchicalSoftmax:
    g = torch.Generator().manual_seed(seed)
    layer = HierarchicalSoftmax(d, D, num_clusters=K, class_counts=counts, dtype=F64, generator=g, **kwargs)
    with torch.no_grad():  # nonzero biases, so that their gradients are tested too
        for p in (layer.bias, layer.cluster_bias):
            if p is not None:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    return layer


def batch(layer: HierarchicalSoftmax, m=17, seed=1, zipf=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(m, layer.in_features, generator=g, dtype=F64)
    D = layer.num_classes
    y = (torch.multinomial(zipf_counts(D), m, replacement=True, generator=g) if zipf
         else torch.randint(0, D, (m,), generator=g))
    return h, y


def explicit_nll(layer: HierarchicalSoftmax, params: dict, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−log p(y|h) per example from the definition, cluster by cluster, in class order."""
    W, b = params["weight"], params.get("bias")
    A, a = params["cluster_weight"], params.get("cluster_bias")
    top = F.log_softmax(F.linear(h, A, a), dim=1)
    out = []
    for i in range(len(h)):
        c = int(layer.cluster_of[y[i]])
        members = torch.nonzero(layer.cluster_of == c).squeeze(1)  # classes of cluster c
        rows = layer.row_of[members]
        z = W[rows] @ h[i] + (0 if b is None else b[rows])
        j = int(torch.nonzero(members == y[i]))
        out.append(-(top[i, c] + F.log_softmax(z, dim=0)[j]))
    return torch.stack(out)


CASES = {
    "equal clusters": {"D": 40, "K": 7},
    "frequency clusters": {"D": 40, "K": 6, "counts": zipf_counts(40)},
    "one cluster": {"D": 12, "K": 1},
    "every class its own cluster": {"D": 9, "K": 9},
    "no bias": {"D": 30, "K": 5, "counts": zipf_counts(30), "bias": False},
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_log_prob_is_normalised_and_forward_is_its_nll(case):
    layer = make(**case)
    h, y = batch(layer, zipf=True)
    lp = layer.log_prob(h)
    assert lp.shape == (len(h), layer.num_classes)
    torch.testing.assert_close(torch.logsumexp(lp, dim=1), torch.zeros(len(h), dtype=F64), atol=1e-13, rtol=0)
    nll = layer(h, y, reduction="none")
    torch.testing.assert_close(nll, -lp.gather(1, y[:, None]).squeeze(1), atol=1e-12, rtol=0)
    torch.testing.assert_close(layer(h, y), nll.mean())
    torch.testing.assert_close(layer(h, y, reduction="sum"), nll.sum())
    torch.testing.assert_close(nll, explicit_nll(layer, dict(layer.named_parameters()), h, y), atol=1e-12, rtol=0)
    top_v, top_i = layer.topk(h, 3)
    torch.testing.assert_close(top_v, lp.gather(1, top_i))
    assert torch.equal(layer.predict(h), lp.argmax(1))


@pytest.mark.parametrize("counts", [None, "zipf"])
def test_one_cluster_is_the_flat_softmax_with_the_same_weights(counts):
    D, d = 25, 5
    layer = make(D, d, K=1, counts=None if counts is None else zipf_counts(D).flip(0))
    g = torch.Generator().manual_seed(3)
    W, b = torch.randn(D, d, generator=g, dtype=F64), torch.randn(D, generator=g, dtype=F64)
    with torch.no_grad():  # class k lives in row row_of[k]
        layer.weight[layer.row_of] = W
        layer.bias[layer.row_of] = b
    h, y = batch(layer, m=11)
    torch.testing.assert_close(layer(h, y, reduction="none"), F.cross_entropy(h @ W.T + b, y, reduction="none"),
                               atol=1e-13, rtol=0)
    torch.testing.assert_close(layer.log_prob(h), F.log_softmax(h @ W.T + b, dim=1), atol=1e-13, rtol=0)


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_gradients_match_autograd_of_the_explicit_formula(case, sparse):
    layer = make(sparse=sparse, **case)
    h, y = batch(layer, m=23, zipf=True)  # duplicate targets and several examples per cluster
    y[:3] = y[3]
    w = torch.rand(len(h), dtype=F64, generator=torch.Generator().manual_seed(5))  # per-example grad_output
    names = [n for n, _ in layer.named_parameters()]

    hl = h.clone().requires_grad_(True)
    (layer(hl, y, reduction="none") * w).sum().backward()
    got = {n: p.grad.to_dense() if p.grad.is_sparse else p.grad for n, p in layer.named_parameters()}
    assert layer.weight.grad.is_sparse == sparse and (layer.bias is None or layer.bias.grad.is_sparse == sparse)

    params = {n: p.detach().clone().requires_grad_(True) for n, p in layer.named_parameters()}
    he = h.clone().requires_grad_(True)
    (explicit_nll(layer, params, he, y) * w).sum().backward()
    torch.testing.assert_close(hl.grad, he.grad, atol=1e-12, rtol=0)
    for n in names:
        torch.testing.assert_close(got[n], params[n].grad, atol=1e-12, rtol=0, msg=n)


def test_sparse_gradient_touches_only_the_batch_clusters_and_sgd_matches_dense():
    layers = [make(D=60, K=8, counts=zipf_counts(60), sparse=s) for s in (True, False)]
    h, y = batch(layers[0], m=9, zipf=True)
    for layer in layers:
        opt = torch.optim.SGD(layer.parameters(), lr=0.5)
        for _ in range(3):
            opt.zero_grad()
            layer(h, y).backward()
            opt.step()
    rows = layers[0].weight.grad.coalesce().indices()[0]
    touched = torch.isin(layers[0].cluster_of_row, layers[0].cluster_of[y])
    assert torch.equal(rows, torch.nonzero(touched).squeeze(1))
    for (n, p), q in zip(layers[0].named_parameters(), layers[1].parameters()):
        torch.testing.assert_close(p, q, atol=1e-13, rtol=0, msg=n)


def test_gradcheck_tiny_instance():
    layer = make(D=7, d=3, K=3, counts=torch.tensor([5.0, 1, 3, 0, 2, 8, 1], dtype=F64), sparse=False)
    h, y = batch(layer, m=5)
    names = [n for n, _ in layer.named_parameters()]

    def f(h, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (h, y), {"reduction": "none"})

    inputs = [h.requires_grad_(True)] + [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]
    assert torch.autograd.gradcheck(f, inputs)


def test_float32_matches_float64():
    layer = make(D=50, K=7, counts=zipf_counts(50))
    h, y = batch(layer)
    layer32 = make(D=50, K=7, counts=zipf_counts(50)).float()
    layer32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in layer.state_dict().items()})
    torch.testing.assert_close(layer32(h.float(), y, reduction="none").double(), layer(h, y, reduction="none"),
                               atol=1e-5, rtol=1e-5)


def test_empty_batch_gives_a_zero_attached_to_the_graph():
    layer = make()
    h = torch.zeros(0, layer.in_features, dtype=F64, requires_grad=True)
    y = torch.zeros(0, dtype=torch.int64)
    for reduction in ("mean", "sum"):
        loss = layer(h, y, reduction=reduction)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
    assert layer(h, y, reduction="none").shape == (0,)


# --- clusters ------------------------------------------------------------------------------------


def cluster_stats(layer: HierarchicalSoftmax, counts: torch.Tensor):
    K, size = layer.num_clusters, layer.cluster_size
    mass = torch.zeros(K, dtype=F64).index_add(0, layer.cluster_of, counts)
    return size, mass


@pytest.mark.parametrize("D, K", [(2000, 45), (1000, 31), (300, 17)])
def test_frequency_clusters_are_balanced_with_frequent_classes_in_small_clusters(D, K):
    counts = zipf_counts(D)[torch.randperm(D, generator=torch.Generator().manual_seed(D))]  # any class order
    layer = HierarchicalSoftmax(4, D, num_clusters=K, class_counts=counts)
    size, mass = cluster_stats(layer, counts)
    N = float(counts.sum())
    assert len(size) == K and bool((size >= 1).all()) and int(size.sum()) == D
    # each cluster is a contiguous block of rows, and a contiguous range of the classes sorted by count
    assert torch.equal(layer.cluster_of_row, torch.repeat_interleave(torch.arange(K), size))
    assert torch.equal(layer.class_of_row[layer.row_of], torch.arange(D))
    by_count = torch.sort(counts, descending=True, stable=True).indices
    assert bool((layer.cluster_of[by_count].diff() >= 0).all())
    # frequent classes in small clusters: sizes grow along the count order (up to one class of rounding)
    assert int(size[layer.cluster_of[by_count[0]]]) == 1
    assert bool((size.diff() >= -1).all()) and float(size[: K // 4].float().mean()) < float(size[-K // 4:].float().mean())
    # equal total count: a multi-class cluster holds < 2N/K; a singleton is a class heavier than that bound allows
    assert bool((mass[size > 1] < 2 * N / K).all())
    # so a target drawn from the counts meets a cluster of ≤ D/K classes on average (K + D/K per example)
    assert float((mass / N * size).sum()) <= D / K


def test_default_clusters_are_contiguous_and_equal():
    layer = HierarchicalSoftmax(4, 103)
    assert layer.num_clusters == 10  # round(√103)
    assert set(layer.cluster_size.tolist()) <= {10, 11} and torch.equal(layer.row_of, torch.arange(103))
    assert torch.equal(layer.cluster_of, (2 * torch.arange(103) + 1) * 10 // 206)  # midpoints (j + ½)·K/D
    counted = HierarchicalSoftmax(4, 103, class_counts=torch.ones(103))  # equal counts: the same clusters
    assert torch.equal(counted.cluster_of, layer.cluster_of)


def test_zero_counts_and_heavy_classes():
    counts = torch.tensor([0.0, 100, 0, 1, 1, 1, 1, 0, 50, 1])
    layer = HierarchicalSoftmax(3, 10, num_clusters=4, class_counts=counts)
    size, _ = cluster_stats(layer, counts.double())
    assert int(size.sum()) == 10 and bool((size >= 1).all())
    assert layer.cluster_size[layer.cluster_of[1]] == 1 and layer.cluster_size[layer.cluster_of[8]] == 1
    assert int(layer.cluster_of[0]) == int(layer.cluster_of[7]) == 3  # unseen classes end up with the rarest


def test_registered_and_exported():
    info = lossbook.method_info("HierarchicalSoftmax")
    assert info.kind == "layer" and info.family == "softmax" and info.paper == "morin2005hierarchical"
    assert lossbook.HierarchicalSoftmax is HierarchicalSoftmax
    assert info.path == "lossbook.HierarchicalSoftmax"


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"num_clusters": 41}, ValueError, r"num_clusters must lie in \[1, num_classes=40\]; got 41\. Use num_clusters=None"),
    ({"num_clusters": 0}, ValueError, r"num_clusters must lie in \[1, num_classes=40\]"),
    ({"num_clusters": 2.5}, TypeError, r"num_clusters must be an int .* or None"),
    ({"class_counts": torch.ones(39)}, ValueError, r"class_counts must have shape \(40,\).*got float32 of shape \(39,\)"),
    ({"class_counts": -torch.ones(40)}, ValueError, r"class_counts must be finite and ≥ 0; got -1\.0"),
    ({"class_counts": torch.full((40,), float("nan"))}, ValueError, r"finite and ≥ 0"),
    ({"class_counts": torch.zeros(40)}, ValueError, r"class_counts sum to 0.*class_counts=None"),
    ({"class_counts": ["a"] * 40}, TypeError, r"class_counts must be a sequence of 40 nonnegative numbers"),
    ({"class_counts": torch.ones(40, dtype=torch.bool)}, TypeError, r"class_counts must hold real numbers"),
    ({"reduction": "avg"}, ValueError, r"reduction must be one of"),
], ids=["K>D", "K=0", "K float", "counts length", "negative counts", "nan counts", "zero counts", "strings",
        "bool counts", "reduction"])
def test_constructor_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        HierarchicalSoftmax(6, 40, **kwargs)


def test_constructor_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r"num_classes must be an int ≥ 2; got 1"):
        HierarchicalSoftmax(6, 1)
    with pytest.raises(ValueError, match=r"in_features must be an int ≥ 1; got 0"):
        HierarchicalSoftmax(0, 10)


def test_forward_errors():
    layer = make(D=40, d=6)
    h, y = batch(layer, m=4)
    with pytest.raises(ValueError, match=r"target holds class index 40, outside \[0, 40\)"):
        layer(h, torch.tensor([0, 1, 40, 2]))
    with pytest.raises(ValueError, match=r"outside \[0, 40\)"):
        layer(h, torch.tensor([0, -1, 3, 2]))
    with pytest.raises(TypeError, match=r"target must be int64 class indices of shape \(4,\); got float32. "
                                        r"Use target.long\(\)"):
        layer(h, y.float())
    with pytest.raises(TypeError, match=r"got int32. Use target.long\(\)"):
        layer(h, y.int())
    with pytest.raises(ValueError, match=r"target must have shape \(4,\).*Did you mean target.squeeze\(1\)"):
        layer(h, y[:, None])
    with pytest.raises(TypeError, match=r"hidden is float32 of shape \(4, 6\) but the layer's parameters are "
                                        r"float64; use hidden.to\(torch.float64\)"):
        layer(h.float(), y)
    with pytest.raises(TypeError, match=r"hidden must be a floating tensor of shape \(m, 6\); got int64"):
        layer(h.long(), y)
    with pytest.raises(ValueError, match=r"hidden must have shape \(m, 6\); got float64 of shape \(4, 5\)"):
        layer(h[:, :5], y)
    with pytest.raises(ValueError, match=r"Did you mean hidden.reshape\(-1, hidden.shape\[-1\]\)"):
        layer(h[None], y)
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        layer(h, y, reduction="mean_please")
    with pytest.raises(ValueError, match=r"topk: k must be an int in \[1, 40\]; got 41"):
        layer.topk(h, 41)
