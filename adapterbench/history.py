"""The nightly history: an append-only store of run records, one folder per night, plus an index.

Layout (plain files, readable by ``bench report``, pandas and ``jq`` alike)::

    <store>/index.jsonl              one JSON line per stored record (never rewritten except by ``prune``)
    <store>/<YYYY-MM-DD>/<run_id>.json
    <store>/<YYYY-MM-DD>/predictions/<run_id>.json.gz

``add`` copies records (and their prediction sidecars; checkpoints stay behind) into the folder of the night
they were made (their ``created_at`` date, or ``date``). A record already stored with the same bytes is skipped;
one with the same run id but other content (a rerun the same night) is kept beside it with a numeric suffix, so
nothing is ever overwritten. ``bench report <store>`` then has records of every night and draws the trend per
(task, variant) across them.

Retention: nothing expires by itself. ``prune(store, keep_days)`` removes whole nights older than ``keep_days``
(and their index lines); the nightly workflow keeps 180 days, about 180 x 36 records of ~30 KB (200 MB).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date as Date
from datetime import timedelta
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.harness.records import iter_records, predictions_path, write_record

INDEX = "index.jsonl"


def index_entry(night: str, file: Path, record: dict[str, Any]) -> dict[str, Any]:
    """What the index says of one stored record: enough to find trends without opening every file."""
    primary = (record.get("metrics") or {}).get("primary") or {}
    env = record.get("environment") or {}
    return {"night": night, "file": str(file), "run_id": record.get("run_id"), "status": record.get("status"),
            "task": (record.get("task") or {}).get("name"), "variant": (record.get("variant") or {}).get("name"),
            "seed": record.get("seed"), "profile": record.get("profile"),
            "metric": primary.get("name"), "value": primary.get("value"),
            "git_commit": env.get("git_commit"), "environment": (env.get("fingerprint") or {}).get("id"),
            "data": (record.get("data") or {}).get("fingerprint"), "created_at": record.get("created_at")}


def add(sources: list[Path], store: Path, night: str | None = None) -> dict[str, int]:
    """Copy every record under ``sources`` into ``store``; returns counts of added and already-present records."""
    store = Path(store)
    if store.exists() and not store.is_dir():
        raise UserError(f"history store {str(store)!r} is a file; give a folder")
    if night is not None:
        _check_night(night)
    counts = {"added": 0, "already_stored": 0}
    lines: list[str] = []
    for source_file, record in iter_records(sources):
        when = night or str(record.get("created_at") or "")[:10]
        if not _is_night(when):
            raise UserError(f"record {str(source_file)!r} has no usable created_at date; pass --date YYYY-MM-DD")
        folder = store / when
        target = _free_name(folder, source_file, record)
        if target is None:
            counts["already_stored"] += 1
            continue
        sidecar = (record.get("predictions") or {}).get("file")
        if sidecar and (source_file.parent / sidecar).is_file():
            stored_sidecar = predictions_path(folder, target.stem)
            stored_sidecar.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_file.parent / sidecar, stored_sidecar)
            record = {**record, "predictions": {**record["predictions"],
                                                "file": str(stored_sidecar.relative_to(folder))}}
        write_record(target, record)
        lines.append(json.dumps(index_entry(when, target.relative_to(store), record), default=str))
        counts["added"] += 1
    if lines:
        store.mkdir(parents=True, exist_ok=True)
        with open(store / INDEX, "a") as f:  # append-only
            f.write("\n".join(lines) + "\n")
    return counts


def _free_name(folder: Path, source: Path, record: dict[str, Any]) -> Path | None:
    """Where to store ``record`` in ``folder``; ``None`` when the same content is already there."""
    digest = _content_hash(record)
    run_id = str(record.get("run_id"))
    candidates = [folder / f"{run_id}.json"] + [folder / f"{run_id}.{n}.json" for n in range(1, 1000)]
    for path in candidates:
        if not path.exists():
            return path
        try:
            if _content_hash(json.loads(path.read_text())) == digest:
                return None
        except (OSError, ValueError):
            continue
    raise UserError(f"history folder {str(folder)!r} already holds 1000 versions of {run_id}")


def _content_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "predictions"}  # the sidecar path differs once stored
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def prune(store: Path, keep_days: int, today: str | None = None) -> list[str]:
    """Remove the nights older than ``keep_days`` before ``today``; returns the nights removed."""
    if keep_days < 1:
        raise UserError(f"--keep-days {keep_days} is not allowed; give a whole number of days >= 1")
    store = Path(store)
    if not (store / INDEX).is_file():
        raise UserError(f"{str(store)!r} is not a history store (it has no {INDEX})")
    now = Date.fromisoformat(_check_night(today)) if today else Date.today()
    cutoff = str(now - timedelta(days=keep_days))
    removed = sorted(p.name for p in store.iterdir() if p.is_dir() and _is_night(p.name) and p.name < cutoff)
    for night in removed:
        shutil.rmtree(store / night)
    kept = [line for line in (store / INDEX).read_text().splitlines()
            if line.strip() and json.loads(line).get("night", "") >= cutoff]
    tmp = store / f".{INDEX}.tmp"
    tmp.write_text("\n".join(kept) + ("\n" if kept else ""))
    tmp.replace(store / INDEX)
    return removed


def read_index(store: Path) -> list[dict[str, Any]]:
    path = Path(store) / INDEX
    if not path.is_file():
        raise UserError(f"{str(store)!r} is not a history store (it has no {INDEX})")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _is_night(text: str) -> bool:
    try:
        Date.fromisoformat(text)
        return len(text) == 10
    except ValueError:
        return False


def _check_night(text: str) -> str:
    if not _is_night(text):
        raise UserError(f"date {text!r} is not allowed; give YYYY-MM-DD")
    return text
