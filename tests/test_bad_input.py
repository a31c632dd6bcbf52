"""The bad-input battery: every malformed input a user (or an attacker) can hand ``bench run``.

Each case runs the real command line in this process (``adapterbench.cli.main``) and asserts the promise of
``bench``: exit status 2, exactly one line on standard error that starts ``bench: error:`` and names the bad value
(and, where there is a choice, what is allowed), no traceback, and an output folder that already held a record,
a checkpoint and a superseded record left byte for byte as it was. Cases are grouped by where the bad input
lives: the command line, a matrix file, a task file, a data file, a model folder, the output folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapterbench.cli import main
from adapterbench.testing import save_tiny_model

TASK_DIR = Path(__file__).parent / "data" / "tasks"
GOOD_CSV = TASK_DIR / "sentiment_train.csv"
SEED_MAX = 2**32 - 1


@dataclass
class Env:
    tmp: Path
    model: Path  # a tiny model folder this case may break (a copy)
    out: Path  # an output folder holding a record, a checkpoint and a superseded record
    task: Path  # a user task file (CSV) whose files this case may break
    glue: Path  # a data folder in the GLUE/CoNLL layout whose files this case may break

    def run(self, *extra: str, task: str | Path | None = None, variants: str = "head", model: str | Path | None = None,
            out: str | Path | None = None, profile: str = "smoke") -> list[str]:
        """``bench run`` argv on the tiny model and the user task, with ``extra`` appended."""
        return ["run", "--variants", variants, "--task", str(task or self.task), "--model", str(model or self.model),
                "--profile", profile, "--out", str(out or self.out), *extra]

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def task_file(self, name: str = "t.toml", data: str = 'format = "csv"', files: str | None = None,
                  extra: str = "", train: str | bytes | None = None) -> Path:
        """A classification task file; ``train`` replaces the training CSV's content."""
        if train is not None:
            self.write("train.csv", train)
        files = files or 'train = "train.csv"\nvalidation = "dev.csv"'
        return self.write(name, f'name = "t"\nversion = "1"\nkind = "classification"\ntext_fields = ["text"]\n'
                                f'label_field = "label"\nlabels = ["negative", "positive"]\nmetrics = ["f1"]\n'
                                f'primary_metric = "f1"\n{extra}\n[data]\n{data}\n[data.files]\n{files}\n')


@pytest.fixture(scope="module")
def pristine_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tinybert", "bert")


