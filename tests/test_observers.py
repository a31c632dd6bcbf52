"""Observers see the loop's events in the documented order and change nothing about training."""

from __future__ import annotations

import torch

from adapterbench.harness.loop import train_and_evaluate
from adapterbench.harness.observers import Observer
from adapterbench.harness.settings import TrainSettings
from adapterbench.testing import PAD_ID, tiny_model, toy_examples, toy_task
from adapterbench.variants.lora import LoRA, LoRAConfig

SETTINGS = TrainSettings(epochs=2, batch_size=2, eval_batch_size=4, max_length=16, warmup_ratio=0.0,
                         weight_decay=0.0, warmup_steps_excluded=0)


class Recorder(Observer):
    def __init__(self):
        self.events: list[str] = []
        self.tokens = 0

    def train_start(self, state): self.events.append("train_start")
    def step_start(self, state): self.events.append("step_start")
    def compute_start(self): self.events.append("compute_start")
    def compute_end(self): self.events.append("compute_end")

    def step_end(self, state, step):
        self.events.append("step_end")
        self.tokens += step.tokens

    def eval_start(self): self.events.append("eval_start")
    def eval_end(self, entry): self.events.append("eval_end")
    def train_end(self, state): self.events.append("train_end")


def run(observers=None):
    torch.manual_seed(0)
    model = tiny_model("bert")
    variant = LoRA(LoRAConfig(r=2, targets="query,value"))
    variant.apply(model, None)
    torch.manual_seed(0)
    train = toy_examples(6)
    return train, train_and_evaluate(model, variant, toy_task(), train, {"validation": toy_examples(4, seed=1)},
                                     SETTINGS, lr=1e-2, seed=0, device=torch.device("cpu"), precision="fp32",
                                     pad_token_id=PAD_ID, observers=observers)


def test_events_arrive_in_the_documented_order_and_observing_changes_nothing():
    recorder = Recorder()
    train, observed = run([recorder])
    _, plain = run()
    step = ["step_start", "compute_start", "compute_end", "step_end"]
    epoch = step * 3 + ["eval_start", "eval_end"]
    assert recorder.events == ["train_start", *epoch, *epoch, "train_end"]
    # A tracker that counts tokens: the step events carry the non-padding token count of each batch.
    assert recorder.tokens == 2 * sum(len(e["input_ids"]) for e in train)
    # The same count as a built-in measurement (schema entry + the throughput observer, nothing else).
    assert observed.measurements["throughput/tokens_seen"] == recorder.tokens
    assert observed.step_losses == plain.step_losses  # bit-identical: observers only read
    assert observed.final == plain.final
    assert len(observed.step_times) == observed.total_steps == 6
    for key in ("throughput/train_samples_per_s", "time/train_s", "time/eval_s", "memory/peak_bytes",
                "memory/optimizer_state_bytes", "time/train_overhead_fraction"):
        assert observed.measurements[key] is not None, key


def test_training_time_excludes_every_evaluation_including_points_after_training(monkeypatch):
    import adapterbench.harness.observers as obs

    clock = iter([0.0, 10.0, 10.0, 12.0, 12.0, 20.0, 25.0])  # train, eval, train end, a point's eval
    monkeypatch.setattr(obs.time, "perf_counter", lambda: next(clock))
    t = obs.Throughput(torch.device("cpu"), warmup=0)
    t.train_start(None)   # 0
    t.eval_start()        # 10: 10 s of training, eval starts at 10
    t.eval_end({})        # 12: 2 s of evaluation; the next segment starts at 12
    t.train_end(None)     # no steps after the last evaluation
    t.eval_start()        # 20: an evaluation point
    t.eval_end({})        # 25
    assert t.train_s == 10.0 and t.eval_s == 7.0 and t.evaluations == 2
