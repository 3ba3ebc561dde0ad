"""Open every page of the built book in headless Chromium with the network blocked, and check it.

    .venv/bin/python tests/browser/check_book.py [--html _build/html] [--shots _build/screenshots]
    make test-browser

The pages are served from a localhost HTTP server of ``_build/html`` (``--file`` opens them as
file:// URLs instead). Chromium resolves no host but localhost, and every request to another origin
is aborted and reported, so a page that needs the internet fails here. Per page it checks:

* no raw TeX delimiters (``\\(``, ``\\)``, ``\\[``, ``\\]``, ``$$``, ``\\begin{``) in the visible text
  outside code blocks, and no MathJax error boxes;
* typeset math: every ``.math`` element the page has holds MathJax output (``mjx-container``);
* every image loaded (``naturalWidth > 0``, lazy images forced to load);
* every widget area (``widget-view+json``) shows a drawn widget, or else its static figure in the
  next cell (reported as "static");
* no JavaScript console errors, uncaught exceptions or failed requests;
* no output printout or table wider than its column without a scroll bar (clipped at 1280 px).

It saves one full-page screenshot per page under ``--shots`` and exits 1 if any page fails.
Chromium is the system one (Debian's ``chromium``; ``--chromium`` or ``$CHROMIUM`` to choose), driven
by Playwright for Python; no browser is downloaded.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1280, 900
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome", "chrome")

# Visible text outside code, MathJax output and scripts; the raw-TeX check reads it.
_VISIBLE_TEXT_JS = """() => {
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight, .MathJax, noscript';
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip)) continue;
    if (!el.getClientRects().length) continue;           // display: none or detached
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    out.push(n.textContent);
  }
  return out.join(' ');
}"""

_MATH_JS = """async (TIMEOUT) => {
  const mj = window.MathJax;
  const within = (p, ms) => Promise.race([p, new Promise(r => setTimeout(r, ms))]);
  if (mj && mj.startup && mj.startup.promise) { await within(mj.startup.promise, TIMEOUT); }
  if (mj && mj.typesetPromise) { await within(mj.typesetPromise(), TIMEOUT); }
  const sources = [...document.querySelectorAll('.math')];
  const untypeset = sources.filter(el => !el.querySelector('mjx-container') && !el.closest('mjx-container'));
  const containers = [...document.querySelectorAll('mjx-container')];
  const empty = containers.filter(c => c.getBoundingClientRect().width === 0 && c.getClientRects().length);
  const errors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')].map(
      e => e.getAttribute('data-mjx-error') || e.textContent);
  return {sources: sources.length, containers: containers.length, loaded: !!(mj && mj.startup),
          untypeset: untypeset.slice(0, 5).map(e => e.textContent.slice(0, 80)), n_untypeset: untypeset.length,
          empty: empty.length, errors: errors.slice(0, 5)};
}"""

_IMAGES_JS = """async () => {
  const imgs = [...document.images];
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(r => {
      img.addEventListener('load', r); img.addEventListener('error', r); setTimeout(r, 10000); })));
  const bad = imgs.filter(img => !(img.complete && img.naturalWidth > 0));
  return {count: imgs.length, bad: bad.map(img => (img.currentSrc || img.src).slice(0, 100))};
}"""

# A widget view's output area: drawn if the manager put a widget with a size beside the script tag;
# otherwise "static" if the next cell's output has an image (the chapters' fixed-value redraw).
_WIDGETS_JS = """() => {
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  let state = {};
  for (const s of document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]')) {
    try { Object.assign(state, JSON.parse(s.textContent).state || {}); } catch (e) {}
  }
  return views.map(script => {
    let inState = false;
    try { inState = JSON.parse(script.textContent).model_id in state; } catch (e) {}
    const area = script.parentElement;
    const drawn = [...area.querySelectorAll('.jupyter-widgets, .widget-container, .lm-Widget')]
        .some(w => { const r = w.getBoundingClientRect(); return r.width > 0 && r.height > 0; });
    const cell = script.closest('.cell');
    let next = cell ? cell.nextElementSibling : null;
    while (next && !next.classList.contains('cell')) next = next.nextElementSibling;
    const staticFigure = !!(next && next.querySelector('.cell_output img'));
    const text = area.innerText.trim().slice(0, 80);
    return {drawn, staticFigure, text, inState};
  });
}"""

# Outputs that overflow their column without a way to scroll to the rest: cut off for the reader.
_CLIPPED_JS = """() => {
  const scrolls = el => { for (let e = el; e && e !== document.body; e = e.parentElement) {
      const s = getComputedStyle(e);
      if ((s.overflowX === 'auto' || s.overflowX === 'scroll') && e.scrollWidth > e.clientWidth + 1) return true; }
    return false; };
  const column = document.querySelector('main .bd-article, article, main') || document.body;
  const right = column.getBoundingClientRect().right;
  const out = [];
  const what = el => el.tagName.toLowerCase() + ': ' + el.innerText.slice(0, 60).replace(/\\s+/g, ' ');
  for (const el of document.querySelectorAll('.cell_output pre')) {   // printouts must wrap
    if (el.getBoundingClientRect().width && el.scrollWidth > el.clientWidth + 1) out.push('printout runs past the column, ' + what(el));
  }
  for (const el of document.querySelectorAll('.cell_output table, .output table')) {   // tables may scroll
    const r = el.getBoundingClientRect();
    if (!r.width) continue;
    const wider = el.scrollWidth > el.clientWidth + 1 || r.right > right + 1;
    if (wider && !scrolls(el)) out.push('table cut off, ' + what(el));
  }
  return out;
}"""

RAW_TEX = ("\\(", "\\)", "\\[", "\\]", "$$", "\\begin{")


@dataclass
class PageResult:
    page: str
    problems: list[str] = field(default_factory=list)
    math: int = 0
    images: int = 0
    widgets_drawn: int = 0
    widgets_static: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def find_chromium(explicit: str | None = None) -> str | None:
    """The system Chromium: ``explicit``, ``$CHROMIUM``, else the first of the usual names found."""
    for name in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES):
        if not name:
            continue
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.path.exists(path):
            return path
    return None


def raw_tex(text: str) -> list[str]:
    """Each raw TeX delimiter found in ``text``, with a little context."""
    found = []
    for delim in RAW_TEX:
        start = text.find(delim)
        if start >= 0:
            found.append(repr(text[max(0, start - 30): start + 50]))
    return found


def pages_of(html: Path) -> list[Path]:
    """Every HTML page of the build except the ones Sphinx adds under _static/, _sources/, _images/
    and redirects (``index.html``: a meta refresh to the root page, which is checked itself)."""
    return sorted(p for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0].startswith("_") and not is_redirect(p))


def is_redirect(page: Path) -> bool:
    head = page.read_text(encoding="utf-8", errors="replace")[:500].lower()
    return 'http-equiv="refresh"' in head and "<body" not in head


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the report readable
        return


def serve(html: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check_page(context, url: str, name: str, shot: Path | None, allowed: tuple[str, ...],
               timeout_ms: int = 30000) -> PageResult:
    res = PageResult(name)
    t0 = time.perf_counter()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text[:200]}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {str(e)[:200]}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:120]} ({r.failure})")
            if r.url.startswith(allowed) else None)
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(allowed):
            r.continue_()
        else:
            blocked.append(r.request.url[:120])
            r.abort("internetdisconnected")

    page.route("**/*", route)
    try:
        page.goto(url, wait_until="load", timeout=timeout_ms)
        math = page.evaluate(_MATH_JS, timeout_ms)
        # the widget manager renders after load; give it until every view is drawn (or the timeout)
        try:
            page.wait_for_function(
                """() => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
                     .every(s => s.parentElement.querySelector('.jupyter-widgets, .widget-container, .lm-Widget'))""",
                timeout=timeout_ms)
        except Exception:  # noqa: BLE001, S110 - a widget still undrawn is reported per widget below
            pass
        images = page.evaluate(_IMAGES_JS)
        widgets = page.evaluate(_WIDGETS_JS)
        text = page.evaluate(_VISIBLE_TEXT_JS)
        clipped = page.evaluate(_CLIPPED_JS)
        page.wait_for_timeout(200)  # late console errors (fonts, lazy scripts)
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
    except Exception as exc:  # noqa: BLE001 - a page that cannot be opened is a failure, not a crash
        res.problems.append(f"could not check the page: {exc}")
        page.close()
        res.seconds = time.perf_counter() - t0
        return res
    page.close()

    res.math, res.images = math["containers"], images["count"]
    for hit in raw_tex(text):
        res.problems.append(f"raw TeX in the visible text: {hit}")
    if math["sources"] and not math["loaded"]:
        res.problems.append(f"{math['sources']} math elements but MathJax did not load")
    if math["n_untypeset"]:
        res.problems.append(f"{math['n_untypeset']} of {math['sources']} math elements not typeset, e.g. "
                            f"{math['untypeset']}")
    if math["empty"]:
        res.problems.append(f"{math['empty']} MathJax outputs of zero width")
    for err in math["errors"]:
        res.problems.append(f"MathJax error: {err[:120]}")
    for src in images["bad"]:
        res.problems.append(f"image not loaded: {src}")
    for i, w in enumerate(widgets, 1):
        why = "" if w["inState"] else " (its model is not in the page's saved widget state: re-run the notebook)"
        if w["drawn"]:
            res.widgets_drawn += 1
        elif w["staticFigure"]:
            res.widgets_static += 1
            res.problems.append(f"widget {i}: not drawn, only its static figure shows{why}")
        else:
            res.problems.append(f"widget {i}: neither drawn nor followed by a static figure{why}")
    for c in clipped:
        res.problems.append(f"clipped at {WIDTH} px: {c}")
    for url_ in sorted(set(blocked)):
        res.problems.append(f"needs the network: {url_}")
    res.problems.extend(dict.fromkeys(errors))  # in order, without repeats
    res.seconds = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built book")
    p.add_argument("--shots", type=Path, default=ROOT / "_build" / "screenshots", help="screenshot folder")
    p.add_argument("--chromium", help="Chromium executable (default: $CHROMIUM, then the system one)")
    p.add_argument("--file", action="store_true", help="open file:// URLs instead of a localhost server")
    p.add_argument("--no-shots", action="store_true", help="take no screenshots")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a page, its math and widgets")
    p.add_argument("pages", nargs="*", help="pages relative to --html (default: all)")
    args = p.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows in CI logs as it happens

    html = args.html.resolve()
    if not (html / "index.html").exists():
        print(f"check_book: no built book at {html}; run `make book` first.", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_book: no Chromium found; apt-get install chromium, or pass --chromium.", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check_book: Playwright is not installed; pip install 'lossbook[test]'.", file=sys.stderr)
        return 2

    pages = [html / q for q in args.pages] if args.pages else pages_of(html)
    shots = None if args.no_shots else args.shots.resolve()
    if shots is not None:
        shutil.rmtree(shots, ignore_errors=True)
        shots.mkdir(parents=True)
    server = None
    if args.file:
        base, allowed = html.as_uri() + "/", ("file://", "data:", "blob:")
    else:
        server, base = serve(html)
        allowed = (base, "data:", "blob:")

    t0 = time.perf_counter()
    results = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True,
            # no DNS for anything but localhost, on top of aborting other origins' requests
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                  "--disable-background-networking", "--disable-component-update"])
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, service_workers="block")
        print(f"check_book: {len(pages)} pages of {html} at {WIDTH} px, {base}, network blocked, "
              f"Chromium {browser.version}")
        for path in pages:
            rel = path.relative_to(html).as_posix()
            shot = None if shots is None else shots / (rel.replace("/", "__").removesuffix(".html") + ".png")
            res = check_page(context, base + rel, rel, shot, allowed, timeout_ms=int(args.timeout * 1000))
            results.append(res)
            status = "ok  " if res.ok else "FAIL"
            print(f"{status} {rel:40s} math {res.math:4d}  images {res.images:3d}  widgets drawn "
                  f"{res.widgets_drawn}{f' (static only {res.widgets_static})' if res.widgets_static else ''}"
                  f"  {res.seconds:5.1f} s")
            for problem in res.problems[:20]:
                print(f"       - {problem}")
            if len(res.problems) > 20:
                print(f"       - ... and {len(res.problems) - 20} more")
        browser.close()
    if server is not None:
        server.shutdown()
    failed = [r for r in results if not r.ok]
    where = f"; screenshots in {shots}" if shots is not None else ""
    print(f"check_book: {len(results)} pages in {time.perf_counter() - t0:.1f} s{where}")
    print(f"check_book: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
