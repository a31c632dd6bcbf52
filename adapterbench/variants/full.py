"""``full``: full fine-tuning, the upper baseline every adapter is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from adapterbench.variants.base import Variant, VariantConfig


@dataclass
class FullConfig(VariantConfig):
    pass


class FullFineTuning(Variant):
    """Every parameter of the backbone and the head is trained.

    Reference: Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
    Understanding" (the fine-tuning recipe: AdamW, linear warm-up and decay, lr 2e-5 to 5e-5).
    """

    name = "full"
    paper = "Devlin et al., 2019, BERT (full fine-tuning) https://arxiv.org/abs/1810.04805"
    default_lr = 2e-5
    Config = FullConfig

    def apply(self, model: nn.Module, arch: object) -> None:
        for p in model.parameters():
            p.requires_grad_(True)
