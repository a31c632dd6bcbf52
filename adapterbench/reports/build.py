"""``bench report``: from run records to a report folder.

    found, skipped = load_records(paths)            # files or folders; unreadable files skipped with a reason
    found    = filter_records(found, task, variant, model)
    report   = build_report(Collection.of(found, skipped), staging, sources)   # the report model, charts drawn
    write      report.md, report.html, table.csv (the three writers of the model), then move the folder into place

An existing report folder is never overwritten silently: without ``force`` an existing non-empty ``out`` is
refused; with ``force`` it is replaced only if it looks like a report (holds ``report.md`` or ``report.html``),
so a mistyped ``--out .`` cannot delete a project. The new report is written next to it first, so a failure
half-way leaves the old report intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from adapterbench import progress
from adapterbench.errors import UserError
from adapterbench.reports.collect import Collection, filter_records, load_records
from adapterbench.reports.csvfile import table_csv
from adapterbench.reports.html import render_html
from adapterbench.reports.markdown import render_markdown
from adapterbench.reports.model import Report, build_report
from adapterbench.stats import cache as sums_cache

REPORT_FILES = ("report.md", "report.html", "table.csv")


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; give a folder for the report")
    if not any(out.iterdir()):
        return
    if not force:
        raise UserError(f"--out {str(out)!r} already holds files; choose another folder or pass --force "
                        "to replace the report in it")
    if not any((out / name).exists() for name in ("report.md", "report.html")):
        raise UserError(f"--out {str(out)!r} does not look like a report folder (no report.md or report.html); "
                        "refusing to replace it even with --force")


def write_report(paths: Sequence[str | Path], out: str | Path, *, tasks: Sequence[str] = (),
                 variants: Sequence[str] = (), models: Sequence[str] = (), force: bool = False) -> Report:
    """Read, filter, aggregate, draw and write the report folder ``out``; return the report model."""
    out = Path(out)
    _check_out(out, force)
    found, skipped = load_records(paths)
    found = filter_records(found, tasks, variants, models)
    progress.note(f"{len(found)} record(s) read; statistics next")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read and served
        with sums_cache.session():  # the aligned prediction lists are read-only: hash each one once
            report = build_report(Collection.of(found, skipped), staging, [str(p) for p in paths])
        progress.note("writing report.md, report.html and table.csv")
        (staging / "table.csv").write_text(table_csv(report))
        (staging / "report.md").write_text(render_markdown(report))
        (staging / "report.html").write_text(render_html(report, staging))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report
