"""The record's ``learned`` part: every evaluation of a run checked against the task's trivial predictor.

The check itself is :mod:`adapterbench.stats.learned`; this module fits the trivial predictor on the examples the
run trained on and applies the check to each evaluation the loop kept (each split, each evaluation point).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapterbench.schema import LearnedPart
from adapterbench.stats.learned import ALPHA, check, trivial_predictor
from adapterbench.stats.metrics import metric_for_task
from adapterbench.tasks.encode import IGNORE_INDEX
from adapterbench.tasks.spec import TaskSpec


def train_labels(task: TaskSpec, train: Sequence[dict[str, Any]]) -> list[Any]:
    """The labels the run trained on; token tasks: per example, the scored words' labels only."""
    if task.kind == "token_classification":
        return [[int(t) for t in e["labels"] if int(t) != IGNORE_INDEX] for e in train]
    return [e["labels"] for e in train]


def learned_part(task: TaskSpec, train: Sequence[dict[str, Any]], predictions: dict[str, dict[str, list[Any]]],
                 references: dict[str, list[Any]], alpha: float = ALPHA) -> LearnedPart:
    """``{"learned", "split", "detail", "trivial", "alpha", "points": {point key: {split: check}}}``.

    The top-level outcome is the primary split's for the model as trained (point key ``"final"``), which is what
    the run's primary metric reports. ``predictions`` and ``references`` are the loop's (``LoopResult``).
    """
    trivial = trivial_predictor(task.kind, train_labels(task, train), task.labels)
    metric = metric_for_task(task)
    points = {key: {split: check(metric, task.kind, preds, references[split], trivial, alpha).as_record()
                    for split, preds in per_split.items()}
              for key, per_split in predictions.items()}
    split = task.primary_split if task.primary_split in points.get("final", {}) else next(
        iter(points.get("final", {})), None)
    primary = points.get("final", {}).get(split or "", {})
    return {"learned": primary.get("learned"), "split": split, "detail": primary.get("detail"),
            "trivial": trivial.description, "alpha": alpha, "points": points}
