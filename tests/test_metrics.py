"""Metrics: top-k accuracy, NLL, calibration error (against an independent reference), confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook import metrics


def _probs(n=500, c=4, seed=0, temperature=1.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2 / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), rng.integers(0, c, size=n)


# --- top-k accuracy ---------------------------------------------------------------------------------


def test_top_k_accuracy_against_stable_argsort():
    p, y = _probs(300, 6, seed=1)
    order = np.argsort(-p, axis=1, kind="stable")
    for k in (1, 2, 3, 6):
        expected = np.mean([y[i] in order[i, :k] for i in range(len(y))])
        assert metrics.top_k_accuracy(p, y, k) == pytest.approx(expected, abs=1e-15)
    assert metrics.top_k_accuracy(p, y, 6) == 1.0
    assert metrics.accuracy(p, y) == pytest.approx(np.mean(p.argmax(1) == y))


def test_top_k_accuracy_ties_are_broken_by_index():
    scores = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    target = np.array([0, 1, 1, 2])
    # row 0: target 0 wins the tie; row 1: class 0 comes first; rows 2-3: ranks 1 and 2
    assert metrics.top_k_accuracy(scores, target, 1) == 0.25
    assert metrics.top_k_accuracy(scores, target, 2) == 0.75
    assert metrics.top_k_accuracy(scores, target, 3) == 1.0


def test_top_k_accuracy_tuple_k_and_tensors():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    target = torch.tensor([2, 0, 0])
    out = metrics.top_k_accuracy(scores, target, (1, 2, 3))
    assert out == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}
    assert metrics.top_k_accuracy(scores, target, 1) == pytest.approx(1 / 3)


def test_top_k_accuracy_empty_is_nan():
    assert np.isnan(metrics.top_k_accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int), 1))


# --- NLL --------------------------------------------------------------------------------------------


def test_nll():
    p, y = _probs(200, 5, seed=2)
    assert metrics.nll(p, y) == pytest.approx(-np.mean(np.log(p[np.arange(200), y])), rel=1e-12)
    assert metrics.nll(torch.from_numpy(p), torch.from_numpy(y)) == pytest.approx(metrics.nll(p, y))
    # a zero probability is clipped, not -log(0) = inf
    assert metrics.nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(1e-12))


# --- calibration --------------------------------------------------------------------------------------


def reference_ece(p: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """Independent ECE: right-closed equal-width bins (a, b] found with numpy.digitize."""
    conf, correct = p.max(1), (p.argmax(1) == y)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges, right=True) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return ece


@pytest.mark.parametrize("n_bins", [1, 2, 10, 15])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_ece_against_independent_reference(n_bins, temperature):
    p, y = _probs(1000, 4, seed=3, temperature=temperature)
    y = np.where(np.random.default_rng(4).random(1000) < 0.6, p.argmax(1), y)  # accuracy well above chance
    assert metrics.expected_calibration_error(p, y, n_bins=n_bins) == pytest.approx(
        reference_ece(p, y, n_bins), abs=1e-12)


def test_ece_hand_computed_two_bins():
    p = np.array([
        [0.40, 0.30, 0.30],  # conf .40, correct
        [0.45, 0.35, 0.20],  # conf .45, wrong
        [0.90, 0.05, 0.05],  # conf .90, correct
        [0.80, 0.10, 0.10],  # conf .80, wrong
        [0.70, 0.20, 0.10],  # conf .70, correct
    ])
    y = np.array([0, 1, 0, 2, 0])
    # bin (0, .5]: n=2, acc .5, conf .425 ; bin (.5, 1]: n=3, acc 2/3, conf .8
    expected = 2 / 5 * abs(0.5 - 0.425) + 3 / 5 * abs(2 / 3 - 0.8)
    assert expected == pytest.approx(0.11)
    assert metrics.expected_calibration_error(p, y, n_bins=2) == pytest.approx(expected, abs=1e-12)


def test_ece_edge_confidence_goes_to_the_lower_bin():
    # a confidence exactly on an edge (0.5) belongs to the bin (0, 0.5]
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    table = metrics.reliability_table(p, np.array([1, 0]), n_bins=2)
    assert table["count"].tolist() == [1, 1]


def test_perfectly_calibrated_and_overconfident():
    p = np.array([[1.0, 0.0]] * 4)
    assert metrics.expected_calibration_error(p, np.array([0, 0, 0, 0])) == 0.0
    assert metrics.expected_calibration_error(p, np.array([0, 1, 1, 1])) == pytest.approx(0.75)


def test_reliability_table():
    p, y = _probs(400, 3, seed=5)
    table = metrics.reliability_table(p, y, n_bins=10)
    assert list(table.columns) == ["bin_lower", "bin_upper", "count", "confidence", "accuracy", "gap"]
    assert len(table) == 10 and table["count"].sum() == 400
    np.testing.assert_allclose(table["bin_lower"], np.arange(10) / 10)
    np.testing.assert_allclose(table["bin_upper"], np.arange(1, 11) / 10)
    used = table[table["count"] > 0]
    assert ((used["confidence"] > used["bin_lower"]) & (used["confidence"] <= used["bin_upper"])).all()
    np.testing.assert_allclose(used["gap"], used["accuracy"] - used["confidence"])
    empty = table[table["count"] == 0]
    assert empty["confidence"].isna().all() and empty["accuracy"].isna().all()
    assert len(empty) > 0  # max-probabilities of 3 classes never fall below 1/3


# --- confusion matrix ----------------------------------------------------------------------------------


def test_confusion_matrix_against_manual_count():
    rng = np.random.default_rng(6)
    target, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    manual = np.zeros((5, 5), dtype=int)
    for t, q in zip(target, pred):
        manual[t, q] += 1
    m = metrics.confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), num_classes=5)
    np.testing.assert_array_equal(m, manual)  # class 4 never occurs: an all-zero row and column
    assert m.sum() == 200 and np.trace(m) == (pred == target).sum()


# --- bad inputs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn, args, kwargs, pattern", [
    (metrics.top_k_accuracy, (np.zeros(3), np.zeros(3, dtype=int)), {}, r"scores must have shape \(N, C\)"),
    (metrics.top_k_accuracy, (np.zeros((3, 2)), np.zeros(3)), {}, r"target must be integer class indices"),
    (metrics.top_k_accuracy, (np.zeros((3, 2)), np.zeros(4, dtype=int)), {}, r"of shape \(3,\)"),
    (metrics.top_k_accuracy, (np.zeros((3, 2)), np.array([0, 1, 2])), {}, r"class outside \[0, 2\)"),
    (metrics.top_k_accuracy, (np.zeros((3, 2)), np.array([0, -1, 1])), {}, r"class outside"),
    (metrics.top_k_accuracy, (np.zeros((3, 2)), np.zeros(3, dtype=int)), {"k": 0}, r"k must be ≥ 1"),
    (metrics.top_k_accuracy, (np.zeros((3, 2)), np.zeros(3, dtype=int)), {"k": (1, 0)}, r"k must be ≥ 1"),
    (metrics.nll, (np.zeros((3, 2, 1)), np.zeros(3, dtype=int)), {}, r"^nll: scores must have shape"),
    (metrics.reliability_table, (np.full((3, 2), 0.5), np.zeros(3, dtype=int)), {"n_bins": 0}, r"n_bins must be ≥ 1"),
    (metrics.expected_calibration_error, (np.full((3, 2), 0.5), np.zeros((3, 1), dtype=int)), {},
     r"^reliability_table: target must be integer"),
])
def test_bad_inputs_raise_value_error(fn, args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        fn(*args, **kwargs)


def test_precision_at_k_against_a_loop():
    from lossbook.metrics import precision_at_k

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(30, 12, generator=g)
    positives = torch.rand(30, 12, generator=g) < 0.3
    for k in (1, 3, 12):
        expected = np.mean([positives[i, scores[i].argsort(descending=True)[:k]].sum().item() / k for i in range(30)])
        assert precision_at_k(scores, positives, k) == pytest.approx(expected)
    assert precision_at_k(scores, positives, 12) == pytest.approx(positives.float().mean().item())
    with pytest.raises(ValueError, match="bool matrix"):
        precision_at_k(scores, positives.int(), 1)
    with pytest.raises(ValueError, match="k must be an int"):
        precision_at_k(scores, positives, 13)
