"""The answer at the top of a report, and the intervals in its tables, on records written by the real harness
(the ``real_records`` fixture) and on copies of them whose outcome is known by construction: a twin with the
same predictions is tied, a variant wrong on every example is worse, Holm is applied, a paper reference sits
beside the measured mean. Expected values are worked out here from the record and sidecar files."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from adapterbench import stats
from adapterbench.reports import labels
from adapterbench.reports.build import write_report
from adapterbench.reports.collect import Collection, load_records
from adapterbench.reports.markdown import render_markdown
from adapterbench.reports.model import build_report, table_cells, table_parts
from adapterbench.reports.terminal import answer_text
from adapterbench.reports.units import fmt_count, fmt_estimate

N = 400  # resamples: enough for p-values of 1/401, quick on 25 examples


def records(folder: Path, variant: str, task: str = "sst2") -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        if r["variant"]["name"] == variant and r["task"]["name"] == task and r["status"] == "ok":
            out.append((path, r))
    return out


def sidecar(path: Path, record: dict) -> dict:
    return json.loads(gzip.decompress((path.parent / record["predictions"]["file"]).read_bytes()))


def copy_as(src: list[tuple[Path, dict]], folder: Path, name: str, wrong: bool = False, tags: dict | None = None
            ) -> list[dict]:
    """Copies of ``src`` runs as variant ``name`` with their sidecars; ``wrong``: every prediction flipped
    (binary labels) and the metrics recomputed from them; ``tags`` added to each record."""
    out = []
    for path, record in src:
        record = json.loads(json.dumps(record))
        side = sidecar(path, record)
        record["variant"]["name"] = name
        record["run_id"] = record["run_id"].replace(f"__{src[0][1]['variant']['name']}__", f"__{name}__")
        if wrong:
            part = side["splits"]["validation"]
            part["predictions"] = {k: [1 - r for r in part["references"]] for k in part["predictions"]}
            record["metrics"]["primary"]["value"] = 0.0
            record["metrics"]["final"]["validation/accuracy"] = 0.0
            for entry in record["metrics"]["points"]:
                entry["validation/accuracy"] = 0.0
        if tags:
            record["tags"] = {**record.get("tags", {}), **tags}
        file = f"predictions/{record['run_id']}.json.gz"
        (folder / "predictions").mkdir(parents=True, exist_ok=True)
        (folder / file).write_bytes(gzip.compress(json.dumps(side).encode()))
        record["predictions"]["file"] = file
        record["predictions"]["sha256"] = hashlib.sha256((folder / file).read_bytes()).hexdigest()
        (folder / f"{record['run_id']}.json").write_text(json.dumps(record))
        out.append(record)
    return out


def report_of(folder: Path, out: Path, n: int = N):
    out.mkdir(parents=True, exist_ok=True)
    return build_report(Collection.of(*load_records([folder])), out, [str(folder)], n_resamples=n)


def main_sst2(report):
    return next(g for t in report.tasks if t.task == "sst2" for g in t.groups if len(g.table.rows) > 1)


@pytest.fixture(scope="module")
def mixed(real_records) -> Path:
    return real_records["mixed"]


@pytest.fixture(scope="module")
def built(mixed, tmp_path_factory):
    return report_of(mixed, tmp_path_factory.mktemp("answer"))


@pytest.fixture(scope="module")
def known_folder(mixed, tmp_path_factory) -> Path:
    """lora's three runs; a twin with identical predictions; a dud wrong on every example; lora tagged with a
    paper reference."""
    folder = tmp_path_factory.mktemp("known")
    lora = records(mixed, "lora")
    reference = {"reference": {"source": "A paper, Table 1", "metric": "validation/accuracy", "value": 0.9,
                               "std": 0.02}}
    copy_as(lora, folder, "lora", tags=reference)
    copy_as(lora, folder, "twin")
    copy_as(lora, folder, "dud", wrong=True)
    return folder


@pytest.fixture(scope="module")
def known(known_folder, mixed):
    return report_of(known_folder, known_folder.parent / "known-report"), [r for _, r in records(mixed, "lora")]


# ---- verdicts whose outcome is known ------------------------------------------------------------------------
def test_identical_predictions_are_tied_and_all_wrong_ones_are_worse(known):
    report, lora = known
    answer = main_sst2(report).answer
    by = {v.variant: v for v in answer.variants}
    assert answer.best == "lora"  # an exact tie goes to the first row (the table's order)
    assert by["twin"].status == "tied" and by["twin"].vs_best.identical
    assert by["twin"].vs_best.difference == 0 and by["twin"].p_adjusted == 1.0
    assert (by["twin"].vs_best.interval.low, by["twin"].vs_best.interval.high) == (0.0, 0.0)
    assert by["dud"].status == "worse" and answer.worse == ("dud",)
    assert by["dud"].seeds_agree is True  # wrong on every example in every seed: no † in the table
    row = next(r for r in report.answer if r.title.startswith("sst2") and r.title.endswith("accuracy")).rows
    assert [c.text for c in next(r for r in row if r[1].text == "dud")][3] == "worse"
    mean = statistics.fmean(r["metrics"]["primary"]["value"] for r in lora)
    assert by["dud"].vs_best.difference == pytest.approx(-mean)
    assert by["dud"].vs_best.test == "permutation"  # three seeds: not McNemar
    # two-sided; no sign flip reaches |d|: the floor 2 / (B + 1), B sized for the family of 2 comparisons
    flips = stats.permutations_for(2, 0.05, N)
    assert flips == 799 and by["dud"].vs_best.p_value == pytest.approx(2 / (flips + 1))
    assert "each one of a family of m tests uses B = max(400, 20 m / 0.05)" in report.answer[0].legend[0]
    # the seed-level check: the twin equals lora on every seed (p 1); the dud's accuracy is 0 on every seed,
    # so its per-seed differences are lora's accuracies: a paired t over the 3 seeds, Holm over the two
    values = [r["metrics"]["primary"]["value"] for r in lora]
    p_dud = sps.ttest_rel(values, [0.0] * len(values)).pvalue
    assert by["twin"].seed_p_adjusted == 1.0
    assert by["dud"].seed_p_adjusted == pytest.approx(min(1.0, 2 * p_dud))
    header = next(r for r in report.answer if r.title.startswith("sst2") and r.title.endswith("accuracy")).headers
    cell = [c.text for c in next(r for r in row if r[1].text == "dud")][header.index("p over seeds (Holm)")]
    assert cell == f"{by['dud'].seed_p_adjusted:.3g}"


def test_holm_is_applied_over_the_comparisons_with_the_best(known):
    answer = main_sst2(known[0]).answer
    tested = [v for v in answer.variants if v.vs_best is not None]
    raw = [v.vs_best.p_value for v in tested]
    assert [v.p_adjusted for v in tested] == pytest.approx(list(stats.holm(raw)))
    dud = next(v for v in tested if v.variant == "dud")
    assert dud.p_adjusted == pytest.approx(2 * dud.vs_best.p_value)  # smallest of m = 2 p-values: times 2


def test_the_pairs_matrix_marks_every_pair_by_its_holm_verdict(known):
    report, lora = known
    block = next(b for b in report.answer if b.title.startswith("sst2") and b.title.endswith("which pairs differ"))
    labels = list(block.headers[1:])
    assert sorted(labels) == ["dud", "lora", "twin"]
    matrix = {row[0].text: dict(zip(labels, (c.text for c in row[1:]))) for row in block.rows}
    mean = statistics.fmean(r["metrics"]["primary"]["value"] for r in lora)
    assert matrix["lora"]["twin"] == matrix["twin"]["lora"] == "= +0.0000"  # identical predictions: tied
    for best in ("lora", "twin"):  # wrong on every example: worse than both, in both directions of the matrix
        assert matrix[best]["dud"] == f"▲ +{mean:.4f}" and matrix["dud"][best] == f"▼ −{mean:.4f}"
    assert all(matrix[a][a] == "—" for a in labels)
    assert "Holm over all 3 pairs" in block.paragraphs[0] and "2 of 3 pairs differ" in block.paragraphs[0]
    md = render_markdown(report)
    assert md.index("### sst2: which pairs differ") > md.index("### sst2: accuracy")


def test_paper_and_measured_side_by_side_in_units_of_the_papers_std(known):
    report, lora = known
    paper = next(b for b in report.answer if b.title == "Paper and measured")
    assert [c.text for c in paper.rows[0]][:3] == ["sst2", "lora", "validation/accuracy"]
    values = [r["metrics"]["final"]["validation/accuracy"] for r in lora]
    mean, std = statistics.fmean(values), statistics.stdev(values)
    row = dict(zip(paper.headers, (c.text for c in paper.rows[0])))
    assert row["paper"] == "0.9000 ± 0.0200" and row["source"] == "A paper, Table 1"
    assert row["measured (mean ± std, n)"] == f"{mean:.4f} ± {std:.4f} (n=3)"
    assert row["in paper std"] == f"{(mean - 0.9) / 0.02:+.1f}".replace("-", "−")
    assert len(paper.rows) == 1  # only the tagged runs


def test_without_predictions_the_seeds_decide_and_a_single_seed_is_untested(mixed, tmp_path):
    folder = tmp_path / "no-predictions"
    folder.mkdir()
    for variant in ("lora", "bitfit", "full"):  # records from before the learned check: compared as they are
        for path, r in records(mixed, variant):
            r.pop("predictions"), r.pop("learned")
            (folder / path.name).write_text(json.dumps(r))
    path, single = records(mixed, "lora")[0]
    single.pop("predictions"), single.pop("learned")
    single["variant"]["name"], single["run_id"] = "solo", single["run_id"] + "-solo"
    (folder / "solo.json").write_text(json.dumps(single))
    answer = main_sst2(report_of(folder, tmp_path / "r")).answer
    by = {v.variant: v for v in answer.variants}
    assert by["solo"].status == "untested" and by["solo"].vs_best is None
    assert {by[v].vs_best.test for v in ("lora", "bitfit", "full") if by[v].vs_best} == {"paired t over seeds"}
    assert all(v.estimate.reported in ("seeds", "none") for v in answer.variants)


# ---- the answer of the real records -------------------------------------------------------------------------
def test_a_variant_with_evaluation_points_is_one_candidate_at_its_default_point(built, mixed):
    answer = main_sst2(built).answer
    by = {v.variant: v for v in answer.variants}
    assert not [label for label in by if label.startswith("dylora")]  # r=4, its default point, did not learn
    block = next(b for b in built.answer if b.title.startswith("sst2") and b.title.endswith(": accuracy")
                 and any(r[1].text.startswith("dylora") for r in b.rows))
    rows = {r[1].text: [c.text for c in r] for r in block.rows}
    assert [label for label in rows if label.startswith("dylora")] == ["dylora@r=4"]
    assert rows["dylora@r=4"][3] == "did not learn (0 of 2 seeds)"
    dylora = records(mixed, "dylora")
    deployed = {p["point"]: p["params/deployed_adapter"] for p in dylora[0][1]["metrics"]["points"]}
    assert rows["dylora@r=4"][block.headers.index("deployed adapter params")] == fmt_count(deployed[4])
    assert set(answer.pareto) <= set(by) and answer.best in answer.pareto  # the best is never dominated
    statuses = {v.status for v in answer.variants}
    assert statuses <= {"best", "tied", "worse", "untested"} and "best" in statuses


@pytest.fixture(scope="module")
def unchecked(mixed, tmp_path_factory):
    """The mixed records as written before the learned check (no learned part): compared as they are."""
    folder = tmp_path_factory.mktemp("unchecked")
    for path in mixed.rglob("*.json"):
        r = json.loads(path.read_text())
        r.pop("learned", None)
        target = folder / path.relative_to(mixed)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(r))
    for path in mixed.rglob("*.json.gz"):
        target = folder / path.relative_to(mixed)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return report_of(folder, tmp_path_factory.mktemp("unchecked-report"))


def test_across_tasks_mean_rank_and_average(unchecked, mixed):
    built = unchecked
    overall = next(b for b in built.answer if b.title.startswith("Across tasks"))
    lora = next(row for row in overall.rows if row[0].text == "lora")
    sst2 = statistics.fmean(r["metrics"]["primary"]["value"] for _, r in records(mixed, "lora"))
    ner = records(mixed, "lora", "tiny-ner")[0][1]["metrics"]["primary"]["value"]
    assert lora[1].text == "2 of 2"
    assert float(lora[3].text.split()[0]) == pytest.approx((sst2 + ner) / 2, abs=5e-3)  # rounded to its interval
    ranks = [next(v.rank for v in g.answer.variants if v.variant == "lora")
             for t in built.tasks for g in t.groups if g.table.key.weights_sha256 == main_sst2(built).table.key.weights_sha256]
    assert lora[2].text == f"{statistics.fmean(ranks):.2f}"


# ---- intervals in the tables ----------------------------------------------------------------------------------
def test_a_single_seed_gets_the_bootstrap_over_its_examples(built, mixed):
    group = next(g for t in built.tasks for g in t.groups if len(g.table.rows) == 1 and t.task == "sst2")
    path = next((mixed / "other-weights").glob("*.json"))
    record = json.loads(path.read_text())
    part = sidecar(path, record)["splits"]["validation"]
    _, expected, _ = stats.example_bootstrap(stats.classification_metric("accuracy"), [part["predictions"]["final"]],
                                             part["references"], n_resamples=N)
    s = group.table.rows[0].stats["primary"]
    assert s.interval_kind == "examples" and s.interval == pytest.approx((expected.low, expected.high))
    assert s.interval[0] <= record["metrics"]["primary"]["value"] <= s.interval[1]


def test_several_seeds_get_the_wider_of_the_t_and_the_bootstrap_interval(built, mixed):
    row = next(r for r in main_sst2(built).table.rows if r.label == "lora")
    runs = records(mixed, "lora")
    values = [r["metrics"]["primary"]["value"] for _, r in runs]
    t_low, t_high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    t_low, t_high = max(t_low, 0.0), min(t_high, 1.0)  # clipped to accuracy's range (tiny models' seeds vary)
    parts = [sidecar(p, r)["splits"]["validation"] for p, r in runs]
    _, boot, _ = stats.example_bootstrap(stats.classification_metric("accuracy"),
                                         [p["predictions"]["final"] for p in parts], parts[0]["references"],
                                         n_resamples=N)
    wider = (t_low, t_high) if t_high - t_low >= boot.high - boot.low else (boot.low, boot.high)
    s = row.stats["primary"]
    assert s.interval == pytest.approx(wider)
    assert s.interval_kind == ("seeds" if wider[0] == t_low else "examples")
    headers, cells = table_cells(main_sst2(built).table)
    cell = next(r for r in cells if r[0].text == "lora")[headers.index("validation/accuracy ↑")]
    assert cell.text.endswith({"seeds": "ˢ", "examples": "ᵉ"}[s.interval_kind])


def test_entity_f1_and_its_secondary_metrics_get_intervals_from_the_task_file(built, mixed):
    ner = next(t for t in built.tasks if t.task == "tiny-ner").groups[0].table.rows[0]
    record = records(mixed, "lora", "tiny-ner")[0][1]
    for key, name in (("primary", "f1"), ("metric:validation/precision", "precision"),
                      ("metric:validation/recall", "recall"), ("metric:validation/accuracy", "accuracy")):
        s = ner.stats[key]
        assert s.interval_kind == "examples", key
        assert s.interval[0] <= record["metrics"]["final"][f"validation/{name}"] <= s.interval[1], key


# ---- where the answer is written --------------------------------------------------------------------------
def test_every_writer_puts_the_answer_first(mixed, tmp_path):
    report = write_report([mixed], tmp_path / "r")
    md, page = (tmp_path / "r" / "report.md").read_text(), (tmp_path / "r" / "report.html").read_text()
    assert md.index("\n## The answer\n") < md.index("\n## The runs\n") < md.index("\n## sst2\n")
    assert page.index('<section class="answer" id="answer">') < page.index('<dl class="summary">')
    assert render_markdown(report).count("| task | metric | best |") == 1
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r" / "table.csv").read_text())))
    verdicts = {(r["group"], r["label"]): r for r in rows}
    group = main_sst2(report)
    for v in group.answer.variants:
        r = verdicts[(str(group.index), v.variant)]
        assert r["verdict"] == v.status and float(r["rank"]) == v.rank
        check = group.learned[v.variant]
        assert (int(r["learned"]), int(r["learned_known"])) == (len(check.learned), len(check.seeds))
        if check.status == "all":  # else the answer's estimate is over the seeds that learned, the table's over all
            assert float(r["primary_low"]) == pytest.approx(v.estimate.interval.low, abs=1e-12)
        assert r["seeds_agree"] == ("" if v.seeds_agree is None else str(v.seeds_agree))
        assert r["seed_p_holm"] == ("" if v.seed_p_adjusted is None else repr(v.seed_p_adjusted))
    unlearned = {r["label"] for r in rows if r["verdict"] == "did not learn" and r["group"] == str(group.index)}
    assert unlearned == {label for label, c in group.learned.items() if c.status == "none"}
    assert {"bitfit", "head", "dylora@r=4"} <= unlearned and "lora" not in unlearned
    assert {r["learned"] for r in rows if r["verdict"] == "did not learn"} == {"0"}


# ---- charts and table layout --------------------------------------------------------------------------------
def test_labels_are_placed_next_to_their_points_without_overlap():
    anchors = [(100, 100), (104, 102), (98, 97), (300, 50), (301, 50), (102, 140)]
    sizes = [(12, 14)] * len(anchors)
    bounds = (0, 0, 400, 300)
    offsets = labels.place_labels(anchors, sizes, bounds, marker=6)
    boxes = [(x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
             for (x, y), (dx, dy), (w, h) in zip(anchors, offsets, sizes)]
    for i, a in enumerate(boxes):
        assert bounds[0] <= a[0] and a[2] <= bounds[2] and bounds[1] <= a[1] and a[3] <= bounds[3]
        for j, b in enumerate(boxes):
            assert i == j or not labels.boxes_overlap(a, b), (i, j)
        for x, y in anchors:  # no label covers a marker
            assert not labels.boxes_overlap(a, (x - 6, y - 6, x + 6, y + 6))
        assert math.dist(anchors[i], ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)) < 90  # and stays near its own point


def test_tables_are_split_into_parts_that_fit(built):
    table = next(t for t in built.tasks if t.task == "tiny-ner").groups[0].table
    headers, rows = table_cells(table)
    parts = table_parts(table, per_part=2)
    assert [p[0] for p in parts] == ["metrics (1 of 2)", "metrics (2 of 2)", "size (means over seeds)",
                                     "time and memory (means over seeds)"]
    for _, part_headers, part_rows in parts:
        assert part_headers[:4] == headers[:4] == ["variant", "n", "learned", "Pareto"] and len(part_headers) <= 4 + 6
        assert [[c.text for c in r[:4]] for r in part_rows] == [[c.text for c in r[:4]] for r in rows]
    shown = [h for _, part_headers, _ in parts for h in part_headers[4:]]
    assert sorted(shown) == sorted(headers[4:])  # every column once


# ---- the same answer in the terminal (what bench run prints after a matrix of several variants) -------------
def test_the_terminal_answer_gives_each_verdict_of_the_report(known_folder, known):
    report, lora = known
    by = {v.variant: v for v in main_sst2(report).answer.variants}
    text = answer_text(sorted(known_folder.glob("*.json")), n_resamples=N)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "variant"])
    rows = {line.split()[1]: line for line in lines[header + 1:header + 4]}
    assert set(rows) == {"lora", "twin", "dud"}
    for name, line in rows.items():
        assert f" {by[name].status} " in line, line
    for name, line in rows.items():  # lora and its twin share ranks 1 and 2: 1.5 each
        assert line.split()[0] == f"{by[name].rank:g}"
    assert by["lora"].rank == 1.5 and " — " in rows["lora"]  # the best has no p-value of its own
    assert f" {by['dud'].p_adjusted:.3g} " in rows["dud"] and " 1 " in rows["twin"]  # twin: p = 1 exactly
    values = [r["metrics"]["primary"]["value"] for r in lora]
    assert fmt_estimate(statistics.fmean(values), statistics.stdev(values)).split(" ±")[0] in rows["lora"]
    assert "Best: lora; tied with it: twin." in lines[header + 4]
    # aligned: every column of the table starts at the same character in every row
    starts = [lines[header].index(h) for h in ("verdict", "p (Holm)")]
    assert {rows[n].index(by[n].status) for n in rows} == {starts[0]}


def test_the_terminal_answer_needs_an_ok_run(mixed, tmp_path):
    failed = [p for p in sorted(mixed.glob("*.json")) if json.loads(p.read_text())["status"] != "ok"]
    assert failed and answer_text(failed) is None
    assert answer_text([tmp_path / "missing.json"]) is None
