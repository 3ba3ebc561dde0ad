"""The book's machinery: what the chapters use to run their experiments (not needed to use a loss).

* :mod:`.chapter`      what every chapter does first (scale presets, seeds, device, style)
* :mod:`.data`         synthetic and small real data sets, label noise
* :mod:`.corpus`       language-model data (stdlib tokens, vocabulary, n-grams, a Zipf Markov chain)
* :mod:`.train`        seeding, devices, a small MLP, the training loop ``fit``
* :mod:`.experiments`  grids over seeds, summaries, claims and computed verdicts (the claims protocol)
* :mod:`.selection`    choosing settings on validation data only, extending grids past their edges
* :mod:`.tune`         tuning each compared method on validation with the same budget, then running it
* :mod:`.calibrate`    temperature scaling fitted on validation, per-split accuracy, NLL and ECE
* :mod:`.consistency`  chapter 1's H-consistency experiment
* :mod:`.lm`           chapter 2's n-gram language model
* :mod:`.distill`      training a student by self-distillation (chapter 5)
* :mod:`.algorithmic`  modular addition and the grokking run (chapter 9)
* :mod:`.adversarial`  FGSM and PGD perturbations in the L∞ ball (chapter 9)
* :mod:`.benchmark`    timing and memory of a training step
* :mod:`.plot`, :mod:`.widgets`  the book's plotting style and interactive figures
* :mod:`.book`         running the chapters with papermill, gathering their claims, run records
* :mod:`.golden`       comparing a run with the committed golden run, on any CPU

The lab imports the losses freely; no loss imports the lab, and ``import lossbook`` does not load it.
Import the modules by name: ``from lossbook.lab import data, train``.
"""
