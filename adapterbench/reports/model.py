"""The report model: everything ``report.md``, ``report.html`` and ``table.csv`` show, built once.

The writers (:mod:`~adapterbench.reports.markdown`, :mod:`~adapterbench.reports.html`,
:mod:`~adapterbench.reports.csvfile`) only add markup: the tables' headers and formatted cells
(:func:`table_cells`), the failed-runs table (:func:`failed_table`), the legend and the grouping note are made
here, once. ::

    collection = Collection.of(found, skipped)        # frames of adapterbench.results; newest record per run
    groups     = ok evaluation points by GroupKey      # comparable: same task+version, model+weights, profile
    tables     = aggregate_group(points, runs)         # rows, mean ± std, best marks, Pareto set
    intervals  = fill_intervals(table, ...)            # Stat.interval of every metric cell (reports.intervals)
    answer     = build_answer(groups, ...)             # Report.answer: blocks shown first (reports.answer)
    charts     = per group: Pareto, resources, evaluation points, trend, rank maps (as the variants declare)

Tables are rendered in parts (:func:`table_parts`): the metrics, then the costs, so that a table fits the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from adapterbench import stats
from adapterbench.reports import charts
from adapterbench.reports.aggregate import (
    GroupTable,
    Row,
    Stat,
    aggregate_group,
    best_indices,
    cost_value,
    pareto_front,
)
from adapterbench.reports.answer import GroupInput, build_answer, candidate_rows
from adapterbench.reports.blocks import Block, Cell
from adapterbench.reports.charts import uninformative
from adapterbench.reports.collect import Collection, GroupKey, explain_groups, group_keys
from adapterbench.reports.intervals import Evidence, fill_intervals, group_evaluations, row_runs
from adapterbench.reports.learned import Learned, learned_of
from adapterbench.reports.units import FORMATTERS, fmt_estimate, fmt_metric
from adapterbench.schema import PARAMS_DEPLOYED
from adapterbench.stats.intervals import N_RESAMPLES

SUMMARY_FIELDS = (("tasks", "Tasks"), ("variants", "Variants"), ("models", "Models"), ("profiles", "Profiles"),
                  ("runs", "Runs"), ("groups", "Comparable groups"), ("seeds", "Seeds"), ("dates", "Run dates"),
                  ("sources", "Records from"), ("skipped", "Files skipped"))
GROUPING = ("Records are averaged together only when the task version, the model (name and weights) and the "
            "profile are equal; otherwise each set gets its own table.")
UNINFORMATIVE = "(interval uninformative)"
LEGEND = ("How to read the tables: one row per variant configuration; a variant evaluated at several points (as "
          "it declares them) is shown at its default point, the last one (variant@point), and all its points are in "
          "its own chart and the folded points table. Metrics are mean ± sample std over seeds (n seeds), then the "
          "95% interval [low, high]: ˢ the Student-t interval over seeds, ᵉ a bootstrap over the evaluation "
          "examples (from the predictions the runs stored; the only one a single seed has); where both exist the "
          "wider is shown. Numbers are rounded to two significant digits of the interval's half-width (of the std "
          f"without one). {UNINFORMATIVE}: a t interval over two seeds (12.7 stds wide) or one at least 1 wide, "
          "which cannot separate anything, is named rather than printed or drawn. learned: the seeds whose runs beat "
          "the task's trivial predictor (paired, one-sided at 5%), k of n; \"unknown\" for records written before "
          "the check. The other columns are means over seeds. The best value of each column is highlighted (↑ "
          "higher is better, ↓ lower is better; not marked when all rows agree). ◆ marks the Pareto set: no other "
          "row has both a better primary metric and fewer parameters as deployed (the adapter a deployment keeps, "
          "plus the task head).")
TABLE_KEY = ("Key: mean ± std over seeds [95% interval], ˢ Student-t over seeds, ᵉ bootstrap over "
             "examples, rounded to the interval; learned: seeds that beat the trivial predictor, k of n; ◆ Pareto set "
             "(metric against parameters as deployed); highlighted: best in its column (↑ higher, ↓ lower is "
             "better).")
POINTS_CAPTION = ("every evaluation point of the variants evaluated at several (the tables above show each at its "
                  "default point)")
INTERVAL_MARKS = {"seeds": "ˢ", "examples": "ᵉ"}
SIZE_NAMESPACES = ("params", "checkpoint")
METRICS_PER_PART = 4  # metric columns per table part; each cell holds a mean, a std and an interval
FAILED_INTRO = "Runs that did not finish are not in the tables above; they are listed here with their error."
FAILED_HEADERS = ("task", "variant", "seed", "status", "error type", "message", "record")


@dataclass
class Chart:
    file: str  # relative to the report folder
    title: str
    caption: str


@dataclass
class GroupSection:
    index: int
    table: GroupTable
    charts: list[Chart] = field(default_factory=list)
    answer: stats.TaskAnswer | None = None  # this group's verdicts (reports.answer)
    learned: dict[str, Learned] = field(default_factory=dict)  # row label -> the learned check over its seeds


@dataclass
class TaskSection:
    task: str
    groups: list[GroupSection]
    explanation: str | None  # why the task's records form several groups


@dataclass
class Report:
    generated_at: str
    sources: list[str]
    collection: Collection
    tasks: list[TaskSection]
    summary: dict[str, str]
    notes: list[str]
    answer: list[Block] = field(default_factory=list)  # reports.answer: rendered first by every writer

    @property
    def failed(self) -> pd.DataFrame:
        return self.collection.failed

    @property
    def skipped(self) -> list[str]:
        return self.collection.skipped


def stat_text(s: Stat | None, kind: str) -> str:
    """A cell's number: metrics as mean ± std [lo, hi] rounded to what the interval supports
    (:func:`~adapterbench.reports.units.fmt_estimate`; an :func:`uninformative` interval is named, not printed),
    others as the mean."""
    if kind != "metric":
        return FORMATTERS[kind](s.mean if s else None)
    if not s:
        return fmt_metric(None)
    if uninformative(s):
        return fmt_estimate(s.mean, s.std) + " " + UNINFORMATIVE
    mark = INTERVAL_MARKS.get(s.interval_kind or "", "")
    return fmt_estimate(s.mean, s.std, s.interval, mark)


def shown_rows(table: GroupTable) -> list[Row]:
    """The rows a table shows: one per configuration, a configuration with evaluation points at its default
    point (:func:`~adapterbench.reports.answer.candidate_rows`; its other points: :func:`points_cells`)."""
    return candidate_rows(table)


def table_cells(table: GroupTable, learned: dict[str, Learned] | None = None,
                rows: Sequence[Row] | None = None) -> tuple[list[str], list[list[Cell]]]:
    """Header titles and formatted cells of ``rows`` (default: :func:`shown_rows`) of a group table; the best
    value of each column and the Pareto set ◆ are marked among those rows. The renderers add only markup."""
    rows = shown_rows(table) if rows is None else list(rows)
    learned = learned or {}
    headers = ["variant", "n", "learned", "Pareto"] + [c.title + (" ↑" if c.higher_is_better else " ↓")
                                                       for c in table.columns]
    best = {c.key: best_indices([r.mean(c.key) for r in rows], c.higher_is_better) for c in table.columns}
    pareto = pareto_front([cost_value(r) for r in rows], table.greater_is_better)
    out = []
    for i, row in enumerate(rows):
        primary = row.stats.get("primary")
        check = learned.get(row.label)
        cells = [Cell(row.label, numeric=False), Cell(str(primary.n if primary else len(row.run_ids))),
                 Cell(check.count() if check else "unknown", numeric=False),
                 Cell("◆" if i in pareto else "", numeric=False)]
        cells += [Cell(stat_text(row.stats.get(c.key), c.kind), best=i in best[c.key]) for c in table.columns]
        out.append(cells)
    return headers, out


LEAD = 4  # variant, n, learned, Pareto: repeated in every part


def table_parts(table: GroupTable, per_part: int = METRICS_PER_PART, learned: dict[str, Learned] | None = None,
                rows: Sequence[Row] | None = None) -> list[tuple[str, list[str], list[list[Cell]]]]:
    """The group table split to fit a page: (caption, headers, rows) for the metrics, ``per_part`` metric
    columns at a time, then the sizes (parameters, checkpoint), then time and memory; each part repeats the
    variant, n, learned and Pareto columns."""
    rows = shown_rows(table) if rows is None else list(rows)
    headers, cells = table_cells(table, learned, rows)
    lead = LEAD
    mixed = environment_marks(table)
    metrics = [i for i, c in enumerate(table.columns, start=lead) if c.kind == "metric"]
    sizes = [i for i, c in enumerate(table.columns, start=lead)
             if c.kind != "metric" and c.key.split("/")[0] in SIZE_NAMESPACES]
    speed = [i for i, c in enumerate(table.columns, start=lead) if c.kind != "metric" and i not in sizes]
    chunks = [metrics[k:k + per_part] for k in range(0, len(metrics), per_part)]
    parts = [("metrics" if len(chunks) == 1 else f"metrics ({n} of {len(chunks)})", chunk)
             for n, chunk in enumerate(chunks, start=1)]
    parts += [(caption, columns) for caption, columns in (("size (means over seeds)", sizes),
                                                          ("time and memory (means over seeds)", speed)) if columns]
    out = [(caption, [*headers[:lead], *(headers[i] for i in columns)],
            [[*r[:lead], *(r[i] for i in columns)] for r in cells]) for caption, columns in parts]
    if mixed and speed:  # time and memory from other machines, threads or versions: each row says which
        caption, part_headers, part_rows = out[-1]
        names = ", ".join(f"{label} = {table.environments[e]}" for e, label in mixed.items())
        out[-1] = (f"{caption}; from {len(mixed)} environments: compare time and memory only between rows of one "
                   f"environment ({names}; E1+E2: a mean over both)",
                   [*part_headers[:lead], "environment", *part_headers[lead:]],
                   [[*r[:lead], Cell("+".join(mixed[e] for e in row.environments) or "—", numeric=False), *r[lead:]]
                    for r, row in zip(part_rows, rows)])
    return out


def environment_marks(table: GroupTable) -> dict[str, str]:
    """``{fingerprint id: "E1", ...}`` when the table's runs come from more than one environment, else ``{}``."""
    found = sorted({e for row in table.rows for e in row.environments})
    return {e: f"E{i}" for i, e in enumerate(found, start=1)} if len(found) > 1 else {}


