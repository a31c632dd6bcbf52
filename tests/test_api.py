"""The Python API: the README's block runs as written (on a tiny model and the smoke profile), ``adapterbench.run``
is ``bench run`` (same records, same errors as exceptions), and ``results.summary`` is ``bench report``'s table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import adapterbench
from adapterbench.api import run_argv
from adapterbench.cli import main
from adapterbench.errors import UserError
from adapterbench.harness.records import iter_records
from adapterbench.testing import save_tiny_model
from tests.test_sweep import make_sst2

ROOT = Path(__file__).resolve().parents[1]


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("<!-- api-example")[1].split("```python\n", 1)[1].split("```", 1)[0]


def substitute(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in code, f"the README block no longer holds {old!r}; update this test with it"
        code = code.replace(old, new)
    return code


def test_readme_block_runs_and_summary_is_the_reports_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model, data = save_tiny_model(tmp_path / "tiny", "bert"), make_sst2(tmp_path / "d")
    out = tmp_path / "api-demo"
    code = substitute(readme_block(), {
        'profile="quick"': f'profile="smoke", model={str(model)!r}, in_process=True',
        '"../shared/data"': repr(str(data)),
        '"results/api-demo"': repr(str(out)),
    })
    namespace: dict = {}
    with pd.option_context("display.max_columns", None, "display.width", 400):  # no "..." columns in the print
        exec(compile(code, "README.md", "exec"), namespace)
    runs, table = namespace["runs"], namespace["table"]
    records = {record["run_id"]: record for _, record in iter_records([out])}
    assert sorted(runs["run_id"]) == sorted(records) and len(records) == 4
    assert set(runs["status"]) == {"ok"} and sorted(zip(runs["variant"], runs["seed"])) == [
        ("bitfit", 0), ("bitfit", 1), ("lora", 0), ("lora", 1)]
    lora = next(r for r in records.values() if r["variant"]["name"] == "lora")
    assert lora["variant"]["config"]["r"] == 8 and lora["training"]["overrides"] == {"r": 8}  # overrides -> --set
    printed = capsys.readouterr().out
    assert "primary_low" in printed and "throughput/train_samples_per_s" in printed

    # The same records through bench report: summary() is its table.csv, value for value.
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    written = pd.read_csv(tmp_path / "report" / "table.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(table, written)
    assert sorted(table["variant"]) == ["bitfit", "lora"] and (table["n"] == 2).all()
    assert table["primary_low"].notna().all() and set(table["primary_interval"]) <= {"seeds", "examples"}


def test_run_returns_only_this_matrixs_runs_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model, data = save_tiny_model(tmp_path / "tiny", "bert"), make_sst2(tmp_path / "d")
    common = dict(tasks="sst2", profile="smoke", data_dir=str(data), out=str(tmp_path / "o"), model=str(model),
                  in_process=True)
    first = adapterbench.run(variants=["head"], **common)
    second = adapterbench.run(variants="head,bitfit", **common)
    assert list(first["variant"]) == ["head"] and sorted(second["variant"]) == ["bitfit", "head"]
    assert "1 already done, 1 to run" in capsys.readouterr().out  # the head run was resumed, not rerun
    again = adapterbench.run(variants=["bitfit"], **common)
    assert list(again["run_id"]) == list(second.loc[second["variant"] == "bitfit", "run_id"])


def test_bad_input_raises_the_clis_one_line_error(tmp_path):
    with pytest.raises(UserError, match="unknown variant 'nope'|'nope'"):
        adapterbench.run(variants=["nope"], tasks=["sst2"], profile="smoke", out=str(tmp_path / "o"), dry_run=True)
    with pytest.raises(UserError, match="unknown option 'epochs'; allowed: .*overrides"):
        adapterbench.run(variants=["lora"], tasks=["sst2"], epochs=3)
    with pytest.raises(UserError, match=r"--seeds 'x' is not allowed"):
        adapterbench.run(variants=["lora"], tasks=["sst2"], seeds=["x"], out=str(tmp_path / "o"), dry_run=True)
    with pytest.raises(UserError, match=r"overrides=\['lr'\] is not allowed; give a dict"):
        adapterbench.run(variants=["lora"], tasks=["sst2"], overrides=["lr"])
    assert not (tmp_path / "o").exists()


def test_keywords_become_the_command_line():
    assert run_argv(variants=["lora", "full"], tasks="sst2", seeds=[0, 1], data_dir="d", overrides={
        "lr": 1e-4, "lora.r": 16, "save_checkpoint": False}, force=True, in_process=False, shard=None) == [
        "run", "--variants", "lora,full", "--tasks", "sst2", "--seeds", "0,1", "--data-dir", "d",
        "--set", "lr=0.0001", "--set", "lora.r=16", "--set", "save_checkpoint=false", "--force"]
