"""lossbook.lab.benchmark: the timing helpers the benchmarks and chapters rely on (no timed assertions)."""

from __future__ import annotations

import pytest
import torch

from lossbook.lab.benchmark import output_layer_step, round_ratios, time_interleaved, time_step


def test_time_step_warms_up_then_stops_at_max_reps():
    calls = []
    assert time_step(lambda: calls.append(1), min_time=60.0, max_reps=7, warmup=2) >= 0.0
    assert len(calls) == 2 + 7


def test_time_interleaved_alternates_methods_and_restores_threads():
    order, seen_threads = [], {}
    threads_before = torch.get_num_threads()

    def make(name):
        def step():
            order.append(name)
            seen_threads.setdefault(name, set()).add(torch.get_num_threads())
        return step

    times = time_interleaved({"a": make("a"), "b": make("b")}, rounds=3, min_time=60.0, max_reps=6,
                             threads={"b": 1})
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    # round 0: warm-up call + 2 timed calls per method; later rounds: 2 timed calls, a before b
    assert order == ["a"] * 3 + ["b"] * 3 + (["a"] * 2 + ["b"] * 2) * 2
    assert seen_threads["b"] == {1} and seen_threads["a"] == {threads_before}
    assert torch.get_num_threads() == threads_before
    assert round_ratios({"a": [2.0, 3.0], "b": [1.0, 6.0]}, "a", "b") == [2.0, 0.5]
    with pytest.raises(ValueError, match="rounds"):
        time_interleaved({"a": make("a")}, rounds=0)


def test_output_layer_steps_run_and_reject_unknown_methods():
    for method in ("softmax", "factored"):
        output_layer_step(method, D=50, d=8, m=4)()
    with pytest.raises(ValueError, match="method must be one of"):
        output_layer_step("nope", D=50, d=8, m=4)
