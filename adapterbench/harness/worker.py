"""Entry point of the per-run process: ``python -m adapterbench.harness.worker [RECORD_PATH]``.

Standard input holds ``{"spec": <RunSpec fields>, "argv": <the user's command line or null>, "path": <the
record's path>}`` as JSON (``path`` may be given as the argument instead; a bare RunSpec object is accepted too).
The worker writes the record and exits 0; the parent treats any other ending (a signal, a non-zero exit, no
record) as a failed or out-of-memory run. Empty input means "no run for you": the worker exits 0 and writes
nothing.

The worker imports torch, transformers and the harness *before* it reads its run, so a parent can start it ahead
of time: ``bench run`` starts its first worker before its preflight, and the two imports overlap instead of
following each other (about 1.5 s of a quick run's job on 2 cores). How long it then waited for its run goes
into the record as ``time/worker_wait_s`` and is left out of ``time/process_s``. The worker never touches a
tensor before it has its run, so nothing it did while waiting shows in the run's memory or time figures.

The worker dies with its parent: on Linux the kernel sends it SIGKILL when the parent exits
(``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread polls the parent's pid. So a ``kill -9`` of ``bench run`` never
leaves a worker that trains on and writes its record after the matrix was given up (and maybe resumed by another
process). ``ADAPTERBENCH_PARENT_PID`` names the parent; when the parent is already gone by the time the worker
starts, it exits at once. Note PR_SET_PDEATHSIG follows the parent *thread*: start workers from a thread that
outlives them (the main thread, or the executor thread that waits for the worker).

Ctrl-C reaches the worker too (it shares the terminal's process group); it stops quietly with status 130 and no
record, leaving the "interrupted" line to the parent.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from adapterbench.schema import WORKER_WAIT_S

PR_SET_PDEATHSIG = 1
EXIT_INTERRUPTED = 130
EXIT_ORPHANED = 3
EXIT_CANNOT_WRITE = 4


def oom_kills() -> int | None:
    """The kernel's count of out-of-memory kills since boot (``oom_kill`` in /proc/vmstat), or None."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def ending(code: int, oom_kills_before: int | None = None, oom_kills_after: int | None = None) -> tuple[str, str]:
    """The status and the words for a worker that ended without writing its record (the one place that turns
    an exit into a status).

    ``code`` is ``Popen.returncode`` (negative: killed by that signal). SIGKILL is what the out-of-memory killer
    sends, but also ``kill -9`` and schedulers: the run is ``oom`` only when the kernel counted an out-of-memory
    kill while the worker ran (``oom_kills_before`` < ``oom_kills_after``, from :func:`oom_kills`); otherwise it
    is ``failed``, and the words say that signal 9 is often, not always, the out-of-memory killer.
    """
    if code >= 0:
        return "failed", f"worker exited with status {code} without writing its record"
    number = -code
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    if number != signal.SIGKILL:
        return "failed", f"killed by signal {number} ({name})"
    if oom_kills_before is not None and oom_kills_after is not None and oom_kills_after > oom_kills_before:
        return "oom", (f"killed by signal 9 ({name}) from the out-of-memory killer (the kernel counted "
                       f"{oom_kills_after - oom_kills_before} out-of-memory kill(s) while it ran)")
    return "failed", f"killed by signal 9 ({name}; often the out-of-memory killer, or a kill -9)"


def quiet_warnings(kept: list[str] | None = None) -> None:
    """Keep other libraries' warnings (torch, transformers, scikit-learn, pandas) off the terminal.

    They are about those libraries' internals (deprecations, a class never predicted in a tiny eval split) and
    not something a ``bench`` user can act on; each distinct one is appended to ``kept`` instead (the worker
    puts them into the record's notes). Warnings that adapterbench itself raises still print.
    """
    import warnings

    show = warnings.showwarning

    def route(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
              line: str | None = None) -> None:
        if _raised_by_adapterbench():
            show(message, category, filename, lineno, file, line)
        elif kept is not None:
            text = f"{category.__name__}: {str(message).strip().splitlines()[0] if str(message).strip() else ''}"
            if text not in kept and len(kept) < MAX_KEPT_WARNINGS:
                kept.append(text)

    warnings.showwarning = route


MAX_KEPT_WARNINGS = 20


def _raised_by_adapterbench() -> bool:
    """Whether the innermost Python caller of ``warnings.warn`` (past the warnings machinery) is adapterbench's."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "") in ("warnings", "_warnings", __name__):
        frame = frame.f_back
    return frame is not None and str(frame.f_globals.get("__name__", "")).startswith("adapterbench")


def die_with_parent(parent_pid: int | None) -> None:
    """Arrange for this process to be killed when ``parent_pid`` (its parent) exits; exit now if it has."""
    if parent_pid is None:
        return
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(EXIT_ORPHANED)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(EXIT_ORPHANED)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _interrupted(signum: int, frame: object) -> None:
    # One interrupt is enough: the parent forwards the terminal's Ctrl-C again, and a second KeyboardInterrupt
    # raised while the first unwinds would print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # an inherited "ignore" (nohup, &) is kept
        signal.signal(signal.SIGINT, _interrupted)
    parent = os.environ.get("ADAPTERBENCH_PARENT_PID")
    die_with_parent(int(parent) if parent and parent.isdigit() else None)

    kept: list[str] = []
    quiet_warnings(kept)  # from here on, including the imports: into the record's notes, not the terminal
    import transformers
    from tqdm import tqdm

    # The load report (head "MISSING", pooler "UNEXPECTED") is expected for every run; the record keeps what
    # matters (which parameters are new).
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    from adapterbench.harness.matrix import with_argv
    from adapterbench.harness.records import write_record
    from adapterbench.harness.run import RunSpec, execute

    ready = time.perf_counter()
    text = sys.stdin.read()
    waited = time.perf_counter() - ready
    if not text.strip():
        return 0  # started ahead of time, and the matrix had no run for it
    message = json.loads(text)
    spec_fields, argv = (message["spec"], message.get("argv")) if "spec" in message else (message, None)
    path = Path(message.get("path") or sys.argv[1])
    spec = RunSpec(**spec_fields)
    bar = None

    def progress(step: int, total: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="  train", unit="step", leave=False, file=sys.stderr,
                       mininterval=1.0, disable=os.environ.get("ADAPTERBENCH_PROGRESS") == "0")
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.update(1)

    try:
        record = with_argv(execute(spec, progress), argv)
        record.setdefault("measurements", {})[WORKER_WAIT_S.key] = waited
        record.setdefault("notes", []).extend(f"library warning (not shown on the terminal): {w}" for w in kept)
    finally:
        if bar is not None:
            bar.close()
    try:
        write_record(path, record)
    except OSError as exc:  # the parent says what happened; one line here, not a traceback
        print(f"  cannot write the record {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
