"""Houlsby adapters: near-identity at init, placement (two per block), parameter count, what is trained."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapterbench.errors import UserError
from adapterbench.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import head_parameters
from adapterbench.variants.houlsby import (
    AdaptedProjection,
    BottleneckAdapter,
    Houlsby,
    HoulsbyConfig,
    adapter_param_count,
    bottleneck_size,
    houlsby_adapters,
    is_norm,
)
from adapterbench.variants.targets import arch_for, blocks

HIDDEN, LAYERS = 32, 2  # the tiny models' hidden size and depth


def _adapted(arch: str, **overrides) -> tuple[nn.Module, Houlsby]:
    model = tiny_model(arch)
    variant = Houlsby(HoulsbyConfig(**overrides))
    variant.apply(model, None)
    return model, variant


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(**tiny_batch()).logits


def test_registry_loads_houlsby_and_it_cannot_merge():
    assert VARIANTS.get("houlsby") is Houlsby
    assert not Houlsby.mergeable
    model, variant = _adapted("bert")
    with pytest.raises(NotImplementedError):
        variant.merge(model)


def test_adapter_formula_on_projection_output():
    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    adapter = BottleneckAdapter(6, 3, "gelu_tanh", init_std=0.5)
    layer = AdaptedProjection(base, adapter)
    x = torch.randn(2, 4, 8)
    h = x @ base.weight.T + base.bias
    down = torch.nn.functional.gelu(h @ adapter.down.weight.T + adapter.down.bias, approximate="tanh")
    expected = h + down @ adapter.up.weight.T + adapter.up.bias
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=0)
    assert (layer(x) - h).abs().max() > 1e-2  # with std 0.5 the adapter is far from the identity


def test_near_identity_initialisation_is_a_truncated_normal():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(256, 64, "gelu_tanh", init_std=1e-2)
    for linear in (adapter.down, adapter.up):
        w = linear.weight
        assert w.abs().max() <= 2e-2 + 1e-9
        # A normal truncated at +-2 sd has sd 0.88 of the untruncated one; 16k samples pin it to ~1%.
        assert 0.84e-2 < w.std().item() < 0.92e-2
        assert torch.count_nonzero(linear.bias) == 0


def _hidden(model: nn.Module) -> torch.Tensor:
    batch = tiny_batch()
    with torch.no_grad():
        return model.base_model(**batch).last_hidden_state[batch["attention_mask"].bool()]


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_output_near_base_at_init_and_exact_with_zero_up(arch):
    base = tiny_model(arch)
    base_hidden, base_logits = _hidden(base), _logits(base)
    model, _ = _adapted(arch)
    relative = ((_hidden(model) - base_hidden).abs().max() / base_hidden.abs().max()).item()
    # Measured on these models: ~3e-5 (encoders) and ~1.4e-3 (Llama, no post-LN to renormalise) with std 1e-2,
    # while nn.Linear's default (Kaiming) initialisation moves the last hidden state by 0.12 to 1.5 of its scale.
    assert 0 < relative < 1e-2, relative
    with torch.no_grad():
        for adapter in houlsby_adapters(model):
            adapter.up.weight.zero_()
    assert torch.equal(_hidden(model), base_hidden)
    assert torch.equal(_logits(model), base_logits)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_two_adapters_per_block_after_attention_and_ffn_outputs(arch):
    model, _ = _adapted(arch)
    spec = arch_for(model)
    block_list = blocks(model, spec)
    assert len(block_list) == LAYERS
    for _, block in block_list:
        wrapped = [name for name, m in block.named_modules() if isinstance(m, AdaptedProjection)]
        assert len(wrapped) == 2, wrapped
        assert sum(isinstance(m, BottleneckAdapter) for m in block.modules()) == 2
        assert set(wrapped) == {spec.role_suffixes("attn_out")[0], spec.role_suffixes("ffn_out")[0]}


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize(("overrides", "m"), [({}, 64), ({"bottleneck": 8}, 8), ({"reduction_factor": 4}, 8)])
def test_adapter_parameter_count_closed_form(arch, overrides, m):
    model, variant = _adapted(arch, **overrides)
    count = sum(p.numel() for a in houlsby_adapters(model) for p in a.parameters())
    assert count == 2 * LAYERS * (2 * HIDDEN * m + HIDDEN + m)
    assert count == 2 * LAYERS * adapter_param_count(HIDDEN, m)
    assert variant.describe(model)["params/adapter"] == count
    assert variant.describe(model)["bottlenecks"] == [m]


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_trainable_backbone_is_layer_norms_and_adapters_only(arch):
    model, _ = _adapted(arch)
    backbone = model.base_model
    norms = {id(p) for m in backbone.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    adapters = {id(p) for a in houlsby_adapters(model) for p in a.parameters()}
    head = {id(p) for p in head_parameters(model)}
    assert norms and head and not norms & adapters
    # Every block has at least two norms (post-LN: after attention and after FFN; Llama: before each).
    assert len(norms) >= 2 * LAYERS
    trainable_backbone = {id(p) for p in backbone.parameters() if p.requires_grad}
    assert trainable_backbone == norms | adapters
    assert all(p.requires_grad for p in head_parameters(model))
    frozen_model, _ = _adapted(arch, train_layer_norms=False)
    assert {id(p) for p in frozen_model.base_model.parameters() if p.requires_grad} == \
        {id(p) for a in houlsby_adapters(frozen_model) for p in a.parameters()}


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_forward_backward_reaches_adapters_norms_and_head(arch):
    model, _ = _adapted(arch)
    model.train()
    loss = model(**tiny_batch(), labels=torch.tensor([0, 1])).loss
    assert torch.isfinite(loss)
    loss.backward()
    for adapter in houlsby_adapters(model):
        assert adapter.up.weight.grad.abs().sum() > 0
        assert adapter.down.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head_parameters(model))
    for name, p in model.base_model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
        elif "norm" in name.lower():
            assert p.grad.abs().sum() > 0, name


def test_bottleneck_size_and_config_errors():
    assert bottleneck_size(768, 64, None) == 64
    assert bottleneck_size(768, 64, 16) == 48
    assert Houlsby(HoulsbyConfig(reduction_factor=None)).config.reduction_factor == 0.0
    with pytest.raises(UserError):
        bottleneck_size(32, 64, 64)
    for bad in ({"activation": "swishy"}, {"bottleneck": 0}, {"reduction_factor": -2}, {"init_std": 0.0},
                {"train_layer_norms": "yes"}, {"targets": ""}):
        with pytest.raises(UserError):
            Houlsby(HoulsbyConfig(**bad))
    with pytest.raises(UserError):
        _adapted("bert", targets="no_such_module")
