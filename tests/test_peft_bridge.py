"""``peft:<method>``: PEFT's tuners behind our hooks, checked against PEFT's own entry points."""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import fields

import pytest
import torch

from adapterbench.errors import UserError
from adapterbench.testing import tiny_batch, tiny_model, train_tiny
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import TrainState, Variant, build_config, head_parameters
from adapterbench.variants.peft_bridge import _can_merge, peft_methods, peft_variant, resolve_targets
from adapterbench.variants.targets import find_targets

peft = pytest.importorskip("peft")

LABELS = torch.tensor([0, 1])


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_registry_family_builds_one_class_per_method():
    cls = VARIANTS.get("peft:lora")
    assert issubclass(cls, Variant) and cls.name == "peft:lora"
    assert VARIANTS.get("peft:LoRA") is cls and peft_variant("lora") is cls
    assert "peft:ia3" in VARIANTS
    assert {"lora", "adalora", "ia3", "loha"} <= set(peft_methods())


def test_config_is_generated_from_peft_fields():
    from peft import LoraConfig

    cls = peft_variant("lora")
    ours = {f.name: f for f in fields(cls.Config)}
    assert {"r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora"} <= set(ours)
    assert not {"peft_type", "task_type", "inference_mode"} & set(ours)
    assert cls.Config().r == LoraConfig().r and cls.Config().lora_alpha == LoraConfig().lora_alpha
    assert "total_step" not in {f.name for f in fields(peft_variant("adalora").Config)}  # set by the bridge
    assert build_config(cls, {"r": 4}).r == 4
    with pytest.raises(UserError, match="unknown setting 'rank'"):
        build_config(cls, {"rank": 4})


def test_set_r_reaches_the_injected_layers():
    cls = peft_variant("lora")
    model = tiny_model("bert")
    cls(build_config(cls, {"r": 4, "target_modules": "query"})).apply(model, None)
    layer = model.get_submodule("bert.encoder.layer.0.attention.self.query")
    assert layer.lora_A["default"].weight.shape == (4, 32)
    assert not hasattr(model.get_submodule("bert.encoder.layer.0.attention.self.value"), "lora_A")


def test_unknown_and_prompt_learning_methods_raise():
    with pytest.raises(UserError, match=r"unknown PEFT method 'lorra'.*Did you mean 'lora'.*adalora.*ia3"):
        VARIANTS.get("peft:lorra")
    with pytest.raises(UserError, match=r"'prompt_tuning' is not a tuner.*lora"):
        peft_variant("prompt_tuning")


def test_peft_validation_errors_become_user_errors():
    cls = peft_variant("adalora")
    with pytest.raises(UserError, match=r"peft:adalora: .*orth_reg_weight"):
        cls(build_config(cls, {"orth_reg_weight": -1.0}))


def test_resolve_targets_uses_roles_and_passes_other_names_through():
    model = tiny_model("bert")
    assert resolve_targets(model, "query,value", None) == [n for n, _ in find_targets(model, "query,value")]
    # 'LayerNorm' is no linear layer of the blocks: handed to PEFT as a suffix
    assert resolve_targets(model, "value,LayerNorm", None)[-1] == "LayerNorm"
    with pytest.raises(UserError):
        resolve_targets(model, " , ", None)


def test_mergeable_is_asked_of_peft():
    assert peft_variant("lora").mergeable and peft_variant("ia3").mergeable and peft_variant("adalora").mergeable

    class NoMergeTuner:  # a tuner whose layers cannot merge
        def __init__(self, model, config, adapter_name):
            pass

        def merge_adapter(self):
            raise NotImplementedError("no merging")

    from peft import LoraConfig

    assert _can_merge(LoraConfig, NoMergeTuner) is False


# ---- peft:lora ---------------------------------------------------------------------------------------------------


