"""The Markdown of ``bench compare``: the verdict, the rules in words, the environment, one table line per pair.

The comparison itself (pairing, the paired test, the bands) is :mod:`adapterbench.reports.compare`; this module
only writes it down.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from adapterbench.reports.aggregate import Row
from adapterbench.reports.collect import Collection
from adapterbench.reports.compare import CHECKED, Comparison, Line
from adapterbench.reports.units import fmt_change, fmt_delta, fmt_measure, fmt_metric

ENVIRONMENT_KEYS = ("python", "torch", "transformers", "peft", "adapterbench", "device_name")


def _cell(text: object) -> str:
    s = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|")


def _values(c: Collection, column: str) -> str:
    found = c.latest.get(column, pd.Series(dtype=object)).dropna()
    return ", ".join(sorted({str(v) for v in found})) or "—"


def _environment_lines(a: Collection, b: Collection) -> list[str]:
    fa, fb = _values(a, "env_fingerprint"), _values(b, "env_fingerprint")
    out = [f"Environment fingerprint: baseline `{fa}`, current `{fb}`. Step time and peak memory fail only where "
           "both sides of a line share one fingerprint; elsewhere they are shown only."]
    changes = [f"{key} {_values(a, 'env.' + key)} → {_values(b, 'env.' + key)}" for key in ENVIRONMENT_KEYS
               if _values(a, "env." + key) != _values(b, "env." + key)]
    if changes:
        out.append(f"Environment changed: {'; '.join(changes)}.")
    return out


def render_comparison(comparison: Comparison, baseline_name: str, current_name: str) -> str:
    r = comparison.rules
    bad = comparison.regressions
    verdict = (f"❌ {bad} regression{'s' if bad != 1 else ''}" if bad else
               "❌ nothing compared" if comparison.failed else "✅ no regression")
    skipped = {"baseline": comparison.baseline.skipped, "current": comparison.current.skipped}
    counted = "".join(f", {len(lines)} file(s) skipped in {side}" for side, lines in skipped.items() if lines)
    correction = "" if r.correction == "none" else f", {r.correction}-corrected over the tested lines"
    out = ["## adapterbench compare", "",
           f"**{verdict}**: {_cell(comparison.summary())}.", "",
           f"Baseline `{_cell(baseline_name)}` ({len(comparison.baseline.latest)} runs), current "
           f"`{_cell(current_name)}` ({len(comparison.current.latest)} runs){counted}.", "",
           f"A regression: the primary metric worse in a one-sided paired test on the same evaluation examples "
           f"(p < {r.alpha:g}{correction}; effect at least {r.min_effect:g}), or, for records without predictions, "
           f"below the baseline by more than max({r.metric_abs_tol:g}, {r.metric_std_k:g} × baseline std); step "
           f"time or peak memory beyond the baseline's band (median ± max({r.band_k:g} MAD, "
           f"{r.speed_tolerance:g} / {r.memory_tolerance:g} × median)) on the same environment fingerprint; a run "
           "failed on either side; a seed that learned in the baseline and did not learn now (whatever the test's "
           "power)" + ("; runs on one side only are skipped." if r.common_only else "; a run missing on either side.")
           + " Lines whose sides are not comparable (other data, weights, profile, task version or settings) are "
           "listed with the reason (≠) and never counted as regressions.", ""]
    out += [f"**{_cell(note)}**" for note in comparison.notes] + ([""] if comparison.notes else [])
    out += [_cell(line) for line in _environment_lines(comparison.baseline, comparison.current)] + [""]
    heads = "".join(f" | {m.title} baseline | current | Δ" for m in CHECKED)
    out += [f"| task | variant | metric | baseline | current | Δ (95% CI) | p worse | exact{heads} | verdict |",
            "|:--|:--|:--|--:|--:|--:|--:|:--|" + "--:|--:|--:|" * len(CHECKED) + ":--|"]
    out += ["| " + " | ".join(_cell(x) for x in _line_cells(line)) + " |" for line in comparison.lines]
    if comparison.details:
        out += ["", "### Details", ""] + [f"- {_cell(d)}" for d in comparison.details]
    lines = [f"- {side}: {_cell(line)}" for side, found in skipped.items() for line in found]
    if lines:
        out += ["", "### Skipped files (not readable run records)", "", *lines]
    return "\n".join(out) + "\n"


def _line_cells(line: Line) -> list[str]:
    b, c, m = line.base, line.current, line.metric

    def stat(row: Row | None, key: str) -> Any:
        return row.stats.get(key) if row else None

    bm, cm = stat(b, "primary"), stat(c, "primary")
    delta = fmt_delta(cm.mean - bm.mean) if bm and cm else "—"
    if m and m.method == "paired test" and m.interval:
        delta = f"{fmt_delta(m.change)} [{fmt_delta(m.interval.low)}, {fmt_delta(m.interval.high)}]"
    p = "—"
    if m and m.method == "threshold rule":
        p = "threshold rule"
    elif m and m.status != "identical" and m.p_worse is not None:
        p = f"{m.p_worse:.3g}" + (f" ({m.p_worse_corrected:.3g})" if m.p_worse_corrected not in (None, m.p_worse)
                                 else "")
    cells = [line.task, line.label, line.primary or "—", fmt_metric(bm.mean, bm.std) + f" (n={bm.n})" if bm else "—",
             fmt_metric(cm.mean, cm.std) + f" (n={cm.n})" if cm else "—", delta, p, m.exact if m else "—"]
    for measure in CHECKED:
        bv, cv = (row.mean(measure.key) if row else None for row in (b, c))
        cells += [fmt_measure(measure.key, bv), fmt_measure(measure.key, cv),
                  fmt_change(cv / bv) if bv and cv is not None else "—"]
    if line.skipped:
        verdict = f"⏭ skipped: {line.skipped}"
    elif line.incomparable:
        verdict = f"≠ {line.incomparable}"
    elif line.regressed:
        verdict = "❌ " + "; ".join(line.issues)
    else:
        verdict = {"improved": "⬆ improved", "identical": "✅ identical"}.get(line.status, "✅ ok")
        rest = [n for n in line.notes if n != "identical"]
        verdict += f" ({'; '.join(rest)})" if rest else ""
    return cells + [verdict]
