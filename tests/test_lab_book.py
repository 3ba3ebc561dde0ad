"""``lossbook.lab.book.run_chapter``: which parameters reach a notebook, and that none is dropped
silently; the run record it writes (code hash, lossbook commit), the staleness check and the backfill.

papermill's execution is replaced by a stub that records the parameters (no kernel is started).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

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
        if src != dst:  # --inplace runs write over their source
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



# --------------------------------------------------------------------------------------------------
# Run records
# --------------------------------------------------------------------------------------------------

def _chapter_nb(code=("import math", "print(math.pi)"), markdown="# A chapter\n\nSome prose.") -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["lossbook"] = {"golden": {"trained": {"atol": 0.05}}}
    params = nbformat.v4.new_code_cell(CHAPTER_PARAMS)
    params.metadata["tags"] = ["parameters"]
    cells = [nbformat.v4.new_markdown_cell(markdown), params]
    for src in code:
        cell = nbformat.v4.new_code_cell(src)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="3.14\n")]
        cells.append(cell)
    nb.cells = cells
    return json.loads(nbformat.writes(nb))


def _book(tmp_path):
    """A folder laid out like the book (``_toc.yml``, ``notebooks/``)."""
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def _write(path, nb):
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


def test_code_hash_ignores_json_layout_white_space_markdown_and_the_injected_parameters():
    nb = _chapter_nb()
    h = book.code_sha256(nb)
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    # the same notebook written with another JSON layout, and sources as one string instead of lines
    relaid = json.loads(json.dumps(nb, indent=4, sort_keys=True))
    for cell in relaid["cells"]:
        cell["source"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    assert book.code_sha256(relaid) == h
    # white space at line ends, blank lines around a cell, CRLF line ends, an empty code cell
    spaced = json.loads(json.dumps(nb))
    spaced["cells"][2]["source"] = "\n\nimport math   \r\n\n"
    spaced["cells"].append(nbformat.v4.new_code_cell("  \n"))
    assert book.code_sha256(spaced) == h
    # markdown edits, outputs, execution counts, tags and papermill's injected-parameters cell
    other = json.loads(json.dumps(nb))
    other["cells"][0]["source"] = "# Another title\n\nOther prose, $x^2$."
    other["cells"].append(nbformat.v4.new_markdown_cell("*a new last paragraph*"))
    other["cells"][3]["outputs"] = []
    other["cells"][3]["execution_count"] = 7
    other["cells"][3]["metadata"]["tags"] = ["golden-float", "hide-input"]
    injected = nbformat.v4.new_code_cell('# Parameters\nscale = "smoke"\n')
    injected.metadata["tags"] = ["injected-parameters", "remove-cell"]
    other["cells"].insert(2, json.loads(json.dumps(injected)))
    assert book.code_sha256(other) == h


@pytest.mark.parametrize("edit", ["change", "indent", "add", "remove", "split", "join", "reorder", "parameters"])
def test_code_hash_changes_with_any_code_edit(edit):
    nb = _chapter_nb(code=("import math", "x = 1\nprint(math.pi)"))
    h = book.code_sha256(nb)
    cells = nb["cells"]
    if edit == "change":
        cells[3]["source"] = "x = 2\nprint(math.pi)"
    elif edit == "indent":  # leading white space is code
        cells[3]["source"] = "x = 1\n print(math.pi)"
    elif edit == "add":
        cells.append(nbformat.v4.new_code_cell("print(x)"))
    elif edit == "remove":
        del cells[3]
    elif edit == "split":
        cells[3:4] = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("print(math.pi)")]
    elif edit == "join":
        cells[2:4] = [nbformat.v4.new_code_cell("import math\nx = 1\nprint(math.pi)")]
    elif edit == "reorder":
        cells[2], cells[3] = cells[3], cells[2]
    elif edit == "parameters":
        cells[1]["source"] = CHAPTER_PARAMS.replace("0.2", "0.3")
    assert book.code_sha256(nb) != h


def _revision(commit="abc1234" + "0" * 33, dirty=False):
    return {"lossbook_commit": commit, "dirty": dirty, "lossbook_version": "0.1.0"}


def test_run_chapter_writes_the_run_record_and_the_provenance_cell(tmp_path, executed, monkeypatch):
    monkeypatch.setattr(book, "lossbook_revision", lambda: _revision())
    src = _write(tmp_path / "07_demo.ipynb", _chapter_nb())
    dst = tmp_path / "out" / src.name
    book.run_chapter(src, dst, scale="book")
    book.run_chapter(dst, dst, scale="book")  # again in place: the record and the cell are replaced
    nb = json.loads(dst.read_text())
    rec = nb["metadata"]["lossbook"]["run"]
    assert rec == {"code_sha256": book.code_sha256(src), "scale": "book", "lossbook_commit": "abc1234" + "0" * 33,
                   "dirty": False, "lossbook_version": "0.1.0", "date": rec["date"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", rec["date"])
    assert nb["metadata"]["lossbook"]["golden"] == {"trained": {"atol": 0.05}}  # other keys kept
    generated = [c for c in nb["cells"] if book.PROVENANCE_TAG in c["metadata"].get("tags", [])]
    assert len(generated) == 1 and generated[0] is nb["cells"][-1] and generated[0]["cell_type"] == "markdown"
    assert "".join(generated[0]["source"]) == (
        f"*Outputs made at scale=book with lossbook commit `abc1234` on {rec['date']}.*")
    nbformat.validate(nbformat.reads(dst.read_text(), as_version=4))  # still a valid notebook (cell ids unique)
    assert book.check_run_record(dst) is None


def test_run_record_says_when_lossbook_had_uncommitted_changes(tmp_path, executed, monkeypatch):
    monkeypatch.setattr(book, "lossbook_revision", lambda: _revision(dirty=True))
    src = _write(tmp_path / "07_demo.ipynb", _chapter_nb())
    book.run_chapter(src, tmp_path / "out.ipynb", scale="smoke")
    nb = json.loads((tmp_path / "out.ipynb").read_text())
    assert nb["metadata"]["lossbook"]["run"]["dirty"] is True
    assert "commit `abc1234` plus uncommitted changes to `lossbook/`" in "".join(nb["cells"][-1]["source"])


def test_a_run_without_git_records_the_version(tmp_path, executed, monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(book, "_git", no_git)
    assert book.lossbook_revision() == {"lossbook_commit": None, "dirty": None, "lossbook_version": "0.1.0"}
    src = _write(tmp_path / "07_demo.ipynb", _chapter_nb())
    book.run_chapter(src, tmp_path / "out.ipynb", scale="book")  # does not fail
    nb = json.loads((tmp_path / "out.ipynb").read_text())
    assert nb["metadata"]["lossbook"]["run"]["lossbook_commit"] is None
    assert "with lossbook 0.1.0 (no git commit known)" in "".join(nb["cells"][-1]["source"])
    assert book.check_run_record(tmp_path / "out.ipynb") is None


def test_a_failed_run_keeps_no_record(tmp_path, monkeypatch):
    monkeypatch.setattr(book, "lossbook_revision", lambda: _revision())
    nb = _chapter_nb()
    book._set_run_record(nb, book.run_record(nb, scale="book", revision=_revision()))
    src = _write(tmp_path / "07_demo.ipynb", nb)

    def failing(src, dst, **kwargs):
        shutil.copy(src, dst)
        raise pm.PapermillExecutionError(3, 2, "1/0", "ZeroDivisionError", "division by zero", [])

    monkeypatch.setattr(pm, "execute_notebook", failing)
    with pytest.raises(book.ChapterError):
        book.run_chapter(src, tmp_path / "out.ipynb", scale="book")
    out = json.loads((tmp_path / "out.ipynb").read_text())
    assert book.read_run_record(out) is None
    assert not any(book.PROVENANCE_TAG in c["metadata"].get("tags", []) for c in out["cells"])
    assert out["metadata"]["lossbook"] == {"golden": {"trained": {"atol": 0.05}}}


def test_lossbook_revision_is_this_checkout():
    try:
        head = subprocess.run(["git", "-C", str(book.repo_root()), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout, or no git")
    rev = book.lossbook_revision()
    assert rev["lossbook_commit"] == head and isinstance(rev["dirty"], bool)


def test_check_names_the_stale_chapter_and_the_command_that_reruns_it(tmp_path):
    root = _book(tmp_path)
    nb = _chapter_nb()
    book._set_run_record(nb, book.run_record(nb, scale="book", revision=_revision()))
    path = _write(root / "notebooks" / "02_demo.ipynb", nb)
    assert book.check_run_record(path) is None
    nb["cells"][0]["source"] = "# Retitled\n\nNew prose."  # markdown: still current
    _write(path, nb)
    assert book.check_run_record(path) is None
    nb["cells"][3]["source"] = "print(round(math.pi, 2))"
    _write(path, nb)
    assert book.check_run_record(path) == (
        "notebooks/02_demo.ipynb: code cells changed since its outputs were made (commit abc1234); "
        "rerun: lossbook run 02 --scale book --inplace")


def test_check_without_a_record_or_at_another_scale(tmp_path):
    root = _book(tmp_path)
    card = _write(root / "notebooks" / "report_card.ipynb", _chapter_nb())
    assert book.check_run_record(card) == (
        "notebooks/report_card.ipynb: no run record; rerun: lossbook run report_card --scale book --inplace")
    nb = _chapter_nb()
    book._set_run_record(nb, book.run_record(nb, scale="smoke", revision=_revision()))
    path = _write(root / "notebooks" / "03_demo.ipynb", nb)
    assert book.check_run_record(path) == (
        "notebooks/03_demo.ipynb: outputs were made at scale=smoke, not book; "
        "rerun: lossbook run 03 --scale book --inplace")
    assert book.check_run_record(path, scale="smoke") is None


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("no git")
    root = _book(tmp_path)
    _git(root, "init", "-q")
    return root


def _commit(root, message):
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", message)
    return _git(root, "rev-parse", "HEAD")


def test_backfill_takes_the_commit_that_made_the_outputs(repo, monkeypatch):
    path = repo / "notebooks" / "05_demo.ipynb"
    nb = _chapter_nb()
    nb["metadata"]["papermill"] = {"parameters": {"scale": "book", "seed": 0, "device": "auto"}}
    _write(path, nb)
    made = _commit(repo, "chapter 5 at book scale")
    nb["cells"][0]["source"] = "# Prose edited"
    _write(path, nb)
    _commit(repo, "prose only")
    nb["cells"][2]["source"] = "import math  # a comment, outputs not re-made"
    _write(path, nb)
    code_edit = _commit(repo, "code edited, not re-run")

    rec = book.backfill_run_record(path)
    assert rec["lossbook_commit"] == made and rec["backfilled"] is True and rec["dirty"] is None
    assert rec["code_changed_since"] == [code_edit] and rec["scale"] == "book"
    assert rec["date"] == _git(repo, "log", "-1", "--format=%cs", made)
    assert book.check_run_record(path) is None
    text = "".join(json.loads(path.read_text())["cells"][-1]["source"])
    assert text == (f"*Outputs made at scale=book with lossbook commit `{made[:7]}` on {rec['date']} (recorded "
                    f"afterwards from the git history; the code cells were edited since, in `{code_edit[:7]}`, "
                    "without a re-run).*")
    with pytest.raises(ValueError, match="already has a run record"):
        book.backfill_run_record(path)

    # a code edit not committed yet, outputs untouched: listed as well
    nb["cells"][2]["source"] = "import math as m"
    _write(path, nb)
    rec = book.backfill_run_record(path, force=True)
    assert rec["lossbook_commit"] == made and rec["code_changed_since"] == [code_edit, "working tree"]
    assert f"in `{code_edit[:7]}`, working tree, without a re-run" in "".join(
        json.loads(path.read_text())["cells"][-1]["source"])

    # outputs re-made in the working tree (not committed yet): HEAD, and no code edit since
    nb["cells"][3]["outputs"] = [nbformat.v4.new_output("stream", name="stdout", text="3.1416\n")]
    _write(path, nb)
    rec = book.backfill_run_record(path, force=True)
    assert rec["lossbook_commit"] == code_edit and rec["code_changed_since"] == []
    assert isinstance(rec["dirty"], bool)


def test_provenance_command_checks_and_backfills(repo, monkeypatch, capsys):
    from lossbook import cli

    path = repo / "notebooks" / "05_demo.ipynb"
    nb = _chapter_nb()
    nb["metadata"]["papermill"] = {"parameters": {"scale": "book", "seed": 0, "device": "auto"}}
    _write(path, nb)
    made = _commit(repo, "chapter 5 at book scale")
    monkeypatch.chdir(repo)
    assert cli.main(["provenance"]) == 1
    out = capsys.readouterr().out
    assert "notebooks/05_demo.ipynb: no run record; rerun: lossbook run 05 --scale book --inplace" in out
    assert cli.main(["provenance", "--backfill", "05"]) == 0
    assert f"05_demo: backfilled: outputs from commit {made[:7]}" in capsys.readouterr().out
    assert cli.main(["provenance"]) == 0
    assert "05_demo: current: scale=book" in capsys.readouterr().out
    assert cli.main(["provenance", "--backfill", "05"]) == 0  # a record is left as it is
    assert "has a run record; left as it is" in capsys.readouterr().out


class _MissedWakeSocket:
    """A socket whose event-loop wait never wakes (the lost edge), while a level-triggered check
    (poll(0)) sees the message once it has arrived, after ``arrives_after`` checks."""

    def __init__(self, arrives_after: int):
        self.checks, self.arrives_after, self.waits = 0, arrives_after, 0

    async def poll(self, timeout_ms):
        import asyncio

        if timeout_ms == 0:
            self.checks += 1
            return int(self.checks > self.arrives_after)
        self.waits += 1
        await asyncio.sleep(timeout_ms / 1000)
        return 0


class _Channel:
    def __init__(self, socket):
        self.socket = socket

    async def _recv(self):
        return {"msg_type": "execute_reply"}


def test_sliced_get_msg_reads_a_message_whose_wake_up_was_lost(monkeypatch):
    import asyncio
    from queue import Empty

    monkeypatch.setattr(book, "POLL_SLICE_S", 0.01)
    socket = _MissedWakeSocket(arrives_after=3)
    msg = asyncio.run(book._sliced_get_msg(_Channel(socket), timeout=None))
    assert msg == {"msg_type": "execute_reply"} and socket.waits == 3
    with pytest.raises(Empty):  # nothing arrives: the timeout still holds
        asyncio.run(book._sliced_get_msg(_Channel(_MissedWakeSocket(arrives_after=10**9)), timeout=0.05))


def test_reliable_kernel_channels_patches_only_inside_the_block():
    from jupyter_client.channels import AsyncZMQSocketChannel

    before = AsyncZMQSocketChannel.get_msg
    with book.reliable_kernel_channels():
        assert AsyncZMQSocketChannel.get_msg is book._sliced_get_msg
    assert AsyncZMQSocketChannel.get_msg is before
