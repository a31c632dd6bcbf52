"""adapterbench.stats.nightly: false-alarm rate over simulated null pairs, detection power, the exact identity
check, the McNemar power helper and the speed/memory bands."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from adapterbench.stats import (
    band,
    band_check,
    classification_metric,
    discordance_rate,
    function_metric,
    identical,
    mcnemar_min_detectable_drop,
    mcnemar_power,
    regression_decision,
)

ACCURACY = classification_metric("accuracy")
ALPHA = 0.05


def _null_pair(rng: np.random.Generator, n: int, seeds: int = 1):
    """Two reruns of unchanged code: per-example difficulty shared, right/wrong drawn independently per run."""
    p_right = rng.beta(4.0, 1.2, n)  # ~0.77 accuracy; easy and hard examples, as on SST-2
    ref = rng.integers(0, 2, n)

    def run():
        return np.where(rng.random(n) < p_right, ref, 1 - ref)

    return {s: run() for s in range(seeds)}, {s: run() for s in range(seeds)}, ref


def _false_alarm_rate(decide, n_pairs: int, n: int, seeds: int = 1, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    alarms = 0
    for i in range(n_pairs):
        base, cur, ref = _null_pair(rng, n, seeds)
        alarms += bool(decide(base, cur, ref, i))
    return alarms / n_pairs


def _bound(n_pairs: int) -> float:
    """alpha plus three binomial standard errors of a rate measured over ``n_pairs`` pairs."""
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / n_pairs)


def test_false_alarm_rate_single_seed_mcnemar_and_a_naive_rule_that_fails_the_same_check():
    def ours(base, cur, ref, i):
        return regression_decision(ACCURACY, base, cur, ref, alpha=ALPHA, interval=False, rng=i).regressed

    def naive(base, cur, ref, i):  # the old compare: a drop above max(0.01, 2 std) with one seed (std 0)
        return ACCURACY.value(base[0], ref) - ACCURACY.value(cur[0], ref) > 0.01

    n_pairs = 300
    rate = _false_alarm_rate(ours, n_pairs, n=500)
    assert rate <= _bound(n_pairs), rate
    naive_rate = _false_alarm_rate(naive, n_pairs, n=500)
    assert naive_rate > _bound(n_pairs), naive_rate  # the check discriminates: it fails the rule issue 10 names


def test_false_alarm_rate_three_seeds_permutation():
    def ours(base, cur, ref, i):
        res = regression_decision(ACCURACY, base, cur, ref, alpha=ALPHA, n_resamples=400, interval=False, rng=i)
        assert res.test == "permutation" and res.seeds == (0, 1, 2)
        return res.regressed

    n_pairs = 200
    rate = _false_alarm_rate(ours, n_pairs, n=200, seeds=3, seed=1)
    assert rate <= _bound(n_pairs), rate


def _drop_pair(rng, n: int, discordance: float, drop: float):
    """Baseline and current on the power helper's model: discordant w.p. d, against current w.p. (d+drop)/2d."""
    ref = rng.integers(0, 2, n)
    base_right = rng.random(n) < 0.8
    discordant = rng.random(n) < discordance
    against_current = rng.random(n) < (discordance + drop) / (2 * discordance)
    # On a discordant example exactly one is right: the baseline when the example goes against the current run.
    cur_right = np.where(discordant, ~against_current, base_right)
    base_right = np.where(discordant, against_current, base_right)
    return np.where(base_right, ref, 1 - ref), np.where(cur_right, ref, 1 - ref), ref


def test_detection_power_matches_the_power_helper():
    n, d = 500, 0.12
    delta = mcnemar_min_detectable_drop(n, d, alpha=ALPHA, power=0.8)
    assert 0.02 < delta < 0.06
    assert mcnemar_power(n, d, delta, ALPHA) == pytest.approx(0.8, abs=0.01)
    rng = np.random.default_rng(3)
    sims = 400

    def detected(drop):
        pairs = [_drop_pair(rng, n, d, drop) for _ in range(sims)]
        return np.mean([regression_decision(ACCURACY, b, c, r, alpha=ALPHA, interval=False).regressed
                        for b, c, r in pairs])

    at_delta = detected(delta)
    assert at_delta == pytest.approx(0.8, abs=3 * math.sqrt(0.16 / sims)), at_delta
    assert detected(delta / 2) < 0.55
    # The normal closed form is close to the exact answer.
    assert mcnemar_min_detectable_drop(n, d, method="normal") == pytest.approx(delta, rel=0.1)


