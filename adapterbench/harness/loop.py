"""The one training and evaluation loop, identical for every variant.

The hook order, written once (every hook is a no-op unless the variant overrides it); ``watch.*`` are the
observers (:mod:`adapterbench.harness.observers`: timing, memory, state bytes, step log, trackers), which only
read::

    variant.apply(model, arch)                         # module surgery, requires_grad
    optimizer = AdamW(variant.param_groups(model, lr, weight_decay))
    scheduler = linear warm-up then linear decay to 0 over total_steps
    watch.train_start; variant.on_train_start(state)   # total_steps known
    for epoch in epochs:
        for batch in length-grouped batches:
            watch.step_start; variant.on_step_start(state)   # e.g. DyLoRA samples the rank
            watch.compute_start
            loss = model(batch).loss                   # bf16 autocast on CUDA, fp32 on CPU
            loss = loss + variant.extra_loss(state)    # e.g. AdaLoRA's orthogonality regulariser
            loss.backward(); clip_grad_norm_(max_grad_norm); optimizer.step()
            watch.compute_end
            variant.on_optimizer_step(state)           # gradients still present (AdaLoRA allocation)
            scheduler.step(); optimizer.zero_grad()
            watch.step_end(samples, tokens, loss, step wall time)
        watch.eval_start; evaluate every eval split (default eval point) -> history; watch.eval_end
    watch.train_end; variant.on_train_end(state)
    for point in variant.eval_points():                # e.g. DyLoRA: every rank
        with variant.use_eval_point(model, point): evaluate   (bracketed by watch.eval_start/eval_end)

``apply`` is called by the runner (before parameters are counted); this module does the rest. A non-finite loss
stops training and raises :class:`Diverged`. Every evaluation keeps its per-example predictions.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from adapterbench.harness.data import iterate, length_grouped_batches, sorted_batches
from adapterbench.harness.measure import synchronize
from adapterbench.harness.observers import (
    Memory,
    Observer,
    Observers,
    StateBytes,
    StepInfo,
    StepLog,
    Throughput,
)
from adapterbench.harness.settings import TrainSettings
from adapterbench.schema import TRAIN_LOSS
from adapterbench.tasks.metrics import compute_metrics
from adapterbench.tasks.spec import TaskSpec
from adapterbench.variants.base import TrainState, Variant


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class LoopResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 0
    steps_per_epoch: int = 0
    # Per optimizer step: the training loss and the wall time of the whole step (hooks and collation included).
    step_losses: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    # Per-example outputs for paired tests: {point key: {split: [prediction, ...]}} ("final" is as trained) and
    # {split: [reference, ...]} in the order of the evaluation examples.
    predictions: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    references: dict[str, list[Any]] = field(default_factory=dict)


def autocast_factory(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """lr factor: (t + 1) / warmup for t < warmup (no step at lr 0), then (total - t) / (total - warmup) >= 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def schedule_steps(n_train: int, settings: TrainSettings) -> tuple[int, int]:
    """``(steps_per_epoch, total_steps)``: ceil(n / batch) per epoch, times epochs (or ``train_steps`` when
    set), capped by ``max_steps``."""
    steps_per_epoch = math.ceil(n_train / settings.batch_size)
    total_steps = settings.train_steps or steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    return steps_per_epoch, total_steps


