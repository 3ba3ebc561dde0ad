"""``lossbook.lab.book.run_chapter``: which parameters reach a notebook, and that none is dropped silently.

papermill's execution is replaced by a stub that records the parameters (no kernel is started).
"""

from __future__ import annotations

import shutil

import nbformat
import pytest

pm = pytest.importorskip("papermill")

from lossbook.lab import book  # noqa: E402


def _notebook(path, parameters: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def executed(monkeypatch):
    """The parameters of every (stubbed) papermill run."""
    calls = []

    def fake_execute(src, dst, *, parameters, **kwargs):
        calls.append(dict(parameters))
        shutil.copy(src, dst)

    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    return calls


CHAPTER_PARAMS = 'scale = "book"\nseed = 0\ndevice = "auto"\nnoise = 0.2\n'


def test_standard_and_declared_extra_parameters_reach_the_chapter(tmp_path, executed):
    src = _notebook(tmp_path / "07_demo.ipynb", CHAPTER_PARAMS)
    res = book.run_chapter(src, tmp_path / "out" / src.name, scale="smoke", seed=3, device="cpu",
                           extra={"noise": 0.4})
    assert executed == [{"scale": "smoke", "seed": 3, "device": "cpu", "noise": 0.4}]
    assert res.output.exists() and res.chapter == "07_demo"


def test_undeclared_extra_parameter_is_an_error(tmp_path, executed):
    src = _notebook(tmp_path / "07_demo.ipynb", CHAPTER_PARAMS)
    with pytest.raises(ValueError, match=r"chapter 07_demo does not declare the parameter\(s\) \['nosie'\]; its "
                                         r"parameters cell declares \['device', 'noise', 'scale', 'seed'\]\. "
                                         r"Check the spelling"):
        book.run_chapter(src, tmp_path / "out.ipynb", extra={"nosie": 0.4})
    assert executed == []  # nothing ran


def test_standard_parameters_belong_in_keywords_not_extra(tmp_path, executed):
    src = _notebook(tmp_path / "07_demo.ipynb", CHAPTER_PARAMS)
    with pytest.raises(ValueError, match=r"pass scale, seed as keyword argument\(s\) of run_chapter, not in extra"):
        book.run_chapter(src, tmp_path / "out.ipynb", extra={"seed": 1, "scale": "book"})
    assert executed == []


def test_a_chapter_must_declare_scale_seed_and_device(tmp_path, executed):
    src = _notebook(tmp_path / "08_partial.ipynb", 'scale = "book"\nseed = 0\n')
    with pytest.raises(ValueError, match=r"chapter 08_partial does not declare the parameter\(s\) \['device'\]; "
                                         r"its parameters cell declares \['scale', 'seed'\]"):
        book.run_chapter(src, tmp_path / "out.ipynb", device="cuda")
    assert executed == []


def test_report_card_gets_the_standard_parameters_it_declares(tmp_path, executed):
    # a notebook that is not a numbered chapter (the report card) need not declare scale/seed/device
    src = _notebook(tmp_path / "report_card.ipynb", 'scale = "book"\nchapters_dir = "."\n')
    book.run_chapter(src, tmp_path / "out" / src.name, scale="smoke", seed=5, extra={"chapters_dir": "/x"})
    assert executed == [{"scale": "smoke", "chapters_dir": "/x"}]
    with pytest.raises(ValueError, match=r"chapter report_card does not declare the parameter\(s\) \['seeds'\]"):
        book.run_chapter(src, tmp_path / "out" / src.name, extra={"seeds": [0, 1]})


def test_the_committed_chapters_declare_the_standard_parameters():
    for path in book.chapters():
        declared = pm.inspect_notebook(str(path))
        assert {"scale", "seed", "device"} <= set(declared), f"{path.name} declares {sorted(declared)}"
