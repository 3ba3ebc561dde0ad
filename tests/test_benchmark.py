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
    for method in ("softmax", "factored", "hierarchical_zipf", "hierarchical_uniform"):
        output_layer_step(method, D=50, d=8, m=4)()
    with pytest.raises(ValueError, match="method must be one of"):
        output_layer_step("nope", D=50, d=8, m=4)


def test_spherical_step_benchmark_prints_and_records_the_hierarchical_ratios(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "spherical_step.py"
    spec = importlib.util.spec_from_file_location("spherical_step", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"  # D > 2000: the adaptive softmax needs a cutoff below D
    assert bench.main(["--D", "2500", "--d", "8", "--m", "4", "--min-time", "0.01", "--max-reps", "2",
                       "--rounds", "2", "--no-memory", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hierarchical_zipf" in text and "hzipf/fact" in text and "hunif/fact" in text
    (row,) = json.loads(out.read_text())["rows"]
    assert {"hierarchical_zipf", "hierarchical_uniform", "factored", "softmax"} <= set(row["ms"])
    assert len(row["ratio_rounds_hierarchical_zipf"]) == 2 and row["ratio_hierarchical_uniform"] > 0


def test_count_flops_counts_matrix_products_from_their_shapes():
    from lossbook.lab.benchmark import count_flops, matmul_step

    step, flops = matmul_step(7, k=5, m=3)
    assert flops == 2 * 3 * 5 * 7
    assert count_flops(step) == {"total": flops, "mm": flops}
    a, b = torch.randn(4, 6), torch.randn(6, 2)
    assert count_flops(lambda: (a @ b).exp_())["total"] == 2 * 4 * 6 * 2  # elementwise work is not counted


def test_factored_step_flops_are_of_order_m_d_squared():
    from lossbook.lab.benchmark import count_flops

    m, d = 16, 32
    small, large = (count_flops(output_layer_step("factored", D, d, m))["total"] for D in (100, 1000))
    # independent of D but for the series of the inverse's update, whose terms (each an m×m product)
    # are fewer when ‖ηS‖ = O(η/D) is smaller
    assert 0 <= small - large <= 4 * 2 * m**3
    assert 2 * m * (d + 1) ** 2 < large < 40 * m * (d + 1) ** 2
