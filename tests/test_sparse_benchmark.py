"""benchmarks/sparse_softmax.py runs at a tiny size and records every method's ratio (no timed assertions)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch


def _load():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sparse_softmax.py"
    spec = importlib.util.spec_from_file_location("sparse_softmax_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_sparse_softmax_benchmark_prints_and_records_the_ratios(tmp_path, capsys):
    bench = _load()
    assert bench.main(["--C", "50", "300", "--k", "5", "100", "--m", "4", "--min-time", "0.01", "--reps", "2",
                       "--rounds", "2", "--sparsemax-max-c", "100", "--out-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "method/softmax" in text and "sparse_softmax_5" in text
    rows = json.loads((tmp_path / "sparse_softmax_cpu.json").read_text())["rows"]
    assert [r["C"] for r in rows] == [50, 300]
    # k ≥ C is softmax itself and is skipped; the full sort only up to --sparsemax-max-c
    assert set(rows[0]["ratio_vs_softmax"]) == {"softmax", "sparse_softmax_5", "sparsemax_sort", "sparsemax_topk"}
    assert set(rows[1]["ratio_vs_softmax"]) == {"softmax", "sparse_softmax_5", "sparse_softmax_100", "sparsemax_topk"}
    assert all(len(v) == 2 for v in rows[1]["round_ratios"].values())
    assert (tmp_path / "sparse_softmax_cpu.txt").read_text().startswith("device=cpu")


def test_benchmark_losses_agree_with_the_library():
    import torch.nn.functional as F

    import lossbook.functional as LF

    bench = _load()
    z = torch.randn(6, 200, dtype=torch.float64)
    y = torch.randint(0, 200, (6,))
    torch.testing.assert_close(bench.loss_of("sparsemax_sort")(z, y), LF.sparsemax_loss(z, y))
    torch.testing.assert_close(bench.loss_of("sparsemax_topk")(z, y), LF.sparsemax_loss(z, y))
    torch.testing.assert_close(bench.loss_of("sparse_softmax_200")(z, y), F.cross_entropy(z, y))
    with pytest.raises(ValueError, match="unknown method"):
        bench.loss_of("nope")
    bench.make_step("sparse_softmax_5", 40, 3, 8, "cpu")()  # with an nn.Linear in front
