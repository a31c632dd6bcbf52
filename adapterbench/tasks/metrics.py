"""Task metrics: the official GLUE metrics and CoNLL entity-level scores.

scikit-learn computes the classification metrics, scipy the correlations and seqeval (the reference
implementation of conlleval) the entity-level scores; the functions here only fix the conventions below and
document the formulas. The tests check them against values worked out by hand.

``compute_metrics(task, predictions, references)`` takes

* classification: two int arrays of class indices, shape ``(n,)``;
* regression: two float arrays, shape ``(n,)``;
* token classification: two lists of int sequences (tag indices), already aligned and filtered to the labelled
  positions (first sub-words), sequence ``i`` of equal length in both,

and returns ``{metric name: float}`` for every metric of the task. Every metric here is higher-is-better
(:data:`METRIC_DIRECTION`, the schema's table). Undefined values (a constant input to a correlation, no positives
for F1) are 0.0, scikit-learn's convention for MCC and F1, so a collapsed model scores "no skill" rather than NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adapterbench.schema import METRIC_DIRECTIONS
from adapterbench.tasks.spec import TaskSpec

METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1", "matthews_correlation"),
    "regression": ("pearson", "spearmanr"),
    "token_classification": ("f1", "precision", "recall", "accuracy"),
}
# The direction of every metric, defined once in the record schema (reports orient best marks and charts by it).
METRIC_DIRECTION = METRIC_DIRECTIONS


# ---- classification (scikit-learn) ---------------------------------------------------------------------------


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of exact matches: ``mean(pred == ref)``."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(np.asarray(references), np.asarray(predictions)))


def f1(predictions: np.ndarray, references: np.ndarray, num_labels: int = 2) -> float:
    """F1 of the positive class (index 1) for two labels: ``2 TP / (2 TP + FP + FN)``, 0.0 when undefined (GLUE's
    MRPC and QQP F1). With more than two labels, the unweighted mean of per-class F1 over the classes that occur
    in either array (scikit-learn's ``average="macro"``)."""
    from sklearn.metrics import f1_score

    pred, ref = np.asarray(predictions), np.asarray(references)
    if num_labels <= 2:
        return float(f1_score(ref, pred, labels=[1], average="micro", zero_division=0))
    return float(f1_score(ref, pred, average="macro", zero_division=0))


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    """Matthews correlation coefficient, multiclass form (Gorodkin, 2004; GLUE's CoLA metric).

    With the confusion matrix ``C`` (rows true, columns predicted), ``t = C.sum(1)``, ``p = C.sum(0)``,
    ``c = trace(C)``, ``s = C.sum()``: ``MCC = (c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t))``; for two classes this
    is ``(TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``. 0.0 when a marginal is constant.
    """
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(np.asarray(references), np.asarray(predictions)))


# ---- regression (scipy) ---------------------------------------------------------------------------------------


def _correlation(statistic: Any, x: np.ndarray, y: np.ndarray) -> float:
    """A scipy correlation, 0.0 where it is undefined (fewer than two values, or a constant input)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.clip(statistic(x, y).statistic, -1.0, 1.0))


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    """Pearson's r: ``sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2))``."""
    from scipy import stats

    return _correlation(stats.pearsonr, predictions, references)


def spearmanr(predictions: np.ndarray, references: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the ranks, ties sharing the mean of the ranks they span."""
    from scipy import stats

    return _correlation(stats.spearmanr, predictions, references)


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
