"""Offline data: digits splits, the Gaussian mixture with a known posterior, noise and long-tail transforms."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from lossbook import data

# --- load_digits ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.fixture(scope="module")
def raw_digits():
    return data.load_digits(standardize=False)


def test_digits_split_sizes(digits):
    # sklearn's train_test_split rounds the test side up: 0.2·1797 → 360, then 0.25·1437 → 360
    assert digits.sizes() == {"train": 1077, "val": 360, "test": 360}
    assert digits.num_classes == 10 and digits.num_features == 64
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.x_train.shape == (1077, 64)


def test_digits_custom_fractions():
    s = data.load_digits(val_fraction=0.1, test_fraction=0.3)
    assert s.sizes()["test"] == math.ceil(0.3 * 1797)
    assert sum(s.sizes().values()) == 1797


def test_digits_splits_are_stratified(digits):
    overall = torch.bincount(torch.cat([digits.y_train, digits.y_val, digits.y_test]), minlength=10).double()
    overall /= overall.sum()
    for y in (digits.y_train, digits.y_val, digits.y_test):
        frac = torch.bincount(y, minlength=10).double() / len(y)
        assert (frac - overall).abs().max() < 2.0 / len(y)  # within about one sample per class


def test_digits_deterministic_and_seed_dependent(digits):
    again = data.load_digits()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(digits, name), getattr(again, name))
    other = data.load_digits(split_seed=1)
    assert not torch.equal(other.y_test, digits.y_test)


def test_digits_splits_partition_the_dataset(raw_digits):
    from sklearn.datasets import load_digits as sk_load

    x, _ = sk_load(return_X_y=True)
    rows = lambda a: Counter(map(tuple, np.round(np.asarray(a) * 16).astype(int)))
    parts = [rows(raw_digits.x_train), rows(raw_digits.x_val), rows(raw_digits.x_test)]
    assert sum(parts, Counter()) == Counter(map(tuple, x.astype(int)))  # every image exactly once
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not set(parts[a]) & set(parts[b]), "an image appears in two splits"


def test_digits_standardised_with_train_statistics_only(digits, raw_digits):
    mu = raw_digits.x_train.mean(0)
    sd = torch.from_numpy(raw_digits.x_train.numpy().std(0)) + 1e-3
    for split in ("x_train", "x_val", "x_test"):
        torch.testing.assert_close(getattr(digits, split), (getattr(raw_digits, split) - mu) / sd, rtol=1e-5, atol=1e-5)
    assert digits.x_train.mean(0).abs().max() < 1e-5
    assert digits.x_test.mean(0).abs().max() > 1e-3  # test features are not centred on their own mean
    assert raw_digits.x_train.min() >= 0 and raw_digits.x_train.max() <= 1


def test_digits_bad_fractions():
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        data.load_digits(val_fraction=0.6, test_fraction=0.5)


def test_splits_to_device(digits, device):
    moved = digits.to(device)
    assert moved.x_test.device.type == device.type and moved.num_classes == 10


# --- GaussianMixture ------------------------------------------------------------------------------------


def test_posterior_is_bayes_rule_with_gaussian_densities():
    priors = [0.5, 0.3, 0.2]
    gm = data.GaussianMixture(num_classes=3, dim=2, separation=1.5, sigma=0.8, priors=priors, seed=3)
    x, _ = gm.sample(50, seed=1)
    x64 = x.double().numpy()
    joint = np.stack([
        priors[k] * multivariate_normal(mean=gm.means[k].numpy(), cov=0.8**2 * np.eye(2)).pdf(x64) for k in range(3)
    ], axis=1)
    expected = joint / joint.sum(1, keepdims=True)
    post = gm.posterior(x)
    assert post.dtype == torch.float64
    np.testing.assert_allclose(post.numpy(), expected, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(post.sum(1), torch.ones(50, dtype=torch.float64), rtol=0, atol=1e-12)


def test_means_have_the_stated_norm():
    gm = data.GaussianMixture(num_classes=4, dim=5, separation=3.0, seed=0)
    torch.testing.assert_close(gm.means.norm(dim=1), torch.full((4,), 3.0, dtype=torch.float64))


def test_samples_reproducible_by_seed():
    gm = data.GaussianMixture(seed=0)
    x1, y1 = gm.sample(100, seed=5)
    x2, y2 = data.GaussianMixture(seed=0).sample(100, seed=5)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = gm.sample(100, seed=6)
    assert not torch.equal(x1, x3)
    assert x1.dtype == torch.float32 and y1.dtype == torch.int64


def test_class_frequencies_match_priors():
    priors = torch.tensor([0.6, 0.3, 0.1])
    gm = data.GaussianMixture(num_classes=3, priors=priors, seed=1)
    _, y = gm.sample(40_000, seed=2)
    freq = torch.bincount(y, minlength=3).double() / len(y)
    assert (freq - priors.double()).abs().max() < 0.01  # ~4 standard errors


def test_priors_as_a_float32_tensor_are_accepted():
    # regression: float32 [0.6, 0.3, 0.1] sums to 1.00000003 in float64 and used to be rejected
    gm = data.GaussianMixture(num_classes=3, priors=torch.tensor([0.6, 0.3, 0.1]))
    assert gm.priors.dtype == torch.float64
    assert abs(float(gm.priors.sum()) - 1.0) < 1e-15
    torch.testing.assert_close(gm.priors, torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64), rtol=1e-6, atol=0)


def test_bayes_error_matches_empirical_error_of_the_posterior_argmax():
    gm = data.GaussianMixture(num_classes=3, dim=2, separation=1.5, seed=4)
    x, y = gm.sample(100_000, seed=7)
    empirical = (gm.posterior(x).argmax(1) != y).double().mean().item()
    bayes = gm.bayes_error(100_000, seed=8)
    assert 0.05 < bayes < 0.6
    assert abs(bayes - empirical) < 0.01  # standard error ≈ 0.0015 each


@pytest.mark.parametrize("kwargs, pattern", [
    ({"num_classes": 1}, "num_classes must be ≥ 2"),
    ({"dim": 0}, "dim must be ≥ 1"),
    ({"sigma": 0.0}, "sigma must be > 0"),
    ({"num_classes": 3, "priors": [0.5, 0.5]}, "priors must be 3 positive numbers summing to 1"),
    ({"num_classes": 2, "priors": [0.7, 0.7]}, "summing to 1"),
    ({"num_classes": 2, "priors": [1.0, 0.0]}, "positive"),
])
def test_gaussian_mixture_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.GaussianMixture(**kwargs)


# --- label noise ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.13, 0.5, 1.0])
def test_symmetric_noise_flips_exactly_round_rate_n(rate):
    y = torch.arange(1001) % 7
    saved = y.clone()
    noisy, is_noisy = data.symmetric_noise(y, rate, 7, seed=0)
    assert torch.equal(y, saved), "input mutated"
    assert int(is_noisy.sum()) == round(rate * 1001)
    assert torch.equal(noisy != y, is_noisy)  # flipped labels always change, the rest stay
    assert noisy.min() >= 0 and noisy.max() < 7 and noisy.dtype == torch.int64


def test_symmetric_noise_uniform_over_other_classes_and_reproducible():
    y = torch.zeros(30_000, dtype=torch.long)
    noisy, flip = data.symmetric_noise(y, 0.5, 4, seed=1)
    counts = torch.bincount(noisy[flip], minlength=4).double() / flip.sum()
    assert counts[0] == 0
    assert (counts[1:] - 1 / 3).abs().max() < 0.02
    again, _ = data.symmetric_noise(y, 0.5, 4, seed=1)
    assert torch.equal(noisy, again)
    other, _ = data.symmetric_noise(y, 0.5, 4, seed=2)
    assert not torch.equal(noisy, other)


def test_asymmetric_noise_flips_only_mapped_classes_to_their_partner():
    mapping = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
    y = torch.arange(20_000) % 10
    saved = y.clone()
    noisy, flip = data.asymmetric_noise(y, 0.3, mapping, seed=0)
    assert torch.equal(y, saved), "input mutated"
    assert torch.equal(noisy != y, flip)
    for src in range(10):
        rows = y == src
        if src in mapping:
            assert set(noisy[rows & flip].tolist()) == {mapping[src]}
            assert abs(flip[rows].double().mean().item() - 0.3) < 0.03  # 2000 rows: se ≈ 0.01
        else:
            assert not flip[rows].any()


@pytest.mark.parametrize("fn, args, pattern", [
    (data.symmetric_noise, (torch.tensor([0, 1]), 1.5, 2), "rate must be in"),
    (data.symmetric_noise, (torch.tensor([0, 5]), 0.1, 2), r"labels must lie in \[0, 2\)"),
    (data.asymmetric_noise, (torch.tensor([0, 1]), -0.1, {0: 1}), "rate must be in"),
])
def test_noise_bad_arguments(fn, args, pattern):
    with pytest.raises(ValueError, match=pattern):
        fn(*args, seed=0)


def test_noise_rejects_float_labels():
    with pytest.raises(TypeError, match="1-D int64"):
        data.symmetric_noise(torch.tensor([0.0, 1.0]), 0.1, 2, seed=0)


# --- long tail ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("imbalance", [1.0, 10.0, 100.0])
def test_long_tail_follows_the_exponential_profile(imbalance):
    k = 6
    sizes = [400, 450, 500, 550, 600, 650]  # unbalanced input: the head size is the smallest class
    y = torch.cat([torch.full((s,), j) for j, s in enumerate(sizes)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    x = torch.stack([y.double(), torch.arange(len(y)).double()], 1)  # column 0 remembers the label
    saved = x.clone()
    xs, ys = data.long_tail(x, y, k, imbalance=imbalance, seed=0)
    assert torch.equal(x, saved)
    assert torch.equal(xs[:, 0].long(), ys), "features and labels were separated"
    assert len(set(xs[:, 1].tolist())) == len(ys), "a row was kept twice"
    counts = torch.bincount(ys, minlength=k).double()
    expected = torch.tensor([400 * imbalance ** (-j / (k - 1)) for j in range(k)], dtype=torch.float64)
    assert (counts - expected).abs().max() <= 1.0
    assert (counts[:-1] >= counts[1:]).all()
    assert counts[0] / counts[-1] == pytest.approx(imbalance, rel=0.11)


def test_long_tail_reproducible_and_rejects_bad_imbalance():
    y = torch.arange(1000) % 5
    x = torch.randn(1000, 3)
    a = data.long_tail(x, y, 5, imbalance=20, seed=3)
    b = data.long_tail(x, y, 5, imbalance=20, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="imbalance .* must be ≥ 1"):
        data.long_tail(x, y, 5, imbalance=0.5, seed=0)
