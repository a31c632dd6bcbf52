"""The answer first: per task the best configuration, those tied with it and what each costs; the best at each
parameter budget; across tasks the mean rank and a GLUE-style average; a paper's result beside the measured one.

::

    candidates = one row per configuration of a group table (candidate_rows): a variant evaluated at several
                 points takes part at its default point, its last; a configuration none of whose seeds learned
                 is no candidate ("did not learn"), one where some did is compared over those seeds
                 (reports.learned)
    task runs  = stats.TaskRuns per comparable group: primary metric per seed, per-example predictions on the
                 examples every candidate with predictions shares (intervals.Evidence), costs
    answers    = stats.answer over the groups of one setting (same model, weights and profile):
                 best / tied / worse / untested (paired test against the best, Holm-corrected), Pareto set,
                 ranks, mean rank and GLUE-style average across tasks
    pairs      = stats.answer_pairs per group over the candidates (reports.pairs): a matrix of row-minus-column
                 differences marked by their Holm-corrected verdicts
    blocks     = report-model Blocks, rendered first by every writer

The statistics are :mod:`adapterbench.stats` (its docstrings carry the formulas); this module only chooses
the inputs and words the result. Costs are the row means over seeds: parameters as deployed
(``params/deployed_adapter``, an evaluation point's own count), peak training memory, training throughput and
inference latency over the base model's. The Pareto cost is :func:`~adapterbench.reports.aggregate.deployed_cost`
(deployed adapter + head), the same as the tables' ◆. A paper's result (``tags.reference``, written by
``bench run --preset``) is compared with the mean over seeds of :func:`adapterbench.presets.measured_value`:
``(measured - paper) / paper std``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from adapterbench import schema, stats
from adapterbench.reports.aggregate import GroupTable, Row, deployed_cost
from adapterbench.reports.blocks import Block, Cell
from adapterbench.reports.collect import GroupKey
from adapterbench.reports.intervals import Evidence, RowPredictions, primary_is, row_runs, seed_values
from adapterbench.reports.learned import Learned, learned_of
from adapterbench.reports.units import FORMATTERS, fmt_count, fmt_delta, fmt_estimate, fmt_metric
from adapterbench.stats.intervals import N_RESAMPLES

PARETO_COST = "cost/deployed_with_head"
COSTS = (schema.PARAMS_DEPLOYED, schema.PEAK_MEMORY, schema.TRAIN_SPS, schema.LATENCY_RATIO)
TEST_NAMES = {"mcnemar": "McNemar", "permutation": "permutation", "paired t over seeds": "t over seeds"}
METHOD = ("Per task, the best configuration has the best mean primary metric; every other one is compared with "
          "it on the same evaluation examples and seeds (McNemar's exact test for accuracy with one seed, else a "
          "paired sign-flip permutation test; the paired t-test over seeds where predictions are missing). The "
          "p-values of a task are Holm-corrected; tied = adjusted p ≥ {alpha:g}, worse = below it, untested = "
          "no paired evidence (no predictions and fewer than two common seeds). Intervals are 95%: [low, high], "
          "ˢ t over seeds, ᵉ bootstrap over examples (the wider of the two when both exist). A permutation test "
          "with B sign flips cannot give p below 2 / (B + 1), so each one of a family of m tests uses "
          "B = max({resamples:,}, 20 m / {alpha:g}): the smallest Holm-adjusted p it can reach is at most "
          "{alpha:g} / 10, and resolution never decides a verdict. The tests condition on these runs (the example is "
          "the unit); worse† = significant, but not every seed's difference has the mean's sign. \"p over seeds\" "
          "asks whether another training run would repeat the difference: the paired t-test over the common "
          "seeds (the seed is the unit), Holm within the task; with few seeds it has little power, so it "
          "qualifies a verdict and does not set it.")
SUMMARY_HEADERS = ("task", "metric", "best", "best value [95%]", "tied with the best", "worse", "did not learn",
                   "untested", "best: params deployed")
TASK_HEADERS = ("rank", "variant", "metric [95%]", "verdict", "learned [95%]", "Δ vs best [95%]", "p (Holm)", "test",
                "p over seeds (Holm)", *(m.title for m in COSTS), "Pareto")
SEEDS_DISAGREE = "†"  # significant over the examples, but the per-seed differences do not all share its sign
SOME_LEARNED = "‡"  # only some seeds learned: the verdict rests on those
SOME_LEARNED_SENTENCE = "Only some seeds learned"
HEAD = ("One line per task: the best configuration, those tied with it, those worse than it, those that did not "
        "learn (they take no part in any comparison), and what the best costs.")
LEARNED_RULE = ("Did the run learn: each run's predictions are tested against the task's trivial predictor (the "
                "training majority class, a constant at the training mean, \"O\" for every word), paired and "
                "one-sided at 5%. \"learned k of n [low, high]\": k of the n seeds learned, with the exact "
                "(Clopper-Pearson) 95% interval of that rate. A configuration none of whose seeds learned is listed "
                "as \"did not learn (0 of n seeds)\": it is neither worse nor tied, and it is left out of the "
                "comparisons and of Holm's family. " + SOME_LEARNED + " only some seeds learned: its metric and "
                "verdicts use the seeds that learned (named in its task table), so the verdict says how the method "
                "does when it learns and the learned count how often it does. Records written before the check "
                "show \"learned: unknown\" and are compared as they are.")
MARKS = ("Marks: ↑ higher is better, ↓ lower is better; ± the sample std over seeds; [low, high] the 95% interval, "
         "ˢ Student-t over seeds, ᵉ bootstrap over the evaluation examples; " + SEEDS_DISAGREE + " significant, but "
         "not every seed's difference has the mean's sign; " + SOME_LEARNED + " only some seeds learned; ◆ Pareto "
         "set over parameters as deployed (adapter + head). Numbers are rounded to what their interval supports "
         "(two significant digits of its half-width).")
TASK_LEGEND = ("rank 1 = best mean; verdict against the best (tied = Holm-adjusted p ≥ alpha, worse = below; "
               "worse" + SEEDS_DISAGREE + ": not every seed agrees); learned: seeds that beat the trivial predictor, "
               "k of n with the exact 95% interval; Δ: this minus the best, 95% interval; test: McNemar, sign-flip "
               "permutation or t over seeds; p over seeds: paired t over the common seeds (Holm), which qualifies "
               "the verdict and does not set it; ◆ Pareto set over parameters as deployed.")
OVERALL_HEADERS = ("variant", "tasks", "mean rank", "average [95%]", "interval over")
PAPER_HEADERS = ("task", "variant", "metric", "paper", "measured (mean ± std, n)", "difference", "in paper std",
                 "source")


@dataclass(frozen=True)
class GroupInput:
    index: int  # the group's section number in the report
    key: GroupKey
    table: GroupTable
    evals: pd.DataFrame  # the group's evaluations with their runs' columns (aggregate.evaluations)
    learned: dict[str, Learned] = field(default_factory=dict)  # row label -> the learned check over its seeds

    def learned_at(self, row: Row) -> Learned:
        return self.learned.get(row.label) or learned_of(row_runs(self.evals, row))

    def unlearned(self) -> list[Row]:
        """The candidate rows (:func:`candidate_rows`) none of whose seeds learned (of those that carry the
        check): no part in any comparison."""
        return [r for r in candidate_rows(self.table) if self.learned_at(r).status == "none"]


def _interval_text(interval: stats.Interval | None, kind: str | None = None) -> str:
    if interval is None:
        return ""
    mark = {"seeds": "ˢ", "examples": "ᵉ"}.get(kind or "", "")
    return " " + fmt_estimate(0.0, None, (interval.low, interval.high), mark).split(" ", 1)[1]


def estimate_text(e: stats.Estimate) -> str:
    """Mean ± std [low, high] and its mark, rounded to what the interval supports."""
    interval = (e.interval.low, e.interval.high) if e.interval else None
    return fmt_estimate(e.value, e.std, interval, {"seeds": "ˢ", "examples": "ᵉ"}.get(e.reported or "", ""))


def common_predictions(found: dict[str, RowPredictions]) -> tuple[list[Any] | None, dict[str, dict]]:
    """The examples every candidate with predictions has (in the first one's order) -> (references, {label:
    {seed: predictions}}); a candidate whose references differ there is left without predictions."""
    if not found:
        return None, {}
    common = set.intersection(*(set(f.example_ids) for f in found.values()))
    first = next(iter(found.values()))
    order = [i for i in first.example_ids if i in common]
    if not order:
        return None, {}
    references, out = None, {}
    for label, f in found.items():
        where = {i: k for k, i in enumerate(f.example_ids)}
        refs = [f.references[where[i]] for i in order]
        if references is None:
            references = refs
        elif refs != references:
            continue
        out[label] = {seed: [p[where[i]] for i in order] for seed, p in f.by_seed.items()}
    return references, out


def _costs(row: Row) -> dict[str, float]:
    costs = {m.key: row.mean(m.key) for m in COSTS if row.mean(m.key) is not None}
    cost = deployed_cost(row)
    return {**costs, PARETO_COST: cost} if cost is not None else costs


def task_runs(group: GroupInput, name: str, evidence: Evidence) -> stats.TaskRuns | None:
    """The candidates of one group as :class:`adapterbench.stats.TaskRuns` (None without a primary value)."""
    table, split = group.table, group.table.primary.split("/", 1)[0]
    values, found, metric = {}, {}, None
    candidates = candidate_rows(table)
    for row in candidates:
        runs, learned = row_runs(group.evals, row), group.learned_at(row)
        runs = runs[runs["seed"].isin(learned.kept)]  # the seeds that learned, and those without the check
        values[row.label] = seed_values(runs, "primary") if learned.status != "none" else {}
        runs = runs[runs["seed"].isin(values[row.label])]
        if not values[row.label]:
            continue
        predictions = evidence.predictions(runs, split, row.point) if primary_is(runs, table.primary) else None
        metric = metric or evidence.metric(runs, table.primary, table.primary, table.greater_is_better,
                                           predictions)
        if predictions is not None:
            found[row.label] = predictions
    rows = [r for r in candidates if values[r.label]]
    if not rows:
        return None
    references, predictions = common_predictions(found) if metric is not None else (None, {})
    if metric is None:  # no resampling form: per-seed values only, which need no statistic
        metric = stats.Metric(table.primary.split("/", 1)[1], _unavailable, _unavailable, table.greater_is_better)
    variants = [stats.VariantRuns(r.label, values[r.label], predictions.get(r.label), _costs(r)) for r in rows]
    return stats.TaskRuns(name, metric, variants, references)


def candidate_rows(table: GroupTable) -> list[Row]:
    """One row per configuration: the row itself, or for a configuration evaluated at several points the row
    of its default point, the last one it declared (the point its training ends at and a deployment keeps by
    default; DyLoRA: r_max). The other points are in the points chart and the folded points table."""
    last: dict[str, Row] = {}
    for row in table.rows:
        last[row.base_label] = row
    return list(last.values())


def without_predictions(task: stats.TaskRuns) -> stats.TaskRuns:
    return replace(task, variants=[replace(v, predictions=None) for v in task.variants], references=None)


def _unavailable(*_: Any, **__: Any) -> Any:
    raise ValueError("this metric has no resampling form here")


def task_name(key: GroupKey, keys: Sequence[GroupKey]) -> str:
    """The task's name, with its version when two versions share a setting."""
    same = [k for k in keys if k.task == key.task]
    return f"{key.task} v{key.task_version}" if len(same) > 1 else key.task


