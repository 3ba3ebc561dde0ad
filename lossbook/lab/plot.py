"""One plotting style for the whole book, and the few plot helpers chapters share.

The style (:func:`use_style`) keeps every font at least :data:`MIN_FONT_SIZE` points, so that a figure
drawn at the default width shows its labels at full size in the book's column, and one palette for
every figure, :data:`PALETTE`. Each loss (or head, or proposal) the book plots has its own colour from
it, the same in every chapter: :data:`LOSS_COLORS`, through :func:`loss_colors`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib.font_manager import FontProperties

__all__ = ["LOSS_COLORS", "MIN_FONT_SIZE", "PALETTE", "canonical_name", "loss_colors", "mean_band",
           "reliability_diagram", "use_style"]

#: The book's colours, in matplotlib's cycle order (``"C0"``...). Chosen from the colour-blind-safe
#: schemes of Okabe & Ito and Paul Tol so that any two stay apart (CIE76 ΔE > 14) for normal vision and
#: under simulated deuteranopia and protanopia (Machado et al. 2009), except grey (C7), which is kept
#: for neutral marks (single seeds, references) and given to no loss. C0-C7 keep the roles of seaborn's
#: "colorblind" palette that the chapters' code names (blue, orange, green, red, pink, brown, light, grey).
PALETTE: tuple[str, ...] = (
    "#4477AA",  # C0 blue
    "#E69F00",  # C1 orange
    "#009E73",  # C2 green
    "#CC3311",  # C3 red
    "#CC79A7",  # C4 pink
    "#663300",  # C5 brown
    "#88CCEE",  # C6 cyan
    "#777777",  # C7 grey (neutral marks; no loss)
    "#332288",  # C8 indigo
    "#882255",  # C9 wine
    "#DDCC77",  # C10 sand
    "#228833",  # C11 leaf green
    "#EE6677",  # C12 rose
    "#000000",  # C13 black
)
_BLUE, _ORANGE, _GREEN, _RED, _PINK, _BROWN, _CYAN, _GREY, _INDIGO, _WINE, _SAND, _LEAF, _ROSE, _BLACK = PALETTE

#: A fixed colour per loss across the book, keyed by :func:`canonical_name`. Cross-entropy (``CE``,
#: ``softmax``, ``full softmax``) is black in every chapter. Losses that share a figure have different
#: colours (each chapter's set is checked in ``tests/test_plot.py``); losses that never meet may share one.
LOSS_COLORS: dict[str, str] = {
    # cross-entropy under its names in the chapters
    "crossentropy": _BLACK, "ce": _BLACK, "softmax": _BLACK, "fullsoftmax": _BLACK,
    # chapter 2: the spherical family
    "zloss": _ORANGE, "taylorsoftmax": _BLUE, "logtaylorsoftmax": _BLUE, "sphericalsoftmax": _GREEN,
    "logsphericalsoftmax": _GREEN, "squarederror": _WINE, "hierarchicalsoftmax": _BROWN,
    # chapter 3: proposals of sampled softmax
    "uniform": _BLUE, "loguniform": _ORANGE, "unigram^0.75": _GREEN, "unigram": _GREEN, "model": _PINK,
    # chapter 4: margin heads
    "sphereface": _BROWN, "cosface": _ORANGE, "arcface": _BLUE, "elasticfacecos": _SAND,
    "elasticfacearc": _CYAN, "adaface": _GREEN, "magface": _WINE, "sphereface2": _PINK,
    "arcface+unpg": _RED,
    # chapter 5: robust losses
    "fl": _BROWN, "focal": _BROWN, "focalloss": _BROWN, "mae": _SAND, "meanabsoluteerror": _SAND,
    "gce": _ORANGE, "generalizedcrossentropy": _ORANGE, "sce": _PINK, "symmetriccrossentropy": _PINK,
    "nce": _INDIGO, "normalizedcrossentropy": _INDIGO, "nfl": _WINE, "normalizedfocalloss": _WINE,
    "nce+rce": _BLUE, "nfl+rce": _CYAN, "nce+mae": _LEAF, "ldrkl": _RED, "aldrkl": _ROSE,
    "rce": _GREEN, "reversecrossentropy": _GREEN, "zerror": _BLUE,
}

#: The smallest font, in points, that :func:`use_style` leaves in any of matplotlib's text sizes
#: (ticks, legends, labels, titles), relative sizes such as ``"small"`` included.
MIN_FONT_SIZE = 10.0

_FONT_SIZE_KEYS = ("font.size", "axes.labelsize", "axes.titlesize", "xtick.labelsize", "ytick.labelsize",
                   "legend.fontsize", "legend.title_fontsize", "figure.titlesize", "figure.labelsize")


def canonical_name(name: str) -> str:
    """The key of ``name`` in :data:`LOSS_COLORS`: lower case, without a parenthesised note
    (``"cross_entropy (reference)"``) and without spaces, underscores or hyphens."""
    name = re.sub(r"\s*\([^)]*\)", "", str(name).lower())
    return re.sub(r"[\s_\-]+", "", name)


def _points(size) -> float:
    return FontProperties(size=size).get_size_in_points()


def use_style() -> None:
    """Apply the book's style: seaborn's whitegrid, the book's :data:`PALETTE` as the colour cycle,
    and every font at least :data:`MIN_FONT_SIZE` points (base size 12)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=list(PALETTE))
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "font.size": 12.0,
            "axes.titlesize": "medium",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
        }
    )
    # relative sizes ("small", "medium") follow font.size; make every one absolute and at least the minimum
    base = plt.rcParams["font.size"]
    for key in _FONT_SIZE_KEYS:
        value = plt.rcParams[key]
        points = float(value) if isinstance(value, (int, float)) else _points(value) * (base / _points("medium"))
        plt.rcParams[key] = max(points, MIN_FONT_SIZE)


def loss_colors(names: Sequence[str]) -> dict[str, tuple]:
    """A colour per name: the loss's fixed colour in :data:`LOSS_COLORS` (the same in every chapter),
    and for names it does not know, the first colours of :data:`PALETTE` (grey excluded) that no
    other name in ``names`` has, in the given order. Names in one call always get different colours
    while there are colours left; RGB tuples, as before."""
    names = list(names)
    free = [c for c in PALETTE if c != _GREY]
    chosen: dict[str, str] = {}
    for n in names:  # the fixed colours first, so that a known loss never loses its colour
        fixed = LOSS_COLORS.get(canonical_name(n))
        if fixed is not None and fixed not in chosen.values():
            chosen[n] = fixed
    rest = [c for c in free if c not in chosen.values()]
    for n in names:
        if n not in chosen:
            chosen[n] = rest.pop(0) if rest else free[len(chosen) % len(free)]
    return {n: mcolors.to_rgb(chosen[n]) for n in names}


def mean_band(df: pd.DataFrame, *, x: str, y: str, hue: str, ax=None, palette=None, errorbar=("sd", 1),
              markers: bool = True):
    """Mean of ``y`` against ``x`` per ``hue`` with a band of one standard deviation over seeds.

    Without a ``palette``, each ``hue`` level takes its colour from :func:`loss_colors`, so a loss has
    the same colour here as in every other figure of the book."""
    ax = ax or plt.gca()
    if palette is None:
        palette = loss_colors([str(v) for v in pd.unique(df[hue])])
        if df[hue].dtype.kind not in "OSU":  # numeric levels: seaborn looks them up by value
            palette = dict(zip(pd.unique(df[hue]), palette.values()))
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
