"""``bench sweep``: the same tuning budget for every variant, selected on data the report never shows.

The protocol, for each (task, variant):

1. **Trials.** One run per point of the grid (the same grid, so the same number of trials and the same steps, for
   every variant), each training on the training split minus a fixed held-out slice of ``holdout`` examples and
   evaluated on that slice only (``holdout_samples``; the dev split is not even read). A learning-rate value
   written ``3x`` means 3 times the variant's paper learning rate, so one grid fits variants whose scales differ.
2. **Selection.** The trial with the best primary metric on the held-out slice (direction-aware; failed or
   diverged trials never win). An exact tie (several trials that all give, say, the majority-class answer) goes to
   the trial with the lower final training loss (the last epoch's mean, from the training split only), then to
   the earlier grid point.
3. **Finals.** The chosen setting, rerun for every seed on the full training subset and evaluated on dev: the
   numbers that are reported.

Trials and finals are ordinary records (resumable, skipped when done) under ``<out>/trials/`` and
``<out>/final/`` (or ``--final-out``), tagged ``{"sweep", "role", ...}``; ``<out>/sweep.json`` and
``<out>/sweep.md`` hold the chosen settings and every trial's value.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from adapterbench.errors import UserError
from adapterbench.harness.matrix import expand, preflight, run_matrix
from adapterbench.harness.records import read_record, record_path, write_record
from adapterbench.harness.run import HOLDOUT_SPLIT, RunSpec
from adapterbench.harness.settings import TRAIN_KEYS, TrainSettings, parse_value, resolve_lr
from adapterbench.schema import TRAIN_LOSS, learned_at
from adapterbench.tasks import get_task
from adapterbench.variants import VARIANTS

DEFAULT_GRID = {"lr": ["1x", "3x", "10x"]}
DEFAULT_HOLDOUT = 1000


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["lr=1x,3x,10x", "r=4,8"]`` -> ``{"lr": ["1x", "3x", "10x"], "r": [4, 8]}``; malformed items raise."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        parsed = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not parsed:
            raise UserError(f"malformed --grid {item!r}; expected key=v1,v2,..., for example --grid lr=1x,3x,10x")
        if key in grid:
            raise UserError(f"--grid {key} is given twice; give each setting once")
        grid[key] = [v if _is_multiplier(v) else parse_value(v) for v in parsed]
    if len(grid) > 2:
        raise UserError(f"--grid has {len(grid)} settings ({', '.join(grid)}); a sweep tunes at most two "
                        f"(the learning rate and one more)")
    return grid or dict(DEFAULT_GRID)


def _is_multiplier(text: str) -> bool:
    if not text.endswith("x"):
        return False
    try:
        return float(text[:-1]) > 0
    except ValueError:
        return False


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the grid, in a fixed order (the first key varies slowest)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def resolve_point(point: dict[str, Any], default_lr: float) -> dict[str, Any]:
    """A grid point for one variant: ``lr="3x"`` becomes ``3 * default_lr``."""
    out = {}
    for key, value in point.items():
        if isinstance(value, str) and _is_multiplier(value):
            if key != "lr":
                raise UserError(f"--grid {key}={value}: multipliers (Nx) apply to lr only")
            value = float(f"{float(value[:-1]) * default_lr:.6g}")
        out[key] = value
    return out


def plan_trials(variants: list[str], tasks: list[str], grid: dict[str, list[Any]], trial_seed: int, model: str,
                profile: str, overrides: dict[str, Any], data_dir: str | None, out: Path, holdout: int,
                name: str) -> list[RunSpec]:
    """Every trial run: each variant at each grid point, trained without and evaluated on the held-out slice."""
    specs: list[RunSpec] = []
    for number, point in enumerate(grid_points(grid)):
        scoped: dict[str, Any] = {}
        for variant in variants:
            resolved = resolve_point(point, VARIANTS.get(variant).default_lr)
            scoped.update({f"{variant}.{key}": value for key, value in resolved.items()})
        # Trials only need their held-out score: no checkpoint, no latency timing (the finals measure those).
        trial_overrides = {**overrides, **scoped, "holdout_samples": holdout, "save_checkpoint": False,
                           "latency_batches": 0}
        for spec in expand(variants, tasks, [trial_seed], model, profile, trial_overrides, data_dir,
                           str(out / "trials")):
            specs.append(replace(spec, tags={"sweep": name, "role": "trial", "trial": number,
                                             "grid_point": point}))
    return specs


def trial_value(record: dict[str, Any] | None, greater_is_better: bool) -> float:
    """A trial's selection score: its held-out primary metric, or the worst possible when it did not finish."""
    worst = -math.inf if greater_is_better else math.inf
    if not record or record.get("status") != "ok":
        return worst
    value = (record.get("metrics") or {}).get("primary", {}).get("value")
    return worst if value is None or not math.isfinite(value) else float(value)


