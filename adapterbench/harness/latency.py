"""Inference overhead as users meet it: latency at batch 1 and at the evaluation batch size, merged and unmerged.

What is timed (fixed counts, so every record costs the same and says what it measured):

* at the evaluation batch size, ``latency_batches`` batches of the length-sorted evaluation split, taken at evenly
  spaced quantiles of its batches (one batch: the median one);
* at batch 1, ``BATCH1_EXAMPLES`` single examples at evenly spaced length quantiles (the 1/8, 3/8, 5/8 and 7/8
  quantiles) — bottleneck adapters add sequential layers whose cost shows most there;
* each input ``WARMUP`` untimed pass, then ``REPEATS`` timed passes per model, the models alternating input by
  input (and their order rotating every repeat), so the trained and the base model see the same machine load;
  the untimed pass is skipped where a model ran that input just before (the trained model on the evaluation
  batches it has just evaluated; every model in the merged phase).

A model's latency is the mean over the inputs of the median over the repeats, in seconds per forward pass; the
ratio is trained over base. A variant that can merge is timed unmerged (as trained), then merged, each phase
against the base model timed beside it; ``inference/latency_ratio`` (the headline) is the merged figure at the
evaluation batch size, as deployed.

Counts, chosen so that the check costs a few per cent of a quick-profile run on a CPU (where one MiniLM pass over
an evaluation batch of 64 takes about a second on a shared core): with the defaults (1 batch, 4 single examples,
3 timed passes per input and model) a mergeable variant costs 13 passes at the evaluation batch size (1 untimed
for the base model, 2 phases x 2 models x 3) and 56 at batch 1, a variant that cannot merge 7 and 32; the previous
protocol took 64 passes at the evaluation batch size (4 batches spread over the lengths, 2 warm-up + 5 timed
passes, 2 models, plus 8 for the merge check) and none at batch 1.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from adapterbench.harness.data import iterate, sorted_batches
from adapterbench.harness.measure import synchronize

BATCH1_EXAMPLES = 4
WARMUP = 1
REPEATS = 3


def quantile_picks(n: int, count: int) -> list[int]:
    """``count`` positions of ``range(n)`` at the quantiles (i + 1/2) / count, i = 0..count-1 (distinct if n >= count)."""
    if n <= 0 or count <= 0:
        return []
    return sorted({min(n - 1, int((i + 0.5) * n / count)) for i in range(count)})


def representative_batches(lengths: list[int], batch_size: int, count: int) -> list[list[int]]:
    """Example indices of ``count`` evaluation batches at evenly spaced length quantiles (count=1: the median)."""
    batches = sorted_batches(lengths, batch_size)
    return [batches[i] for i in quantile_picks(len(batches), count)]


def representative_singles(lengths: list[int], count: int = BATCH1_EXAMPLES) -> list[list[int]]:
    """``count`` one-example batches at evenly spaced length quantiles."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [[order[i]] for i in quantile_picks(len(order), count)]


def interleaved_latency(models: list[nn.Module], inputs: list[dict[str, torch.Tensor]], device: torch.device,
                        autocast: Any, warmup: int = WARMUP, repeats: int = REPEATS, warm: list[bool] | None = None
                        ) -> tuple[list[float], list[list[torch.Tensor]]]:
    """(seconds per pass of each model: mean over inputs of the median over repeats, each model's logits).

    ``warm[m]`` True skips model m's untimed passes (it ran these very inputs moments ago). The logits of each
    model's first timed pass on every input are returned (as float32) so that a caller can compare two models'
    outputs without paying for extra passes.
    """
    if not inputs:
        return [float("nan")] * len(models), [[] for _ in models]
    for model in models:
        model.eval()
    times = [[[] for _ in inputs] for _ in models]  # model -> input -> repeats
    logits: list[list[torch.Tensor]] = [[] for _ in models]
    with torch.inference_mode():
        for m, model in enumerate(models):
            if not (warm and warm[m]):
                for batch in inputs:
                    for _ in range(warmup):
                        with autocast():
                            model(**_features(batch))
        for r in range(repeats):
            order = [(m + r) % len(models) for m in range(len(models))]
            for b, batch in enumerate(inputs):
                features = _features(batch)
                for m in order:
                    synchronize(device)
                    start = time.perf_counter()
                    with autocast():
                        out = models[m](**features)
                    synchronize(device)
                    times[m][b].append(time.perf_counter() - start)
                    if r == 0:
                        logits[m].append(out.logits.float())
    seconds = [sum(_median(per_input) for per_input in per_model) / len(inputs) for per_model in times]
    return seconds, logits


def inference_overhead(variant: Any, model: nn.Module, base_model: nn.Module, examples: list[dict[str, Any]],
                       batch_size: int, batches: int, pad_token_id: int, device: torch.device, autocast: Any
                       ) -> dict[str, Any]:
    """``inference/*`` keys for the trained ``model`` against the unadapted ``base_model`` (see the module doc)."""
    lengths = [len(e["input_ids"]) for e in examples]

    def tensors(groups: list[list[int]]) -> list[dict[str, torch.Tensor]]:
        return [{k: v.to(device) for k, v in b.items()} for b in iterate(examples, groups, pad_token_id)]

    full = tensors(representative_batches(lengths, batch_size, batches))
    single = tensors(representative_singles(lengths))
    out: dict[str, Any] = {"inference/timed_batches": len(full), "inference/batch1_examples": len(single),
                           "inference/repeats": REPEATS, "inference/merged": False}

    # The trained model has just evaluated these very batches: only the base model needs its untimed pass, and
    # only once (merging changes the weights in place, not what runs).
    unmerged = _timed_phase(model, base_model, full, single, device, autocast, [True, False])
    if variant.mergeable:
        out.update(_ratios(unmerged, "inference/unmerged_", "inference/batch1_unmerged_"))
        variant.merge(model)
        try:
            merged = _timed_phase(model, base_model, full, single, device, autocast, [True, True])
        finally:
            variant.unmerge(model)
        out["inference/merged"] = True
        # Merging must keep the function: the record says by how much the logits moved (evaluation batches).
        out["inference/merge_max_abs_logit_diff"] = max(
            float((a - b).abs().max()) for a, b in zip(unmerged["logits"], merged["logits"]))
        headline = merged
    else:
        headline = unmerged
    out.update(_ratios(headline, "inference/", "inference/batch1_"))
    return out


def _timed_phase(model: nn.Module, base_model: nn.Module, full: list[dict[str, torch.Tensor]],
                 single: list[dict[str, torch.Tensor]], device: torch.device, autocast: Any, warm: list[bool]
                 ) -> dict[str, Any]:
    (trained, base), logits = interleaved_latency([model, base_model], full, device, autocast, warm=warm)
    # Single examples: nothing ran them before the first phase; both models did in the first phase.
    (trained1, base1), _ = interleaved_latency([model, base_model], single, device, autocast,
                                               warm=[warm[1], warm[1]])
    return {"trained": trained, "base": base, "trained1": trained1, "base1": base1, "logits": logits[0]}


def _ratios(phase: dict[str, Any], full_prefix: str, single_prefix: str) -> dict[str, float]:
    return {f"{full_prefix}latency_ratio": phase["trained"] / phase["base"],
            f"{full_prefix}latency_s": phase["trained"], f"{full_prefix}base_latency_s": phase["base"],
            f"{single_prefix}latency_ratio": phase["trained1"] / phase["base1"],
            f"{single_prefix}latency_s": phase["trained1"], f"{single_prefix}base_latency_s": phase["base1"]}


def _features(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
