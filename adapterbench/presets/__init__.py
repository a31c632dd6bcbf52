"""Paper presets: a method's published per-task recipe and its reported results, as data.

``bench run --preset NAME --task T[,T2]`` (or ``preset = "NAME"`` in a matrix file) runs the preset's variant on
its model with the ``standard`` profile and, per task, the official script's settings; ``--model``,
``--profile``, ``--seeds`` and ``--set`` still apply and win over the preset. Each record carries, in its
``tags``:

* ``reference``: the paper's number for that task, ``{"source", "metric", "value", "std", "reported",
  "aggregate", "note"}`` (``null`` when the paper has none for this recipe; ``tags.preset.no_reference`` says
  why), with ``value``/``std`` in the record's units, so a report can show "paper" beside "measured"
  (:func:`measured_value`);
* ``preset``: the preset's name, sources, settings, how settings were translated, where the paper and its
  code differ, the official settings this harness cannot express (``not_applied``) and the settings the run
  changed (``deviations``).

Tags are never part of the run identity; the preset's settings are, as overrides, exactly as if they had been
given with ``--set``. Built-in presets: :mod:`.lora_roberta_base`, :mod:`.adalora_debertav3_base`.
"""

from __future__ import annotations

from typing import Any

from adapterbench.errors import UserError
from adapterbench.presets.spec import (
    GLUE_TRAIN_EXAMPLES,
    Preset,
    PresetTask,
    Reference,
    measured_value,
    parse_cell,
    total_steps,
    warmup_ratio_from_steps,
)
from adapterbench.registry import Registry

PRESETS: Registry = Registry("preset")
PRESETS.register("lora-roberta-base", "adapterbench.presets.lora_roberta_base:PRESET")
PRESETS.register("adalora-debertav3-base", "adapterbench.presets.adalora_debertav3_base:PRESET")
PRESETS.register("adalora-debertav3-base-0.3m", "adapterbench.presets.adalora_debertav3_base:PRESET_0_3M")


def get_preset(name: str) -> Preset:
    """The registered preset ``name``; unknown names raise a one-line error listing the presets."""
    return PRESETS.get(name)


def expand_preset(name: str, tasks: list[str], seeds: list[int], model: str | None, profile: str | None,
                  overrides: dict[str, Any], data_dir: str | None, out_dir: str) -> list[Any]:
    """The runs of preset ``name`` on ``tasks``: one ``RunSpec`` per (task, seed), preset settings under
    ``overrides`` (the user's ``--set`` wins), tagged with the preset and the task's reference result."""
    from adapterbench.harness.matrix import expand

    preset = get_preset(name)
    if not tasks:
        raise UserError(f"no tasks given for preset {name!r}; its tasks: {', '.join(preset.tasks)} "
                        f"(for example --task {next(iter(preset.tasks))})")
    entries = {task: preset.task(task) for task in tasks}  # every unknown task fails before any run
    model = model or preset.model
    profile = profile or preset.profile
    specs = []
    for task, entry in entries.items():
        for spec in expand([preset.variant], [task], seeds, model, profile, {**entry.settings, **overrides},
                           data_dir, out_dir):
            spec.tags = {**spec.tags, "preset": preset.tag(task, spec.overrides, profile, model),
                         "reference": entry.reference.as_dict() if entry.reference else None}
            specs.append(spec)
    return specs


def preset_rows() -> list[tuple[str, str, str, str]]:
    """``bench list presets``: name, paper, what it runs, origin."""
    rows = []
    for entry in PRESETS.entries():
        p = entry.load()
        rows.append((p.name, p.paper, f"{p.variant} on {p.model}, profile {p.profile}; tasks "
                     f"{','.join(p.tasks)}", entry.origin))
    return rows


__all__ = [
    "GLUE_TRAIN_EXAMPLES", "PRESETS", "Preset", "PresetTask", "Reference", "expand_preset", "get_preset",
    "measured_value", "parse_cell", "preset_rows", "total_steps", "warmup_ratio_from_steps",
]