@pytest.fixture()
def env(tmp_path, pristine_model) -> Env:
    model = tmp_path / "tinybert"
    shutil.copytree(pristine_model, model)
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "superseded").mkdir()
    record = {"schema_version": 1, "run_id": "t__head__tinybert__smoke__seed0__00000000", "status": "ok"}
    (out / f"{record['run_id']}.json").write_text(json.dumps(record))
    (out / "checkpoints" / f"{record['run_id']}.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (out / "superseded" / f"{record['run_id']}.20260101T000000.1.json").write_text(json.dumps(record))
    rows = "text,label\n" + "".join(f"review number {i},{'positive' if i % 2 else 'negative'}\n" for i in range(8))
    (tmp_path / "train.csv").write_text(rows)
    (tmp_path / "dev.csv").write_text(rows)
    glue = tmp_path / "data"
    (glue / "glue" / "SST-2").mkdir(parents=True)
    tsv = "sentence\tlabel\n" + "".join(f"a film number {i}\t{i % 2}\n" for i in range(8))
    (glue / "glue" / "SST-2" / "train.tsv").write_text(tsv)
    (glue / "glue" / "SST-2" / "dev.tsv").write_text(tsv)
    (glue / "conll2003").mkdir()
    conll = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    for name in ("train.txt", "valid.txt", "test.txt"):
        (glue / "conll2003" / name).write_text(conll)
    e = Env(tmp_path, model, out, tmp_path / "task.toml", glue)
    e.task_file("task.toml")
    return e


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_bad_input(env: Env, capsys, argv: list[str], needles: tuple[str, ...], absent: tuple[str, ...] = ()
                     ) -> str:
    """Run ``bench`` and check the promise; returns the message line."""
    before = snapshot(env.out)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit from inside main
        code = exc.code
    captured = capsys.readouterr()
    err = captured.err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err[-2000:], captured.out[-2000:])
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("bench: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in line, (needle, line)
    for text in absent:
        assert text not in line, (text, line)
    assert snapshot(env.out) == before, "the output folder changed"
    assert not (env.out / ".claims").exists()
    return line


@dataclass
class Case:
    id: str
    argv: Callable[[Env], list[str]]
    needles: tuple[str, ...]
    absent: tuple[str, ...] = ()


def matrix(env: Env, body: str | bytes, *extra: str) -> list[str]:
    path = env.write("m.toml", body)
    return ["run", "--matrix", str(path), "--model", str(env.model), "--task", str(env.task), "--profile", "smoke",
            "--out", str(env.out), *extra]


def sst2(env: Env, *extra: str) -> list[str]:
    return env.run("--data-dir", str(env.glue), *extra, task="sst2")


def sst2_file(env: Env, name: str, content: str | bytes) -> list[str]:
    env.write(f"data/glue/SST-2/{name}", content)
    return sst2(env)


def mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def conll(env: Env, content: str | bytes) -> list[str]:
    env.write("data/conll2003/train.txt", content)
    return env.run("--data-dir", str(env.glue), task="conll2003")


def break_model(env: Env, action: Callable[[Path], object]) -> list[str]:
    action(env.model)
    return env.run()


PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"

CLI = [
    Case("no-subcommand", lambda e: [], ("give a subcommand: run, sweep, list", "see bench --help"), ("bench bench",)),
    Case("unknown-subcommand", lambda e: ["runn"], ("invalid choice: 'runn'", "see bench --help")),
    Case("unknown-option", lambda e: e.run("--sed", "1"), ("unrecognized arguments: --sed", "bench run --help")),
    Case("variant-typo", lambda e: e.run(variants="lroa"), ("unknown variant 'lroa'", "Did you mean 'lora'")),
    Case("no-variants", lambda e: e.run(variants=","), ("no variants given",)),
    Case("task-typo", lambda e: e.run(task="sst3"), ("unknown task 'sst3'", "Did you mean 'sst2'")),
    Case("profile", lambda e: e.run(profile="fast"), ("unknown profile 'fast'", "choose one of: smoke, quick")),
    Case("set-no-equals", lambda e: e.run("--set", "lr"), ("malformed --set 'lr'", "key=value")),
    Case("set-unknown-key", lambda e: e.run("--set", "rank=4"), ("--set rank: unknown setting", "allowed:")),
    Case("set-unknown-scope", lambda e: e.run("--set", "lorra.r=4"), ("'lorra' is not a variant",)),
    Case("set-unknown-variant-key", lambda e: e.run("--set", "head.r=4"), ("has no setting 'r'", "allowed:")),
    Case("lr-negative", lambda e: e.run("--set", "lr=-1e-4"), ("lr=-0.0001 is not allowed", "finite positive")),
    Case("lr-inf", lambda e: e.run("--set", "lr=inf"), ("lr=inf is not allowed", "finite positive")),
    Case("lr-overflow", lambda e: e.run("--set", "lr=1e400"), ("lr=inf is not allowed",)),
    Case("lr-nan", lambda e: e.run("--set", "lr=nan"), ("lr=nan is not allowed",)),
    Case("lr-text", lambda e: e.run("--set", "lr=fast"), ("lr='fast' is not allowed", "expected float")),
    Case("weight-decay-nan", lambda e: e.run("--set", "weight_decay=nan"), ("weight_decay=nan", "finite")),
    Case("grad-norm-inf", lambda e: e.run("--set", "max_grad_norm=inf"), ("max_grad_norm=inf", "finite")),
    Case("warmup-ratio", lambda e: e.run("--set", "warmup_ratio=1.5"), ("warmup_ratio=1.5", "[0, 1)")),
    Case("batch-size-zero", lambda e: e.run("--set", "batch_size=0"), ("batch_size=0", "positive integer")),
    Case("batch-size-float", lambda e: e.run("--set", "batch_size=2.5"), ("batch_size=2.5", "expected int")),
    Case("epochs-none", lambda e: e.run("--set", "epochs=none"), ("epochs=none is not allowed",)),
    Case("precision", lambda e: e.run("--set", "precision=fp8"), ("precision='fp8'", "auto, fp32 or bf16")),
    Case("device", lambda e: e.run("--set", "device=tpu"), ("device='tpu'", "cuda:N")),
    Case("seeds-text", lambda e: e.run("--seeds", "a,b"), ("--seeds 'a,b' is not allowed", "integers")),
    Case("seeds-float", lambda e: e.run("--seeds", "1.5"), ("--seeds '1.5'",)),
    Case("seed-negative", lambda e: e.run("--seeds", "0,-1"), ("seed -1 is not allowed", f"0 to {SEED_MAX}")),
    Case("seed-too-big", lambda e: e.run("--seeds", str(2**32)), (f"seed {2**32} is not allowed", str(SEED_MAX))),
    Case("data-dir-missing", lambda e: sst2(e, "--data-dir", "/no/such/folder"), ("/no/such/folder", "does not exist")),
    Case("data-dir-is-file", lambda e: sst2(e, "--data-dir", str(e.task)), ("task.toml", "is not a folder")),
    Case("lora-targets", lambda e: e.run("--set", "lora.targets=nosuch", variants="lora"),
         ("variant 'lora'", "target 'nosuch' matches no linear module", "roles: query")),
    Case("lora-rank-pattern", lambda e: e.run("--set", "lora.rank_pattern=nosuch=4", variants="lora"),
         ("rank_pattern key 'nosuch'",)),
    Case("houlsby-targets", lambda e: e.run("--set", "houlsby.targets=query.nosuch", variants="houlsby"),
         ("variant 'houlsby'", "'query.nosuch'")),
    Case("lora-r-zero", lambda e: e.run("--set", "lora.r=0", variants="lora"), ("r=0",)),
    Case("dylora-seed-huge", lambda e: e.run("--set", f"dylora.seed={2**70}", variants="dylora"),
         ("variant 'dylora'", f"seed={2**70}", f"0..{2**64 - 1}")),
    Case("dylora-seed-negative", lambda e: e.run("--set", "dylora.seed=-2", variants="dylora"), ("seed=-2", "-1")),
    Case("adalora-schedule", lambda e: e.run("--set", "adalora.t_init=1", "--set", "adalora.t_final=1",
                                             variants="adalora"), ("t_init=1", "must be below the total steps")),
]

MATRIX = [
    Case("missing", lambda e: ["run", "--matrix", str(e.tmp / "nope.toml")], ("nope.toml", "does not exist")),
    Case("is-folder", lambda e: ["run", "--matrix", str(e.tmp)], ("is not a regular file",)),
    Case("not-toml", lambda e: matrix(e, "variants = [head\n"), ("m.toml", "not valid TOML", "line 1")),
    Case("bad-bytes", lambda e: matrix(e, b'variants = ["head"]\ndescription = "caf\xe9"\n'),
         ("m.toml:2", "byte 0xe9", "not valid utf-8"), ("caf",)),
    Case("unknown-key", lambda e: matrix(e, 'variant = ["head"]\n'), ("unknown key 'variant'", "allowed:")),
    Case("model-list", lambda e: matrix(e, 'model = ["a", "b"]\nvariants = ["head"]\n'),
         ("'model' must be a string", "['a', 'b']")),
    Case("variants-number", lambda e: matrix(e, "variants = 3\n"), ("'variants' must be a list of names", "3")),
    Case("variants-mixed", lambda e: matrix(e, 'variants = ["head", 2]\n'), ("'variants' must be a list",)),
    Case("seeds-text", lambda e: matrix(e, 'variants = ["head"]\nseeds = ["zero"]\n'),
         ("'seeds' must be a list of integers", "zero")),
    Case("seeds-bool", lambda e: matrix(e, 'variants = ["head"]\nseeds = [true]\n'), ("'seeds' must be",)),
    Case("seed-range", lambda e: matrix(e, f'variants = ["head"]\nseeds = [{2**40}]\n'), (f"seed {2**40}",)),
    Case("profile-number", lambda e: matrix(e, 'variants = ["head"]\nprofile = 1\n'), ("'profile' must be a string",)),
    Case("set-not-table", lambda e: matrix(e, 'variants = ["head"]\nset = 3\n'), ("'set' must be a table",)),
    Case("set-list-value", lambda e: matrix(e, 'variants = ["head"]\n[set]\nlr = [1, 2]\n'),
         ("set 'lr' must be a number, a string or true/false", "[1, 2]")),
    Case("set-subtable", lambda e: matrix(e, 'variants = ["head"]\n[set.head]\nlr = -1\n'), ("lr=-1.0",)),
    Case("set-dotted-key", lambda e: matrix(e, 'variants = ["head"]\n[set]\nhead.epochs = 0\n'), ("epochs=0",)),
]

TASK_FILES = [
    Case("missing", lambda e: e.run(task=e.tmp / "none.toml"), ("none.toml", "does not exist")),
    Case("folder", lambda e: e.run(task=mkdir(e.tmp / "dir.toml")), ("dir.toml", "is not a regular file")),
    Case("suffix", lambda e: e.run(task=e.write("t.yaml", "name: t")), ("t.yaml",)),
    Case("not-toml", lambda e: e.run(task=e.write("t.toml", "name = \n")), ("t.toml", "not valid TOML")),
    Case("toml-bytes", lambda e: e.run(task=e.write("t.toml", b'name = "t\xff"\n')), ("t.toml:1", "byte 0xff")),
    Case("json-bytes", lambda e: e.run(task=e.write("t.json", b'{"name": "\xc3("}')), ("t.json:1", "byte 0xc3")),
    Case("json-deep", lambda e: e.run(task=e.write("t.json", "[" * 100000)), ("t.json", "not valid JSON")),
    Case("missing-field", lambda e: e.run(task=e.write("t.toml", 'name = "t"\n')), ("field 'version' is missing",)),
    Case("kind", lambda e: e.run(task=e.write("k.toml", e.task.read_text().replace('"classification"', '"ranking"'))),
         ("field 'kind' is 'ranking'", "allowed: classification")),
    Case("unknown-encoding", lambda e: e.run(task=e.task_file(data='format = "csv"\nencoding = "klingon"')),
         ("field 'data.encoding'", "unknown encoding 'klingon'", "utf-8")),
    Case("encoding-type", lambda e: e.run(task=e.task_file(data='format = "csv"\nencoding = 8')),
         ("field 'data.encoding' must be a string",)),
    Case("format", lambda e: e.run(task=e.task_file(data='format = "xlsx"')), ("'xlsx'", "tsv, csv, jsonl, conll")),
    Case("data-file-missing", lambda e: e.run(task=e.task_file(files='train = "no.csv"\nvalidation = "dev.csv"')),
         ("no.csv", "does not exist")),
    Case("data-file-folder", lambda e: e.run(task=e.task_file(files='train = "."\nvalidation = "dev.csv"')),
         ("is not a regular file",)),
    Case("points-at-passwd-csv", lambda e: e.run(task=e.task_file(files=f'train = "{e.write("passwd", PASSWD)}"\n'
                                                                       f'validation = "dev.csv"')),
         ("passwd:1", "no column 'text'", "not shown: the first line does not look like a header"), ("root:", "nologin")),
    Case("points-at-passwd-conll", lambda e: e.run(task=e.write("n.json", json.dumps({
        "name": "n", "version": "1", "kind": "token_classification", "text_fields": ["tokens"],
        "label_field": "tags", "labels": ["O", "B-X"], "metrics": ["f1"], "primary_metric": "f1",
        "data": {"format": "conll", "files": {"train": str(e.write("passwd", PASSWD)), "validation": "passwd"}}}))),
        ("passwd:1", "expected at least 4 space-separated columns"), ("root:", "bash")),
    Case("points-at-passwd-jsonl", lambda e: e.run(task=e.task_file(
        data='format = "jsonl"', files=f'train = "{e.write("passwd", PASSWD)}"\nvalidation = "passwd"')),
        ("passwd:1", "not valid JSON"), ("root:",)),
]

DATA_FILES = [
    Case("tsv-bytes", lambda e: sst2_file(e, "train.tsv", b"sentence\tlabel\nok\t1\nbad \xff\t0\n"),
         ("train.tsv:3", "byte 0xff", "not valid utf-8-sig"), ("ok\t",)),
    Case("tsv-columns", lambda e: sst2_file(e, "train.tsv", "sentence\tlabel\nno label\n"),
         ("train.tsv:2", "expected 2 tab-separated columns, got 1")),
    Case("tsv-label", lambda e: sst2_file(e, "train.tsv", "sentence\tlabel\nfine\t7\n"),
         ("train.tsv:2", "label '7'", "labels: 0, 1")),
    Case("tsv-empty", lambda e: sst2_file(e, "dev.tsv", "sentence\tlabel\n"), ("split 'validation' is empty",)),
    Case("conll-bytes", lambda e: conll(e, b"EU NNP B-NP B-ORG\nk\xf6ln NNP B-NP B-LOC\n"),
         ("train.txt:2", "byte 0xf6"), ("ln NNP",)),
    Case("conll-columns", lambda e: conll(e, "EU NNP B-ORG\n"), ("train.txt:1", "expected at least 4"), ("EU NNP",)),
    Case("conll-tag", lambda e: conll(e, "EU NNP B-NP B-FOO\n"), ("tag 'B-FOO'", "B-PER")),
    Case("csv-bytes", lambda e: e.run(task=e.task_file(train=b"text,label\nfine,positive\nna\xefve,negative\n")),
         ("train.csv:3", "byte 0xef", "not valid utf-8-sig")),
    Case("csv-bytes-latin1-ok-but-label", lambda e: e.run(task=e.task_file(
        data='format = "csv"\nencoding = "latin-1"', train=b"text,label\nna\xefve,neutral\n")),
        ("train.csv:2", "label 'neutral'", "negative, positive")),
    Case("csv-unclosed-quote", lambda e: e.run(task=e.task_file(
        train='text,label\nfine,positive\n"unclosed,positive\n' + "x" * 140000 + "\nmore,negative\n")),
         ("train.csv:3", "expected 2 comma-separated columns, got 1", "unclosed quote", "on line 3"), ("xxx",)),
    Case("csv-header", lambda e: e.run(task=e.task_file(train="review,sentiment\nok,positive\n")),
         ("train.csv:1", "no column 'text'", "columns are: review, sentiment")),
    Case("csv-label-long", lambda e: e.run(task=e.task_file(train="text,label\nok," + "y" * 500 + "\n")),
         ("train.csv:2", "label 'yyy", "..."), ("y" * 60,)),
    Case("jsonl-bytes", lambda e: e.run(task=e.task_file(data='format = "jsonl"',
                                                         train=b'{"text": "a", "label": "positive"}\n{"text": "\xff"}\n')),
         ("train.csv:2", "byte 0xff")),
    Case("jsonl-huge-int", lambda e: e.run(task=e.task_file(data='format = "jsonl"', train='{"text": ' + "9" * 5000 + "}\n")),
         ("train.csv:1", "JSON that cannot be read")),
    Case("jsonl-text-type", lambda e: e.run(task=e.task_file(data='format = "jsonl"',
                                                             train='{"text": ["a"], "label": "positive"}\n')),
         ("train.csv:1", "field 'text' must be text, got list")),
]

MODELS = [
    Case("missing-folder", lambda e: e.run(model="/no/such/model"), ("/no/such/model", "does not exist")),
    Case("is-file", lambda e: e.run(model=e.task), ("is a file", "'minilm'")),
    Case("no-config", lambda e: break_model(e, lambda m: (m / "config.json").unlink()), ("has no config.json",)),
    Case("no-weights", lambda e: break_model(e, lambda m: (m / "model.safetensors").unlink()),
         ("has no weights", "model.safetensors")),
    Case("config-not-json", lambda e: break_model(e, lambda m: (m / "config.json").write_text("{oops")),
         ("cannot read its config",)),
    Case("config-model-type", lambda e: break_model(e, lambda m: (m / "config.json").write_text(
        json.dumps({"model_type": "nosuchtype"}))), ("cannot read its config", "nosuchtype")),
    Case("weights-truncated", lambda e: break_model(e, lambda m: (m / "model.safetensors").write_bytes(
        (m / "model.safetensors").read_bytes()[:1000])), ("model.safetensors", "not a readable safetensors file")),
    Case("no-tokenizer", lambda e: break_model(e, lambda m: [(m / f).unlink() for f in ("tokenizer.json",
                                                                                        "tokenizer_config.json")]),
         ("has no tokenizer", "tokenizer.json")),
    Case("hub-id-invalid", lambda e: e.run(model="no such model!"), ("'no such model!'", "valid hub id")),
]

OUT_FOLDERS = [
    Case("is-file", lambda e: e.run(out=e.task), ("output folder", "task.toml", "is a file")),
    Case("under-file", lambda e: e.run(out=e.task / "sub"), ("cannot be created", "task.toml' is a file")),
    Case("checkpoints-is-file", lambda e: e.run(out=e.write("o2/checkpoints", "x").parent),
         ("checkpoints' must be a folder",)),
    Case("claims-is-file", lambda e: e.run(out=e.write("o3/.claims", "x").parent), (".claims' must be a folder",)),
]

ALL = ([pytest.param(c, id=f"cli-{c.id}") for c in CLI] + [pytest.param(c, id=f"matrix-{c.id}") for c in MATRIX]
       + [pytest.param(c, id=f"taskfile-{c.id}") for c in TASK_FILES]
       + [pytest.param(c, id=f"data-{c.id}") for c in DATA_FILES] + [pytest.param(c, id=f"model-{c.id}") for c in MODELS]
       + [pytest.param(c, id=f"out-{c.id}") for c in OUT_FOLDERS])


@pytest.mark.parametrize("case", ALL)
def test_bad_input(case: Case, env: Env, capsys):
    assert_bad_input(env, capsys, case.argv(env), case.needles, case.absent)


# ---- cases that need more than an argv -------------------------------------------------------------------------


def _unwritable() -> Path | None:
    """A folder that exists and that this user cannot write, even as root (sysfs); None if there is none."""
    for candidate in (Path("/sys/kernel"), Path("/proc/self")):
        if candidate.is_dir() and not _writable(candidate):
            return candidate
    return None


def _writable(folder: Path) -> bool:
    try:
        (folder / ".adapterbench-probe").touch()
    except OSError:
        return False
    (folder / ".adapterbench-probe").unlink()
    return True


needs_unwritable = pytest.mark.skipif(_unwritable() is None, reason="no folder here that cannot be written")


@needs_unwritable
def test_out_folder_not_writable(env, capsys):
    folder = _unwritable()
    assert_bad_input(env, capsys, env.run(out=folder), (f"output folder '{folder}' is not writable", "--out"))


@needs_unwritable
def test_out_folder_not_creatable(env, capsys):
    folder = _unwritable() / "adapterbench-out"
    assert_bad_input(env, capsys, env.run(out=folder), ("cannot be created in", str(folder.parent)))


def test_out_folder_without_free_space(env, capsys, monkeypatch):
    from adapterbench.harness import preflight

    real = shutil.disk_usage
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: real(p)._replace(free=10 << 20))
    line = assert_bad_input(env, capsys, env.run(variants="full"), ("10 MiB free", "needs about", "--out"))
    assert "64 MiB" in line  # full fine-tuning's checkpoint of the tiny model is smaller than the floor


