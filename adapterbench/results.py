"""Run records as pandas DataFrames: one row per run, and long-form tables of evaluation points, epochs and ranks.

::

    import adapterbench.results as ab

    runs = ab.load("results/baselines")          # one row per run (the newest record of each run)
    points = ab.load_points("results/baselines")   # one row per (run, evaluation point): DyLoRA ranks
    history = ab.load_history("results/baselines") # one row per (run, epoch)
    table = ab.summary("results/baselines")        # the report's table: one row per configuration and point

Records are read through :func:`adapterbench.harness.records.scan_records` (validated, migrated to the current
schema); a file that is not a readable record is skipped with a warning naming it and the reason, and listed in
``frame.attrs["skipped"]``. The columns are documented in :data:`RUN_COLUMNS` (fixed ones) plus three families
named as in the record: every final metric ``"<split>/<metric>"`` (float), every measurement key of
:data:`adapterbench.schema.MEASURES` (its ``dtype``), and the scalars of the variant's config, the loop settings
and the environment as ``"config.<name>"``, ``"training.<name>"`` and ``"env.<name>"``.

Which runs may be averaged together is decided by two columns: the comparable group (:data:`GROUP_COLUMNS`: task
and version, model name and weights, profile) and ``config`` (the variant's resolved settings and the loop
settings that change the numbers, as canonical JSON). The reports group by exactly these.
(The group also holds the primary metric's split and the data fingerprint.)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from adapterbench import schema
from adapterbench.harness.records import Scan, scan_records
from adapterbench.reports.units import point_label

# The primary metric's split is part of the group: a sweep's trials (scored on held-out training data) are never
# averaged with runs scored on dev; so is the data fingerprint: runs on other data are other runs.
GROUP_COLUMNS = ("task", "task_version", "model", "weights_sha256", "profile", "primary_metric",
                 "data_fingerprint")
# Resolved loop settings that change the numbers (the rest, e.g. checkpoint saving, only changes bookkeeping).
IDENTITY_TRAINING_KEYS = ("lr", "epochs", "batch_size", "max_length", "warmup_ratio", "weight_decay",
                          "max_grad_norm", "max_train_samples", "max_eval_samples", "max_steps", "precision",
                          "device", "eval_batch_size", "warmup_steps_excluded", "latency_batches",
                          "holdout_samples", "train_steps", "eval_holdout")

# name -> (dtype, meaning). The families "<split>/<metric>", measurement keys, "config.*", "training.*" and
# "env.*" follow these.
RUN_COLUMNS: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run's id (task, variant, model, profile, seed, settings hash)"),
    "status": ("string", "ok | failed | oom | diverged"),
    "created_at": ("datetime", "when the record was written (UTC)"),
    "latest": ("boolean", "the newest record of its run (same run id and comparable group)"),
    "source": ("string", "the record's file"),
    "schema_version": ("Int64", "the version the file was written with (read as the current one)"),
    "task": ("string", "task name"), "task_version": ("string", "task version"),
    "task_kind": ("string", "classification | regression | token_classification"),
    "model": ("string", "model name"), "model_path": ("string", "where the weights were read"),
    "weights_sha256": ("string", "SHA-256 of the weights file"), "model_type": ("string", "transformers model_type"),
    "profile": ("string", "smoke | quick | standard | ..."),
    "variant": ("string", "registry name"), "variant_origin": ("string", "built-in or the plugin's distribution"),
    "mergeable": ("boolean", "the variant can merge into the base weights"),
    "seed": ("Int64", "the run's seed"),
    "config": ("string", "canonical JSON of the settings that change the numbers: runs averaged together share it"),
    "primary_metric": ("string", '"<split>/<metric>" of the task\'s primary metric'),
    "greater_is_better": ("boolean", "direction of the primary metric"),
    "primary": ("float64", "primary metric after the last epoch"),
    "primary_best": ("float64", "primary metric at its best epoch"),
    "learned": ("boolean", "v2: the run beat the task's trivial predictor on the primary split (paired, one-sided; "
                           "stats/learned.py); missing for older records"),
    "learned_detail": ("string", "v2: that outcome in words"),
    "best_epoch": ("Int64", "epoch of the best primary metric"),
    "n_points": ("Int64", "evaluation points besides the model as trained (DyLoRA: ranks)"),
    "error_type": ("string", "exception type of a run that did not finish"),
    "error_message": ("string", "its first line"),
    "points_axis": ("string", "the variant's axis title for its evaluation points"),
    "points_scale": ("string", "linear | log2 | log | category"),
    "rank_map_allocated": ("boolean", "the variant's rank map was allocated during training"),
    "rank_map_title": ("string", "the variant's title for its rank map"),
    "rank_map_caption": ("string", "and its caption"),
    "data_fingerprint": ("string", "v2: fingerprint of the data read"), "data_source": ("string", "v2: local | hub"),
    "predictions_file": ("string", "v2: the predictions sidecar, relative to the record"),
    "env_fingerprint": ("string", "v2: id of the environment fingerprint"),
    "task_origin": ("string", "where the task came from: built-in, or the task file"),
    "reference_source": ("string", "a preset's published result (tags.reference): its source"),
    "reference_metric": ("string", "its metric key (presets.measured_value reads it)"),
    "reference_value": ("float64", "its value, in the record's units"),
    "reference_std": ("float64", "the std the paper reports with it"),
}
POINT_COLUMNS: dict[str, tuple[str, str]] = {
    "point": ("object", "the evaluation point as recorded (None: the model as trained)"),
    "point_key": ("string", 'canonical JSON of the point ("null": as trained)'),
    "point_label": ("string", 'the variant\'s label of the point ("r=4"; "" as trained)'),
    "point_order": ("float64", "sort key: the point's value when numeric, else its position"),
    "primary": ("float64", "the primary metric at this point"),
    "learned": ("boolean", "v2: this point beat the task's trivial predictor on the primary split"),
}
# The first columns of the long tables (points, history, ranks): which run, and how it groups.
KEY_COLUMNS = ("run_id", "source", "status", "latest", "created_at", *GROUP_COLUMNS, "variant", "config", "seed")


# ---- one record -> rows -----------------------------------------------------------------------------------
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def config_settings(record: schema.Record) -> dict[str, Any]:
    """The variant's Config fields and the identity loop settings (``training.<key>`` when a name clashes)."""
    settings = dict(record.get("variant", {}).get("config") or {})
    training = record.get("training", {})
    for key in IDENTITY_TRAINING_KEYS:
        if key in training and not (key in ("train_steps", "eval_holdout") and not training[key]):  # newer keys
            value = training[key]
            if key == "device" and isinstance(value, str) and value.startswith("cuda"):
                value = "cuda"  # cuda and cuda:1 are the same kind of device
            settings[f"training.{key}" if key in settings else key] = value
    return settings


