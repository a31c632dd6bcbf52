"""The answer at the top of a report: per task the best variant, those tied with it, the Pareto set; across
tasks the mean rank and a GLUE-style average; paper against measured.

Per task (``TaskRuns``; the family of one task is its comparisons against the best):

1. every variant gets an :class:`~adapterbench.stats.intervals.Estimate` (mean over seeds and the reported
   interval, rule in :mod:`adapterbench.stats.intervals`);
2. **best** = the best mean in the metric's direction (the first listed on an exact tie);
3. every other variant is compared with the best: the paired test on per-example predictions
   (:func:`~adapterbench.stats.paired.paired_test`, seeds paired by key) when both have predictions, else the
   paired t-test over common seeds; neither -> "untested" (not called tied nor worse);
4. the p-values of the task are Holm-corrected; adjusted ``p >= alpha`` -> **tied** with the best, else worse.
   A sign-flip test with ``B`` resamples cannot give p below ``2 / (B + 1)``, nor Holm over ``m`` tests below
   ``m`` times that, so a family of many candidates would be tied by resolution alone (32 candidates at 2,000
   resamples: 0.032, at best); the permutation tests of a family therefore use
   ``B = max(n_resamples, ceil(20 m / alpha) - 1)`` sign flips (:func:`permutations_for`), which keeps that
   floor at ``alpha / 10`` or below. A decision within 3 Monte-Carlo errors of flipping gets more sign flips,
   up to a cap, and is marked ``unstable`` if it stays there (:mod:`adapterbench.stats.family`);
5. **Pareto set** over (``cost_key``, mean metric): variants that no other beats on both, i.e. no ``j`` with
   ``cost_j <= cost_i`` and ``value_j >= value_i`` (direction-aware), one strictly; listed by cost;
6. **rank**: 1 = best mean, ties share the average rank (``scipy.stats.rankdata``).

Across tasks: the **mean rank** over the tasks a variant ran; the **average** of primary metrics (GLUE's
score: the unweighted mean over tasks, whatever the metric) for variants present on every task, with an
interval: over seeds when the variant has two or more seeds common to all tasks (the average per seed, then the
t interval), over examples when it has predictions on every task (each task's bootstrap distribution drawn
independently, since tasks have different examples; averaged; percentile), the wider when both.

**Seed agreement**: the paired tests condition on the trained runs (the example is the unit), so they say
whether *these* seeds differ, not whether another training run would. Each comparison therefore also records
whether the per-seed differences over the common seeds all have the sign of the mean (:func:`seeds_agree`;
None with fewer than two common seeds); a significant difference whose seeds disagree is flagged by the report.

**Seed-level check**: beside that sign check, each comparison with the best also gets the paired t-test over the
common seeds' values (the seed is the unit: ``t = mean(d) / (sd(d) / sqrt(k))`` over the ``k`` per-seed
differences ``d``, :func:`~adapterbench.stats.paired.seed_paired_test`), Holm-corrected over the task's family
(``seed_p_adjusted``). It asks whether another training run would repeat the difference, which the example-level
test cannot; with 3 seeds (``t_2``) it has little power, so it qualifies the verdict and never sets it. None
with fewer than two common seeds or a constant nonzero difference.

**Every pair** (:func:`answer_pairs`): the family above answers "what is tied with the best"; "is A better than
B?" for two candidates neither of which is best needs the pair itself. Every pair ``i < j`` of the chosen
candidates is tested as in step 3 (two-sided), and the ``m (m - 1) / 2`` p-values of the task are Holm-corrected
together, a larger family than step 4's ``m - 1``: a pair can be significant against the best there and not
here. Verdict per pair: ``a better``, ``b better`` (adjusted ``p < alpha``, the sign of the difference in the
metric's direction), ``tied`` or ``untested``.

**Paper vs measured**: ``(measured mean - paper value) / paper std``, in the metric's units (give the paper's
numbers on the same scale, e.g. 0.934 rather than 93.4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats as sps
from threadpoolctl import threadpool_limits

from adapterbench.stats.family import compare, settle
from adapterbench.stats.intervals import (
    N_RESAMPLES,
    Estimate,
    Interval,
    estimate,
    example_bootstrap,
    seed_interval,
)
from adapterbench.stats.metrics import Metric
from adapterbench.stats.multiple import adjust
from adapterbench.stats.paired import PairedResult, seed_paired_test

DEPLOYED_PARAMS = "params/deployed_adapter"
THREADS = 2  # tasks answered at once (the project's machines have two cores or more)


@dataclass(frozen=True)
class VariantRuns:
    """The runs of one variant (configuration) on one task."""

    variant: str
    seed_values: Mapping[Any, float]              # primary metric per seed
    predictions: Mapping[Any, Any] | None = None  # per seed: per-example predictions on the task's references
    costs: Mapping[str, float] = field(default_factory=dict)  # "params/deployed_adapter", "memory/peak_bytes"
    paper: tuple[float, float | None] | None = None  # (paper value, paper std) on the metric's scale


@dataclass(frozen=True)
class TaskRuns:
    task: str
    metric: Metric  # the primary metric (its name, direction and resampling)
    variants: Sequence[VariantRuns]
    references: Any = None


@dataclass(frozen=True)
class PaperDelta:
    paper: float
    paper_std: float | None
    measured: float
    difference: float            # measured - paper
    in_paper_std: float | None   # difference / paper std (None without a positive std)


@dataclass(frozen=True)
class VariantAnswer:
    variant: str
    estimate: Estimate
    rank: float
    status: str                       # "best", "tied", "worse" or "untested"
    vs_best: PairedResult | None      # this variant minus the best
    p_adjusted: float | None          # Holm-adjusted p of vs_best
    pareto: bool
    costs: Mapping[str, float]
    paper: PaperDelta | None
    seeds_agree: bool | None = None   # vs the best: every common seed's difference has the mean's sign
    seed_p_adjusted: float | None = None  # vs the best: paired t over common seeds, Holm over the task
    unstable: bool = False  # the verdict is within 3 Monte-Carlo errors of flipping at the most sign flips


@dataclass(frozen=True)
class TaskAnswer:
    task: str
    metric: str
    higher_is_better: bool
    best: str
    tied: tuple[str, ...]      # each of these three by rank
    worse: tuple[str, ...]
    untested: tuple[str, ...]
    pareto: tuple[str, ...]           # by increasing cost
    variants: tuple[VariantAnswer, ...]  # by rank
    alpha: float
    correction: str


@dataclass(frozen=True)
class PairAnswer:
    a: str
    b: str
    result: PairedResult | None  # a minus b; None: no paired evidence
    p_adjusted: float | None     # Holm over every pair of the task
    verdict: str                 # "a better", "b better", "tied" or "untested"
    seeds_agree: bool | None = None  # every common seed's difference a - b has the mean's sign
    unstable: bool = False  # the verdict is within 3 Monte-Carlo errors of flipping at the most sign flips


@dataclass(frozen=True)
class OverallRow:
    variant: str
    mean_rank: float
    n_tasks: int
    average: Estimate | None  # None unless the variant ran on every task


@dataclass(frozen=True)
class Answer:
    tasks: tuple[TaskAnswer, ...]
    overall: tuple[OverallRow, ...]  # by mean rank
    task_names: tuple[str, ...]


def paper_delta(measured: float, paper: float, paper_std: float | None) -> PaperDelta:
    difference = measured - paper
    z = difference / paper_std if paper_std is not None and paper_std > 0 else None
    return PaperDelta(paper, paper_std, measured, difference, z)


def pareto_set(costs: Sequence[float | None], values: Sequence[float], higher_is_better: bool = True
               ) -> list[int]:
    """Indices not dominated on (lower cost, better value), sorted by cost; a missing cost is left out."""
    sign = 1.0 if higher_is_better else -1.0
    points = [(i, float(c), sign * float(v)) for i, (c, v) in enumerate(zip(costs, values)) if c is not None]
    keep = [i for i, c, v in points
            if not any(c2 <= c and v2 >= v and (c2 < c or v2 > v) for _, c2, v2 in points)]
    return sorted(keep, key=lambda i: (float(costs[i]), -sign * float(values[i])))


def _ranks(values: Sequence[float], higher_is_better: bool) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return sps.rankdata(-x if higher_is_better else x, method="average")


def seeds_agree(a: Mapping[Any, float], b: Mapping[Any, float]) -> bool | None:
    """Whether ``a[s] - b[s]`` has one sign over the common seeds (None with fewer than two, or a zero mean)."""
    common = [s for s in a if s in b]
    if len(common) < 2:
        return None
    differences = np.asarray([a[s] - b[s] for s in common], dtype=np.float64)
    mean = float(differences.mean())
    if mean == 0:
        return None
    return bool(np.all(np.sign(differences) == np.sign(mean)))


def permutations_for(m: int, alpha: float, at_least: int = N_RESAMPLES) -> int:
    """Sign flips per test of a Holm family of ``m``: ``m * 2 / (B + 1) <= alpha / 10``, at least ``at_least``."""
    return max(int(at_least), math.ceil(20 * m / alpha) - 1)


def answer_task(task: TaskRuns, *, alpha: float = 0.05, cost_key: str = DEPLOYED_PARAMS,
                n_resamples: int = N_RESAMPLES, rng: Any = 0) -> TaskAnswer:
    """The answer for one task (steps in the module docstring)."""
    if not task.variants:
        raise ValueError(f"task {task.task!r} has no variant to compare")
    level = 1 - alpha
    estimates = [estimate(task.metric, v.seed_values, v.predictions, task.references, level=level,
                          n_resamples=n_resamples, rng=rng) for v in task.variants]
    means = [e.value for e in estimates]
    hib = task.metric.higher_is_better
    best_i = int(np.argmax(means) if hib else np.argmin(means))
    best = task.variants[best_i]
    flips = permutations_for(len(task.variants) - 1, alpha, n_resamples)
    others = [i for i in range(len(task.variants)) if i != best_i]
    pairs = [(task.variants[i], best) for i in others]
    found = compare(task, pairs, n_resamples=n_resamples, n_permutations=flips, interval=True, rng=rng)
    found, adjusted_k, unstable_k = settle(task, pairs, found, alpha, rng=rng)
    comparisons = dict(zip(others, found))
    adjusted = {others[k]: p for k, p in adjusted_k.items()}
    unstable = {others[k] for k in unstable_k}
    over_seeds = {i: seed_paired_test(task.metric.name, v.seed_values, best.seed_values)
                  for i, v in enumerate(task.variants) if i != best_i}
    seed_tested = [i for i, c in over_seeds.items() if c is not None]
    seed_adjusted = dict(zip(seed_tested, adjust([over_seeds[i].p_value for i in seed_tested], "holm")))
    pareto = pareto_set([v.costs.get(cost_key) for v in task.variants], means, hib)
    ranks = _ranks(means, hib)
    rows = []
    for i, (v, e) in enumerate(zip(task.variants, estimates)):
        if i == best_i:
            status = "best"
        elif i not in adjusted:
            status = "untested"
        else:
            status = "tied" if adjusted[i] >= alpha else "worse"
        paper = paper_delta(e.value, *v.paper) if v.paper else None
        p_adjusted = float(adjusted[i]) if i in adjusted else None
        agree = None if i == best_i else seeds_agree(v.seed_values, best.seed_values)
        seed_p = float(seed_adjusted[i]) if i in seed_adjusted else None
        rows.append(VariantAnswer(v.variant, e, float(ranks[i]), status, comparisons.get(i), p_adjusted,
                                  i in pareto, dict(v.costs), paper, agree, seed_p, i in unstable))
    rows.sort(key=lambda r: (r.rank, r.variant))
    by_status = {s: tuple(r.variant for r in rows if r.status == s) for s in ("tied", "worse", "untested")}
    return TaskAnswer(task.task, task.metric.name, hib, best.variant, by_status["tied"], by_status["worse"],
                      by_status["untested"], tuple(task.variants[i].variant for i in pareto),
                      tuple(rows), alpha, "holm")


def answer_pairs(task: TaskRuns, labels: Sequence[str] | None = None, *, alpha: float = 0.05,
                 n_resamples: int = N_RESAMPLES, rng: Any = 0) -> tuple[PairAnswer, ...]:
    """Every pair of the candidates named in ``labels`` (all when None), in the task's order of its variants
    (module docstring)."""
    chosen = [v for v in task.variants if labels is None or v.variant in labels]
    pairs = list(combinations(chosen, 2))
    flips = permutations_for(len(pairs), alpha, n_resamples)
    results = compare(task, pairs, n_resamples=n_resamples, n_permutations=flips, interval=False, rng=rng)
    results, adjusted, unstable = settle(task, pairs, results, alpha, rng=rng)
    out = []
    for k, ((a, b), result) in enumerate(zip(pairs, results)):
        if k not in adjusted:
            verdict, p = "untested", None
        else:
            p = float(adjusted[k])
            a_ahead = (result.difference > 0) == task.metric.higher_is_better
            verdict = "tied" if p >= alpha or result.difference == 0 else ("a better" if a_ahead else "b better")
        out.append(PairAnswer(a.variant, b.variant, result, p, verdict, seeds_agree(a.seed_values, b.seed_values),
                              k in unstable))
    return tuple(out)


def _average(tasks: Sequence[TaskRuns], runs: Sequence[VariantRuns], level: float, n_resamples: int, rng: Any
             ) -> Estimate:
    """GLUE-style average of one variant over ``tasks`` (``runs[t]`` its runs on task ``t``)."""
    means = [float(np.mean(list(r.seed_values.values()))) for r in runs]
    seeds = set.intersection(*(set(r.seed_values) for r in runs))
    per_seed = [float(np.mean([r.seed_values[s] for r in runs])) for s in sorted(seeds, key=str)]
    by_seeds = seed_interval(per_seed, level) if len(per_seed) >= 2 else None
    by_examples = None
    if all(r.predictions for r in runs) and all(t.references is not None for t in tasks):
        dists = [example_bootstrap(t.metric, list(r.predictions.values()), t.references, level=level,
                                   n_resamples=n_resamples, method="percentile", rng=rng)[2]
                 for t, r in zip(tasks, runs)]
        # Each task's distribution came from the same seed; permute each with its own draw so that the tasks'
        # resamples are independent (they have different examples).
        generator = np.random.default_rng(rng)
        mean_dist = np.mean([generator.permutation(d) for d in dists], axis=0)
        tail = (1 - level) / 2
        low, high = (float(v) for v in np.quantile(mean_dist, [tail, 1 - tail]))
        by_examples = Interval(low, high, level, f"percentile bootstrap over examples of {len(tasks)} tasks, "
                                                 f"drawn independently ({n_resamples} resamples)")
    candidates = [(i.high - i.low, name, i) for name, i in (("seeds", by_seeds), ("examples", by_examples)) if i]
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) >= 2 else None
    if not candidates:
        return Estimate(float(np.mean(means)), std, len(per_seed), None, "none")
    _, reported, interval = max(candidates, key=lambda c: c[0])
    return Estimate(float(np.mean(means)), std, len(per_seed), interval, reported, by_seeds, by_examples)


def answer(tasks: Sequence[TaskRuns], *, alpha: float = 0.05, cost_key: str = DEPLOYED_PARAMS,
           n_resamples: int = N_RESAMPLES, rng: Any = 0) -> Answer:
    """Per-task answers plus the mean rank and the GLUE-style average across tasks."""
    names = [t.task for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names repeat: {names}")
    # Tasks in two threads: their statistics are numpy work on large arrays, which releases the GIL, and each
    # task's draws are seeded alone, so the result does not depend on the threads' order. BLAS on one thread
    # meanwhile: two threads of each on two cores spin-wait (measured: twice the CPU for the same wall time).
    with threadpool_limits(limits=1, user_api="blas"), \
            ThreadPoolExecutor(max_workers=min(THREADS, len(tasks)) or 1) as pool:
        per_task = tuple(pool.map(lambda t: answer_task(t, alpha=alpha, cost_key=cost_key, n_resamples=n_resamples,
                                                        rng=rng), tasks))
    variants = list(dict.fromkeys(v.variant for t in tasks for v in t.variants))
    overall = []
    for name in variants:
        ranks = [r.rank for ta in per_task for r in ta.variants if r.variant == name]
        runs = [next((v for v in t.variants if v.variant == name), None) for t in tasks]
        average = None
        if all(r is not None for r in runs):
            average = _average(tasks, runs, 1 - alpha, n_resamples, rng)
        overall.append(OverallRow(name, float(np.mean(ranks)), len(ranks), average))
    overall.sort(key=lambda r: (r.mean_rank, -r.n_tasks, r.variant))
    return Answer(per_task, tuple(overall), tuple(names))