def settings(groups: Sequence[GroupInput]) -> dict[tuple[str, str, str], list[GroupInput]]:
    """Groups by setting (model, weights, profile): tasks are ranked and averaged only within one."""
    out: dict[tuple[str, str, str], list[GroupInput]] = {}
    for g in groups:
        out.setdefault((g.key.model, g.key.weights_sha256, g.key.profile), []).append(g)
    return out


@dataclass
class Answers:
    blocks: list[Block]
    by_group: dict[int, stats.TaskAnswer]  # group index -> its answer (table.csv reads it)


def build_answer(groups: Sequence[GroupInput], evidence: Evidence, *, alpha: float = 0.05,
                 n_resamples: int = N_RESAMPLES, rng: Any = 0, pairs: bool = True) -> Answers:
    """The answer's blocks for the groups of a report (module docstring); ``pairs=False`` leaves out the
    pairs matrices (Holm over every pair of a task: the slowest part, and not what the terminal shows).
    Configurations none of whose seeds learned take no part (:mod:`adapterbench.reports.learned`)."""
    from adapterbench.reports.pairs import pairs_block

    summary: dict[int, list[Cell]] = {}  # by group index: the report's order
    sections: dict[int, list[Block]] = {}
    overall, by_group = [], {}
    several = len(settings(groups)) > 1
    for setting, members in settings(groups).items():
        names = {g.index: task_name(g.key, [m.key for m in members]) for g in members}
        runs = {g.index: task_runs(g, names[g.index], evidence) for g in members}
        where = f" · {members[0].key.model} · profile {setting[2]}" if several else ""
        for g in members:  # tasks where no configuration learned: said so, nothing compared
            if runs[g.index] is None and g.unlearned():
                summary[g.index] = _unlearned_summary(g, names[g.index] + where)
                sections[g.index] = [_task_block(None, g, names[g.index] + where)]
        kept = [g for g in members if runs[g.index] is not None]
        if not kept:
            continue
        task_list = [runs[g.index] for g in kept]
        try:
            result = stats.answer(task_list, alpha=alpha, cost_key=PARETO_COST, n_resamples=n_resamples, rng=rng)
        except (ValueError, TypeError, IndexError):  # predictions the metric cannot read: the seeds alone
            result = stats.answer([without_predictions(t) for t in task_list], alpha=alpha, cost_key=PARETO_COST,
                                  n_resamples=n_resamples, rng=rng)
        for g, ta in zip(kept, result.tasks):
            by_group[g.index] = ta
            summary[g.index] = _summary_row(ta, g, names[g.index] + where)
            sections[g.index] = [_task_block(ta, g, names[g.index] + where)]
            if pairs:
                matrix = pairs_block(runs[g.index], ta, g, names[g.index] + where, alpha, n_resamples, rng)
                sections[g.index] += [matrix] if matrix else []
        if len(kept) > 1:
            overall.append(_overall_block(result, where))
    if not summary:
        return Answers([], {})
    head = Block("The answer", [HEAD], SUMMARY_HEADERS, [summary[i] for i in sorted(summary)],
                 legend=[METHOD.format(alpha=alpha, resamples=n_resamples), LEARNED_RULE, MARKS])
    paper = _paper_block(groups)
    blocks = [b for i in sorted(sections) for b in sections[i]]
    return Answers([head, *blocks, *overall, *([paper] if paper else [])], by_group)


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) or "—"


