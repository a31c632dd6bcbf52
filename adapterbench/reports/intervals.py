"""95% intervals for every metric cell of a report table, from the seeds and the predictions sidecars.

For one row (a configuration at one evaluation point) and one metric column ``<split>/<name>``::

    seed_values = {seed: the metric in that seed's record}
    predictions = {seed: the sidecar's predictions at the row's point on <split>}   # every seed, or none
    estimate    = stats.estimate(metric, seed_values, predictions, references)

:func:`adapterbench.stats.estimate` reports the Student-t interval over seeds (two seeds or more), the bootstrap
over evaluation examples (predictions of every seed; a single seed has only this one), and **the wider** when
both exist; ``Stat.interval_kind`` says which ("seeds" or "examples").

Predictions of several seeds are aligned by example id: the ids every seed has, in the first seed's order
(:func:`align`); references that disagree on an id mean different data, and the row gets no example interval.
The metric's resampling form is :func:`adapterbench.stats.metric_for_task` on the task spec (the registry by
name, or the task file the record names, when its name, version and kind agree with the record), else by kind
from the data alone: classification with the classes seen, regression; token classification needs the tag names,
so a task that cannot be resolved gets only the seed interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from adapterbench import progress, stats
from adapterbench.harness.records import SidecarError, read_predictions
from adapterbench.reports.aggregate import GroupTable, Row, evaluations
from adapterbench.stats import cache as sums_cache
from adapterbench.stats.intervals import N_RESAMPLES

THREADS = 2  # estimates computed at once
TASK_FILE_ORIGIN = "task file "  # how a record's task.origin names a user task file
# Run columns the intervals and the answer read besides the evaluation's own (adapterbench.results.RUN_COLUMNS).
EVIDENCE_COLUMNS = ("task_kind", "task_origin", "primary_metric", "predictions_file", "reference_source",
                    "reference_metric", "reference_value", "reference_std")


def group_evaluations(points: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`~adapterbench.reports.aggregate.evaluations` of one group plus its runs' :data:`EVIDENCE_COLUMNS`."""
    evals = evaluations(points, runs)
    extra = [c for c in EVIDENCE_COLUMNS if c in runs and c not in evals]
    return evals.merge(runs[["run_id", "source", *extra]], on=["run_id", "source"], how="left")


def sidecar_key(point: Any) -> str:
    """A point's key in the sidecar: ``"final"`` as trained, else ``str(point)``
    (:func:`adapterbench.harness.loop.point_key`, repeated here so that reports do not import the loop)."""
    return "final" if point is None else str(point)


@dataclass(frozen=True)
class RowPredictions:
    """Per-example predictions of one row on one split, every seed on the same examples."""

    example_ids: tuple[Any, ...]
    references: list[Any]
    by_seed: dict[Any, list[Any]]


def align(per_seed: dict[Any, tuple[Sequence[Any], Sequence[Any], Sequence[Any]]]) -> RowPredictions | None:
    """``{seed: (example_ids, references, predictions)}`` -> the examples all seeds share; None when they share
    none or their references differ on a shared example."""
    if not per_seed:
        return None
    seeds = list(per_seed)
    common = set(per_seed[seeds[0]][0]).intersection(*(set(ids) for ids, _, _ in per_seed.values()))
    order = [i for i in per_seed[seeds[0]][0] if i in common]
    if not order:
        return None
    references, by_seed = None, {}
    for seed in seeds:
        ids, refs, preds = per_seed[seed]
        where = {i: k for k, i in enumerate(ids)}
        refs_here = [refs[where[i]] for i in order]
        if references is None:
            references = refs_here
        elif refs_here != references:
            return None
        by_seed[seed] = [preds[where[i]] for i in order]
    return RowPredictions(tuple(order), references, by_seed)


