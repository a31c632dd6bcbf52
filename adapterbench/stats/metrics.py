"""Metrics as resampling-ready statistics: per-example columns plus a statistic vectorised over resamples.

A corpus-level metric (F1, Matthews correlation, Pearson, entity F1) is not a mean of per-example scores, so
resampling examples means recomputing the metric on every resample. To do that without a Python loop, a
:class:`Metric` turns predictions and references into per-example **columns** (arrays of shape ``(n,)``) and
computes the metric from columns that carry any leading batch axes, examples on the last one::

    columns = metric.columns(predictions, references)       # tuple of arrays, each (n,)
    metric.statistic(*(c[idx] for c in columns))            # idx: (B, n) resampled indices -> (B,) values

A bootstrap resample is one index array applied to every column (what ``scipy.stats.bootstrap(paired=True)``
does), and swapping two variants' predictions on an example is swapping their columns at that position.

Columns by kind (formulas as in :mod:`adapterbench.tasks.metrics`, which the tests check these against):

* classification: one int column, the confusion cell ``ref * k + pred``; per resample the cells are counted into a
  ``k x k`` confusion matrix ``C`` (rows true) and accuracy ``= tr C / sum C``, F1 (class 1 when ``k <= 2``, else
  macro over classes that occur) and MCC ``(c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t))`` follow from it;
* regression: ``(pred, ref)`` floats; Pearson along the last axis, Spearman = Pearson of average ranks
  (``scipy.stats.rankdata``);
* token classification: per-sentence counts (correct entities, predicted entities, reference entities, correct
  tokens, tokens) from seqeval's entity extraction. Summed they give seqeval's micro scores exactly
  (``P = c / p``, ``R = c / g``, ``F1 = 2 c / (p + g)``): seqeval joins sentences with an ``O``, so no entity
  crosses a sentence boundary;
* any other function (:func:`function_metric`): the raw predictions and references as columns (object arrays for
  ragged sequences); the statistic calls the function once per resample. Correct but slow: use percentile
  intervals and a few hundred resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps

Columns = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Metric:
    """A metric as (columns, statistic); see the module docstring.

    ``correct`` is set only where the metric is the mean of a per-example 0/1 score (accuracy over examples): it
    returns that score, which McNemar's test needs.
    """

    name: str
    columns: Callable[[Any, Any], Columns]
    statistic: Callable[..., np.ndarray]
    higher_is_better: bool = True
    vectorised: bool = True  # False: the statistic loops over resamples (slow)
    bca: bool = True  # BCa's jackknife (n statistics of n - 1 examples) is affordable; not for ranks or loops
    correct: Callable[[Any, Any], np.ndarray] | None = None
    # The values the metric can take (accuracy [0, 1], Matthews and Pearson [-1, 1]); None: unbounded or unknown.
    # A t interval over a few seeds can reach past them (3 seeds: t = 4.30); estimate() clips it to this range.
    bounds: tuple[float, float] | None = None

    def value(self, predictions: Any, references: Any) -> float:
        return float(self.statistic(*self.columns(predictions, references)))


def _rows(a: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(..., n) -> (rows, n)`` plus the leading shape to restore."""
    a = np.asarray(a)
    return a.reshape(-1, a.shape[-1]), a.shape[:-1]


def _check_lengths(predictions: Any, references: Any) -> int:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(references) == 0:
        raise ValueError("no examples to score")
    return len(references)


# ---- classification ------------------------------------------------------------------------------------------
def confusion(codes: np.ndarray, k: int) -> np.ndarray:
    """Cell codes ``ref * k + pred`` of shape ``(..., n)`` -> confusion counts ``(..., k, k)``, rows true."""
    flat, lead = _rows(np.asarray(codes, dtype=np.int64))
    # One bincount for all rows: row r's cells are shifted to [r k^2, (r + 1) k^2).
    shifted = flat + (np.arange(flat.shape[0], dtype=np.int64) * k * k)[:, None]
    counts = np.bincount(shifted.ravel(), minlength=flat.shape[0] * k * k)
    return counts.reshape(*lead, k, k).astype(np.float64)


