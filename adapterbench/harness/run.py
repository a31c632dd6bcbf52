"""One run, in this process: load, adapt, train, evaluate, measure, and build the record.

:class:`RunSpec` is everything that defines a run; :func:`execute` turns it into a record whatever happens —
status ``ok``, ``diverged`` (non-finite loss), ``oom`` (out of memory) or ``failed`` (any other error, with the
traceback kept in the record).
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import adapterbench
from adapterbench.errors import UserError
from adapterbench.harness.data import iterate, sorted_batches
from adapterbench.harness.loop import Diverged, autocast_factory, train_and_evaluate
from adapterbench.harness.measure import count_parameters, paired_latency
from adapterbench.harness.records import SCHEMA_VERSION, checkpoint_path, make_run_id
from adapterbench.harness.settings import TrainSettings, resolve_settings, split_overrides
from adapterbench.models import ModelRef, load_model, load_tokenizer, resolve_model
from adapterbench.tasks import get_task
from adapterbench.tasks.encode import encode_split
from adapterbench.tasks.spec import TaskSpec
from adapterbench.variants import VARIANTS
from adapterbench.variants.base import Variant, build_config
from adapterbench.variants.targets import arch_for

SUBSET_SEED = 0  # every variant and seed sees the same training subset; seeds vary init and order


@dataclass
class RunSpec:
    variant: str
    task: str
    model: str
    seed: int
    profile: str
    overrides: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    out_dir: str = "results"

    @property
    def run_id(self) -> str:
        return make_run_id(self.task, self.variant, self.model, self.profile, self.seed, self.overrides)


def prepare_variant(spec: RunSpec) -> tuple[type[Variant], Variant, TrainSettings, str]:
    """The variant instance and loop settings of ``spec``; raises :class:`UserError` on bad settings."""
    entry = VARIANTS.entry(spec.variant)
    variant_cls = entry.load()
    train_over, variant_over = split_overrides(spec.overrides, spec.variant, variant_cls.config_keys())
    variant = variant_cls(build_config(variant_cls, variant_over))
    settings = resolve_settings(spec.profile, train_over)
    return variant_cls, variant, settings, entry.origin


def select_device(settings: TrainSettings) -> tuple[torch.device, str]:
    if settings.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(settings.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device={settings.device!r} but CUDA is not available; use device=cpu or auto")
    precision = settings.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and _native_bf16(device) else "fp32"
    return device, precision


def _native_bf16(device: torch.device) -> bool:
    # Emulated bf16 (pre-Ampere GPUs) is slower than fp32, so "auto" only picks it where it is native.
    with torch.cuda.device(device):
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 has no including_emulation and does not count emulation
            return torch.cuda.is_bf16_supported()


def subset(examples: list[Any], limit: int | None) -> list[Any]:
    """A fixed random subset (same for every variant and seed), in the original order."""
    if limit is None or len(examples) <= limit:
        return examples
    keep = sorted(random.Random(SUBSET_SEED).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def base_record(spec: RunSpec) -> dict[str, Any]:
    """The record of ``spec`` before it runs: identity, resolved config, task, model, loop settings.

    Every piece that resolves is filled in, so that a run that fails (or whose process dies) is still grouped
    with its successful siblings by the reports; ``status`` starts as ``failed`` until the run succeeds.
    """
    record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "status": "failed",
                              "error": None, "seed": spec.seed, "profile": spec.profile,
                              "variant": {"name": spec.variant}, "task": {"name": spec.task},
                              "model": {"name": spec.model}, "training": {"overrides": spec.overrides}}
    try:
        variant_cls, variant, settings, origin = prepare_variant(spec)
        record["variant"] = {"name": spec.variant, "origin": origin, "config": asdict(variant.config),
                             "mergeable": variant_cls.mergeable}
        device, precision = select_device(settings)
        lr = settings.lr if settings.lr is not None else variant_cls.default_lr
        record["training"] = {**settings.as_dict(), "lr": lr, "precision": precision, "device": str(device),
                              "overrides": spec.overrides}
        record["task"] = task_summary(get_task(spec.task))
        ref = resolve_model(spec.model)
        record["model"] = {"name": ref.name, "path": ref.path, "weights_sha256": ref.weights_sha256}
    except UserError:
        pass  # the run itself raises it again and records the message
    return record


def execute(spec: RunSpec, progress: Any = None) -> dict[str, Any]:
    """Run ``spec`` and return its record (never raises for a failed run; ``UserError`` is recorded too)."""
    wall_start = time.perf_counter()
    record = base_record(spec)
    try:
        _run(spec, record, progress)
        record["status"] = "ok"
    except Exception as exc:  # a benchmark matrix goes on; the record keeps the traceback
        record.update(status=status_of(exc), error=_error(exc))
    record.setdefault("measurements", {})["time/wall_s"] = time.perf_counter() - wall_start
    record["environment"] = environment(record.get("training", {}).get("device"))
    record["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return record


# Allocators that report exhaustion as a plain RuntimeError: the CPU one ("DefaultCPUAllocator: can't allocate
# memory: you tried to allocate ..."), and MPS/XPU ("... out of memory"); CUDA has its own exception type.
OOM_MESSAGES = ("DefaultCPUAllocator: can't allocate memory", "out of memory")


def status_of(exc: BaseException) -> str:
    """The record status of an exception that ended a run: ``diverged``, ``oom`` or ``failed``."""
    if isinstance(exc, Diverged):
        return "diverged"
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return "oom"
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in OOM_MESSAGES):
        return "oom"
    return "failed"


def _run(spec: RunSpec, record: dict[str, Any], progress: Any) -> None:
    variant_cls, variant, settings, _ = prepare_variant(spec)
    task = get_task(spec.task)
    device, precision = select_device(settings)
    lr = settings.lr if settings.lr is not None else variant_cls.default_lr
    ref = resolve_model(spec.model)

    seed_everything(spec.seed)
    tokenizer = load_tokenizer(ref)
    data_dir = Path(spec.data_dir) if spec.data_dir else None
    train = subset(encode_split(task, task.train_split, tokenizer, settings.max_length, data_dir),
                   settings.max_train_samples)
    evals = {split: subset(encode_split(task, split, tokenizer, settings.max_length, data_dir),
                           settings.max_eval_samples) for split in task.eval_splits}
    record["training"].update(train_examples=len(train), eval_examples={k: len(v) for k, v in evals.items()})

    model, missing = _load(ref, task, tokenizer, device)
    record["model"]["model_type"] = getattr(model.config, "model_type", None)
    original_ids = {id(p) for p in model.parameters()}

    seed_everything(spec.seed)  # the adapter's initialisation depends only on the seed
    arch = _arch_or_none(model)
    variant.apply(model, arch)
    model.to(device)
    measurements = record.setdefault("measurements", {})
    measurements.update(count_parameters(model, original_ids, set(missing)))

    result = train_and_evaluate(model, variant, task, train, evals, settings, lr, spec.seed, device, precision,
                                tokenizer.pad_token_id, progress)
    measurements.update(result.measurements)
    record["training"]["total_steps"] = measurements.pop("training/total_steps")
    record["training"]["steps_per_epoch"] = measurements.pop("training/steps_per_epoch")
    record["history"] = result.history
    primary_key = f"{task.primary_split}/{task.primary_metric}"
    record["metrics"] = {
        "primary": {"name": task.primary_metric, "split": task.primary_split,
                    "value": result.final.get(primary_key), "best_value": result.best.get(primary_key),
                    "best_epoch": result.best.get("epoch")},
        "final": result.final, "best": result.best, "points": result.points,
    }
    record["variant_info"] = variant.describe(model)

    if settings.save_checkpoint:
        measurements.update(_save_checkpoint(variant, model, Path(spec.out_dir), spec.run_id))
    latency_batches = _latency_batches(evals, settings, tokenizer.pad_token_id, device)
    if latency_batches:
        base_model, _ = _load(ref, task, tokenizer, device)  # a fresh, unadapted copy to time side by side
        measurements.update(_inference_overhead(variant, model, base_model, latency_batches, device,
                                                autocast_factory(device, precision)))
        del base_model


def _load(ref: ModelRef, task: TaskSpec, tokenizer: Any, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    model, missing = load_model(ref, task.kind, task.num_labels, tokenizer.pad_token_id)
    if task.labels and task.kind != "regression":
        model.config.id2label = dict(enumerate(task.labels))
        model.config.label2id = {label: i for i, label in enumerate(task.labels)}
    return model.to(device), missing


def _arch_or_none(model: torch.nn.Module) -> Any:
    try:
        return arch_for(model)
    except UserError:
        return None  # variants that need roles raise their own error listing the module names


def _latency_batches(evals: dict[str, list[dict[str, Any]]], settings: TrainSettings, pad_token_id: int,
                     device: torch.device) -> list[dict[str, torch.Tensor]]:
    if settings.latency_batches <= 0:
        return []
    examples = next(iter(evals.values()))
    batches = sorted_batches([len(e["input_ids"]) for e in examples], settings.eval_batch_size)
    # Spread the timed batches over the length range so short and long inputs both count.
    step = max(1, len(batches) // settings.latency_batches)
    chosen = batches[::step][: settings.latency_batches]
    return [{k: v.to(device) for k, v in b.items()} for b in iterate(examples, chosen, pad_token_id)]


def _inference_overhead(variant: Variant, model: torch.nn.Module, base_model: torch.nn.Module,
                        batches: list[dict[str, torch.Tensor]], device: torch.device, autocast: Any
                        ) -> dict[str, Any]:
    """Evaluation latency of the trained model (merged when possible) over the unadapted base model's."""
    merged = False
    extra: dict[str, Any] = {}
    if variant.mergeable:
        before = _logits(model, batches, autocast)
        variant.merge(model)
        merged = True
        # Merging must keep the function: the record says by how much the logits moved.
        extra["inference/merge_max_abs_logit_diff"] = max(
            float((a - b).abs().max()) for a, b in zip(before, _logits(model, batches, autocast)))
    try:
        latency, base_latency = paired_latency([model, base_model], batches, device, autocast)
    finally:
        if merged:
            variant.unmerge(model)
    return {"inference/latency_ratio": latency / base_latency, "inference/merged": merged,
            "inference/base_latency_s": base_latency, "inference/latency_s": latency, **extra}


