'''User tasks without Python: a TOML or JSON task file.

Pass the file's path wherever a task name is accepted (``--task my_task.toml``). Example (TOML)::

    name = "tiny-sentiment"            # letters, digits, "_", "-", "."
    version = "1"                      # change it whenever the data or anything below changes
    kind = "classification"            # classification | regression | token_classification
    text_fields = ["text"]             # one field, or two for a sentence pair; token tasks: the word list
    label_field = "label"
    labels = ["negative", "positive"]  # the label strings in the data; leave out for regression.
                                       # With two labels, the second is the positive class of f1.
    metrics = ["f1", "accuracy"]       # classification: accuracy, f1, matthews_correlation
                                       # regression: pearson, spearmanr
                                       # token_classification: f1, precision, recall, accuracy (entity level)
    primary_metric = "f1"              # one of metrics; picks the best epoch and the headline number
    train_split = "train"              # optional, default "train"
    eval_splits = ["validation"]       # optional, default ["validation"]; the first is the primary split
    paper = ""                         # optional: where the task comes from
    description = ""                   # optional

    [data]
    format = "csv"                     # tsv | csv | jsonl | conll
    header = true                      # tsv/csv: is the first line a header? (default true)
    encoding = "utf-8-sig"             # optional (the default also accepts plain UTF-8)
    conll_column = 3                   # conll only: the column holding the tag (words are column 0)
    columns = { text = "review", label = "sentiment" }
                                       # optional: field -> column name (with a header), 0-based column
                                       # index (without one), or JSON key; default: the field name itself

    [data.files]                       # one file per split, relative to this task file
    train = "sentiment_train.csv"
    validation = "sentiment_dev.csv"

The JSON form has the same keys, with ``data`` (and ``data.files``) as nested objects. Instead of, or besides,
``data``, a ``hub`` table may name a Hugging Face dataset: ``path``, optional ``name``, ``splits`` (our split
name -> the hub's) and ``label_names_from_hub`` (true when the hub stores labels as indices into ``labels``).

Formats: ``tsv`` is read with no quote character (as GLUE's files need), ``csv`` as RFC 4180 (quoted fields may
hold commas and newlines), ``jsonl`` as one JSON object per line (token tasks: the words and the tags as two
lists of strings), ``conll`` as one ``word ... tag`` line per token with blank lines between sentences.
Token classification needs ``jsonl`` or ``conll``; its tags are scored as IOB2 entities.
'''

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, get_args

from adapterbench.errors import UserError
from adapterbench.tasks.metrics import METRICS_BY_KIND
from adapterbench.tasks.spec import HubSource, Kind, LocalSource, TaskSpec
from adapterbench.textfiles import check_encoding, read_text, short

TOP_LEVEL_KEYS = ("name", "version", "kind", "text_fields", "label_field", "labels", "metrics", "primary_metric",
                  "train_split", "eval_splits", "paper", "description", "data", "hub")
DATA_KEYS = ("format", "header", "encoding", "conll_column", "columns", "files")
HUB_KEYS = ("path", "name", "splits", "label_names_from_hub")
FORMATS = ("tsv", "csv", "jsonl", "conll")
try:
    import tomllib