def _scalar(value: Any) -> Any:
    return _canonical(value) if isinstance(value, (list, dict, tuple)) else value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def run_row(path: Path, record: schema.Record) -> dict[str, Any]:
    task, model, variant = record.get("task", {}), record.get("model", {}), record.get("variant", {})
    primary, metrics = record.get("metrics", {}).get("primary") or {}, record.get("metrics", {})
    hints, error = schema.report_hints(record), record.get("error") or {}
    tags = record.get("tags") if isinstance(record.get("tags"), dict) else {}
    reference = tags.get("reference") if isinstance(tags.get("reference"), dict) else {}
    points, rank_map = hints.get("points") or {}, hints.get("rank_map") or {}
    row: dict[str, Any] = {
        "run_id": record["run_id"], "status": record["status"], "created_at": record.get("created_at"),
        "source": str(path), "schema_version": record.get("migrated_from", record["schema_version"]),
        "task": _text(task.get("name")), "task_version": _text(task.get("version")), "task_kind": task.get("kind"),
        "model": _text(model.get("name")), "model_path": model.get("path"),
        "weights_sha256": model.get("weights_sha256"), "model_type": model.get("model_type"),
        "profile": record.get("profile"), "variant": _text(variant.get("name")),
        "variant_origin": variant.get("origin"), "mergeable": variant.get("mergeable"), "seed": record["seed"],
        "config": _canonical(config_settings(record)),
        "primary_metric": schema.primary_key(record), "greater_is_better": schema.greater_is_better(record),
        "primary": schema.primary_value(record), "primary_best": primary.get("best_value"),
        "best_epoch": primary.get("best_epoch"), "learned": schema.learned_at(record),
        "learned_detail": schema.learned_detail(record),
        "n_points": sum(p.get("point") is not None for p in metrics.get("points") or []),
        "error_type": error.get("type"), "error_message": error.get("message"),
        "points_axis": points.get("axis"), "points_scale": points.get("scale"),
        "rank_map_allocated": rank_map.get("allocated") if rank_map else None,
        "rank_map_title": rank_map.get("title"), "rank_map_caption": rank_map.get("caption"),
        "data_fingerprint": (record.get("data") or {}).get("fingerprint"),
        "data_source": (record.get("data") or {}).get("source"),
        "predictions_file": (record.get("predictions") or {}).get("file"),
        "env_fingerprint": ((record.get("environment") or {}).get("fingerprint") or {}).get("id"),
        "task_origin": task.get("origin"), "reference_source": reference.get("source"),
        "reference_metric": reference.get("metric"), "reference_value": reference.get("value"),
        "reference_std": reference.get("std"),
    }
    row.update({k: v for k, v in (metrics.get("final") or {}).items() if "/" in k})
    row.update(record.get("measurements") or {})
    for prefix, part in (("config.", variant.get("config") or {}), ("training.", record.get("training") or {}),
                         ("env.", {k: v for k, v in (record.get("environment") or {}).items() if k != "fingerprint"})):
        row.update({prefix + k: _scalar(v) for k, v in part.items()})
    return row


