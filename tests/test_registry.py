"""The registry: validation of registrations, listing, lookup, and the links it promises."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import lossbook
import lossbook.functional as LF
from lossbook import registry
from lossbook.engine import LossModule

REFERENCES = Path(__file__).resolve().parent.parent / "references.bib"


@pytest.fixture
def scratch_registry(monkeypatch):
    """A private copy of the registry, so test registrations never leak into other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry._REGISTRY


def _dummy(input, target, *, alpha=2.0, weight=None, reduction="mean"):
    """A dummy loss for registry tests."""
    return input.sum() * 0


def _check_dummy(alpha=2.0):
    if alpha < 0:
        raise ValueError(f"_dummy: alpha must be ≥ 0; got {alpha}.")


# --- register_loss validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"family": "nonsense"}, r"family must be one of .*'nonsense'"),
        ({"family": "softmax", "inputs": "pixels"}, r"inputs must be one of .*'pixels'"),
        ({"family": "softmax", "properties": {"shift_invarient": True}}, r"unknown properties \['shift_invarient'\]"),
        ({"family": "softmax", "supports": ("weights",)}, r"unknown supports \['weights'\]"),
    ],
    ids=["family", "inputs", "property", "support"],
)
def test_register_loss_rejects_bad_metadata(scratch_registry, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        registry.register_loss("dummy_bad", **kwargs)
    assert "dummy_bad" not in scratch_registry


def test_register_loss_records_metadata_and_hyperparameters(scratch_registry):
    def dummy(input, target, *, alpha=2.0, weight=None, reduction="mean"):
        """A dummy loss for registry tests."""
        return input.sum() * 0

    fn = registry.register_loss("dummy_ok", family="robust", properties={"bounded": True}, supports=("weight",),
                                check=_check_dummy)(dummy)
    assert fn is dummy
    info = lossbook.loss_info("dummy_ok")
    assert info.family == "robust" and info.target == "index" and info.check is _check_dummy
    assert info.hyperparameters == {"alpha": 2.0}  # weight/reduction are standard, not hyper-parameters
    assert info.summary == "A dummy loss for registry tests."
    assert info.has("bounded") and not info.has("symmetric")
    assert lossbook.list_losses(family="robust")[-1] == "dummy_ok"  # registered last, after the real ones
    # the registry appends the shared description of the supported options to the docstring
    assert dummy.__doc__.startswith("A dummy loss for registry tests.")
    assert "``weight`` (C,) scales row i" in dummy.__doc__ and "label_smoothing" not in dummy.__doc__
    with pytest.raises(ValueError, match="alpha must be ≥ 0"):
        info.check_hyperparameters(alpha=-1.0)


def test_register_loss_checks_the_validator_against_the_hyperparameters(scratch_registry):
    with pytest.raises(ValueError, match=r"has hyper-parameters \['alpha'\]; pass their validator as check="):
        registry.register_loss("dummy_no_check", family="robust", supports=("weight",))(_dummy)
    with pytest.raises(ValueError, match=r"check must take the loss's hyper-parameters \['alpha'\] as keywords; "
                                         r"it takes \['beta'\]"):
        registry.register_loss("dummy_bad_check", family="robust", supports=("weight",),
                               check=lambda beta=1.0: None)(_dummy)
    assert "dummy_no_check" not in scratch_registry and "dummy_bad_check" not in scratch_registry


def test_register_loss_checks_the_options_against_supports(scratch_registry):
    with pytest.raises(ValueError, match=r"takes the options \['reduction', 'weight'\] but supports=\(\) means "
                                         r"\['reduction'\]"):
        registry.register_loss("dummy_options", family="robust", check=_check_dummy)(_dummy)

    def both(input, target, *, weight=None, **options):
        return input.sum()

    with pytest.raises(ValueError, match=r"either one by one or as \*\*options, not both"):
        registry.register_loss("dummy_both", family="robust", supports=("weight",))(both)


def test_register_loss_writes_the_supported_options_into_the_signature(scratch_registry):
    def dummy(input, target, *, alpha=2.0, **options):
        """A dummy loss."""
        return input.sum()

    registry.register_loss("dummy_sig", family="robust", supports=("weight", "ignore_index"),
                           check=_check_dummy)(dummy)
    params = inspect.signature(dummy).parameters
    assert list(params) == ["input", "target", "alpha", "weight", "ignore_index", "reduction"]
    assert {k: params[k].default for k in list(params)[2:]} == {"alpha": 2.0, "weight": None, "ignore_index": -100,
                                                                "reduction": "mean"}
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in list(params)[2:])
    assert lossbook.loss_info("dummy_sig").hyperparameters == {"alpha": 2.0}


