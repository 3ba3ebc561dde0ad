"""Experiment grids and claim verdicts, following the claims protocol (``PROTOCOL.md``).

:func:`run_grid` runs a function over the Cartesian product of settings × seeds and returns a tidy
DataFrame. :func:`summarize` gives mean, spread and a t confidence interval per setting, and
:func:`by_seed` reads one setting's values seed by seed. The verdict rules turn paired per-seed
samples into a verdict by a rule that is printed beside it: a paired t interval for "better"
(:func:`verdict_greater`), non-inferiority with a margin (:func:`verdict_noninferior`), TOST
equivalence (:func:`verdict_tost`), a property against a control (:func:`verdict_control`);
:func:`cap_on_edge` caps a verdict whose setting was chosen on the edge of a grid (see
:mod:`lossbook.lab.selection`). :func:`plan_seeds` chooses the number of seeds before a run and
:func:`jackknife` tells whether a verdict survives leaving each seed out.

:func:`claim` makes the row of a chapter's claims table: with a reading, the paper's setting and a
measured :class:`Premise` it follows the protocol (the fourth verdict ``premise absent at this
scale``, stability, a generated discussion); :func:`claims_table` shows the rows and publishes them
for the report card.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from functools import partial
from numbers import Real
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .selection import Selection
from .train import progress_enabled

__all__ = [
    "run_grid",
    "summarize",
    "by_seed",
    "Verdict",
    "Evidence",
    "SUPPORTED",
    "NOT_SUPPORTED",
    "INCONCLUSIVE",
    "PREMISE_ABSENT",
    "VERDICTS",
    "verdict_greater",
    "verdict_equivalent",
    "verdict_noninferior",
    "verdict_tost",
    "verdict_control",
    "verdict_all",
    "verdict_any",
    "verdict_every",
    "cap_on_edge",
    "half_width",
    "plan_seeds",
    "jackknife",
    "Premise",
    "premise_at_least",
    "premise_at_most",
    "claim",
    "claim_columns",
    "claims_table",
    "CLAIM_COLUMNS",
    "BASIC_COLUMNS",
    "CLAIMS_KEY",
]

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported at this scale"
INCONCLUSIVE = "inconclusive"
#: The fourth verdict: the claim's premise (measured in the same run) does not hold here.
PREMISE_ABSENT = "premise absent at this scale"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, PREMISE_ABSENT)
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


# --- verdicts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """The numbers behind a verdict from paired per-seed samples: what the discussion, the seed
    planner and the effect size read. ``estimate`` is the mean paired difference in the claim's
    direction (``effect`` names it, e.g. ``"A − B"``), ``ci`` its confidence interval at
    ``confidence``, ``sd`` the standard deviation of the paired differences, and ``bounds`` the
    decision thresholds of the rule on that difference (a margin, or −δ and +δ)."""

    test: str
    effect: str
    n: int
    estimate: float
    ci: tuple[float, float]
    confidence: float
    sd: float
    bounds: tuple[float, ...]
    digits: int = 3
    unit: str = ""
    control: str | None = None

    @property
    def half_width(self) -> float:
        """Half the width of the confidence interval: the smallest effect this run can detect."""
        return (self.ci[1] - self.ci[0]) / 2


@dataclass(frozen=True)
class Verdict:
    """A verdict, the measurement it rests on (as text), and the rule that produced it.

    The rules built from per-seed samples also keep, for :func:`claim`, the numbers behind the
    verdict (``evidence``; ``parts`` for a verdict over settings) and ``resample``, which recomputes
    the verdict from the seeds at the given indices (the jackknife's leave-one-out). These extra
    fields take no part in equality, ``repr`` or the claims row.
    """

    verdict: str
    measured: str
    rule: str
    evidence: Evidence | None = field(default=None, compare=False, repr=False)
    parts: tuple[tuple[str, Verdict], ...] = field(default=(), compare=False, repr=False)
    resample: Callable[[np.ndarray], Verdict] | None = field(default=None, compare=False, repr=False)
    notes: tuple[str, ...] = field(default=(), compare=False, repr=False)
    before_cap: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"Verdict: unknown verdict {self.verdict!r}; a verdict is one of {VERDICTS}.")

    @property
    def n_seeds(self) -> int | None:
        """The number of seeds the verdict rests on, where it rests on per-seed samples."""
        if self.evidence is not None:
            return self.evidence.n
        ns = {v.n_seeds for _, v in self.parts}
        return ns.pop() if len(ns) == 1 and None not in ns else None


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


def _resampled(fn, samples, kwargs, keep) -> Verdict:
    return fn(*(np.asarray(s, dtype=float)[keep] for s in samples), **kwargs)


def _evidence(d, lo, hi, *, test, effect, confidence, bounds, digits, unit, control=None) -> Evidence:
    return Evidence(test=test, effect=effect, n=len(d), estimate=float(d.mean()), ci=(lo, hi),
                    confidence=confidence, sd=float(d.std(ddof=1)), bounds=tuple(float(b) for b in bounds),
                    digits=digits, unit=unit, control=control)


def _check_confidence(name: str, confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"{name}: confidence must lie in (0, 1), e.g. 0.95; got {confidence!r}.")


def _one_sided_p(d: np.ndarray, bound: float, *, greater: bool) -> float:
    """p-value of the paired t test of H0: mean(d) ≤ bound (``greater``) or H0: mean(d) ≥ bound."""
    from scipy import stats

    se = d.std(ddof=1) / np.sqrt(len(d))
    gap = d.mean() - bound if greater else bound - d.mean()
    if se == 0:
        return 0.0 if gap > 0 else 1.0
    return float(stats.t.sf(gap / se, len(d) - 1))


def verdict_greater(a, b, *, margin: float = 0.0, lower_is_better: bool = False, confidence: float = 0.95,
                    names=("A", "B"), unit: str = "", digits: int = 3) -> Verdict:
    """Claim "A is better than B (by more than ``margin``)", from paired samples (one per seed).

    "Better" is "higher" unless ``lower_is_better`` (errors, ECE). Rule (paired t confidence
    interval): with the improvement d = A − B per seed (B − A when lower is better) and its t
    confidence interval [lo, hi], the claim is *supported* when lo > margin, *not supported at this
    scale* when hi ≤ margin (the data exclude the claimed advantage), and *inconclusive* otherwise.
    """
    d = _paired(b, a) if lower_is_better else _paired(a, b)
    lo, hi = _t_interval(d, confidence)
    v = SUPPORTED if lo > margin else NOT_SUPPORTED if hi <= margin else INCONCLUSIVE
    sense = f"{names[1]} − {names[0]}" if lower_is_better else f"{names[0]} − {names[1]}"
    measured = _measured(a, b, d, lo, hi, names=names, unit=unit, digits=digits, what=f"improvement ({sense})")
    rule = (f"supported if the {confidence:.0%} CI of the paired improvement lies above {margin:g}; "
            f"not supported if it lies at or below {margin:g}; else inconclusive")
    kwargs = {"margin": margin, "lower_is_better": lower_is_better, "confidence": confidence,
              "names": names, "unit": unit, "digits": digits}
    return Verdict(v, measured, rule,
                   evidence=_evidence(d, lo, hi, test="paired t", effect=sense, confidence=confidence,
                                      bounds=(margin,), digits=digits, unit=unit),
                   resample=partial(_resampled, verdict_greater, (a, b), kwargs))


def verdict_equivalent(a, b, *, tolerance: float, confidence: float = 0.95, names=("A", "B"),
                       unit: str = "", digits: int = 3) -> Verdict:
    """Claim "A is as good as B" (no loss beyond ``tolerance``), from paired samples.

    Rule: with the t confidence interval [lo, hi] of d = A − B, *supported* when lo ≥ −tolerance
    (any loss is smaller than the tolerance), *not supported at this scale* when hi < −tolerance
    (A is worse by more than the tolerance), *inconclusive* otherwise. This is a one-sided
    (non-inferiority) reading whose rule text does not name its test; new chapters use
    :func:`verdict_noninferior` or :func:`verdict_tost`, which do.
    """
    d = _paired(a, b)
    lo, hi = _t_interval(d, confidence)
    v = SUPPORTED if lo >= -tolerance else NOT_SUPPORTED if hi < -tolerance else INCONCLUSIVE
    measured = _measured(a, b, d, lo, hi, names=names, unit=unit, digits=digits, what="difference")
    rule = (f"supported if the {confidence:.0%} CI of the paired difference lies above −{tolerance:g}; "
            f"not supported if it lies below −{tolerance:g}; else inconclusive")
    kwargs = {"tolerance": tolerance, "confidence": confidence,
              "names": names, "unit": unit, "digits": digits}
    return Verdict(v, measured, rule,
                   evidence=_evidence(d, lo, hi, test="paired t", effect=f"{names[0]} − {names[1]}",
                                      confidence=confidence, bounds=(-tolerance,), digits=digits, unit=unit),
                   resample=partial(_resampled, verdict_equivalent, (a, b), kwargs))


def verdict_noninferior(a, b, *, margin: float, lower_is_better: bool = False, confidence: float = 0.95,
                        names=("A", "B"), unit: str = "", digits: int = 3) -> Verdict:
    """Claim "A is no worse than B" ("no loss of accuracy"), as **non-inferiority with margin δ**
    (``margin`` > 0, justified from the paper), from paired samples (one per seed).

    Rule (paired t test, one-sided at level (1 − ``confidence``)/2): with d = A − B per seed (B − A
    when lower is better) and the t confidence interval [lo, hi] of its mean at ``confidence``, the
    claim is *supported* when lo > −δ (the one-sided test rejects "A is worse by δ or more"), *not
    supported at this scale* when hi ≤ −δ (A is worse by at least δ), and *inconclusive* otherwise.
    The measurement reports the one-sided p-value of H0: mean(d) ≤ −δ.
    """
    if not (isinstance(margin, Real) and margin > 0):
        raise ValueError(f"verdict_noninferior: margin (δ) must be a number > 0, the largest loss that does not "
                         f"matter, justified from the paper; got {margin!r}. For 'A is better' use verdict_greater.")
    _check_confidence("verdict_noninferior", confidence)
    d = _paired(b, a) if lower_is_better else _paired(a, b)
    lo, hi = _t_interval(d, confidence)
    v = SUPPORTED if lo > -margin else NOT_SUPPORTED if hi <= -margin else INCONCLUSIVE
    sense = f"{names[1]} − {names[0]}" if lower_is_better else f"{names[0]} − {names[1]}"
    p = _one_sided_p(d, -margin, greater=True)
    measured = (_measured(a, b, d, lo, hi, names=names, unit=unit, digits=digits, what=f"difference ({sense})")
                + f"; non-inferiority p = {p:.3f}")
    rule = (f"non-inferiority with margin δ = {margin:g} (paired t test, one-sided α = {(1 - confidence) / 2:g}): "
            f"supported if the {confidence:.0%} CI of the paired difference {sense} lies above −{margin:g}; "
            f"not supported if it lies at or below −{margin:g}; else inconclusive")
    kwargs = {"margin": margin, "lower_is_better": lower_is_better, "confidence": confidence,
              "names": names, "unit": unit, "digits": digits}
    return Verdict(v, measured, rule,
                   evidence=_evidence(d, lo, hi, test="non-inferiority", effect=sense, confidence=confidence,
                                      bounds=(-margin,), digits=digits, unit=unit),
                   resample=partial(_resampled, verdict_noninferior, (a, b), kwargs))


def verdict_tost(a, b, *, delta: float, alpha: float = 0.05, names=("A", "B"), unit: str = "",
                 digits: int = 3) -> Verdict:
    """Claim "A and B are equivalent" ("equally important", "competitive"), by **TOST**: two
    one-sided paired t tests at level ``alpha`` with the equivalence margin δ = ``delta`` (> 0,
    justified from the paper), from paired samples (one per seed).

    Rule: with d = A − B per seed and the (1 − 2·alpha) t confidence interval [lo, hi] of its mean,
    the claim is *supported* when −δ < lo and hi < δ (both one-sided tests reject: the mean
    difference is above −δ and below δ), *not supported at this scale* when lo ≥ δ or hi ≤ −δ (the
    difference is at least δ in one direction), and *inconclusive* otherwise. The measurement
    reports the TOST p-value, the larger of the two one-sided p-values.
    """
    if not (isinstance(delta, Real) and delta > 0):
        raise ValueError(f"verdict_tost: delta (the equivalence margin δ) must be a number > 0, justified from the "
                         f"paper; got {delta!r}.")
    if not 0 < alpha < 0.5:
        raise ValueError(f"verdict_tost: alpha must lie in (0, 0.5), e.g. 0.05 (a 90% CI); got {alpha!r}.")
    confidence = 1 - 2 * alpha
    d = _paired(a, b)
    lo, hi = _t_interval(d, confidence)
    v = SUPPORTED if -delta < lo and hi < delta else NOT_SUPPORTED if lo >= delta or hi <= -delta else INCONCLUSIVE
    sense = f"{names[0]} − {names[1]}"
    p = max(_one_sided_p(d, -delta, greater=True), _one_sided_p(d, delta, greater=False))
    measured = (_measured(a, b, d, lo, hi, names=names, unit=unit, digits=digits,
                          what=f"difference ({sense}, {confidence:.0%} CI)") + f"; TOST p = {p:.3f}")
    rule = (f"equivalence by TOST (two one-sided paired t tests at α = {alpha:g}) with margin δ = {delta:g}: "
            f"supported if the {confidence:.0%} CI of the paired difference {sense} lies inside (−{delta:g}, "
            f"{delta:g}); not supported if it lies at or above {delta:g} or at or below −{delta:g}; else inconclusive")
    kwargs = {"delta": delta, "alpha": alpha, "names": names, "unit": unit, "digits": digits}
    return Verdict(v, measured, rule,
                   evidence=_evidence(d, lo, hi, test="TOST", effect=sense, confidence=confidence,
                                      bounds=(-delta, delta), digits=digits, unit=unit),
                   resample=partial(_resampled, verdict_tost, (a, b), kwargs))


def verdict_control(method, control, *, what: str, margin: float = 0.0, confidence: float = 0.95,
                    names=("method", "control"), unit: str = "", digits: int = 3) -> Verdict:
    """A property claim ("the feature norm rises with quality") tested against a **control** that
    should not have the property (the plain ArcFace head, CE), from paired samples of the
    property's strength (larger = more of the property; one value per seed, e.g. a rank correlation).

    Rule (paired t confidence interval): with the excess e = method − control per seed and its t
    confidence interval [lo, hi] at ``confidence``, the claim is *supported* only when lo >
    ``margin`` (the method shows the property more than the control), *not supported at this
    scale* when hi ≤ ``margin``, and *inconclusive* otherwise. The control's own value goes to the
    claims row (see :func:`claim`).
    """
    if not isinstance(what, str) or not what.strip():
        raise ValueError("verdict_control: what must name the property measured, e.g. "
                         f"what='Spearman correlation of feature norm with quality'; got {what!r}.")
    _check_confidence("verdict_control", confidence)
    d = _paired(method, control)
    lo, hi = _t_interval(d, confidence)
    v = SUPPORTED if lo > margin else NOT_SUPPORTED if hi <= margin else INCONCLUSIVE
    sense = f"{names[0]} − {names[1]}"
    measured = f"{what}: " + _measured(method, control, d, lo, hi, names=names, unit=unit, digits=digits,
                                       what=f"excess over the control ({sense})")
    rule = (f"property against a control (paired t): supported if the {confidence:.0%} CI of the paired excess of "
            f"{what} in {names[0]} over the control {names[1]} lies above {margin:g}; not supported if it lies at "
            f"or below {margin:g}; else inconclusive")
    shown = f"{names[1]}: {what} {np.mean(control):.{digits}f}{unit} (mean of {len(d)} seeds)"
    kwargs = {"what": what, "margin": margin, "confidence": confidence,
              "names": names, "unit": unit, "digits": digits}
    return Verdict(v, measured, rule,
                   evidence=_evidence(d, lo, hi, test="paired t against a control", effect=sense,
                                      confidence=confidence, bounds=(margin,), digits=digits, unit=unit,
                                      control=shown),
                   resample=partial(_resampled, verdict_control, (method, control), kwargs))


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


def _combined_resample(combine, verdicts: dict[str, Verdict]):
    """A resample for a verdict over settings: every setting's verdict recomputed from the same seeds."""
    parts = list(verdicts.values())
    ns = {v.n_seeds for v in parts}
    if any(v.resample is None for v in parts) or len(ns) != 1 or None in ns:
        return None
    return lambda keep: combine({name: v.resample(keep) for name, v in verdicts.items()})


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
                                f"else inconclusive; per setting: {inner}",
                   parts=tuple(verdicts.items()), resample=_combined_resample(verdict_every, verdicts))


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
                                f"all; per setting: {inner}",
                   parts=tuple(verdicts.items()), resample=_combined_resample(verdict_any, verdicts))


