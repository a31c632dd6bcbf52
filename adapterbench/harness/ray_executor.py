"""The Ray executor: each run of a matrix a Ray task (``bench run --executor ray [--address auto|HOST:PORT]``).

The driver (``bench run``) claims each run and moves its old record aside exactly as the local executor does,
then submits one task per run, asking for one GPU where the cluster has any and else ``cpus_per_run`` CPUs. The
task process is only a supervisor: it calls :func:`~adapterbench.harness.matrix.run_isolated`, so the run itself
is a fresh worker process on the task's node (its own memory figures; pinned to the task's GPU through the
``CUDA_VISIBLE_DEVICES`` Ray sets) that writes the record under the run id's file name, atomically. The worker
dies with its supervisor, so a Ray worker that is killed or preempted leaves no orphan writing a late record; the
driver then records the run ``failed`` with the reason, or resubmits it up to ``retries`` times (each attempt
noted in the record). Ray's own task retries are off: they would be invisible in the record.

A results folder on a shared file system is written by the nodes directly; when it is not shared, the driver
writes the record each task returns (checkpoints and predictions then stay on the node). Relative model, task and
data paths resolve from the driver's working folder where a node has it. Ctrl-C cancels every pending task
(``ray.cancel(force=True)`` kills the supervisors, and with them their workers): unfinished runs leave no record,
their claims are released, and a rerun resumes them. Ray is optional: ``pip install "adapterbench[ray]"``.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.harness.executors import Context, Executor, Job, Outcomes, host

RAY_INSTALL_HINT = 'pip install "adapterbench[ray]"'


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed; install it with: "
                        f"{RAY_INSTALL_HINT}") from None
    return ray


class RayExecutor(Executor):
    """Each run a Ray task (see the module docstring).

    ``address``: None starts a local Ray instance for the matrix (``num_cpus`` CPUs, default all) and stops it at
    the end, unless Ray is already initialised in this process; "auto" or "HOST:PORT" joins an existing cluster
    (left running). ``retries``: how many times a run whose Ray worker died is resubmitted before it is recorded
    ``failed``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float = 1, retries: int = 0,
                 num_cpus: int | None = None):
        if cpus_per_run <= 0:
            raise UserError(f"--cpus-per-run {cpus_per_run:g} is not allowed; it must be > 0")
        if retries < 0:
            raise UserError(f"--retries {retries} is not allowed; it must be >= 0")
        self.ray = import_ray()
        self.address, self.cpus_per_run, self.retries, self.num_cpus = address, cpus_per_run, retries, num_cpus
        self.resources: dict[str, float] = {}

    def describe(self) -> str:
        return f"ray ({f'Ray cluster at {self.address}' if self.address else 'a local Ray instance'})"

    def run(self, jobs: list[Job], context: Context) -> Outcomes:
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            self._init()
        try:
            return self._run(jobs, context)
        finally:
            if started_here:
                ray.shutdown()  # also ends the local instance's workers, and with them any run still going

    def _init(self) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR"}
        try:
            if self.address:
                self.ray.init(address=self.address, **kwargs)
            else:
                self.ray.init(num_cpus=self.num_cpus, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--address {self.address!r}: cannot connect to a Ray cluster ({first})"
                            if self.address else f"cannot start a local Ray instance ({first})") from None

    def _run(self, jobs: list[Job], context: Context) -> Outcomes:
        from adapterbench.harness import claims
        from adapterbench.harness.matrix import begin_run, summary_line

        ray = self.ray
        gpus = ray.cluster_resources().get("GPU", 0)
        self.resources = {"num_gpus": 1, "num_cpus": 1} if gpus > 0 else {"num_cpus": self.cpus_per_run}
        task = ray.remote(max_retries=0, **self.resources)(ray_task)
        cwd = os.getcwd()
        outcomes: Outcomes = {}
        pending: dict[Any, tuple[Job, int, list[str], Any, io.StringIO]] = {}

        def submit(job: Job, attempt: int, notes: list[str], claim: Any, lines: io.StringIO) -> None:
            spec = replace(job.spec, out_dir=str(Path(job.spec.out_dir).resolve()))
            ref = task.remote(asdict(spec), str(job.path.resolve()), cwd, context.argv)
            pending[ref] = (job, attempt, notes, claim, lines)

        try:
            for job in jobs:
                lines = io.StringIO()
                claim = begin_run(job.spec, job.seen, lines)
                if isinstance(claim, claims.Claim):
                    submit(job, 1, [], claim, lines)
                else:
                    outcomes[job.spec.run_id] = claim
                    context.report(job, lines.getvalue())
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)  # short: Ctrl-C stays responsive
                for ref in ready:
                    job, attempt, notes, claim, lines = pending.pop(ref)
                    try:
                        record, where = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        reason = _ray_reason(exc)
                        if attempt <= self.retries:
                            submit(job, attempt + 1, [*notes, f"attempt {attempt} ended: {reason}; resubmitted"],
                                   claim, lines)
                            continue
                        record, where = self._lost(job, reason, attempt, context.argv), "a Ray worker that died"
                    if notes:
                        record.setdefault("notes", []).extend(notes)
                    _land(job.path, record, force=bool(notes))
                    claim.release()
                    outcomes[job.spec.run_id] = record.get("status")
                    print("  " + summary_line(record), file=lines)
                    context.report(job, lines.getvalue(), where)
        except BaseException:  # Ctrl-C, or an error here: stop what runs, free the claims, then go on raising
            for ref, (_, _, _, claim, _) in pending.items():
                ray.cancel(ref, force=True)  # kills the supervisor; its worker dies with it
                claim.release()
            raise
        return outcomes

    def _lost(self, job: Job, reason: str, attempts: int, argv: list[str] | None) -> dict[str, Any]:
        from adapterbench.harness.matrix import dead_record
        from adapterbench.harness.records import read_record

        if job.path.exists():  # the run wrote its record before its supervisor died: keep it, say so
            record = read_record(job.path)
            record.setdefault("notes", []).append(f"the Ray worker died after this record was written: {reason}")
            return record
        placement = {"executor": self.name, "attempts": attempts, **self.resources}
        return dead_record(job.spec, "failed", f"Ray worker died: {reason}", None, argv, placement)


def _land(path: Path, record: dict[str, Any], force: bool) -> None:
    """Write the record here when the task's node could not (a results folder that is not shared)."""
    from adapterbench.harness.records import read_record, write_record

    try:
        same = read_record(path) == record
    except (OSError, ValueError):
        same = False
    if force or not same:
        write_record(path, record)


def ray_task(spec_fields: dict[str, Any], path: str, cwd: str, argv: list[str] | None) -> tuple[dict[str, Any], str]:
    """The body of one Ray task: run the spec in its own worker process, pinned to the task's GPU if any."""
    import ray

    from adapterbench.harness.matrix import run_isolated
    from adapterbench.harness.run import RunSpec

    if os.path.isdir(cwd):
        os.chdir(cwd)  # relative model or task paths resolve as on the driver when the node shares its folders
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    placement = {"executor": "ray", "host": host(), "node_id": ray.get_runtime_context().get_node_id(),
                 "gpu_ids": gpu_ids, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    record = run_isolated(RunSpec(**spec_fields), Path(path), argv, env={"ADAPTERBENCH_PROGRESS": "0"},
                          placement=placement)
    return record, host() + (f" GPU {','.join(gpu_ids)}" if gpu_ids else "")


def _ray_reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if any(word in line.lower() for word in
                                                 ("exit", "killed", "died", "preempt", "signal"))),
                  lines[0] if lines else "")
    return f"{type(exc).__name__}: {detail}"[:300]
