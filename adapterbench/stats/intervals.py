"""Confidence intervals for one configuration: over seeds (Student t) and over examples (bootstrap).

* **Seeds**: ``mean ± t_{1-a/2, S-1} * s / sqrt(S)`` with the sample std ``s`` (``ddof=1``) of the ``S`` per-seed
  values, ``scipy.stats.t.interval``. It covers the seed-to-seed (training) randomness on this evaluation set.
* **Examples**: a bootstrap over evaluation examples, ``scipy.stats.bootstrap(paired=True)`` on the metric's
  per-example columns (:mod:`adapterbench.stats.metrics`): each resample draws ``n`` example indices with
  replacement and recomputes the corpus-level metric. BCa (Efron, 1987) where its jackknife is affordable
  (``Metric.bca`` and ``n^2 x columns`` under :data:`BCA_MAX_CELLS`, about a second), else percentile: metrics
  given as plain functions, Spearman (ranks per resample), large sets (BCa's skewness correction shrinks like
  ``1 / sqrt(n)`` anyway). With several seeds the statistic is the mean over seeds of the metric, and one
  resample of example indices is shared by all seeds (the example is the unit: an example hard for one seed is
  hard for the others). It covers the sampling of the evaluation set, for a fixed set of seeds.
* **Range**: where the metric declares the values it can take (``Metric.bounds``), :func:`estimate` clips the t
  interval to them and says so in its method (3 seeds at accuracies 0.50, 0.78 and 0.69 give a t interval up to
  1.01 otherwise); the bootstrap, which recomputes the metric, cannot leave the range.
* **Reported** (:func:`estimate`): one seed -> the example bootstrap; several seeds without predictions -> the t
  interval; both available -> **the wider of the two**, named in ``Estimate.reported``, because each ignores the
  other's source of variation and the wider one is the conservative statement.

All resampling is seeded (``rng``, default 0): the same inputs give the same interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from adapterbench.stats import resample
from adapterbench.stats.cache import metric_sums
from adapterbench.stats.metrics import Metric

N_RESAMPLES = 2000
BCA_MAX_CELLS = 40_000_000  # n^2 x columns of a BCa jackknife
_MAX_BATCH_CELLS = 20_000_000  # resample batch x examples x columns held at once (~160 MB of int64)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float  # 0.95
    method: str   # in words: "t over 3 seeds", "BCa bootstrap over 872 examples (2000 resamples)"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Estimate:
    value: float                 # mean over seeds (the single run's value with one seed)
    std: float | None            # sample std over seeds (ddof=1); None with one seed
    n_seeds: int
    interval: Interval | None    # the reported interval (None: one seed and no predictions)
    reported: str                # "seeds", "examples" or "none"
    seed_interval: Interval | None = None
    example_interval: Interval | None = None


def seed_interval(values: Sequence[float], level: float = 0.95) -> Interval | None:
    """Student-t interval of the mean of per-seed values (None with fewer than two)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return None
    mean, sem = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(len(x))
    if sem == 0:  # scipy returns NaN for a zero scale; equal values have a zero-width interval
        low = high = mean
    else:
        low, high = (float(v) for v in sps.t.interval(level, len(x) - 1, loc=mean, scale=sem))
    return Interval(low, high, level, f"t over {len(x)} seeds")


def clip_to_range(interval: Interval | None, bounds: tuple[float, float] | None) -> Interval | None:
    """``interval`` cut to the metric's ``bounds``; unchanged (the same object) when it lies within them."""
    if interval is None or bounds is None or bounds[0] <= interval.low <= interval.high <= bounds[1]:
        return interval
    low, high = max(interval.low, bounds[0]), min(interval.high, bounds[1])
    return Interval(low, high, interval.level,
                    f"{interval.method}, clipped to the metric's range [{bounds[0]:g}, {bounds[1]:g}]")


