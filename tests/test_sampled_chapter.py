"""Checks behind chapter 3 (sampled softmax, Partial FC, recommender losses): the facts its readings
rest on, tested on the library directly (no notebook run)."""

import math

import numpy as np
import pytest
import torch

import lossbook.functional as LF
from lossbook.lab import data
from lossbook.lab import experiments as ex
from lossbook.lab.chapter import PRESETS

CH3 = PRESETS["03_sampled_softmax"].scales


def _neg_log_dcg_and_scores(n_examples=400, n_items=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    scores = 2 * torch.rand(n_examples, n_items, generator=gen, dtype=torch.float64) - 1  # column 0: the positive
    rank = 1 + (scores[:, 1:] >= scores[:, :1]).sum(1)
    return torch.log(torch.log2(1.0 + rank.double())), torch.cat([scores[:, :1], scores], 1)


@pytest.mark.parametrize("tau_star", [0.05, 0.5, 1.0])
def test_psl_and_sl_bound_minus_log_dcg_and_psl_is_tighter(tau_star):
    # the chapter's DCG row: with the positive's own term (d = 0) in the sum, SL and PSL bound −log DCG from
    # above, and every PSL activation gives a gap no larger than SL's (σ(d) ≤ d), for cosine scores and τ = 2
    neg_log_dcg, with_self = _neg_log_dcg_and_scores()
    target = torch.zeros(len(with_self), dtype=torch.long)

    def surrogate(act):
        return LF.pairwise_softmax_loss(with_self, target, temperature=2.0, robust_temperature=tau_star,
                                        activation=act, reduction="none")

    sl = surrogate("identity")
    assert bool((sl >= neg_log_dcg - 1e-12).all())
    for act in ("tanh", "atan", "relu"):
        psl = surrogate(act)
        assert bool((psl >= neg_log_dcg - 1e-12).all()), act
        assert bool((psl <= sl + 1e-12).all()), act


def test_self_column_adds_the_positives_own_term():
    # appending the positive as an extra column adds exp(σ(0)/τ*) = 1 inside the log: log(1 + Σ_j ...)
    x = torch.tensor([[0.3, -0.2, 0.5, 0.1]], dtype=torch.float64)
    base = LF.pairwise_softmax_loss(x, torch.zeros(1, dtype=torch.long), temperature=2.0, robust_temperature=0.05,
                                    reduction="none")
    with_self = LF.pairwise_softmax_loss(torch.cat([x[:, :1], x], 1), torch.zeros(1, dtype=torch.long),
                                         temperature=2.0, robust_temperature=0.05, reduction="none")
    assert torch.allclose(with_self, torch.log1p(torch.exp(base)), atol=1e-12)


def test_one_negative_gives_the_activation_over_tau_star():
    # the chapter's figure draws exp(σ(d)/τ*) through the loss with one negative at difference d (τ = 1)
    d = torch.linspace(-1, 1, 21, dtype=torch.float64)
    pair = torch.stack([torch.zeros_like(d), d], 1)
    value = LF.pairwise_softmax_loss(pair, torch.zeros(len(d), dtype=torch.long), temperature=1.0,
                                     robust_temperature=0.05, activation="tanh", reduction="none")
    assert torch.allclose(value, (math.log(2.0) + torch.nn.functional.logsigmoid(2 * d)) / 0.05, atol=1e-10)


def test_false_negative_pool_is_disjoint_from_test_items():
    # the chapter splits each user's 25 non-test items into 15 trained, 5 validation, 5 unobserved positives
    # (the false-negative pool); the pool must never contain a test item or a trained item
    rec = data.latent_factor_interactions(50, 200, per_user=30, test_per_user=5, seed=3)
    fit, val, hidden = rec.train[:, :15], rec.train[:, 15:20], rec.train[:, 20:]
    assert not bool((hidden[:, :, None] == rec.test[:, None, :]).any())
    assert not bool((hidden[:, :, None] == fit[:, None, :]).any())
    assert not bool((val[:, :, None] == rec.test[:, None, :]).any())


@pytest.mark.parametrize("scale", ["smoke", "book", "paper"])
def test_presets_fit_the_chapters_readings(scale):
    cfg = CH3[scale]
    assert cfg["rec_fn"][0] in cfg["rec_negatives"]  # the false-negative runs reuse the clean runs at that S
    assert {1.0, 0.1} <= set(cfg["pfc_rates"])  # the Partial FC claim reads r = 0.1 against r = 1
    assert max(cfg["lm_S"]) < cfg["lm_vocab"]
    assert cfg["lm_seeds"] <= cfg["n_seeds"] and cfg["rec_seeds"] <= cfg["n_seeds"]
    assert cfg["pfc_curve_seeds"] <= cfg["n_seeds"]
    if scale != "smoke":
        assert cfg["n_seeds"] >= 10  # non-inferiority of Partial FC with at least ten seeds
        assert cfg["lm_seeds"] >= 5 and cfg["rec_seeds"] >= 5


def test_share_reading_of_equivalent_importance():
    # "equivalently important": the loss effect's share of the two effects within (1/3, 2/3), TOST against ½
    rng = np.random.default_rng(0)
    half = np.full(8, 0.5)
    same = 0.5 + 0.02 * rng.standard_normal(8)
    lopsided = 0.1 + 0.02 * rng.standard_normal(8)  # the ratio effect nine times the loss effect
    assert ex.verdict_tost(same, half, delta=1 / 6).verdict == ex.SUPPORTED
    assert ex.verdict_tost(lopsided, half, delta=1 / 6).verdict == ex.NOT_SUPPORTED
