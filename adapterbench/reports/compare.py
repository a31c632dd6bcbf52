"""``bench compare BASELINE CURRENT``: regression check of one set of run records against another.

Records are paired by task, variant configuration (:class:`~adapterbench.reports.collect.ConfigId`) and
comparable group (:class:`~adapterbench.reports.collect.GroupKey`: task version, model name and weights, profile),
then by seed and by evaluation point (DyLoRA ranks). Both sides are read as the frames of
:mod:`adapterbench.results`; files that are not readable records are skipped, listed with their reason and
counted. What each line's metric, step time and memory are judged by is in :mod:`adapterbench.reports.regression`
(a paired test on the per-example predictions, the threshold rule for records without them, bands on the same
environment fingerprint only). A line is a **regression** when any of these holds:

* the metric regressed (significant at ``alpha`` after the family correction, and at least ``min_effect``);
* step time or peak memory outside the baseline's band, between equal environment fingerprints;
* a run failed (``failed``, ``oom``, ``diverged``) on either side;
* a seed whose run learned in the baseline and did not learn now (the record's learned check), whatever the
  metric's test says: a run that stopped learning is a regression however little power the test has;
* a run (a seed, an evaluation point, a configuration) present on one side only, unless ``common_only``: then
  only what both sides have is compared, and each absent run is **skipped** with its reason.

A line whose two sides are **not comparable** (other data, model weights, profile, task version or settings, or
references that differ) is neither compared nor a regression: it is listed with the reason, and left out of the
counts of compared and regressed lines. The summary counts the lines compared, regressed, improved and identical
(the exact check), then those not comparable and the skips. The exit status is 1 when any line regressed or when
nothing was compared, else 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adapterbench.reports.aggregate import Row, aggregate_group
from adapterbench.reports.collect import (
    Collection,
    ConfigId,
    GroupKey,
    explain_groups,
    group_differences,
    label_configs,
    load_records,
    settings_differences,
)
from adapterbench.reports.regression import (
    MetricOutcome,
    NotComparable,
    ResourceOutcome,
    Rules,
    Runs,
    apply_family,
    metric_outcome,
    resource_outcomes,
)
from adapterbench.reports.units import fmt_delta
from adapterbench.schema import PEAK_MEMORY, TRAIN_SPS, Measure

Thresholds = Rules  # the name of the options before the paired test (kept for callers)
CHECKED: tuple[Measure, ...] = (TRAIN_SPS, PEAK_MEMORY)  # the resources of the table, besides the metric


# ---- pairing ----------------------------------------------------------------------------------------------
@dataclass
class Side:
    """The runs (rows of the runs frame) of one configuration in one comparable group, on one side."""

    collection: Collection
    ok: list[Any] = field(default_factory=list)
    bad: list[Any] = field(default_factory=list)

    @property
    def seeds(self) -> set[Any]:
        return {r.seed for r in self.ok} | {r.seed for r in self.bad}


@dataclass
class Line:
    task: str
    label: str
    primary: str = ""
    base: Row | None = None
    current: Row | None = None
    issues: list[str] = field(default_factory=list)  # what makes this line a regression
    notes: list[str] = field(default_factory=list)  # what a reader should know but does not fail the check
    metric: MetricOutcome | None = None
    resources: list[ResourceOutcome] = field(default_factory=list)
    skipped: str | None = None  # why this line was not compared (common_only)
    incomparable: str | None = None  # why the two sides cannot be compared: listed, never a regression

    @property
    def regressed(self) -> bool:
        return bool(self.issues) and not self.incomparable and not self.skipped

    @property
    def status(self) -> str:
        """"skipped", "not comparable", "regressed", "improved", "identical" or "unchanged"."""
        if self.skipped:
            return "skipped"
        if self.incomparable:
            return "not comparable"
        if self.regressed:
            return "regressed"
        return self.metric.status if self.metric and self.metric.status != "regressed" else "unchanged"


@dataclass
class Comparison:
    lines: list[Line]
    details: list[str]  # longer explanations: error messages, why records are not comparable
    notes: list[str]  # about the two sides as a whole
    baseline: Collection
    current: Collection
    rules: Rules
    skips: list[str] = field(default_factory=list)  # one reason per run or line skipped (common_only)

    @property
    def regressions(self) -> int:
        return sum(line.regressed for line in self.lines)

    @property
    def failed(self) -> bool:
        """Any regression, or nothing compared at all (``common_only`` with two sides that share nothing)."""
        return bool(self.regressions) or self.counts()["compared"] == 0

    def counts(self) -> dict[str, int]:
        statuses = [line.status for line in self.lines]
        return {"compared": sum(s not in ("skipped", "not comparable") for s in statuses),
                "regressed": statuses.count("regressed"), "improved": statuses.count("improved"),
                "identical": statuses.count("identical"), "not comparable": statuses.count("not comparable"),
                "skipped": len(self.skips)}

    def summary(self) -> str:
        c = self.counts()
        text = (f"{c['compared']} compared: {c['regressed']} regressed, {c['improved']} improved, "
                f"{c['identical']} identical; ")
        if c["not comparable"]:
            text += f"{c['not comparable']} not comparable (not counted; each listed with its reason); "
        text += f"{c['skipped']} skipped"
        return text + (f" ({'; '.join(self.skips)})" if self.skips else "")


Index = dict[tuple[str, str], dict[tuple[GroupKey, ConfigId], Side]]


def _index(collection: Collection) -> Index:
    index: Index = {}
    for run in collection.latest.itertuples():
        key = (GroupKey.of(run), ConfigId(str(run.variant), str(run.config)))
        side = index.setdefault((str(run.task), str(run.variant)), {}).setdefault(key, Side(collection))
        (side.ok if run.status == "ok" else side.bad).append(run)
    return index


def _seeds(seeds: Sequence[Any]) -> str:
    return ", ".join(str(s) for s in sorted(seeds, key=str))


def _rows_by_point(side: Side) -> dict[str, Row]:
    """The aggregated rows of one side's ok runs, by evaluation point (in point order)."""
    if not side.ok:
        return {}
    # Kept on the collection: a collection compared many times (benchmarks/nightly_noise.py) aggregates once.
    memo = side.collection.__dict__.setdefault("_rows_by_point", {})
    key = tuple(sorted(str(r.source) for r in side.ok))
    if key not in memo:
        points = side.collection.ok_points
        points = points[points["run_id"].isin([r.run_id for r in side.ok])]
        memo[key] = {row.point_key: row for row in aggregate_group(points, side.collection.ok).rows}
    return memo[key]


