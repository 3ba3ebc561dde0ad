"""Every chapter's widget, live in JupyterLab: move each control and check that the plot is redrawn.

    .venv/bin/python tests/browser/check_lab.py [--scale smoke] [--timeout 300] [NN ...]
    make test-lab

It starts JupyterLab on 127.0.0.1 (a free port, a random token, settings and workspaces in a
temporary folder), opens it in headless Chromium with the network blocked, and for each chapter
``notebooks/NN_*.ipynb``, one at a time:

* writes a temporary copy of the notebook (the committed one is never touched) with its outputs and
  saved widget state removed, ``scale = "smoke"`` injected after the ``parameters`` cell as papermill
  does, and the cells after the last widget cell dropped;
* opens the copy in JupyterLab and runs all its cells in the kernel (the chapter's setup, whatever
  the widget needs, and the widget cell), failing on an error;
* in each widget's output: waits for its first figure, then moves every slider one step with the
  keyboard (ArrowRight on the focused handle, ArrowLeft at the maximum) and picks the next option of
  every dropdown, and checks that the figure changed (the image's bytes differ) and that no error was
  printed; it reports each redraw's time (from the key press to the new image), asserting none;
* shuts the kernel down and closes the notebook.

A widget cell is a code cell tagged ``widget``, or one that calls a constructor of ``widgets.`` /
``ipywidgets.`` (``widgets.interactive_figure(...)``, ``widgets.float_slider(...)``, ``interact(...)``,
...); a chapter without one is reported as skipped. Of those cells, the ones whose run displays a
widget are checked (a chapter whose widget cells display none fails). Exits 1 if a chapter fails
(the message names it and the control), 2 if it cannot run at all (no Chromium, Playwright or
JupyterLab). Chromium is the system one, found as in check_book.py; no browser is downloaded.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tokenize
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_book import find_chromium  # same folder (this file also runs as a script)

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1280, 900
WIDGET_TAG = "widget"
# a call that makes a widget: widgets.interactive_figure(...), ipywidgets.IntSlider(...), interact(...)
_WIDGET_CALL = re.compile(r"(?<!def )(?<![\w.])(?:(?:ipywidgets|widgets)\.[A-Za-z_]\w*"
                          r"|interact|interactive|interact_manual|interactive_figure)\s*\(")

# JupyterLab settings for the run: every cell attached to the page (no windowing), no news or update
# checks (they would reach for the network), no notifications over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}


# --------------------------------------------------------------------------------------------------
# The notebook side: which chapters, which cells, the temporary copy. Pure functions (unit-tested).

def chapters(notebooks: Path) -> list[Path]:
    """The chapter notebooks, ``NN_*.ipynb``, in order."""
    return sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _strip_comments(src: str) -> str:
    """``src`` without its comments (a ``#`` inside a string stays); lines that do not tokenize as
    Python (IPython magics) keep everything before their first ``#``."""
    lines = src.splitlines()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                (row, col), (_, end) = tok.start, tok.end
                lines[row - 1] = lines[row - 1][:col] + " " * (end - col) + lines[row - 1][end:]
        return "\n".join(lines)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.split("#", 1)[0] for line in src.splitlines())


def widget_cells(nb: dict) -> list[int]:
    """Indices of the code cells that display a widget: tagged ``widget``, or calling a constructor of
    ``widgets.``/``ipywidgets.`` outside a comment. Cells tagged ``injected-parameters`` never count."""
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or "injected-parameters" in _tags(cell):
            continue
        if WIDGET_TAG in _tags(cell) or _WIDGET_CALL.search(_strip_comments(_source(cell))):
            found.append(i)
    return found


def parameters_cell(nb: dict) -> int | None:
    """Index of the cell tagged ``parameters`` (papermill's convention), or None."""
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and "parameters" in _tags(cell):
            return i
    return None


