"""Everything about a matrix that can be checked without training, checked before its first run.

A matrix runs for hours unattended, so a bad input must cost one line at the start, not one ``failed`` record per
run at the end. :func:`preflight` checks, in order from cheapest to dearest:

1. seeds (``0 .. 2**32 - 1``: NumPy's seed range, which the harness seeds with every run seed);
2. the output folder: not a file, not under a file, creatable, writable (a file is created and deleted there),
   its ``checkpoints/``, ``predictions/``, ``superseded/`` and ``.claims/`` entries folders when present;
3. the data folder, every model (weights' hash; every weights file it will read: safetensors headers, each shard
   an index names, a pickled ``pytorch_model.bin`` opened with ``weights_only``; tokenizer; a hub id when offline)
   and every task's splits (read and parsed in full: a bad line anywhere is reported now; hub data is checked
   after step 5, refused when the hub cannot be reached and the dataset is not cached);
4. every run's settings (loop settings, variant Config, device, the variant's schedule check; at most
   :data:`MAX_TOTAL_STEPS` optimizer steps) and what only the model's config can tell
   (:func:`~adapterbench.models.check_fit`: ``max_length`` against the position table, a checkpoint's task head
   against the task's labels);
5. every variant applied to the model's structure on the meta device (targets that match nothing, unsupported
   architectures), which also counts the trainable parameters that each checkpoint will hold;
6. free disk space against that estimate.

Nothing is written: a matrix that fails preflight leaves its output folder as it was (or absent).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError
from adapterbench.harness.loop import schedule_steps
from adapterbench.harness.run import ResolvedRun, RunSpec, resolve
from adapterbench.models import check_available, check_files, check_fit, meta_model, resolve_model
from adapterbench.tasks import get_task
from adapterbench.tasks.data import check_hub, load_examples

SEED_MAX = 2**32 - 1
OUT_SUBFOLDERS = ("checkpoints", "predictions", "superseded", ".claims")
RECORD_BYTES = 1 << 20  # a record with its history, with room to spare
MIN_FREE_BYTES = 64 << 20  # never start a matrix with less than this free, whatever the estimate says
# A run's budget beyond any benchmark (months of steps): a typo's extra zeros, refused before the matrix starts.
MAX_TOTAL_STEPS = 10_000_000


def preflight(specs: list[RunSpec]) -> None:
    """Raise :class:`UserError` for any bad input, before a single run starts (see the module docstring)."""
    if not specs:
        raise UserError("the matrix is empty: give at least one variant, task and seed")
    for seed in dict.fromkeys(s.seed for s in specs):
        check_seed(seed)
    for out in dict.fromkeys(s.out_dir for s in specs):
        check_out_dir(out)
    data_dir = specs[0].data_dir
    if data_dir is not None and not Path(data_dir).is_dir():
        problem = "is not a folder" if Path(data_dir).exists() else "does not exist"
        raise UserError(f"data folder {data_dir!r} {problem}; pass --data-dir pointing at a folder with "
                        f"glue/ and conll2003/ (for example ../shared/data)")
    refs = {}
    for model in dict.fromkeys(s.model for s in specs):
        refs[model] = ref = resolve_model(model)
        check_available(ref)
        check_files(ref)
    train_sizes: dict[str, int | None] = {}
    hub_tasks: list[Any] = []
    for task_name in dict.fromkeys(s.task for s in specs):
        task = get_task(task_name)
        if data_dir is None and not os.environ.get("ADAPTERBENCH_DATA_DIR") and _all_relative(task):
            hub_tasks.append(task)
            train_sizes[task_name] = None  # hub data: sizes known only once downloaded
            continue
        directory = Path(data_dir) if data_dir else None
        train_sizes[task_name] = len(load_examples(task, task.train_split, directory))
        for split in task.eval_splits:
            load_examples(task, split, directory)
    needed: dict[str, int] = {}
    trainable: dict[tuple[Any, ...], int | None] = {}
    positions: dict[tuple[Any, ...], int | None] = {}
    for spec in specs:
        run = resolve(spec)  # every setting, the device, the task and the model, as the run will see them
        variant, settings = _named(spec, run.new_variant), run.settings
        n_train = train_sizes[spec.task]
        if n_train is not None:
            held = settings.holdout_samples or settings.eval_holdout
            available = n_train - held
            if available < 1:
                key = "holdout_samples" if settings.holdout_samples else "eval_holdout"
                raise UserError(f"{key}={held} leaves no training examples for task "
                                f"{spec.task!r} (its training split has {n_train})")
            n = min(available, settings.max_train_samples or available)
            total_steps = schedule_steps(n, settings)[1]
            if total_steps > MAX_TOTAL_STEPS:
                raise UserError(f"epochs={settings.epochs} on task {spec.task!r} ({n} training examples at "
                                f"batch_size={settings.batch_size}) is {total_steps:,} optimizer steps; at most "
                                f"{MAX_TOTAL_STEPS:,} are allowed (use max_steps or fewer epochs)")
            variant.validate_schedule(total_steps)
        task = run.task
        fit = (spec.model, task.kind, task.num_labels)
        if fit not in positions:  # the checkpoint's head against the task's labels; the longest input
            positions[fit] = check_fit(refs[spec.model], task.kind, task.num_labels, task.name)
        if positions[fit] is not None and settings.max_length > positions[fit]:
            raise UserError(f"max_length={settings.max_length} is not allowed for model {spec.model!r}: its position "
                            f"embeddings cover {positions[fit]} tokens; give max_length <= {positions[fit]}")
        key = (spec.variant, repr(sorted(spec.overrides.items())), spec.model, task.kind, task.num_labels)
        if key not in trainable:
            trainable[key] = dry_apply(run, refs[spec.model])
        checkpoint = 4 * (trainable[key] or 0) if settings.save_checkpoint else 0  # fp32 tensors
        needed[spec.out_dir] = needed.get(spec.out_dir, 0) + RECORD_BYTES + checkpoint
    for task in hub_tasks:  # after the settings (cheap); a hub that cannot be reached costs up to a timeout
        check_hub(task)  # offline and not cached: one line now, not 30 s of retries and a failed record per run
    for out, bytes_needed in needed.items():
        check_free_space(out, bytes_needed)


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UserError(f"seed {seed!r} is not allowed; seeds are integers from 0 to {SEED_MAX}")


def check_out_dir(out: str) -> None:
    """The output folder exists as a writable folder, or can be created; nothing is left behind."""
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output folder {out!r} is a file; give a folder for the records (--out)")
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise UserError(f"output folder {out!r} cannot be created: {str(existing)!r} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".adapterbench-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        problem = "is not writable" if existing == folder else f"cannot be created in {str(existing)!r}"
        raise UserError(f"output folder {out!r} {problem} ({exc.strerror}); give a folder you can write "
                        f"(--out)") from None
    for name in OUT_SUBFOLDERS:
        sub = folder / name
        if sub.exists() and not sub.is_dir():
            raise UserError(f"output folder {out!r}: {str(sub)!r} must be a folder, but it is a file")


def check_free_space(out: str, needed: int) -> None:
    """At least ``needed`` bytes (and :data:`MIN_FREE_BYTES`) free on the output folder's disk."""
    existing = _nearest_existing(Path(out).expanduser())
    free = shutil.disk_usage(existing).free
    want = max(needed, MIN_FREE_BYTES)
    if free < want:
        raise UserError(f"output folder {out!r}: {_mib(free)} free on its disk, but this matrix needs about "
                        f"{_mib(want)} (records and checkpoints); free space or give another --out")


