"""Run the book's chapters with papermill and gather their claims tables.

Chapters are the notebooks ``notebooks/NN_*.ipynb``; the report card (``notebooks/report_card.ipynb``)
runs after them and reads the claims that each chapter published (see
:func:`lossbook.lab.experiments.claims_table`).

**Run records.** Every run writes, into the executed notebook's metadata, what made its outputs::

    "metadata": {"lossbook": {"run": {
        "code_sha256": "…",          # code_sha256(): the notebook's code cells, normalised
        "scale": "book",
        "lossbook_commit": "…",      # git rev-parse HEAD of lossbook's repository; null without git
        "dirty": false,              # lossbook/ had uncommitted changes; null without git
        "lossbook_version": "0.1.0",
        "date": "YYYY-MM-DD"}}}

(other keys under ``metadata.lossbook``, such as a chapter's ``golden`` tolerances, are kept), and a
last markdown cell tagged ``lossbook-provenance`` that the rendered page shows ("Outputs made at
scale=book with lossbook commit abc1234 on …"), replaced on each run. :func:`check_run_record`
recomputes the hash from the notebook's current code cells: a committed chapter whose code cells
changed after its outputs were made is stale and must be re-run. Markdown cells are not hashed
(prose edits do not make outputs stale), nor is papermill's injected-parameters cell.
:func:`backfill_run_record` writes a record, marked ``"backfilled": true``, for a notebook made
before records existed, from the git history of its outputs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .experiments import (
    BASIC_COLUMNS,
    CLAIMS_KEY,
    INCONCLUSIVE,
    NOT_SUPPORTED,
    PREMISE_ABSENT,
    SUPPORTED,
    claim_columns,
)

__all__ = [
    "PROVENANCE_TAG",
    "SCALES",
    "ChapterError",
    "backfill_run_record",
    "bibliography_anchor",
    "chapters",
    "check_run_record",
    "claims_filter_html",
    "claims_html",
    "clean_metadata",
    "code_sha256",
    "code_sources",
    "collect_claims",
    "lossbook_revision",
    "read_run_record",
    "reliable_kernel_channels",
    "repo_root",
    "rerun_command",
    "resolve_chapters",
    "run_chapter",
    "run_record",
    "verdict_digest",
    "write_run_record",
]

SCALES = ("smoke", "book", "paper")
_CHAPTER = re.compile(r"^[0-9][0-9]_.*\.ipynb$")
REPORT_CARD = "report_card.ipynb"


def repo_root(start: Path | None = None) -> Path:
    """The folder holding ``_toc.yml`` (the book's root), searched upwards from ``start`` or cwd."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "_toc.yml").exists() and (p / "notebooks").is_dir():
            return p
    pkg = Path(__file__).resolve().parents[2]
    if (pkg / "_toc.yml").exists():
        return pkg
    raise FileNotFoundError(
        "lossbook: no book found (a folder with _toc.yml and notebooks/); run from the repository."
    )


def chapters(root: Path | None = None) -> list[Path]:
    """The chapter notebooks in order, then the report card."""
    nb = repo_root(root) / "notebooks"
    found = sorted(p for p in nb.glob("[0-9][0-9]_*.ipynb"))
    card = nb / REPORT_CARD
    return found + ([card] if card.exists() else [])


def resolve_chapters(names: list[str], root: Path | None = None) -> list[Path]:
    """Map ``["01", "01_cross_entropy", "notebooks/01_cross_entropy.ipynb", "report_card"]`` to paths."""
    every = chapters(root)
    if not names:
        return every
    out = []
    for name in names:
        stem = Path(name).stem
        hits = [p for p in every if p.stem == stem or p.stem.startswith(stem + "_")]
        if len(hits) != 1:
            raise ValueError(
                f"lossbook: no single chapter matches {name!r}; chapters are "
                f"{', '.join(p.stem for p in every)}."
            )
        out.append(hits[0])
    return out


class ChapterError(RuntimeError):
    """A chapter failed; the message names the chapter, the cell and the exception."""


@dataclass
class RunResult:
    chapter: str
    output: Path
    seconds: float


def clean_metadata(path: Path) -> None:
    """Drop per-cell timings that papermill writes, so committed notebooks diff cleanly, and hide
    papermill's injected-parameters cell from the rendered book (the tagged cell above it shows the
    defaults; the run's values are in the notebook's metadata)."""
    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        meta = cell.setdefault("metadata", {})
        meta.pop("papermill", None)
        meta.pop("execution", None)
        tags = meta.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            meta["tags"] = [*tags, "remove-cell"]
    pm = nb.get("metadata", {}).get("papermill", {})
    for key in ("start_time", "end_time", "duration", "input_path", "output_path", "version"):
        pm.pop(key, None)
    _write_notebook(path, nb)


def _read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _write_notebook(path: Path, nb: dict) -> None:
    # the committed notebooks' own format (papermill's), so rewriting one changes only what changed
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------------
# Run records: which code and which lossbook made a notebook's outputs
# --------------------------------------------------------------------------------------------------

PROVENANCE_TAG = "lossbook-provenance"
_PROVENANCE_ID = "lossbook-provenance"


def code_sources(nb: dict) -> list[str]:
    """The notebook's code cells as hashed by :func:`code_sha256`, in order: each cell's source with
    line endings made ``\\n``, trailing white space stripped from every line and blank lines stripped
    from both ends. Papermill's injected-parameters cell and empty code cells are left out (neither
    is code the chapter's author wrote), as is every markdown and raw cell."""
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        text = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
        if text:
            out.append(text)
    return out


def code_sha256(nb: dict | Path | str) -> str:
    """sha256 of a notebook's code cells (:func:`code_sources`): the same for any JSON layout of the
    notebook, any markdown edit, and white space at line ends; different after any other edit of a
    code cell, and after splitting, joining, adding, removing or reordering code cells."""
    if not isinstance(nb, dict):
        nb = _read_notebook(Path(nb))
    payload = json.dumps(code_sources(nb), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _git(cwd: Path, *args: str) -> str:
    """``git -C cwd args…``'s stdout, stripped. OSError when git is missing, CalledProcessError when it fails."""
    res = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True, timeout=60)
    return res.stdout.strip()


def lossbook_revision() -> dict:
    """Which lossbook is imported: ``{"lossbook_commit", "dirty", "lossbook_version"}``.

    ``lossbook_commit`` is ``git rev-parse HEAD`` of the repository holding the imported ``lossbook``
    package and ``dirty`` whether ``git status --porcelain -- lossbook`` lists anything there. Both are
    None when that cannot be known (git missing, an installed copy of lossbook outside its repository):
    this never raises, so a run does not fail for want of git."""
    import lossbook

    pkg = Path(lossbook.__file__).resolve().parent
    rev: dict = {"lossbook_commit": None, "dirty": None, "lossbook_version": getattr(lossbook, "__version__", None)}
    try:
        top = Path(_git(pkg, "rev-parse", "--show-toplevel")).resolve()
        if (top / "lossbook").resolve() != pkg:
            return rev  # some other repository (e.g. a copy installed into a virtual environment inside one)
        commit = _git(top, "rev-parse", "HEAD")
        dirty = bool(_git(top, "status", "--porcelain", "--", "lossbook"))
    except (OSError, subprocess.SubprocessError):
        return rev
    rev.update(lossbook_commit=commit, dirty=dirty)
    return rev


def run_record(nb: dict | Path | str, *, scale: str, revision: dict | None = None, date: str | None = None,
               **extra) -> dict:
    """The record of one run of ``nb``: its code hash, ``scale``, lossbook's revision (default:
    :func:`lossbook_revision`), the date (default: today, UTC) and any ``extra`` fields."""
    rev = lossbook_revision() if revision is None else revision
    return {
        "code_sha256": code_sha256(nb),
        "scale": scale,
        "lossbook_commit": rev.get("lossbook_commit"),
        "dirty": rev.get("dirty"),
        "lossbook_version": rev.get("lossbook_version"),
        "date": date or datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        **extra,
    }


def _short(commit: str | None) -> str:
    """A commit's 7-character abbreviation; anything else (``"working tree"``) as it is."""
    if not commit:
        return "unknown"
    return commit[:7] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit


def _provenance_text(record: dict) -> str:
    commit = record.get("lossbook_commit")
    if commit:
        made_with = f"lossbook commit `{_short(commit)}`"
        if record.get("dirty"):
            made_with += " plus uncommitted changes to `lossbook/`"
    else:
        made_with = f"lossbook {record.get('lossbook_version') or '(version unknown)'} (no git commit known)"
    text = f"Outputs made at scale={record.get('scale')} with {made_with} on {record.get('date')}"
    if record.get("backfilled"):
        text += " (recorded afterwards from the git history"
        since = record.get("code_changed_since") or []
        if since:
            text += ("; the code cells were edited since, in "
                     + ", ".join(f"`{_short(c)}`" if _short(c) != c else c for c in since) + ", without a re-run")
        text += ")"
    return f"*{text}.*"


def _set_run_record(nb: dict, record: dict | None) -> None:
    """Put ``record`` under ``metadata.lossbook.run`` and in a last markdown cell tagged
    :data:`PROVENANCE_TAG` (replacing earlier ones); ``None`` removes both."""
    meta = nb.setdefault("metadata", {})
    nb["cells"] = [c for c in nb.get("cells", []) if PROVENANCE_TAG not in c.get("metadata", {}).get("tags", [])]
    if record is None:
        lb = meta.get("lossbook")
        if isinstance(lb, dict):
            lb.pop("run", None)
            if not lb:
                meta.pop("lossbook")
        return
    meta.setdefault("lossbook", {})["run"] = record
    cell = {"cell_type": "markdown"}
    if (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5):  # cell ids exist from nbformat 4.5
        cell["id"] = _PROVENANCE_ID
    cell.update(metadata={"tags": [PROVENANCE_TAG]}, source=[_provenance_text(record)])
    nb["cells"].append(cell)


def write_run_record(path: Path | str, record: dict | None) -> None:
    """Write ``record`` into the notebook at ``path`` (see :func:`_set_run_record`); ``None`` removes it."""
    nb = _read_notebook(Path(path))
    _set_run_record(nb, record)
    _write_notebook(Path(path), nb)


def read_run_record(nb: dict | Path | str) -> dict | None:
    """The notebook's ``metadata.lossbook.run``, or None."""
    if not isinstance(nb, dict):
        nb = _read_notebook(Path(nb))
    return (nb.get("metadata", {}).get("lossbook") or {}).get("run")


def rerun_command(path: Path | str, scale: str = "book") -> str:
    """The command that re-makes the committed outputs of ``path``, e.g.
    ``lossbook run 02 --scale book --inplace``."""
    stem = Path(path).stem
    name = stem[:2] if _CHAPTER.match(Path(path).name) else stem
    return f"lossbook run {name} --scale {scale} --inplace"


def _display_path(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(repo_root(path.parent)))
    except (FileNotFoundError, ValueError):
        return str(path)


def check_run_record(path: Path | str, *, scale: str | None = "book") -> str | None:
    """None when the notebook's outputs were made from its current code cells (and at ``scale``,
    unless None); otherwise a message naming the notebook and the command that re-makes it."""
    path = Path(path)
    nb = _read_notebook(path)
    record = read_run_record(nb)
    where, rerun = _display_path(path), rerun_command(path, scale or "book")
    if not record or "code_sha256" not in record:
        return f"{where}: no run record; rerun: {rerun}"
    if scale is not None and record.get("scale") != scale:
        return f"{where}: outputs were made at scale={record.get('scale')}, not {scale}; rerun: {rerun}"
    if record["code_sha256"] != code_sha256(nb):
        commit = record.get("lossbook_commit")
        made = f"commit {_short(commit)}" if commit else f"lossbook {record.get('lossbook_version')}"
        return f"{where}: code cells changed since its outputs were made ({made}); rerun: {rerun}"
    return None


def _outputs_key(nb: dict) -> str:
    """What a run makes: the code cells' outputs, the widget state and the parameters it ran with."""
    return json.dumps([[c.get("outputs") for c in nb.get("cells", []) if c.get("cell_type") == "code"],
                       nb.get("metadata", {}).get("widgets"),
                       nb.get("metadata", {}).get("papermill", {}).get("parameters")], sort_keys=True)


def _notebook_at(top: Path, commit: str, rel: str) -> dict | None:
    try:
        return json.loads(_git(top, "show", f"{commit}:{rel}"))
    except subprocess.CalledProcessError:
        return None  # the file did not exist at that commit


def backfill_run_record(path: Path | str, *, force: bool = False) -> dict:
    """Write a run record for a notebook whose outputs were made before run records existed, without
    re-running it, and return it. It refuses (ValueError) a notebook that has a record, unless ``force``.

    The record is the one :func:`run_record` would write, with ``"backfilled": true``, these fields
    taken from git:

    * ``lossbook_commit``: the commit that last changed the notebook's **outputs** (the code cells'
      outputs, the widget state or the run's parameters), found by walking ``git log`` of the file and
      comparing each version with its parent's, so later source-only commits are passed over; its
      committer date is ``date`` and ``dirty`` is None (not known). If the working-tree file's outputs
      differ from ``HEAD``'s, they were made since the last commit: ``HEAD``, ``git status`` of
      ``lossbook/`` now, and the file's modification date.
    * ``code_changed_since``: the commits after that one (and ``"working tree"`` for uncommitted edits)
      that changed the code cells without changing the outputs. ``code_sha256`` is the hash of the
      **current** code cells, so a backfilled notebook passes :func:`check_run_record`; this list says
      honestly where that hash is an assertion (e.g. a refactor that should not change any output)
      rather than the code that ran.
    """
    path = Path(path).resolve()
    nb = _read_notebook(path)
    if read_run_record(nb) and not force:
        raise ValueError(f"{_display_path(path)} already has a run record; pass force=True to replace it.")
    top = Path(_git(path.parent, "rev-parse", "--show-toplevel")).resolve()
    rel = path.relative_to(top).as_posix()
    scale = nb.get("metadata", {}).get("papermill", {}).get("parameters", {}).get("scale")
    version = lossbook_revision().get("lossbook_version")

    head = _notebook_at(top, "HEAD", rel)
    since: list[str] = []  # newest first while walking the log
    if head is None or _outputs_key(head) != _outputs_key(nb):
        # outputs made in the working tree, after the last commit
        commit = _git(top, "rev-parse", "HEAD")
        dirty = bool(_git(top, "status", "--porcelain", "--", "lossbook"))
        date = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).date().isoformat()
    else:
        if code_sha256(head) != code_sha256(nb):
            since.append("working tree")
        commit = date = dirty = None
        for line in _git(top, "log", "--format=%H %cs", "--", rel).splitlines():
            c, day = line.split()
            this, parent = _notebook_at(top, c, rel), _notebook_at(top, f"{c}^", rel)
            if parent is None or _outputs_key(this) != _outputs_key(parent):
                commit, date = c, day
                break
            if code_sha256(this) != code_sha256(parent):
                since.append(c)
        if commit is None:
            raise ValueError(f"{_display_path(path)}: no commit in its git history made its outputs.")
    since.reverse()  # oldest first
    record = run_record(nb, scale=scale, date=date,
                        revision={"lossbook_commit": commit, "dirty": dirty, "lossbook_version": version},
                        backfilled=True, code_changed_since=since)
    _set_run_record(nb, record)
    _write_notebook(path, nb)
    return record


