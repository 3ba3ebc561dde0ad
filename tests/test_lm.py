"""The n-gram language model used by the spherical chapter."""

from __future__ import annotations

import pytest
import torch

from lossbook.lab.corpus import ZipfMarkovChain, ngram_dataset, split_ids
from lossbook.lab.lm import LMConfig, topk_accuracy_curve, train_ngram_lm


def test_topk_accuracy_curve_counts_hits_by_rank():
    top = torch.tensor([[3, 1, 2], [0, 2, 1], [5, 6, 7]])
    acc = topk_accuracy_curve(top, torch.tensor([1, 0, 9]), ks=(1, 2, 3))
    assert acc == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3)}


@pytest.fixture(scope="module")
def chain_data():
    ids = ZipfMarkovChain(200, rank=8, coherence=0.9, seed=0).sample(6000, seed=1)
    train, _, test = split_ids(ids, (0.8, 0.1, 0.1))
    return ngram_dataset(train, 2), ngram_dataset(test, 2)


@pytest.mark.parametrize("output", ["softmax", "z_loss", "taylor_softmax"])
def test_training_beats_chance_and_is_reproducible(chain_data, output):
    train, test = chain_data
    cfg = LMConfig(output=output, context=2, embedding=16, hidden=32, epochs=2, lr=0.1)
    a = train_ngram_lm(train, test, 200, cfg, seed=0, ks=(1, 5, 20), device="cpu", progress=False)
    b = train_ngram_lm(train, test, 200, cfg, seed=0, ks=(1, 5, 20), device="cpu", progress=False)
    assert {k: a[k] for k in ("top1", "top5", "top20")} == {k: b[k] for k in ("top1", "top5", "top20")}
    assert a["top1"] <= a["top5"] <= a["top20"] <= 1.0
    assert a["top20"] > 3 * 20 / 200  # chance is 10%
    assert a["steps"] == 2 * -(-len(train[0]) // 128)
