"""Reading a task's examples: local files under a data folder, or the Hugging Face hub.

``load_examples(task, split, data_dir)`` returns one dict per example: the text fields (``str``; for token
classification the words, ``list[str]``) and the label under ``task.label_field`` (the label string as written in
the file for classification, a ``float`` for regression, a ``list[str]`` of tags for token classification).

Where the examples come from:

* a task whose local paths are absolute (user task files resolve theirs against the task file) reads them;
* otherwise, with a data folder (the ``data_dir`` argument, else the environment variable
  ``ADAPTERBENCH_DATA_DIR``), the file ``<data folder>/<task.local.files[split]>``;
* otherwise the hub, through ``datasets.load_dataset(hub.path, hub.name, split=...)``.

Every problem with the data is a one-line :class:`UserError` naming the file (and line) and the bad value: a
missing folder or file, a malformed line (a CSV row is named at the line where it starts, which is where an unclosed
quote opens), a label outside the task's label set, a token-classification example without words, an empty split,
bytes that are not valid in the declared encoding. A correctly quoted CSV field of any length is read. Messages never quote a line of the file (a task file may
point at any file on the machine); a bad label is shown cut short (:func:`~adapterbench.textfiles.short`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.tasks.conll import read_conll
from adapterbench.tasks.spec import TaskSpec
from adapterbench.textfiles import open_text, short

ENV_DATA_DIR = "ADAPTERBENCH_DATA_DIR"


def task_splits(task: TaskSpec) -> tuple[str, ...]:
    """Every split the task uses: train first, then the evaluation splits."""
    return (task.train_split, *[s for s in task.eval_splits if s != task.train_split])


def resolve_data_dir(data_dir: Path | str | None) -> Path | None:
    """The data folder to read from (argument, else ``$ADAPTERBENCH_DATA_DIR``), or ``None`` for the hub."""
    if data_dir is None or data_dir == "":
        data_dir = os.environ.get(ENV_DATA_DIR) or None
    if data_dir is None:
        return None
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"data folder {str(folder)!r} does not exist or is not a folder; give the folder that "
                        f"holds glue/ and conll2003/ (--data-dir or {ENV_DATA_DIR})")
    return folder


def local_path(task: TaskSpec, split: str, data_dir: Path | str | None) -> Path | None:
    """The local file that holds ``split``, or ``None`` when the split comes from the hub.

    Raises when the split is unknown, when the file is declared but missing (naming the expected path), or when
    there is neither a local file nor a hub source.
    """
    if split not in task_splits(task):
        raise UserError(f"task {task.name!r} has no split {split!r}; its splits are: {', '.join(task_splits(task))}")
    relative = task.local.files.get(split) if task.local is not None else None
    if relative is not None and Path(relative).is_absolute():
        path: Path | None = Path(relative)
    else:
        folder = resolve_data_dir(data_dir)
        if folder is None:
            if task.hub is None:
                raise UserError(f"task {task.name!r} has no hub source, so it needs a data folder: pass --data-dir "
                                f"or set {ENV_DATA_DIR}")
            return None
        if relative is None:
            if task.hub is None:
                raise UserError(f"task {task.name!r} declares no local file for split {split!r}")
            return None  # a local folder was given, but this task only lives on the hub
        path = folder / relative
    if not path.is_file():
        problem = "is not a regular file" if path.exists() else "does not exist"
        raise UserError(f"task {task.name!r} split {split!r}: expected the file {str(path)!r}, which {problem}")
    return path


def source_identity(task: TaskSpec, split: str, data_dir: Path | str | None) -> dict[str, Any]:
    """What identifies the examples of a split for caching: the file (path, size, mtime) or the hub dataset.

    A hub split is identified by dataset, config and split name only (knowing its revision would mean loading
    it), so a dataset re-published under the same name keeps its cached encoding until the task's version or the
    cache folder changes.
    """
    path = local_path(task, split, data_dir)
    if path is not None:
        stat = path.stat()
        return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    hub = task.hub
    assert hub is not None  # local_path raised otherwise
    return {"hub": hub.path, "name": hub.name, "split": hub.splits.get(split, split)}


def load_examples(task: TaskSpec, split: str, data_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """All examples of one split, in file order (see the module docstring for the shape of each)."""
    path = local_path(task, split, data_dir)
    if path is not None:
        examples = read_local(task, path)
        where = str(path)
    else:
        examples, where = read_hub(task, split)
    if not examples:
        raise UserError(f"task {task.name!r} split {split!r} is empty: {where} holds no examples")
    return examples


def examples_count(task: TaskSpec, split: str, data_dir: Path | str | None = None) -> int:
    return len(load_examples(task, split, data_dir))


# ---- labels ---------------------------------------------------------------------------------------------------


def parse_label(task: TaskSpec, raw: Any, where: str) -> Any:
    """A label from the data, checked against the task: a label string, a float, or a list of tag strings."""
    if task.kind == "regression":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise UserError(f"{where}: label {short(raw)} is not a number (task {task.name!r} is a regression)"
                            ) from None
        if not math.isfinite(value):
            raise UserError(f"{where}: label {short(raw)} is not a finite number")
        return value
    allowed = task.labels or ()
    if task.kind == "token_classification":
        if not isinstance(raw, list):
            raise UserError(f"{where}: the tags must be a list of strings, got {type(raw).__name__}")
        tags = [str(t) for t in raw]
        for tag in tags:
            if tag not in allowed:
                raise UserError(f"{where}: tag {short(tag)} is not one of the task's labels: {', '.join(allowed)}")
        return tags
    # JSON may hold 1 or true where the label set says "1"; TSV labels may carry stray spaces.
    label = (str(raw).lower() if isinstance(raw, bool) else str(raw)).strip() if raw is not None else ""
    if label not in allowed:
        raise UserError(f"{where}: label {short(label)} is not one of the task's labels: {', '.join(allowed)}")
    return label


def _text(task: TaskSpec, value: Any, field: str, where: str) -> Any:
    if task.kind == "token_classification":
        if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
            raise UserError(f"{where}: field {field!r} must be a list of words (strings), got "
                            f"{type(value).__name__}")
        return value
    if not isinstance(value, str):
        raise UserError(f"{where}: field {field!r} must be text, got {type(value).__name__}")
    return value


# ---- local files ----------------------------------------------------------------------------------------------


def read_local(task: TaskSpec, path: Path) -> list[dict[str, Any]]:
    """Examples from one local file in the task's format."""
    local = task.local
    assert local is not None
    if local.format in ("tsv", "csv"):
        return _read_delimited(task, path)
    if local.format == "jsonl":
        return _read_jsonl(task, path)
    if local.format == "conll":
        if task.kind != "token_classification":
            raise UserError(f"task {task.name!r}: format 'conll' is only for token classification")
        text_field, = task.text_fields
        return [{text_field: words, task.label_field: parse_label(task, tags, f"{path}:{line}")}
                for line, words, tags in read_conll(path, local.conll_column, local.encoding)]
    raise UserError(f"task {task.name!r}: unknown local format {local.format!r}; allowed: tsv, csv, jsonl, conll")


