"""``peft:<method>``: any tuner method of Hugging Face PEFT, run by the same harness as the built-in variants.

``peft_variant("ia3")`` builds, once per method, a :class:`Variant` subclass named ``peft:ia3`` with no code for
that method: its ``Config`` is generated from the fields of PEFT's config class (so ``--set r=4`` or
``--set lora_alpha=16`` work), and its hooks call PEFT's tuner:

* ``apply`` injects the adapter in place with the tuner class (``LoraModel(model, config, "default")``, what
  ``inject_adapter_in_model`` does), so the model object passed in stays the one the harness trains; the tuner is
  kept on the variant, which also keeps the shared state of methods such as VeRA alive. The task head is trained
  directly (PEFT would train a copy of it through ``modules_to_save``).
* ``target_modules``, when not set, comes from our per-architecture roles: ``query,value`` for every method
  (so ``peft:lora`` and ``lora`` adapt the same matrices), ``key,value,ffn_out`` for IA3 with ``ffn_out`` as its
  feed-forward modules (as in the IA3 paper and PEFT's own table), and ``norms`` (every normalisation layer
  inside the transformer blocks) for ``ln_tuning``. A string is a comma-separated list read like every variant's
  ``targets``: roles, ``all-linear``, ``norms``, or module-name suffixes (matched exactly inside the blocks when
  they name linear layers there; otherwise handed to PEFT, which matches them as suffixes anywhere). Never a regex.
* AdaLoRA's allocation goes through the hooks: ``on_train_start`` sets ``total_step`` on the config,
  ``on_optimizer_step`` calls the tuner's ``update_and_allocate(t)``, and ``extra_loss`` returns the orthogonal
  regulariser, which PEFT adds inside ``PeftModel.forward``, a forward the harness does not use.
  As in :mod:`adapterbench.variants.adalora`, ``t`` counts optimizer steps including the one just taken.
* ``mergeable`` is decided by asking PEFT: merge and unmerge are tried on a small probe layer when the class is
  built; ``merge``/``unmerge`` call the tuner's ``merge_adapter``/``unmerge_adapter``.

Prompt-learning methods (prompt/prefix/p-tuning) are not tuners: they need ``PeftModel`` and are refused.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import io
import warnings
from dataclasses import MISSING, field, fields, make_dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from adapterbench.errors import UserError
from adapterbench.variants.base import TrainState, Variant, VariantConfig, head_parameters
from adapterbench.variants.targets import ROLES, ArchSpec, arch_for, blocks, find_targets

ADAPTER = "default"
# PeftConfig's own bookkeeping, and what the bridge sets itself (total_step: from the harness's total steps).
_NOT_SETTINGS = frozenset({"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path",
                           "revision", "inference_mode", "total_step"})
_SETTABLE_DEFAULTS = (type(None), bool, int, float, str, list, tuple, dict)
# Default targets in our syntax (roles, all-linear, norms); every other method gets _FALLBACK_TARGETS.
_DEFAULT_TARGETS = {"ia3": "key,value,ffn_out", "ln_tuning": "norms"}
_FALLBACK_TARGETS = "query,value"
_FEEDFORWARD_ROLE = "ffn_out"
# lr where the method is known to want another than 5e-4 (LoRA's RoBERTa-base GLUE setting).
_DEFAULT_LR = {
    "adalora": 8e-4,  # median of the official AdaLoRA DeBERTaV3-base GLUE scripts, as the adalora variant
    "ia3": 3e-3,  # Liu et al., 2022 (T-Few, arXiv 2205.05638) trained (IA)^3 at 3e-3
}


def _peft_types() -> dict[str, Any]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return {peft_type.value.lower(): peft_type for peft_type in PEFT_TYPE_TO_CONFIG_MAPPING}


def peft_methods() -> list[str]:
    """Names of PEFT's tuner methods the bridge can run (``lora``, ``adalora``, ``ia3``, ...)."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.tuners.tuners_utils import BaseTuner

    return sorted(name for name, t in _peft_types().items()
                  if isinstance(PEFT_TYPE_TO_TUNER_MAPPING.get(t), type)
                  and issubclass(PEFT_TYPE_TO_TUNER_MAPPING[t], BaseTuner))