def _failure_details(task: str, label: str, side: Side, where: str, details: list[str]) -> list[str]:
    issues = []
    for r in side.bad:
        message = r.error_message if isinstance(r.error_message, str) and r.error_message else "no error message"
        issues.append(f"seed {r.seed} {r.status} in {where}")
        details.append(f"{task} / {label}, seed {r.seed}, {where}: {r.status}: {message} ({r.source})")
    return issues


def _learned(side: Side, point_key: str) -> dict[Any, tuple[bool, str]]:
    """Seed -> (learned, the check in words) of ``side``'s ok runs at the evaluation point ``point_key``, for
    the runs whose record carries the check."""
    if not side.ok:
        return {}
    points = side.collection.ok_points
    if "learned" not in points:
        return {}
    by_run = {r.run_id: r for r in side.ok}
    found = points[points["run_id"].isin(list(by_run)) & (points["point_key"].astype(str) == point_key)]
    out = {}
    for run_id, value in zip(found["run_id"], found["learned"]):
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            continue
        run = by_run[run_id]
        detail = getattr(run, "learned_detail", None)
        out[run.seed] = (bool(value), detail if isinstance(detail, str) else "")
    return out


def _stopped_learning(base: Side, cur: Side, point_key: str) -> list[str]:
    """A seed that learned in the baseline and not now: a regression whatever the metric's test says."""
    before, now = _learned(base, point_key), _learned(cur, point_key)
    issues = []
    for seed in sorted(set(before) & set(now), key=str):
        if before[seed][0] and not now[seed][0]:
            why = now[seed][1].removeprefix("did not learn: ")
            issues.append(f"seed {seed} learned in baseline, did not learn now" + (f" ({why})" if why else ""))
    return issues


def _point_label(label: str, row: Row) -> str:
    return label + (f"@{row.point_label}" if row.point is not None else "")


