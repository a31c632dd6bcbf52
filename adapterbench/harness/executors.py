"""Executors: where the runs of a matrix execute. Every executor writes records through the same per-run code.

:func:`~adapterbench.harness.matrix.run_matrix` decides *what* runs (every spec whose record is not ``ok``); an
executor decides *where*::

    LocalExecutor        one run after another on this machine, each in its own worker process (the default)
    DevicePoolExecutor   one run per listed GPU at a time; each worker sees only its GPU (CUDA_VISIBLE_DEVICES)
    RayExecutor          each run a Ray task (1 GPU where the cluster has GPUs, else ``cpus_per_run`` CPUs), on a
                         local Ray instance started for the matrix or on an existing cluster
                         (:mod:`adapterbench.harness.ray_executor`)

All of them claim a run before it starts (:mod:`adapterbench.harness.claims`: two matrices on one folder never
train the same run), move an old record aside, and run it with
:func:`~adapterbench.harness.matrix.run_isolated`, which starts ``python -m adapterbench.harness.worker`` and
writes the record atomically under the run id's file name, or a ``failed``/``oom`` record when the worker dies.
A record therefore never depends on the executor except for ``environment.placement`` (executor, host, GPU): the
device is not part of a run's identity, so spreading a matrix over devices or machines never duplicates a run.
Each run keeps its own process, hence its own memory figures.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from adapterbench.errors import UserError

Outcomes = dict[str, "str | None"]  # run id -> status, or None when another process holds the run's claim


@dataclass(frozen=True)
class Job:
    """One run to execute: its spec, its record's path, its number among the runs to do (1-based), and the
    record file's state when the matrix looked at it (a record written since then came from another process)."""

    spec: Any  # RunSpec
    path: Path
    number: int
    seen: tuple[int, int] | None = None


@dataclass
class Context:
    """What every run of one matrix shares: where progress goes, the user's command line, the number of runs."""

    stream: TextIO
    argv: list[str] | None
    total: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    done: int = 0
    started: float = field(default_factory=time.perf_counter)  # the matrix's start, for the ETA

    def title(self, job: Job, where: str | None = None) -> str:
        from adapterbench.harness.matrix import task_label

        spec = job.spec
        return (f"[{job.number}/{self.total}] {task_label(spec.task)} / {spec.variant} / seed {spec.seed}"
                + (f" on {where}" if where else "") + unswept_note(spec))

    def report(self, job: Job, lines: str, where: str | None = None) -> None:
        """Print a finished run's lines together (parallel runs would otherwise interleave them)."""
        with self._lock:
            self.done += 1
            print(f"{self.title(job, where)} (done {self.done}/{self.total})\n{lines.rstrip()}\n  {self.progress()}",
                  file=self.stream, flush=True)

    def finished(self) -> None:
        """One more run finished (an executor that prints its runs' lines as they come): ``run k/N, ETA``."""
        with self._lock:
            self.done += 1
            print(f"  {self.progress()}", file=self.stream, flush=True)

    def progress(self) -> str:
        from adapterbench.harness.plan import progress_text

        return progress_text(time.perf_counter() - self.started, self.done, self.total)


class Executor(ABC):
    """Runs jobs and returns each one's outcome; raises KeyboardInterrupt once it has stopped every run."""

    name = "executor"

    def check(self, specs: list[Any]) -> None:
        """Raise :class:`UserError` before any run when the specs cannot run on this executor."""
        return None  # most executors run any spec

    def prestart(self) -> None:
        """Get ready for the first run while the caller does other work (the preflight); see :meth:`close`."""
        return None

    def close(self) -> None:
        """Release whatever :meth:`prestart` got ready and :meth:`run` did not use."""
        return None

    @abstractmethod
    def run(self, jobs: list[Job], context: Context) -> Outcomes: ...

    def describe(self) -> str:
        return self.name


