"""The chapters as tests.

* every chapter executes at ``scale="smoke"`` with papermill and publishes a claims table;
* the committed smoke-scale runs in ``tests/golden/`` are current (same code as the chapters);
  pytest's nbval plugin re-executes them and :mod:`lossbook.lab.golden` compares every text output,
  exactly or within the chapter's stated tolerance by the cell's class, so a result that changes
  fails on any CPU (see the Makefile's test command and tests/conftest.py);
* the committed book-scale chapters carry outputs, no errors, and widget state for the HTML;
* the committed book-scale chapters and the report card were run from their current code cells (the
  hash in their run record, see :func:`lossbook.lab.book.check_run_record`).
"""

from __future__ import annotations

import ast
import json
from html import escape
from pathlib import Path

import pytest

from lossbook.lab import book
from lossbook.lab import golden as golden_compare

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = [p for p in book.chapters(ROOT) if p.name != book.REPORT_CARD]
GOLDEN = ROOT / "tests" / "golden"

pytestmark = pytest.mark.notebook


def _code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [
        "".join(c["source"])
        for c in nb["cells"]
        if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]


def _ends_in_expression(source: str) -> bool:
    """True when the cell's last statement is an expression (a value, a plot, a print), which
    shows an output when run; a cell that only defines functions or names shows none."""
    tree = ast.parse(source)
    return bool(tree.body) and isinstance(tree.body[-1], ast.Expr)


HIDDEN_WHEN = ("plt.subplots(", "ex.claim(", "claims_table(")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_plotting_and_claims_code_is_collapsed(chapter):
    # Readers see the teaching code; the code that draws figures or builds claims rows is folded
    # away (`hide-input`: one click shows it) so it does not crowd the prose.
    nb = json.loads(chapter.read_text())
    shown = ["".join(c["source"])[:60] for c in nb["cells"] if c["cell_type"] == "code"
             and any(k in "".join(c["source"]) for k in HIDDEN_WHEN)
             and not {"hide-input", "remove-input", "remove-cell"} & set(c["metadata"].get("tags", []))]
    assert not shown, f"tag these cells hide-input: {shown}"


def test_there_are_chapters():
    assert CHAPTERS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_at_smoke_scale(chapter, tmp_path):
    # No wall-clock assertion (a busy machine would fail it): papermill's per-cell timeout is the only limit.
    book.run_chapter(chapter, tmp_path / chapter.name, scale="smoke", timeout=300)
    claims = book.collect_claims(tmp_path)
    assert len(claims) > 0, f"{chapter.stem} published no claims table"
    assert set(claims["verdict"]) <= {"supported", "not supported at this scale", "inconclusive",
                                      "premise absent at this scale"}


def test_report_card_gathers_committed_chapters(tmp_path):
    card = ROOT / "notebooks" / book.REPORT_CARD
    book.run_chapter(card, tmp_path / card.name, scale="smoke", extra={"chapters_dir": str(ROOT / "notebooks")})
    html = json.dumps(json.loads((tmp_path / card.name).read_text())["cells"])
    for claim in book.collect_claims(ROOT / "notebooks")["claim"]:
        assert json.dumps(escape(claim, quote=False))[1:40] in html  # the card is HTML: "ξ > 1" shows as "ξ &gt; 1"


@pytest.mark.parametrize("chapter", [*CHAPTERS, ROOT / "notebooks" / book.REPORT_CARD], ids=lambda p: p.stem)
def test_golden_run_is_current(chapter):
    golden = GOLDEN / chapter.name
    assert golden.exists(), f"{golden} is missing: run `make golden`"
    assert _code_cells(golden) == _code_cells(chapter), f"{golden.name} is stale: run `make golden`"
    nb = json.loads(golden.read_text())
    assert nb["metadata"]["papermill"]["parameters"].get("scale") == "smoke"
    # the comparison classes and tolerances nbval will use are well-formed (lossbook.lab.golden)
    golden_compare.chapter_tolerances(nb["metadata"])
    for cell in nb["cells"]:
        golden_compare.cell_class(cell.get("metadata", {}).get("tags", []))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_committed_chapter_is_a_book_scale_run(chapter):
    nb = json.loads(chapter.read_text())
    assert nb["metadata"]["papermill"]["parameters"].get("scale") == "book", "run `make notebooks`"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    unrun = ["".join(c["source"])[:80] for c in code if c.get("execution_count") is None]
    assert not unrun, f"code cells that were not executed: {unrun}"
    params = {"parameters", "injected-parameters"}
    silent = [c["source"] for c in code if not c.get("outputs") and not params & set(c["metadata"].get("tags", []))
              and _ends_in_expression("".join(c["source"]))]
    assert not silent, f"code cells that end in an expression but show no output (the book shows nothing): {silent}"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    assert nb["metadata"].get("widgets"), "no widget state saved: the HTML would show no widgets"
    assert any("parameters" in c["metadata"].get("tags", []) for c in code)


@pytest.mark.parametrize("notebook", [*CHAPTERS, ROOT / "notebooks" / book.REPORT_CARD], ids=lambda p: p.stem)
def test_committed_outputs_come_from_the_current_code(notebook):
    # Fails when a chapter's code cells changed after its outputs were made (markdown edits do not
    # count), naming the chapter and the command that re-makes it; `lossbook provenance` lists all.
    problem = book.check_run_record(notebook, scale="book")
    assert problem is None, problem
