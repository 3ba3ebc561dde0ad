"""Compare a chapter's executed outputs with its committed golden run, on any CPU.

The golden runs in ``tests/golden/`` are smoke-scale executions of the chapters. nbval re-executes
them and compares each code cell's text outputs with the committed ones. A different CPU (AVX2,
AVX-512, AMX, ARM) computes matrix products with other kernels: the last bits differ, and after a
few hundred SGD steps so does the third digit of an accuracy. So each output is compared by its
**class**, set on the chapter's code cell by a tag:

====================  ======================================================================
tag                   comparison
====================  ======================================================================
*(none)*              **exact**: the text must be identical (closed forms, data sizes,
                      registry tables, anything that does not depend on floating-point kernels).
``golden-float``      numbers within the chapter's ``float`` tolerance (default
                      ``atol=1e-9, rtol=1e-6`` and one unit in the last printed digit):
                      float64 identities, residuals near zero, anything computed in float32
                      but not trained (a printed digit can round the other way).
``golden-trained``    numbers within the chapter's ``trained`` tolerance (default
                      ``atol=0.03, rtol=0.05``): metrics of trained models.
``golden-timing``     the words must match; the numbers are not compared (timings).
``golden-shape``      only the shape: the same outputs with the same number of lines. For
                      discrete summaries of trained numbers that flip at ties from one CPU to
                      another: a ranking, a grid value chosen on validation, a share of seeds.
====================  ======================================================================

``golden-<class>:<output>`` sets the class of one output of the cell only (``stdout``,
``stderr``, ``text/plain``, ``text/html``), e.g. a cell that prints the learning rates it chose
(``golden-shape:stdout``) and shows a table of trained metrics (``golden-trained``).

In the tolerant classes the words must be identical (white space is folded, since a wider number
realigns a printed table), every number must be present, and **integers are compared exactly**
(counts, sizes, seeds); only numbers with a decimal point or an exponent get the tolerance.

A chapter states its tolerances in its notebook metadata, ``{"lossbook": {"golden": {"trained":
{"atol": ..., "rtol": ...}}}}``; whatever it leaves out takes :data:`DEFAULT_TOLERANCES`.

**Claims tables** (outputs carrying :data:`lossbook.lab.experiments.CLAIMS_KEY`) are compared row
by row from their metadata, in the cell's class, and always with the **same verdict** unless the
golden row's ``stability`` says ``unstable`` (the jackknife of the claims protocol). A row's
``discussion`` is not compared: it is prose generated from the row's other fields, which are, and
it rounds trained numbers into counts (the seeds that would settle a claim) that integers' exact
comparison would flag on another CPU.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .experiments import CLAIMS_KEY

__all__ = ["Tolerance", "DEFAULT_TOLERANCES", "cell_class", "chapter_tolerances", "compare_text",
           "compare_claims", "compare_value", "CLASSES", "flatten_outputs", "compare_cell", "compare_notebooks", "CLAIMS_MIME"]

# A pseudo MIME type under which a claims table's rows are compared (see flatten_outputs).
CLAIMS_MIME = "application/x-lossbook-claims+json"

CLASSES = ("exact", "float", "trained", "timing", "shape")


@dataclass(frozen=True)
class Tolerance:
    """``|test − golden| ≤ atol + rtol·|golden| + ulp·(unit of golden's last printed digit)`` for
    numbers with a decimal point or exponent; ``ignore_numbers`` accepts any number in place of any
    other (timings); ``shape_only`` compares only the number of lines."""

    atol: float = 0.0
    rtol: float = 0.0
    ulp: float = 0.0
    ignore_numbers: bool = False
    shape_only: bool = False

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0 and self.ulp >= 0):
            raise ValueError(f"Tolerance: atol, rtol and ulp must be ≥ 0; got atol={self.atol}, rtol={self.rtol}, "
                             f"ulp={self.ulp}.")

    @property
    def exact(self) -> bool:
        return self.atol == 0 and self.rtol == 0 and self.ulp == 0 and not (self.ignore_numbers or self.shape_only)


DEFAULT_TOLERANCES = {
    "exact": Tolerance(),
    "float": Tolerance(atol=1e-9, rtol=1e-6, ulp=1.0),
    "trained": Tolerance(atol=0.03, rtol=0.05, ulp=1.0),
    "timing": Tolerance(ignore_numbers=True),
    "shape": Tolerance(shape_only=True),
}


def chapter_tolerances(nb_metadata: dict) -> dict[str, Tolerance]:
    """The four classes' tolerances for a notebook: its ``lossbook.golden`` metadata over the defaults."""
    stated = (nb_metadata.get("lossbook") or {}).get("golden") or {}
    unknown = set(stated) - set(DEFAULT_TOLERANCES)
    if unknown:
        raise ValueError(f"golden tolerances: unknown classes {sorted(unknown)}; the classes are "
                         f"{sorted(DEFAULT_TOLERANCES)}.")
    return {name: Tolerance(**{**vars(default), **stated.get(name, {})}) for name, default in DEFAULT_TOLERANCES.items()}


def cell_class(tags) -> dict[str, str]:
    """The comparison classes of a code cell from its tags: ``{"*": class of the cell, output: class}``
    (``exact`` where no ``golden-*`` tag says otherwise)."""
    classes: dict[str, str] = {}
    for tag in tags or ():
        if not tag.startswith("golden-"):
            continue
        kind, _, output = tag[len("golden-"):].partition(":")
        if kind not in CLASSES:
            raise ValueError(f"golden: unknown tag {tag!r}; the classes are {', '.join(CLASSES)} "
                             f"(tag golden-<class> or golden-<class>:<output>).")
        key = output or "*"
        if key in classes and classes[key] != kind:
            raise ValueError(f"golden: a cell has two classes for {key!r}: {classes[key]} and {kind}; keep one.")
        classes[key] = kind
    classes.setdefault("*", "exact")
    return classes


# A number: optional sign (ASCII or U+2212), digits with an optional fraction, an optional exponent;
# or nan/inf. Not preceded by a letter, digit or '.', so names like "x2" or "NC1" stay words.
_NUMBER = re.compile(
    r"(?<![\w.])[-+\u2212]?(?:(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf)(?![\w.])",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")


def _split(text: str) -> tuple[list[str], list[str]]:
    words, numbers, last = [], [], 0
    for m in _NUMBER.finditer(text):
        words.append(_SPACE.sub(" ", text[last:m.start()]).strip())
        numbers.append(m.group())
        last = m.end()
    words.append(_SPACE.sub(" ", text[last:]).strip())
    return words, numbers


def _value(token: str) -> float:
    return float(token.replace("\u2212", "-"))


def _is_integer(token: str) -> bool:
    return not any(ch in token for ch in ".eE") and token.lower().lstrip("+-\u2212") not in ("nan", "inf")


def _last_digit_unit(token: str) -> float:
    """The value of one unit in the last printed digit: 1e-4 for "0.3015", 1e-16 for "1.8e-15"."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _number_close(ref: str, test: str, tol: Tolerance) -> bool:
    if tol.ignore_numbers or ref == test:
        return True
    if _is_integer(ref) or _is_integer(test):
        return _is_integer(ref) and _is_integer(test) and _value(ref) == _value(test)
    a, b = _value(ref), _value(test)
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return abs(b - a) <= tol.atol + tol.rtol * abs(a) + tol.ulp * _last_digit_unit(ref) * (1 + 1e-9)


def _context(text: str, token_index: int) -> str:
    m = list(_NUMBER.finditer(text))[token_index]
    return text[max(0, m.start() - 60): m.end() + 20].replace("\n", "⏎")


def compare_text(ref: str, test: str, tol: Tolerance) -> str | None:
    """``None`` when ``test`` matches the golden ``ref`` under ``tol``, else what differs first."""
    if ref == test:
        return None
    if tol.exact:
        return "the text differs (this output is compared exactly)"
    if tol.shape_only:
        n_ref, n_test = ref.count("\n"), test.count("\n")
        return None if n_ref == n_test else f"{n_test + 1} lines now, {n_ref + 1} in the golden run"
    ref_words, ref_numbers = _split(ref)
    test_words, test_numbers = _split(test)
    if ref_words != test_words or len(ref_numbers) != len(test_numbers):
        for i, (a, b) in enumerate(zip(ref_words, test_words)):
            if a != b:
                return f"the words differ: golden {a[:80]!r} vs now {b[:80]!r}"
        return f"the text has {len(test_numbers)} numbers now, {len(ref_numbers)} in the golden run"
    for i, (a, b) in enumerate(zip(ref_numbers, test_numbers)):
        if not _number_close(a, b, tol):
            how = "integers must match" if _is_integer(a) or _is_integer(b) else \
                f"allowed |Δ| ≤ {tol.atol:g} + {tol.rtol:g}·|golden| + {tol.ulp:g} unit(s) of the last digit"
            return f"number {i + 1}: golden {a} vs now {b} ({how}) in …{_context(ref, i)}…"
    return None


def compare_claims(ref_rows: list[dict], test_rows: list[dict], tol: Tolerance) -> str | None:
    """Claims-table rows compared field by field under ``tol``; the verdict must match unless the
    golden row's ``stability`` is ``unstable``; the generated ``discussion`` is not compared."""
    if len(ref_rows) != len(test_rows):
        return f"{len(test_rows)} claims now, {len(ref_rows)} in the golden run"
    for i, (ref, test) in enumerate(zip(ref_rows, test_rows)):
        if set(ref) != set(test):
            return f"claim {i + 1}: fields {sorted(set(ref) ^ set(test))} differ"
        unstable = "unstable" in str(ref.get("stability", "")).lower()
        for key in ref:
            a, b = str(ref[key]), str(test[key])
            if key == "verdict":
                if a != b and not unstable:
                    return f"claim {i + 1} ({ref.get('paper')}): verdict {a!r} in the golden run, {b!r} now"
                continue
            if (key == "stability" and unstable) or key == "discussion":
                continue
            diff = compare_text(a, b, tol)
            if diff:
                return f"claim {i + 1} ({ref.get('paper')}), field {key!r}: {diff}"
    return None


def compare_value(mime: str, ref, test, tol: Tolerance) -> str | None:
    """Compare one output value of MIME type ``mime`` (text, or a claims table's JSON rows)."""
    if mime == CLAIMS_MIME:
        return compare_claims(json.loads(ref), json.loads(test), tol)
    if isinstance(ref, str) and isinstance(test, str):
        return compare_text(ref, test, tol)
    return None if ref == test else "the values differ"


# What nbval leaves out of a comparison (random ids, images, prompt numbers).
SKIP = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
        "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")


def flatten_outputs(outputs, *, sanitize: Callable[[str], str] | None = None, skip=SKIP) -> dict[str, list]:
    """A cell's outputs as ``{MIME type (or stream name): [values in order]}``, as nbval compares
    them, except that a claims table counts as its rows (:data:`CLAIMS_MIME`), not its rendering.
    Streams of one name are joined, as nbval does."""
    flat: dict[str, list] = {}
    for out in outputs:
        if out.get("output_type") == "stream":
            name = out.get("name", "stdout")
            text = "".join(out.get("text", ""))
            if name in flat:
                flat[name][-1] += text
            else:
                flat[name] = [text]
            continue
        claims = (out.get("metadata") or {}).get(CLAIMS_KEY)
        if claims:
            flat.setdefault(CLAIMS_MIME, []).append(json.dumps(claims["rows"]))
            continue
        for key, value in out.items():
            if key in skip:
                continue
            for mime, v in (value.items() if key == "data" else [(key, value)]):
                if mime not in skip:
                    v = "".join(v) if isinstance(v, list) else v
                    flat.setdefault(mime, []).append(v)
    if sanitize is not None:
        flat = {k: [sanitize(v) if k != CLAIMS_MIME else v for v in vs] for k, vs in flat.items()}
    return flat


def compare_cell(ref_outputs, test_outputs, *, tags=(), nb_metadata=None, sanitize=None) -> str | None:
    """``None`` when a code cell's new outputs match its golden outputs under the cell's class and
    the chapter's tolerances; else what differs first."""
    classes = cell_class(tags)
    tolerances = chapter_tolerances(nb_metadata or {})
    was = flatten_outputs(ref_outputs, sanitize=sanitize)
    now = flatten_outputs(test_outputs, sanitize=sanitize)
    if set(now) != set(was):
        return f"output types differ: golden {sorted(was)}, now {sorted(now)}"
    for mime, ref_values in was.items():
        if len(ref_values) != len(now[mime]):
            return f"{mime}: {len(now[mime])} outputs now, {len(ref_values)} in the golden run"
        kind = classes.get(mime, classes["*"])
        for a, b in zip(ref_values, now[mime]):
            diff = compare_value(mime, a, b, tolerances[kind])
            if diff:
                return f"{mime}, compared as {kind!r}: {diff}"
    return None


def compare_notebooks(golden_path: Path | str, run_path: Path | str, *, sanitize=None) -> list[str]:
    """Every code cell of an executed notebook compared with the golden run of the same chapter;
    one line per differing cell (an empty list when they match). Cells tagged
    ``nbval-ignore-output`` or ``nbval-skip`` are passed over, as nbval does."""
    ref_nb, run_nb = (json.loads(Path(p).read_text()) for p in (golden_path, run_path))
    ref_cells = [c for c in ref_nb["cells"] if c["cell_type"] == "code"]
    run_cells = [c for c in run_nb["cells"] if c["cell_type"] == "code"]
    if len(ref_cells) != len(run_cells):
        return [f"{len(run_cells)} code cells now, {len(ref_cells)} in the golden run"]
    lines = []
    for i, (ref, run) in enumerate(zip(ref_cells, run_cells)):
        tags = ref.get("metadata", {}).get("tags", [])
        if {"nbval-ignore-output", "nbval-skip"} & set(tags):
            continue
        diff = compare_cell(ref.get("outputs", []), run.get("outputs", []), tags=tags,
                            nb_metadata=ref_nb.get("metadata"), sanitize=sanitize)
        if diff:
            lines.append(f"cell {i}: {diff}")
    return lines


def _sanitizer(cfg: Path | None):
    """nbval's ``--nbval-sanitize-with`` file as a function (regex → replacement, in order)."""
    if cfg is None or not Path(cfg).exists():
        return None
    pairs, regex = [], None
    for line in Path(cfg).read_text().splitlines():
        if line.startswith("regex:"):
            regex = line[len("regex:"):].strip()
        elif line.startswith("replace:") and regex is not None:
            pairs.append((re.compile(regex), line[len("replace:"):].strip()))
            regex = None
    return lambda s: _apply(pairs, s)


def _apply(pairs, s):
    for regex, replace in pairs:
        s = regex.sub(replace, s)
    return s


def main(argv=None) -> int:
    """``python -m lossbook.lab.golden GOLDEN_DIR RUN_DIR [SANITIZE_CFG]``: compare every executed
    chapter in RUN_DIR with the golden run of the same name, as the test suite does; exit 1 on any
    difference."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    golden_dir, run_dir = Path(args[0]), Path(args[1])
    sanitize = _sanitizer(Path(args[2]) if len(args) == 3 else golden_dir.parent / "nbval_sanitize.cfg")
    bad = 0
    for run in sorted(run_dir.glob("*.ipynb")):
        ref = golden_dir / run.name
        if not ref.exists():
            continue
        lines = compare_notebooks(ref, run, sanitize=sanitize)
        print(f"{run.stem}: {'matches' if not lines else f'{len(lines)} cell(s) differ'}")
        for line in lines:
            print("   ", line)
        bad += bool(lines)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
