"""Offline data: digits splits, the Gaussian mixture with a known posterior, noise and long-tail transforms."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from lossbook.lab import data

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


# --- vmf_identities: default output pinned; per-sample quality ------------------------------------------------

# sha256 of vmf_identities' outputs computed with the code *before* the quality argument was added: with
# default arguments the draw must never change (chapters and golden notebooks depend on it). x (float32) and
# y are hashed as they are; centres and latent (float64) after a cast to float32, which absorbs last-bit
# differences of libm between platforms while catching any change of the draw.
_VMF_BEFORE_QUALITY = [
    ({}, "b95c7ec67e9a18363533dae95a21f59af32207e08284451462253721271785b4",
     "67df1a6832c7011f8be85aa7c6b88a171501a749e26aa21af6871fc5a855b777",
     "4cd32abcc82ca24d6b41907513cd54f70764286689ab5e437be32b19adadc59b",
     "7502a1635f98a2fd43bb40dd11953aee643c0ce956321852d44d84263089a2b2"),
    ({"seed": 7, "world_seed": 2, "gain": 2.0, "nuisance_scale": 0.5},
     "1ed27476ed7733a850781bf0bf523cc8547fe3aef8ec3d4c97b5f774d08e2568",
     "fe7ed1db96f1dce2cd4d11489a1d26e80311e131da852b0f0df336a4d1cd2308",
     "2e7ccbcfd3a19206b900245caaf1006cb754e2260a303b46e5f59371a264c965",
     "b0a23af19acc24f4a6972535129d514ba3b063b3c1a2625684723c7e3081e272"),
]


def _sha256(t: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("kwargs, hx, hy, hc, hl", _VMF_BEFORE_QUALITY)
def test_vmf_identities_default_output_unchanged(kwargs, hx, hy, hc, hl):
    size = (20, 5) if not kwargs else (50, 4)
    ids = data.vmf_identities(*size, **kwargs)
    assert (_sha256(ids.x), _sha256(ids.y), _sha256(ids.centres.float()), _sha256(ids.latent.float())) == (
        hx, hy, hc, hl)
    again = data.vmf_identities(*size, **kwargs, quality=None)
    for name in ("x", "y", "centres", "latent", "quality"):
        assert torch.equal(getattr(ids, name), getattr(again, name))
    assert ids.quality.dtype == torch.float64 and torch.equal(ids.quality, torch.ones(len(ids.y), dtype=torch.float64))


def test_identities_built_without_quality_get_ones():
    ids = data.vmf_identities(3, 2)
    old_style = data.Identities(ids.x, ids.y, ids.centres, ids.latent)
    assert torch.equal(old_style.quality, torch.ones(6, dtype=torch.float64))


def test_vmf_identities_quality_formula_and_unchanged_draws():
    clean = data.vmf_identities(40, 10, dim=8, seed=5)
    ids = data.vmf_identities(40, 10, dim=8, seed=5, quality=(0.3, 0.9))
    q = ids.quality
    assert q.shape == (400,) and q.dtype == torch.float64
    assert q.min() >= 0.3 and q.max() < 0.9 and q.std() > 0.1
    assert torch.equal(ids.centres, clean.centres) and torch.equal(ids.y, clean.y)
    # u = q z + sqrt(1 - q²) ξ⊥: a unit vector at cosine exactly q from the clean draw z
    torch.testing.assert_close(ids.latent.norm(dim=1), torch.ones(400, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close((ids.latent * clean.latent).sum(1), q, rtol=0, atol=1e-12)
    # the identity part of the input is q·√dim·u: invert x = tanh(g·full·A) (A has full row rank)
    a = data._observation_map(8, 16, 64, 0)
    full = torch.linalg.lstsq(a.T, (torch.atanh(ids.x.double().clamp(-1 + 1e-7, 1 - 1e-7)) / 1.5).T).solution.T
    torch.testing.assert_close(full[:, :8] / math.sqrt(8), q[:, None] * ids.latent, rtol=0, atol=2e-3)  # x is float32, saturated rows lose digits
    # quality 1 everywhere (given per sample) leaves every sample, nuisance included, as without quality
    ones = data.vmf_identities(40, 10, dim=8, seed=5, quality=torch.ones(400))
    assert torch.equal(ones.x, clean.x) and torch.equal(ones.latent, clean.latent)
    # given qualities are used as they are
    given = torch.linspace(0.05, 1.0, 400, dtype=torch.float64)
    assert torch.equal(data.vmf_identities(40, 10, dim=8, seed=5, quality=given.numpy()).quality, given)


def test_vmf_identities_low_quality_is_harder_to_recognise():
    from scipy.special import ive

    dim, kappa = 16, 30.0
    ids = data.vmf_identities(100, 30, dim=dim, kappa=kappa, quality=(0.2, 1.0), seed=1)
    q, y = ids.quality.numpy(), ids.y.numpy()
    lat, centres = ids.latent.numpy(), ids.centres.numpy()
    cos = (lat * centres[y]).sum(1)
    nearest_ok = (lat @ centres.T).argmax(1) == y
    tercile = np.digitize(q, np.quantile(q, [1 / 3, 2 / 3]))
    mean_cos = [cos[tercile == t].mean() for t in range(3)]
    acc = [nearest_ok[tercile == t].mean() for t in range(3)]
    assert mean_cos[0] < mean_cos[1] < mean_cos[2] and acc[0] < acc[1] < acc[2]
    assert acc[2] - acc[0] > 0.3
    # E[μᵀu | q] = q·A(κ): the cosine divided by q averages to the clean mean resultant length
    ratio = cos / q
    a_kappa = ive(dim / 2, kappa) / ive(dim / 2 - 1, kappa)
    assert abs(ratio.mean() - a_kappa) < 4 * ratio.std() / math.sqrt(len(ratio))
    # observations: a nearest-class-mean classifier on x (means from the high-quality third) is worse on low q
    x = ids.x.numpy()
    means = np.stack([x[(y == k) & (tercile == 2)].mean(0) for k in range(100)])
    pred = ((x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y)[tercile == 0].mean() < (pred == y)[tercile == 1].mean()


def test_vmf_identities_quality_is_deterministic_by_seed():
    a = data.vmf_identities(10, 4, quality=(0.2, 1.0), seed=3)
    b = data.vmf_identities(10, 4, quality=(0.2, 1.0), seed=3)
    for name in ("x", "latent", "quality"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    c = data.vmf_identities(10, 4, quality=(0.2, 1.0), seed=4)
    assert not torch.equal(a.quality, c.quality)


@pytest.mark.parametrize("quality, pattern", [
    ((0.0, 1.0), r"0 < low ≤ high ≤ 1"),
    ((0.8, 0.2), r"0 < low ≤ high ≤ 1"),
    ((0.5, 1.5), r"0 < low ≤ high ≤ 1"),
    ("good", "pair"),
    ((0.1, 0.5, 0.9), "pair"),
    (torch.ones(5), r"one value per sample, shape \(6,\)"),
    (torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0]), r"in \(0, 1\]"),
])
def test_vmf_identities_quality_errors(quality, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.vmf_identities(3, 2, quality=quality)


# --- digits_identities -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits as sk_load

    return sk_load(return_X_y=True)


def test_digits_identities_split_by_class(sk_digits):
    _, labels = sk_digits
    d = data.digits_identities()
    assert d.train.classes == d.val.classes == (0, 1, 2, 3, 4, 5, 6) and d.heldout.classes == (7, 8, 9)
    assert d.num_identities == 7
    counts = np.bincount(labels, minlength=10)
    assert len(d.train) + len(d.val) == counts[:7].sum() and len(d.heldout) == counts[7:].sum()
    assert abs(len(d.val) - 0.2 * counts[:7].sum()) <= 1
    digits_seen = {part: {part_data.classes[i] for i in part_data.y.tolist()}
                   for part, part_data in (("train", d.train), ("val", d.val), ("heldout", d.heldout))}
    assert digits_seen["train"] == digits_seen["val"] == set(range(7)) and digits_seen["heldout"] == {7, 8, 9}
    assert not digits_seen["train"] & digits_seen["heldout"]
    for part in (d.train, d.val, d.heldout):
        assert part.x.shape == (len(part), 64) and part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert torch.equal(part.quality, torch.ones(len(part), dtype=torch.float64))
    assert d.train.x.mean(0).abs().max() < 1e-5  # standardised by the train part's statistics
    # stratified validation split
    frac_val = np.bincount(d.val.y.numpy(), minlength=7) / len(d.val)
    frac_all = counts[:7] / counts[:7].sum()
    assert np.abs(frac_val - frac_all).max() < 2 / len(d.val)


def test_digits_identities_clean_images_are_the_dataset(sk_digits):
    x, labels = sk_digits
    d = data.digits_identities(train_classes=(3, 1), heldout_classes=(9, 0), standardize=False, val_fraction=0.0)
    assert len(d.val) == 0 and d.train.classes == (3, 1)
    for part in (d.train, d.heldout):
        got = sorted(map(tuple, np.round(part.x.numpy() * 16).astype(int)))
        digits = [part.classes[i] for i in part.y.tolist()]
        want = sorted(map(tuple, x[np.isin(labels, part.classes)].astype(int)))
        assert got == want
        assert sorted(digits) == sorted(labels[np.isin(labels, part.classes)].tolist())


def test_digits_identities_degradation_follows_quality():
    from scipy.stats import spearmanr

    clean = data.digits_identities(standardize=False)
    d = data.digits_identities(quality=(0.1, 1.0), standardize=False, seed=2)
    for a, b in ((clean.train, d.train), (clean.heldout, d.heldout)):
        assert torch.equal(a.y, b.y)  # the same images in the same order, only degraded
        q = b.quality.numpy()
        assert q.min() >= 0.1 and q.max() < 1.0
        damage = np.linalg.norm(b.x.numpy() - a.x.numpy(), axis=1)
        assert spearmanr(damage, q).statistic < -0.7
    # deterministic by seed; quality 1 (given per image) changes nothing
    again = data.digits_identities(quality=(0.1, 1.0), standardize=False, seed=2)
    assert torch.equal(again.heldout.x, d.heldout.x) and torch.equal(again.train.quality, d.train.quality)
    assert not torch.equal(data.digits_identities(quality=(0.1, 1.0), seed=3).train.quality, d.train.quality)
    ones = data.digits_identities(quality=torch.ones(1797), standardize=False)
    assert torch.equal(ones.train.x, clean.train.x)
    # noise only / blur only: each degrades on its own
    for kwargs in ({"noise": 0.0}, {"blur": 0.0}):
        part = data.digits_identities(quality=(0.1, 0.2), standardize=False, **kwargs).train
        assert not torch.allclose(part.x, clean.train.x)


def test_digits_identities_to_device(device):
    d = data.digits_identities().to(device)
    assert d.heldout.x.device.type == device.type and d.train.quality.device.type == device.type


@pytest.mark.parametrize("kwargs, pattern", [
    ({"train_classes": (0, 1, 2, 7), "heldout_classes": (7, 8)}, r"disjoint .* \[7\]"),
    ({"heldout_classes": (9,)}, "at least two distinct digits"),
    ({"train_classes": (0, 1, 10)}, "digits in 0–9"),
    ({"train_classes": "ab"}, "sequence of digits"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
    ({"noise": -0.1}, "noise and blur must be ≥ 0"),
    ({"quality": (0.5, 0.1)}, r"0 < low ≤ high ≤ 1"),
    ({"quality": torch.ones(10)}, r"shape \(1797,\)"),
])
def test_digits_identities_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.digits_identities(**kwargs)


def test_multilabel_queries_shapes_counts_and_reproducibility():
    from lossbook.lab.data import multilabel_queries

    q = multilabel_queries(50, 200, dim=8, input_dim=12, feature_dim=6, max_positives=4, seed=3)
    assert q.num_labels == 50 and q.num_features == 12 and q.label_features.shape == (50, 6)
    sizes = [len(t) for t in (q.x_train, q.x_val, q.x_test)]
    assert sizes == [140, 30, 30]
    for x, pos in ((q.x_train, q.positives_train), (q.x_val, q.positives_val), (q.x_test, q.positives_test)):
        assert x.dtype == torch.float32 and pos.dtype == torch.bool and pos.shape == (len(x), 50)
        counts = pos.sum(1)
        assert counts.min() >= 1 and counts.max() <= 4
    assert 1.5 < q.mean_positives() < 3.5  # uniform on {1, …, 4}: mean 2.5
    again = multilabel_queries(50, 200, dim=8, input_dim=12, feature_dim=6, max_positives=4, seed=3)
    assert torch.equal(q.x_test, again.x_test) and torch.equal(q.positives_train, again.positives_train)
    assert not torch.equal(q.x_test, multilabel_queries(50, 200, dim=8, input_dim=12, feature_dim=6,
                                                        max_positives=4, seed=4).x_test)


def test_multilabel_queries_carry_their_labels():
    """Without noise, a query's latent vector scores its positives above every other label, so the
    query features (a linear map of it) determine the positives: the best linear read-out of the
    embeddings from the features ranks the positives first."""
    from lossbook.lab.data import multilabel_queries

    q = multilabel_queries(40, 300, dim=16, input_dim=32, max_positives=3, noise=0.0, seed=0)
    x = q.x_train.double()
    latent = q.positives_train.double() @ q.label_embeddings / q.positives_train.sum(1, keepdim=True).double().sqrt()
    read_out = torch.linalg.lstsq(x, latent).solution
    scores = (x @ read_out) @ q.label_embeddings.T
    top = scores.topk(1, dim=1).indices
    assert q.positives_train.gather(1, top).float().mean() > 0.95


@pytest.mark.parametrize("kwargs, match", [
    ({"num_labels": 1}, "num_labels must be an int"),
    ({"max_positives": 100}, "cannot exceed num_labels"),
    ({"noise": -1.0}, "must be ≥ 0"),
    ({"fractions": (0.5, 0.5)}, "three positive numbers"),
])
def test_multilabel_queries_rejects_bad_arguments(kwargs, match):
    from lossbook.lab.data import multilabel_queries

    args = {"num_labels": 20, "num_queries": 100} | kwargs
    with pytest.raises(ValueError, match=match):
        multilabel_queries(args.pop("num_labels"), args.pop("num_queries"), **args)
