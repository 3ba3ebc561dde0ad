"""Experiment grids and claim verdicts.

:func:`run_grid` runs a function over the Cartesian product of settings × seeds and returns a tidy
DataFrame. :func:`summarize` gives mean, spread and a t confidence interval per setting. The
verdict rules turn measured numbers into one of three verdicts, by a rule that is printed beside
the verdict, and :func:`claim` makes the row of a chapter's claims table.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .train import progress_enabled

__all__ = [
    "run_grid",
    "summarize",
    "by_seed",
    "Verdict",
    "SUPPORTED",
    "NOT_SUPPORTED",
    "INCONCLUSIVE",
    "verdict_greater",
    "verdict_equivalent",
    "verdict_all",
    "verdict_any",
    "verdict_every",
    "claim",
    "claims_table",
    "CLAIMS_KEY",
]

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported at this scale"
INCONCLUSIVE = "inconclusive"
#: The output-metadata key under which a chapter publishes its claims table for the report card.
#: (Output metadata, not a MIME type of its own: the book's renderer warns on unknown MIME types.)
CLAIMS_KEY = "lossbook_claims"


def run_grid(
    fn: Callable[..., dict | list[dict]],
    *,
    seeds: Iterable[int],
    progress: bool | None = None,
    desc: str = "grid",
    **axes: Sequence[Any],
) -> pd.DataFrame:
    """Call ``fn(seed=s, **setting)`` for every setting in the product of ``axes`` and every seed.

    ``fn`` returns a dict of measurements (one row) or a list of dicts (several rows, e.g. a
    curve). The result has one column per axis, ``seed``, and the measured columns.
    """
    from tqdm.auto import tqdm

    names = list(axes)
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"run_grid: axis {name!r} must be a sequence of values; got {values!r}.")
    settings = [dict(zip(names, combo)) for combo in itertools.product(*(list(axes[n]) for n in names))]
    seeds = list(seeds)
    if not seeds:
        raise ValueError("run_grid: seeds must not be empty.")
    rows: list[dict] = []
    jobs = [(s, seed) for s in settings for seed in seeds]
    for setting, seed in tqdm(jobs, desc=desc, disable=not progress_enabled(progress), leave=False):
        out = fn(seed=seed, **setting)
        for row in out if isinstance(out, list) else [out]:
            rows.append({**setting, "seed": seed, **row})
    return pd.DataFrame(rows)


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def summarize(df: pd.DataFrame, by: str | list[str], metric: str, *, confidence: float = 0.95) -> pd.DataFrame:
    """Mean, standard deviation, n and a t confidence interval of ``metric`` per group."""
    rows = []
    for key, group in df.groupby(by, sort=False):
        v = group[metric].to_numpy(dtype=float)
        lo, hi = _t_interval(v, confidence)
        keys = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip([by] if isinstance(by, str) else by, keys)), "mean": v.mean(),
                     "std": v.std(ddof=1) if len(v) > 1 else np.nan, "n": len(v), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def by_seed(df: pd.DataFrame, metric: str | list[str], **where) -> np.ndarray:
    """The column ``metric`` of the rows of a :func:`run_grid` table that match every ``column=value``
    in ``where``, ordered by seed: one value per seed, ready to pair with another setting's
    (``verdict_greater(by_seed(runs, "acc", loss="A"), by_seed(runs, "acc", loss="B"))``). A list
    of metrics gives an array of shape (seeds, metrics).

    Raises ``ValueError`` when a column is missing, nothing matches, or a seed appears twice (the
    selection did not pin down one setting).
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    missing = [c for c in (*metrics, "seed", *where) if c not in df.columns]
    if missing:
        raise ValueError(f"by_seed: no column {missing} in the table; its columns are {list(df.columns)}.")
    mask = np.ones(len(df), dtype=bool)
    for column, value in where.items():
        mask &= (df[column] == value).to_numpy()
    sel = df.loc[mask].sort_values("seed")
    if sel.empty:
        raise ValueError(f"by_seed: no row has {where}.")
    if sel["seed"].duplicated().any():
        raise ValueError(f"by_seed: several rows per seed match {where}; add the columns that tell them apart.")
    return sel[metric].to_numpy()


@dataclass(frozen=True)
class Verdict:
    """A verdict, the measurement it rests on (as text), and the rule that produced it."""

    verdict: str
    measured: str
    rule: str

    def __post_init__(self) -> None:
        if self.verdict not in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE):
            raise ValueError(f"Verdict: unknown verdict {self.verdict!r}.")


