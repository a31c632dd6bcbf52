"""A matrix of runs: expand, check every input before the first run, then run each in its own process.

Each run is a fresh Python process (``python -m adapterbench.harness.worker``), so one run's memory never leaks
into the next run's figure and a crash, an out-of-memory kill or a hang of one run does not stop the others. A run
whose record already exists with status ``ok`` is skipped unless ``force``; an interrupted matrix therefore
resumes where it stopped.

Nothing runs twice: duplicate variants, tasks and seeds are dropped by :func:`expand`; each run is claimed
(:mod:`adapterbench.harness.claims`) before it starts, so two ``bench run`` on one output folder share the work
instead of both training it; a worker dies with the process that started it (:mod:`adapterbench.harness.worker`),
so a ``kill -9`` of the parent leaves no orphan that writes its record later.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from adapterbench.errors import UserError
from adapterbench.harness import claims
from adapterbench.harness.preflight import preflight
from adapterbench.harness.records import (
    checkpoint_path,
    existing_status,
    predictions_path,
    read_record,
    record_path,
    supersede,
    write_record,
)
from adapterbench.harness.run import RunSpec, base_record, environment
from adapterbench.harness.settings import applicable_overrides, check_overrides
from adapterbench.harness.worker import EXIT_INTERRUPTED
from adapterbench.reports.units import summary_line
from adapterbench.tasks import get_task
from adapterbench.tasks.fingerprint import data_identity
from adapterbench.variants import VARIANTS

__all__ = ["expand", "preflight", "run_matrix", "run_one", "run_isolated", "summary_line"]

INTERRUPT_GRACE_S = 30  # how long an interrupted worker may take to stop before it is killed


def expand(variants: list[str], tasks: list[str], seeds: list[int], model: str, profile: str,
           overrides: dict[str, Any], data_dir: str | None, out_dir: str) -> list[RunSpec]:
    """Every (task, variant, seed) run, duplicates dropped (the first occurrence keeps its place)."""
    variants, tasks, seeds = (list(dict.fromkeys(items)) for items in (variants, tasks, seeds))
    variant_keys = {v: VARIANTS.get(v).config_keys() for v in variants}
    check_overrides(overrides, variant_keys)  # every override must land somewhere in this run
    applicable = {v: applicable_overrides(overrides, v, variant_keys[v]) for v in variants}
    fingerprints = {t: data_identity(get_task(t), data_dir)["fingerprint"] for t in tasks}
    specs = [RunSpec(variant=v, task=t, model=model, seed=s, profile=profile, overrides=applicable[v],
                     data_dir=data_dir, out_dir=out_dir, data_fingerprint=fingerprints[t])
             for t in tasks for v in variants for s in seeds]
    return list({spec.run_id: spec for spec in specs}.values())  # e.g. one task file given by two paths


def run_matrix(specs: list[RunSpec], force: bool = False, isolate: bool = True, stream: TextIO | None = None,
               argv: list[str] | None = None) -> int:
    """Run every spec not already done; returns 0 when every run is ok (or was skipped as ok), else 1.

    ``argv`` is the user's command line, written into each record's ``environment.argv`` (default: this
    process's arguments; a worker's own would only name its record file).
    """
    stream = stream or sys.stdout
    argv = list(sys.argv[1:]) if argv is None else argv
    out_dir = Path(specs[0].out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {str(out_dir)!r} ({exc.strerror})") from None
    before = {s.run_id: _file_state(record_path(out_dir, s.run_id)) for s in specs}
    todo = [s for s in specs if force or existing_status(record_path(out_dir, s.run_id)) != "ok"]
    skipped = len(specs) - len(todo)
    print(f"matrix: {len(specs)} runs ({len({s.variant for s in specs})} variants x {len({s.task for s in specs})}"
          f" tasks x {len({s.seed for s in specs})} seeds), {skipped} already done, {len(todo)} to run; "
          f"records in {out_dir}/", file=stream, flush=True)
    all_ok = True
    elsewhere: list[RunSpec] = []
    for number, spec in enumerate(todo, 1):
        print(f"[{number}/{len(todo)}] {task_label(spec.task)} / {spec.variant} / seed {spec.seed}", file=stream,
              flush=True)
        outcome = run_one(spec, before[spec.run_id], isolate, stream, argv)
        if outcome is None:
            elsewhere.append(spec)
        else:
            all_ok &= outcome == "ok"
    if elsewhere:
        pending = [s for s in elsewhere if existing_status(record_path(out_dir, s.run_id)) != "ok"]
        if pending:
            runs = "1 run is" if len(pending) == 1 else f"{len(pending)} runs are"
            print(f"{runs} still being run by other processes on {out_dir}/; rerun this command once they finish "
                  f"to check their records", file=stream, flush=True)
            all_ok = False
    return 0 if all_ok else 1


def run_one(spec: RunSpec, seen: tuple[int, int] | None, isolate: bool, stream: TextIO,
            argv: list[str] | None = None) -> str | None:
    """Claim, run and record one spec; its status, or None when another live process holds its claim.

    ``seen`` is the record file's state (:func:`_file_state`) when the matrix looked at it: a record written since
    then was written by another process that finished this run meanwhile, and it is not run again.
    """
    out_dir = Path(spec.out_dir)
    path = record_path(out_dir, spec.run_id)
    claim = claims.try_claim(out_dir, spec.run_id)
    if claim is None:
        where = claims.claim_path(out_dir, spec.run_id)
        print(f"  skipped: being run by {claims.describe(claims.holder(out_dir, spec.run_id), where)}",
              file=stream, flush=True)
        return None
    with claim:
        if _file_state(path) != seen:
            status = existing_status(path)
            print(f"  skipped: another process finished it meanwhile (status {status})", file=stream, flush=True)
            return status
        previous = supersede(path)  # kept, never overwritten
        if previous is not None:
            supersede(checkpoint_path(out_dir, spec.run_id))  # the weights that record points at go with it
            supersede(predictions_path(out_dir, spec.run_id))  # and its predictions
            print(f"  previous record moved to {previous}", file=stream, flush=True)
        if isolate:
            record = run_isolated(spec, path, argv, on_start=claim.set_worker)
        else:
            record = _run_here(spec, path, argv)
    print("  " + summary_line(record), file=stream, flush=True)
    return record.get("status")


def task_label(task: str) -> str:
    """The task's own name (a task file's ``name`` rather than its path), for progress lines."""
    try:
        return get_task(task).name
    except UserError:
        return task


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ino


def _run_here(spec: RunSpec, path: Path, argv: list[str] | None) -> dict[str, Any]:
    from adapterbench.harness.run import execute

    record = with_argv(execute(spec), argv)
    _write(path, record)
    return record


def with_argv(record: dict[str, Any], argv: list[str] | None) -> dict[str, Any]:
    """The record with ``environment.argv`` set to the user's command line (the process's own is a worker's)."""
    if argv is not None:
        record["environment"] = {**record.get("environment", {}), "argv": list(argv)}
    return record