def label_environments(table: GroupTable, runs: pd.DataFrame) -> None:
    """Each row's environment fingerprints (``results`` column ``env_fingerprint``; records without one are
    left out) and a description of each: device, torch threads, torch version, precision."""
    scoped = runs[runs["run_id"].isin({r for row in table.rows for r in row.run_ids})]
    ids = dict(zip(scoped["run_id"], scoped["env_fingerprint"]))
    for row in table.rows:
        row.environments = sorted({str(ids[r]) for r in row.run_ids if r in ids and not pd.isna(ids[r])})
    for env, group in scoped.groupby("env_fingerprint"):
        first = group.iloc[0]
        table.environments[str(env)] = ", ".join(
            str(first[c]) + suffix for c, suffix in (("env.device_name", ""), ("env.torch_threads", " threads"),
                                                     ("env.torch", ""), ("training.precision", ""))
            if c in group and not pd.isna(first[c])) or str(env)


def points_cells(table: GroupTable, learned: dict[str, Learned] | None = None
                 ) -> tuple[list[str], list[list[Cell]]] | None:
    """Every evaluation point of the configurations that have several (the rows :func:`shown_rows` folds),
    with the primary metric and the parameters as deployed; None when no configuration has points."""
    rows = [r for r in table.rows if r.point is not None]
    if not rows:
        return None
    keep = [c for c in table.columns if c.key in ("primary", PARAMS_DEPLOYED.key)]
    headers, cells = table_cells(replace(table, columns=keep), learned, rows)
    return headers[:1] + headers[1:3] + headers[LEAD:], [r[:3] + r[LEAD:] for r in cells]


