"""The H-consistency experiment of chapter 1: train a linear model with a comp-sum loss and follow
its excess risks against the bound of :func:`lossbook.softmax.comp_sum_bound`."""

from __future__ import annotations

import torch

from ..softmax import comp_sum_bound, comp_sum_loss, excess_risks
from .train import fit, predict_logits, set_seed

__all__ = ["consistency_trajectory"]


def consistency_trajectory(mixture, tau: float, *, seed: int, n_train: int, n_eval: int = 20_000, epochs: int = 20,
                           batch_size: int = 64, lr: float = 0.01, device="cpu") -> list[dict]:
    r"""Train a linear model with ℓ^τ on a :class:`lossbook.lab.data.GaussianMixture` and record, after
    every epoch, the excess surrogate and zero-one risks (on ``n_eval`` fresh points, using the
    known posterior) and the H-consistency bound Γ_τ(excess surrogate).

    The Bayes scores of such a mixture are affine, and so is the log of every comp-sum minimiser
    (see :func:`lossbook.softmax.comp_sum_minimizer`): a linear model has zero minimisability
    gaps, so Theorem 3.1 of Mao et al. (2023) reads  excess 0-1 ≤ Γ_τ(excess surrogate).
    """
    x, y = mixture.sample(n_train, seed=seed)
    x_eval, _ = mixture.sample(n_eval, seed=10_000 + seed)
    eta = mixture.posterior(x_eval)
    set_seed(seed)
    model = torch.nn.Linear(mixture.dim, mixture.num_classes)

    def evaluate(m) -> dict:
        r = excess_risks(predict_logits(m, x_eval), eta, tau)
        r["bound"] = float(comp_sum_bound(r["excess_surrogate"], tau, mixture.num_classes))
        return r

    history = fit(model, lambda z, t: comp_sum_loss(z, t, tau=tau), x, y, epochs=epochs, batch_size=batch_size,
                  lr=lr, momentum=0.0, seed=seed, device=device, evaluate=evaluate, progress=False)
    return [{k: row[k] for k in ("epoch", "step", "excess_surrogate", "excess_zero_one", "bound")}
            for row in history.records]