class Evidence:
    """Reads sidecars (each once) and resolves task metrics for one report."""

    def __init__(self) -> None:
        self._sidecars: dict[str, dict[str, Any] | None] = {}
        self._specs: dict[tuple[str, str, str, str], Any] = {}
        self.skipped: list[str] = []  # sidecars not used, one line each: "<file>: <reason>"
        self._aligned: dict[tuple, RowPredictions | None] = {}

    def sidecar(self, source: str, file: Any) -> dict[str, Any] | None:
        if not isinstance(file, str) or not file:
            return None
        key = f"{source}\0{file}"
        if key not in self._sidecars:
            try:  # verified against the sha256 in the record at `source`
                self._sidecars[key] = read_predictions(Path(source))
            except SidecarError as exc:  # the row keeps the seed interval; the report names the file and why
                self._sidecars[key] = None
                self.skipped.append(str(exc))
        return self._sidecars[key]

    def predictions(self, runs: pd.DataFrame, split: str, point: Any) -> RowPredictions | None:
        """The aligned predictions of ``runs`` (rows with ``seed``, ``source``, ``predictions_file``) at
        ``point`` on ``split``; None unless every run has them."""
        files = getattr(runs, "predictions_file", pd.Series([None] * len(runs), index=runs.index))
        key = (tuple(zip(runs["source"].astype(str), files, runs["seed"])), split, sidecar_key(point))
        if key not in self._aligned:  # each metric column of a row, and the answer, ask again
            self._aligned[key] = self._predictions(runs, split, point)
        return self._aligned[key]

    def _predictions(self, runs: pd.DataFrame, split: str, point: Any) -> RowPredictions | None:
        per_seed = {}
        for run in runs.itertuples():
            side = self.sidecar(str(run.source), getattr(run, "predictions_file", None))
            part = _get(_get(side, "splits"), split)
            ids, refs, preds = (_get(part, "example_ids"), _get(part, "references"),
                                _get(_get(part, "predictions"), sidecar_key(point)))
            lists = all(isinstance(x, list) for x in (ids, refs, preds))
            if not lists or not len(ids) == len(refs) == len(preds) or run.seed in per_seed:
                return None  # a run without (readable) predictions here: the row gets the seed interval only
            per_seed[run.seed] = (ids, refs, preds)
        try:
            return align(per_seed)
        except TypeError:  # ids that cannot be hashed: not a sidecar this version wrote
            return None

    def task_spec(self, name: str, version: str, kind: str, origin: str | None) -> Any:
        """The :class:`~adapterbench.tasks.spec.TaskSpec` the records were made with, or None."""
        key = (name, version, kind, origin or "")
        if key not in self._specs:
            self._specs[key] = _resolve_spec(name, version, kind, origin)
        return self._specs[key]

    def metric(self, runs: pd.DataFrame, column: str, primary: str, greater_is_better: bool,
               found: RowPredictions | None) -> stats.Metric | None:
        """The resampling form of metric ``column`` (``<split>/<name>``) of the task of ``runs``."""
        first = runs.iloc[0]
        name = column.split("/", 1)[1]
        spec = self.task_spec(str(first["task"]), str(first["task_version"]), str(first["task_kind"]),
                              _text(first.get("task_origin")))
        try:
            if spec is not None:
                metric = stats.metric_for_task(spec, name)
            elif first["task_kind"] == "classification" and found is not None:
                seen = [*found.references, *(p for ps in found.by_seed.values() for p in ps)]
                metric = stats.classification_metric(name, int(max(seen)) + 1)
            elif first["task_kind"] == "regression":
                metric = stats.regression_metric(name)
            else:
                return None
        except (ValueError, TypeError):
            return None  # a metric the resampling module does not know (a loss): the seed interval only
        if column == primary and metric.higher_is_better != greater_is_better:
            metric = replace(metric, higher_is_better=greater_is_better)
        return metric


def _get(part: Any, key: str) -> Any:
    return part.get(key) if isinstance(part, dict) else None


def _text(value: Any) -> str | None:
    return None if value is None or value is pd.NA or (isinstance(value, float) and value != value) else str(value)


