"""The book's API reference page (api.md) is generated from the registry and the docstrings."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

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


REF = re.compile(r"\{ref\}`[^`<]*<(api-[^>`]+)>`")


def _chapter_markdown() -> dict[str, str]:
    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        out[path.stem] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return out


def test_every_entry_has_a_target_and_every_chapter_link_resolves():
    page = apidoc.api_markdown()
    for name in lossbook.list_losses():
        assert f"({apidoc.api_label(name)})=\n### `{name}`" in page
    targets = set(re.findall(r"^\((api-[^)]+)\)=$", page, flags=re.M))
    for chapter, text in _chapter_markdown().items():
        for target in REF.findall(text):
            assert target in targets, f"{chapter} links {target}, which api.md does not define"


def test_chapters_one_to_five_link_the_losses_they_introduce():
    linked = {chapter: set(REF.findall(text)) for chapter, text in _chapter_markdown().items()}
    for chapter in ("01_cross_entropy", "02_spherical_z_loss", "03_sampled_softmax", "04_margin_losses",
                    "05_label_noise"):
        assert linked.get(chapter), f"{chapter} links no API entry ({{ref}}`name <api-…>`)"


def test_api_label_rejects_an_empty_name():
    assert apidoc.api_label("z_loss") == "api-z_loss"
    with pytest.raises(ValueError, match="loss or module name"):
        apidoc.api_label(" ")