#: Seconds a kernel-channel wait sleeps in one go before it checks the socket again (see
#: :func:`reliable_kernel_channels`).
POLL_SLICE_S = 1.0


async def _sliced_get_msg(self, timeout: float | None = None) -> dict:
    """``jupyter_client``'s asyncio ``get_msg``, waiting in slices of :data:`POLL_SLICE_S` with a
    level-triggered check of the socket (``poll(0)``) before each slice, so a message whose
    wake-up the event loop missed is read within a slice instead of never."""
    from queue import Empty

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if await self.socket.poll(0):
            return await self._recv()
        left = POLL_SLICE_S if deadline is None else min(POLL_SLICE_S, deadline - time.monotonic())
        if left <= 0:
            raise Empty
        if await self.socket.poll(int(left * 1000)):
            return await self._recv()


class reliable_kernel_channels:  # noqa: N801 (a context manager used like a function)
    """Within the ``with`` block, papermill's kernel client reads its channels with
    :func:`_sliced_get_msg`.

    jupyter_client's asyncio channels wait for a message on the socket's edge-triggered file
    descriptor; on this project's busy 2-core machine a chapter run now and then hung for good on a
    cell the kernel had finished, kernel and client both idle (seen with ipykernel 7.4 and 6.31):
    the wake-up was lost while the message waited in the socket. Checking the socket itself once a
    second ends such a wait; messages that do wake the loop are read as before.
    """

    def __enter__(self):
        from jupyter_client.channels import AsyncZMQSocketChannel

        self._saved = AsyncZMQSocketChannel.get_msg
        AsyncZMQSocketChannel.get_msg = _sliced_get_msg
        return self

    def __exit__(self, *exc) -> None:
        from jupyter_client.channels import AsyncZMQSocketChannel

        AsyncZMQSocketChannel.get_msg = self._saved


