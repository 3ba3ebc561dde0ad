"""Choosing a setting on validation data, never on the test data that a verdict reads.

Every choice a chapter makes (a learning rate, a loss's hyper-parameter, an epoch, "the best
baseline") is made here, on a **validation** metric. The convention for result tables (e.g. from
:func:`lossbook.lab.experiments.run_grid`) is one of:

* **split-prefixed columns**: the run records ``val_<metric>`` and ``test_<metric>`` (e.g.
  ``val_accuracy``, ``test_accuracy``); selection reads ``val_<metric>`` only;
* a **split column**: one row per split, with a ``split`` column (``"val"``, ``"test"``) and the
  metric in a column of its own name; selection reads the rows of the validation split only.

:func:`select_best` refuses anything that names the test split (the ``split`` argument, the metric,
a grouping or filtering column), and anything that is not a validation split (``"train"`` too).
It returns a :class:`Selection`: the chosen setting, its validation score, and whether it sits on
the **edge** of its grid. :func:`extend_on_edge` extends the grid past an edge a bounded number of
times, evaluating the new points with the chapter's own function.
:func:`lossbook.lab.experiments.cap_on_edge` then caps a verdict at ``inconclusive`` while a
choice still sits on an edge.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["VALIDATION_SPLITS", "Selection", "select_best", "extend_on_edge"]

#: The split names :func:`select_best` accepts (anything else, the test split above all, is refused).
VALIDATION_SPLITS = ("val", "valid", "validation")


@dataclass(frozen=True)
class Selection:
    """The setting chosen on validation data.

    ``choice`` maps each grid axis to its chosen value (pass it on to
    :func:`lossbook.lab.experiments.by_seed` with ``**selection.choice`` to read the chosen
    setting's test values); ``score`` is its mean validation metric over seeds; ``grid`` lists every
    axis's values (numeric axes sorted); ``edges`` maps each ordered axis whose choice is the lowest
    or highest value of its grid to ``"lower"`` or ``"upper"`` (a value at one of the axis's
    ``limits`` is not an edge: the grid cannot go past it); ``extensions`` counts the rounds of
    :func:`extend_on_edge`; ``where`` the filter the rows were chosen from (``{"loss": "CE"}``);
    ``table`` holds the mean validation metric of every setting.
    """

    metric: str
    choice: dict[str, Any]
    score: float
    grid: dict[str, tuple]
    edges: dict[str, str]
    higher_is_better: bool = True
    extensions: int = 0
    where: dict[str, Any] = field(default_factory=dict)
    table: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @property
    def on_edge(self) -> bool:
        """True when some ordered axis's choice is the lowest or highest value of its grid."""
        return bool(self.edges)

    def describe(self) -> str:
        """``"lr = 0.1 (upper edge of 0.001 … 0.1), on val_accuracy"``: the choice, where it sits, and
        the validation metric it was chosen on."""
        parts = []
        for axis, value in self.choice.items():
            values = self.grid[axis]
            where = ""
            if axis in self.edges:
                where = f" ({self.edges[axis]} edge of {_fmt(values[0])} … {_fmt(values[-1])})"
            elif len(values) > 1 and _is_number_axis(values):
                where = f" (inside {_fmt(values[0])} … {_fmt(values[-1])})"
            parts.append(f"{axis} = {_fmt(value)}{where}")
        grown = f" after {self.extensions} extension(s) of the grid" if self.extensions else ""
        return f"{', '.join(parts)}{self._for()}, on {self.metric}{grown}"

    def _for(self) -> str:
        return "".join(f" for {k}={_fmt(v)}" for k, v in self.where.items())

    def placement(self) -> str:
        """``"lr for loss=CE: inside its grid; m: on its upper edge"``: where each ordered choice
        sits, in words (no measured numbers, so a golden run compares it exactly)."""
        out = []
        for axis, values in self.grid.items():
            if axis in self.edges:
                out.append(f"{axis}{self._for()}: on its {self.edges[axis]} edge")
            elif len(values) > 1 and _is_number_axis(values):
                out.append(f"{axis}{self._for()}: inside its grid")
        return "; ".join(out) if out else "no ordered axis"


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, Real) and not isinstance(value, bool) else str(value)


def _is_number_axis(values: Sequence) -> bool:
    return all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _plain(value):
    """numpy scalars as Python scalars, so a choice prints and compares as the grid was written."""
    return value.item() if isinstance(value, np.generic) else value


def _refuse_test(what: str, name: str) -> None:
    if "test" in str(name).lower():
        raise ValueError(
            f"select_best: {what} {name!r} names the test split; a choice is made on validation data only, "
            "never on the test data that the verdict reads. Fix: record a validation metric (a column "
            "'val_<metric>', or rows with split='val') and select on it."
        )


