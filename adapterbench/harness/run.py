"""One run, in this process: load, adapt, train, evaluate, measure, and build the record.

:class:`RunSpec` is everything that defines a run; :func:`execute` turns it into a record whatever happens —
status ``ok``, ``diverged`` (non-finite loss), ``oom`` (out of memory) or ``failed`` (any other error, with the
traceback kept in the record).
"""

from __future__ import annotations

import os
import random
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adapterbench.errors import UserError
from adapterbench.harness.environment import environment
from adapterbench.harness.head import start_at_mean
from adapterbench.harness.latency import inference_overhead
from adapterbench.harness.learning import learned_part
from adapterbench.harness.loop import Diverged, autocast_factory, train_and_evaluate
from adapterbench.harness.measure import count_parameters
from adapterbench.harness.records import (
    SCHEMA_VERSION,
    checkpoint_path,
    make_run_id,
    write_predictions,
)
from adapterbench.harness.settings import TrainSettings, resolve_lr, resolve_settings, split_overrides
from adapterbench.harness.trackers import make_trackers
from adapterbench.models import ModelRef, load_model, load_tokenizer, resolve_model
from adapterbench.tasks import get_task
from adapterbench.tasks.encode import encode_split
from adapterbench.tasks.fingerprint import data_identity
from adapterbench.tasks.spec import TaskSpec
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import Variant, build_config
from adapterbench.variants.targets import arch_for

SUBSET_SEED = 0  # every variant and seed sees the same training subset; seeds vary init and order
HOLDOUT_SPLIT = "train_holdout"  # the evaluated split of a run with holdout_samples (a sweep's trial)


@dataclass
class RunSpec:
    variant: str
    task: str
    model: str
    seed: int
    profile: str
    overrides: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    out_dir: str = "results"
    # The content fingerprint of the data the run reads (tasks.fingerprint.data_identity); part of its identity,
    # so the same command on other data is another run, never "already done".
    data_fingerprint: str = ""
    # What the run is part of (a sweep's trial or final, ...); recorded, never part of the identity.
    tags: dict[str, Any] = field(default_factory=dict)
    # Experiment trackers that also get the run (``--log-to mlflow``); never part of the identity.
    trackers: list[str] = field(default_factory=list)
    # Where they write and which matrix the run belongs to (trackers.open_matrix); never part of the identity.
    tracker_options: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return make_run_id(self.task, self.variant, self.model, self.profile, self.seed, self.overrides,
                           data=self.data_fingerprint)


@dataclass(frozen=True)
class ResolvedRun:
    """A run with every name and default resolved, once: what preflight checks, the record states and the run
    uses. Building it raises :class:`UserError` for any bad setting, before anything trains."""

    spec: RunSpec
    variant_cls: type[Variant]
    variant_overrides: dict[str, Any]
    origin: str
    settings: TrainSettings
    lr: float
    device: torch.device
    precision: str
    task: TaskSpec
    model: ModelRef

    def new_variant(self) -> Variant:
        """A fresh variant instance (variants hold per-run state, so each run builds its own)."""
        return self.variant_cls(build_config(self.variant_cls, dict(self.variant_overrides)))

    @property
    def loop_task(self) -> TaskSpec:
        """The task as the loop sees it: with ``holdout_samples`` the only evaluated split is the held-out one;
        with ``eval_holdout`` the held-out one comes first (the primary split), then the task's own."""
        if self.settings.holdout_samples:
            return self.task.derive(eval_splits=(HOLDOUT_SPLIT,))
        if self.settings.eval_holdout:
            return self.task.derive(eval_splits=(HOLDOUT_SPLIT, *self.task.eval_splits))
        return self.task


def resolve(spec: RunSpec) -> ResolvedRun:
    entry = VARIANTS.entry(spec.variant)
    variant_cls = entry.load()
    train_over, variant_over = split_overrides(spec.overrides, spec.variant, variant_cls.config_keys())
    build_config(variant_cls, variant_over)  # unknown keys raise here
    settings = resolve_settings(spec.profile, train_over, spec.task)
    device, precision = select_device(settings)
    return ResolvedRun(spec=spec, variant_cls=variant_cls, variant_overrides=variant_over, origin=entry.origin,
                       settings=settings,
                       lr=resolve_lr(spec.profile, spec.variant, variant_cls.default_lr, settings, spec.task),
                       device=device, precision=precision, task=get_task(spec.task), model=resolve_model(spec.model))


