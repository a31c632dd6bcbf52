"""The variant registry.

Built-ins are listed as lazy ``"module:Class"`` targets so ``bench list variants`` does not import torch; third
parties add variants through the entry-point group ``adapterbench.variants``::

    [project.entry-points."adapterbench.variants"]
    myvariant = "my_package.my_module:MyVariant"

``peft:<method>`` names (``peft:lora``, ``peft:ia3``, ...) wrap PEFT's own implementation of that method.
"""

from adapterbench.registry import Registry

VARIANTS: Registry = Registry("variant", entry_point_group="adapterbench.variants")

for _name, _target in {
    "full": "adapterbench.variants.full:FullFineTuning",
    "head": "adapterbench.variants.head:HeadOnly",
    "lora": "adapterbench.variants.lora:LoRA",
    "bitfit": "adapterbench.variants.bitfit:BitFit",
    "dylora": "adapterbench.variants.dylora:DyLoRA",
    "adalora": "adapterbench.variants.adalora:AdaLoRA",
    "loraplus": "adapterbench.variants.loraplus:LoRAPlus",
    "houlsby": "adapterbench.variants.houlsby:Houlsby",
}.items():
    VARIANTS.register(_name, _target)
VARIANTS.register_family("peft", "adapterbench.variants.peft_bridge:peft_variant")

# Built-ins whose module is not written yet are listed but fail on load; keep this list honest.
BUILTIN_NAMES = ("full", "head", "lora", "bitfit", "dylora", "adalora", "loraplus", "houlsby")
