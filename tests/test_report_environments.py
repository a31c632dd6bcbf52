"""Cost columns never mix environment fingerprints silently: a group table whose runs come from more than one
environment (other threads, device or versions) labels every row's environment beside its time and memory."""

from __future__ import annotations

import json

from adapterbench.reports.build import write_report
from adapterbench.reports.collect import Collection, load_records
from adapterbench.reports.model import group_inputs, table_parts
from tests.test_reports import copy_records


def sst2_table(folder):
    inputs, _ = group_inputs(Collection.of(*load_records([folder])), n_resamples=200)
    [group] = [g for g in inputs if g.key.task == "sst2" and g.table.rows and "lora" in
               {r.config.variant for r in g.table.rows} and len(g.table.rows) > 2]
    return group.table


def as_ray_worker(record):
    """The lora seed 2 and every bitfit record as if run under Ray with 1 thread: another fingerprint."""
    if record["variant"]["name"] == "bitfit" or (record["variant"]["name"] == "lora" and record["seed"] == 2):
        fingerprint = record["environment"]["fingerprint"]
        record["environment"]["torch_threads"] = fingerprint["torch_threads"] = 97
        fingerprint["id"] = "ray-1-thread"


def test_one_environment_adds_nothing(real_records):
    table = sst2_table(real_records["mixed"])
    captions = [caption for caption, _, _ in table_parts(table)]
    assert "time and memory (means over seeds)" in captions
    assert all("environment" not in headers for _, headers, _ in table_parts(table))


def test_rows_from_other_environments_are_labelled_in_the_cost_part(real_records, tmp_path):
    folder = copy_records(real_records["mixed"], tmp_path / "mixed", change=as_ray_worker)
    table = sst2_table(folder)
    home = next(iter({e for r in table.rows if r.config.variant == "full" for e in r.environments}))
    labels = {"ray-1-thread": "E2" if "ray-1-thread" > home else "E1"}
    labels[home] = "E1" if labels["ray-1-thread"] == "E2" else "E2"
    caption, headers, rows = table_parts(table)[-1]
    assert caption.startswith("time and memory (means over seeds); from 2 environments: compare time and memory "
                              "only between rows of one environment")
    assert f"{labels['ray-1-thread']} = " in caption and "97 threads" in caption
    assert headers[4] == "environment"  # after variant, n, learned, Pareto
    by_label = {cells[0].text: cells[4].text for cells in rows}
    assert by_label["bitfit"] == labels["ray-1-thread"] and by_label["full"] == labels[home]
    assert by_label["lora"] == "E1+E2"  # seeds 0 and 1 at home, seed 2 under "Ray": its means mix both
    # The metric parts are not environment-dependent and stay as they were.
    assert all("environment" not in h for _, h, _ in table_parts(table)[:-1])


def test_the_written_report_carries_the_labels(real_records, tmp_path):
    folder = copy_records(real_records["mixed"], tmp_path / "mixed", change=as_ray_worker)
    write_report([folder], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    assert "from 2 environments: compare time and memory only between rows of one environment" in markdown
    assert "| variant | n | learned | Pareto | environment |" in markdown and "E1+E2" in markdown
    assert "E1+E2" in html and json.dumps("ray-1-thread") not in markdown  # labels, not raw ids, in the table