def dry_apply(run: ResolvedRun, ref: Any) -> int | None:
    """Apply the run's variant to the model's structure on the meta device; its trainable parameter count.

    A :class:`UserError` from the variant (bad targets, unsupported architecture) is raised with the run named;
    any other failure means only that the variant needs real tensors to apply (the run itself will tell).
    """
    from adapterbench.harness.run import _arch_or_none

    spec = run.spec
    variant = _named(spec, run.new_variant)
    model = meta_model(ref, run.task.kind, run.task.num_labels)
    try:
        variant.apply(model, _arch_or_none(model))
    except UserError as exc:
        raise UserError(f"variant {spec.variant!r} on model {spec.model!r}: {exc}") from None
    except Exception:  # noqa: BLE001 - meta tensors cannot do everything (data-dependent init): no verdict
        return None
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _named(spec: RunSpec, make: Any) -> Any:
    """``make()``, with the variant named in its errors (a Config's own messages may not say which)."""
    try:
        return make()
    except UserError as exc:
        if spec.variant in str(exc):
            raise
        raise UserError(f"variant {spec.variant!r}: {exc}") from None


def _nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _all_relative(task: Any) -> bool:
    """Whether the task reads its local files (if any) from the data folder rather than from absolute paths."""
    return task.local is None or not any(Path(p).is_absolute() for p in task.local.files.values())


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"
