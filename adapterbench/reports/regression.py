"""The decisions of ``bench compare`` for one configuration at one evaluation point, from the runs' records and
their per-example prediction sidecars. :mod:`adapterbench.reports.compare` pairs the runs and renders the table.

**Metric** (primary metric, in the task's direction). With a predictions sidecar on both sides:

* the seeds both sides have are paired by seed, and the evaluation examples by id: the examples every paired
  run scored (:func:`adapterbench.stats.common_examples`), with references that must agree on both sides (other
  references mean other data: not comparable);
* :func:`adapterbench.stats.regression_decision` tests "current is worse" one-sided on those examples (McNemar
  for single-seed accuracy, else the paired sign-flip permutation test over examples, all seeds at once) and
  gives the change ``current - baseline`` with its paired-bootstrap interval;
* the family: the p-values of every tested line of one comparison are corrected together (Holm by default,
  :func:`adapterbench.stats.adjust`), so that a comparison of ``m`` lines that all changed for harmless
  numeric reasons is red with probability at most ``alpha``, not ``1 - (1 - alpha)^m``;
* **regressed** iff ``p_worse (corrected) < alpha`` and ``worsening >= min_effect``; **improved**
  symmetrically; else unchanged.

The paired test's null hypothesis is "both sides' predictions are exchangeable on each example": noise at the
level of examples. Reruns whose training is unstable (a seed that sometimes fails to learn) differ by more than
that; ``benchmarks/nightly_noise.py`` measures how often reseeded reruns of one configuration are flagged.

Without a sidecar on either side (schema v1 records such as ``results/baselines``), or when the records' metric
changed although their predictions are identical (scoring changed), the **threshold rule** of earlier versions
decides, and the row says so: ``drop > max(metric_abs_tol, metric_std_k * std_baseline)`` on the recorded
values (std over the baseline's seeds; 0 with one seed).

**Exact check**: ``identical`` when, for every paired seed, the predictions of this point on every evaluated
split (with their example ids and references) and the recorded metrics of the point are equal; else
``changed``. Same code, environment and seed reproduce a CPU run bit for bit, so ``changed`` is a numeric change.

**Speed and memory** (:func:`adapterbench.stats.band_check`): only between equal environment fingerprints
(``environment.fingerprint.id``: device model, threads, library versions, precision). Step time: the per-step
times of the baseline's runs (``steps.time_s``, warm-up steps dropped) make a band, median ± max(k × MAD,
tolerance × median); the current median step time above it fails. Peak memory: the band of the baseline runs'
peaks (one per seed), floor ``memory_tolerance``. Across fingerprints both are shown as information only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from adapterbench import schema
from adapterbench.errors import UserError
from adapterbench.harness.records import RecordError, SidecarError, load_record, read_predictions
from adapterbench.stats import (
    Interval,
    Metric,
    adjust,
    band_check,
    common_examples,
    identical,
    metric_for_task,
    regression_decision,
)
from adapterbench.stats.multiple import CORRECTIONS

_EPS = 1e-12  # a drop equal to the limit is not a regression, whatever the float rounding


@dataclass(frozen=True)
class Rules:
    """What ``bench compare`` calls a regression (its options)."""

    alpha: float = 0.05
    min_effect: float = 0.0
    correction: str = "holm"  # over the tested lines of one comparison
    band_k: float = 3.0
    speed_tolerance: float = 0.05   # the step-time band is at least ± this fraction of the median
    memory_tolerance: float = 0.2   # the memory band is at least ± this fraction of the median
    metric_abs_tol: float = 0.01    # threshold rule (records without predictions)
    metric_std_k: float = 2.0
    common_only: bool = False
    interval: bool = True           # False skips the bootstrap (simulations that need only decisions)
    n_resamples: int = 2000

    def validate(self) -> None:
        checks = (("--alpha", self.alpha, 0 < self.alpha < 1, "a number in (0, 1)"),
                  ("--min-effect", self.min_effect, self.min_effect >= 0, "a number >= 0"),
                  ("--band-k", self.band_k, self.band_k > 0, "a number > 0"),
                  ("--speed-tolerance", self.speed_tolerance, self.speed_tolerance >= 0, "a number >= 0"),
                  ("--memory-tolerance", self.memory_tolerance, self.memory_tolerance >= 0, "a number >= 0"),
                  ("--metric-abs-tol", self.metric_abs_tol, self.metric_abs_tol >= 0, "a number >= 0"),
                  ("--metric-std-k", self.metric_std_k, self.metric_std_k >= 0, "a number >= 0"))
        for flag, value, ok, allowed in checks:
            if not (math.isfinite(value) and ok):
                raise UserError(f"{flag} {value} is not allowed; it must be {allowed}")
        if self.correction not in CORRECTIONS:
            raise UserError(f"--correction {self.correction!r} is not allowed; choose one of {', '.join(CORRECTIONS)}")


# ---- one run's record and sidecar -------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """One run's predictions of one split at one point, with the example ids and references."""

    example_ids: list[Any]
    references: list[Any]
    predictions: list[Any]


