"""LoRA+: the optimizer groups equal ``peft.optimizers.create_loraplus_optimizer``'s for the same model and
settings; the model itself is LoRA's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from adapterbench.errors import UserError
from adapterbench.testing import tiny_batch, tiny_model
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import head_parameters
from adapterbench.variants.lora import LoRA, LoRAConfig, lora_layers
from adapterbench.variants.loraplus import LoRAPlus, LoRAPlusConfig, loraplus_groups

LR, WD = 1e-3, 0.01


def group_signature(groups: list[dict], role_of) -> list[tuple]:
    """Each non-empty group as (lr, weight decay, sorted (role, shape) of its tensors), sorted."""
    return sorted(
        (g["lr"], g["weight_decay"], tuple(sorted((role_of(p), tuple(p.shape)) for p in g["params"])))
        for g in groups if g["params"]
    )


def ours_signature(arch: str, ratio: float) -> list[tuple]:
    model = tiny_model(arch)
    variant = LoRAPlus(LoRAPlusConfig(loraplus_lr_ratio=ratio))
    variant.apply(model, None)
    roles = {id(p): "head" for p in head_parameters(model)}
    for _, layer in lora_layers(model):
        roles[id(layer.lora_A)], roles[id(layer.lora_B)] = "lora_A", "lora_B"
    groups = variant.param_groups(model, LR, WD)
    torch.optim.AdamW(groups)  # the groups are valid optimizer input
    return group_signature(groups, lambda p: roles[id(p)])


def peft_signature(arch: str, ratio: float) -> list[tuple]:
    from peft import LoraConfig, get_peft_model
    from peft.optimizers import create_loraplus_optimizer

    model = tiny_model(arch)
    target = {"llama": ["q_proj", "v_proj"]}.get(arch, ["query", "value"])
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=target, task_type="SEQ_CLS"))
    optimizer = create_loraplus_optimizer(peft_model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=ratio,
                                          loraplus_weight_decay=WD)
    names = {id(p): name for name, p in peft_model.named_parameters()}

    def role_of(p: nn.Parameter) -> str:
        name = names[id(p)]
        return "lora_A" if ".lora_A." in name else "lora_B" if ".lora_B." in name else "head"

    return group_signature(optimizer.param_groups, role_of)


@pytest.mark.parametrize("arch", ["bert", "roberta", "llama"])
@pytest.mark.parametrize("ratio", [16.0, 4.0])
def test_groups_equal_peft_create_loraplus_optimizer(arch, ratio):
    ours = ours_signature(arch, ratio)
    assert ours == peft_signature(arch, ratio)
    # and they say what LoRA+ means: B at ratio x lr, A and the head's matrices at lr
    by_role = {role: (lr, wd) for lr, wd, members in ours for role, _ in members}
    assert by_role["lora_B"] == (LR * ratio, WD)
    assert by_role["lora_A"] == (LR, WD)


def test_one_d_tensors_go_with_b_without_decay():
    a, b, bias = nn.Parameter(torch.zeros(4, 8)), nn.Parameter(torch.zeros(8, 4)), nn.Parameter(torch.zeros(8))
    groups = loraplus_groups([a, b, bias], {id(b)}, lr=0.1, weight_decay=0.5, ratio=10)
    assert [(g["params"], g["lr"], g["weight_decay"]) for g in groups] == [
        ([a], 0.1, 0.5), ([b], pytest.approx(1.0), 0.5), ([bias], pytest.approx(1.0), 0.0)]


def test_model_is_loras():
    base, batch = tiny_model("bert"), tiny_batch()
    plain, plus = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(3)
    LoRA(LoRAConfig(dropout=0.0)).apply(plain, None)
    torch.manual_seed(3)
    LoRAPlus(LoRAPlusConfig(dropout=0.0)).apply(plus, None)
    for model in (plain, plus):
        for _, layer in lora_layers(model):
            torch.nn.init.constant_(layer.lora_B, 0.05)
        model.eval()
    torch.testing.assert_close(plus(**batch).logits, plain(**batch).logits, rtol=0, atol=0)
    assert LoRAPlus.mergeable and VARIANTS.get("loraplus") is LoRAPlus


def test_defaults_and_bad_settings():
    assert LoRAPlusConfig().loraplus_lr_ratio == 16 and LoRAPlus.default_lr < LoRA.default_lr
    for bad in (0, -2.0, "big", True):
        with pytest.raises(UserError, match="loraplus_lr_ratio"):
            LoRAPlus(LoRAPlusConfig(loraplus_lr_ratio=bad))
    with pytest.raises(UserError):  # LoRA's own checks still apply
        LoRAPlus(LoRAPlusConfig(r=0))


def test_embedding_targets_are_refused():
    """LoRA+'s embedding group cannot arise: LoRA wraps linear layers only, and says so for an embedding."""
    with pytest.raises(UserError, match="word_embeddings"):
        LoRAPlus(LoRAPlusConfig(targets="word_embeddings")).apply(tiny_model("bert"), None)
