"""Calibration metrics: ECE with equal-width and equal-mass bins, adaptive ECE, MCE, the over/under
split, classwise ECE, the Brier score and the reliability table, against torchmetrics' calibration
error and brute-force references written one bin (or one row) at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook import metrics

torchmetrics_ce = pytest.importorskip("torchmetrics.functional.classification").multiclass_calibration_error


def _probs(n=600, c=4, seed=0, temperature=1.0, accuracy_boost=0.6):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2 / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, c, size=n)
    y = np.where(rng.random(n) < accuracy_boost, p.argmax(1), y)  # accuracy well above chance
    return p, y


def brute_force_bins(conf, correct, n_bins, binning):
    """Bins as lists of row indices: equal width by testing lo < conf ≤ hi row by row; equal mass by
    walking the sorted rows and closing a bin after ⌈(N − taken)/(bins left)⌉ rows."""
    n = len(conf)
    if binning == "width":
        bins = []
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            bins.append([i for i in range(n) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)])
        return bins
    order = sorted(range(n), key=lambda i: (conf[i], i))
    bins, start = [], 0
    for b in range(n_bins):
        size = -(-(n - start) // (n_bins - b))
        bins.append(order[start:start + size])
        start += size
    return bins


def brute_force_ece(conf, correct, n_bins, binning, kind="ece"):
    n, total, over, under, worst = len(conf), 0.0, 0.0, 0.0, 0.0
    for rows in brute_force_bins(conf, correct, n_bins, binning):
        if not rows:
            continue
        gap = np.mean([correct[i] for i in rows]) - np.mean([conf[i] for i in rows])
        total += len(rows) / n * abs(gap)
        over += len(rows) / n * max(-gap, 0.0)
        under += len(rows) / n * max(gap, 0.0)
        worst = max(worst, abs(gap))
    return {"ece": total, "over": over, "under": under, "mce": worst}[kind]


# --- against torchmetrics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_ece_and_mce_match_torchmetrics(n_bins, temperature):
    p, y = _probs(2000, 5, seed=1, temperature=temperature)
    edges = np.linspace(0, 1, n_bins + 1)
    # torchmetrics bins [a, b), ours (a, b]: the two agree when no confidence sits on an edge
    assert not np.isin(p.max(1), edges).any()
    pt, yt = torch.from_numpy(p), torch.from_numpy(y)
    want_ece = float(torchmetrics_ce(pt, yt, num_classes=5, n_bins=n_bins, norm="l1"))
    want_mce = float(torchmetrics_ce(pt, yt, num_classes=5, n_bins=n_bins, norm="max"))
    assert metrics.expected_calibration_error(p, y, n_bins=n_bins) == pytest.approx(want_ece, abs=1e-6)
    assert metrics.maximum_calibration_error(p, y, n_bins=n_bins) == pytest.approx(want_mce, abs=1e-6)


# --- against brute force ------------------------------------------------------------------------------------


@pytest.mark.parametrize("binning", ["width", "mass"])
@pytest.mark.parametrize("n, n_bins", [(600, 15), (601, 7), (10, 3), (5, 8)])
def test_ece_mce_and_split_match_brute_force(binning, n, n_bins):
    p, y = _probs(n, 4, seed=n + n_bins, temperature=0.5)
    conf, correct = p.max(1), (p.argmax(1) == y).astype(float)
    kwargs = {"n_bins": n_bins, "binning": binning}
    assert metrics.expected_calibration_error(p, y, **kwargs) == pytest.approx(
        brute_force_ece(conf, correct, n_bins, binning), abs=1e-12)
    assert metrics.maximum_calibration_error(p, y, **kwargs) == pytest.approx(
        brute_force_ece(conf, correct, n_bins, binning, "mce"), abs=1e-12)
    split = metrics.calibration_error_split(p, y, **kwargs)
    assert split.over == pytest.approx(brute_force_ece(conf, correct, n_bins, binning, "over"), abs=1e-12)
    assert split.under == pytest.approx(brute_force_ece(conf, correct, n_bins, binning, "under"), abs=1e-12)
    assert split.ece == pytest.approx(split.over + split.under, abs=1e-15)
    assert split.ece == pytest.approx(metrics.expected_calibration_error(p, y, **kwargs), abs=1e-12)


def test_adaptive_ece_is_the_equal_mass_ece_and_bins_hold_equal_counts():
    p, y = _probs(1003, 4, seed=7)
    assert metrics.adaptive_calibration_error(p, y, n_bins=10) == \
        metrics.expected_calibration_error(p, y, n_bins=10, binning="mass")
    table = metrics.reliability_table(p, y, n_bins=10, binning="mass")
    assert table["count"].tolist() == [101, 101, 101] + [100] * 7
    # bins are consecutive ranges of the sorted confidences
    assert (table["bin_lower"] <= table["confidence"]).all() and (table["confidence"] <= table["bin_upper"]).all()
    assert (table["bin_upper"].to_numpy()[:-1] <= table["bin_lower"].to_numpy()[1:]).all()


def test_split_signs_on_over_and_under_confident_predictions():
    rng = np.random.default_rng(8)
    p, _ = _probs(5000, 5, seed=8)
    y = np.array([rng.choice(5, p=row) for row in p])  # labels drawn from p: p is calibrated
    def powered(a):
        q = p ** a
        return q / q.sum(1, keepdims=True)
    calibrated = metrics.calibration_error_split(p, y)
    over = metrics.calibration_error_split(powered(3.0), y)
    under = metrics.calibration_error_split(powered(1 / 3), y, binning="mass")
    assert calibrated.ece < 0.03
    assert over.over > 10 * over.under and over.ece > 5 * calibrated.ece  # sharpened: over-confident
    assert under.under > 10 * under.over and under.ece > 5 * calibrated.ece  # flattened: under-confident


def brute_force_classwise(p, y, n_bins):
    """Kull et al.'s classwise ECE: per class k, equal-width bins of p[:, k] against 1[y = k]; mean over k."""
    per_class = []
    for k in range(p.shape[1]):
        conf, hit = p[:, k], (y == k).astype(float)
        per_class.append(brute_force_ece(conf, hit, n_bins, "width"))
    return float(np.mean(per_class))


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_classwise_ece_matches_brute_force(n_bins):
    p, y = _probs(500, 4, seed=9)
    assert metrics.classwise_calibration_error(p, y, n_bins=n_bins) == pytest.approx(
        brute_force_classwise(p, y, n_bins), abs=1e-12)
    # a one-hot prediction of the right class is perfectly calibrated classwise too
    onehot = np.eye(4)[y]
    assert metrics.classwise_calibration_error(onehot, y) == 0.0


