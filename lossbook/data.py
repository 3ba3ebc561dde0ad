"""Offline data: nothing here downloads anything.

* :func:`load_digits` — scikit-learn's bundled 8×8 digits with fixed, stratified splits;
* :class:`GaussianMixture` — Gaussian classes with a shared isotropic covariance, whose Bayes
  posterior is known in closed form (a softmax of affine scores);
* :func:`symmetric_noise`, :func:`asymmetric_noise`, :func:`long_tail` — label-noise and long-tail
  transforms that return new tensors and never modify their inputs.

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
