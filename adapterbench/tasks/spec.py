"""Tasks declared as data.

A :class:`TaskSpec` says everything the harness needs to know about a task: where its examples come from (a local
file in the classic GLUE/CoNLL layout, or the Hugging Face hub), which fields hold the text and the label, the
label set, the kind of head, the metrics with the primary one and its direction, the splits and a version that
changes whenever anything that affects the numbers changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["classification", "regression", "token_classification"]


@dataclass(frozen=True)
class LocalSource:
    """Files under ``--data-dir``: ``files`` maps a split name to a relative path.

    ``format`` is ``tsv``, ``csv``, ``jsonl`` or ``conll``. For delimited files, ``columns`` maps field names to
    column names (when ``header`` is true) or to 0-based column indices given as strings (when it is false).
    """

    format: Literal["tsv", "csv", "jsonl", "conll"]
    files: dict[str, str]
    header: bool = True
    columns: dict[str, str] = field(default_factory=dict)
    encoding: str = "utf-8-sig"  # tolerates the BOM that MRPC's files start with
    conll_column: int = 3  # for conll: which column holds the tag (CoNLL-2003: word POS chunk NER)


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face hub; ``splits`` maps our split names to the hub's."""

    path: str
    name: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    label_names_from_hub: bool = False  # labels on the hub are class indices into ``TaskSpec.labels``
    revision: str | None = None  # a hub commit or tag; None is the default branch (recorded as "main")


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task.

    ``text_fields`` has one or two names (sentence, or sentence pair); for token classification it has one
    (the list of words) and ``label_field`` holds the list of tags. ``labels`` is the ordered label set (``None``
    for regression); label strings in the data are mapped to their index in this tuple.
    """

    name: str
    version: str
    kind: Kind
    text_fields: tuple[str, ...]
    label_field: str
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    primary_metric: str
    train_split: str = "train"
    eval_splits: tuple[str, ...] = ("validation",)
    local: LocalSource | None = None
    hub: HubSource | None = None
    paper: str = ""
    greater_is_better: bool = True
    description: str = ""
    origin: str = "built-in"

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels or ())

    @property
    def primary_split(self) -> str:
        """The split whose primary metric decides the best epoch and the headline number."""
        return self.eval_splits[0]

    def derive(self, **changes: object) -> TaskSpec:
        """A small variant of this task declared by difference (for example MNLI's mismatched split)."""
        return replace(self, **changes)
