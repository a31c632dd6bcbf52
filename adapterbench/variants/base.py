"""The variant interface: what a PEFT method may change about a run, and nothing more.

A variant is a thin class around pure functions. The harness calls every hook below for every variant, in the
order written in :mod:`adapterbench.harness.loop`, and never asks which variant it runs. Each hook is a no-op by
default, so a variant overrides only what it needs:

================================  ==========================================================================
hook                              used by (example)
================================  ==========================================================================
``apply(model, arch)``            every variant: module surgery and ``requires_grad`` (once, before training)
``param_groups(model, lr, wd)``   LoRA+: B matrices at ``lr * ratio``
``on_train_start(state)``         AdaLoRA: the budget schedule needs the total number of steps
``on_step_start(state)``          DyLoRA: sample the active rank for this step
``extra_loss(state)``             AdaLoRA: the orthogonality regulariser added to the task loss
``on_optimizer_step(state)``      AdaLoRA: importance scores and rank masking (gradients still present)
``eval_points()``                 DyLoRA: one evaluation per rank
``use_eval_point(model, point)``  DyLoRA: set the rank used by the evaluation
``merge(model)``/``unmerge``      LoRA family: fold the update into the base weights for inference
``describe(model)``               AdaLoRA: final ranks and the budget over steps, written into the record
``deployed_parameters(model, p)`` AdaLoRA: the final budget's parameters; DyLoRA: rank b's share of r_max's
================================  ==========================================================================

Hyper-parameters live in a dataclass (``Config``); the harness builds it from the defaults, the profile and the
user's ``--set key=value`` overrides and records it resolved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from adapterbench.errors import UserError


@dataclass
class TrainState:
    """What hooks may read (and, for ``log``, write) during training.

    ``step`` counts optimizer steps already taken (0 before the first); ``total_steps`` is known before training
    starts. Variants put scalars worth keeping in the record's history into ``log``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    step: int
    total_steps: int
    epoch: int = 0
    loss: torch.Tensor | None = None
    log: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariantConfig:
    """Base of every variant's hyper-parameter dataclass. ``lr`` of ``None`` means "the variant's default"."""


class Variant:
    """Base class: override only the hooks your method needs; every default is a no-op."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""  # "Author et al., Year, Title" and a link
    default_lr: ClassVar[float] = 1e-4
    Config: ClassVar[type[VariantConfig]] = VariantConfig
    # A mergeable variant folds its update into the base weights; inference overhead is then measured merged.
    mergeable: ClassVar[bool] = False

    def __init__(self, config: VariantConfig | None = None):
        self.config = config if config is not None else self.Config()
        self.validate_config()

    # ---- configuration -------------------------------------------------------------------------------
    @classmethod
    def config_keys(cls) -> list[str]:
        return [f.name for f in fields(cls.Config)]

    def validate_config(self) -> None:
        """Raise :class:`UserError` naming the bad value and what is allowed."""

    def validate_schedule(self, total_steps: int) -> None:
        """Raise :class:`UserError` before training when the settings cannot work for ``total_steps``."""

    # ---- hooks, in the order the loop calls them -----------------------------------------------------
    def apply(self, model: nn.Module, arch: Any) -> None:
        """Module surgery and ``requires_grad``. Called once, before the optimizer is built."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups. Default: every trainable tensor at ``lr``; no decay on 1-D tensors."""
        return decay_groups([p for p in model.parameters() if p.requires_grad], lr, weight_decay)

    def on_train_start(self, state: TrainState) -> None:
        """Called once after the optimizer exists and ``state.total_steps`` is known."""

    def on_step_start(self, state: TrainState) -> None:
        """Called before each forward pass of training."""

    def extra_loss(self, state: TrainState) -> torch.Tensor | None:
        """A term added to the task loss before ``backward`` (``None`` adds nothing)."""
        return None

    def on_optimizer_step(self, state: TrainState) -> None:
        """Called right after ``optimizer.step()``, before gradients are zeroed."""

    def on_train_end(self, state: TrainState) -> None:
        """Called once after the last step, before the final evaluation points."""

    def eval_points(self) -> list[Any]:
        """The settings the trained model is evaluated at; ``[None]`` means "as trained"."""
        return [None]

    @contextlib.contextmanager
    def use_eval_point(self, model: nn.Module, point: Any) -> Iterator[None]:
        """Put the model in the state named by ``point`` for the duration of an evaluation."""
        yield

    def merge(self, model: nn.Module) -> None:
        """Fold the trained update into the base weights (only when ``mergeable``)."""
        raise NotImplementedError(f"{self.name} cannot be merged")

    def unmerge(self, model: nn.Module) -> None:
        """Undo :meth:`merge`, restoring the base weights."""
        raise NotImplementedError(f"{self.name} cannot be merged")

    def adapter_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What a checkpoint of this variant holds: every trainable tensor (adapter and head)."""
        return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """Variant-specific facts for the run record (final ranks, budget history, ...)."""
        return {}

    def deployed_parameters(self, model: nn.Module, point: Any) -> int | None:
        """Adapter parameters a deployment at evaluation point ``point`` keeps (``None``: every trained one).

        Called after training. Papers and Pareto charts place a method where it would be deployed: AdaLoRA
        keeps only the triplets of its final budget, DyLoRA at rank b keeps b of its r_max rows and columns.
        The task head is counted apart and never included here.
        """
        return None


def decay_groups(params: list[nn.Parameter], lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters into a decayed group (matrices) and an undecayed one (biases, norm gains).

    Decided by tensor rank, not by names, so it holds for every architecture.
    """
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return groups


def freeze_all_but_head(model: nn.Module) -> None:
    """Freeze every parameter, then unfreeze the task head (everything outside ``model.base_model``)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head_parameters(model):
        p.requires_grad_(True)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The task head: parameters of the model that are not part of its pretrained backbone.

    Found structurally (``model.base_model`` is the backbone in every transformers model), never by name.
    """
    backbone = getattr(model, "base_model", None)
    if backbone is None or backbone is model:
        raise UserError(f"cannot find the task head of {type(model).__name__}: it has no separate base_model")
    backbone_ids = {id(p) for p in backbone.parameters()}
    return [p for p in model.parameters() if id(p) not in backbone_ids]


def build_config(variant_cls: type[Variant], overrides: dict[str, Any]) -> VariantConfig:
    """The variant's Config from its defaults and ``overrides`` (already parsed); unknown keys raise."""
    known = {f.name: f for f in fields(variant_cls.Config)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r} for variant {variant_cls.name!r}; "
                        f"allowed: {', '.join(sorted(known)) or '(none)'}")
    return variant_cls.Config(**overrides)