def planned_settings(spec: RunSpec) -> TrainSettings:
    """The loop settings ``spec`` would train with now, its learning rate resolved (``--set lr``, else the
    profile's for its task and variant, else the paper's).

    The profile's settings are not part of the run id (a run id hashes the user's overrides only), so a record
    written before a profile changed (a new learning rate, more epochs) has this run's id but other settings:
    see :func:`adapterbench.harness.matrix.is_done`.
    """
    variant_cls = VARIANTS.entry(spec.variant).load()
    train_over, _ = split_overrides(spec.overrides, spec.variant, variant_cls.config_keys())
    settings = resolve_settings(spec.profile, train_over, spec.task)
    return replace(settings, lr=resolve_lr(spec.profile, spec.variant, variant_cls.default_lr, settings, spec.task))


def prepare_variant(spec: RunSpec) -> tuple[type[Variant], Variant, TrainSettings, str]:
    """The variant instance and loop settings of ``spec`` (kept for callers that need only these)."""
    run = resolve(spec)
    return run.variant_cls, run.new_variant(), run.settings, run.origin


def select_device(settings: TrainSettings) -> tuple[torch.device, str]:
    if settings.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(settings.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device={settings.device!r} but CUDA is not available; use device=cpu or auto")
    precision = settings.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and _native_bf16(device) else "fp32"
    return device, precision


def _native_bf16(device: torch.device) -> bool:
    # Emulated bf16 (pre-Ampere GPUs) is slower than fp32, so "auto" only picks it where it is native.
    with torch.cuda.device(device):
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 has no including_emulation and does not count emulation
            return torch.cuda.is_bf16_supported()


def subset_ids(n: int, limit: int | None, salt: str = "") -> list[int]:
    """Indices of a fixed random subset of ``range(n)`` (same for every variant and seed), in order."""
    if limit is None or n <= limit:
        return list(range(n))
    return sorted(random.Random(f"{SUBSET_SEED}{salt}" if salt else SUBSET_SEED).sample(range(n), limit))


def subset(examples: list[Any], limit: int | None) -> list[Any]:
    """A fixed random subset (same for every variant and seed), in the original order."""
    return [examples[i] for i in subset_ids(len(examples), limit)]


def split_train(n: int, settings: TrainSettings) -> tuple[list[int], list[int]]:
    """(training ids, held-out ids) of a training split of ``n`` examples.

    The held-out examples are a fixed subset drawn first (its own salt, so it does not move when
    ``max_train_samples`` changes); the training subset is then drawn from the rest.
    """
    size = settings.holdout_samples or settings.eval_holdout
    held = subset_ids(n, size, salt="holdout") if size else []
    if len(held) >= n:
        key = "holdout_samples" if settings.holdout_samples else "eval_holdout"
        raise UserError(f"{key}={size} leaves no training examples "
                        f"(the training split has {n}); give a smaller number")
    held_set = set(held)
    rest = [i for i in range(n) if i not in held_set]
    return [rest[i] for i in subset_ids(len(rest), settings.max_train_samples)], held


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def base_record(spec: RunSpec) -> dict[str, Any]:
    """The record of ``spec`` before it runs: identity, resolved config, task, model, loop settings.

    Every piece that resolves is filled in, so that a run that fails (or whose process dies) is still grouped
    with its successful siblings by the reports; ``status`` starts as ``failed`` until the run succeeds.
    """
    record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "status": "failed",
                              "error": None, "seed": spec.seed, "profile": spec.profile,
                              "variant": {"name": spec.variant}, "task": {"name": spec.task},
                              "model": {"name": spec.model}, "training": {"overrides": spec.overrides},
                              "data": {"fingerprint": spec.data_fingerprint}, "tags": spec.tags}
    try:
        describe_run(record, resolve(spec))
    except UserError:
        pass  # the run itself raises it again and records the message
    return record


def describe_run(record: dict[str, Any], run: ResolvedRun) -> None:
    """The record's variant, training, task, data and model sections, from the resolved run."""
    record["variant"] = {"name": run.spec.variant, "origin": run.origin, "config": asdict(run.new_variant().config),
                         "mergeable": run.variant_cls.mergeable}
    record["training"] = {**run.settings.as_dict(), "lr": run.lr, "precision": run.precision,
                          "device": str(run.device), "overrides": run.spec.overrides}
    record["task"] = task_summary(run.loop_task)
    record["data"] = data_identity(run.task, run.spec.data_dir)
    record["model"] = {"name": run.model.name, "path": run.model.path, "weights_sha256": run.model.weights_sha256}