def _batch(n_examples: int, n_columns: int) -> int:
    return max(1, _MAX_BATCH_CELLS // max(1, n_examples * n_columns))


def bootstrap(columns: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], *, level: float = 0.95,
              n_resamples: int = N_RESAMPLES, method: str = "BCa", rng: Any = 0
              ) -> tuple[float, float, np.ndarray, str]:
    """``scipy.stats.bootstrap`` over the shared example axis of ``columns`` -> (low, high, distribution, method).

    A degenerate distribution (every resample equal, as for two identical prediction sets) has no BCa interval;
    it is the point itself, reported as a percentile interval.
    """
    n = len(columns[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=sps.DegenerateDataWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        res = sps.bootstrap(tuple(columns), lambda *c, axis=-1: np.asarray(statistic(*c, axis=axis), float),
                            paired=True, vectorized=True, n_resamples=n_resamples, confidence_level=level,
                            method=method, rng=rng, batch=_batch(n, len(columns)))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    if not (math.isfinite(low) and math.isfinite(high)):
        tail = (1 - level) / 2
        low, high = (float(v) for v in np.quantile(dist, [tail, 1 - tail]))
        method = "percentile"
    return low, high, dist, method


def default_method(metric: Metric, n_examples: int, n_columns: int = 1) -> str:
    """BCa where its jackknife is affordable (module docstring), else percentile.

    The rule counts the columns of the columns form (``Metric.n_columns`` per seed and side), as when every
    jackknife statistic was recomputed from columns; with sufficient statistics the jackknife is cheap at any
    size, but keeping the rule keeps the reported intervals' method what it was.
    """
    affordable = metric.vectorised and metric.bca and n_examples * n_examples * n_columns <= BCA_MAX_CELLS
    return "BCa" if affordable else "percentile"


def seeds_statistic(metric: Metric, n_seeds: int, n_columns: int) -> Callable[..., np.ndarray]:
    """Statistic over ``n_seeds * n_columns`` columns (seed-major): the mean over seeds of the metric."""

    def statistic(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        per_seed = [metric.statistic(*cols[s * n_columns:(s + 1) * n_columns], axis=axis) for s in range(n_seeds)]
        return np.mean(per_seed, axis=0)

    return statistic


def example_bootstrap(metric: Metric, predictions: Sequence[Any], references: Any, *, level: float = 0.95,
                      n_resamples: int = N_RESAMPLES, method: str | None = None, rng: Any = 0
                      ) -> tuple[float, Interval, np.ndarray]:
    """Bootstrap over examples of the seed-mean metric -> (value, interval, bootstrap distribution).

    ``predictions`` holds one per-example prediction set per seed, all on the same ``references``. Metrics with
    sufficient statistics resample them (:func:`adapterbench.stats.resample.bootstrap_sums`), Spearman its
    weighted ranks, any other metric its columns through ``scipy.stats.bootstrap``: the same draws in all three.
    """
    if not predictions:
        raise ValueError("no predictions to bootstrap")
    seeds = f", mean of {len(predictions)} seeds" if len(predictions) > 1 else ""
    weights = [1.0 / len(predictions)] * len(predictions)
    n = len(references)
    method = method or default_method(metric, n, metric.n_columns * len(predictions))
    if metric.sums is not None and metric.from_sums is not None:
        blocks = [metric_sums(metric, p, references) for p in predictions]
        value, low, high, dist, used = resample.bootstrap_sums(blocks, weights, metric.from_sums, level=level,
                                                               n_resamples=n_resamples, method=method, rng=rng)
    elif metric.weighted is not None and method == "percentile":  # columns: (predictions, references)
        per_seed = [metric.columns(p, references) for p in predictions]
        value = float(np.mean([metric.statistic(*cols) for cols in per_seed]))
        dist, low, high = resample.bootstrap_weighted([cols[0] for cols in per_seed], per_seed[0][1], weights,
                                                      metric.weighted, level=level, n_resamples=n_resamples,
                                                      rng=rng)
        used = "percentile"
    else:
        per_seed = [metric.columns(p, references) for p in predictions]
        columns = [c for cols in per_seed for c in cols]
        statistic = seeds_statistic(metric, len(per_seed), len(per_seed[0]))
        value = float(statistic(*columns))
        low, high, dist, used = bootstrap(columns, statistic, level=level, n_resamples=n_resamples, method=method,
                                          rng=rng)
    words = f"{used} bootstrap over {n} examples ({n_resamples} resamples{seeds})"
    return value, Interval(low, high, level, words), dist


def estimate(metric: Metric | None = None, seed_values: Mapping[Any, float] | None = None,
             predictions: Mapping[Any, Any] | None = None, references: Any = None, *, level: float = 0.95,
             n_resamples: int = N_RESAMPLES, rng: Any = 0) -> Estimate:
    """Value, std and the reported interval of one configuration (rule in the module docstring).

    ``seed_values``: the metric per seed; ``predictions``: per-example predictions per seed (with ``metric`` and
    ``references``). Without ``seed_values`` the per-seed values are computed from the predictions.
    """
    have_predictions = bool(predictions) and metric is not None and references is not None
    if not seed_values:
        if not have_predictions:
            raise ValueError("an estimate needs per-seed values or per-example predictions")
        seed_values = {s: metric.value(p, references) for s, p in predictions.items()}
    values = [float(v) for v in seed_values.values()]
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    by_seeds = clip_to_range(seed_interval(values, level), metric.bounds if metric is not None else None)
    by_examples = None
    if have_predictions:
        _, by_examples, _ = example_bootstrap(metric, list(predictions.values()), references, level=level,
                                              n_resamples=n_resamples, rng=rng)
        if not (math.isfinite(by_examples.low) and math.isfinite(by_examples.high)):
            by_examples = None  # an undefined metric (a correlation with a constant) has no interval
    candidates = [(i.high - i.low, name, i) for name, i in (("seeds", by_seeds), ("examples", by_examples)) if i]
    if not candidates:
        return Estimate(mean, std, len(values), None, "none")
    _, reported, interval = max(candidates, key=lambda c: c[0])
    return Estimate(mean, std, len(values), interval, reported, by_seeds, by_examples)