def _fields(task: TaskSpec) -> tuple[str, ...]:
    return (*task.text_fields, task.label_field)


def _read_delimited(task: TaskSpec, path: Path) -> list[dict[str, Any]]:
    """TSV (no quote character, as GLUE's own processors read it: GLUE text holds bare ``"``) or CSV (RFC 4180)."""
    local = task.local
    assert local is not None
    if task.kind == "token_classification":
        raise UserError(f"task {task.name!r}: token classification needs the jsonl or conll format, "
                        f"not {local.format}")
    tsv = local.format == "tsv"
    examples: list[dict[str, Any]] = []
    limit = csv.field_size_limit(FIELD_LIMIT)  # restored below: the limit is the csv module's, process-wide
    try:
        with open_text(path, local.encoding, f"task {task.name!r}", newline="") as f:
            _read_rows(task, path, f, tsv, examples)
    finally:
        csv.field_size_limit(limit)
    return examples


# A correctly quoted field may be long (a document); csv's default limit of 131,072 characters would refuse it.
# 2**31 - 1 fits a C long on every platform; the file is read whole into memory anyway.
FIELD_LIMIT = 2**31 - 1


def _read_rows(task: TaskSpec, path: Path, f: Any, tsv: bool, examples: list[dict[str, Any]]) -> None:
    """The rows of an open delimited file into ``examples``; a problem is named at the line its row starts."""
    local = task.local
    assert local is not None
    reader = (csv.reader(f, delimiter="\t", quotechar=None, quoting=csv.QUOTE_NONE) if tsv
              else csv.reader(f))
    kind_of_columns = "tab-separated" if tsv else "comma-separated"
    expected: int | None = None
    index: dict[str, int] = {}
    while True:
        row_start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _csv_problem(path, row_start, exc) from None
        if not row:
            continue  # a blank line
        if expected is None:  # the header, or the first data row of a headerless file
            expected = len(row)
            index = _column_index(task, path, row if local.header else None, expected)
            if local.header:
                continue
        where = f"{path}:{row_start}"  # where the row starts: an unclosed quote opens on this line
        if len(row) != expected:
            runs_on = (f"; the row runs on to line {reader.line_num}: look for an unclosed quote (\") on "
                       f"line {row_start}" if reader.line_num > row_start else "")
            raise UserError(f"{where}: expected {expected} {kind_of_columns} columns, got {len(row)}{runs_on}")
        example = {field: row[index[field]] for field in task.text_fields}
        example[task.label_field] = parse_label(task, row[index[task.label_field]], where)
        examples.append(example)