def cap_on_edge(result: Verdict, *selections: Selection) -> Verdict:
    """The verdict ``result`` capped at ``inconclusive`` while a setting it rests on, chosen on
    validation (:func:`lossbook.lab.selection.select_best`, :func:`~lossbook.lab.selection.extend_on_edge`),
    still sits on the edge of its grid.

    Rule: when any selection is on the edge, a *supported* or *not supported at this scale* verdict
    becomes *inconclusive* (an optimum past the grid's edge could change it); otherwise the verdict
    is unchanged. The rule text gains the clause and where each choice sits (in words only);
    the discussion of :func:`claim` names the choices on an edge. The jackknife of :func:`claim`
    recomputes the capped verdict.
    """
    if not isinstance(result, Verdict):
        raise TypeError(f"cap_on_edge: result must be a Verdict (from a verdict_* rule); got {type(result).__name__}.")
    if not selections:
        raise TypeError("cap_on_edge: pass the Selection(s) the verdict rests on, e.g. cap_on_edge(v, sel_a, sel_b).")
    bad = [type(s).__name__ for s in selections if not isinstance(s, Selection)]
    if bad:
        raise TypeError(f"cap_on_edge: each selection must be a lossbook.lab.selection.Selection (from select_best "
                        f"or extend_on_edge); got {bad}.")
    edge = [s for s in selections if s.on_edge]
    capped = bool(edge) and result.verdict in (SUPPORTED, NOT_SUPPORTED)
    where = "; ".join(s.placement() for s in selections)
    rule = (f"{result.rule}; at most inconclusive while a setting chosen on validation sits on the edge of its "
            f"grid ({where})")
    notes = result.notes + tuple(f"{s.describe()} sits on the edge of its grid" for s in edge)
    resample = None if result.resample is None else (lambda keep: cap_on_edge(result.resample(keep), *selections))
    return Verdict(INCONCLUSIVE if capped else result.verdict, result.measured, rule, evidence=result.evidence,
                   parts=result.parts, resample=resample, notes=notes,
                   before_cap=result.verdict if capped else result.before_cap)


