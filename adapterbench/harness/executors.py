"""Executors: where the runs of a matrix execute. Every executor writes records through the same per-run function.

``run_matrix`` decides *what* runs (every spec whose record is not ``ok``); an executor decides *where*::

    LocalExecutor        one run after another on this machine, each in its own worker process (the default)
    DevicePoolExecutor   one run per listed GPU at a time; each worker sees only its GPU (CUDA_VISIBLE_DEVICES)
    RayExecutor          each run a Ray task (1 GPU where the cluster has GPUs, else ``cpus_per_run`` CPUs), on a
                         local Ray instance started for the matrix or on an existing cluster (``address``)

All three call :func:`adapterbench.harness.matrix._run_isolated`, which starts ``python -m
adapterbench.harness.worker`` and writes the record atomically under the run id's file name, or a ``failed``/``oom``
record when the worker dies. So a record never depends on the executor except for
``environment.placement`` (executor, GPU, host): the device is not part of a run's identity, and spreading a matrix
over devices or machines never duplicates a run. Each run keeps its own process, hence its own memory figures.

Ray: the task process is only a supervisor; the run itself is its child worker process, which dies with it
(``PR_SET_PDEATHSIG``), so a Ray worker that is killed or preempted leaves no orphan writing a late record. The
driver then records the run ``failed`` with the reason, or resubmits it up to ``retries`` times (each attempt
noted in the record). Records are written on the node that ran the task; when the results folder is not shared,
the driver writes the record it got back, so records always land in the driver's folder (checkpoints then stay on
the node). Ctrl-C cancels every pending task; runs not finished leave no record and a rerun resumes them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from adapterbench.errors import UserError

RAY_INSTALL_HINT = 'pip install "adapterbench[ray]"'


@dataclass(frozen=True)
class Job:
    """One run to execute: its spec, where its record goes, and its number among the runs to do (1-based)."""

    spec: Any  # RunSpec (not imported here: this module is imported by Ray task processes, which skip torch)
    path: Path
    number: int


class Tracker:
    """What executors report to: supersedes the old record before a run, prints progress, counts failures.

    Thread-safe: the device pool calls it from one thread per device.
    """

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.done = 0
        self.all_ok = True
        self._lock = threading.Lock()

    def begin(self, job: Job, where: str | None = None, announce: bool = True) -> None:
        from adapterbench.harness.records import checkpoint_path, predictions_path, supersede

        with self._lock:
            if announce:
                self._print(f"[{job.number}/{self.total}] {_title(job)}" + (f" on {where}" if where else ""))
            previous = supersede(job.path)  # kept, never overwritten
            if previous is not None:
                # the weights and predictions that record points at go with it
                supersede(checkpoint_path(job.path.parent, job.spec.run_id))
                supersede(predictions_path(job.path.parent, job.spec.run_id))
                self._print(f"  previous record of {job.spec.run_id} moved to {previous}")

    def finish(self, job: Job, record: dict[str, Any], where: str | None = None, announce: bool = False) -> None:
        from adapterbench.harness.matrix import summary_line

        with self._lock:
            self.done += 1
            if announce:  # parallel executors print a run's lines together when it ends
                self._print(f"[done {self.done}/{self.total}] {_title(job)}" + (f" on {where}" if where else ""))
            self._print("  " + summary_line(record))
            self.all_ok &= record.get("status") == "ok"

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def _title(job: Job) -> str:
    return f"{job.spec.task} / {job.spec.variant} / seed {job.spec.seed}"


class Executor(ABC):
    """Runs jobs, reporting each start and end to a :class:`Tracker`; raises KeyboardInterrupt after cancelling."""

    name = "executor"

    def check(self, specs: list[Any]) -> None:
        """Raise :class:`UserError` before any run when the specs cannot run on this executor."""
        return None  # most executors run any spec

    @abstractmethod
    def run(self, jobs: list[Job], tracker: Tracker) -> None: ...

    def describe(self) -> str:
        return self.name


class LocalExecutor(Executor):
    """The runs one after another on this machine, each in a fresh worker process (or all here, ``isolate=False``)."""

    name = "local"

    def __init__(self, isolate: bool = True):
        self.isolate = isolate

    def run(self, jobs: list[Job], tracker: Tracker) -> None:
        from adapterbench.harness.matrix import _run_here, _run_isolated

        for job in jobs:
            tracker.begin(job)
            if self.isolate:
                record = _run_isolated(job.spec, job.path, placement={"executor": self.name, "host": _host()})
            else:
                record = _run_here(job.spec, job.path)
            tracker.finish(job, record)

    def describe(self) -> str:
        return "local, one worker process per run" if self.isolate else "local, in this process"


# ---- every GPU of one machine ------------------------------------------------------------------------------
def parse_devices(text: str) -> list[str]:
    """``"0,1,3"`` or ``"all"`` -> the CUDA device ids to pin workers to, as this machine's driver numbers them.

    Indices count the GPUs this process sees: under ``CUDA_VISIBLE_DEVICES=2,3``, ``--devices 0`` is GPU 2.
    """
    import torch

    count = torch.cuda.device_count()
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    physical = visible[:count] if visible else [str(i) for i in range(count)]
    if text.strip() == "all":
        if count == 0:
            raise UserError("--devices all: no CUDA device is visible; leave --devices out to run on this "
                            "machine's default device, or use --executor ray")
        return physical
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or not all(item.isdigit() for item in items):
        raise UserError(f"--devices {text!r} is not allowed; give 'all' or comma-separated GPU indices such as 0,1")
    if len(set(items)) != len(items):
        raise UserError(f"--devices {text!r} lists a GPU twice; give each index once")
    for item in items:
        if int(item) >= count:
            raise UserError(f"--devices {text!r}: GPU {item} does not exist; this machine shows {count} CUDA "
                            f"device{'s' if count != 1 else ''}" + (f" (0-{count - 1})" if count else ""))
    return [physical[int(item)] for item in items]


class DevicePoolExecutor(Executor):
    """One run per device at a time: a thread per device takes the next job and runs its worker on that GPU only.

    Inside the worker the GPU is ``cuda`` (``cuda:0``), so ``device=auto`` or ``cuda`` resolve the same on every
    device and the run id stays what a one-GPU run would have.
    """

    name = "devices"

    def __init__(self, devices: list[str]):
        if not devices:
            raise ValueError("DevicePoolExecutor needs at least one device")
        self.devices = list(devices)
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def check(self, specs: list[Any]) -> None:
        from adapterbench.harness.settings import resolve_settings, split_overrides
        from adapterbench.variants import VARIANTS

        for spec in specs:  # the loop settings alone (resolving the whole run would hash the model per spec)
            keys = VARIANTS.get(spec.variant).config_keys()
            device = resolve_settings(spec.profile, split_overrides(spec.overrides, spec.variant, keys)[0]).device
            if device not in ("auto", "cuda"):
                raise UserError(f"--devices with device={device!r} is not allowed: each worker sees one GPU as "
                                f"'cuda'; leave device at auto (or cuda), or drop --devices")

    def describe(self) -> str:
        return f"one run per GPU at a time on GPUs {','.join(self.devices)}"

    def run(self, jobs: list[Job], tracker: Tracker) -> None:
        from adapterbench.harness.matrix import _run_isolated

        queue = list(reversed(jobs))
        stop = threading.Event()

        def worker(device: str) -> None:
            while not stop.is_set():
                with self._lock:
                    if not queue:
                        return
                    job = queue.pop()
                where = f"GPU {device}"
                tracker.begin(job, where)
                try:
                    record = _run_isolated(
                        job.spec, job.path, env={"CUDA_VISIBLE_DEVICES": device, "ADAPTERBENCH_PROGRESS": "0"},
                        placement={"executor": self.name, "host": _host(), "cuda_visible_devices": device},
                        on_start=self._started)
                except KeyboardInterrupt:  # the worker was interrupted: no record, a rerun resumes it
                    return
                tracker.finish(job, record, where, announce=True)

        threads = [threading.Thread(target=worker, args=(d,), name=f"gpu-{d}", daemon=True) for d in self.devices]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)  # a bounded join keeps the main thread responsive to Ctrl-C
        except KeyboardInterrupt:
            stop.set()
            with self._lock:
                live = list(self._live)
            for process in live:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            for thread in threads:
                thread.join(timeout=30)
            with self._lock:
                for process in self._live:
                    if process.poll() is None:
                        process.kill()
            raise

    def _started(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._live = {p for p in self._live if p.poll() is None} | {process}


# ---- Ray ----------------------------------------------------------------------------------------------------
def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed; install it with: "
                        f"{RAY_INSTALL_HINT}") from None
    return ray


class RayExecutor(Executor):
    """Each run a Ray task; the task process supervises the run's own worker process (see the module docstring).

    ``address``: None starts a local Ray instance for the matrix (``num_cpus`` CPUs, default all) and stops it
    at the end; "auto" or "HOST:PORT" joins an existing cluster (left running). ``retries``: how many times a run
    whose Ray worker died is resubmitted before it is recorded ``failed``.
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
        where = f"Ray cluster at {self.address}" if self.address else "a local Ray instance"
        return f"ray ({where})"

    def run(self, jobs: list[Job], tracker: Tracker) -> None:
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            self._init()
        try:
            self._run(jobs, tracker)
        finally:
            if started_here:
                ray.shutdown()  # also ends the local instance's workers, and with them any run still going

    def _init(self) -> None:
        ray = self.ray
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING",
                                  "configure_logging": True}
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--address {self.address!r}: cannot connect to a Ray cluster ({first})"
                            if self.address else f"cannot start a local Ray instance ({first})") from None

    def _run(self, jobs: list[Job], tracker: Tracker) -> None:
        ray = self.ray
        gpus = ray.cluster_resources().get("GPU", 0)
        self.resources = {"num_gpus": 1, "num_cpus": 1} if gpus > 0 else {"num_cpus": self.cpus_per_run}
        # max_retries=0: Ray's own retries would be invisible; ours are counted and noted in the record.
        task = ray.remote(max_retries=0, **self.resources)(ray_task)
        cwd = os.getcwd()
        pending: dict[Any, tuple[Job, int, list[str]]] = {}

        def submit(job: Job, attempt: int, notes: list[str]) -> None:
            spec_fields = asdict(_absolute(job.spec))
            pending[task.remote(spec_fields, str(job.path.resolve()), cwd)] = (job, attempt, notes)

        for job in jobs:
            tracker.begin(job, announce=False)
            submit(job, 1, [])
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    job, attempt, notes = pending.pop(ref)
                    try:
                        record, where = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        reason = _ray_reason(exc)
                        if attempt <= self.retries:
                            submit(job, attempt + 1, [*notes, f"attempt {attempt} ended: {reason}; resubmitted"])
                            continue
                        record, where = self._lost(job, reason, attempt), "a Ray worker that died"
                    if notes:
                        record.setdefault("notes", []).extend(notes)
                    self._land(job.path, record, force=bool(notes))
                    tracker.finish(job, record, where, announce=True)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)  # kills the task process; its run's worker dies with it
            raise

    def _lost(self, job: Job, reason: str, attempts: int) -> dict[str, Any]:
        from adapterbench.harness.matrix import dead_worker_record
        from adapterbench.harness.records import read_record

        path = job.path
        if path.exists():  # the run wrote its record before its supervisor died: keep it, say so
            record = read_record(path)
            record.setdefault("notes", []).append(f"the Ray worker died after this record was written: {reason}")
            return record
        placement = {"executor": self.name, "attempts": attempts, **self.resources}
        return dead_worker_record(job.spec, "failed", f"Ray worker died: {reason}", None, placement)

    @staticmethod
    def _land(path: Path, record: dict[str, Any], force: bool) -> None:
        """Write the record here when the task's node could not (a results folder that is not shared)."""
        from adapterbench.harness.records import read_record, write_record

        try:
            same = read_record(path) == record
        except (OSError, ValueError):
            same = False
        if force or not same:
            write_record(path, record)


