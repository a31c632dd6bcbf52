"""``bench run --dry-run`` on the real leaderboard matrix, and the matrix's progress line with its ETA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapterbench import results
from adapterbench.cli import main
from adapterbench.harness.plan import eta_seconds, progress_text
from adapterbench.harness.settings import PROFILE_LR, PROFILE_TASK_LR, resolve_settings
from adapterbench.listing import PAPER_RATE, lr_origin
from adapterbench.testing import save_tiny_model
from tests.test_sweep import make_sst2

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "benchmarks" / "leaderboard-cpu.toml"
RECORDS = ROOT / "results" / "leaderboard-cpu"
DATA = ROOT.parent / "shared" / "data" if (ROOT.parent / "shared" / "data").is_dir() else Path("/work/shared/data")


def rows(text: str) -> list[list[str]]:
    """The plan table's rows, split on runs of two or more spaces (cells hold single spaces)."""
    import re

    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#"))
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1:]
            if re.match(r"\s*\d+\s\s", line)]


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.skipif(not DATA.is_dir(), reason="needs the real data in ../shared/data")
def test_dry_run_of_the_leaderboard_matrix_on_an_empty_folder_writes_nothing(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["run", "--matrix", str(MATRIX), "--data-dir", str(DATA), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    table = rows(text)
    assert len(table) == 162 and text.startswith("dry run: 162 runs (9 variants x 6 tasks x 3 seeds), 0 done, 162")
    by = {(r[1], r[2], r[3]): r for r in table}
    # The profile's figures: SST-2 5,000 examples x 2 epochs = 314 steps; MRPC its whole split 3,668 for the quick
    # profile's step budget of the small tasks (PROFILE_TASK_SETTINGS), 1,000 steps.
    assert by[("sst2", "lora", "0")][9:11] == ["5000", "314"] and by[("mrpc", "lora", "0")][9:11] == ["3668", "1000"]
    assert by[("stsb", "lora", "1")][4:6] == [f"{PROFILE_TASK_LR['quick']['stsb']['lora']:g}",
                                             "quick profile, swept on stsb"]
    assert by[("sst2", "adalora", "2")][4:6] == [f"{PROFILE_LR['quick']['adalora']:g}", "quick profile"]
    assert by[("sst2", "peft:lora", "0")][11] == "lora_alpha=16"
    assert {r[12] for r in table} == {"pending"}
    assert "estimate: none; no finished record" in text


@pytest.mark.skipif(not DATA.is_dir(), reason="needs the real data in ../shared/data")
def test_dry_run_against_the_committed_records_estimates_pending_runs(capsys):
    before = snapshot(RECORDS)
    code = main(["run", "--matrix", str(MATRIX), "--task", "sst2,mrpc", "--seeds", "0,7", "--out", str(RECORDS),
                 "--data-dir", str(DATA), "--dry-run"])
    assert code == 0 and snapshot(RECORDS) == before  # nothing written, nothing moved
    text = capsys.readouterr().out
    table = rows(text)
    # SST-2's seed-0 records are done; MRPC's were trained before the quick profile's step budget: stale.
    assert {r[12] for r in table if r[3] == "0" and r[1] == "sst2"} == {"done"}
    assert {r[12] for r in table if r[3] == "0" and r[1] == "mrpc"} == {"stale (settings changed)"}
    assert {r[12] for r in table if r[3] == "7"} == {"pending"}
    # The estimate: per pending run, the mean recorded process time of its task and variant (here via pandas).
    runs = results.load(RECORDS)
    runs = runs[(runs["status"] == "ok") & (runs["profile"] == "quick")]
    means = runs.groupby(["task", "variant"])["time/process_s"].mean()
    expected = sum(means[(r[1], r[2])] for r in table if r[12] != "done")
    line = next(line for line in text.splitlines() if line.startswith("estimate:"))
    assert "for 27 of the 27 runs to do" in line  # 18 new seeds, 9 stale MRPC records
    from adapterbench.reports.units import fmt_seconds

    assert f"about {fmt_seconds(expected)} of run time" in line


def test_dry_run_on_hub_data_leaves_sizes_unknown(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADAPTERBENCH_DATA_DIR", raising=False)
    assert main(["run", "--variants", "lora", "--task", "sst2", "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert [r[9:11] for r in rows(text)] == [["?", "?"]]  # nothing downloaded to count it
    assert "comes from the Hugging Face hub" in text and not (tmp_path / "o").exists()


def test_lr_origin_follows_resolve_lr_order():
    quick = resolve_settings("quick", {})
    assert lr_origin("quick", "lora", "stsb", quick) == "quick profile, swept on stsb"
    assert lr_origin("quick", "lora", "sst2", quick) == "quick profile"
    assert lr_origin("standard", "lora", "sst2", resolve_settings("standard", {})) == PAPER_RATE
    assert lr_origin("quick", "peft:loha", "sst2", quick) == PAPER_RATE
    assert lr_origin("quick", "lora", "stsb", resolve_settings("quick", {"lr": 1e-3})) == "--set lr"


def test_eta_is_elapsed_per_finished_run_times_the_rest():
    assert eta_seconds(30.0, 3, 10) == pytest.approx(70.0)
    assert eta_seconds(5.0, 0, 4) is None
    assert progress_text(30.0, 3, 10) == "run 3/10, ETA 1 min 10 s"
    assert progress_text(30.0, 10, 10) == "run 10/10, done"


def test_local_matrix_prints_progress_per_finished_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model, data = save_tiny_model(tmp_path / "tiny", "bert"), make_sst2(tmp_path / "d")
    code = main(["run", "--variants", "lora,bitfit", "--task", "sst2", "--model", str(model), "--profile", "smoke",
                 "--data-dir", str(data), "--out", str(tmp_path / "out"), "--in-process", "--no-answer"])
    assert code == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("run ")]
    assert len(lines) == 2 and lines[0].startswith("run 1/2, ETA ") and lines[1] == "run 2/2, done"
    assert os.path.isdir(tmp_path / "out")
