"""The run record, typed once: its parts, every measurement key, the primary metric, and reading with validation.

A record is one JSON file per run (written by :mod:`adapterbench.harness.records`). Its shape is :class:`Record`
below; the measurement keys are the :data:`MEASURES` table (unit, direction, title, formatter kind, column type),
which the CLI summary line, aggregation, comparison, every report writer and :mod:`adapterbench.results` read, so
that a new measurement is added here once and shows up everywhere.

Schema versions and migration
-----------------------------
* **1** (the committed ``results/baselines``): everything below except the parts marked *v2*.
* **2** adds, all optional: ``data`` (what was read, with fingerprints: part of the run identity),
  ``predictions`` (a gzip JSON sidecar of per-example predictions), ``environment.fingerprint``, ``steps``
  (per-step loss and time), ``learned`` (each evaluation tested against the task's trivial predictor;
  records written before it have none, and readers show their outcome as unknown),
  ``measurements["params/deployed_adapter"]`` (also inside each ``metrics.points`` entry), and ``variant_info["report"]``: what the variant wants charted (:class:`ReportHints`).

Reading (:func:`adapterbench.harness.records.parse`) accepts versions :data:`READABLE_VERSIONS` and migrates on read: a v1 record gets
``schema_version`` 2 and ``migrated_from`` 1, and the report hints v1 readers assumed (numeric evaluation points
are ranks, ``r=N`` on a log2 axis; a ``ranks`` dict in ``variant_info`` is a rank map, allocated when the record
also carries a ``budget`` schedule, as AdaLoRA's did): :func:`migrate_v1`. Nothing else changes: v2 parts are
simply absent. An unknown version or a malformed record raises ``RecordError`` with a one-line reason; readers
skip the file and say why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from adapterbench.stats.metrics import metric_directions as _registered_directions

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STATUSES = ("ok", "failed", "oom", "diverged")  # every value "status" may take

Direction = Literal["higher", "lower", "none"]


# ---- the parts of a record ------------------------------------------------------------------------------
class ErrorInfo(TypedDict):
    type: str
    message: str
    traceback: str


class VariantPart(TypedDict, total=False):
    name: str  # the registry name users type: "lora", "peft:adalora"
    origin: str  # "built-in" or the distribution of an entry-point plugin
    config: dict[str, Any]  # the resolved Config fields
    mergeable: bool


class TaskPart(TypedDict, total=False):
    name: str
    version: str
    kind: str  # "classification" | "regression" | "token_classification"
    primary_metric: str
    primary_split: str
    greater_is_better: bool
    eval_splits: list[str]
    origin: str


class ModelPart(TypedDict, total=False):
    name: str
    path: str
    weights_sha256: str | None
    model_type: str | None


class TrainingPart(TypedDict, total=False):
    """The resolved loop settings (:class:`adapterbench.harness.settings.TrainSettings`) and what the run counted."""

    lr: float
    epochs: int
    batch_size: int
    eval_batch_size: int
    max_length: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    max_train_samples: int | None
    max_eval_samples: int | None
    max_steps: int | None
    holdout_samples: int  # a sweep trial's held-out training examples (its only evaluated split)
    eval_holdout: int  # held-out training examples evaluated as the primary split, besides the eval splits
    warmup_steps_excluded: int
    precision: str  # "fp32" | "bf16"
    device: str  # "cpu" | "cuda" | "cuda:N"
    save_checkpoint: bool
    latency_batches: int
    steps_per_epoch: int
    total_steps: int
    train_examples: int
    eval_examples: dict[str, int]  # per split
    overrides: dict[str, Any]  # as given by --set
    train_steps: int | None  # the step budget, when the profile or --set gave one (epochs then ignored)
    head_bias_init: float | None  # regression: the fresh head's output bias set to the training mean (harness/head.py)


class PrimaryMetric(TypedDict, total=False):
    name: str
    split: str
    value: float | None  # after the last epoch
    best_value: float | None
    best_epoch: int | None


class Metrics(TypedDict, total=False):
    primary: PrimaryMetric
    final: dict[str, float]  # "<split>/<metric>" after the last epoch
    best: dict[str, Any]  # {"epoch": int, "<split>/<metric>": float} at the best primary epoch
    # One entry per variant.eval_points() (DyLoRA: per rank): {"point": null | value, "<split>/<metric>": float,
    # "params/deployed_adapter" (v2)}; a variant evaluated only as trained has one entry, point null.
    points: list[dict[str, Any]]


class SplitData(TypedDict):
    file: str | None
    sha256: str | None
    rows: int


class DataPart(TypedDict):  # v2
    source: str  # "local" | "hub"
    location: str
    fingerprint: str  # 16 hex digits over the splits read
    splits: dict[str, SplitData]


class Predictions(TypedDict):  # v2
    file: str  # "predictions/<run_id>.json.gz", relative to the record's folder
    sha256: str
    splits: dict[str, int]  # examples per split
    points: list[Any]  # the evaluation points stored besides "final"


class LearnedCheckPart(TypedDict):  # v2: adapterbench.stats.learned.LearnedCheck
    learned: bool  # the run beat the trivial predictor (paired, one-sided, at the record's alpha)
    p_value: float
    value: float | None  # the run's primary metric on this evaluation (None: undefined)
    trivial_value: float | None  # the trivial predictor's (None: undefined, e.g. a constant's Pearson)
    trivial: str  # "the majority class 'positive'", "a constant at the training mean 2.7", "'O' for every word"
    share: float  # answers equal to the trivial predictor's (regression: prediction std / label std)
    detail: str  # the outcome in words, as printed after the run


class LearnedPart(TypedDict, total=False):  # v2: adapterbench.harness.learning.learned_part
    learned: bool | None  # the primary split's outcome for the model as trained; None: not evaluated
    split: str | None
    detail: str | None
    trivial: str
    alpha: float
    points: dict[str, dict[str, LearnedCheckPart]]  # point key ("final", "4", ...) -> split -> outcome
    backfilled: str  # set when the check was computed later from the record's sidecar and data (a date)


class Steps(TypedDict, total=False):  # v2
    loss: list[float]  # per optimizer step
    time_s: list[float]


class EnvironmentFingerprint(TypedDict, total=False):  # v2
    device_name: str
    torch_threads: int
    torch: str
    transformers: str
    peft: str | None
    precision: str
    id: str


class PointsHint(TypedDict, total=False):
    axis: str  # axis title of the evaluation points: "evaluated rank r"
    label: str  # row label of a point, "{point}" replaced by its value: "r={point}"
    scale: str  # "linear" | "log2" | "log" | "category"


class RankMapHint(TypedDict, total=False):
    key: str  # the key of variant_info holding {module name: rank}
    allocated: bool  # ranks were allocated in training: a heatmap is worth drawing even when all are equal
    title: str  # "final rank per layer and module"
    caption: str


class ReportHints(TypedDict, total=False):
    """``variant_info["report"]``: declared by the variant (its ``describe()``), read by the reports, which
    therefore never need to know a variant's name or its tensors."""

    points: PointsHint
    rank_map: RankMapHint


