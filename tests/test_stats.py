"""adapterbench.stats: metric columns, intervals, paired tests and corrections, checked against scipy, seqeval
and values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from seqeval import metrics as seqeval_metrics

from adapterbench.stats import (
    adjust,
    classification_metric,
    common_examples,
    entity_metric,
    estimate,
    example_bootstrap,
    function_metric,
    holm,
    mcnemar,
    metric_for_task,
    paired_test,
    regression_metric,
    seed_interval,
    significant,
)
from adapterbench.tasks import get_task
from adapterbench.tasks import metrics as task_metrics
from adapterbench.tasks.conll import CONLL_TAGS


def _classification(n: int, k: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, k, n)
    wrong = (ref + rng.integers(1, k, n)) % k
    return np.where(rng.random(n) < accuracy, ref, wrong), ref


def _tags(n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Random CoNLL tag-index sentences and noisy predictions of them."""
    rng = np.random.default_rng(seed)
    refs, preds = [], []
    for _ in range(n):
        r = rng.integers(0, len(CONLL_TAGS), rng.integers(1, 12)).tolist()
        refs.append(r)
        preds.append([t if rng.random() < 0.7 else int(rng.integers(0, len(CONLL_TAGS))) for t in r])
    return preds, refs


# ---- metric columns reproduce the task metrics -------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("name", ["accuracy", "f1", "matthews_correlation"])
def test_classification_columns_match_task_metrics(name, k):
    pred, ref = _classification(300, k, 0.7, seed=k)
    metric = classification_metric(name, num_labels=k)
    expected = {"accuracy": task_metrics.accuracy(pred, ref), "f1": task_metrics.f1(pred, ref, num_labels=k),
                "matthews_correlation": task_metrics.matthews_correlation(pred, ref)}[name]
    assert metric.value(pred, ref) == pytest.approx(expected, abs=1e-12)
    # Batched: every row of a (B, n) resample equals the metric of that resample.
    idx = np.random.default_rng(1).integers(0, 300, (5, 300))
    (codes,) = metric.columns(pred, ref)
    batched = metric.statistic(codes[idx])
    assert batched.shape == (5,)
    for row, value in zip(idx, batched):
        assert value == pytest.approx(metric.value(pred[row], ref[row]), abs=1e-12)


def test_classification_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        classification_metric("accuracy").columns([0, 2], [0, 1])


@pytest.mark.parametrize("name,reference", [("pearson", stats.pearsonr), ("spearmanr", stats.spearmanr)])
def test_regression_columns_match_scipy(name, reference):
    rng = np.random.default_rng(2)
    ref = np.round(rng.uniform(0, 5, 200), 1)  # rounded: ties for Spearman
    pred = np.round(ref + rng.normal(0, 1, 200), 1)
    assert regression_metric(name).value(pred, ref) == pytest.approx(reference(pred, ref)[0], abs=1e-12)


@pytest.mark.parametrize("name", ["f1", "precision", "recall", "accuracy"])
def test_entity_columns_match_seqeval(name):
    preds, refs = _tags(80, seed=3)
    p_tags, r_tags = task_metrics.to_tags(preds, CONLL_TAGS), task_metrics.to_tags(refs, CONLL_TAGS)
    expected = {"f1": seqeval_metrics.f1_score, "precision": seqeval_metrics.precision_score,
                "recall": seqeval_metrics.recall_score}.get(name)
    value = (expected(r_tags, p_tags, zero_division=0) if expected
             else seqeval_metrics.accuracy_score(r_tags, p_tags))
    assert entity_metric(name, CONLL_TAGS).value(preds, refs) == pytest.approx(value, abs=1e-12)


# ---- intervals --------------------------------------------------------------------------------------------
def test_seed_interval_equals_scipy_t():
    values = [0.81, 0.84, 0.79, 0.83]
    got = seed_interval(values, 0.95)
    expected = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert got.method == "t over 4 seeds"
    assert seed_interval([0.8]) is None
    equal = seed_interval([0.8, 0.8, 0.8])
    assert (equal.low, equal.high) == pytest.approx((0.8, 0.8), abs=1e-12)
    assert seed_interval([0.5, 0.5]).low == 0.5  # zero spread: scipy would give NaN


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_example_bootstrap_equals_scipy_on_the_raw_metric(method):
    """Our vectorised columns give scipy's interval for F1 computed by the plain task metric, draw for draw."""
    pred, ref = _classification(150, 2, 0.75, seed=4)
    _, got, _ = example_bootstrap(classification_metric("f1"), [pred], ref, n_resamples=999, method=method, rng=7)
    expected = stats.bootstrap((pred, ref), lambda p, r: task_metrics.f1(p, r), paired=True, vectorized=False,
                               n_resamples=999, method=method, rng=7).confidence_interval
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert got.low < task_metrics.f1(pred, ref) < got.high


