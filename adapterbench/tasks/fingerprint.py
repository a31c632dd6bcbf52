"""What data a run used, as part of its identity: a content fingerprint of every split it reads.

A local split is identified by the SHA-256 of its file's bytes (so a changed file is a different run, and moving
the data folder is not); a hub split by dataset, config, split and revision (its content cannot be hashed without
downloading it, and with the internet off it cannot be downloaded). The record keeps both the per-split entries
and one 16-hex fingerprint over them, which the run id hashes.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapterbench.tasks.data import local_path
from adapterbench.tasks.spec import TaskSpec


@lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, cached per (path, size, mtime) so that a matrix hashes each file once."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_identity(task: TaskSpec, split: str, data_dir: Path | str | None) -> dict[str, Any]:
    """``{"file", "sha256"}`` for a local split, ``{"hub", "name", "split", "revision"}`` for a hub split."""
    path = local_path(task, split, data_dir)
    if path is not None:
        stat = path.stat()
        return {"file": str(path.resolve()), "sha256": _file_sha256(str(path.resolve()), stat.st_size,
                                                                    stat.st_mtime_ns)}
    hub = task.hub
    assert hub is not None  # local_path raised otherwise
    return {"file": None, "sha256": None, "hub": hub.path, "name": hub.name, "split": hub.splits.get(split, split),
            "revision": getattr(hub, "revision", None) or "main"}


def data_identity(task: TaskSpec, data_dir: Path | str | None) -> dict[str, Any]:
    """The record's ``data`` section: source, location, one entry per split read, and their fingerprint."""
    splits = {split: split_identity(task, split, data_dir) for split in (task.train_split, *task.eval_splits)}
    sources = {"hub" if entry["file"] is None else "local" for entry in splits.values()}
    source = sources.pop() if len(sources) == 1 else "mixed"
    locations = sorted({str(Path(e["file"]).parent) if e["file"] else f"hub:{e['hub']}" for e in splits.values()})
    # Content only: the file paths are left out so that the same bytes in another folder are the same data.
    content = {split: {k: v for k, v in entry.items() if k != "file"} for split, entry in splits.items()}
    fingerprint = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    return {"source": source, "location": ", ".join(locations), "fingerprint": fingerprint, "splits": splits}