def run_chapter(src: Path, dst: Path, *, scale: str = "smoke", seed: int = 0, device: str = "auto",
                extra: dict | None = None, timeout: int = 600) -> RunResult:
    """Execute one chapter with papermill into ``dst`` and return how long it took.

    Nothing is dropped silently. A chapter (``NN_*.ipynb``) must declare ``scale``, ``seed`` and
    ``device`` in its parameters cell; another notebook (the report card) gets those of them it
    declares. Each parameter in ``extra`` must be declared by the notebook. Otherwise ValueError,
    naming the declared parameters (papermill would inject a variable that the notebook never
    reads, and the run would quietly use the notebook's defaults). The kernel runs in ``dst``'s folder,
    so the report card (whose ``chapters_dir`` defaults to ``"."``) reads the chapters executed
    beside it.

    The executed notebook gets its run record (:func:`run_record`: code hash, scale, lossbook's commit
    taken before the run, date) and the provenance cell that its page shows; a failed run's notebook
    gets neither.
    """
    import papermill as pm

    if scale not in SCALES:
        raise ValueError(f"lossbook run: scale must be one of {SCALES}; got {scale!r}.")
    standard = {"scale": scale, "seed": seed, "device": device}
    extra = dict(extra or {})
    repeated = sorted(set(extra) & set(standard))
    if repeated:
        raise ValueError(f"lossbook run: pass {', '.join(repeated)} as keyword argument(s) of run_chapter, "
                         "not in extra.")
    declared = pm.inspect_notebook(str(src))
    required = set(extra) | (set(standard) if _CHAPTER.match(Path(src).name) else set())
    undeclared = sorted(required - set(declared))
    if undeclared:
        raise ValueError(
            f"lossbook run: chapter {Path(src).stem} does not declare the parameter(s) {undeclared}; its "
            f"parameters cell declares {sorted(declared)}. Check the spelling, or add the parameter to "
            "the cell tagged 'parameters'."
        )
    params = {**{k: v for k, v in standard.items() if k in declared}, **extra}
    os.environ.setdefault("LOSSBOOK_PROGRESS", "0")
    dst.parent.mkdir(parents=True, exist_ok=True)
    revision = lossbook_revision()  # the lossbook the kernel will import, taken before it runs
    t0 = time.perf_counter()
    try:
        with reliable_kernel_channels():
            pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3",
                                progress_bar=False, cwd=str(dst.parent), execution_timeout=timeout)
    except pm.PapermillExecutionError as exc:
        try:  # the source's record, copied along, does not describe these outputs
            write_run_record(dst, None)
        except (OSError, ValueError):
            pass
        raise ChapterError(
            f"chapter {src.stem} failed in cell [{exc.exec_count}] with {exc.ename}: {exc.evalue}\n"
            f"the partly executed notebook is {dst}"
        ) from None
    clean_metadata(dst)
    write_run_record(dst, run_record(dst, scale=scale, revision=revision))
    return RunResult(src.stem, dst, time.perf_counter() - t0)


