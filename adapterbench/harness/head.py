"""The task head's start, the same for every variant: a fresh regression head starts at the training-label mean.

Why: a regression head initialised by transformers predicts about 0 while STS-B's labels have mean 2.7 (range
0-5), so the first steps' loss (9-10) is all offset. The head trains at the adapter's learning rate (5e-4 for
LoRA), too slow to absorb the offset, and the adapted representation collapses to a constant: on the committed
CPU leaderboard LoRA+, LoRA and PEFT's LoRA predicted a constant on 5, 3 and 3 of 5 STS-B seeds, their final
training loss (2.09-2.21) the label variance. Starting the output bias at the mean removes the offset before
the first step (measured: README, "runs that learned"). It changes nothing for a model that is already at the mean,
and nothing for classification or token tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn


def output_layer(model: nn.Module, fresh: set[str], out_features: int = 1) -> tuple[str, nn.Linear] | None:
    """The freshly initialised linear layer with ``out_features`` outputs that produces the logits (the last such
    one in module order: BERT's ``classifier``, RoBERTa's ``classifier.out_proj``), or None."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == out_features and f"{name}.weight" in fresh:
            found = (name, module)
    return found


def start_at_mean(model: nn.Module, fresh: set[str], targets: Sequence[float]) -> float | None:
    """Set a fresh regression head's output bias to ``mean(targets)``; the value set, or None when the model has
    no fresh output layer with a bias (a folder with a trained head, a bias-free ``score`` layer)."""
    layer = output_layer(model, fresh)
    if layer is None or layer[1].bias is None:
        return None
    mean = float(np.mean(np.asarray(targets, dtype=np.float64)))
    layer[1].bias.data.fill_(mean)
    return mean