class Record(TypedDict, total=False):
    schema_version: int
    migrated_from: int  # set on read when the file had an older version
    run_id: str  # "<task>__<variant>__<model>__<profile>__seed<seed>__<8 hex of the settings hash>"
    status: str  # one of STATUSES
    error: ErrorInfo | None  # when status is not ok
    created_at: str  # ISO 8601 UTC
    variant: VariantPart
    task: TaskPart
    model: ModelPart
    seed: int
    profile: str  # "smoke" | "quick" | "standard" | ...
    training: TrainingPart
    metrics: Metrics
    measurements: dict[str, Any]  # keys of MEASURES (others are kept and read as numbers or text)
    history: list[dict[str, Any]]  # per epoch: epoch, step, train_loss, time_s, "<split>/<metric>", variant scalars
    variant_info: dict[str, Any]  # what variant.describe(model) returned; "report": ReportHints
    environment: dict[str, Any]  # versions, platform, device, git state; "fingerprint" (v2)
    data: DataPart  # v2
    predictions: Predictions  # v2
    steps: Steps  # v2
    learned: LearnedPart  # v2: did each evaluation beat the trivial predictor
    notes: list[str]


# ---- measurement keys -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measure:
    """One measurement key. ``kind`` names its formatter in :data:`adapterbench.reports.units.FORMATTERS`;
    ``dtype`` is its column type in :func:`adapterbench.results.load`; ``column`` puts it in report tables."""

    key: str
    unit: str
    direction: Direction
    title: str
    kind: str
    doc: str
    column: bool = False

    @property
    def dtype(self) -> str:
        return {"count": "Int64", "bool": "boolean", "text": "string"}.get(self.kind, "float64")

    @property
    def higher_is_better(self) -> bool | None:
        return None if self.direction == "none" else self.direction == "higher"


