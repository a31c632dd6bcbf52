"""Entry point of the per-run process: ``python -m adapterbench.harness.worker RECORD_PATH`` with the run's
:class:`~adapterbench.harness.run.RunSpec` as JSON on standard input. It writes the record and exits 0; the
parent treats any other ending (a signal, a non-zero exit, no record) as a failed or out-of-memory run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    path = Path(sys.argv[1])
    spec_fields = json.loads(sys.stdin.read())

    import transformers
    from tqdm import tqdm

    # The load report (head "MISSING", pooler "UNEXPECTED") is expected for every run; the record keeps what
    # matters (which parameters are new).
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    from adapterbench.harness.records import write_record
    from adapterbench.harness.run import RunSpec, execute

    spec = RunSpec(**spec_fields)
    bar = None

    def progress(step: int, total: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="  train", unit="step", leave=False, file=sys.stderr,
                       mininterval=1.0, disable=os.environ.get("ADAPTERBENCH_PROGRESS") == "0")
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar.update(1)

    try:
        record = execute(spec, progress)
    finally:
        if bar is not None:
            bar.close()
    write_record(path, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
