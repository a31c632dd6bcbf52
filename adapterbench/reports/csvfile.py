"""``table.csv``: the aggregated tables of the report model, one line per row of every group table, raw numbers
(no units), so that a spreadsheet or pandas can recompute anything shown."""

from __future__ import annotations

import csv
import io
import json

from adapterbench import schema
from adapterbench.reports.model import Report

IDENTITY = ("group", "task", "task_version", "model", "weights_sha256", "profile", "variant", "label", "point",
            "settings", "seeds", "n", "pareto", "primary_metric", "greater_is_better", "primary_mean", "primary_std")


def table_csv(report: Report) -> str:
    sections = [g for t in report.tasks for g in t.groups]
    tables = [g.table for g in sections]
    metric_keys = sorted({c.key.split(":", 1)[1] for t in tables for c in t.columns if c.key.startswith("metric:")}
                         | {t.primary for t in tables})
    present = {key for t in tables for row in t.rows for key, s in row.stats.items() if s is not None}
    measurement_keys = [m for m in schema.MEASURES if m in present]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*IDENTITY, *metric_keys, *measurement_keys])
    for section in sections:
        t, k = section.table, section.table.key
        for row in t.rows:
            primary = row.stats.get("primary")

            def mean(key: str, row=row) -> str:
                s = row.stats.get(key)
                return "" if s is None else repr(s.mean)

            writer.writerow([section.index, k.task, k.task_version, k.model, k.weights_sha256, k.profile,
                             row.config.variant, row.label, "" if row.point is None else json.dumps(row.point),
                             json.dumps(row.config.as_dict(), sort_keys=True), " ".join(map(str, row.seeds)),
                             primary.n if primary else 0, row.pareto, t.primary, t.greater_is_better,
                             mean("primary"), repr(primary.std) if primary and primary.std is not None else ""]
                            + [mean("primary") if m == t.primary else mean(f"metric:{m}") for m in metric_keys]
                            + [mean(m) for m in measurement_keys])
    return buf.getvalue()
