"""Did the run learn? A paired, one-sided test of a run's predictions against the task's trivial predictor.

Mosbach et al. (2021, "On the Stability of Fine-tuning BERT", §4) call a fine-tuning run *failed* when it does
not beat the majority-class baseline and report failure rates; Chen et al. (2022, "Revisiting Parameter-Efficient
Tuning") find PEFT methods fail more often than full fine-tuning. A comparison of two failed runs measures
nothing about their methods, so every evaluation is checked here and the reports say which runs learned.

The trivial predictor is fitted on the *training* labels the run saw, never on the evaluated split:

* classification: the training split's majority class;
* token classification: every word gets the training split's most frequent word label ("O" for NER);
* regression: a constant at the training-label mean. A constant has no Pearson or Spearman correlation: its
  metric is *undefined* (``None``), never 0.0.

The test, on the same examples, one-sided (H1: the run is better), level ``alpha``:

* classification and token tasks: the paired sign-flip permutation test of the task's primary metric
  (:func:`adapterbench.stats.paired.paired_test`, ``p_greater``): each resample swaps the run's and the trivial
  predictor's answers on a random half of the examples (sentences for token tasks) and recomputes the metric;
* regression: two tests, both must reject: (1) the run's squared error is lower than the constant's (per example
  ``d_i = (c - y_i)^2 - (p_i - y_i)^2``, sign-flip test of ``mean(d)``, the same paired swap as above), and
  (2) the predictions correlate positively with the labels (Pearson, one-sided t test: ``scipy.stats.pearsonr(...,
  alternative="greater")``). (1) alone passes a run that only moved its constant towards the mean; (2) alone
  passes a near-constant output with a faint trend (the committed STS-B runs at Pearson 0.08).

A run that predicts exactly what the trivial predictor predicts has p = 1. The failure rate over seeds is a
binomial proportion with the exact Clopper-Pearson interval (:func:`learned_rate`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
N_RESAMPLES = 9_999
SEED = 20210407  # fixed: the same predictions always get the same verdict


@dataclass(frozen=True)
class Trivial:
    """The task's trivial predictor: ``value`` is a label id (classification, token) or the training mean."""

    kind: str
    value: Any
    description: str


@dataclass(frozen=True)
class LearnedCheck:
    """The outcome for one evaluation (split, point). ``share``: fraction of examples (words) where the run
    answers what the trivial predictor answers; regression: prediction std / label std."""

    learned: bool
    p_value: float
    value: float | None
    trivial_value: float | None
    trivial: str
    share: float
    detail: str

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def trivial_predictor(kind: str, train_labels: Sequence[Any], label_names: Sequence[str] | None = None) -> Trivial:
    """The trivial predictor fitted on ``train_labels`` (token tasks: per-word lists, -100 already dropped)."""
    names = list(label_names or [])

    def name(label: int) -> str:
        return repr(names[label]) if 0 <= label < len(names) else str(label)

    if kind == "regression":
        mean = float(np.mean(np.asarray(train_labels, dtype=np.float64)))
        return Trivial(kind, mean, f"a constant at the training mean {mean:.3g}")
    if kind == "token_classification":
        counts = Counter(int(t) for seq in train_labels for t in seq if int(t) >= 0)
        label = min(counts, key=lambda k: (-counts[k], k))
        return Trivial(kind, label, f"{name(label)} for every word")
    counts = Counter(int(t) for t in train_labels)
    label = min(counts, key=lambda k: (-counts[k], k))  # ties: the lower label id, deterministically
    return Trivial(kind, label, f"the majority class {name(label)}")


def trivial_predictions(trivial: Trivial, references: Sequence[Any]) -> list[Any]:
    """What the trivial predictor answers for each of ``references`` (same shapes)."""
    if trivial.kind == "token_classification":
        return [[trivial.value] * len(seq) for seq in references]
    return [trivial.value] * len(references)


