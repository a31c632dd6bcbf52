"""``bench compare BASELINE CURRENT``: regression check of one set of run records against another.

Records are paired by task, variant configuration (:class:`~adapterbench.reports.collect.ConfigId`) and
comparable group (:class:`~adapterbench.reports.collect.GroupKey`: task version, model name and weights, profile),
then by evaluation point (DyLoRA ranks). Both sides are read as the frames of :mod:`adapterbench.results`; files
that are not readable records are skipped, listed with their reason and counted. A pair is a **regression** when
any of these holds:

* metric:     ``drop > max(metric_abs_tol, metric_std_k * std_baseline)``, where ``drop = mean_baseline -
  mean_current`` (reversed for tasks where lower is better) and ``std_baseline`` is the sample std over the
  baseline's seeds (0 with one seed);
* throughput: ``samples_per_s_current < throughput_ratio * samples_per_s_baseline``;
* memory:     ``peak_bytes_current > memory_ratio * peak_bytes_baseline``;
* a run (a seed) present on one side only, or failed (``failed``, ``oom``, ``diverged``) on either side;
* a configuration whose records on the two sides are not comparable (other model weights, profile, task version
  or settings): the check cannot vouch for it, so it fails and says why.

A measurement missing on either side is shown as "—" and noted, not counted. The exit status is 1 when any pair
regressed, else 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adapterbench.errors import UserError
from adapterbench.reports.aggregate import Row, Stat, aggregate_group
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
from adapterbench.reports.units import fmt_change, fmt_delta, fmt_measure, fmt_metric
from adapterbench.schema import PEAK_MEMORY, TRAIN_SPS, Measure

_EPS = 1e-12  # a drop equal to the limit is not a regression, whatever the float rounding
ENVIRONMENT_KEYS = ("python", "torch", "transformers", "peft", "adapterbench", "device_name")
CHECKED: tuple[Measure, ...] = (TRAIN_SPS, PEAK_MEMORY)  # the resources of the table, besides the metric


@dataclass(frozen=True)
class Thresholds:
    metric_abs_tol: float = 0.01
    metric_std_k: float = 2.0
    throughput_ratio: float = 0.8
    memory_ratio: float = 1.2

    def validate(self) -> None:
        for name, value, allowed in (("--metric-abs-tol", self.metric_abs_tol, "a number >= 0"),
                                     ("--metric-std-k", self.metric_std_k, "a number >= 0"),
                                     ("--throughput-ratio", self.throughput_ratio, "a number > 0"),
                                     ("--memory-ratio", self.memory_ratio, "a number > 0")):
            strict = name in ("--throughput-ratio", "--memory-ratio")
            if not math.isfinite(value) or value < 0 or (strict and value == 0):
                raise UserError(f"{name} {value} is not allowed; it must be {allowed}")


# ---- the three checks, as pure functions ------------------------------------------------------------------
def metric_check(base: Stat, current: Stat, greater_is_better: bool, th: Thresholds
                 ) -> tuple[bool, float, float]:
    """(regressed, drop, limit): ``drop`` is how much worse the current mean is (negative: better)."""
    limit = max(th.metric_abs_tol, th.metric_std_k * (base.std or 0.0))
    drop = base.mean - current.mean if greater_is_better else current.mean - base.mean
    return drop > limit + _EPS, drop, limit


def throughput_check(base: float, current: float, ratio: float) -> bool:
    """True when the current throughput fell below ``ratio`` times the baseline."""
    return current < ratio * base - _EPS


def memory_check(base: float, current: float, ratio: float) -> bool:
    """True when the current peak memory rose above ``ratio`` times the baseline."""
    return current > ratio * base + _EPS


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

    @property
    def regressed(self) -> bool:
        return bool(self.issues)


@dataclass
class Comparison:
    lines: list[Line]
    details: list[str]  # longer explanations: error messages, why records are not comparable
    notes: list[str]  # about the two sides as a whole
    baseline: Collection
    current: Collection
    thresholds: Thresholds

    @property
    def regressions(self) -> int:
        return sum(line.regressed for line in self.lines)


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
    points = side.collection.ok_points
    points = points[points["run_id"].isin([r.run_id for r in side.ok])]
    return {row.point_key: row for row in aggregate_group(points, side.collection.ok).rows}


def _failure_details(task: str, label: str, side: Side, where: str, details: list[str]) -> list[str]:
    issues = []
    for r in side.bad:
        message = r.error_message if isinstance(r.error_message, str) and r.error_message else "no error message"
        issues.append(f"seed {r.seed} {r.status} in {where}")
        details.append(f"{task} / {label}, seed {r.seed}, {where}: {r.status}: {message} ({r.source})")
    return issues


def _point_label(label: str, row: Row) -> str:
    return label + (f"@{row.point_label}" if row.point is not None else "")


def _pair_lines(task: str, label: str, base: Side, cur: Side, th: Thresholds, details: list[str]) -> list[Line]:
    """Lines of one configuration present on both sides in the same comparable group."""
    run_issues = []
    for missing, where in ((base.seeds - cur.seeds, "current"), (cur.seeds - base.seeds, "baseline")):
        if missing:
            run_issues.append(f"seed {_seeds(missing)} missing in {where}")
    run_issues += _failure_details(task, label, base, "baseline", details)
    run_issues += _failure_details(task, label, cur, "current", details)
    base_rows, cur_rows = _rows_by_point(base), _rows_by_point(cur)
    keys = list(dict.fromkeys([*base_rows, *cur_rows]))
    if not keys:
        return [Line(task, label, issues=run_issues or ["no finished run on either side"])]
    first = (base.ok or cur.ok)[0]
    primary, gib = str(first.primary_metric), bool(first.greater_is_better)
    lines = []
    for k in keys:
        b, c = base_rows.get(k), cur_rows.get(k)
        line = Line(task, _point_label(label, b or c), primary, b, c, issues=list(run_issues))
        if b is None or c is None:
            if not run_issues:
                line.issues.append(f"evaluation point missing in {'baseline' if b is None else 'current'}")
            lines.append(line)
            continue
        bm, cm = b.stats.get("primary"), c.stats.get("primary")
        if bm and cm:
            regressed, drop, limit = metric_check(bm, cm, gib, th)
            if regressed:
                line.issues.append(f"metric {fmt_delta(-drop)} (limit {limit:.4f})")
            elif -drop > limit:
                line.notes.append("metric improved")
        else:
            line.notes.append("metric missing")
        for m, check, ratio, name in ((TRAIN_SPS, throughput_check, th.throughput_ratio, "throughput"),
                                      (PEAK_MEMORY, memory_check, th.memory_ratio, "memory")):
            bs, cs = b.mean(m.key), c.mean(m.key)
            if bs is None or cs is None or bs <= 0:
                line.notes.append(f"{name} not measured" if bs is None or cs is None else f"{name}: baseline 0")
            elif check(bs, cs, ratio):
                line.issues.append(f"{name} {fmt_change(cs / bs)} (limit {fmt_change(ratio)})")
        lines.append(line)
    return lines


def _one_side_lines(task: str, label: str, side: Side, where: str, issue: str, details: list[str]) -> list[Line]:
    """Lines of a configuration found on one side only (``where``): its numbers, and ``issue``."""
    issues = [issue] + _failure_details(task, label, side, where, details)
    rows = list(_rows_by_point(side).values())
    if not rows:
        return [Line(task, label, issues=issues)]
    primary = str(side.ok[0].primary_metric)
    return [Line(task, _point_label(label, row), primary, *((None, row) if where == "current" else (row, None)),
                 issues=list(issues)) for row in rows]


def _group_suffixes(keys: Sequence[GroupKey]) -> dict[GroupKey, str]:
    """" [profile=standard]"-style suffixes telling apart the comparable groups of one task ("" for one group)."""
    diffs = group_differences(keys)
    out = {}
    for key in keys:
        shown = {"task_version": "task v", "model": "model ", "weights_sha256": "weights ", "profile": "profile "}
        parts = [shown.get(name, name + " ") + getattr(key, name)[: 12 if name == "weights_sha256" else None]
                 for name in diffs]
        out[key] = f" [{', '.join(parts)}]" if parts else ""
    return out


def compare_collections(baseline: Collection, current: Collection, th: Thresholds) -> Comparison:
    th.validate()
    b_index, c_index = _index(baseline), _index(current)
    lines: list[Line] = []
    details: list[str] = []
    for task, variant in sorted(set(b_index) | set(c_index)):
        b_sides, c_sides = b_index.get((task, variant), {}), c_index.get((task, variant), {})
        keys = list(b_sides) + list(c_sides)
        configs = label_configs(cid for _, cid in keys)
        groups = _group_suffixes(sorted({g for g, _ in keys}))

        def label(key: tuple[GroupKey, ConfigId], configs=configs, groups=groups) -> str:
            return configs[key[1]] + groups[key[0]]

        common = sorted(set(b_sides) & set(c_sides))
        for key in common:
            lines += _pair_lines(task, label(key), b_sides[key], c_sides[key], th, details)
        b_rest = sorted(set(b_sides) - set(common))
        c_rest = sorted(set(c_sides) - set(common))
        for key in b_rest:
            if not c_rest:
                lines += _one_side_lines(task, label(key), b_sides[key], "baseline",
                                         f"missing in current (baseline seeds {_seeds(b_sides[key].seeds)})", details)
                continue
            # The closest configuration on the other side: same group if there is one, else the first.
            partner = next((k for k in c_rest if k[0] == key[0]), c_rest[0])
            reasons = []
            if partner[0] != key[0]:
                reasons.append("they differ in " + explain_groups([key[0], partner[0]]))
            if partner[1] != key[1]:
                reasons.append("settings differ (" + "; ".join(settings_differences(key[1], partner[1])) + ")")
            lines += _one_side_lines(task, label(key), b_sides[key], "baseline", "not comparable with current", details)
            details.append(f"{task} / {label(key)} (baseline) vs {label(partner)} (current): not comparable: "
                           f"{'; '.join(reasons)}")
        for key in c_rest:
            issue = ("not comparable with baseline" if b_rest
                     else f"missing in baseline (current seeds {_seeds(c_sides[key].seeds)})")
            lines += _one_side_lines(task, label(key), c_sides[key], "current", issue, details)
    notes = []
    b_groups = {g for sides in b_index.values() for g, _ in sides}
    c_groups = {g for sides in c_index.values() for g, _ in sides}
    if b_groups and c_groups and not b_groups & c_groups:
        notes.append("The two sides share no comparable group: their records differ in "
                     + explain_groups(sorted(b_groups | c_groups)) + ".")
    return Comparison(lines, details, notes, baseline, current, th)


def compare_paths(baseline: Sequence[str | Path], current: Sequence[str | Path], th: Thresholds) -> Comparison:
    th.validate()
    return compare_collections(Collection.of(*load_records(baseline)), Collection.of(*load_records(current)), th)


# ---- Markdown ---------------------------------------------------------------------------------------------
def _cell(text: object) -> str:
    s = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|")


def _environment_changes(a: Collection, b: Collection) -> list[str]:
    def values(c: Collection, key: str) -> str:
        column = c.latest.get(f"env.{key}", pd.Series(dtype=object))
        return ", ".join(sorted({str(v) for v in column})) or "—"

    return [f"{key} {values(a, key)} → {values(b, key)}" for key in ENVIRONMENT_KEYS
            if values(a, key) != values(b, key)]


def render_comparison(comparison: Comparison, baseline_name: str, current_name: str) -> str:
    th = comparison.thresholds
    n, bad = len(comparison.lines), comparison.regressions
    verdict = f"❌ {bad} regression{'s' if bad != 1 else ''}" if bad else "✅ no regression"
    skipped = {"baseline": comparison.baseline.skipped, "current": comparison.current.skipped}
    counted = "".join(f", {len(lines)} file(s) skipped in {side}" for side, lines in skipped.items() if lines)
    out = ["## adapterbench compare", "",
           f"**{verdict}** in {n} comparison{'s' if n != 1 else ''}: baseline `{_cell(baseline_name)}` "
           f"({len(comparison.baseline.latest)} runs), current `{_cell(current_name)}` "
           f"({len(comparison.current.latest)} runs){counted}.", "",
           f"A regression: the primary metric below the baseline mean by more than max({th.metric_abs_tol:g}, "
           f"{th.metric_std_k:g} × baseline std); throughput below {th.throughput_ratio:g} × baseline; peak "
           f"memory above {th.memory_ratio:g} × baseline; a run missing or failed on either side; records that "
           "are not comparable (model weights, profile, task version or settings differ).", ""]
    out += [f"**{_cell(note)}**" for note in comparison.notes] + ([""] if comparison.notes else [])
    changes = _environment_changes(comparison.baseline, comparison.current)
    if changes:
        out += [f"Environment changed: {_cell('; '.join(changes))}.", ""]
    heads = "".join(f" | {m.title} baseline | current | Δ" for m in CHECKED)
    out += [f"| task | variant | metric | baseline | current | Δ{heads} | verdict |",
            "|:--|:--|:--|--:|--:|--:|" + "--:|--:|--:|" * len(CHECKED) + ":--|"]
    out += ["| " + " | ".join(_cell(x) for x in _line_cells(line)) + " |" for line in comparison.lines]
    if comparison.details:
        out += ["", "### Details", ""] + [f"- {_cell(d)}" for d in comparison.details]
    lines = [f"- {side}: {_cell(line)}" for side, found in skipped.items() for line in found]
    if lines:
        out += ["", "### Skipped files (not readable run records)", "", *lines]
    return "\n".join(out) + "\n"


def _line_cells(line: Line) -> list[str]:
    b, c = line.base, line.current

    def stat(row: Row | None, key: str) -> Stat | None:
        return row.stats.get(key) if row else None

    bm, cm = stat(b, "primary"), stat(c, "primary")
    cells = [line.task, line.label, line.primary or "—", fmt_metric(bm.mean, bm.std) + f" (n={bm.n})" if bm else "—",
             fmt_metric(cm.mean, cm.std) + f" (n={cm.n})" if cm else "—",
             fmt_delta(cm.mean - bm.mean) if bm and cm else "—"]
    for m in CHECKED:
        bv, cv = (r.mean(m.key) if r else None for r in (b, c))
        cells += [fmt_measure(m.key, bv), fmt_measure(m.key, cv), fmt_change(cv / bv) if bv and cv is not None else "—"]
    verdict = ("❌ " + "; ".join(line.issues) if line.regressed
               else "✅ ok" + (f" ({'; '.join(line.notes)})" if line.notes else ""))
    return cells + [verdict]