# --- planning seeds, and the jackknife -------------------------------------------------------------------


def half_width(sd: float, n: int, *, confidence: float = 0.95) -> float:
    """The half-width t_{n−1}(½ + confidence/2) · sd / √n of the t confidence interval of a mean of
    ``n`` values whose standard deviation is ``sd``."""
    from scipy import stats

    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"half_width: n must be an int ≥ 2 (a t interval needs two values); got {n!r}.")
    _check_confidence("half_width", confidence)
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))


def plan_seeds(delta: float, sd, *, confidence: float = 0.95, min_seeds: int = 5, max_seeds: int = 20) -> int:
    """The number of seeds for a paired comparison, chosen before the run.

    ``delta`` is the smallest effect that matters (from the paper's claim), ``sd`` the standard
    deviation of the paired differences in a pilot run (a number, or the pilot's per-seed
    differences, whose SD with ddof=1 is used; the SD of one method's per-seed values stands in
    when only that is known). Rule: the smallest n ≥ 2 with :func:`half_width` (sd, n) ≤ delta,
    i.e. t_{n−1}(½ + confidence/2) · sd / √n ≤ delta, then bounded to [``min_seeds``, ``max_seeds``]
    (``max_seeds`` when no n up to it is enough).
    """
    if not (isinstance(delta, Real) and math.isfinite(delta) and delta > 0):
        raise ValueError(f"plan_seeds: delta (the smallest effect that matters) must be a number > 0; got {delta!r}.")
    if not isinstance(sd, Real):
        pilot = np.asarray(sd, dtype=float).ravel()
        if len(pilot) < 2:
            raise ValueError(f"plan_seeds: a pilot sample needs at least 2 values to give an SD; got {len(pilot)}. "
                             "Pass the SD as a number instead.")
        sd = float(pilot.std(ddof=1))
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"plan_seeds: sd must be a finite number ≥ 0; got {sd!r}.")
    if not (isinstance(min_seeds, int) and isinstance(max_seeds, int) and 2 <= min_seeds <= max_seeds):
        raise ValueError(f"plan_seeds: need ints 2 ≤ min_seeds ≤ max_seeds; got min_seeds={min_seeds!r}, "
                         f"max_seeds={max_seeds!r}.")
    _check_confidence("plan_seeds", confidence)
    for n in range(2, max_seeds + 1):
        if half_width(sd, n, confidence=confidence) <= delta:
            return max(n, min_seeds)
    return max_seeds


