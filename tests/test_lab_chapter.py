"""lossbook.lab.chapter: the one call at the top of every chapter (presets, seeds, device, style)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from lossbook.lab import chapter, data
from lossbook.lab.book import SCALES
from lossbook.lab.chapter import PRESETS, ChapterSetup, setup

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHAPTERS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(autouse=True)
def _restore_global_state():
    """setup() sets torch's thread count and matplotlib's style: put both back after each test."""
    threads = torch.get_num_threads()
    with plt.rc_context():
        yield
    torch.set_num_threads(threads)


def test_every_chapter_has_presets_and_every_preset_a_chapter():
    assert CHAPTERS and sorted(PRESETS) == CHAPTERS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_cover_every_scale_with_the_same_knobs(name):
    scales = PRESETS[name].scales
    assert tuple(scales) == SCALES
    keys = {s: set(cfg) for s, cfg in scales.items()}
    assert keys["smoke"] == keys["book"] == keys["paper"], keys
    n = [scales[s]["n_seeds"] for s in SCALES]
    assert all(isinstance(k, int) and k >= 2 for k in n) and n == sorted(n), n


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("scale", SCALES)
def test_setup_returns_the_preset_the_seeds_and_the_device(name, scale, capsys):
    out = setup(name, scale=scale, seed=7, device="cpu")
    assert isinstance(out, ChapterSetup)
    cfg, seeds, dev = out
    assert cfg == PRESETS[name].scales[scale]
    assert seeds == list(range(7, 7 + cfg["n_seeds"]))
    assert dev == torch.device("cpu")
    assert torch.get_num_threads() == 1
    line = capsys.readouterr().out
    assert line.startswith(f"scale={scale}: {len(seeds)} seeds, ") and line.endswith("device=cpu\n")


def test_setup_prints_each_chapters_line():
    """The exact lines the chapters print at book scale (their stored outputs start with them)."""
    expected = {
        "01_cross_entropy": "scale=book: 5 seeds, taus=[0.0, 0.5, 1.0, 1.5, 2.0], device=cpu",
        "02_spherical_z_loss": "scale=book: 5 seeds, LM on 60 stdlib files for 2 epochs, step timings at D = "
                               "[1000, 10000, 100000, 300000], device=cpu",
        "03_sampled_softmax": "scale=book: 10 seeds, device=cpu",
        "04_margin_losses": "scale=book: 5 seeds, 800 training identities × 10, 10 epochs, device=cpu",
        "05_label_noise": "scale=book: 10 seeds, 50 epochs, symmetric noise [0.0, 0.4, 0.6, 0.8], "
                          "class-pair noise [0.4], device=cpu",
        "06_calibration": "scale=book: 10 seeds, 10 training images per class, MLP 512 units, 160 epochs, device=cpu",
        "08_metric_learning": "scale=book: 10 seeds, digits 0–5 → 6–9 for 20 epochs, speakers (train, val, test) "
                              "(200, 12) (60, 8) (100, 8) for 15 epochs, step timings at N = [64, 256, 1024, 2048], "
                              "device=cpu",
        "07_imbalance_auc_multilabel": "scale=book: 10 seeds, digits-LT at imbalance [10, 50, 100], multi-label with 50 "
                                       "labels, one-vs-rest AUC at [0.01, 0.05] positives, macro-AUC at label-wise "
                                       "imbalance [1, 10, 50], device=cpu",
        "09_alternatives": "scale=book: 8 seeds, 5 of them for grokking and 5 for SOVR, modular addition mod 31 at "
                           "training fractions [0.3, 0.4, 0.5, 0.7], device=cpu",
        "10_sparse": "scale=book: 10 seeds, multi-label (classes, labels) [(10, 2), (30, 4)], sparse-softmax "
                     "accuracy at C = [1000, 3000, 10000], step timings at C = [1000, 10000, 100000], device=cpu",
    }
    assert set(expected) == set(PRESETS)
    for name, line in expected.items():
        preset = PRESETS[name]
        cfg = preset.scales["book"]
        got = preset.summary.format_map({**cfg, "scale": "book", "n_seeds": cfg["n_seeds"], "device": "cpu"})
        assert got == line, name


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_committed_setup_output_is_what_setup_prints(name, capsys):
    """The chapters' stored outputs (book scale, ~45 min to recompute) stay true to the code."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "setup(" in "".join(c["source"]))
    stored = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("name") == "stdout")
    if not stored:
        pytest.skip("the committed notebook has no stored output")
    scale = re.match(r"scale=(\w+):", stored).group(1)
    device = re.search(r"device=([\w:]+)", stored).group(1)
    note = None
    if "; digits " in stored:
        note = f"digits {data.load_digits().sizes()}"
    setup(name, scale=scale, seed=0, device=torch.device(device), note=note)
    assert capsys.readouterr().out == stored


def test_note_and_quiet(capsys):
    setup("02_spherical_z_loss", scale="smoke", seed=0, device="cpu", note="extra")
    assert capsys.readouterr().out == ("scale=smoke: 3 seeds, LM on 12 stdlib files for 1 epochs, step timings at "
                                       "D = [1000, 10000], device=cpu; extra\n")
    setup("02_spherical_z_loss", scale="smoke", seed=0, device="cpu", verbose=False)
    assert capsys.readouterr().out == ""


def test_cfg_is_a_copy():
    cfg, _, _ = setup("01_cross_entropy", scale="smoke", seed=0, device="cpu", verbose=False)
    cfg["taus"].append(99.0)
    cfg["n_seeds"] = 0
    assert 99.0 not in PRESETS["01_cross_entropy"].scales["smoke"]["taus"]
    assert PRESETS["01_cross_entropy"].scales["smoke"]["n_seeds"] == 2


def test_setup_applies_the_book_style(monkeypatch):
    calls = []
    monkeypatch.setattr(chapter.plot, "use_style", lambda: calls.append(True))
    setup("01_cross_entropy", scale="smoke", seed=0, device="cpu", verbose=False)
    assert calls == [True]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"chapter": "99_nothing", "scale": "smoke", "seed": 0}, ValueError, r"no presets for chapter '99_nothing'"),
        ({"chapter": "01_cross_entropy", "scale": "huge", "seed": 0}, ValueError, r"scale must be one of"),
        ({"chapter": "01_cross_entropy", "scale": "smoke", "seed": 1.5}, TypeError, r"seed must be an int"),
        ({"chapter": "01_cross_entropy", "scale": "smoke", "seed": True}, TypeError, r"seed must be an int"),
    ],
)
def test_setup_errors_say_what_to_do(kwargs, error, match):
    name = kwargs.pop("chapter")
    with pytest.raises(error, match=match):
        setup(name, device="cpu", **kwargs)
