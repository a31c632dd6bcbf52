"""Batching: length-grouped batches with dynamic padding.

Padding every batch to ``max_length`` wastes most of the compute on short GLUE sentences, so batches are padded
only to their longest sequence, and training batches are drawn from length-sorted megabatches (the recipe of
``transformers``' ``LengthGroupedSampler``) so that sequences in one batch have similar lengths while the order
of batches stays random.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, megabatch_factor: int = 50
                           ) -> list[list[int]]:
    """Indices of the training examples grouped into batches of similar length.

    Shuffle, cut into megabatches of ``batch_size * megabatch_factor``, sort each by length (longest first),
    cut into batches, then shuffle the batches. Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * megabatch_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches: sorted by length to minimise padding (metrics do not depend on the order)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a list of encoded examples to the longest one.

    Returns ``input_ids`` and ``attention_mask`` of shape (batch, longest), ``token_type_ids`` when present, and
    ``labels``: shape (batch,) for sequence tasks (long for classes, float for regression) or (batch, longest)
    with -100 on padding for token classification.
    """
    longest = max(len(e["input_ids"]) for e in examples)
    batch_size = len(examples)
    input_ids = torch.full((batch_size, longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch_size, longest), dtype=torch.long)
    has_types = "token_type_ids" in examples[0]
    token_type_ids = torch.zeros((batch_size, longest), dtype=torch.long) if has_types else None
    token_labels = isinstance(examples[0]["labels"], (list, tuple))
    if token_labels:
        labels = torch.full((batch_size, longest), -100, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = 1
        if token_type_ids is not None:
            token_type_ids[row, :n] = torch.tensor(example["token_type_ids"], dtype=torch.long)
        if token_labels:
            labels[row, :n] = torch.tensor(example["labels"], dtype=torch.long)
    if not token_labels:
        first = examples[0]["labels"]
        dtype = torch.float if isinstance(first, float) else torch.long
        labels = torch.tensor([e["labels"] for e in examples], dtype=dtype)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return batch


def iterate(examples: list[dict[str, Any]], batches: list[list[int]], pad_token_id: int
            ) -> Iterator[dict[str, torch.Tensor]]:
    for indices in batches:
        yield collate([examples[i] for i in indices], pad_token_id)
