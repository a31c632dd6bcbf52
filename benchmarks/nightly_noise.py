"""How often the nightly cries wolf, and the smallest accuracy drop it catches, from reseeded runs of one
configuration.

Give it a results folder holding several seeds of one configuration (same task, variant, settings, model and
profile), for example the nightly's SST-2 LoRA run reseeded ten times::

    bench run --variants lora --task sst2 --profile nightly --seeds 0,1,2,3,4,5,6,7,8,9 \\
        --data-dir ../shared/data --out results/noise-sst2-lora
    python benchmarks/nightly_noise.py results/noise-sst2-lora --family 48

Every pair of runs (seed i as the baseline, seed j as the current night, both relabelled seed 0 so that they
pair) goes through the code path of ``bench compare`` (:func:`adapterbench.reports.compare.compare_collections`
with the same :class:`~adapterbench.reports.regression.Rules`). Unchanged code reseeded is the null: every flag
is a false alarm. Printed:

* **false-alarm rate** of the metric: flags over ordered pairs. A pair (i, j) flagged "improved" is the pair (j, i) flagged
  "regressed" (the one-sided tests are mirror images), so the rate is ``(regressed + improved) / (2 x pairs)``;
* how often step time or peak memory left the band (runs made one after another on this machine: the noise of
  its load, printed apart from the metric's rate);
* the **old rule's** rate on the same pairs (a drop above max(0.01, 2 x std) with one seed: above 0.01);
* the **discordance rate** ``d``: the mean fraction of examples on which exactly one of the two runs is right;
* the **smallest accuracy drop detected with 80 % power** by the one-sided exact McNemar test on ``n``
  examples at that discordance (:func:`adapterbench.stats.mcnemar_min_detectable_drop`), at ``alpha`` and, with
  ``--family m``, at ``alpha / m``: the first step of Holm's correction over the nightly's ``m`` compared lines,
  the level a lone regression must reach.

Reseeding decorrelates two runs more than a harmless code change does (same seed, data order and
initialisation), so the false-alarm rate measured here is an upper bound for such nights; an unchanged night on
the same environment is bit-identical and cannot alarm at all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapterbench.errors import UserError


@dataclass
class Noise:
    configuration: str
    seeds: list[int]
    pairs: int
    lines_per_pair: int
    regressed: int
    improved: int
    identical: int
    false_alarm_rate: float
    old_rule_rate: float
    resource_rate: float  # lines whose step time or memory left the band (not part of the metric's rate)
    n_examples: int
    discordance: float | None
    min_detectable_drop: float | None
    min_detectable_drop_family: float | None
    alpha: float
    power: float
    family: int

    def lines(self) -> list[str]:
        def drop(x: float | None) -> str:
            return "not reachable" if x is None else f"{x:.4f} ({x * 100:.2f} points)"

        out = [f"configuration: {self.configuration}; seeds {', '.join(map(str, self.seeds))}",
               f"pairs compared: {self.pairs} x {self.lines_per_pair} line(s), through bench compare "
               f"(alpha {self.alpha:g})",
               f"false-alarm rate: {self.false_alarm_rate:.4f} ({self.regressed} regressed + {self.improved} "
               f"improved over 2 x {self.pairs * self.lines_per_pair} ordered comparisons; {self.identical} "
               "identical)",
               f"old threshold rule (drop > 0.01 with one seed) on the same pairs: {self.old_rule_rate:.4f}",
               f"step time or peak memory out of band (same fingerprint, reported apart): {self.resource_rate:.4f}"]
        if self.discordance is None:
            out.append("discordance rate: n/a (the primary metric is not accuracy: no McNemar power)")
        else:
            out += [f"discordance rate: {self.discordance:.4f} on {self.n_examples} examples",
                    f"smallest accuracy drop detected with {self.power:.0%} power at alpha {self.alpha:g}: "
                    f"{drop(self.min_detectable_drop)}"]
            if self.family > 1:
                out.append(f"... at alpha / {self.family} (Holm's first step over {self.family} lines): "
                           f"{drop(self.min_detectable_drop_family)}")
        return out


def _one_configuration(found: list[tuple[Path, dict[str, Any]]]) -> tuple[str, list[tuple[Path, dict[str, Any]]]]:
    from adapterbench.reports.collect import Collection, ConfigId, GroupKey

    runs = Collection.of(found).ok
    if runs.empty:
        raise UserError("no finished (status ok) run among the records given")
    keys = {(GroupKey.of(r), ConfigId(str(r.variant), str(r.config))) for r in runs.itertuples()}
    if len(keys) > 1:
        names = sorted(f"{g.task}/{c.variant} ({g.profile})" for g, c in keys)
        raise UserError(f"the records hold {len(keys)} configurations ({', '.join(names)}); give a folder of "
                        "one configuration or filter with --task and --variant")
    (group, config), = keys
    sources = set(runs["source"])
    chosen = sorted(((p, r) for p, r in found if str(p) in sources), key=lambda pr: pr[1]["seed"])
    return f"{group.task} / {config.variant} · {group.model} · profile {group.profile}", chosen


def _relabelled(path: Path, record: dict[str, Any]) -> Any:
    """The record as seed 0 (so that any two runs pair), as a one-record collection."""
    from adapterbench.reports.collect import Collection

    return Collection.of([(path, {**record, "seed": 0})])


def _discordance(base: Any, cur: Any, key: str) -> tuple[float, int] | None:
    from adapterbench.reports.regression import paired_predictions, task_metric

    split, _, name = key.rpartition("/")
    metric = task_metric(base.record, name)
    if isinstance(metric, str) or metric.correct is None:
        return None
    paired = paired_predictions({0: base}, {0: cur}, split, None)
    if isinstance(paired, str):
        return None
    b, c, refs = paired
    right_b, right_c = metric.correct(b[0], refs), metric.correct(c[0], refs)
    from adapterbench.stats import discordance_rate

    return discordance_rate(right_b, right_c), len(refs)


def measure(paths: list[str], tasks: list[str] = (), variants: list[str] = (), alpha: float = 0.05,
            min_effect: float = 0.0, power: float = 0.8, family: int = 1, max_pairs: int | None = None) -> Noise:
    from adapterbench import schema
    from adapterbench.reports.collect import filter_records, load_records
    from adapterbench.reports.compare import compare_collections
    from adapterbench.reports.regression import Rules, RunData
    from adapterbench.stats import mcnemar_min_detectable_drop

    if family < 1:
        raise UserError(f"--family {family} is not allowed; give the number of compared lines (>= 1)")
    found, _ = load_records(paths)
    name, chosen = _one_configuration(filter_records(found, tasks, variants))
    if len(chosen) < 2:
        raise UserError(f"{len(chosen)} finished run of the configuration; reseeded runs need at least 2")
    rules = Rules(alpha=alpha, min_effect=min_effect, correction="none", interval=False)
    rules.validate()
    collections = [_relabelled(p, r) for p, r in chosen]
    data = [RunData(p) for p, _ in chosen]
    key = schema.primary_key(chosen[0][1])
    gib = schema.greater_is_better(chosen[0][1])
    pairs = list(itertools.combinations(range(len(chosen)), 2))[:max_pairs]
    counts = {"regressed": 0, "improved": 0, "identical": 0}
    lines = old = resources = 0
    discordances, n_examples = [], 0
    for i, j in pairs:
        comparison = compare_collections(collections[i], collections[j], rules)
        for line in comparison.lines:
            lines += 1
            status = line.metric.status if line.metric else "no metric"
            counts[status] = counts.get(status, 0) + 1
            resources += any(r.regressed for r in line.resources)
        vi, vj = (schema.primary_value(chosen[k][1]) for k in (i, j))
        drop = (vi - vj) if gib else (vj - vi)
        old += (abs(drop) > rules.metric_abs_tol + 1e-12)  # flagged in one of the two directions
        found_d = _discordance(data[i], data[j], key)
        if found_d:
            discordances.append(found_d[0])
            n_examples = found_d[1]
    d = float(np.mean(discordances)) if discordances else None
    detect = detect_family = None
    if d:
        detect = mcnemar_min_detectable_drop(n_examples, d, alpha, power, min_effect=min_effect)
        detect_family = mcnemar_min_detectable_drop(n_examples, d, alpha / family, power, min_effect=min_effect)
    rate = (counts["regressed"] + counts["improved"]) / (2 * lines) if lines else 0.0
    return Noise(name, [r["seed"] for _, r in chosen], len(pairs), lines // max(len(pairs), 1),
                 counts["regressed"], counts["improved"], counts["identical"], rate, old / (2 * len(pairs)),
                 resources / lines if lines else 0.0,
                 n_examples, d, detect, detect_family, alpha, power, family)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="folders or files with reseeded runs of one configuration")
    parser.add_argument("--task", action="append", default=[], help="only this task")
    parser.add_argument("--variant", action="append", default=[], help="only this variant")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-effect", type=float, default=0.0)
    parser.add_argument("--power", type=float, default=0.8)
    parser.add_argument("--family", type=int, default=1,
                        help="lines a night compares (Holm's first step uses alpha / family); default 1")
    parser.add_argument("--max-pairs", type=int, default=None, help="compare at most this many pairs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    try:
        noise = measure(args.results, args.task, args.variant, args.alpha, args.min_effect, args.power,
                        args.family, args.max_pairs)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(noise.lines()))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(noise), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