@pytest.mark.parametrize("name", lossbook.list_losses())
def test_every_signature_shows_torch_options_it_supports(name):
    info = lossbook.loss_info(name)
    params = inspect.signature(info.function).parameters
    options = {k for k in params if k in registry.TORCH_OPTIONS}
    assert options == {"reduction"} | (set(info.supports) & set(registry.TORCH_OPTIONS))
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_module_runs_the_registered_validator_at_construction():
    with pytest.raises(ValueError, match=r"^comp_sum_loss: tau must lie in"):
        lossbook.CompSumLoss(tau=-1.0)
    assert lossbook.loss_info("comp_sum").check is not None
    assert not any(hasattr(lossbook.loss_info(n).function, "check_hyperparameters") for n in lossbook.list_losses())


def test_register_loss_rejects_duplicate_name(scratch_registry):
    def other(input, target):
        return input.sum()

    with pytest.raises(ValueError, match="'cross_entropy' is already registered"):
        registry.register_loss("cross_entropy", family="softmax")(other)


def test_get_loss_without_module_names_the_function(scratch_registry):
    registry.register_loss("dummy_fn_only", family="robust", supports=("weight",), check=_check_dummy)(_dummy)
    with pytest.raises(ValueError, match=r"no Module form; call lossbook\.functional\._dummy"):
        lossbook.get_loss("dummy_fn_only")


# --- list_losses ----------------------------------------------------------------------------------


def test_list_losses_family():
    softmax = lossbook.list_losses(family="softmax")
    assert "cross_entropy" in softmax and "comp_sum" in softmax
    assert all(lossbook.loss_info(n).family == "softmax" for n in softmax)
    assert lossbook.list_losses(family="ranking") == [n for n in lossbook.list_losses()
                                                      if lossbook.loss_info(n).family == "ranking"]


def test_list_losses_unknown_family():
    with pytest.raises(ValueError, match="family must be one of"):
        lossbook.list_losses(family="softmaxx")


def test_list_losses_filter_by_property_name():
    bounded = lossbook.list_losses(filter="bounded")
    assert "mean_absolute_error" in bounded and "generalized_cross_entropy" in bounded
    assert "cross_entropy" not in bounded  # declared bounded=False
    assert bounded == [n for n in lossbook.list_losses() if lossbook.loss_info(n).properties.get("bounded") is True]


def test_list_losses_filter_by_supported_option():
    names = lossbook.list_losses(filter="prob_target")
    assert names == [n for n in lossbook.list_losses() if "prob_target" in lossbook.loss_info(n).supports]
    assert "cross_entropy" in names


def test_list_losses_filter_callable():
    names = lossbook.list_losses(filter=lambda info: "tau" in info.hyperparameters)
    assert names == ["comp_sum"]


def test_list_losses_filter_unknown_string():
    with pytest.raises(ValueError, match=r"filter 'boundd' is neither a property"):
        lossbook.list_losses(filter="boundd")


def test_list_losses_in_families_order_then_registration_order(scratch_registry):
    names = lossbook.list_losses()
    assert names[0] == "cross_entropy"
    families = [lossbook.loss_info(n).family for n in names]
    assert families == sorted(families, key=registry.FAMILIES.index)
    for family in set(families):  # within a family, in registration order
        assert lossbook.list_losses(family) == [n for n in registry._REGISTRY if registry._REGISTRY[n].family == family]
    # a loss registered now, in an earlier family, is listed with its family, not last
    registry.register_loss("dummy_softmax", family="softmax", supports=("weight",), check=_check_dummy)(_dummy)
    names = lossbook.list_losses()
    assert names.index("dummy_softmax") == len(lossbook.list_losses("softmax")) - 1


# --- get_loss / loss_info ----------------------------------------------------------------------------