class _Pairing:
    """The lines of one comparison, built configuration by configuration."""

    def __init__(self, rules: Rules):
        self.rules, self.runs = rules, Runs()
        self.lines: list[Line] = []
        self.details: list[str] = []
        self.skips: list[str] = []

    def absent(self, task: str, label: str, what: str, issues: list[str], notes: list[str]) -> None:
        """A run or point on one side only: an issue, or with ``common_only`` a skip with its reason."""
        if self.rules.common_only:
            self.skips.append(f"{task} / {label}: {what}")
            notes.append(f"{what} (skipped)")
        else:
            issues.append(what)

    def pair(self, task: str, label: str, base: Side, cur: Side) -> None:
        """Lines of one configuration present on both sides in the same comparable group."""
        issues: list[str] = []
        notes: list[str] = []
        for missing, where in ((base.seeds - cur.seeds, "current"), (cur.seeds - base.seeds, "baseline")):
            if missing:
                self.absent(task, label, f"seed {_seeds(missing)} missing in {where}", issues, notes)
        issues += _failure_details(task, label, base, "baseline", self.details)
        issues += _failure_details(task, label, cur, "current", self.details)
        base_runs = {r.seed: self.runs.get(r.source) for r in base.ok}
        cur_runs = {r.seed: self.runs.get(r.source) for r in cur.ok}
        base_rows, cur_rows = _rows_by_point(base), _rows_by_point(cur)
        keys = list(dict.fromkeys([*base_rows, *cur_rows]))
        if not keys:
            self.lines.append(Line(task, label, issues=issues or ["no finished run on either side"], notes=notes))
            return
        common = set(base_runs) & set(cur_runs)
        # Speed and memory of the same seeds on both sides (a seed's peak can differ from another's).
        resources = (resource_outcomes([base_runs[s] for s in common], [cur_runs[s] for s in common], self.rules)
                     if common else [])
        first = (base.ok or cur.ok)[0]
        primary, gib = str(first.primary_metric), bool(first.greater_is_better)
        for k in keys:
            b, c = base_rows.get(k), cur_rows.get(k)
            line = Line(task, _point_label(label, b or c), primary, b, c, list(issues), list(notes),
                        resources=resources)
            self.lines.append(line)
            if b is None or c is None:
                self.absent(task, line.label, f"evaluation point missing in {'baseline' if b is None else 'current'}",
                            line.issues, line.notes)
                if self.rules.common_only and not line.issues:
                    line.skipped = line.notes[-1]
                continue
            if not common:
                line.issues.append("no finished seed in common")
                continue
            bm, cm = b.stats.get("primary"), c.stats.get("primary")
            if not (bm and cm):
                line.notes.append("metric missing")
                continue
            try:
                line.metric = metric_outcome({s: base_runs[s] for s in common}, {s: cur_runs[s] for s in common},
                                             b.point, primary, gib, (bm.mean, bm.std), cm.mean, self.rules)
            except NotComparable as exc:
                line.incomparable = f"not comparable: {exc}"
            line.issues += _stopped_learning(base, cur, k)
            for r in resources:  # a band kept is not worth a word; a change or "shown only" is
                if r.regressed:
                    line.issues.append(r.text)
                elif r.status in ("improved", "not comparable"):
                    line.notes.append(r.text)

    def one_side(self, task: str, label: str, side: Side, where: str, issue: str) -> None:
        """Lines of a configuration found on one side only (``where``): its numbers, and ``issue``."""
        failures = _failure_details(task, label, side, where, self.details)
        rows = list(_rows_by_point(side).values())
        primary = str(side.ok[0].primary_metric) if side.ok else ""
        made = [Line(task, _point_label(label, row), primary, *((None, row) if where == "current" else (row, None)))
                for row in rows] or [Line(task, label)]
        skip = self.rules.common_only and not failures  # a failed run is a failure even when skipped otherwise
        if skip:
            self.skips.append(f"{task} / {label}: {issue}")
        for line in made:
            line.issues += ([] if skip else [issue]) + failures
            line.skipped = issue if skip else None
            if not skip and issue.startswith("not comparable"):
                line.incomparable = issue
        self.lines += made

    def finish(self) -> None:
        apply_family([line.metric for line in self.lines if line.metric], self.rules)
        for line in self.lines:
            m = line.metric
            if m is None:
                continue
            text = _metric_text(m, self.rules)
            if m.status == "regressed":
                line.issues.insert(0, text)
            else:
                line.notes.insert(0, text)


