"""Where a run's wall time goes: training and evaluation against everything else (the fixed cost per run).

    python benchmarks/fixed_cost.py RESULTS [RESULTS ...]

reads run records and prints, per run and in total, the worker process's wall time (``time/process_s``: Python
start, imports, the run, writing; records without it fall back to ``time/wall_s``, which misses the process start
and imports), its parts (``time/setup_s``, ``time/train_s``, ``time/eval_s``, ``time/checkpoint_s``,
``time/latency_check_s``) and the fixed-cost share ``1 - (train + eval) / process``. Produce the records with
``bench run`` (any executor, any profile), for example the nightly matrix::

    bench run --matrix benchmarks/nightly-cpu.toml --out /tmp/nightly && python benchmarks/fixed_cost.py /tmp/nightly
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapterbench.harness.records import iter_records

PARTS = ("setup", "train", "eval", "checkpoint", "latency_check")


def breakdown(measurements: dict) -> dict[str, float] | None:
    """Seconds per part, ``other`` (the rest of the process) and ``fixed_share``; None without a train time."""
    m = measurements
    total = m.get("time/process_s", m.get("time/wall_s"))
    if total is None or m.get("time/train_s") is None:
        return None
    parts = {p: float(m.get(f"time/{p}_s") or 0.0) for p in PARTS}
    parts["total"] = float(total)
    parts["other"] = total - sum(parts[p] for p in PARTS)
    parts["fixed_share"] = 1.0 - (parts["train"] + parts["eval"]) / total
    parts["process_timed"] = "time/process_s" in m
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="folders or files of run records")
    args = parser.parse_args(argv)
    rows = []
    for _, record in iter_records(Path(p) for p in args.results):
        if record.get("status") == "ok" and (parts := breakdown(record.get("measurements") or {})):
            rows.append((record["run_id"], parts))
    if not rows:
        print("no ok records with time measurements found", file=sys.stderr)
        return 1
    header = f"{'run':58s} {'total':>7s} " + " ".join(f"{p[:8]:>8s}" for p in (*PARTS, "other")) + "  fixed"
    print(header)
    for run_id, parts in sorted(rows):
        print(f"{run_id[:58]:58s} {parts['total']:7.1f} " + " ".join(f"{parts[p]:8.2f}" for p in (*PARTS, "other"))
              + f"  {parts['fixed_share']:5.1%}" + ("" if parts["process_timed"] else " (wall_s: no process start)"))
    total = sum(p["total"] for _, p in rows)
    inside = sum(p["train"] + p["eval"] for _, p in rows)
    print(f"{len(rows)} runs: {total:.1f} s in all, {inside:.1f} s training and evaluation, "
          f"fixed-cost share {1 - inside / total:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