def execute(spec: RunSpec, progress: Any = None) -> dict[str, Any]:
    """Run ``spec`` and return its record (never raises for a failed run; ``UserError`` is recorded too)."""
    wall_start = time.perf_counter()
    record = base_record(spec)
    trackers = make_trackers(spec.trackers, spec.tracker_options) if spec.trackers else []
    _notify(trackers, "run_started", record)
    try:
        _run(resolve(spec), record, progress, wall_start, trackers)
        record["status"] = "ok"
    except Exception as exc:  # a benchmark matrix goes on; the record keeps the traceback
        record.update(status=status_of(exc), error=_error(exc))
    record.setdefault("measurements", {})["time/wall_s"] = time.perf_counter() - wall_start
    training = record.get("training", {})
    record["environment"] = environment(training.get("device"), training.get("precision"))
    record["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _notify(trackers, "run_finished", record)
    return record


# Allocators that report exhaustion as a plain RuntimeError: the CPU one ("DefaultCPUAllocator: can't allocate
# memory: you tried to allocate ..."), and MPS/XPU ("... out of memory"); CUDA has its own exception type.
OOM_MESSAGES = ("DefaultCPUAllocator: can't allocate memory", "out of memory")


def status_of(exc: BaseException) -> str:
    """The record status of an exception that ended a run: ``diverged``, ``oom`` or ``failed``."""
    if isinstance(exc, Diverged):
        return "diverged"
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return "oom"
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in OOM_MESSAGES):
        return "oom"
    return "failed"


def _notify(trackers: list[Any], event: str, record: dict[str, Any]) -> None:
    """A tracker that fails costs a note in the record, never the run."""
    for tracker in trackers:
        try:
            getattr(tracker, event)(record)
        except Exception as exc:  # noqa: BLE001 - an external service's error must not end the matrix
            record.setdefault("notes", []).append(f"tracker {type(tracker).__name__}.{event} failed: {exc}")


