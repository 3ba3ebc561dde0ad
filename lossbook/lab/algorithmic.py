"""Modular addition, the smallest setting in which a network *groks*: it fits its training pairs long
before it generalises to the held-out ones (Power et al., 2022).

:func:`modular_addition` splits the p² pairs (a, b) → (a + b) mod p into a training fraction and the
rest; :class:`ModularMLP` embeds a and b, passes the concatenation through a SiLU MLP and ends in
a linear layer (cross-entropy) or a :class:`lossbook.alternatives.HarmonicLayer` (harmonic loss);
:func:`train_to_generalise` trains full-batch with AdamW and records the step at which the
training accuracy and the held-out accuracy first reach a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..alternatives import HarmonicLayer

__all__ = ["ModularSplit", "modular_addition", "ModularMLP", "train_to_generalise"]


@dataclass(frozen=True)
class ModularSplit:
    """Pairs (N, 2) and their sums mod ``p``: the training fraction and the held-out rest."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    p: int


def modular_addition(p: int, train_fraction: float, *, seed: int) -> ModularSplit:
    """All pairs (a, b) with a, b in [0, p) and labels (a + b) mod p, split at random (from ``seed``)
    into ⌊train_fraction · p²⌋ training pairs and the held-out rest."""
    if isinstance(p, bool) or not isinstance(p, int) or p < 2:
        raise ValueError(f"modular_addition: p must be an int ≥ 2 (the modulus); got {p!r}.")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"modular_addition: train_fraction must lie in (0, 1); got {train_fraction!r}.")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], dim=1)
    y = (x[:, 0] + x[:, 1]) % p
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n = int(train_fraction * len(x))
    if n < 1 or n >= len(x):
        raise ValueError(f"modular_addition: train_fraction={train_fraction} leaves {n} of {len(x)} pairs for "
                         "training; both parts must be non-empty.")
    tr, te = order[:n], order[n:]
    return ModularSplit(x[tr], y[tr], x[te], y[te], p)


class ModularMLP(nn.Module):
    """Embeddings of a and b (``embed_dim`` each), concatenated, → SiLU MLP → ``embed_dim`` features →
    ``head``: ``"linear"`` (logits for cross-entropy) or ``"harmonic"`` (harmonic logits, exponent ``n``)."""

    def __init__(self, p: int, *, embed_dim: int = 32, hidden: int = 128, head: str = "linear", n: float = 2.0):
        super().__init__()
        if head not in ("linear", "harmonic"):
            raise ValueError(f"ModularMLP: head must be 'linear' or 'harmonic'; got {head!r}.")
        self.embed = nn.Embedding(p, embed_dim)
        self.body = nn.Sequential(nn.Linear(2 * embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, embed_dim))
        self.head = nn.Linear(embed_dim, p) if head == "linear" else HarmonicLayer(embed_dim, p, n=n)

    def forward(self, pairs: Tensor) -> Tensor:
        return self.head(self.body(self.embed(pairs).flatten(1)))


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_to_generalise(model: nn.Module, split: ModularSplit, *, steps: int, lr: float = 3e-3,
                        weight_decay: float = 1.0, eval_every: int = 20, threshold: float = 0.99,
                        stop: bool = True) -> dict:
    """Full-batch AdamW (β = (0.9, 0.98)) on cross-entropy of ``model``'s outputs for up to ``steps`` steps.

    Every ``eval_every`` steps the training and held-out accuracies are recorded; returns
    ``{"fit_step", "generalise_step", "test_accuracy", "history"}``: the first recorded step at which
    the training (held-out) accuracy reached ``threshold``, or ``None`` when it did not within
    ``steps``; the last held-out accuracy; the table of the recorded accuracies. With ``stop``, training
    ends once the held-out accuracy reaches the threshold.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(f"train_to_generalise: steps and eval_every must be ≥ 1; got {steps} and {eval_every}.")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    fit = gen = None
    rows, test = [], 0.0
    for step in range(1, steps + 1):
        loss = F.cross_entropy(model(split.x_train), split.y_train)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            train_acc = _accuracy(model, split.x_train, split.y_train)
            test = _accuracy(model, split.x_test, split.y_test)
            rows.append({"step": step, "train_accuracy": train_acc, "test_accuracy": test})
            fit = step if fit is None and train_acc >= threshold else fit
            gen = step if gen is None and test >= threshold else gen
            if stop and gen is not None:
                break
    return {"fit_step": fit, "generalise_step": gen, "test_accuracy": test, "history": pd.DataFrame(rows)}