def _stability(full: str, leave_one_out: list[str]) -> str:
    differ = sum(v != full for v in leave_one_out)
    return "stable" if differ == 0 else f"unstable ({differ} of {len(leave_one_out)} leave-one-out verdicts differ)"


def jackknife(rule: Callable[..., Verdict], *samples, **kwargs) -> str:
    """The stability of the verdict ``rule(*samples, **kwargs)`` over seeds.

    ``samples`` hold one entry per seed along their first axis (all the same length n). Rule: the
    verdict is recomputed n times, each time leaving one seed out of every sample; the result is
    ``"stable"`` when every leave-one-out verdict equals the full one, ``"unstable (k of n
    leave-one-out verdicts differ)"`` when k ≥ 1 differ, and ``"not assessed (n < 3)"`` with fewer
    than 3 seeds. (:func:`claim` computes it by itself for the ``verdict_*`` rules over seeds.)
    """
    if not samples:
        raise TypeError("jackknife: pass the per-seed samples the rule reads, e.g. jackknife(verdict_greater, a, b).")
    arrays = [np.asarray(s) for s in samples]
    lengths = {len(s) if s.ndim else None for s in arrays}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(f"jackknife: every sample needs one entry per seed along its first axis, all of one length; "
                         f"got shapes {[s.shape for s in arrays]}.")
    n = lengths.pop()
    if n < 3:
        return "not assessed (n < 3)"
    full = rule(*arrays, **kwargs).verdict
    return _stability(full, [rule(*(np.delete(s, i, axis=0) for s in arrays), **kwargs).verdict for i in range(n)])


