"""How much does our LoRA layer cost per training step, against the floor, PEFT's LoRA and full fine-tuning?

One training step (forward + backward + AdamW step) of the real MiniLM (``resolve_model("minilm")``, batch 32,
sequence length 64, train mode) for four set-ups, timed *interleaved* in one run: every round runs one step of
each set-up (the order rotated per round, so no set-up always follows the same neighbour), warm-up rounds are
dropped, and each set-up's time is the median over rounds. Ratios are of medians.

1. ``floor``: every weight frozen, but the embedding output requires grad, so backward still traverses every
   layer (input gradients only): the compute no adapter can avoid. It has nothing to update, so no optimizer.
2. ``ours``: ``adapterbench``'s ``lora`` (r=8, alpha=16, query and value, dropout 0) plus the task head.
3. ``peft``: PEFT's LoRA with the same settings (``get_peft_model``, task type SEQ_CLS: the head is trained).
4. ``full``: full fine-tuning.

Memory, measured on one extra step per set-up after the timed rounds (so optimizer state exists):

* ``peak``: the most tensor memory alive at any moment of the step, weights included. On CUDA it is
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. On CPU, where torch keeps no such
  counter, it is replayed from the allocator's trace (``torch.profiler`` with ``profile_memory=True``: every
  allocation and free of the step, in time order): the bytes alive at the start (parameters and optimizer state,
  distinct storages) plus the highest running sum of the step's allocations minus frees. Transient buffers count.
* ``above start``: the same minus what was alive when the step began (activations, gradients, temporaries).
* ``saved`` (CPU only): distinct non-parameter storages autograd saved for backward, seen through
  ``torch.autograd.graph.saved_tensors_hooks``: the activation memory a method needs, without transients.

The targets (ours/floor <= 1.05 and ours/PEFT <= 0.97) are judged on the ratio of median step times and on
``peak``. On a shared machine other processes slow whole stretches of rounds, so the table also gives the
median over rounds of the *paired* ratio (each set-up's step over the floor's step of the same round), which
such drifts affect less; the two agreeing is a sign the numbers are not noise.
Run: ``python benchmarks/lora_step.py [--steps 20] [--warmup 3] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapterbench.models import load_model, resolve_model  # noqa: E402
from adapterbench.variants.lora import LoRA, LoRAConfig  # noqa: E402

BATCH, SEQ_LEN = 32, 64
MiB = 2**20


@dataclass
class Setup:
    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer | None


def make_setups(base: nn.Module, device: torch.device) -> list[Setup]:
    def new(name: str, build: Callable[[nn.Module], tuple[nn.Module, torch.optim.Optimizer | None]]) -> Setup:
        model, optimizer = build(copy.deepcopy(base))
        return Setup(name, model.to(device).train(), optimizer)

    def floor(model):
        for p in model.parameters():
            p.requires_grad_(False)
        # A fresh embedding output that requires grad: backward must traverse every layer down to it.
        model.base_model.embeddings.register_forward_hook(lambda mod, args, out: out.requires_grad_(True))
        return model, None

    def ours(model):
        variant = LoRA(LoRAConfig(r=8, alpha=16, dropout=0.0, targets="query,value"))
        variant.apply(model, None)
        model.to(device)
        return model, torch.optim.AdamW(variant.param_groups(model, 5e-4, 0.0))

    def peft(model):
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"],
                            task_type="SEQ_CLS")
        model = get_peft_model(model, config).to(device)
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4,
                                        weight_decay=0.0)

    def full(model):
        model.to(device)
        return model, torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0)

    return [new("floor", floor), new("ours", ours), new("peft", peft), new("full", full)]


def train_step(setup: Setup, batch: dict[str, torch.Tensor]) -> None:
    loss = setup.model(**batch).loss
    loss.backward()
    if setup.optimizer is not None:
        setup.optimizer.step()
        setup.optimizer.zero_grad(set_to_none=True)


def timed_step(setup: Setup, batch: dict[str, torch.Tensor], cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_step(setup, batch)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def live_bytes(setup: Setup) -> int:
    """Distinct storages alive between steps: parameters, leftover gradients, optimizer state."""
    tensors = [t for p in setup.model.parameters() for t in (p, p.grad) if t is not None]
    if setup.optimizer is not None:
        tensors += [v for s in setup.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t.numel()}
    return sum(storages.values())


def step_memory_cpu(setup: Setup, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Peak, above-start and saved-for-backward bytes of one CPU step (see the module docstring)."""
    from torch.profiler import ProfilerActivity, profile

    param_ptrs = {p.untyped_storage().data_ptr() for p in setup.model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    start = live_bytes(setup)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = setup.model(**batch).loss
        loss.backward()
        if setup.optimizer is not None:
            setup.optimizer.step()
            setup.optimizer.zero_grad(set_to_none=True)
    # Allocation (+bytes) and free (-bytes) events of the CPU allocator, replayed in time order.
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    running = above = 0
    for _, nbytes in events:
        running += nbytes
        above = max(above, running)
    return {"peak": start + above, "above_start": above, "saved": sum(saved.values())}


def step_memory_cuda(setup: Setup, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    train_step(setup, batch)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak": peak, "above_start": peak - before}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="measured rounds (one step per set-up each)")
    parser.add_argument("--warmup", type=int, default=3, help="rounds run first and not measured")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    torch.manual_seed(0)
    base, _ = load_model(resolve_model("minilm"), "classification", 2, 0)
    setups = make_setups(base, device)
    del base
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 20000, (BATCH, SEQ_LEN), generator=g),
             "attention_mask": torch.ones(BATCH, SEQ_LEN, dtype=torch.long),
             "labels": torch.randint(0, 2, (BATCH,), generator=g)}
    batch = {k: v.to(device) for k, v in batch.items()}

    times: dict[str, list[float]] = {s.name: [] for s in setups}
    for round_ in range(args.warmup + args.steps):
        shift = round_ % len(setups)
        for setup in setups[shift:] + setups[:shift]:
            elapsed = timed_step(setup, batch, cuda)
            if round_ >= args.warmup:
                times[setup.name].append(elapsed)
    memory = {s.name: (step_memory_cuda if cuda else step_memory_cpu)(s, batch) for s in setups}
    report(setups, times, memory, args, device)


