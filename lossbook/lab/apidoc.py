"""The book's API reference page, generated from the registry and the docstrings.

``lossbook api --write api.md`` writes it; a test fails when the committed page differs from what
the code would generate now, so the page cannot go stale. It lists every registered loss (its
function, Module, family, paper, formula and summary), every registered method (heads, layers,
samplers, calibrators …), and every public name of the library's modules and of ``lossbook.lab``
with its signature and the first paragraph of its docstring. Each object appears once, under the
first module (in :data:`MODULES` order) that exports it.
"""

from __future__ import annotations

import importlib
import inspect
import re

__all__ = ["MODULES", "api_label", "api_markdown", "first_paragraph"]

#: The modules whose ``__all__`` the page documents, in the page's order.
MODULES = (
    "lossbook.functional", "lossbook", "lossbook.metrics", "lossbook.softmax", "lossbook.spherical",
    "lossbook.sampled", "lossbook.margin", "lossbook.pairs", "lossbook.robust", "lossbook.imbalance", "lossbook.calibration",
    "lossbook.alternatives", "lossbook.sparse",
    "lossbook.engine",
    "lossbook.lab.chapter", "lossbook.lab.data", "lossbook.lab.corpus", "lossbook.lab.train",
    "lossbook.lab.experiments", "lossbook.lab.selection", "lossbook.lab.tune", "lossbook.lab.book",
    "lossbook.lab.golden", "lossbook.lab.plot", "lossbook.lab.widgets", "lossbook.lab.apidoc",
)

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc):`~?([^`]+)`")


def first_paragraph(obj) -> str:
    """The first paragraph of ``obj``'s docstring, on one line, as MyST text: Sphinx roles and RST
    double back-quotes become code spans, and ``$`` is escaped (MyST would read it as math)."""
    doc = inspect.getdoc(obj) or ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return _escape(text.replace("``", "`"))


def _escape(text: str) -> str:
    return text.replace("$", r"\$")


def _cite(paper: str | None) -> str:
    return f" · {{cite:t}}`{paper}`" if paper else ""


def _signature(name: str, obj) -> str:
    if inspect.isclass(obj) or callable(obj):
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            return name
        sig = re.sub(r" at 0x[0-9a-f]+", "", sig)
        return f"{name}{sig}"
    return name


def _kind(obj) -> str:
    if inspect.isclass(obj):
        return "class"
    if inspect.ismodule(obj):
        return "module"
    if callable(obj):
        return "function"
    return "constant"


def api_label(name: str) -> str:
    """The MyST target of a registered loss's or a module's entry on the page, e.g. ``api-z_loss`` or
    ``api-lossbook.spherical``: a chapter links it as ``{ref}`the Z-loss <api-z_loss>```."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"api_label: name must be a loss or module name such as 'z_loss'; got {name!r}.")
    return f"api-{name.strip().lower()}"


def _losses() -> list[str]:
    from ..registry import list_losses, loss_info

    intro = ("Every loss takes `(input, target)` with torch's keyword arguments; the Module form comes from "
             "`lossbook.get_loss(name, **hyper_parameters)`.")
    out = ["## Registered losses", "", intro, ""]
    for info in map(loss_info, list_losses()):
        module = f" · Module `{info.module_name}`" if info.module_name else ""
        hyper = ", ".join(f"{k}={v!r}" for k, v in info.hyperparameters.items())
        hyper = f" Hyper-parameters: `{hyper}`." if hyper else ""
        where = f"`{info.function_name}` · family `{info.family}`{module}{_cite(info.paper)}"
        out += [f"({api_label(info.name)})=", f"### `{info.name}`", "", where, "", "$$", info.formula, "$$", "",
                _escape(info.summary) + hyper, ""]
    return out


def _methods() -> list[str]:
    from ..registry import list_methods, method_info

    intro = ("Heads, layers, margin transforms, samplers, calibrators and the other registered objects that "
             "are not losses.")
    out = ["## Registered methods", "", intro, ""]
    out += [f"* `{info.path}` ({info.kind}, family `{info.family}`){_cite(info.paper)}: {_escape(info.summary)}"
            for info in map(method_info, list_methods())]
    return out + [""]


def _modules() -> list[str]:
    out = ["## Modules", "", "Every public name, under the first module that exports it.", ""]
    seen: set[int] = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        entries = []
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or id(obj) in seen or isinstance(obj, (str, int, float, bool, tuple, dict)):
                continue
            seen.add(id(obj))
            summary = first_paragraph(obj)
            entries += [f"* `{_signature(name, obj)}` ({_kind(obj)})" + (f": {summary}" if summary else "")]
        if entries:
            out += [f"({api_label(module_name)})=", f"### `{module_name}`", "", first_paragraph(module), "", *entries, ""]
    return out


def api_markdown() -> str:
    """The whole page, as MyST markdown."""
    intro = ("Generated from the loss registry and the docstrings by `lossbook api --write api.md`; a test "
             "fails when this page differs from what the code generates.")
    head = ["# API reference", "", intro, ""]
    return "\n".join(head + _losses() + _methods() + _modules()).rstrip("\n") + "\n"