def _logits(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], autocast: Any) -> list[torch.Tensor]:
    model.eval()
    with torch.inference_mode(), autocast():
        return [model(**{k: v for k, v in b.items() if k != "labels"}).logits.float() for b in batches]


def _save_checkpoint(variant: Variant, model: torch.nn.Module, out_dir: Path, run_id: str) -> dict[str, Any]:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in variant.adapter_state_dict(model).items()}
    path = checkpoint_path(out_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"variant": variant.name, "run_id": run_id})
    os.replace(tmp, path)
    return {"checkpoint/bytes": path.stat().st_size, "checkpoint/file": str(path.relative_to(out_dir)),
            "checkpoint/tensors": len(tensors)}


def task_summary(task: TaskSpec) -> dict[str, Any]:
    return {"name": task.name, "version": task.version, "kind": task.kind, "primary_metric": task.primary_metric,
            "primary_split": task.primary_split, "greater_is_better": task.greater_is_better,
            "eval_splits": list(task.eval_splits), "origin": task.origin}


def _error(exc: BaseException) -> dict[str, str]:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"type": type(exc).__name__, "message": message, "traceback": traceback.format_exc()}


_ENVIRONMENT: dict[str, Any] | None = None


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions, device and the project's git commit; ``device`` (e.g. "cuda:1") picks the GPU named."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        import transformers

        try:
            import peft
            peft_version = peft.__version__
        except ImportError:
            peft_version = None
        cuda = torch.cuda.is_available()
        commit, dirty = git_state(Path(adapterbench.__file__).resolve().parent.parent)
        _ENVIRONMENT = {
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft_version,
            "adapterbench": adapterbench.__version__, "platform": platform.platform(),
            "device_name": cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": torch.version.cuda if cuda else None,
            "git_commit": commit, "git_dirty": dirty, "argv": sys.argv[1:],
        }
    if device and device.startswith("cuda") and torch.cuda.is_available():
        return {**_ENVIRONMENT, "device_name": torch.cuda.get_device_name(torch.device(device))}
    return _ENVIRONMENT


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """The project's commit and whether its tracked files have changes (None outside a checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None
