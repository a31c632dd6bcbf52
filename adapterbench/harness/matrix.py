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
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from adapterbench.errors import UserError
from adapterbench.harness.loop import schedule_steps
from adapterbench.harness.records import (
    checkpoint_path,
    existing_status,
    predictions_path,
    read_record,
    record_path,
    supersede,
    write_record,
)
from adapterbench.harness.run import RunSpec, base_record, environment, resolve
from adapterbench.harness.settings import applicable_overrides, check_overrides
from adapterbench.models import resolve_model
from adapterbench.reports.units import summary_line
from adapterbench.tasks import get_task
from adapterbench.tasks.data import load_examples
from adapterbench.tasks.fingerprint import data_identity
from adapterbench.variants import VARIANTS


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


def run_matrix(specs: list[RunSpec], force: bool = False, isolate: bool = True, stream: TextIO | None = None
               ) -> int:
    """Run every spec not already done; returns 0 when every run is ok (or was skipped as ok), else 1."""
    stream = stream or sys.stdout
    out_dir = Path(specs[0].out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [s for s in specs if force or existing_status(record_path(out_dir, s.run_id)) != "ok"]
    skipped = len(specs) - len(todo)
    print(f"matrix: {len(specs)} runs ({len({s.variant for s in specs})} variants x {len({s.task for s in specs})}"
          f" tasks x {len({s.seed for s in specs})} seeds), {skipped} already done, {len(todo)} to run; "
          f"records in {out_dir}/", file=stream, flush=True)
    all_ok = True
    for number, spec in enumerate(todo, 1):
        path = record_path(out_dir, spec.run_id)
        print(f"[{number}/{len(todo)}] {spec.task} / {spec.variant} / seed {spec.seed}", file=stream, flush=True)
        previous = supersede(path)  # kept, never overwritten
        if previous is not None:
            supersede(checkpoint_path(out_dir, spec.run_id))  # the weights that record points at go with it
            supersede(predictions_path(out_dir, spec.run_id))  # and its predictions
            print(f"  previous record moved to {previous}", file=stream, flush=True)
        record = _run_isolated(spec, path) if isolate else _run_here(spec, path)
        print("  " + summary_line(record), file=stream, flush=True)
        all_ok &= record.get("status") == "ok"
    return 0 if all_ok else 1


def _run_here(spec: RunSpec, path: Path) -> dict[str, Any]:
    from adapterbench.harness.run import execute

    record = execute(spec)
    write_record(path, record)
    return record


def _run_isolated(spec: RunSpec, path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "adapterbench.harness.worker", str(path)],
                               stdin=subprocess.PIPE, text=True)
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
            write_record(path, record)
        return record
    # The worker died without writing its record: killed (likely by the out-of-memory killer) or crashed.
    status = "oom" if code == -signal.SIGKILL else "failed"
    reason = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"worker exited with status {code}"
    if status == "oom":
        reason += " (most likely the out-of-memory killer)"
    record = base_record(spec)
    record.update(status=status, error={"type": "WorkerDied", "message": reason, "traceback": ""},
                  measurements={"time/wall_s": time.perf_counter() - start},
                  environment=environment(record.get("training", {}).get("device")),
                  created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    write_record(path, record)
    return record
