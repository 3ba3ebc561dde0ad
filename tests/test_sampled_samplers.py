"""Candidate samplers: closed-form probabilities, TensorFlow's expected counts, empirical frequencies.

Statistical tolerances (fixed seeds, so the tests are deterministic; the bounds say how far an
honest sampler may stray):
* i.i.d. draws: every class's empirical frequency within 5 standard errors sqrt(p(1−p)/N) of P(k);
* counts with replacement: mean count per class within 5 standard errors of S·P(k);
* ``unique=True``: TensorFlow's expected count 1 − (1 − p)^num_tries is an approximation (its code
  says so: it treats num_tries as fixed). The formula itself is checked exactly; against the
  empirical inclusion frequency it is within 0.03 absolute for every class of the uniform sampler
  and for the log-uniform classes with P(k) < 0.02, while it over-estimates the inclusion of the
  log-uniform head (class 0: ≈ 0.95 predicted, ≈ 0.79 observed at D = 200, S = 10) — asserted as
  such, since it is TensorFlow's behaviour that ``subtract_log_q`` inherits.
"""

from __future__ import annotations

import math

import pytest
import torch

from lossbook.sampled import (
    AllSampler,
    LearnedUnigramSampler,
    LogUniformSampler,
    UniformSampler,
    UnigramSampler,
    make_sampler,
    tf_expected_count,
)

F64 = torch.float64


