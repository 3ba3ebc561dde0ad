"""The loss registry: one place that knows every loss, its family, paper and properties.

Contract tests are parametrised over :func:`list_losses`, and the book's tables of losses are built
from :func:`loss_table`, so nothing is listed by hand twice.

A loss is registered on its *function* (the source of truth), with the validator of its own
hyper-parameters (``check``, called with them as keywords)::

    @register_loss("comp_sum", family="softmax", paper="mao2023crossentropy", supports=CLASS_OPTIONS,
                   check=_check_tau, properties={"shift_invariant": True, "reduces_to_ce_when": {"tau": 1.0}})
    def comp_sum_loss(input, target, *, tau=1.0, **options): ...

and its thin Module links itself with ``class CompSumLoss(LossModule, loss="comp_sum")``
(:mod:`lossbook.engine`), whose constructor runs the same validator. The registry writes the torch
options the loss ``supports`` into the function's signature (when it takes ``**options``) and
appends their description to its docstring, so a loss documents only its own formula and
hyper-parameters.

:func:`list_losses` lists the losses family by family in :data:`FAMILIES` order (the book's
chapters), and within a family in registration order.
"""

from __future__ import annotations

import inspect
import textwrap
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
    "SUPPORT_KEYS",
    "INPUT_KINDS",
    "link_module",
    "TORCH_OPTIONS",
    "METHOD_KINDS",
    "MethodInfo",
    "register_method",
    "list_methods",
    "method_info",
    "method_table",
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
    "alternatives",
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

