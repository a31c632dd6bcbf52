"""Experiment trackers: observers of the loop that also see the finished record (``--log-to mlflow,wandb,...``).

A tracker is an :class:`~adapterbench.harness.observers.Observer` with two more events from the runner::

    run_started(record)              # the resolved settings: params / config, tags (task, variant, seed)
    step_start -> step_end           # per optimizer step: train/loss and train/lr (the rate that step used)
    eval_end(history entry)          # per epoch: every evaluation metric, the epoch's mean loss, at its step
    run_finished(record)             # final metrics and measurements, status; MLflow: record + predictions

Like every observer it only reads. A tracker that fails costs a note in the record, never the run: a failure in
a loop event stops that tracker and is raised again from ``run_finished`` (which the runner turns into a note).

A matrix is one unit for the trackers too (:func:`open_matrix`, called once by ``bench run`` before its runs):
MLflow gets a parent run that every run of the matrix is a child of (``mlflow.parentRunId``), W&B a ``group``,
TensorBoard a folder. What each run needs to join it travels in :class:`~adapterbench.harness.run.RunSpec`'s
``tracker_options`` (plain JSON, so worker processes and Ray tasks get it; paths are absolute).

Each backend is an optional extra, checked before any run (one line saying how to install it otherwise):

* ``mlflow`` (``pip install "adapterbench[mlflow]"``): ``MLFLOW_TRACKING_URI`` when set (a tracking server),
  else the local file store ``./mlruns``, which MLflow 3 refuses unless ``MLFLOW_ALLOW_FILE_STORE=true``; bench
  sets that variable for its own processes when it uses the default store.
* ``wandb`` (``pip install "adapterbench[wandb]"``): project = the experiment name; ``WANDB_MODE=offline``
  writes ``./wandb/offline-run-*`` for a later ``wandb sync``.
* ``tensorboard`` (``pip install "adapterbench[tensorboard]"``): event files in
  ``./tensorboard/<experiment>/<run id>/`` (``tensorboard --logdir tensorboard``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.harness.observers import Observer, StepInfo
from adapterbench.variants.base import TrainState

# name -> the module it needs (the extra has the tracker's name)
TRACKERS = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboard"}
DEFAULT_EXPERIMENT = "adapterbench"
IDENTITY_TAGS = ("task", "variant", "seed")  # what a user filters runs by: tags, not params


def check_trackers(names: list[str]) -> None:
    """Before any run: every tracker is known and installed (one line saying how to install it otherwise)."""
    for name in names:
        if name not in TRACKERS:
            raise UserError(f"--log-to {name!r} is not allowed; choose one or more of: {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise UserError(f"--log-to {name} needs the {TRACKERS[name]} package: "
                            f"pip install \"adapterbench[{name}]\"")


# ---- what a record says, as trackers take it ------------------------------------------------------------------
def identity_tags(record: dict[str, Any]) -> dict[str, str]:
    return {"task": str((record.get("task") or {}).get("name")),
            "variant": str((record.get("variant") or {}).get("name")), "seed": str(record.get("seed")),
            "adapterbench.run_id": str(record.get("run_id"))}


def flat_params(record: dict[str, Any]) -> dict[str, str]:
    """The settings worth comparing runs by: model, profile, loop settings and variant config (task, variant
    and seed are tags, :func:`identity_tags`)."""
    params: dict[str, str] = {"model": str((record.get("model") or {}).get("name")),
                              "profile": str(record.get("profile"))}
    for key, value in (record.get("training") or {}).items():
        if not isinstance(value, (dict, list)):
            params[f"training.{key}"] = str(value)
    for key, value in ((record.get("variant") or {}).get("config") or {}).items():
        params[f"variant.{key}"] = str(value)
    return params


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """Final task metrics, every numeric measurement, and each evaluation point's metrics as ``<key>@<point>``
    (DyLoRA's ranks); finite values only."""
    out: dict[str, float] = {}
    metrics = record.get("metrics") or {}
    for key, value in (metrics.get("final") or {}).items():
        out[key] = value
    for key, value in (record.get("measurements") or {}).items():
        out[key] = value
    for entry in metrics.get("points") or []:
        if entry.get("point") is not None:
            out.update({f"{k}@{entry['point']}": v for k, v in entry.items() if "/" in k})
    return {k: float(v) for k, v in out.items() if _finite(v)}


def epoch_metrics(entry: dict[str, Any]) -> dict[str, float]:
    """A history entry's numbers (metrics, mean loss, variant scalars, the epoch) without its step."""
    return {k: float(v) for k, v in entry.items() if k != "step" and _finite(v)}


# ---- the tracker base: loop events guarded, step values buffered ----------------------------------------------
class Tracker(Observer):
    """Subclasses implement ``start(record)``, ``log(values, step)`` and ``finish(record)``."""

    def __init__(self, options: dict[str, Any]):
        self.options = options
        self.failure: str | None = None
        self._lr: float | None = None
        self.started = False
        self.last_step = 0  # the last step anything was logged at (final values go there)
        self.logged: set[str] = set()  # keys logged during training (the final task metrics repeat the last epoch)

    def start(self, record: dict[str, Any]) -> None: ...
    def log(self, values: dict[str, float], step: int) -> None: ...
    def finish(self, record: dict[str, Any]) -> None: ...

    def run_started(self, record: dict[str, Any]) -> None:
        self.start(record)
        self.started = True

    def _log(self, values: dict[str, float], step: int) -> None:
        if not self.started or self.failure:
            return
        try:
            self.log(values, step)
        except Exception as exc:  # noqa: BLE001 - a tracker never ends a run; run_finished reports it
            self.failure = f"{type(exc).__name__}: {exc}"
            return
        self.last_step = max(self.last_step, step)
        self.logged.update(values)

    def step_start(self, state: TrainState) -> None:
        # The scheduler steps before step_end, so the rate this step trains with is read here. The first group's
        # rate is the run's learning rate (LoRA+'s B group runs at a multiple of it).
        optimizer = state.optimizer
        self._lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else None

    def step_end(self, state: TrainState, step: StepInfo) -> None:
        values = {"train/loss": step.loss, **({"train/lr": self._lr} if self._lr is not None else {})}
        self._log(values, state.step)

    def eval_end(self, entry: dict[str, Any]) -> None:
        if "epoch" in entry:  # an epoch's evaluation; evaluation points come with the final metrics
            self._log(epoch_metrics(entry), int(entry.get("step", 0)))

    def run_finished(self, record: dict[str, Any]) -> None:
        if not self.started:
            return
        self.finish(record)
        self.started = False
        if self.failure:
            raise RuntimeError(f"logging during training stopped: {self.failure}")


# ---- MLflow -------------------------------------------------------------------------------------------------
def mlflow_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the file store ``./mlruns`` (absolute: Ray workers run elsewhere), which
    MLflow 3 opens only with ``MLFLOW_ALLOW_FILE_STORE=true``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path("mlruns").resolve().as_uri()


def _mlflow_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri)


