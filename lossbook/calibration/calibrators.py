r"""Post-hoc calibrators: maps of a trained classifier's logits, fitted on held-out (validation) data
by the negative log-likelihood, that leave the classifier itself unchanged (Guo et al. 2017).

=======================  ===============================  ===========================================
calibrator               calibrated logits                fitted parameters
=======================  ===============================  ===========================================
:class:`TemperatureScaling`  z / T                        T > 0 (keeps the arg-max)
:class:`VectorScaling`   w ⊙ z + b                        w, b ∈ R^C
:class:`MatrixScaling`   W z + b                          W ∈ R^{C×C}, b ∈ R^C
=======================  ===============================  ===========================================

Each has ``fit(logits, labels)``, a class method that returns the fitted calibrator; calling it on
logits (N, C) returns calibrated logits of the same dtype and device. The parameters are buffers
(they follow ``.to(device)``, and the user's optimiser never sees them). Fitting runs in float64
on CPU: temperature scaling by a bounded scalar minimisation over log T (:func:`fit_temperature`),
vector and matrix scaling by L-BFGS with a strong-Wolfe line search from the identity map.
Matrix scaling has C(C + 1) parameters and over-fits small validation sets; it is here as the
paper's most general baseline.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_logits, check_number, describe
from ..registry import register_method

__all__ = ["fit_temperature", "TemperatureScaling", "VectorScaling", "MatrixScaling"]


def _fit_inputs(name: str, logits, labels) -> tuple[Tensor, Tensor]:
    """``logits`` (N, C) floating and finite, ``labels`` (N,) integer class indices, N ≥ 1 → float64/int64 on CPU."""
    z = torch.from_numpy(logits) if isinstance(logits, np.ndarray) else logits
    y = torch.from_numpy(labels) if isinstance(labels, np.ndarray) else labels
    if not isinstance(z, Tensor) or not z.is_floating_point():
        raise TypeError(f"{name}: logits must be a floating tensor (or NumPy array) of shape (N, C); got "
                        f"{describe(z)}. Use torch.as_tensor(logits, dtype=torch.float64).")
    if not isinstance(y, Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name}: labels must be integer class indices of shape (N,); got {describe(y)}. "
                        "Use labels.long() (or labels.argmax(1) for one-hot rows).")
    if z.dim() != 2 or y.dim() != 1 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"{name}: logits must be (N, C) and labels (N,) with N ≥ 1; got shapes "
                         f"{tuple(z.shape)} and {tuple(y.shape)}.")
    z, y = z.detach().to("cpu", torch.float64), y.detach().to("cpu", torch.int64)
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name}: logits hold NaN or infinite values; calibrate finite logits only.")
    c = z.shape[1]
    if bool(((y < 0) | (y >= c)).any()):
        raise ValueError(f"{name}: labels must lie in [0, {c}) for logits with {c} classes; got values from "
                         f"{int(y.min())} to {int(y.max())}.")
    return z, y


def fit_temperature(logits, target, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T > 0 that minimises the mean NLL of ``softmax(logits / T)`` on ``(logits, target)``.

    ``logits`` has shape (N, C) and ``target`` holds class indices (N,); fit on a validation
    split, never on the test data a verdict reads. Rule: a bounded scalar minimisation over log T in
    ``[log bounds[0], log bounds[1]]`` (the NLL is smooth in log T); computed in float64.
    """
    z, y = _fit_inputs("fit_temperature", logits, target)
    low, high = bounds
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(f"fit_temperature: bounds must satisfy 0 < low < high < inf; got {bounds!r}.")
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda s: float(F.cross_entropy(z / math.exp(s), y)),
                          bounds=(math.log(low), math.log(high)), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


