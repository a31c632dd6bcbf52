"""The one training and evaluation loop, identical for every variant.

The hook order, written once (every hook is a no-op unless the variant overrides it)::

    variant.apply(model, arch)                         # module surgery, requires_grad
    optimizer = AdamW(variant.param_groups(model, lr, weight_decay))
    scheduler = linear warm-up then linear decay to 0 over total_steps
    variant.on_train_start(state)                      # total_steps known
    for epoch in epochs:
        for batch in length-grouped batches:
            variant.on_step_start(state)               # e.g. DyLoRA samples the rank
            loss = model(batch).loss                   # bf16 autocast on CUDA, fp32 on CPU
            loss = loss + variant.extra_loss(state)    # e.g. AdaLoRA's orthogonality regulariser
            loss.backward(); clip_grad_norm_(max_grad_norm); optimizer.step()
            variant.on_optimizer_step(state)           # gradients still present (AdaLoRA allocation)
            scheduler.step(); optimizer.zero_grad()
        evaluate every eval split (default eval point) -> history
    variant.on_train_end(state)
    for point in variant.eval_points():                # e.g. DyLoRA: every rank
        with variant.use_eval_point(model, point): evaluate

``apply`` is called by the runner (before parameters are counted); this module does the rest. Measurement only
observes. A non-finite loss stops training and raises :class:`Diverged`.
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
from adapterbench.harness.measure import PeakMemory, StepTimer, state_bytes, synchronize
from adapterbench.harness.settings import TrainSettings
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


def train_and_evaluate(model: nn.Module, variant: Variant, task: TaskSpec, train: list[dict[str, Any]],
                       evals: dict[str, list[dict[str, Any]]], settings: TrainSettings, lr: float, seed: int,
                       device: torch.device, precision: str, pad_token_id: int,
                       progress: Callable[[int, int, float], None] | None = None) -> LoopResult:
    """Train ``model`` (already prepared by ``variant.apply``) and evaluate it; returns metrics and timings."""
    result = LoopResult()
    autocast = autocast_factory(device, precision)
    lengths = [len(e["input_ids"]) for e in train]
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    variant.validate_schedule(total_steps)
    result.total_steps, result.steps_per_epoch = total_steps, steps_per_epoch

    optimizer = torch.optim.AdamW(variant.param_groups(model, lr, settings.weight_decay), lr=lr)
    scheduler = linear_schedule(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    state = TrainState(model=model, optimizer=optimizer, step=0, total_steps=total_steps)
    timer = StepTimer(device, warmup=min(settings.warmup_steps_excluded, max(0, total_steps - 1)))
    memory = PeakMemory(device)
    train_wall = 0.0
    eval_wall = 0.0
    best_value: float | None = None

    memory.start()
    variant.on_train_start(state)
    for epoch in range(settings.epochs):
        if state.step >= total_steps:
            break
        state.epoch = epoch
        model.train()
        epoch_start = time.perf_counter()
        losses: list[float] = []
        batches = length_grouped_batches(lengths, settings.batch_size, seed=seed * 1000 + epoch)
        step_clock = time.perf_counter()
        for batch in iterate(train, batches, pad_token_id):
            if state.step >= total_steps:
                break
            samples, tokens = batch["input_ids"].shape[0], int(batch["attention_mask"].sum())  # on the host
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            variant.on_step_start(state)
            timer.compute_begin()
            with autocast():
                loss = model(**batch).loss
                extra = variant.extra_loss(state)
                if extra is not None:
                    loss = loss + extra
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            timer.compute_end()
            state.loss = loss.detach()
            loss_value = float(state.loss)  # one host sync per step; compute is already synchronised
            if not math.isfinite(loss_value):
                raise Diverged(f"loss became {loss_value} at step {state.step + 1} (epoch {epoch + 1})")
            losses.append(loss_value)
            result.step_losses.append(loss_value)
            if state.step == 0:
                result.measurements.update(state_bytes(model, optimizer))
            variant.on_optimizer_step(state)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            synchronize(device)
            now = time.perf_counter()
            timer.step_done(now - step_clock, samples, tokens)
            result.step_times.append(now - step_clock)
            step_clock = now
            if progress:
                progress(state.step, total_steps, loss_value)
        synchronize(device)
        train_wall += time.perf_counter() - epoch_start

        memory.pause()  # evaluation memory is not training memory
        eval_start = time.perf_counter()
        metrics, predictions, result.references = evaluate_all(model, task, evals, settings, device, autocast,
                                                               pad_token_id)
        result.predictions["final"] = predictions  # the last epoch's evaluation is the as-trained one
        eval_wall += time.perf_counter() - eval_start
        memory.resume()
        entry = {"epoch": epoch + 1, "step": state.step, "train_loss": float(np.mean(losses)) if losses else None,
                 "time_s": train_wall, **metrics, **dict(state.log)}
        result.history.append(entry)
        value = metrics.get(f"{task.primary_split}/{task.primary_metric}")
        if value is not None and (best_value is None or _better(value, best_value, task.greater_is_better)):
            best_value = value
            result.best = {"epoch": epoch + 1, **metrics}
    memory.pause()
    result.measurements.update(memory.stop())
    variant.on_train_end(state)
    result.final = {k: v for k, v in result.history[-1].items() if "/" in k and k.split("/")[0] in evals}

    points = variant.eval_points()
    eval_start = time.perf_counter()
    for point in points:
        if point is None:
            result.points.append({"point": None, **result.final})
            continue
        with variant.use_eval_point(model, point):
            metrics, predictions, _ = evaluate_all(model, task, evals, settings, device, autocast, pad_token_id)
        result.points.append({"point": point, **metrics})
        result.predictions[point_key(point)] = predictions
    eval_wall += time.perf_counter() - eval_start

    samples = timer.steady_samples
    result.measurements.update({
        "throughput/train_samples_per_s": samples / timer.steady_s if timer.steady_s else None,
        "throughput/train_tokens_per_s": timer.steady_tokens / timer.steady_s if timer.steady_s else None,
        "throughput/steady_steps": timer.steady_steps,
        "time/train_s": train_wall,
        "time/eval_s": eval_wall,
        "time/train_overhead_fraction": max(0.0, 1.0 - timer.compute_s / train_wall) if train_wall else None,
    })
    n_eval = sum(len(v) for v in evals.values())
    evaluations = len(result.history) + sum(1 for p in points if p is not None)
    result.measurements["throughput/eval_samples_per_s"] = (n_eval * evaluations / eval_wall) if eval_wall else None
    return result


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


def score(task: TaskSpec, predictions: list[Any], references: list[Any]) -> dict[str, float]:
    """Task metrics from per-example predictions (token tasks keep their ragged lists)."""
    if task.kind != "token_classification":
        return {k: float(v) for k, v in compute_metrics(task, np.asarray(predictions), np.asarray(references)).items()}
    return {k: float(v) for k, v in compute_metrics(task, predictions, references).items()}


def evaluate(model: nn.Module, task: TaskSpec, examples: list[dict[str, Any]], settings: TrainSettings,
             device: torch.device, autocast: Any, pad_token_id: int) -> dict[str, float]:
    """Task metrics of ``model`` on ``examples``."""
    return score(task, *predict(model, task, examples, settings, device, autocast, pad_token_id))


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
