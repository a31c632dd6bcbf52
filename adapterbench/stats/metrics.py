"""The metric registry: every metric declared once, with its computation, direction, range and resampling form.

lm-eval's ``register_metric(higher_is_better=...)`` idea: :func:`register_metric` declares a metric of a task
kind; the training loop (:func:`adapterbench.tasks.metrics.compute_metrics`), the statistics and the reports
(through :func:`metric_for_task`) and the record schema's direction table (``schema.METRIC_DIRECTIONS``) all
read this registry, so a metric is written once.

A registered metric builds a :class:`Metric`, which carries three forms of the same formula:

* **sufficient statistics** (``sums`` and ``from_sums``): per-example additive statistics ``X`` of shape
  ``(n, q)`` such that the metric of any weighting of the examples is ``from_sums(w @ X)``. A bootstrap resample
  is a count vector ``w`` (how often each example was drawn), so a whole batch of resamples is one matrix
  product ``W @ X`` (:mod:`adapterbench.stats.resample`); swapping two variants' predictions on the examples
  flagged by ``f`` adds ``f @ (X_b - X_a)`` to A's sums. ``sums_key`` names what ``X`` holds, so metrics that
  share it (F1, precision, recall and token accuracy of entities; accuracy, F1 and MCC of one confusion
  matrix) share one extraction;
* **columns** (``columns`` and ``statistic``): per-example columns and a statistic vectorised over resampled
  columns ``(..., n)``; the general form, for metrics without sufficient statistics (Spearman's ranks, any
  function) and for the sign-flip test of those;
* ``weighted(counts, *columns)``: the statistic of the data weighted by bootstrap counts ``(B, n)`` where no
  additive form exists but a weighted one does (Spearman: mid-ranks from cumulative counts).

Sufficient statistics by kind (the formulas; ``tests/test_stats_registry.py`` checks them against
scikit-learn, scipy and seqeval on random data):

* classification with ``k`` classes: one-hots of the true class and of the confusion cells ``(r, j >= 1)``
  (``q = k^2``); summed, the confusion matrix ``C`` (rows true; ``C[r, 0]`` = row total minus the rest): accuracy ``= tr C / sum C``; F1 of class 1 ``= 2 TP / (2 TP + FP + FN)``
  for ``k = 2`` (GLUE's MRPC/QQP F1), else the unweighted mean over the classes that occur (scikit-learn's
  macro); Matthews ``(c s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t))`` with ``t = C.sum(1)``, ``p = C.sum(0)``,
  ``c = tr C``, ``s = sum C`` (Gorodkin, 2004). F1 and MCC are 0.0 where undefined (scikit-learn's convention);
* regression, Pearson: ``(1, x, y, x^2, y^2, x y)`` with ``x``, ``y`` shifted by the references' mean (fewer
  cancellations; r is shift-invariant; one shift for every prediction set, so sums of two sets can be swapped): ``r = S_xy' / sqrt(S_xx' S_yy')`` with ``S_ab' = S_ab - S_a S_b / S_1``.
  **Undefined (NaN)** when either input is constant: a correlation with a constant is not 0, it does not exist;
* regression, Spearman: Pearson's r of the mid-ranks (``scipy.stats.rankdata``); NaN when either is constant;
* token classification: per sentence ``(correct entities, predicted, reference, correct tokens, tokens)``,
  entities extracted once with seqeval's ``get_entities`` (default, conlleval-compatible mode; an entity is
  correct only when its type and both boundaries match, Tjong Kim Sang & De Meulder, 2003). Summed they give
  seqeval's micro scores exactly: ``P = c / p``, ``R = c / g``, ``F1 = 2 c / (p + g)`` (seqeval joins
  sentences with an ``O``, so no entity crosses a sentence boundary); 0.0 where undefined.

:func:`function_metric` wraps any ``fn(predictions, references) -> float`` (columns form only; slow). The
built-in metrics are declared in :mod:`adapterbench.stats.metric_kinds`, which this module imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

Columns = tuple[np.ndarray, ...]
KINDS = ("classification", "regression", "token_classification")


@dataclass(frozen=True)
class Metric:
    """A metric in its resampling forms (module docstring).

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
    sums: Callable[[Any, Any], np.ndarray] | None = None  # (predictions, references) -> (n, q) float64
    from_sums: Callable[[np.ndarray], np.ndarray] | None = None  # (..., q) -> (...)
    sums_key: str | None = None  # equal keys: equal sums for equal inputs (shared extraction, cache key)
    # (counts (B, n), [predictions (n,) per seed], references (n,)) -> (B, seeds)
    weighted: Callable[..., np.ndarray] | None = None
    n_columns: int = 1  # len(columns(...)): sizes BCa's jackknife as the columns form did (intervals.default_method)

    def value(self, predictions: Any, references: Any) -> float:
        if self.sums is not None and self.from_sums is not None:
            return float(self.from_sums(self.sums(predictions, references).sum(axis=0)))
        return float(self.statistic(*self.columns(predictions, references)))


