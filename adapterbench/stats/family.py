"""A family of paired comparisons within one task, tested together and settled against Monte-Carlo error.

::

    results  = compare(task, pairs)         # per pair: paired test on shared predictions (sign flips of all
                                            # pairs in one product, the same draws), else t over seeds
    adjusted = holm(p of the tested)        # adapterbench.stats.multiple
    settle:  while some decision is within 3 Monte-Carlo errors of flipping, and its test has fewer than
             MAX_PERMUTATIONS draws: rerun those tests with 4 x the draws (the first draws are kept, the
             stream extends), re-adjust
    unstable = the decisions still within 3 errors at the cap

"Within 3 errors": the test's adjusted decision (adjusted ``p < alpha``) differs between its raw p replaced by
``p - 3 e`` and by ``p + 3 e`` (``e`` = ``PairedResult.mc_error``, ``sqrt(p (1 - p) / B)`` of the one-sided p,
doubled for the two-sided), the others held. A verdict outside that band does not depend on the random draw
(a 3-sigma band: a flip has probability about 0.001 per test); one inside it after ``MAX_PERMUTATIONS`` draws is
reported as unstable rather than decided by the draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from adapterbench import progress
from adapterbench.stats.multiple import adjust
from adapterbench.stats.paired import PairedResult, paired_tests, seed_paired_test

MAX_PERMUTATIONS = 100_000
MC_SIGMAS = 3.0
GROWTH = 4


def _has_predictions(task: Any, run: Any, other: Any) -> bool:
    return bool(run.predictions and other.predictions and task.references is not None
                and set(run.predictions) & set(other.predictions))


def compare(task: Any, pairs: Sequence[tuple[Any, Any]], *, n_resamples: int, n_permutations: int | None,
            interval: bool, rng: Any) -> list[PairedResult | None]:
    """``run`` minus ``other`` for every ``(run, other)`` of ``task`` (stats.answer.TaskRuns): on their shared
    predictions when both have some (all such pairs at once), else the paired t over seeds (None: untestable)."""
    results: list[PairedResult | None] = [None] * len(pairs)
    with_predictions = [k for k, (a, b) in enumerate(pairs) if _has_predictions(task, a, b)]
    if with_predictions:
        progress.note(f"{task.task}: {len(with_predictions)} paired test(s), {n_permutations or n_resamples:,} "
                      "sign flips each")
        found = paired_tests(task.metric, [(pairs[k][0].predictions, pairs[k][1].predictions)
                                           for k in with_predictions], task.references, n_resamples=n_resamples,
                             n_permutations=n_permutations, interval=interval, rng=rng)
        results = [None] * len(pairs)
        for k, r in zip(with_predictions, found):
            results[k] = r
    for k, (a, b) in enumerate(pairs):
        if results[k] is None:
            results[k] = seed_paired_test(task.metric.name, a.seed_values, b.seed_values)
    return results


def _near(p_values: list[float], errors: list[float | None], k: int, alpha: float) -> bool:
    """Whether test ``k``'s Holm decision changes within ``MC_SIGMAS`` Monte-Carlo errors of its p."""
    if not errors[k]:
        return False
    decisions = set()
    for sign in (-1.0, 1.0):
        shifted = list(p_values)
        shifted[k] = min(1.0, max(0.0, p_values[k] + sign * MC_SIGMAS * errors[k]))
        decisions.add(bool(adjust(shifted, "holm")[k] < alpha))
    return len(decisions) > 1


def settle(task: Any, pairs: Sequence[tuple[Any, Any]], results: list[PairedResult | None], alpha: float, *,
           rng: Any) -> tuple[list[PairedResult | None], dict[int, float], set[int]]:
    """Holm over the tested ``results``, adding sign flips where a decision is within reach of the Monte-Carlo
    error (module docstring) -> (results, {index: adjusted p}, indices still unstable)."""
    results = list(results)
    while True:
        tested = [k for k, r in enumerate(results) if r is not None]
        p_values = [results[k].p_value for k in tested]
        errors = [results[k].mc_error for k in tested]
        near = [tested[j] for j in range(len(tested)) if _near(p_values, errors, j, alpha)]
        grow = [k for k in near if (results[k].n_permutations or 0) < MAX_PERMUTATIONS]
        if not grow:
            adjusted = dict(zip(tested, (float(p) for p in adjust(p_values, "holm"))))
            return results, adjusted, set(near)
        progress.note(f"{task.task}: {len(grow)} test(s) near the threshold get more sign flips")
        for draws in sorted({min(MAX_PERMUTATIONS, GROWTH * results[k].n_permutations) for k in grow}):
            members = [k for k in grow if min(MAX_PERMUTATIONS, GROWTH * results[k].n_permutations) == draws]
            again = paired_tests(task.metric, [(pairs[k][0].predictions, pairs[k][1].predictions) for k in members],
                                 task.references, n_permutations=draws, interval=False, rng=rng)
            for k, r in zip(members, again):
                results[k] = replace(r, interval=results[k].interval)  # the bootstrap interval does not change
