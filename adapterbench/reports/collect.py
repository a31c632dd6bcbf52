"""Reading run records for reports and comparisons: which records count, and which may be averaged together.

Three decisions live here, in pure functions over the record dicts of :mod:`adapterbench.harness.records`:

* **One record per run.** The same ``run_id`` (in one comparable group) can appear more than once when several result folders are read
  (a nightly folder per date). Tables use the newest record of each run (by ``created_at``); older ones are kept
  aside for the trend charts, so a rerun that succeeded replaces the failure it followed.
* **Comparable groups.** Records are averaged together only when they share the task (name and version), the
  model (name and weights SHA-256) and the profile: :class:`GroupKey`. Anything else is a different experiment.
* **Configurations.** Within a group, seeds of the same variant are averaged only when every resolved setting
  that changes the numbers is equal (variant Config fields and loop settings such as lr or epochs):
  :class:`ConfigId`. Rows are labelled with the settings that tell configurations of one variant apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.harness.records import iter_records

# Resolved loop settings that change the numbers (the rest, e.g. checkpoint saving, only changes bookkeeping).
IDENTITY_TRAINING_KEYS = ("lr", "epochs", "batch_size", "max_length", "warmup_ratio", "weight_decay",
                          "max_grad_norm", "max_train_samples", "max_eval_samples", "max_steps", "precision",
                          "device", "eval_batch_size", "warmup_steps_excluded", "latency_batches")

Record = dict[str, Any]


def dig(record: Record, *path: str, default: Any = None) -> Any:
    """``record[a][b]...`` tolerating missing keys and non-dict values on the way."""
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return value


# ---- loading -------------------------------------------------------------------------------------------
def load_records(paths: Sequence[str | Path]) -> list[tuple[Path, Record]]:
    """Every record under ``paths`` (files or folders); a missing path or no record at all is a user error."""
    if not paths:
        raise UserError("no results given; pass one or more folders or files of run records")
    for p in paths:
        if not Path(p).exists():
            raise UserError(f"results path {str(p)!r} does not exist; pass a folder or file of run records")
    found = list(iter_records(Path(p) for p in paths))
    if not found:
        raise UserError(f"no run records found in {', '.join(map(str, paths))}; "
                        "expected the JSON records that `bench run` writes")
    return found


def created_at(record: Record) -> datetime | None:
    """``created_at`` as an aware UTC datetime (naive times are taken as UTC); None when absent or malformed."""
    text = record.get("created_at")
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Collection:
    """Records after deduplication: ``latest`` holds one record per run id, ``older`` the rest."""

    latest: list[tuple[Path, Record]]
    older: list[tuple[Path, Record]]

    @property
    def ok(self) -> list[Record]:
        return [r for _, r in self.latest if r.get("status") == "ok"]

    @property
    def failed(self) -> list[tuple[Path, Record]]:
        """Runs that did not finish (``failed``, ``oom``, ``diverged``, or any status that is not ``ok``)."""
        return [(p, r) for p, r in self.latest if r.get("status") != "ok"]

    @property
    def history(self) -> list[Record]:
        """Every ok record including older ones of the same run: the input of the trend charts."""
        return [r for _, r in self.latest + self.older if r.get("status") == "ok"]


def deduplicate(found: Iterable[tuple[Path, Record]]) -> Collection:
    """Keep the newest record of each run (ties broken by path, so the result is deterministic).

    A run is its ``run_id`` within a comparable group: the run id names the model by its folder name only, so
    the same id on other weights is another experiment, not a rerun.
    """
    by_run: dict[tuple[str, GroupKey], list[tuple[Path, Record]]] = {}
    for path, record in found:
        by_run.setdefault((str(record.get("run_id")), group_key(record)), []).append((path, record))
    latest, older = [], []
    for entries in by_run.values():
        entries.sort(key=lambda e: (created_at(e[1]) or _EPOCH, str(e[0])))
        latest.append(entries[-1])
        older.extend(entries[:-1])
    latest.sort(key=lambda e: str(e[1].get("run_id")))
    return Collection(latest, older)


def model_names(record: Record) -> set[str]:
    """The names a ``--model`` filter may use for this record's model: its name, path and their last parts."""
    names = set()
    for key in ("name", "path"):
        value = dig(record, "model", key)
        if isinstance(value, str) and value:
            names.update({value, Path(value.rstrip("/")).name})
    return names


def filter_records(found: list[tuple[Path, Record]], tasks: Sequence[str] = (), variants: Sequence[str] = (),
                   models: Sequence[str] = ()) -> list[tuple[Path, Record]]:
    """Keep records matching every given filter (each filter: any of its names). Unmatched names raise."""
    checks = (
        ("--task", tasks, lambda r: {str(dig(r, "task", "name"))}),
        ("--variant", variants, lambda r: {str(dig(r, "variant", "name"))}),
        ("--model", models, model_names),
    )
    for flag, wanted, names_of in checks:
        if not wanted:
            continue
        available = set().union(*(names_of(r) for _, r in found)) if found else set()
        for name in wanted:
            if name not in available:
                raise UserError(f"{flag} {name!r} matches no record; available: "
                                f"{', '.join(sorted(available)) or '(none)'}")
        found = [(p, r) for p, r in found if names_of(r) & set(wanted)]
    return found


