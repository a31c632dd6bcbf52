"""Paper presets: every (preset, task) resolves to valid settings, the record carries the paper's number, bad
names are one-line errors.

The hub models (roberta-base, microsoft/deberta-v3-base) are not available here; a tiny random model of the
same architecture stands in for each, so the targets resolve on the same module names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adapterbench.cli import main
from adapterbench.harness.matrix import expand, preflight
from adapterbench.harness.records import iter_records
from adapterbench.harness.run import prepare_variant
from adapterbench.presets import (
    GLUE_TRAIN_EXAMPLES,
    PRESETS,
    expand_preset,
    get_preset,
    measured_value,
    parse_cell,
    total_steps,
    warmup_ratio_from_steps,
)
from adapterbench.presets import adalora_debertav3_base as adalora_data
from adapterbench.tasks import get_task
from adapterbench.tasks.data import load_examples
from adapterbench.testing import save_tiny_model, tiny_model
from adapterbench.variants.targets import arch_for

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "glue").is_dir(),
                                       reason=f"real data folder {SHARED_DATA} is absent")
ARCH = {"roberta-base": "roberta", "microsoft/deberta-v3-base": "deberta-v2"}  # the hub model's model_type
# Positions as the hub models have them (preflight checks max_length against them): roberta-base's table of 514
# rows (512 positions after the padding offset); DeBERTa-v3's relative positions only, no table.
POSITIONS = {"roberta": {"max_position_embeddings": 514}, "deberta-v2": {"position_biased_input": False}}
PRESET_TASKS = [(name, task) for name in PRESETS.names() for task in get_preset(name).tasks]


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: save_tiny_model(root / arch, arch, **POSITIONS[arch]) for arch in set(ARCH.values())}


@pytest.mark.parametrize("name,task", PRESET_TASKS)
def test_every_preset_task_resolves_to_valid_settings(name, task, stand_ins, tmp_path, monkeypatch):
    monkeypatch.delenv("ADAPTERBENCH_DATA_DIR", raising=False)
    monkeypatch.setattr("adapterbench.harness.preflight.check_hub", lambda task: None)  # the data is not checked here
    preset = get_preset(name)
    entry = preset.tasks[task]
    arch = ARCH[preset.model]
    specs = expand_preset(name, [task], [0], str(stand_ins[arch]), None, {}, None, str(tmp_path))
    preflight(specs)  # model folder, task, variant settings, device: everything but the data
    (spec,) = specs
    assert (spec.variant, spec.task, spec.profile) == (preset.variant, task, "standard")
    assert spec.overrides == entry.settings  # the preset's settings reach the run unchanged

    variant_cls, variant, settings, _ = prepare_variant(spec)
    for key, value in entry.settings.items():  # every setting lands in the loop or the variant's Config
        assert getattr(settings, key, getattr(variant.config, key, None)) == value, key
    # On the full training split the schedule fits: AdaLoRA's step counts need t_init + t_final < total.
    steps = total_steps(GLUE_TRAIN_EXAMPLES[task], settings.batch_size, settings.epochs)
    variant.validate_schedule(steps)
    model = tiny_model(arch, num_labels=1 if task == "stsb" else 3 if task == "mnli" else 2,
                       kind="regression" if task == "stsb" else "classification")
    variant.apply(model, arch_for(model))
    per_layer = len(entry.settings["targets"].split(","))
    wrapped = [n for n, m in model.named_modules() if isinstance(getattr(m, "base", None), torch.nn.Linear)]
    assert len(wrapped) == model.config.num_hidden_layers * per_layer  # q,v for LoRA; all six maps for AdaLoRA

    # Tags never change the identity: the same settings given with --set make the same run.
    (plain,) = expand([preset.variant], [task], [0], str(stand_ins[arch]), "standard", dict(entry.settings),
                      None, str(tmp_path))
    assert plain.run_id == spec.run_id and plain.tags == {}
    reference = spec.tags["reference"]
    if entry.reference is None:
        assert reference is None and spec.tags["preset"]["no_reference"]
    else:
        assert reference["value"] == entry.reference.value and reference["source"] and reference["metric"]
        assert reference["metric"].split("(")[-1].split("/")[0] in get_task(task).eval_splits
    assert spec.tags["preset"]["deviations"] == {"model": {"preset": preset.model, "run": str(stand_ins[arch])}}


@pytest.mark.parametrize("task", sorted(adalora_data._SCRIPTS))
def test_warmup_ratio_reproduces_the_scripts_warmup_steps(task):
    lr, epochs, batch, *_, warmup, _cls, _wd = adalora_data._SCRIPTS[task]
    ratio = get_preset("adalora-debertav3-base").tasks[task].settings["warmup_ratio"]
    steps = total_steps(GLUE_TRAIN_EXAMPLES[task], batch, epochs)
    if isinstance(warmup, float):  # MRPC passes --warmup_ratio
        assert ratio == warmup
    else:
        assert int(ratio * steps) == warmup  # what the loop computes: the script's exact step count
    with pytest.raises(ValueError):
        warmup_ratio_from_steps(steps, steps)


def test_published_numbers_as_printed():
    assert parse_cell("95.1±.2") == (0.951, 0.002)
    assert parse_cell("63.4±1.2") == (0.634, 0.012)
    assert parse_cell("90.66") == (0.9066, None)
    with pytest.raises(ValueError):
        parse_cell("90.66/90.70")
    lora = get_preset("lora-roberta-base")
    assert {t: lora.tasks[t].reference.reported for t in lora.tasks} == {
        "mnli": "87.5±.3", "sst2": "95.1±.2", "mrpc": "89.7±.7", "cola": "63.4±1.2", "qnli": "93.3±.3",
        "qqp": "90.8±.1", "rte": "86.6±.7", "stsb": "91.5±.2"}  # LoRA Table 2, RoBERTa-base (LoRA)
    table1 = get_preset("adalora-debertav3-base-0.3m")
    assert {t: table1.tasks[t].reference.reported for t in table1.tasks} == {
        "mnli": "90.66", "sst2": "95.80", "cola": "70.04", "qqp": "91.78", "qnli": "94.49", "rte": "87.36",
        "mrpc": "90.44", "stsb": "91.63"}  # AdaLoRA Table 1, AdaLoRA 0.32M
    scripts = get_preset("adalora-debertav3-base")
    assert sorted(t for t, e in scripts.tasks.items() if e.reference) == ["cola", "mnli", "rte", "sst2"]
    # Where the paper and the script disagree the preset follows the script and says so.
    assert lora.tasks["sst2"].settings["alpha"] == 16.0 and "8" in lora.tasks["sst2"].paper_differs["alpha"]
    assert lora.tasks["cola"].settings["batch_size"] == 64 and lora.tasks["sst2"].settings["batch_size"] == 128
    assert scripts.tasks["qnli"].settings["lr"] == 5e-4 and "1.2e-3" in scripts.tasks["qnli"].paper_differs["lr"]
    assert (scripts.tasks["sst2"].settings["init_r"], scripts.tasks["sst2"].settings["target_r"]) == (2, 1)
    assert (table1.tasks["sst2"].settings["init_r"], table1.tasks["sst2"].settings["target_r"]) == (4, 2)


def test_measured_value_reads_plain_and_averaged_metrics():
    final = {"validation/pearson": 0.90, "validation/spearmanr": 0.80, "validation/accuracy": 0.5}
    assert measured_value("validation/accuracy", final) == 0.5
    assert measured_value("mean(validation/pearson,validation/spearmanr)", final) == pytest.approx(0.85)
    assert measured_value("mean(validation/pearson,validation/missing)", final) is None
    assert measured_value("validation_matched/accuracy", final) is None


@needs_shared_data
@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "stsb", "rte"])
def test_assumed_training_sizes_match_the_real_files(task):
    assert len(load_examples(get_task(task), "train", SHARED_DATA)) == GLUE_TRAIN_EXAMPLES[task]


def _one_line_error(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: error: ")
    return lines[0]


def test_bad_preset_names_and_tasks_are_one_line_errors(capsys, tmp_path):
    line = _one_line_error(capsys, "run", "--preset", "lora-roberta", "--task", "sst2")
    assert "'lora-roberta'" in line and "lora-roberta-base" in line
    line = _one_line_error(capsys, "run", "--preset", "lora-roberta-base", "--task", "sst2,wnli")
    assert "'wnli'" in line and "mnli, sst2, mrpc, cola, qnli, qqp, rte, stsb" in line
    assert "its tasks" in _one_line_error(capsys, "run", "--preset", "adalora-debertav3-base")
    assert "drop --variants" in _one_line_error(capsys, "run", "--preset", "lora-roberta-base", "--variants",
                                                "lora", "--task", "sst2")
    assert not list(tmp_path.iterdir())  # nothing ran
    assert main(["list", "presets"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in PRESETS.names())


@needs_shared_data
def test_tiny_preset_runs_record_the_reference(stand_ins, tmp_path, capsys):
    out = tmp_path / "results"
    shrink = ["--set", "epochs=1", "--set", "batch_size=8", "--set", "max_length=32"]
    assert main(["run", "--preset", "lora-roberta-base", "--task", "sst2", "--model", str(stand_ins["roberta"]),
                 "--profile", "smoke", *shrink, "--data-dir", str(SHARED_DATA), "--out", str(out),
                 "--in-process"]) == 0
    # The same through a matrix file, for AdaLoRA, with its step-count schedule scaled to the tiny run.
    matrix = tmp_path / "m.toml"
    matrix.write_text('preset = "adalora-debertav3-base"\ntasks = ["rte"]\nprofile = "smoke"\n'
                      f'model = "{stand_ins["deberta-v2"]}"\n[set]\nepochs = 1\nbatch_size = 8\nmax_length = 32\n'
                      't_init = 0.2\nt_final = 0.3\ndelta_t = 1\n')
    assert main(["run", "--matrix", str(matrix), "--data-dir", str(SHARED_DATA), "--out", str(out),
                 "--in-process"]) == 0
    capsys.readouterr()
    records = {r["variant"]["name"]: r for _, r in iter_records([out])}
    assert set(records) == {"lora", "adalora"} and all(r["status"] == "ok" for r in records.values())

    lora = records["lora"]
    assert lora["tags"]["reference"]["value"] == 0.951 and lora["tags"]["reference"]["std"] == 0.002
    assert lora["tags"]["reference"]["metric"] in lora["metrics"]["final"]
    assert lora["training"]["lr"] == 5e-4 and lora["variant"]["config"]["alpha"] == 16.0  # preset settings
    assert lora["training"]["batch_size"] == 8 and lora["training"]["max_train_samples"] == 32  # user and profile
    deviations = lora["tags"]["preset"]["deviations"]
    assert set(deviations) == {"epochs", "batch_size", "max_length", "profile", "model"}
    assert deviations["batch_size"] == {"preset": 128, "run": 8}

    ada = records["adalora"]
    assert ada["tags"]["reference"]["reported"] == "87.36" and ada["tags"]["preset"]["name"] == "adalora-debertav3-base"
    assert ada["variant"]["config"]["orth_reg_weight"] == 0.3 and ada["training"]["lr"] == 1.2e-3
    assert any("cls_dropout" in item for item in ada["tags"]["preset"]["not_applied"])
    assert json.loads(json.dumps(ada["tags"])) == ada["tags"]  # plain JSON, as written
