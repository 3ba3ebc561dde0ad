r"""The one engine for torch's options: a registered loss supplies its per-example formula, the
engine does the rest, in function form (:func:`class_loss`) and Module form (:class:`LossModule`).

A formula is one of three kinds; pass exactly one to :func:`class_loss`:

=============  ============================================  ==========================================
keyword        what the loss writes                          what it gets
=============  ============================================  ==========================================
``phi``        φ(l), elementwise on log-probabilities:       ``weight``, ``ignore_index``,
               ℓ(z, k) = φ(log softmax(z)_k)                 ``label_smoothing``, probability targets
``per_class``  ``(z, y) -> (N, C)``: ℓ(z_i, k) for every k   the same (probability targets when the
               (y, the targets, for margins; None with       matrix does not need y)
               probability targets)
``per_row``    ``(z, y) -> (N,)``: ℓ(z_i, y_i) only          ``weight``, ``ignore_index``
=============  ============================================  ==========================================

and ``reduction`` for all. The semantics are :func:`torch.nn.functional.cross_entropy`'s:

* index targets: loss_i = (1 − ε)·w_{y_i}·ℓ(z_i, y_i) + (ε/C)·Σ_k w_k ℓ(z_i, k); ``"mean"`` divides by
  Σ_i w_{y_i} over the counted rows;
* probability targets q: loss_i = Σ_k w_k q̃_{ik} ℓ(z_i, k) with q̃ = (1 − ε)q + ε/C (a class with
  q̃ = 0 contributes exactly 0, even where ℓ is infinite); ``"mean"`` divides by N;
* a row whose target is ``ignore_index`` does not count: the formula sees zeros in its place, so
  a NaN or inf there reaches neither the result nor the gradient (which is exactly 0 on that row);
* an empty or fully ignored batch gives 0, still attached to the graph (torch gives NaN).

Everything is validated once, here, with messages that name the loss (``name``): the input, the
target (by dtype first: integer → class indices, floating → probabilities), ``weight``,
``reduction``, ``label_smoothing`` and the index range; ``cosine=True`` also checks that the
counted rows hold cosines in [−1, 1]. The loss checks only its own hyper-parameters (the validator
it gives :func:`~lossbook.registry.register_loss`) and any extra per-call tensors, which its
formula may check against ``z``.

A loss takes torch's options as ``**options`` and passes them on; :func:`~lossbook.registry.register_loss`
writes the ones it ``supports`` into its signature (``inspect.signature``, ``help``) and describes them
in its docstring. A worked example (Poly-1, Leng et al. 2022: CE + ε(1 − p_y))::

    def _check_epsilon(epsilon=1.0):
        return check_number("poly1_loss", "epsilon", epsilon, low=-1.0)

    @register_loss("poly1", family="softmax", paper="leng2022poly", supports=CLASS_OPTIONS,
                   check=_check_epsilon, summary="Poly-1: CE + ε(1 − p_y).", formula=r"...")
    def poly1_loss(input: Tensor, target: Tensor, *, epsilon: float = 1.0, **options: Unpack[ClassOptions]) -> Tensor:
        '''Poly-1 loss −log p_y + ε(1 − p_y) of Leng et al. (2022).'''
        epsilon = _check_epsilon(epsilon)
        return class_loss("poly1_loss", input, target, phi=lambda l: -l - epsilon * torch.expm1(l),
                          prob_target=True, **options)

    class Poly1Loss(LossModule, loss="poly1"):
        '''Module form of :func:`poly1_loss`.'''

The contract tests (``tests/test_contract.py``, parametrised over the registry) then check it with
every option it declares.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from ._validation import (
    check_cosines,
    check_logits,
    check_number,
    check_reduction,
    check_weight,
    counted_rows,
    reduce_loss,
    target_kind,
)
from .registry import TORCH_OPTIONS, link_module, loss_info

__all__ = [
    "CLASS_OPTIONS",
    "INDEX_OPTIONS",
    "ClassOptions",
    "IndexOptions",
    "class_loss",
    "LossModule",
]

#: ``supports`` of a loss with every torch option: class weights, ignored rows, label smoothing and
#: probability targets (a ``phi`` or a target-free ``per_class`` formula).
CLASS_OPTIONS = ("weight", "ignore_index", "label_smoothing", "prob_target")
#: ``supports`` of a ``per_row`` loss: class weights and ignored rows (class-index targets only).
INDEX_OPTIONS = ("weight", "ignore_index")


class IndexOptions(TypedDict, total=False):
    """torch's options of a loss that :data:`INDEX_OPTIONS` describes (``**options: Unpack[IndexOptions]``)."""

    weight: Tensor | None
    ignore_index: int
    reduction: str


