"""The metric registry and the vectorised resampling against scikit-learn, scipy and seqeval on random data, and
the per-example statistics cache (hit, miss, invalidation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from seqeval import metrics as seqeval_metrics
from sklearn import metrics as skm

from adapterbench.schema import METRIC_DIRECTIONS
from adapterbench.stats import cache, family, resample
from adapterbench.stats.intervals import example_bootstrap
from adapterbench.stats.metrics import (
    classification_metric,
    entity_metric,
    metric_directions,
    metrics_by_kind,
    register_metric,
    registered,
    regression_metric,
)
from adapterbench.stats.paired import paired_test, paired_tests, sign_flip_null
from adapterbench.tasks import TASKS, compute_metrics
from adapterbench.tasks import metrics as task_metrics
from adapterbench.tasks.conll import CONLL_TAGS


def _classes(n, k, accuracy, seed):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, k, n)
    wrong = (ref + rng.integers(1, k, n)) % k
    return np.where(rng.random(n) < accuracy, ref, wrong), ref


def _tags(n, seed, keep=0.7):
    rng = np.random.default_rng(seed)
    refs, preds = [], []
    for _ in range(n):
        r = rng.integers(0, len(CONLL_TAGS), rng.integers(1, 12)).tolist()
        refs.append(r)
        preds.append([t if rng.random() < keep else int(rng.integers(0, len(CONLL_TAGS))) for t in r])
    return preds, refs


def _noisy(refs, seed, keep=0.7):
    rng = np.random.default_rng(seed)
    return [[t if rng.random() < keep else int(rng.integers(0, len(CONLL_TAGS))) for t in r] for r in refs]


# ---- the registry against the reference libraries ------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_classification_metrics_equal_scikit_learn(k, seed):
    pred, ref = _classes(257, k, 0.6, seed)
    f1 = (skm.f1_score(ref, pred, labels=[1], average="micro", zero_division=0) if k == 2
          else skm.f1_score(ref, pred, average="macro", zero_division=0))
    expected = {"accuracy": skm.accuracy_score(ref, pred), "f1": f1,
                "matthews_correlation": skm.matthews_corrcoef(ref, pred)}
    for name, value in expected.items():
        metric = classification_metric(name, k)
        assert metric.value(pred, ref) == pytest.approx(value, abs=1e-12), name
        assert float(metric.statistic(*metric.columns(pred, ref))) == pytest.approx(value, abs=1e-12), name


def test_classification_degenerate_cases_follow_scikit_learn():
    ref = np.array([0, 1, 0, 1, 1])
    constant = np.zeros(5, dtype=int)
    assert classification_metric("matthews_correlation").value(constant, ref) == skm.matthews_corrcoef(ref, constant)
    assert classification_metric("f1").value(constant, constant) == 0.0  # no positive anywhere
    # A macro F1 over three classes where one never occurs: the mean over the two that do.
    assert classification_metric("f1", 3).value([0, 1, 1], [0, 1, 0]) == pytest.approx(
        skm.f1_score([0, 1, 0], [0, 1, 1], average="macro"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    ref = np.round(rng.uniform(0, 5, 300), 1)  # ties for Spearman
    pred = np.round(ref + rng.normal(0, 1.5, 300), 1)
    assert regression_metric("pearson").value(pred, ref) == pytest.approx(stats.pearsonr(pred, ref)[0], abs=1e-12)
    assert regression_metric("spearmanr").value(pred, ref) == pytest.approx(stats.spearmanr(pred, ref)[0],
                                                                            abs=1e-12)


@pytest.mark.parametrize("name", ["pearson", "spearmanr"])
def test_an_undefined_correlation_is_nan_everywhere(name):
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    metric = regression_metric(name)
    for pred, r in ((np.full(4, 2.5), ref), (ref, np.full(4, 1.0)), (np.array([1.0]), np.array([2.0]))):
        assert math.isnan(metric.value(pred, r))
        assert math.isnan(float(metric.statistic(*metric.columns(pred, r))))
    if metric.sums is not None:  # the sufficient statistics agree, and a resample of a constant is undefined
        assert math.isnan(float(metric.from_sums(metric.sums(np.full(4, 2.5), ref).sum(0))))
    task = TASKS.get("stsb")
    assert math.isnan(compute_metrics(task, np.full(4, 2.5), ref)[name])


def test_the_loop_stores_an_undefined_correlation_as_none():
    from adapterbench.harness.loop import score

    scores = score(TASKS.get("stsb"), [2.5, 2.5, 2.5], [1.0, 2.0, 3.0])
    assert scores == {"pearson": None, "spearmanr": None}
    assert score(TASKS.get("stsb"), [1.0, 2.0, 2.5], [1.0, 2.0, 3.0])["pearson"] == pytest.approx(
        stats.pearsonr([1.0, 2.0, 2.5], [1.0, 2.0, 3.0])[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_entity_metrics_equal_seqeval(seed):
    preds, refs = _tags(150, seed)
    p_tags, r_tags = task_metrics.to_tags(preds, CONLL_TAGS), task_metrics.to_tags(refs, CONLL_TAGS)
    expected = {"f1": seqeval_metrics.f1_score(r_tags, p_tags, zero_division=0),
                "precision": seqeval_metrics.precision_score(r_tags, p_tags, zero_division=0),
                "recall": seqeval_metrics.recall_score(r_tags, p_tags, zero_division=0),
                "accuracy": seqeval_metrics.accuracy_score(r_tags, p_tags)}
    for name, value in expected.items():
        assert entity_metric(name, CONLL_TAGS).value(preds, refs) == pytest.approx(value, abs=1e-12), name
    assert compute_metrics(TASKS.get("conll2003"), preds, refs) == pytest.approx(expected, abs=1e-12)


def test_one_direction_per_metric_read_by_the_schema():
    assert {k: METRIC_DIRECTIONS[k] for k in metric_directions()} == metric_directions()
    assert METRIC_DIRECTIONS["loss"] == "lower"
    assert metrics_by_kind()["regression"] == ("pearson", "spearmanr")
    for spec in registered():
        assert spec.build(num_labels=3, labels=CONLL_TAGS).higher_is_better == spec.higher_is_better
    with pytest.raises(ValueError, match="already registered"):
        register_metric("accuracy", "classification", higher_is_better=True)(lambda **_: None)
    with pytest.raises(ValueError, match="other direction"):
        register_metric("f1", "regression", higher_is_better=False)(lambda **_: None)


# ---- vectorised bootstrap: the same draws as scipy, so the same interval --------------------------------------
def _scipy_seed_mean(metric, preds, ref, method, n_resamples, rng):
    """scipy.stats.bootstrap over the columns form, the seed-mean statistic (the path before the registry)."""
    cols = [c for p in preds for c in metric.columns(p, ref)]
    per = len(cols) // len(preds)

    def statistic(*c, axis=-1):
        return np.mean([metric.statistic(*c[i:i + per], axis=axis) for i in range(0, len(c), per)], axis=0)

    return stats.bootstrap(tuple(cols), statistic, paired=True, vectorized=True, n_resamples=n_resamples,
                           method=method, rng=rng).confidence_interval


@pytest.mark.parametrize("method", ["BCa", "percentile"])
@pytest.mark.parametrize("name,seeds", [("accuracy", 1), ("f1", 3), ("matthews_correlation", 3)])
def test_sums_bootstrap_equals_scipy_over_seeds(name, seeds, method):
    # Accuracy with one seed: a seed mean of accuracies is discrete, and scipy's BCa counts ties of the estimate
    # after float rounding in its own summation order (ours counts them within 1e-12), so there the two may
    # differ by one tie's share of z0.
    ref = _classes(180, 3, 0.7, 0)[1]
    preds = [np.where(np.random.default_rng(s).random(180) < 0.7, ref, (ref + 1) % 3) for s in range(seeds)]
    metric = classification_metric(name, 3)
    _, got, _ = example_bootstrap(metric, preds, ref, n_resamples=600, method=method, rng=5)
    expected = _scipy_seed_mean(metric, preds, ref, method, 600, 5)
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-10)


def test_pearson_and_entity_sums_bootstrap_equal_scipy():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=150)
    preds = [ref + rng.normal(0, s, 150) for s in (0.5, 1.0)]
    _, got, _ = example_bootstrap(regression_metric("pearson"), preds, ref, n_resamples=500, method="BCa", rng=2)
    expected = _scipy_seed_mean(regression_metric("pearson"), preds, ref, "BCa", 500, 2)
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-10)
    tags, refs = _tags(60, 4)
    metric = entity_metric("f1", CONLL_TAGS)
    _, got, _ = example_bootstrap(metric, [tags], refs, n_resamples=400, method="BCa", rng=9)
    expected = _scipy_seed_mean(metric, [tags], refs, "BCa", 400, 9)
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-10)


def test_spearman_weighted_ranks_equal_ranking_each_resample():
    rng = np.random.default_rng(6)
    ref = np.round(rng.uniform(0, 5, 120), 0)  # many ties
    preds = [np.round(ref + rng.normal(0, 1, 120), 0) for _ in range(2)]
    metric = regression_metric("spearmanr")
    _, got, dist = example_bootstrap(metric, preds, ref, n_resamples=300, rng=1)
    expected = _scipy_seed_mean(metric, preds, ref, "percentile", 300, 1)
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-10)
    assert got.method.startswith("percentile") and dist.std() > 0


# ---- sign flips ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["f1", "matthews_correlation", "pearson", "entity f1"])
def test_sign_flip_null_from_sums_equals_swapping_columns_with_the_same_draws(name):
    if name == "pearson":
        rng = np.random.default_rng(7)
        ref = rng.normal(size=90)
        a, b = [ref + rng.normal(0, 1, 90) for _ in range(2)], [ref + rng.normal(0, 1.2, 90) for _ in range(2)]
        metric = regression_metric("pearson")
    elif name == "entity f1":
        a0, ref = _tags(70, 8)
        a, b = [a0, _noisy(ref, 9)], [_noisy(ref, 10), _noisy(ref, 11)]
        metric = entity_metric("f1", CONLL_TAGS)
    else:
        ref = _classes(90, 2, 0.8, 12)[1]
        a = [np.where(np.random.default_rng(s).random(90) < 0.8, ref, 1 - ref) for s in (1, 2)]
        b = [np.where(np.random.default_rng(s).random(90) < 0.7, ref, 1 - ref) for s in (3, 4)]
        metric = classification_metric(name)
    draws = 2500
    null = resample.sign_flip_null_sums([metric.sums(p, ref) for p in a], [metric.sums(p, ref) for p in b],
                                        metric.from_sums, draws, rng=3)
    swaps = np.concatenate(list(resample.flips(len(ref), draws, rng=3)))
    cols_a, cols_b = [metric.columns(p, ref) for p in a], [metric.columns(p, ref) for p in b]
    by_columns = []
    for s in range(2):
        ca, cb = cols_a[s], cols_b[s]
        if isinstance(ref, list):  # entity counts: swap whole sentences' count columns
            ca, cb = [np.asarray(c) for c in ca], [np.asarray(c) for c in cb]
        swapped_a = [np.where(swaps, y, x) for x, y in zip(ca, cb)]
        swapped_b = [np.where(swaps, x, y) for x, y in zip(ca, cb)]
        by_columns.append(metric.statistic(*swapped_a) - metric.statistic(*swapped_b))
    # counts swap exactly (float32 holds small integers); moments to float32's precision
    assert null == pytest.approx(np.mean(by_columns, axis=0), abs=1e-9 if name != "pearson" else 1e-5)


def test_sign_flip_p_value_agrees_with_scipy_within_monte_carlo_error():
    pred_a, ref = _classes(300, 2, 0.8, 12)
    pred_b = np.where(np.random.default_rng(13).random(300) < 0.04, 1 - pred_a, pred_a)
    metric = classification_metric("matthews_correlation")
    ours = paired_test(metric, pred_a, pred_b, ref, test="permutation", n_permutations=8000, interval=False)
    (ca,), (cb,) = metric.columns(pred_a, ref), metric.columns(pred_b, ref)
    reference = stats.permutation_test((ca, cb), lambda x, y, axis=-1: metric.statistic(x, axis=axis)
                                       - metric.statistic(y, axis=axis), permutation_type="samples",
                                       vectorized=True, n_resamples=8000, rng=0)
    assert 0.05 < reference.pvalue < 0.95
    assert ours.n_permutations == 8000
    assert ours.mc_error == pytest.approx(2 * math.sqrt(min(ours.p_less, ours.p_greater)
                                                        * (1 - min(ours.p_less, ours.p_greater)) / 8000))
    # two independent estimates: their difference has sd sqrt(2) e
    assert abs(ours.p_value - reference.pvalue) < 4 * math.sqrt(2) * ours.mc_error


def test_the_monte_carlo_error_matches_the_spread_of_p_over_draws():
    pred_a, ref = _classes(300, 2, 0.8, 12)
    pred_b = np.where(np.random.default_rng(13).random(300) < 0.04, 1 - pred_a, pred_a)
    metric = classification_metric("matthews_correlation")
    runs = [paired_test(metric, pred_a, pred_b, ref, test="permutation", n_permutations=1000, interval=False,
                        rng=seed) for seed in range(40)]
    assert 0.03 < np.mean([r.p_value for r in runs]) < 0.97  # not at a bound, where the error vanishes
    spread = np.std([r.p_value for r in runs], ddof=1)
    assert 0.6 < spread / np.mean([r.mc_error for r in runs]) < 1.5


def test_batched_tests_equal_one_at_a_time_and_the_slow_columns_path():
    ref = _classes(150, 2, 0.8, 30)[1]
    runs = [{s: np.where(np.random.default_rng(10 * v + s).random(150) < 0.6 + 0.1 * v, ref, 1 - ref)
             for s in range(2)} for v in range(3)]
    metric = classification_metric("f1")
    pairs = [(runs[0], runs[1]), (runs[0], runs[2]), (runs[1], runs[2])]
    together = paired_tests(metric, pairs, ref, n_permutations=3000)
    alone = [paired_test(metric, a, b, ref, n_permutations=3000) for a, b in pairs]
    assert [(r.p_value, r.interval) for r in together] == [(r.p_value, r.interval) for r in alone]
    # the columns path (other draws) agrees within Monte-Carlo error
    for (a, b), r in zip(pairs, together):
        cols_a = [metric.columns(a[s], ref) for s in (0, 1)]
        cols_b = [metric.columns(b[s], ref) for s in (0, 1)]
        null = sign_flip_null(metric, cols_a, cols_b, 3000, np.random.default_rng(99))
        slow = resample.p_values(null, r.difference)[0]
        assert abs(slow - r.p_value) < 4 * math.sqrt(2) * max(r.mc_error, 1e-3)


# ---- settling against the Monte-Carlo error -----------------------------------------------------------------
def _task(runs, ref, metric):
    from adapterbench.stats import TaskRuns, VariantRuns

    variants = [VariantRuns(name, {s: metric.value(p, ref) for s, p in preds.items()}, preds)
                for name, preds in runs.items()]
    return TaskRuns("t", metric, variants, ref)


def test_a_decision_near_the_threshold_gets_more_flips_and_a_clear_one_does_not():
    metric = classification_metric("accuracy")
    ref = np.random.default_rng(0).integers(0, 2, 400)
    base = np.where(np.random.default_rng(1).random(400) < 0.8, ref, 1 - ref)
    clear = base.copy()
    clear[np.flatnonzero(base == ref)[:60]] ^= 1  # 60 right answers made wrong: p ~ 1e-15
    # a difference whose p sits at 0.05: 22 right answers turned wrong, 10 wrong ones turned right (the exact
    # sign test of 22 against 10 gives p = 0.0501)
    near = base.copy()
    near[np.flatnonzero(base == ref)[:22]] ^= 1
    near[np.flatnonzero(base != ref)[:10]] ^= 1
    task = _task({"base": {0: base, 1: base}, "clear": {0: clear, 1: clear}, "near": {0: near, 1: near}},
                 ref, metric)
    pairs = [(task.variants[1], task.variants[0]), (task.variants[2], task.variants[0])]
    first = family.compare(task, pairs, n_resamples=2000, n_permutations=2000, interval=False, rng=0)
    assert family._near([r.p_value for r in first], [r.mc_error for r in first], 1, 0.05)
    settled, adjusted, unstable = family.settle(task, pairs, first, 0.05, rng=0)
    assert settled[0].n_permutations == 2000  # far from 0.05: untouched
    assert settled[1].n_permutations > 2000  # near: more draws, and the same difference
    assert settled[1].difference == first[1].difference
    assert set(adjusted) == {0, 1} and adjusted[0] < 0.05
    near_still = family._near([r.p_value for r in settled], [r.mc_error for r in settled], 1, 0.05)
    assert (1 in unstable) == near_still
    assert unstable == set() or settled[1].n_permutations == family.MAX_PERMUTATIONS


# ---- the cache ----------------------------------------------------------------------------------------------
def test_sums_cache_hits_misses_and_invalidates_on_changed_predictions(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_CACHE, str(tmp_path))
    monkeypatch.delenv(cache.ENV_SWITCH, raising=False)
    cache.clear_memory()
    preds, refs = _tags(40, 5)
    metric = entity_metric("f1", CONLL_TAGS)
    key, first = cache.metric_sums(metric, preds, refs)
    assert cache.stats == {"hits": 0, "disk_hits": 0, "misses": 1}
    assert list(tmp_path.glob("report/*/*.npy")) == [tmp_path / "report" / key[:2] / f"{key}.npy"]
    again_key, again = cache.metric_sums(entity_metric("recall", CONLL_TAGS), preds, refs)  # same sums_key
    assert again_key == key and again is first and cache.stats["hits"] == 1
    cache.clear_memory()  # a new process: the disk entry is read
    _, from_disk = cache.metric_sums(metric, preds, refs)
    assert cache.stats["disk_hits"] == 1 and np.array_equal(from_disk, first)
    changed = [list(p) for p in preds]
    changed[0][0] = (changed[0][0] + 1) % len(CONLL_TAGS)  # one tag of one sentence: another sidecar
    new_key, new = cache.metric_sums(metric, changed, refs)
    assert new_key != key and cache.stats["misses"] == 1  # counted since the clear above
    assert np.array_equal(new, metric.sums(changed, refs))
    # a damaged entry is recomputed, not trusted
    (tmp_path / "report" / key[:2] / f"{key}.npy").write_bytes(b"not an array")
    cache.clear_memory()
    _, repaired = cache.metric_sums(metric, preds, refs)
    assert cache.stats["misses"] == 1 and np.array_equal(repaired, first)


def test_the_disk_cache_can_be_switched_off_and_skips_cheap_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_CACHE, str(tmp_path))
    cache.clear_memory()
    pred, ref = _classes(50, 2, 0.8, 1)
    cache.metric_sums(classification_metric("f1"), pred, ref)  # cheap: memory only
    monkeypatch.setenv(cache.ENV_SWITCH, "off")
    preds, refs = _tags(10, 2)
    cache.metric_sums(entity_metric("f1", CONLL_TAGS), preds, refs)
    assert not list(tmp_path.glob("report/*/*.npy"))
    cache.clear_memory()


def test_the_disk_cache_is_pruned_oldest_first(tmp_path):
    import os

    for i in range(5):
        path = tmp_path / "ab" / f"{i}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.zeros(100))  # 928 bytes each
        os.utime(path, (1000 + i, 1000 + i))
    size = (tmp_path / "ab" / "0.npy").stat().st_size
    assert cache.prune(tmp_path, 3 * size) == 2
    assert sorted(p.name for p in (tmp_path / "ab").iterdir()) == ["2.npy", "3.npy", "4.npy"]
    assert cache.prune(tmp_path, 3 * size) == 0
