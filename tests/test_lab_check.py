"""tests/browser/check_lab.py, the check that every chapter's widget redraws live in JupyterLab
(`make test-lab`): how it finds the widget cells and prepares the copy it runs (here, on small
notebooks and on the chapters themselves), and, end to end on small chapters made here, that it
passes a widget that redraws and fails one that does not, naming the chapter. The end-to-end test
is skipped without Playwright, a system Chromium or JupyterLab (`.ci/run` installs them)."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "browser"))
spec = importlib.util.spec_from_file_location("check_lab", HERE / "browser" / "check_lab.py")
check_lab = importlib.util.module_from_spec(spec)
sys.modules["check_lab"] = check_lab
spec.loader.exec_module(check_lab)

NOTEBOOKS = HERE.parent / "notebooks"


def code(source: str, tags=(), outputs=None, **meta) -> dict:
    return {"cell_type": "code", "metadata": {"tags": list(tags), **meta}, "source": source,
            "execution_count": 3 if outputs else None, "outputs": outputs or []}


def markdown(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def notebook(*cells) -> dict:
    return {"cells": list(cells), "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}


PARAMS = code('scale = "book"  # smoke | book | paper\nseed = 0\n', tags=["parameters"])
OLD_INJECTED = code('# Parameters\nscale = "book"\n', tags=["injected-parameters", "remove-cell"])
SETUP = code("from lossbook.lab import widgets\nimport numpy as np\n")
WIDGET = code('widgets.interactive_figure(draw, a=widgets.float_slider(1.0, 0.0, 2.0, 0.1, "a"))',
              tags=["nbval-ignore-output", "hide-input"],
              outputs=[{"output_type": "execute_result", "data": {"text/plain": "VBox()"}, "metadata": {},
                        "execution_count": 3}],
              jupyter={"outputs_hidden": True})
LATER = code("train_for_an_hour()")


# ------------------------------------------------------------------------------------ the pure part

def test_chapters_are_the_numbered_notebooks_in_order(tmp_path):
    for name in ("10_b.ipynb", "02_a.ipynb", "report_card.ipynb", "1_x.ipynb", "03_c.txt"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in check_lab.chapters(tmp_path)] == ["02_a.ipynb", "10_b.ipynb"]


def test_widget_cells_finds_constructor_calls_and_the_tag_only():
    nb = notebook(
        markdown("widgets.float_slider(1) in prose"),                       # 0: not code
        PARAMS,                                                              # 1
        code("from lossbook.lab import widgets\nimport ipywidgets"),         # 2: imports only
        code("# widgets.float_slider(1) was here\nx = 1"),                   # 3: a comment
        code('label = "# not a comment"; w = widgets.dropdown([1, 2], 1, "d")'),  # 4: a call after a '#' in a string
        code("def interactive_figure(draw):\n    pass"),                     # 5: a definition
        code("show(fig)", tags=["widget"]),                                  # 6: the tag
        code("ipywidgets.IntSlider(value=3)"),                               # 7
        code("interact(f, x=(0, 1))"),                                       # 8
        code("plot_widgets.draw(1); my.widgets.go(2)"),                      # 9: other names
        code("widgets.interactive_figure(f)", tags=["injected-parameters"]),  # 10: never
    )
    assert check_lab.widget_cells(nb) == [4, 6, 7, 8]


def test_prepare_injects_the_scale_truncates_and_clears_without_touching_the_original():
    nb = notebook(markdown("# Title"), PARAMS, OLD_INJECTED, SETUP, WIDGET, markdown("more"), LATER)
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    original = copy.deepcopy(nb)
    prepared = check_lab.prepare(nb, {"scale": "smoke", "seed": 3})
    assert nb == original
    cells = prepared.nb["cells"]
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code", "code", "code"]
    assert cells[2]["metadata"]["tags"] == ["injected-parameters"]
    assert cells[2]["source"] == '# Parameters\nscale = "smoke"\nseed = 3\n'
    assert sum("injected-parameters" in c["metadata"].get("tags", []) for c in cells) == 1  # the old one is gone
    assert prepared.widgets == [4] and cells[4]["source"] == WIDGET["source"]
    assert prepared.dropped == 2
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells if c["cell_type"] == "code")
    assert "jupyter" not in cells[4]["metadata"]  # outputs_hidden would hide the widget
    assert "widgets" not in prepared.nb["metadata"]
    assert prepared.nb["metadata"]["kernelspec"]["name"] == "python3"
    json.dumps(prepared.nb)  # writable as is


def test_prepare_keeps_every_widget_cell_up_to_the_last():
    nb = notebook(PARAMS, SETUP, WIDGET, LATER, code("widgets.float_slider(0.5, 0, 1, 0.1, 'b')"), LATER)
    prepared = check_lab.prepare(nb, {"scale": "smoke"})
    assert prepared.widgets == [3, 5] and len(prepared.nb["cells"]) == 6 and prepared.dropped == 1


def test_prepare_refuses_a_notebook_without_a_widget_or_parameters():
    with pytest.raises(ValueError, match="no widget cell"):
        check_lab.prepare(notebook(PARAMS, SETUP, LATER), {"scale": "smoke"})
    with pytest.raises(ValueError, match="parameters"):
        check_lab.prepare(notebook(SETUP, WIDGET), {"scale": "smoke"})


@pytest.mark.parametrize("path", check_lab.chapters(NOTEBOOKS), ids=lambda p: p.stem)
def test_each_chapter_with_a_widget_prepares_to_run_at_smoke_scale(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    if not check_lab.widget_cells(nb):
        pytest.skip(f"{path.stem} has no widget cell yet (check_lab reports it as skipped)")
    prepared = check_lab.prepare(nb, {"scale": "smoke"})
    cells = prepared.nb["cells"]
    assert prepared.widgets[-1] == len(cells) - 1
    p = check_lab.parameters_cell(prepared.nb)
    assert cells[p + 1]["source"] == '# Parameters\nscale = "smoke"\n'
    assert not any(o for c in cells if c["cell_type"] == "code" for o in c["outputs"])


def test_lab_command_binds_localhost_with_the_token_and_opens_no_browser(tmp_path):
    cmd = check_lab.lab_command(tmp_path, 8123, "abc")
    assert cmd[:4] == [sys.executable, "-m", "jupyter", "lab"]
    for arg in ("--no-browser", "--IdentityProvider.token=abc", "--port=8123", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True"):
        assert arg in cmd


# ------------------------------------------------------------------- end to end, in a real JupyterLab

_DRAW = '''import ipywidgets as widgets
import matplotlib.pyplot as plt

assert scale == "smoke", scale  # injected by the check


def draw(x, colour):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, x], color=colour)
    ax.set_ylim(0, 3)


slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.5, description="x", continuous_update=False)
menu = widgets.Dropdown(options=["C0", "C3"], value="C0", description="colour")
out = widgets.Output()


def redraw(_change=None):
    with out:
        out.clear_output(wait=True)
        draw(FROZEN if FROZEN is not None else slider.value, menu.value)
        plt.show()
'''
_SHOW = "slider.observe(redraw, names='value')\nmenu.observe(redraw, names='value')\nredraw()\n" \
        "widgets.VBox([widgets.HBox([slider, menu]), out])"


def _chapter(frozen) -> dict:
    return notebook(PARAMS, code(f"FROZEN = {frozen!r}\n" + _DRAW), code(_SHOW, tags=["widget"]), LATER)


@pytest.mark.notebook  # starts JupyterLab and three kernels (about 30 s)
def test_end_to_end_a_live_widget_passes_a_frozen_one_fails_and_names_its_chapter(tmp_path, capsys):
    pytest.importorskip("playwright.sync_api")
    chromium = check_lab.find_chromium()
    if chromium is None:
        pytest.skip("no system Chromium (apt-get install chromium)")
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("JupyterLab is not installed")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "01_live.ipynb").write_text(json.dumps(_chapter(None)))
    (nbs / "02_frozen.ipynb").write_text(json.dumps(_chapter(1.0)))  # the slider changes nothing drawn
    (nbs / "03_broken.ipynb").write_text(json.dumps(notebook(PARAMS, code("1 / 0"), code(_SHOW, tags=["widget"]))))
    (nbs / "04_prose.ipynb").write_text(json.dumps(notebook(PARAMS, markdown("no widget here"))))
    committed = {p.name: p.read_bytes() for p in nbs.iterdir()}

    rc = check_lab.main(["--notebooks", str(nbs), "--chromium", chromium, "--redraw-timeout", "5",
                         "--timeout", "120", "--shots", str(tmp_path / "shots")])
    out, err = capsys.readouterr()
    assert rc == 1, out + err
    assert "ok      01_live" in out
    assert "slider 'x': 1.00 → 1.50, redrawn in" in out and "dropdown 'colour': C0 → C3, redrawn in" in out
    assert "FAILED 02_frozen: moving slider 'x' (1.00 → 1.50) did not redraw within 5 s: the plot did not change" in err
    assert "FAILED 03_broken: running the cells failed: cell 2: ZeroDivisionError" in err
    assert "skipped 04_prose" in out
    assert "1 passed, 2 failed, 1 skipped (04_prose)" in out
    assert {p.name: p.read_bytes() for p in nbs.iterdir()} == committed  # the chapters were not touched
    assert (tmp_path / "shots" / "02_frozen.png").exists()
