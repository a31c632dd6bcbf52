"""A matrix of runs: expand, check every input before the first run, then run each in its own process.

Each run is a fresh Python process (``python -m adapterbench.harness.worker``), so one run's memory never leaks
into the next run's figure and a crash, an out-of-memory kill or a hang of one run does not stop the others. A run
whose record already exists with status ``ok`` is skipped unless ``force``; an interrupted matrix therefore
resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from adapterbench.errors import UserError
from adapterbench.harness.loop import schedule_steps
from adapterbench.harness.records import existing_status, read_record, record_path, write_record
from adapterbench.harness.run import RunSpec, base_record, environment, resolve
from adapterbench.harness.settings import applicable_overrides, check_overrides
from adapterbench.models import resolve_model
from adapterbench.tasks import get_task
from adapterbench.tasks.data import load_examples
from adapterbench.tasks.fingerprint import data_identity
from adapterbench.variants import VARIANTS

if TYPE_CHECKING:
    from adapterbench.harness.executors import Executor


def expand(variants: list[str], tasks: list[str], seeds: list[int], model: str, profile: str,
           overrides: dict[str, Any], data_dir: str | None, out_dir: str) -> list[RunSpec]:
    variant_keys = {v: VARIANTS.get(v).config_keys() for v in variants}
    check_overrides(overrides, variant_keys)  # every override must land somewhere in this run
    applicable = {v: applicable_overrides(overrides, v, variant_keys[v]) for v in variants}
    fingerprints = {t: data_identity(get_task(t), data_dir)["fingerprint"] for t in tasks}
    return [RunSpec(variant=v, task=t, model=model, seed=s, profile=profile, overrides=applicable[v],
                    data_dir=data_dir, out_dir=out_dir, data_fingerprint=fingerprints[t])
            for t in tasks for v in variants for s in seeds]


def preflight(specs: list[RunSpec]) -> None:
    """Raise :class:`UserError` for any bad input, before a single run starts."""
    if not specs:
        raise UserError("the matrix is empty: give at least one variant, task and seed")
    data_dir = specs[0].data_dir
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"data folder {data_dir!r} does not exist; pass --data-dir pointing at a folder with "
                        f"glue/ and conll2003/ (for example ../shared/data)")
    for model in dict.fromkeys(s.model for s in specs):
        resolve_model(model)
    train_sizes: dict[str, int | None] = {}
    for task_name in dict.fromkeys(s.task for s in specs):
        task = get_task(task_name)
        if data_dir is None and not os.environ.get("ADAPTERBENCH_DATA_DIR"):
            train_sizes[task_name] = None  # hub data: sizes known only once downloaded
            continue
        directory = Path(data_dir) if data_dir else None
        train_sizes[task_name] = len(load_examples(task, task.train_split, directory))
        for split in task.eval_splits:
            load_examples(task, split, directory)
    for spec in specs:
        run = resolve(spec)  # every setting, the device, the task and the model, as the run will see them
        variant, settings = run.new_variant(), run.settings
        n_train = train_sizes[spec.task]
        if n_train is not None:
            available = n_train - settings.holdout_samples
            if available < 1:
                raise UserError(f"holdout_samples={settings.holdout_samples} leaves no training examples for task "
                                f"{spec.task!r} (its training split has {n_train})")
            n = min(available, settings.max_train_samples or available)
            variant.validate_schedule(schedule_steps(n, settings)[1])


def run_matrix(specs: list[RunSpec], force: bool = False, isolate: bool = True, stream: TextIO | None = None,
               executor: Executor | None = None) -> int:
    """Run every spec not already done on ``executor`` (default: one after another here); returns 0 when every run
    is ok (or was skipped as ok), else 1."""
    from adapterbench.harness.executors import Job, LocalExecutor, Tracker

    stream = stream or sys.stdout
    executor = executor or LocalExecutor(isolate=isolate)
    executor.check(specs)
    out_dir = Path(specs[0].out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [s for s in specs if force or existing_status(record_path(out_dir, s.run_id)) != "ok"]
    skipped = len(specs) - len(todo)
    print(f"matrix: {len(specs)} runs ({len({s.variant for s in specs})} variants x {len({s.task for s in specs})}"
          f" tasks x {len({s.seed for s in specs})} seeds), {skipped} already done, {len(todo)} to run; "
          f"records in {out_dir}/" + (f"; executor: {executor.describe()}" if todo else ""), file=stream, flush=True)
    tracker = Tracker(len(todo), stream)
    executor.run([Job(spec, record_path(out_dir, spec.run_id), n) for n, spec in enumerate(todo, 1)], tracker)
    return 0 if tracker.all_ok else 1


def _run_here(spec: RunSpec, path: Path) -> dict[str, Any]:
    from adapterbench.harness.run import execute

    record = execute(spec)
    write_record(path, record)
    return record


def _run_isolated(spec: RunSpec, path: Path, env: dict[str, str] | None = None,
                  placement: dict[str, Any] | None = None, on_start: Callable[[subprocess.Popen], None] | None = None,
                  die_with_parent: bool = False) -> dict[str, Any]:
    """Run ``spec`` in a fresh worker process and return its record (written at ``path`` whatever happens).

    ``env``: extra environment for the worker (its GPU); ``placement``: where it ran, kept in
    ``environment.placement``; ``on_start``: called with the worker process; ``die_with_parent``: the worker is
    killed when this process dies (a Ray task's supervisor). A worker ended by SIGINT was interrupted, not failed:
    it leaves no record and raises KeyboardInterrupt here.
    """
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "adapterbench.harness.worker", str(path)],
                               stdin=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                               preexec_fn=_die_with(os.getpid()) if die_with_parent else None)
    if on_start is not None:
        on_start(process)
    try:
        process.communicate(json.dumps(asdict(spec)))
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    code = process.returncode
    if path.exists():  # the record was written (a non-zero exit after it, e.g. in teardown, is noted)
        record = read_record(path)
        if code != 0:
            record.setdefault("notes", []).append(f"worker exited with status {code} after writing this record")
        # The worker's whole life (Python start, imports, the run, writing): what a run costs the matrix.
        record.setdefault("measurements", {})["time/process_s"] = time.perf_counter() - start
        if placement:
            record.setdefault("environment", {})["placement"] = placement
        write_record(path, record)
        return record
    if code == -signal.SIGINT:
        raise KeyboardInterrupt
    # The worker died without writing its record: killed (likely by the out-of-memory killer) or crashed.
    status = "oom" if code == -signal.SIGKILL else "failed"
    reason = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"worker exited with status {code}"
    if status == "oom":
        reason += " (most likely the out-of-memory killer)"
    record = dead_worker_record(spec, status, reason, time.perf_counter() - start, placement)
    write_record(path, record)
    return record


def dead_worker_record(spec: RunSpec, status: str, reason: str, wall_s: float | None,
                       placement: dict[str, Any] | None) -> dict[str, Any]:
    """The record of a run whose worker died before writing one: identity and settings, status and reason."""
    record = base_record(spec)
    env = environment(record.get("training", {}).get("device"))
    record.update(status=status, error={"type": "WorkerDied", "message": reason, "traceback": ""},
                  measurements={} if wall_s is None else {"time/wall_s": wall_s},
                  environment={**env, "placement": placement} if placement else env,
                  created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    return record


def _die_with(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when its parent dies (no orphan writes a late record)."""
    def set_death_signal() -> None:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return  # not Linux: the orphan finishes its run; the driver keeps the first record it saw
        if os.getppid() != parent_pid:  # the parent died before the call above
            os._exit(1)
    return set_death_signal


def summary_line(record: dict[str, Any]) -> str:
    """One line per finished run: metric, trainable params, peak memory, samples/s, time."""
    status = record.get("status")
    if status != "ok":
        error = (record.get("error") or {}).get("message", "")
        return f"{status.upper()}: {error}"
    m = record.get("measurements", {})
    primary = record.get("metrics", {}).get("primary", {})
    points = [p for p in record.get("metrics", {}).get("points", []) if p.get("point") is not None]
    metric = f"{primary.get('split')}/{primary.get('name')}={_fmt(primary.get('value'))}"
    if points:
        key = f"{primary.get('split')}/{primary.get('name')}"
        metric += " (" + ", ".join(f"@{p['point']}:{_fmt(p.get(key))}" for p in points) + ")"
    # "outside the head": the adapter for PEFT variants, the whole backbone for full fine-tuning
    return (f"ok: {metric} | trainable {_count(m.get('params/trainable_adapter'))} + "
            f"{_count(m.get('params/trainable_head'))} head ({_fmt(m.get('params/trainable_percent'), 2)}%) | "
            f"peak {_bytes(m.get('memory/peak_bytes'))} | {_fmt(m.get('throughput/train_samples_per_s'), 1)} "
            f"samples/s | {_fmt(m.get('time/wall_s'), 0)} s")


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _count(n: Any) -> str:
    if n is None:
        return "—"
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _bytes(n: Any) -> str:
    if n is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
