"""The book's API reference page (api.md) is generated from the registry and the docstrings."""

from __future__ import annotations

import inspect
from pathlib import Path

import lossbook
from lossbook import cli
from lossbook.lab import apidoc

ROOT = Path(__file__).resolve().parent.parent


def test_committed_api_page_is_current():
    committed = (ROOT / "api.md").read_text()
    assert committed == apidoc.api_markdown(), "api.md is stale: run `lossbook api --write api.md`"


def test_every_loss_method_and_public_name_is_on_the_page():
    page = apidoc.api_markdown()
    for name in lossbook.list_losses():
        info = lossbook.loss_info(name)
        assert f"### `{name}`" in page and info.function_name in page and info.formula in page
    for name in lossbook.list_methods():
        assert lossbook.method_info(name).path in page
    for name in lossbook.__all__:
        obj = getattr(lossbook, name)
        if not inspect.ismodule(obj) and not isinstance(obj, tuple):
            assert f"`{name}" in page, name


def test_first_paragraph_turns_roles_into_code_and_escapes_dollars():
    def f():
        """Uses :func:`~lossbook.functional.cross_entropy` and ``x``; costs $5.

        Second paragraph, left out."""

    assert apidoc.first_paragraph(f) == r"Uses `lossbook.functional.cross_entropy` and `x`; costs \$5."
    assert apidoc.first_paragraph(lambda: None) == ""


def test_cli_api_prints_and_writes(tmp_path, capsys):
    assert cli.main(["api"]) == 0
    assert capsys.readouterr().out == apidoc.api_markdown()
    out = tmp_path / "api.md"
    assert cli.main(["api", "--write", str(out)]) == 0
    assert out.read_text() == apidoc.api_markdown()
