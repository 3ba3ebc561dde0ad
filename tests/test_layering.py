"""The library's two layers, read from the source (see DESIGN.md, "The library").

* The losses never import the lab: no module outside ``lossbook/lab`` imports ``lossbook.lab``,
  except the command line (``lossbook/cli.py``), which may do so inside its functions.
* No private name crosses a subpackage: a name starting with ``_`` is imported only inside the
  subpackage that defines it, and a private module (``softmax._per_class``, ``lossbook._cosine``)
  only from inside the package that holds it.

Both tests parse the files (nothing is imported) and report every offence as ``file:line``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "lossbook"
LAB = "lossbook.lab"
LAZY_LAB_IMPORTS_ALLOWED = {"lossbook.cli"}  # the book's command line: inside functions only


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root
    line: int
    module: str  # absolute module imported from ("lossbook.softmax"), or imported ("lossbook.lab")
    names: tuple[str, ...]  # names imported from ``module`` (empty for ``import module``)
    in_function: bool

    def targets(self) -> list[str]:
        """Every module this import may load: ``module`` and ``module.name`` (a name may be a submodule)."""
        return [self.module] + [f"{self.module}.{n}" for n in self.names]

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: Path) -> str:
    """``lossbook/softmax/comp_sum.py`` → ``lossbook.softmax.comp_sum`` (``__init__`` → the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def home_package(path: Path) -> str | None:
    """The package a file's code belongs to: ``lossbook.softmax`` for ``lossbook/softmax/*.py``,
    ``lossbook`` for the top-level modules, ``None`` outside ``lossbook/``."""
    try:
        rel = path.relative_to(PKG)
    except ValueError:
        return None
    return "lossbook" if len(rel.parts) == 1 else f"lossbook.{rel.parts[0]}"


def imports(tree: ast.AST, file: str, package: str | None) -> Iterator[Import]:
    """Every import statement of ``tree`` with its absolute module; ``package`` resolves relative ones."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(file, child.lineno, alias.name, (), in_function)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    if package is None:
                        raise AssertionError(f"{file}:{child.lineno}: relative import outside a package")
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                yield Import(file, child.lineno, module, tuple(a.name for a in child.names), in_function)
            yield from visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                         ast.Lambda)))

    yield from visit(tree, False)


def library_files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def parse_library_file(path: Path) -> list[Import]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    rel = str(path.relative_to(ROOT))
    return list(imports(ast.parse(path.read_text(), filename=rel), rel, package))


def in_lab(module: str) -> bool:
    return module == LAB or module.startswith(LAB + ".")


def test_the_files_are_found():
    files = {module_name(p) for p in library_files()}
    assert {"lossbook", "lossbook.cli", "lossbook.lab", "lossbook.lab.book", "lossbook.softmax"} <= files


def test_import_resolution_sees_relative_and_absolute_lab_imports():
    src = ("from .lab import book\nfrom . import lab\nfrom ..lab.train import fit\nimport lossbook.lab.data\n"
           "def f():\n    from lossbook.lab import plot\n")
    found = list(imports(ast.parse(src), "x.py", "lossbook.softmax"))
    assert [any(in_lab(t) for t in i.targets()) for i in found] == [False, False, True, True, True]
    found = list(imports(ast.parse(src), "x.py", "lossbook"))
    assert [any(in_lab(t) for t in i.targets()) for i in found] == [True, True, False, True, True]
    assert [i.in_function for i in found] == [False, False, False, False, True]


def test_no_module_outside_the_lab_imports_the_lab():
    offences = []
    for path in library_files():
        name = module_name(path)
        if in_lab(name):
            continue
        for imp in parse_library_file(path):
            if not any(in_lab(t) for t in imp.targets()):
                continue
            if name in LAZY_LAB_IMPORTS_ALLOWED and imp.in_function:
                continue
            offences.append(f"{imp.where()}: {name} imports {imp.module} {list(imp.names) or ''}".rstrip())
    assert not offences, "the losses must not import lossbook.lab:\n" + "\n".join(offences)


def test_importing_the_losses_does_not_load_the_lab():
    """At run time too: ``import lossbook`` (and its CLI module) leave ``lossbook.lab`` unloaded."""
    modules = sorted(module_name(p) for p in library_files() if not in_lab(module_name(p)))
    modules = [m for m in modules if m != "lossbook.__main__"]
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'lossbook.lab' or m.startswith('lossbook.lab.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"importing the losses loaded the lab: {out.stdout.strip()}"


# --- private names ------------------------------------------------------------------------------


def owner(module: str) -> str:
    """The subpackage that owns ``module``: ``lossbook.softmax`` for ``lossbook.softmax._per_class``,
    ``lossbook`` for a top-level module such as ``lossbook._validation``."""
    parts = module.split(".")
    if len(parts) >= 2 and (PKG / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def private_module_home(module: str) -> str | None:
    """The package a private module is private to (``lossbook.softmax`` for
    ``lossbook.softmax._per_class``), or ``None`` when no part of the path is private."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return ".".join(parts[:i])
    return None


def is_private_name(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_offences(imps: list[Import], home: str | None) -> list[str]:
    """Offences of imports made by code whose package is ``home`` (``None``: outside lossbook)."""
    out = []
    for imp in imps:
        if imp.module != "lossbook" and not imp.module.startswith("lossbook."):
            continue
        private = private_module_home(imp.module)
        if private is not None and not (home is not None and (home == private or home.startswith(private + "."))):
            out.append(f"{imp.where()}: private module {imp.module} imported from outside {private}")
            continue
        names = [n for n in imp.names if is_private_name(n)]
        if names and owner(imp.module) != home:
            out.append(f"{imp.where()}: private name(s) {', '.join(names)} of {imp.module} imported "
                       f"into {home or 'code outside lossbook'}")
    return out


def notebook_cells(path: Path) -> Iterator[tuple[str, str]]:
    """``(label, code)`` of each code cell of a notebook, IPython magics and shell lines blanked."""
    rel = path.relative_to(ROOT)
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"]).splitlines()
            yield f"{rel}[cell {i}]", "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src)


def test_private_offences_are_recognised():
    src = ("from .._validation import _dtype, check_logits\nfrom ..softmax._per_class import per_class\n"
           "from lossbook._cosine import CosFace\nfrom ._parts import _helper\n")
    found = list(imports(ast.parse(src), "x.py", "lossbook.robust"))
    offences = private_offences(found, "lossbook.robust")
    assert len(offences) == 2 and "_dtype" in offences[0] and "softmax._per_class" in offences[1]
    assert len(private_offences(found, None)) == 4  # outside lossbook every private import counts


@pytest.mark.parametrize("where", ["lossbook", "benchmarks", "notebooks"])
def test_no_private_name_is_imported_across_subpackages(where):
    offences = []
    if where == "lossbook":
        for path in library_files():
            offences += private_offences(parse_library_file(path), home_package(path))
    elif where == "benchmarks":
        for path in sorted((ROOT / "benchmarks").glob("*.py")):
            rel = str(path.relative_to(ROOT))
            offences += private_offences(list(imports(ast.parse(path.read_text()), rel, None)), None)
    else:
        for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
            for label, code in notebook_cells(path):
                offences += private_offences(list(imports(ast.parse(code), label, None)), None)
    assert not offences, "private names imported across subpackages:\n" + "\n".join(offences)