def _mlflow_experiment(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # another worker created it first
        return client.get_experiment_by_name(name).experiment_id


class MLflowTracker(Tracker):
    """A child run of the matrix's parent run: params, tags, loss and lr per step, metrics per epoch, final
    metrics and measurements, the record (``record.json``) and the predictions sidecar as artifacts.

    Through ``MlflowClient`` rather than the fluent API: no process-wide active run, so runs in one process
    (``--in-process``) or the parent in the ``bench`` process never nest by accident.
    """

    def start(self, record: dict[str, Any]) -> None:
        self.client = _mlflow_client(self.options["mlflow_uri"])
        experiment = _mlflow_experiment(self.client, self.options.get("experiment", DEFAULT_EXPERIMENT))
        tags = identity_tags(record)
        if self.options.get("mlflow_parent"):
            tags["mlflow.parentRunId"] = self.options["mlflow_parent"]
        self.run_id = self.client.create_run(experiment, run_name=str(record.get("run_id")), tags=tags).info.run_id
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat_params(record).items()])

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def finish(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        now, final = int(time.time() * 1000), final_metrics(record)
        items = [Metric(k, v, now, self.last_step) for k, v in final.items() if k not in self.logged]
        for i in range(0, len(items), 1000):  # log_batch takes at most 1,000 metrics
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])
        self.client.log_batch(self.run_id, tags=[RunTag("status", str(record.get("status")))])
        self.client.log_dict(self.run_id, record, "record.json")
        sidecar = (record.get("predictions") or {}).get("file")
        if sidecar and self.options.get("out_dir"):
            path = Path(self.options["out_dir"]) / sidecar
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED" if record.get("status") == "ok" else "FAILED")


