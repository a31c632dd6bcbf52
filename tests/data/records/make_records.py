"""Writes the hand-made run records used by the report and compare tests (schema 1 of
``adapterbench/harness/records.py``). Every number below is chosen by hand so that tests can state the expected
means, standard deviations, best values and Pareto sets without running anything.

Run from the repository root to regenerate: ``.venv/bin/python tests/data/records/make_records.py``.

* ``mixed/``: sst2 runs of seven variants (one failed, one out of memory, one diverged), a DyLoRA run with four
  evaluated ranks, an AdaLoRA run with final ranks, in ``mixed/other-weights/`` an sst2 run on other model
  weights (a second comparable group), a conll2003 run, and in ``mixed/2024-05-01/`` older records of the same lora runs (the trend charts).
* ``clean/``: three variants on sst2, all ok: the baseline of the compare tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from adapterbench.harness.records import make_run_id

HERE = Path(__file__).parent
MODEL = {"name": "sentence-transformers/all-MiniLM-L6-v2", "path": "/models/all-MiniLM-L6-v2",
         "weights_sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
         "model_type": "bert"}
OTHER_MODEL = dict(MODEL, weights_sha256="0f0f0f0f1e1e1e1e2d2d2d2d3c3c3c3c4b4b4b4b5a5a5a5a6969696978787878")
TOTAL = 22_713_986
HEAD = 770
SST2 = {"name": "sst2", "version": "1", "kind": "classification", "primary_metric": "accuracy",
        "primary_split": "validation", "greater_is_better": True, "eval_splits": ["validation"],
        "origin": "built-in"}
CONLL = {"name": "conll2003", "version": "1", "kind": "token_classification", "primary_metric": "f1",
         "primary_split": "validation", "greater_is_better": True, "eval_splits": ["validation"],
         "origin": "built-in"}
MiB = 1024 ** 2

# variant -> (config, mergeable, adapter params, peak bytes, samples/s, train s, latency ratio, checkpoint bytes)
VARIANTS = {
    "full": ({}, False, TOTAL - HEAD, 1100 * MiB, 95.0, 420.0, 1.00, 90_900_000),
    "head": ({}, False, 0, 180 * MiB, 310.0, 130.0, 1.00, 3_500),
    "lora": ({"r": 8, "alpha": 16, "dropout": 0.1, "target": "qv"}, True, 73_728, 420 * MiB, 160.0, 250.0,
             1.00, 298_000),
    "bitfit": ({}, False, 102_528, 400 * MiB, 150.0, 266.0, 1.00, 414_000),
    "dylora": ({"r": 8, "alpha": 16, "dropout": 0.1}, True, 73_728, 430 * MiB, 150.0, 268.0, 1.00, 298_000),
    "adalora": ({"init_r": 12, "target_r": 8}, True, 223_488, 520 * MiB, 120.0, 330.0, 1.01, 900_000),
    "houlsby": ({"reduction": 16}, False, 0, None, None, None, None, None),
    "loraplus": ({"r": 8, "ratio": 16}, True, 73_728, None, None, None, None, None),
}
# variant -> {seed: validation/accuracy}
ACCURACY = {
    "full": {0: 0.92, 1: 0.93, 2: 0.91},
    "head": {0: 0.80, 1: 0.82},
    "lora": {0: 0.90, 1: 0.91, 2: 0.92},
    "bitfit": {0: 0.89, 1: 0.90, 2: 0.88},
    "adalora": {0: 0.905, 1: 0.915},
}
DYLORA_POINTS = {1: 0.86, 2: 0.88, 4: 0.89, 8: 0.90}  # rank -> accuracy (seed 0); seed 1 adds 0.01
ADALORA_RANKS = {f"bert.encoder.layer.{layer}.{module}": rank
                 for layer in range(6)
                 for module, rank in (("attention.self.query", 4 + layer), ("attention.self.value", 10 - layer),
                                      ("attention.output.dense", 2 + (layer % 3)), ("intermediate.dense", 6),
                                      ("output.dense", 12 if layer == 5 else 3))}


def training(variant: str) -> dict:
    return {"lr": 5e-4 if variant not in ("full",) else 2e-5, "epochs": 3, "batch_size": 32,
            "eval_batch_size": 64, "max_length": 128, "warmup_ratio": 0.06, "weight_decay": 0.01,
            "max_grad_norm": 1.0, "max_train_samples": 2000, "max_eval_samples": 872, "precision": "fp32",
            "device": "cpu", "steps_per_epoch": 63, "total_steps": 189, "train_examples": 2000,
            "eval_examples": {"validation": 872}, "overrides": {}}


def record(task: dict, variant: str, seed: int, *, accuracy: float | None, status: str = "ok",
           created_at: str = "2024-05-02T09:30:00+00:00", model: dict = MODEL, error: str | None = None,
           points: dict | None = None, variant_info: dict | None = None) -> dict:
    config, mergeable, adapter, peak, sps, train_s, latency, ckpt = VARIANTS[variant]
    rec = {
        "schema_version": 1,
        "run_id": make_run_id(task["name"], variant, model["name"], "quick", seed, {}),
        "status": status,
        "error": None if status == "ok" else {"type": "RuntimeError", "message": error, "traceback": "..."},
        "created_at": created_at,
        "variant": {"name": variant, "origin": "built-in", "config": config, "mergeable": mergeable},
        "task": task,
        "model": model,
        "seed": seed,
        "profile": "quick",
        "training": training(variant),
        "metrics": {},
        "measurements": {},
        "history": [],
        "variant_info": variant_info or {},
        "environment": {"python": "3.11.2", "torch": "2.13.0", "transformers": "5.0.0", "peft": "0.21.0",
                        "adapterbench": "0.1.0", "platform": "Linux", "device_name": "cpu", "cpu_count": 2,
                        "cuda": None, "git_commit": "fbaaaf8", "git_dirty": False},
    }
    if status != "ok":
        return rec
    key = f"{task['primary_split']}/{task['primary_metric']}"
    final = {key: accuracy, "validation/loss": round(1.2 - accuracy, 4)}
    rec["metrics"] = {
        "primary": {"name": task["primary_metric"], "split": task["primary_split"], "value": accuracy,
                    "best_value": accuracy, "best_epoch": 3},
        "final": final,
        "best": {"epoch": 3, **final},
        "points": ([{"point": r, key: v, "validation/loss": round(1.2 - v, 4)} for r, v in points.items()]
                   if points else [{"point": None, **final}]),
    }
    rec["measurements"] = {
        "params/total": TOTAL + (adapter if variant not in ("full", "head", "bitfit") else 0),
        "params/trainable": adapter + HEAD, "params/trainable_adapter": adapter, "params/trainable_head": HEAD,
        "params/new": adapter if variant not in ("full", "head", "bitfit") else 0,
        "memory/peak_bytes": peak, "memory/peak_basis": "cpu_rss",
        "throughput/train_samples_per_s": sps, "throughput/train_tokens_per_s": sps * 24.5,
        "time/train_s": train_s, "time/eval_s": 12.0, "time/wall_s": train_s + 15.0,
        "inference/latency_ratio": latency, "inference/merged": mergeable,
        "checkpoint/bytes": ckpt, "checkpoint/file": f"checkpoints/{rec['run_id']}.safetensors",
    }
    rec["measurements"]["params/trainable_percent"] = (100.0 * rec["measurements"]["params/trainable"]
                                                       / rec["measurements"]["params/total"])
    rec["history"] = [{"epoch": e, "step": 63 * e, "train_loss": 0.6 / e, key: accuracy - 0.01 * (3 - e),
                       "time_s": train_s * e / 3} for e in (1, 2, 3)]
    return rec


def write(folder: Path, rec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec, indent=2) + "\n")


def mixed() -> None:
    out = HERE / "mixed"
    shutil.rmtree(out, ignore_errors=True)
    for variant, seeds in ACCURACY.items():
        for seed, acc in seeds.items():
            # The shape of AdaLoRA.describe(): "ranks" plus budget facts that are not a rank map.
            info = ({"ranks": ADALORA_RANKS, "budget": [[0, 360], [19, 352], [151, 240], [189, 240]],
                     "init_budget": 360, "target_budget": 240,
                     "schedule_steps": {"t_init": 19, "t_final": 38, "delta_t": 1, "total_steps": 189},
                     "last_threshold": 0.0123} if variant == "adalora" else None)
            write(out, record(SST2, variant, seed, accuracy=acc, variant_info=info))
    for seed in (0, 1):
        pts = {r: round(v + 0.01 * seed, 4) for r, v in DYLORA_POINTS.items()}
        write(out, record(SST2, "dylora", seed, accuracy=pts[8], points=pts))
    write(out, record(SST2, "houlsby", 0, accuracy=None, status="failed",
                      error="shape mismatch in <adapter> & 'up' projection: 384 vs 383"))
    write(out, record(SST2, "houlsby", 1, accuracy=None, status="oom", error="CPU out of memory"))
    write(out, record(SST2, "loraplus", 0, accuracy=None, status="diverged", error="loss is nan at step 12"))
    # Same model name and run id, other weights: a different experiment, found in another folder.
    write(out / "other-weights", record(SST2, "lora", 0, accuracy=0.85, model=OTHER_MODEL))
    write(out, record(CONLL, "lora", 0, accuracy=0.88))
    # Earlier records of the same lora runs (same run ids): superseded in the tables, kept for the trends.
    for seed, acc in {0: 0.88, 1: 0.89, 2: 0.90}.items():
        rec = record(SST2, "lora", seed, accuracy=acc, created_at="2024-05-01T09:30:00+00:00")
        rec["measurements"]["throughput/train_samples_per_s"] = 140.0
        write(out / "2024-05-01", rec)


def clean() -> None:
    out = HERE / "clean"
    shutil.rmtree(out, ignore_errors=True)
    for variant in ("lora", "bitfit", "full"):
        for seed, acc in ACCURACY[variant].items():
            write(out, record(SST2, variant, seed, accuracy=acc))
    write(out, record(SST2, "dylora", 0, accuracy=0.90, points=DYLORA_POINTS))


if __name__ == "__main__":
    mixed()
    clean()
