"""The task registry: every registered task's spec is consistent; names, files and "did you mean"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adapterbench.errors import UserError
from adapterbench.tasks import METRICS_BY_KIND, TASKS, TaskSpec, get_task
from adapterbench.tasks.data import task_splits

GLUE = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
PRIMARY = {"cola": "matthews_correlation", "sst2": "accuracy", "mrpc": "f1", "stsb": "pearson", "qqp": "f1",
           "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy", "conll2003": "f1"}


def test_builtin_tasks_are_registered():
    assert set(TASKS.names()) >= {*GLUE, "conll2003"}
    for name in (*GLUE, "conll2003"):
        assert TASKS.entry(name).origin == "built-in"
        assert TASKS.get(name).primary_metric == PRIMARY[name]


@pytest.mark.parametrize("name", TASKS.names())
def test_spec_is_consistent(name):
    task = TASKS.get(name)
    assert isinstance(task, TaskSpec) and task.name == name
    assert isinstance(task.version, str) and task.version
    assert task.paper, "every task names its paper"
    assert task.primary_metric in task.metrics
    assert set(task.metrics) <= set(METRICS_BY_KIND[task.kind])
    assert len(set(task.metrics)) == len(task.metrics)
    assert task.greater_is_better
    assert 1 <= len(task.text_fields) <= (1 if task.kind == "token_classification" else 2)
    assert task.label_field not in task.text_fields
    if task.kind == "regression":
        assert task.labels is None and task.num_labels == 1
    else:
        assert task.labels and len(task.labels) >= 2 and len(set(task.labels)) == len(task.labels)
        assert task.num_labels == len(task.labels)
    assert task.eval_splits and task.primary_split == task.eval_splits[0]
    assert task.train_split not in task.eval_splits
    assert task.local is not None, "built-in tasks read the classic local layout"
    for split in task_splits(task):
        assert split in task.local.files, f"split {split!r} has no local file"
        assert not Path(task.local.files[split]).is_absolute()
    if task.local.format != "conll":
        assert set(task.local.columns) == {*task.text_fields, task.label_field}
    assert task.hub is not None
    assert all(split in task.hub.splits for split in task_splits(task))
    assert task.hub.label_names_from_hub == (task.kind != "regression")


def test_glue_layout_and_hub_names():
    assert TASKS.get("sst2").local.files == {"train": "glue/SST-2/train.tsv", "validation": "glue/SST-2/dev.tsv"}
    mnli = TASKS.get("mnli")
    assert mnli.eval_splits == ("validation_matched", "validation_mismatched")
    assert mnli.local.files["validation_mismatched"] == "glue/MNLI/dev_mismatched.tsv"
    assert mnli.hub.splits["validation_matched"] == "validation_matched"
    for name in GLUE:
        assert (TASKS.get(name).hub.path, TASKS.get(name).hub.name) == ("nyu-mll/glue", name)
    conll = TASKS.get("conll2003")
    assert conll.eval_splits == ("validation", "test") and conll.hub.path == "eriktks/conll2003"
    assert conll.local.files == {"train": "conll2003/train.txt", "validation": "conll2003/valid.txt",
                                 "test": "conll2003/test.txt"}


def test_get_task_by_name_and_by_file():
    assert get_task("rte") is TASKS.get("rte")
    example = Path(__file__).parent / "data" / "tasks" / "sentiment.toml"
    assert get_task(str(example)).name == "tiny-sentiment"
    assert get_task(example).name == "tiny-sentiment"


def test_unknown_task_gets_did_you_mean():
    with pytest.raises(UserError, match=r"unknown task 'sst-2'\. Did you mean 'sst2'\?"):
        get_task("sst-2")
    with pytest.raises(UserError, match="Known tasks: cola, conll2003"):
        get_task("squad")
    with pytest.raises(UserError, match=r"task file '.*nowhere/task\.json' does not exist"):
        get_task("nowhere/task.json")


def test_listing_tasks_imports_no_torch_and_no_datasets():
    code = ("import sys; from adapterbench.tasks import TASKS; [TASKS.get(n) for n in TASKS.names()]; "
            "print(sorted(m for m in ('torch', 'datasets', 'transformers', 'seqeval') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