def train_and_evaluate(model: nn.Module, variant: Variant, task: TaskSpec, train: list[dict[str, Any]],
                       evals: dict[str, list[dict[str, Any]]], settings: TrainSettings, lr: float, seed: int,
                       device: torch.device, precision: str, pad_token_id: int,
                       progress: Callable[[int, int, float], None] | None = None,
                       observers: list[Observer] | None = None, budget_examples: int | None = None) -> LoopResult:
    """Train ``model`` (already prepared by ``variant.apply``) and evaluate it; returns metrics and timings.

    ``observers`` (an experiment tracker, say) are added to the measurements every run records (throughput,
    memory, state bytes, step log); they see every event and change nothing. ``budget_examples``: the number of
    training examples the step budget is computed from when it is not ``len(train)`` (a sweep trial, whose
    held-out examples leave the data but not the budget, so that it trains as many steps as its final).
    """
    result = LoopResult()
    autocast = autocast_factory(device, precision)
    result.steps_per_epoch = schedule_steps(len(train), settings)[0]
    result.total_steps = schedule_steps(budget_examples or len(train), settings)[1]
    variant.validate_schedule(result.total_steps)

    optimizer = torch.optim.AdamW(variant.param_groups(model, lr, settings.weight_decay), lr=lr)
    scheduler = linear_schedule(optimizer, int(settings.warmup_ratio * result.total_steps), result.total_steps)
    state = TrainState(model=model, optimizer=optimizer, step=0, total_steps=result.total_steps)
    throughput = Throughput(device, warmup=min(settings.warmup_steps_excluded, max(0, result.total_steps - 1)),
                            eval_examples=sum(len(v) for v in evals.values()))
    steps = StepLog()
    watch = Observers([throughput, Memory(device), StateBytes(), steps, *(observers or [])])

    def evaluate_here() -> tuple[dict[str, float], dict[str, list[Any]], dict[str, list[Any]]]:
        return evaluate_all(model, task, evals, settings, device, autocast, pad_token_id)

    watch.train_start(state)
    variant.on_train_start(state)
    for epoch in range(math.ceil(result.total_steps / max(1, result.steps_per_epoch))):
        if state.step >= result.total_steps:
            break
        state.epoch = epoch
        losses = train_epoch(model, variant, state, optimizer, scheduler, train, settings, seed, device, autocast,
                             pad_token_id, watch, progress)
        watch.eval_start()
        metrics, result.predictions["final"], result.references = evaluate_here()  # last epoch = as trained
        entry = {"epoch": epoch + 1, "step": state.step, TRAIN_LOSS: float(np.mean(losses)) if losses else None,
                 "time_s": throughput.train_s, **metrics, **dict(state.log)}
        watch.eval_end(entry)
        result.history.append(entry)
    watch.train_end(state)
    variant.on_train_end(state)
    result.final = {k: v for k, v in result.history[-1].items() if "/" in k and k.split("/")[0] in evals}
    result.best = best_epoch(result.history, task, tuple(evals))

    for point in variant.eval_points():  # e.g. DyLoRA: one evaluation per rank
        if point is None:
            result.points.append({"point": None, **result.final})
            continue
        watch.eval_start()
        with variant.use_eval_point(model, point):
            metrics, predictions, _ = evaluate_here()
        watch.eval_end(metrics)
        result.points.append({"point": point, **metrics})
        result.predictions[point_key(point)] = predictions

    result.step_losses, result.step_times = steps.losses, steps.times
    result.measurements = watch.measurements()  # the throughput observer's include the evaluation figures
    return result


def train_epoch(model: nn.Module, variant: Variant, state: TrainState, optimizer: torch.optim.Optimizer,
                scheduler: Any, train: list[dict[str, Any]], settings: TrainSettings, seed: int,
                device: torch.device, autocast: Any, pad_token_id: int, watch: Observer,
                progress: Callable[[int, int, float], None] | None) -> list[float]:
    """One epoch of optimizer steps, in the order of the module docstring; returns the step losses."""
    model.train()
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    lengths = [len(e["input_ids"]) for e in train]
    batches = length_grouped_batches(lengths, settings.batch_size, seed=seed * 1000 + state.epoch)
    losses: list[float] = []
    step_clock = time.perf_counter()
    for batch in iterate(train, batches, pad_token_id):
        if state.step >= state.total_steps:
            break
        samples, tokens = batch["input_ids"].shape[0], int(batch["attention_mask"].sum())  # on the host
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        watch.step_start(state)
        variant.on_step_start(state)
        watch.compute_start()
        with autocast():
            loss = model(**batch).loss
            extra = variant.extra_loss(state)
            if extra is not None:
                loss = loss + extra
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        watch.compute_end()
        state.loss = loss.detach()
        loss_value = float(state.loss)  # one host sync per step; compute is already synchronised
        if not math.isfinite(loss_value):
            raise Diverged(f"loss became {loss_value} at step {state.step + 1} (epoch {state.epoch + 1})")
        losses.append(loss_value)
        variant.on_optimizer_step(state)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        synchronize(device)
        now = time.perf_counter()
        watch.step_end(state, StepInfo(samples=samples, tokens=tokens, loss=loss_value, elapsed_s=now - step_clock))
        step_clock = now
        if progress:
            progress(state.step, state.total_steps, loss_value)
    synchronize(device)
    return losses