def _keys(record: schema.Record) -> dict[str, Any]:
    task, model = record.get("task", {}), record.get("model", {})
    return {"run_id": record["run_id"], "status": record["status"], "created_at": record.get("created_at"),
            "task": _text(task.get("name")), "task_version": _text(task.get("version")),
            "model": _text(model.get("name")), "weights_sha256": model.get("weights_sha256"),
            "profile": record.get("profile"), "variant": _text(record.get("variant", {}).get("name")),
            "primary_metric": schema.primary_key(record),
            "data_fingerprint": (record.get("data") or {}).get("fingerprint"),
            "config": _canonical(config_settings(record)), "seed": record["seed"]}


def point_rows(record: schema.Record) -> list[dict[str, Any]]:
    """One row per evaluation (see :func:`adapterbench.schema.evaluations`) of an ok run; none otherwise."""
    if record["status"] != "ok":
        return []
    keys, key, hints = _keys(record), schema.primary_key(record), schema.report_hints(record)
    rows = []
    for i, entry in enumerate(schema.evaluations(record)):
        point = entry.get("point")
        value = schema.primary_value(record) if point is None else entry.get(key)
        rows.append({**keys, "point": point, "point_key": _canonical(point), "point_label": point_label(point, hints),
                     "point_order": float(point) if schema.is_number(point) else float(i), "primary": value,
                     "learned": schema.learned_at(record, point),
                     **{k: v for k, v in entry.items() if k != "point"}})
    return rows


def history_rows(record: schema.Record) -> list[dict[str, Any]]:
    keys = _keys(record)
    return [{**keys, **{k: _scalar(v) for k, v in entry.items()}} for entry in record.get("history", [])]


def parse_module_name(name: str) -> tuple[int | None, str]:
    """``"bert.encoder.layer.3.attention.self.query"`` -> ``(3, "attention.self.query")``: the layer is the first
    all-digit component (``layer.3``, ``layers.3``, ``h.3``), the role what follows; ``(None, name)`` without one."""
    parts = [p for p in name.split(".") if p]
    for i, part in enumerate(parts):
        if part.isdigit() and i > 0:
            return int(part), ".".join(parts[i + 1:]) or parts[i - 1]
    return None, ".".join(parts)


def rank_rows(record: schema.Record) -> list[dict[str, Any]]:
    """One row per adapted matrix of the rank map the variant declared (``report.rank_map.key``)."""
    hint = schema.report_hints(record).get("rank_map") or {}
    ranks = (record.get("variant_info") or {}).get(hint.get("key", ""), None) if hint else None
    if record["status"] != "ok" or not isinstance(ranks, dict):
        return []
    keys = _keys(record)
    return [{**keys, "module": name, "layer": parse_module_name(name)[0], "role": parse_module_name(name)[1],
             "rank": float(rank)} for name, rank in ranks.items() if schema.is_number(rank)]


