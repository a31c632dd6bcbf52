"""Aggregation and the report folder, on the hand-made records of tests/data/records (see make_records.py:
every expected number below follows from the numbers chosen there)."""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
from pathlib import Path

import pytest

from adapterbench.errors import UserError
from adapterbench.reports.aggregate import aggregate_group, best_indices, pareto_front, stat
from adapterbench.reports.build import table_cells, write_report
from adapterbench.reports.cli import configure_report_parser, report_command
from adapterbench.reports.collect import (
    config_id,
    deduplicate,
    explain_groups,
    filter_records,
    group_key,
    label_configs,
    load_records,
    point_label,
)
from adapterbench.reports.units import fmt_bytes, fmt_change, fmt_count, fmt_delta, fmt_metric, fmt_seconds

DATA = Path(__file__).parent / "data" / "records"
MIXED = DATA / "mixed"
MAIN_SHA = "53aa51172d14"
OTHER_SHA = "0f0f0f0f1e1e"


def _records(folder: Path = MIXED) -> list[tuple[Path, dict]]:
    return load_records([folder])


def _main_table(found=None):
    ok = deduplicate(found or _records()).ok
    main = [r for r in ok if r["task"]["name"] == "sst2" and r["model"]["weights_sha256"].startswith(MAIN_SHA)]
    return aggregate_group(main)


def _row(table, label):
    matches = [r for r in table.rows if r.label == label]
    assert len(matches) == 1, [r.label for r in table.rows]
    return matches[0]