# ---- Weights & Biases ---------------------------------------------------------------------------------------
class WandbTracker(Tracker):
    """A W&B run in project = the experiment, grouped by matrix; config = params, tags = task/variant/seed, the
    loss and lr per step, metrics per epoch, final metrics and measurements in the run's summary."""

    def start(self, record: dict[str, Any]) -> None:
        import wandb

        tags = identity_tags(record)
        self.run = wandb.init(project=self.options.get("experiment", DEFAULT_EXPERIMENT),
                              name=str(record.get("run_id")), group=self.options.get("group"),
                              dir=self.options.get("wandb_dir"), config={**flat_params(record), **tags},
                              tags=[f"{k}:{tags[k]}" for k in IDENTITY_TAGS],
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def finish(self, record: dict[str, Any]) -> None:
        self.run.summary.update({**final_metrics(record), "status": str(record.get("status"))})
        self.run.finish(exit_code=0 if record.get("status") == "ok" else 1)


# ---- TensorBoard --------------------------------------------------------------------------------------------
class TensorBoardTracker(Tracker):
    """Event files in ``<dir>/<experiment>/<run id>/``: loss and lr per step, metrics per epoch, final metrics
    at the last step, the params as text."""

    def start(self, record: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(self.options["tensorboard_dir"]) / self.options.get("experiment", DEFAULT_EXPERIMENT)
        self.writer = SummaryWriter(log_dir=str(folder / str(record.get("run_id"))))
        params = {**identity_tags(record), **flat_params(record)}
        self.writer.add_text("params", "\n".join(f"    {k} = {v}" for k, v in params.items()), 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, record: dict[str, Any]) -> None:
        for key, value in final_metrics(record).items():
            self.writer.add_scalar(f"final/{key}", value, self.last_step)
        self.writer.add_text("status", str(record.get("status")), self.last_step)
        self.writer.close()


BACKENDS: dict[str, type[Tracker]] = {"mlflow": MLflowTracker, "wandb": WandbTracker,
                                      "tensorboard": TensorBoardTracker}


def make_trackers(names: list[str] | tuple[str, ...], options: dict[str, Any] | None = None) -> list[Tracker]:
    check_trackers(list(names))
    options = options or default_options(list(names))
    return [BACKENDS[name](options) for name in names]


# ---- a matrix: the parent run, the group, the folders -----------------------------------------------------------
def default_options(names: list[str], experiment: str | None = None, out_dir: str | None = None) -> dict[str, Any]:
    """Where each tracker writes, resolved here (absolute paths, the tracking URI) so that every worker agrees."""
    options: dict[str, Any] = {"experiment": experiment or DEFAULT_EXPERIMENT}
    if out_dir:
        options["out_dir"] = str(Path(out_dir).resolve())
    if "mlflow" in names:
        options["mlflow_uri"] = mlflow_uri()
    if "wandb" in names:
        options["wandb_dir"] = str(Path(os.environ.get("WANDB_DIR") or ".").resolve())
    if "tensorboard" in names:
        options["tensorboard_dir"] = str(Path("tensorboard").resolve())
    return options


class MatrixTracking:
    """The trackers' view of one matrix: options for its runs, and the parent MLflow run closed at the end."""

    def __init__(self, names: list[str], experiment: str | None, out_dir: str, title: str, argv: list[str] | None):
        check_trackers(names)
        self.names = names
        self.options = default_options(names, experiment, out_dir)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.options["group"] = f"{Path(out_dir).name}-{stamp}"
        self.parent: str | None = None
        if "mlflow" in names:
            client = _mlflow_client(self.options["mlflow_uri"])
            experiment_id = _mlflow_experiment(client, self.options["experiment"])
            run = client.create_run(experiment_id, run_name=f"matrix {self.options['group']}",
                                    tags={"adapterbench.matrix": title, "adapterbench.out": str(out_dir),
                                          "adapterbench.argv": json.dumps(argv or [])})
            self.parent = self.options["mlflow_parent"] = run.info.run_id

    def close(self, code: int | None) -> None:
        """End the parent run: FINISHED when every run was ok, FAILED otherwise, KILLED when interrupted."""
        if self.parent is None:
            return
        status = "KILLED" if code is None else "FINISHED" if code == 0 else "FAILED"
        _mlflow_client(self.options["mlflow_uri"]).set_terminated(self.parent, status)
        self.parent = None


def open_matrix(specs: list[Any], names: list[str], experiment: str | None = None,
                argv: list[str] | None = None) -> tuple[list[Any], MatrixTracking]:
    """The specs with their trackers and options set, and the matrix's tracking (close it when the matrix ends)."""
    from dataclasses import replace

    out = specs[0].out_dir if specs else "results"
    title = f"{len(specs)} runs: {', '.join(dict.fromkeys(s.variant for s in specs))} on " \
            f"{', '.join(dict.fromkeys(s.task for s in specs))}"
    tracking = MatrixTracking(names, experiment, out, title, argv)
    return [replace(s, trackers=list(names), tracker_options=dict(tracking.options)) for s in specs], tracking
