"""The book's plot style: one colour per loss across chapters, a colour-blind-safe palette, a minimum
font size."""

from __future__ import annotations

import itertools

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib import colors as mcolors

from lossbook.lab import plot

# The labels each chapter plots together (its figures' legends).
CHAPTER_LABELS = {
    "02 spherical": ["z_loss", "taylor_softmax", "spherical_softmax", "squared_error", "cross_entropy (reference)"],
    "03 proposals": ["uniform", "log-uniform", "unigram^0.75", "model"],
    "04 heads": ["softmax", "SphereFace", "CosFace", "ArcFace", "ElasticFace-Cos", "ElasticFace-Arc", "AdaFace",
                 "MagFace", "SphereFace2", "ArcFace + UNPG"],
    "05 robust": ["CE", "FL", "MAE", "GCE", "SCE", "NCE", "NFL", "NCE+RCE", "NFL+RCE", "NCE+MAE", "LDR-KL",
                  "ALDR-KL", "RCE"],
    "05 outliers": ["CE", "Z-Error", "GCE"],
}


@pytest.fixture(autouse=True)
def _restore_rc():
    with matplotlib.rc_context():
        yield
    plt.close("all")


@pytest.mark.parametrize("chapter", CHAPTER_LABELS)
def test_a_chapters_losses_have_distinct_fixed_colours(chapter):
    labels = CHAPTER_LABELS[chapter]
    colors = plot.loss_colors(labels)
    assert list(colors) == labels
    assert len(set(colors.values())) == len(labels), colors
    for name, rgb in colors.items():
        assert len(rgb) == 3 and all(0.0 <= v <= 1.0 for v in rgb)
        assert rgb == mcolors.to_rgb(plot.LOSS_COLORS[plot.canonical_name(name)]), name


@pytest.mark.parametrize("chapter", CHAPTER_LABELS)
def test_a_loss_keeps_its_colour_whatever_else_is_plotted(chapter):
    labels = CHAPTER_LABELS[chapter]
    full = plot.loss_colors(labels)
    rng = np.random.default_rng(0)
    for _ in range(5):
        subset = list(rng.permutation(labels)[: rng.integers(1, len(labels) + 1)])
        assert plot.loss_colors(subset) == {n: full[n] for n in subset}
        assert plot.loss_colors([*subset, "a loss the book does not know"])[subset[0]] == full[subset[0]]


def test_cross_entropy_is_the_same_colour_in_every_chapter():
    names = ["CE", "cross_entropy", "cross_entropy (reference)", "softmax", "full softmax", "Cross-Entropy"]
    assert len({plot.loss_colors([n])[n] for n in names}) == 1
    # and a loss shared by chapters, under the names they give it
    assert plot.loss_colors(["GCE"])["GCE"] == plot.loss_colors(["generalized_cross_entropy"])["generalized_cross_entropy"]


def test_unknown_names_get_distinct_unused_palette_colours_never_grey():
    names = ["CE", "alpha", "beta", "gamma"]
    colors = plot.loss_colors(names)
    assert len(set(colors.values())) == len(names)
    grey = mcolors.to_rgb("#777777")
    assert grey not in colors.values()
    assert all(rgb in {mcolors.to_rgb(c) for c in plot.PALETTE} for rgb in colors.values())
    assert plot.loss_colors(names) == colors  # deterministic
    assert plot.loss_colors([]) == {}


def test_every_fixed_colour_is_from_the_palette_and_not_grey():
    palette = set(plot.PALETTE) - {"#777777"}
    assert set(plot.LOSS_COLORS.values()) <= palette


# --- colour-blind safety: CIE76 distance after simulating dichromacy (Machado, Oliveira & Fernandes 2009)
_CVD = {
    "normal": np.eye(3),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
}


def _lab(hex_color: str, matrix: np.ndarray) -> np.ndarray:
    rgb = np.array(mcolors.to_rgb(hex_color))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lin = np.clip(matrix @ lin, 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


@pytest.mark.parametrize("vision", list(_CVD))
def test_loss_palette_stays_distinguishable_for_colour_blind_readers(vision):
    colours = [c for c in plot.PALETTE if c != "#777777"]
    labs = {c: _lab(c, _CVD[vision]) for c in colours}
    worst = min((float(np.linalg.norm(labs[a] - labs[b])), a, b) for a, b in itertools.combinations(colours, 2))
    assert worst[0] > 14.0, worst


# --- the style's minimum font size
def test_use_style_leaves_no_font_below_the_minimum():
    plot.use_style()
    for key in plot._FONT_SIZE_KEYS:
        value = plt.rcParams[key]
        assert isinstance(value, float) and value >= plot.MIN_FONT_SIZE, (key, value)


def test_a_figure_drawn_in_the_style_has_no_text_below_the_minimum():
    plot.use_style()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1, 4, 9], label="CE")
    ax.set(xlabel="epoch", ylabel="loss", title="a title")
    ax.legend(title="loss")
    fig.suptitle("a suptitle")
    fig.canvas.draw()
    sizes = {t.get_text() or type(t).__name__: t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
             if t.get_text()}
    assert sizes and min(sizes.values()) >= plot.MIN_FONT_SIZE, sizes


def test_use_style_cycles_the_books_palette():
    plot.use_style()
    cycle = [mcolors.to_hex(c["color"]).upper() for c in plt.rcParams["axes.prop_cycle"]]
    assert cycle == [c.upper() for c in plot.PALETTE]


def test_mean_band_colours_hue_levels_by_loss():
    plot.use_style()
    df = pd.DataFrame({"x": [0, 1, 0, 1] * 2, "y": np.arange(8.0), "loss": ["MAE"] * 4 + ["CE"] * 4,
                       "seed": [0, 0, 1, 1] * 2})
    _, ax = plt.subplots()
    plot.mean_band(df, x="x", y="y", hue="loss", ax=ax)
    expected = plot.loss_colors(["MAE", "CE"])
    drawn = {line.get_label(): mcolors.to_rgb(line.get_color()) for line in ax.get_lines()
             if line.get_label() in expected}
    assert drawn == expected
