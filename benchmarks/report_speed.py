"""``bench report`` old against new, side by side in one run: time ratios, and the same verdicts and intervals.

    python benchmarks/report_speed.py                       # every task, one by one, then all together
    python benchmarks/report_speed.py --task sst2 --task mrpc
    python benchmarks/report_speed.py --new-only --task all # only the new code (cold, then warm cache), one report

OLD is the code at ``--old`` (default ``de6b87e``, main before the metric registry), checked out into a temporary
``git worktree`` and run with ``PYTHONPATH`` pointing at it; NEW is this checkout. For each selected scope (one
task, or every task when no ``--task`` is given) the script runs, as separate processes on the same records:

* OLD, ``bench report RECORDS [--task T] --out TMP``;
* NEW cold: the same with the per-example statistics cache off (``ADAPTERBENCH_REPORT_CACHE=off``);
* NEW warm: twice with the cache in a fresh temporary folder; the second run is timed (a re-render: what
  ``bench report`` costs after one more record, less that record's own statistics);

and prints wall seconds, CPU seconds (user + system of the child), the ratio old / new, and a comparison of
``table.csv`` (every row's verdict, the Holm-adjusted p, each metric's 95% interval and the difference from the
best with its interval) and of ``report.md``'s pairs matrices (the mark of every pair). Intervals over one run's
examples use the same bootstrap draws in both, so they agree to rounding; the paired ones draw afresh (the
sign flips come first in OLD), and a percentile endpoint of ``B = 2000`` resamples has a Monte-Carlo standard
error of about ``0.015`` of the interval's width, so differences are reported in widths, flagged beyond
``3 sqrt(2)`` of those errors (``0.065`` widths). Verdicts that differ are listed with both p-values: with a p
within a few Monte-Carlo errors of the threshold they depend on the draw (NEW marks those unstable).

Cost on the shared 2-core machine (measured, under other people's load; see the closing note of issue 22): OLD
takes 100-130 s for ``--task sst2``, 70-150 s for mrpc and, by the issue's profile, about 4 minutes for stsb,
16 for conll2003 and 23 for all together, so the default (every task, then all) takes about an hour;
``--task sst2 --task mrpc`` took 5 minutes; ``--new-only --task all`` 4 minutes (three NEW reports of about
80 s). Run it under ``nice``: a report uses both cores.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH_FLAG = 0.065  # 3 sqrt(2) Monte-Carlo standard errors of a percentile endpoint, in interval widths


def run_report(code: Path, records: str, task: str | None, out: Path, env_extra: dict[str, str]) -> tuple[float, float]:
    """Run ``bench report`` from ``code``; -> (wall s, CPU s of the child)."""
    env = {**os.environ, "PYTHONPATH": str(code), **env_extra}
    command = [sys.executable, "-m", "adapterbench.cli", "report", records, "--out", str(out), "--force"]
    if task:
        command += ["--task", task]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench report failed in {code}: {done.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def read_table(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    rows = csv.DictReader(io.StringIO((folder / "table.csv").read_text()))
    return {(r["task"], r["label"]): r for r in rows}


def pair_marks(folder: Path) -> dict[tuple[str, str, str], str]:
    """``(task, row, column) -> mark`` of every cell of the report's "which pairs differ" matrices."""
    marks, task, header = {}, None, None
    for line in (folder / "report.md").read_text().splitlines():
        heading = re.match(r"^### (.+?): which pairs differ", line)
        if heading:
            task, header = heading.group(1).split(" ·")[0], None
            continue
        if line.startswith("#"):
            task = None
        if task is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(cells[0]) <= set(":-"):
            for column, cell in zip(header[1:], cells[1:]):
                marks[(task, cells[0], column)] = cell.split(" ")[0].replace("\\", "")
    return marks


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def compare(old: Path, new: Path) -> list[str]:
    """Lines describing how NEW's verdicts and intervals differ from OLD's."""
    a, b = read_table(old), read_table(new)
    lines, shifts, verdicts, p_diffs = [], [], 0, []
    interval_columns = [c[:-4] for c in next(iter(a.values())) if c.endswith(":low")]
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is None or rb is None:
            lines.append(f"  row {key} only in {'new' if ra is None else 'old'}")
            continue
        if ra["verdict"] != rb["verdict"]:
            verdicts += 1
            lines.append(f"  verdict {key}: old {ra['verdict']} (p {ra['p_holm']}), new {rb['verdict']} "
                         f"(p {rb['p_holm']})")
        pa, pb = _float(ra["p_holm"]), _float(rb["p_holm"])
        if pa is not None and pb is not None:
            p_diffs.append(abs(pa - pb))
        for low, high in [("primary_low", "primary_high"), ("vs_best_low", "vs_best_high"),
                          *((f"{c}:low", f"{c}:high") for c in interval_columns)]:
            values = [_float(r.get(k, "")) for r in (ra, rb) for k in (low, high)]
            if None in values:
                continue
            width = max(values[1] - values[0], 1e-12)
            shift = max(abs(values[0] - values[2]), abs(values[1] - values[3])) / width
            shifts.append(shift)
            if shift > WIDTH_FLAG:
                lines.append(f"  interval {key} {low[:-4]}: old [{values[0]:.4f}, {values[1]:.4f}], "
                             f"new [{values[2]:.4f}, {values[3]:.4f}] ({shift:.3f} widths)")
    ma, mb = pair_marks(old), pair_marks(new)
    pairs_differ = [k for k in ma if mb.get(k) != ma[k]]
    for k in pairs_differ:
        lines.append(f"  pair {k}: old {ma[k]}, new {mb.get(k)}")
    summary = (f"  rows {len(a)}; verdicts differing {verdicts}; pair marks differing {len(pairs_differ)} of "
               f"{len(ma)}; intervals compared {len(shifts)}, largest endpoint shift "
               f"{max(shifts, default=0):.4f} widths, {sum(s > WIDTH_FLAG for s in shifts)} beyond "
               f"{WIDTH_FLAG} widths; largest |p_holm old - new| {max(p_diffs, default=0):.4f}")
    return [summary, *lines]