def test_get_loss_returns_module_with_hyperparameters():
    loss = lossbook.get_loss("comp_sum", tau=0.5, reduction="sum")
    assert isinstance(loss, lossbook.CompSumLoss)
    assert loss._kwargs["tau"] == 0.5 and loss._kwargs["reduction"] == "sum"
    assert "tau=0.5" in repr(loss)
    gce = lossbook.get_loss("generalized_cross_entropy", q=0.3)
    assert isinstance(gce, lossbook.GeneralizedCrossEntropyLoss) and gce._kwargs["q"] == 0.3


def test_get_loss_unknown_hyperparameter_is_a_type_error():
    with pytest.raises(TypeError):
        lossbook.get_loss("cross_entropy", tau=0.5)


def test_loss_info_unknown_name_hints_at_close_name():
    with pytest.raises(ValueError, match=r"unknown loss 'Comp-Sum'.*list_losses\(\).*Did you mean 'comp_sum'\?"):
        lossbook.loss_info("Comp-Sum")


def test_loss_info_unknown_name_without_close_match():
    with pytest.raises(ValueError, match=r"unknown loss 'zzz_nothing'") as exc:
        lossbook.get_loss("zzz_nothing")
    assert "Did you mean" not in str(exc.value)


def test_loss_table_columns_and_rows():
    table = lossbook.loss_table()
    assert list(table.columns) == [
        "loss", "family", "paper", "target", "hyper-parameters", "properties", "function", "module",
    ]
    assert table["loss"].tolist() == lossbook.list_losses()
    row = table.set_index("loss").loc["comp_sum"]
    assert row["hyper-parameters"] == "tau=1.0"
    assert row["function"] == "lossbook.functional.comp_sum_loss"
    assert row["module"] == "lossbook.CompSumLoss"
    assert "bounded" not in table.set_index("loss").loc["cross_entropy", "properties"]
    assert lossbook.loss_table("ranking").empty or set(lossbook.loss_table("ranking")["family"]) == {"ranking"}


# --- what every registered loss promises --------------------------------------------------------------


@pytest.mark.parametrize("name", lossbook.list_losses())
def test_every_loss_has_a_module(name):
    info = lossbook.loss_info(name)
    assert info.module is not None, f"{name} has no Module"
    assert issubclass(info.module, LossModule)
    assert info.module._loss_name == name
    assert getattr(lossbook, info.module.__name__) is info.module, "Module not exported from lossbook"
    assert info.module.__name__.endswith("Loss")


@pytest.mark.parametrize("name", lossbook.list_losses())
def test_every_function_is_exported_from_functional(name):
    fn = lossbook.loss_info(name).function
    assert getattr(LF, fn.__name__) is fn
    assert fn.__name__ in LF.__all__


@pytest.mark.parametrize("name", lossbook.list_losses())
def test_every_loss_has_summary_formula_and_paper(name):
    info = lossbook.loss_info(name)
    assert info.paper, f"{name} names no paper"
    assert info.summary and info.formula


def _bib_keys() -> set[str]:
    text = REFERENCES.read_text(encoding="utf-8")
    return set(re.findall(r"^\s*@\w+\s*\{\s*([^,\s]+)\s*,", text, flags=re.MULTILINE))


@pytest.mark.parametrize("name", lossbook.list_losses())
def test_paper_key_is_in_references_bib(name):
    if not REFERENCES.exists():
        pytest.skip("references.bib does not exist yet (being written); paper keys cannot be checked")
    keys = _bib_keys()
    assert keys, "references.bib holds no @type{key, entries"
    paper = lossbook.loss_info(name).paper
    assert paper in keys, f"{name}: paper key {paper!r} is not in references.bib"


# --- methods: heads, layers, transforms, stateful losses, reference-API functions, samplers ----------------


@pytest.fixture
def scratch_methods(monkeypatch):
    """A private copy of the method registry."""
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    return registry._METHODS


