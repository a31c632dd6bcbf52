"""Decisions for the nightly regression check: metric regressions, exact identity, power, speed bands.

**Metric regression** (:func:`regression_decision`), baseline and current runs on the same examples:

* ``identical`` when every paired seed's predictions are equal (an exact check: same code, same environment and
  seed reproduce predictions bit for bit on CPU, so any difference is a numeric change);
* else a one-sided paired test for "current is worse" (:func:`~adapterbench.stats.paired.paired_test`: McNemar
  for single-seed accuracy, else the sign-flip permutation test, seeds paired by key). ``worsening`` is the drop
  in the metric's direction (``baseline - current`` when higher is better, ``current - baseline`` when lower is
  better). **regressed** iff ``p_worse < alpha`` and ``worsening >= min_effect``; **improved** symmetrically with
  ``p_better``; otherwise unchanged. One-sided at ``alpha``, so over unchanged code a night is red with
  probability at most ``alpha`` per compared metric (the tests measure it over simulated null pairs).

**Power** (:func:`mcnemar_min_detectable_drop`): the smallest accuracy drop ``delta`` that the one-sided exact
McNemar test detects with probability ``power`` on ``n`` examples whose two runs disagree on a fraction ``d``
(the discordance rate, measured between reruns). Model: each example is discordant with probability ``d``, and
a discordant example goes against the current run with probability ``(d + delta) / (2 d)``, so the expected drop
is ``delta``. ``method="exact"`` sums the binomial rejection probabilities exactly over the number of discordant
examples; ``method="normal"`` is the closed form of Connor (1987) solved for ``delta``:
``sqrt(n) delta = z_{1-alpha} sqrt(d) + z_{power} sqrt(d - delta^2)``.

**Speed and memory bands** (:func:`band_check`): from repeated measurements of one run (per-step times; per-seed
peaks), the median and the normal-consistent MAD ``1.4826 * median |x - median|``
(``scipy.stats.median_abs_deviation(scale="normal")``). The current median fails when it lies beyond
``k * MAD`` (and beyond ``min_relative`` of the median) in the bad direction. The band is the spread of single
steps, not the standard error of the median: run-to-run drift on a shared machine is much larger than the
median's standard error, and the per-step spread is the run's own measure of that noise. Only between equal
environment fingerprints; otherwise the result is "not comparable" and never a failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from adapterbench.stats.intervals import N_RESAMPLES, Interval
from adapterbench.stats.metrics import Metric
from adapterbench.stats.paired import arrays_equal, as_seeds, common_seeds, paired_test


@dataclass(frozen=True)
class RegressionDecision:
    metric: str
    status: str             # "identical", "regressed", "improved" or "unchanged"
    change: float           # current - baseline (mean over paired seeds)
    worsening: float        # the drop in the metric's direction (> 0: worse)
    interval: Interval | None  # of ``change``
    p_worse: float          # one-sided p for "current is worse"
    p_better: float
    test: str
    alpha: float
    min_effect: float
    n_examples: int
    seeds: tuple[Any, ...]

    @property
    def regressed(self) -> bool:
        return self.status == "regressed"


def identical(a: Any, b: Any) -> bool:
    """Exact equality of two prediction structures (mappings, arrays, ragged lists); NaN equals NaN."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or set(a) != set(b):
            return False
        return all(identical(a[k], b[k]) for k in a)
    return arrays_equal(a, b)


def regression_decision(metric: Metric, baseline: Any, current: Any, references: Any, *, alpha: float = 0.05,
                        min_effect: float = 0.0, test: str = "auto", level: float = 0.95,
                        n_resamples: int = N_RESAMPLES, interval: bool = True, rng: Any = 0
                        ) -> RegressionDecision:
    """Regressed / improved / unchanged / identical for one metric (rule in the module docstring)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha {alpha} is not allowed; it must be in (0, 1)")
    if not (math.isfinite(min_effect) and min_effect >= 0):
        raise ValueError(f"min_effect {min_effect} is not allowed; it must be a number >= 0")
    baseline, current = as_seeds(baseline), as_seeds(current)
    seeds = common_seeds(baseline, current)
    res = paired_test(metric, {s: current[s] for s in seeds}, {s: baseline[s] for s in seeds}, references,
                      test=test, level=level, n_resamples=n_resamples, interval=interval, rng=rng)
    hib = metric.higher_is_better
    worsening = -res.difference if hib else res.difference
    p_worse, p_better = (res.p_less, res.p_greater) if hib else (res.p_greater, res.p_less)
    if res.identical:
        status = "identical"
    elif p_worse < alpha and worsening >= min_effect:
        status = "regressed"
    elif p_better < alpha and -worsening >= min_effect:
        status = "improved"
    else:
        status = "unchanged"
    return RegressionDecision(metric.name, status, res.difference, worsening, res.interval, p_worse, p_better,
                              res.test, alpha, min_effect, res.n_examples, res.seeds)


# ---- power -----------------------------------------------------------------------------------------------------
def discordance_rate(correct_a: Sequence[int], correct_b: Sequence[int]) -> float:
    """Fraction of examples where exactly one of two runs is right."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    return float(np.mean(a != b))


