"""Paired comparison of two variants on the same evaluation examples (and seeds).

The difference is ``d = mean_s [m(A_s) - m(B_s)]``: seed ``s`` of A is paired with seed ``s`` of B (seeds shared
by both; equal seeds share data order and initialisation, which makes the pair less noisy), and ``m`` is the
corpus-level metric. Three pieces, each on the metric's per-example columns (:mod:`adapterbench.stats.metrics`):

* **interval** of ``d``: paired bootstrap, ``scipy.stats.bootstrap(paired=True)`` over the example axis; one
  resample of example indices is shared by both variants and all seeds, and ``d`` is recomputed;
* **p-value** (``test="permutation"``): paired permutation (sign-flip) test. Under H0 the two variants'
  predictions on an example are exchangeable, so each resample swaps A's and B's predictions on a random half of
  the examples (the same examples in every seed, keeping the example the unit) and recomputes ``d``;
  one-sided ``p = (1 + #{d* <= d}) / (1 + B)`` (and its mirror), two-sided ``min(1, 2 min(p_less, p_greater))``
  (Davison & Hinkley, 1997; scipy's ``permutation_test(permutation_type="samples")`` convention), so ``B``
  resamples cannot give a two-sided p below ``2 / (B + 1)``. With sufficient statistics a batch of swaps is one
  matrix product (:func:`adapterbench.stats.resample.sign_flip_null_sums`; the draws are shared by every pair on
  the same examples); other metrics swap their columns. ``PairedResult.mc_error`` is the Monte-Carlo standard
  error of the two-sided p (:func:`adapterbench.stats.resample.mc_error`); the tests check scipy agrees within
  it;
* **McNemar's exact test** (``test="mcnemar"``, accuracy with one seed): with ``b`` examples right under A only
  and ``c`` right under B only, under H0 ``b ~ Binomial(b + c, 1/2)`` (``scipy.stats.binomtest``).

``test="auto"`` takes McNemar for accuracy with one seed, else the permutation test. Several seeds are not pooled
into McNemar: the same example appears once per seed, so the discordant pairs are not independent.

Without predictions, :func:`seed_paired_test` is the paired t-test over seeds (``scipy.stats.ttest_rel``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from adapterbench.stats import resample
from adapterbench.stats.cache import metric_sums
from adapterbench.stats.intervals import N_RESAMPLES, Interval, bootstrap, default_method
from adapterbench.stats.metrics import Metric

TESTS = ("auto", "permutation", "mcnemar")


@dataclass(frozen=True)
class PairedResult:
    """A minus B. ``p_less``: H1 ``m(A) < m(B)``; ``p_greater``: H1 ``m(A) > m(B)``; ``p_value``: two-sided."""

    metric: str
    difference: float
    interval: Interval | None
    p_value: float
    p_less: float
    p_greater: float
    test: str
    n_examples: int
    seeds: tuple[Any, ...]
    identical: bool  # the two sides' predictions are equal (per seed), so the difference is exactly 0
    n_permutations: int | None = None  # sign flips behind the p-values (None: an exact or a t test)
    mc_error: float | None = None      # Monte-Carlo standard error of p_value (sign flips only)


def as_seeds(predictions: Any) -> dict[Any, Any]:
    """A mapping seed -> predictions stays as it is; a bare prediction set is one run, seed 0."""
    return dict(predictions) if isinstance(predictions, Mapping) else {0: predictions}


def common_seeds(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> list[Any]:
    seeds = sorted(set(a) & set(b), key=str)
    if not seeds:
        raise ValueError(f"no seed in common: {sorted(a, key=str)} against {sorted(b, key=str)}")
    return seeds


def common_examples(ids_a: Sequence[Any], ids_b: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``a`` and in ``b`` of the example ids both have, in ``a``'s order (sidecars' example_ids).

    Index both runs' predictions (and the references) with them before a paired test of partial runs.
    """
    where_b = {i: k for k, i in enumerate(ids_b)}
    pairs = [(k, where_b[i]) for k, i in enumerate(ids_a) if i in where_b]
    if not pairs:
        raise ValueError("the two runs have no evaluation example in common")
    index_a, index_b = zip(*pairs)
    return np.asarray(index_a, dtype=np.int64), np.asarray(index_b, dtype=np.int64)


_p_values = resample.p_values


