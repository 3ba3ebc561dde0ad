"""The chapter-8 helper in the lab: class-balanced P × K batches (lossbook.lab.data.pk_batches)."""

from __future__ import annotations

import pytest
import torch

from lossbook.lab.data import pk_batches


def test_pk_batches_hold_p_classes_times_k_samples_without_repeats_inside_a_batch():
    y = torch.arange(7).repeat_interleave(torch.tensor([5, 6, 7, 8, 9, 10, 11]))
    batches = pk_batches(y, 4, 3, generator=torch.Generator().manual_seed(0))
    assert len(batches) == len(y) // 12
    for idx in batches:
        labels, counts = torch.unique(y[idx], return_counts=True)
        assert len(labels) == 4 and bool((counts == 3).all())
        assert len(torch.unique(idx)) == len(idx)


def test_pk_batches_are_reproducible_and_cover_the_classes():
    y = torch.arange(5).repeat(6)
    a = pk_batches(y, 5, 2, generator=torch.Generator().manual_seed(1), num_batches=9)
    b = pk_batches(y, 5, 2, generator=torch.Generator().manual_seed(1), num_batches=9)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and len(a) == 9
    # a class's samples are used without replacement until it runs out: 3 batches use all 6 samples of each class
    first_three = torch.cat(a[:3])
    assert len(torch.unique(first_three)) == 30


@pytest.mark.parametrize("kwargs, pattern", [({"classes_per_batch": 6, "per_class": 2}, "classes_per_batch"),
                                             ({"classes_per_batch": 2, "per_class": 7}, "per_class"),
                                             ({"classes_per_batch": 0, "per_class": 2}, "classes_per_batch")])
def test_pk_batches_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        pk_batches(torch.arange(5).repeat(6), generator=torch.Generator(), **kwargs)
    with pytest.raises(TypeError, match="int64"):
        pk_batches(torch.arange(5).float(), 2, 1, generator=torch.Generator())
