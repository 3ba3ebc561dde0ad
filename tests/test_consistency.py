"""H-consistency machinery of the comp-sum chapter: T_τ, its inverse Γ_τ, excess risks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lossbook.lab.consistency import consistency_trajectory
from lossbook.lab.data import GaussianMixture
from lossbook.softmax import (
    comp_sum_bayes_risk,
    comp_sum_bound,
    comp_sum_calibration,
    comp_sum_conditional_risk,
    excess_risks,
)

TAUS = [0.0, 0.3, 0.5, 1.0, 1.5, 1.9, 2.0, 3.0]


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_calibration_function_is_a_valid_bound(tau, n):
    """T_τ(t) never exceeds the excess surrogate risk of any (posterior, prediction) pair whose
    excess 0-1 risk is t: that is what makes Γ_τ = T_τ⁻¹ an upper bound."""
    rng = np.random.default_rng(n * 100 + int(tau * 10))
    eta = torch.tensor(rng.dirichlet(np.full(n, 0.5), size=20_000))
    p = torch.tensor(rng.dirichlet(np.full(n, 0.5), size=20_000))
    t = (eta.max(1).values - eta.gather(1, p.argmax(1, keepdim=True)).squeeze(1)).numpy()
    regret = (comp_sum_conditional_risk(p, eta, tau) - comp_sum_bayes_risk(eta, tau)).numpy()
    assert (regret - comp_sum_calibration(t, tau, n)).min() >= -1e-9


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("t", [0.1, 0.4, 0.8])
def test_bound_is_attained_for_two_classes_when_tau_at_most_one(tau, t):
    """For n = 2 the worst case is η = ((1+t)/2, (1−t)/2) predicted as a tie: T_τ(t) is its regret."""
    eta = torch.tensor([[(1 + t) / 2, (1 - t) / 2]], dtype=torch.float64)
    tie = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    regret = float(comp_sum_conditional_risk(tie, eta, tau) - comp_sum_bayes_risk(eta, tau))
    assert comp_sum_calibration(t, tau, 2) == pytest.approx(regret, rel=1e-9)


def test_known_closed_forms():
    t = np.array([0.0, 0.3, 0.9])
    np.testing.assert_allclose(comp_sum_calibration(t, 0.0, 7), 1 - np.sqrt(1 - t**2), rtol=1e-12)
    np.testing.assert_allclose(comp_sum_calibration(t, 2.0, 4), t / 4, rtol=1e-12)
    eps = np.array([1e-4, 1e-2, 0.2])
    assert np.all(comp_sum_bound(eps, 1.0, 10) <= np.sqrt(2 * eps) + 1e-12)  # Γ₁(ε) ≤ √(2ε)
    assert comp_sum_calibration(1.0, 1.0, 3) == pytest.approx(np.log(2))


@pytest.mark.parametrize("tau", TAUS)
def test_bound_inverts_calibration_and_is_monotone(tau):
    t = np.linspace(0.0, 0.99, 50)
    np.testing.assert_allclose(comp_sum_bound(comp_sum_calibration(t, tau, 4), tau, 4), t, atol=1e-9)
    eps = np.geomspace(1e-8, 10, 60)
    g = comp_sum_bound(eps, tau, 4)
    assert np.all(np.diff(g) >= 0) and g.max() == 1.0


def test_calibration_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        comp_sum_calibration(0.1, 1.0, 1)
    with pytest.raises(ValueError, match="tau"):
        comp_sum_calibration(0.1, -0.5, 3)


def test_excess_risks_vanish_at_bayes_scores_and_are_positive_elsewhere():
    gm = GaussianMixture(4, 3, separation=2.0, seed=1)
    x, _ = gm.sample(2000, seed=2)
    eta = gm.posterior(x)
    for tau in (0.0, 0.5, 1.0, 1.5):
        best = torch.log(eta) / (2 - tau)  # log of the comp-sum minimiser, up to a constant
        r = excess_risks(best, eta, tau)
        assert abs(r["excess_surrogate"]) < 1e-12 and r["excess_zero_one"] == 0.0
        worse = excess_risks(torch.zeros_like(eta), eta, tau)
        assert worse["excess_surrogate"] > 1e-3 and worse["excess_zero_one"] > 0.1


def test_consistency_trajectory_records_every_epoch_under_the_bound():
    gm = GaussianMixture(3, 2, separation=2.0, seed=0)
    rows = pd.DataFrame(consistency_trajectory(gm, 1.0, seed=0, n_train=300, n_eval=500, epochs=3, lr=0.05))
    assert list(rows["epoch"]) == [0, 1, 2, 3]
    assert (rows["excess_zero_one"] <= rows["bound"] + 1e-12).all()
    assert rows["excess_surrogate"].iloc[-1] < rows["excess_surrogate"].iloc[0]
