"""Experiment trackers: observers of the loop that also see the finished record (``--log-to mlflow``).

A tracker is an :class:`~adapterbench.harness.observers.Observer` (it receives every step's loss through
``step_end``) with two more events from the runner: ``run_started(record)`` with the resolved settings and
``run_finished(record)`` with the final status, metrics and measurements. Like every observer it only reads.

MLflow is an optional extra (``pip install "adapterbench[mlflow]"``). Its runs go to a local file store
(``./mlruns``, MLflow's file store, opted into with ``MLFLOW_ALLOW_FILE_STORE``) unless ``MLFLOW_TRACKING_URI``
points elsewhere (a tracking server); the MLflow run is named after the run id and
tagged with its task, variant and seed.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

from adapterbench.errors import UserError
from adapterbench.harness.observers import Observer, StepInfo
from adapterbench.variants.base import TrainState

TRACKERS = ("mlflow",)


class Tracker(Observer):
    def run_started(self, record: dict[str, Any]) -> None: ...
    def run_finished(self, record: dict[str, Any]) -> None: ...


def check_trackers(names: list[str]) -> None:
    """Before any run: every tracker is known and installed (one line saying how to install it otherwise)."""
    for name in names:
        if name not in TRACKERS:
            raise UserError(f"--log-to {name!r} is not allowed; choose one of: {', '.join(TRACKERS)}")
        if importlib.util.find_spec(name) is None:
            raise UserError(f"--log-to {name} needs the {name} package: pip install \"adapterbench[{name}]\"")


def make_trackers(names: list[str] | tuple[str, ...]) -> list[Tracker]:
    check_trackers(list(names))
    return [MLflowTracker() for name in names if name == "mlflow"]


def flat_params(record: dict[str, Any]) -> dict[str, str]:
    """The settings worth filtering runs by: loop settings, variant config, task, model, seed and profile."""
    params: dict[str, str] = {"task": str((record.get("task") or {}).get("name")),
                              "variant": str((record.get("variant") or {}).get("name")),
                              "model": str((record.get("model") or {}).get("name")),
                              "seed": str(record.get("seed")), "profile": str(record.get("profile"))}
    for key, value in (record.get("training") or {}).items():
        if not isinstance(value, (dict, list)):
            params[f"training.{key}"] = str(value)
    for key, value in ((record.get("variant") or {}).get("config") or {}).items():
        params[f"variant.{key}"] = str(value)
    return params


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """Final task metrics and every numeric measurement, with MLflow-safe names (``/`` kept, finite values)."""
    out: dict[str, float] = {}
    for key, value in ((record.get("metrics") or {}).get("final") or {}).items():
        out[key] = value
    for key, value in (record.get("measurements") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


class MLflowTracker(Tracker):
    """Settings as params, the loss per step, final metrics and measurements, the status as a tag."""

    def __init__(self) -> None:
        import mlflow

        self.mlflow = mlflow
        self.run: Any = None
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # The local file store needs no server or database; MLflow 3 keeps it behind an explicit opt-in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(f"file:{os.path.abspath('mlruns')}")

    def run_started(self, record: dict[str, Any]) -> None:
        self.mlflow.set_experiment("adapterbench")
        self.run = self.mlflow.start_run(run_name=str(record.get("run_id")))
        self.mlflow.log_params(flat_params(record))
        self.mlflow.set_tags({"adapterbench.run_id": str(record.get("run_id"))})

    def step_end(self, state: TrainState, step: StepInfo) -> None:
        if self.run is not None:
            self.mlflow.log_metric("train/loss", step.loss, step=state.step)

    def run_finished(self, record: dict[str, Any]) -> None:
        if self.run is None:
            return
        self.mlflow.log_metrics(final_metrics(record))
        self.mlflow.set_tag("status", str(record.get("status")))
        self.mlflow.end_run(status="FINISHED" if record.get("status") == "ok" else "FAILED")
        self.run = None
