"""The registry, ``--set`` parsing, profiles, and the record files (atomic, never silently overwritten)."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from adapterbench.errors import UserError
from adapterbench.harness import records
from adapterbench.harness.settings import (
    PROFILES,
    check_overrides,
    parse_overrides,
    resolve_settings,
    split_overrides,
)
from adapterbench.registry import Registry
from adapterbench.variants import BUILTIN_NAMES, VARIANTS


def test_builtin_variants_are_listed_without_importing_them():
    assert set(BUILTIN_NAMES) <= set(VARIANTS.names())
    for name in BUILTIN_NAMES:
        assert isinstance(VARIANTS.entry(name).target, (str, type))


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError, match=r"unknown variant 'lroa'\. Did you mean 'lora'\?"):
        VARIANTS.get("lroa")


def test_duplicate_names_raise():
    registry = Registry("thing")
    registry.register("a", object())
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a", object())


def test_lazy_targets_and_families_resolve():
    registry = Registry("thing")
    registry.register("path", "pathlib:Path")
    registry.register_family("size", "builtins:len")  # "size:abc" -> len("abc")
    import pathlib

    assert registry.get("path") is pathlib.Path
    assert registry.get("size:abc") == 3
    assert "size:anything" in registry and "nope" not in registry


def test_entry_point_plugins_are_registered_with_their_distribution(monkeypatch):
    class FakeDist:
        name, version = "my-variants", "1.2"

    ep = metadata.EntryPoint(name="myvariant", value="pathlib:PurePath", group="adapterbench.variants")
    object.__setattr__(ep, "dist", FakeDist()) if hasattr(ep, "dist") else None
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [ep] if group == "adapterbench.variants" else [])
    registry = Registry("variant", entry_point_group="adapterbench.variants")
    import pathlib

    assert registry.get("myvariant") is pathlib.PurePath
    assert registry.entry("myvariant").origin == "my-variants 1.2"


def test_parse_overrides_types_and_errors():
    assert parse_overrides(["lr=1e-4", "r=8", "rslora=true", "targets=query,value", "max_steps=none"]) == {
        "lr": 1e-4, "r": 8, "rslora": True, "targets": "query,value", "max_steps": None}
    for bad in ["lr", "=3", "lr=", "a b=1"]:
        with pytest.raises(UserError, match="malformed --set"):
            parse_overrides([bad])


def test_overrides_go_to_the_loop_or_to_the_named_variant():
    train, variant = split_overrides({"lr": 1e-3, "r": 4, "lora.alpha": 32, "dylora.alpha": 8, "lora.epochs": 5}, "lora",
                                     ["r", "alpha"])
    assert train == {"lr": 1e-3, "epochs": 5} and variant == {"r": 4, "alpha": 32}
    with pytest.raises(UserError, match="unknown setting"):
        check_overrides({"rank": 4}, {"lora": ["r"]})
    with pytest.raises(UserError, match="not a variant of this run"):
        check_overrides({"lorra.r": 4}, {"lora": ["r"]})
    check_overrides({"adalora.r": 4}, {"lora": ["r"]})  # a registered variant outside this run: ignored


@pytest.mark.parametrize("key,value,message", [
    ("lr", -1e-4, "lr=-0.0001 is not allowed"),
    ("epochs", 0, "epochs=0 is not allowed"),
    ("warmup_ratio", 1.5, "warmup_ratio=1.5 is not allowed"),
    ("precision", "fp8", "precision='fp8' is not allowed"),
    ("batch_size", 2.5, "batch_size=2.5 is not allowed"),
])
def test_bad_loop_settings_name_the_value(key, value, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_settings("quick", {key: value})


def test_profiles_grow_from_smoke_to_standard():
    assert PROFILES["smoke"].max_train_samples < PROFILES["quick"].max_train_samples
    assert PROFILES["standard"].max_train_samples is None
    with pytest.raises(UserError, match="unknown profile 'fast'"):
        resolve_settings("fast", {})


def test_records_are_written_atomically_and_superseded_not_overwritten(tmp_path):
    path = records.record_path(tmp_path, "run-a")
    minimal = {"schema_version": 2, "run_id": "run-a", "seed": 0, "variant": {"name": "head"},
               "task": {"name": "sst2"}, "model": {"name": "m"}}
    records.write_record(path, {**minimal, "status": "failed"})
    assert records.existing_status(path) == "failed"
    moved = records.supersede(path)
    assert moved is not None and moved.parent.name == "superseded" and not path.exists()
    assert json.loads(moved.read_text())["status"] == "failed"
    records.write_record(path, {**minimal, "status": "ok", "metrics": {"final": {"validation/accuracy": 0.5}}})
    scan = records.scan_records([tmp_path])
    assert [r["status"] for _, r in scan.found] == ["ok"] and scan.skipped == []  # superseded: kept, not read
    assert not list(tmp_path.glob(".*.tmp"))


def test_run_ids_differ_by_settings_and_are_file_safe():
    a = records.make_run_id("sst2", "peft:lora", "/models/my model/", "quick", 0, {})
    b = records.make_run_id("sst2", "peft:lora", "/models/my model/", "quick", 0, {"r": 4})
    assert a != b and "/" not in a and ":" not in a and " " not in a