def failed_table(failed: pd.DataFrame) -> list[list[Cell]]:
    """One row per run that did not finish: :data:`FAILED_HEADERS`."""
    def text(value: object) -> str:
        return "—" if value is None or value is pd.NA or (isinstance(value, float) and value != value) else str(value)

    return [[Cell(text(r.task), numeric=False), Cell(text(r.variant), numeric=False), Cell(text(r.seed)),
             Cell(text(r.status), numeric=False), Cell(text(r.error_type), numeric=False),
             Cell(text(r.error_message), numeric=False), Cell(Path(r.source).name, numeric=False)]
            for r in failed.sort_values(["task", "variant", "seed"]).itertuples()]


def run_count(table: GroupTable) -> int:
    """Runs behind a table (a run evaluated at several points feeds several rows)."""
    return len({run for row in table.rows for run in row.run_ids})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "task"


def _date_range(runs: pd.DataFrame) -> str:
    dates = runs["created_at"].dropna()
    if dates.empty:
        return "—"
    first, last = dates.min().date().isoformat(), dates.max().date().isoformat()
    return first if first == last else f"{first} → {last}"


def summarize(collection: Collection, sources: Sequence[str]) -> dict[str, str]:
    runs = collection.latest
    tasks = sorted({f"{t} (v{v})" for t, v in zip(runs["task"], runs["task_version"].fillna("?"))})
    shas = runs.assign(sha=runs["weights_sha256"].fillna("?").str[:12]).groupby("model")["sha"].unique()
    models = [f"{name} (weights sha256 {', '.join(sorted(s))})" for name, s in sorted(shas.items())]
    statuses = runs["status"].value_counts()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items(), key=lambda kv: (kv[0] != "ok", kv[0])))
    return {
        "tasks": ", ".join(tasks),
        "variants": ", ".join(sorted(runs["variant"].astype(str).unique())),
        "models": "; ".join(models),
        "profiles": ", ".join(sorted(runs["profile"].astype(str).unique())),
        "runs": f"{len(runs)} ({counts})",
        "groups": str(len(set(group_keys(collection.ok)))),
        "seeds": ", ".join(map(str, sorted(runs["seed"].unique(), key=str))),
        "dates": _date_range(runs),
        "sources": ", ".join(sources),
        "skipped": str(len(collection.skipped)),
    }


