"""``bench sweep --executor ray``: a sweep's trials and finals are ordinary runs, so they run on the same executors
as ``bench run`` and give the records and the selection the local executor gives."""

from __future__ import annotations

import importlib.util
import json

import pytest

from adapterbench.cli import main
from adapterbench.harness.records import iter_records
from adapterbench.harness.sweep import run_sweep
from tests.test_executors import assert_same_runs
from tests.test_sweep import make_sst2, tiny_model_dir  # noqa: F401 - the fixture

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install "adapterbench[ray]")')


def sweep(model: str, data, out, *extra: str) -> int:
    return main(["sweep", "--variants", "head,bitfit", "--task", "sst2", "--grid", "lr=1x,30x", "--seeds", "0",
                 "--model", model, "--profile", "smoke", "--set", "max_train_samples=24", "--data-dir", str(data),
                 "--holdout", "8", "--out", str(out), *extra])


def same_trials(a, b) -> None:
    """Trials keep no checkpoint: the same records, metrics and per-epoch history."""
    from tests.test_executors import history_without_times, records

    ra, rb = records(a), records(b)
    assert ra.keys() == rb.keys() and len(ra) == 4
    for name in ra:
        assert ra[name]["metrics"] == rb[name]["metrics"], name
        assert history_without_times(ra[name]) == history_without_times(rb[name]), name


@needs_ray
def test_sweep_on_ray_gives_the_local_sweeps_trials_selection_and_finals(tmp_path, tiny_model_dir, capsys):  # noqa: F811
    data = make_sst2(tmp_path / "d")
    args = (["head", "bitfit"], ["sst2"], {"lr": ["1x", "30x"]}, [0], tiny_model_dir, "smoke",
            {"max_train_samples": 24}, str(data))
    assert run_sweep(*args, str(tmp_path / "local"), holdout=8, isolate=False) == 0  # here, the reference
    assert sweep(tiny_model_dir, data, tmp_path / "ray", "--executor", "ray") == 0
    printed = capsys.readouterr().out
    assert "executor: ray (a local Ray instance)" in printed
    local, ray = (json.loads((tmp_path / side / "sweep.json").read_text()) for side in ("local", "ray"))
    assert local["tasks"]["sst2"]["variants"] == ray["tasks"]["sst2"]["variants"]  # trials' values and choices
    same_trials(tmp_path / "local" / "trials", tmp_path / "ray" / "trials")
    assert_same_runs(tmp_path / "local" / "final", tmp_path / "ray" / "final")  # the finals' weights, bit for bit
    for part in ("trials", "final"):
        placements = {r["environment"]["placement"]["executor"] for _, r in iter_records([tmp_path / "ray" / part])}
        assert placements == {"ray"}, part


def test_sweep_executor_errors_are_the_run_commands(tmp_path, tiny_model_dir, capsys):  # noqa: F811
    data = make_sst2(tmp_path / "d")
    assert sweep(tiny_model_dir, data, tmp_path / "o", "--executor", "dask") == 2
    assert capsys.readouterr().err.strip() == "bench: error: --executor 'dask' is not allowed; choose local or ray"
    assert sweep(tiny_model_dir, data, tmp_path / "o", "--retries", "1") == 2
    assert "--retries needs --executor ray" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