def _accuracy(c: np.ndarray) -> np.ndarray:
    return np.trace(c, axis1=-2, axis2=-1) / c.sum(axis=(-2, -1))


def _f1(c: np.ndarray) -> np.ndarray:
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    fp, fn = c.sum(axis=-2) - tp, c.sum(axis=-1) - tp
    denominator = 2 * tp + fp + fn
    per_class = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    if c.shape[-1] <= 2:
        return per_class[..., -1]  # the positive class (index 1)
    present = denominator > 0
    return per_class.sum(-1) / np.maximum(present.sum(-1), 1)


def _mcc(c: np.ndarray) -> np.ndarray:
    t, p = c.sum(axis=-1), c.sum(axis=-2)
    trace, s = np.trace(c, axis1=-2, axis2=-1), c.sum(axis=(-2, -1))
    denominator = np.sqrt((s * s - (p * p).sum(-1)) * (s * s - (t * t).sum(-1)))
    numerator = trace * s - (t * p).sum(-1)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


_CONFUSION_METRICS = {"accuracy": _accuracy, "f1": _f1, "matthews_correlation": _mcc}


def classification_metric(name: str, num_labels: int = 2) -> Metric:
    """Accuracy, F1 or Matthews correlation from int class indices in ``[0, num_labels)``."""
    if name not in _CONFUSION_METRICS:
        raise ValueError(f"classification metric {name!r} is unknown; allowed: {sorted(_CONFUSION_METRICS)}")
    k = max(int(num_labels), 2)
    formula = _CONFUSION_METRICS[name]

    def columns(predictions: Any, references: Any) -> Columns:
        _check_lengths(predictions, references)
        pred = np.asarray(predictions).reshape(-1).astype(np.int64)
        ref = np.asarray(references).reshape(-1).astype(np.int64)
        bad = [int(v) for v in np.concatenate([pred, ref]) if not 0 <= v < k][:3]
        if bad:
            raise ValueError(f"class indices {bad} are outside [0, {k}) for metric {name!r}")
        return (ref * k + pred,)

    def statistic(codes: np.ndarray, axis: int = -1) -> np.ndarray:
        return formula(confusion(np.moveaxis(np.asarray(codes), axis, -1), k))

    def correct(predictions: Any, references: Any) -> np.ndarray:
        return (np.asarray(predictions).reshape(-1) == np.asarray(references).reshape(-1)).astype(np.int64)

    bounds = (-1.0, 1.0) if name == "matthews_correlation" else (0.0, 1.0)
    return Metric(name, columns, statistic, correct=correct if name == "accuracy" else None, bounds=bounds)


# ---- regression ----------------------------------------------------------------------------------------------
def pearson_last_axis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis; 0.0 where an input is constant (the project's convention)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    numerator = (x * y).sum(-1)
    r = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    return np.clip(r, -1.0, 1.0)


def regression_metric(name: str) -> Metric:
    """Pearson's r or Spearman's rho between float predictions and references."""
    if name not in ("pearson", "spearmanr"):
        raise ValueError(f"regression metric {name!r} is unknown; allowed: ['pearson', 'spearmanr']")

    def columns(predictions: Any, references: Any) -> Columns:
        _check_lengths(predictions, references)
        return (np.asarray(predictions, dtype=np.float64).reshape(-1),
                np.asarray(references, dtype=np.float64).reshape(-1))

    def statistic(pred: np.ndarray, ref: np.ndarray, axis: int = -1) -> np.ndarray:
        pred, ref = np.moveaxis(np.asarray(pred), axis, -1), np.moveaxis(np.asarray(ref), axis, -1)
        if name == "spearmanr":
            pred, ref = sps.rankdata(pred, axis=-1), sps.rankdata(ref, axis=-1)
        return pearson_last_axis(pred, ref)

    # Spearman re-ranks every resample: its n-row jackknife costs n^2 log n (9 s at n = 1500, 3 seeds).
    return Metric(name, columns, statistic, bca=name != "spearmanr", bounds=(-1.0, 1.0))


# ---- token classification ------------------------------------------------------------------------------------
_ENTITY_METRICS = ("f1", "precision", "recall", "accuracy")


def entity_counts(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]],
                  labels: Sequence[str]) -> np.ndarray:
    """Per sentence ``[correct entities, predicted, reference, correct tokens, tokens]``, shape ``(n, 5)``."""
    from seqeval.metrics.sequence_labeling import get_entities

    _check_lengths(predictions, references)
    counts = np.zeros((len(references), 5), dtype=np.int64)
    for i, (p, r) in enumerate(zip(predictions, references)):
        if len(p) != len(r):
            raise ValueError(f"sequence {i}: {len(p)} predicted tags but {len(r)} reference tags")
        p_tags, r_tags = [labels[int(t)] for t in p], [labels[int(t)] for t in r]
        p_ents, r_ents = set(get_entities(p_tags)), set(get_entities(r_tags))
        counts[i] = (len(p_ents & r_ents), len(p_ents), len(r_ents),
                     sum(a == b for a, b in zip(p_tags, r_tags)), len(r_tags))
    return counts