# --- the premise ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Premise:
    """The condition a claim holds under (an over-confident baseline, a memorising model, a
    mismatch that exists), measured in the same run: ``what`` is measured, ``measured`` its value
    (the mean over seeds when ``n`` per-seed values were given), ``threshold`` the value it needs,
    ``sense`` ``"≥"`` or ``"≤"``, and ``met`` whether ``measured sense threshold`` holds.

    Build one with :func:`premise_at_least` or :func:`premise_at_most` (which compute ``met``), or,
    for a claim that needs no premise, with ``Premise.none(reason)``.
    """

    what: str
    measured: float | None
    threshold: float | None
    met: bool
    sense: str | None = "≥"
    n: int | None = None
    digits: int = 3
    values: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.what, str) or not self.what.strip():
            raise ValueError(f"Premise: what must say what is measured (e.g. \"CE's ECE on the test split\"); "
                             f"got {self.what!r}.")
        if not isinstance(self.met, (bool, np.bool_)):
            raise TypeError(f"Premise: met must be a bool; got {type(self.met).__name__}.")
        if self.measured is None:
            if self.threshold is not None or not self.met or self.sense is not None:
                raise ValueError("Premise: a premise without a measurement is Premise.none(reason) "
                                 "(met, no threshold).")
            return
        if self.sense not in ("≥", "≤"):
            raise ValueError(f"Premise: sense must be '≥' or '≤'; got {self.sense!r}.")
        if not all(isinstance(x, Real) and math.isfinite(x) for x in (self.measured, self.threshold)):
            raise ValueError(f"Premise: measured and threshold must be finite numbers; got {self.measured!r} and "
                             f"{self.threshold!r}.")
        if bool(self.met) != self._holds(self.measured):
            raise ValueError(f"Premise: met={self.met} disagrees with {self.measured} {self.sense} {self.threshold}; "
                             "build it with premise_at_least or premise_at_most, which compute met.")

    @classmethod
    def none(cls, reason: str) -> Premise:
        """No premise is needed (say why, e.g. "a theorem about the loss alone"): always met."""
        return cls(what=reason, measured=None, threshold=None, met=True, sense=None)

    @property
    def needed(self) -> bool:
        """False for ``Premise.none``."""
        return self.measured is not None

    def _holds(self, value: float) -> bool:
        return bool(value >= self.threshold) if self.sense == "≥" else bool(value <= self.threshold)

    def condition(self) -> str:
        """``"CE's ECE ≥ 0.05"``."""
        return f"{self.what} {self.sense} {self.threshold:g}" if self.needed else "none"

    def text(self) -> str:
        """``"CE's ECE 0.033 (mean of 5 seeds); needs ≥ 0.05: not met"``."""
        if not self.needed:
            return f"none needed: {self.what}"
        over = f" (mean of {self.n} seeds)" if self.n else ""
        return (f"{self.what} {self.measured:.{self.digits}f}{over}; needs {self.sense} {self.threshold:g}: "
                f"{'met' if self.met else 'not met'}")

    def shortfall(self) -> str:
        """``"CE's ECE was 0.033 (mean of 5 seeds), and the claim needs ≥ 0.05"``."""
        over = f" (mean of {self.n} seeds)" if self.n else ""
        return (f"{self.what} was {self.measured:.{self.digits}f}{over}, and the claim needs {self.sense} "
                f"{self.threshold:g}")

    def met_without(self, i: int) -> bool:
        """Whether the premise holds with seed ``i`` left out (the jackknife); ``met`` when the
        premise was not given per seed."""
        if self.values is None:
            return bool(self.met)
        return self._holds(float(np.mean(np.delete(np.asarray(self.values), i))))