class RunData:
    """What the decisions read of one run: its record (as on disk) and its predictions sidecar."""

    def __init__(self, source: str | Path):
        self.source = Path(source)
        try:
            self.record = load_record(self.source)
        except RecordError:  # records given in memory (no file): no sidecar, steps or measurements to read
            self.record = {}

    @cached_property
    def sidecar(self) -> dict[str, Any] | None:
        try:  # verified against the record's sha256: predictions that disagree with it decide nothing
            return read_predictions(self.source, self.record)
        except SidecarError as exc:
            raise UserError(f"{exc}; bench compare does not compare predictions that disagree with their record"
                            ) from None

    def evaluation(self, split: str, point: Any) -> Evaluation | None:
        name = "final" if point is None else str(point)
        part = ((self.sidecar or {}).get("splits") or {}).get(split) or {}
        predictions = (part.get("predictions") or {}).get(name)
        if predictions is None or "example_ids" not in part:
            return None
        return Evaluation(list(part["example_ids"]), list(part.get("references") or []), list(predictions))

    def splits(self) -> list[str]:
        return sorted((self.sidecar or {}).get("splits") or {})

    def metrics_at(self, point: Any) -> dict[str, Any]:
        """The recorded metrics (``<split>/<metric>`` keys, not measurements) of the evaluation at ``point``."""
        for entry in schema.evaluations(self.record):
            if entry.get("point") == point:
                return {k: v for k, v in entry.items() if "/" in k and not schema.is_measurement(k)}
        return {}

    @property
    def fingerprint(self) -> str | None:
        return ((self.record.get("environment") or {}).get("fingerprint") or {}).get("id")

    def step_times(self) -> list[float]:
        """Per-step training times after the warm-up steps the loop excludes from its throughput."""
        times = (self.record.get("steps") or {}).get("time_s") or []
        warmup = (self.record.get("training") or {}).get("warmup_steps_excluded") or 0
        kept = [float(t) for t in times if schema.is_number(t)]
        return kept[int(warmup):] if len(kept) > int(warmup) else kept

    def measurement(self, key: str) -> float | None:
        value = (self.record.get("measurements") or {}).get(key)
        return float(value) if schema.is_number(value) else None


class Runs:
    """A cache of :class:`RunData` by record file (a comparison reads each record once)."""

    def __init__(self) -> None:
        self._cache: dict[str, RunData] = {}

    def get(self, source: str | Path) -> RunData:
        key = str(source)
        if key not in self._cache:
            self._cache[key] = RunData(source)
        return self._cache[key]


# ---- the metric ---------------------------------------------------------------------------------------------
@dataclass
class MetricOutcome:
    method: str                    # "paired test" or "threshold rule"
    exact: str                     # "identical", "changed" or "metrics equal" (no predictions to compare)
    status: str = "unchanged"      # "identical", "regressed", "improved" or "unchanged"
    change: float | None = None    # current - baseline
    worsening: float | None = None  # > 0: worse, in the metric's direction
    interval: Interval | None = None
    p_worse: float | None = None   # one-sided, before the family correction
    p_better: float | None = None
    p_worse_corrected: float | None = None
    test: str = ""
    n_examples: int = 0
    seeds: tuple[Any, ...] = ()
    limit: float | None = None     # threshold rule: the allowed drop
    why: str = ""                  # why the threshold rule decided

    @property
    def tested(self) -> bool:
        """Part of the family of paired tests (identical predictions need no test)."""
        return self.method == "paired test" and self.status != "identical"


class NotComparable(Exception):
    """The two sides' predictions cannot be paired (other data); the message says why."""


_METRICS: dict[tuple[str, str, str, bool], Metric | str] = {}


def task_metric(record: dict[str, Any], metric_name: str) -> Metric | str:
    """The resampling-ready metric of the record's task, or a one-line reason why it cannot be had."""
    from adapterbench.tasks import TASKS, get_task

    task = record.get("task") or {}
    name, origin = str(task.get("name") or ""), str(task.get("origin") or "")
    key = (name, origin, metric_name, schema.greater_is_better(record))
    if key not in _METRICS:
        target = name if name in TASKS else origin.removeprefix("task file ").strip() if origin.startswith(
            "task file ") else name
        try:
            metric = metric_for_task(get_task(target), metric_name)
            if schema.greater_is_better(record) != metric.higher_is_better:
                metric = replace(metric, higher_is_better=schema.greater_is_better(record))
            _METRICS[key] = metric
        except (UserError, ValueError, OSError, KeyError) as exc:
            _METRICS[key] = f"task {name!r} cannot be loaded to score predictions ({str(exc).splitlines()[0]})"
    return _METRICS[key]


