"""The loop calls every hook, in the documented order, with what each variant family needs.

A dummy variant records every call. The assertions are the three cases the hooks exist for: DyLoRA (a rank
chosen at every step, one evaluation per rank), AdaLoRA (total steps known at start, an extra loss term, a step
after the optimizer step while gradients exist) and LoRA+ (its own parameter groups and learning rates).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import pytest
import torch

from adapterbench.harness.loop import Diverged, train_and_evaluate
from adapterbench.harness.settings import TrainSettings
from adapterbench.testing import tiny_model, toy_examples, toy_task
from adapterbench.variants.base import Variant, VariantConfig, freeze_all_but_head

TASK = toy_task()


@dataclass
class RecorderConfig(VariantConfig):
    ratio: float = 16.0


class Recorder(Variant):
    name = "recorder"
    Config = RecorderConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.calls: list[str] = []
        self.total_steps_at_start = None
        self.grads_seen_after_step: list[bool] = []
        self.rank = None
        self.ranks_at_eval: list = []

    def apply(self, model, arch):
        freeze_all_but_head(model)

    def param_groups(self, model, lr, weight_decay):
        self.calls.append("param_groups")
        weight, bias = [p for p in model.parameters() if p.requires_grad]
        return [{"params": [weight], "lr": lr}, {"params": [bias], "lr": lr * self.config.ratio}]

    def on_train_start(self, state):
        self.calls.append("on_train_start")
        self.total_steps_at_start = state.total_steps

    def on_step_start(self, state):
        self.calls.append("on_step_start")
        self.rank = 1 + state.step % 3  # what DyLoRA does with a random draw

    def extra_loss(self, state):
        self.calls.append("extra_loss")
        return torch.tensor(0.5)

    def on_optimizer_step(self, state):
        self.calls.append("on_optimizer_step")
        self.grads_seen_after_step.append(all(p.grad is not None for p in state.model.parameters()
                                              if p.requires_grad))
        state.log["recorder/rank"] = self.rank

    def on_train_end(self, state):
        self.calls.append("on_train_end")

    def eval_points(self):
        self.calls.append("eval_points")
        return [1, 2]

    @contextlib.contextmanager
    def use_eval_point(self, model, point):
        self.calls.append(f"use_eval_point:{point}")
        previous, self.rank = self.rank, point
        self.ranks_at_eval.append(point)
        yield
        self.rank = previous


def run_recorder(epochs=2, n_train=12, batch_size=4, **settings):
    model = tiny_model("bert")
    variant = Recorder()
    variant.apply(model, None)
    cfg = TrainSettings(epochs=epochs, batch_size=batch_size, eval_batch_size=8, max_length=16,
                        warmup_steps_excluded=1, **settings)
    result = train_and_evaluate(model, variant, TASK, toy_examples(n_train), {"validation": toy_examples(6, 1)},
                                cfg, lr=1e-3, seed=0, device=torch.device("cpu"), precision="fp32",
                                pad_token_id=0)
    return variant, result


def test_hooks_are_called_in_the_documented_order():
    variant, result = run_recorder(epochs=2, n_train=12, batch_size=4)
    steps = 2 * math.ceil(12 / 4)
    per_step = ["on_step_start", "extra_loss", "on_optimizer_step"]
    expected = (["param_groups", "on_train_start"] + per_step * steps
                + ["on_train_end", "eval_points", "use_eval_point:1", "use_eval_point:2"])
    assert variant.calls == expected


def test_adalora_needs_total_steps_at_start_and_gradients_after_the_optimizer_step():
    variant, _ = run_recorder(epochs=2, n_train=12, batch_size=4)
    assert variant.total_steps_at_start == 6
    assert variant.grads_seen_after_step == [True] * 6


def test_extra_loss_is_added_to_the_task_loss():
    torch.manual_seed(0)
    _, with_extra = run_recorder(epochs=1)

    class NoExtra(Recorder):
        def extra_loss(self, state):
            return None

    model = tiny_model("bert")
    variant = NoExtra()
    variant.apply(model, None)
    cfg = TrainSettings(epochs=1, batch_size=4, eval_batch_size=8, max_length=16, warmup_steps_excluded=1)
    without = train_and_evaluate(model, variant, TASK, toy_examples(12), {"validation": toy_examples(6, 1)}, cfg,
                                 lr=1e-3, seed=0, device=torch.device("cpu"), precision="fp32", pad_token_id=0)
    assert with_extra.history[0]["train_loss"] == pytest.approx(without.history[0]["train_loss"] + 0.5, abs=1e-5)


def test_param_groups_keep_their_own_learning_rates():
    model = tiny_model("bert")
    variant = Recorder()
    variant.apply(model, None)
    groups = variant.param_groups(model, 1e-3, 0.0)
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1.6e-2]


def test_one_evaluation_per_eval_point_is_recorded():
    variant, result = run_recorder(epochs=1)
    assert [p["point"] for p in result.points] == [1, 2]
    assert all("validation/accuracy" in p for p in result.points)
    assert variant.ranks_at_eval == [1, 2]
    # the variant's scalars reach the per-epoch history
    assert result.history[-1]["recorder/rank"] in (1, 2, 3)


def test_history_best_and_final_are_recorded_per_epoch():
    _, result = run_recorder(epochs=2)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.final == {"validation/accuracy": result.history[-1]["validation/accuracy"]}
    best = max(h["validation/accuracy"] for h in result.history)
    assert result.best["validation/accuracy"] == best
    m = result.measurements
    assert m["throughput/train_samples_per_s"] > 0 and m["throughput/steady_steps"] == 5
    assert 0 <= m["time/train_overhead_fraction"] < 1
    assert m["memory/trainable_weights_bytes"] == sum(p.numel() * 4 for p in [*tiny_model("bert").classifier.parameters()])


def test_max_steps_stops_training_early():
    variant, result = run_recorder(epochs=3, n_train=12, batch_size=4, max_steps=4)
    assert variant.calls.count("on_optimizer_step") == 4
    assert result.total_steps == 4
    assert len(result.step_losses) == len(result.step_times) == 4


def test_non_finite_loss_raises_diverged():
    class Exploding(Recorder):
        def extra_loss(self, state):
            return torch.tensor(float("nan"))

    model = tiny_model("bert")
    variant = Exploding()
    variant.apply(model, None)
    cfg = TrainSettings(epochs=1, batch_size=4, eval_batch_size=8, max_length=16)
    with pytest.raises(Diverged, match="nan"):
        train_and_evaluate(model, variant, TASK, toy_examples(8), {"validation": toy_examples(4)}, cfg, lr=1e-3,
                           seed=0, device=torch.device("cpu"), precision="fp32", pad_token_id=0)