def _premise(what: str, value, threshold: float, sense: str, digits: int) -> Premise:
    values = np.asarray(value, dtype=float)
    if values.ndim > 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"premise: value must be a finite number or a 1-D array of per-seed values; got {value!r}.")
    if not (isinstance(threshold, Real) and math.isfinite(threshold)):
        raise ValueError(f"premise: threshold must be a finite number; got {threshold!r}.")
    measured = float(values.mean())
    holds = measured >= threshold if sense == "≥" else measured <= threshold
    per_seed = values.ndim == 1
    return Premise(what=what, measured=measured, threshold=float(threshold), met=bool(holds), sense=sense,
                   n=len(values) if per_seed else None, digits=digits,
                   values=tuple(values.tolist()) if per_seed else None)


def premise_at_least(what: str, value, threshold: float, *, digits: int = 3) -> Premise:
    """The premise "``what`` is at least ``threshold``". Rule: met when ``value`` (the mean of the
    per-seed values, when an array is given) is ≥ ``threshold``."""
    return _premise(what, value, threshold, "≥", digits)


def premise_at_most(what: str, value, threshold: float, *, digits: int = 3) -> Premise:
    """The premise "``what`` is at most ``threshold``" (e.g. "a pixel-space k-NN does not already
    win": its AUROC at most 0.95). Rule: met when ``value`` (the mean of the per-seed values, when an
    array is given) is ≤ ``threshold``."""
    return _premise(what, value, threshold, "≤", digits)


# --- the claims row ---------------------------------------------------------------------------------------

#: Every column of a claims table, in order; a table shows the protocol's columns only when a row has them.
CLAIM_COLUMNS = ("paper", "claim", "reading", "paper_setting", "setting", "premise", "control", "measured",
                 "verdict", "rule", "stability", "discussion")
#: The columns of a claims row made without the protocol's fields (the rows of older chapters).
BASIC_COLUMNS = ("paper", "claim", "setting", "measured", "verdict", "rule")


def _text(name: str, value, *, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"claim: {name} must be a non-empty string, e.g. {name}={example!r}; got {value!r}.")
    return value


def _check_stability(text: str) -> str:
    if not isinstance(text, str) or not (text == "stable" or text.startswith(("unstable (", "not assessed ("))):
        raise ValueError(f"claim: stability must be 'stable', 'unstable (k of n leave-one-out verdicts differ)' or "
                         f"'not assessed (why)', as jackknife() returns; got {text!r}.")
    return text


def _stability_of(result: Verdict, premise: Premise, verdict: str) -> str:
    n = result.n_seeds
    if n is None or result.resample is None:
        return "not assessed (no per-seed samples)"
    if n < 3:
        return "not assessed (n < 3)"
    if premise.values is not None and len(premise.values) != n:
        raise ValueError(f"claim: the premise was measured on {len(premise.values)} seeds, the verdict on {n}; "
                         "measure both on the same seeds (or give the premise as one number).")
    out = []
    for i in range(n):
        keep = np.delete(np.arange(n), i)
        out.append(PREMISE_ABSENT if not premise.met_without(i) else result.resample(keep).verdict)
    return _stability(verdict, out)


