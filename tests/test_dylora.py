"""DyLoRA: truncated-LoRA numerics at every rank, frozen/all gradients, rank sampling, merge, eval points."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from adapterbench.errors import UserError
from adapterbench.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import TrainState, head_parameters
from adapterbench.variants.dylora import (
    DyLoRA,
    DyLoRAConfig,
    DyLoRALinear,
    dylora_layers,
    parse_eval_ranks,
    sample_rank,
)

ATOL = 1e-5  # float32 matmul reassociation on outputs of magnitude ~1


def _layer(r: int = 4, alpha: float = 8.0, frozen: bool = True, seed: int = 0) -> DyLoRALinear:
    torch.manual_seed(seed)
    layer = DyLoRALinear(nn.Linear(6, 5), r=r, alpha=alpha, dropout=0.0, frozen=frozen)
    with torch.no_grad():
        layer.lora_B.normal_()  # B starts at zero; make the update visible
    return layer


def _hand_lora(layer: DyLoRALinear, x: torch.Tensor, b: int) -> torch.Tensor:
    w, bias = layer.base.weight, layer.base.bias
    a_b = layer.lora_A[:b, :]
    b_b = layer.lora_B[:, :b]
    return x @ w.T + bias + (layer.alpha / b) * (x @ a_b.T @ b_b.T)


def _adapted(arch: str = "bert", **overrides) -> tuple[nn.Module, DyLoRA]:
    model = tiny_model(arch)
    variant = DyLoRA(DyLoRAConfig(**overrides))
    variant.apply(model, None)
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in dylora_layers(model):
            layer.lora_B.normal_(std=0.5)
    return model, variant


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(**tiny_batch()).logits


def test_registry_loads_dylora():
    assert VARIANTS.get("dylora") is DyLoRA
    assert DyLoRA.mergeable


@pytest.mark.parametrize("frozen", [True, False])
def test_layer_output_is_truncated_lora_at_every_rank(frozen):
    layer = _layer(frozen=frozen)
    x = torch.randn(3, 7, 6, generator=torch.Generator().manual_seed(2))
    outputs = []
    for b in range(1, layer.r + 1):
        for training in (True, False):
            layer.train(training)
            layer.train_rank = b
            layer.eval_rank = b
            out = layer(x)
            torch.testing.assert_close(out, _hand_lora(layer, x, b), atol=ATOL, rtol=0)
        outputs.append(out)
    # The ranks really differ (the test would pass trivially if the update were ignored).
    assert all((outputs[i] - outputs[i + 1]).abs().max() > 1e-3 for i in range(len(outputs) - 1))


def test_model_output_at_eval_point_equals_hand_merged_weights():
    model, variant = _adapted(r=4, alpha=16.0)
    model.eval()
    for b in (1, 3, 4):
        reference = copy.deepcopy(model)
        with torch.no_grad():
            for name, layer in list(reference.named_modules()):
                if isinstance(layer, DyLoRALinear):
                    linear = copy.deepcopy(layer.base)
                    linear.weight += (16.0 / b) * layer.lora_B[:, :b] @ layer.lora_A[:b, :]
                    parent, _, child = name.rpartition(".")
                    setattr(reference.get_submodule(parent), child, linear)
        with variant.use_eval_point(model, b):
            got = _logits(model)
        torch.testing.assert_close(got, _logits(reference), atol=ATOL, rtol=0)


def test_outside_training_and_eval_points_uses_r_max():
    model, variant = _adapted(r=4)
    model.eval()
    with variant.use_eval_point(model, 4):
        at_max = _logits(model)
    with variant.use_eval_point(model, 2):
        at_two = _logits(model)
    plain = _logits(model)
    torch.testing.assert_close(plain, at_max, atol=0, rtol=0)
    assert (plain - at_two).abs().max() > 1e-4


def _grads(frozen: bool, b: int) -> DyLoRALinear:
    layer = _layer(r=5, frozen=frozen)
    layer.train()
    layer.train_rank = b
    layer(torch.randn(4, 6, generator=torch.Generator().manual_seed(3))).pow(2).sum().backward()
    return layer


@pytest.mark.parametrize("b", [1, 3, 5])
def test_frozen_mode_trains_only_the_bth_row_and_column(b):
    layer = _grads(frozen=True, b=b)
    row_norms = layer.lora_A.grad.abs().sum(dim=1)
    col_norms = layer.lora_B.grad.abs().sum(dim=0)
    for i in range(layer.r):
        if i == b - 1:
            assert row_norms[i] > 0 and col_norms[i] > 0
        else:
            assert row_norms[i] == 0 and col_norms[i] == 0, f"index {i} got gradient at rank {b}"


@pytest.mark.parametrize("b", [1, 3, 5])
def test_all_mode_trains_every_used_row_and_column(b):
    layer = _grads(frozen=False, b=b)
    row_norms = layer.lora_A.grad.abs().sum(dim=1)
    col_norms = layer.lora_B.grad.abs().sum(dim=0)
    for i in range(layer.r):
        used = i < b
        assert (row_norms[i] > 0) == used and (col_norms[i] > 0) == used, f"index {i} at rank {b}"


def test_sample_rank_covers_range_uniformly():
    g = torch.Generator().manual_seed(0)
    draws = [sample_rank(8, g) for _ in range(4000)]
    assert min(draws) == 1 and max(draws) == 8
    counts = torch.bincount(torch.tensor(draws), minlength=9)[1:].float()
    # 500 expected per rank; a binomial's sd is ~21, so 100 is a loose but real bound.
    assert (counts - 500).abs().max() < 100


def _sampled_ranks(seed: int, steps: int = 64, global_seed: int = 123) -> list[int]:
    model, variant = _adapted(r=8, seed=seed)
    torch.manual_seed(global_seed)
    state = TrainState(model=model, optimizer=None, step=0, total_steps=steps)
    variant.on_train_start(state)
    ranks = []
    for step in range(steps):
        state.step = step
        variant.on_step_start(state)
        layer_ranks = {layer.train_rank for layer in dylora_layers(model)}
        assert len(layer_ranks) == 1, "every adapted module must share the step's rank"
        ranks.append(state.log["dylora/rank"])
        assert layer_ranks == {ranks[-1]}
    variant.on_train_end(state)
    assert all(layer.train_rank is None for layer in dylora_layers(model))
    return ranks


def test_on_step_start_samples_reproducibly_within_range():
    ranks = _sampled_ranks(seed=7)
    assert set(ranks) == set(range(1, 9))
    assert _sampled_ranks(seed=7) == ranks
    assert _sampled_ranks(seed=8) != ranks
    # seed=-1 derives the generator from the harness-seeded global RNG: same run seed, same ranks.
    assert _sampled_ranks(seed=-1, global_seed=5) == _sampled_ranks(seed=-1, global_seed=5)
    assert _sampled_ranks(seed=-1, global_seed=5) != _sampled_ranks(seed=-1, global_seed=6)


@pytest.mark.parametrize("merge_rank", [2, 0])
def test_merge_matches_unmerged_output_and_unmerge_restores(merge_rank):
    model, variant = _adapted(r=4, merge_rank=merge_rank)
    model.eval()
    b = merge_rank or 4
    weights = {name: layer.base.weight.detach().clone() for name, layer in model.named_modules()
               if isinstance(layer, DyLoRALinear)}
    with variant.use_eval_point(model, b):
        expected = _logits(model)
    variant.merge(model)
    merged = _logits(model)
    torch.testing.assert_close(merged, expected, atol=ATOL, rtol=0)
    changed = [not torch.equal(layer.base.weight, weights[name]) for name, layer in model.named_modules()
               if isinstance(layer, DyLoRALinear)]
    assert all(changed)
    variant.unmerge(model)
    for name, layer in model.named_modules():
        if isinstance(layer, DyLoRALinear):
            torch.testing.assert_close(layer.base.weight, weights[name], atol=1e-6, rtol=0)
    torch.testing.assert_close(_logits(model), _logits_at(variant, model, 4), atol=ATOL, rtol=0)


def _logits_at(variant: DyLoRA, model: nn.Module, b: int) -> torch.Tensor:
    with variant.use_eval_point(model, b):
        return _logits(model)


def test_eval_point_context_restores_previous_rank():
    model, variant = _adapted(r=8)
    layers = dylora_layers(model)
    assert variant.eval_points() == list(range(1, 9))
    with variant.use_eval_point(model, 3):
        assert {layer.eval_rank for layer in layers} == {3}
        with variant.use_eval_point(model, 6):
            assert {layer.eval_rank for layer in layers} == {6}
        assert {layer.eval_rank for layer in layers} == {3}
    assert {layer.eval_rank for layer in layers} == {None}
    with pytest.raises(RuntimeError), variant.use_eval_point(model, 2):
        raise RuntimeError("evaluation failed")
    assert {layer.eval_rank for layer in layers} == {None}


def test_trainable_parameters_are_adapters_and_head():
    model, variant = _adapted("bert", r=4, targets="query,value")
    head = {id(p) for p in head_parameters(model)}
    lora = {id(p) for layer in dylora_layers(model) for p in (layer.lora_A, layer.lora_B)}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert head and trainable == head | lora
    assert len(dylora_layers(model)) == 2 * 2  # query and value in each of the 2 blocks
    assert sum(p.numel() for layer in dylora_layers(model) for p in (layer.lora_A, layer.lora_B)) == 4 * 4 * (32 + 32)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_trains_and_evaluates_on_every_tiny_architecture(arch):
    model, variant = _adapted(arch, r=4, seed=0)
    model.train()
    optimizer = torch.optim.AdamW(variant.param_groups(model, 1e-2, 0.0))
    state = TrainState(model=model, optimizer=optimizer, step=0, total_steps=2)
    variant.on_train_start(state)
    head_before = [p.detach().clone() for p in head_parameters(model)]
    batch = tiny_batch()
    labels = torch.tensor([0, 1])
    for step in range(2):
        state.step = step
        variant.on_step_start(state)
        loss = model(**batch, labels=labels).loss
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    variant.on_train_end(state)
    assert any(not torch.equal(a, b) for a, b in zip(head_before, head_parameters(model))), "head not trained"
    model.eval()
    for point in variant.eval_points():
        with variant.use_eval_point(model, point):
            assert torch.isfinite(_logits(model)).all()
    info = variant.describe(model)
    assert info["r_max"] == 4 and info["eval_ranks"] == [1, 2, 3, 4] and info["mode"] == "frozen"
    assert sum(info["sampled_rank_counts"].values()) == 2


def test_eval_ranks_parsing_and_config_errors():
    assert parse_eval_ranks("all", 8) == list(range(1, 9))
    assert parse_eval_ranks("8, 1,4,4", 8) == [1, 4, 8]
    assert parse_eval_ranks(2, 8) == [2]
    assert DyLoRA(DyLoRAConfig(eval_ranks="1,2,4,8")).eval_points() == [1, 2, 4, 8]
    assert DyLoRA(DyLoRAConfig(eval_ranks=None)).eval_points() == list(range(1, 9))
    assert DyLoRA(DyLoRAConfig(merge_rank=None, seed=None)).config.merge_rank == 0
    for bad in ({"mode": "some"}, {"eval_ranks": "0,2"}, {"eval_ranks": "two"}, {"r": 0},
                {"merge_rank": 9}, {"alpha": -1.0}, {"dropout": 1.0}):
        with pytest.raises(UserError):
            DyLoRA(DyLoRAConfig(**bad))