class _Calibrator(nn.Module):
    """Shared part: the input check of ``forward`` and the L-BFGS fit of the NLL."""

    def _check(self, logits: Tensor, num_classes: int | None) -> None:
        name = type(self).__name__
        check_logits(name, logits)
        if num_classes is not None and logits.shape[1] != num_classes:
            raise ValueError(f"{name}: was fitted on {num_classes} classes; got logits of shape "
                             f"{tuple(logits.shape)}. Fit it again on logits of this model.")

    @staticmethod
    def _fit_nll(params: list[Tensor], transform, z: Tensor, y: Tensor, max_iter: int) -> None:
        """Minimise mean NLL of ``transform(z)`` over ``params`` (float64 leaves) with L-BFGS."""
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                                tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(transform(z), y)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)


@register_method(kind="calibrator", family="calibration", paper="guo2017calibration")
class TemperatureScaling(_Calibrator):
    """Temperature scaling (Guo et al. 2017): calibrated logits z / T with one T > 0 fitted by NLL.

    ``TemperatureScaling.fit(val_logits, val_labels)`` fits T on validation data
    (:func:`fit_temperature`); ``TemperatureScaling(temperature=T)`` builds one by hand. Dividing
    by T > 0 never changes the arg-max, so accuracy is kept.
    """

    temperature: Tensor

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        t = check_number("TemperatureScaling", "temperature", temperature, low=0.0, low_open=True)
        self.register_buffer("temperature", torch.tensor(t, dtype=torch.float64))

    @classmethod
    def fit(cls, logits, labels, *, bounds: tuple[float, float] = (0.05, 20.0)) -> TemperatureScaling:
        """The calibrator with T fitted on ``(logits, labels)`` (:func:`fit_temperature`)."""
        return cls(fit_temperature(logits, labels, bounds=bounds))

    def forward(self, logits: Tensor) -> Tensor:
        self._check(logits, None)
        return logits / self.temperature.to(logits)

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):.6g}"


@register_method(kind="calibrator", family="calibration", paper="guo2017calibration")
class VectorScaling(_Calibrator):
    """Vector scaling (Guo et al. 2017): calibrated logits w ⊙ z + b, w and b ∈ R^C fitted by NLL.

    ``VectorScaling.fit(val_logits, val_labels)`` starts from w = 1, b = 0 and runs L-BFGS in float64.
    Unlike temperature scaling it can change the arg-max.
    """

    weight: Tensor
    bias: Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be an int ≥ 1; got {num_classes!r}.")
        self.register_buffer("weight", torch.ones(num_classes, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(num_classes, dtype=torch.float64))

    def _map(self, z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return z * weight + bias

    @classmethod
    def fit(cls, logits, labels, *, max_iter: int = 500) -> VectorScaling:
        """The calibrator with its parameters fitted on ``(logits, labels)`` by NLL (L-BFGS, float64)."""
        z, y = _fit_inputs(f"{cls.__name__}.fit", logits, labels)
        out = cls(z.shape[1])
        params = [out.weight.clone().requires_grad_(), out.bias.clone().requires_grad_()]
        out._fit_nll(params, lambda v: out._map(v, *params), z, y, max_iter)
        with torch.no_grad():
            out.weight.copy_(params[0])
            out.bias.copy_(params[1])
        return out

    def forward(self, logits: Tensor) -> Tensor:
        self._check(logits, self.bias.shape[0])
        return self._map(logits, self.weight.to(logits), self.bias.to(logits))


@register_method(kind="calibrator", family="calibration", paper="guo2017calibration")
class MatrixScaling(VectorScaling):
    """Matrix scaling (Guo et al. 2017): calibrated logits W z + b, W ∈ R^{C×C} and b fitted by NLL.

    ``MatrixScaling.fit(val_logits, val_labels)`` starts from W = I, b = 0 and runs L-BFGS in float64.
    With C(C + 1) parameters it over-fits small validation sets; it can change the arg-max.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        self.weight = torch.eye(num_classes, dtype=torch.float64)

    def _map(self, z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return z @ weight.T + bias
