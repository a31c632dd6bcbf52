"""Backfill the ``learned`` part of records written before the check (adapterbench/stats/learned.py).

    python benchmarks/backfill_learned.py results/leaderboard-cpu --data-dir ../shared/data

For each ok record without a ``learned`` part: its predictions sidecar (every split and evaluation point it kept)
is tested against the task's trivial predictor, fitted on the training labels the run trained on (read again from
the data, the same subset the run drew), and the part is added to the record, marked ``backfilled`` with today's
date. Nothing else in the record changes, and no run is repeated; records that already have the part are left
alone, so running it twice changes nothing. Prints, per task and variant, how many seeds learned.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from adapterbench.harness.learning import backfill
    from adapterbench.harness.records import iter_records, read_predictions, write_record
    from adapterbench.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    today = datetime.now(UTC).date().isoformat()
    learned: dict[tuple[str, str], list[str]] = defaultdict(list)
    written = 0
    for path, record in iter_records([Path(f) for f in args.folders]):
        if record.get("status") != "ok":
            continue
        if not record.get("learned"):
            sidecar = read_predictions(path, record)
            if sidecar is None:
                print(f"{path}: no predictions sidecar; left as it is", file=sys.stderr)
                continue
            task = get_task(record["task"]["name"])
            raw = dict(record)
            raw.pop("migrated_from", None)
            raw["learned"] = backfill(raw, sidecar, task, args.data_dir, today)
            write_record(path, raw)
            record, written = raw, written + 1
        outcome = record["learned"].get("learned")
        learned[(record["task"]["name"], record["variant"]["name"])].append(
            "?" if outcome is None else "y" if outcome else "n")
    print(f"backfilled {written} records")
    for (task, variant), outcomes in sorted(learned.items()):
        print(f"{task:10} {variant:10} learned {outcomes.count('y')}/{len(outcomes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
