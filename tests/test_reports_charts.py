"""Report charts: the data preparation (pure functions) and the PNG files themselves."""

from __future__ import annotations

import copy
import struct
from pathlib import Path

import pytest

from adapterbench.reports import charts
from adapterbench.reports.aggregate import aggregate_group
from adapterbench.reports.build import build_report
from adapterbench.reports.collect import deduplicate, load_records

MIXED = Path(__file__).parent / "data" / "records" / "mixed"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("charts")
    return build_report(load_records([MIXED]), out, ["mixed"]), out


def test_every_expected_chart_is_a_real_png(built):
    report, out = built
    files = {c.file for t in report.tasks for g in t.groups for c in g.charts}
    main = next(g for t in report.tasks if t.task == "sst2" for g in t.groups if len(g.table.rows) > 1)
    kinds = {c.file.split("-", 2)[2] for c in main.charts}
    assert kinds == {"pareto.png", "resources.png", "points.png", "trend.png", "ranks-adalora.png"}
    for name in files:
        path = out / name
        assert path.stat().st_size > 10_000, name  # a drawn chart, not an empty canvas
        width, height = png_size(path)
        assert width >= 500 and height >= 250, (name, width, height)
    assert {p.name for p in out.glob("*.png")} == files  # nothing drawn that the report does not show


def test_single_row_groups_get_no_trade_off_charts(built):
    report, _ = built
    conll = next(t for t in report.tasks if t.task == "conll2003")
    assert conll.groups[0].charts == []


def test_no_adalora_record_no_heatmap_and_one_date_no_trend(tmp_path):
    found = [(p, r) for p, r in load_records([MIXED])
             if r["variant"]["name"] != "adalora" and not r["created_at"].startswith("2024-05-01")]
    report = build_report(found, tmp_path, ["x"])
    names = [c.file for t in report.tasks for g in t.groups for c in g.charts]
    assert names and not [n for n in names if "ranks" in n or "trend" in n]


def test_parse_module_name_across_architectures():
    assert charts.parse_module_name("bert.encoder.layer.3.attention.self.query") == (3, "attention.self.query")
    assert charts.parse_module_name("distilbert.transformer.layer.0.attention.q_lin") == (0, "attention.q_lin")
    assert charts.parse_module_name("model.layers.11.self_attn.q_proj") == (11, "self_attn.q_proj")
    # PEFT-style parameter names carry tensor suffixes; the module is what counts
    assert charts.parse_module_name("base_model.model.roberta.encoder.layer.2.output.dense.lora_E") == (
        2, "output.dense")
    assert charts.parse_module_name("classifier.dense") == (None, "classifier.dense")


def test_short_roles_keep_ambiguous_names_apart():
    roles = ["attention.self.query", "attention.self.value", "attention.output.dense", "intermediate.dense",
             "output.dense"]
    assert charts.short_roles(roles) == {
        "attention.self.query": "query", "attention.self.value": "value",
        "attention.output.dense": "attention.output.dense", "intermediate.dense": "intermediate.dense",
        "output.dense": "output.dense"}


def test_find_rank_map_in_variant_info_shapes():
    ranks = {"bert.encoder.layer.0.attention.self.query": 3, "bert.encoder.layer.1.attention.self.query": 5}
    assert charts.find_rank_map({"ranks": ranks, "budget": [[0, 8]]}) == {k: float(v) for k, v in ranks.items()}
    assert charts.find_rank_map(ranks) == {k: float(v) for k, v in ranks.items()}  # variant_info is the map
    masks = {"model.layers.0.mlp.up_proj": [True, False, True], "model.layers.1.mlp.up_proj": [False] * 3}
    assert charts.find_rank_map({"rank_pattern": masks}) == {"model.layers.0.mlp.up_proj": 2.0,
                                                           "model.layers.1.mlp.up_proj": 0.0}
    # numbers keyed by names without a layer index are not ranks of adapted matrices
    assert charts.find_rank_map({"schedule_steps": {"t_init": 10, "t_final": 20}}) is None
    assert charts.find_rank_map({}) is None and charts.find_rank_map(None) is None


def test_rank_grid_places_each_rank():
    roles, layers, matrix = charts.rank_grid({
        "bert.encoder.layer.1.attention.self.query": 7, "bert.encoder.layer.0.attention.self.query": 4,
        "bert.encoder.layer.0.attention.self.value": 2, "bert.pooler.dense": 9})
    assert roles == ["query", "value"] and layers == [0, 1]
    assert matrix == [[4, 7], [2, None]]  # the pooler has no layer index: left out


def test_mean_rank_map_averages_seeds():
    recs = [{"variant_info": {"ranks": {"h.0.attn": 2}}}, {"variant_info": {"ranks": {"h.0.attn": 5}}}, {}]
    assert charts.mean_rank_map(recs) == {"h.0.attn": 3.5}


def test_trend_series_means_per_date():
    records = [r for _, r in load_records([MIXED]) if r["variant"]["name"] == "lora"
               and r["task"]["name"] == "sst2" and r["model"]["weights_sha256"].startswith("53aa")]
    series = charts.trend_series(records)
    assert list(series) == ["lora"]
    assert series["lora"]["2024-05-01"]["metric"] == pytest.approx(0.89)
    assert series["lora"]["2024-05-02"]["metric"] == pytest.approx(0.91)
    assert series["lora"]["2024-05-01"]["throughput"] == pytest.approx(140.0)


def test_points_chart_needs_several_numeric_points(tmp_path):
    ok = [r for r in deduplicate(load_records([MIXED])).ok
          if r["variant"]["name"] == "dylora"]
    assert charts.points_chart(aggregate_group(ok), tmp_path / "p.png", {}) == tmp_path / "p.png"
    single = copy.deepcopy(ok)
    for r in single:
        r["metrics"]["points"] = r["metrics"]["points"][:1]
    assert charts.points_chart(aggregate_group(single), tmp_path / "q.png", {}) is None
    assert not (tmp_path / "q.png").exists()


def test_rows_at_one_spot_share_one_label():
    ok = [r for r in deduplicate(load_records([MIXED])).ok if r["variant"]["name"] in ("dylora", "lora")
          and r["task"]["name"] == "sst2" and r["model"]["weights_sha256"].startswith("53aa")]
    flat = copy.deepcopy(ok)
    for r in flat:  # every rank as good as lora: all rows on one spot
        for p in r["metrics"].get("points", []):
            p["validation/accuracy"] = r["metrics"]["primary"]["value"] = 0.9
    table = aggregate_group(flat)
    clusters = charts.point_clusters([(row, charts.cost_value(row)) for row in table.rows])
    assert len(clusters) == 1
    assert charts.cluster_label(clusters[0][1]) == "dylora@r=1…8, lora"


def test_uniform_ranks_get_no_heatmap_unless_allocated(tmp_path):
    found = [(p, r) for p, r in load_records([MIXED]) if r["variant"]["name"] in ("lora", "adalora")
             and r["task"]["name"] == "sst2" and r["model"]["weights_sha256"].startswith("53aa")]
    for _, r in found:
        if r["variant"]["name"] == "lora":  # what LoRA's describe() records: every matrix at rank r
            r["variant_info"] = {"ranks": {f"bert.encoder.layer.{i}.attention.self.query": 8 for i in range(6)}}
    report = build_report(found, tmp_path, ["x"])
    heatmaps = [c.file for t in report.tasks for g in t.groups for c in g.charts if "-ranks-" in c.file]
    assert heatmaps == ["01-sst2-ranks-adalora.png"]
