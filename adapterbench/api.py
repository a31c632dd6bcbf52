"""A Python API to launch runs: :func:`run` is ``bench run`` called from Python (lm-eval's ``simple_evaluate``).

Each keyword is the command line option of the same name (``data_dir`` is ``--data-dir``; a list is the
comma-separated value; ``overrides`` is one ``--set key=value`` per item; ``True`` passes a flag), so the API and
the command line parse, check, resume and record the same way: nothing here decides anything the CLI does not.
What differs: a bad input raises :class:`~adapterbench.errors.UserError` instead of exiting 2, the answer at the
end of a matrix is off unless ``answer=True``, and the result is the matrix's runs as a DataFrame
(:func:`adapterbench.results.load`, one row per run of this matrix, failed ones included: see ``status``)::

    import adapterbench
    runs = adapterbench.run(variants=["lora", "bitfit"], tasks=["sst2"], seeds=[0, 1], profile="quick",
                            data_dir="../shared/data", out="results/mine", overrides={"r": 16})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from adapterbench.errors import UserError

# keyword -> the option of ``bench run`` it stands for, when the name differs
OPTION_NAMES = {"tasks": "--tasks", "overrides": "--set"}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def run_argv(**options: Any) -> list[str]:
    """``bench run``'s command line for ``options`` (None and False leave an option out)."""
    argv = ["run"]
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
        if name == "overrides":
            if not isinstance(value, Mapping):
                raise UserError(f"overrides={value!r} is not allowed; give a dict such as {{'lr': 1e-4, 'r': 16}}")
            for key, item in value.items():
                argv += [flag, f"{key}={_value(item)}"]
        elif value is True:
            argv.append(flag)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            argv += [flag, ",".join(_value(v) for v in value)]
        else:
            argv += [flag, _value(value)]
    return argv


def run(variants: Sequence[str] | str | None = None, tasks: Sequence[str] | str | None = None,
        seeds: Sequence[int] | int | None = None, profile: str | None = None, data_dir: str | None = None,
        out: str | None = None, overrides: Mapping[str, Any] | None = None, *, model: str | None = None,
        answer: bool = False, **options: Any) -> pd.DataFrame:
    """Run a matrix as ``bench run`` does and return its runs (:func:`adapterbench.results.load` rows).

    ``options`` are the other ``bench run`` options by name: ``matrix``, ``preset``, ``force``, ``executor``,
    ``devices``, ``shard``, ``log_to``, ``experiment``, ``in_process``, ``dry_run`` (which returns the runs
    already recorded), ...
    """
    from adapterbench import results
    from adapterbench.cli import build_parser

    argv = run_argv(variants=variants, tasks=tasks, seeds=seeds, model=model, profile=profile, data_dir=data_dir,
                    out=out, overrides=overrides, **options)
    if not answer:
        argv.append("--no-answer")
    parser = build_parser()._subparsers._group_actions[0].choices["run"]  # noqa: SLF001 - bench run's own parser
    known = {a.dest for a in parser._actions} - {"help"}  # noqa: SLF001
    unknown = [name for name in options if name not in known]
    if unknown:
        raise UserError(f"adapterbench.run: unknown option {unknown[0]!r}; allowed: {', '.join(sorted(known))}")

    def refuse(message: str) -> None:
        raise UserError(message)

    parser.error = refuse  # a bad value is an exception here, not an exit
    args = parser.parse_args(argv[1:])
    args.argv = argv
    args.handler(args)
    specs = getattr(args, "specs", [])  # what the matrix ran (or skipped as done); none: an empty shard
    if not specs:
        return pd.DataFrame(columns=list(results.RUN_COLUMNS))
    frame = results.load(specs[0].out_dir)
    return frame[frame["run_id"].isin({s.run_id for s in specs})].reset_index(drop=True)
