"""``bench report``: from run records to a report folder.

    found    = load_records(paths)                  # files or folders of records
    found    = filter_records(found, task, variant, model)
    runs     = deduplicate(found)                   # newest record per run; older ones feed the trends
    groups   = ok records by GroupKey               # comparable: same task+version, model+weights, profile
    tables   = aggregate_group(records) per group   # rows, mean ± std, best marks, Pareto set
    charts   = per group: Pareto, resources, AdaLoRA ranks, evaluation points, trend
    write      report.md, report.html, table.csv, *.png   into a fresh folder, then move it into place

An existing report folder is never overwritten silently: without ``force`` an existing non-empty ``out`` is
refused; with ``force`` it is replaced only if it looks like a report (holds ``report.md`` or ``report.html``),
so a mistyped ``--out .`` cannot delete a project. The new report is written next to it first, so a failure
half-way leaves the old report intact.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.reports import charts
from adapterbench.reports.aggregate import (
    EXTRA_MEASUREMENTS,
    MEASUREMENT_COLUMNS,
    GroupTable,
    aggregate_group,
)
from adapterbench.reports.collect import (
    Collection,
    GroupKey,
    Record,
    created_at,
    deduplicate,
    dig,
    explain_groups,
    filter_records,
    group_key,
    load_records,
)
from adapterbench.reports.units import FORMATTERS, fmt_metric

REPORT_FILES = ("report.md", "report.html", "table.csv")


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

    @property
    def failed(self) -> list[tuple[Path, Record]]:
        return self.collection.failed


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    numeric: bool = True


def table_cells(table: GroupTable) -> tuple[list[str], list[list[Cell]]]:
    """Header titles and formatted cells of a group table; the renderers add only markup."""
    headers = ["variant", "n", "Pareto"] + [c.title + (" ↑" if c.higher_is_better else " ↓") for c in table.columns]
    rows = []
    for row in table.rows:
        primary = row.stats.get("primary")
        cells = [Cell(row.label, numeric=False), Cell(str(primary.n if primary else len(row.records))),
                 Cell("◆" if row.pareto else "", numeric=False)]
        for column in table.columns:
            s = row.stats.get(column.key)
            if column.kind == "metric":
                text = fmt_metric(s.mean, s.std) if s else fmt_metric(None)
            else:
                text = FORMATTERS[column.kind](s.mean if s else None)
            cells.append(Cell(text, best=column.key in row.best))
        rows.append(cells)
    return headers, rows


def run_count(table: GroupTable) -> int:
    """Runs behind a table (a run evaluated at several points feeds several rows)."""
    return len({id(record) for row in table.rows for record in row.records})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "task"


def _date_range(records: Sequence[Record]) -> str:
    dates = sorted(d for r in records if (d := created_at(r)))
    if not dates:
        return "—"
    first, last = dates[0].date().isoformat(), dates[-1].date().isoformat()
    return first if first == last else f"{first} → {last}"


def summarize(collection: Collection, sources: Sequence[str]) -> dict[str, str]:
    records = [r for _, r in collection.latest]
    tasks = sorted({f"{dig(r, 'task', 'name')} (v{dig(r, 'task', 'version')})" for r in records})
    weights: dict[str, set[str]] = {}
    for r in records:
        weights.setdefault(str(dig(r, "model", "name")), set()).add(str(dig(r, "model", "weights_sha256") or "?")[:12])
    models = [f"{name} (weights sha256 {', '.join(sorted(shas))})" for name, shas in sorted(weights.items())]
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    runs = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items(), key=lambda kv: (kv[0] != "ok", kv[0])))
    return {
        "tasks": ", ".join(tasks),
        "variants": ", ".join(sorted({str(dig(r, "variant", "name")) for r in records})),
        "models": "; ".join(models),
        "profiles": ", ".join(sorted({str(r.get("profile")) for r in records})),
        "runs": f"{len(records)} ({runs})",
        "groups": str(len({group_key(r) for r in records if r.get("status") == "ok"})),
        "seeds": ", ".join(map(str, sorted({r.get("seed") for r in records}, key=str))),
        "dates": _date_range(records),
        "sources": ", ".join(sources),
    }


def build_report(found: list[tuple[Path, Record]], out: Path, sources: Sequence[str]) -> Report:
    """Aggregate ``found`` and draw the charts into ``out`` (which must exist); return the report model."""
    collection = deduplicate(found)
    by_group: dict[GroupKey, list[Record]] = {}
    for record in collection.ok:
        by_group.setdefault(group_key(record), []).append(record)
    history: dict[GroupKey, list[Record]] = {}
    for record in collection.history:
        history.setdefault(group_key(record), []).append(record)
    colors = charts.palette([str(dig(r, "variant", "name")) for _, r in collection.latest])

    tasks: dict[str, list[GroupSection]] = {}
    order = sorted(by_group, key=lambda k: (k.task, -len(by_group[k]), k))  # per task, the largest group first
    for index, key in enumerate(order, start=1):
        table = aggregate_group(by_group[key])
        section = GroupSection(index, table)
        stem = f"{index:02d}-{_slug(key.task)}"
        past = history.get(key, [])
        drawn = [
            ("pareto", f"{key.task}: metric against trainable parameters",
             "Each point is a variant (mean ± std over seeds); the dashed line joins the Pareto set (◆ in "
             "the table): no other variant is better on both the metric and the parameter count.",
             lambda p, t=table: charts.pareto_chart(t, p, colors)),
            ("resources", f"{key.task}: peak memory and throughput",
             "Peak training memory and training throughput per configuration (mean, error bar = std); the best "
             "bar of each panel is outlined.",
             lambda p, t=table: charts.resource_chart(t, p, colors)),
            ("points", f"{key.task}: metric at each evaluated rank",
             "Variants evaluated at several ranks after one training run (DyLoRA): the metric at each rank.",
             lambda p, t=table: charts.points_chart(t, p, colors)),
            ("trend", f"{key.task}: trend over run dates",
             "Primary metric and throughput per configuration across run dates (every record, including "
             "older records of the same runs).",
             lambda p, t=table, h=past: charts.trend_chart(h, t, p, colors)),
        ]
        for kind, title, caption, draw in drawn:
            if draw(out / f"{stem}-{kind}.png"):
                section.charts.append(Chart(f"{stem}-{kind}.png", title, caption))
        for row in table.rows:
            if row.point is not None and row is not next(r for r in table.rows if r.config == row.config):
                continue  # one heatmap per configuration, not per evaluation point
            ranks = charts.mean_rank_map(row.records)
            # LoRA records its ranks too, all equal to r: a heatmap only says something when the ranks were
            # allocated (the record carries a budget schedule, as AdaLoRA's does) or differ between matrices.
            allocated = any("budget" in (r.get("variant_info") or {}) for r in row.records)
            if not ranks or (len(set(ranks.values())) < 2 and not allocated):
                continue
            name = f"{stem}-ranks-{_slug(row.label.split('@')[0])}.png"
            title = (f"{row.label.split('@')[0]}: final rank per layer and module\n({key.task}, "
                     f"mean of {len(row.records)} seed{'s' if len(row.records) > 1 else ''})")
            if charts.rank_heatmap(ranks, title, out / name):
                section.charts.append(Chart(name, title.replace("\n", " "),
                                            "Ranks left to each adapted matrix when training ended "
                                            "(AdaLoRA's budget allocation), read from the records' variant_info."))
        tasks.setdefault(key.task, []).append(section)

    task_sections = []
    for task, groups in tasks.items():
        explanation = None
        if len(groups) > 1:
            explanation = (f"{task}: {len(groups)} tables, because the records differ in "
                           f"{explain_groups([g.table.key for g in groups])}.")
        task_sections.append(TaskSection(task, groups, explanation))

    notes = []
    if collection.older:
        notes.append(f"{len(collection.older)} older record(s) of the same runs (same run id, earlier "
                     "created_at) were found; tables use the newest record of each run, trend charts use all.")
    return Report(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), list(sources), collection,
                  task_sections, summarize(collection, sources), notes)


def table_csv(report: Report) -> str:
    """The aggregated tables as CSV: one line per row of every group table, raw numbers (no units)."""
    tables = [g.table for t in report.tasks for g in t.groups]
    metric_keys = sorted({c.key.split(":", 1)[1] for t in tables for c in t.columns if c.key.startswith("metric:")}
                         | {t.primary for t in tables})
    measurement_keys = [c.key for c in MEASUREMENT_COLUMNS] + list(EXTRA_MEASUREMENTS)
    header = (["group", "task", "task_version", "model", "weights_sha256", "profile", "variant", "label", "point",
               "settings", "seeds", "n", "pareto", "primary_metric", "greater_is_better", "primary_mean",
               "primary_std"] + metric_keys + measurement_keys)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for section in (g for t in report.tasks for g in t.groups):
        t, k = section.table, section.table.key
        for row in t.rows:
            primary = row.stats.get("primary")

            def mean(key: str, row=row) -> Any:
                s = row.stats.get(key)
                return "" if s is None else repr(s.mean)

            metrics = [(repr(primary.mean) if primary else "") if m == t.primary else mean(f"metric:{m}")
                       for m in metric_keys]
            writer.writerow([section.index, k.task, k.task_version, k.model, k.weights_sha256, k.profile,
                             row.config.variant, row.label, "" if row.point is None else json.dumps(row.point),
                             json.dumps(row.config.as_dict(), sort_keys=True), " ".join(map(str, row.seeds)),
                             primary.n if primary else 0, row.pareto, t.primary, t.greater_is_better,
                             repr(primary.mean) if primary else "",
                             repr(primary.std) if primary and primary.std is not None else ""]
                            + metrics + [mean(m) for m in measurement_keys])
    return buf.getvalue()


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; give a folder for the report")
    if not any(out.iterdir()):
        return
    if not force:
        raise UserError(f"--out {str(out)!r} already holds files; choose another folder or pass --force "
                        "to replace the report in it")
    if not any((out / name).exists() for name in ("report.md", "report.html")):
        raise UserError(f"--out {str(out)!r} does not look like a report folder (no report.md or report.html); "
                        "refusing to replace it even with --force")


def write_report(paths: Sequence[str | Path], out: str | Path, *, tasks: Sequence[str] = (),
                 variants: Sequence[str] = (), models: Sequence[str] = (), force: bool = False) -> Report:
    """Read, filter, aggregate, draw and write the report folder ``out``; return the report model."""
    from adapterbench.reports.html import render_html
    from adapterbench.reports.markdown import render_markdown

    out = Path(out)
    _check_out(out, force)
    found = filter_records(load_records(paths), tasks, variants, models)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read and served
        report = build_report(found, staging, [str(p) for p in paths])
        (staging / "table.csv").write_text(table_csv(report))
        (staging / "report.md").write_text(render_markdown(report))
        (staging / "report.html").write_text(render_html(report, staging))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report
