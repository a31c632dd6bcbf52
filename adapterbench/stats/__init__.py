"""Statistics a reviewer accepts: intervals, paired tests, corrections, the answer, nightly checks.

Pure functions on per-example predictions and per-seed values; plain dataclasses out (reports render them).

``metrics``    metrics as per-example columns plus a statistic vectorised over resamples
``intervals``  t interval over seeds, bootstrap over examples, the reported one (:func:`estimate`)
``paired``     paired bootstrap interval, sign-flip permutation test, McNemar; seeds paired by key
``multiple``   Holm–Bonferroni and Benjamini–Hochberg
``answer``     best / tied / Pareto per task, every pair, mean rank and GLUE-style average across tasks,
               paper vs measured
``nightly``    regression decision, exact identity, McNemar power, speed and memory bands
"""

from adapterbench.stats.answer import (
    Answer,
    OverallRow,
    PairAnswer,
    PaperDelta,
    TaskAnswer,
    TaskRuns,
    VariantAnswer,
    VariantRuns,
    answer,
    answer_pairs,
    answer_task,
    paper_delta,
    pareto_set,
    permutations_for,
    seeds_agree,
)
from adapterbench.stats.intervals import Estimate, Interval, estimate, example_bootstrap, seed_interval
from adapterbench.stats.metrics import (
    Metric,
    classification_metric,
    entity_metric,
    function_metric,
    metric_for_task,
    regression_metric,
    task_metric,
)
from adapterbench.stats.multiple import adjust, holm, significant
from adapterbench.stats.nightly import (
    Band,
    BandDecision,
    RegressionDecision,
    band,
    band_check,
    discordance_rate,
    identical,
    mcnemar_min_detectable_drop,
    mcnemar_power,
    regression_decision,
)
from adapterbench.stats.paired import PairedResult, common_examples, mcnemar, paired_test, seed_paired_test

__all__ = [
    "Answer", "Band", "BandDecision", "Estimate", "Interval", "Metric", "OverallRow", "PairAnswer", "PairedResult",
    "PaperDelta", "RegressionDecision", "TaskAnswer", "TaskRuns", "VariantAnswer", "VariantRuns", "adjust",
    "answer", "answer_pairs", "answer_task", "band", "band_check", "classification_metric", "common_examples",
    "discordance_rate", "entity_metric", "estimate", "example_bootstrap", "function_metric", "holm", "identical",
    "mcnemar", "mcnemar_min_detectable_drop", "mcnemar_power", "metric_for_task", "paired_test", "paper_delta",
    "pareto_set", "permutations_for", "regression_decision", "regression_metric", "seed_interval",
    "seed_paired_test", "seeds_agree", "significant", "task_metric",
]
