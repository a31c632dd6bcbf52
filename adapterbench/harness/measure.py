"""Measurements. They only observe: nothing here changes the model, the optimizer or the data.

* Parameters are counted by ``requires_grad``; the task head (outside ``model.base_model``) apart from the
  adapter, because papers count adapters only while their code also trains the head.
* Peak memory: on CUDA the peak allocated (and reserved) after a reset, minus what was allocated before training;
  on CPU the process's peak resident set during training (Linux ``VmHWM``, reset through ``clear_refs``) minus the
  resident set before training. Each run is its own process, so one run's memory never leaks into the next.
* Time: device-synchronised wall clocks; throughput over a steady window that leaves out warm-up steps.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from adapterbench.variants.base import head_parameters


def count_parameters(model: nn.Module, original_ids: set[int], missing: set[str] = frozenset()) -> dict[str, Any]:
    """``params/*`` keys.

    ``original_ids`` are the ids of the model's parameters before the variant was applied; ``missing`` the names
    of those the checkpoint did not have (the freshly initialised head). Both kinds count as newly added.
    """
    params = list(model.parameters())
    head_ids = {id(p) for p in head_parameters(model)}
    total = sum(p.numel() for p in params)
    trainable = [p for p in params if p.requires_grad]
    head = sum(p.numel() for p in trainable if id(p) in head_ids)
    adapter = sum(p.numel() for p in trainable if id(p) not in head_ids)
    new = sum(p.numel() for name, p in model.named_parameters() if id(p) not in original_ids or name in missing)
    return {
        "params/total": total,
        "params/trainable": adapter + head,
        "params/trainable_adapter": adapter,
        "params/trainable_head": head,
        "params/new": new,
        "params/trainable_percent": 100.0 * (adapter + head) / total if total else 0.0,
    }


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Exact bytes of trainable weights, their gradients and the optimizer state (after a step)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer_bytes = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                optimizer_bytes += value.numel() * value.element_size()
    return {
        "memory/trainable_weights_bytes": sum(p.numel() * p.element_size() for p in trainable),
        "memory/gradients_bytes": sum(p.grad.numel() * p.grad.element_size() for p in trainable
                                      if p.grad is not None),
        "memory/optimizer_state_bytes": optimizer_bytes,
    }


class PeakMemory:
    """Peak memory of the training steps, minus what was in use when training began.

    Evaluation between epochs is left out: :meth:`pause` banks the peak so far, :meth:`resume` resets the peak
    counter, and the reported peak is the largest of the training segments.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.before = 0
        self.before_reserved = 0
        self.peak = 0
        self.peak_reserved = 0
        self.cpu_reset_ok = False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
            self.before_reserved = torch.cuda.memory_reserved(self.device)
        else:
            self.before = _cpu_rss_bytes()
        self.resume()

    def resume(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.cpu_reset_ok = _reset_cpu_peak()

    def pause(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))
            self.peak_reserved = max(self.peak_reserved, torch.cuda.max_memory_reserved(self.device))
        else:
            self.peak = max(self.peak, _cpu_peak_rss_bytes())

    def stop(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            return {"memory/peak_bytes": self.peak - self.before, "memory/peak_basis": "cuda_allocated",
                    "memory/cuda_peak_reserved_bytes": self.peak_reserved - self.before_reserved,
                    "memory/before_train_bytes": self.before}
        return {"memory/peak_bytes": max(0, self.peak - self.before), "memory/peak_basis": "cpu_rss",
                "memory/cpu_peak_rss_bytes": self.peak, "memory/before_train_bytes": self.before,
                # Without the reset the high-water mark may predate training (model loading).
                "memory/cpu_peak_reset": self.cpu_reset_ok}


def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_rss_bytes() -> int:
    kib = _proc_status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    return _ru_maxrss_bytes()


def _cpu_peak_rss_bytes() -> int:
    kib = _proc_status_kib("VmHWM")
    return kib * 1024 if kib is not None else _ru_maxrss_bytes()


def _reset_cpu_peak() -> bool:
    # Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTimer:
    """Training time: whole steps for throughput, and the compute part for the overhead share.

    ``step_done`` gets the wall time of a whole step (fetching and collating the batch, hooks, forward, backward,
    optimizer step, bookkeeping); steps after the first ``warmup`` ones form the steady window that throughput is
    measured over. ``compute_begin``/``compute_end`` bracket forward, backward and the optimizer step only.
    """

    device: torch.device
    warmup: int
    steps: int = 0
    compute_s: float = 0.0
    steady_s: float = 0.0
    steady_steps: int = 0
    steady_samples: int = 0
    steady_tokens: int = 0
    _started: float = field(default=0.0, repr=False)

    def compute_begin(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def compute_end(self) -> None:
        synchronize(self.device)
        self.compute_s += time.perf_counter() - self._started

    def step_done(self, elapsed_s: float, samples: int, tokens: int) -> None:
        self.steps += 1
        if self.steps > self.warmup:
            self.steady_s += elapsed_s
            self.steady_steps += 1
            self.steady_samples += samples
            self.steady_tokens += tokens