except ImportError:  # Python 3.10: JSON task files still work
    tomllib = None  # type: ignore[assignment]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Fields:
    """Typed access to a table of the task file, with one-line errors naming the field and the file."""

    def __init__(self, table: dict[str, Any], file: Path, prefix: str, allowed: tuple[str, ...]):
        self.table, self.file, self.prefix = table, file, prefix
        for key in table:
            if key not in allowed:
                self.fail(key, f"is not a known field; allowed: {', '.join(allowed)}")

    def fail(self, key: str, problem: str) -> None:
        raise UserError(f"task file {self.file}: field {self.prefix + key!r} {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., what: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                self.fail(key, "is missing")
            return default
        value = self.table[key]
        # bool is an int in Python, but true is not a number in a task file.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            self.fail(key, f"must be {what or _type_names(kind)}, got {short(value)}")
        return value

    def strings(self, key: str, default: Any = ..., at_least: int = 1) -> tuple[str, ...] | None:
        value = self.get(key, list, default, what="a list of strings")
        if value is None or value is default:
            return value
        if not all(isinstance(v, str) and v for v in value) or len(value) < at_least:
            self.fail(key, f"must be a list of at least {at_least} non-empty strings, got {short(value, 80)}")
        if len(set(value)) != len(value):
            self.fail(key, f"has duplicates: {short(value, 80)}")
        return tuple(value)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_names(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def read_task_table(path: Path) -> dict[str, Any]:
    """The task file parsed into a dict (``.toml`` with tomllib, ``.json`` with json)."""
    if not path.is_file():
        problem = "is not a regular file" if path.exists() else "does not exist"
        raise UserError(f"task file {str(path)!r} {problem}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise UserError(f"task file {path}: unknown file type {suffix or '(none)'!r}; use .toml or .json")
    if suffix == ".toml" and tomllib is None:
        raise UserError(f"task file {path}: TOML task files need Python 3.11 or later; write it as .json")
    # Both formats are UTF-8 by their specifications; the text is decoded first so that a bad byte is reported
    # with its line, then parsed (parser messages give line and column, never the text).
    text = read_text(path, "utf-8", hint=f"{suffix[1:].upper()} task files must be UTF-8")
    decode_errors: tuple[type[Exception], ...] = (json.JSONDecodeError, RecursionError)
    if tomllib is not None:
        decode_errors += (tomllib.TOMLDecodeError,)
    try:
        table = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except decode_errors as exc:
        raise UserError(f"task file {path}: not valid {suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:  # JSON: an integer of more than 4,300 digits
        raise UserError(f"task file {path}: not valid JSON: {str(exc).split(':')[0]}") from None
    if not isinstance(table, dict):
        raise UserError(f"task file {path}: expected a table of fields at the top, got {type(table).__name__}")
    return table


@functools.lru_cache(maxsize=256)
def task_file_name(path: str) -> str | None:
    """The ``name`` a task file declares (what record names and progress lines show), or None if unreadable."""
    try:
        return load_task_file(path).name
    except UserError:
        return None


def load_task_file(path: Path | str) -> TaskSpec:
    """A :class:`TaskSpec` from a TOML or JSON task file (format in the module docstring)."""
    path = Path(path).expanduser().resolve()
    top = _Fields(read_task_table(path), path, "", TOP_LEVEL_KEYS)

    name = top.get("name", str)
    if not NAME_PATTERN.match(name):
        top.fail("name", f"{name!r} must start with a letter or digit and hold only letters, digits, '_', '-', '.'")
    version = str(top.get("version", (str, int)))
    kind = top.get("kind", str)
    kinds = get_args(Kind)
    if kind not in kinds:
        top.fail("kind", f"is {kind!r}; allowed: {', '.join(kinds)}")

    text_fields = top.strings("text_fields")
    most = 1 if kind == "token_classification" else 2
    if len(text_fields) > most:
        top.fail("text_fields", f"has {len(text_fields)} fields; a {kind} task takes at most {most}")
    label_field = top.get("label_field", str)
    if label_field in text_fields:
        top.fail("label_field", f"{label_field!r} is also a text field")

    if kind == "regression":
        if top.table.get("labels"):
            top.fail("labels", "must be left out for a regression task")
        labels = None
    else:
        labels = top.strings("labels", at_least=2)

    metrics = top.strings("metrics")
    allowed_metrics = METRICS_BY_KIND[kind]
    for metric in metrics:
        if metric not in allowed_metrics:
            top.fail("metrics", f"has {metric!r}, not a metric for {kind}; allowed: {', '.join(allowed_metrics)}")
    primary = top.get("primary_metric", str)
    if primary not in metrics:
        top.fail("primary_metric", f"is {primary!r}, which is not in metrics ({', '.join(metrics)})")

    train_split = top.get("train_split", str, "train")
    eval_splits = top.strings("eval_splits", ("validation",))

    local = _local_source(top.get("data", dict, None), path, kind, (train_split, *eval_splits))
    hub = _hub_source(top.get("hub", dict, None), path)
    if local is None and hub is None:
        top.fail("data", "is missing (give data files, or a hub dataset in a 'hub' table)")

    return TaskSpec(name=name, version=version, kind=kind, text_fields=text_fields, label_field=label_field,
                    labels=labels, metrics=metrics, primary_metric=primary, train_split=train_split,
                    eval_splits=eval_splits, local=local, hub=hub, paper=top.get("paper", str, ""),
                    description=top.get("description", str, ""), origin=f"task file {path}")


def _local_source(table: dict[str, Any] | None, path: Path, kind: str,
                  splits: tuple[str, ...]) -> LocalSource | None:
    if table is None:
        return None
    data = _Fields(table, path, "data.", DATA_KEYS)
    fmt = data.get("format", str)
    if fmt not in FORMATS:
        data.fail("format", f"is {fmt!r}; allowed: {', '.join(FORMATS)}")
    if kind == "token_classification" and fmt in ("tsv", "csv"):
        data.fail("format", f"is {fmt!r}, but token classification needs jsonl or conll")
    if kind != "token_classification" and fmt == "conll":
        data.fail("format", "is 'conll', which is only for token classification")

    columns = data.get("columns", dict, {})
    for field, column in columns.items():
        if isinstance(column, bool) or not isinstance(column, (str, int)):
            data.fail("columns", f"maps {field!r} to {column!r}; give a column name, index or key")
    files = data.get("files", dict)
    for split, file in files.items():
        if not isinstance(file, str) or not file:
            data.fail("files", f"has {split!r} = {file!r}; give a path relative to the task file")
    for split in splits:
        if split not in files:
            data.fail("files", f"has no file for split {split!r} (splits: {', '.join(splits)})")
    # Absolute paths tell the loader that these files do not live under --data-dir.
    resolved = {split: str((path.parent / file).resolve()) for split, file in files.items()}

    encoding = check_encoding(data.get("encoding", str, "utf-8-sig"), f"task file {path}: field 'data.encoding'")
    conll_column = data.get("conll_column", int, 3)
    if conll_column < 1:
        data.fail("conll_column", f"is {conll_column}; the words are column 0, so the tag column must be >= 1")
    return LocalSource(format=fmt, files=resolved, header=data.get("header", bool, True),
                       columns={field: str(column) for field, column in columns.items()},
                       encoding=encoding, conll_column=conll_column)


def _hub_source(table: dict[str, Any] | None, path: Path) -> HubSource | None:
    if table is None:
        return None
    hub = _Fields(table, path, "hub.", HUB_KEYS)
    splits = hub.get("splits", dict, {})
    for ours, theirs in splits.items():
        if not isinstance(theirs, str):
            hub.fail("splits", f"maps {ours!r} to {theirs!r}; give the hub's split name")
    return HubSource(path=hub.get("path", str), name=hub.get("name", str, None), splits=dict(splits),
                     label_names_from_hub=hub.get("label_names_from_hub", bool, False))