def test_pearson_bootstrap_equals_scipy():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=120)
    pred = ref + rng.normal(0, 0.8, 120)
    _, got, _ = example_bootstrap(regression_metric("pearson"), [pred], ref, n_resamples=999, rng=3)
    expected = stats.bootstrap((pred, ref), lambda p, r: stats.pearsonr(p, r)[0], paired=True, vectorized=False,
                               n_resamples=999, rng=3).confidence_interval
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-10)


def test_entity_f1_vectorised_and_plain_function_give_the_same_interval():
    """Per-sentence entity counts resample exactly like seqeval on resampled sentences (same draws)."""
    preds, refs = _tags(40, seed=6)

    def seqeval_f1(p, r):
        return seqeval_metrics.f1_score(task_metrics.to_tags(r, CONLL_TAGS), task_metrics.to_tags(p, CONLL_TAGS),
                                        zero_division=0)

    kw = dict(n_resamples=300, method="percentile", rng=11)
    v1, fast, _ = example_bootstrap(entity_metric("f1", CONLL_TAGS), [preds], refs, **kw)
    v2, slow, _ = example_bootstrap(function_metric("f1", seqeval_f1), [preds], refs, **kw)
    assert v1 == pytest.approx(v2, abs=1e-12)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12)
    assert fast.low < v1 < fast.high


def test_estimate_reports_the_wider_interval_and_says_which():
    metric = classification_metric("accuracy")
    pred, ref = _classification(400, 2, 0.8, seed=8)
    flip = np.random.default_rng(9).random(400) < 0.1
    runs = {0: pred, 1: np.where(flip, 1 - pred, pred), 2: pred}
    seed_values = {s: metric.value(p, ref) for s, p in runs.items()}
    e = estimate(metric, seed_values, runs, ref, n_resamples=500)
    assert e.seed_interval is not None and e.example_interval is not None
    widths = {"seeds": e.seed_interval.half_width, "examples": e.example_interval.half_width}
    assert e.reported == max(widths, key=widths.get)
    assert e.interval == (e.seed_interval if e.reported == "seeds" else e.example_interval)
    assert e.value == pytest.approx(np.mean(list(seed_values.values())))
    one = estimate(metric, predictions={0: pred}, references=ref, n_resamples=500)
    assert one.reported == "examples" and one.std is None and one.seed_interval is None
    assert estimate(seed_values={0: 0.8}).reported == "none"
    assert estimate(seed_values=seed_values).reported == "seeds"


@pytest.mark.parametrize("metric, values", [
    (classification_metric("accuracy"), [0.50, 0.78, 0.69]),      # scipy's t interval: up to about 1.01
    (classification_metric("matthews_correlation"), [-0.9, 0.1, -0.5]),  # down to about -1.6
    (regression_metric("pearson"), [0.95, 0.10, 0.60]),
])
def test_a_seed_interval_past_the_metrics_range_is_clipped_to_it(metric, values):
    seeds = dict(enumerate(values))
    unclipped = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    low, high = metric.bounds
    assert unclipped.low < low or unclipped.high > high  # the case is real: scipy's interval leaves the range
    e = estimate(metric, seeds)
    assert (e.interval.low, e.interval.high) == pytest.approx((max(unclipped.low, low), min(unclipped.high, high)))
    assert e.interval.method == f"t over 3 seeds, clipped to the metric's range [{low:g}, {high:g}]"
    # within the range nothing changes, and without a metric there is no range to clip to
    inside = estimate(metric, {0: 0.80, 1: 0.82, 2: 0.81})
    assert inside.interval == seed_interval([0.80, 0.82, 0.81])
    assert estimate(seed_values=seeds).interval == seed_interval(values)


# ---- paired tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["accuracy", "f1"])
def test_identical_predictions_are_tied(name):
    pred, ref = _classification(300, 2, 0.8, seed=10)
    res = paired_test(classification_metric(name), pred, pred.copy(), ref, n_resamples=500)
    assert res.identical and res.difference == 0.0 and res.p_value == 1.0
    assert (res.interval.low, res.interval.high) == (0.0, 0.0)


@pytest.mark.parametrize("name,test", [("accuracy", "mcnemar"), ("accuracy", "permutation"),
                                       ("f1", "permutation"), ("matthews_correlation", "permutation")])
def test_a_built_in_difference_is_significant(name, test):
    pred_a, ref = _classification(400, 2, 0.85, seed=11)
    # B: A with 40 of its right answers turned wrong.
    pred_b = pred_a.copy()
    right = np.flatnonzero(pred_a == ref)[:40]
    pred_b[right] = 1 - ref[right]
    res = paired_test(classification_metric(name), pred_a, pred_b, ref, test=test, n_resamples=999)
    assert res.test == test and not res.identical
    assert res.difference > 0 and res.p_value < 0.01 and res.p_greater < 0.005 and res.p_less > 0.99
    assert 0 < res.interval.low < res.difference < res.interval.high


