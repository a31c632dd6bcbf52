"""``table.csv``: the aggregated tables of the report model, one line per row of every group table, raw numbers
(no units), so that a spreadsheet or pandas can recompute anything shown.

Besides each metric's mean, its 95% interval (``<metric>:low``, ``<metric>:high``, ``<metric>:interval`` = seeds
or examples), the failure rate (``learned`` of ``learned_known`` seeds that carry the check learned, the exact
95% interval ``learned_low``/``learned_high``, ``learned_seeds`` = the seeds that learned; empty where no record
carries the check) and the row's answer (``rank``, ``verdict`` = best / tied / worse / untested / did not learn, ``vs_best`` and its
interval, ``p_holm``, ``test``, ``seeds_agree``: every common seed's difference from the best has the mean's
sign, ``seed_p_holm``: the paired t over the common seeds, Holm within the task) as
:mod:`adapterbench.reports.answer` found them."""

from __future__ import annotations

import csv
import io
import json

from adapterbench import schema
from adapterbench.reports.aggregate import Row
from adapterbench.reports.model import Report

IDENTITY = ("group", "task", "task_version", "model", "weights_sha256", "profile", "variant", "label", "point",
            "settings", "seeds", "n", "pareto", "primary_metric", "greater_is_better", "primary_mean", "primary_std",
            "primary_low", "primary_high", "primary_interval")
LEARNED = ("learned", "learned_known", "learned_low", "learned_high", "learned_seeds")
ANSWER = ("rank", "verdict", "vs_best", "vs_best_low", "vs_best_high", "p_holm", "test", "seeds_agree",
          "seed_p_holm")


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _interval(row: Row, key: str) -> list[str]:
    s = row.stats.get(key)
    if s is None or s.interval is None:
        return ["", "", ""]
    return [_number(s.interval[0]), _number(s.interval[1]), s.interval_kind or ""]


def table_csv(report: Report) -> str:
    sections = [g for t in report.tasks for g in t.groups]
    tables = [g.table for g in sections]
    metric_keys = sorted({c.key.split(":", 1)[1] for t in tables for c in t.columns if c.key.startswith("metric:")}
                         | {t.primary for t in tables})
    present = {key for t in tables for row in t.rows for key, s in row.stats.items() if s is not None}
    measurement_keys = [m for m in schema.MEASURES if m in present]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*IDENTITY, *LEARNED, *ANSWER, *metric_keys, *(f"{m}:{part}" for m in metric_keys
                                                         for part in ("low", "high", "interval")),
                     *measurement_keys])
    for section in sections:
        t, k = section.table, section.table.key
        verdicts = {v.variant: v for v in section.answer.variants} if section.answer else {}
        for row in t.rows:
            primary = row.stats.get("primary")

            def mean(key: str, row=row) -> str:
                s = row.stats.get(key)
                return "" if s is None else repr(s.mean)

            def stat_key(metric: str, t=t) -> str:
                return "primary" if metric == t.primary else f"metric:{metric}"

            v = verdicts.get(row.label)
            vs = v.vs_best if v else None
            answer = ([f"{v.rank:g}", v.status, _number(vs.difference) if vs else "",
                       _number(vs.interval.low) if vs and vs.interval else "",
                       _number(vs.interval.high) if vs and vs.interval else "", _number(v.p_adjusted),
                       vs.test if vs else "", "" if v.seeds_agree is None else v.seeds_agree,
                       _number(v.seed_p_adjusted)]
                      if v else [""] * len(ANSWER))
            check = section.learned.get(row.label)
            rate = check.rate if check else None
            if v is None and check is not None and check.status == "none":
                answer[1] = "did not learn"
            learned = (["", "", "", "", ""] if rate is None else
                       [rate.learned, rate.runs, _number(rate.low), _number(rate.high),
                        " ".join(map(str, check.learned))])
            writer.writerow([section.index, k.task, k.task_version, k.model, k.weights_sha256, k.profile,
                             row.config.variant, row.label, "" if row.point is None else json.dumps(row.point),
                             json.dumps(row.config.as_dict(), sort_keys=True), " ".join(map(str, row.seeds)),
                             primary.n if primary else 0, row.pareto, t.primary, t.greater_is_better,
                             mean("primary"), repr(primary.std) if primary and primary.std is not None else "",
                             *_interval(row, "primary"), *learned, *answer]
                            + [mean(stat_key(m)) for m in metric_keys]
                            + [x for m in metric_keys for x in _interval(row, stat_key(m))]
                            + [mean(m) for m in measurement_keys])
    return buf.getvalue()