def _run(run: ResolvedRun, record: dict[str, Any], progress: Any, started: float,
         observers: list[Any] | None = None) -> None:
    spec, settings, task, device, precision, ref = run.spec, run.settings, run.task, run.device, run.precision, run.model
    variant = run.new_variant()

    seed_everything(spec.seed)
    tokenizer = load_tokenizer(ref)
    data_dir = Path(spec.data_dir) if spec.data_dir else None
    train_all = encode_split(task, task.train_split, tokenizer, settings.max_length, data_dir)
    train_ids, held_ids = split_train(len(train_all), settings)
    train = [train_all[i] for i in train_ids]
    if settings.holdout_samples:  # selection split: the reported eval splits are not even read
        eval_ids = {HOLDOUT_SPLIT: held_ids}
        evals = {HOLDOUT_SPLIT: [train_all[i] for i in held_ids]}
    else:
        eval_ids, evals = {}, {}
        for split in task.eval_splits:
            examples = encode_split(task, split, tokenizer, settings.max_length, data_dir)
            eval_ids[split] = subset_ids(len(examples), settings.max_eval_samples)
            evals[split] = [examples[i] for i in eval_ids[split]]
        if settings.eval_holdout:  # the primary split first: the loop's task lists it first
            eval_ids = {HOLDOUT_SPLIT: held_ids, **eval_ids}
            evals = {HOLDOUT_SPLIT: [train_all[i] for i in held_ids], **evals}
    loop_task = run.loop_task
    record["training"].update(train_examples=len(train), eval_examples={k: len(v) for k, v in evals.items()})

    model, missing = _load(ref, task, tokenizer, device)
    record["model"]["model_type"] = getattr(model.config, "model_type", None)
    original_ids = {id(p) for p in model.parameters()}
    if task.kind == "regression":
        record["training"]["head_bias_init"] = start_at_mean(model, set(missing), [e["labels"] for e in train])

    seed_everything(spec.seed)  # the adapter's initialisation depends only on the seed
    arch = _arch_or_none(model)
    variant.apply(model, arch)
    model.to(device)
    measurements = record.setdefault("measurements", {})
    measurements.update(count_parameters(model, original_ids, set(missing)))

    measurements["time/setup_s"] = time.perf_counter() - started  # resolve, tokenize, load, adapt
    # A sweep trial trains as many steps as its final: the held-out examples leave the data, not the budget.
    budget = min(len(train_all), settings.max_train_samples or len(train_all))
    result = train_and_evaluate(model, variant, loop_task, train, evals, settings, run.lr, spec.seed, device,
                                precision, tokenizer.pad_token_id, progress, observers=observers,
                                budget_examples=budget)
    measurements.update(result.measurements)
    record["training"].update(total_steps=result.total_steps, steps_per_epoch=result.steps_per_epoch)
    record["history"] = result.history
    record["steps"] = {"loss": result.step_losses, "time_s": result.step_times}
    deployed = {point: _deployed(variant, model, point, measurements) for point in [None, *variant.eval_points()]}
    measurements["params/deployed_adapter"] = deployed[None]
    for entry in result.points:
        entry["params/deployed_adapter"] = deployed[entry["point"]]
    primary_key = f"{loop_task.primary_split}/{loop_task.primary_metric}"
    record["metrics"] = {
        "primary": {"name": loop_task.primary_metric, "split": loop_task.primary_split,
                    "value": result.final.get(primary_key), "best_value": result.best.get(primary_key),
                    "best_epoch": result.best.get("epoch")},
        "final": result.final, "best": result.best, "points": result.points,
    }
    record["learned"] = learned_part(loop_task, train, result.predictions, result.references)
    record["variant_info"] = variant.describe(model)
    saving_start = time.perf_counter()
    record["predictions"] = write_predictions(Path(spec.out_dir), spec.run_id, eval_ids, result.references,
                                              result.predictions)

    if settings.save_checkpoint:
        measurements.update(_save_checkpoint(variant, model, Path(spec.out_dir), spec.run_id))
    measurements["time/checkpoint_s"] = time.perf_counter() - saving_start  # predictions and checkpoint
    if settings.latency_batches > 0 and evals:
        latency_start = time.perf_counter()
        # A second load costs ~0.03 s once the first has warmed the page cache and the classes (a deep copy
        # made before training: ~0.3 s for MiniLM, and a second model resident during training).
        base_model, _ = _load(ref, task, tokenizer, device)
        measurements.update(inference_overhead(variant, model, base_model, next(iter(evals.values())),
                                               settings.eval_batch_size, settings.latency_batches,
                                               tokenizer.pad_token_id, device, autocast_factory(device, precision)))
        del base_model
        measurements["time/latency_check_s"] = time.perf_counter() - latency_start


def _deployed(variant: Variant, model: torch.nn.Module, point: Any, measurements: dict[str, Any]) -> int:
    """Adapter parameters kept when deployed at ``point``; every trained one unless the variant says fewer."""
    count = variant.deployed_parameters(model, point)
    return int(measurements["params/trainable_adapter"] if count is None else count)


def _load(ref: ModelRef, task: TaskSpec, tokenizer: Any, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    model, missing = load_model(ref, task.kind, task.num_labels, tokenizer.pad_token_id)
    if task.labels and task.kind != "regression":
        model.config.id2label = dict(enumerate(task.labels))
        model.config.label2id = {label: i for i, label in enumerate(task.labels)}
    return model.to(device), missing


def _arch_or_none(model: torch.nn.Module) -> Any:
    try:
        return arch_for(model)
    except UserError:
        return None  # variants that need roles raise their own error listing the module names


def _save_checkpoint(variant: Variant, model: torch.nn.Module, out_dir: Path, run_id: str) -> dict[str, Any]:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in variant.adapter_state_dict(model).items()}
    path = checkpoint_path(out_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"variant": variant.name, "run_id": run_id})
    os.replace(tmp, path)
    return {"checkpoint/bytes": path.stat().st_size, "checkpoint/file": str(path.relative_to(out_dir)),
            "checkpoint/tensors": len(tensors)}


def task_summary(task: TaskSpec) -> dict[str, Any]:
    return {"name": task.name, "version": task.version, "kind": task.kind, "primary_metric": task.primary_metric,
            "primary_split": task.primary_split, "greater_is_better": task.greater_is_better,
            "eval_splits": list(task.eval_splits), "origin": task.origin}


def _error(exc: BaseException) -> dict[str, str]:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"type": type(exc).__name__, "message": message, "traceback": traceback.format_exc()}
