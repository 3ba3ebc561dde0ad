"""One plotting style for the whole book, and the few plot helpers chapters share."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["use_style", "loss_colors", "mean_band", "reliability_diagram"]


def use_style() -> None:
    """Apply the book's style: seaborn's whitegrid, colour-blind palette, readable sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "axes.titlesize": "medium",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
        }
    )


def loss_colors(names: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per name (in the given order) from the colour-blind palette."""
    pal = sns.color_palette("colorblind", n_colors=max(len(names), 1))
    return {n: pal[i % len(pal)] for i, n in enumerate(names)}


def mean_band(df: pd.DataFrame, *, x: str, y: str, hue: str, ax=None, palette=None, errorbar=("sd", 1),
              markers: bool = True):
    """Mean of ``y`` against ``x`` per ``hue`` with a band of one standard deviation over seeds."""
    ax = ax or plt.gca()
    sns.lineplot(data=df, x=x, y=y, hue=hue, errorbar=errorbar, marker="o" if markers else None,
                 palette=palette, ax=ax)
    return ax


def reliability_diagram(table: pd.DataFrame, *, ax=None, label: str | None = None):
    """Accuracy against confidence per bin (from :func:`lossbook.metrics.reliability_table`)."""
    ax = ax or plt.gca()
    used = table[table["count"] > 0]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax.plot(used["confidence"], used["accuracy"], marker="o", label=label)
    ax.set(xlabel="confidence (max probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    return ax
