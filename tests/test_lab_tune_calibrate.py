"""lossbook.lab.calibrate (temperature scaling, per-split metrics) and lossbook.lab.tune (the same
tuning budget for every compared setting, chosen on validation)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lossbook.lab import calibrate, data, tune


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20_000, 5, generator=g, dtype=torch.float64) * 2
    y = torch.multinomial(torch.softmax(base, 1), 1, generator=g).squeeze(1)
    # the model reports logits 3 times too large: the fitted temperature undoes it
    t = calibrate.fit_temperature(3 * base, y)
    assert t == pytest.approx(3.0, rel=0.05)
    nll = lambda s: float(torch.nn.functional.cross_entropy(3 * base / s, y))
    assert nll(t) <= min(nll(t * 0.9), nll(t * 1.1))


def test_fit_temperature_checks_its_input():
    with pytest.raises(ValueError, match="logits must be"):
        calibrate.fit_temperature(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="bounds"):
        calibrate.fit_temperature(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), bounds=(0, 1))


def test_probability_metrics_overconfidence_is_confidence_minus_accuracy():
    logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    y = torch.tensor([0, 1, 1, 1])
    m = calibrate.probability_metrics(logits, y, prefix="test_")
    conf = float(torch.softmax(logits.double(), 1).max(1).values.mean())
    assert m["test_accuracy"] == 0.75
    assert m["test_confidence"] == pytest.approx(conf)
    assert m["test_overconfidence"] == pytest.approx(conf - 0.75)
    assert set(m) == {"test_accuracy", "test_nll", "test_ece", "test_confidence", "test_overconfidence"}
    hot = calibrate.probability_metrics(logits, y, temperature=0.5)
    assert hot["confidence"] > m["test_confidence"]


def test_split_metrics_fits_the_temperature_on_validation_only():
    splits = data.load_digits()
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    out = calibrate.split_metrics(model, splits, temperature_scaling=True)
    z_val = model(splits.x_val).detach()
    assert out["temperature"] == pytest.approx(calibrate.fit_temperature(z_val, splits.y_val))
    assert {"val_accuracy", "test_accuracy", "test_ts_ece", "test_ts_nll"} <= set(out)
    assert out["test_ts_accuracy"] == out["test_accuracy"]  # a temperature does not change the argmax
    assert "temperature" not in calibrate.split_metrics(model, splits)


def _fake(seed, loss, lr):
    """Validation accuracy peaks at lr = 0.1 for "A" and past the grid's upper edge for "B"."""
    best = {"A": 0.1, "B": 10.0}[loss]
    score = -abs(math.log10(lr) - math.log10(best)) + 0.001 * seed
    return {"val_accuracy": score, "test_accuracy": -score}


def test_tune_each_gives_every_value_the_same_grid_and_extends_edges():
    runs, sel = tune.tune_each(_fake, axis="loss", values=["A", "B"], grid={"lr": [0.01, 0.1, 1.0]},
                               seeds=[0, 1], metric="accuracy", max_extensions=1)
    assert sel["A"].choice == {"lr": 0.1} and not sel["A"].on_edge and sel["A"].extensions == 0
    assert sel["B"].choice == {"lr": 10.0} and sel["B"].on_edge and sel["B"].extensions == 1
    counts = runs.groupby("loss").size()
    assert counts["A"] == 6 and counts["B"] == 8  # 3 rates × 2 seeds, and B's extension
    with pytest.raises(ValueError, match="cannot also be tuned"):
        tune.tune_each(_fake, axis="lr", values=[1], grid={"lr": [1]}, seeds=[0], metric="accuracy")


def test_run_chosen_reuses_the_tuning_runs():
    runs, sel = tune.tune_each(_fake, axis="loss", values=["A"], grid={"lr": [0.01, 0.1, 1.0]}, seeds=[0, 1],
                               metric="accuracy")
    calls = []

    def counted(seed, loss, lr):
        calls.append(seed)
        return _fake(seed, loss, lr)

    out = tune.run_chosen(counted, sel, axis="loss", seeds=[0, 1, 2, 3], runs=runs)
    assert calls == [2, 3]
    assert list(out["seed"]) == [0, 1, 2, 3] and set(out["lr"]) == {0.1}
    assert isinstance(out, pd.DataFrame) and "test_accuracy" in out


def test_fewer_per_class_keeps_a_fixed_stratified_subset():
    splits = data.load_digits()
    few = tune.fewer_per_class(splits, 7, seed=3)
    assert np.bincount(few.y_train.numpy()).tolist() == [7] * 10
    assert torch.equal(few.x_test, splits.x_test) and torch.equal(few.y_val, splits.y_val)
    again = tune.fewer_per_class(splits, 7, seed=3)
    assert torch.equal(few.x_train, again.x_train)
    with pytest.raises(ValueError, match="per_class"):
        tune.fewer_per_class(splits, 0)
    with pytest.raises(ValueError, match="only"):
        tune.fewer_per_class(splits, 10_000)
