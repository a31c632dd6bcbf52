"""Run records written by the real harness (``adapterbench.harness.run.execute``, in-process) on tiny random
models and a small synthetic SST-2, for the report and compare tests. Nothing here writes a record by hand; the
tests state their expectations from the values these records hold.

``tests/conftest.py`` calls :func:`make_records` once per test session (fixture ``real_records``). To look at
them: ``PYTHONPATH=. .venv/bin/python tests/data/records/make_records.py /tmp/records``.

``mixed/``: sst2 runs (2 epochs of 8 steps) of lora (3 seeds), bitfit (3), full (2), head (2), dylora (2,
evaluated at ranks 1..4),
adalora (2, allocated ranks); a houlsby run that fails (an unknown activation), a loraplus run that diverges
(lr 1e30); a tiny-ner run (token classification); in ``other-weights/`` an sst2 lora run on other model weights
(a second comparable group); in ``2024-05-01/`` copies of the lora records dated a day earlier (older records of
the same runs: the trend charts). ``clean/``: copies of the ok sst2 lora, bitfit, full and dylora records, the
baseline of the compare tests. Every ok run has its predictions sidecar (``predictions/``, copied with the copies).

``unlearned/``: sst2 runs for the "did the run learn" tests, beside those of ``mixed/`` (where bitfit and head
learn on no seed and full on one of two): lora at the usual rate (3 seeds, learning) and at lr 1e-12 (3 seeds;
the weights do not move, so the learned check records every seed as not learned).
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path

TASKS = Path(__file__).resolve().parents[1] / "tasks"
SMOKE = {"max_train_samples": 64, "max_eval_samples": 25, "epochs": 2}
FAST = {"lr": 0.1}  # a tiny random backbone learns this toy task in 16 steps only at a high learning rate
RUNS = [  # (task, variant, seeds, overrides)
    ("sst2", "lora", (0, 1, 2), FAST),
    ("sst2", "bitfit", (0, 1, 2), FAST),
    ("sst2", "full", (0, 1), {"lr": 1e-2}),
    ("sst2", "head", (0, 1), FAST),
    ("sst2", "dylora", (0, 1), {**FAST, "r": 4}),
    ("sst2", "adalora", (0, 1), {**FAST, "init_r": 4, "target_r": 2, "t_init": 0.2, "t_final": 0.2}),
    ("sst2", "houlsby", (0,), {"activation": "nope"}),
    ("sst2", "loraplus", (0,), {"lr": 1e30}),
    (str(TASKS / "ner.json"), "lora", (0,), FAST),
]
CLEAN_VARIANTS = ("lora", "bitfit", "full", "dylora")
FROZEN = {"lr": 1e-12}  # the weights do not move: the run answers what the untrained model answers
UNLEARNED = [  # (variant, seeds, overrides) of the sst2 runs in unlearned/
    ("lora", (0, 1, 2), FAST),
    ("lora", (0, 1, 2), FROZEN),
]


def sst2_folder(root: Path) -> Path:
    """A data folder in the GLUE layout: 64 training and 25 validation sentences of two kinds of words (label 1:
    praise, 0: blame), lengths 2 to 7, so a tiny model can learn something in a few steps."""
    import random

    rng = random.Random(0)
    praise, blame = ("good", "great", "superb", "lovely", "fine"), ("bad", "awful", "dull", "poor", "boring")
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", 64), ("dev.tsv", 25)):
        rows = []
        for i in range(n):
            label = i % 2
            rows.append(" ".join(rng.choice(praise if label else blame) for _ in range(rng.randint(2, 7)))
                        + f"\t{label}")
        (folder / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


def _run(out: Path, task: str, variant: str, seed: int, overrides: dict, model: Path, data: Path) -> Path:
    from adapterbench.harness.records import record_path, write_record
    from adapterbench.harness.run import RunSpec, execute

    spec = RunSpec(variant=variant, task=task, model=str(model), seed=seed, profile="smoke",
                   overrides={**SMOKE, **overrides}, data_dir=str(data), out_dir=str(out))
    path = record_path(out, spec.run_id)
    write_record(path, execute(spec))
    return path


def _copy(path: Path, folder: Path, days_earlier: int = 0) -> Path:
    """A copy of a record and of its predictions sidecar (same relative path, so the copy finds it)."""
    record = json.loads(path.read_text())
    if days_earlier:
        when = datetime.fromisoformat(record["created_at"]) - timedelta(days=days_earlier)
        record["created_at"] = when.isoformat(timespec="seconds")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    target.write_text(json.dumps(record, indent=2) + "\n")
    sidecar = (record.get("predictions") or {}).get("file")
    if sidecar:
        (folder / sidecar).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path.parent / sidecar, folder / sidecar)
    return target


def make_records(root: Path) -> dict[str, Path]:
    """Write the record folders under ``root``; returns ``{"mixed", "clean", "unlearned", "model"}`` folders."""
    import torch

    from adapterbench.testing import save_tiny_model

    root = Path(root)
    shutil.rmtree(root / "mixed", ignore_errors=True)
    shutil.rmtree(root / "clean", ignore_errors=True)
    torch.set_num_threads(1)
    model = save_tiny_model(root / "models" / "tiny", "bert", seed=0)
    other = save_tiny_model(root / "models-other" / "tiny", "bert", seed=1)
    data = sst2_folder(root / "data")
    mixed, clean = root / "mixed", root / "clean"
    written: dict[tuple[str, str, int], Path] = {}
    for task, variant, seeds, overrides in RUNS:
        for seed in seeds:
            written[task, variant, seed] = _run(mixed, task, variant, seed, overrides, model, data)
    _run(mixed / "other-weights", "sst2", "lora", 0, FAST, other, data)
    for (task, variant, _), path in written.items():
        if task == "sst2" and variant == "lora":
            _copy(path, mixed / "2024-05-01", days_earlier=1)
        if task == "sst2" and variant in CLEAN_VARIANTS:
            _copy(path, clean)
    unlearned = root / "unlearned"
    shutil.rmtree(unlearned, ignore_errors=True)
    for variant, seeds, overrides in UNLEARNED:
        for seed in seeds:
            _run(unlearned, "sst2", variant, seed, overrides, model, data)
    for folder in (mixed, mixed / "other-weights", unlearned):
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # weights are not what these tests read
    return {"mixed": mixed, "clean": clean, "unlearned": unlearned, "model": model}


if __name__ == "__main__":
    print(make_records(Path(sys.argv[1] if len(sys.argv) > 1 else "records")))