def test_mcnemar_equals_the_exact_binomial_on_counts_worked_by_hand():
    # A right on 10 examples B gets wrong, B right on 2 that A gets wrong, 88 agree.
    correct_a = np.array([1] * 10 + [0] * 2 + [1] * 80 + [0] * 8)
    correct_b = np.array([0] * 10 + [1] * 2 + [1] * 80 + [0] * 8)
    two, less, greater, b, c = mcnemar(correct_a, correct_b)
    assert (b, c) == (10, 2)
    # P(X >= 10), X ~ Bin(12, 1/2) = (C(12,10) + C(12,11) + C(12,12)) / 2^12 = 79 / 4096.
    assert greater == pytest.approx(79 / 4096, abs=1e-15)
    assert two == pytest.approx(2 * 79 / 4096, abs=1e-15)
    assert less == pytest.approx(1 - (12 + 1) / 4096, abs=1e-15)  # P(X <= 10) = 1 - P(X >= 11)


def test_sign_flip_agrees_with_scipy_permutation_test():
    pred_a, ref = _classification(300, 2, 0.8, seed=12)
    pred_b = np.where(np.random.default_rng(13).random(300) < 0.03, 1 - pred_a, pred_a)
    metric = classification_metric("f1")
    ours = paired_test(metric, pred_a, pred_b, ref, test="permutation", n_resamples=4000, interval=False)

    def difference(x, y, axis=-1):
        return metric.statistic(x, axis=axis) - metric.statistic(y, axis=axis)

    (ca,), (cb,) = metric.columns(pred_a, ref), metric.columns(pred_b, ref)
    reference = stats.permutation_test((ca, cb), difference, permutation_type="samples", vectorized=True,
                                       n_resamples=4000, rng=0)
    assert 0.05 < reference.pvalue < 0.95  # a case where the p-value is not at a bound
    assert ours.p_value == pytest.approx(reference.pvalue, abs=0.03)  # Monte Carlo error of two 4000-draw tests


def test_paired_bootstrap_interval_equals_scipy():
    pred_a, ref = _classification(200, 2, 0.8, seed=14)
    pred_b, _ = _classification(200, 2, 0.7, seed=15)
    metric = classification_metric("accuracy")
    res = paired_test(metric, pred_a, pred_b, ref, test="mcnemar", n_resamples=999, rng=4)
    expected = stats.bootstrap((pred_a, pred_b, ref), lambda a, b, r: np.mean(a == r) - np.mean(b == r),
                               paired=True, vectorized=False, n_resamples=999,
                               rng=np.random.default_rng(4)).confidence_interval
    assert (res.interval.low, res.interval.high) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_seeds_are_paired_by_key_and_the_example_is_the_unit():
    good, ref = _classification(300, 2, 0.9, seed=16)
    bad, _ = _classification(300, 2, 0.6, seed=17)
    metric = classification_metric("accuracy")
    same = paired_test(metric, {1: good, 2: bad}, {2: bad, 1: good, 3: good}, ref, n_resamples=300)
    assert same.identical and same.seeds == (1, 2) and same.p_value == 1.0
    crossed = paired_test(metric, {1: good, 2: bad}, {1: bad, 2: good}, ref, n_resamples=300)
    # Seed 1 favours A by as much as seed 2 favours B: the seed-mean difference is 0 on every resample.
    assert crossed.difference == pytest.approx(0.0, abs=1e-12) and not crossed.identical
    assert crossed.p_value == 1.0 and crossed.test == "permutation"
    with pytest.raises(ValueError, match="no seed in common"):
        paired_test(metric, {1: good}, {2: good}, ref)
    with pytest.raises(ValueError, match="McNemar"):
        paired_test(metric, {1: good, 2: bad}, {1: bad, 2: good}, ref, test="mcnemar")


# ---- multiple comparisons ----------------------------------------------------------------------------------
def test_holm_worked_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> max(0.06, 0.04) = 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert significant([0.03], 0.05).tolist() == [True]  # significant alone ...
    assert significant(p, 0.05).tolist() == [True, False, False, True]  # ... not in the family
    assert significant(p, 0.05, method="none").tolist() == [True, True, True, True]
    assert adjust(p, "bh") == pytest.approx(stats.false_discovery_control(p, method="bh"))
    assert holm([]).size == 0
    with pytest.raises(ValueError, match="outside"):
        holm([0.2, 1.5])


def test_metric_for_task_and_common_examples():
    conll = metric_for_task(get_task("conll2003"))
    assert conll.name == "f1" and conll.higher_is_better
    preds, refs = _tags(20, seed=18)
    assert conll.value(preds, refs) == pytest.approx(
        seqeval_metrics.f1_score(task_metrics.to_tags(refs, CONLL_TAGS), task_metrics.to_tags(preds, CONLL_TAGS)))
    lower = metric_for_task(get_task("stsb").derive(greater_is_better=False))
    assert lower.name == "pearson" and not lower.higher_is_better
    ia, ib = common_examples([5, 3, 9, 1], [1, 9, 7, 5])
    assert ia.tolist() == [0, 2, 3] and ib.tolist() == [3, 1, 0]
    with pytest.raises(ValueError, match="no evaluation example"):
        common_examples([1], [2])