def final_train_loss(record: dict[str, Any] | None) -> float:
    """The last epoch's mean training loss of a trial (``inf`` when it has none): the tie-break of :func:`select`."""
    history = (record or {}).get("history") or []
    loss = history[-1].get(TRAIN_LOSS) if history else None
    return float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf


def select(trials: list[tuple[RunSpec, dict[str, Any] | None]], greater_is_better: bool
           ) -> tuple[RunSpec, dict[str, Any] | None]:
    """The best trial by held-out value; an exact tie goes to the lower final training loss, then the earlier
    grid point."""
    sign = -1.0 if greater_is_better else 1.0  # ascending sort: the best value first

    def key(i: int) -> tuple[float, float, int]:
        return sign * trial_value(trials[i][1], greater_is_better), final_train_loss(trials[i][1]), i

    return trials[min(range(len(trials)), key=key)]


def selection_warning(trials: list[tuple[RunSpec, dict[str, Any] | None]], chosen: int) -> str | None:
    """Words when the chosen trial rests on a grid where learning is fragile: it did not learn itself, or a grid
    neighbour of it (the trials next to it in grid order) did not (records' ``learned``; older records say
    nothing). A rate whose neighbour fails is at the edge of where the variant learns, and its seeds may not."""
    def learned(i: int) -> bool | None:
        record = trials[i][1]
        if not record or record.get("status") != "ok":
            return False
        return learned_at(record)

    if learned(chosen) is False:
        return "no trial learned: the chosen setting answers like the trivial predictor"
    failed = [_setting(trials[i][0].tags["grid_point"]) for i in (chosen - 1, chosen + 1)
              if 0 <= i < len(trials) and learned(i) is False]
    if failed:
        return f"the chosen setting's grid neighbour {' and '.join(failed)} did not learn"
    return None


def final_overrides(variant: str, chosen: dict[str, Any], profile: str, task: str | None = None) -> dict[str, Any]:
    """The overrides of a final run: the chosen setting, minus a learning rate the profile already gives.

    Once a profile carries the sweep's learning rates (``PROFILE_LR`` or, per task, ``PROFILE_TASK_LR``), a final
    is then exactly the run ``bench run --variants <v> --profile <p>`` makes, with the same run id, so it is not
    computed twice.
    """
    cls = VARIANTS.get(variant)
    profile_lr = resolve_lr(profile, variant, cls.default_lr, TrainSettings(), task)
    return {f"{variant}.{k}": v for k, v in chosen.items()
            if not (k == "lr" and math.isclose(float(v), profile_lr, rel_tol=1e-9))}


def run_sweep(variants: list[str], tasks: list[str], grid: dict[str, list[Any]], seeds: list[int], model: str,
              profile: str, overrides: dict[str, Any], data_dir: str | None, out: str, holdout: int = DEFAULT_HOLDOUT,
              trial_seed: int | None = None, force: bool = False, isolate: bool = True,
              stream: TextIO | None = None, final_out: str | None = None, trials_only: bool = False,
              executor: Any = None) -> int:
    """Trials, selection and finals (see the module docstring); returns 0 when every final run is ok.

    ``final_out`` puts the finals in another results folder (default ``<out>/final``), for example the
    leaderboard's, where runs with the same identity are then already done. ``trials_only`` stops after the
    trials and, once every trial is done, the selection (``sweep.json``, ``sweep.md``): several processes can share
    the trials of one sweep, each claiming runs, and the finals can run elsewhere (for example a leaderboard matrix).
    ``executor``: where the trials and the finals run, as for ``bench run``
    (:func:`~adapterbench.harness.executors.make_executor`; default one after another here): they are ordinary runs.
    """
    out_dir = Path(out)
    name = out_dir.name
    for key in grid:
        if key in ("holdout_samples", "max_train_samples", "epochs", "max_steps"):
            raise UserError(f"--grid {key}: the budget itself cannot be tuned; it must be equal for every variant")
        if key not in TRAIN_KEYS and not all(key in VARIANTS.get(v).config_keys() for v in variants):
            missing = [v for v in variants if key not in VARIANTS.get(v).config_keys()]
            raise UserError(f"--grid {key}: variant {missing[0]!r} has no such setting, so the variants would not "
                            f"get the same budget; tune a setting every variant has (lr) or sweep them apart")
    trial_seed = seeds[0] if trial_seed is None else trial_seed
    trials = plan_trials(variants, tasks, grid, trial_seed, model, profile, overrides, data_dir, out_dir, holdout,
                         name)
    preflight(trials)
    trials_code = run_matrix(trials, force=force, isolate=isolate, stream=stream, executor=executor)
    if trials_only and any(_read(record_path(Path(t.out_dir), t.run_id)) is None for t in trials):
        return trials_code  # some trials are still running elsewhere (or were interrupted): no selection yet
    summary, finals = select_and_plan(trials, variants, tasks, grid, seeds, model, profile, overrides, data_dir,
                                      out_dir, holdout, trial_seed, final_out)
    write_record(out_dir / "sweep.json", summary)
    (out_dir / "sweep.md").write_text(sweep_markdown(summary))
    for task_name, task in summary["tasks"].items():
        for variant, info in task["variants"].items():
            if info.get("warning"):
                print(f"sweep: {task_name} / {variant}: {info['warning']}", file=stream or sys.stdout, flush=True)
    if trials_only:
        return 0
    preflight(finals)
    return run_matrix(finals, force=force, isolate=isolate, stream=stream, executor=executor)