def peft_variant(method: str) -> type[Variant]:
    """The ``peft:<method>`` variant class; one class per method (``LoRA``, ``lora`` give the same class)."""
    import peft

    key = method.strip().lower().replace("-", "_")
    supported = peft_methods()
    if key not in _peft_types():
        close = difflib.get_close_matches(key, supported, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown PEFT method {method!r}.{hint} PEFT {peft.__version__} has: {', '.join(supported)}")
    if key not in supported:
        raise UserError(f"PEFT method {method!r} is not a tuner (prompt-learning methods need PeftModel); "
                        f"the bridge runs: {', '.join(supported)}")
    return _variant_class(key)


@functools.cache
def _variant_class(key: str) -> type[Variant]:
    import peft
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    types = _peft_types()
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[types[key]]
    tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[types[key]]
    attrs = {
        "name": f"peft:{key}",
        "method": key,
        "paper": f"PEFT {peft.__version__} implementation of {config_cls.__name__} "
                 f"(https://github.com/huggingface/peft)",
        "default_lr": _DEFAULT_LR.get(key, 5e-4),
        "Config": _config_dataclass(key, config_cls),
        "mergeable": _can_merge(config_cls, tuner_cls),
        "peft_config_cls": config_cls,
        "tuner_cls": tuner_cls,
        "__doc__": f"PEFT's {key} ({config_cls.__name__}, {tuner_cls.__name__}) through the adapterbench hooks.",
        "__module__": __name__,
    }
    class_name = "Peft" + "".join(part.capitalize() for part in key.split("_"))
    return type(class_name, (PeftVariant,), attrs)


def _config_dataclass(method: str, config_cls: type) -> type[VariantConfig]:
    """A ``VariantConfig`` dataclass with PEFT's settable fields and defaults (``target_modules`` defaults to None)."""
    specs = []
    for f in fields(config_cls):
        if not f.init or f.name in _NOT_SETTINGS:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        if default is MISSING or not isinstance(default, _SETTABLE_DEFAULTS):
            continue  # nested option objects (runtime configs) cannot come from --set; PEFT's default applies
        if isinstance(default, (list, dict)):
            specs.append((f.name, f.type, field(default_factory=functools.partial(copy.deepcopy, default))))
        else:
            specs.append((f.name, f.type, field(default=default)))
    class_name = "Peft" + "".join(part.capitalize() for part in method.split("_")) + "Config"
    return make_dataclass(class_name, specs, bases=(VariantConfig,), namespace={"__module__": __name__})


class _ProbeModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # 256 wide: several methods need in/out features divisible by their block or vector sizes
        self.proj = nn.Linear(256, 256)


def _can_merge(config_cls: type, tuner_cls: type) -> bool:
    """Whether PEFT can merge and unmerge this method on a plain ``nn.Linear`` (tried on a probe)."""
    names = {f.name for f in fields(config_cls)}
    kwargs: dict[str, Any] = {"target_modules": ["proj"]} if "target_modules" in names else {}
    if "total_step" in names:
        kwargs["total_step"] = 10
    if "feedforward_modules" in names:
        kwargs["feedforward_modules"] = []
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            tuner = tuner_cls(_ProbeModel(), config_cls(**kwargs), ADAPTER)
            tuner.merge_adapter()
            tuner.unmerge_adapter()
    except Exception:  # any failure, for whatever reason, means "do not count on merging"  # noqa: BLE001
        return False
    return True


class PeftVariant(Variant):
    """Base of the generated ``peft:<method>`` classes; see the module docstring."""

    method: ClassVar[str] = ""
    peft_config_cls: ClassVar[type]
    tuner_cls: ClassVar[type]

    def __init__(self, config: VariantConfig | None = None):
        super().__init__(config)
        self.tuner: Any = None
        self.target_names: list[str] = []
        self.steps_taken = 0
        self.budget_history: list[list[int]] = []

    # ---- configuration -------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {f.name: getattr(self.config, f.name) for f in fields(self.config)}

    def build_peft_config(self, target_modules: Any, feedforward_modules: Any = None,
                          total_step: int | None = None) -> Any:
        """PEFT's config object from our settings; PEFT's own validation errors become :class:`UserError`."""
        kwargs = self._settings()
        given = {f.name for f in fields(self.peft_config_cls)}
        if "target_modules" in given:
            kwargs["target_modules"] = target_modules
        if "feedforward_modules" in given:
            kwargs["feedforward_modules"] = feedforward_modules
        if "total_step" in given:
            # PEFT checks tinit < total_step - tfinal at construction; the true value arrives in on_train_start
            placeholder = int(kwargs.get("tinit") or 0) + int(kwargs.get("tfinal") or 0) + 1
            kwargs["total_step"] = total_step if total_step is not None else placeholder
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.peft_config_cls(**kwargs)
        except (ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.name}: {first}") from None

    def validate_config(self) -> None:
        self.build_peft_config(target_modules=None)

    def validate_schedule(self, total_steps: int) -> None:
        c = self._settings()
        if "tinit" in c and "tfinal" in c and c["tinit"] + c["tfinal"] >= total_steps:
            raise UserError(f"{self.name} tinit={c['tinit']} + tfinal={c['tfinal']} leave no steps to allocate "
                            f"the budget in a run of {total_steps} total steps; tinit + tfinal must be below it")

    # ---- hooks -----------------------------------------------------------------------------------------
    def apply(self, model: nn.Module, arch: Any) -> None:
        if self.tuner is not None:
            raise RuntimeError(f"{self.name} is already applied to a model; use a new variant instance")
        arch = arch if isinstance(arch, ArchSpec) else None
        settings = self._settings()
        targets = settings.get("target_modules")
        if targets is None and "target_modules" in settings:
            targets = _DEFAULT_TARGETS.get(self.method, _FALLBACK_TARGETS)
        try:
            targets = resolve_targets(model, targets, arch)
        except UserError as exc:
            raise UserError(f"{self.name}: {exc}; set target_modules=<roles or module suffixes>") from None
        feedforward = settings.get("feedforward_modules")
        if "feedforward_modules" in settings:
            if feedforward is None and isinstance(targets, list):
                ffn = {name for name, _ in _safe_targets(model, _FEEDFORWARD_ROLE, arch)}
                feedforward = [name for name in targets if name in ffn]
            else:
                feedforward = resolve_targets(model, feedforward, arch)
        peft_config = self.build_peft_config(targets, feedforward)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.tuner = self.tuner_cls(model, peft_config, ADAPTER)
        except (ValueError, TypeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.name} cannot be applied to {type(model).__name__}: {first}") from None
        # PEFT froze everything but the adapters; the head is trained as by every variant here.
        for p in head_parameters(model):
            p.requires_grad_(True)
        self.target_names = list(getattr(self.tuner, "targeted_module_names", []))  # model order

    @property
    def peft_config(self) -> Any:
        return self.tuner.peft_config[ADAPTER]

    def on_train_start(self, state: TrainState) -> None:
        if hasattr(self.peft_config, "total_step"):
            self.validate_schedule(state.total_steps)
            self.peft_config.total_step = state.total_steps  # the rank allocator reads it on every call
        self.steps_taken = 0
        budget = self._budget(0)
        self.budget_history = [[0, budget]] if budget is not None else []

    def _budget(self, step: int) -> int | None:
        allocator = getattr(self.tuner, "rankallocator", None)
        return allocator.budget_schedule(step)[0] if allocator is not None else None

    def extra_loss(self, state: TrainState) -> torch.Tensor | None:
        """AdaLoRA's orthogonal regulariser as PEFT computes it in ``AdaLoraModel.forward``:
        ``w * mean over lora_A (r, d_in) and lora_B (d_out, r) of ||A A^T - I||_F, ||B^T B - I||_F``."""
        weight = getattr(self.peft_config, "orth_reg_weight", 0) if self.tuner is not None else 0
        if not weight:
            return None
        norms = []
        for name, p in state.model.named_parameters():
            if f"lora_A.{ADAPTER}" in name or f"lora_B.{ADAPTER}" in name:
                cov = p @ p.T if "lora_A" in name else p.T @ p
                norms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], dtype=cov.dtype,
                                                                       device=cov.device)))
        return weight * torch.stack(norms).mean() if norms else None

    def on_optimizer_step(self, state: TrainState) -> None:
        if not hasattr(self.tuner, "update_and_allocate"):
            return
        self.steps_taken += 1
        self.tuner.update_and_allocate(self.steps_taken)
        budget = self._budget(self.steps_taken)
        if budget is not None:
            state.log["adalora/budget"] = budget
            if not self.budget_history or budget != self.budget_history[-1][1]:
                self.budget_history.append([self.steps_taken, budget])

    def merge(self, model: nn.Module) -> None:
        if not self.mergeable:
            super().merge(model)
        self.tuner.merge_adapter()

    def unmerge(self, model: nn.Module) -> None:
        if not self.mergeable:
            super().unmerge(model)
        self.tuner.unmerge_adapter()

    def describe(self, model: nn.Module) -> dict[str, Any]:
        import peft

        out: dict[str, Any] = {"peft_method": self.method, "peft_version": peft.__version__,
                               "peft_config": self.peft_config_cls.__name__, "target_modules": self.target_names}
        pattern = getattr(self.peft_config, "rank_pattern", None) if self.tuner is not None else None
        if getattr(self.tuner, "rankallocator", None) is not None:
            if pattern:  # AdaLoRA: which singular values each matrix kept
                suffix = f".lora_E.{ADAPTER}"
                out["ranks"] = {name.removesuffix(suffix): int(sum(kept)) for name, kept in pattern.items()}
                out["report"] = {"rank_map": {"key": "ranks", "allocated": True,  # see adapterbench.schema
                                              "title": "final rank per layer and module"}}
            history = list(self.budget_history)
            if history and history[-1][0] != self.steps_taken:
                history.append([self.steps_taken, history[-1][1]])
            out["budget"] = history
        return out


