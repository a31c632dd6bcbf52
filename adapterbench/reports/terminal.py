"""The answer in the terminal: what ``bench run`` prints after a matrix of several variants.

The same statistics as the report's "The answer" (:func:`adapterbench.reports.answer.build_answer` over
:func:`adapterbench.reports.model.group_inputs`), over the records of the matrix just run and nothing else, without
the pairs matrices and charts: per task and comparable group the best configuration, every other one's verdict
against it (paired test on the same evaluation examples and seeds, Holm within the task) and what each costs. ::

    records = the matrix's record files that exist (ok or not; the others are noted, not answered)
    groups  = group_inputs(records)                   # tables with intervals, as the report builds them
    blocks  = build_answer(groups, pairs=False)       # one task block per group
    text    = per block: its title, the columns of COLUMNS as an aligned table, and its "Best: ..." sentence
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adapterbench.reports.answer import COSTS, SOME_LEARNED, SOME_LEARNED_SENTENCE, TASK_HEADERS, build_answer
from adapterbench.reports.blocks import Block, text_table
from adapterbench.reports.collect import Collection, load_records
from adapterbench.reports.model import group_inputs
from adapterbench.stats.intervals import N_RESAMPLES

# The task table's columns that fit a terminal: the verdict and its evidence, and the first three costs
# (parameters as deployed, peak memory, training throughput); the report has the rest.
COLUMNS = ("rank", "variant", "metric [95%]", "verdict", "learned [95%]", "p (Holm)", "p over seeds (Holm)",
           *(m.title for m in COSTS[:3]))


def block_text(block: Block, columns: Sequence[str] = COLUMNS) -> list[str]:
    """A task block of the answer as text: title, the table's ``columns``, then its first sentence (best, tied,
    did not learn) and, where only some seeds learned, the seeds the verdicts rest on."""
    keep = [list(block.headers).index(c) for c in columns]
    rows = [[row[i] for i in keep] for row in block.rows]
    lines = [block.title, *text_table(columns, rows)]
    said = block.paragraphs[:1] + [p for p in block.paragraphs[1:] if p.startswith(SOME_LEARNED_SENTENCE)]
    return lines + [f"  {p}" for p in said]


def answer_text(record_files: Sequence[Path], *, alpha: float = 0.05, n_resamples: int = N_RESAMPLES) -> str | None:
    """The answer over ``record_files`` (those that exist), or None when no task has an ok run to compare."""
    files = [Path(f) for f in record_files if Path(f).is_file()]
    if not files:
        return None
    found, skipped = load_records(files)
    collection = Collection.of(found, skipped)
    if collection.ok.empty:
        return None
    inputs, evidence = group_inputs(collection, alpha=alpha, n_resamples=n_resamples)
    answers = build_answer(inputs, evidence, alpha=alpha, n_resamples=n_resamples, pairs=False)
    blocks = [b for b in answers.blocks if tuple(b.headers) == TASK_HEADERS]
    if not blocks:
        return None
    lines = [f"answer (95% intervals; verdicts from paired tests on the same examples and seeds, Holm within a "
             f"task, tied = adjusted p >= {alpha:g}; a configuration that did not learn on any seed is compared "
             f"with nothing; {SOME_LEARNED} = only some seeds learned, the verdict uses those):"]
    for block in blocks:
        lines += ["", *block_text(block)]
    return "\n".join(lines)
