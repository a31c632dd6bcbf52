"""Test-wide settings.

Tiny models run fastest on one thread; more threads only add OpenMP synchronisation, and on a loaded 2-core
machine (CI, or several pytest processes) oversubscription makes every small matmul orders of magnitude slower.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("ADAPTERBENCH_PROGRESS", "0")

# transformers binds its log handler to whatever sys.stderr is when it first logs. Were that inside a test using
# capsys, the handler would keep that test's capture stream, closed once the test ends, and every later log line
# would print a "--- Logging error ---" traceback into another test's stderr. Bind it now, to the session's stream.
import transformers.utils.logging as _transformers_logging  # noqa: E402

_transformers_logging.get_logger("transformers")


@pytest.fixture(scope="session")
def real_records(tmp_path_factory):
    """Records written by the real harness on tiny models, once per session: {"mixed", "clean", "model"} folders
    (see tests/data/records/make_records.py)."""
    sys.path.insert(0, str(Path(__file__).parent / "data" / "records"))
    from make_records import make_records

    return make_records(tmp_path_factory.mktemp("records"))