def test_register_method_as_decorator_and_call(scratch_methods):
    @registry.register_method(kind="head", family="margin", paper="deng2019arcface")
    class DummyHead:
        """A dummy head for registry tests."""

    assert "DummyHead" in scratch_methods  # the decorator returns the class unchanged
    info = lossbook.method_info("DummyHead")
    assert info.obj is DummyHead and info.kind == "head" and info.family == "margin"
    assert info.summary == "A dummy head for registry tests."
    assert info.path == f"{DummyHead.__module__}.DummyHead"  # not exported anywhere public

    def helper():
        """Helper."""

    assert registry.register_method(helper, kind="analysis", family="softmax", summary="S.") is helper
    assert lossbook.method_info("helper").summary == "S."
    assert "helper" in lossbook.list_methods(family="softmax", kind="analysis")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [({"kind": "gadget", "family": "margin"}, r"kind must be one of .*'gadget'"),
     ({"kind": "head", "family": "margins"}, r"family must be one of .*'margins'")],
    ids=["kind", "family"],
)
def test_register_method_rejects_bad_metadata(scratch_methods, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        registry.register_method(lambda: None, **kwargs)


def test_register_method_rejects_a_second_object_under_one_name(scratch_methods):
    with pytest.raises(ValueError, match=r"a method named 'MarginHead' is already registered"):
        registry.register_method(kind="head", family="margin", name="MarginHead")(object)
    # registering the same object again is harmless (re-import)
    registry.register_method(lossbook.MarginHead, kind="head", family="margin")


def test_method_info_unknown_name_hints():
    with pytest.raises(ValueError, match=r"unknown method 'marginhead'.*list_methods\(\).*Did you mean 'MarginHead'\?"):
        lossbook.method_info("marginhead")


def test_list_methods_order_and_filters():
    names = lossbook.list_methods()
    infos = [lossbook.method_info(n) for n in names]
    kinds = list(registry.METHOD_KINDS)
    keys = [(registry.FAMILIES.index(i.family), kinds.index(i.kind)) for i in infos]
    assert keys == sorted(keys), "methods are listed family by family (FAMILIES order), then by kind"
    assert lossbook.list_methods(kind="head") == [n for n in names if lossbook.method_info(n).kind == "head"]
    assert set(lossbook.list_methods(family="margin")) >= {"MarginHead", "AdaFace", "MagFace", "ArcFace"}
    with pytest.raises(ValueError, match="family must be one of"):
        lossbook.list_methods(family="nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        lossbook.list_methods(kind="nope")


# the methods the issue names, with their kind
EXPECTED_METHODS = {
    "AdaFace": "transform", "MagFace": "transform", "ElasticArcFace": "transform", "ElasticCosFace": "transform",
    "SphereFace": "transform", "CosFace": "transform", "ArcFace": "transform", "CombinedMargin": "transform",
    "MarginHead": "head", "SphereFace2Head": "head", "unpg_negatives": "building block",
    "PartialFC": "layer", "SampledSoftmaxLayer": "layer", "FactoredSphericalLayer": "layer",
    "sampled_softmax_loss": "reference-API function", "nce_loss": "reference-API function",
    "sigmoid_focal_loss": "reference-API function",
    "self_distillation_loss": "stateful loss", "z_error_loss": "stateful loss",
    "interpolated_supcon_loss": "stateful loss",
    "LogUniformSampler": "sampler", "UnigramSampler": "sampler", "UniformSampler": "sampler",
}


@pytest.mark.parametrize("name, kind", EXPECTED_METHODS.items(), ids=list(EXPECTED_METHODS))
def test_issue_methods_are_registered_with_their_kind(name, kind):
    assert lossbook.method_info(name).kind == kind


@pytest.mark.parametrize("name", lossbook.list_methods())
def test_every_method_is_public_and_cites_a_known_paper(name):
    info = lossbook.method_info(name)
    module, _, attr = info.path.rpartition(".")
    assert module.startswith("lossbook") and not any(part.startswith("_") for part in module.split(".")), info.path
    assert attr == name
    assert info.summary, f"{name} has no summary (docstring)"
    assert info.obj not in {lossbook.loss_info(n).function for n in lossbook.list_losses()}, "registered as a loss"
    if info.paper is not None and REFERENCES.exists():
        assert info.paper in _bib_keys(), f"{name}: paper key {info.paper!r} is not in references.bib"


def test_method_table_columns():
    table = lossbook.method_table()
    assert list(table.columns) == ["method", "kind", "family", "paper", "summary", "import"]
    assert table["method"].tolist() == lossbook.list_methods()
    assert lossbook.method_table("ranking").empty


# --- `lossbook list` --------------------------------------------------------------------------------------


def test_cli_list_shows_losses_then_methods(capsys):
    from lossbook.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    losses_at, methods_at = out.index("Registered losses"), out.index("Heads, layers, transforms")
    assert losses_at < methods_at
    assert "focal_loss" in out[:methods_at]
    for name in ("MarginHead", "AdaFace", "PartialFC", "FactoredSphericalLayer", "sampled_softmax_loss"):
        assert name in out[methods_at:]
    assert "reference-API function" in out and "transform" in out


def test_cli_list_family(capsys):
    from lossbook.cli import main

    assert main(["list", "--family", "margin"]) == 0
    out = capsys.readouterr().out
    assert "arcface" in out and "MarginHead" in out
    assert "cross_entropy" not in out and "PartialFC" not in out
    assert main(["list", "--family", "ranking"]) == 0  # an empty family prints "(none)", no error
    assert "(none)" in capsys.readouterr().out


# --- everything a chapter uses is listed ---------------------------------------------------------------------

CHAPTERS = sorted((REFERENCES.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# what a chapter may use without it being a loss or a method: the lab (data, training, plots,
# experiments, ...), the evaluation metrics and the registry's own functions
NOT_METHODS = ("lossbook.lab", "lossbook.metrics", "lossbook.registry")


def _chapter_code(path: Path) -> str:
    import json

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            lines += [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def _dotted(node) -> list[str] | None:
    import ast

    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _lossbook_names(code: str) -> tuple[set[str], set[str]]:
    """Dotted ``lossbook...`` names a chapter's code uses (through its imports and aliases), and the
    loss names it passes as strings to ``get_loss`` / ``loss_info``."""
    import ast

    tree = ast.parse(code)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "lossbook":
                    aliases[a.asname or "lossbook"] = a.name if a.asname else "lossbook"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lossbook":
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    used, strings = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)):
            parts = _dotted(node)
            if parts and parts[0] in aliases:
                used.add(".".join([aliases[parts[0]], *parts[1:]]))
        if isinstance(node, ast.Call) and (parts := _dotted(node.func)) and parts[-1] in ("get_loss", "loss_info"):
            strings |= {a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return used, strings


def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_chapter_name_extraction():
    code = ("import lossbook\nimport lossbook.functional as LF\nfrom lossbook.margin import MarginHead as MH\n"
            "from lossbook.lab import train\nLF.focal_loss(x, y)\nMH(4, 2)\ntrain.fit()\n"
            "lossbook.loss_info('arcface')\n")
    used, strings = _lossbook_names(code)
    assert {"lossbook.functional.focal_loss", "lossbook.margin.MarginHead", "lossbook.lab.train.fit"} <= used
    assert strings == {"arcface"}


@pytest.mark.skipif(not CHAPTERS, reason="no chapters found")
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_loss_and_method_a_chapter_uses_is_listed(chapter):
    import inspect as _inspect

    listed = {lossbook.method_info(n).obj for n in lossbook.list_methods()}
    for n in lossbook.list_losses():
        info = lossbook.loss_info(n)
        listed |= {info.function, info.module}
    used, strings = _lossbook_names(_chapter_code(chapter))
    missing = []
    for dotted in sorted(used):
        if dotted.startswith(NOT_METHODS):
            continue
        try:
            obj = _resolve(dotted)
        except (ImportError, AttributeError):
            missing.append(f"{dotted} (does not exist)")
            continue
        if _inspect.ismodule(obj) or not callable(obj):
            continue
        home = getattr(obj, "__module__", "") or ""
        if home.startswith(NOT_METHODS) or (_inspect.ismethod(obj) and home.startswith("lossbook.lab")):
            continue
        owner = getattr(obj, "__self__", None)  # a classmethod (e.g. Calibrator.fit) of a listed class is listed
        if obj not in listed and not (_inspect.ismethod(obj) and owner in listed):
            missing.append(dotted)
    assert not missing, (f"{chapter.name} uses {missing}, which `lossbook list` does not show: register each "
                         "as a loss (register_loss) or a method (register_method)")
    unknown = sorted(strings - set(lossbook.list_losses()))
    assert not unknown, f"{chapter.name} names unregistered losses {unknown}"
