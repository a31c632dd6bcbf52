"""What a paper preset is, and the small pure functions that translate a paper's settings into ours.

A :class:`Preset` is data: the variant, the model, the profile and, per task, the settings that the paper's
official scripts pass (under our setting names), the published result to show beside a measured one
(:class:`Reference`), and the official settings that this harness cannot express (``not_applied``), so that
nothing the paper did is silently dropped.

Units: a :class:`Reference` keeps the cell as printed (``"95.1±.2"``, percent) in ``reported`` and the same
number in the record's units in ``value``/``std`` (fractions: 0.951, 0.002), parsed from the printed cell so the
two cannot disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# Training examples per GLUE task, used to turn the official scripts' warm-up *steps* into our warm-up *ratio*.
# CoLA, SST-2, MRPC, STS-B and RTE: counted in the train.tsv files of ../shared/data (GLUE's own
# download_glue_data.py files; tests/test_presets.py recounts them when the folder is there). MNLI, QNLI and QQP
# (absent there): the sizes of the hub's nyu-mll/glue train splits as printed in GLUE statistics tables, e.g.
# "MNLI 392,702 / QQP 363,846 / QNLI 104,743". A run records its real count (training.train_examples), so a
# different copy of the data shows up in the record rather than silently shifting the warm-up.
GLUE_TRAIN_EXAMPLES: dict[str, int] = {
    "cola": 8551, "sst2": 67349, "mrpc": 3668, "stsb": 5749, "rte": 2490,
    "mnli": 392702, "qnli": 104743, "qqp": 363846,
}


def total_steps(n_train: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a run: ``ceil(n_train / batch_size) * epochs`` (the last batch of an epoch is kept,
    as in our loop and the Hugging Face Trainer the official scripts use)."""
    return math.ceil(n_train / batch_size) * epochs


def warmup_ratio_from_steps(warmup_steps: int, steps: int) -> float:
    """The ``warmup_ratio`` whose warm-up is ``warmup_steps`` in a run of ``steps`` optimizer steps.

    Our loop warms up for ``int(warmup_ratio * total_steps)`` steps; half a step is added so that the float
    product never lands just below the whole number (``int(0.0198 * 50520)`` could give 999 instead of 1000).
    """
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warm-up of {warmup_steps} steps does not fit a run of {steps} steps")
    return (warmup_steps + 0.5) / steps


_CELL = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(?:±\s*(\d*\.?\d+))?\s*$")


@dataclass(frozen=True)
class Reference:
    """A published result for one metric of one task.

    ``metric`` is a key of the record's ``metrics.final`` / ``metrics.best`` (``"validation/accuracy"``) or
    ``"mean(<key>,<key>)"`` for a number the paper averages over two of our metrics (AdaLoRA's STS-B
    correlation). ``aggregate`` says what the paper's number summarises (seeds, epoch selection).
    """

    source: str
    metric: str
    reported: str  # the table cell as printed, percent
    aggregate: str = ""
    note: str = ""

    @property
    def value(self) -> float:
        return parse_cell(self.reported)[0]

    @property
    def std(self) -> float | None:
        return parse_cell(self.reported)[1]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "metric": self.metric, "value": self.value, "std": self.std,
                "reported": self.reported, "aggregate": self.aggregate, "note": self.note}


def parse_cell(cell: str) -> tuple[float, float | None]:
    """``"95.1±.2"`` -> ``(0.951, 0.002)``; ``"90.66"`` -> ``(0.9066, None)`` (percent to fraction)."""
    match = _CELL.match(cell)
    if not match:
        raise ValueError(f"cannot read the table cell {cell!r}; expected a number, optionally '±' a spread")
    value = float(Decimal(match.group(1)) / 100)
    spread = match.group(2)
    return value, (float(Decimal(spread) / 100) if spread else None)


def measured_value(metric: str, metrics: dict[str, Any]) -> float | None:
    """The measured counterpart of a reference ``metric`` in a record's ``metrics.final`` (or ``best``) dict;
    ``None`` when the record lacks it. ``mean(a,b)`` is the plain mean of the two keys."""
    match = re.fullmatch(r"mean\((.+)\)", metric)
    keys = [k.strip() for k in match.group(1).split(",")] if match else [metric]
    values = [metrics.get(k) for k in keys]
    if any(not isinstance(v, (int, float)) for v in values):
        return None
    return float(sum(values) / len(values))


@dataclass(frozen=True)
class PresetTask:
    """One task of a preset.

    ``settings`` use our names (loop settings and the variant's Config fields); ``source`` is the file or table
    they come from. ``derived`` says how a setting was translated (warm-up steps to a ratio, GPUs times
    per-device batch); ``paper_differs`` lists, per setting, what the paper's table says where the official
    script differs (the preset follows the script); ``not_applied`` lists official settings this harness
    cannot express.
    """

    settings: dict[str, Any]
    source: str
    reference: Reference | None = None
    also: tuple[Reference, ...] = ()  # further published metrics of the same runs (MNLI mismatched, ...)
    derived: dict[str, str] = field(default_factory=dict)
    paper_differs: dict[str, str] = field(default_factory=dict)
    not_applied: tuple[str, ...] = ()
    no_reference: str = ""  # why there is no reference, when there is none


@dataclass(frozen=True)
class Preset:
    """A paper's per-task recipe for one variant on one model (see the module docstring)."""

    name: str
    description: str
    variant: str
    model: str  # a Hugging Face model id; --model replaces it (a local copy, or a tiny stand-in in tests)
    paper: str
    code: str  # the official scripts, with the commit read
    tasks: dict[str, PresetTask]
    profile: str = "standard"
    not_applied: tuple[str, ...] = ()  # official settings, for every task, that the harness cannot express
    notes: tuple[str, ...] = ()

    def task(self, name: str) -> PresetTask:
        if name not in self.tasks:
            from adapterbench.errors import UserError

            raise UserError(f"preset {self.name!r} has no task {name!r}; its tasks: {', '.join(self.tasks)}")
        return self.tasks[name]

    def tag(self, task: str, run_settings: dict[str, Any], profile: str, model: str) -> dict[str, Any]:
        """What a run of ``task`` records about the preset (``RunSpec.tags``; never part of the run identity).

        ``deviations`` names every preset setting the run changed (``--set``, ``--profile``, ``--model``), so a
        report can tell a faithful run from a shortened one before it puts "paper" beside "measured".
        """
        entry = self.task(task)
        deviations = {k: {"preset": v, "run": run_settings[k]} for k, v in entry.settings.items()
                      if k in run_settings and run_settings[k] != v}
        if profile != self.profile:
            deviations["profile"] = {"preset": self.profile, "run": profile}
        if model != self.model:
            deviations["model"] = {"preset": self.model, "run": model}
        return {
            "name": self.name, "task": task, "paper": self.paper, "code": self.code, "source": entry.source,
            "settings": dict(entry.settings), "derived": dict(entry.derived),
            "paper_differs": dict(entry.paper_differs),
            "not_applied": list(self.not_applied) + list(entry.not_applied),
            "also": [r.as_dict() for r in entry.also], "no_reference": entry.no_reference,
            "deviations": deviations,
        }
