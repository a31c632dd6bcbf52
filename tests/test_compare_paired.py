"""``bench compare`` on records with their prediction sidecars: the paired test, the exact check, environment
fingerprints, ``--common-only``, other data, and the family correction.

The baseline is ``real_records["clean"]`` (sst2: lora and bitfit with 3 seeds, full and dylora with 2, dylora at
ranks 1..4; records written by the real harness on a tiny model, 25 validation examples) with the sidecars the
harness wrote beside them. Degraded copies change predictions in the sidecar and rescore the record from them,
so records and sidecars always agree, as the harness writes them.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from adapterbench.harness.records import settings_hash
from adapterbench.reports.cli import compare_command, configure_compare_parser
from adapterbench.reports.regression import MetricOutcome, Rules, apply_family

KEY = "validation/accuracy"


@pytest.fixture(scope="module")
def base(real_records, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paired") / "baseline"
    shutil.copytree(real_records["clean"], out)
    assert (out / "predictions").is_dir()
    return out


def run(baseline: Path, current: Path, *extra: str, capsys) -> tuple[int, str]:
    args = configure_compare_parser(argparse.ArgumentParser()).parse_args([str(baseline), str(current), *extra])
    code = compare_command(args)
    return code, capsys.readouterr().out


def table(text: str) -> dict[str, list[str]]:
    """variant label -> the cells of its row."""
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| sst2 |")]
    return {cells[1]: [c.rstrip(" |") for c in cells] for cells in rows}


def verdicts(text: str) -> dict[str, str]:
    return {label: cells[-1] for label, cells in table(text).items()}


def sidecar_of(folder: Path, record: dict) -> tuple[Path, dict]:
    path = folder / record["predictions"]["file"]
    return path, json.loads(gzip.decompress(path.read_bytes()))


def changed(base: Path, tmp_path: Path, variant: str, change: Callable[[dict, dict], bool | None],
            name: str = "current", seeds=None) -> Path:
    """A copy of ``base`` where ``change(record, validation split of the sidecar)`` edits the runs of
    ``variant`` (and ``seeds``); the record's accuracy is then recomputed from the sidecar. Returning False
    removes the run."""
    out = tmp_path / name
    shutil.copytree(base, out)
    for path in sorted(out.glob("*.json")):
        record = json.loads(path.read_text())
        if record["variant"]["name"] != variant or (seeds is not None and record["seed"] not in seeds):
            continue
        side_path, sidecar = sidecar_of(out, record)
        split = sidecar["splits"]["validation"]
        if change(record, split) is False:
            path.unlink()
            continue
        preds, refs = split["predictions"]["final"], split["references"]
        accuracy = sum(p == r for p, r in zip(preds, refs)) / len(refs)
        record["metrics"]["primary"]["value"] = record["metrics"]["final"][KEY] = accuracy
        for point in record["metrics"]["points"]:
            if point["point"] is None:
                point[KEY] = accuracy
        side_path.write_bytes(gzip.compress(json.dumps(sidecar).encode(), mtime=0))
        record["predictions"]["sha256"] = hashlib.sha256(side_path.read_bytes()).hexdigest()  # as the harness does
        path.write_text(json.dumps(record))
    return out


def flip(k: int, to_wrong: bool = True) -> Callable[[dict, dict], None]:
    """Make ``k`` right predictions wrong (or ``k`` wrong ones right) on the final model."""
    def change(record, split):
        preds, refs = split["predictions"]["final"], split["references"]
        which = [i for i, (p, r) in enumerate(zip(preds, refs)) if (p == r) == to_wrong][:k]
        for i in which:
            preds[i] = 1 - refs[i] if to_wrong else refs[i]
    return change


# ---- the paired test ------------------------------------------------------------------------------------
def test_identical_records_are_identical(base, capsys):
    code, out = run(base, base, capsys=capsys)
    assert code == 0
    assert "7 compared: 0 regressed, 0 improved, 7 identical; 0 skipped" in out
    for label, cells in table(out).items():
        assert cells[7] == "identical" and cells[-1] == "✅ identical", label


def test_a_real_drop_is_flagged_with_its_interval_and_p(base, tmp_path, capsys):
    current = changed(base, tmp_path, "lora", flip(8))  # 8 of 25 examples per seed turn wrong: -0.32
    code, out = run(base, current, capsys=capsys)
    assert code == 1
    cells = table(out)["lora"]
    assert cells[-1].startswith("❌ metric −0.3200 (p ") and cells[7] == "changed"
    low, high = (float(x.replace("−", "-")) for x in cells[5].split("[")[1].rstrip("]").split(", "))
    assert low <= -0.32 <= high < 0  # the paired-bootstrap interval of the change excludes 0
    assert float(cells[6].split()[0]) < 0.05
    assert "1 regressed" in out and verdicts(out)["bitfit"] == "✅ identical"
    # a minimum effect larger than the drop: significant but not a regression
    code, out = run(base, current, "--min-effect", "0.4", capsys=capsys)
    assert code == 0 and verdicts(out)["lora"].startswith("✅ ok (changed, below min effect 0.4")


def test_a_few_flipped_examples_are_noise_where_the_old_rule_failed(base, tmp_path, capsys):
    one_seed = changed(base, tmp_path, "lora", lambda r, s: False if r["seed"] else None, "one-seed")
    current = changed(one_seed, tmp_path, "lora", flip(2))  # -0.08 on 25 examples, one seed
    code, out = run(one_seed, current, capsys=capsys)
    assert code == 0
    assert verdicts(out)["lora"].startswith("✅ ok (changed, not significant (p 0.25")  # McNemar: 2 of 2
    assert table(out)["lora"][7] == "changed"
    # The rule of earlier versions (max(0.01, 2 x std), std 0 with one seed) flags the same records.
    for folder in (one_seed, current):
        shutil.rmtree(folder / "predictions")
    code, out = run(one_seed, current, capsys=capsys)
    assert code == 1 and verdicts(out)["lora"].startswith("❌ metric −0.0800 (limit 0.0100; threshold rule")


def test_direction_aware(base, tmp_path, capsys):
    better = changed(base, tmp_path, "lora", flip(1, to_wrong=False), "better")
    code, out = run(base, better, capsys=capsys)
    assert code == 0

    def lower_is_better(folder: Path, name: str) -> Path:
        out = tmp_path / name
        shutil.copytree(folder, out)
        for path in out.glob("*.json"):
            record = json.loads(path.read_text())
            record["task"]["greater_is_better"] = False  # as if the metric were an error rate
            path.write_text(json.dumps(record))
        return out

    worse_acc = changed(base, tmp_path, "lora", flip(8), "worse")
    code, out = run(lower_is_better(base, "b-low"), lower_is_better(worse_acc, "c-low"), capsys=capsys)
    assert code == 0 and verdicts(out)["lora"].startswith("⬆ improved (metric improved −0.3200")


def test_examples_pair_by_id_and_partial_runs_use_the_common_ones(base, tmp_path, capsys):
    def reverse(record, split):
        for key in ("example_ids", "references"):
            split[key].reverse()
        split["predictions"]["final"].reverse()

    code, out = run(base, changed(base, tmp_path, "lora", reverse, "reversed"), capsys=capsys)
    assert code == 0 and verdicts(out)["lora"] == "✅ identical"  # the same predictions, listed backwards

    def drop_last_five(record, split):
        for key in ("example_ids", "references"):
            del split[key][-5:]
        del split["predictions"]["final"][-5:]

    partial = changed(base, tmp_path, "lora", drop_last_five, "partial")
    current = changed(partial, tmp_path, "lora", flip(6), "partial-worse")
    code, out = run(base, current, capsys=capsys)
    assert code == 1
    assert verdicts(out)["lora"].startswith("❌ metric −0.3000 (p ")  # 6 of the 20 examples both runs scored


def test_other_references_or_other_data_are_not_comparable(base, tmp_path, capsys):
    def other_reference(record, split):
        split["references"][0] = 1 - split["references"][0]

    code, out = run(base, changed(base, tmp_path, "lora", other_reference, "refs"), capsys=capsys)
    assert code == 0 and verdicts(out)["lora"].startswith("≠ not comparable: the references differ")
    assert "1 not comparable (not counted" in out

    def other_data(record, split):
        record["data"]["fingerprint"] = "0123456789abcdef"

    other = changed(base, tmp_path, "bitfit", other_data, "data")
    code, out = run(base, other, capsys=capsys)
    fingerprint = json.loads(next(base.glob("sst2__bitfit__*.json")).read_text())["data"]["fingerprint"]
    assert code == 0  # listed with the reason, not counted as regressions
    assert verdicts(out)[f"bitfit [data {fingerprint}]"] == (
        f"≠ not comparable with current: they differ in data (fingerprint) ({fingerprint} vs 0123456789abcdef)")
    assert verdicts(out)["bitfit [data 0123456789abcdef]"].startswith("≠ not comparable with baseline: they differ")
    # --common-only skips them, with the reason; a comparison with nothing in common is never green
    code, out = run(base, other, "--common-only", capsys=capsys)
    assert code == 0 and f"sst2 / bitfit [data {fingerprint}]: not comparable with current: they differ" in out
    only_bitfit = changed(other, tmp_path, "lora", lambda r, s: False, "only-bitfit")
    for variant in ("full", "dylora"):
        only_bitfit = changed(only_bitfit, tmp_path, variant, lambda r, s: False, f"no-{variant}")
    code, out = run(changed(base, tmp_path, "bitfit", lambda r, s: False, "no-bitfit"), only_bitfit,
                    "--common-only", capsys=capsys)
    assert code == 1 and "**❌ nothing compared**: 0 compared" in out


# ---- environment fingerprints ---------------------------------------------------------------------------
def other_cpu_and_slower(record, split, cpu: str | None = "Other CPU 9000"):
    env = record["environment"]
    if cpu:
        env["device_name"] = env["fingerprint"]["device_name"] = cpu
        env["fingerprint"]["id"] = settings_hash({k: v for k, v in env["fingerprint"].items() if k != "id"})
    record["steps"]["time_s"] = [t * 10 for t in record["steps"]["time_s"]]
    record["measurements"]["memory/peak_bytes"] *= 3


def test_other_cpu_compares_metrics_but_not_speed_or_memory(base, tmp_path, capsys):
    code, out = run(base, changed(base, tmp_path, "full", other_cpu_and_slower, "cpu"), capsys=capsys)
    assert code == 0
    verdict = verdicts(out)["full"]
    assert verdict.startswith("✅ identical (step time +900.0 % shown only (environment ")
    assert "peak memory +200.0 % shown only" in verdict
    assert table(out)["full"][7] == "identical"  # the metric was compared: same predictions
    assert "Environment changed: device_name " in out

    same_cpu = changed(base, tmp_path, "full", lambda r, s: other_cpu_and_slower(r, s, cpu=None), "same-cpu")
    code, out = run(base, same_cpu, capsys=capsys)
    assert code == 1 and verdicts(out)["full"].startswith("❌ step time +900.0 % (band +")


# ---- what both sides have --------------------------------------------------------------------------------
def test_common_only_skips_absent_runs_with_reasons_but_not_failures(base, tmp_path, capsys):
    partial = changed(base, tmp_path, "bitfit", lambda r, s: False, "no-bitfit")
    partial = changed(partial, tmp_path, "lora", lambda r, s: False, "partial", seeds={2})
    code, out = run(base, partial, capsys=capsys)
    assert code == 1 and verdicts(out)["bitfit"].startswith("❌ missing in current")
    code, out = run(base, partial, "--common-only", capsys=capsys)
    assert code == 0
    assert ("6 compared: 0 regressed, 0 improved, 6 identical; 2 skipped (sst2 / bitfit: missing in current "
            "(baseline seeds 0, 1, 2); sst2 / lora: seed 2 missing in current)") in out
    assert verdicts(out)["bitfit"] == "⏭ skipped: missing in current (baseline seeds 0, 1, 2)"
    assert verdicts(out)["lora"] == "✅ identical (seed 2 missing in current (skipped))"

    def fail(record, split):
        record["status"], record["error"] = "failed", {"type": "RuntimeError", "message": "boom", "traceback": ""}

    failed = changed(partial, tmp_path, "full", fail, "failed", seeds={1})
    code, out = run(base, failed, "--common-only", capsys=capsys)
    assert code == 1 and "seed 1 failed in current" in verdicts(out)["full"]


# ---- records without predictions --------------------------------------------------------------------------
def test_v1_baselines_fall_back_to_the_threshold_rule_and_say_so(capsys):
    baselines = Path(__file__).resolve().parents[1] / "results" / "baselines"
    code, out = run(baselines, baselines, capsys=capsys)
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| sst2 | lora |")]
    assert rows and "threshold rule: no predictions (schema v1 or sidecar missing)" in rows[0]
    assert "metrics equal" in rows[0]


# ---- the family ---------------------------------------------------------------------------------------------
def _tested(p: float) -> MetricOutcome:
    return MetricOutcome("paired test", "changed", change=-0.02, worsening=0.02, p_worse=p, p_better=1 - p)


@pytest.mark.parametrize("correction, expected", [("none", ["regressed", "regressed", "unchanged"]),
                                                   ("holm", ["unchanged", "unchanged", "unchanged"]),
                                                   ("bh", ["regressed", "regressed", "unchanged"])])
def test_family_correction(correction, expected):
    outcomes = [_tested(0.02), _tested(0.03), _tested(0.5)]
    identical = MetricOutcome("paired test", "identical", "identical", 0.0, 0.0, p_worse=1.0, p_better=1.0)
    apply_family([*outcomes, identical], Rules(correction=correction))  # identical lines are not in the family
    assert [o.status for o in outcomes] == expected and identical.status == "identical"
    if correction == "holm":
        assert [o.p_worse_corrected for o in outcomes] == pytest.approx([0.06, 0.06, 0.5])


# ---- a run that stopped learning -----------------------------------------------------------------------------
def test_a_run_that_stopped_learning_is_a_regression_whatever_the_power(base, real_records, tmp_path, capsys):
    """lora's seed 0 given the predictions and the learned check of the real run at lr 1e-12 (same data, same
    seed), which did not learn: at an alpha no permutation test can reach, the metric's test cannot flag it, the
    learned check does."""
    frozen = {}
    for path in real_records["unlearned"].glob("*.json"):
        r = json.loads(path.read_text())
        if r["training"]["lr"] == 1e-12:
            frozen[r["seed"]] = (r, sidecar_of(real_records["unlearned"], r)[1])

    def stop_learning(record, split):
        r, side = frozen[record["seed"]]
        assert side["splits"]["validation"]["example_ids"] == split["example_ids"]
        split["predictions"] = side["splits"]["validation"]["predictions"]
        record["learned"] = r["learned"]

    assert frozen[0][0]["learned"]["learned"] is False
    current = changed(base, tmp_path, "lora", stop_learning, "stopped", seeds={0})
    code, out = run(base, current, "--alpha", "1e-9", capsys=capsys)
    assert code == 1
    verdict = verdicts(out)["lora"]
    assert verdict.startswith("❌ seed 0 learned in baseline, did not learn now (predicts ")
    assert float(table(out)["lora"][6].split()[0]) > 1e-9  # the metric's test alone would have passed it
    code, out = run(base, base, "--alpha", "1e-9", capsys=capsys)
    assert code == 0 and "learned in baseline" not in out
