"""Reading run records for reports and comparisons: which records count, and which may be averaged together.

Three decisions live here, over the frames of :mod:`adapterbench.results`:

* **One record per run.** The same ``run_id`` (in one comparable group) can appear more than once when several
  result folders are read (a nightly folder per date). Tables use the newest record of each run (the ``latest``
  column); older ones are kept for the trend charts, so a rerun that succeeded replaces the failure it followed.
* **Comparable groups.** Records are averaged together only when they share the task (name and version), the
  model (name and weights SHA-256) and the profile: :class:`GroupKey`. Anything else is a different experiment.
* **Configurations.** Within a group, seeds of the same variant are averaged only when every resolved setting
  that changes the numbers is equal (variant Config fields and loop settings such as lr or epochs):
  :class:`ConfigId`, the ``config`` column. Rows are labelled with the settings that tell configurations apart.

Files that are not readable records (bad JSON, unknown schema version, fields of the wrong type) are skipped with
a one-line reason each, which ``bench report`` and ``bench compare`` print and count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from adapterbench import results
from adapterbench.errors import UserError
from adapterbench.harness.records import scan_records
from adapterbench.schema import Record

Found = list[tuple[Path, Record]]


# ---- loading -------------------------------------------------------------------------------------------
def load_records(paths: Sequence[str | Path]) -> tuple[Found, list[str]]:
    """Every readable record under ``paths`` and one line per skipped file; a missing path, or no readable
    record at all, is a user error."""
    if not paths:
        raise UserError("no results given; pass one or more folders or files of run records")
    for p in paths:
        if not Path(p).exists():
            raise UserError(f"results path {str(p)!r} does not exist; pass a folder or file of run records")
    scan = scan_records(Path(p) for p in paths)
    if not scan.found:
        why = f" ({len(scan.skipped)} file(s) skipped; first: {scan.reasons()[0]})" if scan.skipped else ""
        raise UserError(f"no run records found in {', '.join(map(str, paths))}{why}; "
                        "expected the JSON records that `bench run` writes")
    return scan.found, scan.reasons()


@dataclass
class Collection:
    """The frames of a set of records (:func:`adapterbench.results.frames`) and the files skipped reading them.

    ``runs`` holds every record, ``latest`` marking the newest of each run; :attr:`table_runs` and :attr:`failed`
    are the newest ones, :attr:`history` every ok record (the trend charts)."""

    runs: pd.DataFrame
    points: pd.DataFrame
    epochs: pd.DataFrame
    ranks: pd.DataFrame
    skipped: list[str]

    @classmethod
    def of(cls, found: Found, skipped: Sequence[str] = ()) -> Collection:
        return cls(*results.frames(found), list(skipped))

    @property
    def latest(self) -> pd.DataFrame:
        return self.runs[self.runs["latest"].astype(bool)]

    @property
    def ok(self) -> pd.DataFrame:
        return self.latest[self.latest["status"] == "ok"]

    @property
    def failed(self) -> pd.DataFrame:
        """Runs that did not finish (``failed``, ``oom``, ``diverged``, or any status that is not ``ok``)."""
        return self.latest[self.latest["status"] != "ok"]

    @property
    def older(self) -> pd.DataFrame:
        return self.runs[~self.runs["latest"].astype(bool)]

    @property
    def history(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "ok"]

    @property
    def ok_points(self) -> pd.DataFrame:
        return self.points[self.points["latest"].astype(bool)]


def model_names(runs: pd.DataFrame) -> pd.Series:
    """Per run, the names a ``--model`` filter may use: its name, path and their last parts."""
    def names(row: Any) -> set[str]:
        out = set()
        for value in (row.model, row.model_path):
            if isinstance(value, str) and value:
                out.update({value, Path(value.rstrip("/")).name})
        return out

    return pd.Series([names(r) for r in runs.itertuples()], index=runs.index, dtype=object)


def filter_records(found: Found, tasks: Sequence[str] = (), variants: Sequence[str] = (),
                   models: Sequence[str] = ()) -> Found:
    """Keep records matching every given filter (each filter: any of its names). Unmatched names raise."""
    if not found:
        return found
    runs = results.runs_frame(found, ordered=False)  # row i is found[i]
    def names(column: str) -> pd.Series:
        return pd.Series([{str(v)} for v in runs[column]], index=runs.index, dtype=object)

    checks = (("--task", tasks, names("task")), ("--variant", variants, names("variant")),
              ("--model", models, model_names(runs)))
    keep = pd.Series(True, index=runs.index)
    for flag, wanted, per_run in checks:
        if not wanted:
            continue
        available = set().union(*per_run)
        for name in wanted:
            if name not in available:
                raise UserError(f"{flag} {name!r} matches no record; available: "
                                f"{', '.join(sorted(available)) or '(none)'}")
        keep &= pd.Series([bool(n & set(wanted)) for n in per_run], index=runs.index)
    return [entry for entry, k in zip(found, keep) if k]


# ---- comparable groups ---------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class GroupKey:
    """What must be equal for two records to be averaged or compared (empty string: unknown)."""

    task: str
    task_version: str
    model: str
    weights_sha256: str
    profile: str
    primary_metric: str = ""  # "<split>/<metric>": a sweep's held-out trials are not dev runs
    data_fingerprint: str = ""  # v1 records have none

    def describe(self) -> str:
        sha = self.weights_sha256[:12] or "unknown"
        text = (f"{self.task} v{self.task_version or '?'} · {self.model or 'unknown model'} "
                f"(weights sha256 {sha}) · profile {self.profile or '?'}")
        if self.primary_metric and not self.primary_metric.startswith(("validation/", "test/")):
            text += f" · scored on {self.primary_metric.split('/')[0]}"
        return text

    @classmethod
    def of(cls, row: Any) -> GroupKey:
        """The key of a row of a results frame (a namedtuple or a Series with the :data:`GROUP_COLUMNS`)."""
        values = [getattr(row, c) if hasattr(row, c) else row[c] for c in results.GROUP_COLUMNS]
        return cls(*("" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
                     for v in values))


def group_keys(frame: pd.DataFrame) -> pd.Series:
    return pd.Series([GroupKey.of(r) for r in frame.itertuples()], index=frame.index, dtype=object)


_GROUP_FIELD_NAMES = {"task": "task", "task_version": "task version", "model": "model name",
                      "weights_sha256": "model weights", "profile": "profile",
                      "primary_metric": "scored split and metric", "data_fingerprint": "data (fingerprint)"}


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


# ---- configurations ------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class ConfigId:
    """A variant with every resolved setting that changes the numbers (the ``config`` column, parsed)."""

    variant: str
    config: str  # canonical JSON

    def as_dict(self) -> dict[str, Any]:
        return json.loads(self.config) if self.config else {}


def config_ids(frame: pd.DataFrame) -> pd.Series:
    return pd.Series([ConfigId(str(v), str(c)) for v, c in zip(frame["variant"], frame["config"])],
                     index=frame.index, dtype=object)


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
        keys = sorted(k for k in set().union(*dicts) if len({json.dumps(d.get(k), sort_keys=True) for d in dicts}) > 1)
        for cid, d in zip(cids, dicts):
            labels[cid] = f"{variant} ({', '.join(f'{k}={_short(d.get(k))}' for k in keys)})"
    return labels
