"""The plan of a matrix before it runs (``bench run --dry-run``), and its progress while it runs.

``--dry-run`` prints every run as :func:`~adapterbench.harness.matrix.run_matrix` would see it: variant, task,
seed, the loop settings, the learning rate and where it comes from (:func:`lr_origin`), the optimizer steps,
and whether a record already makes it done; then an estimate of the pending runs' time from the records in the
output folder (:func:`estimate`). It writes nothing (not even the output folder) and runs no preflight.

Estimates, written once here: a pending run is expected to take the mean ``time/process_s`` (else
``time/wall_s``) of the ok records of its task, variant and profile in the output folder; failing those, of its
task and profile (any variant); runs with neither are counted apart, never guessed. While a matrix runs,
:func:`eta_seconds` is ``elapsed / done * (total - done)``: wall time since the matrix started over finished
runs, so it holds for one run at a time and for runs in parallel alike.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from adapterbench.errors import UserError
from adapterbench.harness.loop import schedule_steps
from adapterbench.harness.records import iter_records, read_record, record_path
from adapterbench.harness.settings import (
    TrainSettings,
    resolve_lr,
    resolve_settings,
    split_overrides,
)
from adapterbench.listing import lr_origin
from adapterbench.reports.blocks import Cell, text_table
from adapterbench.reports.units import fmt_seconds
from adapterbench.schema import PROCESS_S


@dataclass(frozen=True)
class PlannedRun:
    spec: Any  # RunSpec
    settings: TrainSettings  # lr resolved
    lr_from: str
    train_examples: int | None  # None: the data is on the hub, its size unknown until downloaded
    steps: int | None
    state: str  # done | pending | pending (last <status>) | stale (settings changed) | rerun (--force)
    recorded_s: float | None  # a done run's recorded time


def run_seconds(record: dict[str, Any]) -> float | None:
    measurements = record.get("measurements") or {}
    value = measurements.get(PROCESS_S.key, measurements.get("time/wall_s"))
    return float(value) if isinstance(value, (int, float)) else None


def _train_size(spec: Any, cache: dict[str, int | None]) -> int | None:
    from adapterbench.tasks import get_task
    from adapterbench.tasks.data import load_examples, local_path

    if spec.task not in cache:
        task = get_task(spec.task)
        path = local_path(task, task.train_split, spec.data_dir)
        cache[spec.task] = None if path is None else len(load_examples(task, task.train_split, spec.data_dir))
    return cache[spec.task]


def plan_run(spec: Any, force: bool, sizes: dict[str, int | None]) -> PlannedRun:
    from adapterbench.harness.matrix import is_done
    from adapterbench.variants import VARIANTS

    variant_cls = VARIANTS.entry(spec.variant).load()
    train_over, _ = split_overrides(spec.overrides, spec.variant, variant_cls.config_keys())
    settings = resolve_settings(spec.profile, train_over, spec.task)
    origin = lr_origin(spec.profile, spec.variant, spec.task, settings)
    lr = resolve_lr(spec.profile, spec.variant, variant_cls.default_lr, settings, spec.task)
    n_train, steps = _train_size(spec, sizes), None
    if n_train is not None:
        budget = min(n_train, settings.max_train_samples or n_train)  # held-out examples leave the data only
        available = max(0, n_train - (settings.holdout_samples or settings.eval_holdout))
        n_train = min(available, settings.max_train_samples or available)
        steps = schedule_steps(budget, settings)[1]
    try:
        record = read_record(record_path(Path(spec.out_dir), spec.run_id))
    except (OSError, ValueError):
        record = None
    if record is None:
        state = "pending"
    elif force:
        state = "rerun (--force)"
    elif record.get("status") != "ok":
        state = f"pending (last {record.get('status')})"
    else:
        state = "done" if is_done(spec) else "stale (settings changed)"
    return PlannedRun(spec, TrainSettings(**{**settings.as_dict(), "lr": lr}), origin, n_train, steps, state,
                      run_seconds(record) if record and state == "done" else None)


@dataclass(frozen=True)
class Estimate:
    seconds: float  # the pending runs with a comparable record, one after another
    counted: int  # pending runs estimated
    uncounted: int  # pending runs with no comparable record
    records: int  # ok records the estimate is made from


def estimate(planned: Sequence[PlannedRun], records: Sequence[dict[str, Any]]) -> Estimate:
    """The pending runs' time from ``records`` (see the module docstring)."""
    exact: dict[tuple[str, str, str], list[float]] = {}
    loose: dict[tuple[str, str], list[float]] = {}
    used = 0
    for record in records:
        seconds = run_seconds(record)
        if record.get("status") != "ok" or seconds is None:
            continue
        task, variant = (record.get("task") or {}).get("name"), (record.get("variant") or {}).get("name")
        exact.setdefault((task, variant, record.get("profile")), []).append(seconds)
        loose.setdefault((task, record.get("profile")), []).append(seconds)
        used += 1
    total, counted, uncounted = 0.0, 0, 0
    for run in planned:
        if run.state == "done":
            continue
        from adapterbench.harness.matrix import task_label

        task = task_label(run.spec.task)
        times = exact.get((task, run.spec.variant, run.spec.profile)) or loose.get((task, run.spec.profile))
        if times:
            total, counted = total + sum(times) / len(times), counted + 1
        else:
            uncounted += 1
    return Estimate(total, counted, uncounted, used)


