r"""The loss landscape: sharpness-aware minimisation (SAM) around any optimiser, and the Hessian's
spectrum by Lanczos on Hessian-vector products (torch.func), over all data or class by class.

**SAM** (Foret et al., 2021), the method the saddle-point paper (Rangwani et al., 2022, "Escaping
saddle points for effective generalization on class-imbalanced data") applies to the tail: with the
gradient g at w, step to w + ε, ε = ρ g/‖g‖, take the gradient there and let the base optimiser
update w with it.

**Spectrum.** :func:`hessian_vector_product` differentiates the gradient (forward-over-reverse,
``torch.func.jvp`` of ``torch.func.grad``) without forming the Hessian; :func:`lanczos` runs k steps
of the Lanczos iteration with full re-orthogonalisation, whose tridiagonal matrix's eigenvalues
(the Ritz values) approximate the extreme eigenvalues of the Hessian (exactly, once k reaches the
number of parameters). :func:`per_class_spectrum` applies it to the loss of each class's examples:
a negative λ_min with |λ_min|/λ_max not small marks a saddle point, which is what the saddle-point
paper reports for the tail classes.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import Tensor, nn

from .._validation import check_number
from ..registry import register_method

__all__ = ["SAM", "hessian_vector_product", "lanczos", "loss_hessian_spectrum", "per_class_spectrum"]


@register_method(kind="building block", family="imbalance", paper="foret2021sam")
class SAM:
    r"""Sharpness-aware minimisation around any optimiser: ``SAM(torch.optim.SGD(model.parameters(),
    lr=0.1), rho=0.05)``.

    One step with a ``closure`` that zeroes the gradients, computes the loss and calls backward::

        def closure():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)

    computes g at w, moves to w + ε (ε = ρ g/‖g‖, the norm over every parameter; with ``adaptive``,
    ε_i = ρ w_i² g_i / ‖w ⊙ g‖, ASAM), recomputes the gradient there, moves back to w and lets the
    base optimiser step with that gradient. ``rho=0`` is the base optimiser. Returns the loss at w.
    :meth:`first_step` and :meth:`second_step` are the two halves, for loops that call backward
    themselves.
    """

    def __init__(self, base: torch.optim.Optimizer, *, rho: float = 0.05, adaptive: bool = False) -> None:
        if not isinstance(base, torch.optim.Optimizer):
            raise TypeError(f"SAM: base must be a torch.optim.Optimizer built on the model's parameters, e.g. "
                            f"SAM(torch.optim.SGD(model.parameters(), lr=0.1)); got {type(base).__name__}.")
        self.base = base
        self.rho = check_number("SAM", "rho", rho, low=0.0)
        self.adaptive = bool(adaptive)
        self._eps: dict[Tensor, Tensor] = {}

    @property
    def param_groups(self):
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def _params(self):
        return [p for g in self.base.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self) -> None:
        """Move every parameter to w + ε from its current gradient (call after backward at w)."""
        params = self._params()
        if not params:
            raise ValueError("SAM.first_step: no parameter has a gradient; call loss.backward() first.")
        scaled = [(p.abs() * p.grad if self.adaptive else p.grad) for p in params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        factor = self.rho / (norm + 1e-12)
        self._eps = {}
        for p, s in zip(params, scaled):
            e = (p.abs() * s if self.adaptive else s) * factor
            p.add_(e)
            self._eps[p] = e

    @torch.no_grad()
    def second_step(self) -> None:
        """Move back to w and let the base optimiser step with the gradient taken at w + ε."""
        if not self._eps and self.rho > 0:
            raise ValueError("SAM.second_step: call first_step() (after backward at w) before second_step().")
        for p, e in self._eps.items():
            p.sub_(e)
        self._eps = {}
        self.base.step()

    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        if closure is None or not callable(closure):
            raise TypeError("SAM.step needs a closure that zeroes the gradients, computes the loss, calls "
                            "backward and returns the loss (see the class docstring).")
        loss = closure()
        self.first_step()
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state) -> None:
        self.base.load_state_dict(state)


def _flat_loss(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor):
    """The loss as a function of one flat parameter vector, and that vector at the model's weights."""
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p.detach() for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    flat0 = torch.cat([p.reshape(-1) for p in params])

    def f(flat: Tensor) -> Tensor:
        parts = dict(zip(names, (t.reshape(s) for t, s in zip(flat.split(sizes), shapes))))
        return loss_fn(functional_call(model, parts, (x,)), y)

    return f, flat0