def _m(key: str, unit: str, direction: Direction, title: str, kind: str, doc: str, column: bool = False) -> Measure:
    return Measure(key, unit, direction, title, kind, doc, column)


PARAMS_TOTAL = _m("params/total", "parameters", "none", "total params", "count", "every parameter of the model")
PARAMS_TRAINABLE = _m("params/trainable", "parameters", "lower", "trainable params", "count",
                      "trainable parameters (requires_grad): adapter + head; the Pareto cost")
PARAMS_ADAPTER = _m("params/trainable_adapter", "parameters", "lower", "adapter params", "count",
                    "trainable outside the task head: the adapter, or the whole backbone for full fine-tuning", True)
PARAMS_HEAD = _m("params/trainable_head", "parameters", "lower", "head params", "count",
                 "trainable parameters of the task head", True)
PARAMS_PERCENT = _m("params/trainable_percent", "percent", "lower", "trainable % of total", "percent",
                    "100 × trainable / total", True)
PARAMS_NEW = _m("params/new", "parameters", "none", "new params", "count",
                "parameters the variant added, plus the freshly initialised head")
PARAMS_DEPLOYED = _m("params/deployed_adapter", "parameters", "lower", "deployed adapter params", "count",
                     "adapter parameters kept when deployed (AdaLoRA: final budget; DyLoRA: rank b) (v2)", True)
PEAK_MEMORY = _m("memory/peak_bytes", "bytes", "lower", "peak memory", "bytes",
                 "training peak (CUDA allocated, or CPU RSS) minus what was in use before training", True)
PEAK_BASIS = _m("memory/peak_basis", "", "none", "peak memory basis", "text", '"cuda_allocated" or "cpu_rss"')
CUDA_RESERVED = _m("memory/cuda_peak_reserved_bytes", "bytes", "lower", "CUDA peak reserved", "bytes",
                   "CUDA only: peak reserved by the caching allocator")
CPU_PEAK_RSS = _m("memory/cpu_peak_rss_bytes", "bytes", "lower", "CPU peak RSS", "bytes",
                  "CPU only: absolute peak resident set")
CPU_PEAK_RESET = _m("memory/cpu_peak_reset", "", "none", "CPU peak reset", "bool",
                    "whether the kernel's peak RSS counter could be reset before training")
BEFORE_TRAIN = _m("memory/before_train_bytes", "bytes", "none", "memory before training", "bytes",
                  "memory in use when training began")
WEIGHTS_BYTES = _m("memory/trainable_weights_bytes", "bytes", "lower", "trainable weights", "bytes",
                   "exact bytes of the trainable weights")
GRADIENT_BYTES = _m("memory/gradients_bytes", "bytes", "lower", "gradients", "bytes", "exact bytes of gradients")
OPTIMIZER_BYTES = _m("memory/optimizer_state_bytes", "bytes", "lower", "optimizer state", "bytes",
                     "exact bytes of the optimizer state after a step")
TRAIN_SPS = _m("throughput/train_samples_per_s", "samples/s", "higher", "train samples/s", "rate",
               "training throughput over the steady window (warm-up steps left out)", True)
TRAIN_TPS = _m("throughput/train_tokens_per_s", "tokens/s", "higher", "train tokens/s", "rate",
               "non-padding tokens per second, same window")
EVAL_SPS = _m("throughput/eval_samples_per_s", "samples/s", "higher", "eval samples/s", "rate",
              "evaluation throughput")