def _share(trivial: Trivial, predictions: Sequence[Any]) -> float:
    if trivial.kind == "token_classification":
        words = [t for seq in predictions for t in seq]
        return float(np.mean([t == trivial.value for t in words])) if words else 1.0
    return float(np.mean([p == trivial.value for p in predictions])) if len(predictions) else 1.0


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def sign_flip_p(differences: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> float:
    """One-sided p of H1 ``mean(d) > 0`` by random sign flips of the paired differences ``d``:
    ``(1 + #{mean(s d) >= mean(d)}) / (1 + B)``; all-zero differences give 1."""
    d = np.asarray(differences, dtype=np.float64)
    if not d.size or not np.any(d):
        return 1.0
    observed = d.mean()
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    chunk = max(1, min(n_resamples, 2_000_000 // d.size))  # [chunk, n] float64 matrices of about 16 MB
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        signs = rng.integers(0, 2, size=(k, d.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(signs @ d / d.size >= observed - 1e-12))
        done += k
    return (1 + hits) / (1 + n_resamples)


def check_regression(predictions: Sequence[float], references: Sequence[float], trivial: Trivial,
                     alpha: float = ALPHA) -> LearnedCheck:
    """Regression: squared error below the constant's and Pearson above 0, both one-sided at ``alpha``."""
    p, y = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    improvement = (trivial.value - y) ** 2 - (p - y) ** 2
    p_error = sign_flip_p(improvement)
    constant = len(p) < 3 or np.ptp(p) == 0 or np.ptp(y) == 0
    pearson = None if constant else sps.pearsonr(p, y, alternative="greater")
    r = None if pearson is None else float(np.clip(pearson.statistic, -1, 1))
    p_corr = 1.0 if pearson is None else float(pearson.pvalue)
    p_value = max(p_error, p_corr)
    spread = float(np.std(p) / np.std(y)) if np.std(y) > 0 else 0.0
    learned = p_value < alpha
    if learned:
        detail = f"learned: Pearson {r:.3f}, squared error below {trivial.description}'s (p {_p(p_value)})"
    else:
        shown = "undefined" if r is None else f"{r:.3f}"
        detail = (f"did not learn: prediction std {np.std(p):.3g} against a label std of {np.std(y):.3g} "
                  f"(Pearson {shown}; not better than {trivial.description}, p {_p(p_value)})")
    return LearnedCheck(learned, p_value, r, None, trivial.description, spread, detail)


def check_labels(metric: Any, predictions: Sequence[Any], references: Sequence[Any], trivial: Trivial,
                 alpha: float = ALPHA) -> LearnedCheck:
    """Classification and token tasks: the paired permutation test of the primary ``metric`` against the
    trivial predictor (:class:`adapterbench.stats.metrics.Metric`)."""
    from adapterbench.stats.paired import paired_test

    baseline = trivial_predictions(trivial, references)
    value = _finite(metric.value(predictions, references))
    trivial_value = _finite(metric.value(baseline, references))
    share = _share(trivial, predictions)
    # identical answers give p = 1 (paired_test's own rule for identical predictions)
    p_value = float(paired_test(metric, predictions, baseline, references, test="permutation",
                                n_permutations=N_RESAMPLES, interval=False, rng=SEED).p_greater)
    learned = p_value < alpha
    unit = "words" if trivial.kind == "token_classification" else "examples"
    scores = f"{metric.name} {_v(value)} against {_v(trivial_value)}"
    if learned:
        detail = f"learned: {scores} for {trivial.description} (p {_p(p_value)})"
    else:
        detail = (f"did not learn: predicts {trivial.description} for {share:.1%} of {unit} "
                  f"({scores}, p {_p(p_value)})")
    return LearnedCheck(learned, p_value, value, trivial_value, trivial.description, share, detail)


def check(metric: Any, kind: str, predictions: Sequence[Any], references: Sequence[Any], trivial: Trivial,
          alpha: float = ALPHA) -> LearnedCheck:
    """The check for one evaluation of a task of ``kind``."""
    if kind == "regression":
        return check_regression(predictions, references, trivial, alpha)
    return check_labels(metric, predictions, references, trivial, alpha)


@dataclass(frozen=True)
class LearnedRate:
    """``learned`` of ``runs`` seeds learned; ``low``/``high``: exact (Clopper-Pearson) interval of the rate."""

    learned: int
    runs: int
    rate: float | None
    low: float | None
    high: float | None

    def text(self) -> str:
        return f"{self.learned}/{self.runs}"


def learned_rate(learned: int, runs: int, level: float = 0.95) -> LearnedRate:
    """The proportion of runs that learned with its exact binomial interval
    (``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``, Clopper & Pearson 1934)."""
    if runs <= 0:
        return LearnedRate(learned, runs, None, None, None)
    if not 0 <= learned <= runs:
        raise ValueError(f"learned={learned} is not within 0..{runs}")
    ci = sps.binomtest(learned, runs).proportion_ci(confidence_level=level, method="exact")
    return LearnedRate(learned, runs, learned / runs, float(ci.low), float(ci.high))


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _v(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