def test_brier_score_against_rows():
    p, y = _probs(300, 6, seed=10)
    rows = [sum((p[i, k] - (k == y[i])) ** 2 for k in range(6)) for i in range(300)]
    assert metrics.brier_score(p, y) == pytest.approx(np.mean(rows), rel=1e-12)
    assert metrics.brier_score(torch.from_numpy(p), torch.from_numpy(y)) == pytest.approx(np.mean(rows))
    assert metrics.brier_score(np.eye(3)[[0, 1]], np.array([0, 1])) == 0.0
    assert metrics.brier_score(np.eye(3)[[0, 1]], np.array([1, 0])) == 2.0


def test_reliability_table_default_is_unchanged_and_mass_has_the_same_columns():
    p, y = _probs(400, 3, seed=5)
    width = metrics.reliability_table(p, y, n_bins=10)
    assert width.equals(metrics.reliability_table(p, y, n_bins=10, binning="width"))
    mass = metrics.reliability_table(p, y, n_bins=10, binning="mass")
    assert list(mass.columns) == list(width.columns)
    assert mass["count"].sum() == width["count"].sum() == 400


def test_empty_inputs_give_nan():
    p, y = np.zeros((0, 3)), np.zeros(0, dtype=int)
    for fn in (metrics.expected_calibration_error, metrics.adaptive_calibration_error,
               metrics.maximum_calibration_error, metrics.classwise_calibration_error, metrics.brier_score):
        assert np.isnan(fn(p, y))
    assert np.isnan(metrics.calibration_error_split(p, y).ece)


@pytest.mark.parametrize("fn", [metrics.reliability_table, metrics.expected_calibration_error,
                                metrics.maximum_calibration_error, metrics.calibration_error_split,
                                metrics.classwise_calibration_error])
def test_bad_binning_and_n_bins_are_refused(fn):
    p, y = _probs(20, 3, seed=1)
    with pytest.raises(ValueError, match=r"binning must be one of \('width', 'mass'\).*got 'quantile'"):
        fn(p, y, binning="quantile")
    with pytest.raises(ValueError, match=r"n_bins must be ≥ 1 \(an int\); got 2\.5"):
        fn(p, y, n_bins=2.5)
    with pytest.raises(ValueError, match=r"target must be integer class indices"):
        fn(p, y.astype(float))