# ---- comparable groups ---------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class GroupKey:
    """What must be equal for two records to be averaged or compared (empty string: unknown)."""

    task: str
    task_version: str
    model: str
    weights_sha256: str
    profile: str

    def describe(self) -> str:
        sha = self.weights_sha256[:12] or "unknown"
        return (f"{self.task} v{self.task_version or '?'} · {self.model or 'unknown model'} "
                f"(weights sha256 {sha}) · profile {self.profile or '?'}")


_GROUP_FIELD_NAMES = {"task": "task", "task_version": "task version", "model": "model name",
                      "weights_sha256": "model weights", "profile": "profile"}


def group_key(record: Record) -> GroupKey:
    def text(*path: str) -> str:
        value = dig(record, *path)
        return "" if value is None else str(value)

    return GroupKey(text("task", "name"), text("task", "version"), text("model", "name"),
                    text("model", "weights_sha256"), text("profile"))


def group_differences(keys: Sequence[GroupKey]) -> dict[str, list[str]]:
    """For each field of :class:`GroupKey` on which ``keys`` disagree, its distinct values (sorted)."""
    diffs = {}
    for f in fields(GroupKey):
        values = sorted({getattr(k, f.name) for k in keys})
        if len(values) > 1:
            diffs[f.name] = values
    return diffs


def explain_groups(keys: Sequence[GroupKey]) -> str:
    """Why records of these groups are not averaged together: "model weights (sha256 a vs sha256 b); ..."."""
    diffs = group_differences(keys)
    if not diffs:
        return "nothing (they are comparable)"
    parts = []
    for name, values in diffs.items():
        shown = [f"sha256 {v[:12]}" if name == "weights_sha256" and v else v for v in values]
        parts.append(f"{_GROUP_FIELD_NAMES[name]} ({' vs '.join(s or 'unknown' for s in shown)})")
    return "; ".join(parts)


# ---- configurations and evaluation points --------------------------------------------------------------
@dataclass(frozen=True, order=True)
class ConfigId:
    """A variant with every resolved setting that changes the numbers; ``settings`` holds (key, JSON value)."""

    variant: str
    settings: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.settings}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def config_id(record: Record) -> ConfigId:
    config = dig(record, "variant", "config", default={}) or {}
    training = dig(record, "training", default={}) or {}
    settings = {str(k): _canonical(v) for k, v in config.items()} if isinstance(config, dict) else {}
    for key in IDENTITY_TRAINING_KEYS:
        if isinstance(training, dict) and key in training:
            value = training[key]
            if key == "device" and isinstance(value, str) and value.startswith("cuda"):
                value = "cuda"  # cuda and cuda:1 are the same kind of device
            settings[f"training.{key}" if key in settings else key] = _canonical(value)
    return ConfigId(str(dig(record, "variant", "name", default="")), tuple(sorted(settings.items())))


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def settings_differences(a: ConfigId, b: ConfigId) -> list[str]:
    """``["r: 8 vs 16", ...]`` for the settings on which two configurations disagree."""
    da, db = a.as_dict(), b.as_dict()
    return [f"{k}: {_short(da.get(k, '—'))} vs {_short(db.get(k, '—'))}"
            for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]


def label_configs(ids: Iterable[ConfigId]) -> dict[ConfigId, str]:
    """Row labels: the variant name, plus the settings that differ when a variant appears in several configs."""
    by_variant: dict[str, list[ConfigId]] = {}
    for cid in sorted(set(ids)):
        by_variant.setdefault(cid.variant, []).append(cid)
    labels = {}
    for variant, cids in by_variant.items():
        if len(cids) == 1:
            labels[cids[0]] = variant
            continue
        dicts = [c.as_dict() for c in cids]
        keys = sorted(k for k in set().union(*dicts) if len({_canonical(d.get(k)) for d in dicts}) > 1)
        for cid, d in zip(cids, dicts):
            labels[cid] = f"{variant} ({', '.join(f'{k}={_short(d.get(k))}' for k in keys)})"
    return labels


def point_key(point: Any) -> str:
    """A hashable, JSON-stable key for an evaluation point (``None``: the model as trained)."""
    return _canonical(point)


def point_label(point: Any) -> str:
    """``None`` -> "" ; 4 -> "r=4" (numeric points are ranks: DyLoRA, the one built-in with several points);
    ``{"r": 4}`` -> "r=4"; a string is used as it is."""
    if point is None:
        return ""
    if isinstance(point, dict):
        return ",".join(f"{k}={_short(v)}" for k, v in point.items())
    if isinstance(point, (int, float)) and not isinstance(point, bool):
        return f"r={_short(point)}"
    return str(point)


def point_sort_key(point: Any) -> tuple:
    """Numeric points in numeric order, before any other kind."""
    if isinstance(point, (int, float)) and not isinstance(point, bool):
        return (0, float(point), "")
    return (1, 0.0, point_key(point))


def primary_key(record: Record) -> str:
    """The ``<split>/<metric>`` key of the task's primary metric, e.g. ``validation/accuracy``."""
    name = dig(record, "metrics", "primary", "name") or dig(record, "task", "primary_metric") or ""
    split = (dig(record, "metrics", "primary", "split") or dig(record, "task", "primary_split")
             or (dig(record, "task", "eval_splits") or ["validation"])[0])
    return name if "/" in name else f"{split}/{name}"


def greater_is_better(record: Record) -> bool:
    return dig(record, "task", "greater_is_better") is not False
