"""The loss registry: one place that knows every loss, its family, paper and properties.

Contract tests are parametrised over :func:`list_losses`, and the book's tables of losses are built
from :func:`loss_table`, so nothing is listed by hand twice.

A loss is registered on its *function* (the source of truth)::

    @register_loss("comp_sum", family="softmax", paper="mao2023crossentropy",
                   properties={"shift_invariant": True, "reduces_to_ce_when": {"tau": 1.0}})
    def comp_sum_loss(logits, target, *, tau=1.0, weight=None, ...): ...

and its thin Module links itself with ``class CompSumLoss(LossModule, loss="comp_sum")``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = [
    "LossInfo",
    "register_loss",
    "list_losses",
    "get_loss",
    "loss_info",
    "loss_table",
    "FAMILIES",
    "PROPERTY_KEYS",
]

#: Loss families in the order of the book's chapters.
FAMILIES = (
    "softmax",
    "spherical",
    "sampled",
    "margin",
    "pairs",
    "robust",
    "imbalance",
    "calibration",
    "sparse",
    "ranking",
    "regression",
)

#: Keys a loss may declare in ``properties``; anything else is a typo and is rejected.
PROPERTY_KEYS = {
    "shift_invariant": "L(z + c·1) = L(z) for every constant c",
    "scale_invariant": "L(a·z) = L(z) for every a > 0",
    "nonnegative": "L ≥ 0 for every input",
    "bounded": "L is bounded above for every input",
    "symmetric": "Σ_k L(z, k) is the same constant for every z (robust to symmetric label noise)",
    "reduces_to_ce_when": "hyper-parameters at which the loss equals softmax cross-entropy",
    "classification_calibrated": "minimising the loss pointwise recovers the Bayes classifier",
}

#: Keyword arguments (torch's names) that a loss may support, declared in ``supports``.
SUPPORT_KEYS = ("weight", "ignore_index", "label_smoothing", "prob_target")

_TARGET_KINDS = ("index", "index_or_prob", "prob", "pairs")
#: What a loss's first argument holds: unnormalised scores, or cosine similarities in [−1, 1]
#: (the margin family: unit embeddings times unit class weights).
INPUT_KINDS = ("logits", "cosine")
_STANDARD_KWARGS = {"weight", "ignore_index", "reduction", "label_smoothing", "return_aux"}


@dataclass(frozen=True)
class LossInfo:
    """Everything the registry knows about one loss."""

    name: str
    family: str
    function: Callable[..., Any]
    paper: str | None
    target: str
    properties: Mapping[str, Any]
    supports: tuple[str, ...]
    summary: str
    formula: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    module: type | None = None
    inputs: str = "logits"

    @property
    def function_name(self) -> str:
        return f"lossbook.functional.{self.function.__name__}"

    @property
    def module_name(self) -> str | None:
        return None if self.module is None else f"lossbook.{self.module.__name__}"

    def has(self, prop: str) -> bool:
        """True when the loss declares ``prop`` with a truthy value."""
        return bool(self.properties.get(prop, False))


_REGISTRY: dict[str, LossInfo] = {}


def _hyperparameters(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword-only arguments of ``fn`` that are its own hyper-parameters, with defaults."""
    params = inspect.signature(fn).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _STANDARD_KWARGS
    }


