"""Report charts: the data preparation (pure functions) and the PNG files themselves, drawn from records written
by the real harness (the ``real_records`` fixture)."""

from __future__ import annotations

import json
import statistics
import struct
from pathlib import Path

import pandas as pd
import pytest

from adapterbench.reports import charts
from adapterbench.reports.aggregate import Row, Stat, aggregate_group
from adapterbench.reports.collect import Collection, ConfigId, load_records
from adapterbench.reports.model import build_report
from adapterbench.results import parse_module_name

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def collection_of(folder: Path, keep=lambda path, record: True) -> Collection:
    found, skipped = load_records([folder])
    return Collection.of([(p, r) for p, r in found if keep(p, r)], skipped)


@pytest.fixture(scope="module")
def mixed(real_records) -> Path:
    return real_records["mixed"]


@pytest.fixture(scope="module")
def built(mixed, tmp_path_factory):
    out = tmp_path_factory.mktemp("charts")
    return build_report(collection_of(mixed), out, ["mixed"]), out


def test_every_expected_chart_is_a_real_png(built):
    report, out = built
    files = {c.file for t in report.tasks for g in t.groups for c in g.charts}
    main = next(g for t in report.tasks if t.task == "sst2" for g in t.groups if len(g.table.rows) > 1)
    kinds = {c.file.split("-", 2)[2] for c in main.charts}
    # LoRA declares its rank map too, but its ranks are all r and not allocated: no heatmap for it.
    assert kinds == {"pareto.png", "resources.png", "points.png", "trend.png", "ranks-adalora.png"}
    for name in files:
        path = out / name
        assert path.stat().st_size > 10_000, name  # a drawn chart, not an empty canvas
        width, height = png_size(path)
        assert width >= 500 and height >= 250, (name, width, height)
    assert {p.name for p in out.glob("*.png")} == files  # nothing drawn that the report does not show


def test_single_row_groups_get_no_trade_off_charts(built):
    report, _ = built
    ner = next(t for t in report.tasks if t.task == "tiny-ner")
    assert ner.groups[0].charts == []


def test_no_rank_map_no_heatmap_and_one_date_no_trend(mixed, tmp_path):
    collection = collection_of(mixed, lambda p, r: r["variant"]["name"] != "adalora" and "2024-05-01" not in str(p))
    report = build_report(collection, tmp_path, ["x"])
    names = [c.file for t in report.tasks for g in t.groups for c in g.charts]
    assert names and not [n for n in names if "ranks" in n or "trend" in n]


def test_parse_module_name_across_architectures():
    assert parse_module_name("bert.encoder.layer.3.attention.self.query") == (3, "attention.self.query")
    assert parse_module_name("distilbert.transformer.layer.0.attention.q_lin") == (0, "attention.q_lin")
    assert parse_module_name("model.layers.11.self_attn.q_proj") == (11, "self_attn.q_proj")
    assert parse_module_name("classifier.dense") == (None, "classifier.dense")


def test_short_roles_keep_ambiguous_names_apart():
    roles = ["attention.self.query", "attention.self.value", "attention.output.dense", "intermediate.dense",
             "output.dense"]
    assert charts.short_roles(roles) == {
        "attention.self.query": "query", "attention.self.value": "value",
        "attention.output.dense": "attention.output.dense", "intermediate.dense": "intermediate.dense",
        "output.dense": "output.dense"}


def test_rank_grid_places_each_rank():
    roles, layers, matrix = charts.rank_grid({
        "bert.encoder.layer.1.attention.self.query": 7, "bert.encoder.layer.0.attention.self.query": 4,
        "bert.encoder.layer.0.attention.self.value": 2, "bert.pooler.dense": 9})
    assert roles == ["query", "value"] and layers == [0, 1]
    assert matrix == [[4, 7], [2, None]]  # the pooler has no layer index: left out


def test_mean_rank_map_averages_seeds_per_module_in_model_order():
    ranks = pd.DataFrame({"module": ["h.1.attn", "h.0.attn", "h.1.attn", "h.0.attn"], "rank": [2.0, 4.0, 5.0, 4.0]})
    assert charts.mean_rank_map(ranks) == {"h.1.attn": 3.5, "h.0.attn": 4.0}
    assert charts.mean_rank_map(ranks.iloc[:0]) is None


def test_rank_maps_come_from_what_the_variant_declared(mixed):
    collection = collection_of(mixed)
    adalora = [json.loads(p.read_text()) for p in mixed.glob("*adalora*.json")]
    declared = adalora[0]["variant_info"]["report"]["rank_map"]
    assert declared["allocated"] is True
    ranks = collection.ranks[collection.ranks["variant"] == "adalora"]
    expected = {name: statistics.fmean(r["variant_info"][declared["key"]][name] for r in adalora)
                for name in adalora[0]["variant_info"][declared["key"]]}
    assert charts.mean_rank_map(ranks) == pytest.approx(expected)