def _f(x: float, ev: Evidence, sign: bool = True) -> str:
    return f"{x:+.{ev.digits}f}{ev.unit}" if sign else f"{x:.{ev.digits}f}{ev.unit}"


def _effect_size(result: Verdict) -> str:
    ev = result.evidence
    if ev is None and result.parts:
        return "; ".join(f"{name}: {_effect_size(v)}" for name, v in result.parts)
    if ev is None:
        return f"measured {result.measured}"
    dz = f", {abs(ev.estimate) / ev.sd:.1f} standard deviations of the paired differences (d_z)" if ev.sd > 0 else ""
    if len(ev.bounds) == 2:
        where = f"its CI inside the equivalence margin ±{ev.bounds[1]:g}"
    else:
        where = f"its CI above the rule's bound {ev.bounds[0]:g}"
    return (f"{ev.effect} = {_f(ev.estimate, ev)} ({ev.confidence:.0%} CI [{_f(ev.ci[0], ev)}, {_f(ev.ci[1], ev)}], "
            f"n = {ev.n}){dz}, {where}")


def _seeds_needed(distance: float, sd: float, confidence: float, cap: int = 1000) -> int | None:
    if distance <= 0:
        return None
    if sd == 0:
        return 2
    n = plan_seeds(distance, sd, confidence=confidence, min_seeds=2, max_seeds=cap)
    return n if half_width(sd, n, confidence=confidence) <= distance else None


def _power(result: Verdict, verdict: str, paper_setting: str, setting: str) -> list[str]:
    """What the run could detect, and what would settle a verdict other than supported."""
    ev = result.evidence
    if ev is None and result.parts:
        return [f"{name} ({v.verdict}): " + " ".join(_power(v, v.verdict, paper_setting, setting))
                for name, v in result.parts if v.verdict != SUPPORTED]
    if ev is None:
        return [f"Measured: {result.measured}. Our setting ({setting}) is not the paper's ({paper_setting})."]
    out = [(f"At n = {ev.n} seeds the {ev.confidence:.0%} CI half-width of {ev.effect} is "
            f"{_f(ev.half_width, ev, False)}, the smallest effect this run can detect ({ev.test}).")]
    if verdict == NOT_SUPPORTED:
        out.append(f"The CI [{_f(ev.ci[0], ev)}, {_f(ev.ci[1], ev)}] excludes the claimed effect in our setting "
                   f"({setting}); the paper's setting ({paper_setting}) differs, and the claim may hold there.")
    elif verdict == INCONCLUSIVE:
        bound = min(ev.bounds, key=lambda b: abs(ev.estimate - b))
        distance = abs(ev.estimate - bound)
        need = _seeds_needed(distance, ev.sd, ev.confidence)
        if need is None:
            out.append(f"The estimate {_f(ev.estimate, ev)} sits {_f(distance, ev, False)} from the rule's bound "
                       f"{bound:+g}: more than 1000 seeds would be needed, so more seeds cannot settle it here; the "
                       f"paper's setting ({paper_setting}) could.")
        else:
            out.append(f"The estimate {_f(ev.estimate, ev)} sits {_f(distance, ev, False)} from the rule's bound "
                       f"{bound:+g}; if the SD of the paired differences stays {ev.sd:.{ev.digits}f}, about {need} "
                       f"seeds would bring the half-width below that distance (plan_seeds) and settle it, as could "
                       f"the paper's setting ({paper_setting}).")
    return out


def _discussion(verdict: str, result: Verdict, premise: Premise, stability: str, paper_setting: str,
                setting: str, note: str | None) -> str:
    out = []
    if verdict == SUPPORTED:
        out.append(f"Effect size: {_effect_size(result)}.")
        if premise.needed:
            out.append(f"The premise held: {premise.text()}.")
    elif verdict == PREMISE_ABSENT:
        out.append(f"The premise did not hold: {premise.shortfall()}, so this run cannot test the claim; the "
                   f"comparison itself read {result.verdict} ({result.measured}).")
        out.append(f"It would be settled where the premise holds: the paper's setting ({paper_setting}), or a harder "
                   f"task, longer training or a larger model than ours ({setting}).")
    else:
        if premise.needed:
            out.append(f"The premise held: {premise.text()}.")
        if result.before_cap is not None:
            out.append(f"The verdict is capped at inconclusive (it would read {result.before_cap}): "
                       f"{'; '.join(result.notes)}; a wider grid would settle it.")
        out.extend(_power(result, verdict, paper_setting, setting))
    if stability.startswith("unstable"):
        out.append(f"The verdict is {stability}: it rests on single seeds, and more seeds would firm it up.")
    if note:
        out.append(note.strip())
    return " ".join(out)