def _charts_of(key: GroupKey, table: GroupTable, past: pd.DataFrame, colors: dict) -> list[tuple[str, str, str,
                                                                                               Callable]]:
    """(kind, title, caption, draw) of the charts of one group."""
    return [
        ("pareto", f"{key.task}: metric against parameters as deployed",
         "Each numbered point is a row of the table (the key beside the chart maps numbers to rows; rows at one "
         "spot share a number). Error bars: the table's 95% interval (± std where it has none), cut at the "
         "chart's edge when wider. The dashed line joins the Pareto set (◆ in the table): no other row is better "
         "on both the metric and the parameters as deployed.",
         lambda p: charts.pareto_chart(table, p, colors)),
        ("resources", f"{key.task}: peak memory and throughput",
         "Peak training memory and training throughput per configuration (mean, error bar = std); the best bar "
         "of each panel is outlined.", lambda p: charts.resource_chart(table, p, colors)),
        ("points", f"{key.task}: metric at each {table.points_axis or 'evaluation point'}",
         "Variants evaluated at several points after one training run: the metric at each point (error bars: "
         "the table's 95% interval, ± std where it has none).",
         lambda p: charts.points_chart(table, p, colors)),
        ("trend", f"{key.task}: trend over run dates",
         "Primary metric and throughput per configuration across run dates (every record, including older "
         "records of the same runs).", lambda p: charts.trend_chart(past, table, p, colors)),
    ]


def _rank_charts(table: GroupTable, collection: Collection, stem: str, out: Path) -> list[Chart]:
    """A heatmap per configuration whose variant declared a rank map: when it was allocated in training, or
    when its ranks differ between matrices (ranks all equal to r say nothing)."""
    drawn, runs = [], collection.runs.set_index("run_id")
    for row in table.rows:
        if row.point is not None and row is not next(r for r in table.rows if r.config == row.config):
            continue  # one heatmap per configuration, not per evaluation point
        ranks = charts.mean_rank_map(collection.ranks[collection.ranks["run_id"].isin(row.run_ids)
                                                      & collection.ranks["latest"].astype(bool)])
        declared = runs.loc[runs.index.isin(row.run_ids)]
        allocated = bool(declared["rank_map_allocated"].fillna(False).astype(bool).any())
        if not ranks or (len(set(ranks.values())) < 2 and not allocated):
            continue
        what = next(iter(declared["rank_map_title"].dropna()), None) or "rank per layer and module"
        name = f"{stem}-ranks-{_slug(row.base_label)}.png"
        n = len(row.run_ids)
        title = f"{row.base_label}: {what}\n({table.key.task}, mean of {n} seed{'s' if n > 1 else ''})"
        caption = next(iter(declared["rank_map_caption"].dropna()), None) or (
            "Rank of each adapted matrix, from the records' variant_info.")
        if charts.rank_heatmap(ranks, title, out / name):
            drawn.append(Chart(name, title.replace("\n", " "), caption))
    return drawn


