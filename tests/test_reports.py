"""Aggregation and the report folder, on records written by the real harness (the ``real_records`` fixture,
tests/data/records/make_records.py). Expected numbers are computed here from the record files with the standard
library, independently of the frames and the pandas aggregation under test."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import statistics
from pathlib import Path

import pytest

from adapterbench.errors import UserError
from adapterbench.reports.aggregate import aggregate_group, best_indices, pareto_front, stat
from adapterbench.reports.build import write_report
from adapterbench.reports.cli import configure_report_parser, report_command
from adapterbench.reports.collect import (
    Collection,
    ConfigId,
    GroupKey,
    explain_groups,
    filter_records,
    label_configs,
    load_records,
)
from adapterbench.reports.model import table_cells
from adapterbench.reports.units import (
    fmt_bytes,
    fmt_change,
    fmt_count,
    fmt_delta,
    fmt_metric,
    fmt_seconds,
    point_label,
)


# ---- helpers: the records as plain JSON -----------------------------------------------------------------
def raw(root: Path, **where) -> list[dict]:
    """Every record file under ``root`` (superseded and checkpoints aside) matching ``where`` (variant=, task=,
    status=, seed=), newest first when a run appears twice."""
    out = []
    for path in sorted(root.rglob("*.json")):
        r = json.loads(path.read_text())
        fields = {"variant": r["variant"]["name"], "task": r["task"]["name"], "status": r["status"],
                  "seed": r["seed"], "folder": path.parent.name}
        if all(fields[k] == v for k, v in where.items()):
            out.append(r)
    return out


def main_group(folder: Path, variant: str) -> list[dict]:
    """The newest ok sst2 records of ``variant`` on the main model (not the other weights, not the older copies)."""
    return [r for r in raw(folder, variant=variant, task="sst2", status="ok", folder=folder.name)]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def table_of(folder: Path, task: str = "sst2"):
    """The aggregated table of ``task`` on the main model (the other-weights run is another group)."""
    collection = Collection.of(*load_records([folder]))
    points = collection.ok_points
    main_model = raw(folder, task=task, folder=folder.name)[0]["model"]["name"]
    return aggregate_group(points[(points["task"] == task) & (points["model"] == main_model)], collection.ok)


def row(table, label):
    matches = [r for r in table.rows if r.label == label]
    assert len(matches) == 1, [r.label for r in table.rows]
    return matches[0]


def copy_records(src: Path, dst: Path, change=None) -> Path:
    """A copy of the record files of ``src`` (top level only) with ``change(record)`` applied to each."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.json")):
        record = json.loads(path.read_text())
        if change is None or change(record) is not False:
            (dst / path.name).write_text(json.dumps(record))
    return dst


@pytest.fixture(scope="module")
def mixed(real_records) -> Path:
    return real_records["mixed"]


@pytest.fixture(scope="module")
def built(mixed, tmp_path_factory):
    """The report of the mixed records, written once for the module: (report model, its folder)."""
    out = tmp_path_factory.mktemp("report") / "mixed"
    return write_report([mixed], out), out


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


def test_point_labels_follow_the_variant_declaration():
    ranks = {"points": {"label": "r={point}"}}
    assert point_label(None, ranks) == ""  # the model as trained
    assert point_label(4, ranks) == "r=4"
    assert point_label(0.5, {"points": {"label": "keep {point}"}}) == "keep 0.5"
    assert point_label(4) == "4"  # nothing declared: the value itself, not a rank
    assert point_label({"r": 2, "alpha": 0.5}) == "r=2,alpha=0.5"


def test_group_differences_are_named():
    a, b = GroupKey("sst2", "1", "m", "x", "quick"), GroupKey("sst2", "2", "m", "x", "standard")
    text = explain_groups([a, b])
    assert "task version (1 vs 2)" in text and "profile (quick vs standard)" in text
    assert "model" not in text


# ---- aggregation of real records --------------------------------------------------------------------------
def test_rows_mean_std_n_over_seeds(mixed):
    table = table_of(mixed)
    assert table.primary == "validation/accuracy" and table.greater_is_better
    for variant in ("lora", "bitfit", "full", "head", "adalora"):
        records = main_group(mixed, variant)
        mean, std = mean_std([r["metrics"]["primary"]["value"] for r in records])
        s = row(table, variant).stats["primary"]
        assert (s.mean, s.n) == (pytest.approx(mean, abs=1e-12), len(records)), variant
        assert s.std == (None if std is None else pytest.approx(std, abs=1e-12)), variant
        peak = statistics.fmean(r["measurements"]["memory/peak_bytes"] for r in records)
        assert row(table, variant).mean("memory/peak_bytes") == pytest.approx(peak), variant
        assert sorted(row(table, variant).seeds) == sorted(r["seed"] for r in records)