def _gen(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def _zipf_counts(d):
    return 1000.0 * torch.arange(1, d + 1, dtype=F64) ** -1.2


def _samplers(d, device="cpu"):
    return [
        UniformSampler(d, device=device),
        LogUniformSampler(d, device=device),
        UnigramSampler(_zipf_counts(d), distortion=0.75, device=device),
        LearnedUnigramSampler(d, device=device),
    ]


# --- closed forms -----------------------------------------------------------------------------------


def test_closed_form_probabilities():
    d = 7
    k = torch.arange(d)
    torch.testing.assert_close(UniformSampler(d).probability(k), torch.full((d,), 1 / d, dtype=F64))
    expected = torch.tensor([(math.log(i + 2) - math.log(i + 1)) / math.log(d + 1) for i in range(d)], dtype=F64)
    torch.testing.assert_close(LogUniformSampler(d).probability(k), expected, rtol=1e-14, atol=0)
    counts = torch.tensor([5.0, 0.0, 1.0, 10.0, 2.0, 3.0, 7.0], dtype=F64)
    for distortion in (1.0, 0.75, 0.0):
        w = counts**distortion
        torch.testing.assert_close(UnigramSampler(counts, distortion=distortion).probability(k), w / w.sum())
    learned = LearnedUnigramSampler(d)
    torch.testing.assert_close(learned.probability(k), torch.full((d,), 1 / d, dtype=F64))
    learned.update(torch.tensor([3, 3, 0]))
    torch.testing.assert_close(learned.probability(k), torch.tensor([2, 1, 1, 3, 1, 1, 1], dtype=F64) / 10)


@pytest.mark.parametrize("sampler", _samplers(13), ids=lambda s: s.kind)
def test_probabilities_sum_to_one(sampler):
    assert abs(float(sampler.probability(torch.arange(13)).sum()) - 1.0) < 1e-12


def test_tf_expected_count_formula():
    p = torch.tensor([0.5, 0.01, 0.3, 1.0], dtype=F64)
    # no rejection: S·p, as TensorFlow's shortcut
    torch.testing.assert_close(tf_expected_count(p, 4, 4), 4 * p)
    # with rejections: 1 − (1 − p)^num_tries, computed as −expm1(num_tries·log1p(−p))
    torch.testing.assert_close(tf_expected_count(p, 4, 9), 1 - (1 - p) ** 9, rtol=1e-12, atol=0)
    # accurate where the naive formula cancels: 1 − (1 − p)^n ≈ n·p for tiny p
    assert float(tf_expected_count(torch.tensor([1e-12], dtype=F64), 2, 5)) == pytest.approx(5e-12, rel=1e-9)


# --- empirical frequencies --------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", _samplers(20), ids=lambda s: s.kind)
def test_iid_draws_match_probabilities(sampler, device):
    sampler = sampler.to(device)
    n = 200_000
    x = sampler.draw(n, generator=_gen(1))
    assert x.dtype == torch.int64 and x.device == device and int(x.min()) >= 0 and int(x.max()) < 20
    freq = torch.bincount(x.cpu(), minlength=20).to(F64) / n
    p = sampler.probability(torch.arange(20, device=device)).cpu()
    z = (freq - p) / torch.sqrt(p * (1 - p) / n).clamp_min(1e-300)
    assert float(z.abs().max()) < 5.0, z


def test_unigram_zero_count_is_never_drawn():
    s = UnigramSampler(torch.tensor([3.0, 0.0, 1.0, 0.0]), distortion=1.0)
    x = s.draw(20_000, generator=_gen(2))
    assert not bool(((x == 1) | (x == 3)).any())
    out = s.sample(2, generator=_gen(3))
    assert sorted(out.sampled_candidates.tolist()) == [0, 2]


def test_expected_counts_with_replacement():
    d, s, reps = 30, 8, 3000
    sampler = LogUniformSampler(d)
    counts = torch.zeros(d, dtype=F64)
    g = _gen(4)
    for _ in range(reps):
        out = sampler.sample(s, unique=False, generator=g, true_classes=torch.arange(d))
        assert out.num_tries == s
        torch.testing.assert_close(out.true_expected_count, s * sampler.probability(torch.arange(d)))
        counts += torch.bincount(out.sampled_candidates, minlength=d).to(F64)
    mean = counts / reps
    q = s * sampler.probability(torch.arange(d))
    se = torch.sqrt(s * sampler.probability(torch.arange(d)) * (1 - sampler.probability(torch.arange(d))) / reps)
    assert float(((mean - q) / se).abs().max()) < 5.0


@pytest.mark.parametrize("kind", ["uniform", "log_uniform"])
def test_unique_expected_counts_against_inclusion_frequency(kind):
    d, s, reps = 200, 10, 2000
    sampler = make_sampler(kind, d)
    g = _gen(5)
    inclusion = torch.zeros(d, dtype=F64)
    expected = torch.zeros(d, dtype=F64)
    for _ in range(reps):
        out = sampler.sample(s, unique=True, generator=g, true_classes=torch.arange(d))
        cand = out.sampled_candidates
        assert cand.unique().numel() == s
        # the formula, exactly, for the num_tries of this draw
        p = sampler.probability(torch.arange(d))
        torch.testing.assert_close(out.true_expected_count, tf_expected_count(p, s, out.num_tries))
        torch.testing.assert_close(out.sampled_expected_count, out.true_expected_count[cand])
        inclusion[cand] += 1
        expected += out.true_expected_count
    inclusion /= reps
    expected /= reps
    p = sampler.probability(torch.arange(d))
    tail = p < 0.02
    assert float((inclusion - expected)[tail].abs().max()) < 0.03
    if kind == "uniform":
        assert bool(tail.all())
    else:  # the approximation over-estimates the head's inclusion
        assert float(expected[0] - inclusion[0]) > 0.1
        assert float((inclusion - expected)[~tail].max()) < 0.03


class _Recording(LogUniformSampler):
    """Records every i.i.d. draw, to check the unique sampler against one-at-a-time rejection."""

    def __init__(self, d):
        super().__init__(d)
        self.stream = []

    def _draw(self, n, device, generator):
        x = super()._draw(n, device, generator)
        self.stream.extend(x.tolist())
        return x


@pytest.mark.parametrize("s", [1, 5, 40, 60])
def test_unique_sampling_is_sequential_rejection(s):
    sampler = _Recording(64)
    out = sampler.sample(s, unique=True, generator=_gen(6))
    seen, tries = [], 0
    for v in sampler.stream:  # TensorFlow's loop: draw, keep if new, stop at s distinct values
        tries += 1
        if v not in seen:
            seen.append(v)
        if len(seen) == s:
            break
    assert out.sampled_candidates.tolist() == seen
    assert out.num_tries == tries


def test_generator_makes_draws_reproducible_and_device_independent(device):
    a = LogUniformSampler(1000).to(device).sample(50, generator=_gen(7))
    b = LogUniformSampler(1000).to(device).sample(50, generator=_gen(7))
    assert torch.equal(a.sampled_candidates, b.sampled_candidates) and a.num_tries == b.num_tries
    assert a.sampled_candidates.device == device
    cpu = LogUniformSampler(1000).sample(50, generator=_gen(7))
    assert torch.equal(a.sampled_candidates.cpu(), cpu.sampled_candidates)


def test_learned_unigram_updates_after_computing_counts():
    s = LearnedUnigramSampler(4)
    out = s.sample(2, true_classes=torch.tensor([[1], [1]]), unique=False, generator=_gen(8))
    torch.testing.assert_close(out.true_expected_count, torch.full((2, 1), 2 * 0.25, dtype=F64))
    torch.testing.assert_close(s.counts, torch.tensor([1.0, 3.0, 1.0, 1.0], dtype=F64))
    assert "counts" in s.state_dict()


def test_all_sampler():
    out = AllSampler(5).sample(5, true_classes=torch.tensor([[0], [3]]))
    assert out.sampled_candidates.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(out.sampled_expected_count, torch.ones(5, dtype=F64))
    assert torch.equal(out.true_expected_count, torch.ones(2, 1, dtype=F64))


# --- errors -------------------------------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match=r"cannot draw 11 distinct classes out of 10 classes without replacement"):
        UniformSampler(10).sample(11, unique=True)
    UniformSampler(10).sample(11, unique=False)  # with replacement it is fine
    with pytest.raises(ValueError, match=r"out of 2 classes of positive probability"):
        UnigramSampler([1.0, 0.0, 2.0]).sample(3)
    with pytest.raises(ValueError, match=r"num_classes must be an int ≥ 1; got 0"):
        UniformSampler(0)
    with pytest.raises(ValueError, match=r"num_sampled must be an int ≥ 1; got 0"):
        UniformSampler(5).sample(0)
    with pytest.raises(ValueError, match=r"class 7 is outside \[0, 5\)"):
        UniformSampler(5).probability(torch.tensor([1, 7]))
    with pytest.raises(TypeError, match=r"classes must be an int64 tensor"):
        UniformSampler(5).probability(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"counts must be finite and non-negative"):
        UnigramSampler([1.0, -1.0])
    with pytest.raises(ValueError, match=r"sampler must be one of .* got 'zipf'"):
        make_sampler("zipf", 10)
    with pytest.raises(ValueError, match=r"draws from 5 classes but there are 10"):
        make_sampler(UniformSampler(5), 10)
    with pytest.raises(ValueError, match=r"num_sampled must equal num_classes = 5"):
        AllSampler(5).sample(3)