def cells(values: Sequence[Any], text_columns: Sequence[int], best: Sequence[int] = ()) -> list[Cell]:
    """A table row: columns ``text_columns`` left-aligned text, the others numbers; ``best`` highlighted."""
    return [Cell(str(v), best=i in best, numeric=i not in text_columns) for i, v in enumerate(values)]


def _marked(group: GroupInput, labels: Sequence[str]) -> str:
    """Names, each one whose verdict rests on only some of its seeds marked :data:`SOME_LEARNED`."""
    rows = {r.label: r for r in group.table.rows}
    return _names([label + (SOME_LEARNED if label in rows and group.learned_at(rows[label]).status == "some"
                            else "") for label in labels])


def _unlearned_names(group: GroupInput) -> str:
    return _names([f"{r.label} ({group.learned_at(r).count()})" for r in group.unlearned()])


def _summary_row(ta: stats.TaskAnswer, group: GroupInput, name: str) -> list[Cell]:
    best = next(v for v in ta.variants if v.status == "best")
    arrow = "↑" if ta.higher_is_better else "↓"
    cost = fmt_count(best.costs.get(schema.PARAMS_DEPLOYED.key))
    return cells([name, f"{ta.metric} {arrow}", _marked(group, [ta.best]), estimate_text(best.estimate),
                  _marked(group, ta.tied), _marked(group, ta.worse), _unlearned_names(group),
                  _names(ta.untested), cost], (0, 1, 2, 4, 5, 6, 7))


