"""``--log-to mlflow``: the run's settings, per-step loss and final measurements reach MLflow's local store."""

from __future__ import annotations

import importlib.util

import pytest

from adapterbench.cli import main
from adapterbench.errors import UserError
from adapterbench.harness.records import iter_records
from adapterbench.harness.trackers import check_trackers
from adapterbench.testing import save_tiny_model
from tests.test_sweep import make_sst2


def test_unknown_tracker_is_one_line():
    with pytest.raises(UserError, match="--log-to 'wandb' is not allowed; choose one of: mlflow"):
        check_trackers(["wandb"])


def test_missing_extra_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r'pip install "adapterbench\[mlflow\]"'):
        check_trackers(["mlflow"])


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed (test extra)")
def test_mlflow_gets_params_step_losses_and_measurements(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model = save_tiny_model(tmp_path / "tinybert", "bert")
    data = make_sst2(tmp_path / "d")
    code = main(["run", "--variants", "lora", "--task", "sst2", "--model", str(model), "--profile", "smoke",
                 "--data-dir", str(data), "--out", str(tmp_path / "out"), "--log-to", "mlflow", "--in-process"])
    assert code == 0
    [(_, record)] = list(iter_records([tmp_path / "out"]))
    client = MlflowClient(f"file:{tmp_path / 'mlruns'}")
    experiment = client.get_experiment_by_name("adapterbench")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == record["run_id"] and run.data.tags["status"] == "ok"
    assert run.data.params["variant"] == "lora" and run.data.params["training.lr"] == str(record["training"]["lr"])
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.value for m in losses] == pytest.approx(record["steps"]["loss"])
    assert run.data.metrics["validation/accuracy"] == pytest.approx(record["metrics"]["final"]["validation/accuracy"])
    assert run.data.metrics["params/trainable_adapter"] == record["measurements"]["params/trainable_adapter"]
