"""The thin Module shell shared by every loss: it stores hyper-parameters and calls the function."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from .registry import _attach_module, loss_info


class LossModule(nn.Module):
    """Base class of every loss Module.

    A subclass names its registered loss (``class CompSumLoss(LossModule, loss="comp_sum")``) and
    passes its hyper-parameters to ``__init__``; ``forward(input, target)`` calls the registered
    function with them. A ``weight`` tensor becomes a buffer so that it follows ``.to(device)``.
    """

    _loss_name: str

    def __init_subclass__(cls, loss: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if loss is not None:
            cls._loss_name = loss
            _attach_module(loss, cls)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        accepted = set(inspect.signature(self.function).parameters) - {"input", "target"}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: unexpected keyword argument(s) {unknown}; it accepts {sorted(accepted)}."
            )
        weight = kwargs.pop("weight", None)
        if weight is not None and not isinstance(weight, Tensor):
            weight = torch.as_tensor(weight, dtype=torch.get_default_dtype())
        self.register_buffer("weight", weight)
        self._kwargs = kwargs
        self._supports_weight = "weight" in loss_info(self._loss_name).supports
        check = getattr(self.function, "check_hyperparameters", None)
        if check is not None:
            check(**{k: v for k, v in kwargs.items() if k in loss_info(self._loss_name).hyperparameters})

    @property
    def function(self):
        return loss_info(self._loss_name).function

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 - torch's name
        kwargs = dict(self._kwargs)
        if self._supports_weight:
            kwargs["weight"] = self.weight
        return self.function(input, target, **kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())


class ClassLossModule(LossModule):
    """A loss Module with torch's class-loss options as keywords (``weight``, ``ignore_index``,
    ``reduction``, ``label_smoothing``) besides the loss's own hyper-parameters."""

    def __init__(
        self,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        **hyperparameters: Any,
    ) -> None:
        super().__init__(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            **hyperparameters,
        )


class IndexLossModule(LossModule):
    """A loss Module for losses on class-index targets without label smoothing (e.g. the spherical
    family): torch's ``weight``, ``ignore_index`` and ``reduction`` as keywords, besides the loss's
    own hyper-parameters."""

    def __init__(
        self,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        **hyperparameters: Any,
    ) -> None:
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction, **hyperparameters)
