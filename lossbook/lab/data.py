"""Offline data: nothing here downloads anything.

* :func:`load_digits` — scikit-learn's bundled 8×8 digits with fixed, stratified splits;
* :class:`GaussianMixture` — Gaussian classes with a shared isotropic covariance, whose Bayes
  posterior is known in closed form (a softmax of affine scores);
* :func:`symmetric_noise`, :func:`asymmetric_noise`, :func:`long_tail` — label-noise and long-tail
  transforms that return new tensors and never modify their inputs;
* :func:`vmf_identities` — a synthetic "identities" set for face-recognition-style training and
  verification: von Mises–Fisher clusters on a sphere, seen through a fixed non-linear map with
  nuisance factors, optionally with a per-sample quality that blurs the identity signal;
* :func:`digits_identities` — the digits as open-set identities (train on some digits, verify on the
  others), optionally degraded by blur and noise graded by a per-sample quality;
* :func:`one_vs_rest`, :func:`multilabel_imbalance` — binary tasks with few positives (and label
  noise), and multi-label data whose labels' positive rates fall off by a chosen imbalance;
* :func:`latent_factor_interactions` — a synthetic recommender: users and items with latent
  factors and a Zipfian item popularity, split into train and test interactions.

Language-model data (stdlib tokens, vocabulary, n-grams, a Zipf Markov chain) is in :mod:`lossbook.lab.corpus`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DigitsIdentities",
    "GaussianMixture",
    "Identities",
    "Interactions",
    "MultiLabelQueries",
    "QualitySamples",
    "Splits",
    "asymmetric_noise",
    "digits_identities",
    "few_shot_episodes",
    "latent_factor_interactions",
    "load_digits",
    "long_tail",
    "multilabel_imbalance",
    "multilabel_queries",
    "one_vs_rest",
    "pk_batches",
    "symmetric_noise",
    "vmf_identities",
]


@dataclass(frozen=True)
class Splits:
    """Train/validation/test tensors of one dataset (features float32, labels int64)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device) -> Splits:
        return replace(
            self,
            **{f.name: getattr(self, f.name).to(device) for f in fields(self) if f.name != "num_classes"},
        )

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def load_digits(*, split_seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2,
                standardize: bool = True) -> Splits:
    """scikit-learn's digits (1797 images, 64 pixels, 10 classes) in fixed stratified splits.

    The split depends only on ``split_seed`` (default 0), never on the training seed, so every
    chapter and every seed sees the same test set. Features are scaled to [0, 1] and, when
    ``standardize``, centred and scaled by statistics of the training split only.
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"load_digits: val_fraction and test_fraction must be in (0, 1) with a sum below 1; "
            f"got {val_fraction} and {test_fraction}."
        )
    x, y = _load(return_X_y=True)
    x = x.astype(np.float32) / 16.0
    x_tmp, x_test, y_tmp, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=split_seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_tmp, y_tmp, test_size=val_fraction / (1 - test_fraction), stratify=y_tmp, random_state=split_seed
    )
    if standardize:
        mu, sd = x_train.mean(0), x_train.std(0) + 1e-3
        x_train, x_val, x_test = ((a - mu) / sd for a in (x_train, x_val, x_test))
    def t(a):
        return torch.as_tensor(a, dtype=torch.float32)

    def i(a):
        return torch.as_tensor(a, dtype=torch.int64)

    return Splits(t(x_train), i(y_train), t(x_val), i(y_val), t(x_test), i(y_test), num_classes=10)


class GaussianMixture:
    r"""K Gaussian classes N(μ_k, σ²I) with priors π_k: the Bayes posterior is known exactly,

    .. math:: \eta_k(x) = \mathrm{softmax}_k\big(\log\pi_k - \lVert x-\mu_k\rVert^2 / 2\sigma^2\big),

    which is affine in x after dropping the ‖x‖² term common to all classes. Class means are drawn
    once from ``seed`` with norm ``separation`` (on a sphere, so classes are equally far on average).
    """

    def __init__(self, num_classes: int = 3, dim: int = 2, *, separation: float = 2.0, sigma: float = 1.0,
                 priors=None, seed: int = 0) -> None:
        if num_classes < 2:
            raise ValueError(f"GaussianMixture: num_classes must be ≥ 2; got {num_classes}.")
        if dim < 1:
            raise ValueError(f"GaussianMixture: dim must be ≥ 1; got {dim}.")
        if sigma <= 0:
            raise ValueError(f"GaussianMixture: sigma must be > 0; got {sigma}.")
        g = torch.Generator().manual_seed(seed)
        means = torch.randn(num_classes, dim, generator=g, dtype=torch.float64)
        self.means = separation * means / means.norm(dim=1, keepdim=True)
        self.sigma = float(sigma)
        if priors is None:
            priors = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
        priors = torch.as_tensor(priors, dtype=torch.float64)
        # a float32 tensor such as torch.tensor([0.6, 0.3, 0.1]) sums to 1 only to float32 precision
        if priors.shape != (num_classes,) or (priors <= 0).any() or not math.isclose(
            float(priors.sum()), 1.0, rel_tol=1e-6
        ):
            raise ValueError(
                f"GaussianMixture: priors must be {num_classes} positive numbers summing to 1; got {priors.tolist()}."
            )
        self.priors = priors / priors.sum()
        self.num_classes, self.dim = num_classes, dim

    def sample(self, n: int, *, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` points (float32) and their labels (int64), reproducible from ``seed``."""
        g = torch.Generator().manual_seed(seed)
        y = torch.multinomial(self.priors, n, replacement=True, generator=g)
        x = self.means[y] + self.sigma * torch.randn(n, self.dim, generator=g, dtype=torch.float64)
        return x.float(), y

    def bayes_logits(self, x: Tensor) -> Tensor:
        """Affine scores whose softmax is the Bayes posterior (float64)."""
        x = x.to(torch.float64)
        return (x @ self.means.T - 0.5 * (self.means**2).sum(1)) / self.sigma**2 + self.priors.log()

    def posterior(self, x: Tensor) -> Tensor:
        """η(x) = P(y = k | x), rows summing to 1 (float64)."""
        return torch.softmax(self.bayes_logits(x), dim=1)

    def bayes_error(self, n: int = 200_000, *, seed: int = 12345) -> float:
        """The Bayes 0-1 risk E[1 − max_k η_k(x)], estimated on ``n`` fresh points."""
        x, _ = self.sample(n, seed=seed)
        return float((1 - self.posterior(x).max(1).values).mean())