def mcnemar_power(n: int, discordance: float, drop: float, alpha: float = 0.05, min_effect: float = 0.0) -> float:
    """Exact probability that the one-sided McNemar rule (with ``min_effect``) flags a true drop ``drop``."""
    d = float(discordance)
    if not 0 < d <= 1 or not 0 <= drop <= d:
        raise ValueError(f"need 0 < discordance <= 1 and 0 <= drop <= discordance; got {d}, {drop}")
    discordant = np.arange(n + 1)
    # Smallest count k against the current run with P(X >= k) <= alpha, X ~ Bin(D, 1/2); and the observed drop
    # (2k - D) / n must reach min_effect.
    k_test = sps.binom.isf(alpha, discordant, 0.5) + 1
    k_effect = np.ceil((discordant + n * min_effect) / 2 - 1e-9)
    k = np.maximum(k_test, k_effect)
    q = (d + drop) / (2 * d)
    reject = sps.binom.sf(k - 1, discordant, q)
    return float(np.sum(sps.binom.pmf(discordant, n, d) * reject))


def mcnemar_min_detectable_drop(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8,
                                method: str = "exact", min_effect: float = 0.0) -> float | None:
    """Smallest accuracy drop detected with probability ``power`` (None when not even ``drop = d`` is)."""
    d = float(discordance)
    if n < 1 or not 0 < d <= 1:
        raise ValueError(f"need n >= 1 and 0 < discordance <= 1; got n={n}, discordance={d}")
    if method == "normal":
        za, zb = sps.norm.ppf(1 - alpha), sps.norm.ppf(power)
        # (n + zb^2) delta^2 - 2 sqrt(n d) za delta + (za^2 - zb^2) d = 0, larger root.
        a, b, c = n + zb * zb, -2 * math.sqrt(n * d) * za, (za * za - zb * zb) * d
        delta = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
        return delta if delta <= d else None
    if method != "exact":
        raise ValueError(f"method {method!r} is unknown; allowed: 'exact', 'normal'")
    if mcnemar_power(n, d, d, alpha, min_effect) < power:
        return None
    low, high = 0.0, d
    for _ in range(40):  # bisection: power grows with the drop
        mid = (low + high) / 2
        low, high = (mid, high) if mcnemar_power(n, d, mid, alpha, min_effect) < power else (low, mid)
    return high


# ---- speed and memory ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Band:
    median: float
    spread: float  # 1.4826 * MAD
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class BandDecision:
    status: str           # "regressed", "improved", "within band" or "not comparable"
    baseline: Band
    current_median: float
    ratio: float          # current median / baseline median
    reason: str

    @property
    def regressed(self) -> bool:
        return self.status == "regressed"


def band(samples: Sequence[float], k: float = 3.0, min_relative: float = 0.05, warmup: int = 0) -> Band:
    """Median ± max(k * MAD, min_relative * median) of ``samples`` after dropping ``warmup`` leading ones."""
    x = np.asarray(samples, dtype=np.float64)[warmup:]
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("no finite measurement left to make a band")
    median = float(np.median(x))
    spread = float(sps.median_abs_deviation(x, scale="normal"))
    half = max(k * spread, min_relative * abs(median))
    return Band(median, spread, median - half, median + half, int(x.size))


def band_check(baseline: Sequence[float], current: Sequence[float], *, baseline_fingerprint: Any,
               current_fingerprint: Any, lower_is_better: bool = True, k: float = 3.0,
               min_relative: float = 0.05, warmup: int = 0) -> BandDecision:
    """Speed or memory of the current run against the baseline's band (step times: ``lower_is_better``)."""
    b = band(baseline, k, min_relative, warmup)
    cur = band(current, k, min_relative, warmup).median
    ratio = cur / b.median if b.median else math.inf
    if baseline_fingerprint is None or baseline_fingerprint != current_fingerprint:
        return BandDecision("not comparable", b, cur, ratio, "environment fingerprints differ; shown only")
    worse = cur > b.high if lower_is_better else cur < b.low
    better = cur < b.low if lower_is_better else cur > b.high
    status = "regressed" if worse else "improved" if better else "within band"
    return BandDecision(status, b, cur, ratio, f"median {cur:.6g} against band [{b.low:.6g}, {b.high:.6g}]")
