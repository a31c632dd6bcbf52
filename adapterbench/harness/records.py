"""The run record: one self-describing JSON file per (variant, task, model, profile, seed, settings).

This module is the schema's one documentation. Schema version 1::

    schema_version  1
    run_id          "<task>__<variant>__<model>__<profile>__seed<seed>__<8 hex of the settings hash>"
    status          "ok" | "failed" | "oom" | "diverged"
    error           null, or {"type", "message", "traceback"} when status is not ok
    created_at      ISO 8601 UTC time the record was written
    variant         {"name", "origin", "config": {resolved Config fields}, "mergeable"}
    task            {"name", "version", "kind", "primary_metric", "primary_split", "greater_is_better",
                     "eval_splits", "origin"}
    model           {"name", "path", "weights_sha256", "model_type"}
    seed            int
    profile         "smoke" | "quick" | "standard"
    training        resolved loop settings: lr, epochs, batch_size, eval_batch_size, max_length,
                    warmup_ratio, weight_decay, max_grad_norm, max_train_samples, max_eval_samples,
                    precision ("fp32" | "bf16"), device ("cpu" | "cuda"), steps_per_epoch, total_steps,
                    train_examples, eval_examples ({split: n}), overrides ({key: value} as given by --set)
    metrics         {"primary": {"name", "split", "value", "best_value", "best_epoch"},
                     "final": {"<split>/<metric>": float, ...}          # after the last epoch
                     "best":  {"epoch": int, "<split>/<metric>": float}  # epoch with the best primary metric
                     "points": [{"point": null | value, "<split>/<metric>": float, ...}, ...]}
                    ``points`` holds one entry per ``variant.eval_points()`` (DyLoRA: one per rank); a variant
                    evaluated only as trained has a single entry with ``point`` null, equal to ``final``.
    measurements    flat, namespaced keys whose names carry their unit:
                    params/total, params/trainable, params/trainable_adapter (trainable outside the task
                    head: the adapter, or the whole backbone for full fine-tuning), params/trainable_head,
                    params/new, params/trainable_percent
                    memory/peak_bytes (headline: CUDA peak allocated, or CPU peak RSS, during training minus
                    what was in use before it), memory/peak_basis ("cuda_allocated" | "cpu_rss"),
                    memory/cuda_peak_reserved_bytes (CUDA only), memory/cpu_peak_rss_bytes (CPU: absolute),
                    memory/before_train_bytes, memory/trainable_weights_bytes, memory/gradients_bytes,
                    memory/optimizer_state_bytes
                    throughput/train_samples_per_s, throughput/train_tokens_per_s (non-padding tokens),
                    throughput/eval_samples_per_s, throughput/steady_steps (steps in the measured window)
                    time/train_s (training steps only, no evaluation), time/eval_s, time/wall_s,
                    time/train_overhead_fraction (share of training wall time outside forward, backward and
                    the optimizer step: data loading, collation, hooks, bookkeeping)
                    inference/latency_ratio (evaluation latency of the trained model, merged when the variant
                    can merge, over the unadapted base model on the same batches), inference/merged (bool)
                    checkpoint/bytes, checkpoint/file (relative to the record's folder)
    history         [{"epoch", "step", "train_loss", "<split>/<metric>": float, "time_s", ...}, ...]
                    plus any scalars the variant logged (for example "adalora/budget")
    variant_info    what ``variant.describe(model)`` returned (AdaLoRA: final ranks and budget over steps)
    environment     {"python", "torch", "transformers", "peft", "adapterbench", "platform", "device_name",
                     "cpu_count", "cuda", "git_commit", "git_dirty"}

Records are written atomically (temporary file + rename) and never silently overwritten: a record that is
replaced (``--force``, or a rerun of a failed run) is first moved to ``<out>/superseded/``.
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
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2  # 2: data, predictions, steps, environment.fingerprint, params/deployed_adapter
STATUSES = ("ok", "failed", "oom", "diverged")  # every value "status" may take


def settings_hash(settings: dict[str, Any]) -> str:
    """Eight hex digits identifying what distinguishes otherwise equally named runs."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


def make_run_id(task: str, variant: str, model: str, profile: str, seed: int, settings: dict[str, Any],
                data: str = "") -> str:
    # Folders and task files are named by their last component; the hash keeps distinct settings apart.
    model_slug = Path(model.rstrip("/")).name or model
    task_slug = Path(task).name if task.endswith((".toml", ".json")) else task
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


def read_predictions(record_file: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar a record points at (``None`` when it has none or the file is missing)."""
    section = record.get("predictions")
    if not isinstance(section, dict) or not section.get("file"):
        return None
    path = Path(record_file).parent / section["file"]
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError):
        return None


def _atomic_bytes(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_path(out_dir: Path, run_id: str) -> Path:
    """Where a run's trained weights (adapter and head) are saved, as safetensors."""
    return Path(out_dir) / "checkpoints" / f"{run_id}.safetensors"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def iter_records(paths: Iterable[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every run record under the given files or folders (``superseded/`` and ``checkpoints/`` skipped)."""
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*.json")
            if not ({"superseded", "checkpoints", "predictions"} & set(p.relative_to(root).parts)))
        for file in files:
            try:
                record = read_record(file)
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and "schema_version" in record and "run_id" in record:
                yield file, record


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
