"""Task metrics against independent implementations (scikit-learn, scipy, seqeval) and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from seqeval import metrics as seqeval_metrics
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from adapterbench.tasks import METRIC_DIRECTION, METRICS_BY_KIND, TASKS, compute_metrics
from adapterbench.tasks.conll import CONLL_TAGS
from adapterbench.tasks.metrics import (
    accuracy,
    average_ranks,
    f1,
    matthews_correlation,
    pearson,
    spearmanr,
)

TOL = 1e-12


def _labels(n: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, size=n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_classification_metrics_match_sklearn(seed):
    ref = _labels(200, 2, seed)
    # Predictions that agree with the references most of the time, so the scores are far from trivial.
    pred = np.where(np.random.default_rng(seed + 100).random(200) < 0.7, ref, 1 - ref)
    assert accuracy(pred, ref) == pytest.approx(accuracy_score(ref, pred), abs=TOL)
    assert f1(pred, ref) == pytest.approx(f1_score(ref, pred), abs=TOL)
    assert matthews_correlation(pred, ref) == pytest.approx(matthews_corrcoef(ref, pred), abs=TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_metrics_match_sklearn(seed):
    ref = _labels(300, 3, seed)
    pred = np.where(np.random.default_rng(seed + 7).random(300) < 0.5, ref, _labels(300, 3, seed + 9))
    assert f1(pred, ref, num_labels=3) == pytest.approx(f1_score(ref, pred, average="macro"), abs=TOL)
    assert matthews_correlation(pred, ref) == pytest.approx(matthews_corrcoef(ref, pred), abs=TOL)


def test_binary_metrics_by_hand():
    # TP = 2 (positions 0, 1), TN = 1 (position 4), FP = 1 (position 3), FN = 1 (position 2).
    ref = np.array([1, 1, 1, 0, 0])
    pred = np.array([1, 1, 0, 1, 0])
    assert accuracy(pred, ref) == pytest.approx(3 / 5)
    assert f1(pred, ref) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3 * 3 * 2 * 2) = 1 / 6
    assert matthews_correlation(pred, ref) == pytest.approx(1 / 6)


def test_degenerate_classification_is_zero_like_sklearn():
    ref = np.array([0, 1, 0, 1])
    constant = np.zeros(4, dtype=int)
    assert matthews_correlation(constant, ref) == 0.0 == matthews_corrcoef(ref, constant)
    assert f1(constant, np.zeros(4, dtype=int)) == 0.0
    assert matthews_correlation(ref, ref) == pytest.approx(1.0)
    assert matthews_correlation(1 - ref, ref) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_metrics_match_scipy(seed):
    rng = np.random.default_rng(seed)
    ref = np.round(rng.uniform(0, 5, 150) * 4) / 4  # quarter steps, like STS-B scores: many ties
    pred = np.round(ref + rng.normal(0, 1.0, 150), 1)  # rounded: ties in the predictions too
    assert pearson(pred, ref) == pytest.approx(stats.pearsonr(pred, ref).statistic, abs=1e-10)
    assert spearmanr(pred, ref) == pytest.approx(stats.spearmanr(pred, ref).statistic, abs=1e-10)


def test_average_ranks_by_hand():
    np.testing.assert_array_equal(average_ranks(np.array([10, 20, 20, 30])), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 3.0, 2.0])), [4, 1, 4, 4, 2])
    np.testing.assert_array_equal(average_ranks(np.array([7])), [1])


def test_correlations_of_a_constant_are_zero_not_nan():
    ref = np.array([1.0, 2.0, 3.0])
    assert pearson(np.full(3, 2.5), ref) == 0.0
    assert spearmanr(np.full(3, 2.5), ref) == 0.0
    assert pearson(2 * ref + 1, ref) == pytest.approx(1.0)
    assert spearmanr(ref ** 3, ref) == pytest.approx(1.0)  # monotone but not linear


def _tags(*sequences):
    index = {tag: i for i, tag in enumerate(CONLL_TAGS)}
    return [[index[t] for t in seq] for seq in sequences]


def test_entity_f1_by_hand():
    conll = TASKS.get("conll2003")
    refs = _tags(["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"])
    preds = _tags(["B-PER", "O", "O", "B-LOC"],  # PER cut short: wrong; LOC: right
                  ["B-ORG", "I-ORG", "B-MISC"])  # ORG: right; MISC: spurious
    scores = compute_metrics(conll, preds, refs)
    # 4 predicted entities, 3 reference entities, 2 correct.
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))  # = 4/7
    assert scores["accuracy"] == pytest.approx(5 / 7)  # token accuracy: 2 of 7 tags wrong
    assert list(scores) == list(conll.metrics)


def test_entity_scores_match_seqeval_called_directly():
    conll = TASKS.get("conll2003")
    rng = np.random.default_rng(0)
    refs, preds = [], []
    for _ in range(60):
        length = int(rng.integers(3, 12))
        ref = [int(t) for t in rng.integers(0, len(CONLL_TAGS), length)]
        pred = [t if rng.random() < 0.8 else int(rng.integers(0, len(CONLL_TAGS))) for t in ref]
        refs.append(ref)
        preds.append(pred)
    scores = compute_metrics(conll, preds, refs)
    ref_tags = [[CONLL_TAGS[i] for i in s] for s in refs]
    pred_tags = [[CONLL_TAGS[i] for i in s] for s in preds]
    assert scores["f1"] == pytest.approx(seqeval_metrics.f1_score(ref_tags, pred_tags), abs=TOL)
    assert scores["precision"] == pytest.approx(seqeval_metrics.precision_score(ref_tags, pred_tags), abs=TOL)
    assert scores["recall"] == pytest.approx(seqeval_metrics.recall_score(ref_tags, pred_tags), abs=TOL)
    assert scores["accuracy"] == pytest.approx(seqeval_metrics.accuracy_score(ref_tags, pred_tags), abs=TOL)
    assert 0.0 < scores["f1"] < 1.0


@pytest.mark.parametrize("name", ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"])
def test_compute_metrics_for_classification_tasks(name):
    task = TASKS.get(name)
    ref = _labels(120, task.num_labels, 3)
    pred = np.where(np.random.default_rng(4).random(120) < 0.75, ref, _labels(120, task.num_labels, 5))
    scores = compute_metrics(task, pred, ref)
    assert list(scores) == list(task.metrics)
    expected = {"accuracy": accuracy_score(ref, pred), "matthews_correlation": matthews_corrcoef(ref, pred),
                "f1": f1_score(ref, pred) if task.num_labels == 2 else f1_score(ref, pred, average="macro")}
    for metric, value in scores.items():
        assert value == pytest.approx(expected[metric], abs=TOL), metric


def test_compute_metrics_for_stsb():
    task = TASKS.get("stsb")
    ref = np.array([0.0, 1.2, 2.5, 3.8, 5.0, 4.1])
    pred = np.array([0.5, 1.0, 2.0, 4.0, 4.5, 4.6])
    scores = compute_metrics(task, pred, ref)
    assert set(scores) == {"pearson", "spearmanr"}
    assert scores["pearson"] == pytest.approx(stats.pearsonr(pred, ref).statistic, abs=1e-10)
    assert scores["spearmanr"] == pytest.approx(stats.spearmanr(pred, ref).statistic, abs=1e-10)
    assert all(isinstance(v, float) and math.isfinite(v) for v in scores.values())


def test_compute_metrics_rejects_mismatched_inputs():
    task = TASKS.get("sst2")
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metrics(task, [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="sequence 0"):
        compute_metrics(TASKS.get("conll2003"), [[0, 0]], [[0]])


def test_metric_direction_covers_every_metric():
    every = {m for names in METRICS_BY_KIND.values() for m in names}
    assert set(METRIC_DIRECTION) == every
    assert set(METRIC_DIRECTION.values()) == {"max"}
    for name in TASKS.names():
        assert set(TASKS.get(name).metrics) <= set(METRIC_DIRECTION)
