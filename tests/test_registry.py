"""The registry: validation of registrations, listing, lookup, and the links it promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lossbook
import lossbook.functional as LF
from lossbook import registry
from lossbook._module import LossModule

REFERENCES = Path(__file__).resolve().parent.parent / "references.bib"


@pytest.fixture
def scratch_registry(monkeypatch):
    """A private copy of the registry, so test registrations never leak into other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry._REGISTRY


def _dummy(input, target, *, alpha=2.0, weight=None, reduction="mean"):
    """A dummy loss for registry tests."""
    return input.sum() * 0


# --- register_loss validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"family": "nonsense"}, r"family must be one of .*'nonsense'"),
        ({"family": "softmax", "target": "pixels"}, r"target must be one of .*'pixels'"),
        ({"family": "softmax", "properties": {"shift_invarient": True}}, r"unknown properties \['shift_invarient'\]"),
        ({"family": "softmax", "supports": ("weights",)}, r"unknown supports \['weights'\]"),
    ],
    ids=["family", "target", "property", "support"],
)
def test_register_loss_rejects_bad_metadata(scratch_registry, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        registry.register_loss("dummy_bad", **kwargs)
    assert "dummy_bad" not in scratch_registry


def test_register_loss_records_metadata_and_hyperparameters(scratch_registry):
    fn = registry.register_loss("dummy_ok", family="robust", properties={"bounded": True}, supports=("weight",))(_dummy)
    assert fn is _dummy
    info = lossbook.loss_info("dummy_ok")
    assert info.family == "robust"
    assert info.hyperparameters == {"alpha": 2.0}  # weight/reduction are standard, not hyper-parameters
    assert info.summary == "A dummy loss for registry tests."
    assert info.has("bounded") and not info.has("symmetric")
    assert lossbook.list_losses(family="robust")[-1] == "dummy_ok"  # registered last, after the real ones


def test_register_loss_rejects_duplicate_name(scratch_registry):
    def other(input, target):
        return input.sum()

    with pytest.raises(ValueError, match="'cross_entropy' is already registered"):
        registry.register_loss("cross_entropy", family="softmax")(other)


def test_get_loss_without_module_names_the_function(scratch_registry):
    registry.register_loss("dummy_fn_only", family="robust")(_dummy)
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


def test_list_losses_in_registration_order():
    assert lossbook.list_losses()[0] == "cross_entropy"
    assert lossbook.list_losses() == list(registry._REGISTRY)


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