class ClassOptions(IndexOptions, total=False):
    """torch's options of a loss with label smoothing (``**options: Unpack[ClassOptions]``)."""

    label_smoothing: float


def class_loss(
    name: str,
    input: Tensor,  # noqa: A002 - torch's name
    target: Tensor,
    *,
    phi: Callable[[Tensor], Tensor] | None = None,
    per_class: Callable[[Tensor, Tensor | None], Tensor] | None = None,
    per_row: Callable[[Tensor, Tensor], Tensor] | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float | None = None,
    prob_target: bool = False,
    cosine: bool = False,
    **unexpected: Any,
) -> Tensor:
    """The loss ``name`` of scores ``input`` (N, C) and ``target`` from one per-example formula.

    Exactly one of ``phi``, ``per_class``, ``per_row`` (see the module docstring); ``z`` is
    ``input`` with ignored rows zeroed and ``y`` the class indices with 0 in ignored rows.
    ``prob_target`` allows floating targets (N, C); ``cosine`` checks that the counted rows hold
    cosines. Options as in :func:`torch.nn.functional.cross_entropy`.
    """
    if per_row is not None and label_smoothing is not None:
        # a per-row formula gives only the target's loss: there is nothing to smooth over
        unexpected = {"label_smoothing": label_smoothing, **unexpected}
    if unexpected:
        raise TypeError(f"{name}() got an unexpected keyword argument {next(iter(unexpected))!r}")
    if sum(f is not None for f in (phi, per_class, per_row)) != 1:
        raise TypeError(f"{name}: class_loss takes exactly one formula: phi=, per_class= or per_row=.")
    check_logits(name, input)
    check_reduction(name, reduction)
    kind = target_kind(name, input, target, allow_prob=prob_target)
    weight = check_weight(name, weight, input)
    eps = 0.0 if label_smoothing is None else check_number(name, "label_smoothing", label_smoothing, low=0.0, high=1.0)
    n, c = input.shape
    if kind == "prob":
        if cosine:
            check_cosines(name, input)
        q = target if eps == 0.0 else (1.0 - eps) * target + eps / c
        if weight is not None:
            q = q * weight
        # where(q != 0, ·, 0) around the formula and again around the product: a class without target
        # mass contributes exactly 0, even where ℓ is infinite, and passes no NaN back through autograd
        present = q != 0
        if phi is not None:
            matrix = phi(torch.where(present, torch.log_softmax(input, dim=1), 0.0))
        else:
            matrix = per_class(input, None)
        per_sample = torch.where(present, q * matrix, 0.0).sum(dim=1)
        return reduce_loss(per_sample, reduction, denominator=torch.tensor(float(n), dtype=input.dtype,
                                                                           device=input.device))

    valid, all_counted = counted_rows(name, target, c, ignore_index)
    z = input
    if not all_counted:
        # ignored rows (padding) may hold anything: the formula sees zeros there, and where() gives
        # those rows exactly zero gradient
        z = torch.where(valid.unsqueeze(1), input, torch.zeros((), dtype=input.dtype, device=input.device))
    if cosine:
        check_cosines(name, z)
    y = torch.where(valid, target, 0)
    w_y = valid.to(input.dtype)
    if weight is not None:
        w_y = w_y * weight[y]
    matrix = None
    if per_row is not None:
        loss_y = per_row(z, y)
    elif phi is not None:
        log_p = torch.log_softmax(z, dim=1)
        loss_y = phi(log_p.gather(1, y.unsqueeze(1)).squeeze(1))
        if eps > 0.0:
            matrix = phi(log_p)
    else:
        matrix = per_class(z, y)
        loss_y = matrix.gather(1, y.unsqueeze(1)).squeeze(1)
    per_sample = w_y * loss_y
    if eps > 0.0:
        if weight is not None:
            matrix = matrix * weight
        per_sample = (1.0 - eps) * per_sample + (eps / c) * (matrix.sum(dim=1) * valid.to(input.dtype))
    return reduce_loss(per_sample, reduction, denominator=w_y.sum())