def _metric_text(m: MetricOutcome, rules: Rules) -> str:
    if m.method == "threshold rule":
        if m.status == "unchanged":
            return f"threshold rule: {m.why}"
        worded = "metric" if m.status == "regressed" else "metric improved"
        return f"{worded} {fmt_delta(m.change)} (limit {m.limit:.4f}; threshold rule: {m.why})"
    if m.status == "identical":
        return "identical"
    p = _p_text(m, rules)
    if m.status == "regressed":
        return f"metric {fmt_delta(m.change)} ({p} < {rules.alpha:g})"
    if m.status == "improved":
        return f"metric improved {fmt_delta(m.change)}"
    small = m.p_worse_corrected is not None and m.p_worse_corrected < rules.alpha
    return (f"changed, below min effect {rules.min_effect:g}" if small else f"changed, not significant ({p})")


def _p_text(m: MetricOutcome, rules: Rules) -> str:
    text = f"p {m.p_worse:.3g}"
    if rules.correction != "none" and m.p_worse_corrected is not None and m.p_worse_corrected != m.p_worse:
        text += f", {rules.correction} {m.p_worse_corrected:.3g}"
    return text


def _group_suffixes(keys: Sequence[GroupKey]) -> dict[GroupKey, str]:
    """" [profile=standard]"-style suffixes telling apart the comparable groups of one task ("" for one group)."""
    diffs = group_differences(keys)
    out = {}
    for key in keys:
        shown = {"task_version": "task v", "model": "model ", "weights_sha256": "weights ", "profile": "profile ",
                 "primary_metric": "scored ", "data_fingerprint": "data "}
        parts = [shown.get(name, name + " ") + (getattr(key, name) or "unknown")[
            : 12 if name == "weights_sha256" else None] for name in diffs]
        out[key] = f" [{', '.join(parts)}]" if parts else ""
    return out


def compare_collections(baseline: Collection, current: Collection, rules: Rules) -> Comparison:
    rules.validate()
    b_index, c_index = _index(baseline), _index(current)
    work = _Pairing(rules)
    for task, variant in sorted(set(b_index) | set(c_index)):
        b_sides, c_sides = b_index.get((task, variant), {}), c_index.get((task, variant), {})
        keys = list(b_sides) + list(c_sides)
        configs = label_configs(cid for _, cid in keys)
        groups = _group_suffixes(sorted({g for g, _ in keys}))

        def label(key: tuple[GroupKey, ConfigId], configs=configs, groups=groups) -> str:
            return configs[key[1]] + groups[key[0]]

        common = sorted(set(b_sides) & set(c_sides))
        for key in common:
            work.pair(task, label(key), b_sides[key], c_sides[key])
        b_rest = sorted(set(b_sides) - set(common))
        c_rest = sorted(set(c_sides) - set(common))
        why: dict[tuple[GroupKey, ConfigId], str] = {}  # what tells a configuration from its closest partner
        for key in b_rest:
            # The closest configuration on the other side: same group if there is one, else the first.
            partner = next((k for k in c_rest if k[0] == key[0]), c_rest[0]) if c_rest else None
            if partner is None:
                continue
            reasons = []
            if partner[0] != key[0]:
                reasons.append("they differ in " + explain_groups([key[0], partner[0]]))
            if partner[1] != key[1]:
                reasons.append("settings differ (" + "; ".join(settings_differences(key[1], partner[1])) + ")")
            why[key] = why.setdefault(partner, "; ".join(reasons))
            work.details.append(f"{task} / {label(key)} (baseline) vs {label(partner)} (current): not comparable: "
                                f"{why[key]}")
        for key in b_rest:
            work.one_side(task, label(key), b_sides[key], "baseline",
                          f"not comparable with current: {why[key]}" if key in why
                          else f"missing in current (baseline seeds {_seeds(b_sides[key].seeds)})")
        for key in c_rest:
            issue = (f"not comparable with baseline: {why[key]}" if key in why else "not comparable with baseline"
                     if b_rest else f"missing in baseline (current seeds {_seeds(c_sides[key].seeds)})")
            work.one_side(task, label(key), c_sides[key], "current", issue)
    work.finish()
    notes = []
    b_groups = {g for sides in b_index.values() for g, _ in sides}
    c_groups = {g for sides in c_index.values() for g, _ in sides}
    if b_groups and c_groups and not b_groups & c_groups:
        notes.append("The two sides share no comparable group: their records differ in "
                     + explain_groups(sorted(b_groups | c_groups)) + ".")
    return Comparison(work.lines, work.details, notes, baseline, current, rules, work.skips)


def compare_paths(baseline: Sequence[str | Path], current: Sequence[str | Path], rules: Rules) -> Comparison:
    rules.validate()
    return compare_collections(Collection.of(*load_records(baseline)), Collection.of(*load_records(current)), rules)
