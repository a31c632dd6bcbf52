"""``lora``: Low-Rank Adaptation (Hu et al., 2021, arXiv 2106.09685).

Each target ``nn.Linear`` (``W0``: ``d_out x d_in``, frozen) is replaced by a :class:`LoRALinear` computing::

    h = W0 x + b + (alpha / r) · B A dropout(x)        A: r x d_in (Kaiming-uniform), B: d_out x r (zero)

Checked against PEFT (``peft/tuners/lora/layer.py``: same initialisation, same scaling, dropout on the low-rank
path only) and the official ``loralib`` (``microsoft/LoRA``); ``tests/test_lora.py`` compares outputs and merged
weights with PEFT's for the same ``A`` and ``B``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adapterbench.errors import UserError
from adapterbench.variants.base import Variant, VariantConfig, freeze_all_but_head
from adapterbench.variants.lowrank import (
    init_lora_,
    lora_linear,
    lora_scaling,
    lowrank_delta,
    parse_rank_pattern,
)
from adapterbench.variants.targets import ArchSpec, find_targets


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update: ``h = W0 x + b + s · B A x``.

    Shapes: ``x`` ``(..., d_in)`` -> ``h`` ``(..., d_out)``; ``lora_A`` ``(r, d_in)``, ``lora_B`` ``(d_out, r)``;
    ``s = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA). ``A`` and ``B`` take the base weight's dtype and device.
    This class has no dropout on the low-rank path; :class:`LoRALinearWithDropout` adds it, so that neither class
    tests for dropout on every call. ``merged`` means ``s · B A`` is currently folded into ``base.weight``.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, rslora: bool = False):
        super().__init__()
        self.base = base
        self.r = r
        self.alpha = alpha
        self.scaling = lora_scaling(alpha, r, rslora)
        factory = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, r, **factory))
        init_lora_(self.lora_A, self.lora_B)
        self.merged = False

    # Code that reads a linear layer's attributes (dtype checks, ``in_features``) sees the base layer's.
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:  # base.weight already holds W0 + s·BA
            return F.linear(x, self.base.weight, self.base.bias)
        return lora_linear(x, self.base.weight, self.base.bias, self.lora_A, self.lora_B, self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        """``W0 <- W0 + s · B A`` (no-op when already merged)."""
        if not self.merged:
            self.base.weight.add_(lowrank_delta(self.lora_A, self.lora_B, self.scaling))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """``W0 <- W0 - s · B A`` (no-op when not merged); exact up to floating-point rounding."""
        if self.merged:
            self.base.weight.sub_(lowrank_delta(self.lora_A, self.lora_B, self.scaling))
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self.merged}"


class LoRALinearWithDropout(LoRALinear):
    """:class:`LoRALinear` with dropout on the low-rank input only: ``h = W0 x + b + s · B A dropout(x)``."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float, rslora: bool = False):
        super().__init__(base, r, alpha, rslora)
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.base.weight, self.base.bias)
        return lora_linear(x, self.base.weight, self.base.bias, self.lora_A, self.lora_B, self.scaling,
                           x_lora=self.lora_dropout(x))


