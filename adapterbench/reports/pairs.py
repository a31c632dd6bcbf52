"""The pairs matrix of the answer: every pair of compared configurations of a task, row minus column, marked by
the Holm-corrected verdict of its paired test (:func:`adapterbench.stats.answer_pairs`).

Only configurations that learned on at least one seed are candidates (:mod:`adapterbench.reports.learned`), each
over the seeds that learned; a configuration with evaluation points takes part at its default point
(:func:`adapterbench.reports.answer.candidate_rows`). The matrix says which were left out and on which seeds the
others rest, so that no cell reads as evidence from runs that did not learn.
"""

from __future__ import annotations

from typing import Any

from adapterbench import stats
from adapterbench.reports.answer import (
    SEEDS_DISAGREE,
    SOME_LEARNED,
    GroupInput,
    candidate_rows,
    cells,
    without_predictions,
)
from adapterbench.reports.blocks import Block
from adapterbench.reports.units import fmt_delta

PAIR_MARKS = {"tied": "=", "untested": "?"}


def pairs_block(task: stats.TaskRuns, ta: stats.TaskAnswer, group: GroupInput, name: str, alpha: float,
                n_resamples: int, rng: Any) -> Block | None:
    """The matrix of one task (None with fewer than three candidates: the answer's comparison is the only pair)."""
    rows_by_label = {r.label: r for r in candidate_rows(group.table)}
    labels = [v.variant for v in ta.variants if v.variant in rows_by_label]  # by rank, best first
    if len(labels) < 3:
        return None
    try:
        pairs = stats.answer_pairs(task, labels, alpha=alpha, n_resamples=n_resamples, rng=rng)
    except (ValueError, TypeError, IndexError):  # predictions the metric cannot read: the seeds alone
        pairs = stats.answer_pairs(without_predictions(task), labels, alpha=alpha, n_resamples=n_resamples,
                                   rng=rng)
    by_pair = {(p.a, p.b): p for p in pairs}
    some = {label for label in labels if group.learned_at(rows_by_label[label]).status == "some"}
    rows = []
    for a in labels:
        row = [a + (SOME_LEARNED if a in some else "")]
        for b in labels:
            p = by_pair.get((a, b)) or by_pair.get((b, a))
            if p is None:
                row.append("—")
                continue
            sign = 1.0 if p.a == a else -1.0
            ahead = p.verdict == ("a better" if p.a == a else "b better")
            mark = PAIR_MARKS.get(p.verdict) or ("▲" if ahead else "▼")
            if p.verdict in ("a better", "b better") and p.seeds_agree is False:
                mark += SEEDS_DISAGREE
            delta = sign * p.result.difference + 0.0 if p.result else 0.0  # + 0.0: no "−0.0000"
            row.append(mark if p.result is None else f"{mark} {fmt_delta(delta)}")
        rows.append(cells(row, (0,)))
    significant = sum(p.verdict in ("a better", "b better") for p in pairs)
    text = (f"Row minus column, in the metric's units; ▲ the row is significantly better, ▼ significantly worse, "
            f"= not significant, ? untested: the same paired tests as above over every pair of configurations "
            f"(a configuration with evaluation points at its default point), Holm over all {len(pairs)} pairs of "
            f"the task at {alpha:g}. {significant} of {len(pairs)} pairs differ. {SEEDS_DISAGREE}: significant over "
            "the examples of these runs, but the per-seed differences do not all have its sign, so another training "
            "run may not repeat it.")
    paragraphs = [text]
    left_out = [f"{r.label} ({group.learned_at(r).count()})" for r in group.unlearned()]
    if left_out:
        paragraphs.append(f"Left out, since none of their seeds learned: {', '.join(left_out)}.")
    if some:
        paragraphs.append(f"{SOME_LEARNED} only some seeds learned; its cells compare the seeds that learned: "
                          + "; ".join(f"{label}: {group.learned_at(rows_by_label[label]).rests_on()}"
                                      for label in labels if label in some) + ".")
    return Block(f"{name}: which pairs differ", paragraphs, ("row − column", *labels), rows, level=3)