def test_secondary_metrics_get_their_own_columns(mixed):
    table = table_of(mixed, task="tiny-ner")
    record = raw(mixed, task="tiny-ner")[0]
    assert table.primary == "validation/f1"
    assert [c.key for c in table.columns if c.key.startswith("metric:")] == [
        "metric:validation/accuracy", "metric:validation/precision", "metric:validation/recall"]
    for name in ("precision", "recall", "accuracy"):
        assert row(table, "lora").mean(f"metric:validation/{name}") == pytest.approx(
            record["metrics"]["final"][f"validation/{name}"])


def test_evaluation_points_give_one_row_each_labelled_as_the_variant_declares(mixed):
    table = table_of(mixed)
    dylora = [r for r in table.rows if r.config.variant == "dylora"]
    assert [r.label for r in dylora] == ["dylora@r=1", "dylora@r=2", "dylora@r=3", "dylora@r=4"]
    records = main_group(mixed, "dylora")
    for r in dylora:
        values = [p["validation/accuracy"] for rec in records for p in rec["metrics"]["points"]
                  if p["point"] == r.point]
        assert r.stats["primary"].mean == pytest.approx(statistics.fmean(values)) and r.stats["primary"].n == 2
    assert table.points_axis == "evaluated rank r" and table.points_scale == "log2"


def test_pareto_set_and_best_marks_match_a_brute_force_over_the_records(mixed):
    table = table_of(mixed)
    means = {}  # label -> (deployed adapter + head, primary), from the JSON files
    for variant in ("lora", "bitfit", "full", "head", "adalora"):
        records = main_group(mixed, variant)
        means[variant] = (statistics.fmean(r["measurements"]["params/deployed_adapter"]
                                           + r["measurements"]["params/trainable_head"] for r in records),
                          statistics.fmean(r["metrics"]["primary"]["value"] for r in records))
    for p in (1, 2, 3, 4):
        records = main_group(mixed, "dylora")
        points = [q for r in records for q in r["metrics"]["points"] if q["point"] == p]
        means[f"dylora@r={p}"] = (points[0]["params/deployed_adapter"]  # each rank keeps its own count
                                  + records[0]["measurements"]["params/trainable_head"],
                                  statistics.fmean(q["validation/accuracy"] for q in points))
    assert len({c for label, (c, _) in means.items() if label.startswith("dylora")}) == 4
    pareto = {a for a, (ca, va) in means.items()
              if not any(cb <= ca and vb >= va and (cb < ca or vb > va) for b, (cb, vb) in means.items() if b != a)}
    assert {r.label for r in table.rows if r.pareto} == pareto
    best_value = max(v for _, v in means.values())
    assert {r.label for r in table.rows if "primary" in r.best} == {k for k, (_, v) in means.items()
                                                                    if math.isclose(v, best_value)}
    assert {r.label for r in table.rows if "params/trainable_adapter" in r.best} == {"head"}  # 0 adapter params
    assert {r.label for r in table.rows if "params/trainable_head" in r.best} == set()  # every row: one head


def test_lower_is_better_task_flips_primary_best_and_pareto(mixed, tmp_path):
    def flip(r):
        r["task"]["greater_is_better"] = False

    table = table_of(copy_records(mixed, tmp_path / "flipped", flip))
    worst = min(r.mean("primary") for r in table.rows)
    assert {r.label for r in table.rows if "primary" in r.best} == {
        r.label for r in table.rows if math.isclose(r.mean("primary"), worst)}
    assert not table.greater_is_better


def test_newest_record_of_a_run_wins_and_older_ones_are_kept_for_trends(mixed):
    collection = Collection.of(*load_records([mixed]))
    older = collection.older
    assert len(older) == 3 and set(older["variant"]) == {"lora"}  # mixed/2024-05-01: a day earlier
    assert all("2024-05-01" in s for s in older["source"])
    assert len(collection.history) == len(collection.ok) + 3
    assert (collection.latest["run_id"].value_counts() <= 2).all()  # only the other-weights run shares an id


