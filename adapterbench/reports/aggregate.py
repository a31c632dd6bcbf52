"""Aggregation: one table per comparable group, one row per configuration (and evaluation point).

A row's numbers are the mean, sample standard deviation (``ddof=1``) and count over the seeds of one
configuration. Rows of a variant evaluated at several points (DyLoRA: one per rank, ``metrics.points`` with a
non-null ``point``) become one row per point, labelled ``dylora@r=4``; the measurements of such rows are those of
the run (memory, time and parameter counts are properties of training, not of the evaluated point).

Two kinds of marks help reading a table:

* the best value of each column, by the column's direction (metric: higher is better unless the task says
  ``greater_is_better: false``; parameters, memory, time, latency ratio, checkpoint: lower; samples/s: higher),
  marked when at least two rows have a value and not all values are equal;
* the Pareto set: rows that no other row beats on both the primary metric and the trainable parameters
  (adapter + head), i.e. ``{i : no j with cost_j <= cost_i and value_j >= value_i, one strictly}``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapterbench.reports.collect import (
    ConfigId,
    GroupKey,
    Record,
    config_id,
    dig,
    greater_is_better,
    group_key,
    label_configs,
    point_key,
    point_label,
    point_sort_key,
    primary_key,
)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # None with a single value
    n: int


def stat(values: Sequence[Any]) -> Stat | None:
    """Mean, sample std and count of the finite numbers in ``values`` (None when there is none)."""
    nums = [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]
    if not nums:
        return None
    return Stat(statistics.fmean(nums), statistics.stdev(nums) if len(nums) > 1 else None, len(nums))


@dataclass(frozen=True)
class Column:
    key: str  # "primary", "metric:<split>/<name>" or a measurement key such as "memory/peak_bytes"
    title: str
    kind: str  # a key of adapterbench.reports.units.FORMATTERS
    higher_is_better: bool


# Measurement columns in table order: (key, title, kind, higher is better).
MEASUREMENT_COLUMNS = (
    Column("params/trainable_adapter", "adapter params", "count", False),
    Column("params/trainable_head", "head params", "count", False),
    Column("params/trainable_percent", "trainable % of total", "percent", False),
    Column("memory/peak_bytes", "peak memory", "bytes", False),
    Column("throughput/train_samples_per_s", "train samples/s", "rate", True),
    Column("time/train_s", "train time", "seconds", False),
    Column("inference/latency_ratio", "inference latency (× base)", "ratio", False),
    Column("checkpoint/bytes", "checkpoint", "bytes", False),
)
# Kept in the CSV though not shown as table columns.
EXTRA_MEASUREMENTS = ("params/trainable", "params/total", "time/wall_s", "throughput/train_tokens_per_s")
_LOWER_IS_BETTER_WORDS = ("loss", "mse", "mae", "rmse", "error", "perplexity")


def metric_higher_is_better(name: str) -> bool:
    """Direction of a secondary metric from its name: losses and errors are lower-better, the rest higher."""
    base = name.rsplit("/", 1)[-1].lower()
    return not any(word in base for word in _LOWER_IS_BETTER_WORDS)


@dataclass
class Row:
    config: ConfigId
    point: Any
    label: str
    records: list[Record]
    stats: dict[str, Stat | None] = field(default_factory=dict)
    best: set[str] = field(default_factory=set)  # column keys where this row holds the best value
    pareto: bool = False

    def mean(self, key: str) -> float | None:
        s = self.stats.get(key)
        return s.mean if s else None

    @property
    def seeds(self) -> list[Any]:
        return sorted((r.get("seed") for r in self.records), key=str)


@dataclass
class GroupTable:
    key: GroupKey
    primary: str  # "<split>/<metric>"
    greater_is_better: bool
    columns: list[Column]
    rows: list[Row]


def _evaluations(record: Record) -> list[tuple[Any, dict[str, Any]]]:
    """(point, metrics) per evaluation of ``record``: its points when some are not null, else the final one."""
    points = dig(record, "metrics", "points", default=[]) or []
    named = [p for p in points if isinstance(p, dict) and p.get("point") is not None]
    if named:
        return [(p["point"], p) for p in named]
    final = dig(record, "metrics", "final")
    if not isinstance(final, dict):
        final = next((p for p in points if isinstance(p, dict)), {})
    return [(None, final)]


def _primary_value(record: Record, point: Any, metrics: dict[str, Any]) -> Any:
    if point is None and dig(record, "metrics", "primary", "value") is not None:
        return dig(record, "metrics", "primary", "value")
    return metrics.get(primary_key(record))


def _metric_keys(metrics: dict[str, Any]) -> list[str]:
    return [k for k, v in metrics.items() if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool)]


def _percent(record: Record) -> float | None:
    m = record.get("measurements") or {}
    if m.get("params/trainable_percent") is not None:
        return m["params/trainable_percent"]
    if m.get("params/trainable") is not None and m.get("params/total"):
        return 100.0 * m["params/trainable"] / m["params/total"]
    return None


def aggregate_group(records: Sequence[Record]) -> GroupTable:
    """The table of one comparable group from its ok records (all with the same :func:`group_key`)."""
    if not records:
        raise ValueError("aggregate_group needs at least one record")
    keys = {group_key(r) for r in records}
    if len(keys) > 1:
        raise ValueError(f"records of {len(keys)} comparable groups given to aggregate_group")
    first = records[0]
    primary = primary_key(first)
    labels = label_configs(config_id(r) for r in records)

    # (config, point) -> list of (record, metrics at that point)
    cells: dict[tuple[ConfigId, str], list[tuple[Record, Any, dict[str, Any]]]] = {}
    other_metrics: set[str] = set()
    for record in records:
        cid = config_id(record)
        for point, metrics in _evaluations(record):
            cells.setdefault((cid, point_key(point)), []).append((record, point, metrics))
            other_metrics.update(k for k in _metric_keys(metrics) if k != primary)

    rows = []
    for (cid, _), entries in cells.items():
        point = entries[0][1]
        label = labels[cid] + (f"@{point_label(point)}" if point is not None else "")
        row = Row(cid, point, label, [e[0] for e in entries])
        row.stats["primary"] = stat([_primary_value(r, p, m) for r, p, m in entries])
        for name in other_metrics:
            row.stats[f"metric:{name}"] = stat([m.get(name) for _, _, m in entries])
        for key in [c.key for c in MEASUREMENT_COLUMNS] + list(EXTRA_MEASUREMENTS):
            values = [(_percent(r) if key == "params/trainable_percent" else (r.get("measurements") or {}).get(key))
                      for r, _, _ in entries]
            row.stats[key] = stat(values)
        rows.append(row)
    rows.sort(key=lambda r: (r.config.variant, r.label.split("@")[0], point_sort_key(r.point)))

    gib = greater_is_better(first)
    columns = [Column("primary", primary, "metric", gib)]
    columns += [Column(f"metric:{m}", m, "metric", metric_higher_is_better(m)) for m in sorted(other_metrics)]
    columns += list(MEASUREMENT_COLUMNS)
    table = GroupTable(keys.pop(), primary, gib, columns, rows)
    mark_best(table)
    for i in pareto_front([cost_value(r) for r in rows], gib):
        rows[i].pareto = True
    return table


def cost_value(row: Row) -> tuple[float, float] | None:
    cost, value = row.mean("params/trainable"), row.mean("primary")
    if cost is None:  # older records may lack the total: adapter + head is the same number
        a, h = row.mean("params/trainable_adapter"), row.mean("params/trainable_head")
        cost = a + h if a is not None and h is not None else None
    return None if cost is None or value is None else (cost, value)


def best_indices(values: Sequence[float | None], higher_is_better: bool, min_count: int = 2) -> set[int]:
    """Indices holding the best value (ties all win); empty when fewer than ``min_count`` values exist or when
    every value is the same."""
    present = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(present) < min_count:
        return set()
    best = max(v for _, v in present) if higher_is_better else min(v for _, v in present)
    winners = {i for i, v in present if math.isclose(v, best, rel_tol=1e-12, abs_tol=1e-15)}
    return set() if len(winners) == len(present) else winners  # a column where all agree has no best


def mark_best(table: GroupTable) -> None:
    for column in table.columns:
        for i in best_indices([r.mean(column.key) for r in table.rows], column.higher_is_better):
            table.rows[i].best.add(column.key)


def pareto_front(points: Sequence[tuple[float, float] | None], greater_is_better: bool = True) -> set[int]:
    """Indices of the non-dominated (cost, value) points: minimum cost, best value (max, or min when not
    ``greater_is_better``). Equal points are all kept; ``None`` entries are ignored."""
    sign = 1.0 if greater_is_better else -1.0
    present = [(i, c, sign * v) for i, p in enumerate(points) if p is not None for c, v in [p]]
    front = set()
    for i, c, v in present:
        dominated = any(cj <= c and vj >= v and (cj < c or vj > v) for j, cj, vj in present if j != i)
        if not dominated:
            front.add(i)
    return front
