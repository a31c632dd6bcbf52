"""The report model: everything ``report.md``, ``report.html`` and ``table.csv`` show, built once.

The writers (:mod:`~adapterbench.reports.markdown`, :mod:`~adapterbench.reports.html`,
:mod:`~adapterbench.reports.csvfile`) only add markup: the tables' headers and formatted cells
(:func:`table_cells`), the failed-runs table (:func:`failed_table`), the legend and the grouping note are made
here, once. ::

    collection = Collection.of(found, skipped)        # frames of adapterbench.results; newest record per run
    groups     = ok evaluation points by GroupKey      # comparable: same task+version, model+weights, profile
    tables     = aggregate_group(points, runs)         # rows, mean ± std, best marks, Pareto set
    charts     = per group: Pareto, resources, evaluation points, trend, rank maps (as the variants declare)

Two places are left for what a later analysis adds: :attr:`Report.answer` (a :class:`Block` shown first: the
answer to the question the runs were made for) and :attr:`Stat.interval` on every aggregated number (shown as
``[lo, hi]`` after the mean when set); :mod:`adapterbench.stats` fills them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from adapterbench.reports import charts
from adapterbench.reports.aggregate import GroupTable, Stat, aggregate_group
from adapterbench.reports.collect import Collection, GroupKey, explain_groups, group_keys
from adapterbench.reports.units import FORMATTERS, fmt_metric

SUMMARY_FIELDS = (("tasks", "Tasks"), ("variants", "Variants"), ("models", "Models"), ("profiles", "Profiles"),
                  ("runs", "Runs"), ("groups", "Comparable groups"), ("seeds", "Seeds"), ("dates", "Run dates"),
                  ("sources", "Records from"), ("skipped", "Files skipped"))
GROUPING = ("Records are averaged together only when the task version, the model (name and weights) and the "
            "profile are equal; otherwise each set gets its own table.")
LEGEND = ("How to read the tables: one row per variant configuration, and per evaluation point for variants "
          "evaluated at several (variant@point, as the variant labels its points); metrics are mean ± sample std "
          "over seeds, with n the number of seeds; the other columns are means over seeds. The best value of each "
          "column is marked (↑ higher is better, ↓ lower is better; not marked when all rows agree). ◆ marks the "
          "Pareto set: no other row has both a better primary metric and fewer trainable parameters (adapter + "
          "head, counted by requires_grad).")
FAILED_INTRO = "Runs that did not finish are not in the tables above; they are listed here with their error."
FAILED_HEADERS = ("task", "variant", "seed", "status", "error type", "message", "record")


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    numeric: bool = True


@dataclass
class Block:
    """A titled section of text and an optional table, rendered the same way by every writer."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    headers: Sequence[str] = ()
    rows: list[list[Cell]] = field(default_factory=list)


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
    answer: Block | None = None  # filled by adapterbench.stats: shown before the tables

    @property
    def failed(self) -> pd.DataFrame:
        return self.collection.failed

    @property
    def skipped(self) -> list[str]:
        return self.collection.skipped


def stat_text(s: Stat | None, kind: str) -> str:
    """A cell's number: metrics as mean ± std (and ``[lo, hi]`` when an interval is set), others as the mean."""
    if kind != "metric":
        return FORMATTERS[kind](s.mean if s else None)
    text = fmt_metric(s.mean, s.std) if s else fmt_metric(None)
    return text + (f" [{s.interval[0]:.4f}, {s.interval[1]:.4f}]" if s and s.interval else "")


def table_cells(table: GroupTable) -> tuple[list[str], list[list[Cell]]]:
    """Header titles and formatted cells of a group table; the renderers add only markup."""
    headers = ["variant", "n", "Pareto"] + [c.title + (" ↑" if c.higher_is_better else " ↓") for c in table.columns]
    rows = []
    for row in table.rows:
        primary = row.stats.get("primary")
        cells = [Cell(row.label, numeric=False), Cell(str(primary.n if primary else len(row.run_ids))),
                 Cell("◆" if row.pareto else "", numeric=False)]
        cells += [Cell(stat_text(row.stats.get(c.key), c.kind), best=c.key in row.best) for c in table.columns]
        rows.append(cells)
    return headers, rows


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
        ("pareto", f"{key.task}: metric against trainable parameters",
         "Each point is a variant (mean ± std over seeds); the dashed line joins the Pareto set (◆ in the table): "
         "no other variant is better on both the metric and the parameter count.",
         lambda p: charts.pareto_chart(table, p, colors)),
        ("resources", f"{key.task}: peak memory and throughput",
         "Peak training memory and training throughput per configuration (mean, error bar = std); the best bar "
         "of each panel is outlined.", lambda p: charts.resource_chart(table, p, colors)),
        ("points", f"{key.task}: metric at each {table.points_axis or 'evaluation point'}",
         "Variants evaluated at several points after one training run: the metric at each point.",
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


def build_report(collection: Collection, out: Path, sources: Sequence[str]) -> Report:
    """Aggregate ``collection`` and draw the charts into ``out`` (which must exist); return the report model."""
    ok, points = collection.ok, collection.ok_points
    points = points[points["run_id"].isin(ok["run_id"])]
    point_groups = group_keys(points)
    history_groups = group_keys(collection.history)
    colors = charts.palette(collection.latest["variant"].astype(str).tolist())
    order = sorted(set(point_groups), key=lambda k: (k.task, -int((point_groups == k).sum()), k))
    tasks: dict[str, list[GroupSection]] = {}
    for index, key in enumerate(order, start=1):
        table = aggregate_group(points[point_groups == key], ok)
        section = GroupSection(index, table)
        stem = f"{index:02d}-{_slug(key.task)}"
        for kind, title, caption, draw in _charts_of(key, table, collection.history[history_groups == key], colors):
            if draw(out / f"{stem}-{kind}.png"):
                section.charts.append(Chart(f"{stem}-{kind}.png", title, caption))
        section.charts += _rank_charts(table, collection, stem, out)
        tasks.setdefault(key.task, []).append(section)

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
                  summarize(collection, sources), notes)
