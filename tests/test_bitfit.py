"""BitFit: exactly the bias terms and the head are trained, on every tiny architecture; subsets by role; a clear
error where there is no bias to train."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapterbench.errors import UserError
from adapterbench.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import head_parameters
from adapterbench.variants.bitfit import BitFit, BitFitConfig, parse_bias_kinds

WITH_BIASES = [a for a in TINY_ARCHITECTURES if a != "llama"]


def bitfit(kinds: str = "all") -> BitFit:
    return BitFit(BitFitConfig(bias_kinds=kinds))


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def head_names(model: nn.Module) -> set[str]:
    head = {id(p) for p in head_parameters(model)}
    return {name for name, p in model.named_parameters() if id(p) in head}


def names_of(model: nn.Module, predicate) -> set[str]:
    return {f"{mname}.{pname}" if mname else pname
            for mname, module in model.named_modules()
            for pname, _ in module.named_parameters(recurse=False) if predicate(mname, module, pname)}


@pytest.mark.parametrize("arch", WITH_BIASES)
def test_trains_exactly_the_bias_terms_and_the_head(arch):
    model = tiny_model(arch)
    bitfit().apply(model, None)
    # The official rule, by name: every parameter called "bias" (the implementation works structurally).
    biases = {name for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"}
    assert trainable_names(model) == biases | head_names(model)
    # LayerNorm gains stay frozen, LayerNorm biases are trained
    norms = [m for m in model.base_model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    # ... and every backbone weight matrix is frozen
    assert not any(p.requires_grad for p in model.base_model.parameters() if p.ndim >= 2
                   and id(p) not in {id(q) for q in head_parameters(model)})


@pytest.mark.parametrize("arch", WITH_BIASES)
def test_training_moves_only_biases_and_head(arch):
    torch.manual_seed(0)
    model, batch = tiny_model(arch), tiny_batch(batch_size=4)
    variant = bitfit()
    variant.apply(model, None)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(variant.param_groups(model, 1e-2, 0.0))
    model.train()
    for _ in range(2):
        model(**batch, labels=torch.tensor([0, 1, 1, 0])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == trainable_names(model)
    assert variant.describe(model)["bias_params"] > 0


def test_bias_free_architecture_is_refused():
    model = tiny_model("llama")
    with pytest.raises(UserError, match="bias"):
        bitfit().apply(model, None)
    with pytest.raises(UserError, match="'query'"):
        bitfit("query").apply(model, None)
    assert "llama" in BitFit.unsupported_model_types


def test_subset_by_role_plus_pooler_as_in_the_official_code():
    model = tiny_model("bert")
    bitfit("query,intermediate").apply(model, None)  # intermediate: the official name of ffn_in
    expected = names_of(model, lambda m, _, p: p == "bias" and m.endswith(
        ("attention.self.query", "intermediate.dense", "pooler.dense")))
    assert len(expected) == 5  # 2 blocks x (query, ffn_in) + pooler
    assert trainable_names(model) == expected | head_names(model)


@pytest.mark.parametrize("arch", ["distilbert", "deberta-v2"])
def test_roles_resolve_per_architecture(arch):
    model = tiny_model(arch)
    bitfit("value,ffn_out").apply(model, None)
    suffix = {"distilbert": ("attention.v_lin", "ffn.lin2"),
              "deberta-v2": ("attention.self.value_proj", "output.dense")}[arch]
    expected = names_of(model, lambda m, _, p: p == "bias" and m.endswith(suffix)
                        and not m.endswith("attention.output.dense"))
    assert len(expected) == 4
    assert trainable_names(model) == expected | head_names(model)


def test_layernorm_kind_trains_every_norm_bias_and_no_gain():
    model = tiny_model("roberta")
    bitfit("layernorm").apply(model, None)
    expected = names_of(model, lambda _, m, p: isinstance(m, nn.LayerNorm) and p == "bias")
    assert len(expected) == 5  # embeddings + 2 per block
    assert trainable_names(model) == expected | head_names(model)


def test_bad_kinds_raise_user_errors_naming_the_value():
    for bad in ("", "querry", "all,query", "gain"):
        with pytest.raises(UserError, match="bias_kinds|bias kind"):
            parse_bias_kinds(bad)
        with pytest.raises(UserError):
            bitfit(bad)
    assert parse_bias_kinds("all") is None
    assert parse_bias_kinds("query, intermediate,ffn_in") == ["query", "ffn_in"]


def test_registry_and_defaults():
    assert VARIANTS.get("bitfit") is BitFit and BitFit.default_lr == 1e-3 and not BitFit.mergeable
