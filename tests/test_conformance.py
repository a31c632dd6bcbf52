"""Every registered variant runs the smoke profile on every tiny architecture, through the real harness.

The matrix is built from the registry, so a new variant (built-in or from a plugin's entry point) is covered
without new test code. Variant-specific numerics live in the variant's own test module.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adapterbench.harness.run import RunSpec, execute
from adapterbench.testing import TINY_ARCHITECTURES, save_tiny_model
from adapterbench.variants import VARIANTS

TASKS_DIR = Path(__file__).parent / "data" / "tasks"
SEQUENCE_TASK = str(TASKS_DIR / "sentiment.toml")
TOKEN_TASK = str(TASKS_DIR / "ner.json")
VARIANT_NAMES = VARIANTS.names() + ["peft:lora"]
SMOKE = {"epochs": 3, "max_steps": 3, "latency_batches": 1, "batch_size": 4}


@pytest.fixture(scope="session")
def tiny_model_folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: str(save_tiny_model(root / arch, arch)) for arch in TINY_ARCHITECTURES}


def supported(variant_name: str, arch: str) -> bool:
    cls = VARIANTS.get(variant_name)
    return arch not in getattr(cls, "unsupported_model_types", ())


def smoke(variant: str, task: str, model: str, out: Path, **overrides) -> dict:
    spec = RunSpec(variant=variant, task=task, model=model, seed=0, profile="smoke",
                   overrides={**SMOKE, **overrides}, out_dir=str(out))
    return execute(spec)


def check_record(record: dict) -> None:
    assert record["status"] == "ok", record.get("error")
    m = record["measurements"]
    assert m["params/trainable_head"] > 0, "every variant trains the task head"
    assert 0 < m["params/trainable"] <= m["params/total"]
    assert m["memory/peak_basis"] in ("cpu_rss", "cuda_allocated")
    # the parameter count against the optimizer's own trainable tensors (fp32 weights), measured apart
    assert m["memory/trainable_weights_bytes"] == 4 * m["params/trainable"]
    assert m["memory/optimizer_state_bytes"] >= 2 * m["memory/trainable_weights_bytes"]  # AdamW: two moments
    assert m["throughput/train_samples_per_s"] > 0 and m["time/train_s"] > 0
    assert m["checkpoint/bytes"] > 0
    assert m["inference/latency_ratio"] > 0
    primary = record["metrics"]["primary"]
    assert primary["value"] is not None and math.isfinite(primary["value"])
    assert record["metrics"]["points"], "at least the as-trained evaluation point"
    assert record["history"] and record["history"][-1]["step"] == 3
    assert record["environment"]["torch"] and record["model"]["model_type"]
    if record["variant"]["mergeable"]:
        # the latency ratio is measured merged, and merging kept the logits (rounding only)
        tolerance = 1e-4 if record["training"]["precision"] == "fp32" else 5e-2
        assert m["inference/merged"] is True
        assert m["inference/merge_max_abs_logit_diff"] < tolerance


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_every_variant_runs_on_every_architecture(variant, arch, tiny_model_folders, tmp_path):
    if not supported(variant, arch):
        record = smoke(variant, SEQUENCE_TASK, tiny_model_folders[arch], tmp_path)
        assert record["status"] == "failed" and record["error"]["type"] == "UserError"
        pytest.skip(f"{variant} declares {arch} unsupported: {record['error']['message']}")
    record = smoke(variant, SEQUENCE_TASK, tiny_model_folders[arch], tmp_path)
    check_record(record)



@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_every_variant_runs_token_classification(variant, tiny_model_folders, tmp_path):
    record = smoke(variant, TOKEN_TASK, tiny_model_folders["bert"], tmp_path)
    check_record(record)
    assert set(record["metrics"]["final"]) >= {"validation/f1"}


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_every_variant_trains_under_bf16_autocast(variant, tiny_model_folders, tmp_path):
    """GPU runs use bf16 autocast; CPU autocast exercises the same dtype paths through the whole loop (hooks,
    extra losses, rank sampling and masking, custom kernels)."""
    record = smoke(variant, SEQUENCE_TASK, tiny_model_folders["bert"], tmp_path, precision="bf16")
    assert record["training"]["precision"] == "bf16"
    check_record(record)
