"""The task registry: GLUE, CoNLL-2003 and user task files.

``TASKS`` maps a name to a :class:`~adapterbench.tasks.spec.TaskSpec`. Built-ins are lazy ``"module:attr"``
targets, so listing them imports nothing heavy; third parties add tasks through the entry-point group
``adapterbench.tasks`` (each pointing at a ``TaskSpec``). ``get_task`` also accepts the path of a TOML or JSON
task file (format: :mod:`adapterbench.tasks.userfile`).

The other modules: :mod:`~adapterbench.tasks.data` reads examples, :mod:`~adapterbench.tasks.encode` tokenises
them (cached), :mod:`~adapterbench.tasks.metrics` scores predictions.
"""

from __future__ import annotations

from pathlib import Path

from adapterbench.registry import Registry
from adapterbench.tasks.data import ENV_DATA_DIR, examples_count, load_examples
from adapterbench.tasks.encode import ENV_CACHE, encode_split
from adapterbench.tasks.metrics import METRIC_DIRECTION, METRICS_BY_KIND, compute_metrics
from adapterbench.tasks.spec import HubSource, LocalSource, TaskSpec
from adapterbench.tasks.userfile import load_task_file

TASKS: Registry = Registry("task", entry_point_group="adapterbench.tasks")

for _name, _target in {
    "cola": "adapterbench.tasks.glue:COLA",
    "sst2": "adapterbench.tasks.glue:SST2",
    "mrpc": "adapterbench.tasks.glue:MRPC",
    "stsb": "adapterbench.tasks.glue:STSB",
    "qqp": "adapterbench.tasks.glue:QQP",
    "mnli": "adapterbench.tasks.glue:MNLI",
    "qnli": "adapterbench.tasks.glue:QNLI",
    "rte": "adapterbench.tasks.glue:RTE",
    "wnli": "adapterbench.tasks.glue:WNLI",
    "conll2003": "adapterbench.tasks.conll:CONLL2003",
}.items():
    TASKS.register(_name, _target)

TASK_FILE_SUFFIXES = (".toml", ".json")


def get_task(name_or_path: str | Path) -> TaskSpec:
    """A registered task by name, or a user task read from a ``.toml``/``.json`` task file."""
    text = str(name_or_path)
    if text in TASKS:
        return TASKS.get(text)
    path = Path(text).expanduser()
    if path.suffix.lower() in TASK_FILE_SUFFIXES or "/" in text or path.is_file():
        return load_task_file(path)
    return TASKS.get(text)  # raises the registry's "unknown task ... did you mean"


__all__ = [
    "ENV_CACHE", "ENV_DATA_DIR", "METRICS_BY_KIND", "METRIC_DIRECTION", "TASKS", "HubSource", "LocalSource",
    "TaskSpec", "compute_metrics", "encode_split", "examples_count", "get_task", "load_examples",
    "load_task_file",
]