def claim(*, paper: str, claim: str, setting: str, result: Verdict, reading: str | None = None,
          paper_setting: str | None = None, premise: Premise | None = None, control: str | None = None,
          stability: str | None = None, note: str | None = None) -> dict:
    """One row of a claims table: the paper (a references.bib key), its claim quoted exactly, our
    setting, what we measured, the verdict and the rule behind it.

    With ``reading`` (the measurable statement tested), the row follows the claims protocol and
    also needs ``paper_setting`` (the paper's dataset, model, scale) and ``premise`` (a
    :class:`Premise`, or ``Premise.none(reason)``); it then carries, besides the basic columns:

    * ``premise``: the premise's text (what, measured value, threshold, met or not);
    * ``control``: ``control`` when given, else the control's value of a :func:`verdict_control`;
      absent when there is neither;
    * the **verdict**: ``premise absent at this scale`` when the premise is not met, else
      ``result``'s; the rule gains the clause "premise absent at this scale unless <condition>";
    * ``stability``: ``stability`` when given (as :func:`jackknife` returns it), else the jackknife
      computed here: the verdict (premise included, when given per seed) recomputed leaving each
      seed out, for the ``verdict_*`` rules over per-seed samples (``"not assessed (…)"`` for the
      others and for n < 3);
    * ``discussion``: a paragraph generated from the numbers (for ``supported``, the effect size;
      otherwise the smallest detectable effect at this n, whether the premise held, and what would
      settle it: the seeds from :func:`plan_seeds`, the paper's setting), then ``note`` if given.

    Without ``reading`` the row has the basic columns only (as chapters made before the protocol).
    """
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError("claim: quote the paper's claim exactly; got an empty string.")
    if not isinstance(result, Verdict):
        raise TypeError(f"claim: result must be a Verdict (from a verdict_* rule); got {type(result).__name__}.")
    row = {"paper": paper, "claim": claim, "setting": setting,
           "verdict": result.verdict, "measured": result.measured, "rule": result.rule}
    extra = {"paper_setting": paper_setting, "premise": premise, "control": control, "stability": stability,
             "note": note}
    if reading is None:
        given = sorted(k for k, v in extra.items() if v is not None)
        if given:
            raise TypeError(f"claim: {given} belong to a claims-protocol row, which states its reading; add "
                            "reading='the measurable statement tested' (see PROTOCOL.md §1).")
        return row
    _text("reading", reading, example="PSL keeps more of its NDCG@20 than SL at 1% false negatives")
    _text("paper_setting", paper_setting, example="CIFAR-10, ResNet-18, 200 epochs")
    if not isinstance(premise, Premise):
        raise TypeError(f"claim: premise must be a Premise (premise_at_least, premise_at_most, or Premise.none(reason) "
                        f"for a claim that needs none); got {type(premise).__name__}.")
    verdict = result.verdict if premise.met else PREMISE_ABSENT
    rule = result.rule + (f"; premise absent at this scale unless {premise.condition()}" if premise.needed else "")
    if control is None and result.evidence is not None:
        control = result.evidence.control
    if control is not None:
        _text("control", control, example="ArcFace (plain head): ρ(norm, quality) 0.12")
    stability = _check_stability(stability) if stability is not None else _stability_of(result, premise, verdict)
    out = {"paper": paper, "claim": claim, "reading": reading, "paper_setting": paper_setting, "setting": setting,
           "premise": premise.text()}
    if control is not None:
        out["control"] = control
    out.update(verdict=verdict, measured=result.measured, rule=rule, stability=stability,
               discussion=_discussion(verdict, result, premise, stability, paper_setting, setting, note))
    return out


def claim_columns(rows: list[dict]) -> list[str]:
    """The columns of a claims table of ``rows``: :data:`BASIC_COLUMNS` in their order when no row
    carries a protocol field, else :data:`CLAIM_COLUMNS` less those no row has."""
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    if not present - set(BASIC_COLUMNS):
        return list(BASIC_COLUMNS)
    return [c for c in CLAIM_COLUMNS if c in present or c in BASIC_COLUMNS]


def claims_table(rows: list[dict], *, chapter: str):
    """Show a chapter's claims table and publish it for the report card.

    Returns an object that Jupyter displays as an HTML table; the output's metadata also carries
    the rows as JSON under :data:`CLAIMS_KEY`, which :func:`lossbook.lab.book.collect_claims` reads
    back from executed notebooks. The protocol's columns appear only when a row has them (an empty
    cell for a row without).
    """
    columns = claim_columns(rows)
    df = pd.DataFrame(rows, columns=columns)
    extra = [c for c in columns if c not in BASIC_COLUMNS]
    if extra:
        df[extra] = df[extra].fillna("")
    return _ClaimsTable(df, chapter)


class _ClaimsTable:
    def __init__(self, df: pd.DataFrame, chapter: str) -> None:
        self.df, self.chapter = df, chapter

    def _repr_mimebundle_(self, include=None, exclude=None):
        html = self.df.to_html(index=False, escape=True, classes="lossbook-claims", border=0)
        payload = {"chapter": self.chapter, "rows": json.loads(self.df.to_json(orient="records"))}
        data = {"text/html": html, "text/plain": self.df.to_string(index=False)}
        return data, {CLAIMS_KEY: payload}
