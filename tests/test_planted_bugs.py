"""benchmarks/planted_bugs.py: every planted bug patches the package only inside its block, and the script's
pipeline (baseline lines, patched lines, bench compare) runs end to end on a tiny model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "planted_bugs.py"


@pytest.fixture(scope="module")
def planted():
    spec = importlib.util.spec_from_file_location("planted_bugs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["planted_bugs"] = module
    spec.loader.exec_module(module)
    return module


TARGETS = {  # bug -> (module path, attribute) it replaces
    "lora_scaling_halved": ("adapterbench.variants.lora", "lora_scaling"),
    "adalora_never_masks": ("adapterbench.variants.adalora", "SVDLinear.apply_mask"),
    "dylora_always_rmax": ("adapterbench.variants.dylora", "sample_rank"),
    "loraplus_ratio_ignored": ("adapterbench.variants.loraplus", "loraplus_groups"),
    "bitfit_biases_frozen": ("adapterbench.variants.bitfit", "BitFit.apply"),
    "houlsby_no_residual": ("adapterbench.variants.houlsby", "BottleneckAdapter.forward"),
    "no_grad_clip": ("torch.nn.utils", "clip_grad_norm_"),
    "no_warmup": ("adapterbench.harness.loop", "linear_schedule"),
    "eval_truncated": ("adapterbench.harness.run", "encode_split"),
    "eval_reads_training_split": ("adapterbench.harness.run", "encode_split"),
    "regression_head_unscaled": ("adapterbench.harness.run", "start_at_mean"),
}


def _get(path: str, attr: str):
    obj = importlib.import_module(path)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_bug_patches_its_target_only_inside_the_block(planted):
    assert set(planted.BUGS) == set(TARGETS)
    for name, bug in planted.BUGS.items():
        before = _get(*TARGETS[name])
        with bug.patch():
            assert _get(*TARGETS[name]) is not before, name
        assert _get(*TARGETS[name]) is before, name
        assert bug.lines and all(variant in planted.ALL for _, variant in bug.lines)


def test_the_pipeline_runs_a_bug_against_its_baseline(planted, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "data" / "records"))
    from make_records import sst2_folder

    from adapterbench.testing import save_tiny_model

    data = sst2_folder(tmp_path / "data")
    model = save_tiny_model(tmp_path / "model")
    matrix = tmp_path / "m.toml"
    matrix.write_text(f'variants = ["houlsby"]\ntasks = ["sst2"]\nseeds = [0]\nmodel = "{model}"\n'
                      f'profile = "smoke"\n[set]\nlr = 0.1\nmax_train_samples = 64\nmax_eval_samples = 25\n')
    extra = ["--data-dir", str(data)]
    assert planted.run_lines([("sst2", "houlsby")], str(matrix), tmp_path / "baseline", extra) == 0
    with planted.BUGS["houlsby_no_residual"].patch():
        assert planted.run_lines([("sst2", "houlsby")], str(matrix), tmp_path / "bug", extra) == 0
    red, summary = planted.night_is_red(tmp_path / "baseline", tmp_path / "bug")
    assert isinstance(red, bool) and "compared" in summary
    # the bug reached the run: its predictions are not the baseline's (compare's exact check would say so)
    import json

    records = [json.loads(p.read_text()) for p in (tmp_path / "baseline").glob("*.json")]
    bugged = [json.loads(p.read_text()) for p in (tmp_path / "bug").glob("*.json")]
    assert records[0]["run_id"] == bugged[0]["run_id"]
    assert records[0]["steps"]["loss"] != bugged[0]["steps"]["loss"]