def plan_lines(planned: Sequence[PlannedRun], est: Estimate, out_dir: str) -> list[str]:
    runs = len(planned)
    done = sum(p.state == "done" for p in planned)
    head = (f"dry run: {runs} runs ({len({p.spec.variant for p in planned})} variants x "
            f"{len({p.spec.task for p in planned})} tasks x {len({p.spec.seed for p in planned})} seeds), {done} "
            f"done, {runs - done} to run; records in {out_dir}/; nothing is run or written")
    headers = ("#", "task", "variant", "seed", "lr", "lr from", "epochs", "batch", "max len", "train ex", "steps",
               "other settings", "state", "time")
    rows = []
    for i, p in enumerate(planned, 1):
        s = p.settings
        other = " ".join(f"{k}={v}" for k, v in sorted(p.spec.overrides.items())
                         if k not in ("lr", "epochs", "batch_size", "max_length"))
        texts = [str(i), p.spec.task, p.spec.variant, str(p.spec.seed), f"{s.lr:g}", p.lr_from, str(s.epochs),
                 str(s.batch_size), str(s.max_length), "?" if p.train_examples is None else str(p.train_examples),
                 "?" if p.steps is None else str(p.steps), other or "-", p.state,
                 fmt_seconds(p.recorded_s) if p.recorded_s is not None else ""]
        rows.append([Cell(t, numeric=j in (0, 3, 6, 7, 8, 9, 10)) for j, t in enumerate(texts)])
    lines = [head, *text_table(headers, rows, indent="")]
    if runs - done == 0:
        lines.append("estimate: nothing to run")
    elif est.counted:
        lines.append(f"estimate: about {fmt_seconds(est.seconds)} of run time for {est.counted} of the "
                     f"{runs - done} runs to do (mean time of the same task and variant, else task, over "
                     f"{est.records} finished records in {out_dir}/)"
                     + (f"; {est.uncounted} runs have no comparable record and are not counted"
                        if est.uncounted else ""))
    else:
        lines.append(f"estimate: none; no finished record of these tasks in {out_dir}/ to estimate from")
    if any(p.train_examples is None for p in planned):
        lines.append("?: the task's data comes from the Hugging Face hub; its size is known once downloaded")
    return lines


def print_plan(specs: Sequence[Any], force: bool = False, stream: TextIO | None = None) -> int:
    """``bench run --dry-run``: print the plan of ``specs``; 0 (bad settings raise :class:`UserError`)."""
    if not specs:
        raise UserError("the matrix is empty: give at least one variant, task and seed")
    sizes: dict[str, int | None] = {}
    planned = [plan_run(spec, force, sizes) for spec in specs]
    out_dir = specs[0].out_dir
    records = [r for _, r in iter_records([Path(out_dir)])] if Path(out_dir).is_dir() else []
    print("\n".join(plan_lines(planned, estimate(planned, records), out_dir)), file=stream or sys.stdout)
    return 0


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Wall time left: ``elapsed / done * (total - done)`` (None before the first run finishes)."""
    return elapsed / done * (total - done) if done else None


def progress_text(elapsed: float, done: int, total: int) -> str:
    """``run k/N, ETA ...`` after a finished run."""
    eta = eta_seconds(elapsed, done, total)
    return f"run {done}/{total}" + ("" if eta is None else ", done" if done >= total else f", ETA {fmt_seconds(eta)}")
