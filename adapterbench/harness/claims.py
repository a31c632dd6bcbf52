"""Per-run claims: at most one process trains a given run of an output folder at a time.

A claim is the file ``<out>/.claims/<run_id>.lock``, created with ``O_CREAT | O_EXCL`` (atomic on local file
systems and on NFS v3 and later), holding JSON::

    {"pid": 1234, "host": "node7", "started_at": "2026-05-09T07:35:25+00:00", "proc_start": "8812345",
     "token": "<random hex>", "worker_pid": 1240 | null}

The process that runs the run (the matrix parent, or a scale-out executor) claims it before starting the worker,
records the worker's pid with :meth:`Claim.set_worker`, and releases the claim once the record is written or the
run is abandoned. A claim left by a process that died (``kill -9``, power loss) is *stale* when, on this host,
neither its holder nor its worker is alive; a pid that is alive but started at another time than recorded
(``proc_start``, from ``/proc/<pid>/stat``) is a reused pid, so counts as dead. A claim from another host is
never judged stale here (its processes cannot be seen); :func:`describe` names the host and the file to delete.

Two processes that find the same stale claim must not both take it over: the takeover (re-read, delete, create)
happens under an ``flock`` of ``<out>/.claims/.takeover``, so the second one re-reads the first one's live claim.
A claim file that cannot be parsed is a claim being written (held) for its first ``UNREADABLE_GRACE_S`` seconds,
then stale.

Usage::

    claim = claims.try_claim(out_dir, run_id)
    if claim is None:
        print("skipped:", claims.describe(claims.holder(out_dir, run_id)))
    else:
        with claim:                      # released on exit, whatever happens
            claim.set_worker(process.pid)
            ...
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLAIMS_DIR = ".claims"
UNREADABLE_GRACE_S = 30.0


def claim_path(out_dir: Path | str, run_id: str) -> Path:
    return Path(out_dir) / CLAIMS_DIR / f"{run_id}.lock"


@dataclass
class Claim:
    """A claim this process holds; release it (or use it as a context manager)."""

    path: Path
    info: dict[str, Any]

    def set_worker(self, pid: int) -> None:
        """Record the worker process that does the run, so the claim stays live while only the worker is."""
        self.info = {**self.info, "worker_pid": pid, "worker_start": _proc_start(pid)}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.info))
        os.replace(tmp, self.path)  # atomic: readers see the old content or the new, never none

    def release(self) -> None:
        """Delete the claim file if it is still ours (a takeover after we were judged dead leaves it alone)."""
        current = _read(self.path)
        if current is not None and current.get("token") == self.info["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_claim(out_dir: Path | str, run_id: str) -> Claim | None:
    """Claim ``run_id`` in ``out_dir``: the :class:`Claim`, or None when a live process holds it."""
    path = claim_path(out_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "token": secrets.token_hex(8), "worker_pid": None, "worker_start": None}
    if _create(path, info):
        return Claim(path, info)
    with _takeover_lock(path.parent):
        current = _read(path)
        if path.exists() and not is_stale(current, path):
            return None
        path.unlink(missing_ok=True)
        return Claim(path, info) if _create(path, info) else None


def holder(out_dir: Path | str, run_id: str) -> dict[str, Any] | None:
    """What the claim file of ``run_id`` says (None when there is none or it cannot be read)."""
    return _read(claim_path(out_dir, run_id))


def is_stale(info: dict[str, Any] | None, path: Path | None = None) -> bool:
    """Whether the holder of a claim is gone (see the module docstring for the rule)."""
    if info is None:
        try:
            age = time.time() - path.stat().st_mtime if path is not None else UNREADABLE_GRACE_S
        except FileNotFoundError:
            return True
        return age >= UNREADABLE_GRACE_S
    if info.get("host") != socket.gethostname():
        return False
    return not (_alive(info.get("pid"), info.get("proc_start"))
                or _alive(info.get("worker_pid"), info.get("worker_start")))


def describe(info: dict[str, Any] | None, path: Path | None = None) -> str:
    """``"pid 1234 on host node7 since <time>"``, for messages (with the file to delete for another host)."""
    if info is None:
        return "another process (its claim file is being written)"
    text = f"pid {info.get('pid')} on host {info.get('host')} since {info.get('started_at')}"
    if info.get("host") != socket.gethostname() and path is not None:
        text += f"; if that process is gone, delete {path}"
    return text


def wait_for_holders(out_dir: Path | str, run_ids: list[str], on_wait: Any = None, poll_s: float = 1.0) -> list[str]:
    """Wait until no live process on this host holds a claim on any of ``run_ids``; the runs left unwaited.

    Two ``bench run`` on one folder share its runs; the one that finishes first waits here for the runs the
    other is still training, so that its exit status says how the whole matrix ended rather than "unknown".
    Not waited for (returned): claims of another host (their holders cannot be seen, so may be gone for good)
    and claims of this very process (a caller holding one would wait for itself). ``on_wait(holders)`` is called
    once, before the first wait, with the claims waited for.
    """
    told = False
    while True:
        held, unwaited = {}, []
        for run_id in run_ids:
            path = claim_path(out_dir, run_id)
            info = _read(path)
            if not path.exists() or is_stale(info, path):
                continue
            if info is not None and (info.get("host") != socket.gethostname() or info.get("pid") == os.getpid()):
                unwaited.append(run_id)
            else:
                held[run_id] = info
        if not held:
            return unwaited
        if not told and on_wait is not None:
            on_wait(held)
            told = True
        time.sleep(poll_s)


def _create(path: Path, info: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info))
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _alive(pid: Any, started: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = _proc_start(pid)
    if now is None:
        return True  # no /proc (macOS): the pid exists, so the holder is taken to be alive
    return now != "zombie" and (started is None or now == started)


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot ("zombie" for a dead, unreaped one), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


@contextlib.contextmanager
def _takeover_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: O_EXCL alone (a simultaneous takeover of one stale claim stays possible)
        yield
        return
    with open(folder / ".takeover", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