def test_power_helper_edges():
    assert mcnemar_min_detectable_drop(20, 0.05) is None  # one discordant example in expectation: hopeless
    small = mcnemar_min_detectable_drop(2000, 0.1)
    assert small < mcnemar_min_detectable_drop(500, 0.1)  # more examples, smaller drop
    assert mcnemar_min_detectable_drop(2000, 0.1, min_effect=0.02) >= small
    # The exact rule rejects at k iff scipy's exact test does.
    for discordant in (5, 17, 40):
        k = int(stats.binom.isf(ALPHA, discordant, 0.5)) + 1
        assert stats.binomtest(k, discordant, 0.5, alternative="greater").pvalue <= ALPHA
        assert stats.binomtest(k - 1, discordant, 0.5, alternative="greater").pvalue > ALPHA
    assert discordance_rate([1, 1, 0, 0], [1, 0, 1, 0]) == 0.5
    with pytest.raises(ValueError, match="discordance"):
        mcnemar_min_detectable_drop(100, 0.0)


def test_decision_statuses_min_effect_and_direction():
    rng = np.random.default_rng(4)
    base, cur, ref = _drop_pair(rng, 5000, 0.1, 0.02)
    assert regression_decision(ACCURACY, base, cur, ref, min_effect=0.01, interval=False).status == "regressed"
    assert regression_decision(ACCURACY, base, cur, ref, min_effect=0.05, interval=False).status == "unchanged"
    assert regression_decision(ACCURACY, cur, base, ref, interval=False).status == "improved"
    same = regression_decision(ACCURACY, {0: base, 1: cur}, {0: base.copy(), 1: cur.copy()}, ref)
    assert same.status == "identical" and same.change == 0.0 and same.interval.high == same.interval.low == 0
    # Lower is better: a mean squared error that grows is a regression.
    mse = function_metric("mse", lambda p, r: float(np.mean((np.asarray(p) - np.asarray(r)) ** 2)),
                          higher_is_better=False)
    target = rng.normal(size=300)
    good, worse = target + rng.normal(0, 0.5, 300), target + rng.normal(0, 0.8, 300)
    res = regression_decision(mse, good, worse, target, n_resamples=300)
    assert res.status == "regressed" and res.worsening > 0 and res.change > 0 and res.test == "permutation"
    assert res.interval.low > 0
    assert regression_decision(mse, worse, good, target, n_resamples=300, interval=False).status == "improved"
    with pytest.raises(ValueError, match="alpha"):
        regression_decision(ACCURACY, base, cur, ref, alpha=1.5)


def test_identical_is_exact():
    a = {"validation": {"final": [1, 0, 1], "tokens": [[1, 2], [3]], "scores": [0.5, float("nan")]}}
    b = {"validation": {"final": [1, 0, 1], "tokens": [[1, 2], [3]], "scores": [0.5, float("nan")]}}
    assert identical(a, b)
    b["validation"]["tokens"] = [[1, 2], [4]]
    assert not identical(a, b)
    assert not identical([0.1, 0.2], [0.1, 0.2 + 1e-16 * 2])
    assert not identical({"x": [1]}, {"y": [1]})


def test_band_check_uses_the_runs_own_spread_and_only_matching_fingerprints():
    rng = np.random.default_rng(5)
    base = 0.10 * (1 + rng.normal(0, 0.02, 400))  # 2% per-step noise
    b = band(base, k=3.0, min_relative=0.0)
    mad = 1.4826 * np.median(np.abs(base - np.median(base)))
    assert b.median == pytest.approx(np.median(base)) and b.spread == pytest.approx(mad, rel=1e-4)
    same = 0.10 * (1 + rng.normal(0, 0.02, 400))
    slow = 1.3 * same
    env = {"device_name": "cpu-x", "torch_threads": 2}
    kw = dict(baseline_fingerprint=env, current_fingerprint=dict(env), min_relative=0.05)
    assert band_check(base, same, **kw).status == "within band"
    slower = band_check(base, slow, **kw)
    assert slower.regressed and slower.ratio == pytest.approx(1.3, rel=0.02)
    assert band_check(base, same / 1.3, **kw).status == "improved"
    other = band_check(base, slow, baseline_fingerprint=env, current_fingerprint={**env, "device_name": "cpu-y"})
    assert other.status == "not comparable" and not other.regressed
    # Throughput (higher is better): a drop fails, a rise does not.
    rate = band_check(1 / base, 1 / slow, lower_is_better=False, **kw)
    assert rate.regressed
    # Warm-up steps are left out of the band.
    assert band(np.r_[[5.0] * 10, base], warmup=10).median == pytest.approx(np.median(base))