def report(setups: list[Setup], times: dict[str, list[float]], memory: dict[str, dict[str, float]],
           args: argparse.Namespace, device: torch.device) -> None:
    cuda = device.type == "cuda"
    median = {name: statistics.median(ts) for name, ts in times.items()}
    where = torch.cuda.get_device_name(device) if cuda else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {device} ({where}), MiniLM batch {BATCH} x seq {SEQ_LEN}, "
          f"{args.steps} measured rounds after {args.warmup} warm-up, interleaved")
    mem_cols = ["peak MiB", "above start MiB"] + ([] if cuda else ["saved MiB"])
    paired = {name: statistics.median(t / f for t, f in zip(ts, times["floor"])) for name, ts in times.items()}
    print(f"{'set-up':<7}{'median ms':>11}{'q1 ms':>9}{'q3 ms':>9}{'x floor':>9}{'x peft':>8}{'paired x floor':>16}"
          + "".join(f"{c:>17}" for c in mem_cols) + f"{'peak x floor':>14}{'peak x peft':>13}")
    for s in setups:
        q1, _, q3 = statistics.quantiles(times[s.name], n=4)
        m = memory[s.name]
        print(f"{s.name:<7}{median[s.name] * 1e3:>11.1f}{q1 * 1e3:>9.1f}{q3 * 1e3:>9.1f}"
              f"{median[s.name] / median['floor']:>9.3f}{median[s.name] / median['peft']:>8.3f}"
              f"{paired[s.name]:>16.3f}"
              + "".join(f"{m[k] / MiB:>17.2f}" for k in ("peak", "above_start", "saved") if k in m)
              + f"{m['peak'] / memory['floor']['peak']:>14.3f}{m['peak'] / memory['peft']['peak']:>13.3f}")
    checks = [("time ours/floor", median["ours"] / median["floor"], 1.05),
              ("time ours/peft", median["ours"] / median["peft"], 0.97),
              ("peak ours/floor", memory["ours"]["peak"] / memory["floor"]["peak"], 1.05),
              ("peak ours/peft", memory["ours"]["peak"] / memory["peft"]["peak"], 0.97)]
    print("targets: " + "; ".join(f"{name} {value:.3f} (<= {limit}: {'met' if value <= limit else 'NOT met'})"
                                  for name, value, limit in checks))
    # What the memory target asks for in context: a LoRA that added nothing to the floor would score this.
    print(f"for reference: peak floor/peft {memory['floor']['peak'] / memory['peft']['peak']:.3f}, "
          f"time floor/peft {median['floor'] / median['peft']:.3f} (the best any adapter on top of the floor "
          f"can do)")


if __name__ == "__main__":
    main()