def _take(values: Sequence[Any], positions: Sequence[int] | np.ndarray) -> list[Any]:
    return [values[int(i)] for i in positions]


def paired_predictions(base: Mapping[Any, RunData], cur: Mapping[Any, RunData], split: str, point: Any
                       ) -> tuple[dict[Any, list[Any]], dict[Any, list[Any]], list[Any]] | str:
    """(baseline {seed: predictions}, current {seed: predictions}, references) on the examples every run of the
    paired seeds scored, in the first baseline run's order; a reason string when a sidecar is missing."""
    seeds = sorted(set(base) & set(cur), key=str)
    runs = [(side, s, (base if side == "baseline" else cur)[s]) for s in seeds for side in ("baseline", "current")]
    evals = {}
    for side, seed, run in runs:
        found = run.evaluation(split, point)
        if found is None:
            return f"no predictions in {side} (seed {seed}, {split})"
        evals[side, seed] = found
    first = evals["baseline", seeds[0]]
    kept = list(first.example_ids)
    for found in evals.values():
        try:
            index, _ = common_examples(kept, found.example_ids)
        except ValueError:
            raise NotComparable("the two sides scored no evaluation example in common") from None
        kept = _take(kept, index)
    references = None
    out: dict[str, dict[Any, list[Any]]] = {"baseline": {}, "current": {}}
    for (side, seed), found in evals.items():
        position = {i: k for k, i in enumerate(found.example_ids)}
        at = np.asarray([position[i] for i in kept], dtype=np.int64)
        refs = _take(found.references, at)
        if references is None:
            references = refs
        elif not identical(refs, references):
            raise NotComparable(f"the references differ ({side} seed {seed}): the evaluation data changed")
        out[side][seed] = _take(found.predictions, at)
    return out["baseline"], out["current"], references or []


def exact_check(base: Mapping[Any, RunData], cur: Mapping[Any, RunData], point: Any) -> bool | None:
    """True when every paired seed has equal predictions (every split) and metrics at ``point``; None when a
    side has no sidecar (then only the metrics are compared: see :func:`metric_outcome`)."""
    seeds = sorted(set(base) & set(cur), key=str)
    have_predictions = True
    for s in seeds:
        b, c = base[s], cur[s]
        if b.metrics_at(point) != c.metrics_at(point):
            return False
        if b.sidecar is None or c.sidecar is None:
            have_predictions = False
            continue
        if b.splits() != c.splits():
            return False
        for split in b.splits():
            eb, ec = b.evaluation(split, point), c.evaluation(split, point)
            if (eb is None) != (ec is None):
                return False
            if eb is not None and not identical(_by_id(eb), _by_id(ec)):
                return False
    return True if have_predictions else None


def _by_id(found: Evaluation) -> dict[str, list[Any]]:
    """The evaluation in example-id order (the order a sidecar lists its examples in is not part of it)."""
    order = sorted(range(len(found.example_ids)), key=lambda k: found.example_ids[k])
    return {"ids": _take(found.example_ids, order), "refs": _take(found.references, order),
            "pred": _take(found.predictions, order)}


def threshold_rule(base_mean: float, base_std: float | None, cur_mean: float, greater_is_better: bool,
                   rules: Rules) -> tuple[bool, float, float]:
    """(regressed, drop, limit): ``drop = mean_b - mean_c`` (reversed when lower is better) against
    ``limit = max(metric_abs_tol, metric_std_k * std_b)``."""
    limit = max(rules.metric_abs_tol, rules.metric_std_k * (base_std or 0.0))
    drop = base_mean - cur_mean if greater_is_better else cur_mean - base_mean
    return drop > limit + _EPS, drop, limit