def sign_flip_null(metric: Metric, cols_a: Sequence[Sequence[np.ndarray]], cols_b: Sequence[Sequence[np.ndarray]],
                   n_resamples: int, rng: np.random.Generator, batch: int = 250) -> np.ndarray:
    """Null distribution of ``d`` with A and B swapped on a random half of the examples per resample, for
    metrics without sufficient statistics (their columns are swapped and the metric recomputed).

    ``cols_a[s]``: the columns of A's seed ``s`` (same for B); every column has shape ``(n,)``.
    """
    n = len(cols_a[0][0])
    null = []
    for start in range(0, n_resamples, batch):
        swap = rng.random((min(batch, n_resamples - start), n)) < 0.5  # (B, n), one draw for all seeds
        diffs = [metric.statistic(*(np.where(swap, ca, cb) for ca, cb in zip(sa, sb)))
                 - metric.statistic(*(np.where(swap, cb, ca) for ca, cb in zip(sa, sb)))
                 for sa, sb in zip(cols_a, cols_b)]
        null.append(np.mean(diffs, axis=0))
    return np.concatenate(null)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, float, float, int, int]:
    """McNemar's exact test on per-example 0/1 scores -> (two-sided, less, greater, b, c).

    ``b``: right under A only, ``c``: right under B only; ``p_greater`` is ``P(X >= b)``, ``X ~ Bin(b + c, 1/2)``.
    """
    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    if b + c == 0:
        return 1.0, 1.0, 1.0, b, c
    p = [float(sps.binomtest(b, b + c, 0.5, alternative=alt).pvalue) for alt in ("two-sided", "less", "greater")]
    return p[0], p[1], p[2], b, c


def arrays_equal(x: Any, y: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=np.asarray(x).dtype.kind == "f"))
    except (ValueError, TypeError):  # ragged sequences
        return len(x) == len(y) and all(arrays_equal(u, v) for u, v in zip(x, y))


@dataclass
class _Pair:
    """One comparison's inputs, read once: its seeds, sufficient statistics (or columns) and difference."""

    a: dict[Any, Any]
    b: dict[Any, Any]
    seeds: list[Any]
    test: str
    identical: bool
    difference: float
    n_examples: int
    blocks_a: list[tuple[str, np.ndarray]] | None = None
    blocks_b: list[tuple[str, np.ndarray]] | None = None
    cols_a: list[Any] | None = None
    cols_b: list[Any] | None = None


def _has_sums(metric: Metric) -> bool:
    return metric.sums is not None and metric.from_sums is not None


def _prepare(metric: Metric, a: Any, b: Any, references: Any, test: str) -> _Pair:
    if test not in TESTS:
        raise ValueError(f"test {test!r} is unknown; allowed: {list(TESTS)}")
    a, b = as_seeds(a), as_seeds(b)
    seeds = common_seeds(a, b)
    if test == "auto":
        test = "mcnemar" if metric.correct is not None and len(seeds) == 1 else "permutation"
    if test == "mcnemar" and (metric.correct is None or len(seeds) != 1):
        raise ValueError(f"McNemar's test needs accuracy and one seed; got {metric.name!r}, {len(seeds)} seeds")
    identical = all(arrays_equal(a[s], b[s]) for s in seeds)
    if _has_sums(metric):
        blocks_a = [metric_sums(metric, a[s], references) for s in seeds]
        blocks_b = [metric_sums(metric, b[s], references) for s in seeds]
        per_seed = [float(metric.from_sums(xa.sum(0)) - metric.from_sums(xb.sum(0)))
                    for (_, xa), (_, xb) in zip(blocks_a, blocks_b)]
        return _Pair(a, b, seeds, test, identical, float(np.mean(per_seed)), blocks_a[0][1].shape[0],
                     blocks_a=blocks_a, blocks_b=blocks_b)
    cols_a = [metric.columns(a[s], references) for s in seeds]
    cols_b = [metric.columns(b[s], references) for s in seeds]
    per_seed = [metric.statistic(*ca) - metric.statistic(*cb) for ca, cb in zip(cols_a, cols_b)]
    return _Pair(a, b, seeds, test, identical, float(np.mean(per_seed)), len(cols_a[0][0]), cols_a=cols_a,
                 cols_b=cols_b)


def paired_tests(metric: Metric, pairs: Sequence[tuple[Any, Any]], references: Any, *, test: str = "auto",
                 level: float = 0.95, n_resamples: int = N_RESAMPLES, n_permutations: int | None = None,
                 interval: bool = True, rng: Any = 0) -> list[PairedResult]:
    """:func:`paired_test` of every ``(a, b)`` in ``pairs`` (all on ``references``): the sign-flip tests of
    metrics with sufficient statistics share their draws and run as one matrix product."""
    prepared = [_prepare(metric, a, b, references, test) for a, b in pairs]
    draws = n_permutations or n_resamples
    flipped = [k for k, p in enumerate(prepared) if p.test == "permutation" and not p.identical]
    nulls: dict[int, np.ndarray] = {}
    fast = [k for k in flipped if prepared[k].blocks_a is not None]
    if fast:
        found = resample.sign_flip_nulls([([x for _, x in prepared[k].blocks_a], [x for _, x in prepared[k].blocks_b])
                                          for k in fast], metric.from_sums, draws, rng)
        nulls.update(zip(fast, found))
    for k in flipped:
        if k not in nulls:
            nulls[k] = sign_flip_null(metric, prepared[k].cols_a, prepared[k].cols_b, draws, np.random.default_rng(rng))
    return [_result(metric, p, nulls.get(k), draws, references, level, n_resamples, interval, rng)
            for k, p in enumerate(prepared)]


