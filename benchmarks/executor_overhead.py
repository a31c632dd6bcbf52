"""What the Ray executor adds per run over the local one, and whether both give the same records.

A 12-run smoke matrix (3 variants x 4 seeds, a tiny BERT written to a temporary folder, the small sentiment task
of tests/data) runs with the local executor and with a local Ray instance of ``--ray-cpus`` CPUs (default 1, so
that Ray also runs one run at a time and the totals compare), alternating which goes first over ``--rounds``.
Printed: each executor's wall time for the matrix, Ray's start-up (``ray.init``) apart, the extra seconds per run
(``(ray - local) / runs``, medians over rounds, start-up included and excluded), and whether every record's
metrics, history, parameter counts and trained weights are identical under both.

Both executors run workers with ``OMP_NUM_THREADS=1`` (Ray's default for a 1-CPU task), so the numbers are
comparable. Run: ``python benchmarks/executor_overhead.py [--rounds 2] [--ray-cpus 1]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ADAPTERBENCH_PROGRESS", "0")

from adapterbench.harness.executors import LocalExecutor  # noqa: E402
from adapterbench.harness.matrix import expand, run_matrix  # noqa: E402
from adapterbench.harness.ray_executor import RayExecutor  # noqa: E402
from adapterbench.harness.records import checkpoint_path, read_record  # noqa: E402
from adapterbench.testing import save_tiny_model  # noqa: E402

TASK = ROOT / "tests" / "data" / "tasks" / "sentiment.toml"
SAME = ("run_id", "status", "variant", "task", "model", "training", "metrics", "variant_info")


def identical(a: Path, b: Path) -> list[str]:
    """Names of the runs whose records or weights differ between folders ``a`` and ``b`` (empty: all equal)."""
    import torch
    from safetensors.torch import load_file

    differ = []
    for path in sorted(a.glob("*.json")):
        ra, rb = read_record(path), read_record(b / path.name)
        same = all(ra[k] == rb[k] for k in SAME)
        same &= [{k: v for k, v in h.items() if "time" not in k} for h in ra["history"]] == \
                [{k: v for k, v in h.items() if "time" not in k} for h in rb["history"]]
        same &= all(ra["measurements"][k] == rb["measurements"].get(k) for k in ra["measurements"]
                    if k.startswith("params/"))
        wa, wb = (load_file(str(checkpoint_path(folder, ra["run_id"]))) for folder in (a, b))
        same &= wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        if not same:
            differ.append(path.name)
    return differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ray-cpus", type=int, default=1)
    args = parser.parse_args()
    import ray

    local_s, ray_s, init_s, mismatches = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_model(Path(tmp) / "tinybert", "bert")
        for r in range(args.rounds):
            folders = {name: Path(tmp) / f"{name}{r}" for name in ("local", "ray")}
            for name in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                specs = expand(["head", "lora", "bitfit"], [str(TASK)], [0, 1, 2, 3], str(model), "smoke",
                               {"max_steps": 2}, None, str(folders[name]))
                if name == "ray":
                    start = time.perf_counter()
                    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, logging_level="ERROR")
                    init_s.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    code = run_matrix(specs, executor=RayExecutor(), stream=io.StringIO())
                    ray_s.append(time.perf_counter() - start)
                    ray.shutdown()
                else:
                    start = time.perf_counter()
                    code = run_matrix(specs, executor=LocalExecutor(), stream=io.StringIO())
                    local_s.append(time.perf_counter() - start)
                assert code == 0, f"{name} matrix had failed runs"
            mismatches += identical(folders["local"], folders["ray"])
            print(f"round {r + 1}: local {local_s[-1]:.1f} s, ray {ray_s[-1]:.1f} s (+ ray.init {init_s[-1]:.1f} s)",
                  flush=True)
    runs = 12
    local, on_ray, init = (statistics.median(x) for x in (local_s, ray_s, init_s))
    print(f"12-run smoke matrix, medians over {args.rounds} rounds: local {local:.1f} s, ray {on_ray:.1f} s "
          f"+ ray.init {init:.1f} s")
    print(f"extra per run with Ray: {(on_ray - local) / runs:+.2f} s without start-up, "
          f"{(on_ray + init - local) / runs:+.2f} s with it")
    print("records identical under both executors" if not mismatches else f"records differ: {sorted(set(mismatches))}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