def wrap_linear(base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False) -> LoRALinear:
    """The LoRA layer for ``base``; the dropout-free class when ``dropout == 0`` (the fast path)."""
    if dropout > 0:
        return LoRALinearWithDropout(base, r, alpha, dropout, rslora)
    return LoRALinear(base, r, alpha, rslora)


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """Every LoRA layer of ``model`` with its module name, in model order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def resolve_ranks(model: nn.Module, target_names: list[str], default_rank: int, pattern: dict[str, int],
                  arch: ArchSpec | None) -> dict[str, int]:
    """The rank of each target: ``default_rank`` unless a ``rank_pattern`` key (role or suffix) selects it.

    A key that selects none of the targets, or a module that two keys give different ranks, is a
    :class:`UserError`: both are almost certainly typos.
    """
    ranks = dict.fromkeys(target_names, default_rank)
    given: dict[str, str] = {}
    for key, rank in pattern.items():
        try:
            hits = [name for name, _ in find_targets(model, key, arch) if name in ranks]
        except UserError:
            hits = []
        if not hits:
            raise UserError(f"rank_pattern key {key!r} selects none of the LoRA targets; give a role or suffix "
                            f"of one of: {', '.join(target_names)}")
        for name in hits:
            if name in given and ranks[name] != rank:
                raise UserError(f"rank_pattern gives {name} two ranks ({given[name]}={ranks[name]}, "
                                f"{key}={rank}); give one")
            ranks[name], given[name] = rank, key
    return ranks


@dataclass
class LoRAConfig(VariantConfig):
    r: int = 8
    alpha: float = 16.0
    # 0 as the official GLUE code: microsoft/LoRA examples/NLU scripts pass no lora_dropout (loralib's default 0)
    dropout: float = 0.0
    targets: str = "query,value"  # roles (query,key,value,attn_out,ffn_in,ffn_out), module suffixes, all-linear
    rslora: bool = False  # scaling alpha / sqrt(r) instead of alpha / r
    rank_pattern: str = ""  # per-module rank, e.g. "value=4,query=16" (roles or suffixes)


class LoRA(Variant):
    """LoRA on the attention query and value projections by default, as in the paper's GLUE experiments.

    The backbone is frozen; the ``A``/``B`` matrices and the task head are trained (as the paper's code does for
    GLUE). Trainable adapter parameters: ``sum over targets of r · (d_in + d_out)``.

    Default lr 5e-4: the LoRA paper's RoBERTa-base GLUE runs used 4e-4 to 5e-4 (Hu et al., 2021, Table 9;
    with r = 8). Merging folds ``s · B A`` into each base weight, so merged inference costs nothing extra.
    """

    # What the reports chart (adapterbench.schema.ReportHints): "ranks" is a rank map, fixed before training
    # (a heatmap only when a rank pattern made the ranks differ).
    report_hints = {"rank_map": {"key": "ranks", "allocated": False, "title": "rank per layer and module"}}
    name = "lora"
    paper = ("Hu et al., 2021, LoRA: Low-Rank Adaptation of Large Language Models "
             "https://arxiv.org/abs/2106.09685")
    default_lr = 5e-4
    Config = LoRAConfig
    mergeable = True

    def validate_config(self) -> None:
        c = self.config
        if isinstance(c.r, bool) or not isinstance(c.r, int) or c.r < 1:
            raise UserError(f"lora r={c.r!r} is not allowed; give a positive integer rank such as 8")
        if isinstance(c.alpha, bool) or not isinstance(c.alpha, (int, float)) or not c.alpha > 0:
            raise UserError(f"lora alpha={c.alpha!r} is not allowed; give a positive number such as 16")
        if isinstance(c.dropout, bool) or not isinstance(c.dropout, (int, float)) or not 0 <= c.dropout < 1:
            raise UserError(f"lora dropout={c.dropout!r} is not allowed; give a number in [0, 1)")
        if not isinstance(c.targets, str) or not c.targets.strip():
            raise UserError(f"lora targets={c.targets!r} is not allowed; give roles (query,value,...), module "
                            f"suffixes, or all-linear")
        if not isinstance(c.rslora, bool):
            raise UserError(f"lora rslora={c.rslora!r} is not allowed; give true or false")
        if not isinstance(c.rank_pattern, str):
            raise UserError(f"lora rank_pattern={c.rank_pattern!r} is not allowed; give e.g. 'value=4,query=16'")
        parse_rank_pattern(c.rank_pattern)

    def apply(self, model: nn.Module, arch: Any) -> None:
        if lora_layers(model):
            raise RuntimeError("LoRA is already applied to this model")
        c = self.config
        arch = arch if isinstance(arch, ArchSpec) else None
        targets = find_targets(model, c.targets, arch)
        ranks = resolve_ranks(model, [n for n, _ in targets], c.r, parse_rank_pattern(c.rank_pattern), arch)
        freeze_all_but_head(model)
        for name, linear in targets:
            layer = wrap_linear(linear, ranks[name], c.alpha, c.dropout, c.rslora)
            replace_module(model, name, layer)

    def merge(self, model: nn.Module) -> None:
        for _, layer in lora_layers(model):
            layer.merge()

    def unmerge(self, model: nn.Module) -> None:
        for _, layer in lora_layers(model):
            layer.unmerge()

    def describe(self, model: nn.Module) -> dict[str, Any]:
        layers = lora_layers(model)
        return {
            "lora_modules": len(layers),
            "ranks": {name: layer.r for name, layer in layers},
            "scaling": sorted({layer.scaling for _, layer in layers}),
            "report": self.report_hints,
        }
