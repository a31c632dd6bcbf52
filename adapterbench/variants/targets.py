"""Where adapters go, per architecture, so that users never have to name modules.

Each supported architecture maps *roles* (``query``, ``key``, ``value``, ``attn_out``, ``ffn_in``, ``ffn_out``)
to the suffix of the ``nn.Linear`` that plays that role inside one transformer block. A target specification is a
comma-separated list of roles, explicit module-name suffixes, or ``all-linear`` (every linear layer inside the
encoder/decoder blocks, never the task head).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from adapterbench.errors import UserError


@dataclass(frozen=True)
class ArchSpec:
    """The module layout of one architecture family. Role values are name suffixes inside a block."""

    family: str
    model_types: tuple[str, ...]
    block: str  # regex matching the full name of each transformer block
    roles: dict[str, tuple[str, ...]]

    def role_suffixes(self, role: str) -> tuple[str, ...]:
        return self.roles.get(role, ())


_BERT_LIKE = {
    "query": ("attention.self.query",),
    "key": ("attention.self.key",),
    "value": ("attention.self.value",),
    "attn_out": ("attention.output.dense",),
    "ffn_in": ("intermediate.dense",),
    "ffn_out": ("output.dense",),  # the block's own output.dense, not attention.output.dense (see _matches)
}

ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec("bert", ("bert",), r".*\.encoder\.layer\.\d+$", _BERT_LIKE),
    ArchSpec("roberta", ("roberta", "xlm-roberta", "camembert"), r".*\.encoder\.layer\.\d+$", _BERT_LIKE),
    # DeBERTa v1 ("deberta") fuses q, k, v into one in_proj with bare q/v biases: not mapped, so users name
    # its modules explicitly rather than get a silently different adapter placement.
    ArchSpec("deberta-v2", ("deberta-v2",), r".*\.encoder\.layer\.\d+$", {
        **_BERT_LIKE,
        "query": ("attention.self.query_proj",),
        "key": ("attention.self.key_proj",),
        "value": ("attention.self.value_proj",),
    }),
    ArchSpec("distilbert", ("distilbert",), r".*\.transformer\.layer\.\d+$", {
        "query": ("attention.q_lin",), "key": ("attention.k_lin",), "value": ("attention.v_lin",),
        "attn_out": ("attention.out_lin",), "ffn_in": ("ffn.lin1",), "ffn_out": ("ffn.lin2",),
    }),
    ArchSpec("llama", ("llama", "qwen2", "mistral", "qwen3"), r".*\.layers\.\d+$", {
        "query": ("self_attn.q_proj",), "key": ("self_attn.k_proj",), "value": ("self_attn.v_proj",),
        "attn_out": ("self_attn.o_proj",), "ffn_in": ("mlp.gate_proj", "mlp.up_proj"),
        "ffn_out": ("mlp.down_proj",),
    }),
)

ROLES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


def arch_for(model: nn.Module) -> ArchSpec:
    """The :class:`ArchSpec` of a transformers model, or a :class:`UserError` listing its linear layers."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for spec in ARCHITECTURES:
        if model_type in spec.model_types:
            return spec
    raise UserError(
        f"unknown architecture {model_type!r}: name the target modules with --set targets=<suffix,...>; "
        f"candidate linear modules: {', '.join(linear_suffixes(model)) or '(none)'}"
    )


def linear_suffixes(model: nn.Module) -> list[str]:
    """Distinct names of linear layers with the block index stripped (what a user may pass as targets)."""
    seen: dict[str, None] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            seen[re.sub(r"^.*?\.\d+\.", "", name)] = None
    return list(seen)


def blocks(model: nn.Module, arch: ArchSpec) -> list[tuple[str, nn.Module]]:
    """The transformer blocks, in order."""
    pattern = re.compile(arch.block)
    return [(name, module) for name, module in model.named_modules() if pattern.match(name)]


def find_targets(model: nn.Module, spec: str | list[str], arch: ArchSpec | None = None) -> list[tuple[str, nn.Linear]]:
    """Linear modules selected by ``spec`` (roles, explicit suffixes, or ``all-linear``), in model order.

    ``spec`` is matched only inside the transformer blocks, so the task head is never a target. Raises
    :class:`UserError` when an item matches nothing, listing the names that exist.
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise UserError("empty targets: give roles (query,value,...), module suffixes, or all-linear")
    if arch is None:
        # Explicit suffixes work on architectures we do not know; roles need the table.
        needs_arch = any(item in ROLES or item == "all-linear" for item in items)
        arch = arch_for(model) if needs_arch else None
    block_names = [name for name, _ in blocks(model, arch)] if arch else None
    found: dict[str, nn.Linear] = {}
    for item in items:
        suffixes = arch.role_suffixes(item) if (arch and item in ROLES) else (item,)
        hits = 0
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            parent = _block_of(name, block_names)
            if block_names is not None and parent is None:
                continue  # outside the transformer blocks: embeddings, pooler, task head
            relative = name[len(parent) + 1:] if parent else name
            if item == "all-linear" or any(_matches(relative, s, exact=bool(parent)) for s in suffixes):
                found[name] = module
                hits += 1
        if hits == 0:
            raise UserError(f"target {item!r} matches no linear module; roles: {', '.join(ROLES)}, all-linear; "
                            f"module names: {', '.join(linear_suffixes(model))}")
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(found.items(), key=lambda kv: order[kv[0]])


def _block_of(name: str, block_names: list[str] | None) -> str | None:
    if block_names is None:
        return ""
    for block in block_names:
        if name.startswith(block + "."):
            return block
    return None


def _matches(name: str, suffix: str, exact: bool) -> bool:
    # Inside a known block the match is exact, so BERT's "output.dense" does not also pick
    # "attention.output.dense"; on an unknown architecture a dotted suffix is all we have.
    return name == suffix if exact else (name == suffix or name.endswith("." + suffix))