@register_method(kind="analysis", family="imbalance", paper="rangwani2022escaping")
def hessian_vector_product(f: Callable[[Tensor], Tensor], w: Tensor, v: Tensor) -> Tensor:
    """H(w)·v of a scalar function ``f`` of a flat vector ``w``, forward-over-reverse
    (``torch.func.jvp`` of ``torch.func.grad``): one gradient's cost, no Hessian formed."""
    from torch.func import grad, jvp

    return jvp(grad(f), (w,), (v,))[1]


@register_method(kind="analysis", family="imbalance", paper="rangwani2022escaping")
def lanczos(matvec: Callable[[Tensor], Tensor], dim: int, *, iters: int = 30, seed: int = 0,
            dtype=torch.float64, device="cpu") -> Tensor:
    """Ritz values (ascending) of a symmetric operator ``matvec`` on R^dim after ``iters`` Lanczos steps
    with full re-orthogonalisation, from a random start (``seed``). The extreme values converge
    first; with ``iters`` ≥ ``dim`` they are the exact eigenvalues (up to rounding)."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"lanczos: iters must be a positive int; got {iters!r}.")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"lanczos: dim must be a positive int; got {dim!r}.")
    k = min(iters, dim)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=dtype).to(device)
    q = q / torch.linalg.vector_norm(q)
    basis, alphas, betas = [q], [], []
    for j in range(k):
        w = matvec(basis[-1]).to(dtype)
        a = torch.dot(w, basis[-1])
        alphas.append(a)
        Q = torch.stack(basis, 1)
        w = w - Q @ (Q.T @ w)
        w = w - Q @ (Q.T @ w)  # twice is enough (Kahan–Parlett)
        b = torch.linalg.vector_norm(w)
        if j == k - 1 or b < 1e-10 * max(1.0, float(abs(a))):
            break
        betas.append(b)
        basis.append(w / b)
    t = torch.diag(torch.stack(alphas))
    if betas:
        off = torch.stack(betas)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(t)


@register_method(kind="analysis", family="imbalance", paper="rangwani2022escaping")
def loss_hessian_spectrum(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, *,
                          iters: int = 30, seed: int = 0) -> Tensor:
    """Ritz values (ascending, float64) of the Hessian of ``loss_fn(model(x), y)`` with respect to the
    model's trainable parameters, by :func:`lanczos` on :func:`hessian_vector_product`, in float64
    (the model should hold float64 parameters, or be a float64 copy: ``copy.deepcopy(model).double()``)."""
    f, w = _flat_loss(model, loss_fn, x.double() if x.is_floating_point() else x, y)
    w = w.double()
    return lanczos(lambda v: hessian_vector_product(f, w, v), w.numel(), iters=iters, seed=seed, device=w.device)


@register_method(kind="analysis", family="imbalance", paper="rangwani2022escaping")
def per_class_spectrum(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, *,
                       num_classes: int, iters: int = 30, top: int = 3, seed: int = 0) -> pd.DataFrame:
    """The Hessian spectrum of the loss on each class's examples: one row per class present in ``y``
    with ``n`` (examples), ``lambda_max``, ``lambda_min``, ``ratio`` = λ_min/λ_max (negative: a
    saddle, as the saddle-point paper reports for the tail) and the ``top`` largest Ritz values.
    The model is evaluated in float64 (a copy; the caller's model is not changed)."""
    import copy

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"per_class_spectrum: num_classes must be a positive int; got {num_classes!r}.")
    m = copy.deepcopy(model).double()
    rows = []
    for c in range(num_classes):
        mask = y == c
        if not bool(mask.any()):
            continue
        vals = loss_hessian_spectrum(m, loss_fn, x[mask].double(), y[mask], iters=iters, seed=seed)
        lam_max, lam_min = float(vals[-1]), float(vals[0])
        rows.append({"class": c, "n": int(mask.sum()), "lambda_max": lam_max, "lambda_min": lam_min,
                     "ratio": lam_min / lam_max if lam_max != 0 else float("nan"),
                     "top": [float(v) for v in vals.flip(0)[:top]]})
    return pd.DataFrame(rows)