def test_lora_trainable_count_equals_get_peft_model_plus_head():
    from peft import LoraConfig, get_peft_model

    model = tiny_model("bert")
    reference = copy.deepcopy(model)
    head = sum(p.numel() for p in head_parameters(model))
    peft_variant("lora")().apply(model, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter_only = get_peft_model(copy.deepcopy(reference), LoraConfig(target_modules=["query", "value"]))
        with_head = get_peft_model(reference, LoraConfig(target_modules=["query", "value"], task_type="SEQ_CLS"))
    assert _trainable(model) == _trainable(adapter_only) + head
    assert _trainable(model) == _trainable(with_head)  # PEFT trains a copy of the same head
    assert all(p.requires_grad for p in head_parameters(model))
    backbone_trainable = [n for n, p in model.base_model.named_parameters() if p.requires_grad]
    assert backbone_trainable and all("lora_" in n for n in backbone_trainable)


def test_lora_adapts_the_model_in_place_and_merge_keeps_logits():
    model = tiny_model("roberta")
    variant = peft_variant("lora")()
    batch = tiny_batch()
    expected_targets = [n for n, _ in find_targets(model, "query,value")]
    with torch.no_grad():
        plain = model(**batch).logits
    variant.apply(model, None)
    assert variant.target_names == expected_targets
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # B starts at zero: make the update visible
        adapted = model(**batch).logits
        assert not torch.allclose(adapted, plain, atol=1e-4)  # the model passed in now runs the adapter
        weight = model.get_submodule("roberta.encoder.layer.0.attention.self.query").base_layer.weight.clone()
        variant.merge(model)
        merged = model(**batch).logits
        variant.unmerge(model)
        after = model(**batch).logits
    assert torch.allclose(merged, adapted, atol=1e-5) and torch.allclose(after, adapted, atol=1e-5)
    restored = model.get_submodule("roberta.encoder.layer.0.attention.self.query").base_layer.weight
    assert torch.allclose(restored, weight, atol=1e-6)


# ---- peft:adalora ------------------------------------------------------------------------------------------------


def _adalora(**settings):
    cls = peft_variant("adalora")
    base = {"init_r": 4, "target_r": 2, "tinit": 2, "tfinal": 2, "deltaT": 1, "lora_alpha": 8}
    return cls(build_config(cls, {**base, **settings}))


def test_adalora_allocates_through_the_hooks():
    model = tiny_model("bert")
    variant = _adalora()
    variant.apply(model, None)
    masked_per_step = {}

    def after_step(t):
        zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if "lora_E" in n)
        masked_per_step[t] = (zeros, variant.peft_config.rank_pattern is not None)

    state = train_tiny(variant, model, total_steps=8, after_step=after_step)
    assert math.isfinite(state.loss.item())
    assert variant.peft_config.total_step == 8  # set by on_train_start
    assert masked_per_step[1] == (0, False) and masked_per_step[2] == (0, False)  # warm-up: nothing masked
    assert masked_per_step[3][1] and masked_per_step[3][0] > 0  # ranks change right after t_init
    assert masked_per_step[8][0] == 16 - 8  # final budget: target_r * 4 matrices kept of 16
    described = variant.describe(model)
    assert sum(described["ranks"].values()) == 8 and len(described["ranks"]) == 4
    assert described["budget"][0] == [0, 16] and described["budget"][-1] == [8, 8]
    assert state.log["adalora/budget"] == 8


def test_adalora_extra_loss_equals_peft_forward_regulariser():
    model = tiny_model("bert")
    variant = _adalora(orth_reg_weight=0.3)
    variant.apply(model, None)
    state = TrainState(model=model, optimizer=None, step=0, total_steps=10)
    batch = tiny_batch()
    extra = variant.extra_loss(state)
    assert extra is not None and extra.requires_grad and extra.item() > 0
    with torch.no_grad():
        plain = model(**batch, labels=LABELS).loss
        with_reg = variant.tuner(**batch, labels=LABELS).loss  # AdaLoraModel.forward adds the regulariser
    assert with_reg.item() == pytest.approx(plain.item() + extra.item(), rel=1e-6)


def test_adalora_schedule_is_validated():
    variant = _adalora(tinit=5, tfinal=5)
    with pytest.raises(UserError, match=r"tinit=5 \+ tfinal=5 .*10 total steps"):
        variant.validate_schedule(10)
    variant.validate_schedule(11)


# ---- peft:ia3 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_ia3_runs_with_feedforward_defaults(arch):
    model = tiny_model(arch)
    ffn = {n for n, _ in find_targets(model, "ffn_out")}
    targets = {n for n, _ in find_targets(model, "key,value,ffn_out")}
    variant = peft_variant("ia3")()
    variant.apply(model, None)
    assert set(variant.peft_config.feedforward_modules) == ffn
    assert set(variant.target_names) == targets
    ia3 = {n: p.detach().clone() for n, p in model.named_parameters() if "ia3_l" in n}
    assert ia3 and all(torch.all(p == 1) for p in ia3.values())  # identity at init
    state = train_tiny(variant, model, total_steps=3)
    assert math.isfinite(state.loss.item())
    changed = [n for n, p in model.named_parameters() if n in ia3 and not torch.equal(p, ia3[n])]
    assert changed, "IA3 vectors were not trained"
    assert variant.extra_loss(state) is None