def _write(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(records):
        (folder / f"{i:03d}-{r['run_id']}.json").write_text(json.dumps(r))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report of the mixed records, written once for the module: (report model, its folder)."""
    out = tmp_path_factory.mktemp("report") / "mixed"
    return write_report([MIXED], out), out


@pytest.fixture
def report_dir(built) -> Path:
    return built[1]


# ---- pure functions ---------------------------------------------------------------------------------------
def test_stat_mean_sample_std_and_count():
    s = stat([0.90, 0.91, 0.92, None, float("nan"), True])  # None, NaN and bools are not measurements
    assert s.n == 3
    assert s.mean == pytest.approx(0.91, abs=1e-12)
    assert s.std == pytest.approx(0.01, abs=1e-12)  # sample std (ddof=1)
    assert stat([0.5]).std is None
    assert stat([None]) is None


def test_pareto_front_max_value_min_cost():
    points = [(10, 0.8), (100, 0.9), (1000, 0.85), (100, 0.9), (5000, 0.95), None, (50, 0.7)]
    # (1000, 0.85) is beaten by (100, 0.9); (50, 0.7) by (10, 0.8); equal points are both kept.
    assert pareto_front(points) == {0, 1, 3, 4}
    # Lower is better: (50, 0.7) now has the best value at a cost only (10, 0.8) beats.
    assert pareto_front(points, greater_is_better=False) == {0, 6}


def test_best_indices_direction_ties_and_agreement():
    assert best_indices([3.0, 1.0, None, 1.0], higher_is_better=False) == {1, 3}
    assert best_indices([3.0, 1.0, None, 1.0], higher_is_better=True) == {0}
    assert best_indices([2.0, 2.0], higher_is_better=True) == set()  # all agree: nothing to point at
    assert best_indices([2.0, None], higher_is_better=True) == set()  # a single value is not a contest


def test_human_units():
    assert (fmt_bytes(1536), fmt_bytes(420 * 1024**2), fmt_bytes(-2048), fmt_bytes(None)) == (
        "1.5 KiB", "420 MiB", "-2 KiB", "—")
    assert (fmt_count(770), fmt_count(73_728), fmt_count(22_713_216)) == ("770", "73.7 k", "22.7 M")
    assert (fmt_seconds(12.34), fmt_seconds(250), fmt_seconds(7300)) == ("12.3 s", "4 min 10 s", "2 h 01 min")
    assert (fmt_change(0.5), fmt_change(1.2), fmt_delta(-0.05)) == ("−50.0 %", "+20.0 %", "−0.0500")
    assert fmt_metric(0.91, 0.01) == "0.9100 ± 0.0100" and fmt_metric(0.91) == "0.9100"


def test_point_labels():
    assert point_label(None) == ""
    assert point_label(4) == "r=4"
    assert point_label({"r": 2, "alpha": 0.5}) == "r=2,alpha=0.5"
    assert point_label("merged") == "merged"


# ---- aggregation of the hand-made records -----------------------------------------------------------------
def test_rows_mean_std_n_over_seeds():
    table = _main_table()
    assert table.primary == "validation/accuracy"
    expected = {"lora": (0.91, 0.01, 3), "bitfit": (0.89, 0.01, 3), "full": (0.92, 0.01, 3),
                "head": (0.81, math.sqrt(2) * 0.01, 2), "adalora": (0.91, math.sqrt(0.5) * 0.01, 2)}
    for label, (mean, std, n) in expected.items():
        s = _row(table, label).stats["primary"]
        assert (s.mean, s.std, s.n) == (pytest.approx(mean, abs=1e-9), pytest.approx(std, abs=1e-9), n), label
    loss = _row(table, "lora").stats["metric:validation/loss"]  # another metric from metrics.final
    assert loss.mean == pytest.approx(1.2 - 0.91, abs=1e-9)
    assert _row(table, "lora").mean("memory/peak_bytes") == 420 * 1024**2


def test_dylora_points_give_one_row_per_rank():
    table = _main_table()
    dylora = [r for r in table.rows if r.config.variant == "dylora"]
    assert [r.label for r in dylora] == ["dylora@r=1", "dylora@r=2", "dylora@r=4", "dylora@r=8"]
    # seed 0 and seed 1 (= seed 0 + 0.01) at each rank
    for row, seed0 in zip(dylora, (0.86, 0.88, 0.89, 0.90)):
        assert row.stats["primary"].mean == pytest.approx(seed0 + 0.005, abs=1e-9)
        assert row.stats["primary"].n == 2


def test_pareto_set_and_best_marks():
    table = _main_table()
    assert {r.label for r in table.rows if r.pareto} == {"head", "lora", "full"}
    best = {key: {r.label for r in table.rows if key in r.best} for key in
            ("primary", "memory/peak_bytes", "throughput/train_samples_per_s", "params/trainable_adapter",
             "metric:validation/loss", "params/trainable_head")}
    assert best["primary"] == {"full"}  # 0.92
    assert best["metric:validation/loss"] == {"full"}  # loss: lower is better
    assert best["memory/peak_bytes"] == {"head"}
    assert best["throughput/train_samples_per_s"] == {"head"}
    assert best["params/trainable_adapter"] == {"head"}  # 0 adapter parameters
    assert best["params/trainable_head"] == set()  # every row has the same head


def test_lower_is_better_task_flips_primary_best_and_pareto():
    found = copy.deepcopy(_records())
    for _, r in found:
        r["task"]["greater_is_better"] = False
    table = _main_table(found)
    assert {r.label for r in table.rows if "primary" in r.best} == {"head"}  # 0.81 is now the best
    assert {r.label for r in table.rows if r.pareto} == {"head"}  # cheapest and best at once


def test_best_marks_render_bold_in_markdown_cells():
    headers, rows = table_cells(_main_table())
    assert headers[:3] == ["variant", "n", "Pareto"]
    by_label = {row[0].text: row for row in rows}
    primary = headers.index("validation/accuracy ↑")
    assert by_label["full"][primary].best and by_label["full"][primary].text == "0.9200 ± 0.0100"
    assert not by_label["lora"][primary].best
    assert by_label["lora"][2].text == "◆" and by_label["bitfit"][2].text == ""


def test_newest_record_of_a_run_wins_and_older_ones_are_kept_for_trends():
    runs = deduplicate(_records())
    assert len(runs.older) == 3  # mixed/2024-05-01 holds older records of the three lora runs
    assert all(r["created_at"].startswith("2024-05-01") for _, r in runs.older)
    assert _row(_main_table(), "lora").stats["primary"].mean == pytest.approx(0.91)  # not the older 0.89
    assert len(runs.history) == len(runs.ok) + 3


def test_failed_runs_are_listed_not_dropped(built):
    report = built[0]
    failed = sorted((r["variant"]["name"], r["seed"], r["status"]) for _, r in report.failed)
    assert failed == [("houlsby", 0, "failed"), ("houlsby", 1, "oom"), ("loraplus", 0, "diverged")]
    labels = {row.label for t in report.tasks for g in t.groups for row in g.table.rows}
    assert "houlsby" not in labels and "loraplus" not in labels


def test_incomparable_records_form_separate_groups_with_the_reason(built):
    report = built[0]
    sst2 = next(t for t in report.tasks if t.task == "sst2")
    assert len(sst2.groups) == 2
    assert {g.table.key.weights_sha256[:12] for g in sst2.groups} == {MAIN_SHA, OTHER_SHA}
    other = next(g for g in sst2.groups if g.table.key.weights_sha256.startswith(OTHER_SHA))
    assert [(r.label, r.stats["primary"].mean) for r in other.table.rows] == [("lora", 0.85)]  # not averaged in
    assert "model weights" in sst2.explanation and MAIN_SHA in sst2.explanation and OTHER_SHA in sst2.explanation
    conll = next(t for t in report.tasks if t.task == "conll2003")
    assert conll.explanation is None


def test_profile_and_task_version_differences_are_named():
    a = group_key({"task": {"name": "sst2", "version": "1"}, "model": {"name": "m", "weights_sha256": "x"},
                   "profile": "quick"})
    b = group_key({"task": {"name": "sst2", "version": "2"}, "model": {"name": "m", "weights_sha256": "x"},
                   "profile": "standard"})
    text = explain_groups([a, b])
    assert "task version (1 vs 2)" in text and "profile (quick vs standard)" in text
    assert "model" not in text


def test_configurations_of_one_variant_are_labelled_and_not_averaged(tmp_path):
    found = _records()
    lora = [copy.deepcopy(r) for _, r in found if r["variant"]["name"] == "lora"
            and r["model"]["weights_sha256"].startswith(MAIN_SHA) and r["task"]["name"] == "sst2"
            and r["created_at"].startswith("2024-05-02")]
    wide = copy.deepcopy(lora)
    for r in wide:
        r["variant"]["config"]["r"] = 16
        r["run_id"] += "-r16"
        r["metrics"]["primary"]["value"] = 0.95
    table = aggregate_group(lora + wide)
    assert sorted((r.label, round(r.stats["primary"].mean, 9), r.stats["primary"].n) for r in table.rows) == [
        ("lora (r=16)", 0.95, 3), ("lora (r=8)", 0.91, 3)]
    assert label_configs([config_id(lora[0])]) == {config_id(lora[0]): "lora"}


def test_missing_optional_measurements_show_a_dash():
    found = copy.deepcopy(_records())
    for _, r in found:
        if r["variant"]["name"] == "bitfit":
            for key in ("memory/peak_bytes", "checkpoint/bytes", "inference/latency_ratio"):
                r["measurements"].pop(key, None)
    headers, rows = table_cells(_main_table(found))
    bitfit = next(row for row in rows if row[0].text == "bitfit")
    for title in ("peak memory ↓", "checkpoint ↓", "inference latency (× base) ↓"):
        assert bitfit[headers.index(title)].text == "—"


def test_filters_and_their_errors():
    found = _records()
    only = filter_records(found, tasks=["conll2003"])
    assert {r["task"]["name"] for _, r in only} == {"conll2003"}
    assert len(filter_records(found, models=["all-MiniLM-L6-v2"])) == len(found)  # last part of the name
    with pytest.raises(UserError, match=r"--variant 'nope' matches no record; available: .*lora"):
        filter_records(found, variants=["nope"])


def test_missing_or_empty_results_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does-not-exist"):
        load_records([tmp_path / "does-not-exist"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no run records found"):
        load_records([tmp_path / "empty"])




def test_report_folder_contents(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"report.md", "report.html", "table.csv"} <= names
    assert any(n.endswith("-pareto.png") for n in names)
    assert not [n for n in names if n.startswith(".")]  # no staging leftovers


def test_csv_columns_and_values(report_dir):
    rows = list(csv.DictReader(io.StringIO((report_dir / "table.csv").read_text())))
    for column in ("task", "task_version", "model", "weights_sha256", "profile", "variant", "label", "point", "n",
                   "seeds", "pareto", "primary_metric", "primary_mean", "primary_std", "validation/accuracy",
                   "validation/loss", "params/trainable_adapter", "params/trainable_head",
                   "params/trainable_percent", "memory/peak_bytes", "throughput/train_samples_per_s",
                   "time/train_s", "inference/latency_ratio", "checkpoint/bytes"):
        assert column in rows[0], column
    # 9 rows in the main sst2 table, 1 on other weights, 1 for conll2003
    assert len(rows) == 11
    lora = next(r for r in rows if r["label"] == "lora" and r["weights_sha256"].startswith(MAIN_SHA)
                and r["task"] == "sst2")
    assert float(lora["primary_mean"]) == pytest.approx(0.91)
    assert float(lora["primary_std"]) == pytest.approx(0.01)
    assert lora["n"] == "3" and lora["seeds"] == "0 1 2" and lora["pareto"] == "True"
    assert float(lora["memory/peak_bytes"]) == 420 * 1024**2
    r4 = next(r for r in rows if r["label"] == "dylora@r=4")
    assert r4["point"] == "4" and float(r4["validation/accuracy"]) == pytest.approx(0.895)


def test_markdown_report(report_dir):
    md = (report_dir / "report.md").read_text()
    assert "| variant | n | Pareto | validation/accuracy ↑" in md
    assert "**0.9200 ± 0.0100**" in md  # the best primary metric, bold
    assert "## Failed runs" in md and "CPU out of memory" in md and "loss is nan at step 12" in md
    assert "model weights" in md  # the grouping explanation
    # record text is escaped: "<adapter> & 'up'" must not become HTML
    assert "&lt;adapter&gt; &amp; 'up'" in md and "<adapter>" not in md
    for line in md.splitlines():
        if line.startswith("![") and "](" in line:
            assert (report_dir / line.split("](")[1].rstrip(")")).is_file()


def test_html_is_self_contained_and_escaped(report_dir):
    page = (report_dir / "report.html").read_text()
    pngs = sorted(p.name for p in report_dir.glob("*.png"))
    assert page.count('<img src="data:image/png;base64,') == len(pngs) > 0
    for external in ('src="http', "src='http", 'href="http', "@import", "<link", "url(http"):
        assert external not in page
    assert "&lt;adapter&gt; &amp; &#x27;up&#x27;" in page and "<adapter>" not in page
    assert page.count('class="num best"') >= 5
    assert 'id="failed"' in page and "badge oom" in page


def test_existing_report_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "r"
    write_report([DATA / "clean"], out)
    before = (out / "report.md").read_text()
    with pytest.raises(UserError, match="--force"):
        write_report([MIXED], out)
    assert (out / "report.md").read_text() == before
    assert list(out.glob("*.png"))
    write_report([MIXED], out, tasks=["conll2003"], force=True)  # one row: no charts
    assert "conll2003" in (out / "report.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "table.csv"]  # stale charts gone
    stranger = tmp_path / "not-a-report"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="does not look like a report"):
        write_report([MIXED], stranger, force=True)
    assert (stranger / "notes.txt").read_text() == "keep me"


def test_report_command_line(tmp_path, capsys):
    parser = configure_report_parser(argparse.ArgumentParser())
    args = parser.parse_args([str(MIXED), "--out", str(tmp_path / "cli"), "--task", "conll2003,sst2",
                              "--variant", "lora"])
    assert report_command(args) == 0
    assert "wrote" in capsys.readouterr().out
    csv_text = (tmp_path / "cli" / "table.csv").read_text()
    assert {row["variant"] for row in csv.DictReader(io.StringIO(csv_text))} == {"lora"}
