"""adapterbench: which adapter method should I use, and what does it cost?

A benchmark suite for parameter-efficient fine-tuning variants. One registry of variants and tasks, one
training/evaluation loop held constant for every variant, self-describing run records and reports.

From Python: ``adapterbench.run(...)`` launches a matrix as ``bench run`` does (:func:`adapterbench.api.run`),
and :mod:`adapterbench.results` reads records into pandas (``summary`` is the report's per-configuration table).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import adapterbench` (every `bench` command) stays light.
    if name == "run":
        from adapterbench.api import run

        return run
    raise AttributeError(f"module 'adapterbench' has no attribute {name!r}")
