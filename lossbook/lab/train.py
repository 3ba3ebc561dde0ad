"""A small, explicit training loop: seeds, device, minibatches, an optional evaluation callback.

Nothing is hidden: :func:`fit` is one readable loop over epochs and shuffled minibatches. The
progress bar (``tqdm.auto``) shows in JupyterLab and in a terminal; headless runs set
``LOSSBOOK_PROGRESS=0`` (``lossbook run`` does) to keep executed notebooks clean.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

__all__ = ["set_seed", "get_device", "mlp", "History", "fit", "predict_logits", "progress_enabled",
           "classifier_metrics", "train_classifier"]


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a fresh CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"get_device: {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'.")
    return dev


def progress_enabled(progress: bool | None = None) -> bool:
    """Resolve a ``progress`` argument: ``None`` follows ``LOSSBOOK_PROGRESS`` (default on)."""
    if progress is not None:
        return progress
    return os.environ.get("LOSSBOOK_PROGRESS", "1") not in ("0", "false", "False", "")


def mlp(in_features: int, out_features: int, hidden: tuple[int, ...] = (), *, activation=nn.ReLU) -> nn.Sequential:
    """A plain MLP; ``hidden=()`` is a linear model."""
    sizes = (in_features, *hidden, out_features)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


@dataclass
class History:
    """What :func:`fit` recorded: one row per evaluation (``epoch``, ``step``, ``train_loss``, …)."""

    records: list[dict] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)

    def last(self, key: str):
        return self.records[-1][key]


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, *, batch_size: int = 4096) -> Tensor:
    """Model outputs for ``x`` in evaluation mode, in chunks, on the model's device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def fit(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    optimizer: str | Callable = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = False,
    lr_min: float | None = None,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int = 1,
    progress: bool | None = None,
    desc: str = "train",
) -> History:
    """Train ``model`` on ``(x, y)`` with ``loss_fn`` and return a :class:`History`.

    ``optimizer`` is ``"sgd"`` (with ``momentum``, Nesterov's when ``nesterov``), ``"adam"``, or a
    callable ``params -> Optimizer``. With ``lr_min``, the rate follows a cosine from ``lr`` down to
    ``lr_min`` over the epochs (``CosineAnnealingLR`` with ``T_max = epochs``, stepped once an epoch).
    ``max_grad_norm`` clips the gradient's global norm before each step (``None``: no clipping).
    ``evaluate(model)`` runs before training and every ``eval_every`` epochs; its dict joins the row.
    Data order depends only on ``seed``; call :func:`set_seed` before building the model so its
    initialisation is reproducible too.
    """
    from tqdm.auto import tqdm

    if epochs < 0 or batch_size < 1:
        raise ValueError(f"fit: epochs must be ≥ 0 and batch_size ≥ 1; got {epochs} and {batch_size}.")
    if lr_min is not None and not 0.0 <= lr_min <= lr:
        raise ValueError(f"fit: lr_min must lie in [0, lr] (the cosine schedule's floor); got lr_min={lr_min}, lr={lr}.")
    if nesterov and (optimizer != "sgd" or momentum <= 0):
        raise ValueError("fit: nesterov=True needs optimizer='sgd' with momentum > 0.")
    if len(x) != len(y):
        raise ValueError(f"fit: x and y must have the same length; got {len(x)} and {len(y)}.")
    dev = get_device(device)
    model.to(dev)
    x, y = x.to(dev), y.to(dev)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                              nesterov=nesterov)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif callable(optimizer):
        opt = optimizer(model.parameters())
    else:
        raise ValueError(f"fit: optimizer must be 'sgd', 'adam' or a callable; got {optimizer!r}.")
    schedule = None if lr_min is None else torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1), lr_min)
    g = torch.Generator().manual_seed(seed)
    history = History()
    step = 0

    def record(epoch: int, train_loss: float) -> None:
        row = {"epoch": epoch, "step": step, "train_loss": train_loss}
        if evaluate is not None:
            row.update(evaluate(model))
        history.records.append(row)

    record(0, float("nan"))
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress_enabled(progress), leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x), generator=g).to(dev)
        total, count = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        train_loss = total / max(count, 1)
        if schedule is not None:
            schedule.step()
        if not np.isfinite(train_loss):
            raise FloatingPointError(
                f"fit: the training loss became {train_loss} at epoch {epoch}; lower lr (now {lr})."
            )
        if epoch % eval_every == 0 or epoch == epochs:
            record(epoch, train_loss)
        bar.set_postfix(loss=f"{train_loss:.4f}")
    return history


def classifier_metrics(model: nn.Module, x: Tensor, y: Tensor, *, prefix: str = "", n_bins: int = 15) -> dict:
    """Accuracy, NLL and ECE of a classifier's softmax on ``(x, y)``."""
    from .. import metrics

    logits = predict_logits(model, x).double().cpu()
    probs = torch.softmax(logits, dim=1)
    y = y.cpu()
    return {
        f"{prefix}accuracy": metrics.accuracy(logits, y),
        f"{prefix}nll": metrics.nll(probs, y),
        f"{prefix}ece": metrics.expected_calibration_error(probs, y, n_bins=n_bins),
    }


def train_classifier(
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    splits,
    *,
    hidden: tuple[int, ...] = (64,),
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 0.05,
    optimizer: str = "sgd",
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    y_train: Tensor | None = None,
    progress: bool | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int = 1,
    **fit_options,
) -> tuple[nn.Module, dict]:
    """Train an MLP on ``splits`` (a :class:`lossbook.lab.data.Splits`) and measure it on the test split.

    ``y_train`` replaces the training labels (e.g. noisy ones); the test labels stay clean.
    Returns the model and ``{"test_accuracy", "test_nll", "test_ece", "train_loss"}``; with
    ``evaluate`` (as in :func:`fit`), also ``"history"``: the per-epoch table of :func:`fit`.
    ``fit_options`` go to :func:`fit` (``momentum``, ``nesterov``, ``lr_min``).
    """
    set_seed(seed)
    model = mlp(splits.num_features, splits.num_classes, hidden)
    labels = splits.y_train if y_train is None else y_train
    history = fit(model, loss_fn, splits.x_train, labels, epochs=epochs, batch_size=batch_size, lr=lr,
                  optimizer=optimizer, weight_decay=weight_decay, max_grad_norm=max_grad_norm, seed=seed,
                  device=device, progress=progress, evaluate=evaluate, eval_every=eval_every, **fit_options)
    out = classifier_metrics(model, splits.x_test, splits.y_test, prefix="test_")
    out["train_loss"] = history.last("train_loss")
    if evaluate is not None:
        out["history"] = history.frame()
    return model, out