def _check_labels(name: str, y: Tensor, num_classes: int) -> None:
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        raise TypeError(f"{name}: labels must be a 1-D int64 tensor; got {getattr(y, 'dtype', type(y))}.")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}).")


def _check_rate(name: str, rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name}: rate must be in [0, 1]; got {rate}.")
    return float(rate)


def symmetric_noise(y: Tensor, rate: float, num_classes: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """Replace a fraction ``rate`` of labels by a class drawn uniformly among the *other* classes.

    Exactly ``round(rate·N)`` labels change. Returns ``(noisy_labels, is_noisy)``.
    """
    _check_labels("symmetric_noise", y, num_classes)
    rate = _check_rate("symmetric_noise", rate)
    g = torch.Generator().manual_seed(seed)
    n = len(y)
    flip = torch.zeros(n, dtype=torch.bool)
    flip[torch.randperm(n, generator=g)[: round(rate * n)]] = True
    shift = torch.randint(1, num_classes, (n,), generator=g)
    noisy = torch.where(flip.to(y.device), (y + shift.to(y.device)) % num_classes, y)
    return noisy, flip.to(y.device)


def asymmetric_noise(y: Tensor, rate: float, mapping: dict[int, int], *, seed: int) -> tuple[Tensor, Tensor]:
    """Flip each label of a class in ``mapping`` to its partner with probability ``rate``.

    ``mapping`` is the class-pair map (e.g. digits ``{7: 1, 2: 7, 5: 6, 6: 5, 3: 8}``); classes
    not in it stay clean. Returns ``(noisy_labels, is_noisy)``.
    """
    rate = _check_rate("asymmetric_noise", rate)
    num_classes = int(max([*mapping.keys(), *mapping.values(), int(y.max()) if y.numel() else 0])) + 1
    _check_labels("asymmetric_noise", y, num_classes)
    g = torch.Generator().manual_seed(seed)
    target = y.clone()
    for src, dst in mapping.items():
        target[y == src] = dst
    flip = (torch.rand(len(y), generator=g).to(y.device) < rate) & (target != y)
    return torch.where(flip, target, y), flip


def long_tail(x: Tensor, y: Tensor, num_classes: int, *, imbalance: float, seed: int) -> tuple[Tensor, Tensor]:
    """Subsample to an exponential profile n_k = n_max · imbalance^{−k/(K−1)} (class 0 the head).

    ``imbalance`` = n_max/n_min ≥ 1 (e.g. 50 or 100, as in the long-tail literature).
    """
    _check_labels("long_tail", y, num_classes)
    if imbalance < 1:
        raise ValueError(f"long_tail: imbalance is n_max/n_min and must be ≥ 1; got {imbalance}.")
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(y.cpu(), minlength=num_classes)
    n_max = int(counts.min())
    keep = []
    for k in range(num_classes):
        idx = torch.nonzero(y.cpu() == k).squeeze(1)
        n_k = max(1, int(n_max * imbalance ** (-k / max(num_classes - 1, 1))))
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n_k]])
    keep = torch.cat(keep).to(y.device)
    return x[keep], y[keep]


# --- synthetic identities (von Mises–Fisher) --------------------------------------------------------


@dataclass(frozen=True)
class Identities:
    """What :func:`vmf_identities` returns.

    ``x`` (N, observed_dim) float32 observations and ``y`` (N,) int64 identity ids in
    [0, num_identities), grouped by identity; ``centres`` (K, dim) float64 unit mean directions;
    ``latent`` (N, dim) float64 unit vectors, the identity signal behind ``x`` (the von Mises–Fisher
    draws, degraded by quality when ``quality`` is on); ``quality`` (N,) float64 per-sample quality
    in (0, 1] (all ones when quality is off, and when constructed without it).
    """

    x: Tensor
    y: Tensor
    centres: Tensor
    latent: Tensor
    quality: Tensor | None = None

    def __post_init__(self) -> None:
        if self.quality is None:
            object.__setattr__(self, "quality", torch.ones(len(self.y), dtype=torch.float64))

    @property
    def num_identities(self) -> int:
        return int(self.centres.shape[0])


