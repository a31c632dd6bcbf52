"""Statistics a reviewer accepts: intervals, paired tests, corrections, the answer, nightly checks.

Pure functions on per-example predictions and per-seed values; plain dataclasses out (reports render them).

``metrics``    the metric registry: each metric once, with its direction, range and resampling forms
               (the built-ins in ``metric_kinds``); ``cache``: their per-example statistics, once per content
``family``     a task's paired tests together, settled against Monte-Carlo error
``resample``   bootstrap counts and sign flips as shared numpy arrays; resampled sufficient statistics
``intervals``  t interval over seeds, bootstrap over examples, the reported one (:func:`estimate`)
``paired``     paired bootstrap interval, sign-flip permutation test, McNemar; seeds paired by key
``multiple``   Holm–Bonferroni and Benjamini–Hochberg
``answer``     best / tied / Pareto per task, every pair, mean rank and GLUE-style average across tasks,
               paper vs measured
``nightly``    regression decision, exact identity, McNemar power, speed and memory bands

The names below are imported on first use (PEP 562), so that the record schema can read the metric registry
without importing scipy.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_WHERE = {
    "answer": ("Answer", "OverallRow", "PairAnswer", "PaperDelta", "TaskAnswer", "TaskRuns", "VariantAnswer",
               "VariantRuns", "answer", "answer_pairs", "answer_task", "paper_delta", "pareto_set",
               "permutations_for", "seeds_agree"),
    "intervals": ("Estimate", "Interval", "estimate", "example_bootstrap", "seed_interval"),
    "metrics": ("Metric", "classification_metric", "entity_metric", "function_metric", "metric_for_task",
                "regression_metric", "task_metric", "register_metric"),
    "multiple": ("adjust", "holm", "significant"),
    "nightly": ("Band", "BandDecision", "RegressionDecision", "band", "band_check", "discordance_rate", "identical",
                "mcnemar_min_detectable_drop", "mcnemar_power", "regression_decision"),
    "paired": ("PairedResult", "common_examples", "mcnemar", "paired_test", "seed_paired_test"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'adapterbench.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"adapterbench.stats.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Loading the submodule ``answer`` must not replace the function ``answer`` (the package's API, as when
    the names were imported eagerly)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _MODULE_OF and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
