"""The record schema (validation, v1 migration, the measurement table) and the pandas results API, on records
written by the real harness (the ``real_records`` fixture) and on the committed v1 baselines."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pandas as pd
import pytest

import adapterbench.results as ab
from adapterbench import schema
from adapterbench.cli import main
from adapterbench.harness.records import RecordError, load_record, parse, scan_records
from adapterbench.reports.aggregate import aggregate_group
from adapterbench.reports.collect import Collection, group_keys
from adapterbench.reports.compare import Thresholds, compare_collections
from adapterbench.reports.compare_markdown import render_comparison
from adapterbench.reports.model import table_cells
from adapterbench.reports.units import FORMATTERS, summary_line

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "results" / "baselines"


@pytest.fixture(scope="module")
def mixed(real_records) -> Path:
    return real_records["mixed"]


def a_record(folder: Path, variant: str = "dylora") -> dict:
    return json.loads(next(folder.glob(f"sst2__{variant}__*.json")).read_text())


# ---- the schema -------------------------------------------------------------------------------------------
def test_every_measurement_a_real_run_writes_is_in_the_schema_table(mixed):
    # A new measurement must be added to schema.MEASURES (unit, direction, title, formatter) to be shown.
    written = {key for path, r in scan_records([mixed]).found for key in r.get("measurements", {})}
    assert written - set(schema.MEASURES) == set()
    assert {"memory/peak_bytes", "throughput/train_samples_per_s", "params/trainable_adapter"} <= written


def test_the_measurement_table_is_complete_and_consistent():
    for m in schema.MEASURES.values():
        assert m.kind in FORMATTERS, m.key
        assert m.direction in ("higher", "lower", "none") and m.title and m.doc, m.key
    assert [m.key for m in schema.TABLE_MEASURES][:3] == ["params/trainable_adapter", "params/trainable_head",
                                                          "params/trainable_percent"]
    # a new namespace is a decision (readers treat "<namespace>/<x>" keys as measurements): name them here
    assert schema.MEASURE_NAMESPACES == {"params", "memory", "throughput", "time", "inference", "checkpoint"}
    assert schema.PEAK_MEMORY.higher_is_better is False and schema.TRAIN_SPS.higher_is_better is True
    assert schema.measure("energy/joules").kind == "number"  # a plugin's key: shown as a plain number
    assert schema.is_measurement("energy/joules") is False and schema.is_measurement("time/extra_s")


def test_new_records_are_version_2_and_carry_what_the_variant_wants_charted(mixed):
    dylora = a_record(mixed, "dylora")
    assert dylora["schema_version"] == schema.SCHEMA_VERSION == 2
    assert dylora["variant_info"]["report"]["points"]["label"] == "r={point}"
    assert a_record(mixed, "adalora")["variant_info"]["report"]["rank_map"]["allocated"] is True
    assert a_record(mixed, "bitfit")["variant_info"].get("report") is None  # nothing to chart beyond the basics


def test_v1_records_are_migrated_on_read():
    runs = ab.load(BASELINES)
    assert len(runs) == 36 and set(runs["schema_version"]) == {1}
    dylora = load_record(next(BASELINES.glob("sst2__dylora__*.json")))
    assert dylora["schema_version"] == 2 and dylora["migrated_from"] == 1
    assert dylora["variant_info"]["report"]["points"] == {"axis": "evaluated rank r", "label": "r={point}",
                                                         "scale": "log2"}
    allocated = dict(zip(runs["variant"], runs["rank_map_allocated"]))
    assert allocated["adalora"] == True and allocated["lora"] == False and pd.isna(allocated["full"])  # noqa: E712


# ---- validation: one-line reasons, never a traceback ------------------------------------------------------
def _set(record: dict, path: str, value) -> dict:
    out = copy.deepcopy(record)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[last] = value
    return out


@pytest.mark.parametrize("path, value, reason", [
    ("schema_version", 99, "schema_version 99 is not readable; this adapterbench reads 1, 2"),
    ("schema_version", "2", "schema_version '2' is not readable"),
    ("status", "done", "status 'done' is not one of ok, failed, oom, diverged"),
    ("seed", "0", "seed '0' is not an integer"),
    ("measurements", [], "measurements is list, expected dict"),
    ("measurements.memory/peak_bytes", "1 GiB", "measurement memory/peak_bytes '1 GiB' is not a number"),
    ("measurements.inference/merged", "yes", "measurement inference/merged 'yes' is not true/false"),
    ("metrics.primary", 0.5, "metrics.primary is not an object"),
    ("metrics.primary.value", "0.5", "metrics.primary.value '0.5' is not a number"),
    ("metrics.final", [0.5], "metrics.final is not an object"),
    ("metrics.points", [{"r": 1}], "metrics.points is not a list of {point, metrics} objects"),
    ("variant.config", "r=8", "variant.config 'r=8' is not an object"),
    ("task.name", 3, "task.name 3 is not text"),
    ("model.weights_sha256", 5, "model.weights_sha256 5 is not text or null"),
    ("variant_info.report", [], "variant_info.report [] is not an object"),
    ("history", {"epoch": 1}, "history is dict, expected list"),
])
def test_malformed_records_get_a_one_line_reason(mixed, path, value, reason):
    with pytest.raises(RecordError) as info:
        parse(_set(a_record(mixed), path, value))
    assert str(info.value).startswith(reason) and "\n" not in str(info.value)


def test_not_a_record_and_unreadable_files(tmp_path):
    (tmp_path / "config.json").write_text('{"lr": 1}')
    (tmp_path / "cut.json").write_text('{"schema_version": 2, "run_id"')
    (tmp_path / "latin1.json").write_bytes(b'{"run_id": "caf\xe9"}')
    reasons = dict((p.name, r) for p, r in scan_records([tmp_path]).skipped)
    assert reasons["config.json"] == "not a run record (no schema_version and run_id)"
    assert reasons["cut.json"].startswith("not valid JSON (")
    assert reasons["latin1.json"].startswith("not UTF-8 text (")


def _paths(node, prefix=()):
    """Every key path of a record down to three levels (the values readers touch)."""
    if isinstance(node, dict) and len(prefix) < 3:
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


def test_no_mutation_of_a_real_record_makes_the_readers_raise(mixed):
    """Replace every field (to three levels) of a real record by values of other types: each mutated record is
    either skipped with a one-line reason, or read; all the read ones together (each its own run) then go through
    the frames, the aggregation of every group, the tables, the run summary and a comparison without raising."""
    base, sibling = a_record(mixed, "dylora"), a_record(mixed, "lora")
    read, tried = [(Path("lora.json"), parse(copy.deepcopy(sibling)))], 0
    for number, path in enumerate(_paths(base)):
        for value in (None, "x", 1.5, [], {}):
            mutated = copy.deepcopy(base)
            node = mutated
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            if path != ("run_id",) and isinstance(mutated.get("run_id"), str):
                mutated["run_id"] += f"-{number}-{type(value).__name__}"  # each mutation its own run
            tried += 1
            try:
                record = parse(mutated)
            except RecordError as exc:
                assert "\n" not in str(exc), (path, value)
                continue
            summary_line(record)
            read.append((Path(f"{'.'.join(path)}={value!r}.json"), record))
    collection = Collection.of(read)
    ok, keys = collection.ok_points, group_keys(collection.ok_points)
    tables = [aggregate_group(ok[keys == key], collection.ok) for key in set(keys)]
    assert sum(len(table_cells(t, rows=t.rows)[1]) for t in tables) >= len(read) // 2  # every point row
    baseline = Collection.of([(Path("lora.json"), parse(copy.deepcopy(sibling)))])
    render_comparison(compare_collections(baseline, collection, Thresholds()), "a", "b")
    assert tried > 300 and 50 < len(read) < tried


# ---- the results API --------------------------------------------------------------------------------------
def test_load_gives_one_typed_row_per_run(mixed):
    runs = ab.load(mixed)
    files = [p for p in mixed.rglob("*.json") if "2024-05-01" not in p.parts]  # the older copies are not newest
    assert len(runs) == len(files) and runs["latest"].all()
    assert isinstance(runs["created_at"].dtype, pd.DatetimeTZDtype) and str(runs["created_at"].dt.tz) == "UTC"
    assert runs["seed"].dtype == "Int64" and runs["params/trainable"].dtype == "Int64"
    assert runs["memory/peak_bytes"].dtype == "float64" and runs["inference/merged"].dtype == "boolean"
    lora = runs[(runs["variant"] == "lora") & (runs["task"] == "sst2") & (runs["seed"] == 1)
                & ~runs["source"].str.contains("other-weights")].iloc[0]
    record = json.loads(Path(lora["source"]).read_text())
    assert lora["primary"] == record["metrics"]["primary"]["value"]
    assert lora["validation/accuracy"] == record["metrics"]["final"]["validation/accuracy"]
    assert lora["config.r"] == record["variant"]["config"]["r"] and lora["training.lr"] == record["training"]["lr"]
    assert json.loads(lora["config"])["lr"] == record["training"]["lr"]
    every = ab.load(mixed, all_records=True)
    assert len(every) == len(files) + 3 and (~every["latest"]).sum() == 3


def test_long_tables_of_points_history_and_ranks(mixed):
    points = ab.load_points(mixed)
    dylora = points[points["variant"] == "dylora"].sort_values(["seed", "point_order"])
    record = a_record(mixed, "dylora")
    seed0 = dylora[dylora["seed"] == record["seed"]]
    assert list(seed0["point"]) == [p["point"] for p in record["metrics"]["points"]]
    assert list(seed0["primary"]) == [p["validation/accuracy"] for p in record["metrics"]["points"]]
    assert list(seed0["point_label"]) == [f"r={p['point']}" for p in record["metrics"]["points"]]
    head = points[points["variant"] == "head"]
    assert head["point"].isna().all() and set(head["point_label"]) == {""}
    history = ab.load_history(mixed)
    assert len(history[history["run_id"] == record["run_id"]]) == len(record["history"])
    assert {"epoch", "step", "train_loss", "validation/accuracy"} <= set(history.columns)
    ranks = ab.load_ranks(mixed)
    assert set(ranks["variant"]) == {"lora", "adalora"} and ranks["layer"].notna().all()


def test_skipped_files_warn_and_are_listed(mixed, tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(a_record(mixed, "head")))
    (tmp_path / "bad.json").write_text("[]")
    with pytest.warns(UserWarning, match="bad.json: not a run record"):
        runs = ab.load(tmp_path)
    assert len(runs) == 1 and runs.attrs["skipped"] == [f"{tmp_path / 'bad.json'}: not a run record "
                                                        "(no schema_version and run_id)"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_bench_export_writes_tables_that_read_back(mixed, tmp_path, capsys, fmt):
    out = tmp_path / "tables"
    assert main(["export", str(mixed), "--out", str(out), "--format", fmt]) == 0
    assert "0 file(s) skipped" in capsys.readouterr().out
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    runs, points = read(out / f"runs.{fmt}"), read(out / f"points.{fmt}")
    assert len(runs) == len(ab.load(mixed, all_records=True))
    assert sorted(runs["run_id"]) == sorted(ab.load(mixed, all_records=True)["run_id"])
    assert len(points) == len(ab.load_points(mixed, all_records=True))


def test_bench_export_bad_format_is_one_line(capsys, mixed, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["export", str(mixed), "--out", str(tmp_path), "--format", "xlsx"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "xlsx" in err[0] and "Traceback" not in err[0]


def test_summary_line_uses_the_table(mixed):
    record = parse(a_record(mixed, "dylora"))
    line = summary_line(record)
    assert line.startswith(f"ok: validation/accuracy={record['metrics']['primary']['value']:.4f} (r=1: ")
    for m in schema.SUMMARY_MEASURES:
        assert f" | {m.title} " in line
    assert summary_line({"status": "oom", "error": {"message": "CUDA out of memory"}}) == "OOM: CUDA out of memory"


def test_the_readme_example_runs(monkeypatch, capsys):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(ROOT)
    text = (ROOT / "README.md").read_text()
    code = text.split("<!-- results-example")[1].split("```python\n", 1)[1].split("```", 1)[0]
    import matplotlib

    matplotlib.use("Agg")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "sst2" in out and "r=1" in out and "dylora" in out
    assert os.environ["MPLBACKEND"] == "Agg"