_QUALITY_STREAM = 1  # spawn key of the generator for qualities and degradations


def _quality_values(name: str, quality, n: int) -> tuple[np.ndarray | None, tuple[float, float] | None]:
    """Validate ``quality``: None, a range (low, high) or n given values. Returns ``(values, range)``."""
    if quality is None:
        return None, None
    if isinstance(quality, (Tensor, np.ndarray)):
        q = (quality.detach().cpu().numpy() if isinstance(quality, Tensor) else quality).astype(np.float64)
        if q.shape != (n,):
            raise ValueError(f"{name}: a quality tensor must hold one value per sample, shape ({n},); got shape "
                             f"{q.shape}. For a range pass a pair (low, high).")
        if not (np.isfinite(q).all() and (q > 0).all() and (q <= 1).all()):
            raise ValueError(f"{name}: qualities must lie in (0, 1].")
        return q, None
    try:
        low, high = (float(v) for v in quality)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: quality must be None, a pair (low, high) or a tensor of per-sample values; got "
                         f"{quality!r}.") from None
    if not 0 < low <= high <= 1:
        raise ValueError(f"{name}: quality range (low, high) needs 0 < low ≤ high ≤ 1; got ({low}, {high}).")
    return None, (low, high)


def _observation_map(dim: int, nuisance_dim: int, observed_dim: int, world_seed: int) -> Tensor:
    g = torch.Generator().manual_seed(world_seed)
    n_in = dim + nuisance_dim
    return torch.randn(n_in, observed_dim, generator=g, dtype=torch.float64) / math.sqrt(n_in)


