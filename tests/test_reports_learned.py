"""Did the run learn, in the reports: on records written by the real harness (``real_records``: ``unlearned/``
holds lora runs that learn beside lora runs at lr 1e-12 that cannot; in ``mixed/`` bitfit and head learn on no
seed and full on one of two). A configuration none of whose seeds learned is shown as such and compared with
nothing; one where only some seeds learned is compared over those, and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats as sps

from adapterbench import results
from adapterbench.reports.build import write_report
from adapterbench.reports.learned import learned_frame
from adapterbench.reports.terminal import answer_text

N = 400


def learned_of(folder: Path) -> dict[tuple[str, float, int], bool]:
    """(variant, lr, seed) -> the record's own learned flag."""
    out = {}
    for path in folder.glob("*.json"):
        r = json.loads(path.read_text())
        if r["status"] == "ok" and r["task"]["name"] == "sst2":
            out[r["variant"]["name"], r["training"]["lr"], r["seed"]] = r["learned"]["learned"]
    return out


@pytest.fixture(scope="module")
def unlearned(real_records, tmp_path_factory):
    folder = real_records["unlearned"]
    report = write_report([folder], tmp_path_factory.mktemp("unlearned") / "r")
    return folder, report


def test_the_records_hold_what_the_tests_assume(real_records):
    flags = learned_of(real_records["unlearned"])
    assert {k: v for k, v in flags.items() if k[1] == 1e-12} == {("lora", 1e-12, s): False for s in (0, 1, 2)}
    assert [v for k, v in flags.items() if k[1] == 0.1] == [True] * 3


def test_a_configuration_that_did_not_learn_is_not_worse_and_is_compared_with_nothing(unlearned):
    folder, report = unlearned
    head = report.answer[0]
    row = dict(zip(head.headers, (c.text for c in head.rows[0])))
    assert row["did not learn"] == "lora (lr=1e-12) (0 of 3)"
    assert row["worse"] == "—" and row["tied with the best"] == "—" and row["best"] == "lora (lr=0.1)"
    section = report.tasks[0].groups[0]
    assert [v.variant for v in section.answer.variants] == ["lora (lr=0.1)"]  # the only candidate: no Holm family
    block = next(b for b in report.answer if b.title == "sst2: accuracy")
    cells = {r[1].text: dict(zip(block.headers, (c.text for c in r))) for r in block.rows}
    assert cells["lora (lr=1e-12)"]["verdict"] == "did not learn (0 of 3 seeds)"
    assert cells["lora (lr=1e-12)"]["p (Holm)"] == "—" and cells["lora (lr=1e-12)"]["rank"] == "—"
    ci = sps.binomtest(3, 3).proportion_ci(method="exact")
    assert cells["lora (lr=0.1)"]["learned [95%]"] == f"3 of 3 [{ci.low:.2f}, {ci.high:.2f}]"
    assert "did not learn (left out of every comparison): lora (lr=1e-12) (0 of 3)" in block.paragraphs[0]


def test_every_writer_and_the_terminal_say_it(unlearned, tmp_path):
    folder, _ = unlearned
    report = write_report([folder], tmp_path / "r")
    md, html = (tmp_path / "r" / "report.md").read_text(), (tmp_path / "r" / "report.html").read_text()
    for text in (md, html):
        assert "did not learn (0 of 3 seeds)" in text
    rows = {r.split(",")[7]: r for r in (tmp_path / "r" / "table.csv").read_text().splitlines()[1:]}
    assert ",0,3," in rows["lora (lr=1e-12)"] and ",did not learn," in rows["lora (lr=1e-12)"]
    text = answer_text(sorted(folder.glob("*.json")), n_resamples=N)
    line = next(x for x in text.splitlines() if "lora (lr=1e-12)" in x and "did not learn" in x)
    assert "did not learn (0 of 3 seeds)" in line and " worse " not in line
    assert report.tasks[0].groups[0].learned["lora (lr=1e-12)"].status == "none"


def test_where_some_seeds_learned_the_verdict_rests_on_them_and_says_which(real_records, tmp_path):
    mixed = real_records["mixed"]
    flags = learned_of(mixed)
    full = {seed: flags[k] for k in flags if k[0] == "full" for seed in [k[2]]}
    assert sorted(full.values()) == [False, True]  # one seed of two learned
    kept = next(s for s, ok in full.items() if ok)
    value = next(json.loads(p.read_text())["metrics"]["primary"]["value"] for p in mixed.glob("sst2__full__*.json")
                 if json.loads(p.read_text())["seed"] == kept)
    report = write_report([mixed], tmp_path / "r")
    group = next(g for t in report.tasks if t.task == "sst2" for g in t.groups if len(g.table.rows) > 1)
    full_answer = next(v for v in group.answer.variants if v.variant == "full")
    assert full_answer.estimate.value == pytest.approx(value)  # the seed that learned, not the mean of both
    block = next(b for b in report.answer if b.title.startswith("sst2") and b.title.endswith(": accuracy")
                 and any(r[1].text == "full" for r in b.rows))
    failed = next(s for s, ok in full.items() if not ok)
    assert f"full: rests on seed {kept}; seed {failed} did not learn" in block.paragraphs[-1]
    head = dict(zip(report.answer[0].headers, (c.text for c in report.answer[0].rows[0])))
    assert "full‡" in " ".join(head.values())  # marked where it is named, ‡ explained in the legend
    assert any("‡ only some seeds learned" in p for p in report.answer[0].legend)
    assert set(head["did not learn"].split(", ")) >= {"bitfit (0 of 3)", "head (0 of 2)"}
    assert "bitfit" not in head["worse"] and "bitfit" not in head["tied with the best"]


def test_records_without_the_check_are_unknown_and_compared_as_before(real_records, tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    src = real_records["unlearned"]
    for path in src.glob("*.json"):
        r = json.loads(path.read_text())
        r.pop("learned")
        (folder / path.name).write_text(json.dumps(r))
    (folder / "predictions").symlink_to(src / "predictions")
    report = write_report([folder], tmp_path / "r")
    section = report.tasks[0].groups[0]
    assert {c.status for c in section.learned.values()} == {"unknown"}
    assert sorted(v.variant for v in section.answer.variants) == ["lora (lr=0.1)", "lora (lr=1e-12)"]
    block = next(b for b in report.answer if b.title == "sst2: accuracy")
    assert {r[4].text for r in block.rows} == {"learned: unknown"}


def test_the_failure_rate_frame_has_the_exact_interval(real_records):
    points = results.load_points(real_records["mixed"])
    frame = learned_frame(points[points["task"] == "sst2"])
    full = frame[(frame["variant"] == "full")].iloc[0]
    ci = sps.binomtest(1, 2).proportion_ci(method="exact")
    assert (full["learned"], full["known"], full["rate"]) == (1, 2, 0.5)
    assert (full["rate_low"], full["rate_high"]) == pytest.approx((ci.low, ci.high))
    dylora = frame[frame["variant"] == "dylora"]
    assert len(dylora) == 4 and set(dylora["point_key"]) == {"1", "2", "3", "4"}  # one line per point