def test_free_space_estimate_counts_checkpoints(env, monkeypatch, capsys):
    from adapterbench.harness import preflight

    real = shutil.disk_usage
    monkeypatch.setattr(preflight, "MIN_FREE_BYTES", 0)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: real(p)._replace(free=3 << 20))
    # full trains every weight of the tiny BERT (about 1M parameters: 4 MiB in fp32) and needs more than 3 MiB
    line = assert_bad_input(env, capsys, env.run(variants="full"), ("3 MiB free",))
    assert int(line.split("needs about ")[1].split(" MiB")[0]) >= 4


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_hub_model_while_offline(env, capsys, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    assert_bad_input(env, capsys, env.run(model="adapterbench-tests/no-such-model"),
                     ("'adapterbench-tests/no-such-model' is a hub id", f"{variable} is set", "local model folder"))


def test_hub_model_without_network(env, capsys, monkeypatch):
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    assert_bad_input(env, capsys, env.run(model="adapterbench-tests/no-such-model"),
                     ("is a hub id", "127.0.0.1:9 cannot be reached"))


def test_out_folder_that_fills_during_the_matrix(env, capsys, monkeypatch):
    from adapterbench.harness import matrix

    def full_disk(path, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matrix, "write_record", full_disk)
    out = env.tmp / "filling"
    assert main(env.run("--in-process", out=out)) == 2
    err = capsys.readouterr().err  # in this process transformers' loading bars come first; the worker hides them
    lines = [line for line in err.splitlines() if line.startswith("bench")]
    assert len(lines) == 1 and "Traceback" not in err
    for needle in ("cannot write the record", str(out), "No space left on device", "rerun it"):
        assert needle in lines[0]
    assert list(out.glob("*.json")) == [] and list((out / ".claims").glob("*")) == []


def test_duplicates_are_run_once(env, capsys):
    from adapterbench.harness.matrix import expand

    specs = expand(["head", "head", "full"], [str(env.task), str(env.task)], [0, 0, 1], str(env.model), "smoke",
                   {}, None, str(env.out))
    assert [(s.variant, s.seed) for s in specs] == [("head", 0), ("head", 1), ("full", 0), ("full", 1)]
    assert len({s.run_id for s in specs}) == 4


def test_bad_input_leaves_no_output_folder(env, capsys):
    out = env.tmp / "fresh"
    assert_bad_input(env, capsys, env.run("--set", "lr=inf", out=out), ("lr=inf",))
    assert not out.exists()