def collect_claims(folder: Path | str) -> pd.DataFrame:
    """Every claims table published by the executed chapters in ``folder``, one row per claim.

    The columns are ``chapter`` and the basic claims columns (``paper, claim, setting, measured,
    verdict, rule``); the claims protocol's columns (``reading``, ``paper_setting``, ``premise``,
    ``control``, ``stability``, ``discussion``) join them, in that protocol's order, when some row
    has them (an empty string for a row without)."""
    rows = []
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb.get("cells", []):
            for out in cell.get("outputs", []):
                payload = out.get("metadata", {}).get(CLAIMS_KEY)
                if payload:
                    for row in payload["rows"]:
                        rows.append({"chapter": payload["chapter"], **row})
    columns = ["chapter", *claim_columns(rows)]
    df = pd.DataFrame(rows, columns=columns)
    extra = [c for c in columns[1:] if c not in BASIC_COLUMNS]
    if extra:
        df[extra] = df[extra].fillna("")
    return df


_VERDICT_COLORS = {SUPPORTED: "#d9f0d3", NOT_SUPPORTED: "#f4cccc", INCONCLUSIVE: "#fff2cc", PREMISE_ABSENT: "#dde6f2"}


def bibliography_anchor(key: str) -> str:
    """The HTML id of ``key``'s entry on the book's bibliography page: the book sets
    sphinxcontrib-bibtex's ``bibtex_cite_id`` to ``"cite-{key}"``, which docutils normalises."""
    from docutils.nodes import make_id

    return make_id(f"cite-{key}")


