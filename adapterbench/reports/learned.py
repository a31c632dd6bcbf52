"""Did the runs learn: per configuration (and evaluation point) how many seeds beat the task's trivial predictor.

Each record's ``learned`` part (:func:`adapterbench.schema.learned_at`, the ``learned`` column of the points
frame) says whether one evaluation beat the trivial predictor (majority class, a constant at the training mean,
"O" for every word) in a paired one-sided test (:mod:`adapterbench.stats.learned`). Over the seeds of one row::

    known   = seeds whose record carries the check (older records do not: "learned: unknown")
    k of n  = seeds that learned, of the known ones; rate k / n with the exact Clopper-Pearson interval
    status  = "unknown" (no known seed), "all", "some" or "none"

**What the verdicts rest on** (the choice, documented in the report legend and the README): a configuration whose
known seeds all failed (status "none") is shown as *did not learn (0 of n seeds)* and takes no part in any
comparison (it is not "worse", it is not in the Holm family, it is not in the pairs matrix). Where only some seeds
learned, the comparisons use **the seeds that learned only** (seeds without the check stay in): the verdict then
says how the method does when it learns, and the learned count how often that is, two measured properties
instead of one number that mixes them (Mosbach et al. 2021 report failure rates beside the mean over successful
runs for the same reason). Each such verdict names the seeds it rests on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from adapterbench.stats.learned import LearnedRate, learned_rate

UNKNOWN = "learned: unknown"


def _seeds(seeds: Iterable[Any]) -> str:
    return ", ".join(str(s) for s in sorted(seeds, key=str))


@dataclass(frozen=True)
class Learned:
    """The learned check over the seeds of one row (one configuration at one evaluation point)."""

    seeds: tuple[Any, ...]  # every seed of the row
    learned: tuple[Any, ...]  # seeds whose run learned
    failed: tuple[Any, ...]  # seeds whose run did not learn
    rate: LearnedRate | None  # over the seeds that carry the check (None: none does)

    @property
    def status(self) -> str:
        """"unknown" (no seed carries the check), "all", "some" or "none" (of the seeds that carry it)."""
        if self.rate is None:
            return "unknown"
        return "none" if not self.learned else "all" if not self.failed else "some"

    @property
    def kept(self) -> tuple[Any, ...]:
        """The seeds a comparison uses: all but those that did not learn (module docstring)."""
        return tuple(s for s in self.seeds if s not in self.failed)

    def count(self) -> str:
        """"3 of 3", "2 of 3", "unknown"."""
        return "unknown" if self.rate is None else f"{self.rate.learned} of {self.rate.runs}"

    def interval(self) -> str:
        """The exact interval of the rate: "[0.29, 1.00]" (empty when unknown)."""
        r = self.rate
        return "" if r is None or r.low is None else f"[{r.low:.2f}, {r.high:.2f}]"

    def text(self) -> str:
        """The cell of the answer: "learned 2 of 3 [0.09, 0.99]: seeds 0, 2", "did not learn (0 of 3 seeds)",
        "learned: unknown"."""
        if self.rate is None:
            return UNKNOWN
        if self.status == "none":
            return did_not_learn(self.rate.runs)
        text = f"{self.count()} {self.interval()}"
        many = "s" if len(self.learned) > 1 else ""
        return text + (f": seed{many} {_seeds(self.learned)}" if self.status == "some" else "")

    def rests_on(self) -> str | None:
        """Where only some seeds learned: which ones the verdict rests on; else None."""
        if self.status != "some":
            return None
        return (f"rests on seed{'s' if len(self.kept) > 1 else ''} {_seeds(self.kept)}; seed"
                f"{'s' if len(self.failed) > 1 else ''} {_seeds(self.failed)} did not learn")


def did_not_learn(n: int) -> str:
    return f"did not learn (0 of {n} seed{'s' if n != 1 else ''})"


def learned_of(runs: pd.DataFrame) -> Learned:
    """The check over ``runs`` (evaluations with ``seed`` and ``learned``: True, False or missing)."""
    seeds, learned, failed = [], [], []
    column = runs["learned"] if "learned" in runs else pd.Series([None] * len(runs), index=runs.index)
    for seed, value in zip(runs["seed"], column):
        seeds.append(seed)
        if value is None or value is pd.NA or _nan(value):
            continue  # a record written before the check
        (learned if bool(value) else failed).append(seed)
    known = len(learned) + len(failed)
    return Learned(tuple(seeds), tuple(learned), tuple(failed), learned_rate(len(learned), known) if known else None)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


ROW_KEYS = ("task", "task_version", "model", "weights_sha256", "profile", "variant", "config", "point_key")


def learned_frame(points: pd.DataFrame, by: Sequence[str] = ROW_KEYS) -> pd.DataFrame:
    """The failure rate as a measured property: one line per ``by`` (default: task, comparable group,
    configuration, evaluation point) of a points frame (:func:`adapterbench.results.load_points`) with
    ``seeds``, ``learned`` (k), ``known`` (n: seeds whose record carries the check), ``rate`` = k / n and its exact
    95% interval ``rate_low``/``rate_high`` (Clopper-Pearson); ``rate`` is NA where no seed carries the check."""
    rows = []
    keys = [k for k in by if k in points]
    for key, runs in points.groupby(keys, sort=True, dropna=False):
        found = learned_of(runs)
        r = found.rate
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "seeds": len(found.seeds),
                     "learned": len(found.learned), "known": len(found.learned) + len(found.failed),
                     "rate": r.rate if r else None, "rate_low": r.low if r else None,
                     "rate_high": r.high if r else None})
    frame = pd.DataFrame(rows, columns=[*keys, "seeds", "learned", "known", "rate", "rate_low", "rate_high"])
    return frame.astype({"seeds": "int64", "learned": "int64", "known": "int64", "rate": "Float64",
                         "rate_low": "Float64", "rate_high": "Float64"})
