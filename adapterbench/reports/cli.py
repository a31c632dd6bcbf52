"""Command-line glue for ``bench report``, ``bench compare`` and ``bench export`` (wired into
:mod:`adapterbench.cli`). Files under RESULTS that are not readable run records are skipped: each is named with
its reason, and counted in the summary.

``bench report [RESULTS ...] --out reports/NAME [--task T] [--variant V] [--model M] [--force]``
    writes ``report.md``, ``report.html`` (self-contained), ``table.csv`` and the chart PNGs into ``--out``
    (default: ``reports/report-<UTC time>``). An existing non-empty ``--out`` is refused unless ``--force``,
    and even then only a folder holding a previous report is replaced.

``bench compare BASELINE CURRENT [--out FILE.md] [--alpha 0.05] [--min-effect 0] [--correction holm]
[--common-only] [--band-k 3] [--speed-tolerance 0.05] [--memory-tolerance 0.2] [--metric-abs-tol 0.01]
[--metric-std-k 2] [--force]``
    prints a Markdown diff table (for a CI job summary) and exits 1 on any regression, 0 otherwise (the rules:
    :mod:`adapterbench.reports.compare` and :mod:`adapterbench.reports.regression`). ``--out``
    also writes it to a file; an existing non-empty file is refused unless ``--force`` (an empty one, such as
    ``$GITHUB_STEP_SUMMARY`` at the start of a step, is written).

``bench export [RESULTS ...] --out FOLDER [--format csv|parquet]``
    writes the tables of :mod:`adapterbench.results` (``runs``, ``points``, ``history``) into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapterbench import progress
from adapterbench.errors import UserError

DEFAULT_RESULTS = "runs"  # where `bench run` writes by default (adapterbench.cli.DEFAULT_OUT)


def _names(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated filter values: ``--task sst2,mrpc --task rte`` -> three names."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def configure_report_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("results", nargs="*", metavar="RESULTS",
                        help=f"folders or files of run records (default: {DEFAULT_RESULTS})")
    parser.add_argument("--out", metavar="FOLDER",
                        help="report folder to write (default: reports/report-<UTC date-time>)")
    parser.add_argument("--task", action="append", metavar="NAME", help="only these tasks (repeat or comma-separate)")
    parser.add_argument("--variant", action="append", metavar="NAME", help="only these variants")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="only these models (name, path or its last part)")
    parser.add_argument("--force", action="store_true", help="replace an existing report in --out")
    return parser


def report_command(args: argparse.Namespace) -> int:
    from adapterbench.reports.build import write_report

    out = Path(args.out) if args.out else Path("reports") / datetime.now(UTC).strftime("report-%Y%m%d-%H%M%S")
    with progress.reporting(sys.stderr):  # progress lines on stderr once it takes more than a few seconds
        report = write_report(args.results or [DEFAULT_RESULTS], out, tasks=_names(args.task),
                              variants=_names(args.variant), models=_names(args.model), force=args.force)
        progress.note("done")
    groups = sum(len(t.groups) for t in report.tasks)
    for line in report.skipped:
        print(f"skipped {line}")
    print(f"wrote {out}/report.html, report.md, table.csv and "
          f"{sum(len(g.charts) for t in report.tasks for g in t.groups)} charts: {report.summary['runs']} runs, "
          f"{groups} comparable group(s), {len(report.failed)} failed run(s), {len(report.skipped)} file(s) skipped")
    return 0


def configure_compare_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("baseline", metavar="BASELINE", help="folder or file of baseline run records")
    parser.add_argument("current", metavar="CURRENT", help="folder or file of current run records")
    parser.add_argument("--out", metavar="FILE.md", help="also write the Markdown table to this file")
    parser.add_argument("--alpha", type=float, default=0.05, metavar="A",
                        help="significance level of the one-sided paired test (default 0.05)")
    parser.add_argument("--min-effect", type=float, default=0.0, metavar="X",
                        help="a significant drop smaller than X (metric units) is not a regression (default 0)")
    parser.add_argument("--correction", choices=["holm", "bh", "none"], default="holm",
                        help="correction of the p-values over the compared lines (default holm)")
    parser.add_argument("--common-only", action="store_true",
                        help="compare only what both sides have; runs on one side are skipped, not regressions")
    parser.add_argument("--band-k", type=float, default=3.0, metavar="K",
                        help="step time and memory bands are median ± K MAD of the baseline (default 3)")
    parser.add_argument("--speed-tolerance", type=float, default=0.05, metavar="F",
                        help="the step-time band is at least ± F × median (default 0.05)")
    parser.add_argument("--memory-tolerance", type=float, default=0.2, metavar="F",
                        help="the peak-memory band is at least ± F × median (default 0.2)")
    parser.add_argument("--metric-abs-tol", type=float, default=0.01, metavar="X",
                        help="records without predictions: a drop up to max(X, k × baseline std) passes (default 0.01)")
    parser.add_argument("--metric-std-k", type=float, default=2.0, metavar="K",
                        help="records without predictions: k in max(abs tol, k × baseline std) (default 2)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out file")
    return parser


def compare_rules(args: argparse.Namespace):
    from adapterbench.reports.regression import Rules

    rules = Rules(alpha=args.alpha, min_effect=args.min_effect, correction=args.correction, band_k=args.band_k,
                  speed_tolerance=args.speed_tolerance, memory_tolerance=args.memory_tolerance,
                  metric_abs_tol=args.metric_abs_tol, metric_std_k=args.metric_std_k, common_only=args.common_only)
    rules.validate()
    return rules


def compare_command(args: argparse.Namespace) -> int:
    from adapterbench.reports.compare import compare_paths
    from adapterbench.reports.compare_markdown import render_comparison

    rules = compare_rules(args)
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.is_dir():
            raise UserError(f"--out {str(out)!r} is a folder; give a Markdown file name")
        if out.exists() and out.stat().st_size > 0 and not args.force:
            raise UserError(f"--out {str(out)!r} already exists; choose another file or pass --force to overwrite")
    comparison = compare_paths([args.baseline], [args.current], rules)
    text = render_comparison(comparison, args.baseline, args.current)
    sys.stdout.write(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 1 if comparison.failed else 0


def configure_export_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from adapterbench.results import EXPORT_FORMATS

    parser.add_argument("results", nargs="*", metavar="RESULTS",
                        help=f"folders or files of run records (default: {DEFAULT_RESULTS})")
    parser.add_argument("--out", metavar="FOLDER", required=True, help="folder for runs, points and history tables")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="csv", help="file format (default csv)")
    return parser


def export_command(args: argparse.Namespace) -> int:
    import warnings

    from adapterbench.reports.collect import load_records
    from adapterbench.results import export

    paths = args.results or [DEFAULT_RESULTS]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {args.out!r} is a file; give a folder for the runs, points and history tables")
    if any(p.exists() and not p.is_dir() for p in out.absolute().parents):
        raise UserError(f"--out {args.out!r} cannot be created: a folder above it is a file")
    _, skipped = load_records(paths)  # a missing path or no record at all: a one-line error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped files are printed below, once
        written = export(paths, args.out, args.format)
    for line in skipped:
        print(f"skipped {line}")
    print(f"wrote {', '.join(str(p) for p in written)} ({len(skipped)} file(s) skipped)")
    return 0


def report_hint(specs: list[Any]) -> str:
    """The ``bench report`` command for a matrix's records; filtered to its tasks and variants when its folder
    holds other records too (a shared folder of hundreds would otherwise be reported, for minutes, with it)."""
    from adapterbench.harness.matrix import task_label
    from adapterbench.harness.records import record_files

    out = specs[0].out_dir
    ours = {f"{spec.run_id}.json" for spec in specs}
    others = sum(p.name not in ours for p in record_files(Path(out))) if Path(out).is_dir() else 0
    command = f"bench report {out} --out reports/{Path(out).name}"
    if others:
        tasks = ",".join(dict.fromkeys(task_label(spec.task) for spec in specs))
        variants = ",".join(dict.fromkeys(spec.variant for spec in specs))
        command += f" --task {tasks} --variant {variants}  # {out}/ holds {others} other record(s)"
    return command