def claims_html(claims: pd.DataFrame, *, bibliography: str | None = "../bibliography.html") -> str:
    """The report card's rendering: one block per claim (chapter, paper, verdict badge, the quoted
    claim, then setting, measurement and rule), readable in the book's narrow column.

    A row with the claims protocol's fields also shows its stability beside the badge, the reading
    under the claim, the paper's setting, the premise and the control before the measurement, and
    the discussion last; each line only where the row has it, so older rows render as before.
    The paper's key links to its entry in ``bibliography`` (a page URL; ``None``: no link). Each
    block carries ``data-chapter`` and ``data-verdict`` for :func:`claims_filter_html`."""
    from html import escape

    def text(row: dict, name: str) -> str:
        value = row.get(name)
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)

    blocks = []
    for row in claims.to_dict("records"):
        color = _VERDICT_COLORS.get(row["verdict"], "#eeeeee")
        stability = text(row, "stability")
        badge_note = f" · <small>{escape(stability)}</small>" if stability else ""
        reading = text(row, "reading")
        lines = [f"<b>{label}:</b> {escape(text(row, name))}" for name, label in
                 (("paper_setting", "Paper's setting"), ("setting", "Setting"), ("premise", "Premise"),
                  ("control", "Control"), ("measured", "Measured"), ("rule", "Rule"))
                 if name in BASIC_COLUMNS or text(row, name)]
        discussion = text(row, "discussion")
        key = f"<code>{escape(row['paper'])}</code>"
        if bibliography:
            key = f'<a href="{escape(bibliography)}#{bibliography_anchor(row["paper"])}">{key}</a>'
        blocks.append(
            f'<div class="lossbook-claim" data-chapter="{escape(row["chapter"])}" data-verdict="{escape(row["verdict"])}" '
            'style="border-left:4px solid #888;padding:0.3em 0.8em;margin:0.8em 0">'
            f"<p><b>{escape(row['chapter'])}</b> · {key} · "
            f'<span style="background:{color};padding:0.1em 0.5em;border-radius:0.3em">{escape(row["verdict"])}</span>'
            f"{badge_note}</p>"
            f"<p><i>“{escape(row['claim'])}”</i></p>"
            + (f"<p><b>Read as:</b> {escape(reading)}</p>" if reading else "")
            + f"<p>{'<br>'.join(lines)}</p>"
            + (f"<p><b>Discussion:</b> {escape(discussion)}</p>" if discussion else "")
            + "</div>"
        )
    return "\n".join(blocks)


