"""Aggregation: one table per comparable group, one row per configuration (and evaluation point).

A row's numbers are the mean, sample standard deviation (``ddof=1``) and count over the seeds of one
configuration: ``groupby(["config", "point_key"]).agg(["mean", "std", "count"])`` over the evaluation-point frame
of :mod:`adapterbench.results` joined with each run's measurements. A variant evaluated at several points (DyLoRA:
one per rank) gets one row per point, labelled as the variant declares (``dylora@r=4``); the measurements of such
rows are those of the run (memory, time and parameter counts are properties of training, not of the point).

Two kinds of marks help reading a table:

* the best value of each column, by the column's direction (:data:`adapterbench.schema.MEASURES`; the primary
  metric by the task's ``greater_is_better``; other metrics by :func:`adapterbench.schema.metric_direction`),
  marked when at least two rows have a value and not all values are equal;
* the Pareto set: rows that no other row beats on both the primary metric and the parameters a deployment keeps
  for the task (:func:`cost_value`), i.e. ``{i : no j with cost_j <= cost_i and value_j >= value_i, one strictly}``.

:attr:`Stat.interval` (a 95% interval, and which one) is filled afterwards by :mod:`adapterbench.reports.intervals`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from adapterbench import schema
from adapterbench.reports.collect import ConfigId, GroupKey, label_configs


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # None with a single value
    n: int
    interval: tuple[float, float] | None = None  # a confidence interval, where adapterbench.stats gives one
    interval_kind: str | None = None  # "seeds" (t over seeds) or "examples" (bootstrap over examples)


def stat(values: Sequence[Any]) -> Stat | None:
    """Mean, sample std and count of the finite numbers in ``values`` (None when there is none)."""
    nums = pd.Series([float(v) for v in values if schema.is_number(v)], dtype="float64")
    return _stat(nums.mean(), nums.std(), len(nums)) if len(nums) else None


def _stat(mean: Any, std: Any, n: Any) -> Stat | None:
    if not n or pd.isna(mean):
        return None
    return Stat(float(mean), None if n < 2 or pd.isna(std) else float(std), int(n))


@dataclass(frozen=True)
class Column:
    key: str  # "primary", "metric:<split>/<name>" or a measurement key such as "memory/peak_bytes"
    title: str
    kind: str  # a key of adapterbench.reports.units.FORMATTERS
    higher_is_better: bool


@dataclass
class Row:
    config: ConfigId
    point: Any
    point_key: str  # canonical JSON of the point: what pairs rows of two sides in bench compare
    point_label: str
    label: str
    run_ids: list[str]
    seeds: list[Any]
    stats: dict[str, Stat | None] = field(default_factory=dict)
    best: set[str] = field(default_factory=set)  # column keys where this row holds the best value
    pareto: bool = False
    environments: list[str] = field(default_factory=list)  # its runs' environment fingerprint ids (model.py)

    def mean(self, key: str) -> float | None:
        s = self.stats.get(key)
        return s.mean if s else None

    @property
    def base_label(self) -> str:
        """The configuration's label without the evaluation point."""
        return self.label.split("@", 1)[0]


@dataclass
class GroupTable:
    key: GroupKey
    primary: str  # "<split>/<metric>"
    greater_is_better: bool
    columns: list[Column]
    rows: list[Row]
    points_axis: str | None = None  # how the variants of this table name their evaluation points
    points_scale: str | None = None
    environments: dict[str, str] = field(default_factory=dict)  # fingerprint id -> its description (model.py)


def _numeric(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c in frame and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c]) and frame[c].notna().any()]