def _result(metric: Metric, p: _Pair, null: np.ndarray | None, draws: int, references: Any, level: float,
            n_resamples: int, interval: bool, rng: Any) -> PairedResult:
    used_draws = error = None
    if p.identical:
        p2 = p_less = p_greater = 1.0
    elif p.test == "mcnemar":
        p2, p_less, p_greater, _, _ = mcnemar(metric.correct(p.a[p.seeds[0]], references),
                                              metric.correct(p.b[p.seeds[0]], references))
    else:
        p2, p_less, p_greater = _p_values(null, p.difference)
        used_draws, error = draws, resample.mc_error(p_less, p_greater, draws)
    found = None
    if interval and p.identical:
        found = Interval(0.0, 0.0, level, "identical predictions")
    elif interval:
        seeds_words = f", {len(p.seeds)} paired seeds" if len(p.seeds) > 1 else ""
        method = default_method(metric, p.n_examples, 2 * len(p.seeds) * metric.n_columns)
        if p.blocks_a is not None:
            weights = [1.0 / len(p.seeds)] * len(p.seeds) + [-1.0 / len(p.seeds)] * len(p.seeds)
            _, low, high, _, used = resample.bootstrap_sums([*p.blocks_a, *p.blocks_b], weights, metric.from_sums,
                                                            level=level, n_resamples=n_resamples, method=method,
                                                            rng=rng)
        else:
            low, high, used = _columns_interval(metric, p.cols_a, p.cols_b, level, n_resamples, method, rng)
        found = Interval(low, high, level, f"paired {used} bootstrap over {p.n_examples} examples "
                                           f"({n_resamples} resamples{seeds_words})")
    return PairedResult(metric.name, p.difference, found, float(p2), float(p_less), float(p_greater), p.test,
                        p.n_examples, tuple(p.seeds), p.identical, used_draws, error)


def paired_test(metric: Metric, a: Any, b: Any, references: Any, *, test: str = "auto", level: float = 0.95,
                n_resamples: int = N_RESAMPLES, n_permutations: int | None = None, interval: bool = True,
                rng: Any = 0) -> PairedResult:
    """Compare variant A with variant B on the same examples: difference ``m(A) - m(B)``, interval, p-values.

    ``a`` and ``b``: per-example predictions of one run each, or mappings seed -> predictions (seeds paired by
    key, the common ones used). ``interval=False`` skips the bootstrap (simulations that only need decisions).
    ``n_resamples``: of the bootstrap interval; ``n_permutations``: of the sign-flip test (default the same),
    which a family of many tests needs larger (:func:`adapterbench.stats.answer.permutations_for`).
    """
    return paired_tests(metric, [(a, b)], references, test=test, level=level, n_resamples=n_resamples,
                        n_permutations=n_permutations, interval=interval, rng=rng)[0]


def _columns_interval(metric: Metric, cols_a: Sequence[Sequence[np.ndarray]], cols_b: Sequence[Sequence[np.ndarray]],
                      level: float, n_resamples: int, method: str, rng: Any) -> tuple[float, float, str]:
    """The paired bootstrap on columns (``scipy.stats.bootstrap``), for metrics without sufficient statistics."""
    n_cols = len(cols_a[0])
    flat = [c for ca, cb in zip(cols_a, cols_b) for c in (*ca, *cb)]

    def statistic(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        step = 2 * n_cols
        return np.mean([metric.statistic(*cols[i:i + n_cols], axis=axis)
                        - metric.statistic(*cols[i + n_cols:i + step], axis=axis)
                        for i in range(0, len(cols), step)], axis=0)

    low, high, _, used = bootstrap(flat, statistic, level=level, n_resamples=n_resamples, method=method, rng=rng)
    return low, high, used


def seed_paired_test(metric_name: str, a: Mapping[Any, float], b: Mapping[Any, float], *, level: float = 0.95
                     ) -> PairedResult | None:
    """Paired t-test over the common seeds of per-seed values.

    None (untested) with fewer than two common seeds, or a constant nonzero difference (zero spread: the t
    statistic is undefined, and two or three seeds that happen to agree are no evidence of a zero variance).
    """
    seeds = sorted(set(a) & set(b), key=str)
    if len(seeds) < 2:
        return None
    x = np.array([a[s] for s in seeds], float)
    y = np.array([b[s] for s in seeds], float)
    difference = float(np.mean(x - y))
    if np.all(x == y):
        found = Interval(0.0, 0.0, level, f"equal values over {len(seeds)} seeds")
        return PairedResult(metric_name, 0.0, found, 1.0, 1.0, 1.0, "paired t over seeds", 0, tuple(seeds), True)
    if np.ptp(x - y) <= 1e-12 * max(1.0, abs(difference)):  # constant nonzero difference: no spread to test
        return None
    res = sps.ttest_rel(x, y)
    ci = res.confidence_interval(level)
    p_less = float(sps.ttest_rel(x, y, alternative="less").pvalue)
    p_greater = float(sps.ttest_rel(x, y, alternative="greater").pvalue)
    found = Interval(float(ci.low), float(ci.high), level, f"paired t over {len(seeds)} seeds")
    return PairedResult(metric_name, difference, found, float(res.pvalue), p_less, p_greater,
                        "paired t over seeds", 0, tuple(seeds), False)
