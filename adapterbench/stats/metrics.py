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

:func:`function_metric` wraps any ``fn(predictions, references) -> float`` (columns form only; slow).
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
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


# ---- classification ------------------------------------------------------------------------------------------
def confusion(codes: np.ndarray, k: int) -> np.ndarray:
    """Cell codes ``ref * k + pred`` of shape ``(..., n)`` -> confusion counts ``(..., k, k)``, rows true."""
    flat, lead = _rows(np.asarray(codes, dtype=np.int64))
    # One bincount for all rows: row r's cells are shifted to [r k^2, (r + 1) k^2).
    shifted = flat + (np.arange(flat.shape[0], dtype=np.int64) * k * k)[:, None]
    counts = np.bincount(shifted.ravel(), minlength=flat.shape[0] * k * k)
    return counts.reshape(*lead, k, k).astype(np.float64)


Cells = list[list[np.ndarray]]  # cells[r][j]: the count of (true r, predicted j), each of shape (...)


def _cells(c: np.ndarray) -> Cells:
    """Confusion counts ``(..., k, k)`` -> ``cells[r][j]``."""
    k = c.shape[-1]
    return [[c[..., r, j] for j in range(k)] for r in range(k)]


def _margins(cells: Cells) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """``(t, p, trace, s)``: row sums, column sums (lists), ``tr C`` and ``sum C``. Sums over the ``k^2`` cells
    rather than numpy reductions over two tiny trailing axes, which are several times slower on batches."""
    k = len(cells)
    t = [sum(cells[r]) for r in range(k)]
    p = [sum(cells[r][j] for r in range(k)) for j in range(k)]
    return t, p, sum(cells[i][i] for i in range(k)), sum(t)


def _accuracy(cells: Cells) -> np.ndarray:
    _, _, trace, s = _margins(cells)
    return _ratio(trace, s)


def _f1(cells: Cells) -> np.ndarray:
    t, p, _, _ = _margins(cells)
    k = len(cells)
    # per class: 2 TP / (2 TP + FP + FN) = 2 TP / (row sum + column sum)
    per_class = [_ratio(2 * cells[i][i], t[i] + p[i]) for i in range(k)]
    if k <= 2:
        return per_class[-1]  # the positive class (index 1)
    present = sum((t[i] + p[i] > 0).astype(np.float64) for i in range(k))
    return sum(per_class) / np.maximum(present, 1)


def _mcc(cells: Cells) -> np.ndarray:
    t, p, trace, s = _margins(cells)
    tt, pp, tp = (sum(a * b for a, b in zip(x, y)) for x, y in ((t, t), (p, p), (t, p)))
    denominator = np.sqrt(np.maximum((s * s - pp) * (s * s - tt), 0.0))
    return _ratio(trace * s - tp, denominator)


