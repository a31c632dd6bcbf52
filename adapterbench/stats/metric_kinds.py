"""The built-in metrics, registered in :mod:`adapterbench.stats.metrics` (the formulas are in its docstring).

One section per task kind: classification from a confusion matrix, regression (Pearson from moments, Spearman
from mid-ranks), token classification from seqeval's entities. Each ``@register_metric`` builder returns a
:class:`~adapterbench.stats.metrics.Metric` with its columns form and, where one exists, its sufficient
statistics. Imported by :mod:`adapterbench.stats.metrics` (import that module, not this one).
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from adapterbench.stats.metrics import Columns, Metric, _check_lengths, _ratio, _rows, register_metric


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
