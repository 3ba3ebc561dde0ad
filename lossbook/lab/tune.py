"""Give every compared setting the same tuning budget, chosen on validation data.

A chapter comparing losses tunes each loss's learning rate (or any other knob) on the same grid,
over the same seeds, on a validation metric, then runs the verdict's seeds at each loss's choice:

* :func:`tune_each` runs the grid for every value of the compared axis (``loss="CE"``, ``"MAE"``…)
  and selects on validation with :func:`lossbook.lab.selection.extend_on_edge`, which extends a grid
  whose choice sits on its edge (the same number of rounds for every value);
* :func:`run_chosen` runs each value at its chosen setting over the verdict's seeds, reusing the
  runs the tuning already made;
* :func:`fewer_per_class` keeps a fixed number of training examples per class (a harder task, e.g.
  to create an over-confident baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from .experiments import run_grid
from .selection import Selection, extend_on_edge

__all__ = ["fewer_per_class", "run_chosen", "tune_each"]


def tune_each(evaluate: Callable[..., dict], *, axis: str, values: Sequence, grid: dict[str, Sequence],
              seeds: Sequence[int], metric: str, higher_is_better: bool = True, max_extensions: int = 2,
              limits: dict[str, tuple] | None = None, desc: str = "tuning") -> tuple[pd.DataFrame, dict[Any, Selection]]:
    """Tune ``grid`` (e.g. ``{"lr": [0.003, 0.01, 0.03]}``) separately for each of ``values`` of ``axis``.

    ``evaluate(seed=s, **{axis: v}, **point)`` returns a dict with ``val_<metric>`` (and the
    ``test_*`` columns the verdict reads later). Every value gets the same grid and seeds, and the
    same number of extension rounds at most (:func:`~lossbook.lab.selection.extend_on_edge`).
    Returns the table of every run and ``{value: Selection}``.
    """
    values = list(values)
    if not values:
        raise ValueError("tune_each: values must name at least one setting of the compared axis.")
    if not grid:
        raise ValueError("tune_each: grid must name at least one axis to tune, e.g. {'lr': [0.01, 0.1]}.")
    if axis in grid:
        raise ValueError(f"tune_each: the compared axis {axis!r} cannot also be tuned.")
    runs = run_grid(evaluate, seeds=seeds, desc=desc, **{axis: values}, **grid)
    selections = {}
    for value in values:
        runs, selections[value] = extend_on_edge(runs, evaluate, metric, by=list(grid), seeds=list(seeds),
                                                 higher_is_better=higher_is_better, max_extensions=max_extensions,
                                                 limits=limits, **{axis: value})
    return runs, selections


def run_chosen(evaluate: Callable[..., dict], selections: dict[Any, Selection], *, axis: str, seeds: Sequence[int],
               runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each value of ``axis`` at its chosen setting (``selections[value].choice``), over ``seeds``.

    A run already in ``runs`` (same value, choice and seed) is reused, not repeated. Returns one row
    per value and seed, with ``axis``, the chosen setting's columns, ``seed`` and the measurements.
    """
    rows = []
    for value, selection in selections.items():
        for seed in seeds:
            row = None
            if runs is not None:
                mask = (runs[axis] == value) & (runs["seed"] == seed)
                for name, chosen in selection.choice.items():
                    mask &= runs[name] == chosen
                if mask.any():
                    row = runs.loc[mask].iloc[0].to_dict()
            if row is None:
                row = {axis: value, **selection.choice, "seed": seed,
                       **evaluate(seed=seed, **{axis: value}, **selection.choice)}
            rows.append(row)
    return pd.DataFrame(rows)


def fewer_per_class(splits, per_class: int, *, seed: int = 0):
    """``splits`` (a :class:`lossbook.lab.data.Splits`) with ``per_class`` training examples of each
    class, drawn at random by ``seed`` (fixed across training seeds); validation and test unchanged."""
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"fewer_per_class: per_class must be an int ≥ 1; got {per_class!r}.")
    y = splits.y_train.cpu().numpy()
    counts = np.bincount(y, minlength=splits.num_classes)
    if counts.min() < per_class:
        raise ValueError(f"fewer_per_class: a class has only {counts.min()} training examples; per_class={per_class} "
                         "is more than that.")
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class]
                                  for c in range(splits.num_classes)]))
    keep = torch.as_tensor(idx, device=splits.y_train.device)
    return replace(splits, x_train=splits.x_train[keep], y_train=splits.y_train[keep])
