"""Planted bugs: the measure of the nightly. Does ``bench compare`` flag a realistic bug in each variant?

Each bug below is a patch applied at run time, in this process, to one function of the package: the package itself
never carries a bug. For each bug the script runs the nightly matrix's lines it affects (in-process, so the patch
is active) into ``<out>/<bug>/``, runs the same lines unpatched once into ``<out>/baseline/`` (shared by every
bug), and asks ``bench compare <out>/baseline <out>/<bug> --common-only`` whether the night would be red.

    python benchmarks/planted_bugs.py --data-dir ../shared/data --out results/planted-bugs
    python benchmarks/planted_bugs.py --bugs lora_scaling_halved,no_grad_clip --data-dir ../shared/data

Runs are ordinary records: finished ones are skipped, so an interrupted measurement resumes. The table printed at
the end (and written to ``<out>/planted-bugs.md``) says per bug: the lines run, whether the night is red, and
compare's summary line. Cost: one nightly run per affected line and bug, plus the baseline lines (on 2 CPU cores
with MiniLM about 40 s per run at the 64-step nightly profile).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    lines: tuple[tuple[str, str], ...]  # (task, variant) lines of the nightly it affects
    patch: Callable[[], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name = value`` for the duration of the block (a module attribute or a class method)."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


# ---- the bugs: each a patch a refactor could plausibly introduce -------------------------------------------------
def lora_scaling_halved() -> contextlib.AbstractContextManager[None]:
    from adapterbench.variants import lora

    real = lora.lora_scaling
    return replaced(lora, "lora_scaling", lambda alpha, r, rslora=False: real(alpha, r, rslora) / 2)


def adalora_never_masks() -> contextlib.AbstractContextManager[None]:
    from adapterbench.variants.adalora import SVDLinear

    return replaced(SVDLinear, "apply_mask", lambda self, keep: None)


def dylora_always_rmax() -> contextlib.AbstractContextManager[None]:
    from adapterbench.variants import dylora

    return replaced(dylora, "sample_rank", lambda r_max, generator: r_max)


def loraplus_ratio_ignored() -> contextlib.AbstractContextManager[None]:
    from adapterbench.variants import loraplus

    real = loraplus.loraplus_groups
    return replaced(loraplus, "loraplus_groups",
                    lambda params, b, lr, wd, ratio: real(params, b, lr, wd, 1.0))


def bitfit_biases_frozen() -> contextlib.AbstractContextManager[None]:
    from adapterbench.variants import bitfit

    def apply(self: Any, model: Any, arch: Any) -> None:
        bitfit.freeze_all_but_head(model)  # the bias terms are never switched back on

    return replaced(bitfit.BitFit, "apply", apply)


def houlsby_no_residual() -> contextlib.AbstractContextManager[None]:
    from adapterbench.variants.houlsby import BottleneckAdapter

    return replaced(BottleneckAdapter, "forward", lambda self, h: self.up(self.act(self.down(h))))


def no_grad_clip() -> contextlib.AbstractContextManager[None]:
    import torch

    return replaced(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm, *a, **k: torch.tensor(0.0))


def no_warmup() -> contextlib.AbstractContextManager[None]:
    from adapterbench.harness import loop

    real = loop.linear_schedule
    return replaced(loop, "linear_schedule", lambda optimizer, warmup, total: real(optimizer, 0, total))


def eval_truncated() -> contextlib.AbstractContextManager[None]:
    from adapterbench.harness import run

    real = run.encode_split

    def encode(task: Any, split: str, tokenizer: Any, max_length: int, data_dir: Any, *a: Any, **k: Any) -> Any:
        short = max_length if split == task.train_split else min(max_length, 16)
        return real(task, split, tokenizer, short, data_dir, *a, **k)

    return replaced(run, "encode_split", encode)


def eval_reads_training_split() -> contextlib.AbstractContextManager[None]:
    from adapterbench.harness import run

    real = run.encode_split

    def encode(task: Any, split: str, tokenizer: Any, max_length: int, data_dir: Any, *a: Any, **k: Any) -> Any:
        if split == task.train_split:
            return real(task, split, tokenizer, max_length, data_dir, *a, **k)
        n = len(real(task, split, tokenizer, max_length, data_dir, *a, **k))
        return real(task, task.train_split, tokenizer, max_length, data_dir, *a, **k)[-n:]

    return replaced(run, "encode_split", encode)


def regression_head_unscaled() -> contextlib.AbstractContextManager[None]:
    from adapterbench.harness import run

    return replaced(run, "start_at_mean", lambda model, fresh, targets: None)


ALL = ("full", "head", "lora", "bitfit", "dylora", "adalora", "loraplus", "houlsby", "peft:lora")
BUGS = {bug.name: bug for bug in (
    Bug("lora_scaling_halved", "LoRA's alpha/r scaling halved", (("sst2", "lora"), ("sst2", "loraplus")),
        lora_scaling_halved),
    Bug("adalora_never_masks", "AdaLoRA's rank allocation off (never masks)", (("sst2", "adalora"),),
        adalora_never_masks),
    Bug("dylora_always_rmax", "DyLoRA always samples r_max", (("sst2", "dylora"),), dylora_always_rmax),
    Bug("loraplus_ratio_ignored", "LoRA+'s B learning-rate ratio ignored", (("sst2", "loraplus"),),
        loraplus_ratio_ignored),
    Bug("bitfit_biases_frozen", "BitFit leaves the biases frozen", (("sst2", "bitfit"),), bitfit_biases_frozen),
    Bug("houlsby_no_residual", "Houlsby's adapter loses its residual path", (("sst2", "houlsby"),),
        houlsby_no_residual),
    Bug("no_grad_clip", "the loop skips gradient clipping", (("sst2", "full"), ("sst2", "lora")), no_grad_clip),
    Bug("no_warmup", "the loop skips the warm-up", (("sst2", "full"), ("sst2", "lora")), no_warmup),
    Bug("eval_truncated", "evaluation truncates at 16 tokens", (("sst2", "lora"), ("rte", "lora")), eval_truncated),
    Bug("eval_reads_training_split", "evaluation reads (the end of) the training split",
        (("sst2", "lora"),), eval_reads_training_split),
    Bug("regression_head_unscaled", "the regression head starts at 0, not the training mean",
        (("stsb", "lora"), ("stsb", "full")), regression_head_unscaled),
)}


def run_lines(lines: list[tuple[str, str]], matrix: str, out: Path, extra: list[str]) -> int:
    """The nightly matrix's ``lines``, in this process (so an active patch applies); finished runs skipped."""
    from adapterbench.cli import main

    code = 0
    for task, variant in lines:
        code |= main(["run", "--matrix", matrix, "--task", task, "--variants", variant, "--out", str(out),
                      "--in-process", "--no-answer", *extra])
    return code