def register_loss(
    name: str,
    *,
    family: str,
    paper: str | None = None,
    target: str = "index",
    properties: Mapping[str, Any] | None = None,
    supports: tuple[str, ...] = (),
    summary: str = "",
    formula: str = "",
    inputs: str = "logits",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a functional loss under ``name``; returns the function unchanged.

    ``paper`` is a key of ``references.bib``; ``target`` is one of ``"index"``,
    ``"index_or_prob"``, ``"prob"`` or ``"pairs"``; ``properties`` uses :data:`PROPERTY_KEYS`;
    ``supports`` lists which of torch's keyword arguments (``weight``, ``ignore_index``,
    ``label_smoothing``) and probability targets (``prob_target``) the loss implements;
    ``inputs`` is ``"logits"`` (any real scores) or ``"cosine"`` (cosine similarities in [−1, 1],
    e.g. the margin family; other values are rejected by the loss).
    """
    if family not in FAMILIES:
        raise ValueError(f"register_loss({name!r}): family must be one of {FAMILIES}; got {family!r}.")
    if target not in _TARGET_KINDS:
        raise ValueError(
            f"register_loss({name!r}): target must be one of {_TARGET_KINDS}; got {target!r}."
        )
    properties = dict(properties or {})
    unknown = set(properties) - set(PROPERTY_KEYS)
    if unknown:
        raise ValueError(
            f"register_loss({name!r}): unknown properties {sorted(unknown)}; "
            f"known ones are {sorted(PROPERTY_KEYS)}."
        )
    if inputs not in INPUT_KINDS:
        raise ValueError(f"register_loss({name!r}): inputs must be one of {INPUT_KINDS}; got {inputs!r}.")
    bad = set(supports) - set(SUPPORT_KEYS)
    if bad:
        raise ValueError(
            f"register_loss({name!r}): unknown supports {sorted(bad)}; known ones are {SUPPORT_KEYS}."
        )

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].function is not fn:
            raise ValueError(f"register_loss: a loss named {name!r} is already registered.")
        _REGISTRY[name] = LossInfo(
            name=name,
            family=family,
            function=fn,
            paper=paper,
            target=target,
            properties=properties,
            supports=tuple(supports),
            summary=summary or (inspect.getdoc(fn) or "").split("\n")[0],
            formula=formula,
            hyperparameters=_hyperparameters(fn),
            inputs=inputs,
        )
        return fn

    return decorator


def _attach_module(name: str, module: type) -> None:
    """Link a Module class to a registered loss (called by ``LossModule.__init_subclass__``)."""
    info = loss_info(name)
    object.__setattr__(info, "module", module)


def loss_info(name: str) -> LossInfo:
    """The :class:`LossInfo` of a registered loss."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.replace("-", "_").lower() in n]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown loss {name!r}; lossbook.list_losses() gives the {len(_REGISTRY)} known names.{hint}"
        ) from None


def list_losses(
    family: str | None = None,
    filter: str | Callable[[LossInfo], bool] | None = None,  # noqa: A002 - the issue's name
) -> list[str]:
    """Names of the registered losses, in registration order.

    ``family`` keeps one family; ``filter`` is either a property name (kept when truthy, e.g.
    ``"bounded"``) or a predicate on :class:`LossInfo`.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"list_losses: family must be one of {FAMILIES}; got {family!r}.")
    if isinstance(filter, str):
        if filter not in PROPERTY_KEYS and filter not in SUPPORT_KEYS:
            raise ValueError(
                f"list_losses: filter {filter!r} is neither a property ({sorted(PROPERTY_KEYS)}) "
                f"nor a supported option ({SUPPORT_KEYS})."
            )
        prop = filter
        filter = lambda info: info.has(prop) or prop in info.supports  # noqa: E731
    names = []
    for name, info in _REGISTRY.items():
        if family is not None and info.family != family:
            continue
        if filter is not None and not filter(info):
            continue
        names.append(name)
    return names


def get_loss(name: str, **hyperparameters: Any):
    """A ready Module for the loss ``name``, e.g. ``get_loss("comp_sum", tau=0.5)``."""
    info = loss_info(name)
    if info.module is None:
        raise ValueError(f"get_loss: {name!r} has no Module form; call {info.function_name} instead.")
    return info.module(**hyperparameters)


def loss_table(family: str | None = None):
    """A pandas DataFrame describing the registered losses (used by the book)."""
    import pandas as pd

    rows = []
    for name in list_losses(family):
        info = _REGISTRY[name]
        rows.append(
            {
                "loss": name,
                "family": info.family,
                "paper": info.paper or "",
                "target": info.target,
                "hyper-parameters": ", ".join(f"{k}={v}" for k, v in info.hyperparameters.items()),
                "properties": ", ".join(k for k, v in info.properties.items() if v is True),
                "function": info.function_name,
                "module": info.module_name or "",
            }
        )
    return pd.DataFrame(rows)