def _validation_column(df: pd.DataFrame, metric: str, split: str) -> tuple[pd.DataFrame, str]:
    """The rows and the column holding the validation metric (see the module's conventions)."""
    _refuse_test("split", split)
    _refuse_test("metric", metric)
    if split not in VALIDATION_SPLITS:
        raise ValueError(f"select_best: split must name a validation split, one of {VALIDATION_SPLITS}; "
                         f"got {split!r}. Hold out a validation split and select on it.")
    if "split" in df.columns:
        names = df["split"].astype(str)
        rows = df.loc[names == split]
        if rows.empty:
            raise ValueError(f"select_best: the table's 'split' column has no row {split!r}; it has "
                             f"{sorted(names.unique())}. Record the validation split's metric in rows with "
                             f"split={split!r}.")
        if metric not in df.columns:
            raise ValueError(f"select_best: no column {metric!r}; the columns are {list(df.columns)}.")
        return rows, metric
    column = metric if metric.startswith(f"{split}_") else f"{split}_{metric}"
    if column not in df.columns:
        raise ValueError(
            f"select_best: no validation column {column!r}; the columns are {list(df.columns)}. A result "
            f"table records the validation metric as '{split}_<metric>' (beside 'test_<metric>'), or has a "
            "'split' column; a column without a split in its name is not read, since it may be test data."
        )
    return df, column


def select_best(df: pd.DataFrame, metric: str, *, by: str | Sequence[str], split: str = "val",
                higher_is_better: bool = True, ordered: Sequence[str] | None = None,
                limits: dict[str, tuple] | None = None, **where) -> Selection:
    """The setting of the axes ``by`` with the best mean validation ``metric`` over seeds.

    Reads the validation column only: ``f"{split}_{metric}"`` (``metric`` may carry the prefix
    already), or, where the table has a ``split`` column, the column ``metric`` in the rows whose
    split is ``split``. Rows are first filtered by ``column=value`` for each item of ``where``.

    Rule: the mean of the metric over the rows of each setting (one per seed) is computed; the best
    mean wins (the highest, or the lowest when not ``higher_is_better``); a tie goes to the setting
    that comes first in the table; a NaN mean (a diverged run) ranks last. An axis is **ordered**
    when it is listed in ``ordered``, or (by default) when all its values are finite real numbers
    (not booleans). The choice sits on the **edge** of an ordered axis with at least two values
    when it is that axis's lowest or highest value, unless the value equals the axis's natural
    limit given in ``limits`` (``{"smoothing": (0.0, 1.0)}``; ``None`` for an open side): a grid
    cannot be extended past such a limit, so a choice there is not on an edge.

    Raises ``ValueError`` when ``split`` is not a validation split (:data:`VALIDATION_SPLITS`), when
    the metric, ``split`` or a column of ``by``/``where`` names the test split, when the validation
    column is missing, when nothing matches ``where``, or when a seed appears twice in a setting.
    """
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise ValueError("select_best: by must name at least one grid axis (a column of the table).")
    for column in (*by, *where):
        _refuse_test("column", column)
    rows, column = _validation_column(df, metric, split)
    missing = [c for c in (*by, *where) if c not in rows.columns]
    if missing:
        raise ValueError(f"select_best: no column {missing} in the table; its columns are {list(df.columns)}.")
    mask = np.ones(len(rows), dtype=bool)
    for name, value in where.items():
        mask &= (rows[name] == value).to_numpy()
    rows = rows.loc[mask]
    if rows.empty:
        raise ValueError(f"select_best: no row has {where}.")
    if "seed" in rows.columns and rows.duplicated([*by, "seed"]).any():
        raise ValueError(f"select_best: several rows per seed and setting of {by}; pin the other axes with "
                         "column=value (e.g. loss='CE') or add them to by.")
    table = rows.groupby(by, sort=False)[column].mean().reset_index()
    scores = table[column].to_numpy(dtype=float)
    key = np.where(np.isnan(scores), -np.inf, scores if higher_is_better else -scores)
    best = int(np.argmax(key))  # the first of ties
    choice = {axis: _plain(table[axis].iloc[best]) for axis in by}

    ordered = [a for a in by if _is_number_axis(list(rows[a].unique()))] if ordered is None else list(ordered)
    unknown = sorted(set(ordered) - set(by)) + sorted(set(limits or {}) - set(by))
    if unknown:
        raise ValueError(f"select_best: ordered/limits name {unknown}, which are not axes of by={by}.")
    grid, edges = {}, {}
    for axis in by:
        values = [_plain(v) for v in rows[axis].unique()]
        if axis in ordered:
            values = sorted(values)
            low, high = (limits or {}).get(axis, (None, None))
            if len(values) > 1 and choice[axis] == values[0] and choice[axis] != low:
                edges[axis] = "lower"
            elif len(values) > 1 and choice[axis] == values[-1] and choice[axis] != high:
                edges[axis] = "upper"
        grid[axis] = tuple(values)
    return Selection(metric=column, choice=choice, score=float(scores[best]), grid=grid, edges=edges,
                     higher_is_better=higher_is_better, where={k: _plain(v) for k, v in where.items()}, table=table)


