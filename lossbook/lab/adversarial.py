r"""Adversarial perturbations in the L∞ ball: FGSM (Goodfellow et al., 2015) and PGD (Madry et al., 2018).

Both maximise a loss (cross-entropy by default) over inputs x' with ‖x' − x‖_∞ ≤ ε:

* FGSM takes one step, x' = x + ε·sign(∇_x ℓ);
* PGD takes ``steps`` steps of size α, x' ← Π_ε(x' + α·sign(∇_x ℓ)), from x or from a uniform random
  start in the ball, Π_ε clipping back into the ball (and into ``bounds`` when given).

:func:`adversarial_training` trains on PGD perturbations of each batch (Madry et al.'s recipe).

The model is put in evaluation mode for the attack and restored after; its parameters get no
gradient. The inputs are never modified in place.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["fgsm", "pgd", "adversarial_training"]


def _check(name: str, model, x, y, eps: float) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}: model must be a torch.nn.Module; got {type(model).__name__}.")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name}: x must be a floating tensor; got {type(x).__name__}. Use x.float().")
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
        raise ValueError(f"{name}: y must be int64 class indices of shape ({len(x)},); got "
                         f"{getattr(y, 'dtype', type(y).__name__)} of shape {tuple(getattr(y, 'shape', ()))}.")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"{name}: eps must be a number ≥ 0 (the L∞ radius); got {eps!r}.")


def _gradient(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable) -> Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _project(x_adv: Tensor, x: Tensor, eps: float, bounds) -> Tensor:
    x_adv = torch.max(torch.min(x_adv, x + eps), x - eps)
    if bounds is not None:
        x_adv = x_adv.clamp(*bounds)
    return x_adv.detach()


def _attack(name, model, x, y, eps, *, alpha, steps, random_start, loss_fn, bounds, seed):
    _check(name, model, x, y, eps)
    was_training = model.training
    model.eval()
    try:
        x_adv = x.detach().clone()
        if random_start and eps > 0:
            g = torch.Generator(device="cpu").manual_seed(seed)
            x_adv = x_adv + (torch.rand(x.shape, generator=g) * 2 - 1).to(x) * eps
            x_adv = _project(x_adv, x, eps, bounds)
        for _ in range(steps):
            x_adv = _project(x_adv + alpha * _gradient(model, x_adv, y, loss_fn).sign(), x, eps, bounds)
    finally:
        model.train(was_training)
    return x_adv


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, loss_fn: Callable = F.cross_entropy,
         bounds: tuple[float, float] | None = None) -> Tensor:
    """The fast gradient sign perturbation x + ε·sign(∇_x ℓ(model(x), y)) (clipped into ``bounds``).

    ``loss_fn(logits, y, reduction="sum")`` is the loss the attack increases (cross-entropy by default).
    """
    return _attack("fgsm", model, x, y, eps, alpha=eps, steps=1, random_start=False, loss_fn=loss_fn,
                   bounds=bounds, seed=0)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, alpha: float | None = None, steps: int = 10,
        random_start: bool = True, loss_fn: Callable = F.cross_entropy, bounds: tuple[float, float] | None = None,
        seed: int = 0) -> Tensor:
    """Projected gradient descent in the L∞ ball of radius ``eps``: ``steps`` sign steps of size ``alpha``
    (default 2.5·ε/steps), each projected back into the ball (and ``bounds``); a uniform random start
    (drawn from ``seed``) when ``random_start``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"pgd: steps must be a positive int; got {steps!r}.")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (alpha > 0 or alpha == eps == 0):
        raise ValueError(f"pgd: alpha must be a number > 0 (the step size); got {alpha!r}.")
    return _attack("pgd", model, x, y, eps, alpha=alpha, steps=steps, random_start=random_start,
                   loss_fn=loss_fn, bounds=bounds, seed=seed)


def adversarial_training(model: nn.Module, loss_fn: Callable, x: Tensor, y: Tensor, *, eps: float, epochs: int,
                         steps: int = 3, batch_size: int = 64, lr: float = 0.05, momentum: float = 0.9,
                         bounds: tuple[float, float] | None = None, seed: int = 0) -> nn.Module:
    """Train ``model`` with SGD on ``loss_fn(model(x_adv), y)``, x_adv a ``steps``-step PGD perturbation
    (radius ``eps``, random start) of each batch against cross-entropy; ``eps = 0`` is plain training.

    The data order and the attacks' random starts depend only on ``seed``. Returns the model.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"adversarial_training: epochs must be an int ≥ 0; got {epochs!r}.")
    _check("adversarial_training", model, x, y, eps)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            if eps > 0:
                xb = pgd(model, xb, yb, eps, steps=steps, bounds=bounds, seed=seed * 100_003 + epoch * 1_009 + start)
            model.train()
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model