# --- the Module form ----------------------------------------------------------------------------------


class LossModule(nn.Module):
    """Base class of every loss Module: it stores hyper-parameters and calls the registered function.

    A subclass names its registered loss and needs no body besides its docstring::

        class CompSumLoss(LossModule, loss="comp_sum"):
            '''Module form of :func:`lossbook.functional.comp_sum_loss`.'''

    Its constructor takes the loss's hyper-parameters (positionally too, in the function's order)
    and torch's options by keyword (``CompSumLoss(0.5, reduction="sum")``), checks them with the
    validator the loss registered (so a bad value fails at construction, not at the first forward)
    and keeps them; ``forward(input, target, **data)`` calls the function with them (``data``: extra
    per-call tensors, e.g. ``log_q``). A ``weight`` tensor becomes a buffer, so that it follows
    ``.to(device)``. ``inspect.signature`` of the class shows what it takes.
    """

    _loss_name: str

    def __init_subclass__(cls, loss: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if loss is not None:
            cls._loss_name = loss
            link_module(loss, cls)
            if "__init__" not in cls.__dict__:
                cls.__signature__ = _module_signature(loss)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        name = type(self).__name__
        info = loss_info(self._loss_name)
        params = inspect.signature(info.function).parameters
        if len(args) > len(info.hyperparameters):
            raise TypeError(f"{name}: takes at most {len(info.hyperparameters)} positional argument(s) "
                            f"({', '.join(info.hyperparameters)}); got {len(args)}.")
        for arg, value in zip(info.hyperparameters, args):
            if arg in kwargs:
                raise TypeError(f"{name}: got multiple values for argument {arg!r}.")
            kwargs[arg] = value
        unknown = sorted(set(kwargs) - (set(params) - {"input", "target"}))
        if unknown:
            raise TypeError(f"{name}: unexpected keyword argument(s) {unknown}; it accepts "
                            f"{sorted(set(params) - {'input', 'target'})}.")
        weight = kwargs.pop("weight", None)
        if weight is not None and not isinstance(weight, Tensor):
            weight = torch.as_tensor(weight, dtype=torch.get_default_dtype())
        self.register_buffer("weight", weight)
        self._supports_weight = "weight" in info.supports
        info.check_hyperparameters(**{k: v for k, v in kwargs.items() if k in info.hyperparameters})
        # every option and hyper-parameter, given or default, so that repr shows what the Module computes
        self._kwargs = {k: kwargs.get(k, p.default) for k, p in params.items()
                        if k in TORCH_OPTIONS and k != "weight"}
        self._kwargs.update({k: kwargs.get(k, default) for k, default in info.hyperparameters.items()})
        self._kwargs.update({k: v for k, v in kwargs.items() if k not in self._kwargs})

    @property
    def function(self):
        return loss_info(self._loss_name).function

    def forward(self, input: Tensor, target: Tensor, **data: Any) -> Tensor:  # noqa: A002 - torch's name
        """The loss of ``input`` and ``target``; ``data``: extra per-call tensors of the function
        (e.g. ``log_q`` of :func:`~lossbook.functional.in_batch_softmax_loss`)."""
        kwargs = {**self._kwargs, **data}
        if self._supports_weight:
            kwargs["weight"] = self.weight
        return self.function(input, target, **kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())


def _module_signature(loss: str) -> inspect.Signature:
    """A Module's constructor: the loss's hyper-parameters, then its torch options by keyword."""
    info = loss_info(loss)
    params = inspect.signature(info.function).parameters
    hyper = [params[k].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in info.hyperparameters]
    options = [params[k] for k in TORCH_OPTIONS if k in params]
    return inspect.Signature(hyper + options)
