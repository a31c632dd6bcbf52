"""adapterbench.stats.answer on a small case worked out by hand (best, tied after Holm, Pareto, ranks, averages,
paper against measured)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from adapterbench.stats import (
    TaskRuns,
    VariantRuns,
    answer,
    answer_pairs,
    answer_task,
    classification_metric,
    function_metric,
    pareto_set,
    permutations_for,
    regression_metric,
    seeds_agree,
)

REF = np.array([1, 0] * 50)  # 100 examples
COSTS = {"A": 1000, "X": 10, "Y": 2000, "Z": 5}


def _right_on(indices: range) -> np.ndarray:
    right = np.zeros(100, bool)
    right[list(indices)] = True
    return np.where(right, REF, 1 - REF)


def _sst2() -> TaskRuns:
    """One seed, accuracy, McNemar against the best (A):

    A right on 0..79 (0.80); X on 6..79 (0.74): A alone right on 6 -> p = 2 * 2^-6 = 0.03125;
    Y on 1..79 (0.79): A alone right on 1 -> p = 1; Z on 0..29 (0.30): A alone right on 50 -> p = 2^-49.
    Holm over (X, Y, Z): Z * 3, X * 2 = 0.0625, Y * 1 = 1 -> X tied though significant alone, Y tied, Z worse.
    """
    runs = {"A": range(80), "X": range(6, 80), "Y": range(1, 80), "Z": range(30)}
    metric = classification_metric("accuracy")
    variants = [VariantRuns(name, {0: metric.value(_right_on(r), REF)}, {0: _right_on(r)},
                            {"params/deployed_adapter": COSTS[name], "memory/peak_bytes": 1e9})
                for name, r in runs.items()]
    return TaskRuns("sst2", metric, variants, REF)


STSB = {"A": {0: 0.80, 1: 0.82, 2: 0.84}, "X": {0: 0.85, 1: 0.86, 2: 0.87}, "Y": {0: 0.50, 1: 0.60, 2: 0.52}}


def _stsb() -> TaskRuns:
    """Three seeds, no predictions: paired t-tests over seeds against the best (X, mean 0.86)."""
    variants = [VariantRuns(name, values, None, {"params/deployed_adapter": COSTS[name]},
                            paper=(0.85, 0.01) if name == "A" else None)
                for name, values in STSB.items()]
    return TaskRuns("stsb", regression_metric("pearson"), variants)


def test_answer_on_a_case_worked_by_hand():
    result = answer([_sst2(), _stsb()], n_resamples=500)
    sst2, stsb = result.tasks
    assert (sst2.best, sst2.tied, sst2.worse, sst2.untested) == ("A", ("Y", "X"), ("Z",), ())
    by_name = {v.variant: v for v in sst2.variants}
    assert by_name["X"].vs_best.test == "mcnemar"
    assert by_name["X"].vs_best.p_value == pytest.approx(0.03125, abs=1e-12)  # significant alone ...
    assert by_name["X"].p_adjusted == pytest.approx(0.0625, abs=1e-12)       # ... tied in the family
    assert by_name["Y"].p_adjusted == pytest.approx(1.0)
    assert by_name["Z"].p_adjusted == pytest.approx(3 * 2.0 ** -49, rel=1e-9)
    assert by_name["X"].vs_best.difference == pytest.approx(0.74 - 0.80, abs=1e-12)
    assert [v.variant for v in sst2.variants] == ["A", "Y", "X", "Z"]
    assert [v.rank for v in sst2.variants] == [1.0, 2.0, 3.0, 4.0]
    # Pareto over (deployed params, accuracy): Z (5, .30), X (10, .74), A (1000, .80); A beats Y (2000, .79).
    assert sst2.pareto == ("Z", "X", "A")
    assert by_name["A"].estimate.reported == "examples" and by_name["A"].estimate.interval.low < 0.80

    # STS-B: X best; A and Y worse after Holm (p-values from scipy's paired t, Holm by hand).
    p_a = stats.ttest_rel([0.80, 0.82, 0.84], [0.85, 0.86, 0.87]).pvalue
    p_y = stats.ttest_rel([0.50, 0.60, 0.52], [0.85, 0.86, 0.87]).pvalue
    assert p_y < p_a < 0.05
    by_name = {v.variant: v for v in stsb.variants}
    assert by_name["Y"].p_adjusted == pytest.approx(2 * p_y)
    assert by_name["A"].p_adjusted == pytest.approx(max(2 * p_y, p_a))
    assert (stsb.best, stsb.tied, stsb.worse) == ("X", (), ("A", "Y"))
    assert by_name["A"].vs_best.test == "paired t over seeds"
    assert stsb.pareto == ("X",)
    assert by_name["A"].estimate.reported == "seeds"
    paper = by_name["A"].paper
    assert paper.difference == pytest.approx(-0.03) and paper.in_paper_std == pytest.approx(-3.0)

    # Mean ranks: A (1 + 2) / 2, X (3 + 1) / 2, Y (2 + 3) / 2, Z 4 on one task; GLUE-style average of the means.
    rows = {r.variant: r for r in result.overall}
    assert [r.variant for r in result.overall] == ["A", "X", "Y", "Z"]
    assert [rows[v].mean_rank for v in "AXYZ"] == [1.5, 2.0, 2.5, 4.0]
    assert rows["Z"].n_tasks == 1 and rows["Z"].average is None
    assert rows["A"].average.value == pytest.approx((0.80 + 0.82) / 2)
    assert rows["Y"].average.value == pytest.approx((0.79 + 0.54) / 2)
    assert rows["A"].average.reported == "none"  # one common seed, no STS-B predictions: no honest interval


def test_every_pair_on_the_case_worked_by_hand():
    """The SST-2 case above, every pair by McNemar: (b, c) = examples right under the first only / second only.

    A-X (6, 0): 2^-5; A-Y (1, 0): 1; A-Z (50, 0): 2^-49; X-Y (0, 5): 2^-4; X-Z (50, 6) and Y-Z (50, 1): the
    exact binomial. Holm over the 6: the smallest times 6, then 5, 4, ... and never below an earlier one.
    """
    pairs = answer_pairs(_sst2(), n_resamples=500)
    assert [(p.a, p.b) for p in pairs] == [("A", "X"), ("A", "Y"), ("A", "Z"), ("X", "Y"), ("X", "Z"), ("Y", "Z")]
    raw = {("A", "X"): 2.0 ** -5, ("A", "Y"): 1.0, ("A", "Z"): 2.0 ** -49, ("X", "Y"): 2.0 ** -4,
           ("X", "Z"): stats.binomtest(50, 56, 0.5).pvalue, ("Y", "Z"): stats.binomtest(50, 51, 0.5).pvalue}
    by = {(p.a, p.b): p for p in pairs}
    for key, p in raw.items():
        assert by[key].result.p_value == pytest.approx(p, rel=1e-9), key
    order = sorted(raw, key=raw.get)
    holm, running = {}, 0.0
    for k, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * raw[key]))
        holm[key] = running
    for key in raw:
        assert by[key].p_adjusted == pytest.approx(holm[key], rel=1e-9), key
    # A-X is significant alone (0.031) but not after Holm over six pairs (3 x 0.031 = 0.094)
    assert {key: p.verdict for key, p in by.items()} == {
        ("A", "X"): "tied", ("A", "Y"): "tied", ("A", "Z"): "a better",
        ("X", "Y"): "tied", ("X", "Z"): "a better", ("Y", "Z"): "a better"}
    assert by[("X", "Y")].result.difference == pytest.approx(0.74 - 0.79)
    # a subset of candidates is its own, smaller family; a lower-is-better metric flips who is better
    assert [(p.a, p.b) for p in answer_pairs(_sst2(), ["A", "Z"])] == [("A", "Z")]
    lower = _sst2()
    lower = TaskRuns(lower.task, function_metric("error", lambda p, r: float(np.mean(np.asarray(p) != r)),
                                                 higher_is_better=False),
                     [VariantRuns(v.variant, {0: 1 - v.seed_values[0]}, v.predictions) for v in lower.variants],
                     REF)
    assert next(p for p in answer_pairs(lower, ["A", "Z"], n_resamples=200)).verdict == "a better"


def test_a_large_family_is_not_tied_by_the_permutation_tests_resolution():
    """One classifier with Matthews 0.6 against 31 that always answer the majority class (Matthews 0). At a
    fixed 200 sign flips each p is at least 2/201 and Holm over 31 gives at least 0.31: all "tied". Sized for
    the family, the sign flips make every one of them worse."""
    metric = classification_metric("matthews_correlation")
    rng = np.random.default_rng(3)
    ref = (rng.random(300) < 0.3).astype(int)
    good = np.where(rng.random(300) < 0.85, ref, 1 - ref)
    variants = [VariantRuns("good", {0: metric.value(good, ref)}, {0: good})]
    variants += [VariantRuns(f"majority{i}", {0: 0.0}, {0: np.zeros(300, int)}) for i in range(31)]
    result = answer_task(TaskRuns("cola", metric, variants, ref), n_resamples=200)
    assert result.best == "good" and metric.value(good, ref) > 0.5
    assert len(result.worse) == 31 and result.tied == ()
    flips = permutations_for(31, 0.05, 200)
    assert flips == 12399 and 31 * 2 / (flips + 1) <= 0.05 / 10
    assert permutations_for(2, 0.05, 2000) == 2000  # a small family keeps the requested count
    worst = max(v.p_adjusted for v in result.variants if v.p_adjusted is not None)
    assert worst == pytest.approx(31 * 2 / (flips + 1))  # each at the floor: no sign flip reaches |d|


def test_a_difference_the_seeds_disagree_on_is_flagged():
    """A beats B on the pooled examples (0.75 vs 0.65 over two seeds) but only on seed 0 (+0.30; seed 1: -0.10):
    the example-level test says worse, and the answer records that the seeds disagree."""
    metric = classification_metric("accuracy")
    ref = np.array([1, 0] * 100)

    def right_on(n: int) -> np.ndarray:
        return np.where(np.arange(200) < n, ref, 1 - ref)

    a = {0: right_on(190), 1: right_on(110)}
    b = {0: right_on(130), 1: right_on(130)}
    runs = [VariantRuns(name, {s: metric.value(p, ref) for s, p in preds.items()}, preds)
            for name, preds in (("A", a), ("B", b))]
    result = answer_task(TaskRuns("sst2", metric, runs, ref), n_resamples=500)
    worse = next(v for v in result.variants if v.variant == "B")
    assert result.best == "A" and worse.status == "worse" and worse.seeds_agree is False
    assert answer_pairs(TaskRuns("sst2", metric, runs, ref))[0].seeds_agree is False
    assert seeds_agree({0: 0.8, 1: 0.82}, {0: 0.7, 1: 0.75}) is True
    assert seeds_agree({0: 0.8, 1: 0.70}, {0: 0.7, 1: 0.75}) is False
    assert seeds_agree({0: 0.8}, {0: 0.7}) is None and seeds_agree({0: 0.8, 1: 0.7}, {0: 0.7, 1: 0.8}) is None


def test_the_seed_level_check_is_the_paired_t_over_seeds_holm_corrected():
    """Three seeds: B trails A by 0.02-0.04 on every seed (t_2 = 5.196, p = 0.0351), C by 0.10, 0.00, 0.05
    (p = 0.225): Holm over the two gives B 0.0702 and C 0.225, worked by hand below with scipy. With one seed
    there is no seed-level test, and the example-level verdict stays what it was."""
    metric = classification_metric("accuracy")
    a, b, c = {0: 0.80, 1: 0.84, 2: 0.82}, {0: 0.78, 1: 0.80, 2: 0.79}, {0: 0.70, 1: 0.84, 2: 0.77}
    runs = [VariantRuns(name, values) for name, values in (("A", a), ("B", b), ("C", c))]
    result = answer_task(TaskRuns("sst2", metric, runs, None))
    by = {v.variant: v for v in result.variants}
    p_b = stats.ttest_rel(list(a.values()), list(b.values())).pvalue
    p_c = stats.ttest_rel(list(a.values()), list(c.values())).pvalue
    assert p_b == pytest.approx(0.0351, abs=1e-4) and p_c == pytest.approx(0.225, abs=1e-3)
    assert by["B"].seed_p_adjusted == pytest.approx(min(1.0, 2 * p_b))  # the smaller p times 2
    assert by["C"].seed_p_adjusted == pytest.approx(max(2 * p_b, p_c))  # then times 1, kept monotone
    assert by["A"].seed_p_adjusted is None  # the best is not compared with itself
    assert by["B"].p_adjusted == by["B"].seed_p_adjusted  # no predictions: the verdict's test is this one too
    one_seed = [VariantRuns(name, {0: values[0]}) for name, values in (("A", a), ("B", b))]
    assert all(v.seed_p_adjusted is None for v in answer_task(TaskRuns("sst2", metric, one_seed, None)).variants)


def test_average_interval_over_seeds_and_over_examples():
    rng = np.random.default_rng(0)
    metric = classification_metric("accuracy")
    tasks = []
    for t in range(2):
        ref = rng.integers(0, 2, 200)
        preds = {s: np.where(rng.random(200) < 0.7 + 0.1 * t, ref, 1 - ref) for s in range(3)}
        values = {s: metric.value(p, ref) for s, p in preds.items()}
        tasks.append(TaskRuns(f"t{t}", metric, [VariantRuns("v", values, preds)], ref))
    row = answer(tasks, n_resamples=500).overall[0]
    per_seed = [np.mean([t.variants[0].seed_values[s] for t in tasks]) for s in range(3)]
    expected = stats.ttest_1samp(per_seed, 0).confidence_interval()
    assert (row.average.seed_interval.low, row.average.seed_interval.high) == pytest.approx(
        (expected.low, expected.high))
    ex = row.average.example_interval
    assert ex is not None and ex.low < row.average.value < ex.high
    widths = {"seeds": row.average.seed_interval.half_width, "examples": ex.half_width}
    assert row.average.reported == max(widths, key=widths.get)


def test_lower_is_better_and_untested():
    mse = function_metric("mse", lambda p, r: float(np.mean((np.asarray(p) - np.asarray(r)) ** 2)),
                          higher_is_better=False)
    task = TaskRuns("reg", mse, [VariantRuns("big", {0: 0.5, 1: 0.6, 2: 0.55}),
                                 VariantRuns("small", {0: 0.2, 1: 0.32, 2: 0.25}),
                                 VariantRuns("constant", {0: 0.2 + 0.1, 1: 0.32 + 0.1, 2: 0.25 + 0.1}),
                                 VariantRuns("once", {7: 0.4})])
    ta = answer_task(task)
    assert ta.best == "small" and ta.worse == ("big",) and ta.untested == ("constant", "once")
    p_big = stats.ttest_rel([0.5, 0.6, 0.55], [0.2, 0.32, 0.25]).pvalue
    assert ta.variants[-1].variant == "big" and ta.variants[-1].p_adjusted == pytest.approx(p_big)
    assert pareto_set([3, 1, None], [0.5, 0.2, 0.1], higher_is_better=False) == [1]
    assert pareto_set([1, 2, 3], [0.5, 0.7, 0.7]) == [0, 1]
