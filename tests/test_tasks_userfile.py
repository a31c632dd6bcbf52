"""User task files (TOML and JSON): the examples under tests/data/tasks, other formats, and every field error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapterbench.errors import UserError
from adapterbench.tasks import compute_metrics, get_task, load_examples, load_task_file
from adapterbench.tasks.userfile import TOP_LEVEL_KEYS

TASK_FILES = Path(__file__).parent / "data" / "tasks"

# The sentiment example as a dict, to write variants of it as TOML or JSON.
BASE = {
    "name": "mini", "version": "2", "kind": "classification", "text_fields": ["text"], "label_field": "label",
    "labels": ["negative", "positive"], "metrics": ["f1", "accuracy"], "primary_metric": "f1",
    "data": {"format": "csv", "columns": {"text": "review", "label": "sentiment"},
             "files": {"train": "sentiment_train.csv", "validation": "sentiment_dev.csv"}},
}


def _toml_value(value):
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers and booleans are spelt the same in TOML here


def write_task(folder: Path, table: dict, suffix: str = ".json", name: str = "task") -> Path:
    """Write ``table`` as a task file beside copies of the example data files."""
    for data_file in TASK_FILES.glob("*_*.*"):
        (folder / data_file.name).write_bytes(data_file.read_bytes())
    path = folder / f"{name}{suffix}"
    if suffix == ".toml":
        path.write_text("\n".join(f"{k} = {_toml_value(v)}" for k, v in table.items()) + "\n")
    else:
        path.write_text(json.dumps(table))
    return path


def test_example_toml_task(tmp_path):
    task = get_task(str(TASK_FILES / "sentiment.toml"))
    assert (task.name, task.version, task.kind, task.primary_metric) == ("tiny-sentiment", "1", "classification", "f1")
    assert task.labels == ("negative", "positive") and task.eval_splits == ("validation",)
    assert task.local.files["train"] == str((TASK_FILES / "sentiment_train.csv").resolve())
    assert str(TASK_FILES / "sentiment.toml") in task.origin
    train = load_examples(task, "train")
    assert len(train) == 6
    # RFC 4180 quoting: a comma and doubled quotes inside quoted fields.
    assert train[1] == {"text": "Broke after two days, would not buy again.", "label": "negative"}
    assert train[4]["text"] == 'Does exactly what it says, "no fuss".'
    # A data folder given for the built-in tasks does not move a task file's own files.
    assert len(load_examples(task, "validation", tmp_path)) == 3


def test_example_json_ner_task_end_to_end():
    task = get_task(str(TASK_FILES / "ner.json"))
    assert task.kind == "token_classification" and task.text_fields == ("words",)
    dev = load_examples(task, "validation")
    assert dev[1] == {"words": ["Paris", "is", "far", "from", "Lima"], "tags": ["B-CITY", "O", "O", "O", "B-CITY"]}
    refs = [[task.labels.index(t) for t in ex["tags"]] for ex in dev]
    preds = [list(r) for r in refs]
    preds[1][4] = 0  # miss "Lima": 3 of 4 reference entities found, no false ones
    scores = compute_metrics(task, preds, refs)
    assert scores["precision"] == pytest.approx(1.0)
    assert scores["recall"] == pytest.approx(3 / 4)


def test_toml_and_json_give_the_same_task(tmp_path):
    from_json = load_task_file(write_task(tmp_path, BASE, ".json"))
    from_toml = load_task_file(write_task(tmp_path, BASE, ".toml"))
    assert from_json.origin != from_toml.origin
    assert from_json.derive(origin="") == from_toml.derive(origin="")
    assert from_json.version == "2" and from_json.local.columns == {"text": "review", "label": "sentiment"}


def test_headerless_tsv_regression_task(tmp_path):
    (tmp_path / "scores.tsv").write_text("x\tA dog runs.\tA dog is running.\t4.5\ny\tA cat.\tThe sea.\t0.25\n")
    table = {"name": "sim", "version": 1, "kind": "regression", "text_fields": ["s1", "s2"], "label_field": "score",
             "metrics": ["spearmanr", "pearson"], "primary_metric": "spearmanr", "eval_splits": ["train"],
             "data": {"format": "tsv", "header": False, "columns": {"s1": 1, "s2": 2, "score": 3},
                      "files": {"train": "scores.tsv"}}}
    task = load_task_file(write_task(tmp_path, table))
    assert task.labels is None and task.num_labels == 1 and task.version == "1"
    assert load_examples(task, "train") == [{"s1": "A dog runs.", "s2": "A dog is running.", "score": 4.5},
                                            {"s1": "A cat.", "s2": "The sea.", "score": 0.25}]


def test_conll_format_task(tmp_path):
    (tmp_path / "ner.txt").write_text("Ada B-PER\nLovelace I-PER\n\nin O\nLondon B-LOC\n")
    table = {"name": "ner2", "version": "1", "kind": "token_classification", "text_fields": ["tokens"],
             "label_field": "tags", "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "metrics": ["f1"],
             "primary_metric": "f1", "eval_splits": ["train"],
             "data": {"format": "conll", "conll_column": 1, "files": {"train": "ner.txt"}}}
    task = load_task_file(write_task(tmp_path, table))
    assert load_examples(task, "train") == [{"tokens": ["Ada", "Lovelace"], "tags": ["B-PER", "I-PER"]},
                                            {"tokens": ["in", "London"], "tags": ["O", "B-LOC"]}]


def _without(key: str) -> dict:
    return {k: v for k, v in BASE.items() if k != key}


BAD_TABLES = [
    # (what is wrong, the table, the text the message must hold)
    ("no name", _without("name"), "field 'name' is missing"),
    ("no version", _without("version"), "field 'version' is missing"),
    ("no kind", _without("kind"), "field 'kind' is missing"),
    ("no text fields", _without("text_fields"), "field 'text_fields' is missing"),
    ("no label field", _without("label_field"), "field 'label_field' is missing"),
    ("no labels", _without("labels"), "field 'labels' is missing"),
    ("no metrics", _without("metrics"), "field 'metrics' is missing"),
    ("no primary metric", _without("primary_metric"), "field 'primary_metric' is missing"),
    ("no data", _without("data"), "field 'data' is missing"),
    ("no files", {**BASE, "data": {"format": "csv"}}, "field 'data.files' is missing"),
    ("no format", {**BASE, "data": {"files": BASE["data"]["files"]}}, "field 'data.format' is missing"),
    ("typo", {**BASE, "lables": ["a", "b"]}, "field 'lables' is not a known field; allowed: name, version"),
    ("bad name", {**BASE, "name": "my task"}, "field 'name' 'my task' must start with"),
    ("bad kind", {**BASE, "kind": "ranking"}, "field 'kind' is 'ranking'; allowed: classification, regression"),
    ("labels not a list", {**BASE, "labels": "negative,positive"}, "field 'labels' must be a list of strings"),
    ("one label", {**BASE, "labels": ["only"]}, "field 'labels' must be a list of at least 2"),
    ("duplicate labels", {**BASE, "labels": ["a", "a"]}, "field 'labels' has duplicates"),
    ("three text fields", {**BASE, "text_fields": ["a", "b", "c"]}, "field 'text_fields' has 3 fields"),
    ("label is text", {**BASE, "label_field": "text"}, "field 'label_field' 'text' is also a text field"),
    ("metric for kind", {**BASE, "metrics": ["f1", "pearson"]}, "field 'metrics' has 'pearson', not a metric"),
    ("primary not listed", {**BASE, "primary_metric": "matthews_correlation"},
     "field 'primary_metric' is 'matthews_correlation', which is not in metrics (f1, accuracy)"),
    ("version bool", {**BASE, "version": True}, "field 'version' must be a string or an integer, got True"),
    ("header not bool", {**BASE, "data": {**BASE["data"], "header": "yes"}}, "field 'data.header' must be true"),
    ("split without file", {**BASE, "eval_splits": ["validation", "test"]},
     "field 'data.files' has no file for split 'test'"),
    ("bad format", {**BASE, "data": {**BASE["data"], "format": "xlsx"}},
     "field 'data.format' is 'xlsx'; allowed: tsv, csv, jsonl, conll"),
    ("csv tokens", {**BASE, "kind": "token_classification", "metrics": ["f1"]},
     "field 'data.format' is 'csv', but token classification needs jsonl or conll"),
    ("regression labels", {**BASE, "kind": "regression", "metrics": ["pearson"], "primary_metric": "pearson"},
     "field 'labels' must be left out for a regression task"),
    ("unknown data key", {**BASE, "data": {**BASE["data"], "sep": ";"}}, "field 'data.sep' is not a known field"),
    ("hub without path", {**_without("data"), "hub": {"name": "x"}}, "field 'hub.path' is missing"),
]


@pytest.mark.parametrize("suffix", [".json", ".toml"])
@pytest.mark.parametrize("what, table, message", BAD_TABLES, ids=[b[0] for b in BAD_TABLES])
def test_bad_task_file(tmp_path, what, table, message, suffix):
    path = write_task(tmp_path, table, suffix)
    with pytest.raises(UserError) as info:
        load_task_file(path)
    text = str(info.value)
    assert text.startswith(f"task file {path.resolve()}: "), text
    assert message in text
    assert "\n" not in text


def test_file_level_errors(tmp_path):
    with pytest.raises(UserError, match="task file '.*missing.toml' does not exist"):
        get_task(str(tmp_path / "missing.toml"))
    (tmp_path / "t.yaml").write_text("name: x\n")
    with pytest.raises(UserError, match=r"unknown file type '\.yaml'; use \.toml or \.json"):
        load_task_file(tmp_path / "t.yaml")
    (tmp_path / "t.toml").write_text('name = "x\n')
    with pytest.raises(UserError, match=r"t\.toml: not valid TOML: "):
        load_task_file(tmp_path / "t.toml")
    (tmp_path / "t.json").write_text('["not", "a", "table"]')
    with pytest.raises(UserError, match="expected a table of fields at the top, got list"):
        load_task_file(tmp_path / "t.json")


def test_missing_data_file_is_reported_when_loading(tmp_path):
    table = {**BASE, "data": {**BASE["data"], "files": {"train": "sentiment_train.csv", "validation": "nope.csv"}}}
    task = load_task_file(write_task(tmp_path, table))
    with pytest.raises(UserError, match=f"split 'validation': expected the file '{tmp_path.resolve()}/nope.csv'"):
        load_examples(task, "validation")


def test_bad_jsonl_lines(tmp_path):
    table = json.loads((TASK_FILES / "ner.json").read_text())
    path = write_task(tmp_path, table)
    task = load_task_file(path)
    dev = tmp_path / "ner_dev.jsonl"
    dev.write_text('{"words": ["a"], "tags": ["O"]}\n{"words": ["a", "b"], "tags": ["O"]}\n')
    with pytest.raises(UserError, match=f"{dev}:2: 2 words but 1 tags"):
        load_examples(task, "validation")
    dev.write_text('{"words": ["a"], "tags": ["O"]\n')
    with pytest.raises(UserError, match=f"{dev}:1: not valid JSON"):
        load_examples(task, "validation")
    dev.write_text('{"words": ["a"], "labels": ["O"]}\n')
    with pytest.raises(UserError, match=f"{dev}:1: no key 'tags'"):
        load_examples(task, "validation")
    dev.write_text('{"words": "a b", "tags": ["O", "O"]}\n')
    with pytest.raises(UserError, match=f"{dev}:1: field 'words' must be a list of words"):
        load_examples(task, "validation")


def test_docstring_documents_every_field():
    import adapterbench.tasks.userfile as userfile

    for key in TOP_LEVEL_KEYS:
        assert key in userfile.__doc__, key