def vmf_identities(num_identities: int, samples_per_identity: int, *, dim: int = 16, kappa: float = 20.0,
                   nuisance_dim: int = 16, observed_dim: int = 64, nuisance_scale: float = 1.0,
                   gain: float = 1.5, seed: int = 0, world_seed: int = 0, quality=None,
                   degradation: str = "contrast") -> Identities:
    r"""A synthetic identities set: K identities, n samples each, seen through a fixed non-linear map.

    Identity k has a mean direction μ_k uniform on the unit sphere S^{dim−1}; each of its samples
    has a latent unit vector z ~ vMF(μ_k, κ) (scipy's ``vonmises_fisher``, drawn around e₁ and
    carried to μ_k by a Householder reflection), so E[μ_kᵀz] = I_{dim/2}(κ)/I_{dim/2−1}(κ). The
    observation is

    .. math:: x = \tanh\big(g\,[\sqrt{\mathrm{dim}}\,z,\ \sigma\,\varepsilon]\,A\big),\qquad
              \varepsilon \sim N(0, I_{\mathrm{nuisance\_dim}}),

    with A (dim + nuisance_dim, observed_dim) ~ N(0, 1/(dim + nuisance_dim)) fixed by ``world_seed``
    and ε nuisance factors (pose, light) that carry no identity. Identities and samples depend on
    ``seed`` only, so calls with the same ``world_seed`` and different ``seed`` give *new*
    identities seen through the *same* map: a training set and held-out identities for
    verification (TAR@FAR, :func:`lossbook.metrics.tar_at_far`).

    **Quality** (off by default: then the output is exactly that of earlier versions). ``quality``
    is a pair ``(low, high)`` with 0 < low ≤ high ≤ 1, giving sample i a quality
    q_i ~ Uniform[low, high) independent of its identity, or a tensor/array of N given qualities in
    (0, 1]. A sample's identity signal is blurred toward a random direction, and weakened, as q
    falls (as a blurred or dark face loses both detail and contrast):

    .. math:: u = q\,z + \sqrt{1-q^2}\;\xi_\perp,\qquad
              \xi_\perp = \frac{\xi - (\xi^\top z)\,z}{\lVert \xi - (\xi^\top z)\,z\rVert},\quad
              \xi \sim N(0, I_{\mathrm{dim}}),

    and q·u replaces z in the observation above: x = tanh(g [q√dim u, σε] A). So u is a unit vector
    at angle arccos q from z, with E[μ_kᵀu | q] = q·A(κ), A(κ) = I_{dim/2}(κ)/I_{dim/2−1}(κ):
    low-quality samples sit farther from their identity's centre and are confused more often (the
    lost detail); and the identity part of the input has norm q√dim against the nuisance's, so a
    network *can* tell a low-quality sample from its input alone (the lost contrast), which a
    quality-aware loss needs. Without the weakening a low-quality sample would look exactly like a
    clean sample of another direction.
    **Degradation** (used only with ``quality``). ``"contrast"`` (the default) is the model above,
    whose identity part has norm q√dim: a network's feature norm can track quality merely by
    passing the input's contrast on. ``"occlusion"`` holds the input's scale fixed instead: the
    identity signal is blurred as above but not weakened, x_clean = tanh(g [√dim u, σε] A), and each
    observed feature is then **occluded** with probability 1 − q, replaced by that feature of an
    occluder: an observation of a random direction v (uniform on the sphere) with its own nuisance,
    x_occ = tanh(g [√dim v, σε'] A), so an occluded feature has the same distribution as a clean one.
    Quality is then how much of the identity signal survives, not how strong the input is: the
    input's norm does not depend on q (its expectation is the same for every q), while a network can
    still see that features disagree with each other. The occlusion mask, v and ε' come from the
    quality generator after the qualities and ξ, so ``latent`` and ``quality`` equal those of
    ``"contrast"`` for the same arguments.

    ``latent`` holds u and ``quality`` the q_i. The qualities and ξ come from a separate generator
    (``numpy.random.SeedSequence(seed, spawn_key=(1,))``), so ``centres``, the clean draws z and the
    nuisance factors are those of the call without ``quality``: calling again with ``quality=None``
    gives the clean z of the same samples.
    """
    from scipy.stats import vonmises_fisher

    name = "vmf_identities"
    for arg, v, low in (("num_identities", num_identities, 1), ("samples_per_identity", samples_per_identity, 1),
                        ("dim", dim, 2), ("nuisance_dim", nuisance_dim, 0), ("observed_dim", observed_dim, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}: {arg} must be an int ≥ {low}; got {v!r}.")
    if not kappa > 0:
        raise ValueError(f"{name}: kappa (the concentration) must be > 0; got {kappa}.")
    if nuisance_scale < 0:
        raise ValueError(f"{name}: nuisance_scale must be ≥ 0; got {nuisance_scale}.")
    if degradation not in ("contrast", "occlusion"):
        raise ValueError(f"{name}: degradation must be 'contrast' (the identity signal weakened by q) or "
                         f"'occlusion' (features occluded with probability 1 − q); got {degradation!r}.")
    q_given, q_range = _quality_values(name, quality, num_identities * samples_per_identity)
    rng = np.random.default_rng(seed)
    k, n = num_identities, samples_per_identity
    centres = rng.standard_normal((k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    e1 = np.zeros(dim)
    e1[0] = 1.0
    w = vonmises_fisher(e1, float(kappa)).rvs(k * n, random_state=rng).reshape(k, n, dim)
    # Householder reflection H_k = I − 2vvᵀ/‖v‖², v = e₁ − μ_k, maps e₁ to μ_k (identity when μ_k = e₁)
    v = e1 - centres
    vv = (v * v).sum(1)
    coef = np.where(vv > 1e-24, 2.0 / np.where(vv > 1e-24, vv, 1.0), 0.0)
    latent = w - coef[:, None, None] * np.einsum("kd,knd->kn", v, w)[..., None] * v[:, None, :]
    latent = latent.reshape(k * n, dim)
    nuisance = nuisance_scale * rng.standard_normal((k * n, nuisance_dim))
    q = np.ones(k * n)
    if quality is not None:  # new randomness from its own stream: the draws above stay those of quality=None
        q_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_QUALITY_STREAM,)))
        q = q_rng.uniform(*q_range, size=k * n) if q_given is None else q_given
        xi = q_rng.standard_normal((k * n, dim))
        xi -= (xi * latent).sum(1, keepdims=True) * latent
        xi /= np.linalg.norm(xi, axis=1, keepdims=True)
        latent = q[:, None] * latent + np.sqrt(1.0 - q**2)[:, None] * xi
    a = _observation_map(dim, nuisance_dim, observed_dim, world_seed)
    if quality is not None and degradation == "occlusion":
        full = torch.from_numpy(np.concatenate([math.sqrt(dim) * latent, nuisance], axis=1))
        x = torch.tanh(gain * full @ a)
        keep = torch.from_numpy(q_rng.random((k * n, observed_dim)) < q[:, None])
        v = q_rng.standard_normal((k * n, dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        occluder = np.concatenate([math.sqrt(dim) * v, nuisance_scale * q_rng.standard_normal((k * n, nuisance_dim))],
                                  axis=1)
        x = torch.where(keep, x, torch.tanh(gain * torch.from_numpy(occluder) @ a))
    else:
        full = torch.from_numpy(np.concatenate([math.sqrt(dim) * q[:, None] * latent, nuisance], axis=1))
        x = torch.tanh(gain * full @ a)
    y = torch.arange(k).repeat_interleave(n)
    return Identities(x.float(), y, torch.from_numpy(centres), torch.from_numpy(latent), torch.from_numpy(q))


# --- digits as identities (open-set verification, graded degradation) ----------------------------------------


@dataclass(frozen=True)
class QualitySamples:
    """One part of :func:`digits_identities`: ``x`` (N, 64) float32 images, ``y`` (N,) int64 identity ids
    in [0, len(classes)), ``quality`` (N,) float64 in (0, 1] (1: clean), and ``classes``, the digit of
    each id (``classes[y[i]]`` is sample i's digit)."""

    x: Tensor
    y: Tensor
    quality: Tensor
    classes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> QualitySamples:
        return replace(self, x=self.x.to(device), y=self.y.to(device), quality=self.quality.to(device))


@dataclass(frozen=True)
class DigitsIdentities:
    """What :func:`digits_identities` returns: ``train`` and ``val`` (the training identities, split
    stratified) and ``heldout`` (identities never seen in training, for verification)."""

    train: QualitySamples
    val: QualitySamples
    heldout: QualitySamples

    @property
    def num_identities(self) -> int:
        """Number of training identities (the classifier's output size)."""
        return len(self.train.classes)

    def to(self, device) -> DigitsIdentities:
        return DigitsIdentities(self.train.to(device), self.val.to(device), self.heldout.to(device))


def _digit_classes(name: str, arg: str, classes) -> tuple[int, ...]:
    try:
        out = tuple(int(c) for c in classes)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {arg} must be a sequence of digits 0–9; got {classes!r}.") from None
    if len(out) < 2 or len(set(out)) != len(out) or any(not 0 <= c <= 9 for c in out):
        raise ValueError(f"{name}: {arg} must hold at least two distinct digits in 0–9; got {out}.")
    return out


def digits_identities(train_classes=(0, 1, 2, 3, 4, 5, 6), heldout_classes=(7, 8, 9), *, quality=None,
                      noise: float = 0.5, blur: float = 1.0, val_fraction: float = 0.2, standardize: bool = True,
                      seed: int = 0, split_seed: int = 0) -> DigitsIdentities:
    r"""scikit-learn's digits as an open-set "identities" task: train on some digits, verify on others.

    Images of ``train_classes`` (default 0–6) form ``train`` and, a stratified ``val_fraction`` of them
    (split by ``split_seed``), ``val``; images of ``heldout_classes`` (default 7–9) form ``heldout``.
    Ids are re-numbered 0, 1, … within each part in the order the classes are given.

    **Quality** (off by default: every image clean, quality 1). ``quality = (low, high)`` with
    0 < low ≤ high ≤ 1 gives each image a quality q ~ Uniform[low, high), independent of its digit
    (or pass a tensor of 1797 qualities in (0, 1], one per image in scikit-learn's order), and
    degrades its 8×8 image x ∈ [0, 1] (pixels / 16) by blur and noise that grow as q falls:

    .. math:: \tilde x = G_{\mathrm{blur}\,(1-q)} * x + \mathrm{noise}\,(1-q)\,\varepsilon,\qquad
              \varepsilon \sim N(0, I_{64}),

    with G_σ a Gaussian blur of σ pixels (``scipy.ndimage.gaussian_filter``, reflecting borders; none
    when σ = 0) and no clipping. ``noise`` and ``blur`` are thus the noise std and blur σ at q → 0;
    q = 1 leaves an image untouched. Qualities and noise depend only on ``seed`` and are drawn for all
    1797 images in scikit-learn's order, so an image's degradation does not depend on the class split.
    With ``standardize`` every part is centred and scaled by the statistics of the (degraded) ``train``
    part, as in :func:`load_digits`.
    """
    from scipy.ndimage import gaussian_filter
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    name = "digits_identities"
    train_c = _digit_classes(name, "train_classes", train_classes)
    held_c = _digit_classes(name, "heldout_classes", heldout_classes)
    if set(train_c) & set(held_c):
        raise ValueError(f"{name}: train_classes and heldout_classes must be disjoint (held-out identities are "
                         f"unseen); both hold {sorted(set(train_c) & set(held_c))}.")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"{name}: val_fraction must be in [0, 1); got {val_fraction}.")
    if noise < 0 or blur < 0:
        raise ValueError(f"{name}: noise and blur must be ≥ 0; got {noise} and {blur}.")
    x, y = _load(return_X_y=True)
    q_given, q_range = _quality_values(name, quality, len(y))
    x = x.astype(np.float64) / 16.0
    q = np.ones(len(y))
    if quality is not None:
        rng = np.random.default_rng(seed)
        q = rng.uniform(*q_range, size=len(y)) if q_given is None else q_given
        eps = rng.standard_normal(x.shape)
        images = x.reshape(-1, 8, 8)
        for i in np.flatnonzero(q < 1):
            images[i] = gaussian_filter(images[i], sigma=blur * (1 - q[i])) if blur > 0 else images[i]
        x = images.reshape(len(y), 64) + noise * (1 - q)[:, None] * eps
    train_idx = np.flatnonzero(np.isin(y, train_c))
    if val_fraction > 0:
        train_idx, val_idx = train_test_split(train_idx, test_size=val_fraction, stratify=y[train_idx],
                                              random_state=split_seed)
    else:
        val_idx = train_idx[:0]
    held_idx = np.flatnonzero(np.isin(y, held_c))
    x = x.astype(np.float32)
    if standardize:
        mu, sd = x[train_idx].mean(0), x[train_idx].std(0) + 1e-3
        x = (x - mu) / sd

    def part(idx: np.ndarray, classes: tuple[int, ...]) -> QualitySamples:
        remap = np.full(10, -1)
        remap[list(classes)] = np.arange(len(classes))
        return QualitySamples(torch.as_tensor(x[idx], dtype=torch.float32), torch.as_tensor(remap[y[idx]],
                              dtype=torch.int64), torch.as_tensor(q[idx], dtype=torch.float64), classes)

    return DigitsIdentities(part(train_idx, train_c), part(val_idx, train_c), part(held_idx, held_c))


# --- synthetic recommender ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Interactions:
    """What :func:`latent_factor_interactions` returns.

    ``train`` (U, n_train) and ``test`` (U, n_test) int64 item ids, distinct within each user;
    ``popularity`` (I,) float64, the Zipfian item prior (item 0 the most popular);
    ``user_factors`` (U, dim) and ``item_factors`` (I, dim), the latent factors behind the data;
    ``scale`` = signal·√dim, so that :meth:`preference_logits` gives the true preferences.
    """

    train: Tensor
    test: Tensor
    popularity: Tensor
    user_factors: Tensor
    item_factors: Tensor
    scale: float = 1.0

    def preference_logits(self, users: Tensor | None = None) -> Tensor:
        """log P(i | u) up to a constant: scale·⟨p_u, q_i⟩ + log π_i, (len(users), I) float64."""
        p = self.user_factors if users is None else self.user_factors[users]
        return self.scale * p @ self.item_factors.T + self.popularity.log()

    @property
    def num_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.popularity.shape[0])

    def pairs(self) -> tuple[Tensor, Tensor]:
        """The training interactions as (user, item) pairs, user-major."""
        users = torch.arange(self.num_users).repeat_interleave(self.train.shape[1])
        return users, self.train.reshape(-1)

    def item_counts(self) -> Tensor:
        """How often each item occurs in ``train`` (float64)."""
        return torch.bincount(self.train.reshape(-1), minlength=self.num_items).to(torch.float64)