def entity_metric(name: str, labels: Sequence[str]) -> Metric:
    """seqeval's micro entity F1 / precision / recall, or token accuracy, from tag indices into ``labels``."""
    if name not in _ENTITY_METRICS:
        raise ValueError(f"token-classification metric {name!r} is unknown; allowed: {list(_ENTITY_METRICS)}")
    labels = tuple(labels)

    def columns(predictions: Any, references: Any) -> Columns:
        return tuple(entity_counts(predictions, references, labels).T)

    def statistic(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        c, p, g, ok, tokens = (np.moveaxis(np.asarray(x), axis, -1).sum(-1).astype(np.float64) for x in cols)
        num, den = {"f1": (2 * c, p + g), "precision": (c, p), "recall": (c, g), "accuracy": (ok, tokens)}[name]
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    return Metric(name, columns, statistic, bounds=(0.0, 1.0))


# ---- any function and the lookup by task kind ----------------------------------------------------------------
def _column(values: Any) -> np.ndarray:
    """Numeric 1-D array when the values are scalars, else an object array of the items (ragged sequences)."""
    try:
        array = np.asarray(values)
        if array.ndim == 1 and array.dtype != object:
            return array
    except ValueError:
        pass  # ragged sequences
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def function_metric(name: str, fn: Callable[[Any, Any], float], higher_is_better: bool = True) -> Metric:
    """Any ``fn(predictions, references) -> float``; resamples call it once each (lists for ragged items)."""

    def columns(predictions: Any, references: Any) -> Columns:
        _check_lengths(predictions, references)
        return _column(predictions), _column(references)

    def statistic(pred: np.ndarray, ref: np.ndarray, axis: int = -1) -> np.ndarray:
        rows_p, lead = _rows(np.moveaxis(np.asarray(pred), axis, -1))
        rows_r, _ = _rows(np.moveaxis(np.asarray(ref), axis, -1))
        as_input = (lambda row: list(row)) if rows_p.dtype == object else (lambda row: row)
        values = [float(fn(as_input(p), as_input(r))) for p, r in zip(rows_p, rows_r)]
        return np.asarray(values, dtype=np.float64).reshape(lead)

    return Metric(name, columns, statistic, higher_is_better=higher_is_better, vectorised=False, bca=False)


def task_metric(kind: str, name: str, *, num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """The resampling-ready form of metric ``name`` of a task of ``kind`` (the kinds of TaskSpec)."""
    if kind == "classification":
        return classification_metric(name, num_labels)
    if kind == "regression":
        return regression_metric(name)
    if kind == "token_classification":
        if not labels:
            raise ValueError("token-classification metrics need the tag names (labels)")
        return entity_metric(name, labels)
    raise ValueError(f"task kind {kind!r} is unknown; allowed: classification, regression, token_classification")


def metric_for_task(task: Any, name: str | None = None) -> Metric:
    """Metric ``name`` (default: the primary one) of a :class:`~adapterbench.tasks.spec.TaskSpec`.

    The task's ``greater_is_better`` sets the direction of its primary metric; the others keep theirs.
    """
    name = name or task.primary_metric
    metric = task_metric(task.kind, name, num_labels=task.num_labels, labels=task.labels)
    if name == task.primary_metric and not task.greater_is_better:
        metric = replace(metric, higher_is_better=False)
    return metric
