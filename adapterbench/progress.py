"""Progress lines for long commands, on stderr, only once a command has run for a few seconds.

Code that does long work calls :func:`note` with what it starts next ("answer: sst2, 36 pairs"); nothing is
printed unless a command turned reporting on (:func:`reporting`, as ``bench report`` does), and then only once
:data:`AFTER_S` seconds have passed, so that quick commands stay quiet. The statistics call it too: it writes
nothing itself and never changes a result. ::

    with progress.reporting(sys.stderr):
        ...
        progress.note("intervals: sst2")     # "[  4.2 s] intervals: sst2" on stderr, after the first AFTER_S
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TextIO

AFTER_S = 2.0
_stream: TextIO | None = None
_started = 0.0


def note(message: str) -> None:
    """Say what starts now (module docstring); a no-op unless reporting is on."""
    if _stream is None:
        return
    elapsed = time.perf_counter() - _started
    if elapsed >= AFTER_S:
        print(f"[{elapsed:6.1f} s] {message}", file=_stream, flush=True)


@contextlib.contextmanager
def reporting(stream: TextIO, after_s: float = AFTER_S) -> Iterator[None]:
    """Print :func:`note` lines to ``stream`` while the block runs (after ``after_s`` seconds)."""
    global _stream, _started, AFTER_S
    saved = (_stream, _started, AFTER_S)
    _stream, _started, AFTER_S = stream, time.perf_counter(), after_s
    try:
        yield
    finally:
        _stream, _started, AFTER_S = saved