def old_tree(ref: str, where: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], cwd=ROOT, check=True,
                   capture_output=True)
    return where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="results/leaderboard-cpu", help="records folder (default: %(default)s)")
    parser.add_argument("--task", action="append", help="only these tasks, one report each; 'all': every task in "
                                                         "one report (default: each task, then all together)")
    parser.add_argument("--new-only", action="store_true", help="time the new code only")
    parser.add_argument("--old", default="de6b87e", help="the old commit (default: %(default)s)")
    args = parser.parse_args()
    records = str((ROOT / args.records).resolve())
    scopes = [None if t == "all" else t for t in args.task] if args.task else ["sst2", "mrpc", "stsb", "conll2003",
                                                                                None]
    scratch = Path(tempfile.mkdtemp(prefix="report-speed-"))
    old = None if args.new_only else old_tree(args.old, scratch / "old")
    print(f"records {records}; old {args.old if old else '(not run)'}; new {ROOT}")
    print(f"{'scope':<10} {'old wall':>9} {'old cpu':>8} {'new cold':>9} {'cpu':>6} {'new warm':>9} {'cpu':>6} "
          f"{'ratio cold':>10} {'ratio warm':>10}")
    notes = []
    try:
        for scope in scopes:
            name = scope or "all"
            cold_out, warm_out = scratch / f"new-{name}", scratch / f"warm-{name}"
            cold = run_report(ROOT, records, scope, cold_out, {"ADAPTERBENCH_REPORT_CACHE": "off"})
            cache_env = {"ADAPTERBENCH_CACHE": str(scratch / f"cache-{name}"), "ADAPTERBENCH_REPORT_CACHE": "on"}
            run_report(ROOT, records, scope, warm_out, cache_env)  # fills the cache
            warm = run_report(ROOT, records, scope, warm_out, cache_env)
            if old is not None:
                old_out = scratch / f"old-{name}"
                before = run_report(old, records, scope, old_out, {})
                ratios = f"{before[0] / cold[0]:>9.1f}x {before[0] / warm[0]:>9.1f}x"
                print(f"{name:<10} {before[0]:>8.1f}s {before[1]:>7.1f}s {cold[0]:>8.1f}s {cold[1]:>5.1f}s "
                      f"{warm[0]:>8.1f}s {warm[1]:>5.1f}s {ratios}", flush=True)
                notes += [f"{name}: old against new (cold)", *compare(old_out, cold_out)]
            else:
                print(f"{name:<10} {'—':>9} {'—':>8} {cold[0]:>8.1f}s {cold[1]:>5.1f}s {warm[0]:>8.1f}s "
                      f"{warm[1]:>5.1f}s {'—':>10} {'—':>10}", flush=True)
            notes += [f"{name}: new cold against new warm", *compare(cold_out, warm_out)]
    finally:
        if old is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
