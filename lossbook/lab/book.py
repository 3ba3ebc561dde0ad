"""Run the book's chapters with papermill and gather their claims tables.

Chapters are the notebooks ``notebooks/NN_*.ipynb``; the report card (``notebooks/report_card.ipynb``)
runs after them and reads the claims that each chapter published (see
:func:`lossbook.lab.experiments.claims_table`).
"""

from __future__ import annotations

import json
import math
import os
import re
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

__all__ = ["SCALES", "repo_root", "chapters", "resolve_chapters", "run_chapter", "ChapterError",
           "collect_claims", "claims_html", "clean_metadata"]

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
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


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
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3",
                            progress_bar=False, cwd=str(dst.parent), execution_timeout=timeout)
    except pm.PapermillExecutionError as exc:
        raise ChapterError(
            f"chapter {src.stem} failed in cell [{exc.exec_count}] with {exc.ename}: {exc.evalue}\n"
            f"the partly executed notebook is {dst}"
        ) from None
    clean_metadata(dst)
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


def claims_html(claims: pd.DataFrame) -> str:
    """The report card's rendering: one block per claim (chapter, paper, verdict badge, the quoted
    claim, then setting, measurement and rule), readable in the book's narrow column.

    A row with the claims protocol's fields also shows its stability beside the badge, the reading
    under the claim, the paper's setting, the premise and the control before the measurement, and
    the discussion last; each line only where the row has it, so older rows render as before."""
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
        blocks.append(
            '<div class="lossbook-claim" style="border-left:4px solid #888;padding:0.3em 0.8em;margin:0.8em 0">'
            f"<p><b>{escape(row['chapter'])}</b> · <code>{escape(row['paper'])}</code> · "
            f'<span style="background:{color};padding:0.1em 0.5em;border-radius:0.3em">{escape(row["verdict"])}</span>'
            f"{badge_note}</p>"
            f"<p><i>“{escape(row['claim'])}”</i></p>"
            + (f"<p><b>Read as:</b> {escape(reading)}</p>" if reading else "")
            + f"<p>{'<br>'.join(lines)}</p>"
            + (f"<p><b>Discussion:</b> {escape(discussion)}</p>" if discussion else "")
            + "</div>"
        )
    return "\n".join(blocks)