def _resolve_spec(name: str, version: str, kind: str, origin: str | None) -> Any:
    from adapterbench.errors import UserError
    from adapterbench.tasks import TASKS, get_task, load_task_file

    try:
        if origin and origin.startswith(TASK_FILE_ORIGIN):
            spec = load_task_file(origin[len(TASK_FILE_ORIGIN):])
        elif name in TASKS:
            spec = get_task(name)
        else:
            return None
    except (UserError, OSError, ValueError, KeyError):
        return None  # a task file moved or changed since the run
    return spec if (spec.name, str(spec.version), spec.kind) == (name, version, kind) else None


def row_runs(evals: pd.DataFrame, row: Row) -> pd.DataFrame:
    """The evaluations (one per seed) behind ``row``."""
    return evals[(evals["variant"].astype(str) == row.config.variant) & (evals["config"].astype(str) ==
                 row.config.config) & (evals["point_key"].astype(str) == row.point_key)]


def metric_columns(table: GroupTable) -> dict[str, str]:
    """Stat key -> ``<split>/<metric>`` column of every metric column of ``table``."""
    return {c.key: (table.primary if c.key == "primary" else c.key.split(":", 1)[1])
            for c in table.columns if c.kind == "metric"}


def primary_is(runs: pd.DataFrame, key: str) -> bool:
    """Every run's own primary metric is ``key`` (a group may mix, e.g. a sweep's hold-out with validation)."""
    return "primary_metric" in runs and bool((runs["primary_metric"].astype(str) == key).all())


def seed_values(runs: pd.DataFrame, column: str) -> dict[Any, float]:
    values = pd.to_numeric(runs[column], errors="coerce") if column in runs else pd.Series(dtype=float)
    return {seed: float(v) for seed, v in zip(runs["seed"], values) if np.isfinite(v)}


def fill_intervals(table: GroupTable, evals: pd.DataFrame, evidence: Evidence, *, level: float = 0.95,
                   n_resamples: int = N_RESAMPLES, rng: Any = 0) -> None:
    """Set ``interval`` and ``interval_kind`` of every metric stat of ``table`` (module docstring)."""
    progress.note(f"intervals: {table.key.task}, {len(table.rows)} rows")
    with sums_cache.session():  # the aligned prediction lists are read-only: hash each once
        _fill(table, evals, evidence, level, n_resamples, rng)


def _fill(table: GroupTable, evals: pd.DataFrame, evidence: Evidence, level: float, n_resamples: int, rng: Any
          ) -> None:
    jobs = []  # (row, key, current stat, estimate's arguments): gathered first, since reading sidecars is Python
    for row in table.rows:
        runs = row_runs(evals, row)
        for key, column in metric_columns(table).items():
            # The primary stat is the "primary" column (each run's own primary metric, as aggregate averages it).
            current, values = row.stats.get(key), seed_values(runs, "primary" if key == "primary" else column)
            if current is None or not values:
                continue
            with_values = runs[runs["seed"].isin(values)]
            found = evidence.predictions(with_values, column.split("/", 1)[0], row.point)
            if key == "primary" and not primary_is(with_values, table.primary):
                found = None  # runs whose primary metric is another split's: their sidecars say nothing here
            metric = evidence.metric(with_values, column, table.primary, table.greater_is_better, found)
            if metric is None:
                found = None
            jobs.append((row, key, current, (metric, values, found)))

    def estimate(job: tuple) -> stats.Estimate:
        metric, values, found = job[3]
        try:
            return stats.estimate(metric, values, found.by_seed if found else None,
                                  found.references if found else None, level=level, n_resamples=n_resamples, rng=rng)
        except (ValueError, TypeError, IndexError):  # predictions the metric cannot read: seeds only
            return stats.estimate(None, values, level=level)

    # The estimates in two threads: resampling is numpy work on large arrays, which releases the GIL; every
    # estimate draws with its own seed, so the threads' order does not matter. BLAS on one thread meanwhile
    # (stats.answer.answer says why).
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=THREADS) as pool:
        for (row, key, current, _), est in zip(jobs, pool.map(estimate, jobs)):
            if est.interval is not None:
                row.stats[key] = replace(current, interval=(est.interval.low, est.interval.high),
                                         interval_kind=est.reported)