class LocalExecutor(Executor):
    """The runs one after another on this machine, each in a fresh worker process (or all here, ``isolate=False``)."""

    name = "local"

    def __init__(self, isolate: bool = True):
        self.isolate = isolate
        self._spare: Any = None  # a worker started by prestart(), for the first run

    def prestart(self) -> None:
        """Start the first run's worker now: its Python start and imports (torch, transformers) overlap the
        caller's preflight instead of following it. The worker touches no tensor before it has its run."""
        from adapterbench.harness.matrix import start_worker

        if self.isolate and self._spare is None:
            self._spare = start_worker()

    def close(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.dismiss()

    def run(self, jobs: list[Job], context: Context) -> Outcomes:
        from adapterbench.harness.matrix import run_one

        outcomes: Outcomes = {}
        try:
            for job in jobs:
                print(context.title(job), file=context.stream, flush=True)
                outcomes[job.spec.run_id] = run_one(job.spec, job.seen, self.isolate, context.stream, context.argv,
                                                    placement={"executor": self.name, "host": host()},
                                                    worker=self._spare)
                if self._spare is not None and self._spare.process.returncode is not None:
                    self._spare = None  # it ran this job (or died): the next run starts its own
                context.finished()
        finally:
            self.close()
        return outcomes

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
    device and the run id stays what a one-GPU run would have. Each thread waits for its own workers, as the
    workers' death-with-parent signal requires (it follows the thread that started them).
    """

    name = "devices"

    def __init__(self, devices: list[str]):
        if not devices:
            raise ValueError("DevicePoolExecutor needs at least one device")
        self.devices = list(devices)
        self._pids: set[int] = set()
        self._lock = threading.Lock()

    def check(self, specs: list[Any]) -> None:
        from adapterbench.harness.settings import resolve_settings, split_overrides
        from adapterbench.variants import VARIANTS

        for spec in specs:  # the loop settings alone (resolving the whole run would hash the model per spec)
            keys = VARIANTS.get(spec.variant).config_keys()
            device = resolve_settings(spec.profile, split_overrides(spec.overrides, spec.variant, keys)[0], spec.task).device
            if device not in ("auto", "cuda"):
                raise UserError(f"--devices with device={device!r} is not allowed: each worker sees one GPU as "
                                f"'cuda'; leave device at auto (or cuda), or drop --devices")

    def describe(self) -> str:
        return f"one run per GPU at a time on GPUs {','.join(self.devices)}"

    def run(self, jobs: list[Job], context: Context) -> Outcomes:
        from adapterbench.harness.matrix import run_one

        queue = list(reversed(jobs))
        outcomes: Outcomes = {}
        errors: list[Exception] = []  # raised in a device's thread (a full disk, say): re-raised here
        stop = threading.Event()

        def worker(device: str) -> None:
            while not stop.is_set():
                with self._lock:
                    if not queue:
                        return
                    job = queue.pop()
                lines = io.StringIO()
                try:
                    status = run_one(job.spec, job.seen, True, lines, context.argv,
                                     env={"CUDA_VISIBLE_DEVICES": device, "ADAPTERBENCH_PROGRESS": "0"},
                                     placement={"executor": self.name, "host": host(), "cuda_visible_devices": device},
                                     on_start=self._started)
                except KeyboardInterrupt:  # the worker was interrupted: no record, a rerun resumes it
                    stop.set()
                    return
                except Exception as exc:  # noqa: BLE001 - stop every device and report it from the main thread
                    errors.append(exc)
                    stop.set()
                    return
                outcomes[job.spec.run_id] = status
                context.report(job, lines.getvalue(), f"GPU {device}")

        threads = [threading.Thread(target=worker, args=(d,), name=f"gpu-{d}", daemon=True) for d in self.devices]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)  # a bounded join keeps the main thread responsive to Ctrl-C
        except KeyboardInterrupt:
            stop.set()
            self._interrupt_workers()
            for thread in threads:  # run_isolated gives each worker its grace time, then kills it
                thread.join()
            raise
        if errors:
            raise errors[0]
        if stop.is_set():  # a worker alone was interrupted (a signal to it): the matrix stops as on Ctrl-C
            raise KeyboardInterrupt
        return outcomes

    def _started(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)

    def _interrupt_workers(self) -> None:
        with self._lock:
            pids = list(self._pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGINT)  # a terminal's Ctrl-C reached them already; a SIGTERM to us did not
            except (ProcessLookupError, PermissionError):
                pass  # finished (or its pid reused by something that is not ours to signal)


def host() -> str:
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
        from adapterbench.harness.ray_executor import RayExecutor

        return RayExecutor(address=address, cpus_per_run=1 if cpus_per_run is None else cpus_per_run,
                           retries=retries or 0)
    for flag, value in (("--address", address), ("--cpus-per-run", cpus_per_run), ("--retries", retries)):
        if value is not None:
            raise UserError(f"{flag} needs --executor ray")
    if devices:
        return DevicePoolExecutor(parse_devices(devices))
    return LocalExecutor(isolate=not in_process)


def unswept_note(spec: Any) -> str:
    """Said on a run's line when its learning rate is the paper's because the profile has none swept for the
    variant (a plugin, a ``peft:<method>``, the smoke profile): never silently (issue 24)."""
    from adapterbench.harness.settings import TrainSettings
    from adapterbench.listing import PAPER_RATE, lr_origin

    origin = lr_origin(spec.profile, spec.variant, spec.task, TrainSettings(lr=spec.overrides.get("lr")))
    return f" (lr: {PAPER_RATE} for the {spec.profile} profile)" if origin == PAPER_RATE else ""
