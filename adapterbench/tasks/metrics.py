"""Task metrics: the official GLUE metrics and CoNLL entity-level scores, computed by the metric registry.

Every metric is declared once in :mod:`adapterbench.stats.metrics` (its formula, direction, range and
resampling form; checked there against scikit-learn, scipy and seqeval); this module is the loop's entry point.

``compute_metrics(task, predictions, references)`` takes

* classification: two int arrays of class indices, shape ``(n,)``;
* regression: two float arrays, shape ``(n,)``;
* token classification: two lists of int sequences (tag indices), already aligned and filtered to the labelled
  positions (first sub-words), sequence ``i`` of equal length in both,

and returns ``{metric name: float}`` for every metric of the task. F1 and MCC are 0.0 where undefined (no
positives; a constant marginal), scikit-learn's convention, so a collapsed classifier scores "no skill". A
correlation with a constant (constant predictions or constant labels) is **NaN**: it is undefined, not zero; the
loop stores it as null in the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adapterbench.stats.cache import metric_sums
from adapterbench.stats.metrics import entity_counts, metric_directions, metrics_by_kind, task_metric
from adapterbench.tasks.spec import TaskSpec

METRICS_BY_KIND: dict[str, tuple[str, ...]] = metrics_by_kind()
# The direction of every registered metric (the record schema's table is built from the same registry).
METRIC_DIRECTION = metric_directions()


def _value(kind: str, name: str, predictions: Any, references: Any, **task: Any) -> float:
    return task_metric(kind, name, **task).value(predictions, references)


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of exact matches: ``mean(pred == ref)``."""
    k = int(max(np.max(predictions), np.max(references))) + 1
    return _value("classification", "accuracy", predictions, references, num_labels=k)


def f1(predictions: np.ndarray, references: np.ndarray, num_labels: int = 2) -> float:
    """F1 of the positive class (index 1) for two labels: ``2 TP / (2 TP + FP + FN)``, 0.0 when undefined (GLUE's
    MRPC and QQP F1). With more than two labels, the unweighted mean of per-class F1 over the classes that occur
    in either array (scikit-learn's ``average="macro"``)."""
    return _value("classification", "f1", predictions, references, num_labels=num_labels)


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    """Matthews correlation coefficient, multiclass form (Gorodkin, 2004; GLUE's CoLA metric); 0.0 when a
    marginal is constant."""
    k = int(max(np.max(predictions), np.max(references))) + 1
    return _value("classification", "matthews_correlation", predictions, references, num_labels=k)


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    """Pearson's r; NaN when either input is constant or has fewer than two values."""
    return _value("regression", "pearson", predictions, references)


def spearmanr(predictions: np.ndarray, references: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the ranks, ties sharing the mean of the ranks they span; NaN when either
    input is constant."""
    return _value("regression", "spearmanr", predictions, references)


def to_tags(sequences: Sequence[Sequence[int]], labels: Sequence[str]) -> list[list[str]]:
    """Tag-index sequences -> tag-string sequences."""
    return [[labels[int(i)] for i in seq] for seq in sequences]


def entity_scores(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]],
                  labels: Sequence[str]) -> dict[str, float]:
    """seqeval's entity-level precision, recall and F1 (conlleval mode) and token accuracy, from tag indices."""
    c, p, g, ok, n = entity_counts(predictions, references, labels).sum(axis=0).astype(float)
    return {"precision": c / p if p else 0.0, "recall": c / g if g else 0.0,
            "f1": 2 * c / (p + g) if p + g else 0.0, "accuracy": ok / n if n else 0.0}


def compute_metrics(task: TaskSpec, predictions: Any, references: Any) -> dict[str, float]:
    """Every metric of ``task`` (see the module docstring for the inputs)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(references) == 0:
        raise ValueError("no examples to score")
    if task.kind == "classification":
        predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
        references = np.asarray(references).reshape(-1).astype(np.int64)
    elif task.kind == "regression":
        predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
        references = np.asarray(references, dtype=np.float64).reshape(-1)
    try:
        metrics = [task_metric(task.kind, name, num_labels=task.num_labels, labels=task.labels)
                   for name in task.metrics]
    except ValueError as err:
        raise ValueError(f"task {task.name!r}: {err}") from None
    scores: dict[str, float] = {}
    shared: dict[str, np.ndarray] = {}  # metrics with one sums_key share one extraction (entities once)
    for metric in metrics:
        if metric.sums_key is not None:
            if metric.sums_key not in shared:
                # through the statistics cache: the report that follows a run finds the entities extracted
                shared[metric.sums_key] = metric_sums(metric, predictions, references)[1].sum(axis=0)
            scores[metric.name] = float(metric.from_sums(shared[metric.sums_key]))
        else:
            scores[metric.name] = metric.value(predictions, references)
    return scores
