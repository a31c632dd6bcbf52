"""Writing and finding run records: one self-describing JSON file per (variant, task, model, profile, seed,
settings).

The record's shape, its measurement keys and its schema versions are typed and documented once, in
:mod:`adapterbench.schema`. Records are written atomically (temporary file + rename) and never silently
overwritten: a record that is replaced (``--force``, or a rerun of a failed run) is first moved to
``<out>/superseded/``. Files get the mode the umask gives (a shared results folder stays readable). Reading
(:func:`scan_records`) validates every file (:func:`parse`) and migrates it to the current schema version; a file
that is not a readable record is skipped with a one-line reason. Prediction sidecars are read through
:func:`read_predictions` only, which checks them against the sha256 their record holds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapterbench import schema
from adapterbench.schema import SCHEMA_VERSION, STATUSES, Record

__all__ = ["NOT_RECORDS", "SCHEMA_VERSION", "STATUSES", "RecordError", "Scan", "SidecarError", "checkpoint_path",
           "existing_status", "iter_records", "load_record", "make_run_id", "parse", "predictions_path",
           "read_predictions", "read_record", "record_files", "record_path", "scan_records", "settings_hash",
           "supersede", "write_predictions", "write_record"]
# Folders under a results folder that hold no records: replaced records, weights, prediction sidecars.
NOT_RECORDS = {"superseded", "checkpoints", "predictions"}


def settings_hash(settings: dict[str, Any]) -> str:
    """Eight hex digits identifying what distinguishes otherwise equally named runs."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


def make_run_id(task: str, variant: str, model: str, profile: str, seed: int, settings: dict[str, Any],
                data: str = "") -> str:
    # Folders are named by their last component, task files by their task name; the hash keeps distinct runs apart.
    model_slug = Path(model.rstrip("/")).name or model
    if task.endswith((".toml", ".json")):  # a task file: named by the task's own name, as everywhere else
        from adapterbench.tasks.userfile import task_file_name

        task_slug = task_file_name(task) or Path(task).name
    else:
        task_slug = task
    # The hash covers the full model and task references too: "org/x" and "/data/x" share a slug.
    identity = {"overrides": settings, "model": model, "task": task}
    if data:  # the data's content fingerprint: other data is another run (schema v2)
        identity["data"] = data
    parts = [task_slug, variant, model_slug, profile, f"seed{seed}", settings_hash(identity)]
    return "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", str(p)) for p in parts)


def record_path(out_dir: Path, run_id: str) -> Path:
    return Path(out_dir) / f"{run_id}.json"


def predictions_path(out_dir: Path, run_id: str) -> Path:
    """The run's per-example predictions sidecar (gzip JSON), beside its record."""
    return Path(out_dir) / "predictions" / f"{run_id}.json.gz"


def write_predictions(out_dir: Path, run_id: str, example_ids: dict[str, list[int]],
                      references: dict[str, list[Any]], predictions: dict[str, dict[str, list[Any]]]
                      ) -> dict[str, Any]:
    """Write the predictions sidecar atomically; returns the record's ``predictions`` section.

    Sidecar: ``{"run_id", "splits": {split: {"example_ids": [...], "references": [...],
    "predictions": {point: [...]}}}}`` where ``example_ids`` index the split as the data source orders it (so two
    runs' predictions pair up example by example) and ``point`` is ``"final"`` (as trained) or an evaluation
    point (DyLoRA: a rank).
    """
    splits = {split: {"example_ids": list(ids), "references": references.get(split, []),
                      "predictions": {point: per_split[split] for point, per_split in predictions.items()
                                      if split in per_split}}
              for split, ids in example_ids.items()}
    blob = gzip.compress(json.dumps({"run_id": run_id, "splits": splits}, default=_json_default).encode(),
                         mtime=0)  # mtime 0: the same predictions give the same bytes and the same sha256
    path = predictions_path(out_dir, run_id)
    _atomic_bytes(path, blob)
    return {"file": str(path.relative_to(out_dir)), "sha256": hashlib.sha256(blob).hexdigest(),
            "splits": {split: len(ids) for split, ids in example_ids.items()}, "points": list(predictions)}


class SidecarError(ValueError):
    """A predictions sidecar that cannot be trusted: changed since its record was written, or unreadable."""