def _classification(name: str, formula: Callable[[Cells], np.ndarray], num_labels: int,
                    bounds: tuple[float, float]) -> Metric:
    k = max(int(num_labels), 2)

    def columns(predictions: Any, references: Any) -> Columns:
        _check_lengths(predictions, references)
        pred = np.asarray(predictions).reshape(-1).astype(np.int64)
        ref = np.asarray(references).reshape(-1).astype(np.int64)
        outside = (pred < 0) | (pred >= k) | (ref < 0) | (ref >= k)
        if outside.any():
            bad = np.concatenate([pred[(pred < 0) | (pred >= k)], ref[(ref < 0) | (ref >= k)]])[:3]
            raise ValueError(f"class indices {bad.tolist()} are outside [0, {k}) for metric {name!r}")
        return (ref * k + pred,)

    def statistic(codes: np.ndarray, axis: int = -1) -> np.ndarray:
        return formula(_cells(confusion(np.moveaxis(np.asarray(codes), axis, -1), k)))

    def sums(predictions: Any, references: Any) -> np.ndarray:
        # One-hot of the true class (k columns), then of the cells (r, j >= 1) (k (k - 1) columns); the cell
        # (r, 0) is the row total minus the others. The first k columns are equal for two prediction sets on the
        # same references, so a sign flip moves only the k (k - 1) others (resample.sign_flip_nulls drops the
        # columns where two sides never differ).
        (codes,) = columns(predictions, references)
        ref, pred = codes // k, codes % k
        out = np.zeros((len(codes), k * k))
        out[np.arange(len(codes)), ref] = 1.0
        off = pred >= 1
        out[np.flatnonzero(off), k + ref[off] * (k - 1) + pred[off] - 1] = 1.0
        return out

    def from_sums(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        rest = [[s[..., k + r * (k - 1) + j - 1] for j in range(1, k)] for r in range(k)]
        return formula([[s[..., r] - sum(rest[r]), *rest[r]] for r in range(k)])

    def correct(predictions: Any, references: Any) -> np.ndarray:
        return (np.asarray(predictions).reshape(-1) == np.asarray(references).reshape(-1)).astype(np.int64)

    return Metric(name, columns, statistic, correct=correct if name == "accuracy" else None, bounds=bounds,
                  sums=sums, from_sums=from_sums, sums_key=f"confusion:{k}", n_columns=1)


@register_metric("accuracy", "classification", higher_is_better=True)
def _accuracy_metric(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """Fraction of exact matches: ``mean(pred == ref)`` = ``tr C / sum C``."""
    return _classification("accuracy", _accuracy, num_labels, (0.0, 1.0))


@register_metric("f1", "classification", higher_is_better=True)
def _f1_metric(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """F1 of class 1 for two labels, ``2 TP / (2 TP + FP + FN)``; macro over the classes present for more."""
    return _classification("f1", _f1, num_labels, (0.0, 1.0))


@register_metric("matthews_correlation", "classification", higher_is_better=True)
def _mcc_metric(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """Matthews correlation, multiclass form (Gorodkin, 2004; GLUE's CoLA metric); 0.0 when undefined."""
    return _classification("matthews_correlation", _mcc, num_labels, (-1.0, 1.0))


def classification_metric(name: str, num_labels: int = 2) -> Metric:
    """Accuracy, F1 or Matthews correlation from int class indices in ``[0, num_labels)``."""
    return task_metric("classification", name, num_labels=num_labels)


# ---- regression ----------------------------------------------------------------------------------------------
def _pearson_from_moments(s1: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxx: np.ndarray, syy: np.ndarray,
                          sxy: np.ndarray) -> np.ndarray:
    """Pearson's r from weighted sums; NaN where either variance is 0 (to rounding: 1e-12 of the raw sum)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sxx - sx * sx / s1
        vy = syy - sy * sy / s1
        cov = sxy - sx * sy / s1
        undefined = (vx <= 1e-12 * np.abs(sxx)) | (vy <= 1e-12 * np.abs(syy)) | (s1 < 2)
        r = np.clip(cov / np.sqrt(np.where(undefined, 1.0, vx * vy)), -1.0, 1.0)
    return np.where(undefined, np.nan, r)


def pearson_last_axis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis; NaN where an input is constant (undefined)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    n = np.full(x.shape[:-1], float(x.shape[-1]))
    return _pearson_from_moments(n, x.sum(-1), y.sum(-1), (x * x).sum(-1), (y * y).sum(-1), (x * y).sum(-1))


def _regression_columns(predictions: Any, references: Any) -> Columns:
    _check_lengths(predictions, references)
    return (np.asarray(predictions, dtype=np.float64).reshape(-1),
            np.asarray(references, dtype=np.float64).reshape(-1))


@register_metric("pearson", "regression", higher_is_better=True)
def _pearson_metric(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """Pearson's r: ``sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2))``."""

    def statistic(pred: np.ndarray, ref: np.ndarray, axis: int = -1) -> np.ndarray:
        return pearson_last_axis(np.moveaxis(np.asarray(pred), axis, -1), np.moveaxis(np.asarray(ref), axis, -1))

    def sums(predictions: Any, references: Any) -> np.ndarray:
        x, y = _regression_columns(predictions, references)
        # Both shifted by the references' mean: one constant for every prediction set on these references, so
        # that two sets' per-example sums can be swapped (a shift by each set's own mean could not).
        shift = y.mean()
        x, y = x - shift, y - shift
        return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)

    def from_sums(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        return _pearson_from_moments(*(s[..., j] for j in range(6)))

    return Metric("pearson", _regression_columns, statistic, bounds=(-1.0, 1.0), sums=sums, from_sums=from_sums,
                  sums_key="moments", n_columns=2)


def weighted_midranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mid-ranks of ``values`` (n,) in each resample given by ``counts`` (B, n): ``(B, n)``.

    Sorted once; the examples that share a value form a group, the resample holds ``m_g`` copies of group ``g``,
    and its copies take the ranks ``M_{g-1} + 1 .. M_g`` (``M`` the cumulative count), mean ``M_g - (m_g - 1) / 2``,
    scipy's ``rankdata(method="average")`` of the resampled array.
    """
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    new_group = sorted_values[1:] != sorted_values[:-1]
    if new_group.all():  # no ties (continuous predictions): each example is its own group
        in_order = counts[:, order]
        mid = np.cumsum(in_order, axis=1) - (in_order - 1) / 2
        out = np.empty_like(mid)
        out[:, order] = mid
        return out
    starts = np.flatnonzero(np.r_[True, new_group])
    group_of = np.empty(len(values), dtype=np.int64)
    group_of[order] = np.cumsum(np.r_[False, new_group])
    per_group = np.add.reduceat(counts[:, order], starts, axis=1)
    mid = np.cumsum(per_group, axis=1) - (per_group - 1) / 2
    return mid[:, group_of]


@register_metric("spearmanr", "regression", higher_is_better=True)
def _spearman_metric(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """Spearman's rho: Pearson's r of the ranks, ties sharing the mean of the ranks they span."""
    from scipy import stats as sps

    def statistic(pred: np.ndarray, ref: np.ndarray, axis: int = -1) -> np.ndarray:
        pred, ref = np.moveaxis(np.asarray(pred), axis, -1), np.moveaxis(np.asarray(ref), axis, -1)
        return pearson_last_axis(sps.rankdata(pred, axis=-1), sps.rankdata(ref, axis=-1))

    def weighted(counts: np.ndarray, preds: Sequence[np.ndarray], ref: np.ndarray) -> np.ndarray:
        """(B, S): rho of each seed's predictions on each resample; the references ranked once for all seeds."""
        w = np.asarray(counts, dtype=np.float64)
        total = w.sum(-1)
        centre = ((total + 1) / 2)[:, None]  # the weighted mean of any resample's mid-ranks: centred sums are 0
        ry = weighted_midranks(np.asarray(ref, dtype=np.float64), w) - centre
        wry = w * ry
        syy, zero = (wry * ry).sum(-1), np.zeros_like(total)
        out = []
        for pred in preds:
            rx = weighted_midranks(np.asarray(pred, dtype=np.float64), w) - centre
            out.append(_pearson_from_moments(total, zero, zero, (w * rx * rx).sum(-1), syy, (wry * rx).sum(-1)))
        return np.stack(out, axis=-1)

    # Spearman re-ranks every resample: its n-row jackknife costs n^2 log n, so its intervals are percentile.
    return Metric("spearmanr", _regression_columns, statistic, bca=False, bounds=(-1.0, 1.0), weighted=weighted,
                  n_columns=2)


def regression_metric(name: str) -> Metric:
    """Pearson's r or Spearman's rho between float predictions and references."""
    return task_metric("regression", name)


# ---- token classification ------------------------------------------------------------------------------------
@lru_cache(maxsize=200_000)
def _entities(ids: tuple[int, ...], labels: tuple[str, ...]) -> frozenset:
    """seqeval's entities of one sentence of tag indices, memoised: most predicted sentences repeat (equal to the
    reference, or to another run's), so each distinct sequence is parsed once per process."""
    from seqeval.metrics.sequence_labeling import get_entities

    return frozenset(get_entities([labels[i] for i in ids]))


def entity_counts(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]],
                  labels: Sequence[str]) -> np.ndarray:
    """Per sentence ``[correct entities, predicted, reference, correct tokens, tokens]``, shape ``(n, 5)``."""
    _check_lengths(predictions, references)
    labels = tuple(labels)
    counts = np.zeros((len(references), 5), dtype=np.int64)
    for i, (p, r) in enumerate(zip(predictions, references)):
        p, r = tuple(int(t) for t in p) if not isinstance(p, list) else tuple(p), tuple(r)
        if len(p) != len(r):
            raise ValueError(f"sequence {i}: {len(p)} predicted tags but {len(r)} reference tags")
        r_ents = _entities(r, labels)
        if p == r:  # a sentence tagged exactly right (most of them): every entity and token is correct
            counts[i] = (len(r_ents), len(r_ents), len(r_ents), len(r), len(r))
            continue
        p_ents = _entities(p, labels)
        counts[i] = (len(p_ents & r_ents), len(p_ents), len(r_ents), sum(map(operator.eq, p, r)), len(r))
    return counts


_ENTITY_FORMULAS = {"f1": lambda c, p, g, ok, n: (2 * c, p + g), "precision": lambda c, p, g, ok, n: (c, p),
                    "recall": lambda c, p, g, ok, n: (c, g), "accuracy": lambda c, p, g, ok, n: (ok, n)}


def _entity(name: str, labels: Sequence[str] | None) -> Metric:
    if not labels:
        raise ValueError("token-classification metrics need the tag names (labels)")
    labels = tuple(labels)
    formula = _ENTITY_FORMULAS[name]

    def columns(predictions: Any, references: Any) -> Columns:
        return tuple(entity_counts(predictions, references, labels).T)

    def statistic(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return _ratio(*formula(*(np.moveaxis(np.asarray(x), axis, -1).sum(-1) for x in cols)))

    def sums(predictions: Any, references: Any) -> np.ndarray:
        return entity_counts(predictions, references, labels).astype(np.float64)

    def from_sums(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        return _ratio(*formula(*(s[..., j] for j in range(5))))

    key = "entities:" + hashlib.sha256(json.dumps(labels).encode()).hexdigest()[:16]
    return Metric(name, columns, statistic, bounds=(0.0, 1.0), sums=sums, from_sums=from_sums, sums_key=key, n_columns=5)


@register_metric("f1", "token_classification", higher_is_better=True)
def _entity_f1(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """seqeval's micro entity F1: ``2 c / (p + g)``."""
    return _entity("f1", labels)


@register_metric("precision", "token_classification", higher_is_better=True)
def _entity_precision(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """seqeval's micro entity precision: ``c / p``."""
    return _entity("precision", labels)


@register_metric("recall", "token_classification", higher_is_better=True)
def _entity_recall(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """seqeval's micro entity recall: ``c / g``."""
    return _entity("recall", labels)


@register_metric("accuracy", "token_classification", higher_is_better=True)
def _token_accuracy(num_labels: int = 2, labels: Sequence[str] | None = None) -> Metric:
    """Token accuracy over the labelled positions (seqeval's ``accuracy_score``)."""
    return _entity("accuracy", labels)


def entity_metric(name: str, labels: Sequence[str]) -> Metric:
    """seqeval's micro entity F1 / precision / recall, or token accuracy, from tag indices into ``labels``."""
    return task_metric("token_classification", name, labels=labels)


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