def ray_task(spec_fields: dict[str, Any], path: str, cwd: str) -> tuple[dict[str, Any], str]:
    """The body of one Ray task: run the spec in its own worker process, pinned to the task's GPU if any."""
    import ray

    from adapterbench.harness.matrix import _run_isolated
    from adapterbench.harness.run import RunSpec

    if os.path.isdir(cwd):
        os.chdir(cwd)  # relative model or task paths resolve as on the driver when the node shares its folders
    context = ray.get_runtime_context()
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    placement = {"executor": "ray", "host": _host(), "node_id": context.get_node_id(), "gpu_ids": gpu_ids,
                 "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    record = _run_isolated(RunSpec(**spec_fields), Path(path), env={"ADAPTERBENCH_PROGRESS": "0"},
                           placement=placement, die_with_parent=True)
    return record, _host() + (f" GPU {','.join(gpu_ids)}" if gpu_ids else "")


def _ray_reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "exit" in line.lower() or "killed" in line.lower()
                   or "died" in line.lower() or "preempt" in line.lower()), lines[0] if lines else "")
    return f"{type(exc).__name__}: {detail}"[:300]


def _absolute(spec: Any) -> Any:
    """The spec with its output folder absolute. Model, task and data references stay as given (the record
    states them); the task process works in the driver's folder where the node has it."""
    return replace(spec, out_dir=str(Path(spec.out_dir).resolve()))


def _host() -> str:
    return socket.gethostname()


def make_executor(executor: str, address: str | None = None, devices: str | None = None,
                  cpus_per_run: float | None = None, retries: int | None = None, in_process: bool = False
                  ) -> Executor:
    """The executor the command line asked for; one-line errors for combinations that do not fit together."""
    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor!r} is not allowed; choose local or ray")
    if in_process and (executor != "local" or devices):
        raise UserError("--in-process runs everything in this process; it cannot be combined with "
                        "--executor ray or --devices")
    if executor == "ray":
        if devices:
            raise UserError("--devices is for the local executor; Ray gives each run one GPU of the cluster itself")
        return RayExecutor(address=address, cpus_per_run=1 if cpus_per_run is None else cpus_per_run,
                           retries=retries or 0)
    for flag, value in (("--address", address), ("--cpus-per-run", cpus_per_run), ("--retries", retries)):
        if value is not None:
            raise UserError(f"{flag} needs --executor ray")
    if devices:
        return DevicePoolExecutor(parse_devices(devices))
    return LocalExecutor(isolate=not in_process)