#: What a loss's first argument holds: unnormalised scores, or cosine similarities in [−1, 1]
#: (the margin family: unit embeddings times unit class weights).
INPUT_KINDS = ("logits", "cosine")
#: torch's keyword arguments with their defaults: ``reduction`` for every loss, the others for a loss
#: that ``supports`` them. A loss may declare them one by one, or take ``**options`` and let
#: :func:`register_loss` write them into its signature.
TORCH_OPTIONS = {"weight": None, "ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0}
_OPTION_ANNOTATIONS = {"weight": "Tensor | None", "ignore_index": "int", "reduction": "str", "label_smoothing": "float"}
_STANDARD_KWARGS = {*TORCH_OPTIONS, "return_aux"}


@dataclass(frozen=True)
class LossInfo:
    """Everything the registry knows about one loss."""

    name: str
    family: str
    function: Callable[..., Any]
    paper: str | None
    properties: Mapping[str, Any]
    supports: tuple[str, ...]
    summary: str
    formula: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    module: type | None = None
    inputs: str = "logits"
    check: Callable[..., Any] | None = None

    @property
    def target(self) -> str:
        """``"index_or_prob"`` for a loss that takes probability targets too, else ``"index"``."""
        return "index_or_prob" if "prob_target" in self.supports else "index"

    @property
    def function_name(self) -> str:
        return f"lossbook.functional.{self.function.__name__}"

    @property
    def module_name(self) -> str | None:
        return None if self.module is None else f"lossbook.{self.module.__name__}"

    def has(self, prop: str) -> bool:
        """True when the loss declares ``prop`` with a truthy value."""
        return bool(self.properties.get(prop, False))

    def check_hyperparameters(self, **hyperparameters: Any) -> None:
        """Run the loss's validator on ``hyperparameters`` (a subset of :attr:`hyperparameters`; the
        others take their defaults); raises the loss's own ValueError/TypeError."""
        if self.check is not None:
            self.check(**hyperparameters)


_REGISTRY: dict[str, LossInfo] = {}


def _hyperparameters(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword-only arguments of ``fn`` that are its own hyper-parameters, with defaults."""
    params = inspect.signature(fn).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _STANDARD_KWARGS
    }


def _torch_signature(name: str, fn: Callable[..., Any], supports: tuple[str, ...]) -> inspect.Signature:
    """``fn``'s signature with torch's options spelled out: a ``**options`` parameter becomes the
    keyword-only options the loss supports; options written out one by one must be exactly those."""
    sig = inspect.signature(fn)
    wanted = [k for k in TORCH_OPTIONS if k == "reduction" or k in supports]
    params = list(sig.parameters.values())
    written = [p.name for p in params if p.name in TORCH_OPTIONS]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        if sorted(written) != sorted(wanted):
            raise ValueError(f"register_loss({name!r}): the function takes the options {sorted(written)} but "
                             f"supports={tuple(supports)} means {sorted(wanted)}; or take **options.")
        return sig
    if written:
        raise ValueError(f"register_loss({name!r}): take torch's options either one by one or as **options, "
                         f"not both (found {written} and **options).")
    options = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=TORCH_OPTIONS[k],
                                 annotation=_OPTION_ANNOTATIONS[k]) for k in wanted]
    return sig.replace(parameters=[p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD] + options)


def _options_doc(supports: tuple[str, ...], inputs: str) -> str:
    """The shared part of a registered loss's docstring: how the torch options it supports behave."""
    lines = []
    if inputs == "cosine":
        lines.append("``input`` holds cosine similarities in [−1, 1] (unit embeddings times unit class weights; "
                     "checked on the counted rows).")
    targets = "class indices (N,) or probabilities (N, C)" if "prob_target" in supports else "class indices (N,)"
    lines.append(f"``target``: int64 {targets}.")
    if "weight" in supports:
        lines.append("``weight`` (C,) scales row i by w_{y_i}.")
    if "ignore_index" in supports:
        lines.append("``ignore_index`` marks rows that do not count; what they hold reaches neither the "
                     "result nor the gradient.")
    if "label_smoothing" in supports:
        lines.append("``label_smoothing`` ε mixes the target with the uniform distribution, (1 − ε)·y + ε/C.")
    if "prob_target" in supports:
        lines.append("A probability target q gives the expected loss Σ_k q_k·ℓ(z,k).")
    mean = "the summed weights of the counted rows" if "weight" in supports else "the number of counted rows"
    if "prob_target" in supports:
        mean += ", or by N for probability targets"
    lines.append(f'``reduction``: ``"none"`` (one loss per row), ``"mean"`` (divided by {mean}) or '
                 '``"sum"``; an empty or fully ignored batch gives 0, attached to the graph.')
    body = "\n".join(textwrap.wrap(" ".join(lines), 96, initial_indent="    ", subsequent_indent="    "))
    head = "Torch-style options (:mod:`lossbook.engine`, as :func:`torch.nn.functional.cross_entropy`):"
    return f"\n\n    {head}\n{body}"


def _check_validator(name: str, check: Callable[..., Any] | None, hyperparameters: Mapping[str, Any]) -> None:
    """``check`` must take exactly the loss's hyper-parameters as keywords (a loss without any takes none)."""
    if check is None:
        if hyperparameters:
            raise ValueError(f"register_loss({name!r}): the loss has hyper-parameters {sorted(hyperparameters)}; "
                             "pass their validator as check=, called with them as keywords.")
        return
    params = inspect.signature(check).parameters
    if set(params) != set(hyperparameters):
        raise ValueError(f"register_loss({name!r}): check must take the loss's hyper-parameters "
                         f"{sorted(hyperparameters)} as keywords; it takes {sorted(params)}.")


def register_loss(
    name: str,
    *,
    family: str,
    paper: str | None = None,
    properties: Mapping[str, Any] | None = None,
    supports: tuple[str, ...] = (),
    summary: str = "",
    formula: str = "",
    inputs: str = "logits",
    check: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a functional loss under ``name``; returns the function, its docstring completed.

    ``paper`` is a key of ``references.bib``; ``properties`` uses :data:`PROPERTY_KEYS`;
    ``supports`` lists which of torch's keyword arguments (``weight``, ``ignore_index``,
    ``label_smoothing``) and probability targets (``prob_target``) the loss implements (its target
    kind follows: :attr:`LossInfo.target`); ``inputs`` is ``"logits"`` (any real scores) or
    ``"cosine"`` (cosine similarities in [−1, 1], e.g. the margin family; other values are
    rejected by the loss). ``check`` validates the loss's own hyper-parameters (the keyword-only
    arguments besides torch's): it takes exactly those, as keywords with the function's defaults,
    and raises ValueError/TypeError; the function calls it, and so does the Module's constructor.
    A function that takes torch's options as ``**options`` (passed on to
    :func:`lossbook.engine.class_loss`) gets them written into its signature, one keyword-only
    argument per supported option (:data:`TORCH_OPTIONS`); the description of the supported
    options is appended to its docstring.
    """
    if family not in FAMILIES:
        raise ValueError(f"register_loss({name!r}): family must be one of {FAMILIES}; got {family!r}.")
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
        signature = _torch_signature(name, fn, tuple(supports))
        hyperparameters = _hyperparameters(fn)
        _check_validator(name, check, hyperparameters)
        if name not in _REGISTRY:
            fn.__signature__ = signature
            fn.__doc__ = (fn.__doc__ or "").rstrip() + _options_doc(tuple(supports), inputs)
        _REGISTRY[name] = LossInfo(
            name=name,
            family=family,
            function=fn,
            paper=paper,
            properties=properties,
            supports=tuple(supports),
            summary=summary or (inspect.getdoc(fn) or "").split("\n")[0],
            formula=formula,
            hyperparameters=hyperparameters,
            inputs=inputs,
            check=check,
        )
        return fn

    return decorator


def link_module(name: str, module: type) -> None:
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
    """Names of the registered losses: family by family in :data:`FAMILIES` order, and in
    registration order within a family.

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
    for name, info in sorted(_REGISTRY.items(), key=lambda item: FAMILIES.index(item[1].family)):
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


# --- methods: heads, layers, transforms, stateful losses, reference-API functions, samplers ------------

#: What a registered *method* is: the public classes and functions that are not registered losses
#: (they hold parameters or state, take embeddings, follow another library's signature, ...).
METHOD_KINDS = {
    "head": "nn.Module holding class weights: embeddings and labels in, a loss out",
    "layer": "output layer that owns its weights and computes the loss exactly or by sampling",
    "transform": "margin transform of cosine logits, fed to cross-entropy (or to a MarginHead)",
    "stateful loss": "loss needing state, a teacher, extra inputs or the whole batch (not loss(input, target))",
    "reference-API function": "follows another library's signature and defaults on purpose",
    "sampler": "candidate sampler with exact probabilities and expected counts",
    "building block": "a piece a method is made of (negatives, mixup, a regulariser, a detector)",
    "analysis": "theory and plotting helper: margin profiles, consistency bounds",
    "calibrator": "post-hoc map of a trained model's logits, fitted on validation data (temperature scaling)",
}


@dataclass(frozen=True)
class MethodInfo:
    """Everything the registry knows about one method (see :data:`METHOD_KINDS`)."""

    name: str
    obj: Any
    kind: str
    family: str
    paper: str | None
    summary: str

    @property
    def path(self) -> str:
        """Where a user imports it from: ``lossbook``, ``lossbook.functional`` or its family's package."""
        import importlib

        for module in ("lossbook", "lossbook.functional", f"lossbook.{self.family}"):
            try:
                if getattr(importlib.import_module(module), self.name, None) is self.obj:
                    return f"{module}.{self.name}"
            except ImportError:
                continue
        return f"{self.obj.__module__}.{self.name}"


_METHODS: dict[str, MethodInfo] = {}


def register_method(
    obj: Any = None,
    *,
    kind: str,
    family: str,
    paper: str | None = None,
    summary: str = "",
    name: str | None = None,
) -> Any:
    """Register a public class or function that is not a registered loss, so that
    ``lossbook list`` and :func:`list_methods` find it; returns ``obj`` unchanged.

    Use as a decorator (``@register_method(kind="head", family="margin", paper="deng2019arcface")``)
    or call it on an existing object. ``kind`` is a key of :data:`METHOD_KINDS`, ``family`` one of
    :data:`FAMILIES`, ``paper`` a key of ``references.bib``; ``summary`` defaults to the first
    line of the docstring.
    """
    if kind not in METHOD_KINDS:
        raise ValueError(f"register_method: kind must be one of {tuple(METHOD_KINDS)}; got {kind!r}.")
    if family not in FAMILIES:
        raise ValueError(f"register_method: family must be one of {FAMILIES}; got {family!r}.")

    def decorator(target: Any) -> Any:
        key = name or target.__name__
        if key in _METHODS and _METHODS[key].obj is not target:
            raise ValueError(f"register_method: a method named {key!r} is already registered.")
        doc = summary or (inspect.getdoc(target) or "").split("\n")[0]
        _METHODS[key] = MethodInfo(key, target, kind, family, paper, doc)
        return target

    return decorator if obj is None else decorator(obj)


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of a registered method (by its public name, e.g. ``"MarginHead"``)."""
    try:
        return _METHODS[name]
    except KeyError:
        close = [n for n in _METHODS if name.lower() in n.lower()]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown method {name!r}; lossbook.list_methods() gives the {len(_METHODS)} known names.{hint}"
        ) from None


def list_methods(family: str | None = None, kind: str | None = None) -> list[str]:
    """Names of the registered methods, family by family in :data:`FAMILIES` order, then by kind in
    :data:`METHOD_KINDS` order (registration order within); ``family`` and ``kind`` keep one of each."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"list_methods: family must be one of {FAMILIES}; got {family!r}.")
    if kind is not None and kind not in METHOD_KINDS:
        raise ValueError(f"list_methods: kind must be one of {tuple(METHOD_KINDS)}; got {kind!r}.")
    kinds = list(METHOD_KINDS)
    infos = sorted(_METHODS.values(), key=lambda info: (FAMILIES.index(info.family), kinds.index(info.kind)))
    return [
        info.name
        for info in infos
        if (family is None or info.family == family) and (kind is None or info.kind == kind)
    ]


def method_table(family: str | None = None):
    """A pandas DataFrame describing the registered methods (``lossbook list`` prints it)."""
    import pandas as pd

    rows = [
        {
            "method": info.name,
            "kind": info.kind,
            "family": info.family,
            "paper": info.paper or "",
            "summary": info.summary,
            "import": info.path,
        }
        for info in map(_METHODS.__getitem__, list_methods(family))
    ]
    return pd.DataFrame(rows, columns=["method", "kind", "family", "paper", "summary", "import"])
