"""Task metrics (computed by scikit-learn, scipy and seqeval) against values worked out by hand on small cases:
each expected number below is derived in the comment next to it, not by calling a library."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapterbench.schema import metric_direction
from adapterbench.tasks import METRIC_DIRECTION, METRICS_BY_KIND, TASKS, compute_metrics
from adapterbench.tasks.conll import CONLL_TAGS
from adapterbench.tasks.metrics import accuracy, f1, matthews_correlation, pearson, spearmanr

# Binary: TP = 2 (positions 0, 1), TN = 1 (position 4), FP = 1 (position 3), FN = 1 (position 2).
BINARY_REF, BINARY_PRED = np.array([1, 1, 1, 0, 0]), np.array([1, 1, 0, 1, 0])
BINARY = {"accuracy": 3 / 5, "f1": 2 * 2 / (2 * 2 + 1 + 1),
          # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3 * 3 * 2 * 2) = 1 / 6
          "matthews_correlation": 1 / 6}
# Three classes. Per class (TP, FP, FN): 0: (1, 1, 1) -> F1 1/2; 1: (2, 1, 0) -> 4/5; 2: (1, 0, 1) -> 2/3.
# Confusion rows true, columns predicted: [[1, 1, 0], [0, 2, 0], [1, 0, 1]]: t = (2, 2, 2), p = (2, 3, 1),
# c = 4, s = 6: MCC = (4 * 6 - (4 + 6 + 2)) / sqrt((36 - (4 + 9 + 1)) (36 - 12)) = 12 / sqrt(22 * 24).
MULTI_REF, MULTI_PRED = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
MULTI = {"accuracy": 4 / 6, "f1": (1 / 2 + 4 / 5 + 2 / 3) / 3, "matthews_correlation": 12 / math.sqrt(22 * 24)}


def test_binary_metrics_by_hand():
    assert accuracy(BINARY_PRED, BINARY_REF) == pytest.approx(BINARY["accuracy"])
    assert f1(BINARY_PRED, BINARY_REF) == pytest.approx(BINARY["f1"])
    assert matthews_correlation(BINARY_PRED, BINARY_REF) == pytest.approx(BINARY["matthews_correlation"])
    # Swapping the classes changes F1 (of class 1: TP 1, FP 1, FN 1 -> 1/2) but not MCC or accuracy.
    assert f1(1 - BINARY_PRED, 1 - BINARY_REF) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert matthews_correlation(1 - BINARY_PRED, 1 - BINARY_REF) == pytest.approx(1 / 6)


def test_multiclass_metrics_by_hand():
    assert accuracy(MULTI_PRED, MULTI_REF) == pytest.approx(MULTI["accuracy"])
    assert f1(MULTI_PRED, MULTI_REF, num_labels=3) == pytest.approx(MULTI["f1"])
    assert matthews_correlation(MULTI_PRED, MULTI_REF) == pytest.approx(MULTI["matthews_correlation"])


def test_degenerate_classification_is_zero_not_nan():
    ref = np.array([0, 1, 0, 1])
    constant = np.zeros(4, dtype=int)
    assert matthews_correlation(constant, ref) == 0.0  # a constant marginal: MCC undefined -> 0
    assert f1(constant, np.zeros(4, dtype=int)) == 0.0  # no positive anywhere: F1 undefined -> 0
    assert matthews_correlation(ref, ref) == pytest.approx(1.0)
    assert matthews_correlation(1 - ref, ref) == pytest.approx(-1.0)


def test_correlations_by_hand():
    # x = (1, 2, 3), y = (1, 2, 4): deviations (-1, 0, 1) and (-4/3, -1/3, 5/3); sum of products 3,
    # sums of squares 2 and 14/3: r = 3 / sqrt(2 * 14 / 3).
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])) == pytest.approx(3 / math.sqrt(28 / 3))
    # Ties share their mean rank: x = (10, 20, 20, 30) -> (1, 2.5, 2.5, 4); y = (1, 3, 2, 4) -> (1, 3, 2, 4).
    # Deviations from 2.5: (-1.5, 0, 0, 1.5) and (-1.5, 0.5, -0.5, 1.5): 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert spearmanr(np.array([10, 20, 20, 30]), np.array([1, 3, 2, 4])) == pytest.approx(math.sqrt(0.9))
    # Monotone but not linear: every rank agrees.
    assert spearmanr(np.array([1.0, 8.0, 27.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(1.0)
    assert pearson(np.array([3.0, 5.0]), np.array([1.0, -1.0])) == pytest.approx(-1.0)


def test_correlations_of_a_constant_or_a_single_value_are_undefined_not_zero():
    # A correlation with a constant does not exist: NaN (stored as null in a record), never a made-up 0.
    ref = np.array([1.0, 2.0, 3.0])
    assert math.isnan(pearson(np.full(3, 2.5), ref))
    assert math.isnan(spearmanr(ref, np.full(3, 2.5)))
    assert math.isnan(pearson(np.array([1.0]), np.array([2.0])))
    scores = compute_metrics(TASKS.get("stsb"), np.full(3, 2.5), ref)
    assert math.isnan(scores["pearson"]) and math.isnan(scores["spearmanr"])
    assert pearson(np.array([1.0, 2.0, 3.5]), ref) > 0.9  # a varying input next to it is defined


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
    # A perfect tagging, and one that finds nothing.
    assert compute_metrics(conll, refs, refs)["f1"] == pytest.approx(1.0)
    assert compute_metrics(conll, _tags(["O"] * 4, ["O"] * 3), refs)["f1"] == 0.0



@pytest.mark.parametrize("name", ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"])
def test_compute_metrics_for_classification_tasks(name):
    task = TASKS.get(name)
    ref, pred, expected = ((BINARY_REF, BINARY_PRED, BINARY) if task.num_labels == 2
                           else (MULTI_REF, MULTI_PRED, MULTI))  # MNLI: three labels, macro F1
    scores = compute_metrics(task, pred, ref)
    assert list(scores) == list(task.metrics)
    for metric, value in scores.items():
        assert value == pytest.approx(expected[metric]), metric


def test_compute_metrics_for_stsb():
    task = TASKS.get("stsb")
    # Ranks of the predictions (1, 3, 2, 4) against references ranked (1, 2.5, 2.5, 4): see test_correlations.
    scores = compute_metrics(task, np.array([1.0, 3.0, 2.0, 4.0]), np.array([10.0, 20.0, 20.0, 30.0]))
    assert scores == {"pearson": pytest.approx(math.sqrt(0.9)), "spearmanr": pytest.approx(math.sqrt(0.9))}


def test_compute_metrics_rejects_mismatched_inputs():
    task = TASKS.get("sst2")
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metrics(task, [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="sequence 0"):
        compute_metrics(TASKS.get("conll2003"), [[0, 0]], [[0]])


def test_every_metric_a_task_computes_has_a_direction_in_the_schema():
    # The table is written by hand (adapterbench.schema.METRIC_DIRECTIONS): a metric added to a task kind without
    # a direction would be ranked by its name alone.
    for names in METRICS_BY_KIND.values():
        for name in names:
            assert METRIC_DIRECTION.get(name) == "higher", name
    for name in TASKS.names():
        for metric in TASKS.get(name).metrics:
            assert metric in METRIC_DIRECTION, (name, metric)
    assert metric_direction("validation/loss") == "lower" and metric_direction("test/rmse") == "lower"
    assert metric_direction("validation/accuracy") == "higher" and metric_direction("validation/bleu") == "higher"
