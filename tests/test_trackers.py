"""``--log-to mlflow,wandb,tensorboard``: each tracker, against its real library in its local or offline mode, gets
the run's settings, the loss and learning rate per step, the metrics per epoch, the final measurements, and (MLflow)
the record and predictions as artifacts under a parent run per matrix."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import struct

import pytest

from adapterbench.cli import main
from adapterbench.errors import UserError
from adapterbench.harness import trackers
from adapterbench.harness.records import iter_records
from adapterbench.harness.trackers import check_trackers
from adapterbench.testing import save_tiny_model
from tests.test_sweep import make_sst2


def needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed (test extra)")


def test_unknown_tracker_is_one_line():
    with pytest.raises(UserError, match="--log-to 'comet' is not allowed; choose one or more of: mlflow, wandb, "
                                        "tensorboard"):
        check_trackers(["comet"])


@pytest.mark.parametrize("name", ["mlflow", "wandb", "tensorboard"])
def test_missing_extra_says_how_to_install(monkeypatch, name):
    monkeypatch.setattr(importlib.util, "find_spec", lambda module: None)
    with pytest.raises(UserError, match=rf'--log-to {name} needs the {name} package: pip install '
                                        rf'"adapterbench\[{name}\]"$'):
        check_trackers([name])


def test_experiment_without_a_tracker_is_refused(capsys):
    assert main(["run", "--variants", "lora", "--task", "sst2", "--experiment", "x", "--dry-run"]) == 2
    assert "--experiment names the trackers' experiment" in capsys.readouterr().err


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return save_tiny_model(tmp_path / "tinybert", "bert"), make_sst2(tmp_path / "d")


def bench_run(tiny, tmp_path, *extra: str, variants: str = "lora") -> list[dict]:
    model, data = tiny
    code = main(["run", "--variants", variants, "--task", "sst2", "--model", str(model), "--profile", "smoke",
                 "--set", "epochs=2", "--data-dir", str(data), "--out", str(tmp_path / "out"), "--no-answer",
                 *extra])
    assert code == 0
    return [record for _, record in sorted(iter_records([tmp_path / "out"]), key=lambda pr: pr[1]["run_id"])]


def scheduled_lrs(record: dict) -> list[float]:
    """The rate each step trained with: lr * (total - t) / (total - warmup) (no warm-up at this size)."""
    total = record["training"]["total_steps"]
    assert int(record["training"]["warmup_ratio"] * total) == 0  # else this formula is not the schedule's
    return [record["training"]["lr"] * (total - t) / total for t in range(total)]


@needs("mlflow")
def test_mlflow_matrix_parent_children_steps_epochs_and_artifacts(tiny, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # MLflow 3 refuses ./mlruns without it
    records = bench_run(tiny, tmp_path, "--log-to", "mlflow", "--experiment", "exp-one", "--in-process",
                        variants="lora,bitfit")
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("exp-one")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.info.run_name)
    assert parent.info.status == "FINISHED" and "2 runs: lora, bitfit on sst2" in parent.data.tags[
        "adapterbench.matrix"]
    assert [c.info.run_name for c in children] == [r["run_id"] for r in records]
    for run, record in zip(children, records):
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert (run.data.tags["task"], run.data.tags["variant"], run.data.tags["seed"]) == (
            "sst2", record["variant"]["name"], "0")
        assert not {"task", "variant", "seed"} & set(run.data.params)  # tags, not params
        assert run.data.params["training.lr"] == str(record["training"]["lr"])
        run_id = run.info.run_id
        losses = client.get_metric_history(run_id, "train/loss")
        assert [m.value for m in losses] == pytest.approx(record["steps"]["loss"])
        assert [m.step for m in losses] == list(range(1, record["training"]["total_steps"] + 1))
        lrs = sorted(client.get_metric_history(run_id, "train/lr"), key=lambda m: m.step)
        assert [m.value for m in lrs] == pytest.approx(scheduled_lrs(record))
        accuracy = sorted(client.get_metric_history(run_id, "validation/accuracy"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in accuracy] == [
            (e["step"], pytest.approx(e["validation/accuracy"])) for e in record["history"]]
        assert len(record["history"]) == 2  # one value per epoch, not a single final one
        assert run.data.metrics["params/trainable_adapter"] == record["measurements"]["params/trainable_adapter"]
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        sidecar = record["predictions"]["file"].split("/")[-1]
        assert artifacts == {"record.json", sidecar}
        logged = json.loads(open(client.download_artifacts(run_id, "record.json", str(tmp_path))).read())
        assert logged["run_id"] == record["run_id"] and logged["metrics"] == record["metrics"]
        blob = open(client.download_artifacts(run_id, sidecar, str(tmp_path)), "rb").read()
        assert hashlib.sha256(blob).hexdigest() == record["predictions"]["sha256"]


@needs("mlflow")
def test_a_failing_tracker_costs_a_note_not_the_run(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def broken(self, values, step):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(trackers.MLflowTracker, "log", broken)
    [record] = bench_run(tiny, tmp_path, "--log-to", "mlflow", "--in-process")
    assert record["status"] == "ok"
    assert any("logging during training stopped: ConnectionError: tracking server went away" in note
               for note in record["notes"])


def wandb_records(path: str):
    """The protobuf records of a W&B ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    LevelDB-style log blocks of 32 KiB, each chunk ``crc32c(4) length(2, LE) type(1)`` with types full (1),
    first (2), middle (3), last (4)."""
    from wandb.proto import wandb_internal_pb2

    data, block = open(path, "rb").read(), 32768
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)  # "train/loss" is stored as the nested key [train, loss]


@needs("wandb")
def test_wandb_offline_run_holds_config_tags_steps_epochs_and_summary(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    [record] = bench_run(tiny, tmp_path, "--log-to", "wandb", "--experiment", "proj")  # its own worker process
    [path] = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    run, history, summary, exit_code = None, [], {}, None
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = r.run
        elif kind == "history":
            history.append({item_key(item): json.loads(item.value_json) for item in r.history.item})
        elif kind == "summary":
            summary.update({item_key(item): json.loads(item.value_json) for item in r.summary.update})
        elif kind == "exit":
            exit_code = r.exit.exit_code
    assert run.display_name == record["run_id"] and run.project == "proj" and run.run_group.startswith("out-")
    assert set(run.tags) == {"task:sst2", "variant:lora", "seed:0"}
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["training.lr"] == str(record["training"]["lr"])
    steps = [h for h in history if "train/loss" in h]
    assert [h["_step"] for h in steps] == list(range(1, record["training"]["total_steps"] + 1))
    assert [h["train/loss"] for h in steps] == pytest.approx(record["steps"]["loss"])
    assert [h["train/lr"] for h in steps] == pytest.approx(scheduled_lrs(record))
    epochs = [(h["_step"], h["validation/accuracy"]) for h in history if "validation/accuracy" in h]
    assert epochs == [(e["step"], pytest.approx(e["validation/accuracy"])) for e in record["history"]]
    assert summary["params/trainable_adapter"] == record["measurements"]["params/trainable_adapter"]
    assert summary["status"] == "ok" and exit_code == 0


@needs("tensorboard")
def test_tensorboard_event_files_read_back(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [record] = bench_run(tiny, tmp_path, "--log-to", "tensorboard", "--in-process")
    events = EventAccumulator(str(tmp_path / "tensorboard" / "adapterbench" / record["run_id"]))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    total = record["training"]["total_steps"]
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, total + 1))
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(record["steps"]["loss"], rel=1e-6)
    assert [v for _, v in scalars["train/lr"]] == pytest.approx(scheduled_lrs(record), rel=1e-6)
    assert scalars["validation/accuracy"] == [(e["step"], pytest.approx(e["validation/accuracy"]))
                                              for e in record["history"]]
    assert scalars["final/params/trainable_adapter"] == [(total, record["measurements"]["params/trainable_adapter"])]
