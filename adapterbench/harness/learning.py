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


def source_train_labels(task: TaskSpec, record_training: dict[str, Any], data_dir: str | None) -> list[Any]:
    """The training labels a recorded run trained on, read again from the data (no tokenizer: labels only).

    The subset is the one :func:`adapterbench.harness.run.split_train` draws from the record's own settings, so a
    record written before the learned check can be checked against the same trivial predictor
    (:func:`backfill`). Token tasks: every word's tag (a run truncated at ``max_length`` saw a few fewer).
    """
    from adapterbench.harness.run import split_train
    from adapterbench.harness.settings import TRAIN_KEYS, TrainSettings
    from adapterbench.tasks.data import load_examples
    from adapterbench.tasks.encode import example_labels

    examples = load_examples(task, task.train_split, data_dir)
    settings = TrainSettings(**{k: v for k, v in record_training.items() if k in TRAIN_KEYS and k != "device"})
    ids, _ = split_train(len(examples), settings)
    return example_labels(task, [examples[i] for i in ids])


def backfill(record: dict[str, Any], sidecar: dict[str, Any], task: TaskSpec, data_dir: str | None,
             when: str) -> LearnedPart:
    """The ``learned`` part of a record written before the check, from its predictions sidecar and its data;
    marked ``backfilled`` with the date (the run itself is not repeated)."""
    splits = sidecar.get("splits") or {}
    predictions: dict[str, dict[str, list[Any]]] = {}
    for split, part in splits.items():
        for point, values in (part.get("predictions") or {}).items():
            predictions.setdefault(point, {})[split] = values
    references = {split: part.get("references") or [] for split, part in splits.items()}
    if "train_holdout" in splits:
        task = task.derive(eval_splits=tuple(splits))
    train = [{"labels": labels} for labels in source_train_labels(task, record.get("training") or {}, data_dir)]
    part = learned_part(task, train, predictions, references)
    part["backfilled"] = when
    return part
