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


def test_named_evaluation_sets_are_read_from_one_training_run(chain_data):
    """A dict of sets is evaluated after the same training: each set's accuracies equal those of a
    run that evaluates that set alone, under its name's prefix."""
    train, test = chain_data
    half = (test[0][: len(test[0]) // 2], test[1][: len(test[1]) // 2])
    cfg = LMConfig(output="z_loss", context=2, embedding=16, hidden=32, epochs=1, lr=0.1)
    both = train_ngram_lm(train, {"val": half, "test": test}, 200, cfg, seed=0, ks=(1, 5), device="cpu",
                          progress=False)
    alone = train_ngram_lm(train, test, 200, cfg, seed=0, ks=(1, 5), device="cpu", progress=False)
    assert {k: both[f"test_{k}"] for k in ("top1", "top5")} == {k: alone[k] for k in ("top1", "top5")}
    assert set(both) >= {"val_top1", "val_top5", "test_top1", "test_top5", "steps", "ms_per_step"}
    assert "top1" not in both
    with pytest.raises(ValueError, match="non-empty dict"):
        train_ngram_lm(train, {}, 200, cfg, device="cpu", progress=False)


def test_a_diverging_run_reports_zero_on_every_named_set(chain_data):
    train, test = chain_data
    cfg = LMConfig(output="squared_error", context=2, embedding=16, hidden=32, epochs=1, lr=1e3)
    out = train_ngram_lm(train, {"val": test, "test": test}, 200, cfg, seed=0, ks=(1, 5), device="cpu",
                         progress=False, raise_on_divergence=False)
    assert out["diverged"] and out["val_top1"] == out["test_top5"] == 0.0


@pytest.mark.parametrize("sparse_embedding", [False, True])
def test_hierarchical_output_beats_chance_and_is_reproducible(chain_data, sparse_embedding):
    train, test = chain_data
    cfg = LMConfig(output="hierarchical", context=2, embedding=16, hidden=32, epochs=2, lr=0.1,
                   sparse_embedding=sparse_embedding)
    a = train_ngram_lm(train, test, 200, cfg, seed=0, ks=(1, 5, 20), device="cpu", progress=False)
    b = train_ngram_lm(train, test, 200, cfg, seed=0, ks=(1, 5, 20), device="cpu", progress=False)
    assert {k: a[k] for k in ("top1", "top5", "top20")} == {k: b[k] for k in ("top1", "top5", "top20")}
    assert a["top1"] <= a["top5"] <= a["top20"] <= 1.0
    assert a["top20"] > 3 * 20 / 200  # chance is 10%


def test_sparse_embedding_trains_like_dense(chain_data):
    """SGD with sparse embedding gradients updates the same rows by the same amounts."""
    train, test = chain_data
    dense, sparse = (train_ngram_lm(train, test, 200, LMConfig(output="z_loss", context=2, embedding=16, hidden=32,
                                                               lr=0.1, max_steps=20, sparse_embedding=s),
                                    seed=0, ks=(1, 5), device="cpu", progress=False) for s in (False, True))
    assert dense["top5"] == pytest.approx(sparse["top5"], abs=0.02)


@pytest.mark.parametrize("output", ["softmax", "z_loss", "hierarchical"])
def test_profile_splits_each_step_into_output_layer_and_rest(chain_data, output):
    from lossbook.lab.lm import profile_ngram_lm

    train, _ = chain_data
    cfg = LMConfig(output=output, context=2, embedding=16, hidden=32, lr=0.1, batch_size=64)
    out = profile_ngram_lm(train, 200, cfg, steps=5, warmup=1, device="cpu")
    assert set(out) >= {"ms_per_step", "ms_output", "ms_rest", "output_share", "steps", "tokens_per_s", "loss"}
    assert out["steps"] == 5 and out["ms_output"] > 0 and out["ms_rest"] > 0 and 0 < out["output_share"] <= 1
    assert torch.isfinite(torch.tensor(out["loss"]))
    with pytest.raises(ValueError, match="steps must be an int"):
        profile_ngram_lm(train, 200, cfg, steps=0, device="cpu")
