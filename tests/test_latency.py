"""The inference-overhead check: which inputs it times, how it times them, and what a run records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from adapterbench.harness import latency
from adapterbench.harness.latency import (
    inference_overhead,
    interleaved_latency,
    quantile_picks,
    representative_batches,
    representative_singles,
)
from adapterbench.harness.loop import autocast_factory
from adapterbench.harness.run import RunSpec, execute
from adapterbench.testing import PAD_ID, save_tiny_model, tiny_model, toy_examples
from adapterbench.variants import VARIANTS
from adapterbench.variants.targets import arch_for

TASK_FILE = str(Path(__file__).parent / "data" / "tasks" / "sentiment.toml")
CPU = torch.device("cpu")


def no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_quantile_picks():
    assert quantile_picks(8, 4) == [1, 3, 5, 7]  # (i + 1/2) * 8 / 4
    assert quantile_picks(9, 1) == [4]  # the median
    assert quantile_picks(3, 4) == [0, 1, 2]  # never more positions than there are
    assert quantile_picks(0, 4) == [] and quantile_picks(5, 0) == []


def test_representative_inputs_span_the_lengths():
    lengths = [5, 40, 12, 33, 7, 21, 28, 3, 15, 9, 50, 18]
    # sorted longest first in batches of 4: [50,40,33,28] [21,18,15,12] [9,7,5,3]; the median batch is the middle
    assert [sorted(lengths[i] for i in b) for b in representative_batches(lengths, 4, 1)] == [[12, 15, 18, 21]]
    assert len(representative_batches(lengths, 4, 3)) == 3
    singles = representative_singles(lengths, 4)
    assert all(len(s) == 1 for s in singles)
    # 12 examples by length: picks at positions 1, 4, 7, 10 -> lengths 5, 12, 21, 40
    assert [lengths[s[0]] for s in singles] == [5, 12, 21, 40]


class Clocked(nn.Module):
    """A model whose forward pass advances a fake clock by ``cost`` and returns its own logits."""

    def __init__(self, clock: list[float], cost: float, log: list[str], name: str):
        super().__init__()
        self.clock, self.cost, self.log, self.name = clock, cost, log, name

    def forward(self, input_ids, attention_mask=None):
        self.clock[0] += self.cost
        self.log.append(self.name)
        return type("Out", (), {"logits": torch.full((input_ids.shape[0], 2), self.cost)})()


def test_interleaved_latency_medians_rotation_and_warmup(monkeypatch):
    clock, log = [0.0], []
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    a, b = Clocked(clock, 2.0, log, "a"), Clocked(clock, 1.0, log, "b")
    inputs = [{"input_ids": torch.ones(n, 3, dtype=torch.long)} for n in (1, 2)]
    (ta, tb), logits = interleaved_latency([a, b], inputs, CPU, no_autocast, warmup=1, repeats=3)
    assert (ta, tb) == (2.0, 1.0)
    warm, timed = log[:4], log[4:]
    assert warm == ["a", "a", "b", "b"]  # one untimed pass per input and model
    # per repeat and input the models alternate, and who goes first rotates every repeat
    assert timed == ["a", "b", "a", "b", "b", "a", "b", "a", "a", "b", "a", "b"]
    assert [x.shape[0] for x in logits[0]] == [1, 2] and float(logits[1][0][0, 0]) == 1.0
    log.clear()
    interleaved_latency([a, b], inputs, CPU, no_autocast, warmup=1, repeats=1, warm=[True, False])
    assert log == ["b", "b", "a", "b", "a", "b"]  # only the model not yet warm gets untimed passes


@pytest.mark.parametrize("name", ["lora", "houlsby"])
def test_inference_overhead_keys_and_merge_round_trip(name):
    torch.manual_seed(0)
    model, base = tiny_model("bert"), tiny_model("bert")
    variant = VARIANTS.get(name)(VARIANTS.get(name).Config())
    variant.apply(model, arch_for(model))
    with torch.no_grad():  # a trained-looking adapter, so that merging changes the weights
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples = toy_examples(20)
    m = inference_overhead(variant, model, base, examples, 8, 1, PAD_ID, CPU, autocast_factory(CPU, "fp32"))
    assert m["inference/timed_batches"] == 1 and m["inference/batch1_examples"] == 4
    assert m["inference/repeats"] == latency.REPEATS
    for key in ("inference/latency_ratio", "inference/batch1_latency_ratio"):
        assert m[key] > 0
    assert m["inference/latency_ratio"] == m["inference/latency_s"] / m["inference/base_latency_s"]
    mergeable = variant.mergeable
    assert m["inference/merged"] is mergeable
    assert ("inference/unmerged_latency_ratio" in m) is mergeable
    assert ("inference/batch1_unmerged_latency_ratio" in m) is mergeable
    if mergeable:
        assert m["inference/merge_max_abs_logit_diff"] < 1e-4
    after = model.state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # unmerged again


def test_a_run_records_the_time_breakdown_and_both_batch_sizes(tmp_path):
    folder = save_tiny_model(tmp_path / "tiny", "bert")
    spec = RunSpec(variant="lora", task=TASK_FILE, model=str(folder), seed=0, profile="smoke",
                   overrides={"max_steps": 2}, out_dir=str(tmp_path / "out"))
    record = execute(spec)
    assert record["status"] == "ok", record["error"]
    m = record["measurements"]
    parts = ("time/setup_s", "time/train_s", "time/eval_s", "time/checkpoint_s", "time/latency_check_s")
    assert all(m[k] > 0 for k in parts)
    assert sum(m[k] for k in parts) <= m["time/wall_s"]
    assert m["inference/merged"] is True and m["inference/batch1_latency_ratio"] > 0
    assert m["inference/unmerged_latency_ratio"] > 0 and m["inference/batch1_unmerged_latency_ratio"] > 0
    off = execute(RunSpec(**{**spec.__dict__, "overrides": {"max_steps": 2, "latency_batches": 0}}))
    assert "time/latency_check_s" not in off["measurements"]
    assert not any(k.startswith("inference/") for k in off["measurements"])