# ---- many records -> frames -------------------------------------------------------------------------------
def _typed(frame: pd.DataFrame, fixed: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Column types: the fixed columns', the schema's for measurement keys, float for metrics."""
    for column in frame.columns:
        dtype = fixed.get(column, (None,))[0] or RUN_COLUMNS.get(column, (None,))[0]
        if dtype is None and column in schema.MEASURES:
            dtype = schema.MEASURES[column].dtype
        if dtype is None and "/" in column and not column.startswith(("config.", "training.", "env.")):
            numeric = pd.to_numeric(frame[column], errors="coerce")
            dtype = "float64" if numeric.notna().sum() == frame[column].notna().sum() else None
        if dtype == "datetime":
            frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
        elif dtype == "string":
            frame[column] = frame[column].astype("string")
        elif dtype == "Int64":
            numbers = pd.to_numeric(frame[column], errors="coerce")
            integral = (numbers.dropna() % 1 == 0).all()
            frame[column] = numbers.astype("Int64") if integral else numbers.astype("float64")
        elif dtype == "boolean":
            frame[column] = frame[column].map(lambda v: v if isinstance(v, bool) else None).astype("boolean")
        elif dtype not in (None, "object"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(dtype)
    return frame


def _arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing Python types (``config.*`` of different variants) as text, so parquet can hold them."""
    for column in [c for c in frame.columns if frame[c].dtype == "object"]:
        kinds = {type(v) for v in frame[column] if v is not None and not (isinstance(v, float) and v != v)}
        if len(kinds) > 1 or kinds - {str, int, float, bool}:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v)).astype("string")
    return frame


def _mark_latest(frame: pd.DataFrame) -> pd.DataFrame:
    """``latest``: the newest record (by ``created_at``, then file) of each run id in each comparable group."""
    if frame.empty:
        frame["latest"] = pd.Series(dtype="boolean")
        return frame
    order = frame.sort_values(["created_at", "source"], na_position="first", kind="stable")
    keys = ["run_id", *GROUP_COLUMNS]
    newest = ~order[keys].astype("string").fillna("").duplicated(keep="last")
    frame["latest"] = newest.reindex(frame.index).astype("boolean")
    return frame


def runs_frame(found: Iterable[tuple[Path, schema.Record]], ordered: bool = True) -> pd.DataFrame:
    """One row per record, sorted by run id and time (``ordered=False``: row ``i`` is the ``i``-th record)."""
    found = list(found)
    frame = pd.DataFrame([run_row(p, r) for p, r in found], columns=None if found else list(RUN_COLUMNS))
    frame = _mark_latest(_typed(frame, RUN_COLUMNS))
    if not ordered:
        return frame
    return frame.sort_values(["run_id", "created_at"], na_position="first", kind="stable").reset_index(drop=True)


def _long(rows: list[dict[str, Any]], fixed: dict[str, tuple[str, str]], runs: pd.DataFrame) -> pd.DataFrame:
    frame = _typed(pd.DataFrame(rows, columns=None if rows else [*KEY_COLUMNS, *fixed]), fixed)
    if "point" in fixed:  # as recorded: pandas would turn [None, 1, 2] into floats
        frame["point"] = pd.Series([r["point"] for r in rows], index=frame.index, dtype=object)
    latest = runs.set_index(["run_id", "source"])["latest"]
    frame["latest"] = pd.array([latest.get((r, s), True) for r, s in zip(frame["run_id"], frame["source"])],
                               dtype="boolean")
    return frame


def frames(found: Sequence[tuple[Path, schema.Record]]) -> tuple[pd.DataFrame, ...]:
    """(runs, points, history, ranks) of already-read records, with ``latest`` marked in each."""
    runs = runs_frame(found)
    tables = []
    for make, fixed in ((point_rows, POINT_COLUMNS), (history_rows, {}), (rank_rows, {})):
        rows = [{**row, "source": str(p)} for p, r in found for row in make(r)]
        tables.append(_long(rows, fixed, runs))
    return (runs, *tables)