def read_predictions(record_file: Path, record: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The sidecar the record at ``record_file`` points at, verified against the sha256 the record holds.

    The one reader of sidecars (reports, intervals, ``bench compare``): ``record`` is the record as read (read
    from ``record_file`` when omitted). Returns None when the record names no sidecar or its file is absent (the
    record's own metrics then stand alone, as for a v1 record). Raises :class:`SidecarError` with a one-line
    reason when the file's bytes are not the ones the record names (edited, truncated, swapped for another run's)
    or cannot be decoded: predictions that disagree with their record must never be resampled or tested.
    """
    if record is None:
        try:
            record = read_record(record_file)
        except (OSError, ValueError):
            return None
    section = record.get("predictions") if isinstance(record, dict) else None
    if not isinstance(section, dict) or not section.get("file"):
        return None
    path = Path(record_file).parent / str(section["file"])
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SidecarError(f"predictions {path}: cannot be read ({exc.strerror or exc})") from None
    expected, actual = section.get("sha256"), hashlib.sha256(blob).hexdigest()
    if not isinstance(expected, str) or actual != expected.lower():
        raise SidecarError(f"predictions {path}: sha256 {actual[:12]}... is not the {str(expected)[:12]}... its "
                           f"record names (the file changed after the run); restore it or rerun the run")
    try:
        return json.loads(gzip.decompress(blob))
    except (ValueError, EOFError, OSError) as exc:  # OSError: gzip's BadGzipFile
        raise SidecarError(f"predictions {path}: not a readable sidecar ({exc})") from None


def _atomic_bytes(path: Path, blob: bytes) -> None:
    """Write ``blob`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; a record is read by colleagues sharing the folder: the umask decides.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """This process's umask, read without changing it (Linux: /proc), else by setting it and back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def checkpoint_path(out_dir: Path, run_id: str) -> Path:
    """Where a run's trained weights (adapter and head) are saved, as safetensors."""
    return Path(out_dir) / "checkpoints" / f"{run_id}.safetensors"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically: readers see the old file or the new one, never half of one."""
    _atomic_bytes(Path(path), (json.dumps(record, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def supersede(path: Path) -> Path | None:
    """Move an existing record (or checkpoint) aside to ``superseded/``, timestamped, before it is replaced."""
    path = Path(path)
    if not path.exists():
        return None
    target_dir = path.parent / "superseded"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}{path.suffix}"
    os.replace(path, target)
    return target


def read_record(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def existing_status(path: Path) -> str | None:
    """The status of the record at ``path``, or None when there is none (or it cannot be read)."""
    try:
        return read_record(path).get("status")
    except (OSError, ValueError):
        return None


# ---- reading: validation (the shape is adapterbench.schema's) --------------------------------------------------------------------
class RecordError(ValueError):
    """A file that cannot be read as a run record; the message is the one-line reason."""


_PARTS: dict[str, type | tuple[type, ...]] = {
    "variant": dict, "task": dict, "model": dict, "training": dict, "metrics": dict, "measurements": dict,
    "history": list, "variant_info": dict, "environment": dict, "data": dict, "predictions": dict, "steps": dict,
    "learned": dict,
    "error": (dict, type(None)), "created_at": str, "profile": str, "notes": list,
}
_TEXT, _OPTIONAL_TEXT = (str,), (str, type(None))
# Nested fields readers use, by path: the types they may have when present.
_FIELDS: dict[tuple[str, ...], tuple[type, ...]] = {
    ("variant", "name"): _TEXT, ("variant", "config"): (dict,), ("variant", "origin"): _OPTIONAL_TEXT,
    ("variant", "mergeable"): (bool, type(None)),
    ("task", "name"): _TEXT, ("task", "version"): (str, int), ("task", "kind"): _OPTIONAL_TEXT,
    ("task", "primary_metric"): _OPTIONAL_TEXT, ("task", "primary_split"): _OPTIONAL_TEXT,
    ("task", "eval_splits"): (list,), ("task", "greater_is_better"): (bool, type(None)),
    ("model", "name"): _TEXT, ("model", "path"): _OPTIONAL_TEXT, ("model", "weights_sha256"): _OPTIONAL_TEXT,
    ("model", "model_type"): _OPTIONAL_TEXT,
    ("metrics", "primary", "name"): _OPTIONAL_TEXT, ("metrics", "primary", "split"): _OPTIONAL_TEXT,
    ("error", "type"): _OPTIONAL_TEXT, ("error", "message"): _OPTIONAL_TEXT,
    ("environment", "fingerprint"): (dict,), ("data", "fingerprint"): _OPTIONAL_TEXT,
    ("data", "source"): _OPTIONAL_TEXT, ("predictions", "file"): _OPTIONAL_TEXT,
    ("variant_info", "report"): (dict,), ("variant_info", "report", "points"): (dict,),
    ("variant_info", "report", "rank_map"): (dict,), ("variant_info", "report", "rank_map", "key"): _TEXT,
    ("variant_info", "report", "rank_map", "allocated"): (bool,),
    **{("variant_info", "report", "points", k): _TEXT for k in ("axis", "label", "scale")},
    **{("variant_info", "report", "rank_map", k): _TEXT for k in ("title", "caption")},
}
_TYPE_NAMES = {str: "text", int: "an integer", bool: "true/false", dict: "an object", list: "a list",
               type(None): "null", float: "a number"}


def parse(raw: Any) -> schema.Record:
    """Validate a decoded JSON document as a record and migrate it to :data:`SCHEMA_VERSION` (in place).

    The checks cover what readers rely on (parts and the fields they use, measurements by the type of their
    schema entry, metrics and points), so that every reader may index a parsed record without guarding.

    Raises :class:`RecordError` naming the first problem: not a record, an unreadable version, a part of the
    wrong type, a measurement of the wrong type, a malformed metric or evaluation point.
    """
    if not isinstance(raw, dict) or "schema_version" not in raw or "run_id" not in raw:
        raise RecordError("not a run record (no schema_version and run_id)")
    version = raw["schema_version"]
    if isinstance(version, bool) or version not in schema.READABLE_VERSIONS:
        raise RecordError(f"schema_version {version!r} is not readable; this adapterbench reads "
                          f"{', '.join(map(str, schema.READABLE_VERSIONS))}")
    _check(isinstance(raw["run_id"], str) and raw["run_id"], f"run_id {raw['run_id']!r} is not a name")
    _check(raw.get("status") in STATUSES, f"status {raw.get('status')!r} is not one of {', '.join(STATUSES)}")
    _check(isinstance(raw.get("seed"), int) and not isinstance(raw.get("seed"), bool),
           f"seed {raw.get('seed')!r} is not an integer")
    for part, kind in _PARTS.items():
        if part in raw:
            _check(isinstance(raw[part], kind), f"{part} is {type(raw[part]).__name__}, expected "
                   f"{getattr(kind, '__name__', 'an object or null')}")
    for path, kinds in _FIELDS.items():
        _check_field(raw, path, kinds)
    for part in ("variant", "task"):  # what every reader groups by (an unnamed model groups as "unknown")
        _check(raw.get(part, {}).get("name"), f"{part}.name is missing")
    _check_measurements(raw.get("measurements", {}))
    _check_metrics(raw.get("metrics", {}), raw["status"])
    _check(all(isinstance(h, dict) for h in raw.get("history", [])), "history holds a non-object entry")
    if version == 1:
        schema.migrate_v1(raw)
    return raw


def _check_field(raw: dict[str, Any], path: tuple[str, ...], kinds: tuple[type, ...]) -> None:
    value: Any = raw
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return  # absent (or under a part already checked): nothing to check
        value = value[key]
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    _check(ok, f"{'.'.join(path)} {_short(value)} is not {' or '.join(_TYPE_NAMES[k] for k in kinds)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(ok: Any, reason: str) -> None:
    if not ok:
        raise RecordError(reason)


def _check_measurements(measurements: dict[str, Any]) -> None:
    for key, value in measurements.items():
        kind = schema.measure(key).kind
        if value is None:
            continue
        if kind == "text":
            _check(isinstance(value, str), f"measurement {key} {value!r} is not text")
        elif kind == "bool":
            _check(isinstance(value, bool), f"measurement {key} {value!r} is not true/false")
        elif key in schema.MEASURES:
            _check(isinstance(value, (int, float)) and not isinstance(value, bool),
                   f"measurement {key} {value!r} is not a number")


def _check_metrics(metrics: dict[str, Any], status: str) -> None:
    primary = metrics.get("primary", {})
    _check(isinstance(primary, dict), "metrics.primary is not an object")
    value = primary.get("value")
    _check(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)),
           f"metrics.primary.value {value!r} is not a number")
    for part in ("final", "best"):
        _check(isinstance(metrics.get(part, {}), dict), f"metrics.{part} is not an object")
        for key, v in metrics.get(part, {}).items():
            _check(key == "epoch" or v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
                   f"metrics.{part}[{key!r}] {v!r} is not a number")
    points = metrics.get("points", [])
    _check(isinstance(points, list) and all(isinstance(p, dict) and "point" in p for p in points),
           "metrics.points is not a list of {point, metrics} objects")
    if status == "ok":
        _check(metrics.get("final") or points or primary.get("value") is not None, "status ok but no metrics")



@dataclass
class Scan:
    """What :func:`scan_records` found: readable records (validated, migrated) and skipped files with why."""

    found: list[tuple[Path, Record]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def reasons(self) -> list[str]:
        """One line per skipped file: ``"<file>: <reason>"``."""
        return [f"{path}: {reason}" for path, reason in self.skipped]


def load_record(path: Path) -> Record:
    """The validated, migrated record at ``path``; :class:`RecordError` with a one-line reason otherwise."""
    try:
        raw = read_record(path)
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except OSError as exc:
        raise RecordError(f"cannot be read ({exc.strerror or exc})") from None
    return parse(raw)


def record_files(root: Path) -> list[Path]:
    """``root`` itself when it is a file, else every ``*.json`` under it outside :data:`NOT_RECORDS`."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.json") if not NOT_RECORDS & set(p.relative_to(root).parts))


def scan_records(paths: Iterable[Path]) -> Scan:
    """Every record under the given files or folders, and every JSON file there that is not a readable one."""
    scan = Scan()
    for root in paths:
        for file in record_files(Path(root)):
            try:
                scan.found.append((file, load_record(file)))
            except RecordError as exc:
                scan.skipped.append((file, str(exc)))
    return scan


def iter_records(paths: Iterable[Path]) -> Iterator[tuple[Path, Record]]:
    """The readable records of :func:`scan_records` (skipped files dropped: use ``scan_records`` to see why)."""
    yield from scan_records(paths).found


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