@dataclass(frozen=True)
class MetricSpec:
    """One registered metric: its name, the task kind it scores, its direction and how to build it."""

    name: str
    kind: str
    higher_is_better: bool
    build: Callable[..., Metric]  # (num_labels=..., labels=...) -> Metric
    doc: str


_REGISTRY: dict[tuple[str, str], MetricSpec] = {}


def register_metric(name: str, kind: str, *, higher_is_better: bool) -> Callable[[Callable[..., Metric]],
                                                                                  Callable[..., Metric]]:
    """Decorator: declare metric ``name`` of task ``kind``; its builder takes ``num_labels`` and ``labels``.

    A name may be registered once per kind, with one direction across kinds (a report column is named by the
    metric alone).
    """
    if kind not in KINDS:
        raise ValueError(f"task kind {kind!r} is unknown; allowed: {', '.join(KINDS)}")

    def decorate(build: Callable[..., Metric]) -> Callable[..., Metric]:
        if (kind, name) in _REGISTRY:
            raise ValueError(f"metric {name!r} of {kind} is already registered")
        clash = [s for s in _REGISTRY.values() if s.name == name and s.higher_is_better != higher_is_better]
        if clash:
            raise ValueError(f"metric {name!r} is registered with the other direction for {clash[0].kind}")
        _REGISTRY[(kind, name)] = MetricSpec(name, kind, higher_is_better, build, (build.__doc__ or "").strip())
        return build

    return decorate


def registered(kind: str | None = None) -> list[MetricSpec]:
    """Registered metrics (of ``kind``), in registration order."""
    return [s for s in _REGISTRY.values() if kind is None or s.kind == kind]


def metrics_by_kind() -> dict[str, tuple[str, ...]]:
    return {kind: tuple(s.name for s in registered(kind)) for kind in KINDS}


def metric_directions() -> dict[str, str]:
    """``{metric name: "higher" | "lower"}`` of every registered metric (the schema's direction table)."""
    return {s.name: "higher" if s.higher_is_better else "lower" for s in _REGISTRY.values()}


def _check_lengths(predictions: Any, references: Any) -> int:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(references) == 0:
        raise ValueError("no examples to score")
    return len(references)


def _rows(a: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(..., n) -> (rows, n)`` plus the leading shape to restore."""
    a = np.asarray(a)
    return a.reshape(-1, a.shape[-1]), a.shape[:-1]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0.0 where ``den`` is 0 (scikit-learn's and seqeval's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


# ---- lookup by kind, and any function ---------------------------------------------------------------------
def classification_metric(name: str, num_labels: int = 2) -> Metric:
    """Accuracy, F1 or Matthews correlation from int class indices in ``[0, num_labels)``."""
    return task_metric("classification", name, num_labels=num_labels)


def regression_metric(name: str) -> Metric:
    """Pearson's r or Spearman's rho between float predictions and references."""
    return task_metric("regression", name)


def entity_metric(name: str, labels: Sequence[str]) -> Metric:
    """seqeval's micro entity F1 / precision / recall, or token accuracy, from tag indices into ``labels``."""
    return task_metric("token_classification", name, labels=labels)


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

    return Metric(name, columns, statistic, higher_is_better=higher_is_better, vectorised=False, bca=False,
                  n_columns=2)


def task_metric(kind: str, name: str, *, num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """The registered metric ``name`` of a task of ``kind`` (the kinds of TaskSpec)."""
    if kind not in KINDS:
        raise ValueError(f"task kind {kind!r} is unknown; allowed: {', '.join(KINDS)}")
    spec = _REGISTRY.get((kind, name))
    if spec is None:
        allowed = [s.name for s in registered(kind)]
        words = {"classification": "classification", "regression": "regression",
                 "token_classification": "token-classification"}[kind]
        raise ValueError(f"{words} metric {name!r} is unknown; allowed: {allowed}")
    metric = spec.build(num_labels=num_labels, labels=labels)
    return metric if metric.higher_is_better == spec.higher_is_better else replace(
        metric, higher_is_better=spec.higher_is_better)


def metric_for_task(task: Any, name: str | None = None) -> Metric:
    """Metric ``name`` (default: the primary one) of a :class:`~adapterbench.tasks.spec.TaskSpec`.

    The task's ``greater_is_better`` sets the direction of its primary metric; the others keep theirs.
    """
    name = name or task.primary_metric
    metric = task_metric(task.kind, name, num_labels=task.num_labels, labels=task.labels)
    if name == task.primary_metric and metric.higher_is_better != task.greater_is_better:
        metric = replace(metric, higher_is_better=task.greater_is_better)
    return metric


# The built-in metrics register themselves on import (after the names above, which they use).
from adapterbench.stats.metric_kinds import (  # noqa: E402
    confusion,
    entity_counts,
    pearson_last_axis,
    weighted_midranks,
)

__all__ = ["Columns", "KINDS", "Metric", "MetricSpec", "classification_metric", "confusion", "entity_counts",
           "entity_metric", "function_metric", "metric_directions", "metric_for_task", "metrics_by_kind",
           "pearson_last_axis", "register_metric", "registered", "regression_metric", "task_metric",
           "weighted_midranks"]