def _next_value(values: Sequence, side: str, limit) -> Any:
    """One step past the ``side`` end of a sorted numeric grid, by the grid's own spacing: a factor
    (the end value times its ratio to its neighbour) when every value is positive and the ratios of
    neighbours vary no more than their differences do (max/min of each), else a difference; an
    integer grid stays integer; clipped to ``limit``; ``None`` when no new value is left."""
    v = [float(x) for x in values]
    end, near = (v[0], v[1]) if side == "lower" else (v[-1], v[-2])
    steps = [b - a for a, b in itertools.pairwise(v)]
    ratios = [b / a for a, b in itertools.pairwise(v)] if all(x > 0 for x in v) else []
    geometric = bool(ratios) and max(ratios) / min(ratios) <= max(steps) / min(steps)
    new = float(f"{end * (end / near) if geometric else end + (end - near):.12g}")  # 1.0000000000000002 → 1.0
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in values):
        new = math.floor(new) if side == "lower" else math.ceil(new)
    if limit is not None and ((side == "lower" and new < limit) or (side == "upper" and new > limit)):
        new = limit
    return None if any(new == x for x in values) else new


def extend_on_edge(runs: pd.DataFrame, evaluate: Callable[..., dict | list[dict]], metric: str, *,
                   by: str | Sequence[str], split: str = "val", higher_is_better: bool = True,
                   max_extensions: int = 2, limits: dict[str, tuple] | None = None,
                   next_value: Callable[[str, tuple, str], Any] | None = None,
                   seeds: Sequence[int] | None = None, **where) -> tuple[pd.DataFrame, Selection]:
    """Select on validation (:func:`select_best`); while the choice sits on the edge of its grid,
    extend the grid past that edge and select again, at most ``max_extensions`` times.

    ``runs`` is a :func:`lossbook.lab.experiments.run_grid` table and ``evaluate`` the function that
    made it: each new grid point is run as ``evaluate(seed=s, **where, **point)`` for each seed
    (by default the seeds of the rows that match ``where``), and its rows are appended. In each
    round, every edge axis gets one new value past its edge: ``next_value(axis, grid_values,
    side)`` when given (``side`` is ``"lower"`` or ``"upper"``; return ``None`` when the axis cannot
    go further), else one step of the grid's own spacing (the ratio of the two end values for a
    grid of positive values whose ratios are more even than its differences, e.g. 0.01, 0.03, 0.1
    → 0.33; the difference otherwise, e.g. 1, 2, 3 → 4), clipped to the axis's ``limits``. The new
    points are the product of every axis's values (old and new) that were not run yet, so the grid
    stays a product. The rounds stop when the choice is inside its grid, after ``max_extensions`` rounds, or when
    no edge axis can be extended.

    Returns the extended table and the last :class:`Selection` (its ``extensions`` counts the
    rounds; it may still be on the edge, which :func:`lossbook.lab.experiments.cap_on_edge` turns
    into an ``inconclusive`` verdict).
    """
    if not isinstance(max_extensions, int) or isinstance(max_extensions, bool) or max_extensions < 0:
        raise ValueError(f"extend_on_edge: max_extensions must be an int ≥ 0; got {max_extensions!r}.")
    by = [by] if isinstance(by, str) else list(by)
    kwargs = {"by": by, "split": split, "higher_is_better": higher_is_better, "limits": limits}
    selection = select_best(runs, metric, **kwargs, **where)
    if seeds is None:
        mask = np.ones(len(runs), dtype=bool)
        for name, value in where.items():
            mask &= (runs[name] == value).to_numpy()
        if "seed" not in runs.columns:
            raise ValueError("extend_on_edge: the table has no 'seed' column; pass seeds=[...].")
        seeds = sorted(runs.loc[mask, "seed"].unique().tolist())
    rounds = 0
    while selection.on_edge and rounds < max_extensions:
        axes = {axis: list(values) for axis, values in selection.grid.items()}
        grown = False
        for axis, side in selection.edges.items():
            low, high = (limits or {}).get(axis, (None, None))
            if next_value is not None:
                new = next_value(axis, selection.grid[axis], side)
            else:
                new = _next_value(selection.grid[axis], side, low if side == "lower" else high)
            if new is not None and new not in axes[axis]:
                axes[axis].append(new)
                grown = True
        if not grown:
            break
        done = {tuple(_plain(v) for v in key) for key in selection.table[by].itertuples(index=False)}
        new_rows = []
        for point in itertools.product(*(axes[a] for a in by)):
            if tuple(point) in done:
                continue
            setting = dict(zip(by, point))
            for seed in seeds:
                out = evaluate(seed=seed, **where, **setting)
                for row in out if isinstance(out, list) else [out]:
                    new_rows.append({**where, **setting, "seed": seed, **row})
        runs = pd.concat([runs, pd.DataFrame(new_rows)], ignore_index=True)
        rounds += 1
        selection = select_best(runs, metric, **kwargs, **where)
    if rounds:
        selection = replace(selection, extensions=rounds)
    return runs, selection
