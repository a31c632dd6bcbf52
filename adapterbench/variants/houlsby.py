"""``houlsby``: two bottleneck adapters per transformer block, plus trained layer norms and the task head.

Houlsby, Giurgiu, Jastrzebski, Morrone, de Laroussilhe, Gesmundo, Attariyan & Gelly, 2019, "Parameter-Efficient
Transfer Learning for NLP", ICML (https://arxiv.org/abs/1902.00751); official code google-research/adapter-bert
(``modeling.py: feedforward_adapter``); AdapterHub ``adapters`` calls this layout ``DoubleSeqBnConfig``.

Each adapter maps the hidden state ``h`` (..., d) of a sub-layer's output projection to::

    adapter(h) = h + W_up f(W_down h + b_down) + b_up,   W_down: (m x d), W_up: (d x m)

and sits after the attention output projection and after the feed-forward output projection, before the residual
add and LayerNorm (pre-LN decoders such as Llama: after ``o_proj`` and ``down_proj``, before the residual add).
We wrap those projections (roles ``attn_out`` and ``ffn_out``), so the adapter acts on the projection's output.
In BERT-style blocks the original applies the adapter after the hidden dropout, we apply it before: identical at
evaluation, a small difference in where dropout falls during training.

* Bottleneck ``m``: ``bottleneck`` (default 64, the adapter-bert default; the paper sweeps 8, 64, 256), or
  ``d / reduction_factor`` when ``reduction_factor`` is set (AdapterHub's parametrisation).
* ``f``: GELU in its tanh form, as adapter-bert's ``gelu`` (the BERT code's); ``relu``, ``silu``, ``tanh`` and the
  exact ``gelu`` can be chosen.
* Near-identity initialisation: weights from a zero-mean normal truncated at two standard deviations, std
  ``init_std`` (1e-2 as the paper states; adapter-bert's code default ``init_scale`` is 1e-3), biases zero.
* Trained: the adapters, the gain and bias of every layer norm in the backbone (RMSNorm gains for Llama) and the
  task head, as in the paper. Adapter parameters: ``2 L (2 d m + d + m)`` for L blocks.
* Not mergeable: the nonlinearity keeps the adapter out of the weights.

Default learning rate 3e-4: the middle of the paper's GLUE sweep {3e-5, 3e-4, 3e-3} and the value in adapter-bert's
README example (MRPC, 5 epochs, batch 32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adapterbench.errors import UserError
from adapterbench.variants.base import Variant, VariantConfig, freeze_all_but_head
from adapterbench.variants.targets import find_targets

ACTIVATIONS = {
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu": lambda: nn.GELU(),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


# nn.RMSNorm exists from torch 2.4; the project allows older torch.
_NORM_TYPES = tuple(t for t in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if t is not None)


# ---- pure functions ------------------------------------------------------------------------------------
def bottleneck_size(hidden: int, bottleneck: int, reduction_factor: float | None) -> int:
    """``m``: ``bottleneck``, or ``hidden // reduction_factor`` when a reduction factor is given."""
    if reduction_factor:
        m = int(hidden // reduction_factor)
        if m < 1:
            raise UserError(f"reduction_factor={reduction_factor} leaves no bottleneck for hidden size {hidden}; "
                            f"use a factor of at most {hidden}")
        return m
    return bottleneck


def adapter_param_count(d: int, m: int) -> int:
    """Parameters of one adapter: ``W_down`` (m x d) + ``b_down`` (m) + ``W_up`` (d x m) + ``b_up`` (d)."""
    return 2 * d * m + d + m


def is_norm(module: nn.Module) -> bool:
    """LayerNorm or RMSNorm, including the model-specific classes (``LlamaRMSNorm``) that subclass neither."""
    if isinstance(module, _NORM_TYPES):
        return True
    return type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def norm_parameters(backbone: nn.Module) -> list[nn.Parameter]:
    return [p for module in backbone.modules() if is_norm(module) for p in module.parameters(recurse=False)]


# ---- modules -------------------------------------------------------------------------------------------
class BottleneckAdapter(nn.Module):
    """``h + up(f(down(h)))`` on tensors of shape (..., d), initialised near the identity."""

    def __init__(self, d: int, m: int, activation: str, init_std: float):
        super().__init__()
        self.down = nn.Linear(d, m)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(m, d)
        for linear in (self.down, self.up):
            # adapter-bert: tf.truncated_normal_initializer, which redraws beyond two standard deviations.
            nn.init.trunc_normal_(linear.weight, mean=0.0, std=init_std, a=-2 * init_std, b=2 * init_std)
            nn.init.zeros_(linear.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h: (..., d) -> (..., m) -> (..., d); the skip keeps the block's function when the adapter is small.
        return h + self.up(self.act(self.down(h)))


class AdaptedProjection(nn.Module):
    """A frozen output projection followed by its adapter: ``adapter(base(x))``."""

    def __init__(self, base: nn.Linear, adapter: BottleneckAdapter):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base(x))


def houlsby_adapters(model: nn.Module) -> list[BottleneckAdapter]:
    return [m for m in model.modules() if isinstance(m, BottleneckAdapter)]


# ---- the variant ---------------------------------------------------------------------------------------
@dataclass
class HoulsbyConfig(VariantConfig):
    bottleneck: int = 64
    reduction_factor: float = 0.0  # > 0: m = hidden / reduction_factor, overriding bottleneck
    activation: str = "gelu_tanh"
    init_std: float = 1e-2
    targets: str = "attn_out,ffn_out"
    train_layer_norms: bool = True


class Houlsby(Variant):
    """Sequential bottleneck adapters after attention and feed-forward; see the module docstring."""

    name = "houlsby"
    paper = ("Houlsby et al., 2019, Parameter-Efficient Transfer Learning for NLP "
             "https://arxiv.org/abs/1902.00751")
    default_lr = 3e-4
    Config = HoulsbyConfig
    mergeable = False

    def validate_config(self) -> None:
        c = self.config
        c.reduction_factor = 0.0 if c.reduction_factor is None else c.reduction_factor  # "--set ...=none"
        if isinstance(c.bottleneck, bool) or not isinstance(c.bottleneck, int) or c.bottleneck < 1:
            raise UserError(f"bottleneck={c.bottleneck!r} must be a positive integer")
        if isinstance(c.reduction_factor, bool) or not isinstance(c.reduction_factor, (int, float)) \
                or c.reduction_factor < 0:
            raise UserError(f"reduction_factor={c.reduction_factor!r} must be a positive number (0 uses bottleneck)")
        if c.activation not in ACTIVATIONS:
            raise UserError(f"activation={c.activation!r} is not allowed; allowed: {', '.join(ACTIVATIONS)}")
        if isinstance(c.init_std, bool) or not isinstance(c.init_std, (int, float)) or not 0 < c.init_std < 1:
            raise UserError(f"init_std={c.init_std!r} must be a number in (0, 1) (near-identity initialisation)")
        if not isinstance(c.targets, str) or not c.targets.strip():
            raise UserError(f"targets={c.targets!r} must name roles (attn_out,ffn_out) or module suffixes")
        if not isinstance(c.train_layer_norms, bool):
            raise UserError(f"train_layer_norms={c.train_layer_norms!r} must be true or false")

    def apply(self, model: nn.Module, arch: Any) -> None:
        c = self.config
        freeze_all_but_head(model)
        if c.train_layer_norms:
            for p in norm_parameters(model.base_model):
                p.requires_grad_(True)
        for name, linear in find_targets(model, c.targets, arch):
            d = linear.out_features
            m = bottleneck_size(d, c.bottleneck, c.reduction_factor or None)
            adapter = BottleneckAdapter(d, m, c.activation, float(c.init_std))
            adapter.to(device=linear.weight.device, dtype=linear.weight.dtype)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, AdaptedProjection(linear, adapter))

    def describe(self, model: nn.Module) -> dict[str, Any]:
        adapters = houlsby_adapters(model)
        return {
            "adapters": len(adapters),
            "bottlenecks": sorted({a.down.out_features for a in adapters}),
            "activation": self.config.activation,
            "params/adapter": sum(p.numel() for a in adapters for p in a.parameters()),
            "params/layer_norm": sum(p.numel() for p in norm_parameters(model.base_model) if p.requires_grad),
        }