def _literal(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


@dataclass
class Prepared:
    """A chapter's temporary copy: the notebook, and where its widget cells now are."""

    nb: dict
    widgets: list[int]
    dropped: int  # cells after the last widget cell, not run


def prepare(nb: dict, parameters: dict) -> Prepared:
    """The copy of ``nb`` that the check runs: ``parameters`` injected right after the ``parameters``
    cell (replacing any ``injected-parameters`` cell, as papermill does), every output, execution
    count and collapsed state cleared, the saved widget state removed, and only the cells up to the
    last widget cell kept. ``nb`` is not modified. Raises ValueError without a widget cell or a
    parameters cell."""
    nb = copy.deepcopy(nb)
    cells = [c for c in nb.get("cells", []) if "injected-parameters" not in _tags(c)]
    nb["cells"] = cells
    if not widget_cells(nb):
        raise ValueError("no widget cell")
    p = parameters_cell(nb)
    if p is None:
        raise ValueError("no cell tagged 'parameters'")
    injected = {
        "cell_type": "code", "id": "injected-parameters", "execution_count": None, "outputs": [],
        "metadata": {"tags": ["injected-parameters"]},
        "source": "# Parameters\n" + "".join(f"{k} = {_literal(v)}\n" for k, v in parameters.items()),
    }
    cells.insert(p + 1, injected)
    last = widget_cells(nb)[-1]
    dropped = len(cells) - last - 1
    del cells[last + 1:]
    for cell in cells:
        meta = cell.setdefault("metadata", {})
        meta.pop("collapsed", None)
        meta.pop("jupyter", None)  # source_hidden / outputs_hidden
        meta.pop("execution", None)
        meta.pop("papermill", None)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    for key in ("widgets", "papermill"):
        nb.get("metadata", {}).pop(key, None)
    return Prepared(nb, widget_cells(nb), dropped)


# --------------------------------------------------------------------------------------------------
# JupyterLab

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(root: Path, port: int, token: str) -> list[str]:
    """``jupyter lab`` on 127.0.0.1:``port`` with ``token``, serving ``root``: no browser of its own, the
    app object exposed to the page (``window.jupyterapp``, to open notebooks and run their cells), and
    nothing that reaches for the internet (news, update checks, the PyPI extension manager)."""
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--IdentityProvider.token={token}",
           f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--ServerApp.allow_root=True")
    return cmd


class Lab:
    """A JupyterLab server in a temporary folder, stopped (with its kernels) on exit."""

    def __init__(self, folder: Path, startup_s: float = 90.0):
        self.folder, self.startup_s = folder, startup_s
        self.root = folder / "notebooks"
        self.root.mkdir()
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}/"
        self.log_path = folder / "jupyter-lab.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        settings = self.folder / "lab-settings"
        for rel, value in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = {**os.environ,
               "JUPYTER_CONFIG_DIR": str(self.folder / "config"),      # no user configuration
               "JUPYTER_RUNTIME_DIR": str(self.folder / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(settings),
               "JUPYTERLAB_WORKSPACES_DIR": str(self.folder / "workspaces"),
               "JUPYTER_PREFER_ENV_PATH": "1",                          # the venv's python3 kernel
               "PYTHONUNBUFFERED": "1"}
        env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the PNGs the check compares
        self.log = open(self.log_path, "wb")  # closed in __exit__
        self.proc = subprocess.Popen(lab_command(self.root, self.port, self.token), cwd=self.root, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()
        return self

    def wait_ready(self) -> float:
        """Wait until the server answers; the seconds since it was started."""
        assert self.proc is not None
        deadline = self.started + self.startup_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}api/status?token={self.token}", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {self.startup_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the kernels it started
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# --------------------------------------------------------------------------------------------------
# The browser side

# Open a notebook, wait for its kernel, run all its cells; mark the widget cells' nodes for the locators.
_OPEN_AND_RUN_JS = """async ([path, widgetCells, timeoutMs]) => {
  const app = window.jupyterapp;
  const within = (p, what) => Promise.race([p, new Promise((_, no) =>
      setTimeout(() => no(new Error(what + ' took longer than ' + timeoutMs / 1000 + ' s')), timeoutMs))]);
  const t0 = performance.now();
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await within(panel.context.ready, 'opening the notebook');
  await within(panel.sessionContext.ready, 'starting the kernel');
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel) throw new Error('no kernel started (kernelspec ' +
      JSON.stringify(panel.context.model.getMetadata('kernelspec')) + ')');
  await within(kernel.info, 'the kernel\\'s first reply');
  const tOpen = performance.now();
  app.shell.activateById(panel.id);
  const ok = await within(app.commands.execute('notebook:run-all-cells'), 'running the cells');
  const tRun = performance.now();
  const errors = [];
  panel.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    for (let k = 0; k < cell.model.outputs.length; k++) {
      const o = cell.model.outputs.get(k).toJSON();
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${String(o.evalue).slice(0, 300)}`);
    }
  });
  const VIEW = 'application/vnd.jupyter.widget-view+json';
  const shown = widgetCells.filter(i => {
    const outputs = panel.content.widgets[i].model.outputs;
    for (let k = 0; k < outputs.length; k++) { if (VIEW in (outputs.get(k).toJSON().data || {})) return true; }
    return false;
  });
  shown.forEach(i => panel.content.widgets[i].node.setAttribute('data-lab-check', 'cell-' + i));
  return {ok: ok !== false, errors, shown, open_s: (tOpen - t0) / 1000, run_s: (tRun - tOpen) / 1000,
          cells: panel.content.widgets.length, id: panel.id};
}"""

_CLOSE_JS = """async (id) => {
  const app = window.jupyterapp;
  const panel = [...app.shell.widgets('main')].find(w => w.id === id);
  if (!panel) return;
  try { await panel.sessionContext.shutdown(); } catch (e) {}
  panel.context.model.dirty = false;
  panel.dispose();
}"""

# What the plot looks like now: the images (and any SVG) in the widget's output area.
_FIGURE_JS = """(cell) => {
  const out = cell.querySelector('.widget-output') || cell;
  const imgs = [...out.querySelectorAll('img')].map(i => i.getAttribute('src') || '');
  const svgs = [...out.querySelectorAll('svg')].filter(s => !s.closest('.jp-OutputPrompt')).map(s => s.outerHTML);
  const errs = [...out.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(e => e.innerText.trim().slice(0, 400)).filter(Boolean);
  return {sig: imgs.join('|') + svgs.join('|'), n: imgs.length + svgs.length, errs};
}"""

_WAIT_DRAWN_JS = """(cell) => {
  const out = cell.querySelector('.widget-output');
  return !!out && (out.querySelector('img') || out.querySelector('svg') ||
                   out.querySelector('[data-mime-type="application/vnd.jupyter.stderr"]'));
}"""

_WAIT_CHANGED_JS = """([cell, before]) => {
  const out = cell.querySelector('.widget-output') || cell;
  if (out.querySelector('[data-mime-type="application/vnd.jupyter.stderr"]')) return true;
  const imgs = [...out.querySelectorAll('img')].map(i => i.getAttribute('src') || '');
  const svgs = [...out.querySelectorAll('svg')].filter(s => !s.closest('.jp-OutputPrompt')).map(s => s.outerHTML);
  const sig = imgs.join('|') + svgs.join('|');
  return sig !== '' && sig !== before;
}"""

_CONTROLS_JS = """(cell) => {
  const box = cell.querySelector('.jp-OutputArea-output .jupyter-widgets') || cell;
  const label = el => { const d = el.querySelector('.widget-label'); return d ? d.innerText.trim() : ''; };
  const out = [];
  box.querySelectorAll('.widget-slider').forEach((el, i) => {
    const h = el.querySelector('.noUi-handle');
    out.push({kind: 'slider', index: i, label: label(el),
              value: (el.querySelector('.widget-readout') || {}).innerText || (h && h.getAttribute('aria-valuenow')),
              atMax: !!h && Number(h.getAttribute('aria-valuenow')) >= Number(h.getAttribute('aria-valuemax'))});
  });
  box.querySelectorAll('.widget-dropdown').forEach((el, i) => {
    const s = el.querySelector('select');
    out.push({kind: 'dropdown', index: i, label: label(el), value: s ? s.value : null,
              options: s ? s.options.length : 0, selected: s ? s.selectedIndex : -1});
  });
  return out;
}"""


@dataclass
class Redraw:
    control: str
    change: str
    seconds: float | None
    problem: str | None = None


@dataclass
class ChapterResult:
    chapter: str
    status: str = "passed"  # passed | failed | skipped
    problems: list[str] = field(default_factory=list)
    redraws: list[Redraw] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    open_s: float = 0.0
    run_s: float = 0.0
    seconds: float = 0.0

    def fail(self, why: str) -> None:
        self.status = "failed"
        self.problems.append(why)


def _move(page, cell, control: dict, timeout_ms: float) -> Redraw:
    """Move one control and time the redraw."""
    name = f"{control['kind']} '{control['label'] or control['index']}'"
    widget = cell.locator(f".widget-{control['kind']}").nth(control["index"])
    before = cell.evaluate(_FIGURE_JS)
    if control["kind"] == "slider":
        handle = widget.locator(".noUi-handle").first
        key = "ArrowLeft" if control["atMax"] else "ArrowRight"
        handle.focus()
        t0 = time.perf_counter()
        handle.press(key)
    else:
        n, sel = control["options"], control["selected"]
        if n < 2:
            return Redraw(name, "only one option", None, None)
        t0 = time.perf_counter()
        widget.locator("select").select_option(index=(sel + 1) % n)
    try:
        page.wait_for_function(_WAIT_CHANGED_JS, arg=[cell.element_handle(), before["sig"]],
                               timeout=timeout_ms, polling=25)
        seconds = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a timeout is the failure this check exists for
        seconds = None
    after = cell.evaluate(_FIGURE_JS)
    now = next((c for c in cell.evaluate(_CONTROLS_JS)
                if c["kind"] == control["kind"] and c["index"] == control["index"]), {})
    change = f"{control['value']} → {now.get('value')}"
    if after["errs"]:
        return Redraw(name, change, seconds, f"moving {name} ({change}) printed an error: {after['errs'][0]}")
    if seconds is None:
        why = "the control's value did not change" if now.get("value") == control["value"] else \
            "the plot did not change"
        return Redraw(name, change, None,
                      f"moving {name} ({change}) did not redraw within {timeout_ms / 1000:.0f} s: {why}")
    if after["n"] == 0:
        return Redraw(name, change, seconds, f"moving {name} ({change}) left no figure in the widget")
    return Redraw(name, change, seconds)


def check_chapter(page, lab: Lab, src: Path, parameters: dict, run_timeout_s: float,
                  redraw_timeout_s: float) -> ChapterResult:
    res = ChapterResult(src.stem)
    t0 = time.perf_counter()
    try:
        prepared = prepare(json.loads(src.read_text(encoding="utf-8")), parameters)
    except ValueError as exc:
        if str(exc) == "no widget cell":
            res.status = "skipped"
            res.notes.append("no widget cell (no code cell tagged 'widget' or calling a widgets./ipywidgets. constructor)")
        else:
            res.fail(f"cannot prepare the copy: {exc}")
        return res
    (lab.root / src.name).write_text(json.dumps(prepared.nb, indent=1, ensure_ascii=False), encoding="utf-8")
    res.notes.append(f"ran cells 0–{prepared.widgets[-1]} of the copy at scale={parameters.get('scale')} "
                     f"({prepared.dropped} later cells not run)")
    panel_id = None
    try:
        info = page.evaluate(_OPEN_AND_RUN_JS, [src.name, prepared.widgets, run_timeout_s * 1000])
        panel_id = info["id"]
        res.open_s, res.run_s = info["open_s"], info["run_s"]
        if info["errors"] or not info["ok"]:
            res.fail("running the cells failed: " + ("; ".join(info["errors"]) or "a cell did not complete"))
            return res
        shown = info["shown"]
        quiet = [i for i in prepared.widgets if i not in shown]
        if quiet:
            res.notes.append(f"cell{'s' if len(quiet) > 1 else ''} {', '.join(map(str, quiet))} made widgets "
                             "but displayed none (not checked)")
        if shown:
            res.notes.append(f"widget shown by cell{'s' if len(shown) > 1 else ''} {', '.join(map(str, shown))}")
        else:
            res.fail(f"no widget displayed by cell{'s' if len(prepared.widgets) > 1 else ''} "
                     f"{', '.join(map(str, prepared.widgets))}")
        for i in shown:
            cell = page.locator(f'[data-lab-check="cell-{i}"]')
            tag = f"cell {i}: " if len(shown) > 1 else ""
            try:
                page.wait_for_function(_WAIT_DRAWN_JS, arg=cell.element_handle(), timeout=redraw_timeout_s * 1000)
            except Exception:  # noqa: BLE001
                res.fail(f"{tag}no figure in the widget's output {redraw_timeout_s:.0f} s after the cell ran")
                continue
            first = cell.evaluate(_FIGURE_JS)
            if first["errs"]:
                res.fail(f"{tag}the widget's first drawing printed an error: {first['errs'][0]}")
                continue
            controls = cell.evaluate(_CONTROLS_JS)
            if not controls:
                res.fail(f"{tag}the widget has no slider or dropdown to move")
                continue
            for control in controls:
                r = _move(page, cell, control, redraw_timeout_s * 1000)
                r.control = tag + r.control
                res.redraws.append(r)
                if r.problem:
                    res.fail(tag + r.problem)
    except Exception as exc:  # noqa: BLE001 - one chapter's failure must not stop the others
        res.fail(f"could not check: {str(exc).splitlines()[0][:300]}")
    finally:
        if panel_id is None:  # opened but failed before returning: close whatever notebook is open
            panel_id = page.evaluate("() => { const w = window.jupyterapp.shell.currentWidget; return w && w.id; }")
        if panel_id:
            try:
                page.evaluate(_CLOSE_JS, panel_id)
            except Exception:  # noqa: BLE001, S110 - the server's kernels stop with it anyway
                pass
        res.seconds = time.perf_counter() - t0
    return res


def _print_result(res: ChapterResult) -> None:
    head = {"passed": "ok     ", "failed": "FAILED ", "skipped": "skipped"}[res.status]
    timing = "" if res.status == "skipped" and not res.seconds else \
        f" ({res.seconds:.1f} s: kernel {res.open_s:.1f} s, cells {res.run_s:.1f} s)"
    print(f"  {head} {res.chapter}{timing}")
    for note in res.notes:
        print(f"          {note}")
    for r in res.redraws:
        t = f"{r.seconds:.2f} s" if r.seconds is not None else "no redraw"
        print(f"          {r.control}: {r.change}, redrawn in {t}" if not r.problem else
              f"          {r.control}: {r.change}: {t}")
    for p in res.problems:
        print(f"          - {res.chapter}: {p}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("chapters", nargs="*", help="chapter numbers or file names (default: every NN_*.ipynb)")
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="the chapters' folder")
    p.add_argument("--scale", default="smoke", help="the scale injected into each copy (default: smoke)")
    p.add_argument("--chromium", help="Chromium executable (default: $CHROMIUM, then the system one)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to run a chapter's cells")
    p.add_argument("--redraw-timeout", type=float, default=30.0, help="seconds to wait for one redraw")
    p.add_argument("--shots", type=Path, default=ROOT / "_build" / "lab-screenshots",
                   help="a screenshot of each failed chapter goes here")
    args = p.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)

    nbs = chapters(args.notebooks)
    if args.chapters:
        nbs = [nb for nb in nbs if any(nb.name.startswith(c) or nb.stem == c for c in args.chapters)]
    if not nbs:
        print(f"check_lab: no chapter notebooks in {args.notebooks}", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_lab: no Chromium found; apt-get install chromium, or pass --chromium.", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("check_lab: Playwright is not installed; pip install 'lossbook[test]'.", file=sys.stderr)
        return 2
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        print("check_lab: JupyterLab is not installed; pip install 'lossbook[book]'.", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    results: list[ChapterResult] = []
    with tempfile.TemporaryDirectory(prefix="lossbook-lab-") as tmp, Lab(Path(tmp)) as lab:
        with sync_playwright() as pw:  # Chromium starts while the server does
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True,
                args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                      "--disable-background-networking", "--disable-component-update"])
            try:
                started = lab.wait_ready()
            except RuntimeError as exc:
                print(f"check_lab: {exc}", file=sys.stderr)
                return 2
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, service_workers="block")
            page = context.new_page()
            blocked: list[str] = []

            def route(r):
                if r.request.url.startswith((lab.base, "data:", "blob:")):
                    r.continue_()
                else:
                    blocked.append(r.request.url[:120])
                    r.abort("internetdisconnected")

            page.route("**/*", route)
            page.goto(f"{lab.base}lab?reset&token={lab.token}", wait_until="load", timeout=120_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined",
                                   timeout=120_000)
            page.evaluate("() => window.jupyterapp.started.then(() => window.jupyterapp.restored)")
            print(f"check_lab: JupyterLab {lab.base} (up in {started:.1f} s, page loaded {time.perf_counter() - t0:.1f} s "
                  f"after the start), network blocked, scale={args.scale}, {len(nbs)} chapters, Chromium "
                  f"{browser.version}", flush=True)
            for nb in nbs:
                res = check_chapter(page, lab, nb, {"scale": args.scale}, args.timeout, args.redraw_timeout)
                if res.status == "failed" and args.shots:
                    args.shots.mkdir(parents=True, exist_ok=True)
                    try:
                        page.screenshot(path=str(args.shots / f"{nb.stem}.png"))
                    except Exception:  # noqa: BLE001, S110
                        pass
                results.append(res)
                _print_result(res)
            browser.close()
        if blocked:
            print(f"check_lab: requests to other hosts were blocked (not a failure): {sorted(set(blocked))[:5]}")
        if any(r.status == "failed" for r in results):
            print(f"check_lab: the end of JupyterLab's log:\n{lab.log_tail(25)}", file=sys.stderr)

    passed = [r for r in results if r.status == "passed"]
    failed = [r for r in results if r.status == "failed"]
    skipped = [r for r in results if r.status == "skipped"]
    times = [r.seconds for res in passed for r in res.redraws if r.seconds is not None]
    slowest = f"; redraws {min(times):.2f}–{max(times):.2f} s" if times else ""
    print(f"check_lab: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped "
          f"({', '.join(r.chapter for r in skipped) or 'none'}) in {time.perf_counter() - t0:.0f} s{slowest}")
    if failed:
        for res in failed:
            for why in res.problems:
                print(f"check_lab: FAILED {res.chapter}: {why}", file=sys.stderr)
        if args.shots:
            print(f"check_lab: screenshots of the failed chapters in {args.shots}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