def _paired(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(
            f"verdict: a and b must be paired 1-D samples (one per seed) of equal length ≥ 2; "
            f"got shapes {a.shape} and {b.shape}."
        )
    return a - b


def _measured(a, b, d, lo, hi, *, names, unit, digits, what) -> str:
    return (
        f"{names[0]} {np.mean(a):.{digits}f}{unit} vs {names[1]} {np.mean(b):.{digits}f}{unit}; "
        f"{what} {d.mean():+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] (n={len(d)})"
    )


def verdict_greater(a, b, *, margin: float = 0.0, lower_is_better: bool = False, confidence: float = 0.95,
                    names=("A", "B"), unit: str = "", digits: int = 3) -> Verdict:
    """Claim "A is better than B (by more than ``margin``)", from paired samples (one per seed).

    "Better" is "higher" unless ``lower_is_better`` (errors, ECE). Rule: with the improvement
    d = A − B per seed (B − A when lower is better) and its t confidence interval [lo, hi], the
    claim is *supported* when lo > margin, *not supported at this scale* when hi ≤ margin (the data
    exclude the claimed advantage), and *inconclusive* otherwise.
    """
    d = _paired(b, a) if lower_is_better else _paired(a, b)
    lo, hi = _t_interval(d, confidence)
    v = SUPPORTED if lo > margin else NOT_SUPPORTED if hi <= margin else INCONCLUSIVE
    sense = f"{names[1]} − {names[0]}" if lower_is_better else f"{names[0]} − {names[1]}"
    measured = _measured(a, b, d, lo, hi, names=names, unit=unit, digits=digits, what=f"improvement ({sense})")
    rule = (f"supported if the {confidence:.0%} CI of the paired improvement lies above {margin:g}; "
            f"not supported if it lies at or below {margin:g}; else inconclusive")
    return Verdict(v, measured, rule)


def verdict_equivalent(a, b, *, tolerance: float, confidence: float = 0.95, names=("A", "B"),
                       unit: str = "", digits: int = 3) -> Verdict:
    """Claim "A is as good as B" (no loss beyond ``tolerance``), from paired samples.

    Rule: with the t confidence interval [lo, hi] of d = A − B, *supported* when lo ≥ −tolerance
    (any loss is smaller than the tolerance), *not supported at this scale* when hi < −tolerance
    (A is worse by more than the tolerance), *inconclusive* otherwise.
    """
    d = _paired(a, b)
    lo, hi = _t_interval(d, confidence)
    v = SUPPORTED if lo >= -tolerance else NOT_SUPPORTED if hi < -tolerance else INCONCLUSIVE
    measured = _measured(a, b, d, lo, hi, names=names, unit=unit, digits=digits, what="difference")
    rule = (f"supported if the {confidence:.0%} CI of the paired difference lies above −{tolerance:g}; "
            f"not supported if it lies below −{tolerance:g}; else inconclusive")
    return Verdict(v, measured, rule)


def verdict_all(holds, *, what: str, min_checks: int = 1) -> Verdict:
    """Claim "this always holds": supported when every one of the checks holds.

    Rule: *supported* when all ``holds`` are true (and there are at least ``min_checks``), *not
    supported at this scale* when any is false, *inconclusive* when there are too few checks.
    """
    holds = np.asarray(holds, dtype=bool).ravel()
    n_ok = int(holds.sum())
    if len(holds) < min_checks:
        v = INCONCLUSIVE
    else:
        v = SUPPORTED if n_ok == len(holds) else NOT_SUPPORTED
    return Verdict(v, f"{what}: holds in {n_ok} of {len(holds)} checks",
                   f"supported if it holds in every check (at least {min_checks}); else not supported")


def verdict_every(verdicts: dict[str, Verdict]) -> Verdict:
    """Claim "this holds in each of these settings" (e.g. "at 60% and at 80% noise").

    Rule: *supported* when every setting's verdict is supported, *not supported at this scale*
    when any setting's verdict is, *inconclusive* otherwise. The counterpart of :func:`verdict_any`.
    """
    if not verdicts:
        raise ValueError("verdict_every: give at least one setting's verdict.")
    kinds = [v.verdict for v in verdicts.values()]
    v = SUPPORTED if all(k == SUPPORTED for k in kinds) else NOT_SUPPORTED if NOT_SUPPORTED in kinds else INCONCLUSIVE
    measured = "; ".join(f"{name}: {res.measured} → {res.verdict}" for name, res in verdicts.items())
    inner = next(iter(verdicts.values())).rule
    return Verdict(v, measured, f"supported if supported in every setting, not supported if not supported in any, "
                                f"else inconclusive; per setting: {inner}")


def verdict_any(verdicts: dict[str, Verdict]) -> Verdict:
    """Claim "this holds in at least one of these settings" (e.g. "for some k, top-k improves").

    Rule: *supported* when at least one setting's verdict is supported, *not supported at this
    scale* when every setting's verdict is, *inconclusive* otherwise.
    """
    if not verdicts:
        raise ValueError("verdict_any: give at least one setting's verdict.")
    kinds = [v.verdict for v in verdicts.values()]
    v = SUPPORTED if SUPPORTED in kinds else NOT_SUPPORTED if all(k == NOT_SUPPORTED for k in kinds) else INCONCLUSIVE
    measured = "; ".join(f"{name}: {res.measured} → {res.verdict}" for name, res in verdicts.items())
    inner = next(iter(verdicts.values())).rule
    return Verdict(v, measured, f"supported if supported in at least one setting, not supported if not supported in "
                                f"all; per setting: {inner}")


def claim(*, paper: str, claim: str, setting: str, result: Verdict) -> dict:
    """One row of a claims table: the paper (a references.bib key), its claim quoted exactly,
    our setting, what we measured, the verdict and the rule behind it."""
    if not claim.strip():
        raise ValueError("claim: quote the paper's claim exactly; got an empty string.")
    return {"paper": paper, "claim": claim, "setting": setting, **asdict(result)}


def claims_table(rows: list[dict], *, chapter: str):
    """Show a chapter's claims table and publish it for the report card.

    Returns an object that Jupyter displays as an HTML table; the output's metadata also carries
    the rows as JSON under :data:`CLAIMS_KEY`, which :func:`lossbook.lab.book.collect_claims` reads
    back from executed notebooks.
    """
    df = pd.DataFrame(rows, columns=["paper", "claim", "setting", "measured", "verdict", "rule"])
    return _ClaimsTable(df, chapter)


class _ClaimsTable:
    def __init__(self, df: pd.DataFrame, chapter: str) -> None:
        self.df, self.chapter = df, chapter

    def _repr_mimebundle_(self, include=None, exclude=None):
        html = self.df.to_html(index=False, escape=True, classes="lossbook-claims", border=0)
        payload = {"chapter": self.chapter, "rows": json.loads(self.df.to_json(orient="records"))}
        data = {"text/html": html, "text/plain": self.df.to_string(index=False)}
        return data, {CLAIMS_KEY: payload}
