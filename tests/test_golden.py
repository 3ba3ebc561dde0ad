"""The golden comparison (lossbook.lab.golden): what it lets through and what it catches."""

from __future__ import annotations

import json

import pytest

from lossbook.lab import golden
from lossbook.lab.experiments import CLAIMS_KEY

TRAINED = golden.DEFAULT_TOLERANCES["trained"]
FLOAT = golden.DEFAULT_TOLERANCES["float"]


def test_exact_text_must_be_identical():
    assert golden.compare_text("acc 0.9556", "acc 0.9556", golden.Tolerance()) is None
    assert golden.compare_text("acc 0.9556", "acc 0.9557", golden.Tolerance()) is not None


@pytest.mark.parametrize(("ref", "test"), [
    ("top1 0.3015 (n=2)", "top1 0.3017 (n=2)"),
    ("+0.010 [-0.073, +0.092]", "+0.005 [-0.064, +0.083]"),
    ("   0.3238  0.0070\nsoftmax   0.9", " 0.3200 0.0048\nsoftmax 0.9"),  # realigned columns
    ("−0.012", "+0.004"),  # the Unicode minus is a sign
    ("<td>0.1277</td>", "<td>0.1276</td>"),
])
def test_trained_numbers_within_tolerance_pass(ref, test):
    assert golden.compare_text(ref, test, TRAINED) is None


@pytest.mark.parametrize(("ref", "test", "why"), [
    ("acc 0.95", "acc 0.85", "number 1"),  # beyond atol + rtol·|golden|
    ("holds in 3 of 5 checks", "holds in 4 of 5 checks", "integers must match"),
    ("1797 samples", "1798 samples", "integers must match"),
    ("verdict: supported", "verdict: inconclusive", "words differ"),
    ("0.1 0.2", "0.1", "numbers"),
    ("lr 2.7", "lr 8.1 (at the edge)", "words differ"),
    ("nan", "0.5", "number 1"),
])
def test_trained_comparison_catches(ref, test, why):
    diff = golden.compare_text(ref, test, TRAINED)
    assert diff is not None and why in diff, diff


def test_float_class_for_identities_near_zero():
    assert golden.compare_text("max error 1.8e-15", "max error 8.9e-16", FLOAT) is None
    assert golden.compare_text("max error 1.8e-15", "max error 2.0e-6", FLOAT) is not None


def test_names_with_digits_are_words_not_numbers():
    # "NC1", "top5", "x2" stay words: a change there is a change of words
    assert golden.compare_text("NC1 0.5 top5 0.2", "NC2 0.5 top5 0.2", TRAINED) is not None
    assert golden.compare_text("top5 0.20", "top5 0.21", TRAINED) is None


def test_timing_class_ignores_numbers_not_words():
    timing = golden.DEFAULT_TOLERANCES["timing"]
    assert golden.compare_text("1.6 ms per step", "3.9 ms per step", timing) is None
    assert golden.compare_text("1.6 ms per step", "1.6 s per step", timing) is not None


def test_shape_class_compares_line_counts():
    shape = golden.DEFAULT_TOLERANCES["shape"]
    assert golden.compare_text("best: A 0.1, B 0.2\nx", "best: B 0.2, A 0.1\ny", shape) is None
    assert golden.compare_text("a\nb", "a", shape) is not None


def _claim_rows(verdict="supported", measured="A 0.90 vs B 0.80; +0.10 [+0.05, +0.15] (n=2)", **extra):
    return [{"paper": "p", "claim": "c", "setting": "s", "measured": measured, "verdict": verdict,
             "rule": "r", **extra}]


def test_claims_verdicts_must_match():
    assert golden.compare_claims(_claim_rows(), _claim_rows(measured="A 0.91 vs B 0.80; +0.11 [+0.04, +0.16] (n=2)"),
                                 TRAINED) is None
    diff = golden.compare_claims(_claim_rows(), _claim_rows("inconclusive"), TRAINED)
    assert diff is not None and "verdict" in diff
    # even where the rest of the row is not compared
    assert golden.compare_claims(_claim_rows(), _claim_rows("inconclusive"), golden.DEFAULT_TOLERANCES["shape"])