def test_trend_series_means_per_date(mixed):
    collection = collection_of(mixed, lambda p, r: r["variant"]["name"] == "lora" and r["task"]["name"] == "sst2"
                               and "other-weights" not in str(p))
    series = charts.trend_series(collection.history)
    assert list(series) == ["lora"]
    records = [json.loads(p.read_text()) for p in mixed.glob("sst2__lora__*.json")]
    by_date = {}
    for r in records:
        by_date.setdefault(r["created_at"][:10], []).append(r)
    older = [json.loads(p.read_text()) for p in (mixed / "2024-05-01").glob("*.json")]
    for r in older:
        by_date.setdefault(r["created_at"][:10], []).append(r)
    assert len(series["lora"]) == len(by_date) == 2
    for day, rs in by_date.items():
        assert series["lora"][day]["metric"] == pytest.approx(statistics.fmean(r["metrics"]["primary"]["value"]
                                                                               for r in rs))
        assert series["lora"][day]["throughput"] == pytest.approx(statistics.fmean(
            r["measurements"]["throughput/train_samples_per_s"] for r in rs))


def test_points_chart_needs_several_points(mixed, tmp_path):
    collection = collection_of(mixed, lambda p, r: r["variant"]["name"] == "dylora")
    table = aggregate_group(collection.ok_points, collection.ok)
    assert charts.points_chart(table, tmp_path / "p.png", {}) == tmp_path / "p.png"

    def first_point_only(p, r):
        if r["variant"]["name"] != "dylora":
            return False
        r["metrics"]["points"] = r["metrics"]["points"][:1]
        return True

    single = collection_of(mixed, first_point_only)
    assert charts.points_chart(aggregate_group(single.ok_points, single.ok), tmp_path / "q.png", {}) is None
    assert not (tmp_path / "q.png").exists()


def _row(label: str, point, point_label: str = "") -> Row:
    return Row(ConfigId(label.split("@")[0], "{}"), point, json.dumps(point), point_label, label, ["run"], [0],
               {"primary": Stat(0.9, None, 1), "params/trainable": Stat(100.0, None, 1)})


def test_rows_at_one_spot_share_one_label():
    rows = [_row("dylora@r=1", 1, "r=1"), _row("dylora@r=2", 2, "r=2"), _row("dylora@r=8", 8, "r=8"),
            _row("lora", None)]
    clusters = charts.point_clusters([(row, charts.cost_value(row)) for row in rows])
    assert len(clusters) == 1
    assert charts.cluster_label(clusters[0][1]) == "dylora@r=1…8, lora"
    kept = [_row("x@keep=0.25", 0.25, "keep=0.25"), _row("x@keep=1", 1.0, "keep=1")]
    assert charts.cluster_label(kept) == "x@keep=0.25…1"


def test_uniform_ranks_get_no_heatmap_unless_allocated(mixed, tmp_path):
    def allocated_lora(p, r):
        if r["variant"]["name"] == "lora":  # LoRA ranks, all r, but declared as allocated
            r["variant_info"]["report"]["rank_map"]["allocated"] = True
        return r["variant"]["name"] in ("lora", "bitfit") and r["task"]["name"] == "sst2"

    report = build_report(collection_of(mixed, allocated_lora), tmp_path, ["x"])
    heatmaps = [c.file for t in report.tasks for g in t.groups for c in g.charts if "-ranks-" in c.file]
    # Both sst2 groups (main and other weights) have a lora row; bitfit declares no rank map.
    assert heatmaps == ["01-sst2-ranks-lora.png", "02-sst2-ranks-lora.png"]


# ---- numbers rounded to their interval; intervals that say nothing are named, not drawn --------------------
def test_numbers_are_rounded_to_what_their_interval_supports():
    from adapterbench.reports.units import fmt_estimate, supported_decimals

    assert [supported_decimals(x) for x in (0.3, 0.021, 0.0049, 2e-6, None, 0.0)] == [2, 3, 4, 4, 4, 4]
    assert fmt_estimate(0.912345, 0.0213, (0.87, 0.95), "ˢ") == "0.912 ± 0.021 [0.870, 0.950]ˢ"
    assert fmt_estimate(0.912345, 0.0213) == "0.912 ± 0.021"  # the std sets the digits without an interval
    assert fmt_estimate(1 + 1 / 3, None, (0.5, 2.5)) == "1.3 [0.5, 2.5]"  # half-width 1.0: never "1.33333"


def test_a_two_seed_interval_is_named_uninformative_and_gets_no_error_bar(built):
    from adapterbench.reports.model import stat_text, table_cells
    from adapterbench.reports.svgcharts import pareto_svg

    report, _ = built
    group = next(g for t in report.tasks if t.task == "sst2" for g in t.groups if len(g.table.rows) > 1)
    two = [r for r in group.table.rows if r.stats["primary"].n == 2 and r.stats["primary"].interval_kind == "seeds"]
    three = [r for r in group.table.rows if r.stats["primary"].n == 3 and r.stats["primary"].interval]
    assert two and three  # the smoke records: some rows over two seeds, lora over three
    for row in two:
        s = row.stats["primary"]
        assert charts.uninformative(s) and charts.error_bar(row) == (0.0, 0.0)
        assert stat_text(s, "metric").endswith("(interval uninformative)") and "[" not in stat_text(s, "metric")
    for row in three:
        assert not charts.uninformative(row.stats["primary"]) and charts.error_bar(row) != (0.0, 0.0)
    headers, cells = table_cells(group.table)
    assert any("(interval uninformative)" in r[headers.index("validation/accuracy ↑")].text for r in cells)
    rows = [r for r in group.table.rows if r in two or r in three]
    svg = pareto_svg(rows, "t", True, charts.uninformative, set())
    points = svg.split('<g class="point">')[1:]
    bars = {p.split("</title>")[0].split(":")[0][7:]: "<line" in p for p in points}
    assert bars == {r.label: r in three for r in rows}  # every row has a cost here: every row is drawn