def _scan(paths: Sequence[str | Path]) -> Scan:
    paths = paths or ("results",)
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:  # as `bench report` refuses it: an empty table would read as "no runs there"
        raise FileNotFoundError(f"results path {missing[0]!r} does not exist; pass a folder or file of run records")
    scan = scan_records(Path(p) for p in paths)
    for path, reason in scan.skipped:
        warnings.warn(f"skipped {path}: {reason}", stacklevel=3)
    return scan


def _select(frame: pd.DataFrame, all_records: bool, scan: Scan) -> pd.DataFrame:
    if not all_records:
        frame = frame[frame["latest"].fillna(True).astype(bool)].reset_index(drop=True)
    frame.attrs["skipped"] = scan.reasons()
    return frame


def load(*paths: str | Path, all_records: bool = False) -> pd.DataFrame:
    """One row per run under ``paths`` (files or folders; default ``results``): its newest record, or every
    record with ``all_records=True`` (older ones have ``latest`` False). A path that does not exist raises
    :class:`FileNotFoundError` (every loader here does)."""
    scan = _scan(paths)
    return _select(runs_frame(scan.found), all_records, scan)


def load_points(*paths: str | Path, all_records: bool = False) -> pd.DataFrame:
    """One row per (ok run, evaluation point): the metrics at that point (:data:`POINT_COLUMNS`)."""
    scan = _scan(paths)
    return _select(frames(scan.found)[1], all_records, scan)


def load_history(*paths: str | Path, all_records: bool = False) -> pd.DataFrame:
    """One row per (run, epoch): ``epoch``, ``step``, ``train_loss``, ``time_s``, the metrics, variant scalars."""
    scan = _scan(paths)
    return _select(frames(scan.found)[2], all_records, scan)


def load_ranks(*paths: str | Path, all_records: bool = False) -> pd.DataFrame:
    """One row per (ok run, adapted matrix) of the rank map a variant declared: ``module``, ``layer``, ``role``,
    ``rank``."""
    scan = _scan(paths)
    return _select(frames(scan.found)[3], all_records, scan)


EXPORT_FORMATS = ("csv", "parquet")


def export(paths: Sequence[str | Path], out: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``runs``, ``points`` and ``history`` tables into the folder ``out``; returns the files written."""
    from adapterbench.errors import UserError

    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt!r} is not allowed; choose {' or '.join(EXPORT_FORMATS)}")
    scan = _scan(paths)
    runs, points, history, _ = frames(scan.found)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("runs", runs), ("points", points), ("history", history)):
        frame = _arrow_safe(frame.copy())
        if "point" in frame:  # mixed Python objects: stored by their canonical JSON (point_key) only
            frame = frame.drop(columns="point")
        path = out / f"{name}.{fmt}"
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
        written.append(path)
    return written


def summary(*paths: str | Path, tasks: Sequence[str] | str = (), variants: Sequence[str] | str = (),
            models: Sequence[str] | str = (), alpha: float = 0.05, n_resamples: int | None = None) -> pd.DataFrame:
    """The report's per-configuration table, exactly: the rows of ``table.csv`` that ``bench report`` writes for
    the same records and filters (one row per comparable group, configuration and evaluation point: mean, std,
    the report's 95% interval and which one, the answer's rank and verdict, every metric and measurement).

    It is built by the report's own code (:func:`adapterbench.reports.model.build_report` without charts, then
    :func:`adapterbench.reports.csvfile.table_csv`), so nothing here recomputes an interval: a t interval over
    seeds computed by hand in pandas is not the report's (which also bootstraps over examples and shows the
    wider of the two).
    """
    import io

    from adapterbench.reports.collect import Collection, filter_records, load_records
    from adapterbench.reports.csvfile import table_csv
    from adapterbench.reports.model import build_report
    from adapterbench.stats.intervals import N_RESAMPLES

    def names(value: Sequence[str] | str) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    paths = paths or ("results",)
    tasks, variants, models = names(tasks), names(variants), names(models)
    found, skipped = load_records(paths)
    found = filter_records(found, tasks, variants, models)
    report = build_report(Collection.of(found, skipped), None, [str(p) for p in paths], alpha=alpha,
                          n_resamples=N_RESAMPLES if n_resamples is None else n_resamples)
    return pd.read_csv(io.StringIO(table_csv(report)), keep_default_na=False, na_values=[""])
