"""Task metrics: the official GLUE metrics and CoNLL entity-level scores.

Sequence-level metrics are small numpy functions written from their formulas (the tests check them against
scikit-learn and scipy); entity-level scores come from seqeval, the reference implementation of conlleval.

``compute_metrics(task, predictions, references)`` takes

* classification: two int arrays of class indices, shape ``(n,)``;
* regression: two float arrays, shape ``(n,)``;
* token classification: two lists of int sequences (tag indices), already aligned and filtered to the labelled
  positions (first sub-words), sequence ``i`` of equal length in both,

and returns ``{metric name: float}`` for every metric of the task. Every metric here is higher-is-better
(:data:`METRIC_DIRECTION`). Undefined values (a constant input to a correlation, no positives for F1) are 0.0,
scikit-learn's convention for MCC and F1, so a collapsed model scores "no skill" rather than NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adapterbench.tasks.spec import TaskSpec

METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "matthews_correlation"),
    "regression": ("pearson", "spearmanr"),
    "token_classification": ("f1", "precision", "recall", "accuracy"),
}
# "max": higher is better. Reports use this to pick the best run and to orient plots.
METRIC_DIRECTION: dict[str, str] = {name: "max" for names in METRICS_BY_KIND.values() for name in names}


# ---- classification -------------------------------------------------------------------------------------------


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of exact matches: ``mean(pred == ref)``."""
    return float(np.mean(np.asarray(predictions) == np.asarray(references)))


def f1(predictions: np.ndarray, references: np.ndarray, num_labels: int = 2) -> float:
    """F1 of the positive class (index 1) for two labels: ``2 TP / (2 TP + FP + FN)``, 0.0 when undefined.

    With more than two labels, the unweighted mean of per-class F1 over the classes that occur in either array
    (macro F1, as scikit-learn's ``average="macro"``).
    """
    pred, ref = np.asarray(predictions), np.asarray(references)
    if num_labels <= 2:
        return _f1_of_class(pred, ref, 1)
    classes = np.union1d(pred, ref)
    return float(np.mean([_f1_of_class(pred, ref, c) for c in classes]))


def _f1_of_class(pred: np.ndarray, ref: np.ndarray, cls: int) -> float:
    tp = int(np.sum((pred == cls) & (ref == cls)))
    fp = int(np.sum((pred == cls) & (ref != cls)))
    fn = int(np.sum((pred != cls) & (ref == cls)))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    """Matthews correlation coefficient, multiclass form (Gorodkin, 2004).

    With the confusion matrix ``C`` (rows true, columns predicted), ``t = C.sum(1)``, ``p = C.sum(0)``,
    ``c = trace(C)``, ``s = C.sum()``: ``MCC = (c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t))``; for two classes this
    is ``(TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``. 0.0 when a marginal is constant.
    """
    pred, ref = np.asarray(predictions), np.asarray(references)
    classes, codes = np.unique(np.concatenate([ref, pred]), return_inverse=True)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (codes[: len(ref)], codes[len(ref):]), 1.0)
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)
    c, s = np.trace(confusion), confusion.sum()
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / denominator) if denominator > 0 else 0.0


# ---- regression -----------------------------------------------------------------------------------------------


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    """Pearson's r: ``sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2))``."""
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(references, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    if denominator == 0:
        return 0.0
    return float(np.clip((x @ y) / denominator, -1.0, 1.0))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span (``[10, 20, 20, 30] -> [1, 2.5, 2.5, 4]``)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values, and the run each sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run = np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) - 1
    ends = np.r_[starts[1:], len(values)]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[run]
    return ranks


def spearmanr(predictions: np.ndarray, references: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks."""
    return pearson(average_ranks(predictions), average_ranks(references))


# ---- token classification -------------------------------------------------------------------------------------


def to_tags(sequences: Sequence[Sequence[int]], labels: Sequence[str]) -> list[list[str]]:
    """Tag-index sequences -> tag-string sequences."""
    return [[labels[int(i)] for i in seq] for seq in sequences]


def entity_scores(predictions: list[list[str]], references: list[list[str]]) -> dict[str, float]:
    """seqeval's entity-level precision, recall and F1 (default, conlleval-compatible mode) and token accuracy.

    An entity counts as correct only when its type and both boundaries match (Tjong Kim Sang & De Meulder,
    2003): ``P = correct / predicted entities``, ``R = correct / reference entities``, ``F1 = 2PR / (P + R)``.
    """
    from seqeval import metrics as seqeval_metrics

    return {
        "precision": float(seqeval_metrics.precision_score(references, predictions, zero_division=0)),
        "recall": float(seqeval_metrics.recall_score(references, predictions, zero_division=0)),
        "f1": float(seqeval_metrics.f1_score(references, predictions, zero_division=0)),
        "accuracy": float(seqeval_metrics.accuracy_score(references, predictions)),
    }


# ---- entry point ----------------------------------------------------------------------------------------------


def compute_metrics(task: TaskSpec, predictions: Any, references: Any) -> dict[str, float]:
    """Every metric of ``task`` (see the module docstring for the inputs)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(references) == 0:
        raise ValueError("no examples to score")
    if task.kind == "token_classification":
        for i, (p, r) in enumerate(zip(predictions, references)):
            if len(p) != len(r):
                raise ValueError(f"sequence {i}: {len(p)} predicted tags but {len(r)} reference tags")
        labels = task.labels or ()
        scores = entity_scores(to_tags(predictions, labels), to_tags(references, labels))
    elif task.kind == "regression":
        pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
        ref = np.asarray(references, dtype=np.float64).reshape(-1)
        scores = {"pearson": pearson(pred, ref), "spearmanr": spearmanr(pred, ref)}
    else:
        pred = np.asarray(predictions).reshape(-1).astype(np.int64)
        ref = np.asarray(references).reshape(-1).astype(np.int64)
        scores = {"accuracy": accuracy(pred, ref), "f1": f1(pred, ref, task.num_labels),
                  "matthews_correlation": matthews_correlation(pred, ref)}
    unknown = [m for m in task.metrics if m not in scores]
    if unknown:
        raise ValueError(f"task {task.name!r} asks for {unknown}, not defined for kind {task.kind!r}")
    return {name: scores[name] for name in task.metrics}