def _csv_problem(path: Path, line: int, exc: csv.Error) -> UserError:
    return UserError(f"{path}:{line}: not valid CSV ({exc})")


def _names(names: list[str]) -> str:
    """The column or key names of a file, for a message; withheld when they do not look like names.

    A task file may point at any file on the machine, so a first line that is not a header (``/etc/passwd``)
    must not be echoed into the message; short names of letters, digits, spaces and ``_ # . -`` are shown.
    """
    if len(names) <= 40 and all(_NAME.fullmatch(n) for n in names):
        return ", ".join(names)
    return "(not shown: the first line does not look like a header of column names)"


_NAME = re.compile(r"[\w .#-]{1,40}")


def _column_index(task: TaskSpec, path: Path, header: list[str] | None, width: int) -> dict[str, int]:
    """Field name -> column position, from ``local.columns`` (a column name, or an index without header)."""
    columns = task.local.columns if task.local is not None else {}
    index: dict[str, int] = {}
    for field in _fields(task):
        column = columns.get(field, field)
        if header is not None:
            if column not in header:
                raise UserError(f"{path}:1: no column {column!r} (for field {field!r}) in the header; columns are: "
                                f"{_names(header)}")
            index[field] = header.index(column)
            continue
        try:
            position = int(column)
        except ValueError:
            raise UserError(f"task {task.name!r}: file {path} has no header, so field {field!r} needs a 0-based "
                            f"column index, got {column!r}") from None
        if not 0 <= position < width:
            raise UserError(f"{path}:1: field {field!r} is column {position}, but the line has {width} columns")
        index[field] = position
    return index


