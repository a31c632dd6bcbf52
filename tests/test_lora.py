"""LoRA: the layer's numerics (own backward, dropout path), the variant on every tiny architecture, and agreement
with PEFT's LoRA for the same A and B (outputs, gradients, merged weights, rsLoRA, per-module ranks)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adapterbench.errors import UserError
from adapterbench.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import head_parameters
from adapterbench.variants.lora import (
    LoRA,
    LoRAConfig,
    LoRALinear,
    LoRALinearWithDropout,
    lora_layers,
    wrap_linear,
)
from adapterbench.variants.lowrank import lora_linear, lora_scaling, lowrank_delta, parse_rank_pattern
from adapterbench.variants.targets import find_targets

ATOL = 1e-5  # float32 logits of tiny models: differences from summation order are ~1e-7


def lora(**overrides) -> LoRA:
    return LoRA(LoRAConfig(**overrides))


def randomise_adapters(model: nn.Module, seed: int = 1) -> None:
    """Nonzero A and B, so the update actually contributes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=g) * 0.3)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)


def logits(model: nn.Module, batch: dict) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


# ---- pure functions and the layer ----------------------------------------------------------------------
def test_scaling_plain_and_rslora():
    assert lora_scaling(16, 8) == 2.0
    assert lora_scaling(16, 4, rslora=True) == 8.0
    assert lora_scaling(8, 8, rslora=True) == pytest.approx(8 / math.sqrt(8))


def test_lora_linear_matches_the_formula_and_autograd_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    W = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    A = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    B = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    expected = x @ W.T + b + 1.5 * (x @ A.T) @ B.T
    torch.testing.assert_close(lora_linear(x, W, b, A, B, 1.5), expected, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *t: lora_linear(*t, 1.5), (x, W, b, A, B))
    # the separate low-rank input (dropout's output) gets its own gradient
    xl = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, xl, A, B: lora_linear(x, W, b, A, B, 1.5, x_lora=xl), (x, xl, A, B))


def test_lora_linear_frozen_base_gradients_equal_plain_autograd():
    """The usual case (frozen W, b): our backward against autograd through the textbook expression."""
    torch.manual_seed(0)
    x = torch.randn(4, 9, 16)
    W, b = torch.randn(12, 16), torch.randn(12)
    A, B = torch.randn(3, 16), torch.randn(12, 3)
    grad_out = torch.randn(4, 9, 12)
    grads = []
    for fn in (lambda x, A, B: lora_linear(x, W, b, A, B, 0.7),
               lambda x, A, B: F.linear(x, W, b) + 0.7 * F.linear(F.linear(x, A), B)):
        leaves = [t.clone().requires_grad_() for t in (x, A, B)]
        fn(*leaves).backward(grad_out)
        grads.append([t.grad for t in leaves])
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_dropout_applies_to_the_low_rank_path_only():
    torch.manual_seed(0)
    base = nn.Linear(16, 12)
    layer = wrap_linear(copy.deepcopy(base), r=4, alpha=8, dropout=0.5)
    assert isinstance(layer, LoRALinearWithDropout)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 16)
    layer.train()
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    x_dropped = F.dropout(x, 0.5, training=True)  # the same mask: the layer's dropout is the first RNG use
    expected = base(x) + 2.0 * x_dropped @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    layer.eval()
    torch.testing.assert_close(layer(x), base(x) + 2.0 * x @ layer.lora_A.T @ layer.lora_B.T, rtol=1e-5,
                               atol=1e-5)


def test_no_dropout_means_the_dropout_free_layer():
    layer = wrap_linear(nn.Linear(4, 3), r=2, alpha=2, dropout=0.0)
    assert type(layer) is LoRALinear and not any(isinstance(m, nn.Dropout) for m in layer.modules())
    # linear-layer attributes read through to the frozen base layer
    assert layer.weight is layer.base.weight and layer.bias is layer.base.bias
    assert (layer.in_features, layer.out_features) == (4, 3)


def test_init_a_kaiming_uniform_b_zero():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(256, 64), r=16, alpha=16)
    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1 / math.sqrt(256)  # kaiming_uniform_ with a = sqrt(5) on fan_in 256
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.9 * bound
    assert layer.lora_A.shape == (16, 256) and layer.lora_B.shape == (64, 16)


def test_parse_rank_pattern():
    assert parse_rank_pattern("value=4, query=16") == {"value": 4, "query": 16}
    assert parse_rank_pattern("") == {}
    for bad in ("value", "value=0", "value=x", "value=2.5", "=3", "value=2,value=3"):
        with pytest.raises(UserError):
            parse_rank_pattern(bad)


