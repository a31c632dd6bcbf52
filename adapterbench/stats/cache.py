"""Per-example sufficient statistics, computed once per content: in memory for a process, on disk across reports.

A report asks for the same statistics many times: every metric column of an entity task reads the same
per-sentence counts, the answer re-reads the primary metric's, and every re-render re-reads every run. The key
is the SHA-256 of what the statistics are computed from: the metric's ``sums_key`` (what the columns hold, with
the tag names), and the predictions and references themselves, as canonical bytes. A changed prediction sidecar
gives changed bytes and so a new key (the old entry is simply never read again); identical inputs hit, whichever
sidecar, run or report they come from.

Disk entries (``<key>.npy``, one array ``(n, q)``) are kept only for metrics whose extraction is slow
(:data:`DISK_KEYS`: seqeval's entities, a Python loop over sentences); the rest are cheaper to recompute than to
read. The folder is ``$ADAPTERBENCH_CACHE/report``, else ``~/.cache/adapterbench/report``;
``ADAPTERBENCH_REPORT_CACHE=off`` turns the disk cache off (benchmarks time cold runs that way). Writes are
atomic (a temporary file renamed into place), so concurrent reports never read half an entry; an unreadable
entry is recomputed. The folder is kept under :data:`MAX_DISK_BYTES` (oldest entries first). The training loop
scores through the same cache (:func:`adapterbench.tasks.metrics.compute_metrics`), so the report after a run
finds its entities already extracted.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ENV_CACHE = "ADAPTERBENCH_CACHE"
ENV_SWITCH = "ADAPTERBENCH_REPORT_CACHE"
CACHE_FORMAT = 1  # bump when a metric's sufficient statistics change
MEMORY_ENTRIES = 4096
DISK_KEYS = ("entities:",)  # sums_key prefixes worth a disk entry (slow extraction)
MAX_DISK_BYTES = 512 * 2 ** 20  # about 6,000 entries of 2,000 sentences
PRUNE_EVERY = 256  # writes between two checks of the folder's size
_writes = 0

_memory: OrderedDict[str, np.ndarray] = OrderedDict()
_lock = threading.Lock()  # stats.answer.answer tests tasks in threads
stats = {"hits": 0, "disk_hits": 0, "misses": 0}  # counters the tests and the benchmark read


def cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "adapterbench"
    return base / "report"


def disk_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "on").lower() not in ("off", "0", "no", "false")


def _canonical(values: Any) -> bytes:
    """Bytes that identify ``values``: numeric arrays by dtype, shape and raw bytes; ragged sequences of ints (tag
    sequences) by their lengths and the concatenated values; anything else as compact JSON."""
    try:
        array = np.asarray(values)
        if array.dtype != object:
            return f"{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes()
    except ValueError:
        pass  # ragged
    try:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        flat = np.fromiter(itertools.chain.from_iterable(values), dtype=np.int64, count=int(lengths.sum()))
        return b"ragged" + lengths.tobytes() + b"\0" + flat.tobytes()
    except (TypeError, ValueError):
        return json.dumps(values, separators=(",", ":"), default=_json_item).encode()


def _json_item(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot key a {type(value).__name__}")


_digests: dict[int, tuple[Any, str]] | None = None  # in a session: id -> (the object, kept alive; digest)


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Within the block, a list's digest is computed once per list object: a report passes the same aligned
    prediction lists for every metric column of a row, and never changes them. Outside a session every call
    hashes its inputs again, so a caller that changes a list in place always gets fresh statistics."""
    global _digests
    saved = _digests
    _digests = {} if saved is None else saved  # nested: share the outer session's digests
    try:
        yield
    finally:
        _digests = saved


def _digest(values: Any) -> str:
    """SHA-256 of :func:`_canonical` (memoised per list object within a :func:`session`)."""
    if _digests is None or not isinstance(values, list):
        return hashlib.sha256(_canonical(values)).hexdigest()
    found = _digests.get(id(values))
    if found is not None and found[0] is values:
        return found[1]
    digest = hashlib.sha256(_canonical(values)).hexdigest()
    _digests[id(values)] = (values, digest)
    return digest


def content_key(sums_key: str, predictions: Any, references: Any) -> str:
    return hashlib.sha256(f"{CACHE_FORMAT}\0{sums_key}\0{_digest(predictions)}\0{_digest(references)}".encode()
                          ).hexdigest()


def _remember(key: str, value: np.ndarray) -> np.ndarray:
    value.setflags(write=False)  # shared between callers: nobody may change it in place
    with _lock:
        _memory[key] = value
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return value


def _read(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def prune(folder: Path, max_bytes: int) -> int:
    """Delete the least recently written entries until ``folder`` holds at most ``max_bytes``; -> files removed."""
    entries = []
    for path in folder.glob("*/*.npy"):
        with contextlib.suppress(OSError):
            info = path.stat()
            entries.append((info.st_mtime, info.st_size, path))
    total, removed = sum(size for _, size, _ in entries), 0
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            total, removed = total - size, removed + 1
    return removed


def _write(path: Path, value: np.ndarray) -> None:
    global _writes
    _writes += 1
    if _writes % PRUNE_EVERY == 0:  # the loop writes an entry per evaluation of an entity task: keep it bounded
        prune(path.parent.parent, MAX_DISK_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, value, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full disk: the statistics are recomputed next time


def metric_sums(metric: Any, predictions: Any, references: Any) -> tuple[str, np.ndarray]:
    """``(key, metric.sums(predictions, references))``, from memory or disk when computed before."""
    key = content_key(metric.sums_key or metric.name, predictions, references)
    with _lock:
        found = _memory.get(key)
        if found is not None:
            stats["hits"] += 1
            _memory.move_to_end(key)
    if found is not None:
        return key, found
    on_disk = disk_enabled() and any((metric.sums_key or "").startswith(p) for p in DISK_KEYS)
    path = cache_dir() / key[:2] / f"{key}.npy"
    if on_disk and path.is_file():
        value = _read(path)
        if value is not None and value.ndim == 2 and value.shape[0] == len(references):
            stats["disk_hits"] += 1
            return key, _remember(key, np.asarray(value, dtype=np.float64))
    stats["misses"] += 1
    value = np.ascontiguousarray(metric.sums(predictions, references), dtype=np.float64)
    if on_disk:
        _write(path, value)
    return key, _remember(key, value)


def clear_memory() -> None:
    _memory.clear()
    for name in stats:
        stats[name] = 0