def test_failed_runs_are_listed_not_dropped(built, mixed):
    report = built[0]
    failed = sorted((r.variant, r.seed, r.status) for r in report.failed.itertuples())
    assert failed == [("houlsby", 0, "failed"), ("loraplus", 0, "diverged")]
    messages = {r.variant: r.error_message for r in report.failed.itertuples()}
    assert messages["houlsby"] == raw(mixed, variant="houlsby")[0]["error"]["message"]
    assert "nan" in messages["loraplus"]
    labels = {row.label for t in report.tasks for g in t.groups for row in g.table.rows}
    assert "houlsby" not in labels and "loraplus" not in labels


def test_incomparable_records_form_separate_groups_with_the_reason(built, mixed):
    report = built[0]
    sst2 = next(t for t in report.tasks if t.task == "sst2")
    assert len(sst2.groups) == 2
    main_sha = raw(mixed, variant="lora", folder="mixed")[0]["model"]["weights_sha256"][:12]
    other = raw(mixed / "other-weights")[0]
    other_sha = other["model"]["weights_sha256"][:12]
    assert {g.table.key.weights_sha256[:12] for g in sst2.groups} == {main_sha, other_sha}
    group = next(g for g in sst2.groups if g.table.key.weights_sha256.startswith(other_sha))
    assert [(r.label, r.mean("primary")) for r in group.table.rows] == [("lora", other["metrics"]["primary"]["value"])]
    assert "model weights" in sst2.explanation and main_sha in sst2.explanation and other_sha in sst2.explanation
    ner = next(t for t in report.tasks if t.task == "tiny-ner")
    assert ner.explanation is None


def test_configurations_of_one_variant_are_labelled_and_not_averaged(mixed, tmp_path):
    lora = [r for r in main_group(mixed, "lora")]
    folder = tmp_path / "two-configs"
    folder.mkdir()
    for r in lora:
        (folder / f"{r['run_id']}.json").write_text(json.dumps(r))
        wide = json.loads(json.dumps(r))
        wide["variant"]["config"]["r"] = 16
        wide["run_id"] += "-r16"
        wide["metrics"]["primary"]["value"] = 0.25
        (folder / f"{wide['run_id']}.json").write_text(json.dumps(wide))
    table = table_of(folder)
    mean = statistics.fmean(r["metrics"]["primary"]["value"] for r in lora)
    assert sorted((r.label, round(r.mean("primary"), 9), r.stats["primary"].n) for r in table.rows) == sorted([
        ("lora (r=16)", 0.25, 3), ("lora (r=8)", round(mean, 9), 3)])
    cid = ConfigId("lora", "{}")
    assert label_configs([cid]) == {cid: "lora"}


def test_missing_optional_measurements_show_a_dash(mixed, tmp_path):
    def drop(r):
        if r["variant"]["name"] == "bitfit":
            for key in ("memory/peak_bytes", "checkpoint/bytes", "inference/latency_ratio"):
                r["measurements"].pop(key, None)

    headers, rows = table_cells(table_of(copy_records(mixed, tmp_path / "gaps", drop)))
    bitfit = next(row for row in rows if row[0].text == "bitfit")
    for title in ("peak memory ↓", "checkpoint ↓", "inference latency (× base) ↓"):
        assert bitfit[headers.index(title)].text == "—"
    lora = next(row for row in rows if row[0].text == "lora")
    assert lora[headers.index("peak memory ↓")].text != "—"


def test_filters_and_their_errors(mixed):
    found, _ = load_records([mixed])
    only = filter_records(found, tasks=["tiny-ner"])
    assert {r["task"]["name"] for _, r in only} == {"tiny-ner"}
    assert len(filter_records(found, models=["tiny"])) == len(found)  # the last part of the model path
    with pytest.raises(UserError, match=r"--variant 'nope' matches no record; available: .*lora"):
        filter_records(found, variants=["nope"])