def evaluations(points: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each evaluation point of ``points`` with its run's measurements (a point's own value, such as
    ``params/deployed_adapter`` of a DyLoRA rank, wins over the run's)."""
    measured = [c for c in runs.columns if schema.is_measurement(c)]
    merged = points.merge(runs[["run_id", "source", *measured]], on=["run_id", "source"], how="left",
                          suffixes=("", ":run"))
    for c in measured:
        if f"{c}:run" in merged:
            merged[c] = merged[c].fillna(merged.pop(f"{c}:run"))
    return merged


CELL = ["variant", "config", "point_key"]  # one table row: a configuration at one evaluation point


def _rows(evals: pd.DataFrame, values: dict[str, str]) -> list[Row]:
    """One row per :data:`CELL`: ``values`` (row stat key -> column) as mean, sample std and count over seeds,
    sorted by variant, configuration label and point."""
    cells = evals.groupby(CELL, sort=False, dropna=False)
    stats = cells[list(values.values())].agg(["mean", "std", "count"]).to_dict("index")
    meta = cells.agg(point=("point", "first"), point_label=("point_label", "first"),
                     point_order=("point_order", "first"), run_ids=("run_id", list),
                     seeds=("seed", lambda s: sorted(s.tolist(), key=str)))
    labels = label_configs(ConfigId(str(v), str(c)) for v, c, _ in meta.index)
    rows = []
    for (variant, config, point_key), m in meta.iterrows():
        cid, point = ConfigId(str(variant), str(config)), None if _missing(m["point"]) else m["point"]
        row = Row(cid, point, str(point_key), m["point_label"],
                  labels[cid] + (f"@{m['point_label']}" if point is not None else ""), m["run_ids"], m["seeds"])
        s = stats[(variant, config, point_key)]
        row.stats = {key: _stat(s[(col, "mean")], s[(col, "std")], s[(col, "count")]) for key, col in values.items()}
        rows.append((row, m["point_order"]))
    rows.sort(key=lambda ro: (ro[0].config.variant, ro[0].base_label, ro[1]))
    return [r for r, _ in rows]


def _declared(runs: pd.DataFrame, column: str) -> list[str]:
    return [str(v) for v in runs[column].dropna().unique()] if column in runs else []


def aggregate_group(points: pd.DataFrame, runs: pd.DataFrame) -> GroupTable:
    """The table of one comparable group from the evaluation points of its ok runs and those runs' rows."""
    if points.empty:
        raise ValueError("aggregate_group needs at least one evaluation")
    keys = {GroupKey.of(r) for r in points.itertuples()}
    if len(keys) > 1:
        raise ValueError(f"records of {len(keys)} comparable groups given to aggregate_group")
    scoped = runs[runs["run_id"].isin(points["run_id"])]
    primary, gib = str(scoped["primary_metric"].iloc[0]), bool(scoped["greater_is_better"].iloc[0])
    evals = evaluations(points, runs)
    metric_names = sorted(c for c in _numeric(evals, [c for c in points.columns if "/" in c])
                          if c != primary and not schema.is_measurement(c))
    measures = _numeric(evals, [c for c in evals.columns if schema.is_measurement(c)])
    columns = [Column("primary", primary, "metric", gib)]
    columns += [Column(f"metric:{m}", m, "metric", schema.metric_direction(m) == "higher") for m in metric_names]
    columns += [Column(m.key, m.title, m.kind, m.direction == "higher") for m in schema.TABLE_MEASURES
                if m.key in measures]
    values = {"primary": "primary", **{f"metric:{m}": m for m in metric_names}, **{m: m for m in measures}}
    axes, scales = _declared(scoped, "points_axis"), _declared(scoped, "points_scale")
    table = GroupTable(keys.pop(), primary, gib, columns, _rows(evals, values), " / ".join(axes) or None,
                       scales[0] if len(scales) == 1 else None)
    mark_best(table)
    for i in pareto_front([cost_value(r) for r in table.rows], gib):
        table.rows[i].pareto = True
    return table


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def deployed_cost(row: Row) -> float | None:
    """Parameters a deployment keeps for the task: the adapter as deployed plus the task head.

    ``params/deployed_adapter`` (v2; an evaluation point's own count, e.g. DyLoRA's rank b) where the record has
    it, else every trainable adapter parameter (v1 records); the head is added so that a head-only row costs
    more than nothing (a log axis can show it) while the order between adapters, which share the head, stays.
    """
    head = row.mean(schema.PARAMS_HEAD.key)
    adapter = row.mean(schema.PARAMS_DEPLOYED.key)
    if adapter is None:
        adapter = row.mean(schema.PARAMS_ADAPTER.key)
    if adapter is None or head is None:  # a record without the parts: the trainable total is the same number
        return row.mean(schema.PARAMS_TRAINABLE.key)
    return adapter + head


def cost_value(row: Row) -> tuple[float, float] | None:
    """(:func:`deployed_cost`, primary mean) of a row, the two axes of the Pareto set."""
    cost, value = deployed_cost(row), row.mean("primary")
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
