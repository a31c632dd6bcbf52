"""A matrix of runs: expand, check every input before the first run, then run each in its own process.

Each run is a fresh Python process (``python -m adapterbench.harness.worker``), so one run's memory never leaks
into the next run's figure and a crash, an out-of-memory kill or a hang of one run does not stop the others. A run
whose record already exists with status ``ok`` and the loop settings the run would use now is skipped unless
``force`` (:func:`is_done`); an interrupted matrix therefore resumes where it stopped, and a record made stale by a
profile's change (a new learning rate, more steps) is rerun (the old one moves to ``superseded/``).

Nothing runs twice: duplicate variants, tasks and seeds are dropped by :func:`expand`; each run is claimed
(:mod:`adapterbench.harness.claims`) before it starts, so two ``bench run`` on one output folder share the work
instead of both training it; a worker dies with the process that started it (:mod:`adapterbench.harness.worker`),
so a ``kill -9`` of the parent leaves no orphan that writes its record later.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

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
from adapterbench.harness.run import RunSpec, base_record, environment, planned_settings
from adapterbench.harness.settings import PLAN_KEYS, applicable_overrides, check_overrides
from adapterbench.harness.worker import EXIT_INTERRUPTED, ending, oom_kills
from adapterbench.reports.units import summary_line
from adapterbench.schema import PROCESS_S, WORKER_WAIT_S
from adapterbench.tasks import get_task
from adapterbench.tasks.fingerprint import data_identity
from adapterbench.variants import VARIANTS

if TYPE_CHECKING:
    from adapterbench.harness.executors import Executor

__all__ = ["expand", "preflight", "run_matrix", "is_done", "begin_run", "run_one", "run_isolated", "start_worker",
           "Worker", "dead_record", "summary_line"]

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
               argv: list[str] | None = None, executor: Executor | None = None) -> int:
    """Run every spec not already done on ``executor`` (default: one after another here, see
    :mod:`adapterbench.harness.executors`); returns 0 when every run is ok (or was skipped as ok), else 1.

    ``argv`` is the user's command line, written into each record's ``environment.argv`` (default: this
    process's arguments; a worker's own would only name its record file).
    """
    from adapterbench.harness.executors import Context, Job, LocalExecutor

    stream = stream or sys.stdout
    argv = list(sys.argv[1:]) if argv is None else argv
    executor = executor or LocalExecutor(isolate=isolate)
    executor.check(specs)
    out_dir = Path(specs[0].out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {str(out_dir)!r} ({exc.strerror})") from None
    before = {s.run_id: _file_state(record_path(out_dir, s.run_id)) for s in specs}
    todo = [s for s in specs if force or not is_done(s)]
    skipped = len(specs) - len(todo)
    print(f"matrix: {len(specs)} runs ({len({s.variant for s in specs})} variants x {len({s.task for s in specs})}"
          f" tasks x {len({s.seed for s in specs})} seeds), {skipped} already done, {len(todo)} to run; "
          f"records in {out_dir}/" + (f"; executor: {executor.describe()}" if todo else ""), file=stream, flush=True)
    jobs = [Job(spec, record_path(out_dir, spec.run_id), n, before[spec.run_id]) for n, spec in enumerate(todo, 1)]
    outcomes = executor.run(jobs, Context(stream, argv, len(jobs)))
    # A run without an outcome did not finish here: it counts as not ok. None: another process holds it.
    elsewhere = [job.spec for job in jobs if job.spec.run_id in outcomes and outcomes[job.spec.run_id] is None]
    all_ok = all(outcomes.get(job.spec.run_id, "missing") in ("ok", None) for job in jobs)
    if elsewhere:  # wait for the other processes' runs, so that the exit status is the matrix's (claims.py)
        def waiting(held: dict[str, Any]) -> None:
            pids = sorted({str((info or {}).get("pid", "?")) for info in held.values()})
            print(f"waiting for {len(held)} run(s) being run by pid {', '.join(pids)} on {out_dir}/", file=stream,
                  flush=True)

        unwaited = set(claims.wait_for_holders(out_dir, [s.run_id for s in elsewhere], waiting))
        pending = [s for s in elsewhere if not is_done(s)]
        if pending:
            runs = "1 run is" if len(pending) == 1 else f"{len(pending)} runs are"
            if any(s.run_id in unwaited for s in pending):
                print(f"{runs} still being run by other processes on {out_dir}/ (another host's, or this process's "
                      f"caller's); rerun this command once they finish to check their records", file=stream, flush=True)
            else:
                print(f"{runs} not ok after other processes ran them; see their records in {out_dir}/", file=stream,
                      flush=True)
            all_ok = False
    return 0 if all_ok else 1


def is_done(spec: RunSpec) -> bool:
    """Whether ``spec`` has a record with status ``ok`` whose loop settings are those it would use now.

    Every :data:`~adapterbench.harness.settings.PLAN_KEYS` setting the record holds must equal the planned one
    (:func:`~adapterbench.harness.run.planned_settings`): a record of a profile's old learning rate or old
    training size is stale, and the matrix reruns it (the old record moves to ``superseded/``). A setting that
    an older record does not hold yet is not held against it.
    """
    try:
        record = read_record(record_path(Path(spec.out_dir), spec.run_id))
    except (OSError, ValueError):
        return False
    if record.get("status") != "ok":
        return False
    recorded = record.get("training", {})
    planned = planned_settings(spec).as_dict()
    return all(_same(recorded[key], planned[key]) for key in PLAN_KEYS if key in recorded)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def begin_run(spec: RunSpec, seen: tuple[int, int] | None, stream: TextIO) -> claims.Claim | str | None:
    """Claim ``spec`` and move its old record aside; the :class:`~claims.Claim` to hold while it runs.

    Instead of a claim: the status of a record another process wrote since the matrix looked (``seen`` is the
    record file's state then, :func:`_file_state`), or None when another live process holds the run's claim.
    """
    out_dir = Path(spec.out_dir)
    path = record_path(out_dir, spec.run_id)
    claim = claims.try_claim(out_dir, spec.run_id)
    if claim is None:
        where = claims.claim_path(out_dir, spec.run_id)
        print(f"  skipped: being run by {claims.describe(claims.holder(out_dir, spec.run_id), where)}",
              file=stream, flush=True)
        return None
    if _file_state(path) != seen:
        claim.release()
        status = existing_status(path)
        print(f"  skipped: another process finished it meanwhile (status {status})", file=stream, flush=True)
        return status
    previous = supersede(path)  # kept, never overwritten
    if previous is not None:
        supersede(checkpoint_path(out_dir, spec.run_id))  # the weights that record points at go with it
        supersede(predictions_path(out_dir, spec.run_id))  # and its predictions
        print(f"  previous record moved to {previous}", file=stream, flush=True)
    return claim


def run_one(spec: RunSpec, seen: tuple[int, int] | None, isolate: bool, stream: TextIO,
            argv: list[str] | None = None, env: dict[str, str] | None = None,
            placement: dict[str, Any] | None = None, on_start: Callable[[int], None] | None = None,
            worker: Worker | None = None) -> str | None:
    """Claim, run and record one spec; its status, or None when another live process holds its claim.

    ``env``, ``placement``, ``on_start`` and ``worker`` go to :func:`run_isolated` (an executor's GPU, where it
    ran, a worker started ahead of time); ``worker`` is left alone when the run is not claimed here.
    """
    claim = begin_run(spec, seen, stream)
    if not isinstance(claim, claims.Claim):
        return claim
    path = record_path(Path(spec.out_dir), spec.run_id)
    with claim:
        if isolate:
            def started(pid: int) -> None:
                claim.set_worker(pid)
                if on_start is not None:
                    on_start(pid)

            record = run_isolated(spec, path, argv, on_start=started, env=env, placement=placement, worker=worker)
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


@dataclass
class Worker:
    """A started worker process (``python -m adapterbench.harness.worker``) and when it started."""

    process: subprocess.Popen
    started: float  # time.perf_counter() when it was started

    def dismiss(self) -> None:
        """No run for this worker: stop it (it has only imported modules; it holds nothing to lose)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()


def start_worker(env: dict[str, str] | None = None, path: Path | None = None) -> Worker:
    """Start a worker; it imports everything a run needs, then waits on its standard input for its run.

    It dies with this process (see :mod:`adapterbench.harness.worker`), so start it from a thread that outlives
    it. ``env`` is added to its environment (an executor's ``CUDA_VISIBLE_DEVICES``); ``path``, the record it
    will write when that is known already, goes on its command line (so ``ps`` shows which run a worker runs).
    """
    env = {**os.environ, **(env or {}), "ADAPTERBENCH_PARENT_PID": str(os.getpid())}
    started = time.perf_counter()
    command = [sys.executable, "-m", "adapterbench.harness.worker"] + ([str(path)] if path is not None else [])
    process = subprocess.Popen(command, stdin=subprocess.PIPE, text=True, env=env)
    return Worker(process, started)


def run_isolated(spec: RunSpec, path: Path, argv: list[str] | None = None, on_start: Any = None,
                 env: dict[str, str] | None = None, placement: dict[str, Any] | None = None,
                 worker: Worker | None = None) -> dict[str, Any]:
    """Run ``spec`` in a worker process and return its record (written at ``path`` by the worker, or here).

    ``worker``: one started ahead of time (:func:`start_worker`, its imports done while this process did other
    work), if it is still alive; else a new one is started here with ``env`` added to its environment (an
    executor's ``CUDA_VISIBLE_DEVICES``). The worker dies with this process (see
    :mod:`adapterbench.harness.worker`). On Ctrl-C (or SIGTERM turned into ``KeyboardInterrupt`` by the command
    line) the worker is interrupted too, given ``INTERRUPT_GRACE_S`` to stop, then killed; no record is written
    for the interrupted run, and the ``KeyboardInterrupt`` goes on to the caller. ``on_start(pid)`` is called once
    the worker has its run. ``placement`` (where it ran) goes into the record's ``environment.placement``, and
    ``time/process_s`` (the worker's whole life: Python start, imports, the run, writing; less the time a worker
    started ahead waited for its run, ``time/worker_wait_s``) into its measurements.
    """
    if worker is None or worker.process.poll() is not None:
        worker = start_worker(env, path)
    process = worker.process
    handed, oom_before = time.perf_counter(), oom_kills()
    try:
        if on_start is not None:
            on_start(process.pid)
        process.communicate(json.dumps({"spec": asdict(spec), "argv": argv, "path": str(path)}))
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
            measurements = record.setdefault("measurements", {})
            waited = measurements.get(WORKER_WAIT_S.key, 0)
            measurements[PROCESS_S.key] = time.perf_counter() - worker.started - waited
            if placement:
                record["environment"] = {**record.get("environment", {}), "placement": placement}
            _write(path, record)
            return record
    status, reason = ending(code, oom_before, oom_kills())
    record = dead_record(spec, status, reason, time.perf_counter() - handed, argv, placement)
    _write(path, record)
    return record


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # a terminal's Ctrl-C reached it already; a SIGTERM to us did not
        try:
            process.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def dead_record(spec: RunSpec, status: str, reason: str, wall_s: float | None, argv: list[str] | None,
                placement: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a run that left none: identity and settings (so reports group it), status and reason."""
    record = base_record(spec)
    env = environment(record.get("training", {}).get("device"))
    record.update(status=status, error={"type": "WorkerDied", "message": reason, "traceback": ""},
                  measurements={} if wall_s is None else {"time/wall_s": wall_s},
                  environment={**env, "placement": placement} if placement else env,
                  created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    return with_argv(record, argv)