def night_is_red(baseline: Path, current: Path) -> tuple[bool, str]:
    """``bench compare`` of the two folders: (red, its summary line)."""
    from adapterbench.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["compare", str(baseline), str(current), "--common-only"])
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    summary = next((line for line in lines if "compared" in line), lines[-1] if lines else "")
    return code != 0, summary.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bugs", default=",".join(BUGS), help=f"comma-separated, of: {', '.join(BUGS)}")
    parser.add_argument("--matrix", default=str(ROOT / "benchmarks" / "nightly-cpu.toml"))
    parser.add_argument("--out", default="results/planted-bugs")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default=None, help="default: the matrix file's (MiniLM)")
    parser.add_argument("--profile", default=None, help="default: the matrix file's (nightly)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    names = [b.strip() for b in args.bugs.split(",") if b.strip()]
    unknown = [b for b in names if b not in BUGS]
    if unknown:
        print(f"planted_bugs: unknown bug {unknown[0]!r}; allowed: {', '.join(BUGS)}", file=sys.stderr)
        return 2
    extra = [*(["--data-dir", args.data_dir] if args.data_dir else []), *(["--model", args.model] if args.model else []),
             *(["--profile", args.profile] if args.profile else []), *(f"--set={o}" for o in args.overrides)]
    out = Path(args.out)
    lines = list(dict.fromkeys(line for name in names for line in BUGS[name].lines))
    run_lines(lines, args.matrix, out / "baseline", extra)
    rows = []
    for name in names:
        bug = BUGS[name]
        with bug.patch():
            run_lines(list(bug.lines), args.matrix, out / name, extra)
        red, summary = night_is_red(out / "baseline", out / name)
        rows.append((name, bug.what, ", ".join(f"{t}/{v}" for t, v in bug.lines), "red" if red else "green", summary))
    table = ["| bug | what | lines | night | compare says |", "|---|---|---|---|---|",
             *(f"| {' | '.join(row)} |" for row in rows)]
    caught = sum(row[3] == "red" for row in rows)
    text = "\n".join([f"# Planted bugs: {caught} of {len(rows)} flagged", "", *table, ""])
    (out / "planted-bugs.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