def test_missing_or_empty_results_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does-not-exist"):
        load_records([tmp_path / "does-not-exist"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no run records found"):
        load_records([tmp_path / "empty"])
    (tmp_path / "empty" / "x.json").write_text('{"schema_version": 7, "run_id": "a"}')
    with pytest.raises(UserError, match=r"1 file\(s\) skipped; first: .*x.json: schema_version 7 is not readable"):
        load_records([tmp_path / "empty"])


# ---- the report folder --------------------------------------------------------------------------------------
def test_report_folder_contents(built):
    names = {p.name for p in built[1].iterdir()}
    assert {"report.md", "report.html", "table.csv"} <= names
    assert any(n.endswith("-pareto.png") for n in names)
    assert not [n for n in names if n.startswith(".")]  # no staging leftovers


def test_csv_columns_and_values(built, mixed):
    rows = list(csv.DictReader(io.StringIO((built[1] / "table.csv").read_text())))
    for column in ("task", "task_version", "model", "weights_sha256", "profile", "variant", "label", "point", "n",
                   "seeds", "pareto", "primary_metric", "primary_mean", "primary_std", "validation/accuracy",
                   "params/trainable_adapter", "params/trainable_head", "params/trainable_percent",
                   "memory/peak_bytes", "throughput/train_samples_per_s", "time/train_s", "inference/latency_ratio",
                   "checkpoint/bytes"):
        assert column in rows[0], column
    # main sst2 table: lora, bitfit, full, head, adalora and four dylora ranks; 1 on other weights; 1 tiny-ner
    assert len(rows) == 9 + 1 + 1
    records = main_group(mixed, "lora")
    mean, std = mean_std([r["metrics"]["primary"]["value"] for r in records])
    lora = next(r for r in rows if r["label"] == "lora" and r["task"] == "sst2" and r["group"] == "1")
    assert float(lora["primary_mean"]) == pytest.approx(mean) and float(lora["primary_std"]) == pytest.approx(std)
    assert lora["n"] == "3" and lora["seeds"] == "0 1 2"
    assert float(lora["memory/peak_bytes"]) == pytest.approx(
        statistics.fmean(r["measurements"]["memory/peak_bytes"] for r in records))
    r4 = next(r for r in rows if r["label"] == "dylora@r=4")
    assert r4["point"] == "4"


def test_markdown_report(built, mixed):
    md = (built[1] / "report.md").read_text()
    assert "| variant | n | learned | Pareto | validation/accuracy ↑" in md
    assert "| dylora@r=4 | 2 | 0 of 2 |" in md  # one row at its default point, none of its seeds learned
    points = md[md.index("*every evaluation point"):]
    assert all(f"| dylora@r={r} | 2 |" in points for r in (1, 2, 3, 4))  # every point in the points table
    assert "## Failed runs" in md and "loss became nan" in md
    assert "model weights" in md  # the grouping explanation
    assert "**Files skipped:** 0" in md
    for line in md.splitlines():
        if line.startswith("![") and "](" in line:
            assert (built[1] / line.split("](")[1].rstrip(")")).is_file()


def test_record_text_is_escaped_in_markdown_and_html(mixed, tmp_path):
    def hostile(r):
        if r["status"] == "failed":
            r["error"]["message"] = "shape mismatch in <adapter> & 'up' | projection"

    out = write_report([copy_records(mixed, tmp_path / "hostile", hostile)], tmp_path / "report")
    md, page = (tmp_path / "report" / "report.md").read_text(), (tmp_path / "report" / "report.html").read_text()
    assert "&lt;adapter&gt; &amp; 'up' \\| projection" in md and "<adapter>" not in md
    assert "&lt;adapter&gt; &amp; &#x27;up&#x27; | projection" in page and "<adapter>" not in page
    assert len(out.failed) == 2


def test_html_is_self_contained(built):
    page = (built[1] / "report.html").read_text()
    pngs = sorted(p.name for p in built[1].glob("*.png"))
    svgs = page.count('<svg class="chart"')  # the Pareto charts, inline with hover labels (report.md links the PNG)
    assert svgs == len([p for p in pngs if p.endswith("-pareto.png")]) >= 1
    assert page.count('<img src="data:image/png;base64,') == len(pngs) - svgs > 0
    for external in ('src="http', "src='http", 'href="http', "@import", "<link", "url(http"):
        assert external not in page
    assert page.count('class="num best"') >= 3
    assert 'id="failed"' in page and "badge diverged" in page


def test_unreadable_files_are_skipped_with_a_reason_counted_and_shown(mixed, tmp_path, capsys):
    folder = copy_records(mixed, tmp_path / "with-junk")
    (folder / "broken.json").write_text("{not json")
    (folder / "future.json").write_text(json.dumps({**raw(mixed, variant="head")[0], "schema_version": 99}))
    wrong = raw(mixed, variant="head")[0]
    wrong["measurements"]["memory/peak_bytes"] = "a lot"
    (folder / "wrong.json").write_text(json.dumps(wrong))
    parser = configure_report_parser(argparse.ArgumentParser())
    assert report_command(parser.parse_args([str(folder), "--out", str(tmp_path / "r")])) == 0
    out = capsys.readouterr().out.splitlines()
    skipped = [line for line in out if line.startswith("skipped ")]
    assert [line.split(": ", 1)[1] for line in sorted(skipped)] == [
        "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)",
        "schema_version 99 is not readable; this adapterbench reads 1, 2",
        "measurement memory/peak_bytes 'a lot' is not a number"]
    assert out[-1].endswith("3 file(s) skipped")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "**Files skipped:** 3" in md and "future.json: schema\\_version 99 is not readable" in md


def test_existing_report_is_not_overwritten_without_force(real_records, tmp_path):
    out = tmp_path / "r"
    write_report([real_records["clean"]], out)
    before = (out / "report.md").read_text()
    with pytest.raises(UserError, match="--force"):
        write_report([real_records["mixed"]], out)
    assert (out / "report.md").read_text() == before
    assert list(out.glob("*.png"))
    write_report([real_records["mixed"]], out, tasks=["tiny-ner"], force=True)  # one row: no charts
    assert "tiny-ner" in (out / "report.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "table.csv"]  # stale charts gone
    stranger = tmp_path / "not-a-report"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="does not look like a report"):
        write_report([real_records["mixed"]], stranger, force=True)
    assert (stranger / "notes.txt").read_text() == "keep me"


def test_report_command_line_filters(mixed, tmp_path, capsys):
    parser = configure_report_parser(argparse.ArgumentParser())
    args = parser.parse_args([str(mixed), "--out", str(tmp_path / "cli"), "--task", "tiny-ner,sst2",
                              "--variant", "lora"])
    assert report_command(args) == 0
    assert "wrote" in capsys.readouterr().out
    csv_text = (tmp_path / "cli" / "table.csv").read_text()
    assert {row["variant"] for row in csv.DictReader(io.StringIO(csv_text))} == {"lora"}


def test_a_new_kind_of_evaluation_point_is_labelled_and_charted_as_declared(mixed, tmp_path):
    # A variant the reports have never heard of, whose points are kept fractions rather than ranks: relabel the
    # dylora records as such (the reports read only what the record declares).
    def other_points(r):
        if r["variant"]["name"] != "dylora":
            return False
        r["variant"]["name"] = "dropkeep"
        r["variant_info"]["report"] = {"points": {"axis": "fraction of weights kept", "label": "keep={point}",
                                                  "scale": "linear"}}
        for p, fraction in zip(r["metrics"]["points"], (0.25, 0.5, 0.75, 1.0)):
            p["point"] = fraction

    folder = copy_records(mixed, tmp_path / "dropkeep", other_points)
    shutil.copytree(mixed / "2024-05-01", folder / "2024-05-01")  # a second variant, for the charts to compare
    report = write_report([folder], tmp_path / "report")
    table = report.tasks[0].groups[0].table
    assert [r.label for r in table.rows if r.point is not None] == [
        "dropkeep@keep=0.25", "dropkeep@keep=0.5", "dropkeep@keep=0.75", "dropkeep@keep=1"]
    charts = {c.file.split("-", 2)[2]: c for c in report.tasks[0].groups[0].charts}
    assert charts["points.png"].title == "sst2: metric at each fraction of weights kept"
    assert table.points_axis == "fraction of weights kept" and table.points_scale == "linear"
    assert not [r.label for r in table.rows if "r=" in r.label]


def test_a_points_own_measurement_wins_over_its_runs(mixed, tmp_path):
    # Schema v2: each evaluation point may carry params/deployed_adapter (DyLoRA: the adapter kept at rank b).
    def deployed(r):
        if r["variant"]["name"] != "dylora":
            return False
        r["measurements"]["params/deployed_adapter"] = 999
        for p in r["metrics"]["points"]:
            p["params/deployed_adapter"] = 100 * p["point"]

    table = table_of(copy_records(mixed, tmp_path / "deployed", deployed))
    assert [(r.point, r.mean("params/deployed_adapter")) for r in table.rows] == [(1, 100), (2, 200), (3, 300),
                                                                                (4, 400)]
    headers, _ = table_cells(table)
    assert "deployed adapter params ↓" in headers