def test_claims_verdict_may_differ_where_the_golden_run_marks_it_unstable():
    ref = _claim_rows(stability="unstable (2 of 5 leave-one-out verdicts differ)")
    test = _claim_rows("inconclusive", stability="stable")
    assert golden.compare_claims(ref, test, TRAINED) is None
    assert golden.compare_claims(_claim_rows(stability="stable"), test, TRAINED) is not None


def test_cell_class_from_tags():
    assert golden.cell_class([]) == {"*": "exact"}
    assert golden.cell_class(["golden-trained", "golden-shape:stdout", "remove-input"]) == {
        "*": "trained", "stdout": "shape"}
    with pytest.raises(ValueError, match="unknown tag"):
        golden.cell_class(["golden-loose"])
    with pytest.raises(ValueError, match="two classes"):
        golden.cell_class(["golden-trained", "golden-float"])


def test_chapter_tolerances_from_metadata():
    tol = golden.chapter_tolerances({"lossbook": {"golden": {"trained": {"atol": 0.05}}}})
    assert tol["trained"] == golden.Tolerance(atol=0.05, rtol=TRAINED.rtol, ulp=TRAINED.ulp)
    assert tol["float"] == FLOAT
    with pytest.raises(ValueError, match="unknown classes"):
        golden.chapter_tolerances({"lossbook": {"golden": {"noisy": {}}}})
    with pytest.raises(ValueError, match="must be ≥ 0"):
        golden.Tolerance(atol=-1.0)


def _claims_output(rows):
    return {"output_type": "display_data", "metadata": {CLAIMS_KEY: {"chapter": "x", "rows": rows}},
            "data": {"text/html": "<table>…</table>", "text/plain": json.dumps(rows)}}


def test_compare_cell_by_output_class():
    stream = lambda text: {"output_type": "stream", "name": "stdout", "text": text}  # noqa: E731
    table = lambda text: {"output_type": "execute_result", "metadata": {}, "data": {"text/plain": text}}  # noqa: E731
    ref = [stream("chose lr 2.7\n"), table("acc 0.90")]
    now = [stream("chose lr 8.1\n"), table("acc 0.91")]
    assert golden.compare_cell(ref, now, tags=["golden-trained"]) is not None  # the choice flipped
    assert golden.compare_cell(ref, now, tags=["golden-trained", "golden-shape:stdout"]) is None
    assert golden.compare_cell(ref, [stream("chose lr 8.1\n"), table("acc 0.70")],
                               tags=["golden-trained", "golden-shape:stdout"]) is not None
    # streams are joined as nbval does, so a print split in two chunks compares equal
    assert golden.compare_cell([stream("a\nb\n")], [stream("a\n"), stream("b\n")]) is None
    # a claims table is compared by its rows, not by its rendering
    assert golden.compare_cell([_claims_output(_claim_rows())], [_claims_output(_claim_rows("inconclusive"))],
                               tags=["golden-trained"]) is not None


def test_compare_notebooks_skips_ignored_cells(tmp_path):
    def nb(text, tags):
        cell = {"cell_type": "code", "metadata": {"tags": tags}, "source": "print()",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}
        return {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

    for tags, differs in [([], True), (["nbval-ignore-output"], False), (["golden-timing"], False)]:
        (tmp_path / "a.ipynb").write_text(json.dumps(nb("took 1.5 s\n", tags)))
        (tmp_path / "b.ipynb").write_text(json.dumps(nb("took 2.5 s\n", tags)))
        assert bool(golden.compare_notebooks(tmp_path / "a.ipynb", tmp_path / "b.ipynb")) == differs, tags


def test_float_class_allows_one_unit_in_the_last_printed_digit():
    assert golden.compare_text("loss 3.758", "loss 3.759", FLOAT) is None
    assert golden.compare_text("loss 3.758", "loss 3.760", FLOAT) is not None
    assert golden._last_digit_unit("0.3015") == pytest.approx(1e-4)
    assert golden._last_digit_unit("1.8e-15") == pytest.approx(1e-16)
