"""``loraplus``: LoRA with a larger learning rate for ``B`` (Hayou, Ghosh & Yu, 2024, arXiv 2402.12354).

The model is exactly :mod:`adapterbench.variants.lora`'s; only the optimizer's parameter groups differ. With
``η`` the base learning rate and ``λ`` = ``loraplus_lr_ratio`` (``η_B / η_A``)::

    group                                   lr        weight decay
    A matrices, other matrices (the head)   η         wd
    B matrices                              λ·η       wd
    every 1-D tensor (biases)               λ·η       0
    LoRA weights of embedding layers        1e-6      wd     (never present here, see below)

These are the groups of the paper's code (``nikhil-ghosh-berkeley/loraplus``, ``create_loraplus_optimizer``)
and of ``peft.optimizers.create_loraplus_optimizer`` (there ``wd`` is its ``loraplus_weight_decay``); both put
every 1-D trainable tensor, which here means the head's biases, in ``B``'s faster group, and so do we, so that
``tests/test_loraplus.py`` can check the groups equal PEFT's. We tell the groups apart structurally (``B`` is a
:class:`~adapterbench.variants.lora.LoRALinear`'s ``lora_B``; decay by tensor rank), never by parameter names.

Embedding layers: the reference code gives LoRA weights of ``nn.Embedding`` layers a fixed lr of 1e-6. Our LoRA
wraps only ``nn.Linear`` layers inside the transformer blocks (``find_targets`` never returns an embedding and
naming an embedding as a target raises a ``UserError``), so that group is always empty and is not offered as a
setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from adapterbench.errors import UserError
from adapterbench.variants.lora import LoRA, LoRAConfig, lora_layers


def loraplus_groups(params: list[nn.Parameter], b_matrices: set[int], lr: float, weight_decay: float,
                    ratio: float) -> list[dict[str, Any]]:
    """LoRA+'s parameter groups for the trainable ``params``; ``b_matrices`` holds the ``id`` of each ``B``.

    Empty groups are left out. Order of the non-empty groups follows the reference: A, B, B without decay.
    """
    group_a = [p for p in params if id(p) not in b_matrices and p.ndim >= 2]
    group_b = [p for p in params if id(p) in b_matrices]
    group_b_no_decay = [p for p in params if id(p) not in b_matrices and p.ndim < 2]
    groups = [
        {"params": group_a, "lr": lr, "weight_decay": weight_decay},
        {"params": group_b, "lr": lr * ratio, "weight_decay": weight_decay},
        {"params": group_b_no_decay, "lr": lr * ratio, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


@dataclass
class LoRAPlusConfig(LoRAConfig):
    loraplus_lr_ratio: float = 16.0  # η_B / η_A; 2**4, the ratio the paper suggests as a general default


class LoRAPlus(LoRA):
    """LoRA whose ``B`` matrices (and 1-D tensors) learn ``loraplus_lr_ratio`` times faster than ``A``.

    Default lr 2.5e-4, half of LoRA's 5e-4: PEFT's ``create_loraplus_optimizer`` docstring advises a base lr
    "slightly smaller (e.g., by a factor of 2) than typical vanilla LoRA learning rates" with LoRA+.
    """

    name = "loraplus"
    paper = ("Hayou, Ghosh & Yu, 2024, LoRA+: Efficient Low Rank Adaptation of Large Models "
             "https://arxiv.org/abs/2402.12354")
    default_lr = 2.5e-4
    Config = LoRAPlusConfig

    def validate_config(self) -> None:
        super().validate_config()
        ratio = self.config.loraplus_lr_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            raise UserError(f"loraplus loraplus_lr_ratio={ratio!r} is not allowed; give a positive number "
                            f"(the paper recommends values >= 1, default 16)")

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        params = [p for p in model.parameters() if p.requires_grad]
        b_matrices = {id(layer.lora_B) for _, layer in lora_layers(model)}
        return loraplus_groups(params, b_matrices, lr, weight_decay, float(self.config.loraplus_lr_ratio))
