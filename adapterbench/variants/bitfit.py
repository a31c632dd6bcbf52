"""``bitfit``: train only the bias terms (Ben Zaken, Ravfogel & Goldberg, 2022, ACL; arXiv 2106.10199).

Every weight matrix and every normalisation gain stays frozen; what is trained is, for each layer ``ℓ``, the
biases of ``y = W x + b``:

    attention  b_q, b_k, b_v, b_attn_out        FFN  b_ffn_in, b_ffn_out        LayerNorm  β (not the gain γ)

plus the task head, as the official code does (``github.com/benzakenelad/BitFit``, ``glue_evaluator.py``:
``_deactivate_relevant_gradients`` unfreezes every parameter whose name contains ``bias`` and the classifier;
with a subset of bias terms it adds ``pooler.dense.bias``). Bias terms are found structurally, as the ``bias``
parameter of each module inside ``model.base_model`` (``nn.Linear`` and the norm layers; the embedding LayerNorm
and the pooler included, as in the official "all"), never by parameter name.

``bias_kinds`` restricts training to a subset, by role per architecture: the roles of
:mod:`adapterbench.variants.targets` (``query``, ``key``, ``value``, ``attn_out``, ``ffn_in``, ``ffn_out``) plus
``layernorm`` (the biases of every norm layer in the backbone); ``intermediate`` is accepted as the official
code's name for ``ffn_in``. With a subset, the pooler's biases (when the backbone has a pooler) are trained too,
as in the official code, because the pooler feeds the classifier.

Bias-free architectures (Llama, Mistral: linear layers without bias, RMSNorm without β) raise a ``UserError``:
training the head alone there would be the ``head`` baseline under BitFit's name. The same holds for any subset
that selects no bias at all.

Default lr 1e-3: the official ``run_glue.py`` default; the paper searched {1e-4, 4e-4, 7e-4, 1e-3} for BitFit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from adapterbench.errors import UserError
from adapterbench.variants.base import Variant, VariantConfig, freeze_all_but_head, head_parameters
from adapterbench.variants.targets import ROLES, ArchSpec, find_targets

BIAS_KINDS = (*ROLES, "layernorm")
KIND_ALIASES = {"intermediate": "ffn_in"}  # the official BitFit code's name


def is_norm(module: nn.Module) -> bool:
    """LayerNorm-like modules: ``nn.LayerNorm``/``nn.GroupNorm`` or a class named ``*Norm`` (RMSNorm, ...)."""
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or type(module).__name__.lower().endswith("norm")


def own_bias(module: nn.Module) -> nn.Parameter | None:
    """The module's own ``bias`` parameter (not a child's), or ``None``."""
    return module._parameters.get("bias")


def backbone_of(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "base_model", None)
    if backbone is None or backbone is model:
        raise UserError(f"bitfit cannot find the backbone of {type(model).__name__}: it has no base_model")
    return backbone


def all_bias_terms(model: nn.Module) -> list[nn.Parameter]:
    """Every module's own bias inside the backbone, once each, in model order."""
    found: dict[int, nn.Parameter] = {}
    for module in backbone_of(model).modules():
        bias = own_bias(module)
        if bias is not None:
            found.setdefault(id(bias), bias)
    return list(found.values())


def parse_bias_kinds(text: str) -> list[str] | None:
    """``"all"`` -> ``None`` (every bias); otherwise the list of kinds, aliases resolved. Bad input raises."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if items == ["all"]:
        return None
    allowed = f"all, or a comma-separated subset of: {', '.join(BIAS_KINDS)} (intermediate = ffn_in)"
    if not items:
        raise UserError(f"bitfit bias_kinds={text!r} is empty; give {allowed}")
    kinds: list[str] = []
    for item in items:
        kind = KIND_ALIASES.get(item, item)
        if kind not in BIAS_KINDS:
            raise UserError(f"bitfit bias kind {item!r} is not allowed; give {allowed}")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def selected_bias_terms(model: nn.Module, kinds: list[str] | None, arch: ArchSpec | None) -> list[nn.Parameter]:
    """The bias terms BitFit trains: all of them (``kinds is None``), or those of the given kinds + the pooler's.

    Raises :class:`UserError` when the model has no bias at all, or a kind has no bias in this model.
    """
    if kinds is None:
        biases = all_bias_terms(model)
        if not biases:
            raise UserError(f"bitfit needs bias terms, but this {model.config.model_type!r} model has none "
                            f"(bias-free linear and norm layers); use another variant, e.g. lora")
        return biases
    backbone = backbone_of(model)
    found: dict[int, nn.Parameter] = {}
    for kind in kinds:
        if kind == "layernorm":
            modules = [m for m in backbone.modules() if is_norm(m)]
        else:
            modules = [m for _, m in find_targets(model, kind, arch)]
        biases = [b for b in map(own_bias, modules) if b is not None]
        if not biases:
            raise UserError(f"bitfit bias kind {kind!r} has no bias terms in this {model.config.model_type!r} "
                            f"model; pick kinds whose layers have biases, or all")
        for b in biases:
            found.setdefault(id(b), b)
    pooler = getattr(backbone, "pooler", None)
    if isinstance(pooler, nn.Module):
        for module in pooler.modules():
            if (b := own_bias(module)) is not None:
                found.setdefault(id(b), b)
    return list(found.values())


@dataclass
class BitFitConfig(VariantConfig):
    bias_kinds: str = "all"  # all, or a subset of query,key,value,attn_out,ffn_in,ffn_out,layernorm


class BitFit(Variant):
    """Train the backbone's bias terms and the task head; everything else is frozen."""

    name = "bitfit"
    paper = ("Ben Zaken, Ravfogel & Goldberg, 2022, BitFit: Simple Parameter-efficient Fine-tuning for "
             "Transformer-based Masked Language-models (ACL) https://arxiv.org/abs/2106.10199")
    default_lr = 1e-3
    Config = BitFitConfig
    # Their default configurations have no bias anywhere; ``apply`` checks structurally and raises UserError.
    unsupported_model_types = ("llama", "mistral")

    def validate_config(self) -> None:
        parse_bias_kinds(self.config.bias_kinds)

    def apply(self, model: nn.Module, arch: Any) -> None:
        arch = arch if isinstance(arch, ArchSpec) else None
        biases = selected_bias_terms(model, parse_bias_kinds(self.config.bias_kinds), arch)
        freeze_all_but_head(model)
        for bias in biases:
            bias.requires_grad_(True)

    def describe(self, model: nn.Module) -> dict[str, Any]:
        head = {id(p) for p in head_parameters(model)}
        trained = [p for p in backbone_of(model).parameters() if p.requires_grad and id(p) not in head]
        return {"bias_kinds": self.config.bias_kinds, "bias_tensors": len(trained),
                "bias_params": sum(p.numel() for p in trained)}
