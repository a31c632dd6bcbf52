"""``head``: a frozen encoder with only the task classifier trained (linear probing), the lower baseline."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from adapterbench.variants.base import Variant, VariantConfig, freeze_all_but_head


@dataclass
class HeadConfig(VariantConfig):
    pass


class HeadOnly(Variant):
    """Train the task head (every parameter outside ``model.base_model``); the backbone stays frozen.

    Reference: the feature-based baseline of Devlin et al., 2019 and Houlsby et al., 2019 ("top layer only").
    """

    name = "head"
    paper = "Houlsby et al., 2019, 'training only the top layer' baseline https://arxiv.org/abs/1902.00751"
    default_lr = 1e-3
    Config = HeadConfig

    def apply(self, model: nn.Module, arch: object) -> None:
        freeze_all_but_head(model)
