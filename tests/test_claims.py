"""The claims protocol in the lab (PROTOCOL.md): the premise and the fourth verdict, a control,
non-inferiority and TOST, selection on validation data only, grids extended past their edges, the
seed planner, the jackknife, the generated discussion, and the report card's new lines."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lossbook.lab import book, experiments as ex, golden, selection
from lossbook.lab.experiments import INCONCLUSIVE, NOT_SUPPORTED, PREMISE_ABSENT, SUPPORTED

BASE = np.array([0.80, 0.82, 0.79, 0.81, 0.83, 0.80, 0.78, 0.82, 0.81, 0.80])
JITTER = np.array([0.001, -0.002, 0.0015, -0.001, 0.0005, 0.0, 0.001, -0.0015, 0.002, -0.001])
NOISE = np.array([0.03, -0.04, 0.02, -0.03, 0.01, 0.035, -0.02, -0.01, 0.025, -0.015])


def _t_ci(d, confidence):
    d = np.asarray(d, dtype=float)
    return stats.t.interval(confidence, len(d) - 1, loc=d.mean(), scale=stats.sem(d))


# --- the verdict vocabulary ----------------------------------------------------------------------------------


def test_the_fourth_verdict_is_a_verdict():
    assert ex.VERDICTS == (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, "premise absent at this scale")
    assert ex.Verdict(PREMISE_ABSENT, "m", "r").verdict == PREMISE_ABSENT
    with pytest.raises(ValueError, match="one of"):
        ex.Verdict("absent", "m", "r")


# --- non-inferiority and TOST ----------------------------------------------------------------------------------


@pytest.mark.parametrize("a, expected", [
    (BASE - 0.002 + JITTER, SUPPORTED),  # a loss well inside the margin
    (BASE - 0.05 + JITTER, NOT_SUPPORTED),  # worse by far more than the margin
    (BASE - 0.005 + NOISE, INCONCLUSIVE),  # the CI straddles −δ
])
def test_verdict_noninferior(a, expected):
    v = ex.verdict_noninferior(a, BASE, margin=0.01, names=("PFC", "full"))
    assert v.verdict == expected
    assert v.rule.startswith("non-inferiority with margin δ = 0.01 (paired t test, one-sided α = 0.025)")
    lo, hi = _t_ci(a - BASE, 0.95)
    assert f"[{lo:+.3f}, {hi:+.3f}] (n=10)" in v.measured
    p = stats.ttest_1samp(a - BASE, -0.01, alternative="greater").pvalue
    assert f"non-inferiority p = {p:.3f}" in v.measured


def test_verdict_noninferior_lower_is_better_and_its_margin():
    err = 0.2 + JITTER
    assert ex.verdict_noninferior(err + 0.002, err, margin=0.01, lower_is_better=True).verdict == SUPPORTED
    assert ex.verdict_noninferior(err + 0.05, err, margin=0.01, lower_is_better=True).verdict == NOT_SUPPORTED
    for bad in (0, -0.01, "0.01"):
        with pytest.raises(ValueError, match="margin .δ. must be a number > 0"):
            ex.verdict_noninferior(BASE, BASE, margin=bad)


@pytest.mark.parametrize("a, expected", [
    (BASE + 0.001 + JITTER, SUPPORTED),  # the 90% CI is inside (−δ, δ)
    (BASE + 0.05 + JITTER, NOT_SUPPORTED),  # better by far more than δ: not equivalent either
    (BASE - 0.05 + JITTER, NOT_SUPPORTED),
    (BASE + NOISE, INCONCLUSIVE),
])
def test_verdict_tost(a, expected):
    v = ex.verdict_tost(a, BASE, delta=0.01)
    assert v.verdict == expected
    assert "TOST (two one-sided paired t tests at α = 0.05) with margin δ = 0.01" in v.rule and "90% CI" in v.rule
    d = a - BASE
    lo, hi = _t_ci(d, 0.90)
    assert f"[{lo:+.3f}, {hi:+.3f}]" in v.measured
    p = max(stats.ttest_1samp(d, -0.01, alternative="greater").pvalue,
            stats.ttest_1samp(d, 0.01, alternative="less").pvalue)
    assert f"TOST p = {p:.3f}" in v.measured
    # TOST at α is the (1 − 2α) CI inside the margin, equivalently both one-sided p-values below α
    assert (v.verdict == SUPPORTED) == (p < 0.05)


def test_verdict_tost_checks_its_arguments():
    with pytest.raises(ValueError, match="delta .the equivalence margin δ. must be a number > 0"):
        ex.verdict_tost(BASE, BASE, delta=0)
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 0.5\)"):
        ex.verdict_tost(BASE, BASE, delta=0.01, alpha=0.5)
    with pytest.raises(ValueError, match="paired 1-D samples"):
        ex.verdict_tost(BASE, BASE[:3], delta=0.01)


# --- a property against a control ---------------------------------------------------------------------------------


def test_verdict_control_needs_more_of_the_property_than_the_control():
    control = np.array([0.50, 0.55, 0.48, 0.52, 0.51, 0.49, 0.53, 0.50])
    more = ex.verdict_control(control + 0.2 + JITTER[:8], control, what="ρ(norm, quality)",
                              names=("MagFace", "ArcFace"))
    assert more.verdict == SUPPORTED
    # the property is there (ρ ≈ 0.5) but no more than in the control: not supported
    same = ex.verdict_control(control - 0.005 + JITTER[:8], control, what="ρ(norm, quality)",
                              names=("MagFace", "ArcFace"))
    assert same.verdict == NOT_SUPPORTED
    assert same.rule.startswith("property against a control (paired t): supported if the 95% CI of the paired excess "
                                "of ρ(norm, quality) in MagFace over the control ArcFace lies above 0")
    row = ex.claim(paper="meng2021magface", claim="The magnitude is a quality measure.", setting="s", result=same,
                   reading="MagFace's norm tracks quality more than ArcFace's", paper_setting="MS1M, ResNet-100",
                   premise=ex.Premise.none("a property of the features"))
    assert row["control"] == f"ArcFace: ρ(norm, quality) {control.mean():.3f} (mean of 8 seeds)"
    with pytest.raises(ValueError, match="what must name the property"):
        ex.verdict_control(control, control, what=" ")


# --- the premise ---------------------------------------------------------------------------------------------------


def test_premise_helpers_compute_met_from_the_mean():
    p = ex.premise_at_least("CE's test ECE", [0.02, 0.04, 0.03], 0.05)
    assert (p.met, p.measured, p.n, p.threshold) == (False, pytest.approx(0.03), 3, 0.05)
    assert p.text() == "CE's test ECE 0.030 (mean of 3 seeds); needs ≥ 0.05: not met"
    assert ex.premise_at_least("ECE", 0.05, 0.05).met  # at least: the threshold itself is enough
    q = ex.premise_at_most("k-NN AUROC", 0.997, 0.95)
    assert not q.met and q.n is None and q.text() == "k-NN AUROC 0.997; needs ≤ 0.95: not met"
    assert ex.premise_at_most("k-NN AUROC", 0.90, 0.95).met
    assert ex.Premise.none("a theorem about the loss").text() == "none needed: a theorem about the loss"


def test_premise_refuses_inconsistent_or_malformed_input():
    with pytest.raises(ValueError, match="disagrees"):
        ex.Premise("ECE", 0.03, 0.05, True)
    with pytest.raises(ValueError, match="sense must be"):
        ex.Premise("ECE", 0.03, 0.05, False, sense=">")
    with pytest.raises(ValueError, match="what must say what is measured"):
        ex.premise_at_least("", 0.1, 0.05)
    with pytest.raises(ValueError, match="finite number or a 1-D array"):
        ex.premise_at_least("ECE", [[0.1]], 0.05)
    with pytest.raises(ValueError, match="finite number or a 1-D array"):
        ex.premise_at_least("ECE", [0.1, np.nan], 0.05)


# --- the claims row --------------------------------------------------------------------------------------------------


def _row(result, premise=None, **kw):
    return ex.claim(paper="muller2019label", claim="Label smoothing improves calibration.", setting="digits, MLP",
                    result=result, reading="LS has a lower ECE than CE", paper_setting="CIFAR-100, ResNet-56",
                    premise=premise or ex.premise_at_least("CE's test ECE", 0.08, 0.05), **kw)


def test_protocol_row_carries_every_field():
    row = _row(ex.verdict_greater(BASE + 0.05 + JITTER, BASE, names=("LS", "CE")))
    assert list(row) == ["paper", "claim", "reading", "paper_setting", "setting", "premise", "verdict", "measured",
                         "rule", "stability", "discussion"]
    assert row["verdict"] == SUPPORTED and row["stability"] == "stable"
    assert row["premise"] == "CE's test ECE 0.080; needs ≥ 0.05: met"
    assert row["rule"].endswith("; premise absent at this scale unless CE's test ECE ≥ 0.05")
    json.dumps(row)


def test_premise_not_met_gives_the_fourth_verdict():
    result = ex.verdict_greater(BASE + 0.05 + JITTER, BASE, names=("LS", "CE"))
    row = _row(result, ex.premise_at_least("CE's test ECE", 0.033, 0.05))
    assert row["verdict"] == PREMISE_ABSENT
    assert row["measured"] == result.measured  # the comparison is still shown
    assert "The premise did not hold: CE's test ECE was 0.033, and the claim needs ≥ 0.05" in row["discussion"]
    assert "the comparison itself read supported" in row["discussion"]
    assert "CIFAR-100, ResNet-56" in row["discussion"]


def test_basic_rows_are_unchanged_and_protocol_fields_need_a_reading():
    v = ex.verdict_greater(BASE + 0.05 + JITTER, BASE)
    assert list(ex.claim(paper="p", claim="c", setting="s", result=v)) == [
        "paper", "claim", "setting", "verdict", "measured", "rule"]
    with pytest.raises(TypeError, match=r"\['premise'\] belong to a claims-protocol row.*add reading="):
        ex.claim(paper="p", claim="c", setting="s", result=v, premise=ex.Premise.none("x"))
    with pytest.raises(ValueError, match="paper_setting must be a non-empty string"):
        ex.claim(paper="p", claim="c", setting="s", result=v, reading="r", premise=ex.Premise.none("x"))
    with pytest.raises(TypeError, match="premise must be a Premise"):
        ex.claim(paper="p", claim="c", setting="s", result=v, reading="r", paper_setting="ps", premise=0.05)
    with pytest.raises(TypeError, match="result must be a Verdict"):
        ex.claim(paper="p", claim="c", setting="s", result="supported")
    with pytest.raises(ValueError, match="stability must be 'stable'"):
        _row(v, stability="fine")


# --- the seed planner -------------------------------------------------------------------------------------------------


def _direct_plan(delta, sd, confidence=0.95):
    n = 2
    while stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n) > delta:
        n += 1
    return n


@pytest.mark.parametrize("delta, sd", [(0.5, 1.0), (0.01, 0.012), (0.02, 0.01), (0.003, 0.01), (0.1, 0.02)])
def test_plan_seeds_against_a_direct_computation(delta, sd):
    n = _direct_plan(delta, sd)
    assert ex.plan_seeds(delta, sd, min_seeds=2, max_seeds=10_000) == n
    assert ex.plan_seeds(delta, sd) == min(max(n, 5), 20)  # bounded to [min_seeds, max_seeds]
    assert ex.half_width(sd, n) <= delta < ex.half_width(sd, n - 1) if n > 2 else True


def test_plan_seeds_examples_and_pilot_samples():
    assert ex.plan_seeds(0.5, 1.0, min_seeds=2, max_seeds=100) == 18  # t_17 · 1/√18 = 0.497; t_16 · 1/√17 = 0.514
    assert ex.plan_seeds(1.0, 0.0) == 5  # no spread: the lower bound
    assert ex.plan_seeds(1e-6, 1.0) == 20  # no n up to the bound is enough: the upper bound
    pilot = np.array([0.01, 0.03, -0.01, 0.02, 0.0])
    assert ex.plan_seeds(0.01, pilot, max_seeds=100) == ex.plan_seeds(0.01, pilot.std(ddof=1), max_seeds=100)
    for kwargs, match in [(dict(delta=0, sd=1.0), "delta"), (dict(delta=0.1, sd=-1.0), "sd must be"),
                          (dict(delta=0.1, sd=[1.0]), "at least 2 values"),
                          (dict(delta=0.1, sd=1.0, min_seeds=10, max_seeds=5), "min_seeds ≤ max_seeds")]:
        with pytest.raises(ValueError, match=match):
            ex.plan_seeds(**kwargs)


# --- the jackknife ----------------------------------------------------------------------------------------------------


def _direct_loo(a, b, margin=0.0):
    out = []
    for i in range(len(a)):
        d = np.delete(a - b, i)
        lo, hi = _t_ci(d, 0.95)
        out.append(SUPPORTED if lo > margin else NOT_SUPPORTED if hi <= margin else INCONCLUSIVE)
    return out


def test_jackknife_counts_the_leave_one_out_verdicts_that_differ():
    b = BASE[:6]
    a = b + np.array([0.030, 0.004, 0.006, 0.005, 0.003, 0.004])  # one seed carries the claim
    full = ex.verdict_greater(a, b).verdict
    differ = sum(v != full for v in _direct_loo(a, b))
    assert differ > 0
    assert ex.jackknife(ex.verdict_greater, a, b) == f"unstable ({differ} of 6 leave-one-out verdicts differ)"
    steady = b + 0.05 + JITTER[:6]
    assert ex.jackknife(ex.verdict_greater, steady, b) == "stable"
    assert ex.jackknife(ex.verdict_tost, steady, b, delta=0.01) == "stable"  # keywords reach the rule
    assert ex.jackknife(ex.verdict_greater, steady[:2], b[:2]) == "not assessed (n < 3)"
    with pytest.raises(ValueError, match="all of one length"):
        ex.jackknife(ex.verdict_greater, steady, b[:5])


@pytest.mark.parametrize("shift", [0.0, 0.004, 0.006, 0.01, 0.05])
def test_claim_stability_is_the_jackknife_and_says_unstable_exactly_when_a_verdict_differs(shift):
    b = BASE[:6]
    a = b + shift + np.array([0.020, -0.004, 0.003, -0.002, 0.001, -0.003])
    row = _row(ex.verdict_greater(a, b))
    assert row["stability"] == ex.jackknife(ex.verdict_greater, a, b)
    full = ex.verdict_greater(a, b).verdict
    assert ("unstable" in row["stability"]) == any(v != full for v in _direct_loo(a, b))


def test_claim_stability_includes_a_per_seed_premise():
    b = BASE[:5]
    a = b + 0.05 + JITTER[:5]
    # the premise's mean is just over the threshold; without seed 0 it falls below
    premise = ex.premise_at_least("CE's test ECE", [0.09, 0.04, 0.045, 0.04, 0.04], 0.05)
    assert premise.met
    row = _row(ex.verdict_greater(a, b), premise)
    assert row["verdict"] == SUPPORTED and row["stability"] == "unstable (1 of 5 leave-one-out verdicts differ)"
    assert "unstable (1 of 5 leave-one-out verdicts differ): it rests on single seeds" in row["discussion"]
    with pytest.raises(ValueError, match="premise was measured on 3 seeds, the verdict on 5"):
        _row(ex.verdict_greater(a, b), ex.premise_at_least("ECE", [0.1, 0.1, 0.1], 0.05))


def test_claim_stability_over_settings_and_without_samples():
    b = BASE[:5]
    every = ex.verdict_every({"60%": ex.verdict_greater(b + 0.05 + JITTER[:5], b),
                              "80%": ex.verdict_greater(b + 0.04 + JITTER[:5], b)})
    assert _row(every)["stability"] == "stable"
    assert _row(ex.verdict_all([True, True], what="bounded"))["stability"] == "not assessed (no per-seed samples)"
    assert _row(ex.verdict_greater(b[:2] + 0.05, b[:2]))["stability"] == "not assessed (n < 3)"
    given = _row(ex.verdict_all([True], what="x"), stability="unstable (1 of 4 leave-one-out verdicts differ)")
    assert given["stability"] == "unstable (1 of 4 leave-one-out verdicts differ)"


# --- the discussion ---------------------------------------------------------------------------------------------------


def test_discussion_of_an_inconclusive_verdict_gives_the_detectable_effect_and_the_seeds_that_would_settle_it():
    a = BASE + 0.004 + NOISE
    v = ex.verdict_greater(a, BASE)
    assert v.verdict == INCONCLUSIVE
    text = _row(v)["discussion"]
    d = a - BASE
    lo, hi = _t_ci(d, 0.95)
    assert f"At n = 10 seeds the 95% CI half-width of A − B is {(hi - lo) / 2:.3f}" in text
    need = _direct_plan(abs(d.mean()), d.std(ddof=1))
    assert f"about {need} seeds would bring the half-width below that distance" in text
    assert "The premise held: CE's test ECE 0.080" in text


def test_discussion_of_other_verdicts():
    supported = _row(ex.verdict_greater(BASE + 0.05 + JITTER, BASE))["discussion"]
    d = 0.05 + JITTER
    assert supported.startswith(f"Effect size: A − B = {d.mean():+.3f} (95% CI [")
    assert f"{d.mean() / d.std(ddof=1):.1f} standard deviations of the paired differences (d_z)" in supported
    worse = _row(ex.verdict_greater(BASE - 0.05 + JITTER, BASE))["discussion"]
    assert "excludes the claimed effect in our setting (digits, MLP)" in worse
    assert "the paper's setting (CIFAR-100, ResNet-56) differs" in worse
    tied = _row(ex.verdict_greater(BASE + NOISE - NOISE.mean(), BASE))["discussion"]  # estimate on the bound
    assert "more than 1000 seeds would be needed" in tied
    noted = _row(ex.verdict_greater(BASE + 0.05 + JITTER, BASE), note="The paper trains for 200 epochs.")
    assert noted["discussion"].endswith("The paper trains for 200 epochs.")
    over = _row(ex.verdict_every({"60%": ex.verdict_greater(BASE + 0.05 + JITTER, BASE),
                                  "80%": ex.verdict_greater(BASE + NOISE + 0.004, BASE)}))
    assert over["verdict"] == INCONCLUSIVE and over["discussion"].startswith("The premise held")
    assert "80% (inconclusive): At n = 10 seeds" in over["discussion"] and "60% (" not in over["discussion"]


# --- selection on validation data only ------------------------------------------------------------------------------


def _runs(val_peak=0.1, test_peak=1.0, lrs=(0.01, 0.1, 1.0), seeds=(0, 1, 2)):
    rows = []
    for lr in lrs:
        for s in seeds:
            rows.append({"loss": "CE", "lr": lr, "seed": s,
                         "val_accuracy": 0.9 - abs(np.log10(lr / val_peak)) * 0.1 + 0.001 * s,
                         "test_accuracy": 0.9 - abs(np.log10(lr / test_peak)) * 0.1})
    return pd.DataFrame(rows)


def test_select_best_reads_the_validation_column_only():
    sel = selection.select_best(_runs(), "accuracy", by="lr")
    assert sel.choice == {"lr": 0.1} and sel.metric == "val_accuracy"  # the test column would pick 1.0
    assert sel.score == pytest.approx(0.901) and not sel.on_edge and sel.edges == {}
    assert sel.grid == {"lr": (0.01, 0.1, 1.0)}
    pinned = selection.select_best(_runs(), "val_accuracy", by=["lr"], loss="CE")
    assert pinned.choice == {"lr": 0.1} and pinned.where == {"loss": "CE"}
    assert pinned.describe() == "lr = 0.1 (inside 0.01 … 1) for loss=CE, on val_accuracy"
    assert sel.describe() == "lr = 0.1 (inside 0.01 … 1), on val_accuracy"
    low = selection.select_best(_runs(), "accuracy", by="lr", higher_is_better=False)
    assert low.choice == {"lr": 0.01} and low.edges == {"lr": "lower"} and low.on_edge


@pytest.mark.parametrize("kwargs, match", [
    (dict(metric="test_accuracy"), "metric 'test_accuracy' names the test split"),
    (dict(metric="accuracy", split="test"), "split 'test' names the test split"),
    (dict(metric="accuracy", split="TEST"), "names the test split"),
    (dict(metric="accuracy_test"), "names the test split"),
    (dict(metric="accuracy", split="train"), "split must name a validation split"),
    (dict(metric="accuracy", by="test_accuracy"), "column 'test_accuracy' names the test split"),
    (dict(metric="loss"), "no validation column 'val_loss'"),
])
def test_select_best_refuses_the_test_split(kwargs, match):
    kwargs = {"by": "lr", **kwargs}
    with pytest.raises(ValueError, match=match):
        selection.select_best(_runs(), **kwargs)


def test_select_best_refuses_an_unlabelled_column_and_ambiguous_rows():
    df = _runs().rename(columns={"test_accuracy": "accuracy"})
    with pytest.raises(ValueError, match="a column without a split in its name is not read"):
        selection.select_best(df.drop(columns="val_accuracy"), "accuracy", by="lr")
    both = pd.concat([_runs(), _runs().assign(loss="MAE")])
    with pytest.raises(ValueError, match="several rows per seed"):
        selection.select_best(both, "accuracy", by="lr")
    with pytest.raises(ValueError, match="no row has"):
        selection.select_best(both, "accuracy", by="lr", loss="GCE")


def test_select_best_with_a_split_column():
    wide = _runs()
    bare = wide.drop(columns=["val_accuracy", "test_accuracy"])
    long = pd.concat([bare.assign(split="val", accuracy=wide.val_accuracy),
                      bare.assign(split="test", accuracy=wide.test_accuracy)])
    assert selection.select_best(long, "accuracy", by="lr").choice == {"lr": 0.1}
    with pytest.raises(ValueError, match="has no row 'valid'"):
        selection.select_best(long, "accuracy", by="lr", split="valid")


def test_select_best_edges_ties_nan_and_limits():
    df = pd.DataFrame({"eps": [0.0, 0.1, 0.2], "loss": ["a", "b", "c"], "seed": [0, 0, 0],
                       "val_acc": [0.9, 0.8, 0.7]})
    assert selection.select_best(df, "acc", by="eps").edges == {"eps": "lower"}
    assert selection.select_best(df, "acc", by="eps", limits={"eps": (0.0, 1.0)}).edges == {}  # a natural limit
    assert selection.select_best(df, "acc", by="loss").edges == {}  # no order: no edge
    assert selection.select_best(df, "acc", by="loss", ordered=["loss"]).edges == {"loss": "lower"}
    tie = df.assign(val_acc=[0.8, 0.9, 0.9])
    assert selection.select_best(tie, "acc", by="eps").choice == {"eps": 0.1}  # the first of ties
    diverged = df.assign(val_acc=[np.nan, 0.5, 0.6])
    assert selection.select_best(diverged, "acc", by="eps").choice == {"eps": 0.2}
    with pytest.raises(ValueError, match="not axes of by"):
        selection.select_best(df, "acc", by="eps", limits={"lr": (0, None)})


class _Evaluate:
    """A validation curve peaked at lr = ``peak`` (on a log scale), recording the points it ran."""

    def __init__(self, peak):
        self.peak, self.calls = peak, []

    def __call__(self, *, seed, loss, lr):
        self.calls.append((loss, lr, seed))
        return {"val_accuracy": 0.9 - abs(np.log10(lr / self.peak)) * 0.1, "test_accuracy": 0.0}


def test_extend_on_edge_extends_until_the_choice_is_inside():
    evaluate = _Evaluate(peak=10.0)
    runs = _runs(val_peak=10.0, lrs=(0.01, 0.1, 1.0))
    assert selection.select_best(runs, "accuracy", by="lr").edges == {"lr": "upper"}
    out, sel = selection.extend_on_edge(runs, evaluate, "accuracy", by="lr", loss="CE")
    assert sel.choice == {"lr": pytest.approx(10.0)} and not sel.on_edge and sel.extensions == 2
    assert sorted({lr for _, lr, _ in evaluate.calls}) == pytest.approx([10.0, 100.0])  # the grid's own factor
    assert {s for *_, s in evaluate.calls} == {0, 1, 2} and all(loss == "CE" for loss, *_ in evaluate.calls)
    assert len(out) == len(runs) + 2 * 3
    assert "after 2 extension(s) of the grid" in sel.describe()


def test_extend_on_edge_is_bounded_and_respects_limits():
    far = _Evaluate(peak=1e6)
    _, sel = selection.extend_on_edge(_runs(val_peak=1e6), far, "accuracy", by="lr", max_extensions=2, loss="CE")
    assert sel.on_edge and sel.extensions == 2 and len({lr for _, lr, _ in far.calls}) == 2
    capped = _Evaluate(peak=1e6)
    _, sel = selection.extend_on_edge(_runs(val_peak=1e6), capped, "accuracy", by="lr", limits={"lr": (None, 3.0)},
                                      loss="CE")
    assert [lr for _, lr, _ in capped.calls][::3] == [3.0] and sel.choice == {"lr": 3.0} and not sel.on_edge
    stop = _Evaluate(peak=1e6)
    _, sel = selection.extend_on_edge(_runs(val_peak=1e6), stop, "accuracy", by="lr", loss="CE",
                                      next_value=lambda axis, values, side: None)
    assert stop.calls == [] and sel.on_edge and sel.extensions == 0
    with pytest.raises(ValueError, match="max_extensions must be an int ≥ 0"):
        selection.extend_on_edge(_runs(), stop, "accuracy", by="lr", max_extensions=-1, loss="CE")


@pytest.mark.parametrize("values, side, expected", [
    ((0.01, 0.03, 0.1), "upper", 0.333333333333),  # ratios (3, 3.3) are more even than differences
    ((0.01, 0.03, 0.1), "lower", 0.00333333333333),
    ((0.1, 0.2, 0.3), "upper", 0.4),  # even differences
    ((0.0, 0.5, 1.0), "lower", -0.5),  # a zero: differences
    ((1, 2), "upper", 4),  # two values: a factor
    ((0.0, 0.5), "upper", 1.0),
])
def test_extend_on_edge_steps_by_the_grids_own_spacing(values, side, expected):
    rows = pd.DataFrame({"x": list(values), "seed": 0, "val_m": [0.0] * len(values)})
    rows.loc[0 if side == "lower" else len(values) - 1, "val_m"] = 1.0
    seen = []

    def evaluate(*, seed, x):
        seen.append(x)
        return {"val_m": 0.0}

    selection.extend_on_edge(rows, evaluate, "m", by="x", max_extensions=1)
    assert seen == [pytest.approx(expected)]


def test_extend_on_edge_integer_grid():
    rows = [{"epochs": e, "seed": 0, "val_acc": e / 10} for e in (1, 2, 3)]
    seen = []

    def evaluate(*, seed, epochs):
        seen.append(epochs)
        return {"val_acc": min(epochs, 5) / 10 - 0.01 * max(epochs - 5, 0)}

    _, sel = selection.extend_on_edge(pd.DataFrame(rows), evaluate, "acc", by="epochs", max_extensions=3)
    assert seen == [4, 5, 6] and sel.choice == {"epochs": 5} and not sel.on_edge


def test_cap_on_edge():
    v = ex.verdict_greater(BASE + 0.05 + JITTER, BASE)
    inside = selection.select_best(_runs(), "accuracy", by="lr", loss="CE")
    edge = selection.select_best(_runs(val_peak=10.0), "accuracy", by="lr")
    kept = ex.cap_on_edge(v, inside)
    assert kept.verdict == SUPPORTED and kept.rule.endswith(
        "; at most inconclusive while a setting chosen on validation sits on the edge of its grid "
        "(lr for loss=CE: inside its grid)")
    capped = ex.cap_on_edge(v, inside, edge)
    assert capped.verdict == INCONCLUSIVE
    assert capped.rule.endswith("(lr for loss=CE: inside its grid; lr: on its upper edge)")
    worse = ex.cap_on_edge(ex.verdict_greater(BASE - 0.05 + JITTER, BASE), edge)
    assert worse.verdict == INCONCLUSIVE
    row = _row(capped)
    assert row["verdict"] == INCONCLUSIVE and row["stability"] == "stable"  # the jackknife recomputes the cap
    assert "The verdict is capped at inconclusive (it would read supported): lr = 1 (upper edge of 0.01 … 1)" \
           in row["discussion"]
    with pytest.raises(TypeError, match="pass the Selection"):
        ex.cap_on_edge(v)
    with pytest.raises(TypeError, match="must be a lossbook.lab.selection.Selection"):
        ex.cap_on_edge(v, {"lr": 0.1})


# --- tables and the report card -------------------------------------------------------------------------------------


def _basic_row():
    return ex.claim(paper="old2020", claim="An old claim.", setting="s",
                    result=ex.verdict_greater(BASE + 0.05 + JITTER, BASE))


def test_claims_table_adds_the_protocol_columns_only_when_a_row_has_them():
    basic = ex.claims_table([_basic_row()], chapter="01_x").df
    assert list(basic.columns) == ["paper", "claim", "setting", "measured", "verdict", "rule"]
    control = ex.verdict_control(BASE + 0.05 + JITTER, BASE, what="ρ", names=("M", "C"))
    mixed = ex.claims_table([_basic_row(), _row(control)], chapter="01_x")
    assert list(mixed.df.columns) == ["paper", "claim", "reading", "paper_setting", "setting", "premise", "control",
                                      "measured", "verdict", "rule", "stability", "discussion"]
    _, metadata = mixed._repr_mimebundle_()
    rows = metadata[ex.CLAIMS_KEY]["rows"]
    assert rows[0]["reading"] == "" and rows[0]["stability"] == "" and rows[1]["control"].startswith("C: ρ")


def _notebook_with(rows, path):
    bundle, metadata = ex.claims_table(rows, chapter=path.stem)._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("claims_table(rows)")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle, metadata=metadata)]
    nb.cells = [cell]
    nbformat.write(nb, path)


def test_report_card_shows_the_protocol_lines_and_leaves_old_rows_as_they_were(tmp_path):
    _notebook_with([_basic_row()], tmp_path / "01_old.ipynb")
    old = book.collect_claims(tmp_path)
    assert list(old.columns) == ["chapter", "paper", "claim", "setting", "measured", "verdict", "rule"]
    old_html = book.claims_html(old)
    assert "Read as" not in old_html and "Premise" not in old_html and " · <small>" not in old_html

    absent = _row(ex.verdict_greater(BASE + 0.05 + JITTER, BASE), ex.premise_at_least("CE's ECE", 0.03, 0.05))
    _notebook_with([absent], tmp_path / "02_new.ipynb")
    both = book.collect_claims(tmp_path)
    assert list(both.columns) == ["chapter", "paper", "claim", "reading", "paper_setting", "setting", "premise",
                                  "measured", "verdict", "rule", "stability", "discussion"]
    html = book.claims_html(both)
    first, second = html.split("\n")
    assert first == old_html  # an old row renders exactly as before, beside new ones
    assert "premise absent at this scale</span> · <small>stable</small>" in second
    assert "#dde6f2" in second  # the fourth verdict's badge colour
    for line in ("<b>Read as:</b> LS has a lower ECE than CE", "<b>Paper's setting:</b> CIFAR-100, ResNet-56",
                 "<b>Premise:</b> CE&#x27;s ECE 0.030; needs ≥ 0.05: not met", "<b>Discussion:</b> The premise did"):
        assert line in second


def test_golden_comparison_skips_the_generated_discussion():
    row = _row(ex.verdict_greater(BASE + 0.004 + NOISE, BASE))
    other = {**row, "discussion": row["discussion"].replace("about", "some")}
    tol = golden.DEFAULT_TOLERANCES["trained"]
    assert golden.compare_claims([row], [other], tol) is None
    assert golden.compare_claims([row], [{**row, "premise": row["premise"].replace("met", "absent")}], tol)