def resolve_targets(model: nn.Module, spec: Any, arch: ArchSpec | None) -> Any:
    """Our target syntax -> full module names (see the module docstring); non-strings pass through to PEFT."""
    if not isinstance(spec, str):
        return spec
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "norms":
            names += norm_layers(model, arch)
            continue
        try:
            names += [name for name, _ in find_targets(model, item, arch)]
        except UserError:
            if item in ROLES or item == "all-linear":
                raise
            names.append(item)  # not a linear layer of the blocks (a norm, a head module): PEFT's suffix match
    if not names:
        raise UserError(f"target_modules={spec!r} names no module; give roles ({', '.join(ROLES)}), all-linear, "
                        f"norms, or module-name suffixes")
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    # model order, as find_targets gives; suffixes for PEFT (not module names) go last
    return sorted(dict.fromkeys(names), key=lambda name: order.get(name, len(order)))


def norm_layers(model: nn.Module, arch: ArchSpec | None) -> list[str]:
    """Full names of the normalisation layers (LayerNorm, RMSNorm) inside the transformer blocks."""
    block_names = [name for name, _ in blocks(model, arch or arch_for(model))]
    return [name for name, module in model.named_modules()
            if any(name.startswith(block + ".") for block in block_names)
            and (isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm")))]


def _safe_targets(model: nn.Module, spec: str, arch: ArchSpec | None) -> list[tuple[str, nn.Linear]]:
    try:
        return find_targets(model, spec, arch)
    except UserError:  # an architecture without that role: no feed-forward modules
        return []
