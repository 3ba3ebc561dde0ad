"""tests/browser/check_book.py, the headless-browser check of the built book (`make test-browser`),
on small pages made here: it passes a clean page and reports what it is meant to catch. Skipped
without Playwright or a system Chromium (`.ci/run` installs both)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_book", HERE / "browser" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
sys.modules["check_book"] = check_book
spec.loader.exec_module(check_book)

PNG = bytes.fromhex(  # a 1x1 PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def test_raw_tex_finds_each_delimiter_and_ignores_plain_text():
    assert check_book.raw_tex("costs $5 and (a) [b]") == []
    hits = check_book.raw_tex(r"see \(a_Z\) and $$x$$ and \begin{align}")
    assert len(hits) == 4  # \(, \), $$, \begin{
    assert any("a_Z" in h for h in hits)


def test_pages_of_skips_sphinx_folders_and_redirects(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.html").write_text("<html><body></body></html>")
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=intro.html" />')
    (tmp_path / "intro.html").write_text("<html><body>hi</body></html>")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "a.html").write_text("<html><body>a</body></html>")
    assert [p.relative_to(tmp_path).as_posix() for p in check_book.pages_of(tmp_path)] == [
        "intro.html", "notebooks/a.html"]


def _browser_or_skip():
    pytest.importorskip("playwright.sync_api")
    chromium = check_book.find_chromium()
    if chromium is None:
        pytest.skip("no system Chromium (apt-get install chromium)")
    return chromium


def _site(tmp_path: Path, body: str) -> Path:
    html = tmp_path / "html"
    html.mkdir()
    (html / "dot.png").write_bytes(PNG)
    (html / "index.html").write_text(f"<!doctype html><html><body>{body}</body></html>")
    return html


def test_a_clean_page_passes_and_leaves_a_screenshot(tmp_path, capsys):
    chromium = _browser_or_skip()
    html = _site(tmp_path, '<p>A plain page costs $5.</p><img src="dot.png"><pre>print("\\(")</pre>')
    rc = check_book.main(["--html", str(html), "--shots", str(tmp_path / "shots"), "--chromium", chromium,
                          "index.html"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "1 passed, 0 failed" in out
    assert (tmp_path / "shots" / "index.png").stat().st_size > 0


def test_a_broken_page_fails_with_each_problem_named(tmp_path, capsys):
    chromium = _browser_or_skip()
    body = (r'<p>Raw math \(a_Z\) here.</p><span class="math">\(x\)</span>'
            '<img src="missing.png"><script>console.error("boom")</script>'
            '<script src="https://cdn.example.org/lib.js"></script>'
            '<div class="cell"><div class="cell_output">'
            '<script type="application/vnd.jupyter.widget-view+json">{"model_id": "m1"}</script></div></div>')
    html = _site(tmp_path, body)
    rc = check_book.main(["--html", str(html), "--no-shots", "--chromium", chromium, "--timeout", "3", "index.html"])
    out = capsys.readouterr().out
    assert rc == 1, out
    for problem in ("raw TeX in the visible text", "math elements not typeset", "image not loaded",
                    "console error", "needs the network: https://cdn.example.org/lib.js",
                    "neither drawn nor followed by a static figure", "0 passed, 1 failed"):
        assert problem in out, (problem, out)