# ---- the variant on tiny models -----------------------------------------------------------------------
@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_zero_b_gives_the_base_models_logits(arch):
    model, batch = tiny_model(arch), tiny_batch()
    before = logits(model, batch)
    lora().apply(model, None)
    assert len(lora_layers(model)) == 4  # query and value in each of 2 blocks
    # B = 0 adds exactly zero to every adapted output
    torch.testing.assert_close(logits(model, batch), before, rtol=0, atol=0)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_trainable_parameters_are_adapters_and_head_in_closed_form(arch):
    model = tiny_model(arch)
    targets = find_targets(model, "query,value")
    lora(r=4).apply(model, None)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    adapters = {id(p) for _, layer in lora_layers(model) for p in (layer.lora_A, layer.lora_B)}
    head = {id(p) for p in head_parameters(model)}
    assert trainable == adapters | head and not adapters & head
    adapter_count = sum(p.numel() for p in model.parameters() if id(p) in adapters)
    assert adapter_count == sum(4 * (lin.in_features + lin.out_features) for _, lin in targets)


def test_minilm_adapter_count():
    from adapterbench.models import load_model, resolve_model

    model, _ = load_model(resolve_model("minilm"), "classification", 2, 0)
    lora(r=8).apply(model, None)
    head = {id(p) for p in head_parameters(model)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable if id(p) not in head) == 2 * 8 * (384 + 384) * 6 == 73_728
    assert sum(p.numel() for p in trainable if id(p) in head) == 384 * 2 + 2


def test_training_changes_only_lora_and_head():
    torch.manual_seed(0)
    model, batch = tiny_model("bert"), tiny_batch(batch_size=4)
    variant = lora(dropout=0.0)
    variant.apply(model, None)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(variant.param_groups(model, 1e-2, 0.0))
    model.train()
    for _ in range(3):  # B moves at step 1; A first gets a nonzero gradient once B != 0
        model(**batch, labels=torch.tensor([0, 1, 1, 0])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed == trainable
    assert any(".lora_A" in n for n in changed) and any(".lora_B" in n for n in changed)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_merge_unmerge_invariants(arch):
    model, batch = tiny_model(arch), tiny_batch()
    variant = lora(targets="all-linear")
    variant.apply(model, None)
    randomise_adapters(model)
    unmerged = logits(model, batch)
    weights = {name: layer.base.weight.detach().clone() for name, layer in lora_layers(model)}
    variant.merge(model)
    assert all(layer.merged for _, layer in lora_layers(model))
    torch.testing.assert_close(logits(model, batch), unmerged, rtol=0, atol=ATOL)
    variant.merge(model)  # a second merge is a no-op, not a double update
    torch.testing.assert_close(logits(model, batch), unmerged, rtol=0, atol=ATOL)
    for name, layer in lora_layers(model):
        delta = lowrank_delta(layer.lora_A, layer.lora_B, layer.scaling)
        torch.testing.assert_close(layer.base.weight, weights[name] + delta, rtol=0, atol=1e-6)
    variant.unmerge(model)
    for name, layer in lora_layers(model):
        torch.testing.assert_close(layer.base.weight, weights[name], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(model, batch), unmerged, rtol=0, atol=ATOL)


def test_all_linear_wraps_every_block_linear_but_not_the_head():
    model = tiny_model("bert")
    lora(targets="all-linear").apply(model, None)
    names = [name for name, _ in lora_layers(model)]
    assert len(names) == 12  # q, k, v, attn_out, ffn_in, ffn_out in 2 blocks
    assert not any(n.startswith(("classifier", "bert.pooler", "bert.embeddings")) for n in names)


def test_rank_pattern_sets_per_module_ranks_and_keeps_alpha():
    model = tiny_model("bert")
    lora(r=8, alpha=16, rank_pattern="value=4").apply(model, None)
    ranks = {name.rsplit(".", 1)[1]: layer for name, layer in lora_layers(model)}
    assert ranks["query"].r == 8 and ranks["value"].r == 4
    assert ranks["value"].lora_A.shape == (4, 32) and ranks["value"].scaling == 16 / 4


def test_bad_settings_raise_user_errors():
    for bad in ({"r": 0}, {"r": 2.5}, {"alpha": -1}, {"dropout": 1.0}, {"targets": ""}, {"rslora": "yes"},
                {"rank_pattern": "value=0"}):
        with pytest.raises(UserError):
            lora(**bad)
    with pytest.raises(UserError, match="nonsense"):
        lora(targets="nonsense").apply(tiny_model("bert"), None)
    with pytest.raises(UserError, match="rank_pattern key 'key'"):  # key is not among the targets
        lora(rank_pattern="key=4").apply(tiny_model("bert"), None)
    with pytest.raises(UserError):  # embeddings are not linear layers
        lora(targets="word_embeddings").apply(tiny_model("bert"), None)


def test_registry_resolves_lora():
    assert VARIANTS.get("lora") is LoRA and LoRA.mergeable


# ---- agreement with PEFT ------------------------------------------------------------------------------
def peft_twin(model: nn.Module, ours: nn.Module, *, r: int, alpha: float, rslora: bool) -> nn.Module:
    """PEFT's LoRA on ``model`` at the same modules and ranks, with A and B copied from ``ours``."""
    from peft import LoraConfig, inject_adapter_in_model

    layers = dict(lora_layers(ours))
    rank_pattern = {name.replace(".", r"\."): layer.r for name, layer in layers.items() if layer.r != r}
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, use_rslora=rslora, target_modules=list(layers),
                        rank_pattern=rank_pattern)
    model = inject_adapter_in_model(config, model)
    with torch.no_grad():
        for name, layer in layers.items():
            theirs = model.get_submodule(name)
            theirs.lora_A["default"].weight.copy_(layer.lora_A)
            theirs.lora_B["default"].weight.copy_(layer.lora_B)
    return model