def _write(path: Path, record: dict[str, Any]) -> None:
    try:
        write_record(path, record)
    except OSError as exc:  # a disk that filled or went read-only during the matrix: stop, in one line
        raise UserError(f"cannot write the record {str(path)!r} ({exc.strerror}); the matrix stops here, "
                        f"rerun it once the output folder is writable") from None


def run_isolated(spec: RunSpec, path: Path, argv: list[str] | None = None, on_start: Any = None
                 ) -> dict[str, Any]:
    """Run ``spec`` in a worker process and return its record (written at ``path`` by the worker, or here).

    The worker dies with this process (see :mod:`adapterbench.harness.worker`). On Ctrl-C (or SIGTERM turned
    into ``KeyboardInterrupt`` by the command line) the worker is interrupted too, given
    ``INTERRUPT_GRACE_S`` to stop, then killed; no record is written for the interrupted run, and the
    ``KeyboardInterrupt`` goes on to the caller. ``on_start(pid)`` is called once the worker exists.
    """
    start = time.perf_counter()
    env = {**os.environ, "ADAPTERBENCH_PARENT_PID": str(os.getpid())}
    process = subprocess.Popen([sys.executable, "-m", "adapterbench.harness.worker", str(path)],
                               stdin=subprocess.PIPE, text=True, env=env)
    try:
        if on_start is not None:
            on_start(process.pid)
        process.communicate(json.dumps({"spec": asdict(spec), "argv": argv}))
    except BaseException:
        _stop(process)
        raise
    code = process.returncode
    if code == EXIT_INTERRUPTED and not path.exists():
        raise KeyboardInterrupt  # the worker alone was interrupted: the matrix stops as on Ctrl-C, no record
    if path.exists():  # the record was written (a non-zero exit after it, e.g. in teardown, is noted)
        try:
            record = read_record(path)
        except (OSError, ValueError):
            record = None  # half a record can only come from a dying file system: recorded below as failed
        if record is not None:
            if code != 0:
                record.setdefault("notes", []).append(f"worker exited with status {code} after writing this record")
                _write(path, record)
            return record
    return _dead_worker_record(spec, path, code, time.perf_counter() - start, argv)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # a terminal's Ctrl-C reached it already; a SIGTERM to us did not
        try:
            process.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _dead_worker_record(spec: RunSpec, path: Path, code: int, wall_s: float, argv: list[str] | None
                        ) -> dict[str, Any]:
    """The worker ended without a record: killed (likely by the out-of-memory killer), or it crashed."""
    status = "oom" if code == -signal.SIGKILL else "failed"
    reason = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"worker exited with status {code}"
    if status == "oom":
        reason += " (most likely the out-of-memory killer)"
    record = base_record(spec)
    record.update(status=status, error={"type": "WorkerDied", "message": reason, "traceback": ""},
                  measurements={"time/wall_s": wall_s},
                  environment=environment(record.get("training", {}).get("device")),
                  created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    record = with_argv(record, argv)
    _write(path, record)
    return record