TOKENS_SEEN = _m("throughput/tokens_seen", "tokens", "none", "tokens seen", "count",
                 "non-padding training tokens over the whole run (every step, warm-up included)", True)
STEADY_STEPS = _m("throughput/steady_steps", "steps", "none", "steady steps", "count",
                  "steps in the measured throughput window")
TRAIN_S = _m("time/train_s", "seconds", "lower", "train time", "seconds",
             "training steps only, no evaluation", True)
EVAL_S = _m("time/eval_s", "seconds", "lower", "eval time", "seconds", "every evaluation")
WALL_S = _m("time/wall_s", "seconds", "lower", "wall time", "seconds", "the whole run, loading included")
OVERHEAD = _m("time/train_overhead_fraction", "fraction", "lower", "train overhead", "ratio",
              "share of training wall time outside forward, backward and the optimizer step")
LATENCY_RATIO = _m("inference/latency_ratio", "× base", "lower", "inference latency (× base)", "ratio",
                   "eval-batch latency of the trained model (merged when it can) over the base model's", True)
MERGED = _m("inference/merged", "", "none", "merged for inference", "bool", "whether the latency was of the merged model")
LATENCY_S = _m("inference/latency_s", "seconds", "lower", "inference latency", "seconds",
               "evaluation latency of the trained model")
BASE_LATENCY_S = _m("inference/base_latency_s", "seconds", "none", "base latency", "seconds",
                    "evaluation latency of the unadapted base model")
MERGE_DRIFT = _m("inference/merge_max_abs_logit_diff", "logit", "lower", "merge logit drift", "number",
                 "largest absolute change of a logit when the adapter is merged")
SETUP_S = _m("time/setup_s", "seconds", "lower", "setup time", "seconds",
             "from the run's start to its first training step: resolve, tokenize, load, adapt")
CHECKPOINT_S = _m("time/checkpoint_s", "seconds", "lower", "saving time", "seconds",
                  "writing the predictions and the checkpoint")
LATENCY_CHECK_S = _m("time/latency_check_s", "seconds", "lower", "latency check time", "seconds",
                     "the inference-overhead check (harness/latency.py), base model loading included")
PROCESS_S = _m("time/process_s", "seconds", "lower", "worker process time", "seconds",
               "the run's worker process from start to exit, as the matrix saw it (Python start and imports too; "
               "a prestarted worker's wait for its run left out)")
WORKER_WAIT_S = _m("time/worker_wait_s", "seconds", "none", "worker wait", "seconds",
                   "a worker started ahead of its run (during the matrix's preflight): how long it waited, "
                   "imports done, for its run; not part of the run's cost")
BATCH1_RATIO = _m("inference/batch1_latency_ratio", "× base", "lower", "latency at batch 1 (× base)", "ratio",
                  "latency of single examples, trained model (merged when it can) over the base model's")
BATCH1_S = _m("inference/batch1_latency_s", "seconds", "lower", "latency at batch 1", "seconds",
              "seconds per single-example forward pass of the trained model")
BATCH1_BASE_S = _m("inference/batch1_base_latency_s", "seconds", "none", "base latency at batch 1", "seconds",
                   "seconds per single-example forward pass of the base model")
UNMERGED_RATIO = _m("inference/unmerged_latency_ratio", "× base", "lower", "unmerged latency (× base)", "ratio",
                    "mergeable variants: eval-batch latency as trained, not merged, over the base model's")
UNMERGED_S = _m("inference/unmerged_latency_s", "seconds", "lower", "unmerged latency", "seconds",
                "mergeable variants: eval-batch latency as trained")
UNMERGED_BASE_S = _m("inference/unmerged_base_latency_s", "seconds", "none", "base latency (unmerged phase)",
                     "seconds", "the base model's eval-batch latency timed beside the unmerged model")
BATCH1_UNMERGED_RATIO = _m("inference/batch1_unmerged_latency_ratio", "× base", "lower",
                           "unmerged latency at batch 1 (× base)", "ratio",
                           "mergeable variants: single-example latency as trained over the base model's")