def claims_filter_html(claims: pd.DataFrame) -> str:
    """Two drop-down filters (chapter, verdict) for the blocks of :func:`claims_html` on the same
    page, with a count of the claims shown (first counted once the page has loaded, since the
    blocks usually follow the filter). Without JavaScript the controls stay hidden and every
    claim shows: the page degrades to the plain list."""
    from html import escape

    def options(name: str, values) -> str:
        items = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
        return (f'<label style="margin-right:1em">{name} <select data-filter="{name}">'
                f'<option value="">all</option>{items}</select></label>')

    verdicts = [v for v in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, PREMISE_ABSENT) if v in set(claims["verdict"])]
    controls = options("chapter", sorted(set(claims["chapter"]))) + options("verdict", verdicts)
    script = (
        "<script>(function(){var box=document.currentScript.previousElementSibling;box.style.display='block';"
        "var sel=box.querySelectorAll('select'),out=box.querySelector('.lossbook-count');"
        "function apply(){var want={};sel.forEach(function(s){want[s.dataset.filter]=s.value;});var n=0;"
        "document.querySelectorAll('.lossbook-claim').forEach(function(b){var ok=(!want.chapter||"
        "b.dataset.chapter===want.chapter)&&(!want.verdict||b.dataset.verdict===want.verdict);"
        "b.style.display=ok?'':'none';if(ok)n++;});out.textContent=n+' claim(s) shown';}"
        "sel.forEach(function(s){s.addEventListener('change',apply);});"
        "if(document.readyState==='loading'){document.addEventListener('DOMContentLoaded',apply);}else{apply();}"
        "})();</script>")
    return (f'<div class="lossbook-filter" style="display:none;margin:0.5em 0">{controls}'
            f'<span class="lossbook-count"></span></div>{script}')


def verdict_digest(claims: pd.DataFrame) -> pd.DataFrame:
    """What held where, book-wide: one row per chapter, one column per verdict, each cell listing
    the paper keys with that verdict (a key repeats when several of its readings got it), and the
    number of claims."""
    order = [v for v in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, PREMISE_ABSENT) if v in set(claims["verdict"])]
    rows = []
    for chapter, part in claims.groupby("chapter", sort=True):
        row = {"chapter": chapter, "claims": len(part)}
        for verdict in order:
            keys = part.loc[part["verdict"] == verdict, "paper"].tolist()
            counts = pd.Series(keys).value_counts(sort=False) if keys else pd.Series(dtype=int)
            row[verdict] = ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in counts.items())
        rows.append(row)
    return pd.DataFrame(rows, columns=["chapter", "claims", *order]).set_index("chapter")