def _unlearned_summary(group: GroupInput, name: str) -> list[Cell]:
    arrow = "↑" if group.table.greater_is_better else "↓"
    return cells([name, f"{group.table.primary.split('/', 1)[1]} {arrow}", "none learned", "—", "—", "—",
                  _unlearned_names(group), "—", "—"], (0, 1, 2, 4, 5, 6, 7))


def _task_block(ta: stats.TaskAnswer | None, group: GroupInput, name: str) -> Block:
    """One task's verdicts: a row per compared configuration, then those that did not learn (no verdict)."""
    rows, table = [], {r.label: r for r in group.table.rows}
    for v in ta.variants if ta else ():
        vs = v.vs_best
        delta = (fmt_delta(vs.difference) + _interval_text(vs.interval)) if vs else "—"
        p = "—" if v.p_adjusted is None else f"{v.p_adjusted:.3g}"
        seed_p = "—" if v.seed_p_adjusted is None else f"{v.seed_p_adjusted:.3g}"
        costs = [FORMATTERS[m.kind](v.costs.get(m.key)) for m in COSTS]
        status = v.status + (SEEDS_DISAGREE if v.status == "worse" and v.seeds_agree is False else "")
        learned = group.learned_at(table[v.variant]) if v.variant in table else None
        rows.append(cells([f"{v.rank:g}", v.variant, estimate_text(v.estimate), status,
                           learned.text() if learned else "—", delta, p,
                           TEST_NAMES.get(vs.test, vs.test) if vs else "—", seed_p, *costs,
                           "◆" if v.pareto else ""],
                          (1, 3, 4, 7, len(TASK_HEADERS) - 1), best=(2,) if v.status == "best" else ()))
    for row in group.unlearned():
        s, learned = row.stats.get("primary"), group.learned_at(row)
        costs = [FORMATTERS[m.kind](row.mean(m.key)) for m in COSTS]
        rows.append(cells(["—", row.label, fmt_estimate(s.mean, s.std) if s else "—", learned.text(),
                           learned.count() + " " + learned.interval(), "—", "—", "—", "—", *costs, ""],
                          (1, 3, 4, 7, len(TASK_HEADERS) - 1)))
    rests = [f"{label}: {group.learned_at(table[label]).rests_on()}" for label in table
             if group.learned_at(table[label]).status == "some" and (ta is None or label in
                                                                      {v.variant for v in ta.variants})]
    unlearned = _unlearned_names(group)
    if ta is None:
        paragraphs = [f"{group.key.describe()}. No configuration learned: nothing here is evidence about methods; "
                      f"did not learn: {unlearned}."]
    else:
        by_label = {v.variant: v for v in ta.variants}
        budget = "; ".join(f"{label} ({fmt_count(by_label[label].costs.get(PARETO_COST))}): "
                           f"{estimate_text(by_label[label].estimate)}" for label in ta.pareto)
        paragraphs = [f"{group.key.describe()}. Best: {ta.best}; tied with it: {_names(ta.tied)}"
                      + (f"; did not learn (left out of every comparison): {unlearned}" if group.unlearned() else "")
                      + ".",
                      "Best at each parameter budget (the Pareto set ◆ over parameters as deployed, adapter + head, "
                      f"by increasing cost): {budget or '—'}."]
    if rests:
        paragraphs.append(f"{SOME_LEARNED_SENTENCE} ({SOME_LEARNED}); the verdict and metric use the seeds that "
                          f"learned: {'; '.join(rests)}.")
    return Block(f"{name}: {ta.metric if ta else group.table.primary.split('/', 1)[1]}", paragraphs, TASK_HEADERS,
                 rows, level=3, legend=[TASK_LEGEND])