BATCH1_UNMERGED_S = _m("inference/batch1_unmerged_latency_s", "seconds", "lower", "unmerged latency at batch 1",
                       "seconds", "mergeable variants: single-example latency as trained")
BATCH1_UNMERGED_BASE_S = _m("inference/batch1_unmerged_base_latency_s", "seconds", "none",
                            "base latency at batch 1 (unmerged phase)", "seconds",
                            "the base model's single-example latency timed beside the unmerged model")
TIMED_BATCHES = _m("inference/timed_batches", "batches", "none", "timed eval batches", "count",
                   "evaluation-size batches the latency check timed")
BATCH1_EXAMPLES = _m("inference/batch1_examples", "examples", "none", "timed single examples", "count",
                     "single examples the latency check timed")
LATENCY_REPEATS = _m("inference/repeats", "passes", "none", "timed passes per input", "count",
                     "timed forward passes per input and model (after one untimed pass)")
CHECKPOINT_BYTES = _m("checkpoint/bytes", "bytes", "lower", "checkpoint", "bytes",
                      "size of the saved adapter and head (safetensors)", True)
CHECKPOINT_FILE = _m("checkpoint/file", "", "none", "checkpoint file", "text", "relative to the record's folder")
CHECKPOINT_TENSORS = _m("checkpoint/tensors", "tensors", "none", "checkpoint tensors", "count",
                        "tensors in the checkpoint")

MEASURES: dict[str, Measure] = {m.key: m for m in (
    PARAMS_TOTAL, PARAMS_TRAINABLE, PARAMS_ADAPTER, PARAMS_HEAD, PARAMS_PERCENT, PARAMS_NEW, PARAMS_DEPLOYED,
    PEAK_MEMORY, PEAK_BASIS, CUDA_RESERVED, CPU_PEAK_RSS, CPU_PEAK_RESET, BEFORE_TRAIN, WEIGHTS_BYTES,
    GRADIENT_BYTES, OPTIMIZER_BYTES, TRAIN_SPS, TRAIN_TPS, TOKENS_SEEN, EVAL_SPS, STEADY_STEPS, TRAIN_S, EVAL_S,
    WALL_S, OVERHEAD, LATENCY_RATIO, MERGED, LATENCY_S, BASE_LATENCY_S, MERGE_DRIFT, CHECKPOINT_BYTES, CHECKPOINT_FILE,
    CHECKPOINT_TENSORS, SETUP_S, CHECKPOINT_S, LATENCY_CHECK_S, PROCESS_S, WORKER_WAIT_S, BATCH1_RATIO, BATCH1_S,
    BATCH1_BASE_S, UNMERGED_RATIO, UNMERGED_S, UNMERGED_BASE_S, BATCH1_UNMERGED_RATIO, BATCH1_UNMERGED_S,
    BATCH1_UNMERGED_BASE_S, TIMED_BATCHES, BATCH1_EXAMPLES, LATENCY_REPEATS)}
MEASURE_NAMESPACES = frozenset(k.split("/")[0] for k in MEASURES)  # "params", "memory", ...


def is_measurement(key: str) -> bool:
    """A measurement key (of the table, or a plugin's in one of its namespaces), not a ``<split>/<metric>``."""
    return key in MEASURES or key.split("/")[0] in MEASURE_NAMESPACES


# Report table columns, in table order; the one-line run summary; the two resources `bench compare` checks.
TABLE_MEASURES = tuple(m for m in MEASURES.values() if m.column)
SUMMARY_MEASURES = (PARAMS_ADAPTER, PARAMS_HEAD, PARAMS_PERCENT, PEAK_MEMORY, TRAIN_SPS, WALL_S)


def measure(key: str) -> Measure:
    """The table entry of ``key``; a key outside the table (a plugin's) is a plain number, direction none."""
    return MEASURES.get(key) or Measure(key, "", "none", key, "number", "not in the schema table")


# ---- metrics and the primary metric -----------------------------------------------------------------------
TRAIN_LOSS = "train_loss"  # the history key of an epoch's mean training loss (written by the loop)

