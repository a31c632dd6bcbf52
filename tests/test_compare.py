"""``bench compare``: exit codes on an identical pair and on degraded copies of records written by the real
harness (``real_records["clean"]``: sst2 runs of lora and bitfit with 3 seeds, full and dylora with 2, dylora
evaluated at ranks 1..4). Here ``clean`` is copied without its prediction sidecars, so the metric is
judged by the threshold rule (max(0.01, 2 x baseline std)), as for schema v1 records; the paired test on
predictions is in ``test_compare_paired.py``. The limits the tests expect are computed here from the record
files. Step time and memory: the baseline's band, median ± max(3 MAD, 5 % / 20 % of the median).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from adapterbench.errors import UserError
from adapterbench.reports.cli import compare_command, configure_compare_parser
from adapterbench.reports.compare import compare_paths
from adapterbench.reports.regression import Rules, threshold_rule
from adapterbench.stats import band


@pytest.fixture(scope="module", autouse=True)
def _clean(real_records, tmp_path_factory):
    """The clean records without their sidecars: the threshold rule decides, as for v1 records."""
    global CLEAN
    CLEAN = tmp_path_factory.mktemp("threshold") / "clean"
    shutil.copytree(real_records["clean"], CLEAN, ignore=shutil.ignore_patterns("predictions"))


CLEAN: Path


def limit_of(variant: str, k: float = 2.0, tol: float = 0.01) -> float:
    """max(tol, k x sample std of the baseline's primary metric), from the clean record files."""
    values = [json.loads(p.read_text())["metrics"]["primary"]["value"] for p in CLEAN.glob(f"sst2__{variant}__*.json")]
    return max(tol, k * (statistics.stdev(values) if len(values) > 1 else 0.0))


def degraded(tmp_path: Path, change: Callable[[dict], bool | None], name: str = "current") -> Path:
    """A copy of the clean records with ``change`` applied to each; a record it returns False for is removed."""
    out = tmp_path / name
    shutil.copytree(CLEAN, out)
    for path in sorted(out.glob("*.json")):
        record = json.loads(path.read_text())
        if change(record) is False:
            path.unlink()
        else:
            path.write_text(json.dumps(record))
    return out


def only(variant: str, seeds=None):
    """A decorator-free filter: apply ``fn`` to records of ``variant`` (and ``seeds``)."""
    def wrap(fn):
        def change(r):
            if r["variant"]["name"] == variant and (seeds is None or r["seed"] in seeds):
                return fn(r)
            return None
        return change
    return wrap


def run(baseline: Path, current: Path, *extra: str, capsys=None) -> tuple[int, str]:
    args = configure_compare_parser(argparse.ArgumentParser()).parse_args([str(baseline), str(current), *extra])
    code = compare_command(args)
    return code, capsys.readouterr().out if capsys else ""


def verdicts(text: str) -> dict[str, str]:
    """variant label -> verdict cell, from the Markdown table."""
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| sst2 |")]
    return {cells[1]: cells[-1].rstrip(" |") for cells in rows}


# ---- the checks as pure functions -------------------------------------------------------------------------
def test_threshold_rule_uses_the_larger_of_tolerance_and_k_std():
    th = Rules(metric_abs_tol=0.01, metric_std_k=2.0)
    assert threshold_rule(0.91, 0.01, 0.895, True, th)[0] is False  # 0.015 <= 2 x 0.01
    regressed, drop, limit = threshold_rule(0.91, 0.01, 0.885, True, th)
    assert regressed and drop == pytest.approx(0.025) and limit == pytest.approx(0.02)
    assert threshold_rule(0.91, None, 0.895, True, th)[0] is True  # one seed: tol 0.01
    assert threshold_rule(0.91, 0.01, 0.90, True, th)[0] is False  # drop 0.01 equals the tolerance
    # lower is better: a rise is the regression
    assert threshold_rule(0.30, None, 0.32, False, th)[0] is True
    assert threshold_rule(0.30, None, 0.20, False, th)[0] is False


@pytest.mark.parametrize("flag, value", [("--metric-abs-tol", "-0.1"), ("--alpha", "1.5"), ("--alpha", "0"),
                                         ("--memory-tolerance", "nan"), ("--metric-std-k", "-1"),
                                         ("--band-k", "0"), ("--min-effect", "-0.01")])
def test_bad_rules_are_user_errors(flag, value):
    with pytest.raises(UserError, match=flag):
        run(CLEAN, CLEAN, flag, value)


# ---- exit codes -------------------------------------------------------------------------------------------
def test_identical_pair_passes(capsys):
    code, out = run(CLEAN, CLEAN, capsys=capsys)
    assert code == 0
    assert "✅ no regression" in out
    v = verdicts(out)
    assert set(v) == {"bitfit", "full", "lora", "dylora@r=1", "dylora@r=2", "dylora@r=3", "dylora@r=4"}
    assert all(text.startswith("✅ ok (threshold rule: no predictions") for text in v.values())
    assert "7 compared: 0 regressed, 0 improved, 0 identical; 0 skipped" in out


def test_metric_drop_fails(tmp_path, capsys):
    limit = limit_of("lora")
    step = round(limit + 0.05, 4)

    @only("lora")
    def drop(r):
        r["metrics"]["primary"]["value"] -= step

    code, out = run(CLEAN, degraded(tmp_path, drop), capsys=capsys)
    assert code == 1
    assert verdicts(out)["lora"].startswith(f"❌ metric −{step:.4f} (limit {limit:.4f}; threshold rule")
    assert verdicts(out)["bitfit"].startswith("✅")


def test_small_metric_drop_within_k_std_passes_and_k_zero_fails(tmp_path, capsys):
    limit = limit_of("lora")
    assert limit > 0.02, "the lora seeds of the fixture should spread by more than the tolerance"
    step = (limit + 0.01) / 2  # below max(0.01, 2 std), above the plain tolerance 0.01

    @only("lora")
    def drop(r):
        r["metrics"]["primary"]["value"] -= step

    current = degraded(tmp_path, drop)
    assert run(CLEAN, current, capsys=capsys)[0] == 0
    assert run(CLEAN, current, "--metric-std-k", "0", capsys=capsys)[0] == 1


def band_high(variant: str) -> float:
    """The top of the baseline's step-time band over its median (3 MAD, at least 5 %), from the clean records."""
    times = []
    for p in CLEAN.glob(f"sst2__{variant}__*.json"):
        r = json.loads(p.read_text())
        times += r["steps"]["time_s"][r["training"]["warmup_steps_excluded"]:]
    b = band(times, k=3.0, min_relative=0.05)
    return b.high / b.median


def test_step_time_rise_fails_on_the_same_environment(tmp_path, capsys):
    factor = round(2 * band_high("bitfit"), 1)  # tiny steps on a loaded machine spread widely: beyond the band

    @only("bitfit")
    def slow(r):
        r["steps"]["time_s"] = [t * factor for t in r["steps"]["time_s"]]

    code, out = run(CLEAN, degraded(tmp_path, slow), capsys=capsys)
    assert code == 1
    assert verdicts(out)["bitfit"].startswith(f"❌ step time +{(factor - 1) * 100:.1f} % (band +")
    assert verdicts(out)["lora"].startswith("✅")
    # ... and passes with a band at least ± factor x 100 % wide
    assert run(CLEAN, degraded(tmp_path, slow, "again"), "--speed-tolerance", str(factor), capsys=capsys)[0] == 0


def test_memory_rise_fails(tmp_path, capsys):
    @only("full")
    def fat(r):
        r["measurements"]["memory/peak_bytes"] = int(r["measurements"]["memory/peak_bytes"] * 1.5)

    code, out = run(CLEAN, degraded(tmp_path, fat), capsys=capsys)
    assert code == 1
    assert verdicts(out)["full"].startswith("❌ peak memory +50.0 % (band +")


def test_small_changes_within_bands_pass(tmp_path, capsys):
    def jitter(r):
        if r["status"] == "ok":
            r["steps"]["time_s"] = [t * 1.03 for t in r["steps"]["time_s"]]  # inside the 5 % floor
            r["measurements"]["memory/peak_bytes"] = int(r["measurements"]["memory/peak_bytes"] * 1.1)
            r["metrics"]["primary"]["value"] += 0.001

    assert run(CLEAN, degraded(tmp_path, jitter), capsys=capsys)[0] == 0


def test_missing_run_fails(tmp_path, capsys):
    code, out = run(CLEAN, degraded(tmp_path, only("lora", seeds={2})(lambda r: False)), capsys=capsys)
    assert code == 1
    assert "seed 2 missing in current" in verdicts(out)["lora"]


def test_missing_variant_fails_both_ways(tmp_path, capsys):
    current = degraded(tmp_path, only("bitfit")(lambda r: False))
    code, out = run(CLEAN, current, capsys=capsys)
    assert code == 1 and verdicts(out)["bitfit"].startswith("❌ missing in current")
    code, out = run(current, CLEAN, capsys=capsys)
    assert code == 1 and verdicts(out)["bitfit"].startswith("❌ missing in baseline")


def test_failed_run_fails_and_its_error_is_shown(tmp_path, capsys):
    @only("full", seeds={1})
    def oom(r):
        r["status"] = "oom"
        r["error"] = {"type": "OutOfMemoryError", "message": "CUDA out of memory | tried 2 GiB", "traceback": ""}

    code, out = run(CLEAN, degraded(tmp_path, oom), capsys=capsys)
    assert code == 1
    assert "seed 1 oom in current" in verdicts(out)["full"]
    assert "CUDA out of memory \\| tried 2 GiB" in out  # in the details, pipe escaped for the table syntax


def test_dylora_rank_rows_are_compared_one_by_one(tmp_path, capsys):
    @only("dylora")
    def weak_rank(r):
        for p in r["metrics"]["points"]:
            if p["point"] == 2:
                p["validation/accuracy"] -= 0.1

    code, out = run(CLEAN, degraded(tmp_path, weak_rank), capsys=capsys)
    v = verdicts(out)
    assert code == 1
    assert v["dylora@r=2"].startswith("❌ metric") and v["dylora@r=4"].startswith("✅")


def test_incomparable_lines_are_listed_with_the_reason_and_never_counted(tmp_path, capsys):
    def other_weights(r):
        r["model"]["weights_sha256"] = "f" * 64

    code, out = run(CLEAN, degraded(tmp_path, other_weights), capsys=capsys)
    assert code == 1  # nothing compared: never green
    assert "**❌ nothing compared**: 0 compared: 0 regressed" in out  # not "N regressed"
    assert "not comparable (not counted; each listed with its reason)" in out
    assert "not comparable with current" in out
    assert all(v.startswith("≠ not comparable") for v in verdicts(out).values())
    sha = json.loads(next(CLEAN.glob("*.json")).read_text())["model"]["weights_sha256"][:12]
    assert f"model weights (sha256 {sha} vs sha256 ffffffffffff)" in out
    assert "The two sides share no comparable group" in out

    def other_settings(r):
        if r["variant"]["name"] == "lora":
            r["variant"]["config"]["r"] = 16

    r_base = json.loads(next(CLEAN.glob("sst2__lora__*.json")).read_text())["variant"]["config"]["r"]
    code, out = run(CLEAN, degraded(tmp_path, other_settings, "settings"), capsys=capsys)
    assert code == 0  # the other lines compare and do not regress; lora's line is listed, not counted
    assert f"settings differ (r: {r_base} vs 16)" in out
    lora = [v for label, v in verdicts(out).items() if label.startswith("lora")]
    assert len(lora) == 2 and all(v.startswith("≠ not comparable with") for v in lora)
    assert "share no comparable group" not in out  # only lora changed
    assert verdicts(out)["bitfit"].startswith("✅")


def test_compare_paths_counts_regressions(tmp_path):
    @only("lora", seeds={0})
    def diverge(r):
        r["status"] = "diverged"

    th = Rules()
    assert compare_paths([CLEAN], [CLEAN], th).regressions == 0
    assert compare_paths([CLEAN], [degraded(tmp_path, diverge)], th).regressions == 1


def test_out_file_written_and_never_silently_overwritten(tmp_path, capsys):
    out = tmp_path / "summary.md"
    out.touch()  # an empty file, like $GITHUB_STEP_SUMMARY at the start of a step, is fine
    code, printed = run(CLEAN, CLEAN, "--out", str(out), capsys=capsys)
    assert code == 0 and out.read_text() == printed
    with pytest.raises(UserError, match="--force"):
        run(CLEAN, CLEAN, "--out", str(out))
    assert run(CLEAN, CLEAN, "--out", str(out), "--force", capsys=capsys)[0] == 0


def test_unreadable_files_are_listed_and_counted(tmp_path, capsys):
    current = degraded(tmp_path, lambda r: None)
    (current / "half-written.json").write_text('{"schema_version": 2, "run_id"')
    bad = json.loads(next(current.glob("sst2__bitfit__*seed0*.json")).read_text())
    bad["metrics"]["primary"] = "0.9"
    (current / "bad.json").write_text(json.dumps(bad))
    code, out = run(CLEAN, current, capsys=capsys)
    assert code == 0  # the readable records are all there and fine
    assert "2 file(s) skipped in current" in out
    assert "- current: " + str(current / "bad.json") + ": metrics.primary is not an object" in out
    assert "half-written.json: not valid JSON" in out


def test_missing_side_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        run(CLEAN, tmp_path / "nowhere")