def _overall_block(result: stats.Answer, where: str) -> Block:
    rows = []
    for o in result.overall:
        avg = estimate_text(o.average) if o.average else "—"
        over = o.average.reported if o.average and o.average.interval else "—"
        rows.append(cells([o.variant, f"{o.n_tasks} of {len(result.task_names)}", f"{o.mean_rank:.2f}", avg, over],
                          (0, 4)))
    text = ("Mean rank: the mean over the tasks a configuration ran of its rank (1 = best; ties share the mean "
            "rank). Average: the unweighted mean of the tasks' primary metrics, whatever the metric (GLUE's "
            "score), for configurations on every task; its interval is over seeds (per-seed averages, t) or "
            "over examples (each task resampled independently), the wider when both.")
    return Block(f"Across tasks ({', '.join(result.task_names)}){where}", [text], OVERALL_HEADERS, rows, level=3)


def _paper_block(groups: Sequence[GroupInput]) -> Block | None:
    from adapterbench.presets import measured_value

    rows = []
    for g in groups:
        for row in g.table.rows:
            runs = row_runs(g.evals, row)
            refs = runs.dropna(subset=["reference_metric", "reference_value"]) if "reference_metric" in runs else []
            if len(refs) == 0:
                continue
            ref = refs.iloc[0]
            metrics = [{k: v for k, v in r.items() if "/" in str(k) and not schema.is_measurement(str(k))}
                       for r in refs.to_dict("records")]
            measured = [v for m in metrics if (v := measured_value(str(ref["reference_metric"]), m)) is not None]
            if not measured:
                continue
            std = None if pd.isna(ref.get("reference_std")) else float(ref["reference_std"])
            delta = stats.paper_delta(float(np.mean(measured)), float(ref["reference_value"]), std)
            spread = float(np.std(measured, ddof=1)) if len(measured) > 1 else None
            rows.append(cells([g.key.task, row.label, str(ref["reference_metric"]), fmt_metric(delta.paper, std),
                               f"{fmt_metric(delta.measured, spread)} (n={len(measured)})",
                               fmt_delta(delta.difference),
                               "—" if delta.in_paper_std is None else f"{delta.in_paper_std:+.1f}".replace("-", "−"),
                               str(ref.get("reference_source") or "—")], (0, 1, 2, 7)))
    if not rows:
        return None
    text = ("Where a run carries a paper's published result (a preset's reference), the paper's number beside "
            "the measured mean over seeds, on the same scale; the difference is also given in units of the "
            "paper's reported std (— where the paper gives none).")
    return Block("Paper and measured", [text], PAPER_HEADERS, rows, level=3)
