"""What every chapter does first: its scale presets, seeds, device and the book's plotting style.

A chapter's parameters cell sets ``scale``, ``seed`` and ``device``; its next cell calls::

    from lossbook.lab.chapter import setup
    cfg, seeds, dev = setup("01_cross_entropy", scale=scale, seed=seed, device=device)

which applies the book's plot style, runs torch on one CPU thread (the chapters' models are small:
one thread is faster, and runs are bit-reproducible), picks the chapter's preset for ``scale``
from :data:`PRESETS`, and prints one line saying what this run will do.

The presets are the chapters' knobs: ``"smoke"`` takes seconds (tests, CI), ``"book"`` is what the
rendered book shows, ``"paper"`` is the larger run meant for a GPU. Every preset has ``n_seeds``;
the experiments use seeds ``seed, seed + 1, …, seed + n_seeds − 1``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from . import plot
from .book import SCALES
from .train import get_device

__all__ = ["PRESETS", "ChapterPresets", "ChapterSetup", "setup"]


@dataclass(frozen=True)
class ChapterPresets:
    """One chapter's configuration at each scale, and the line that :func:`setup` prints.

    ``summary`` is a :meth:`str.format` template filled with the preset's entries and ``scale``,
    ``n_seeds`` (the number of seeds run) and ``device``.
    """

    scales: dict[str, dict[str, Any]]
    summary: str = "scale={scale}: {n_seeds} seeds, device={device}"


class ChapterSetup(NamedTuple):
    """What :func:`setup` returns: the preset for the scale, the seeds to run, the torch device."""

    cfg: dict[str, Any]
    seeds: list[int]
    device: torch.device


PRESETS: dict[str, ChapterPresets] = {
    "01_cross_entropy": ChapterPresets(
        # n_seeds: the H-consistency runs and the first seeds of the digits runs; the learning rates are
        # tuned on the first tune_seeds of them, and the verdict's seeds are planned from that pilot
        # (plan_seeds, bounded by seed_bounds). The label-smoothing runs use ls_per_class training
        # images per class, an ls_hidden MLP and full-batch Adam for ls_epochs, with
        # the rate tuned per ε, and once more at the fixed rate ls_fixed_lr (trained to over-fitting).
        scales={
            "smoke": {"n_seeds": 2, "tune_seeds": 2, "seed_bounds": (3, 3), "taus": [0.0, 1.0, 1.5, 2.0],
                      "lrs": [0.03], "smoothing": [0.0, 0.1], "ls_lrs": [0.01], "ls_per_class": 20,
                      "ls_hidden": (256, 256), "ls_epochs": 60, "ls_fixed_lr": 0.01,
                      "gmm_train": 1000, "gmm_eval": 4000, "gmm_epochs": 4, "digits_epochs": 4},
            "book": {"n_seeds": 5, "tune_seeds": 3, "seed_bounds": (15, 20), "taus": [0.0, 0.5, 1.0, 1.5, 2.0],
                     "lrs": [0.003, 0.01, 0.03, 0.1], "smoothing": [0.0, 0.05, 0.1, 0.2],
                     "ls_lrs": [0.001, 0.003, 0.01, 0.03], "ls_per_class": 20, "ls_hidden": (256, 256),
                     "ls_epochs": 300, "ls_fixed_lr": 0.01, "gmm_train": 4000, "gmm_eval": 20000, "gmm_epochs": 20,
                     "digits_epochs": 30},
            "paper": {"n_seeds": 10, "tune_seeds": 5, "seed_bounds": (20, 30),
                      "taus": [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0],
                      "lrs": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "smoothing": [0.0, 0.05, 0.1, 0.2, 0.3],
                      "ls_lrs": [0.0003, 0.001, 0.003, 0.01, 0.03], "ls_per_class": 20, "ls_hidden": (512, 512),
                      "ls_epochs": 600, "ls_fixed_lr": 0.01, "gmm_train": 20000, "gmm_eval": 100000, "gmm_epochs": 40,
                      "digits_epochs": 60},
        },
        summary="scale={scale}: {n_seeds} seeds, taus={taus}, device={device}",
    ),
    "02_spherical_z_loss": ChapterPresets(
        # speed_D: the output-layer timings (speed_rounds interleaved rounds each). The language model reads
        # max_files stdlib files (vocab: the vocabulary cap, None for all words), trains for epochs; learning
        # rates start from lrs (se_lrs for squared error), the Z-loss's (a_Z, b) from z_grid, each extended past
        # an edge at most max_extensions times, all on the first tune_seeds seeds' validation split.
        scales={
            "smoke": {"n_seeds": 3, "tune_seeds": 1, "speed_D": [1_000, 10_000], "speed_rounds": 3, "max_files": 12,
                      "vocab": 2_000, "epochs": 1, "lrs": (0.1, 0.3), "se_lrs": (0.003, 0.01),
                      "z_grid": ((1.0,), (0.0, 3.0)), "max_extensions": 1},
            "book": {"n_seeds": 5, "tune_seeds": 1, "speed_D": [1_000, 10_000, 100_000, 300_000], "speed_rounds": 5,
                     "max_files": 60, "vocab": None, "epochs": 2, "lrs": (0.1, 0.3, 1.0),
                     "se_lrs": (0.001, 0.003, 0.01), "z_grid": ((0.5, 1.0, 2.0), (0.0, 3.0, 6.0)), "max_extensions": 3},
            "paper": {"n_seeds": 10, "tune_seeds": 2, "speed_D": [1_000, 10_000, 100_000, 1_000_000],
                      "speed_rounds": 5, "max_files": None, "vocab": None, "epochs": 3, "lrs": (0.03, 0.1, 0.3),
                      "se_lrs": (0.001, 0.003, 0.01), "z_grid": ((0.25, 0.5, 1.0, 2.0, 4.0), (0.0, 3.0, 6.0, 9.0)),
                      "max_extensions": 3},
        },
        summary="scale={scale}: {n_seeds} seeds, LM on {max_files} stdlib files for {epochs} epochs, "
                "step timings at D = {speed_D}, device={device}",
    ),
    "03_sampled_softmax": ChapterPresets(
        scales={
            "smoke": {"n_seeds": 3, "bias_D": 2_000, "bias_S": [10, 100, 1_000], "bias_R": 20,
                      "lm_vocab": 300, "lm_tokens": 12_000, "lm_epochs": 1, "lm_S": [10, 30, 100], "lm_seeds": 3,
                      "lm_lrs": [0.01, 0.03], "pfc_ids": 600, "pfc_per_id": 6, "pfc_epochs": 2, "pfc_batch": 32,
                      "pfc_rates": [1.0, 0.1], "pfc_curve_seeds": 2, "pfc_heldout": (100, 6), "speed_C": 20_000,
                      "rec_size": (300, 500), "rec_epochs": 5, "rec_negatives": [1, 16], "rec_seeds": 3,
                      "rec_lrs": [0.01, 0.03], "rec_fn": (16, [0.05]), "dcg_examples": 500, "max_extensions": 1,
                      "xmc_size": (200, 1_500), "xmc_max_positives": 10, "xmc_epochs": 3,
                      "xmc_lrs": [0.003, 0.01], "xmc_seeds": 3},
            "book": {"n_seeds": 10, "bias_D": 20_000, "bias_S": [10, 30, 100, 300, 1_000, 3_000, 10_000],
                     "bias_R": 100, "lm_vocab": 2_000, "lm_tokens": 60_000, "lm_epochs": 3, "lm_S": [20, 200, 1_000],
                     "lm_seeds": 6, "lm_lrs": [0.003, 0.01, 0.03], "pfc_ids": 3_000, "pfc_per_id": 8,
                     "pfc_epochs": 4, "pfc_batch": 128, "pfc_rates": [1.0, 0.5, 0.2, 0.1, 0.05], "pfc_curve_seeds": 3,
                     "pfc_heldout": (300, 8), "speed_C": 200_000, "rec_size": (1_000, 2_000), "rec_epochs": 12,
                     "rec_negatives": [1, 4, 16, 64, 256], "rec_seeds": 6, "rec_lrs": [0.003, 0.01, 0.03],
                     "rec_fn": (64, [0.01, 0.05]), "dcg_examples": 5_000, "max_extensions": 2,
                     "xmc_size": (2_000, 10_000), "xmc_max_positives": 20, "xmc_epochs": 10,
                     "xmc_lrs": [0.001, 0.003, 0.01], "xmc_seeds": 6},
            "paper": {"n_seeds": 20, "bias_D": 100_000, "bias_S": [10, 100, 1_000, 10_000, 50_000], "bias_R": 200,
                      "lm_vocab": 20_000, "lm_tokens": 2_000_000, "lm_epochs": 3, "lm_S": [100, 2_000, 10_000],
                      "lm_seeds": 10, "lm_lrs": [0.003, 0.01, 0.03], "pfc_ids": 20_000, "pfc_per_id": 10,
                      "pfc_epochs": 10, "pfc_batch": 128, "pfc_rates": [1.0, 0.5, 0.2, 0.1, 0.05],
                      "pfc_curve_seeds": 5, "pfc_heldout": (1_000, 8), "speed_C": 1_000_000,
                      "rec_size": (10_000, 20_000), "rec_epochs": 30, "rec_negatives": [1, 4, 16, 64, 256, 1_024],
                      "rec_seeds": 10, "rec_lrs": [0.003, 0.01, 0.03], "rec_fn": (256, [0.01, 0.05]),
                      "dcg_examples": 20_000, "max_extensions": 2,
                      "xmc_size": (20_000, 100_000), "xmc_max_positives": 20, "xmc_epochs": 20,
                      "xmc_lrs": [0.001, 0.003, 0.01], "xmc_seeds": 10},
        },
    ),
    "04_margin_losses": ChapterPresets(
        scales={
            # val: the validation identities (every choice); heldout: the test identities (the verdicts). The
            # learning rate is chosen per loss from lrs on the first tune_seeds seeds (smoke: one rate, since a
            # choice among rates after 3 epochs flips from one CPU to another); noise: the share of wrong
            # training labels in SphereFace2's noisy-label runs; ceiling_*: the ceiling study (one loss, one seed,
            # trained for ceiling_epochs, with ceiling_width hidden units, and on ceiling_ids times the identities).
            "smoke": {"n_seeds": 2, "tune_seeds": 1, "ids": 150, "per_id": 8, "val": (40, 6), "heldout": (60, 6),
                      "epochs": 3, "batch": 64, "lrs": [0.1], "noise": 0.2, "widget_steps": 60, "ceiling_epochs": [6],
                      "ceiling_ids": 2, "ceiling_width": 512},
            "book": {"n_seeds": 5, "tune_seeds": 1, "ids": 800, "per_id": 10, "val": (150, 8), "heldout": (300, 8),
                     "epochs": 10, "batch": 256, "lrs": [0.1, 0.2, 0.4], "noise": 0.2, "widget_steps": 300,
                     "ceiling_epochs": [30, 90], "ceiling_ids": 4, "ceiling_width": 1024},
            "paper": {"n_seeds": 10, "tune_seeds": 2, "ids": 5_000, "per_id": 20, "val": (500, 10),
                      "heldout": (1_000, 10), "epochs": 30, "batch": 256, "lrs": [0.1, 0.2, 0.4], "noise": 0.2,
                      "widget_steps": 400, "ceiling_epochs": [90, 270], "ceiling_ids": 4,
                      "ceiling_width": 1024},
        },
        summary="scale={scale}: {n_seeds} seeds, {ids:,} training identities × {per_id}, {epochs} epochs, "
                "device={device}",
    ),
    "05_label_noise": ChapterPresets(
        # epochs: the authors' MNIST recipe (APL configs/mnist); curve_rates/curve_every: the memorisation curves;
        # tune_*: the per-loss learning-rate search on validation; detect_*: MOIT on digits with pixel noise
        # detect_sigma, read every detect_every epochs, then finetune_epochs of MOIT+; ridge: the exact SD theory.
        scales={
            "smoke": {"n_seeds": 3, "epochs": 4, "sym": [0.0, 0.4, 0.6], "asym": [0.4], "curve_rates": [0.6],
                      "curve_every": 2, "tune_rate": 0.6, "tune_seeds": 2, "tune_lrs": [0.01, 0.1],
                      "detect_rate": 0.4, "detect_sigma": 1.5, "detect_epochs": 4, "detect_every": 2,
                      "finetune_epochs": 2, "sd_rates": [0.5], "xis": [0.0, 1.0, 2.0],
                      "ridge": {"n": 50, "d": 20, "lam": 1.0}, "outliers": [0.2]},
            "book": {"n_seeds": 10, "epochs": 50, "sym": [0.0, 0.4, 0.6, 0.8], "asym": [0.4], "curve_rates": [0.4, 0.6],
                     "curve_every": 5, "tune_rate": 0.4, "tune_seeds": 3, "tune_lrs": [0.003, 0.01, 0.03, 0.1, 0.3],
                     "detect_rate": 0.4, "detect_sigma": 1.5, "detect_epochs": 30, "detect_every": 2,
                     "finetune_epochs": 10, "sd_rates": [0.3, 0.5], "xis": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0],
                     "ridge": {"n": 50, "d": 20, "lam": 1.0}, "outliers": [0.1, 0.2, 0.3]},
            "paper": {"n_seeds": 20, "epochs": 50, "sym": [0.0, 0.2, 0.4, 0.6, 0.8], "asym": [0.1, 0.2, 0.3, 0.4],
                      "curve_rates": [0.4, 0.6, 0.8], "curve_every": 2, "tune_rate": 0.4, "tune_seeds": 5,
                      "tune_lrs": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "detect_rate": 0.4, "detect_sigma": 1.5,
                      "detect_epochs": 60, "detect_every": 2, "finetune_epochs": 20, "sd_rates": [0.3, 0.5],
                      "xis": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0], "ridge": {"n": 200, "d": 50, "lam": 1.0},
                      "outliers": [0.05, 0.1, 0.2, 0.3, 0.4]},
        },
        summary="scale={scale}: {n_seeds} seeds, {epochs} epochs, symmetric noise {sym}, class-pair noise {asym}, "
                "device={device}",
    ),
    "06_calibration": ChapterPresets(
        # per_class training images per class (one fixed subset), an MLP of `hidden` units trained with Adam at
        # `lr` for `epochs` (far past zero training error); gammas: the focal/dual-focal grid tuned on validation
        # over the first tune_seeds seeds (the widget shows those focal networks), with the same budget for label
        # smoothing's ε (ls_eps) and the MbLS/ACLS margin M (margins); ca_steps: full-batch Adam steps of the
        # correctness-aware calibrator.
        scales={
            "smoke": {"n_seeds": 3, "per_class": 10, "hidden": 64, "epochs": 10, "batch_size": 16, "lr": 0.003,
                      "tune_seeds": 2, "gammas": [1.0, 3.0], "ls_eps": [0.05, 0.2], "margins": [5.0, 10.0],
                      "ca_steps": 100},
            "book": {"n_seeds": 10, "per_class": 10, "hidden": 512, "epochs": 160, "batch_size": 16, "lr": 0.003,
                     "tune_seeds": 2, "gammas": [0.5, 1.0, 2.0, 3.0, 5.0], "ls_eps": [0.01, 0.02, 0.05, 0.1, 0.2],
                     "margins": [2.0, 4.0, 6.0, 10.0, 20.0], "ca_steps": 1000},
            "paper": {"n_seeds": 20, "per_class": 10, "hidden": 1024, "epochs": 300, "batch_size": 16, "lr": 0.003,
                      "tune_seeds": 5, "gammas": [0.5, 1.0, 2.0, 3.0, 5.0, 7.0],
                      "ls_eps": [0.01, 0.02, 0.05, 0.1, 0.2, 0.3], "margins": [2.0, 4.0, 6.0, 10.0, 20.0, 40.0],
                      "ca_steps": 2000},
        },
        summary="scale={scale}: {n_seeds} seeds, {per_class} training images per class, MLP {hidden} units, "
                "{epochs} epochs, device={device}",
    ),
    "09_alternatives": ChapterPresets(
        # n_seeds: the cheap digits runs (prototypes, encouraging loss, ReLU outputs); proto_*: the linear
        # harmonic layer (full-batch Adam steps, exponents n searched on validation); grok_*: modular addition
        # mod grok_p at the training fractions grok_fractions, full-batch AdamW for at most grok_steps steps;
        # el_*: the MLP recipe and the long-tail imbalance; sovr_*: PGD adversarial training at radius eps.
        scales={
            "smoke": {"n_seeds": 2, "proto_steps": 100, "proto_n": [2.0, 8.0], "grok_p": 23,
                      "grok_fractions": [0.7], "grok_steps": 500, "grok_seeds": 2, "el_epochs": 4,
                      "imbalance": 20, "sovr_seeds": 2, "sovr_epochs": 2, "sovr_fractions": [0.2, 0.5],
                      "eps": 0.1, "max_extensions": 1},
            "book": {"n_seeds": 8, "proto_steps": 300, "proto_n": [2.0, 8.0, 32.0], "grok_p": 31,
                     "grok_fractions": [0.3, 0.4, 0.5, 0.7], "grok_steps": 4000, "grok_seeds": 5, "el_epochs": 30,
                     "imbalance": 20, "sovr_seeds": 5, "sovr_epochs": 20, "sovr_fractions": [0.2, 0.4, 0.6],
                     "eps": 0.1, "max_extensions": 2},
            "paper": {"n_seeds": 20, "proto_steps": 1000, "proto_n": [1.0, 2.0, 8.0, 32.0, 128.0], "grok_p": 59,
                      "grok_fractions": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "grok_steps": 20000, "grok_seeds": 10,
                      "el_epochs": 100, "imbalance": 50, "sovr_seeds": 10, "sovr_epochs": 100,
                      "sovr_fractions": [0.1, 0.2, 0.4, 0.6, 0.8], "eps": 0.1, "max_extensions": 2},
        },
        summary="scale={scale}: {n_seeds} seeds, {grok_seeds} of them for grokking and {sovr_seeds} for SOVR, modular "
                "addition mod {grok_p} at training fractions {grok_fractions}, device={device}",
    ),
    "07_imbalance_auc_multilabel": ChapterPresets(
        # lt_*: digits-LT (the digits' training split subsampled to an exponential profile with imbalance rho),
        # an MLP (lt_hidden) trained full-batch by Adam for lt_steps at each rate in lt_lrs, the rate chosen per
        # (rho, loss) on the balanced validation split with the first tune_seeds seeds; ml_*: sklearn's multi-label
        # generator (ml_labels labels, about 2 per row, ml_n rows split 50/25/25), a linear model; auc_*: one digit
        # against the rest with auc_fractions positives, with and without 10% label noise; mauc_*: multi-label data
        # whose label-wise imbalance (max rate / min rate) runs over mauc_imbalance; sam_radii: SAM's radius grid
        # for VS at the largest rho, spectrum_*: seeds and Lanczos steps of the per-class Hessian spectra. Every
        # grid is extended once past an edge choice.
        scales={
            "smoke": {"n_seeds": 3, "tune_seeds": 2, "lt_rhos": [10, 100], "lt_lrs": [0.01, 0.03], "lt_hidden": (32,),
                      "lt_steps": 40, "ml_n": 600, "ml_labels": 20, "ml_steps": 40, "ml_lrs": [0.03, 0.1],
                      "asl_gammas": [0.0, 4.0], "auc_fractions": [0.05], "auc_steps": 60, "auc_lrs": [0.1],
                      "pesg_lrs": [1.0], "mauc_n": 800, "mauc_imbalance": [1, 20], "mauc_steps": 40,
                      "mauc_lrs": [0.03], "sam_radii": [0.1, 0.8], "spectrum_seeds": 2, "spectrum_iters": 8},
            "book": {"n_seeds": 10, "tune_seeds": 3, "lt_rhos": [10, 50, 100],
                     "lt_lrs": [0.001, 0.003, 0.01, 0.03, 0.1], "lt_hidden": (64,), "lt_steps": 150, "ml_n": 1500,
                     "ml_labels": 50, "ml_steps": 150, "ml_lrs": [0.001, 0.003, 0.01, 0.03, 0.1],
                     "asl_gammas": [0.0, 1.0, 2.0, 4.0, 6.0], "auc_fractions": [0.01, 0.05], "auc_steps": 300,
                     "auc_lrs": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "pesg_lrs": [0.3, 1.0, 3.0, 10.0, 30.0],
                     "mauc_n": 1000, "mauc_imbalance": [1, 10, 50], "mauc_steps": 150,
                     "mauc_lrs": [0.01, 0.03, 0.1, 0.3, 1.0], "sam_radii": [0.05, 0.1, 0.2, 0.5, 0.8],
                     "spectrum_seeds": 3, "spectrum_iters": 20},
            "paper": {"n_seeds": 20, "tune_seeds": 5, "lt_rhos": [10, 50, 100], "lt_lrs": [0.001, 0.003, 0.01, 0.03, 0.1],
                      "lt_hidden": (256, 256), "lt_steps": 1000, "ml_n": 6000, "ml_labels": 80, "ml_steps": 500,
                      "ml_lrs": [0.003, 0.01, 0.03, 0.1], "asl_gammas": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                      "auc_fractions": [0.01, 0.02, 0.05], "auc_steps": 1000, "auc_lrs": [0.003, 0.01, 0.03, 0.1],
                      "pesg_lrs": [0.1, 0.3, 1.0, 3.0, 10.0], "mauc_n": 10000, "mauc_imbalance": [1, 5, 10, 50, 100],
                      "mauc_steps": 500, "mauc_lrs": [0.003, 0.01, 0.03, 0.1],
                      "sam_radii": [0.05, 0.1, 0.2, 0.5, 0.8, 1.2], "spectrum_seeds": 5, "spectrum_iters": 30},
        },
        summary="scale={scale}: {n_seeds} seeds, digits-LT at imbalance {lt_rhos}, multi-label with {ml_labels} labels, "
                "one-vs-rest AUC at {auc_fractions} positives, macro-AUC at label-wise imbalance {mauc_imbalance}, "
                "device={device}",
    ),
    "10_sparse": ChapterPresets(
        # ml_*: the multi-label study (sklearn's generator: (classes, mean labels per row), n rows split 50/25/25,
        # full-batch Adam steps); ss_*: sparse-softmax on the prototype task (classes C, kept logits k, SGD rates
        # chosen on validation per C and k with ss_tune_seeds seeds, training examples per class, epochs;
        # ss_big_seeds seeds above the smallest C); time_*: one training step of each loss, interleaved rounds.
        scales={
            "smoke": {"n_seeds": 3, "ml_settings": [(10, 2)], "ml_n": 800, "ml_steps": 60, "ss_C": [300, 1_000],
                      "ss_k": [5, 20], "ss_lrs": [300.0, 1000.0], "ss_tune_seeds": 2, "ss_per_class": 2,
                      "ss_epochs": 2, "ss_big_seeds": 3, "time_C": [1_000, 10_000], "time_rounds": 5,
                      "time_min": 0.1},
            "book": {"n_seeds": 10, "ml_settings": [(10, 2), (30, 4)], "ml_n": 2_400, "ml_steps": 200,
                     "ss_C": [1_000, 3_000, 10_000], "ss_k": [5, 20, 100], "ss_lrs": [100.0, 300.0, 1000.0, 3000.0],
                     "ss_tune_seeds": 2, "ss_per_class": 3, "ss_epochs": 3, "ss_big_seeds": 5,
                     "time_C": [1_000, 10_000, 100_000], "time_rounds": 5, "time_min": 1.0},
            "paper": {"n_seeds": 20, "ml_settings": [(10, 2), (30, 4), (100, 8)], "ml_n": 6_000, "ml_steps": 500,
                      "ss_C": [1_000, 10_000, 100_000], "ss_k": [5, 20, 100],
                      "ss_lrs": [100.0, 300.0, 1000.0, 3000.0, 10000.0], "ss_tune_seeds": 3, "ss_per_class": 4,
                      "ss_epochs": 3, "ss_big_seeds": 10, "time_C": [1_000, 10_000, 100_000, 1_000_000],
                      "time_rounds": 7, "time_min": 2.0},
        },
        summary="scale={scale}: {n_seeds} seeds, multi-label (classes, labels) {ml_settings}, sparse-softmax "
                "accuracy at C = {ss_C}, step timings at C = {time_C}, device={device}",
    ),
    "08_metric_learning": ChapterPresets(
        # dig_*: digits retrieval (train on 0–5, validate on a split of their images, retrieve 6–9), an MLP
        # 64 → 128 → 16 trained with Adam for dig_epochs over P × K batches (dig_batch); spk_*: synthetic speakers
        # (vMF centre per speaker, concentration kappa; (speakers, utterances) for train, validation and test),
        # MLP 64 → 128 → 32, N × M batches (spk_batch), validation EER every curve_every steps for GE2E and TE2E.
        # The learning rate of every method comes from lrs on the first tune_seeds seeds (validation only; a
        # choice on the edge extends the grid max_extensions times). time_*: one loss step at batch sizes time_N.
        # fs_*: few-shot (train on digits 0–4, 5-way episodes on 5–9): fs_episodes episodes per shot in fs_shots
        # with fs_query queries per class, on validation images of 0–4 (choices) and on 5–9 (test),
        # over more_seeds seeds (as the Metrix comparison, planned for a 2-point effect). lt_*: digits-LT
        # (training split subsampled to imbalance lt_imbalance), random batches of lt_batch for lt_epochs (rates from
        # lt_lrs), a linear probe, tail accuracy on the lt_tail rarest classes.
        scales={
            "smoke": {"n_seeds": 3, "tune_seeds": 1, "lrs": [0.001], "max_extensions": 0, "dig_epochs": 2,
                      "fs_shots": [1, 5], "fs_episodes": 20, "fs_query": 5, "more_seeds": 3,
                      "lt_imbalance": 10, "lt_epochs": 3, "lt_batch": 64, "lt_tail": 3, "lt_lrs": [0.001],
                      "dig_batch": (6, 12), "kappa": 30.0, "spk_train": (64, 6), "spk_val": (30, 6),
                      "spk_test": (40, 6), "spk_epochs": 3, "spk_batch": (16, 3), "curve_every": 3,
                      "time_N": [64, 256], "time_C": 100, "time_rounds": 3, "time_min": 0.1},
            "book": {"n_seeds": 10, "tune_seeds": 3, "lrs": [0.0003, 0.001, 0.003], "max_extensions": 2,
                     "fs_shots": [1, 5], "fs_episodes": 300, "fs_query": 15, "more_seeds": 20,
                     "lt_imbalance": 10, "lt_epochs": 60, "lt_batch": 64, "lt_tail": 3,
                     "lt_lrs": [0.001, 0.003, 0.01, 0.03],
                     "dig_epochs": 20, "dig_batch": (6, 16), "kappa": 30.0, "spk_train": (200, 12),
                     "spk_val": (60, 8), "spk_test": (100, 8), "spk_epochs": 15, "spk_batch": (32, 3),
                     "curve_every": 25, "time_N": [64, 256, 1024, 2048], "time_C": 100, "time_rounds": 5,
                     "time_min": 1.0},
            "paper": {"n_seeds": 20, "tune_seeds": 5, "lrs": [0.0001, 0.0003, 0.001, 0.003], "max_extensions": 2,
                      "fs_shots": [1, 5], "fs_episodes": 1000, "fs_query": 15, "more_seeds": 30,
                      "lt_imbalance": 10, "lt_epochs": 100, "lt_batch": 64, "lt_tail": 3,
                      "lt_lrs": [0.001, 0.003, 0.01, 0.03], "dig_epochs": 40, "dig_batch": (6, 32), "kappa": 30.0,
                      "spk_train": (1_000, 20), "spk_val": (200, 10), "spk_test": (500, 10), "spk_epochs": 30,
                      "spk_batch": (64, 10),
                      "curve_every": 50, "time_N": [64, 256, 1024, 4096], "time_C": 1_000, "time_rounds": 7,
                      "time_min": 2.0},
        },
        summary="scale={scale}: {n_seeds} seeds, digits 0–5 → 6–9 for {dig_epochs} epochs, speakers (train, val, "
                "test) {spk_train} {spk_val} {spk_test} for {spk_epochs} epochs, step timings at N = {time_N}, "
                "device={device}",
    ),
}


def setup(chapter: str, *, scale: str, seed: int, device: str | torch.device = "auto", note: str | None = None,
          verbose: bool = True) -> ChapterSetup:
    """Prepare a chapter's run; returns ``(cfg, seeds, device)`` as a :class:`ChapterSetup`.

    ``chapter`` is the notebook's name without ``.ipynb`` (a key of :data:`PRESETS`), ``scale`` one
    of ``"smoke"``, ``"book"``, ``"paper"``, ``seed`` the first seed and ``device`` as in
    :func:`lossbook.lab.train.get_device`. Applies the book's plot style, sets torch to one thread,
    and (``verbose``) prints the preset's summary line, followed by ``"; " + note`` when given.
    ``cfg`` is a copy: a chapter may change it without touching :data:`PRESETS`.
    """
    if chapter not in PRESETS:
        raise ValueError(f"setup: no presets for chapter {chapter!r}; known chapters: {sorted(PRESETS)}. "
                         "Add the chapter's presets to lossbook.lab.chapter.PRESETS.")
    if scale not in SCALES:
        raise ValueError(f"setup: scale must be one of {SCALES}; got {scale!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"setup: seed must be an int; got {type(seed).__name__} {seed!r}.")
    presets = PRESETS[chapter]
    cfg = copy.deepcopy(presets.scales[scale])
    seeds = list(range(seed, seed + cfg["n_seeds"]))
    dev = get_device(device)
    plot.use_style()
    torch.set_num_threads(1)
    if verbose:
        line = presets.summary.format_map({**cfg, "scale": scale, "n_seeds": len(seeds), "device": dev})
        print(line if note is None else f"{line}; {note}")
    return ChapterSetup(cfg, seeds, dev)