def metric_outcome(base: Mapping[Any, RunData], cur: Mapping[Any, RunData], point: Any, primary_key: str,
                   greater_is_better: bool, base_stat: tuple[float, float | None], cur_mean: float,
                   rules: Rules) -> MetricOutcome:
    """The metric decision of one line (before the family correction: :func:`apply_family`).

    ``base`` / ``cur``: the ok runs by seed; ``base_stat``: (mean, std) of the baseline's values over its seeds and
    ``cur_mean`` the current mean (the threshold rule's inputs).
    """
    exact = exact_check(base, cur, point)
    split, _, name = primary_key.rpartition("/")
    seeds = tuple(sorted(set(base) & set(cur), key=str))
    if exact:
        scored = base[seeds[0]].evaluation(split, point)
        return MetricOutcome("paired test", "identical", "identical", 0.0, 0.0,
                             Interval(0.0, 0.0, 0.95, "identical predictions") if rules.interval else None,
                             1.0, 1.0, 1.0, "exact", len(scored.predictions) if scored else 0, seeds)
    if exact is None:
        why = "no predictions (schema v1 or sidecar missing)"
    else:
        metric = task_metric(base[seeds[0]].record, name)
        paired = paired_predictions(base, cur, split, point)  # raises NotComparable
        if isinstance(metric, str):
            why = metric
        elif isinstance(paired, str):
            why = paired
        elif all(identical(paired[0][s], paired[1][s]) for s in seeds):
            why = "predictions identical but the recorded metrics differ (scoring changed)"
        else:
            d = regression_decision(metric, paired[0], paired[1], paired[2], alpha=rules.alpha,
                                    min_effect=rules.min_effect, n_resamples=rules.n_resamples,
                                    interval=rules.interval)
            return MetricOutcome("paired test", "changed", d.status, d.change, d.worsening, d.interval,
                                 d.p_worse, d.p_better, d.p_worse, d.test, d.n_examples, d.seeds)
    regressed, drop, limit = threshold_rule(base_stat[0], base_stat[1], cur_mean, greater_is_better, rules)
    status = "regressed" if regressed else "improved" if -drop > limit + _EPS else "unchanged"
    same = exact is None and cur_mean == base_stat[0]
    return MetricOutcome("threshold rule", "metrics equal" if same else "changed", status,
                         cur_mean - base_stat[0], drop, limit=limit, why=why, seeds=seeds)


def apply_family(outcomes: Sequence[MetricOutcome], rules: Rules) -> None:
    """Correct the p-values of the tested outcomes together and set their status (in place)."""
    tested = [o for o in outcomes if o.tested]
    if not tested:
        return
    worse = adjust([o.p_worse for o in tested], rules.correction)
    better = adjust([o.p_better for o in tested], rules.correction)
    for o, pw, pb in zip(tested, worse, better):
        o.p_worse_corrected = float(pw)
        if pw < rules.alpha and o.worsening >= rules.min_effect:
            o.status = "regressed"
        elif pb < rules.alpha and -o.worsening >= rules.min_effect:
            o.status = "improved"
        else:
            o.status = "unchanged"


# ---- speed and memory ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceOutcome:
    name: str     # "step time" or "peak memory"
    status: str   # "regressed", "improved", "within band", "not comparable" or "not measured"
    text: str

    @property
    def regressed(self) -> bool:
        return self.status == "regressed"


def fingerprint_of(runs: Sequence[RunData]) -> str | None:
    """The side's environment fingerprint id, or None when unknown or mixed."""
    ids = {r.fingerprint for r in runs}
    return ids.pop() if len(ids) == 1 else None


def _band_outcome(name: str, base: list[float], cur: list[float], fb: str | None, fc: str | None,
                  tolerance: float, rules: Rules) -> ResourceOutcome:
    if not base or not cur:
        return ResourceOutcome(name, "not measured", f"{name} not measured")
    d = band_check(base, cur, baseline_fingerprint=fb, current_fingerprint=fc, lower_is_better=True,
                   k=rules.band_k, min_relative=tolerance)
    change = f"{(d.ratio - 1) * 100:+.1f} %".replace("-", "−")
    if d.status == "not comparable":
        why = "no environment fingerprint" if fb is None or fc is None else f"environment {fb} vs {fc}"
        return ResourceOutcome(name, d.status, f"{name} {change} shown only ({why})")
    allowed = (d.baseline.high / d.baseline.median - 1) * 100 if d.baseline.median else math.inf
    return ResourceOutcome(name, d.status, f"{name} {change} (band +{allowed:.1f} %)")


def resource_outcomes(base: Sequence[RunData], cur: Sequence[RunData], rules: Rules) -> list[ResourceOutcome]:
    """Step time and peak memory of the current runs against the baseline's bands (same fingerprint only)."""
    fb, fc = fingerprint_of(base), fingerprint_of(cur)
    times = [[t for r in side for t in r.step_times()] for side in (base, cur)]
    peaks = [[v for r in side if (v := r.measurement(schema.PEAK_MEMORY.key)) is not None] for side in (base, cur)]
    return [_band_outcome("step time", *times, fb, fc, rules.speed_tolerance, rules),
            _band_outcome("peak memory", *peaks, fb, fc, rules.memory_tolerance, rules)]


__all__ = ["Evaluation", "MetricOutcome", "NotComparable", "ResourceOutcome", "Rules", "RunData",
           "Runs", "apply_family", "exact_check", "fingerprint_of",
           "metric_outcome", "paired_predictions", "resource_outcomes", "task_metric", "threshold_rule"]