def best_epoch(history: list[dict[str, Any]], task: TaskSpec, splits: tuple[str, ...]) -> dict[str, Any]:
    """The epoch with the best primary metric (direction-aware): ``{"epoch", "<split>/<metric>": ...}``.

    Only the evaluation metrics of ``splits`` are kept (not the scalars variants log into the history).
    """
    key = f"{task.primary_split}/{task.primary_metric}"
    best: dict[str, Any] = {}
    for entry in history:
        value = entry.get(key)
        if value is None:
            continue
        if not best or _better(value, best[key], task.greater_is_better):
            best = {"epoch": entry["epoch"],
                    **{k: v for k, v in entry.items() if "/" in k and k.split("/")[0] in splits}}
    return best


def _better(value: float, best: float, greater_is_better: bool) -> bool:
    return value > best if greater_is_better else value < best


def point_key(point: Any) -> str:
    """How an evaluation point is named in the predictions sidecar: "final" for as-trained, else ``str(point)``."""
    return "final" if point is None else str(point)


def evaluate_all(model: nn.Module, task: TaskSpec, evals: dict[str, list[dict[str, Any]]],
                 settings: TrainSettings, device: torch.device, autocast: Any, pad_token_id: int
                 ) -> tuple[dict[str, float], dict[str, list[Any]], dict[str, list[Any]]]:
    """``({"<split>/<metric>": value}, {split: predictions}, {split: references})`` for every eval split."""
    metrics: dict[str, float] = {}
    predictions: dict[str, list[Any]] = {}
    references: dict[str, list[Any]] = {}
    for split, examples in evals.items():
        predictions[split], references[split] = predict(model, task, examples, settings, device, autocast,
                                                        pad_token_id)
        for name, value in score(task, predictions[split], references[split]).items():
            metrics[f"{split}/{name}"] = value
    return metrics, predictions, references


def score(task: TaskSpec, predictions: list[Any], references: list[Any]) -> dict[str, float | None]:
    """Task metrics from per-example predictions (token tasks keep their ragged lists). An undefined metric (a
    correlation with constant predictions: NaN) is None, which the record stores as null."""
    if task.kind != "token_classification":
        predictions, references = np.asarray(predictions), np.asarray(references)
    scores = compute_metrics(task, predictions, references)
    return {k: float(v) if math.isfinite(v) else None for k, v in scores.items()}


def predict(model: nn.Module, task: TaskSpec, examples: list[dict[str, Any]], settings: TrainSettings,
            device: torch.device, autocast: Any, pad_token_id: int) -> tuple[list[Any], list[Any]]:
    """Per-example predictions and references, in the original example order.

    Classification: the argmax label id; regression: the float output; token classification: the label ids of
    the first sub-word of each word (the words the metric scores).
    """
    was_training = model.training
    model.eval()
    lengths = [len(e["input_ids"]) for e in examples]
    predictions: list[Any] = [None] * len(examples)
    references: list[Any] = [None] * len(examples)
    with torch.inference_mode():
        for indices in sorted_batches(lengths, settings.eval_batch_size):
            batch = next(iterate(examples, [indices], pad_token_id))
            labels = batch.pop("labels")
            with autocast():
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            for row, index in enumerate(indices):
                if task.kind == "regression":
                    predictions[index] = float(logits[row, 0])
                    references[index] = float(labels[row])
                elif task.kind == "token_classification":
                    keep = labels[row] != -100  # first sub-word of each word only
                    predictions[index] = logits[row].argmax(-1)[keep].tolist()
                    references[index] = labels[row][keep].tolist()
                else:
                    predictions[index] = int(logits[row].argmax(-1))
                    references[index] = int(labels[row])
    model.train(was_training)
    return predictions, references