@pytest.mark.parametrize("arch", ["bert", "roberta", "llama"])
@pytest.mark.parametrize("rslora", [False, True])
def test_outputs_gradients_and_merged_weights_equal_peft(arch, rslora):
    base, batch = tiny_model(arch), tiny_batch()
    ours = copy.deepcopy(base)
    variant = lora(r=8, alpha=16, dropout=0.0, rslora=rslora, rank_pattern="value=4")
    variant.apply(ours, None)
    randomise_adapters(ours)
    theirs = peft_twin(base, ours, r=8, alpha=16, rslora=rslora)
    assert sorted(layer.r for _, layer in lora_layers(ours)) == [4, 4, 8, 8]
    for name, layer in lora_layers(ours):
        peft_layer = theirs.get_submodule(name)
        assert peft_layer.r["default"] == layer.r
        assert peft_layer.scaling["default"] == pytest.approx(layer.scaling)
    torch.testing.assert_close(logits(ours, batch), logits(theirs, batch), rtol=0, atol=ATOL)

    # gradients of A and B for the same loss
    for model in (ours, theirs):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0  # deterministic: compare the maths, not dropout masks
        model(**batch, labels=torch.tensor([1, 0])).loss.backward()
    for name, layer in lora_layers(ours):
        peft_layer = theirs.get_submodule(name)
        torch.testing.assert_close(layer.lora_A.grad, peft_layer.lora_A["default"].weight.grad, rtol=1e-4,
                                   atol=1e-6)
        torch.testing.assert_close(layer.lora_B.grad, peft_layer.lora_B["default"].weight.grad, rtol=1e-4,
                                   atol=1e-6)

    variant.merge(ours)
    for name, layer in lora_layers(ours):
        peft_layer = theirs.get_submodule(name)
        peft_layer.merge()
        torch.testing.assert_close(layer.base.weight, peft_layer.base_layer.weight, rtol=0, atol=1e-6)


def test_bf16_autocast_runs_and_agrees_with_peft():
    """The harness trains under bf16 autocast on CUDA; CPU autocast exercises the same code path."""
    base, batch = tiny_model("bert"), tiny_batch()
    ours = copy.deepcopy(base)
    lora(dropout=0.0).apply(ours, None)
    randomise_adapters(ours)
    theirs = peft_twin(base, ours, r=8, alpha=16, rslora=False)
    outputs = []
    for model in (ours, theirs):
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**batch, labels=torch.tensor([1, 0]))
        out.loss.backward()
        outputs.append(out.logits.float())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=5e-2)  # bf16 has ~3 significant digits
    for name, layer in lora_layers(ours):
        peft_a = theirs.get_submodule(name).lora_A["default"].weight
        assert layer.lora_A.grad.dtype == torch.float32 and layer.lora_A.grad.abs().sum() > 0
        torch.testing.assert_close(layer.lora_A.grad, peft_a.grad, rtol=5e-2, atol=5e-3)
