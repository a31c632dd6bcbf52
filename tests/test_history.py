"""The nightly history store: append-only, nothing overwritten, nights pruned whole, readable by reports."""

from __future__ import annotations

import json

import pytest

from adapterbench import history
from adapterbench.cli import main
from adapterbench.errors import UserError
from adapterbench.harness.records import iter_records, read_predictions, write_predictions, write_record


def make_results(folder, run_id="sst2__lora", value=0.8, created="2026-11-30T02:00:00+00:00"):
    predictions = write_predictions(folder, run_id, {"validation": [0, 1]}, {"validation": [1, 0]},
                                    {"final": {"validation": [1, 1]}})
    record = {"schema_version": 2, "run_id": run_id, "status": "ok", "created_at": created, "seed": 0,
              "task": {"name": "sst2"}, "variant": {"name": "lora"}, "predictions": predictions,
              "metrics": {"primary": {"name": "accuracy", "value": value}}}
    write_record(folder / f"{run_id}.json", record)
    return record


def test_add_is_append_only_and_keeps_predictions(tmp_path):
    results, store = tmp_path / "results", tmp_path / "history"
    make_results(results)
    assert history.add([results], store) == {"added": 1, "already_stored": 0}
    assert history.add([results], store) == {"added": 0, "already_stored": 1}  # the same bytes: skipped
    make_results(results, value=0.7)  # a rerun the same night: kept beside the first, never over it
    assert history.add([results], store) == {"added": 1, "already_stored": 0}
    night = store / "2026-11-30"
    assert sorted(p.name for p in night.glob("*.json")) == ["sst2__lora.1.json", "sst2__lora.json"]
    assert json.loads((night / "sst2__lora.json").read_text())["metrics"]["primary"]["value"] == 0.8
    entries = history.read_index(store)
    assert [e["value"] for e in entries] == [0.8, 0.7] and {e["night"] for e in entries} == {"2026-11-30"}
    for path, record in iter_records([store]):
        assert read_predictions(path, record)["splits"]["validation"]["predictions"]["final"] == [1, 1]


def test_prune_removes_whole_old_nights(tmp_path):
    store = tmp_path / "history"
    for day in ("2026-01-01", "2026-11-29", "2026-11-30"):
        results = tmp_path / day
        make_results(results, run_id=f"r{day}", created=f"{day}T02:00:00+00:00")
        history.add([results], store)
    assert history.prune(store, keep_days=30, today="2026-12-01") == ["2026-01-01"]
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == ["2026-11-29", "2026-11-30"]
    assert {e["night"] for e in history.read_index(store)} == {"2026-11-29", "2026-11-30"}
    with pytest.raises(UserError, match="keep-days 0"):
        history.prune(store, keep_days=0)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["history", "add", str(tmp_path / "nope"), "--store", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert main(["history", "list", "--store", str(tmp_path)]) == 2
    assert "not a history store" in capsys.readouterr().err