def group_inputs(collection: Collection, *, alpha: float = 0.05,
                 n_resamples: int = N_RESAMPLES) -> tuple[list[GroupInput], Evidence]:
    """The comparable groups of ``collection``'s ok runs, numbered in report order (by task, then the larger
    group first): each group's table with its intervals filled, and the evidence (predictions) read for them.
    What :func:`build_report` draws and answers, and what ``bench run`` answers in the terminal."""
    ok, points = collection.ok, collection.ok_points
    points = points[points["run_id"].isin(ok["run_id"])]
    point_groups = group_keys(points)
    order = sorted(set(point_groups), key=lambda k: (k.task, -int((point_groups == k).sum()), k))
    evidence, inputs = Evidence(), []
    for index, key in enumerate(order, start=1):
        table = aggregate_group(points[point_groups == key], ok)
        label_environments(table, ok)
        evals = group_evaluations(points[point_groups == key], ok)
        fill_intervals(table, evals, evidence, level=1 - alpha, n_resamples=n_resamples)
        learned = {row.label: learned_of(row_runs(evals, row)) for row in table.rows}
        inputs.append(GroupInput(index, key, table, evals, learned))
    return inputs, evidence


def build_report(collection: Collection, out: Path | None, sources: Sequence[str], *, alpha: float = 0.05,
                 n_resamples: int = N_RESAMPLES) -> Report:
    """Aggregate ``collection``, add intervals and the answer, and draw the charts into ``out`` (which must
    exist; None: no charts, as ``adapterbench.results.summary`` needs); return the report model.
    ``n_resamples``: of every bootstrap and permutation test."""
    inputs, evidence = group_inputs(collection, alpha=alpha, n_resamples=n_resamples)
    history_groups = group_keys(collection.history)
    colors = charts.palette(collection.latest["variant"].astype(str).tolist())
    tasks: dict[str, list[GroupSection]] = {}
    sections = {}
    for group in inputs:
        key, table = group.key, group.table
        section = sections[group.index] = GroupSection(group.index, table, learned=group.learned)
        stem = f"{group.index:02d}-{_slug(key.task)}"
        if out is not None:
            for kind, title, caption, draw in _charts_of(key, table, collection.history[history_groups == key],
                                                         colors):
                if draw(out / f"{stem}-{kind}.png"):
                    section.charts.append(Chart(f"{stem}-{kind}.png", title, caption))
            section.charts += _rank_charts(table, collection, stem, out)
        tasks.setdefault(key.task, []).append(section)

    answers = build_answer(inputs, evidence, alpha=alpha, n_resamples=n_resamples)
    collection.skipped.extend(evidence.skipped)  # sidecars that disagree with their record: named like files
    for index, task_answer in answers.by_group.items():
        sections[index].answer = task_answer
    task_sections = []
    for task, groups in tasks.items():
        explanation = None
        if len(groups) > 1:
            explanation = (f"{task}: {len(groups)} tables, because the records differ in "
                           f"{explain_groups([g.table.key for g in groups])}.")
        task_sections.append(TaskSection(task, groups, explanation))
    notes = [f"Skipped {line}" for line in collection.skipped]
    if len(collection.older):
        notes.append(f"{len(collection.older)} older record(s) of the same runs (same run id, earlier "
                     "created_at) were found; tables use the newest record of each run, trend charts use all.")
    return Report(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), list(sources), collection, task_sections,
                  summarize(collection, sources), notes, answers.blocks)