def select_and_plan(trials: list[RunSpec], variants: list[str], tasks: list[str], grid: dict[str, list[Any]],
                    seeds: list[int], model: str, profile: str, overrides: dict[str, Any], data_dir: str | None,
                    out_dir: Path, holdout: int, trial_seed: int, final_out: str | None
                    ) -> tuple[dict[str, Any], list[RunSpec]]:
    """The selection from the trials' records (what ``sweep.json`` holds) and the final runs it implies."""
    name = out_dir.name
    summary: dict[str, Any] = {"sweep": name, "profile": profile, "model": model, "grid": grid,
                               "trials_per_variant": len(grid_points(grid)), "holdout_examples": holdout,
                               "trial_seed": trial_seed, "seeds": seeds, "selection_split": HOLDOUT_SPLIT,
                               "finals": final_out or str(out_dir / "final"), "tasks": {}}
    finals: list[RunSpec] = []
    for task_name in tasks:
        task = get_task(task_name)
        summary["tasks"][task_name] = {"reported_splits": list(task.eval_splits), "metric": task.primary_metric,
                                       "greater_is_better": task.greater_is_better, "variants": {}}
        for variant in variants:
            mine = [s for s in trials if s.variant == variant and s.task == task_name]
            results = [(s, _read(record_path(Path(s.out_dir), s.run_id))) for s in mine]
            chosen_spec, _ = select(results, task.greater_is_better)
            chosen = resolve_point(chosen_spec.tags["grid_point"], VARIANTS.get(variant).default_lr)
            summary["tasks"][task_name]["variants"][variant] = {
                "chosen": chosen,
                "warning": selection_warning(results, mine.index(chosen_spec)),
                "trials": [{"setting": resolve_point(s.tags["grid_point"], VARIANTS.get(variant).default_lr),
                            "run_id": s.run_id, "status": (r or {}).get("status"),
                            "value": (r or {}).get("metrics", {}).get("primary", {}).get("value"),
                            "learned": learned_at(r) if r else None,
                            "total_steps": (r or {}).get("training", {}).get("total_steps")} for s, r in results],
            }
            for spec in expand([variant], [task_name], seeds, model, profile,
                               {**overrides, **final_overrides(variant, chosen, profile, task_name)}, data_dir,
                               final_out or str(out_dir / "final")):
                finals.append(replace(spec, tags={"sweep": name, "role": "final", "chosen": chosen,
                                                  "selected_on": HOLDOUT_SPLIT,
                                                  "trials": [s.run_id for s in mine]}))
    return summary, finals


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return read_record(path)
    except (OSError, ValueError):
        return None


def sweep_markdown(summary: dict[str, Any]) -> str:
    """The sweep's short report: chosen setting and the trial curve per (task, variant)."""
    lines = [f"# Sweep `{summary['sweep']}`", "",
             f"Profile `{summary['profile']}`, model `{summary['model']}`; every variant got the same budget: "
             f"{summary['trials_per_variant']} trials over {json.dumps(summary['grid'])} "
             f"(`Nx` = N times the variant's paper learning rate), seed {summary['trial_seed']}.",
             "", f"**Selection did not see the reported split**: each trial trained without, and was scored on, "
                 f"{summary['holdout_examples']} examples held out of the training split (`{HOLDOUT_SPLIT}`); "
                 f"the chosen setting was then rerun on seeds {summary['seeds']} and evaluated on the dev split "
                 f"(records in `{summary.get('finals', 'final/')}`). The best held-out value wins; an exact tie goes "
                 f"to the lower final training loss, then to the earlier grid point. A trial marked ✗ did not "
                 f"beat the task's trivial predictor (majority class, training mean, all 'O'); a choice whose "
                 f"grid neighbour did not learn is flagged ⚠.", ""]
    for task_name, task in summary["tasks"].items():
        lines += [f"## {task_name} (held-out {task['metric']}, "
                  f"{'higher' if task['greater_is_better'] else 'lower'} is better)", "",
                  "| variant | chosen | trials (setting: held-out value) |", "|---|---|---|"]
        for variant, info in task["variants"].items():
            trials = "; ".join(f"{_setting(t['setting'])}: {_trial_text(t)}" for t in info["trials"])
            warning = f" ⚠ {info['warning']}" if info.get("warning") else ""
            lines.append(f"| {variant} | {_setting(info['chosen'])}{warning} | {trials} |")
        lines.append("")
    return "\n".join(lines)


def _trial_text(trial: dict[str, Any]) -> str:
    if trial["value"] is None:
        return trial["status"] or "missing"
    return f"{trial['value']:.4f}" + (" ✗" if trial.get("learned") is False else "")


def _setting(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())
