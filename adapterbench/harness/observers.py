"""Observers: measurements attached to the loop. They read; they never change the model or the optimizer.

Composer calls these callbacks (``speed_monitor``, ``memory_monitor``); here they are a small fixed set of named
events, called by :func:`adapterbench.harness.loop.train_and_evaluate` in this order::

    train_start(state)
    per step:  step_start(state) -> compute_start() -> compute_end() -> step_end(state, step)
    per epoch: eval_start() -> eval_end(history entry)
    train_end(state)
    measurements() -> {key: value}      # merged into the record's measurements

A new measurement is a key in :mod:`adapterbench.schema`'s table plus one observer (or a few lines in one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from adapterbench.harness.measure import PeakMemory, StepTimer, state_bytes, synchronize
from adapterbench.variants.base import TrainState


@dataclass(frozen=True)
class StepInfo:
    """What one finished optimizer step was: its size, its loss and its whole wall time."""

    samples: int
    tokens: int  # non-padding tokens
    loss: float
    elapsed_s: float  # fetching and collating the batch, hooks, forward, backward, optimizer step, bookkeeping


class Observer:
    """Every event is a no-op by default; override what you measure."""

    def train_start(self, state: TrainState) -> None: ...
    def step_start(self, state: TrainState) -> None: ...
    def compute_start(self) -> None: ...
    def compute_end(self) -> None: ...
    def step_end(self, state: TrainState, step: StepInfo) -> None: ...
    def eval_start(self) -> None: ...
    def eval_end(self, entry: dict[str, Any]) -> None: ...
    def train_end(self, state: TrainState) -> None: ...

    def measurements(self) -> dict[str, Any]:
        return {}


class Observers(Observer):
    """Fan each event out to every observer, in order."""

    def __init__(self, observers: list[Observer]):
        self.observers = list(observers)

    def train_start(self, state: TrainState) -> None:
        for o in self.observers:
            o.train_start(state)

    def step_start(self, state: TrainState) -> None:
        for o in self.observers:
            o.step_start(state)

    def compute_start(self) -> None:
        for o in self.observers:
            o.compute_start()

    def compute_end(self) -> None:
        for o in self.observers:
            o.compute_end()

    def step_end(self, state: TrainState, step: StepInfo) -> None:
        for o in self.observers:
            o.step_end(state, step)

    def eval_start(self) -> None:
        for o in self.observers:
            o.eval_start()

    def eval_end(self, entry: dict[str, Any]) -> None:
        for o in self.observers:
            o.eval_end(entry)

    def train_end(self, state: TrainState) -> None:
        for o in self.observers:
            o.train_end(state)

    def measurements(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for o in self.observers:
            out.update(o.measurements())
        return out


class Throughput(Observer):
    """``throughput/*`` over the steady window (whole steps after warm-up) and the overhead share.

    ``time/train_s`` is the wall time of training steps only (evaluation excluded); the overhead share is the part
    of it outside forward, backward and the optimizer step.
    """

    def __init__(self, device: torch.device, warmup: int, eval_examples: int = 0):
        self.timer = StepTimer(device, warmup=warmup)
        self.device = device
        self.eval_examples = eval_examples  # examples per evaluation, for eval samples/s
        self.train_s = 0.0
        self.eval_s = 0.0
        self.evaluations = 0
        self.tokens_seen = 0
        self._segment: float | None = None  # start of the open training segment; None outside training
        self._eval_started = 0.0
        self._done = False

    def train_start(self, state: TrainState) -> None:
        self._segment = time.perf_counter()

    def compute_start(self) -> None:
        self.timer.compute_begin()

    def compute_end(self) -> None:
        self.timer.compute_end()

    def step_end(self, state: TrainState, step: StepInfo) -> None:
        self.timer.step_done(step.elapsed_s, step.samples, step.tokens)
        self.tokens_seen += step.tokens

    def eval_start(self) -> None:
        synchronize(self.device)
        if self._segment is not None:  # evaluation points after training close no training segment
            self.train_s += time.perf_counter() - self._segment
        self._eval_started = time.perf_counter()

    def eval_end(self, entry: dict[str, Any]) -> None:
        self.eval_s += time.perf_counter() - self._eval_started
        self.evaluations += 1
        if not self._done:
            self._segment = time.perf_counter()

    def train_end(self, state: TrainState) -> None:
        # The last epoch's evaluation closed the last segment; what follows (evaluation points) is not training.
        self._segment, self._done = None, True

    def measurements(self) -> dict[str, Any]:
        t = self.timer
        return {
            "throughput/train_samples_per_s": t.steady_samples / t.steady_s if t.steady_s else None,
            "throughput/train_tokens_per_s": t.steady_tokens / t.steady_s if t.steady_s else None,
            "throughput/steady_steps": t.steady_steps,
            "throughput/tokens_seen": self.tokens_seen,
            "time/train_s": self.train_s,
            "time/eval_s": self.eval_s,
            "throughput/eval_samples_per_s": (self.eval_examples * self.evaluations / self.eval_s
                                              if self.eval_s else None),
            "time/train_overhead_fraction": max(0.0, 1.0 - t.compute_s / self.train_s) if self.train_s else None,
        }


class Memory(Observer):
    """``memory/*``: peak during training steps minus what was in use before; evaluation is left out."""

    def __init__(self, device: torch.device):
        self.memory = PeakMemory(device)
        self.result: dict[str, Any] = {}

    def train_start(self, state: TrainState) -> None:
        self.memory.start()

    def eval_start(self) -> None:
        if not self.result:  # evaluation memory is not training memory; after training nothing is measured
            self.memory.pause()

    def eval_end(self, entry: dict[str, Any]) -> None:
        if not self.result:
            self.memory.resume()

    def train_end(self, state: TrainState) -> None:
        self.memory.pause()
        self.result = self.memory.stop()

    def measurements(self) -> dict[str, Any]:
        return self.result


class StateBytes(Observer):
    """Exact bytes of trainable weights, gradients and optimizer state, read after the first step (state exists)."""

    def __init__(self) -> None:
        self.result: dict[str, Any] = {}

    def step_end(self, state: TrainState, step: StepInfo) -> None:
        if not self.result:
            self.result = state_bytes(state.model, state.optimizer)

    def measurements(self) -> dict[str, Any]:
        return self.result


class StepLog(Observer):
    """The loss and wall time of every optimizer step (the record's ``steps``; the nightly's speed band)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.times: list[float] = []

    def step_end(self, state: TrainState, step: StepInfo) -> None:
        self.losses.append(step.loss)
        self.times.append(step.elapsed_s)