def latent_factor_interactions(num_users: int, num_items: int, *, per_user: int = 25, test_per_user: int = 5,
                               dim: int = 16, signal: float = 4.0, zipf: float = 1.0,
                               seed: int = 0) -> Interactions:
    r"""Implicit feedback from a latent-factor model with Zipfian popularity.

    User and item factors are N(0, I/dim); item i has popularity π_i ∝ (i + 1)^{−zipf}. Each user
    u picks ``per_user`` distinct items without replacement from

    .. math:: P(i \mid u) \propto \pi_i \exp\big(\mathrm{signal}\cdot\sqrt{\mathrm{dim}}\,\langle p_u, q_i\rangle\big)

    (Gumbel top-k), and a random ``test_per_user`` of them are held out. ``signal`` sets how
    personal the choices are (0: popularity only). Reproducible from ``seed``.
    """
    name = "latent_factor_interactions"
    for arg, v, low in (("num_users", num_users, 1), ("num_items", num_items, 2), ("per_user", per_user, 2),
                        ("test_per_user", test_per_user, 1), ("dim", dim, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}: {arg} must be an int ≥ {low}; got {v!r}.")
    if not test_per_user < per_user <= num_items:
        raise ValueError(f"{name}: need test_per_user < per_user ≤ num_items; got {test_per_user}, {per_user}, "
                         f"{num_items}.")
    if zipf < 0 or signal < 0:
        raise ValueError(f"{name}: zipf and signal must be ≥ 0; got {zipf} and {signal}.")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    users = torch.randn(num_users, dim, generator=g, dtype=f64) / math.sqrt(dim)
    items = torch.randn(num_items, dim, generator=g, dtype=f64) / math.sqrt(dim)
    pop = torch.arange(1, num_items + 1, dtype=f64).pow(-float(zipf))
    pop = pop / pop.sum()
    scale = float(signal) * math.sqrt(dim)
    logits = scale * users @ items.T + pop.log()
    gumbel = -torch.log(-torch.log(torch.rand(num_users, num_items, generator=g, dtype=f64).clamp_min(1e-300)))
    chosen = torch.topk(logits + gumbel, per_user, dim=1).indices
    order = torch.rand(num_users, per_user, generator=g).argsort(dim=1)
    chosen = chosen.gather(1, order)
    n_train = per_user - test_per_user
    return Interactions(chosen[:, :n_train].contiguous(), chosen[:, n_train:].contiguous(), pop, users, items, scale)


@dataclass(frozen=True)
class MultiLabelQueries:
    """What :func:`multilabel_queries` returns.

    ``x_<split>`` (n, input_dim) float32 query features and ``positives_<split>`` (n, L) bool, each
    query's relevant labels, for ``train``, ``val`` and ``test``; ``label_features`` (L, feature_dim)
    float32, what a label encoder sees of each label; ``label_embeddings`` (L, dim) float64, the
    unit vectors behind both.
    """

    x_train: Tensor
    positives_train: Tensor
    x_val: Tensor
    positives_val: Tensor
    x_test: Tensor
    positives_test: Tensor
    label_features: Tensor
    label_embeddings: Tensor

    @property
    def num_labels(self) -> int:
        return int(self.label_features.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    def mean_positives(self) -> float:
        """The mean number of positive labels per training query."""
        return float(self.positives_train.sum(1).double().mean())


def multilabel_queries(num_labels: int, num_queries: int, *, dim: int = 32, input_dim: int = 64,
                       feature_dim: int = 32, max_positives: int = 10, noise: float = 0.5,
                       feature_noise: float = 0.3, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> MultiLabelQueries:
    r"""Synthetic extreme multi-label classification with known label embeddings.

    Label l has a unit embedding e_l ∈ R^dim; its *features* (what a dual encoder's label side
    reads) are e_l through a fixed random map to R^feature_dim (entries N(0, 1/feature_dim)) plus
    N(0, feature_noise²/feature_dim) noise. A query has |P| positives, |P| uniform on {1, …, max_positives}, drawn without
    replacement; its latent vector is Σ_{l∈P} e_l/√|P| plus N(0, noise²/dim) noise, and its
    features are that vector through a fixed random map to R^input_dim (entries N(0, 1)). The queries are split by
    ``fractions`` into train, validation and test. Reproducible from ``seed``.
    """
    name = "multilabel_queries"
    for arg, v, low in (("num_labels", num_labels, 2), ("num_queries", num_queries, 3), ("dim", dim, 1),
                        ("input_dim", input_dim, 1), ("feature_dim", feature_dim, 1),
                        ("max_positives", max_positives, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}: {arg} must be an int ≥ {low}; got {v!r}.")
    if max_positives > num_labels:
        raise ValueError(f"{name}: max_positives ({max_positives}) cannot exceed num_labels ({num_labels}).")
    if noise < 0 or feature_noise < 0:
        raise ValueError(f"{name}: noise and feature_noise must be ≥ 0; got {noise} and {feature_noise}.")
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1) > 1e-9:
        raise ValueError(f"{name}: fractions must be three positive numbers summing to 1 (train, val, test); "
                         f"got {fractions!r}.")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    emb = torch.nn.functional.normalize(torch.randn(num_labels, dim, generator=g, dtype=f64), dim=1)
    to_features = torch.randn(dim, feature_dim, generator=g, dtype=f64) / math.sqrt(feature_dim)
    features = emb @ to_features + feature_noise / math.sqrt(feature_dim) * torch.randn(
        num_labels, feature_dim, generator=g, dtype=f64)
    counts = torch.randint(1, max_positives + 1, (num_queries,), generator=g)
    ranks = torch.rand(num_queries, num_labels, generator=g, dtype=f64).argsort(dim=1).argsort(dim=1)
    positives = ranks < counts[:, None]
    latent = positives.to(f64) @ emb / counts[:, None].to(f64).sqrt()
    latent = latent + noise / math.sqrt(dim) * torch.randn(num_queries, dim, generator=g, dtype=f64)
    x = latent @ torch.randn(dim, input_dim, generator=g, dtype=f64)  # coordinates of about unit variance
    n_train = int(round(fr[0] * num_queries))
    n_val = max(1, int(round(fr[1] * num_queries)))
    if n_train < 1 or n_train + n_val >= num_queries:
        raise ValueError(f"{name}: num_queries={num_queries} is too few for fractions {fractions!r}.")
    cuts = (slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, num_queries))
    parts = [(x[c].float().contiguous(), positives[c].contiguous()) for c in cuts]
    return MultiLabelQueries(*parts[0], *parts[1], *parts[2], features.float(), emb)


# --- imbalance: one-vs-rest tasks and multi-label data with label-wise imbalance (chapter 7) ----------------


def one_vs_rest(x: Tensor, y: Tensor, positive: int, *, positive_fraction: float | None = None,
                noise: float = 0.0, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A binary task "class ``positive`` against the rest" from class-index data ``(x, y)``.

    With ``positive_fraction`` the positives are subsampled (all negatives kept) so that they make
    that share of the rows (at least one positive); ``noise`` flips that fraction of the binary
    labels, chosen at random (both directions). Returns ``(x, labels, flipped)``: int64 0/1 labels
    and the bool mask of flipped rows. New tensors; the inputs are not modified.
    """
    if isinstance(positive, bool) or not isinstance(positive, int):
        raise TypeError(f"one_vs_rest: positive must be an int class; got {positive!r}.")
    if not bool((y == positive).any()):
        raise ValueError(f"one_vs_rest: class {positive} has no rows in y.")
    noise = _check_rate("one_vs_rest", noise)
    g = torch.Generator().manual_seed(seed)
    pos = torch.nonzero(y.cpu() == positive).squeeze(1)
    neg = torch.nonzero(y.cpu() != positive).squeeze(1)
    if positive_fraction is not None:
        if not 0 < positive_fraction < 1:
            raise ValueError(f"one_vs_rest: positive_fraction must lie in (0, 1), e.g. 0.01; got {positive_fraction!r}.")
        n_pos = max(1, min(len(pos), round(positive_fraction * len(neg) / (1 - positive_fraction))))
        pos = pos[torch.randperm(len(pos), generator=g)[:n_pos]]
    keep = torch.cat([pos, neg]).sort().values.to(y.device)
    labels = (y[keep] == positive).long()
    flip = (torch.rand(len(keep), generator=g) < noise).to(y.device)
    return x[keep], torch.where(flip, 1 - labels, labels), flip


def multilabel_imbalance(n: int, num_labels: int, *, dim: int = 20, max_rate: float = 0.5, imbalance: float = 1.0,
                         signal: float = 2.0, seed: int) -> tuple[Tensor, Tensor]:
    """Synthetic multi-label data with a controlled label-wise imbalance.

    x ~ N(0, I_dim); label k is on when ``signal``·w_kᵀx + ε > t_k, ε ~ N(0, 1), w_k a random unit vector, with
    the threshold t_k set so that label k's positive rate is r_k = ``max_rate`` · ``imbalance``^{−k/(K−1)}:
    the most frequent label has rate ``max_rate`` and the rarest ``max_rate``/``imbalance``
    (``imbalance`` = 1: every label at ``max_rate``). Every label has the same signal-to-noise ratio, so
    only its imbalance differs. Returns ``(x, labels)``: float32 (n, dim) and float32 0/1 (n, K).
    The world (w, thresholds) depends on ``seed`` only through the draws; use one seed per data set.
    """
    from scipy.stats import norm

    if not 0 < max_rate <= 0.5:
        raise ValueError(f"multilabel_imbalance: max_rate must lie in (0, 0.5]; got {max_rate!r}.")
    if imbalance < 1:
        raise ValueError(f"multilabel_imbalance: imbalance is max rate / min rate and must be ≥ 1; got {imbalance!r}.")
    if num_labels < 1 or n < 1:
        raise ValueError(f"multilabel_imbalance: n and num_labels must be ≥ 1; got {n} and {num_labels}.")
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.functional.normalize(torch.randn(num_labels, dim, generator=g, dtype=torch.float64), dim=1)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    rates = max_rate * imbalance ** (-torch.arange(num_labels, dtype=torch.float64) / max(num_labels - 1, 1))
    # signal·w·x + ε ~ N(0, signal² + 1): the threshold at the (1 − r) quantile gives rate r
    thresholds = torch.as_tensor(norm.ppf(1 - rates.numpy()), dtype=torch.float64) * math.sqrt(signal**2 + 1)
    score = signal * x @ w.T + torch.randn(n, num_labels, generator=g, dtype=torch.float64)
    return x.float(), (score > thresholds).float()


# --- class-balanced batches for metric learning (P classes × K samples) -------------------------------------


def pk_batches(labels: Tensor, classes_per_batch: int, per_class: int, *, generator: torch.Generator,
               num_batches: int | None = None) -> list[Tensor]:
    """One epoch of "P × K" batches for pair losses: each batch holds ``classes_per_batch`` distinct classes
    drawn at random, and ``per_class`` samples of each, drawn without replacement from a per-class shuffle
    (reshuffled when a class runs out). Returns index tensors into ``labels``; ``num_batches`` defaults to
    ⌊N / (P·K)⌋. Every class needs at least ``per_class`` samples (GE2E and the prototypical losses need
    every class of a batch the same number of times)."""
    name = "pk_batches"
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        raise TypeError(f"{name}: labels must be an int64 tensor of shape (N,); got {labels!r:.60}.")
    classes, counts = torch.unique(labels, return_counts=True)
    for arg, v, high in (("classes_per_batch", classes_per_batch, len(classes)),
                         ("per_class", per_class, int(counts.min()) if len(counts) else 0)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= high:
            raise ValueError(f"{name}: {arg} must be an int in [1, {high}] for these labels ({len(classes)} classes, "
                             f"the smallest with {int(counts.min()) if len(counts) else 0} samples); got {v!r}.")
    members = [torch.nonzero(labels == c).squeeze(1) for c in classes]
    order = [m[torch.randperm(len(m), generator=generator)] for m in members]
    used = [0] * len(classes)
    n = len(labels) // (classes_per_batch * per_class) if num_batches is None else int(num_batches)
    batches = []
    for _ in range(n):
        chosen = torch.randperm(len(classes), generator=generator)[:classes_per_batch].tolist()
        parts = []
        for c in chosen:
            if used[c] + per_class > len(order[c]):
                order[c], used[c] = members[c][torch.randperm(len(members[c]), generator=generator)], 0
            parts.append(order[c][used[c]:used[c] + per_class])
            used[c] += per_class
        batches.append(torch.cat(parts))
    return batches


def few_shot_episodes(labels: Tensor, n_way: int, k_shot: int, *, n_query: int, n_episodes: int,
                      generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    """N-way K-shot episodes for few-shot evaluation: each draws ``n_way`` distinct classes at random, then,
    without replacement within the episode, ``k_shot`` support and ``n_query`` query samples of each.
    Returns ``n_episodes`` pairs ``(support, query)`` of index tensors into ``labels``, both class by class
    in the order the classes were drawn. Every class needs at least ``k_shot + n_query`` samples."""
    name = "few_shot_episodes"
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        raise TypeError(f"{name}: labels must be an int64 tensor of shape (N,); got {labels!r:.60}.")
    classes, counts = torch.unique(labels, return_counts=True)
    for arg, v in (("k_shot", k_shot), ("n_query", n_query), ("n_episodes", n_episodes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: {arg} must be an int ≥ 1; got {v!r}.")
    if isinstance(n_way, bool) or not isinstance(n_way, int) or not 2 <= n_way <= len(classes):
        raise ValueError(f"{name}: n_way must be an int in [2, {len(classes)}] (the number of classes in labels); "
                         f"got {n_way!r}.")
    small = classes[counts < k_shot + n_query].tolist()
    if small:
        raise ValueError(f"{name}: classes {small} have fewer than k_shot + n_query = {k_shot + n_query} samples; "
                         "lower k_shot or n_query.")
    members = [torch.nonzero(labels == c).squeeze(1) for c in classes]
    episodes = []
    for _ in range(n_episodes):
        chosen = torch.randperm(len(classes), generator=generator)[:n_way].tolist()
        picks = [members[c][torch.randperm(len(members[c]), generator=generator)[:k_shot + n_query]] for c in chosen]
        episodes.append((torch.cat([p[:k_shot] for p in picks]), torch.cat([p[k_shot:] for p in picks])))
    return episodes
