"""Offline data: nothing here downloads anything.

* :func:`load_digits` — scikit-learn's bundled 8×8 digits with fixed, stratified splits;
* :class:`GaussianMixture` — Gaussian classes with a shared isotropic covariance, whose Bayes
  posterior is known in closed form (a softmax of affine scores);
* :func:`symmetric_noise`, :func:`asymmetric_noise`, :func:`long_tail` — label-noise and long-tail
  transforms that return new tensors and never modify their inputs;
* :func:`vmf_identities` — a synthetic "identities" set for face-recognition-style training and
  verification: von Mises–Fisher clusters on a sphere, seen through a fixed non-linear map with
  nuisance factors;
* :func:`latent_factor_interactions` — a synthetic recommender: users and items with latent
  factors and a Zipfian item popularity, split into train and test interactions.

Language-model data (stdlib tokens, vocabulary, n-grams, a Zipf Markov chain) is in :mod:`lossbook.corpus`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Splits",
    "load_digits",
    "GaussianMixture",
    "symmetric_noise",
    "asymmetric_noise",
    "long_tail",
    "Identities",
    "vmf_identities",
    "Interactions",
    "latent_factor_interactions",
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

    def to(self, device) -> "Splits":
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
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    i = lambda a: torch.as_tensor(a, dtype=torch.int64)  # noqa: E731
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
    ``latent`` (N, dim) float64 unit vectors, the von Mises–Fisher draws behind ``x``.
    """

    x: Tensor
    y: Tensor
    centres: Tensor
    latent: Tensor

    @property
    def num_identities(self) -> int:
        return int(self.centres.shape[0])


def _observation_map(dim: int, nuisance_dim: int, observed_dim: int, world_seed: int) -> Tensor:
    g = torch.Generator().manual_seed(world_seed)
    n_in = dim + nuisance_dim
    return torch.randn(n_in, observed_dim, generator=g, dtype=torch.float64) / math.sqrt(n_in)


def vmf_identities(num_identities: int, samples_per_identity: int, *, dim: int = 16, kappa: float = 20.0,
                   nuisance_dim: int = 16, observed_dim: int = 64, nuisance_scale: float = 1.0,
                   gain: float = 1.5, seed: int = 0, world_seed: int = 0) -> Identities:
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
    a = _observation_map(dim, nuisance_dim, observed_dim, world_seed)
    full = torch.from_numpy(np.concatenate([math.sqrt(dim) * latent, nuisance], axis=1))
    x = torch.tanh(gain * full @ a)
    y = torch.arange(k).repeat_interleave(n)
    return Identities(x.float(), y, torch.from_numpy(centres), torch.from_numpy(latent))


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