# Direction of every metric a task computes, declared once in the metric registry (adapterbench.stats.metrics),
# and of the losses the loop logs. A metric not listed is read by its name: losses and errors are lower-better.
METRIC_DIRECTIONS: dict[str, Direction] = {**_registered_directions(), "loss": "lower", TRAIN_LOSS: "lower"}
_LOWER_WORDS = ("loss", "mse", "mae", "rmse", "error", "perplexity")


def metric_direction(name: str) -> Direction:
    """``"validation/accuracy"`` -> "higher"; ``"validation/loss"`` -> "lower" (the part after the split)."""
    base = name.rsplit("/", 1)[-1].lower()
    if base in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[base]
    return "lower" if any(word in base for word in _LOWER_WORDS) else "higher"


def primary_key(record: Record) -> str:
    """The ``<split>/<metric>`` key of the run's primary metric, e.g. ``validation/accuracy``."""
    primary, task = record.get("metrics", {}).get("primary") or {}, record.get("task", {})
    name = primary.get("name") or task.get("primary_metric") or ""
    split = primary.get("split") or task.get("primary_split") or (task.get("eval_splits") or ["validation"])[0]
    return name if "/" in name else f"{split}/{name}"


def greater_is_better(record: Record) -> bool:
    """Direction of the primary metric: the task's ``greater_is_better``, else the metric's own direction."""
    declared = record.get("task", {}).get("greater_is_better")
    return declared if isinstance(declared, bool) else metric_direction(primary_key(record)) == "higher"


def primary_value(record: Record) -> float | None:
    value = (record.get("metrics", {}).get("primary") or {}).get("value")
    return value if is_number(value) else (record.get("metrics", {}).get("final") or {}).get(primary_key(record))


def evaluations(record: Record) -> list[dict[str, Any]]:
    """The evaluation points of a run: its ``metrics.points`` whose point is set (DyLoRA: every rank), else one
    entry with point None holding the final metrics."""
    metrics = record.get("metrics", {})
    named = [p for p in metrics.get("points") or [] if p.get("point") is not None]
    if named:
        return named
    return [{"point": None, **(metrics.get("final") or {})}]


def learned_at(record: Record, point: Any = None) -> bool | None:
    """Whether evaluation ``point`` (None: the model as trained) beat the trivial predictor on the primary split;
    None when the record does not say (written before the check, not evaluated, or malformed)."""
    part = record.get("learned")
    if not isinstance(part, dict):
        return None
    if point is None:
        found = part.get("learned")
    else:
        points, split = part.get("points"), part.get("split")
        entry = points.get(str(point)) if isinstance(points, dict) else None
        entry = entry.get(split) if isinstance(entry, dict) and isinstance(split, str) else None
        found = entry.get("learned") if isinstance(entry, dict) else None
    return found if isinstance(found, bool) else None


def learned_detail(record: Record) -> str | None:
    """The learned check's outcome in words (the run's line), or None."""
    part = record.get("learned")
    detail = part.get("detail") if isinstance(part, dict) else None
    return detail if isinstance(detail, str) else None


def report_hints(record: Record) -> ReportHints:
    return (record.get("variant_info") or {}).get("report") or {}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---- migration (reading validates in adapterbench.harness.records.parse) ---------------------------------
def migrate_v1(record: dict[str, Any]) -> None:
    """v1 -> v2 on read: the report hints v1 readers assumed (see the module docstring)."""
    info = record.setdefault("variant_info", {})
    if "report" not in info:
        hints: ReportHints = {}
        points = [p.get("point") for p in record.get("metrics", {}).get("points", [])]
        if any(is_number(p) for p in points):
            hints["points"] = {"axis": "evaluated rank r", "label": "r={point}", "scale": "log2"}
        if isinstance(info.get("ranks"), dict):
            hints["rank_map"] = {"key": "ranks", "allocated": "budget" in info}
            if "budget" in info:
                hints["rank_map"].update(title="final rank per layer and module", caption=(
                    "Ranks left to each adapted matrix when training ended (the budget allocation), from the "
                    "records' variant_info."))
        info["report"] = hints
    record["schema_version"], record["migrated_from"] = SCHEMA_VERSION, 1