def _read_jsonl(task: TaskSpec, path: Path) -> list[dict[str, Any]]:
    """One JSON object per line; ``local.columns`` maps field names to keys (default: the field name)."""
    local = task.local
    assert local is not None
    columns = local.columns
    examples: list[dict[str, Any]] = []
    with open_text(path, local.encoding, f"task {task.name!r}") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            except (ValueError, RecursionError) as exc:  # a 5,000-digit number, arrays nested 10,000 deep
                raise UserError(f"{where}: JSON that cannot be read ({str(exc).split(':')[0]})") from None
            if not isinstance(record, dict):
                raise UserError(f"{where}: expected a JSON object per line, got {type(record).__name__}")
            example: dict[str, Any] = {}
            for field in _fields(task):
                key = columns.get(field, field)
                if key not in record:
                    raise UserError(f"{where}: no key {key!r} (for field {field!r}); keys are: "
                                    f"{_names(list(map(str, record)))}")
                value = record[key]
                example[field] = (parse_label(task, value, where) if field == task.label_field
                                  else _text(task, value, field, where))
            if task.kind == "token_classification":
                words = example[task.text_fields[0]]
                if len(words) != len(example[task.label_field]):
                    raise UserError(f"{where}: {len(words)} words but {len(example[task.label_field])} tags")
                if not any(w.strip() for w in words):  # no token to label: a batch of such has a NaN loss
                    raise UserError(f"{where}: field {task.text_fields[0]!r} has no words "
                                    f"({len(words)} given, none but blanks); an example needs at least one word")
            examples.append(example)
    return examples


# ---- the hub --------------------------------------------------------------------------------------------------


def read_hub(task: TaskSpec, split: str) -> tuple[list[dict[str, Any]], str]:
    """Examples of ``split`` from the hub (cached by ``datasets``), and a description of where they came from."""
    hub = task.hub
    assert hub is not None
    hub_split = hub.splits.get(split, split)
    where = f"hub dataset {hub.path}" + (f" ({hub.name})" if hub.name else "") + f" split {hub_split}"
    try:
        import datasets

        rows = datasets.load_dataset(hub.path, hub.name, split=hub_split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown dataset or split: all reach the user as one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load task {task.name!r} split {split!r} from the {where}: {message}; give a "
                        f"local data folder with --data-dir or {ENV_DATA_DIR}") from None
    examples: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        at = f"{where} row {i}"
        missing = [f for f in _fields(task) if f not in row]
        if missing:
            raise UserError(f"{at}: no field {missing[0]!r}; fields are: {', '.join(row)}")
        label = row[task.label_field]
        if hub.label_names_from_hub:
            label = _hub_label_name(task, label, at)
        example = {field: _text(task, row[field], field, at) for field in task.text_fields}
        example[task.label_field] = parse_label(task, label, at)
        examples.append(example)
    return examples, where


def check_hub(task: TaskSpec) -> None:
    """For a task read from the hub: a one-line :class:`UserError` now when the hub cannot be reached
    (an offline variable, or no connection: :func:`adapterbench.models.offline_reason`) and the dataset is not in
    the local cache; otherwise every run would spend about 30 s on retries and then be recorded ``failed``."""
    hub = task.hub
    if hub is None:
        return
    from adapterbench.models import offline_reason

    offline = os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    reason = "HF_DATASETS_OFFLINE is set" if offline else offline_reason()
    if reason is None or _hub_cached(hub.path):
        return
    raise UserError(f"task {task.name!r} reads the hub dataset {hub.path}" + (f" ({hub.name})" if hub.name else "")
                    + f", but {reason} and it is not in the local cache; give a local copy with --data-dir (the "
                    f"GLUE/CoNLL layout) or {ENV_DATA_DIR}")


def _hub_cached(path: str) -> bool:
    """Whether ``datasets`` or the hub cache holds anything of dataset ``path`` (it may then load offline)."""
    from datasets import config
    from huggingface_hub.constants import HF_HUB_CACHE

    return (Path(config.HF_DATASETS_CACHE) / path.replace("/", "___")).is_dir() or (
        Path(HF_HUB_CACHE) / f"datasets--{path.replace('/', '--')}").is_dir()


def _hub_label_name(task: TaskSpec, label: Any, where: str) -> Any:
    """Hub class indices -> our label strings (GLUE test splits carry -1: no label)."""
    names = task.labels or ()

    def name(i: Any) -> str:
        if not isinstance(i, int) or not 0 <= i < len(names):
            raise UserError(f"{where}: class index {i!r} has no label (this split may be unlabelled); "
                            f"labels are: {', '.join(names)}")
        return names[i]

    return [name(i) for i in label] if isinstance(label, list) else name(label)
